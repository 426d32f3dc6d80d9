#!/usr/bin/env bash
# lq-inspect, lq-eval and lq-run on a quantized model directory: stories260K with random but
# valid LiftQuant / RTN / GPTQ layers (written by `test_qformat --make-fixture DIR`). lq-inspect's
# table and JSON give the module list and totals that follow from the shapes, bad input gets a
# clear message and a non-zero exit; lq-eval and lq-run load the directory and run it.
# Usage: cli_qformat.sh TEST_QFORMAT LQ_INSPECT LQ_EVAL LQ_RUN SHARED_DATA_DIR  (77 = skipped)
set -u
make_fixture="$1"
inspect="$2"
eval_tool="$3"
run="$4"
data="$5"
text="$data/tinystories/tinystories_val_a.txt"
tok="$data/llama2c-stories260K/tok512.bin"
if [ ! -r "$data/llama2c-stories260K/stories260K.bin" ] || [ ! -r "$text" ]; then
    echo "cli_qformat: shared data not found under $data: skipped"
    exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"

q="$tmp/q"
"$make_fixture" --make-fixture "$q" || { echo "FAIL: cannot make the fixture"; exit 1; }

# ---- lq-inspect -------------------------------------------------------------------------------
"$inspect" "$q" >"$tmp/table.txt" 2>"$tmp/table.err" || fail "lq-inspect: $(cat "$tmp/table.err")"
# stories260K: 5 layers × (q 64×64, k 32×64, v 32×64, o 64×64, gate/up 172×64, down 64×172)
[ "$(grep -c '^model\.layers\.' "$tmp/table.txt")" -eq 35 ] || fail "35 module rows expected: $(cat "$tmp/table.txt")"
grep -qE '^model\.layers\.0\.self_attn\.q_proj +liftquant +24/10 +64x64 +1344 ' "$tmp/table.txt" ||
    fail "q_proj row (24/10, t1 = 7: 64 rows of 21 code bytes): $(head -3 "$tmp/table.txt")"
grep -qE '^model\.layers\.0\.self_attn\.o_proj +gptq +w4g32 act +64x64 +2048 +576 +5\.125$' "$tmp/table.txt" ||
    fail "o_proj row (4 bits: 2048 code bytes; scales 64×2×2 + zeros 64 + perm 256 = 576)"
grep -qE '^model\.layers\.0\.self_attn\.v_proj +rtn +w3g16 ' "$tmp/table.txt" || fail "v_proj row"
grep -q '^decoder-linear weights   226560 in 35 modules$' "$tmp/table.txt" || fail "weight total"
grep -q '^bits per weight  .* codes only, .* with side data' "$tmp/table.txt" || fail "bits per weight line"
size="$(stat -c %s "$q/model.safetensors")"
grep -q "^model.safetensors        $size bytes$" "$tmp/table.txt" || fail "file size $size not reported"

json="$("$inspect" "$q" --json 2>&1)" || fail "lq-inspect --json: $json"
[ "$(grep -o '"name": ' <<<"$json" | wc -l)" -eq 35 ] || fail "--json: 35 modules expected"
for key in decoder_linear_weights code_bytes side_bytes lattice_bytes bits_per_weight_codes \
           bits_per_weight_with_side unquantized_bytes file_bytes; do
    grep -q "\"$key\": " <<<"$json" || fail "--json lacks $key"
done
grep -q "\"file_bytes\": $size}" <<<"$json" || fail "--json file_bytes is not $size"
grep -q '"lattice_bytes": 1152,' <<<"$json" || fail "lattices 24/10 and 12/4: (240 + 48) × 4 bytes"
# the totals are consistent: bits = 8 · bytes / weights
totals="$(grep -o '"totals": {.*}' <<<"$json")"
num() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$totals"; }
awk -v w="$(num decoder_linear_weights)" -v c="$(num code_bytes)" -v s="$(num side_bytes)" \
    -v bc="$(num bits_per_weight_codes)" -v bs="$(num bits_per_weight_with_side)" \
    -v u="$(num unquantized_bytes)" -v f="$(num file_bytes)" \
    'BEGIN { ok = (w == 226560) && (bc - 8 * c / w)^2 < 1e-10 && (bs - 8 * (c + s) / w)^2 < 1e-10 \
                  && c + s + u < f; exit !ok }' || fail "inconsistent totals: $totals"

"$inspect" --help | grep -q "usage: lq-inspect" || fail "--help"
expect "$inspect" 2 "no directory given" --
expect "$inspect" 2 "unknown option '--bogus'" -- "$q" --bogus
expect "$inspect" 2 "one directory at a time" -- "$q" "$q"
expect "$inspect" 1 "$tmp/nope: no such directory" -- "$tmp/nope"
mkdir "$tmp/plain" && echo '{"model_type": "llama"}' >"$tmp/plain/config.json"
expect "$inspect" 1 "not a liftquant output" -- "$tmp/plain"
mkdir "$tmp/broken" && cp "$q"/* "$tmp/broken/"
head -c 50000 "$q/model.safetensors" >"$tmp/broken/model.safetensors"
expect "$inspect" 1 "$tmp/broken/model.safetensors" -- "$tmp/broken"

# ---- lq-eval and lq-run on the directory ------------------------------------------------------
ev="$("$eval_tool" ppl --model "$q" --text "$text" --max-windows 2 --json 2>"$tmp/eval.err")" ||
    fail "lq-eval on the quantized directory: $(cat "$tmp/eval.err")"
grep -q '"tokens": 1022, "windows": 2' <<<"$ev" || fail "lq-eval: 2 windows of 511 tokens: $ev"
ppl="$(sed -n 's/.*"ppl": \([0-9.e+]*\).*/\1/p' <<<"$ev")"
awk -v p="$ppl" 'BEGIN { exit !(p > 1 && p < 1e9) }' || fail "ppl '$ppl' is not a finite figure: $ev"
# the same fixture written again evaluates to the same figure
"$make_fixture" --make-fixture "$tmp/q2" || fail "second fixture"
ev2="$("$eval_tool" ppl --model "$tmp/q2" --text "$text" --max-windows 2 --json 2>&1)" || fail "lq-eval q2: $ev2"
nll() { sed -n 's/.*"nll": \([0-9.e+-]*\).*/\1/p' <<<"$1"; }
[ -n "$(nll "$ev")" ] && [ "$(nll "$ev")" = "$(nll "$ev2")" ] || fail "same model, different NLL: $ev / $ev2"
expect "$eval_tool" 1 "carries its own" -- ppl --model "$q" --tokenizer "$tok" --text "$text"
expect "$eval_tool" 1 "$tmp/broken/model.safetensors" -- ppl --model "$tmp/broken" --text "$text"

out="$("$run" --model "$q" --prompt "Once upon a time" --temp 0 -n 12 --quiet 2>"$tmp/run.err")" ||
    fail "lq-run on the quantized directory: $(cat "$tmp/run.err")"
grep -q "^Once upon a time" <<<"$out" || fail "lq-run did not echo the prompt: $out"
[ "${#out}" -gt 16 ] || fail "lq-run generated nothing: $out"
expect "$run" 1 "$tmp/broken/model.safetensors" -- --model "$tmp/broken"

finish cli_qformat
