#!/usr/bin/env bash
# SmolLM2-135M (GGUF, GPT-2 BPE, GQA, tied embeddings) through the tools end to end: greedy
# generation answers a factual prompt, and one wiki.test window has a sane perplexity.
# Usage: cli_smollm2.sh LQ_RUN LQ_EVAL MODEL WIKI_TEST
set -u
run="$1" eval="$2" model="$3" text="$4"
source "$(dirname "$0")/cli_lib.sh"
[ -f "$model" ] || { fail "$model missing (tools/get_smollm2.sh fetches it)"; exit 1; }

out="$("$run" --model "$model" --prompt "The capital of France is" -n 8 --temp 0 2>/dev/null)"
grep -q "Paris" <<<"$out" || fail "greedy answer: $out"

json="$("$eval" ppl --model "$model" --text "$text" --ctx 256 --max-windows 1 --json 2>/dev/null)"
python3 - "$json" <<'PY' || fail "perplexity check"
import json, sys
r = json.loads(sys.argv[1])
# FP SmolLM2-135M sits near 20-30 on wikitext at short context; a broken tokenizer or
# forward pass lands in the hundreds or thousands
assert 8 < r["ppl"] < 60, "ppl %s out of range" % r["ppl"]
assert r["tokens"] == 255 and r["windows"] == 1, r
PY
finish cli_smollm2
