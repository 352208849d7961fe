#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench.sh - runs every benchmark program of the release build, one after the other, from the
# repository root (so each writes its JSON records to build/bench/ there), then prints a
# summary of all their "bench:" lines.
#
#   scripts/bench.sh [BUILD_DIR]     (default build/release; `make bench` builds it first)
#   BENCH_QUICK=1 gives the long peer comparisons (echo, files, IO pool, log, broker) their
#   --quick mode.
#
# Exit status: 0 when every benchmark exited 0; 1 when one crashed or failed (the others still
# run and the summary still prints); 2 when there is nothing to run.
set -u

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
build=${1:-build/release}

shopt -s nullglob
benches=("$build"/bench/*_bench)
if [ ${#benches[@]} -eq 0 ]; then
    echo "bench.sh: no benchmarks in $build/bench/ (run: make MODE=release benches)" >&2
    exit 2
fi

log=$(mktemp "${TMPDIR:-/tmp}/loom-bench.XXXXXX")
trap 'rm -f "$log"' EXIT

failed=()
for bench in "${benches[@]}"; do
    name=$(basename "$bench")
    if [ ! -x "$bench" ]; then
        echo "bench.sh: $bench is not executable" >&2
        failed+=("$name (not executable)")
        continue
    fi
    echo "== $name"
    start=$(date +%s.%N)
    # stdout goes to the terminal and the log; stderr to the terminal only
    args=()
    if [ -n "${BENCH_QUICK:-}" ] && [[ " echo_bench file_bench iopool_bench log_bench broker_bench " == *" $name "* ]]; then
        args=(--quick)
    fi
    "$bench" "${args[@]}" | tee -a "$log"
    status=${PIPESTATUS[0]}
    end=$(date +%s.%N)
    seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
    if [ "$status" -ne 0 ]; then
        if [ "$status" -gt 128 ]; then
            why="killed by signal $((status - 128))"
        else
            why="exit status $status"
        fi
        echo "bench.sh: $name FAILED ($why) after ${seconds} s" >&2
        failed+=("$name ($why)")
    else
        echo "== $name done in ${seconds} s"
    fi
done

# The IO suite once more with every optional (post-6.1) io_uring feature forced off: the
# figures are reported with the suffix _compat (BENCH_NAME_SUFFIX), baselines unchanged.
for name in echo_bench file_bench iopool_bench; do
    bench="$build/bench/$name"
    [ -x "$bench" ] || continue
    echo "== $name (LOOM_DISABLE=all)"
    LOOM_DISABLE=all BENCH_NAME_SUFFIX=_compat "$bench" --quick | tee -a "$log"
    status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then
        echo "bench.sh: $name with LOOM_DISABLE=all FAILED (exit status $status)" >&2
        failed+=("$name LOOM_DISABLE=all (exit status $status)")
    fi
done

echo
echo "== summary (JSON records in $root/build/bench/)"
grep '^bench: ' "$log" || echo "(no bench: lines)"

if [ ${#failed[@]} -gt 0 ]; then
    echo
    echo "bench.sh: ${#failed[@]} benchmark(s) failed:" >&2
    for f in "${failed[@]}"; do
        echo "  $f" >&2
    done
    exit 1
fi
exit 0
