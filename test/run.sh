#!/usr/bin/env bash
# run.sh - runs the test programs of the given modes and prints one line per test with its
# seconds, then the closing line "N passed, N failed, N skipped". Exits 1 on any failure.
#
#   test/run.sh MODE...   MODE is release, asan, tsan, debug or valgrind (= debug binaries
#                         under valgrind memcheck). TEST_FILTER=regex narrows the tests.
#
# Tags in a test's source, on a line "LOOM_TEST_TAGS: ...":
#   tsan          cross-thread test, also run in the tsan build (others are not)
#   no-asan       not run under asan (e.g. it interposes malloc)
#   no-valgrind   not run under valgrind (e.g. timing-sensitive)
#   timeout=N     seconds before the runner kills it (default 300)
set -u
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
failures=()

source_of() {
    local name=$1
    for dir in loom/src test turbine/src; do
        [ -f "$dir/$name.c" ] && { echo "$dir/$name.c"; return; }
    done
    find . -path ./build -prune -o -name "$name.c" -print 2>/dev/null | head -n1
}

tags_of() {
    grep -h -o 'LOOM_TEST_TAGS:.*' "$1" 2>/dev/null | head -n1 | sed 's/LOOM_TEST_TAGS://'
}

run_one() {
    local mode=$1 bin=$2 name src tags timeout_s start end rc secs
    name=$(basename "$bin")
    [ -n "${TEST_FILTER:-}" ] && ! [[ $name =~ $TEST_FILTER ]] && return
    src=$(source_of "$name")
    tags=$(tags_of "$src")
    case "$mode" in
    tsan) [[ " $tags " == *" tsan "* ]] || return ;;
    asan) [[ " $tags " == *" no-asan "* ]] && return ;;
    valgrind) [[ " $tags " == *" no-valgrind "* ]] && return ;;
    esac
    timeout_s=300
    [[ $tags =~ timeout=([0-9]+) ]] && timeout_s=${BASH_REMATCH[1]}
    local -a cmd=("$bin")
    local -a envs=()
    case "$mode" in
    asan) envs=(LOOM_TEST_SCALE=10 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0
               UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1) ;;
    tsan) envs=(LOOM_TEST_SCALE=10 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0) ;;
    valgrind) envs=(LOOM_TEST_SCALE=2)
              cmd=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
                   --track-origins=no "$bin")
              timeout_s=$((timeout_s * 4)) ;;
    esac
    local log
    log=$(mktemp)
    start=$(date +%s.%N)
    env "${envs[@]}" timeout -k 5 "$timeout_s" "${cmd[@]}" </dev/null >"$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf 'PASS %-8s %-32s %7ss\n' "$mode" "$name" "$secs"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1))
        printf 'SKIP %-8s %-32s %7ss  %s\n' "$mode" "$name" "$secs" "$(grep -m1 SKIP "$log")"
    else
        failed=$((failed + 1))
        failures+=("$mode/$name")
        [ $rc -eq 124 ] && echo "(killed after ${timeout_s}s)" >>"$log"
        printf 'FAIL %-8s %-32s %7ss  exit %d\n' "$mode" "$name" "$secs" "$rc"
        tail -n 60 "$log" | sed 's/^/    | /'
    fi
    rm -f "$log"
}

[ $# -gt 0 ] || set -- release
for mode in "$@"; do
    dir=build/$mode/test
    [ "$mode" = valgrind ] && dir=build/debug/test
    if [ ! -d "$dir" ]; then
        echo "run.sh: no test binaries in $dir (build them first)" >&2
        failed=$((failed + 1))
        continue
    fi
    for bin in "$dir"/*_test; do
        [ -x "$bin" ] || continue
        run_one "$mode" "$bin"
    done
done

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
