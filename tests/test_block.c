/* One decoder layer's loss and hand-written gradient (worker/lq_block.h):
 *
 *  - the forward equals lq_layer_forward (common/forward.c) on small random models with GQA,
 *    both RoPE pair conventions, partial rotary, q/k/v bias and q/k norm, and across
 *    forward.c's 128-row chunks; it also equals a double-precision layer written here from the
 *    Hugging Face definitions, as does the loss;
 *  - every weight gradient equals central finite differences of that double-precision loss,
 *    entry by entry and along a random direction over the whole matrix, for plain llama,
 *    Qwen-style bias + q/k norm, llama3 RoPE scaling and partial rotary;
 *  - bad arguments are refused with LQ_ERR_ARG naming them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "block"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_block.h"
#include "lq_quant.h"
#include "model.h"

/* ---- a small random layer ----------------------------------------------------------------- */
static void fill_normal(lq_rng *r, float *x, size_t n, double scale, double offset) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(offset + scale * lq_rng_normal(r));
}

/* GQA (4 query heads on 2 KV heads) of 8, HALF pairs; hidden 40 so no width coincides */
static lq_model_config small_config(void) {
    lq_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.dim = 24, c.hidden_dim = 40, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2;
    c.head_dim = 8, c.vocab_size = 16, c.max_seq_len = 256, c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f, c.rope_dim = 8, c.rope_style = LQ_ROPE_HALF;
    c.tied_embeddings = 1;
    return c;
}

static void init_linear(lq_model *m, lq_rng *r, lq_linear *lin, int in, int out, int bias) {
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

/* One layer of random weights (norm weights near 1, as trained ones are), no embeddings used */
static lq_model *random_model(const lq_model_config *c, uint64_t seed) {
    lq_model *m;
    assert_int_equal(lq_model_config_validate(c, "test config"), LQ_OK);
    assert_int_equal(lq_model_new(c, &m), LQ_OK);
    lq_rng r;
    lq_rng_seed(&r, seed);
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    m->tok_embeddings = lq_model_alloc(m, (size_t)c->vocab_size * c->dim);
    fill_normal(&r, m->tok_embeddings, (size_t)c->vocab_size * c->dim, 1.0, 0.0);
    lq_layer *L = &m->layers[0];
    L->attn_norm = lq_model_alloc(m, (size_t)c->dim);
    L->ffn_norm = lq_model_alloc(m, (size_t)c->dim);
    fill_normal(&r, L->attn_norm, (size_t)c->dim, 0.2, 1.0);
    fill_normal(&r, L->ffn_norm, (size_t)c->dim, 0.2, 1.0);
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
    m->final_norm = lq_model_alloc(m, (size_t)c->dim);
    fill_normal(&r, m->final_norm, (size_t)c->dim, 0.1, 1.0);
    m->lm_head.in_features = c->dim;
    m->lm_head.out_features = c->vocab_size;
    m->lm_head.weight = m->tok_embeddings;
    snprintf(m->source, sizeof m->source, "synthetic");
    return m;
}

/* the layer's weights and biases in lq_block.h's order, through lq_layer_linear so that the
 * order is the quantizer's */
static void layer_weights(lq_layer *L, const float *w[7], const float *bias[7]) {
    for (int i = 0; i < 7; i++) {
        w[i] = lq_layer_linear(L, i)->weight;
        bias[i] = lq_layer_linear(L, i)->bias;
    }
    assert_ptr_equal(w[0], L->wq.weight);
    assert_ptr_equal(w[3], L->wo.weight);
    assert_ptr_equal(w[6], L->w_down.weight);
}

static size_t linear_size(const lq_layer *L, int i) {
    const lq_linear *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return (size_t)all[i]->out_features * all[i]->in_features;
}

/* ---- a double-precision layer, from the Hugging Face definitions -------------------------- */
static void ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* y (T × out) = x W^T + b, W out × in */
static void ref_linear(const double *x, int T, int in, int out, const double *W, const float *b,
                       double *y) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[(size_t)t * in + i];
            y[(size_t)t * out + o] = s;
        }
}

/* transformers' default and llama3 inverse frequencies, then apply_rotary_pos_emb on the first
 * rope_dim dims: rotate_half for HALF, (2i, 2i+1) pairs for INTERLEAVED */
