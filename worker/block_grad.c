/* The backward pass of one decoder layer (lq_block.h), written by hand.
 *
 * Forward, over T rows at positions 0 … T−1 (D = dim, Q = n_heads·hd, K = n_kv_heads·hd,
 * H = hidden_dim; shapes in comments are rows × columns, row-major):
 *     xn1 = lq_rmsnorm(x; attn_norm)                       T × D
 *     qr = xn1·Wqᵀ (+bq), kr = xn1·Wkᵀ (+bk), v = xn1·Wvᵀ (+bv)
 *     q = rope(qnorm(qr)), k = rope(knorm(kr))          per head of hd
 *     P_h = causal_softmax(s · q_h·k_gᵀ)                T × T, g = h / (n_heads/n_kv_heads)
 *     att_h = P_h·v_g                                   T × hd, heads side by side: T × Q
 *     h1 = x + att·Woᵀ (+bo)                            T × D
 *     xn2 = lq_rmsnorm(h1; ffn_norm)
 *     g = xn2·Wgᵀ, u = xn2·Wuᵀ, a = silu(g)⊙u           T × H
 *     y = h1 + a·Wdᵀ                                    T × D
 * and loss = λ·Σ(y − target)². The backward runs the same steps in reverse with dY = 2λ(y − t):
 * each linear Y = X·Wᵀ gives dW = dYᵀ·X (out × in) and dX = dY·W; the attention input norm is
 * not differentiated (nothing before it has weights here), the MLP's is, because h1 carries the
 * attention linears' contribution to y both directly and through xn2.
 *
 * The forward mirrors forward.c's arithmetic (float products, double sums of squares, the same
 * float RoPE tables) so that y equals lq_layer_forward's output to rounding; it computes whole
 * T × T score matrices with one GEMM per head, where forward.c runs a per-row loop over a KV
 * cache, and masks the upper triangle to exact zeros. */
#include "lq_block.h"

#include "lq_blas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOCK_TOKENS 65536

struct lq_block_grad {
    lq_model_config c;
    int max_tokens;
    size_t bytes;
    float *rope_cos, *rope_sin;          /* max_tokens × rope_dim/2 */
    /* forward activations, kept for the backward (T = max_tokens rows each) */
    float *xn1, *h1, *xn2, *y;           /* T × D; y becomes dY in the backward */
    float *qr, *q, *att;                 /* T × Q: before q-norm/RoPE, after, attention output */
    float *kr, *k, *v;                   /* T × K */
    float *g, *u, *a;                    /* T × H */
    float *prob;                         /* n_heads × T × T softmax probabilities */
    /* gradients */
    float *dxn2;                         /* T × D, then dh1 in place */
    float *datt, *dq;                    /* T × Q */
    float *dk, *dv;                      /* T × K */
    float *dg, *du;                      /* T × H */
    float *dp;                           /* T × T, one head at a time */
};

/* ---- building blocks ---------------------------------------------------------------------- */

/* Backward of out = w ⊙ x·r, r = (mean(x²) + eps)^(−1/2): with gy = dy ⊙ w,
 * dx = r·gy − (r³/n)·x·Σ(gy ⊙ x). dx may alias dy (each dy[j] is read before dx[j] is
 * written). */
static void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int n,
                             float eps) {
    double ss = 0.0, dot = 0.0;
    for (int j = 0; j < n; j++) {
        ss += (double)x[j] * x[j];
        dot += (double)dy[j] * w[j] * x[j];
    }
    double r = 1.0 / sqrt(ss / n + eps);
    float fr = (float)r, coef = (float)(r * r * r * dot / n);
    for (int j = 0; j < n; j++) dx[j] = fr * (dy[j] * w[j]) - coef * x[j];
}

/* Rotates one head vector at position `pos` by the angles (sign = 1) or back (sign = −1): the
 * rotation is orthogonal, so its transpose, the backward of the forward rotation, is the
 * rotation by the opposite angles. Pairs as forward.c's rope_head. */
