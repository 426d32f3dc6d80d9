/* Synthetic llama-family models with random weights, and an independent double-precision
 * reference for them, shared by the tests that check the forward pass (test_runtime: whole
 * models against reference_logits there) and one layer's loss and gradient (test_block: one
 * layer against ref_layer, and finite differences of it).
 *
 * The reference is written from the Hugging Face modelling code (LlamaRMSNorm, LlamaAttention
 * with repeat_kv, LlamaMLP, Qwen2's q/k/v bias, Qwen3's q/k norm, apply_rotary_pos_emb with
 * rotate_half, the default and llama3 rope init) and llama2.c for the interleaved pairs, not
 * from common/forward.c, so that the tests check the forward pass rather than repeat it. It
 * takes the whole sequence at once, causal, with weight matrices in double so that a test can
 * perturb them finely.
 *
 * Include after cmocka.h and test_util.h. */
#ifndef LQ_TEST_REFERENCE_MODEL_H
#define LQ_TEST_REFERENCE_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#ifndef LQ_TEST_UTIL_H
#error "include test_util.h before reference_model.h"
#endif

/* ---- synthetic models --------------------------------------------------------------------- */
static LQ_TEST_UNUSED void fill_normal(lq_rng *r, float *x, size_t n, double scale, double offset) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(offset + scale * lq_rng_normal(r));
}

/* A plain llama config of the given widths: GQA (4 query heads of 8 on 2 KV heads), HALF
 * pairs over the whole head, tied embeddings; tests switch the optional features on. */
static LQ_TEST_UNUSED lq_model_config synthetic_config(int dim, int hidden_dim, int n_layers,
                                                       int vocab_size) {
    lq_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.dim = dim, c.hidden_dim = hidden_dim, c.n_layers = n_layers, c.n_heads = 4, c.n_kv_heads = 2;
    c.head_dim = 8, c.vocab_size = vocab_size, c.max_seq_len = 256, c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f, c.rope_dim = 8, c.rope_style = LQ_ROPE_HALF;
    c.tied_embeddings = 1;
    return c;
}

/* out × in weights N(0, 1/in), the scale of a trained matrix; bias N(0, 0.1²) */
static LQ_TEST_UNUSED void init_linear(lq_model *m, lq_rng *r, lq_linear *lin, int in, int out,
                                       int bias) {
    lin->in_features = in;
    lin->out_features = out;
    lin->weight = lq_model_alloc(m, (size_t)in * out);
    assert_non_null(lin->weight);
    fill_normal(r, lin->weight, (size_t)in * out, 1.0 / sqrt(in), 0.0);
    if (bias) {
        lin->bias = lq_model_alloc(m, (size_t)out);
        assert_non_null(lin->bias);
        fill_normal(r, lin->bias, (size_t)out, 0.1, 0.0);
    }
}

/* A model of config c with random weights from seed: embeddings N(0, 1), norm weights near 1
 * as trained ones are (the attention and MLP norms N(1, norm_spread²), q/k norms N(1, 0.2²),
 * the final norm N(1, 0.1²)), linears as init_linear, the head tied or its own. */
