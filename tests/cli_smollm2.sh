#!/usr/bin/env bash
# SmolLM2-135M (GGUF, GPT-2 BPE, GQA, tied embeddings) through the tools end to end: greedy
# generation answers a factual prompt, and one wiki.test window has a sane perplexity.
# Usage: cli_smollm2.sh LQ_RUN LQ_EVAL MODEL WIKI_TEST
set -u
run="$1" eval="$2" model="$3" text="$4"
failures=0
[ -f "$model" ] || { echo "FAIL: $model missing (tools/get_smollm2.sh fetches it)"; exit 1; }

out="$("$run" --model "$model" --prompt "The capital of France is" -n 8 --temp 0 2>/dev/null)"
grep -q "Paris" <<<"$out" || { echo "FAIL: greedy answer: $out"; failures=$((failures + 1)); }

json="$("$eval" ppl --model "$model" --text "$text" --ctx 256 --max-windows 1 --json 2>/dev/null)"
python3 - "$json" <<'PY' || failures=$((failures + 1))
import json, sys
r = json.loads(sys.argv[1])
# FP SmolLM2-135M sits near 20-30 on wikitext at short context; a broken tokenizer or
# forward pass lands in the hundreds or thousands
assert 8 < r["ppl"] < 60, "ppl %s out of range" % r["ppl"]
assert r["tokens"] == 255 and r["windows"] == 1, r
PY
[ "$failures" -eq 0 ] && echo "cli_smollm2: all checks passed" || { echo "$failures failure(s)"; exit 1; }