static void rope_head(const lq_block_grad *b, float *v, int pos, float sign) {
    const lq_model_config *c = &b->c;
    int half = c->rope_dim / 2;
    const float *cs = b->rope_cos + (size_t)pos * half, *sn = b->rope_sin + (size_t)pos * half;
    int stride = c->rope_style == LQ_ROPE_INTERLEAVED ? 2 : 1;
    int offset = c->rope_style == LQ_ROPE_INTERLEAVED ? 1 : half;
    for (int i = 0; i < half; i++) {
        float *pa = &v[i * stride], *pb = &v[i * stride + offset];
        float x0 = *pa, x1 = *pb, s = sign * sn[i];
        *pa = x0 * cs[i] - x1 * s;
        *pb = x0 * s + x1 * cs[i];
    }
}

/* Y (T × out) = X (T × in)·Wᵀ (+ bias) */
static void linear(const float *X, int T, int in, int out, const float *W, const float *bias,
                   float *Y) {
    lq_gemm_f32_nt(T, out, in, X, in, W, in, Y, out, 0);
    if (bias)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < out; j++) Y[(size_t)i * out + j] += bias[j];
}

/* Backward of linear(): dW (out × in) = dYᵀ·X unless dW is NULL; dX (T × in) = dY·W, added to
 * dX when accumulate, unless dX is NULL. */
static void linear_backward(const float *dY, const float *X, int T, int in, int out,
                            const float *W, float *dW, float *dX, int accumulate) {
    if (dW) lq_gemm_f32(1, 0, out, in, T, 1.0f, dY, out, X, in, 0.0f, dW, in);
    if (dX) lq_gemm_f32(0, 0, T, in, out, 1.0f, dY, out, W, in, accumulate ? 1.0f : 0.0f, dX, in);
}

/* ---- scratch ------------------------------------------------------------------------------ */

