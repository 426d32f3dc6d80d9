#!/usr/bin/env bash
# llama.cpp as a peer, side by side with liftquant on the same tokens: SmolLM2-135M requantized
# by llama.cpp (with and without an importance matrix from wiki.valid.raw), every file's true
# bits per weight over the decoder linears, and perplexity over the same wiki.test.raw windows
# as lq-eval (docs/EVAL.md), each runtime's figure next to its own FP.
#
#   bench/peer_llamacpp.sh BUILD_DIR [LQ_DIR ...]
#
# BUILD_DIR is liftquant's build (lq-eval, lq-inspect); each LQ_DIR, a directory lq-quantize
# wrote, is evaluated in the same run. Environment: TYPES (llama.cpp quantization types,
# default below), MODES (imatrix, plain or both; default "imatrix plain"), MAX_WINDOWS (eval
# windows of 512 tokens, default 40), CHUNKS (imatrix windows of 512 tokens of
# wiki.valid.raw, default 64: lq-quantize's calibration size in
# docs/BENCHMARKS.md §3), PEER_DIR (where llama.cpp is built and the files go; default
# build-peer/, git-ignored). Threads: 2 for both runtimes.
#
# GGML_NATIVE is off: on this machine's virtual CPU it enables AMX and AVX-512 kernels that
# stop with an illegal instruction; AVX2 + FMA is what liftquant's own kernels use.
# llama.cpp comes from the source distribution of the PyPI package llama-cpp-python (pinned):
# its vendored llama.cpp is built once as shared libraries plus the llama-quantize and
# llama-imatrix tools, and the package's own Python bindings (ctypes, from the same sdist)
# load those libraries, so the logits come through its API. Nothing is vendored here.
set -euo pipefail
build="$(cd "${1:?usage: peer_llamacpp.sh BUILD_DIR [LQ_DIR ...]}" && pwd)"
shift
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${LQ_SHARED_DATA:-$here/../shared/data}"
peer="${PEER_DIR:-$here/build-peer}"
version=0.3.36
src="$peer/llama_cpp_python-$version"
cpp="$peer/llama.cpp-build"
model="$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
types="${TYPES:-Q4_0 Q4_K_M Q3_K_S Q2_K IQ4_XS IQ3_XXS IQ2_M}"
mkdir -p "$peer"
[ -f "$model" ] || bash "$here/tools/get_smollm2.sh"

if [ ! -d "$src" ]; then
    echo "peer: fetching the llama-cpp-python $version source distribution" >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$peer" "llama-cpp-python==$version"
    tar -xzf "$peer/llama_cpp_python-$version.tar.gz" -C "$peer"
fi
if [ ! -x "$cpp/bin/llama-quantize" ] || [ ! -x "$cpp/bin/llama-imatrix" ]; then
    echo "peer: building llama.cpp (shared libraries, llama-quantize, llama-imatrix)" >&2
    cmake -S "$src/vendor/llama.cpp" -B "$cpp" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$peer/cmake.log"
    cmake --build "$cpp" -j "$(nproc)" --target llama llama-quantize llama-imatrix > "$peer/build.log"
fi
if [ ! -x "$peer/venv/bin/python" ]; then
    python3 -m venv "$peer/venv"
    "$peer/venv/bin/python" -m pip install --quiet numpy==2.2.6 gguf==0.17.1 typing-extensions \
        diskcache jinja2
fi

# the importance matrix: llama.cpp's calibration, on the text lq-quantize calibrates on
imatrix="$peer/imatrix-wiki-valid-${CHUNKS:-64}x512.gguf"
if [ ! -f "$imatrix" ]; then
    echo "peer: importance matrix over ${CHUNKS:-64} x 512 tokens of wiki.valid.raw" >&2
    "$cpp/bin/llama-imatrix" -m "$model" -f "$data/wikitext-2-raw/wiki.valid.raw" -c 512 \
        --chunks "${CHUNKS:-64}" -t 2 -o "$imatrix" > "$peer/imatrix.log" 2>&1
fi
files=()
for t in $types; do
    for mode in ${MODES:-imatrix plain}; do
        out="$peer/smollm2-$t-$mode.gguf"
        if [ ! -f "$out" ]; then
            args=(--allow-requantize)
            [ "$mode" = plain ] || args+=(--imatrix "$imatrix")
            "$cpp/bin/llama-quantize" "${args[@]}" "$model" "$out.tmp" "$t" 2 > "$peer/quantize-$t-$mode.log" 2>&1 || {
                echo "peer: llama-quantize $t ($mode) failed: $(tail -1 "$peer/quantize-$t-$mode.log")" >&2; continue; }
            mv "$out.tmp" "$out"
        fi
        files+=("$out")
    done
done

PYTHONPATH="$src" LLAMA_CPP_LIB_PATH="$cpp/bin" "$peer/venv/bin/python" "$here/bench/peer_llamacpp.py" \
    --lq-build "$build" --source "$model" --text "$data/wikitext-2-raw/wiki.test.raw" \
    --max-windows "${MAX_WINDOWS:-40}" --gguf "${files[@]}" --lq-dirs "$@"