static void ref_rope(const lq_model_config *c, double *v, int pos) {
    int rd = c->rope_dim, half = rd / 2;
    double out[64];
    assert_true(c->head_dim <= 64);
    memcpy(out, v, sizeof(double) * (size_t)c->head_dim);
    for (int i = 0; i < half; i++) {
        double inv = pow(c->rope_theta, -(2.0 * i) / rd);
        if (c->rope_scale_factor > 0) {
            double wl = 2 * M_PI / inv, old = c->rope_original_max_pos;
            if (wl > old / c->rope_low_freq_factor) {
                inv /= c->rope_scale_factor;
            } else if (wl >= old / c->rope_high_freq_factor) {
                double sm = (old / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1 - sm) * inv / c->rope_scale_factor + sm * inv;
            }
        }
        double cs = cos(pos * inv), sn = sin(pos * inv);
        int ia = c->rope_style == LQ_ROPE_HALF ? i : 2 * i;
        int ib = c->rope_style == LQ_ROPE_HALF ? i + half : 2 * i + 1;
        out[ia] = v[ia] * cs - v[ib] * sn;
        out[ib] = v[ib] * cs + v[ia] * sn;
    }
    memcpy(v, out, sizeof(double) * (size_t)c->head_dim);
}

/* y (T × dim) of the layer with weights W (double copies) */
static void ref_layer(const lq_model_config *c, const lq_layer *L, double *const W[7],
                      const float *const bias[7], const float *xf, int T, double *y) {
    int D = c->dim, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, H = c->hidden_dim;
    int Q = nh * hd, K = nkv * hd;
    double *x = malloc(sizeof(double) * T * D), *xn = malloc(sizeof(double) * T * D);
    double *q = malloc(sizeof(double) * T * Q), *k = malloc(sizeof(double) * T * K);
    double *v = malloc(sizeof(double) * T * K), *att = malloc(sizeof(double) * T * Q);
    double *o = malloc(sizeof(double) * T * D), *g = malloc(sizeof(double) * T * H);
    double *u = malloc(sizeof(double) * T * H), *w = malloc(sizeof(double) * T);
    for (int i = 0; i < T * D; i++) x[i] = xf[i];
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
            int kvh = h / (nh / nkv); /* repeat_kv */
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
    for (int i = 0; i < T * H; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
    ref_linear(g, T, H, D, W[6], bias[6], o);
    for (int i = 0; i < T * D; i++) y[i] = x[i] + o[i];
    free(x), free(xn), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(w);
}

static double ref_loss(const lq_model_config *c, const lq_layer *L, double *const W[7],
                       const float *const bias[7], const float *x, int T, const float *target,
                       double scale) {
    double *y = malloc(sizeof(double) * T * c->dim), s = 0;
    ref_layer(c, L, W, bias, x, T, y);
    for (int i = 0; i < T * c->dim; i++) s += (y[i] - target[i]) * (y[i] - target[i]);
    free(y);
    return scale * s;
}

static double **double_weights(const lq_layer *L, const float *const w[7]) {
    double **W = malloc(sizeof(double *) * 7);
    for (int i = 0; i < 7; i++) {
        size_t n = linear_size(L, i);
        W[i] = malloc(sizeof(double) * n);
        for (size_t j = 0; j < n; j++) W[i][j] = w[i][j];
    }
    return W;
}

static void free_double_weights(double **W) {
    for (int i = 0; i < 7; i++) free(W[i]);
    free(W);
}

static float *random_rows(int T, int D, uint64_t seed) {
    float *x = malloc(sizeof(float) * T * D);
    lq_rng r;
    lq_rng_seed(&r, seed);
    fill_normal(&r, x, (size_t)T * D, 1.0, 0.0);
    return x;
}

/* ---- forward ------------------------------------------------------------------------------ */
static void check_forward(const lq_model_config *c, int T, uint64_t seed) {
    lq_model *m = random_model(c, seed);
    lq_layer *L = &m->layers[0];
    int D = c->dim;
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    float *x = random_rows(T, D, seed + 100);
    float *ours = malloc(sizeof(float) * T * D), *theirs = malloc(sizeof(float) * T * D);
    double *ref = malloc(sizeof(double) * T * D);
    lq_block_grad *b;
    assert_int_equal(lq_block_grad_new(c, T + 3, &b), LQ_OK);
    double loss = -1;
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, NULL, 1.0, ours, NULL, &loss), LQ_OK);
    assert_true(loss == 0.0);

    lq_session *s;
    assert_int_equal(lq_session_new(m, T, &s), LQ_OK);
    memcpy(theirs, x, sizeof(float) * T * D);
    assert_int_equal(lq_layer_forward(s, 0, theirs, T, NULL), LQ_OK);
    double **W = double_weights(L, w);
    ref_layer(c, L, W, bias, x, T, ref);

    double scale = 0, d_forward = 0, d_ref = 0;
    for (int i = 0; i < T * D; i++) {
        scale = fmax(scale, fabs(theirs[i]));
        d_forward = fmax(d_forward, fabs((double)ours[i] - theirs[i]));
        d_ref = fmax(d_ref, fabs(ours[i] - ref[i]));
    }
    if (d_forward > 1e-5 * scale)
        fail_msg("rope %d, bias %d, qk norm %d, %d tokens: differs from lq_layer_forward by %g "
                 "(outputs up to %g)", c->rope_style, c->has_qkv_bias, c->has_qk_norm, T,
                 d_forward, scale);
    if (d_ref > 1e-4 * scale) fail_msg("differs from the double reference by %g", d_ref);

    /* with a target, the loss is the reference's; y is the same with and without one */
    float *target = random_rows(T, D, seed + 200), *again = malloc(sizeof(float) * T * D);
    double lambda = 1.0 / (T * D);
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, target, lambda, again, NULL, &loss),
                     LQ_OK);
    assert_memory_equal(again, ours, sizeof(float) * T * D);
    double want = ref_loss(c, L, W, bias, x, T, target, lambda);
    if (fabs(loss - want) > 1e-5 * want) fail_msg("loss %.9g, reference %.9g", loss, want);

    free_double_weights(W);
    free(x), free(ours), free(theirs), free(ref), free(target), free(again);
    lq_session_free(s);
    lq_block_grad_free(b);
    lq_model_free(m);
}