void lq_block_grad_free(lq_block_grad *b) {
    if (!b) return;
    float **all[] = {&b->rope_cos, &b->rope_sin, &b->xn1, &b->h1, &b->xn2, &b->y, &b->qr,
                     &b->q, &b->att, &b->kr, &b->k, &b->v, &b->g, &b->u, &b->a, &b->prob,
                     &b->dxn2, &b->datt, &b->dq, &b->dk, &b->dv, &b->dg, &b->du, &b->dp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(*all[i]);
    free(b);
}

size_t lq_block_grad_bytes(const lq_block_grad *b) { return b->bytes; }

/* rows × width floats, counted into *bytes; NULL on overflow or OOM */
static float *alloc_rows(size_t rows, size_t width, size_t *bytes) {
    if (width != 0 && rows > SIZE_MAX / sizeof(float) / width) return NULL;
    size_t n = rows * width * sizeof(float);
    *bytes += n;
    return malloc(n ? n : 1);
}

lq_status lq_block_grad_new(const lq_model_config *c, int max_tokens, lq_block_grad **out) {
    *out = NULL;
    lq_status st = lq_model_config_validate(c, "lq_block_grad_new: config");
    if (st != LQ_OK) return st;
    if (max_tokens < 1 || max_tokens > MAX_BLOCK_TOKENS)
        return lq_fail(LQ_ERR_ARG, "lq_block_grad_new: max_tokens = %d is outside [1, %d]",
                       max_tokens, MAX_BLOCK_TOKENS);
    lq_block_grad *b = calloc(1, sizeof *b);
    if (!b) return lq_fail(LQ_ERR_NOMEM, "lq_block_grad_new: out of memory");
    b->c = *c;
    b->max_tokens = max_tokens;
    size_t T = (size_t)max_tokens, D = (size_t)c->dim, H = (size_t)c->hidden_dim;
    size_t Q = (size_t)c->n_heads * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim;
    size_t half = (size_t)c->rope_dim / 2, *n = &b->bytes;
    b->rope_cos = alloc_rows(T, half, n), b->rope_sin = alloc_rows(T, half, n);
    b->xn1 = alloc_rows(T, D, n), b->h1 = alloc_rows(T, D, n), b->xn2 = alloc_rows(T, D, n);
    b->y = alloc_rows(T, D, n), b->dxn2 = alloc_rows(T, D, n);
    b->qr = alloc_rows(T, Q, n), b->q = alloc_rows(T, Q, n), b->att = alloc_rows(T, Q, n);
    b->datt = alloc_rows(T, Q, n), b->dq = alloc_rows(T, Q, n);
    b->kr = alloc_rows(T, K, n), b->k = alloc_rows(T, K, n), b->v = alloc_rows(T, K, n);
    b->dk = alloc_rows(T, K, n), b->dv = alloc_rows(T, K, n);
    b->g = alloc_rows(T, H, n), b->u = alloc_rows(T, H, n), b->a = alloc_rows(T, H, n);
    b->dg = alloc_rows(T, H, n), b->du = alloc_rows(T, H, n);
    b->prob = alloc_rows((size_t)c->n_heads * T, T, n);
    b->dp = alloc_rows(T, T, n);
    double *inv_freq = malloc((half ? half : 1) * sizeof *inv_freq);
    int ok = inv_freq != NULL;
    float **all[] = {&b->rope_cos, &b->rope_sin, &b->xn1, &b->h1, &b->xn2, &b->y, &b->qr,
                     &b->q, &b->att, &b->kr, &b->k, &b->v, &b->g, &b->u, &b->a, &b->prob,
                     &b->dxn2, &b->datt, &b->dq, &b->dk, &b->dv, &b->dg, &b->du, &b->dp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ok = ok && *all[i] != NULL;
    if (!ok) {
        size_t mb = b->bytes >> 20;
        free(inv_freq);
        lq_block_grad_free(b);
        return lq_fail(LQ_ERR_NOMEM, "lq_block_grad_new: out of memory for %d tokens (%zu MB)",
                       max_tokens, mb);
    }
    /* the session's tables (forward.c): angles in double, stored as float */
    lq_rope_inv_freq(c, inv_freq);
    for (size_t p = 0; p < T; p++)
        for (size_t i = 0; i < half; i++) {
            double angle = (double)p * inv_freq[i];
            b->rope_cos[p * half + i] = (float)cos(angle);
            b->rope_sin[p * half + i] = (float)sin(angle);
        }
    free(inv_freq);
    *out = b;
    return LQ_OK;
}

/* ---- argument checks ---------------------------------------------------------------------- */

/* The fields that size the scratch or fill the RoPE tables must be those of lq_block_grad_new's
 * config; the rest (vocab, layers, arch) do not touch one layer. */
static lq_status check_config(const lq_model_config *a, const lq_model_config *c) {
#define SAME(field)                                                                           \
    if (a->field != c->field)                                                                 \
        return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: c->" #field " = %g differs from the " \
                       "%g the scratch was made for", (double)c->field, (double)a->field);
    SAME(dim) SAME(hidden_dim) SAME(n_heads) SAME(n_kv_heads) SAME(head_dim) SAME(norm_eps)
    SAME(rope_theta) SAME(rope_dim) SAME(rope_style) SAME(rope_scale_factor)
    SAME(rope_low_freq_factor) SAME(rope_high_freq_factor) SAME(rope_original_max_pos)
#undef SAME
    return LQ_OK;
}

static lq_status check_args(const lq_block_grad *b, const lq_model_config *c, const lq_layer *L,
                            const float *const weights[7], const float *x, int ntok,
                            const float *target, float *const grads[7]) {
    static const char *names[LQ_BLOCK_LINEARS] = {"wq", "wk", "wv", "wo", "w_gate", "w_up",
                                                  "w_down"};
    if (!b || !c || !L || !weights || !x)
        return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: %s is NULL",
                       !b ? "b" : !c ? "c" : !L ? "L" : !weights ? "weights" : "x");
    if (ntok < 1 || ntok > b->max_tokens)
        return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: ntok = %d is outside [1, max_tokens = %d]",
                       ntok, b->max_tokens);
    if (grads && !target)
        return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: grads asked for without a target");
    lq_status st = check_config(&b->c, c);
    if (st != LQ_OK) return st;
    if (!L->attn_norm || !L->ffn_norm)
        return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: L->%s is NULL",
                       !L->attn_norm ? "attn_norm" : "ffn_norm");
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    const int want_out[LQ_BLOCK_LINEARS] = {q, kv, kv, c->dim, c->hidden_dim, c->hidden_dim, c->dim};
    const int want_in[LQ_BLOCK_LINEARS] = {c->dim, c->dim, c->dim, q, c->dim, c->dim,
                                           c->hidden_dim};
    const lq_linear *lin[LQ_BLOCK_LINEARS] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                              &L->w_gate, &L->w_up, &L->w_down};
    for (int i = 0; i < LQ_BLOCK_LINEARS; i++) {
        if (!weights[i])
            return lq_fail(LQ_ERR_ARG, "lq_block_loss_grad: weights[%d] (%s) is NULL", i, names[i]);
        if (lin[i]->out_features != want_out[i] || lin[i]->in_features != want_in[i])
            return lq_fail(LQ_ERR_ARG,
                           "lq_block_loss_grad: L->%s is %d × %d, the config makes it %d × %d",
                           names[i], lin[i]->out_features, lin[i]->in_features, want_out[i],
                           want_in[i]);
    }
    return LQ_OK;
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Row i of the scores (already scaled) → causal softmax over columns 0 … i; the columns after
 * i become exact zeros, which is what makes the full-matrix GEMMs below causal. */
