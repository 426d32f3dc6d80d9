/* The f32 llama-family forward pass (model.h): RMSNorm, grouped-query attention over a KV
 * cache, SwiGLU MLP, RoPE in both pair conventions (with optional llama3 frequency scaling),
 * q/k/v bias (Qwen2.5), per-head q/k RMSNorm before RoPE (Qwen3), tied or untied lm_head.
 *
 * Tokens are processed in chunks of up to CHUNK rows: every linear of a chunk is one GEMM
 * (lq_gemm_f32_nt, OpenBLAS threads), so prefill runs at GEMM speed and decode (one row) is
 * the same code with m = 1. Attention runs one (token, head) pair per OpenMP iteration; each
 * pair is computed start to finish by one thread in a fixed order, so results do not depend
 * on scheduling, and the GEMMs are deterministic for a fixed thread count.
 *
 * Quantized layers: a linear with `forward` set produces its whole output, bias included;
 * `bias` is added here only for dense layers (weight set, forward NULL). */
#include "model.h"

#include "lq_blas.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rows per batched pass: large enough that the GEMMs run near peak, small enough that the
 * scratch stays a few MB even for 8B-class models. */
#define CHUNK 128
/* Below this many multiply-adds (about half a millisecond of one core) an attention call is
 * cheaper on one thread than waking the others, especially when other processes hold the
 * cores: with a low threshold a 260K-parameter model ran 2-5x slower on two threads. */
#define PARALLEL_ATTENTION_WORK (1L << 21)

struct lq_session {
    const lq_model *m;
    int max_tokens, pos, n_threads, chunk;
    int q_dim, kv_dim;
    float *k_cache, *v_cache;      /* n_layers × kv_dim × max_tokens (transposed, see attention) */
    float *rope_cos, *rope_sin;    /* max_tokens × rope_dim/2 */
    float *scores;                 /* n_threads × max_tokens, attention weights per thread */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2; /* chunk × width scratch */
};


/* Inverse frequencies of the rotary pairs (model.h), Hugging Face's llama3 scaling applied when
 * set: long wavelengths (beyond original_max_pos / low_freq_factor) are slowed by `factor`,
 * short ones (below original_max_pos / high_freq_factor) kept, and the band between
 * interpolated. */
void lq_rope_inv_freq(const lq_model_config *c, double *inv_freq) {
    int half = c->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / c->rope_dim);
        if (c->rope_scale_factor > 0.0f) {
            double factor = c->rope_scale_factor, lo = c->rope_low_freq_factor,
                   hi = c->rope_high_freq_factor, old = c->rope_original_max_pos;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > old / lo) {
                f /= factor;
            } else if (wavelen >= old / hi) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void lq_session_free(lq_session *s) {
    if (!s) return;
    free(s->k_cache), free(s->v_cache), free(s->rope_cos), free(s->rope_sin), free(s->scores);
    free(s->x), free(s->xb), free(s->q), free(s->k), free(s->v), free(s->att), free(s->hb),
        free(s->hb2);
    free(s);
}

static float *alloc_floats(size_t a, size_t b) {
    if (a != 0 && b > SIZE_MAX / sizeof(float) / a) return NULL;
    size_t n = a * b;
    return malloc((n ? n : 1) * sizeof(float));
}

