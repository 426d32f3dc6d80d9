/* Tokenizers: SentencePiece-style BPE with scores and byte fallback (llama2.c tok*.bin, GGUF
 * tokenizer.ggml.model = "llama") and GPT-2 byte-level BPE with merges and its pre-tokenizer
 * (GGUF "gpt2", Hugging Face tokenizer.json). One opaque type, one encode/decode API. */
#ifndef LQ_TOKENIZER_H
#define LQ_TOKENIZER_H

#include "lq_common.h"

typedef struct lq_tokenizer lq_tokenizer;

typedef enum { LQ_TOKENIZER_SPM = 0, LQ_TOKENIZER_GPT2 = 1 } lq_tokenizer_kind;

/* Token types as GGUF numbers them (tokenizer.ggml.token_type). */
enum { LQ_TOKEN_NORMAL = 1, LQ_TOKEN_UNKNOWN = 2, LQ_TOKEN_CONTROL = 3,
       LQ_TOKEN_USER_DEFINED = 4, LQ_TOKEN_UNUSED = 5, LQ_TOKEN_BYTE = 6 };

typedef struct {
    lq_tokenizer_kind kind;
    int n_tokens;
    const char *const *tokens;     /* n_tokens NUL-terminated strings (GPT-2: byte-level alphabet) */
    const float *scores;           /* SPM merge scores, or NULL */
    const int *token_types;        /* LQ_TOKEN_*, or NULL (all normal) */
    int n_merges;
    const char *const *merges;     /* GPT-2: "left right" in rank order, or NULL */
    const char *pre;               /* GPT-2 pre-tokenizer name ("gpt2", "smollm", "llama-bpe", "qwen2"), or NULL */
    int bos_id, eos_id, unk_id;    /* −1 when absent */
    int add_bos;                   /* prepend BOS when encoding a document */
    int add_space_prefix;          /* SPM: prepend " " (llama2.c does) */
} lq_tokenizer_spec;

/* Copies everything it needs from spec. */
lq_status lq_tokenizer_new(const lq_tokenizer_spec *spec, lq_tokenizer **out);
/* llama2.c tokenizer file (tok512.bin, tokenizer.bin): max_token_length, then per token
 * score (f32), length (i32), bytes. vocab_size comes from the checkpoint. */
lq_status lq_tokenizer_load_llama2c(const char *path, int vocab_size, lq_tokenizer **out);
/* The same parser over the file's bytes in memory; path names them in messages. */
lq_status lq_tokenizer_parse_llama2c(const void *bytes, size_t size, int vocab_size,
                                     const char *path, lq_tokenizer **out);
void lq_tokenizer_free(lq_tokenizer *t);
/* The project's own complete serialisation (tokenizer.liftquant.json, schemas/FORMAT.md):
 * kind, tokens, scores, token types, merges in rank order, pre-tokenizer, bos/eos/unk,
 * add_bos, add_space_prefix. A saved tokenizer loads back encoding and decoding every text
 * identically. save writes atomically; load validates every key, naming path and key. */
lq_status lq_tokenizer_save_json(const lq_tokenizer *t, const char *path);
lq_status lq_tokenizer_load_json(const char *path, lq_tokenizer **out);
/* The same loader over the file's bytes in memory; name stands for the file in messages. */
lq_status lq_tokenizer_load_json_memory(const char *bytes, size_t len, const char *name,
                                        lq_tokenizer **out);

/* Encodes len bytes of UTF-8 text; special-token strings in the text are matched as special
 * tokens only when parse_special is set. add_bos prepends BOS (when the tokenizer has one).
 * *ids is malloc'ed; the caller frees it. */
lq_status lq_tokenizer_encode(const lq_tokenizer *t, const char *text, size_t len, int add_bos,
                              int parse_special, int **ids, size_t *n_ids);
/* The bytes token `id` contributes after token `prev` when streaming, decoded as llama2.c's
 * run.c decodes (SPM: a leading space is dropped after BOS, "<0xAB>" is the byte 0xAB; GPT-2:
 * byte-level alphabet back to bytes). Writes up to cap bytes to buf, returns the length, or
 * −1 for an id out of range. */
int lq_tokenizer_decode(const lq_tokenizer *t, int prev, int id, char *buf, size_t cap);
int lq_tokenizer_vocab_size(const lq_tokenizer *t);
int lq_tokenizer_bos(const lq_tokenizer *t);   /* −1 when none */
int lq_tokenizer_eos(const lq_tokenizer *t);
int lq_tokenizer_add_bos(const lq_tokenizer *t);
const char *lq_tokenizer_token(const lq_tokenizer *t, int id); /* the raw vocabulary string */

#endif