static void softmax_causal_row(float *row, int i, int T) {
    float max = -INFINITY;
    for (int t = 0; t <= i; t++)
        if (row[t] > max) max = row[t];
    double sum = 0.0;
    for (int t = 0; t <= i; t++) {
        row[t] = expf(row[t] - max);
        sum += row[t];
    }
    float inv = (float)(1.0 / sum);
    for (int t = 0; t <= i; t++) row[t] *= inv;
    for (int t = i + 1; t < T; t++) row[t] = 0.0f;
}

/* q (T × Q), k, v (T × K) → prob (n_heads × T × T) and att (T × Q) */
static void attention_forward(lq_block_grad *b, int T) {
    const lq_model_config *c = &b->c;
    int hd = c->head_dim, Q = c->n_heads * hd, K = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < c->n_heads; h++) {
        int g = h / group; /* consecutive query heads share a KV head */
        float *P = b->prob + (size_t)h * T * T;
        /* S = s·q_h·k_gᵀ (T × T); the upper triangle is computed and thrown away: splitting
         * the product into triangular pieces would save half of a small share of the work */
        lq_gemm_f32(0, 1, T, T, hd, scale, b->q + (size_t)h * hd, Q, b->k + (size_t)g * hd, K,
                    0.0f, P, T);
        for (int i = 0; i < T; i++) softmax_causal_row(P + (size_t)i * T, i, T);
        /* att_h = P·v_g (T × hd), written into its columns of att */
        lq_gemm_f32(0, 0, T, hd, T, 1.0f, P, T, b->v + (size_t)g * hd, K, 0.0f,
                    b->att + (size_t)h * hd, Q);
    }
}

