#!/usr/bin/env bash
# Trains the standard lattice set shipped in lattices/ with the project's own trainer
# (defaults of lq_train_options_default, seed 1). Usage: bench/train_lattices.sh [CONFIG...]
set -euo pipefail
cd "$(dirname "$0")/.."
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(16/8 16/10 20/10 20/8 24/10 32/20 25/10 24/8 27/12 30/14 32/16)
tool="${LQ_LATTICE_TOOL:-build/tools/lq-lattice}"
if [ -z "${LQ_LATTICE_TOOL:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target lq-lattice >/dev/null
fi
mkdir -p lattices
for c in "${configs[@]}"; do
  "$tool" train "$c" --seed 1 --out "lattices/${c/\//to}.safetensors"
done