lq_status lq_session_new(const lq_model *m, int max_tokens, lq_session **out) {
    *out = NULL;
    const lq_model_config *c = &m->cfg;
    lq_status st = lq_model_config_validate(c, m->source[0] ? m->source : "model");
    if (st != LQ_OK) return st;
    if (max_tokens < 1 || max_tokens > (1 << 24))
        return lq_fail(LQ_ERR_ARG, "lq_session_new: max_tokens = %d is out of range [1, 2^24]",
                       max_tokens);
    lq_session *s = calloc(1, sizeof *s);
    if (!s) return lq_fail(LQ_ERR_NOMEM, "lq_session_new: out of memory");
    s->m = m;
    s->max_tokens = max_tokens;
    s->n_threads = lq_default_threads();
    s->chunk = max_tokens < CHUNK ? max_tokens : CHUNK;
    s->q_dim = c->n_heads * c->head_dim;
    s->kv_dim = c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * (size_t)max_tokens;
    int half = c->rope_dim / 2;
    int widest = c->dim > s->q_dim ? c->dim : s->q_dim;
    s->k_cache = alloc_floats(cache, (size_t)s->kv_dim);
    s->v_cache = alloc_floats(cache, (size_t)s->kv_dim);
    s->rope_cos = alloc_floats((size_t)max_tokens, (size_t)half);
    s->rope_sin = alloc_floats((size_t)max_tokens, (size_t)half);
    s->scores = alloc_floats((size_t)s->n_threads, (size_t)max_tokens);
    s->x = alloc_floats((size_t)s->chunk, (size_t)c->dim);
    s->xb = alloc_floats((size_t)s->chunk, (size_t)widest);
    s->q = alloc_floats((size_t)s->chunk, (size_t)s->q_dim);
    s->k = alloc_floats((size_t)s->chunk, (size_t)s->kv_dim);
    s->v = alloc_floats((size_t)s->chunk, (size_t)s->kv_dim);
    s->att = alloc_floats((size_t)s->chunk, (size_t)s->q_dim);
    s->hb = alloc_floats((size_t)s->chunk, (size_t)c->hidden_dim);
    s->hb2 = alloc_floats((size_t)s->chunk, (size_t)c->hidden_dim);
    if (!s->k_cache || !s->v_cache || !s->rope_cos || !s->rope_sin || !s->scores || !s->x ||
        !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2) {
        lq_session_free(s);
        return lq_fail(LQ_ERR_NOMEM,
                       "lq_session_new: out of memory for a %d-token KV cache (%zu MB)",
                       max_tokens, 2 * cache * (size_t)s->kv_dim * sizeof(float) >> 20);
    }
    /* the rotation angles, computed once in double: pos × inv_freq loses precision in float
     * for long contexts */
    double *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    if (!inv_freq) {
        lq_session_free(s);
        return lq_fail(LQ_ERR_NOMEM, "lq_session_new: out of memory");
    }
    lq_rope_inv_freq(c, inv_freq);
    for (int p = 0; p < max_tokens; p++) {
        for (int i = 0; i < half; i++) {
            double angle = (double)p * inv_freq[i];
            s->rope_cos[(size_t)p * half + i] = (float)cos(angle);
            s->rope_sin[(size_t)p * half + i] = (float)sin(angle);
        }
    }
    free(inv_freq);
    *out = s;
    return LQ_OK;
}

void lq_session_reset(lq_session *s) { s->pos = 0; }
int lq_session_position(const lq_session *s) { return s->pos; }

/* ---- building blocks ---------------------------------------------------------------------- */
/* (model.h) The scale in double, the product in float; block_grad.c's backward relies on this
 * exact rounding to match the runtime. */
void lq_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int j = 0; j < n; j++) ss += (double)x[j] * x[j];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int j = 0; j < n; j++) out[j] = w[j] * (scale * x[j]);
}

/* Rotates one head vector in place at position `pos`. */
static void rope_head(const lq_session *s, float *v, int pos) {
    const lq_model_config *c = &s->m->cfg;
    int half = c->rope_dim / 2;
    const float *cs = s->rope_cos + (size_t)pos * half, *sn = s->rope_sin + (size_t)pos * half;
    /* INTERLEAVED rotates (2i, 2i+1), HALF rotates (i, i + rope_dim/2); the angle of pair i is
     * the same in both, only the memory layout of the pair differs */
    int stride = c->rope_style == LQ_ROPE_INTERLEAVED ? 2 : 1;
    int offset = c->rope_style == LQ_ROPE_INTERLEAVED ? 1 : half;
    for (int i = 0; i < half; i++) {
        float *a = &v[i * stride], *b = &v[i * stride + offset];
        float x0 = *a, x1 = *b;
        *a = x0 * cs[i] - x1 * sn[i];
        *b = x0 * sn[i] + x1 * cs[i];
    }
}