/* datt (T × Q) → dq (T × Q), dk, dv (T × K), all before RoPE's backward */
static void attention_backward(lq_block_grad *b, int T) {
    const lq_model_config *c = &b->c;
    int hd = c->head_dim, Q = c->n_heads * hd, K = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    float *dP = b->dp;
    for (int h = 0; h < c->n_heads; h++) {
        int g = h / group;
        /* the KV head's gradients sum over the query heads of its group */
        float beta = h % group == 0 ? 0.0f : 1.0f;
        const float *P = b->prob + (size_t)h * T * T;
        const float *dO = b->datt + (size_t)h * hd, *qh = b->q + (size_t)h * hd;
        const float *kg = b->k + (size_t)g * hd, *vg = b->v + (size_t)g * hd;
        /* dP = dO·v_gᵀ (T × T); dv_g += Pᵀ·dO (T × hd) */
        lq_gemm_f32(0, 1, T, T, hd, 1.0f, dO, Q, vg, K, 0.0f, dP, T);
        lq_gemm_f32(1, 0, T, hd, T, 1.0f, P, T, dO, Q, beta, b->dv + (size_t)g * hd, K);
        /* softmax: dS_ij = P_ij·(dP_ij − Σ_t P_it·dP_it); zero where P is (above the diagonal) */
        for (int i = 0; i < T; i++) {
            const float *p = P + (size_t)i * T;
            float *d = dP + (size_t)i * T;
            double dot = 0.0;
            for (int t = 0; t <= i; t++) dot += (double)p[t] * d[t];
            float fdot = (float)dot;
            for (int t = 0; t <= i; t++) d[t] = p[t] * (d[t] - fdot);
            for (int t = i + 1; t < T; t++) d[t] = 0.0f;
        }
        /* S = s·q_h·k_gᵀ: dq_h = s·dS·k_g, dk_g += s·dSᵀ·q_h (T × hd each) */
        lq_gemm_f32(0, 0, T, hd, T, scale, dP, T, kg, K, 0.0f, b->dq + (size_t)h * hd, Q);
        lq_gemm_f32(1, 0, T, hd, T, scale, dP, T, qh, Q, beta, b->dk + (size_t)g * hd, K);
    }
}

/* ---- the layer ---------------------------------------------------------------------------- */

