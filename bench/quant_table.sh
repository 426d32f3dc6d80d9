#!/usr/bin/env bash
# The issue-4 perplexity table: FP, RTN-g128 2/3/4, GPTQ-g128 2/3/4 and LiftQuant configs,
# each quantized by lq-quantize from the same calibration windows, measured by lq-inspect (true
# bits per weight with side data, file bytes) and lq-eval (perplexity), in one run.
#
#   bench/quant_table.sh BUILD_DIR stories|smollm2 [ROWS...]
#
# ROWS default to all: fp rtn2 rtn3 rtn4 gptq2 gptq3 gptq4 lq16/8 lq32/16 lq30/14 lq24/10
# lq25/10 lq24/8. Environment: NSAMPLES (calibration windows, default 128), SEQLEN (512),
# MAX_WINDOWS (SmolLM2 eval windows of 512 tokens, default 40; 592 is the whole test file),
# STEPS (LiftQuant correction steps, default 100), PROPAGATE (lq-quantize --propagate for the
# calibrated rows: quant, the default, asym or fp), ASYM_ALPHA (--asym-alpha, with asym only),
# BLOCK_STEPS (LiftQuant rows: --block-steps, per-block reconstruction; default none),
# OUT_ROOT (default a temporary directory, removed at the end unless KEEP=1).
#
# stories260K: calibrated on tinystories_val_a.txt after its first 100,000 bytes, evaluated
# on the first 100,000 characters with the reference protocol (--pack-paragraphs), so the
# calibration text never overlaps the evaluation text. SmolLM2-135M-Instruct: calibrated on
# wiki.valid.raw, evaluated on wiki.test.raw at ctx 512.
set -euo pipefail
build="${1:?usage: quant_table.sh BUILD_DIR stories|smollm2 [ROWS...]}"
which="${2:?usage: quant_table.sh BUILD_DIR stories|smollm2 [ROWS...]}"
shift 2
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$here/../shared/data"
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(fp rtn2 rtn3 rtn4 gptq2 gptq3 gptq4 lq16/8 lq32/16 lq30/14 lq24/10 lq25/10 lq24/8)
out_root="${OUT_ROOT:-$(mktemp -d /tmp/lq_quant_table.XXXXXX)}"
mkdir -p "$out_root"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$out_root"' EXIT
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

nsamples="${NSAMPLES:-128}"
seqlen="${SEQLEN:-512}"
steps="${STEPS:-100}"
propagate="${PROPAGATE:-quant}"
propagate_args=(--propagate "$propagate")
block_args=()
[ -z "${BLOCK_STEPS:-}" ] || block_args=(--block-steps "$BLOCK_STEPS")
[ -z "${ASYM_ALPHA:-}" ] || propagate_args+=(--asym-alpha "$ASYM_ALPHA")
case "$which" in
stories)
    model=("--model" "$data/llama2c-stories260K/stories260K.bin" "--tokenizer" "$data/llama2c-stories260K/tok512.bin")
    tail -c +100001 "$data/tinystories/tinystories_val_a.txt" > "$out_root/calib.txt"
    calib="$out_root/calib.txt"
    eval_args=(--text "$data/tinystories/tinystories_val_a.txt" --max-chars 100000 --pack-paragraphs)
    ;;
smollm2)
    model=("--model" "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    calib="$data/wikitext-2-raw/wiki.valid.raw"
    eval_args=(--text "$data/wikitext-2-raw/wiki.test.raw" --ctx 512 --max-windows "${MAX_WINDOWS:-40}")
    ;;
*) echo "quant_table.sh: unknown model '$which' (stories, smollm2)" >&2; exit 2 ;;
esac

echo "# $which: calibration $nsamples x $seqlen tokens of $(basename "$calib"), ${propagate_args[*]} ${block_args[*]}; eval: ${eval_args[*]}"
echo "| row | bits/weight (codes + side) | decoder-linear bytes | file bytes | PPL | quantize s |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
    dir="$out_root/${row//\//to}"
    qargs=()
    case "$row" in
    fp) ;;
    # RTN reads no calibration data (its windows only feed the reported output errors)
    rtn*) qargs=(--method rtn --bits "${row#rtn}" --group 128 --nsamples 4 --propagate fp) ;;
    gptq*) qargs=(--method gptq --bits "${row#gptq}" --group 128 "${propagate_args[@]}") ;;
    lq*) qargs=(--method liftquant --config "${row#lq}" --steps "$steps" "${propagate_args[@]}" "${block_args[@]}") ;;
    *) echo "quant_table.sh: unknown row '$row'" >&2; exit 2 ;;
    esac
    if [ "$row" = fp ]; then
        ppl="$("$build/tools/lq-eval" ppl "${model[@]}" "${eval_args[@]}" --json 2>/dev/null | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')"
        echo "| FP (f32) | 32 | — | — | $ppl | — |"
        continue
    fi
    t0=$(date +%s.%N)
    "$build/tools/lq-quantize" "${model[@]}" --out "$dir" --calib "$calib" --nsamples "$nsamples" \
        --seqlen "$seqlen" "${qargs[@]}" > "$out_root/quantize.log" 2>&1 || {
        echo "| $row | quantize failed: $(tail -1 "$out_root/quantize.log") | | | | |"; continue; }
    t1=$(date +%s.%N)
    sizes="$("$build/tools/lq-inspect" "$dir" --json | python3 -c '
import json, sys
t = json.load(sys.stdin)["totals"]
print("%.3f (%.3f + %.3f) | %d | %d" % (t["bits_per_weight_with_side"], t["bits_per_weight_codes"],
      t["bits_per_weight_with_side"] - t["bits_per_weight_codes"], t["code_bytes"] + t["side_bytes"],
      t["file_bytes"]))')"
    ppl="$("$build/tools/lq-eval" ppl --model "$dir" "${eval_args[@]}" --json 2>/dev/null | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')"
    printf '| %s | %s | %s | %.0f |\n' "$row" "$sizes" "$ppl" "$(echo "$t1 - $t0" | bc)"
done
