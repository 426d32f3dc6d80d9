"""llama.cpp beside liftquant on the same windows: called by bench/peer_llamacpp.sh.

Perplexity through llama-cpp-python's API by lq-eval's protocol (docs/EVAL.md): the whole
text tokenized once, no BOS, no special tokens; consecutive full windows of --ctx tokens, each
from an empty KV cache; every token after a window's first is scored, the NLL computed in
double. The liftquant rows are measured by lq-eval and lq-inspect in the same run.
Bits per weight count the decoder-layer linears (q, k, v, o, gate, up, down) as lq-inspect
does: their stored bytes, scales included, over their weights.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from gguf import GGUFReader

import llama_cpp

LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def gguf_linear_bits(path):
    """(bits per weight of the decoder linears, their bytes, "TYPE ×count, ..." of them)."""
    reader = GGUFReader(path)
    bits = weights = 0
    kinds = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in LINEARS:
            bits += int(t.n_bytes) * 8
            weights += int(t.n_elements)
            kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    if weights == 0:
        raise SystemExit(f"peer: {path}: no decoder-layer linear tensors found")
    return bits / weights, bits // 8, ", ".join(f"{k} ×{v}" for k, v in sorted(kinds.items()))


def llamacpp_perplexity(path, tokens, ctx, max_windows, threads):
    llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, verbose=False)
    windows = min(len(tokens) // ctx, max_windows) if max_windows > 0 else len(tokens) // ctx
    nll = 0.0
    count = 0
    seconds = 0.0
    for w in range(windows):
        window = tokens[w * ctx:(w + 1) * ctx]
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(window)
        seconds += time.perf_counter() - t0
        logits = np.asarray(llm.scores[:ctx - 1], dtype=np.float64)
        top = logits.max(axis=1)
        lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        nll += float((lse - logits[np.arange(ctx - 1), window[1:]]).sum())
        count += ctx - 1
    del llm
    return float(np.exp(nll / count)), count, seconds


def lq_json(build, tool, args):
    out = subprocess.run([os.path.join(build, "tools", tool), *args, "--json"], check=True,
                         capture_output=True, text=True, env={**os.environ, "LQ_THREADS": "2"})
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lq-build", required=True)
    ap.add_argument("--source", required=True, help="the FP GGUF both runtimes start from")
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-windows", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", nargs="*", default=[])
    ap.add_argument("--lq-dirs", nargs="*", default=[])
    a = ap.parse_args()

    with open(a.text, "rb") as f:
        text = f.read()
    vocab = llama_cpp.Llama(model_path=a.source, vocab_only=True, verbose=False)
    tokens = vocab.tokenize(text, add_bos=False, special=False)
    del vocab
    print(f"# {os.path.basename(a.text)}: {len(tokens)} tokens by llama.cpp's tokenizer; ctx {a.ctx}, "
          f"first {a.max_windows} windows; llama-cpp-python {llama_cpp.__version__}, {a.threads} threads",
          flush=True)

    lq_fp = lq_json(a.lq_build, "lq-eval", ["ppl", "--model", a.source, "--text", a.text,
                                           "--ctx", str(a.ctx), "--max-windows", str(a.max_windows)])
    cpp_fp, count, secs = llamacpp_perplexity(a.source, tokens, a.ctx, a.max_windows, a.threads)
    print(f"# FP (the source Q4_1, dequantized by lq-eval): lq-eval {lq_fp['ppl']:.4f} over {lq_fp['tokens']} "
          f"tokens; llama.cpp {cpp_fp:.4f} over {count} tokens ({count / secs:.0f} tokens/s)", flush=True)
    print("| runtime | model | decoder-linear bits/weight | decoder-linear bytes | linear types | file bytes "
          "| PPL | vs its runtime's FP |")
    print("|---|---|---|---|---|---|---|---|")
    bpw, nbytes, kinds = gguf_linear_bits(a.source)
    print(f"| llama.cpp | FP (source) | {bpw:.3f} | {nbytes:,} | {kinds} | {os.path.getsize(a.source):,} "
          f"| {cpp_fp:.4f} | 1 |")
    print(f"| liftquant | FP (f32) | 32 | — | — | — | {lq_fp['ppl']:.4f} | 1 |", flush=True)
    for path in a.gguf:
        bpw, nbytes, kinds = gguf_linear_bits(path)
        ppl, _, _ = llamacpp_perplexity(path, tokens, a.ctx, a.max_windows, a.threads)
        name = os.path.basename(path).removesuffix(".gguf")
        print(f"| llama.cpp | {name} | {bpw:.3f} | {nbytes:,} | {kinds} | {os.path.getsize(path):,} "
              f"| {ppl:.4f} | {ppl / cpp_fp:.3f} |", flush=True)
    for d in a.lq_dirs:
        totals = lq_json(a.lq_build, "lq-inspect", [d])["totals"]
        ppl = lq_json(a.lq_build, "lq-eval", ["ppl", "--model", d, "--text", a.text, "--ctx", str(a.ctx),
                                              "--max-windows", str(a.max_windows)])["ppl"]
        print(f"| liftquant | {os.path.basename(os.path.normpath(d))} | {totals['bits_per_weight_with_side']:.3f} "
              f"| {totals['code_bytes'] + totals['side_bytes']:,} | LiftQuant | {totals['file_bytes']:,} "
              f"| {ppl:.4f} | {ppl / lq_fp['ppl']:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
