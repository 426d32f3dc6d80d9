#!/usr/bin/env bash
# lq-quantize end to end on stories260K: quantize → save → load → evaluate for LiftQuant and
# the GPTQ and RTN baselines, lq-inspect's accounting, generation from a quantized directory,
# and the bad inputs the issue lists (unknown config, lattice missing, no calibration text)
# each with a clear message and a non-zero exit.
# Usage: cli_quantize.sh LQ_QUANTIZE LQ_EVAL LQ_RUN LQ_INSPECT SHARED_DATA_DIR
set -u
quantize="$1"
eval_tool="$2"
run="$3"
inspect="$4"
data="$5"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"
export OMP_WAIT_POLICY=passive

# calibration and evaluation text never overlap
tail -c +100001 "$text" > "$tmp/calib.txt"
head -c 20000 "$text" > "$tmp/eval.txt"
small=(--nsamples 8 --seqlen 128)

ppl_of() { "$eval_tool" ppl "$@" --text "$tmp/eval.txt" --ctx 256 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }

fp="$(ppl_of --model "$model" --tokenizer "$tok")" || fail "FP eval"

# ---- LiftQuant 16/8: the round trip ----------------------------------------------------------
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --propagate quant --out "$tmp/lq" >"$tmp/lq.out" 2>"$tmp/lq.err" ||
    fail "liftquant 16/8: $(cat "$tmp/lq.err")"
grep -q "linears" "$tmp/lq.err" || fail "no progress on stderr: $(cat "$tmp/lq.err")"
[ -d "$tmp/lq.tmp" ] && fail "temporary directory left behind"
lq="$(ppl_of --model "$tmp/lq")" || fail "eval of the quantized directory"
echo "FP ppl $fp, LiftQuant 16/8 ppl $lq"
# 2 bits per weight on a 260K-parameter model costs perplexity, but it must stay a language
# model: far below the 512-token vocabulary's uniform perplexity
python3 -c "import sys; fp, q = $fp, $lq; sys.exit(0 if fp < q < 8 * fp else 1)" ||
    fail "LiftQuant 16/8 ppl $lq out of the expected range for FP $fp"
"$inspect" "$tmp/lq" >"$tmp/inspect.txt" 2>&1 || fail "lq-inspect: $(cat "$tmp/inspect.txt")"
grep -q "model.layers.0.self_attn.q_proj" "$tmp/inspect.txt" || fail "lq-inspect lists no modules"
grep -q "16/8" "$tmp/inspect.txt" || fail "lq-inspect does not show the config"
"$run" --model "$tmp/lq" --temp 0 -n 32 >"$tmp/gen.txt" 2>"$tmp/gen.err" || fail "lq-run: $(cat "$tmp/gen.err")"
[ -s "$tmp/gen.txt" ] || fail "lq-run printed nothing"
# the same command on one thread gives the same bytes and the same per-module errors (a job
# requeued onto a node with fewer cores must not change the model); only the timing differs
LQ_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    "$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --propagate quant --out "$tmp/lq2" >/dev/null 2>&1 || fail "second run"
cmp -s "$tmp/lq/model.safetensors" "$tmp/lq2/model.safetensors" || fail "runs on 2 and 1 threads differ"
python3 - "$tmp/lq/config.json" "$tmp/lq2/config.json" <<'PY' || fail "config.json differs between 2 and 1 threads"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for c in (a, b):
    c["quantization_config"].pop("quantize_seconds")
if a != b:
    sys.exit(1)
PY

# ---- --propagate asym (the default): FP targets for quantized inputs ---------------------------
# Layer 0's q/k/v see the embeddings in both streams, so their target is W itself and they
# must come out exactly as in the run above; o_proj's input already carries q/k/v's error, so
# its fit (and error figure) must differ. No --propagate: the default must be asym.
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --out "$tmp/asym" >/dev/null 2>"$tmp/asym.err" ||
    fail "liftquant 16/8 (default --propagate asym): $(cat "$tmp/asym.err")"
python3 - "$tmp/lq/config.json" "$tmp/asym/config.json" <<'PY' || fail "asym against quant: see above"
import json, sys
q, a = (json.load(open(p))["quantization_config"] for p in sys.argv[1:])
assert a["calibration"]["propagate"] == "asym", a["calibration"]
eq, ea = q["relative_output_error"], a["relative_output_error"]
for m in ("q_proj", "k_proj", "v_proj"):
    k = "model.layers.0.self_attn." + m
    assert ea[k] == eq[k], (k, ea[k], eq[k])