lq_status lq_block_loss_grad(lq_block_grad *b, const lq_model_config *c, const lq_layer *L,
                             const float *const weights[7], const float *const bias[7],
                             const float *x, int ntok, const float *target, double loss_scale,
                             float *out, float *const grads[7], double *loss) {
    if (loss) *loss = 0.0;
    lq_status st = check_args(b, c, L, weights, x, ntok, target, grads);
    if (st != LQ_OK) return st;
    c = &b->c;
    int T = ntok, D = c->dim, H = c->hidden_dim, hd = c->head_dim;
    int Q = c->n_heads * hd, K = c->n_kv_heads * hd;
    float eps = c->norm_eps;
    const float *Wq = weights[0], *Wk = weights[1], *Wv = weights[2], *Wo = weights[3];
    const float *Wg = weights[4], *Wu = weights[5], *Wd = weights[6];
    const float *no_bias[LQ_BLOCK_LINEARS] = {NULL};
    const float *const *bs = bias ? bias : no_bias;
    size_t TD = (size_t)T * D, TH = (size_t)T * H;

    /* ---- forward ---- */
    for (int i = 0; i < T; i++)
        lq_rmsnorm(b->xn1 + (size_t)i * D, x + (size_t)i * D, L->attn_norm, D, eps);
    linear(b->xn1, T, D, Q, Wq, bs[0], b->qr);
    linear(b->xn1, T, D, K, Wk, bs[1], b->kr);
    linear(b->xn1, T, D, K, Wv, bs[2], b->v);
    for (int i = 0; i < T; i++) {
        for (int h = 0; h < c->n_heads; h++) {
            size_t o = (size_t)i * Q + (size_t)h * hd;
            if (L->q_norm) lq_rmsnorm(b->q + o, b->qr + o, L->q_norm, hd, eps);
            else memcpy(b->q + o, b->qr + o, (size_t)hd * sizeof(float));
            rope_head(b, b->q + o, i, 1.0f);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            size_t o = (size_t)i * K + (size_t)h * hd;
            if (L->k_norm) lq_rmsnorm(b->k + o, b->kr + o, L->k_norm, hd, eps);
            else memcpy(b->k + o, b->kr + o, (size_t)hd * sizeof(float));
            rope_head(b, b->k + o, i, 1.0f);
        }
    }
    attention_forward(b, T);
    /* h1 = x + att·Woᵀ (+bo) */
    linear(b->att, T, Q, D, Wo, bs[3], b->h1);
    for (size_t j = 0; j < TD; j++) b->h1[j] += x[j];
    for (int i = 0; i < T; i++)
        lq_rmsnorm(b->xn2 + (size_t)i * D, b->h1 + (size_t)i * D, L->ffn_norm, D, eps);
    linear(b->xn2, T, D, H, Wg, bs[4], b->g);
    linear(b->xn2, T, D, H, Wu, bs[5], b->u);
    for (size_t j = 0; j < TH; j++) {
        float gj = b->g[j];
        b->a[j] = gj / (1.0f + expf(-gj)) * b->u[j];
    }
    /* y = h1 + a·Wdᵀ (+bd) */
    linear(b->a, T, H, D, Wd, bs[6], b->y);
    for (size_t j = 0; j < TD; j++) b->y[j] += b->h1[j];
    if (out) memcpy(out, b->y, TD * sizeof(float));
    if (!target) return LQ_OK;

    /* loss, and dY = 2λ(y − target) in place of y */
    double sum = 0.0;
    float two_scale = (float)(2.0 * loss_scale);
    for (size_t j = 0; j < TD; j++) {
        float r = b->y[j] - target[j];
        sum += (double)r * r;
        b->y[j] = two_scale * r;
    }
    if (loss) *loss = loss_scale * sum;
    if (!grads) return LQ_OK;

    /* ---- backward ---- */
    const float *dy = b->y;
    /* y = h1 + a·Wdᵀ: dWd = dYᵀ·a; da = dY·Wd, into dg */
    linear_backward(dy, b->a, T, H, D, Wd, grads[6], b->dg, 0);
    /* a = silu(g)⊙u: du = da·silu(g), dg = da·u·silu'(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
    for (size_t j = 0; j < TH; j++) {
        float gj = b->g[j], sg = 1.0f / (1.0f + expf(-gj)), da = b->dg[j];
        b->du[j] = da * gj * sg;
        b->dg[j] = da * b->u[j] * sg * (1.0f + gj * (1.0f - sg));
    }
    /* g = xn2·Wgᵀ, u = xn2·Wuᵀ: their weight gradients, and dxn2 from both */
    linear_backward(b->dg, b->xn2, T, D, H, Wg, grads[4], b->dxn2, 0);
    linear_backward(b->du, b->xn2, T, D, H, Wu, grads[5], b->dxn2, 1);
    /* dh1 = dY (the residual) + the MLP norm's backward of dxn2, in place of dxn2 */
    float *dh1 = b->dxn2;
    for (int i = 0; i < T; i++)
        rmsnorm_backward(dh1 + (size_t)i * D, b->dxn2 + (size_t)i * D, b->h1 + (size_t)i * D,
                         L->ffn_norm, D, eps);
    for (size_t j = 0; j < TD; j++) dh1[j] += dy[j];
    /* h1 = x + att·Woᵀ: dWo = dh1ᵀ·att, datt = dh1·Wo */
    linear_backward(dh1, b->att, T, Q, D, Wo, grads[3], b->datt, 0);
    attention_backward(b, T);
    /* back through RoPE (the opposite rotation) and the per-head norms, to qr and kr */
    for (int i = 0; i < T; i++) {
        for (int h = 0; h < c->n_heads; h++) {
            size_t o = (size_t)i * Q + (size_t)h * hd;
            rope_head(b, b->dq + o, i, -1.0f);
            if (L->q_norm) rmsnorm_backward(b->dq + o, b->dq + o, b->qr + o, L->q_norm, hd, eps);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            size_t o = (size_t)i * K + (size_t)h * hd;
            rope_head(b, b->dk + o, i, -1.0f);
            if (L->k_norm) rmsnorm_backward(b->dk + o, b->dk + o, b->kr + o, L->k_norm, hd, eps);
        }
    }
    /* qr, kr, v = xn1·Wᵀ: only the weight gradients (the gradient to x is not wanted) */
    linear_backward(b->dq, b->xn1, T, D, Q, Wq, grads[0], NULL, 0);
    linear_backward(b->dk, b->xn1, T, D, K, Wk, grads[1], NULL, 0);
    linear_backward(b->dv, b->xn1, T, D, K, Wv, grads[2], NULL, 0);
    return LQ_OK;
}
