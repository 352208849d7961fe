#!/usr/bin/env bash
# run.sh - `make run`: the main job. Until the turbine broker exists this is the loom demo
# (examples/hello_cores on every CPU) followed by the benchmark summary (scripts/bench.sh).
set -u
cd "$(dirname "$0")/.."
build=build/release

echo "== loom demo: $build/examples/hello_cores"
if ! "$build/examples/hello_cores" --messages 20000; then
    echo "run.sh: the demo failed" >&2
    exit 1
fi
echo
echo "== loom benchmarks (each figure against a baseline measured in the same run)"
BENCH_QUICK=1 exec scripts/bench.sh "$build"
