#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/fuzz_<parser>.c) one after another and prints, per
# parser, executions, seconds, executions per second, crashes and final coverage, as a
# Markdown table for docs/BENCHMARKS.md.
#
#   bash bench/fuzz.sh [BUILD_DIR] [PARSER...]
#
# BUILD_DIR (default build-fuzz) is configured with clang and -DLQ_FUZZ=ON and the fuzzers
# built if it holds none yet; PARSERs default to every fuzz_<parser> built there.
# Environment:
#   FUZZ_RUNS       executions per parser (default 10000000; -1: no limit, use FUZZ_MAX_TIME)
#   FUZZ_MAX_TIME   seconds per parser at most (default 0: no cap)
#   FUZZ_RSS_MB     memory limit per fuzzer (default 2048)
#   FUZZ_OUT        where logs, crash inputs and the table go (default BUILD_DIR/fuzz-bench)
# Each fuzzer starts from a fresh copy of the committed seeds (tests/fuzz/corpus/<parser>/)
# and the crash regressions, so a run never edits the tree. Exits 1 if any fuzzer crashed,
# leaked, ran out of memory or timed out; the input that did it is kept under FUZZ_OUT and
# named in the output (copy it to tests/fuzz/regressions/<parser>/ once the bug is fixed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build-fuzz}"
[ $# -gt 0 ] && shift
runs="${FUZZ_RUNS:-10000000}"
max_time="${FUZZ_MAX_TIME:-0}"
rss_mb="${FUZZ_RSS_MB:-2048}"

if ! ls "$build"/tests/fuzz/fuzz_* 2>/dev/null | grep -qv fuzz_replay_; then
    CC=clang cmake -S "$root" -B "$build" -DLQ_FUZZ=ON -DLQ_SANITIZE=ON -DLQ_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=Debug
    cmake --build "$build" -j "$(nproc)" --target lq_fuzzers
fi
build="$(cd "$build" && pwd)"
out="${FUZZ_OUT:-$build/fuzz-bench}"
mkdir -p "$out"

parsers=("$@")
if [ ${#parsers[@]} -eq 0 ]; then
    for f in "$build"/tests/fuzz/fuzz_*; do
        name="$(basename "$f")"
        case "$name" in fuzz_replay_*) continue ;; esac
        [ -x "$f" ] && parsers+=("${name#fuzz_}")
    done
fi
if [ ${#parsers[@]} -eq 0 ]; then
    echo "fuzz.sh: no fuzzers in $build/tests/fuzz" >&2
    exit 1
fi

table="$out/table.md"
{
    echo "| parser | executions | seconds | exec/s | crashes | coverage (edges / features) | corpus |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
} > "$table"
failed=0
# leaks and UBSan findings end the run like a crash
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for parser in "${parsers[@]}"; do
    fuzzer="$build/tests/fuzz/fuzz_$parser"
    if [ ! -x "$fuzzer" ]; then
        echo "fuzz.sh: no fuzzer $fuzzer" >&2
        exit 1
    fi
    work="$out/$parser"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "$root/tests/fuzz/corpus/$parser"/* "$work/corpus/"
    if [ -d "$root/tests/fuzz/regressions/$parser" ]; then
        cp "$root/tests/fuzz/regressions/$parser"/* "$work/corpus/" 2>/dev/null || true
    fi
    dict=()
    [ -f "$root/tests/fuzz/$parser.dict" ] && dict=(-dict="$root/tests/fuzz/$parser.dict")
    echo "== fuzz_$parser: runs=$runs max_total_time=$max_time rss_limit_mb=$rss_mb"
    start=$(date +%s.%N)
    status=0
    "$fuzzer" "${dict[@]}" -runs="$runs" -max_total_time="$max_time" -rss_limit_mb="$rss_mb" \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
        > "$work/log.txt" 2>&1 || status=$?
    end=$(date +%s.%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    executions=$(awk '/stat::number_of_executed_units/ { print $2 }' "$work/log.txt" | tail -1)
    executions="${executions:-0}"
    rate=$(awk -v n="$executions" -v s="$seconds" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$work/log.txt" | tail -1 |
               awk '{ print $2 " / " $4 }')
    corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$work/log.txt" | tail -1 | awk '{ print $2 }')
    crashes=$(find "$work/artifacts" -type f | wc -l)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$parser" "$executions" "$seconds" "$rate" \
        "$crashes" "${coverage:-?}" "${corpus:-?}" >> "$table"
    tail -n 1 "$table"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "fuzz.sh: fuzz_$parser failed (exit $status); log $work/log.txt" >&2
        find "$work/artifacts" -type f -exec echo "  input: {}" \; >&2
        grep -m 20 -E 'ERROR|SUMMARY|invariant|#[0-9]+ 0x' "$work/log.txt" >&2 || true
    fi
done
echo
echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(clang --version | head -1)"
cat "$table"
exit "$failed"
