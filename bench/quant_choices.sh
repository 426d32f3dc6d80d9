#!/usr/bin/env bash
# The measured choices of docs/QUANTIZE.md: LiftQuant variants (LDLQ, a1, correction, steps,
# learning rate, calibration size, propagation, transform seed, damping) and GPTQ 3/4 on
# stories260K, each quantized by lq-quantize and evaluated by lq-eval.
#   bench/quant_choices.sh BUILD_DIR
# Calibration: 64 x 256 tokens of tinystories_val_a.txt after its first 100,000 bytes.
# Evaluation: its first 100,000 bytes, default protocol, ctx 256 (FP 4.638).
# Every row propagates the quantized stream (--propagate quant) unless it says otherwise: the
# table was measured before asym became lq-quantize's default.
set -euo pipefail
build="${1:?usage: quant_choices.sh BUILD_DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$here/../shared/data"
tmp="$(mktemp -d /tmp/lq_quant_choices.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
text="$data/tinystories/tinystories_val_a.txt"
tail -c +100001 "$text" > "$tmp/calib.txt"
head -c 100000 "$text" > "$tmp/eval.txt"
model=(--model "$data/llama2c-stories260K/stories260K.bin" --tokenizer "$data/llama2c-stories260K/tok512.bin")

ppl() { "$build/tools/lq-eval" ppl "$@" --text "$tmp/eval.txt" --ctx 256 --json 2>/dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }

echo "| variant | mean rel. output error | PPL |"
echo "|---|---|---|"
echo "| FP | — | $(ppl "${model[@]}") |"
while IFS= read -r args; do
    [ -n "$args" ] || continue
    # shellcheck disable=SC2086
    line="$("$build/tools/lq-quantize" "${model[@]}" --calib "$tmp/calib.txt" --nsamples 64 \
            --seqlen 256 --propagate quant $args --out "$tmp/q" 2>/dev/null | tail -1)"
    err="$(sed -n 's/.*linears \([0-9.]*\)$/\1/p' <<<"$line")"
    echo "| $args | $err | $(ppl --model "$tmp/q") |"
    rm -rf "$tmp/q"
done <<'ROWS'
--config 16/8 --no-ldlq --no-a1 --steps 0
--config 16/8 --no-a1 --steps 0
--config 16/8 --steps 0
--config 16/8
--config 24/10 --steps 0
--config 24/10
--config 24/10 --nsamples 128
--config 24/10 --no-a1
--config 24/10 --propagate fp
--config 24/10 --steps 300
--config 24/10 --steps 300 --train-bits
--config 24/10 --steps 200 --lr 0.003
--config 24/10 --steps 200 --lr 0.01
--config 24/10 --steps 200 --lr 0.03
--config 24/10 --transform-seed 1
--config 24/10 --transform-seed 2
--config 24/10 --transform-seed 3
--config 24/10 --damp 0.001
--config 24/10 --damp 0.1
--method gptq --bits 3
--method gptq --bits 4
ROWS
