/* The in-memory llama-family model every loader fills and the forward pass runs.
 *
 * All loaders (Hugging Face directory, GGUF, llama2.c .bin) produce the same lq_model: f32
 * weights, one rotary convention stated in the config, linear layers behind lq_linear so
 * that quantized layers (worker/) can replace dense ones without the forward pass knowing.
 * Shapes follow PyTorch nn.Linear: weight is out_features × in_features, row-major. */
#ifndef LQ_MODEL_H
#define LQ_MODEL_H

#include "lq_common.h"
#include "tokenizer.h"

/* Which pairs of a head's dimensions RoPE rotates together.
 *   INTERLEAVED: (2i, 2i+1) — llama2.c and GGUF (whose converter permutes q/k rows into it).
 *   HALF:        (i, i + rope_dim/2) — Hugging Face checkpoints ("rotate_half"). */
typedef enum { LQ_ROPE_INTERLEAVED = 0, LQ_ROPE_HALF = 1 } lq_rope_style;

typedef struct {
    char arch[32];          /* from metadata: "llama", "mistral", "qwen2", "qwen3" */
    int dim;                /* hidden size */
    int hidden_dim;         /* MLP intermediate size */
    int n_layers, n_heads, n_kv_heads, head_dim;
    int vocab_size;
    int max_seq_len;        /* trained context length */
    float norm_eps;         /* RMSNorm epsilon */
    float rope_theta;
    int rope_dim;           /* rotated dimensions per head (= head_dim unless partial) */
    lq_rope_style rope_style;
    /* Llama 3 "llama3" rope scaling; rope_scale_factor = 0 means none */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int has_qkv_bias;       /* Qwen2.5 */
    int has_qk_norm;        /* Qwen3: RMSNorm over each head of q and k before RoPE */
    int tied_embeddings;    /* lm_head shares tok_embeddings */
} lq_model_config;

/* A linear layer y = W x (+ b) over ntok tokens: x is ntok × in, y is ntok × out.
 * Dense layers have weight (f32) or weight_f16 set and forward NULL (the forward pass uses
 * lq_gemm_f32_nt / lq_gemm_f16_nt); quantized layers set forward and impl. */
typedef struct lq_linear lq_linear;
struct lq_linear {
    int in_features, out_features;
    float *weight;          /* out × in, or NULL when forward or weight_f16 is set */
    const uint16_t *weight_f16; /* out × in in IEEE binary16: a liftquant directory's head,
                               kept as the file stores it (half the bytes of f32) */
    float *bias;            /* out, or NULL */
    lq_status (*forward)(const lq_linear *self, const float *x, int ntok, float *y);
    void *impl;
    void (*free_impl)(void *impl);
};

typedef struct {
    float *attn_norm;       /* dim */
    float *ffn_norm;        /* dim */
    float *q_norm, *k_norm; /* head_dim each, Qwen3 only, else NULL */
    lq_linear wq, wk, wv, wo;            /* wq: (n_heads·head_dim) × dim, wk/wv: (n_kv_heads·head_dim) × dim */
    lq_linear w_gate, w_up, w_down;      /* gate/up: hidden × dim, down: dim × hidden */
} lq_layer;

typedef struct {
    lq_model_config cfg;
    float *tok_embeddings;  /* vocab × dim, or NULL when tok_embeddings_f16 holds them */
    uint16_t *tok_embeddings_f16; /* vocab × dim in binary16 (liftquant directories), else NULL */
    lq_layer *layers;       /* n_layers */
    float *final_norm;      /* dim */
    lq_linear lm_head;      /* vocab × dim; weight == tok_embeddings (or weight_f16 ==
                               tok_embeddings_f16) when tied */
    lq_tokenizer *tokenizer;/* NULL for a llama2.c checkpoint loaded without a tokenizer */
    char source[1024];      /* the path it was loaded from, for messages */
    char format[16];        /* "hf", "gguf", "llama2c" */
} lq_model;

/* Loads any supported input, chosen by content, not by name: a directory (Hugging Face:
 * config.json + safetensors + tokenizer.json), a file starting with the GGUF magic, else a
 * llama2.c checkpoint (tokenizer_path: its tok*.bin; may be NULL, then no tokenizer).
 * Errors name the file and the tensor or key at fault. */
lq_status lq_model_load(const char *path, const char *tokenizer_path, lq_model **out);
void lq_model_free(lq_model *m);

/* Allocation helpers for loaders: a zeroed model with cfg set and layers allocated, every
 * tensor allocated through lq_model_alloc so lq_model_free releases it. */
