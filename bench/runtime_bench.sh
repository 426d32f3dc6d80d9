#!/usr/bin/env bash
# Runtime figures for docs/BENCHMARKS.md: perplexity and speed of the f32 runtime on the two
# real models. Usage: bench/runtime_bench.sh [SMOLLM2_WINDOWS]  (default 0 = the whole of
# wiki.test.raw; N = its first N windows of 512 tokens). Threads: LQ_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
windows="${1:-0}"
build="${LQ_BUILD:-build}"
data=../shared/data
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
bash tools/get_smollm2.sh
if [ -z "${LQ_BUILD:-}" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target lq-run lq-eval >/dev/null
fi
echo "# $(date -u +%FT%TZ), $(nproc) cores, LQ_THREADS=${LQ_THREADS:-default 2}"
echo "## stories260K, tinystories_val_a.txt, ctx 512"
"$build/tools/lq-eval" ppl --model $data/llama2c-stories260K/stories260K.bin \
  --tokenizer $data/llama2c-stories260K/tok512.bin --text $data/tinystories/tinystories_val_a.txt --json
echo "## stories260K, greedy generation of 256 tokens (speed on stderr)"
"$build/tools/lq-run" --model $data/llama2c-stories260K/stories260K.bin \
  --tokenizer $data/llama2c-stories260K/tok512.bin --temp 0 -n 256 >/dev/null
echo "## SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32), wiki.test.raw, ctx 512, windows: ${windows:-all}"
if [ "$windows" = 0 ]; then
  "$build/tools/lq-eval" ppl --model $smol --text $data/wikitext-2-raw/wiki.test.raw --ctx 512 --json
else
  "$build/tools/lq-eval" ppl --model $smol --text $data/wikitext-2-raw/wiki.test.raw --ctx 512 \
    --max-windows "$windows" --json
fi
echo "## SmolLM2: prefill of a 512-token prompt, then 128 decoded tokens (speed on stderr)"
prompt="$(head -c 2300 $data/wikitext-2-raw/wiki.test.raw | tr -d '\000')"
"$build/tools/lq-run" --model $smol --prompt "$prompt" -n 128 --temp 0 >/dev/null