k = "model.layers.0.self_attn.o_proj"
assert ea[k] != eq[k], (k, ea[k])
PY
asym="$(ppl_of --model "$tmp/asym")" || fail "eval of the asym directory"
echo "LiftQuant 16/8 --propagate asym ppl $asym"
python3 -c "import sys; fp, q = $fp, $asym; sys.exit(0 if fp < q < 8 * fp else 1)" ||
    fail "LiftQuant 16/8 asym ppl $asym out of the expected range for FP $fp"
# --asym-alpha 1 applies the whole correction, the default half of it: q/k/v still as above,
# o_proj's fit a third one
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --propagate asym --asym-alpha 1 --out "$tmp/asym_whole" >/dev/null \
    2>"$tmp/asym_whole.err" || fail "liftquant 16/8 --asym-alpha 1: $(cat "$tmp/asym_whole.err")"
python3 - "$tmp/lq/config.json" "$tmp/asym_whole/config.json" "$tmp/asym/config.json" <<'PY' || fail "--asym-alpha 1 against the default 0.5 and quant: see above"
import json, sys
q, a, h = (json.load(open(p))["quantization_config"] for p in sys.argv[1:])
assert h["calibration"]["asym_alpha"] == 0.5 and a["calibration"]["asym_alpha"] == 1.0, h["calibration"]
eq, ea, eh = (c["relative_output_error"] for c in (q, a, h))
for m in ("q_proj", "k_proj", "v_proj"):
    k = "model.layers.0.self_attn." + m
    assert eh[k] == eq[k], (k, eh[k], eq[k])
k = "model.layers.0.self_attn.o_proj"
assert eh[k] != ea[k] and eh[k] != eq[k], (k, eh[k], ea[k], eq[k])
PY

# ---- baselines through the same tool and runtime ------------------------------------------
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --method gptq --bits 4 --out "$tmp/gptq4" >/dev/null 2>"$tmp/gptq.err" || fail "gptq: $(cat "$tmp/gptq.err")"
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --method rtn --bits 4 --out "$tmp/rtn4" >/dev/null 2>"$tmp/rtn.err" || fail "rtn: $(cat "$tmp/rtn.err")"
g4="$(ppl_of --model "$tmp/gptq4")" || fail "eval gptq4"
r4="$(ppl_of --model "$tmp/rtn4")" || fail "eval rtn4"
echo "GPTQ-4 ppl $g4, RTN-4 ppl $r4"
python3 -c "import sys; fp, g, r = $fp, $g4, $r4; sys.exit(0 if fp < g < 1.5 * fp and fp < r < 2 * fp else 1)" ||
    fail "4-bit baselines out of range: gptq $g4 rtn $r4 (FP $fp)"

# ---- --block-steps: per-block reconstruction after the per-linear correction ------------------
# Every layer logs its output error before and after; the fit is kept only when it helps, so a
# wrong gradient anywhere in the layer's backward pass shows up as "not kept" (or no gain).
# With quant the target is the FP layer on the same inputs, so the error is the layer's own
# (asym's also holds what the residual stream carries in, which no weight here can remove).
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --propagate quant --block-steps 16 --out "$tmp/block" >/dev/null 2>"$tmp/block.err" ||
    fail "liftquant 16/8 --block-steps 16: $(cat "$tmp/block.err")"
python3 - "$tmp/block.err" "$tmp/block/config.json" <<'PY' || fail "--block-steps: see above"
import json, re, sys
log = open(sys.argv[1], errors="replace").read()
lines = re.findall(r"layer (\d+): per-block correction, relative output error ([0-9.]+) -> ([0-9.]+) \(16 steps", log)
assert [int(l) for l, _, _ in lines] == list(range(5)), lines
assert "not kept" not in log, log
for l, before, after in lines:
    assert float(after) < 0.95 * float(before), (l, before, after)