static void test_forward_matches_layer_forward(void **state) {
    (void)state;
    for (int style = 0; style < 2; style++) {
        lq_model_config c = small_config();
        c.rope_style = style ? LQ_ROPE_INTERLEAVED : LQ_ROPE_HALF;
        check_forward(&c, 13, 1 + style);
        c.has_qkv_bias = 1, c.has_qk_norm = 1;
        check_forward(&c, 13, 3 + style);
        /* partial rotary: only the first 4 of 8 dims turn */
        c.rope_dim = 4;
        check_forward(&c, 11, 5 + style);
    }
    /* llama3 scaling over its three wavelength bands (6.3, 63, 628, 6283 against 16 and 64) and
     * more rows than forward.c's 128-row chunk */
    lq_model_config c = small_config();
    c.rope_scale_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 64;
    c.has_qk_norm = 1;
    check_forward(&c, 150, 7);
    /* multi-head attention, no sharing */
    c = small_config();
    c.n_kv_heads = c.n_heads;
    check_forward(&c, 10, 8);
}

/* ---- gradients ---------------------------------------------------------------------------- */
/* Every weight gradient against central differences of the double loss: `entries` random
 * entries of each matrix, and the derivative along a random direction over the whole matrix
 * (which sees every entry at once). The step is 1e-4 on weights of size ~0.2: truncation error
 * ~1e-8 relative, rounding ~1e-12; what remains is the float arithmetic of the gradient. */
