#!/usr/bin/env bash
# Issue 5's quality table: at several budgets, the solver's mixed assignment against the best
# uniform config that fits, each assembled by lq-calibrate from one calibration run (one store)
# and evaluated by lq-eval — and the three error measures the solver can minimise, side by side.
#
#   bench/calibrate_budgets.sh BUILD_DIR stories|smollm2 [BITS...]
#
# BITS: budgets as bits per weight of the quantized linears incl. side data (--target-bits),
# default 3.5 4.0 4.5 for stories (whose 64-wide matrices carry 1–1.8 bits/weight of side data)
# and 2.2 2.6 3.0 for smollm2. Environment: NP (MPI ranks, default 4), CONFIGS (candidates,
# default 16/8,30/14,24/10,25/10,27/12,24/8), NSAMPLES, SEQLEN, STEPS, OUT_ROOT, KEEP=1,
# MAX_WINDOWS (smollm2 eval windows of 512 tokens, default 40), MEASURES (default "output relative
# stream"; a column is empty for a measure left out).
set -euo pipefail
build="${1:?usage: calibrate_budgets.sh BUILD_DIR stories|smollm2 [BITS...]}"
which="${2:?usage: calibrate_budgets.sh BUILD_DIR stories|smollm2 [BITS...]}"
shift 2
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$here/../shared/data"
out_root="${OUT_ROOT:-$(mktemp -d /tmp/lq_budgets.XXXXXX)}"
mkdir -p "$out_root"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$out_root"' EXIT
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
np="${NP:-4}"
configs="${CONFIGS:-16/8,30/14,24/10,25/10,27/12,24/8}"
# ranks share the cores: one thread each unless told
export LQ_THREADS="${LQ_THREADS:-$(( $(nproc) / np > 0 ? $(nproc) / np : 1 ))}"

case "$which" in
stories)
    model=(--model "$data/llama2c-stories260K/stories260K.bin" --tokenizer "$data/llama2c-stories260K/tok512.bin")
    # written once: the run key includes the calibration file's mtime
    [ -f "$out_root/calib.txt" ] || tail -c +100001 "$data/tinystories/tinystories_val_a.txt" > "$out_root/calib.txt"
    calib="$out_root/calib.txt"
    eval_args=(--text "$data/tinystories/tinystories_val_a.txt" --max-chars 100000 --pack-paragraphs)
    bits=("$@"); [ ${#bits[@]} -gt 0 ] || bits=(3.5 4.0 4.5)
    nsamples="${NSAMPLES:-128}"; seqlen="${SEQLEN:-256}"
    ;;
smollm2)
    model=(--model "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    calib="$data/wikitext-2-raw/wiki.valid.raw"
    eval_args=(--text "$data/wikitext-2-raw/wiki.test.raw" --ctx 512 --max-windows "${MAX_WINDOWS:-40}")
    bits=("$@"); [ ${#bits[@]} -gt 0 ] || bits=(2.2 2.6 3.0)
    nsamples="${NSAMPLES:-64}"; seqlen="${SEQLEN:-512}"
    ;;
*) echo "calibrate_budgets.sh: unknown model '$which' (stories, smollm2)" >&2; exit 2 ;;
esac
common=("${model[@]}" --calib "$calib" --nsamples "$nsamples" --seqlen "$seqlen"
        --steps "${STEPS:-100}" --db "$out_root/store/store.db")

ppl() { "$build/tools/lq-eval" ppl --model "$1" "${eval_args[@]}" --json 2>/dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
bpw() { "$build/tools/lq-inspect" "$1" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["totals"]["bits_per_weight_with_side"])'; }

echo "# $which: calibration $nsamples x $seqlen tokens, candidates $configs, mpirun -n $np (LQ_THREADS=$LQ_THREADS)"
t0=$(date +%s.%N)
mpirun --oversubscribe -n "$np" "$build/coordinator/lq-calibrate" "${common[@]}" --configs "$configs" \
    --target-bits 64 --out "$out_root/all_best" > "$out_root/measure.log" 2>&1 ||
    { echo "measuring failed:"; tail -5 "$out_root/measure.log"; exit 1; }
t1=$(date +%s.%N)
printf 'measuring every candidate: %.0f s\n\n' "$(echo "$t1 - $t0" | bc)"

# the uniform models: each config alone (the store already holds every result: no measuring)
declare -A ubpw uppl
echo "| uniform config | bits/weight (with side) | PPL |"
echo "|---|---|---|"
for c in ${configs//,/ }; do
    dir="$out_root/uniform_${c//\//to}"
    mpirun -n 1 "$build/coordinator/lq-calibrate" "${common[@]}" --configs "$c" --target-bits 64 \
        --out "$dir" > "$out_root/u.log" 2>&1 || { echo "| $c | failed | |"; continue; }
    ubpw[$c]="$(bpw "$dir")"; uppl[$c]="$(ppl "$dir")"
    echo "| $c | ${ubpw[$c]} | ${uppl[$c]} |"
done
echo

measures="${MEASURES:-output relative stream}"
header="| budget (bits/weight) | best uniform that fits |"; rule="|---|---|"
for m in $measures; do header="$header mixed, $m error |"; rule="$rule---|"; done
echo "$header re-solve + assemble s |"
echo "$rule---|"
for b in "${bits[@]}"; do
    best="none fits"; best_ppl=""
    for c in ${configs//,/ }; do
        [ -n "${ubpw[$c]:-}" ] || continue
        if python3 -c "import sys; sys.exit(0 if ${ubpw[$c]} <= $b else 1)"; then
            if [ -z "$best_ppl" ] || python3 -c "import sys; sys.exit(0 if ${uppl[$c]} < $best_ppl else 1)"; then
                best="$c: ${ubpw[$c]} bpw, PPL ${uppl[$c]}"; best_ppl="${uppl[$c]}"
            fi
        fi
    done
    row="| $b | $best |"
    for m in $measures; do
        dir="$out_root/mixed_${b}_$m"
        s0=$(date +%s.%N)
        mpirun -n 1 "$build/coordinator/lq-calibrate" "${common[@]}" --configs "$configs" --target-bits "$b" \
            --measure "$m" --out "$dir" > "$out_root/m.log" 2>&1 || { row="$row failed: $(grep lq-calibrate: "$out_root/m.log" | tail -1) |"; continue; }
        s1=$(date +%s.%N)
        row="$row $(bpw "$dir") bpw, PPL $(ppl "$dir") |"
        solve_s="$(echo "$s1 - $s0" | bc)"
    done
    printf '%s %.2f |\n' "$row" "$solve_s"
done
