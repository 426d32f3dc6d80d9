#!/usr/bin/env bash
# Wall time of lq-calibrate's measuring with -n 1, 2, 4 ... ranks on this machine, each from an
# empty store, in one run (noisy machines: compare within a run), and the check that every
# rank count produced the same bytes.
#
#   bench/calibrate_scaling.sh BUILD_DIR stories|smollm2 [N...]
#
# Environment: CONFIGS (default 16/8,24/10,24/8), NSAMPLES, SEQLEN, STEPS, THREADS (total
# threads shared by the workers, default nproc).
set -euo pipefail
build="${1:?usage: calibrate_scaling.sh BUILD_DIR stories|smollm2 [N...]}"
which="${2:?usage: calibrate_scaling.sh BUILD_DIR stories|smollm2 [N...]}"
shift 2
ns=("$@"); [ ${#ns[@]} -gt 0 ] || ns=(1 2 4)
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$here/../shared/data"
tmp="$(mktemp -d /tmp/lq_scaling.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
threads="${THREADS:-$(nproc)}"
case "$which" in
stories)
    model=(--model "$data/llama2c-stories260K/stories260K.bin" --tokenizer "$data/llama2c-stories260K/tok512.bin")
    tail -c +100001 "$data/tinystories/tinystories_val_a.txt" > "$tmp/calib.txt"
    calib="$tmp/calib.txt"; nsamples="${NSAMPLES:-128}"; seqlen="${SEQLEN:-256}" ;;
smollm2)
    model=(--model "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    calib="$data/wikitext-2-raw/wiki.valid.raw"; nsamples="${NSAMPLES:-16}"; seqlen="${SEQLEN:-512}" ;;
*) echo "calibrate_scaling.sh: unknown model '$which'" >&2; exit 2 ;;
esac
args=("${model[@]}" --calib "$calib" --nsamples "$nsamples" --seqlen "$seqlen" --steps "${STEPS:-100}"
      --configs "${CONFIGS:-16/8,24/10,24/8}" --target-bits 64)
echo "# $which: $nsamples x $seqlen calibration tokens, configs ${CONFIGS:-16/8,24/10,24/8}, $(nproc) cores"
echo "| ranks | workers | threads per worker | wall s | speed-up vs first row | same bytes as first row |"
echo "|---|---|---|---|---|---|"
first=""
for n in "${ns[@]}"; do
    workers=$(( n > 1 ? n - 1 : 1 ))
    per=$(( threads / workers > 0 ? threads / workers : 1 ))
    t0=$(date +%s.%N)
    LQ_THREADS=$per OPENBLAS_NUM_THREADS=$per mpirun --oversubscribe -n "$n" "$build/coordinator/lq-calibrate" \
        "${args[@]}" --db "$tmp/s$n/store.db" --out "$tmp/o$n" > "$tmp/log$n" 2>&1 ||
        { echo "| $n | failed: $(grep lq-calibrate: "$tmp/log$n" | tail -1) |"; continue; }
    t1=$(date +%s.%N)
    wall="$(echo "$t1 - $t0" | bc)"
    if [ -z "$first" ]; then first="$wall"; ref="$tmp/o$n"; fi
    same=yes; cmp -s "$ref/model.safetensors" "$tmp/o$n/model.safetensors" || same=NO
    printf '| %d | %d | %d | %.1f | %.2f× | %s |\n' "$n" "$workers" "$per" "$wall" "$(echo "$first / $wall" | bc -l)" "$same"
done