static LQ_TEST_UNUSED lq_model *random_model(const lq_model_config *c, uint64_t seed,
                                             double norm_spread) {
    lq_model *m;
    assert_int_equal(lq_model_config_validate(c, "test config"), LQ_OK);
    assert_int_equal(lq_model_new(c, &m), LQ_OK);
    lq_rng r;
    lq_rng_seed(&r, seed);
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    m->tok_embeddings = lq_model_alloc(m, (size_t)c->vocab_size * c->dim);
    fill_normal(&r, m->tok_embeddings, (size_t)c->vocab_size * c->dim, 1.0, 0.0);
    for (int l = 0; l < c->n_layers; l++) {
        lq_layer *L = &m->layers[l];
        L->attn_norm = lq_model_alloc(m, (size_t)c->dim);
        L->ffn_norm = lq_model_alloc(m, (size_t)c->dim);
        fill_normal(&r, L->attn_norm, (size_t)c->dim, norm_spread, 1.0);
        fill_normal(&r, L->ffn_norm, (size_t)c->dim, norm_spread, 1.0);
        if (c->has_qk_norm) {
            L->q_norm = lq_model_alloc(m, (size_t)c->head_dim);
            L->k_norm = lq_model_alloc(m, (size_t)c->head_dim);
            fill_normal(&r, L->q_norm, (size_t)c->head_dim, 0.2, 1.0);
            fill_normal(&r, L->k_norm, (size_t)c->head_dim, 0.2, 1.0);
        }
        init_linear(m, &r, &L->wq, c->dim, q_dim, c->has_qkv_bias);
        init_linear(m, &r, &L->wk, c->dim, kv_dim, c->has_qkv_bias);
        init_linear(m, &r, &L->wv, c->dim, kv_dim, c->has_qkv_bias);
        init_linear(m, &r, &L->wo, q_dim, c->dim, 0);
        init_linear(m, &r, &L->w_gate, c->dim, c->hidden_dim, 0);
        init_linear(m, &r, &L->w_up, c->dim, c->hidden_dim, 0);
        init_linear(m, &r, &L->w_down, c->hidden_dim, c->dim, 0);
    }
    m->final_norm = lq_model_alloc(m, (size_t)c->dim);
    fill_normal(&r, m->final_norm, (size_t)c->dim, 0.1, 1.0);
    if (c->tied_embeddings) {
        m->lm_head.in_features = c->dim;
        m->lm_head.out_features = c->vocab_size;
        m->lm_head.weight = m->tok_embeddings;
    } else {
        init_linear(m, &r, &m->lm_head, c->dim, c->vocab_size, 0);
    }
    snprintf(m->source, sizeof m->source, "synthetic");
    return m;
}

/* Linear i of a layer in the quantizer's order (lq_layer_linear, worker/qformat.c, which
 * lq_block.h follows): wq, wk, wv, wo, w_gate, w_up, w_down. */
static LQ_TEST_UNUSED const lq_linear *ref_layer_linear(const lq_layer *L, int i) {
    const lq_linear *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[i];
}

static LQ_TEST_UNUSED size_t linear_size(const lq_layer *L, int i) {
    return (size_t)ref_layer_linear(L, i)->out_features * ref_layer_linear(L, i)->in_features;
}

static LQ_TEST_UNUSED double *double_copy(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * n);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* double copies of the layer's seven weight matrices, in ref_layer_linear's order */
static LQ_TEST_UNUSED double **double_weights(const lq_layer *L) {
    double **W = malloc(sizeof(double *) * 7);
    assert_non_null(W);
    for (int i = 0; i < 7; i++) W[i] = double_copy(ref_layer_linear(L, i)->weight, linear_size(L, i));
    return W;
}

static LQ_TEST_UNUSED void free_double_weights(double **W) {
    for (int i = 0; i < 7; i++) free(W[i]);
    free(W);
}

/* ---- the double-precision reference ------------------------------------------------------- */
static LQ_TEST_UNUSED void ref_rmsnorm(double *out, const double *x, const float *w, int n,
                                       double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* y (T × out) = x W^T + b, W out × in, b NULL for none */
static LQ_TEST_UNUSED void ref_linear(const double *x, int T, int in, int out, const double *W,
                                      const float *b, double *y) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[(size_t)t * in + i];
            y[(size_t)t * out + o] = s;
        }
}

/* One head's vector v (head_dim) turned to position pos: transformers' default and llama3
 * inverse frequencies, then apply_rotary_pos_emb on the first rope_dim dims, rotate_half for
 * HALF and llama2.c's (2i, 2i+1) pairs for INTERLEAVED; the rest of the head stays. */
static LQ_TEST_UNUSED void ref_rope(const lq_model_config *c, double *v, int pos) {
    int rd = c->rope_dim, half = rd / 2;
    double theta[512];
    assert_true(c->head_dim <= 512);
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / pow(c->rope_theta, (2.0 * i) / rd);
        if (c->rope_scale_factor > 0) { /* transformers' _compute_llama3_parameters */
            double low_wl = c->rope_original_max_pos / c->rope_low_freq_factor;
            double high_wl = c->rope_original_max_pos / c->rope_high_freq_factor;
            double wl = 2 * M_PI / inv;
            if (wl > low_wl) inv = inv / c->rope_scale_factor;
            else if (wl >= high_wl) {
                double sm = (c->rope_original_max_pos / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1 - sm) * inv / c->rope_scale_factor + sm * inv;
            }
        }
        theta[i] = pos * inv;
    }
    double out[512];
    memcpy(out, v, sizeof(double) * (size_t)c->head_dim);
    if (c->rope_style == LQ_ROPE_HALF) {
        /* q·cos + rotate_half(q)·sin, with cos/sin = cat(freqs, freqs) */
        for (int j = 0; j < rd; j++) {
            double rot = j < half ? -v[j + half] : v[j - half];
            double t = theta[j % half];
            out[j] = v[j] * cos(t) + rot * sin(t);
        }
    } else {
        for (int i = 0; i < half; i++) {
            double t = theta[i], a = v[2 * i], b = v[2 * i + 1];
            out[2 * i] = a * cos(t) - b * sin(t);
            out[2 * i + 1] = a * sin(t) + b * cos(t);
        }
    }
    memcpy(v, out, sizeof(double) * (size_t)c->head_dim);
}

