#!/usr/bin/env python3
"""Writes the GGUF fixtures that tests/test_gguf.c reads (committed under tests/data/).

    python3 tests/make_gguf_fixtures.py [OUTDIR]      (default: tests/data next to this file)

Needs numpy and the `gguf` package from PyPI (`pip install gguf`; made with gguf 0.19.0).
The fixtures are committed so that the C tests need neither Python nor the network; rerun this
script only to change them. The output is deterministic (fixed seeds).

gguf_quants.gguf — written by gguf.GGUFWriter, so it also checks that our reader agrees with
the reference writer on the container format. It holds:
  * for each ggml type T below, a tensor "T" (numpy shape (2, cols), i.e. ggml ne = [cols, 2])
    and "T.expected", its dequantization as F32, computed by the gguf package itself
    (gguf.quants.dequantize). Where gguf.quants can quantize the type (F16, BF16, Q4_0, Q4_1,
    Q5_0, Q5_1, Q8_0) the data is random normal values quantized by gguf.quants.quantize; for
    the K types, which it can only dequantize, the blocks are random bytes with finite random
    f16 scales. Q8_K has no dequantizer in the package; its expected values are computed here
    from the layout (f32 d, 256 int8, 16 int16 sums: value = d * q).
  * "dims3" (numpy (2, 3, 4)) and "dims4" (numpy (2, 1, 3, 32)) F32 tensors with values
    0, 1, 2, ... to check the ggml dimension order.
  * metadata of every value type under "test.*", read back by the tests.

gguf_tiny_llama.gguf — a two-layer llama-architecture model (dim 32, 4 heads, 2 KV heads,
hidden 64, untied output) with a byte-level GPT-2 tokenizer of 256 byte tokens, a few merges
and two control tokens, laid out with the keys and names llama.cpp's converter writes.
Weights are Q8_0 / F16 / F32 mixed.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))


def random_f16(rng, n, scale):
    """n finite f16 values (as uint8 pairs) uniform in ±scale."""
    return (rng.uniform(-scale, scale, size=n).astype(np.float16)).view(np.uint8).reshape(n, 2)


def k_blocks(rng, qtype, n_blocks):
    """Random raw blocks of a K type with finite random scales in the f16/f32 fields."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == T.Q2_K:          # scales[16] qs[64] d dmin
        b[:, 80:82] = random_f16(rng, n_blocks, 0.05)
        b[:, 82:84] = random_f16(rng, n_blocks, 0.05)
    elif qtype == T.Q3_K:        # hmask[32] qs[64] scales[12] d
        b[:, 108:110] = random_f16(rng, n_blocks, 0.05)
    elif qtype in (T.Q4_K, T.Q5_K):  # d dmin scales[12] (qh[32]) qs[128]
        b[:, 0:2] = random_f16(rng, n_blocks, 0.05)
        b[:, 2:4] = random_f16(rng, n_blocks, 0.05)
    elif qtype == T.Q6_K:        # ql[128] qh[64] scales[16] d
        b[:, 208:210] = random_f16(rng, n_blocks, 0.05)
    elif qtype == T.Q8_K:        # f32 d, qs[256], bsums[16]
        b[:, 0:4] = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
    else:
        raise ValueError(qtype)
    return b


def q8_k_dequantize(blocks):
    d = blocks[:, 0:4].copy().view(np.float32).astype(np.float32)
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return d * q


def write_quants(path):
    rng = np.random.default_rng(20240601)
    w = gguf.GGUFWriter(path, arch="test")
    rows = 2
    for qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K):
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        cols = 256 if block == 256 else 64
        name = qtype.name
        if block == 256:
            raw = k_blocks(rng, qtype, rows * cols // 256).reshape(rows, -1)
            if qtype == T.Q8_K:
                expected = q8_k_dequantize(raw.reshape(-1, type_size)).reshape(rows, cols)
            else:
                expected = gguf.quants.dequantize(raw, qtype)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        else:
            data = rng.standard_normal((rows, cols)).astype(np.float32)
            if block == 32:
                data[1, :32] = 0.0       # an all-zero block (d = 0)
            data[0, 3] = 4.0             # an outlier that sets a block's scale
            if qtype == T.F32:
                q = data
                w.add_tensor(name, q)
            elif qtype == T.F16:
                q = data.astype(np.float16)
                w.add_tensor(name, q)
            else:
                q = gguf.quants.quantize(data, qtype)
                w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
            expected = gguf.quants.dequantize(q, qtype) if qtype != T.F32 else data
        expected = np.asarray(expected, dtype=np.float32).reshape(rows, cols)
        w.add_tensor(name + ".expected", expected)
    w.add_tensor("dims3", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    w.add_tensor("dims4", np.arange(192, dtype=np.float32).reshape(2, 1, 3, 32))

    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo wörld")
    w.add_uint64("test.u64", 2 ** 40 + 7)
    w.add_int64("test.i64", -(2 ** 40) - 7)
    w.add_float64("test.f64", 1.0 / 3.0)
    w.add_array("test.array_i32", [1, -2, 3, -4])
    w.add_array("test.array_f32", [0.5, -1.25, 8.0])
    w.add_array("test.array_str", ["a", "", "中文", "last"])
    w.add_key_value("test.array_u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_array("test.array_nested", [[1, 2], [3]])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_alphabet():
    """GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def write_tiny_llama(path):
    rng = np.random.default_rng(7)
    dim, hidden, n_layers, heads, kv_heads, vocab_extra = 32, 64, 2, 4, 2, 0
    alphabet = byte_alphabet()
    tokens = [alphabet[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    for m in merges:
        tokens.append(m.replace(" ", ""))
    tokens += ["<|endoftext|>", "<|im_start|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    vocab = len(tokens) + vocab_extra
    head_dim = dim // heads

    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("tiny-llama-test")
    w.add_context_length(256)
    w.add_embedding_length(dim)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(vocab)
    w.add_file_type(7)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 2)
    w.add_add_bos_token(False)

    def add(name, shape, qtype):
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, data)
        elif qtype == T.F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    add("token_embd.weight", (vocab, dim), T.F16)
    for l in range(n_layers):
        add(f"blk.{l}.attn_norm.weight", (dim,), T.F32)
        add(f"blk.{l}.attn_q.weight", (heads * head_dim, dim), T.Q8_0)
        add(f"blk.{l}.attn_k.weight", (kv_heads * head_dim, dim), T.Q8_0)
        add(f"blk.{l}.attn_v.weight", (kv_heads * head_dim, dim), T.Q4_0)
        add(f"blk.{l}.attn_output.weight", (dim, heads * head_dim), T.Q8_0)
        add(f"blk.{l}.ffn_norm.weight", (dim,), T.F32)
        add(f"blk.{l}.ffn_gate.weight", (hidden, dim), T.Q4_1)
        add(f"blk.{l}.ffn_up.weight", (hidden, dim), T.Q5_0)
        add(f"blk.{l}.ffn_down.weight", (dim, hidden), T.Q5_1)
    add("output_norm.weight", (dim,), T.F32)
    add("output.weight", (vocab, dim), T.BF16 if hasattr(T, "BF16") else T.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "data")
    os.makedirs(out, exist_ok=True)
    write_quants(os.path.join(out, "gguf_quants.gguf"))
    write_tiny_llama(os.path.join(out, "gguf_tiny_llama.gguf"))
    for name in ("gguf_quants.gguf", "gguf_tiny_llama.gguf"):
        print(name, os.path.getsize(os.path.join(out, name)), "bytes")


if __name__ == "__main__":
    main()