static lq_status linear(const lq_linear *lin, const float *x, int n, float *y, const char *name,
                        int layer) {
    const int in = lin->in_features, outf = lin->out_features;
    lq_status st = LQ_OK;
    if (lin->forward)   /* quantized: adds its own bias */
        st = lin->forward(lin, x, n, y);
    else if (lin->weight_f16)
        st = lq_gemm_f16_nt(n, outf, in, x, in, lin->weight_f16, in, y, outf);
    else if (lin->weight)
        lq_gemm_f32_nt(n, outf, in, x, in, lin->weight, in, y, outf, 0);
    else
        st = lq_fail(LQ_ERR_INTERNAL, "has neither weights nor a forward");
    if (st != LQ_OK) {
        if (layer >= 0) return lq_fail_context(st, "layer %d %s", layer, name);
        return lq_fail_context(st, "%s", name);
    }
    if (!lin->forward && lin->bias)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < outf; j++) y[(size_t)i * outf + j] += lin->bias[j];
    return LQ_OK;
}

/* Causal attention of n query rows (positions pos0 … pos0+n−1) over the cache of one layer.
 * The cache is stored transposed, [kv_head][dim][position], so that both inner loops run over
 * positions with unit stride and vectorise whatever the head size: a row-major [position][dim]
 * cache makes them dot products of head_dim (8 for stories260K) elements, which ran 4x slower. */
static void attention(lq_session *s, const float *kc, const float *vc, int pos0, int n) {
    const lq_model_config *c = &s->m->cfg;
    int hd = c->head_dim, nh = c->n_heads, group = c->n_heads / c->n_kv_heads;
    int q_dim = s->q_dim, max_tokens = s->max_tokens;
    float scale = 1.0f / sqrtf((float)hd);
    long work = (long)n * nh * (pos0 + n) * hd;
    const float *q = s->q;
    float *att = s->att, *scores = s->scores;
#pragma omp parallel for num_threads(s->n_threads) schedule(static) if (work > PARALLEL_ATTENTION_WORK)
    for (int idx = 0; idx < n * nh; idx++) {
        int i = idx / nh, h = idx % nh, len = pos0 + i + 1; /* keys 0 … pos0+i */
        const float *qv = q + (size_t)i * q_dim + (size_t)h * hd;
        /* consecutive query heads share a KV head */
        const float *kh = kc + (size_t)(h / group) * hd * max_tokens;
        const float *vh = vc + (size_t)(h / group) * hd * max_tokens;
        float *sc = scores + (size_t)omp_get_thread_num() * max_tokens;
        for (int t = 0; t < len; t++) sc[t] = 0.0f;
        for (int d = 0; d < hd; d++) {
            float qd = qv[d];
            const float *krow = kh + (size_t)d * max_tokens;
#pragma omp simd
            for (int t = 0; t < len; t++) sc[t] += qd * krow[t];
        }
        float max = -INFINITY;
        for (int t = 0; t < len; t++) {
            sc[t] *= scale;
            if (sc[t] > max) max = sc[t];
        }
        double sum = 0.0;
        for (int t = 0; t < len; t++) {
            sc[t] = expf(sc[t] - max);
            sum += sc[t];
        }
        float inv = (float)(1.0 / sum);
        float *o = att + (size_t)i * q_dim + (size_t)h * hd;
        for (int d = 0; d < hd; d++) {
            const float *vrow = vh + (size_t)d * max_tokens;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int t = 0; t < len; t++) acc += sc[t] * vrow[t];
            o[d] = acc * inv;
        }
    }
}

/* Decoder layer l over the n rows of s->x at positions pos0 …, in place. hook (may be NULL)
 * sees the input of each group of linears, for calibration, and may end the chunk early. */
