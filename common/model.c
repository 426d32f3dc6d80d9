/* The in-memory model (model.h): allocation, validation, freeing, and lq_model_load, which
 * picks a loader by looking at the input, never at its name.
 *
 * Ownership: lq_model has no field listing its allocations, and loaders must not have to
 * free tensors one by one (a tied lm_head shares tok_embeddings, quantized layers keep no
 * weight). So lq_model_new hands out a model embedded in a private box that records every
 * lq_model_alloc block; lq_model_free releases the blocks, the layers' lq_linear impls and the
 * tokenizer. A model therefore must come from lq_model_new. */
#include "loaders.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    lq_model model;       /* first member: a model pointer is also a box pointer */
    float **blocks;
    size_t n_blocks, cap_blocks;
} model_box;

static model_box *box_of(lq_model *m) { return (model_box *)(void *)m; }

lq_status lq_model_new(const lq_model_config *cfg, lq_model **out) {
    *out = NULL;
    if (cfg->n_layers <= 0 || cfg->n_layers > (1 << 16))
        return lq_fail(LQ_ERR_ARG, "lq_model_new: n_layers = %d is out of range", cfg->n_layers);
    model_box *box = calloc(1, sizeof *box);
    if (!box) return lq_fail(LQ_ERR_NOMEM, "lq_model_new: out of memory");
    box->model.cfg = *cfg;
    box->model.layers = calloc((size_t)cfg->n_layers, sizeof *box->model.layers);
    if (!box->model.layers) {
        free(box);
        return lq_fail(LQ_ERR_NOMEM, "lq_model_new: out of memory for %d layers", cfg->n_layers);
    }
    *out = &box->model;
    return LQ_OK;
}

float *lq_model_alloc(lq_model *m, size_t count) {
    model_box *box = box_of(m);
    if (count == 0) count = 1;  /* a zero-size tensor still gets a distinct, freeable block */
    if (count > SIZE_MAX / sizeof(float)) return NULL;
    if (box->n_blocks == box->cap_blocks) {
        size_t cap = box->cap_blocks ? 2 * box->cap_blocks : 64;
        float **blocks = realloc(box->blocks, cap * sizeof *blocks);
        if (!blocks) return NULL;
        box->blocks = blocks;
        box->cap_blocks = cap;
    }
    float *p = calloc(count, sizeof(float));
    if (p) box->blocks[box->n_blocks++] = p;
    return p;
}

uint16_t *lq_model_alloc_f16(lq_model *m, size_t count) {
    /* two halves to a float-sized slot: the blocks list holds one kind of pointer */
    return (uint16_t *)(void *)lq_model_alloc(m, count / 2 + count % 2);
}

static void free_linear_impl(lq_linear *lin) {
    if (lin->impl && lin->free_impl) lin->free_impl(lin->impl);
    lin->impl = NULL;
}

void lq_model_free(lq_model *m) {
    if (!m) return;
    model_box *box = box_of(m);
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            lq_layer *L = &m->layers[l];
            lq_linear *lins[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof lins / sizeof lins[0]; i++) free_linear_impl(lins[i]);
        }
    }
    free_linear_impl(&m->lm_head);
    lq_tokenizer_free(m->tokenizer);
    for (size_t i = 0; i < box->n_blocks; i++) free(box->blocks[i]);
    free(box->blocks);
    free(m->layers);
    free(box);
}

/* Upper bounds keep every product of two sizes far inside size_t and int arithmetic on the
 * way to it; no real model is near them. */
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_LAYERS (1 << 12)

static lq_status check_range(const char *field, long value, long lo, long hi, const char *src) {
    if (value < lo || value > hi)
        return lq_fail(LQ_ERR_FORMAT, "%s: %s = %ld is out of range [%ld, %ld]", src, field, value,
                       lo, hi);
    return LQ_OK;
}