lq_status lq_model_new(const lq_model_config *cfg, lq_model **out);
float *lq_model_alloc(lq_model *m, size_t count);   /* count floats, zeroed; NULL on OOM */
uint16_t *lq_model_alloc_f16(lq_model *m, size_t count); /* count binary16 values, the same way */
/* Checks cfg for consistency (positive sizes, heads divide, head_dim even, …), naming the
 * field and the source. */
lq_status lq_model_config_validate(const lq_model_config *cfg, const char *source);

/* The config as Hugging Face config.json keys, both ways (common/config_json.c): model_type,
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
 * head_dim, vocab_size, max_position_embeddings, rms_norm_eps, rope_theta,
 * partial_rotary_factor, rope_scaling (llama3), tie_word_embeddings, plus the project's keys
 * liftquant_rope_style ("interleaved" | "half", default "half"), liftquant_qkv_bias and
 * liftquant_qk_norm (defaults from model_type), which carry what a GGUF or llama2.c model
 * needs. from_json maps only (call lq_model_config_validate after); errors name
 * path_for_messages and the key. to_json validates c first; every field survives
 * to_json → from_json. */
struct json_t;
lq_status lq_model_config_from_json(const char *path_for_messages, const struct json_t *cfg,
                                    lq_model_config *out);
lq_status lq_model_config_to_json(const lq_model_config *c, struct json_t **out);
/* Number of parameters in the decoder-layer linears, embeddings, etc. (for reports). */
size_t lq_model_parameter_count(const lq_model *m);

/* ---- forward pass (common/forward.c) -----------------------------------------------------
 * A session holds the KV cache and scratch of one sequence. lq_forward runs ntok tokens
 * from the session's current position (prefill when ntok > 1: batched GEMMs; decode when
 * ntok = 1) and advances it. logits: NULL, or ntok × vocab when all_logits, else vocab (the
 * last token's). Both cores are used (OpenBLAS threads, parallel attention heads). */
typedef struct lq_session lq_session;
lq_status lq_session_new(const lq_model *m, int max_tokens, lq_session **out);
void lq_session_free(lq_session *s);
void lq_session_reset(lq_session *s);
int lq_session_position(const lq_session *s);
lq_status lq_forward(lq_session *s, const int *tokens, int ntok, float *logits, int all_logits);
/* The inverse frequency of each rotary pair i < rope_dim/2 (llama3 scaling applied when set):
 * pair i of a head at position p turns by p·inv_freq[i]. The session tabulates cos and sin of
 * that angle, computed in double and stored as float; code that mirrors the forward pass (the
 * block reconstruction's backward, worker/lq_block.h) builds the same tables from this. */
void lq_rope_inv_freq(const lq_model_config *c, double *inv_freq);
/* out = w ⊙ x / sqrt(mean(x²) + eps) over n values (out may be x): the forward pass's RMSNorm,
 * shared with the block reconstruction so both round alike. */
void lq_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* ---- layer by layer (calibration) ----------------------------------------------------------
 * The quantizer runs one decoder layer at a time over whole calibration sequences: embed the
 * tokens, then call lq_layer_forward for layer 0, 1, … on the same hidden states. Each call
 * treats hidden (ntok × dim) as positions 0 … ntok−1 of one sequence, uses the session's KV
 * cache of that layer as scratch (the session position is untouched), and updates hidden in
 * place. The hook, when given, sees the input of every group of linears: */
typedef enum {
    LQ_TAP_ATTN_IN = 0,   /* input of q, k, v: ntok × dim (after the attention RMSNorm) */
    LQ_TAP_ATTN_OUT,      /* input of o: ntok × (n_heads·head_dim) */
    LQ_TAP_MLP_IN,        /* input of gate, up: ntok × dim (after the MLP RMSNorm) */
    LQ_TAP_MLP_HIDDEN,    /* input of down: ntok × hidden_dim */
    LQ_TAP_COUNT
} lq_tap;
/* fn returns 0 to go on, or 1 when it needs nothing more of this chunk: the rest of the layer
 * is then skipped for the chunk (a calibration pass that only wants an early tap), and the
 * hidden states the call leaves are undefined. */
typedef struct {
    int (*fn)(void *ctx, int layer, lq_tap tap, const float *x, int ntok, int width);
    void *ctx;
} lq_layer_hook;
lq_status lq_embed_tokens(lq_session *s, const int *tokens, int ntok, float *hidden);
lq_status lq_layer_forward(lq_session *s, int layer, float *hidden, int ntok,
                           const lq_layer_hook *hook);

#endif
