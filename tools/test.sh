#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies if needed, then build and run
# every CTest test twice, once optimised (build/) and once with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/, CPU only), then fuzz every parser for a bounded
# time with libFuzzer (build-fuzz/, clang; bench/fuzz.sh runs them for longer).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh

# The shared data sits beside the checkout (../shared/data); a clone made elsewhere
# (`git clone . /tmp/cc`) finds it beside the repository it was cloned from. LQ_SHARED_DATA
# overrides both. Missing data is an error here, not skipped tests.
data="${LQ_SHARED_DATA:-}"
if [ -z "$data" ]; then
    data="$(pwd)/../shared/data"
    origin="$(git config --get remote.origin.url 2>/dev/null || true)"
    if [ ! -d "$data" ] && [ -n "$origin" ] && [ -d "$origin/../shared/data" ]; then
        data="$(cd "$origin/../shared/data" && pwd)"
    fi
fi
if [ ! -d "$data/llama2c-stories260K" ]; then
    echo "test.sh: no shared data at $data (set LQ_SHARED_DATA=DIR)" >&2
    exit 1
fi
echo "test.sh: shared data from $data"

jobs="$(nproc)"
# a sanitizer report prints its stack and ends the test instead of scrolling past
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"

echo "== Release build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLQ_SHARED_DATA_DIR="$data"
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j2)

echo "== ASan + UBSan build (build-asan/)"
cmake -S . -B build-asan -DLQ_SHARED_DATA_DIR="$data" -DLQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DLQ_CUDA=OFF
cmake --build build-asan -j "$jobs"
(cd build-asan && ctest --output-on-failure -j2)

echo "== libFuzzer build (build-fuzz/): every parser fuzzed for 10 s"
# clang with -fsanitize=fuzzer,address,undefined; each fuzzer starts from a fresh copy of the
# committed seeds (bench/fuzz.sh), and any crash, leak, timeout or out-of-memory fails CI
CC=clang cmake -S . -B build-fuzz -DLQ_SHARED_DATA_DIR="$data" -DLQ_FUZZ=ON -DLQ_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=Debug -DLQ_CUDA=OFF
cmake --build build-fuzz -j "$jobs" --target lq_fuzzers
FUZZ_RUNS=-1 FUZZ_MAX_TIME=10 FUZZ_RSS_MB=2048 bash bench/fuzz.sh build-fuzz
