#!/usr/bin/env bash
# lq-run and lq-eval from the command line: stories260K greedy output equals llama2.c's sample
# byte for byte, the perplexity protocols give the known figures, and bad input gets a clear
# message and a non-zero exit, never a crash.
# Usage: cli_runtime.sh LQ_RUN LQ_EVAL SHARED_DATA_DIR   (exit 77 = skipped: no shared data)
set -u
run="$1"
eval_tool="$2"
data="$3"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
expected="$data/llama2c-stories260K/expected_greedy_t0.txt"
text="$data/tinystories/tinystories_val_a.txt"
if [ ! -r "$model" ] || [ ! -r "$tok" ] || [ ! -r "$text" ]; then
    echo "cli_runtime: shared data not found under $data: skipped"
    exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"

# ---- lq-run ------------------------------------------------------------------------------
"$run" --model "$model" --tokenizer "$tok" --temp 0 -n 256 >"$tmp/greedy.txt" 2>"$tmp/greedy.err" ||
    fail "greedy run: $(cat "$tmp/greedy.err")"
cmp -s "$tmp/greedy.txt" "$expected" || fail "greedy output differs from $expected"
grep -q "tokens/s" "$tmp/greedy.err" || fail "no speed report on stderr: $(cat "$tmp/greedy.err")"
# the prompt is echoed, then continued; the same seed gives the same sample
"$run" --model "$model" --tokenizer "$tok" --prompt "Once upon a time" --temp 0 -n 10 --quiet \
    >"$tmp/prompt.txt" 2>&1 || fail "prompt run"
grep -q "^Once upon a time, there was a little" "$tmp/prompt.txt" || fail "prompt run: $(cat "$tmp/prompt.txt")"
"$run" --model "$model" --tokenizer "$tok" --temp 0.8 --top-p 0.9 --seed 7 -n 40 --quiet >"$tmp/s1.txt" 2>&1 &&
    "$run" --model "$model" --tokenizer "$tok" --temp 0.8 --top-p 0.9 --seed 7 -n 40 --quiet >"$tmp/s2.txt" 2>&1 ||
    fail "sampled runs"
cmp -s "$tmp/s1.txt" "$tmp/s2.txt" || fail "the same --seed gave different samples"
[ "$(wc -c <"$tmp/s1.txt")" -gt 40 ] || fail "sampled run printed too little: $(cat "$tmp/s1.txt")"
"$run" --help | grep -q "usage: lq-run" || fail "--help"

expect "$run" 2 "--model is required" --
expect "$run" 2 "unknown option '--bogus'" -- --model "$model" --bogus
expect "$run" 2 "-n: 'abc' is not an integer" -- --model "$model" -n abc
expect "$run" 2 "--temp: '-1' is not a number" -- --model "$model" --temp -1
expect "$run" 2 "--top-p: '1.5' is not a number" -- --model "$model" --top-p 1.5
expect "$run" 2 "--seed needs a value" -- --model "$model" --seed
expect "$run" 1 "$tmp/nope.bin" -- --model "$tmp/nope.bin"
expect "$run" 1 "has no tokenizer" -- --model "$model"
expect "$run" 1 "$tmp/nope_tok.bin" -- --model "$model" --tokenizer "$tmp/nope_tok.bin"
head -c 5000 "$model" >"$tmp/truncated.bin"
expect "$run" 1 "truncated" -- --model "$tmp/truncated.bin" --tokenizer "$tok"
head -c 3000 "$tok" >"$tmp/tok_truncated.bin"
expect "$run" 1 "tok_truncated.bin: truncated at token" -- --model "$model" --tokenizer "$tmp/tok_truncated.bin"

# ---- lq-eval -----------------------------------------------------------------------------
# a few windows of in-domain text: perplexity in a sane range, every JSON key present
json="$("$eval_tool" ppl --model "$model" --tokenizer "$tok" --text "$text" --max-windows 3 --json 2>"$tmp/eval.err")" ||
    fail "lq-eval ppl: $(cat "$tmp/eval.err")"
for key in ppl nll tokens windows seconds tokens_per_second; do
    grep -q "\"$key\": " <<<"$json" || fail "lq-eval --json lacks $key: $json"
done
ppl="$(sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p' <<<"$json")"
awk -v p="$ppl" 'BEGIN { exit !(p > 2.5 && p < 6) }' || fail "ppl $ppl outside (2.5, 6): $json"
grep -q '"tokens": 1533, "windows": 3' <<<"$json" || fail "3 windows of 511 predicted tokens: $json"
# the reference figure of shared/data (numpy re-implementation of run.c): 46,829 tokens,
# NLL 1.3645 on the first 100,000 characters with paragraphs packed
ref="$("$eval_tool" ppl --model "$model" --tokenizer "$tok" --text "$text" --max-chars 100000 \
    --pack-paragraphs --json 2>&1)" || fail "lq-eval --pack-paragraphs: $ref"
grep -q '"nll": 1.3645[0-9]*, "tokens": 46829, "windows": 103' <<<"$ref" ||
    fail "reference protocol does not reproduce NLL 1.3645 over 46829 tokens: $ref"

: >"$tmp/empty.txt"
printf 'Once upon a time, there was a cat.\n' >"$tmp/short.txt"
"$eval_tool" --help | grep -q "usage: lq-eval" || fail "lq-eval --help"
expect "$eval_tool" 2 "usage:" --
expect "$eval_tool" 2 "unknown command 'frobnicate'" -- frobnicate
expect "$eval_tool" 2 "needs --model and --text" -- ppl --model "$model"
expect "$eval_tool" 2 "--ctx: '1' is not an integer" -- ppl --model "$model" --text "$text" --ctx 1
expect "$eval_tool" 2 "unknown option '--window'" -- ppl --model "$model" --text "$text" --window 3
expect "$eval_tool" 1 "empty.txt is empty" -- ppl --model "$model" --tokenizer "$tok" --text "$tmp/empty.txt"
expect "$eval_tool" 1 "shorter than one window: it has 12 tokens, a window of --ctx 512 needs 511 after BOS" -- \
    ppl --model "$model" --tokenizer "$tok" --text "$tmp/short.txt"
expect "$eval_tool" 1 "has no tokenizer" -- ppl --model "$model" --text "$text"
expect "$eval_tool" 1 "$tmp/missing.txt: cannot open" -- ppl --model "$model" --tokenizer "$tok" --text "$tmp/missing.txt"
expect "$eval_tool" 1 "--ctx 1024 exceeds the model's context length 512" -- \
    ppl --model "$model" --tokenizer "$tok" --text "$text" --ctx 1024

finish cli_runtime