lq_status lq_model_config_validate(const lq_model_config *c, const char *source) {
    const char *src = source ? source : "model";
    lq_status st;
    if (c->arch[0] == '\0') return lq_fail(LQ_ERR_FORMAT, "%s: architecture is not set", src);
    if (!memchr(c->arch, 0, sizeof c->arch))
        return lq_fail(LQ_ERR_FORMAT, "%s: architecture name is not terminated", src);
    if ((st = check_range("dim", c->dim, 1, MAX_DIM, src)) != LQ_OK) return st;
    if ((st = check_range("hidden_dim", c->hidden_dim, 1, MAX_DIM, src)) != LQ_OK) return st;
    if ((st = check_range("n_layers", c->n_layers, 1, MAX_LAYERS, src)) != LQ_OK) return st;
    if ((st = check_range("n_heads", c->n_heads, 1, MAX_DIM, src)) != LQ_OK) return st;
    if ((st = check_range("n_kv_heads", c->n_kv_heads, 1, c->n_heads, src)) != LQ_OK) return st;
    if ((st = check_range("head_dim", c->head_dim, 2, MAX_DIM, src)) != LQ_OK) return st;
    if ((st = check_range("vocab_size", c->vocab_size, 1, MAX_VOCAB, src)) != LQ_OK) return st;
    if ((st = check_range("max_seq_len", c->max_seq_len, 1, 1 << 30, src)) != LQ_OK) return st;
    if ((long)c->n_heads * c->head_dim > MAX_DIM)
        return lq_fail(LQ_ERR_FORMAT, "%s: n_heads × head_dim = %d × %d is too large", src,
                       c->n_heads, c->head_dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return lq_fail(LQ_ERR_FORMAT,
                       "%s: n_heads = %d is not a multiple of n_kv_heads = %d (grouped-query "
                       "attention shares each KV head among a whole number of query heads)",
                       src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: head_dim = %d is odd; RoPE rotates pairs", src,
                       c->head_dim);
    if (c->rope_dim < 2 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: rope_dim = %d must be even and in [2, head_dim = %d]",
                       src, c->rope_dim, c->head_dim);
    if (c->rope_style != LQ_ROPE_INTERLEAVED && c->rope_style != LQ_ROPE_HALF)
        return lq_fail(LQ_ERR_FORMAT, "%s: rope_style = %d is unknown", src, (int)c->rope_style);
    if (!(isfinite(c->norm_eps) && c->norm_eps > 0.0f))
        return lq_fail(LQ_ERR_FORMAT, "%s: norm_eps = %g must be positive", src, c->norm_eps);
    if (!(isfinite(c->rope_theta) && c->rope_theta > 1.0f))
        return lq_fail(LQ_ERR_FORMAT, "%s: rope_theta = %g must be greater than 1", src,
                       c->rope_theta);
    if (c->rope_scale_factor != 0.0f) {
        if (!(isfinite(c->rope_scale_factor) && c->rope_scale_factor >= 1.0f))
            return lq_fail(LQ_ERR_FORMAT, "%s: rope scaling factor = %g must be >= 1", src,
                           c->rope_scale_factor);
        if (!(c->rope_low_freq_factor > 0.0f && c->rope_high_freq_factor > c->rope_low_freq_factor))
            return lq_fail(LQ_ERR_FORMAT,
                           "%s: llama3 rope scaling needs 0 < low_freq_factor (%g) < "
                           "high_freq_factor (%g)",
                           src, c->rope_low_freq_factor, c->rope_high_freq_factor);
        if (c->rope_original_max_pos <= 0)
            return lq_fail(LQ_ERR_FORMAT,
                           "%s: llama3 rope scaling needs original_max_position_embeddings > 0 "
                           "(got %d)",
                           src, c->rope_original_max_pos);
    }
    return LQ_OK;
}

static size_t linear_params(const lq_linear *lin) {
    /* counted from the shape, so a quantized layer reports the parameters it stands for */
    return (size_t)lin->in_features * (size_t)lin->out_features +
           (lin->bias ? (size_t)lin->out_features : 0);
}

size_t lq_model_parameter_count(const lq_model *m) {
    const lq_model_config *c = &m->cfg;
    size_t n = (size_t)c->vocab_size * (size_t)c->dim + (size_t)c->dim; /* embeddings, final norm */
    for (int l = 0; l < c->n_layers; l++) {
        const lq_layer *L = &m->layers[l];
        n += 2 * (size_t)c->dim;
        if (L->q_norm) n += (size_t)c->head_dim;
        if (L->k_norm) n += (size_t)c->head_dim;
        n += linear_params(&L->wq) + linear_params(&L->wk) + linear_params(&L->wv) +
             linear_params(&L->wo) + linear_params(&L->w_gate) + linear_params(&L->w_up) +
             linear_params(&L->w_down);
    }
    if (!c->tied_embeddings) n += linear_params(&m->lm_head);
    return n;
}

lq_status lq_model_load(const char *path, const char *tokenizer_path, lq_model **out) {
    *out = NULL;
    if (!path || !*path) return lq_fail(LQ_ERR_ARG, "lq_model_load: no model path given");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lq_fail(errno == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: cannot open model: %s",
                       path, strerror(errno));
    lq_status st;
    const char *format;
    if (S_ISDIR(sb.st_mode)) {
        format = "hf";
    } else {
        FILE *fp = fopen(path, "rb");
        if (!fp) return lq_fail(LQ_ERR_IO, "%s: cannot open model: %s", path, strerror(errno));
        char magic[4] = {0};
        size_t got = fread(magic, 1, sizeof magic, fp);
        fclose(fp);
        format = got == 4 && memcmp(magic, "GGUF", 4) == 0 ? "gguf" : "llama2c";
    }
    if (tokenizer_path && strcmp(format, "llama2c") != 0)
        /* HF directories and GGUF files carry their own tokenizer; silently preferring one of
         * two tokenizers would give wrong text without any sign */
        return lq_fail(LQ_ERR_ARG,
                       "%s: a separate tokenizer (%s) applies only to llama2.c checkpoints; this "
                       "%s model carries its own",
                       path, tokenizer_path, format);
    if (!strcmp(format, "hf"))
        st = lq_hf_load_model(path, out);
    else if (!strcmp(format, "gguf"))
        st = lq_gguf_load_model(path, out);
    else
        st = lq_llama2c_load(path, tokenizer_path, out);
    if (st != LQ_OK) {
        *out = NULL;
        return st;
    }
    lq_model *m = *out;
    if (!m->source[0]) snprintf(m->source, sizeof m->source, "%s", path);
    if (!m->format[0]) snprintf(m->format, sizeof m->format, "%s", format);
    return LQ_OK;
}