q = json.load(open(sys.argv[2]))["quantization_config"]
assert q["liftquant"]["block_correction_steps"] == 16, q["liftquant"]
PY
cmp -s "$tmp/lq/model.safetensors" "$tmp/block/model.safetensors" && fail "--block-steps changed nothing"
LQ_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    "$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" "${small[@]}" \
    --config 16/8 --steps 20 --propagate quant --block-steps 16 --out "$tmp/block1" >/dev/null 2>&1 ||
    fail "--block-steps on one thread"
cmp -s "$tmp/block/model.safetensors" "$tmp/block1/model.safetensors" || fail "--block-steps: 2 and 1 threads differ"
block="$(ppl_of --model "$tmp/block")" || fail "eval of the --block-steps directory"
echo "LiftQuant 16/8 --block-steps 16 ppl $block"
python3 -c "import sys; fp, q = $fp, $block; sys.exit(0 if fp < q < 8 * fp else 1)" ||
    fail "LiftQuant 16/8 --block-steps ppl $block out of the expected range for FP $fp"

# ---- bad inputs ------------------------------------------------------------------------------
expect "$quantize" 2 "no lattice file" -- --model "$model" --tokenizer "$tok" --config 19/7 --out "$tmp/x"
expect "$quantize" 2 "no lattice file" -- --model "$model" --tokenizer "$tok" --config 16/8 --lattices "$tmp/none" --out "$tmp/x"
expect "$quantize" 2 "--config" -- --model "$model" --tokenizer "$tok" --config 8/16 --out "$tmp/x"
expect "$quantize" 2 "--asym-alpha" -- --model "$model" --tokenizer "$tok" --propagate asym --asym-alpha 1.5 --out "$tmp/x"
expect "$quantize" 2 "applies to --method liftquant only" -- --model "$model" --tokenizer "$tok" --method gptq --bits 3 --block-steps 4 --out "$tmp/x"
expect "$quantize" 2 "--block-steps: '-1' is not an integer" -- --model "$model" --tokenizer "$tok" --block-steps -1 --out "$tmp/x"
expect "$quantize" 2 "applies to --propagate asym only" -- --model "$model" --tokenizer "$tok" --propagate quant --asym-alpha 0.5 --out "$tmp/x"
expect "$quantize" 1 "calibration text not found" -- --model "$model" --tokenizer "$tok" --calib "$tmp/none.txt" --out "$tmp/x"
expect "$quantize" 1 "needs a tokenizer" -- --model "$model" --calib "$tmp/calib.txt" --out "$tmp/x"
expect "$quantize" 2 "unknown" -- --model "$model" --tokenizer "$tok" --method awq --out "$tmp/x"
expect "$quantize" 2 "--bits" -- --model "$model" --tokenizer "$tok" --method gptq --out "$tmp/x"
expect "$quantize" 2 "--encoder" -- --model "$model" --tokenizer "$tok" --encoder fast --out "$tmp/x"
expect "$quantize" 2 "required" -- --model "$model"
expect "$quantize" 2 "--propagate sideways" -- --model "$model" --tokenizer "$tok" --propagate sideways --out "$tmp/x"
expect "$quantize" 2 "--damp: 'x' is not a number" -- --model "$model" --tokenizer "$tok" --method gptq --bits 3 --damp x --out "$tmp/x"
expect "$quantize" 2 "--nsamples: '0' is not an integer" -- --model "$model" --tokenizer "$tok" --nsamples 0 --out "$tmp/x"
expect "$quantize" 2 "unknown argument '--bogus'" -- --model "$model" --bogus
expect "$quantize" 2 "--lr: '2' is not a number" -- --model "$model" --tokenizer "$tok" --lr 2 --out "$tmp/x"
expect "$quantize" 2 "--transform-seed: '-1' is not an integer" -- --model "$model" --tokenizer "$tok" --transform-seed -1 --out "$tmp/x"
: > "$tmp/empty.txt"
mkdir -p "$tmp/emptydir"
expect "$quantize" 1 "no calibration text" -- --model "$model" --tokenizer "$tok" --calib "$tmp/emptydir" --out "$tmp/x"
expect "$quantize" 1 "fewer than one window" -- --model "$model" --tokenizer "$tok" --calib "$tmp/empty.txt" --out "$tmp/x"
[ -e "$tmp/x" ] && fail "a failed run left an output directory"
"$quantize" --help | grep -q -- "--config" || fail "--help"

finish cli_quantize
