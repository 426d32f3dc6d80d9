#!/usr/bin/env bash
# The main job in small: build liftquant, then benchmark lattice encoding (rate-distortion
# and speed of the lifted-space encoder) for two standard configs on Gaussian vectors.
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
build/tools/lq-lattice bench --configs 16/8,24/10 --vectors 20000
