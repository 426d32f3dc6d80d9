#!/usr/bin/env bash
# Lattice benchmark for docs/BENCHMARKS.md: for every config of the shipped set, Gaussian MSE
# per dimension of the exact and heuristic encoders against the Shannon bound, and seconds
# per 1M weights; then, side by side on the same vectors in one run, the exact encoder's split
# branch and bound against its depth-first search (exact-dfs) and the plain full-scan exact
# search (bench/plain_exact.c) — same MSE, speed ratios.
#
#   bench/lattice_bench.sh [VECTORS] [SIDE_BY_SIDE_VECTORS]      (defaults 100000, 2000)
# Threads: OMP_NUM_THREADS (default: all cores). Build dir: LQ_BUILD (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
vectors="${1:-100000}"
side="${2:-2000}"
build="${LQ_BUILD:-build}"
configs="16/8,20/8,24/8,16/10,20/10,24/10,25/10,27/12,30/14,32/16,32/20"
if [ -z "${LQ_BUILD:-}" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target lq-lattice lq-bench-plain >/dev/null
fi
echo "# $(date -u +%FT%TZ), $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
echo
echo "## MSE per dimension on N(0,1) (exact: $vectors vectors, or 2000 where D-d >= 14)"
echo
echo "| config | bpw | encoder | vectors | MSE | 2^(-2R) | MSE / bound | s per 1M weights |"
echo "|---|---|---|---|---|---|---|---|"
"$build/tools/lq-lattice" bench --configs "$configs" --vectors "$vectors" --exact-vectors 2000 --json |
  python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("| %s | %.2f | %s | %d | %.5f | %.5f | %.3f | %.2f |" % (r["config"], r["bits"], r["encoder"],
          r["vectors"], r["mse"], r["bound"], r["ratio_to_bound"], r["seconds_per_mweights"]))'
echo
echo "## Exact search side by side: split branch and bound vs depth-first vs plain full scan, same $side vectors"
echo
echo "| config | split MSE | depth-first MSE | plain MSE | split s/1M | depth-first s/1M | plain s/1M | split vs depth-first | split vs plain |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in 16/8 20/8 16/10 20/10 24/10 24/8 25/10; do
  file="lattices/${c/\//to}.safetensors"
  read -r pm ps < <("$build/bench/lq-bench-plain" "$file" "$side" 4242)
  read -r bm bs dm ds < <("$build/tools/lq-lattice" bench --configs "$c" --encoders exact,exact-dfs \
                      --vectors "$side" --exact-vectors "$side" --seed 4242 --json |
                    python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin]; print(r[0]["mse"], r[0]["seconds_per_mweights"], r[1]["mse"], r[1]["seconds_per_mweights"])')
  python3 -c "print('| $c | %.6f | %.6f | %.6f | %.2f | %.2f | %.2f | %.1fx | %.1fx |' % ($bm, $dm, $pm, $bs, $ds, $ps, $ds / $bs, $ps / $bs))"
done