/* y (T × dim) = decoder layer L of config c on the rows x (T × dim, positions 0 .. T-1), with
 * L's norms and biases and the weight matrices W (ref_layer_linear's order) in place of L's;
 * y may be x. */
static LQ_TEST_UNUSED void ref_layer(const lq_model_config *c, const lq_layer *L,
                                     double *const W[7], const double *x_in, int T, double *y) {
    int D = c->dim, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, H = c->hidden_dim;
    int Q = nh * hd, K = nkv * hd;
    const float *bias[7];
    for (int i = 0; i < 7; i++) bias[i] = ref_layer_linear(L, i)->bias;
    double *x = malloc(sizeof(double) * T * D), *xn = malloc(sizeof(double) * T * D);
    double *q = malloc(sizeof(double) * T * Q), *k = malloc(sizeof(double) * T * K);
    double *v = malloc(sizeof(double) * T * K), *att = malloc(sizeof(double) * T * Q);
    double *o = malloc(sizeof(double) * T * D), *g = malloc(sizeof(double) * T * H);
    double *u = malloc(sizeof(double) * T * H), *w = malloc(sizeof(double) * T);
    memcpy(x, x_in, sizeof(double) * T * D);
    for (int t = 0; t < T; t++) ref_rmsnorm(xn + t * D, x + t * D, L->attn_norm, D, c->norm_eps);
    ref_linear(xn, T, D, Q, W[0], bias[0], q);
    ref_linear(xn, T, D, K, W[1], bias[1], k);
    ref_linear(xn, T, D, K, W[2], bias[2], v);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < nh; h++) {
            if (L->q_norm) ref_rmsnorm(q + t * Q + h * hd, q + t * Q + h * hd, L->q_norm, hd, c->norm_eps);
            ref_rope(c, q + t * Q + h * hd, t);
        }
        for (int h = 0; h < nkv; h++) {
            if (L->k_norm) ref_rmsnorm(k + t * K + h * hd, k + t * K + h * hd, L->k_norm, hd, c->norm_eps);
            ref_rope(c, k + t * K + h * hd, t);
        }
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv); /* repeat_kv: query head h uses KV head h / groups */
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                double dot = 0;
                for (int d = 0; d < hd; d++) dot += q[t * Q + h * hd + d] * k[s * K + kvh * hd + d];
                w[s] = dot / sqrt((double)hd);
                mx = fmax(mx, w[s]);
            }
            for (int s = 0; s <= t; s++) sum += (w[s] = exp(w[s] - mx));
            for (int d = 0; d < hd; d++) {
                double a = 0;
                for (int s = 0; s <= t; s++) a += w[s] / sum * v[s * K + kvh * hd + d];
                att[t * Q + h * hd + d] = a;
            }
        }
    ref_linear(att, T, Q, D, W[3], bias[3], o);
    for (int i = 0; i < T * D; i++) x[i] += o[i];
    for (int t = 0; t < T; t++) ref_rmsnorm(xn + t * D, x + t * D, L->ffn_norm, D, c->norm_eps);
    ref_linear(xn, T, D, H, W[4], bias[4], g);
    ref_linear(xn, T, D, H, W[5], bias[5], u);
    for (int i = 0; i < T * H; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i]; /* SiLU(gate)·up */
    ref_linear(g, T, H, D, W[6], bias[6], o);
    for (int i = 0; i < T * D; i++) y[i] = x[i] + o[i];
    free(x), free(xn), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(w);
}

#endif
