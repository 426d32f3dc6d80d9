#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies if needed, then build and run
# every CTest test twice, once optimised (build/) and once with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/, CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh

jobs="$(nproc)"
# a sanitizer report prints its stack and ends the test instead of scrolling past
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"

echo "== Release build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j2)

echo "== ASan + UBSan build (build-asan/)"
cmake -S . -B build-asan -DLQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DLQ_CUDA=OFF
cmake --build build-asan -j "$jobs"
(cd build-asan && ctest --output-on-failure -j2)