static lq_status layer_chunk(lq_session *s, int l, int n, int pos0, const lq_layer_hook *hook) {
    const lq_model *m = s->m;
    const lq_model_config *c = &m->cfg;
    int dim = c->dim, hd = c->head_dim, hidden = c->hidden_dim;
    int q_dim = s->q_dim, kv_dim = s->kv_dim;
    const lq_layer *L = &m->layers[l];
    lq_status st;
    for (int i = 0; i < n; i++)
        lq_rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->attn_norm, dim, c->norm_eps);
    if (hook && hook->fn(hook->ctx, l, LQ_TAP_ATTN_IN, s->xb, n, dim)) return LQ_OK;
    if ((st = linear(&L->wq, s->xb, n, s->q, "wq", l)) != LQ_OK) return st;
    if ((st = linear(&L->wk, s->xb, n, s->k, "wk", l)) != LQ_OK) return st;
    if ((st = linear(&L->wv, s->xb, n, s->v, "wv", l)) != LQ_OK) return st;
    float *kc = s->k_cache + (size_t)l * s->max_tokens * kv_dim;
    float *vc = s->v_cache + (size_t)l * s->max_tokens * kv_dim;
    for (int i = 0; i < n; i++) {
        float *qi = s->q + (size_t)i * q_dim, *ki = s->k + (size_t)i * kv_dim;
        for (int h = 0; h < c->n_heads; h++) {
            float *qh = qi + (size_t)h * hd;
            if (L->q_norm) lq_rmsnorm(qh, qh, L->q_norm, hd, c->norm_eps);
            rope_head(s, qh, pos0 + i);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            float *kh = ki + (size_t)h * hd;
            if (L->k_norm) lq_rmsnorm(kh, kh, L->k_norm, hd, c->norm_eps);
            rope_head(s, kh, pos0 + i);
        }
        /* transposed cache: element j of the row goes to [j][position] */
        const float *vi = s->v + (size_t)i * kv_dim;
        for (int j = 0; j < kv_dim; j++) {
            kc[(size_t)j * s->max_tokens + pos0 + i] = ki[j];
            vc[(size_t)j * s->max_tokens + pos0 + i] = vi[j];
        }
    }
    attention(s, kc, vc, pos0, n);
    if (hook && hook->fn(hook->ctx, l, LQ_TAP_ATTN_OUT, s->att, n, q_dim)) return LQ_OK;
    if ((st = linear(&L->wo, s->att, n, s->xb, "wo", l)) != LQ_OK) return st;
    for (size_t j = 0; j < (size_t)n * dim; j++) s->x[j] += s->xb[j];

    for (int i = 0; i < n; i++)
        lq_rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->ffn_norm, dim, c->norm_eps);
    if (hook && hook->fn(hook->ctx, l, LQ_TAP_MLP_IN, s->xb, n, dim)) return LQ_OK;
    if ((st = linear(&L->w_gate, s->xb, n, s->hb, "w_gate", l)) != LQ_OK) return st;
    if ((st = linear(&L->w_up, s->xb, n, s->hb2, "w_up", l)) != LQ_OK) return st;
    for (size_t j = 0; j < (size_t)n * hidden; j++) {
        float g = s->hb[j];
        s->hb[j] = g / (1.0f + expf(-g)) * s->hb2[j]; /* SwiGLU: silu(gate) · up */
    }
    if (hook && hook->fn(hook->ctx, l, LQ_TAP_MLP_HIDDEN, s->hb, n, hidden)) return LQ_OK;
    if ((st = linear(&L->w_down, s->hb, n, s->xb, "w_down", l)) != LQ_OK) return st;
    for (size_t j = 0; j < (size_t)n * dim; j++) s->x[j] += s->xb[j];
    return LQ_OK;
}

static lq_status check_tokens(const lq_session *s, const int *tokens, int n, int pos0) {
    const lq_model *m = s->m;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return lq_fail(LQ_ERR_RANGE, "%s: token id %d at position %d is outside the vocabulary "
                           "[0, %d)", m->source, tokens[i], pos0 + i, m->cfg.vocab_size);
    return LQ_OK;
}

/* The embedding row of one (checked) token, widened when the model keeps it in binary16. */
static void embed_token(const lq_model *m, int token, float *dst) {
    const size_t dim = (size_t)m->cfg.dim, row = (size_t)token * dim;
    if (m->tok_embeddings_f16)
        for (size_t j = 0; j < dim; j++) dst[j] = lq_f16_to_f32(m->tok_embeddings_f16[row + j]);
    else
        memcpy(dst, m->tok_embeddings + row, dim * sizeof(float));
}

