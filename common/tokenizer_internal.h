/* Private to common/: the tokenizer's representation, shared by tokenizer.c (construction,
 * SentencePiece BPE, lookups, dispatch) and bpe.c (GPT-2 byte-level BPE). */
#ifndef LQ_TOKENIZER_INTERNAL_H
#define LQ_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

/* Open-addressing hash from byte strings to ints (token → id, "left right" merge → rank). */
typedef struct {
    char **keys;
    size_t *key_len;
    int *values;
    size_t cap;             /* power of two */
    size_t count;
} lq_string_map;

struct lq_tokenizer {
    lq_tokenizer_kind kind;
    int n_tokens;
    char **tokens;          /* NUL-terminated copies */
    size_t *token_len;
    float *scores;          /* n_tokens (zeros when the spec had none) */
    int *token_types;       /* n_tokens (LQ_TOKEN_NORMAL when the spec had none) */
    int bos_id, eos_id, unk_id;
    int add_bos, add_space_prefix;
    lq_string_map vocab;    /* token string → id */
    int byte_token[256];    /* SPM: id of "<0xAB>", −1 when absent */
    lq_string_map merges;   /* GPT-2: "left right" → rank */
    char pre[32];           /* GPT-2 pre-tokenizer name */
    int *special_ids;       /* CONTROL and USER_DEFINED tokens, longest first, for parse_special */
    int n_special;
};

/* lq_tokenizer_new with the byte length of every token, so tokens may hold any bytes (NUL
 * included), and the source's name for messages (tokenizer_json.c). */
lq_status lq_tokenizer_new_sized(const lq_tokenizer_spec *spec, const size_t *token_lens,
                                 const char *what, lq_tokenizer **out);

/* −1 when absent */
int lq_tokenizer_lookup(const lq_tokenizer *t, const char *s, size_t len);
int lq_tokenizer_merge_rank(const lq_tokenizer *t, const char *left, size_t left_len,
                            const char *right, size_t right_len);

/* GPT-2 byte-level BPE (bpe.c): pre-tokenize per t->pre, map bytes to the byte-level
 * alphabet, merge by rank, look up ids; appends to a growing array. */
lq_status lq_bpe_encode(const lq_tokenizer *t, const char *text, size_t len, int **ids,
                        size_t *n_ids, size_t *cap_ids);
/* Whether bpe.c knows a GPT-2 pre-tokenizer name (loaders check at load time, not at the
 * first encode), and the comma-separated list of those it knows, for messages. */
int lq_bpe_pre_supported(const char *pre);
const char *lq_bpe_pre_list(void);
/* The bytes of token id (byte-level alphabet decoded), up to cap; returns the length. */
int lq_bpe_decode(const lq_tokenizer *t, int id, char *buf, size_t cap);

#endif