static void check_gradients(const lq_model_config *c, int T, uint64_t seed) {
    lq_model *m = random_model(c, seed);
    lq_layer *L = &m->layers[0];
    int D = c->dim;
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    float *x = random_rows(T, D, seed + 100), *target = random_rows(T, D, seed + 200);
    double lambda = 1.0 / (T * D), loss;
    float *grads[7];
    for (int i = 0; i < 7; i++) grads[i] = malloc(sizeof(float) * linear_size(L, i));
    lq_block_grad *b;
    assert_int_equal(lq_block_grad_new(c, T, &b), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, target, lambda, NULL, grads, &loss),
                     LQ_OK);
    double **W = double_weights(L, w);
    const double h = 1e-4;
    lq_rng r;
    lq_rng_seed(&r, seed + 300);
    static const char *names[7] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
    for (int i = 0; i < 7; i++) {
        size_t n = linear_size(L, i);
        double rms = 0;
        for (size_t j = 0; j < n; j++) rms += (double)grads[i][j] * grads[i][j];
        rms = sqrt(rms / n);
        assert_true(rms > 0);
        for (int e = 0; e < 8; e++) {
            size_t j = (size_t)(lq_rng_uniform(&r) * n);
            double keep = W[i][j];
            W[i][j] = keep + h;
            double up = ref_loss(c, L, W, bias, x, T, target, lambda);
            W[i][j] = keep - h;
            double down = ref_loss(c, L, W, bias, x, T, target, lambda);
            W[i][j] = keep;
            double fd = (up - down) / (2 * h), err = fabs(grads[i][j] - fd);
            /* relative to the entry, floored at a hundredth of the matrix's typical entry */
            if (err > 1e-3 * fmax(fabs(fd), 0.01 * rms))
                fail_msg("%s[%zu]: gradient %.7g, finite difference %.7g (rms %.3g; rope %d, "
                         "bias %d, qk norm %d)", names[i], j, grads[i][j], fd, rms, c->rope_style,
                         c->has_qkv_bias, c->has_qk_norm);
        }
        /* along a random direction R: d/dε loss(W + εR) = Σ grad ⊙ R */
        double *R = malloc(sizeof(double) * n), *W0 = malloc(sizeof(double) * n), dot = 0;
        memcpy(W0, W[i], sizeof(double) * n);
        for (size_t j = 0; j < n; j++) R[j] = lq_rng_normal(&r), dot += grads[i][j] * R[j];
        for (size_t j = 0; j < n; j++) W[i][j] = W0[j] + h * R[j];
        double up = ref_loss(c, L, W, bias, x, T, target, lambda);
        for (size_t j = 0; j < n; j++) W[i][j] = W0[j] - h * R[j];
        double down = ref_loss(c, L, W, bias, x, T, target, lambda);
        memcpy(W[i], W0, sizeof(double) * n);
        double fd = (up - down) / (2 * h);
        if (fabs(dot - fd) > 1e-3 * fabs(fd))
            fail_msg("%s along a random direction: gradient %.7g, finite difference %.7g",
                     names[i], dot, fd);
        free(R), free(W0);
    }
    free_double_weights(W);
    for (int i = 0; i < 7; i++) free(grads[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

static void test_gradients(void **state) {
    (void)state;
    lq_model_config c = small_config();
    check_gradients(&c, 12, 11);             /* plain llama, HALF */
    c.rope_style = LQ_ROPE_INTERLEAVED;
    check_gradients(&c, 12, 12);
    c = small_config();                      /* Qwen: bias and q/k norm */
    c.has_qkv_bias = 1, c.has_qk_norm = 1;
    check_gradients(&c, 12, 13);
    c.rope_style = LQ_ROPE_INTERLEAVED;
    check_gradients(&c, 12, 14);
    c = small_config();                      /* llama3 scaling, partial rotary */
    c.rope_scale_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 64;
    c.rope_dim = 4;
    check_gradients(&c, 16, 15);
}

/* grads[i] NULL skips that matrix only; the others are the full call's */
static void test_partial_grads(void **state) {
    (void)state;
    lq_model_config c = small_config();
    c.has_qk_norm = 1;
    lq_model *m = random_model(&c, 21);
    lq_layer *L = &m->layers[0];
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    int T = 10;
    float *x = random_rows(T, c.dim, 22), *target = random_rows(T, c.dim, 23);
    float *all[7], *some[7];
    for (int i = 0; i < 7; i++) {
        all[i] = malloc(sizeof(float) * linear_size(L, i));
        some[i] = i % 2 ? NULL : malloc(sizeof(float) * linear_size(L, i));
    }
    lq_block_grad *b;
    double l1, l2;
    assert_int_equal(lq_block_grad_new(&c, T, &b), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 0.5, NULL, all, &l1), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 0.5, NULL, some, &l2), LQ_OK);
    assert_true(l1 == l2 && l1 > 0);
    for (int i = 0; i < 7; i += 2)
        assert_memory_equal(all[i], some[i], sizeof(float) * linear_size(L, i));
    for (int i = 0; i < 7; i++) free(all[i]), free(some[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

/* ---- errors ------------------------------------------------------------------------------- */
static void test_errors(void **state) {
    (void)state;
    lq_model_config c = small_config();
    lq_model *m = random_model(&c, 31);
    lq_layer *L = &m->layers[0];
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    int T = 8;
    float *x = random_rows(T + 1, c.dim, 32), *target = random_rows(T + 1, c.dim, 33);
    float *grads[7];
    for (int i = 0; i < 7; i++) grads[i] = malloc(sizeof(float) * linear_size(L, i));
    lq_block_grad *b;
    double loss = 1;
    expect_error(lq_block_grad_new(&c, 0, &b), LQ_ERR_ARG, "max_tokens");
    assert_null(b);
    assert_int_equal(lq_block_grad_new(&c, T, &b), LQ_OK);
    assert_true(lq_block_grad_bytes(b) > 0);

    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, 0, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "ntok = 0");
    assert_true(loss == 0.0);
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T + 1, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "ntok = 9 is outside [1, max_tokens = 8]");
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T, NULL, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "without a target");
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, NULL, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "x is NULL");
    const float *missing[7];
    memcpy(missing, w, sizeof missing);
    missing[5] = NULL;
    expect_error(lq_block_loss_grad(b, &c, L, missing, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "weights[5] (w_up)");
    lq_model_config other = c;
    other.hidden_dim = 48;
    expect_error(lq_block_loss_grad(b, &other, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "c->hidden_dim = 48");
    other = c;
    other.rope_style = LQ_ROPE_INTERLEAVED;
    expect_error(lq_block_loss_grad(b, &other, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "rope_style");
    L->wk.out_features = 8;
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "L->wk is 8 × 24, the config makes it 16 × 24");
    L->wk.out_features = 16;
    /* and after all that, a good call still works */
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                     LQ_OK);
    assert_true(loss > 0);
    for (int i = 0; i < 7; i++) free(grads[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_layer_forward),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_partial_grads),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