/* One chunk of n tokens at positions pos0 … through every layer; leaves the final-normed
 * hidden states in s->xb. */
static lq_status run_chunk(lq_session *s, const int *tokens, int n) {
    const lq_model *m = s->m;
    const lq_model_config *c = &m->cfg;
    int dim = c->dim;
    lq_status st = check_tokens(s, tokens, n, s->pos);
    if (st != LQ_OK) return st;
    for (int i = 0; i < n; i++) embed_token(m, tokens[i], s->x + (size_t)i * dim);
    for (int l = 0; l < c->n_layers; l++)
        if ((st = layer_chunk(s, l, n, s->pos, NULL)) != LQ_OK) return st;
    for (int i = 0; i < n; i++)
        lq_rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, m->final_norm, dim, c->norm_eps);
    return LQ_OK;
}

lq_status lq_embed_tokens(lq_session *s, const int *tokens, int ntok, float *hidden) {
    const lq_model *m = s->m;
    lq_status st = check_tokens(s, tokens, ntok, 0);
    if (st != LQ_OK) return st;
    for (int i = 0; i < ntok; i++) embed_token(m, tokens[i], hidden + (size_t)i * m->cfg.dim);
    return LQ_OK;
}

lq_status lq_layer_forward(lq_session *s, int layer, float *hidden, int ntok,
                           const lq_layer_hook *hook) {
    const lq_model *m = s->m;
    int dim = m->cfg.dim;
    if (layer < 0 || layer >= m->cfg.n_layers)
        return lq_fail(LQ_ERR_ARG, "lq_layer_forward: layer %d is outside [0, %d)", layer,
                       m->cfg.n_layers);
    if (ntok < 1 || ntok > s->max_tokens)
        return lq_fail(LQ_ERR_RANGE, "lq_layer_forward: %d tokens do not fit the session's "
                       "%d-token KV cache", ntok, s->max_tokens);
    for (int done = 0; done < ntok;) {
        int n = ntok - done < s->chunk ? ntok - done : s->chunk;
        memcpy(s->x, hidden + (size_t)done * dim, (size_t)n * dim * sizeof(float));
        lq_status st = layer_chunk(s, layer, n, done, hook);
        if (st != LQ_OK) return st;
        memcpy(hidden + (size_t)done * dim, s->x, (size_t)n * dim * sizeof(float));
        done += n;
    }
    return LQ_OK;
}

lq_status lq_forward(lq_session *s, const int *tokens, int ntok, float *logits, int all_logits) {
    const lq_model *m = s->m;
    if (ntok < 1) return lq_fail(LQ_ERR_ARG, "lq_forward: ntok = %d, need at least 1", ntok);
    if (!tokens) return lq_fail(LQ_ERR_ARG, "lq_forward: no tokens");
    if (ntok > s->max_tokens - s->pos)
        return lq_fail(LQ_ERR_RANGE,
                       "%s: context full: %d tokens at position %d exceed the session's %d-token "
                       "KV cache",
                       m->source, ntok, s->pos, s->max_tokens);
    int vocab = m->cfg.vocab_size, dim = m->cfg.dim;
    for (int done = 0; done < ntok;) {
        int n = ntok - done < s->chunk ? ntok - done : s->chunk;
        lq_status st = run_chunk(s, tokens + done, n);
        if (st != LQ_OK) return st; /* the position stays where it was: the chunk is not kept */
        s->pos += n;
        if (logits && all_logits) {
            st = linear(&m->lm_head, s->xb, n, logits + (size_t)done * vocab, "lm_head", -1);
        } else if (logits && done + n == ntok) {
            /* only the last token's logits are wanted: one row instead of n */
            st = linear(&m->lm_head, s->xb + (size_t)(n - 1) * dim, 1, logits, "lm_head", -1);
        }
        if (st != LQ_OK) return st;
        done += n;
    }
    return LQ_OK;
}
