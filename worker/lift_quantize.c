/* The LiftQuant layer quantizer (lq_quant.h): whitening, lattice encoding (plain or block
 * LDLQ), closed-form scale, and the correction by Adam with hand-written gradients.
 *
 * Everything works in the padded width E = t1·t2. The objective is the layer's output error
 * over the calibration tokens, tr((Ŵ − W) H (Ŵ − W)ᵀ): with H = Σ x xᵀ this is exactly the
 * summed squared error of the linear's outputs, so no activation samples need to be kept and
 * one step costs one OC × E × E product whatever the number of calibration tokens. */
#include "lq_quant.h"

#include "lq_blas.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void lq_lift_options_default(lq_lift_options *o) {
    memset(o, 0, sizeof *o);
    o->encoder = LQ_ENCODER_EXACT;
    o->ldlq = 1;
    o->a1_init = 1;
    o->damp = 0.01;
    o->steps = 100;
    o->lr_transform = 1e-3;
    o->lr_scale = 1e-3;
    o->lr_act = 1e-3;
    o->lr_bits = 0.0;
    o->train_bits = 0;
    o->seed = 42;
}

lq_status lq_lift_layout(int in_features, int d, int *t1, int *t2) {
    if (in_features < 1 || d < 1)
        return lq_fail(LQ_ERR_ARG, "lift layout: in_features %d and d %d must be positive",
                       in_features, d);
    double root = sqrt((double)in_features);
    int lo = (int)ceil(root / 2.0 / d), hi = (int)floor(2.0 * root / d);
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    long best_size = -1;
    double best_dist = 0.0;
    for (int k = lo; k <= hi; k++) {
        int b = k * d, a = (in_features + b - 1) / b;
        long size = (long)a * b;
        double dist = fabs(b - root);
        if (best_size < 0 || size < best_size || (size == best_size && dist < best_dist)) {
            best_size = size, best_dist = dist;
            *t1 = a, *t2 = b;
        }
    }
    return LQ_OK;
}

/* ---- small dense helpers ---------------------------------------------------------------- */

/* A random orthogonal n × n matrix: Gram–Schmidt (twice, for orthogonality to rounding) of a
 * Gaussian matrix's rows — Haar-distributed, so every direction is mixed alike. */
static void random_orthogonal(lq_rng *rng, int n, double *Q) {
    for (size_t i = 0; i < (size_t)n * n; i++) Q[i] = lq_rng_normal(rng);
    for (int i = 0; i < n; i++) {
        double *qi = Q + (size_t)i * n;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < i; j++) {
                const double *qj = Q + (size_t)j * n;
                double dot = 0.0;
                for (int c = 0; c < n; c++) dot += qi[c] * qj[c];
                for (int c = 0; c < n; c++) qi[c] -= dot * qj[c];
            }
        double norm = 0.0;
        for (int c = 0; c < n; c++) norm += qi[c] * qi[c];
        norm = 1.0 / sqrt(norm);
        for (int c = 0; c < n; c++) qi[c] *= norm;
    }
}

/* kron(A, B) for row-major A (a × a) and B (b × b): (a·b) × (a·b). */
static void kron(const double *A, int a, const double *B, int b, double *out) {
    size_t n = (size_t)a * b;
    for (int i1 = 0; i1 < a; i1++)
        for (int j1 = 0; j1 < a; j1++) {
            double x = A[(size_t)i1 * a + j1];
            for (int i2 = 0; i2 < b; i2++)
                for (int j2 = 0; j2 < b; j2++)
                    out[((size_t)i1 * b + i2) * n + (size_t)j1 * b + j2] = x * B[(size_t)i2 * b + j2];
        }
}

static float round_f16(float x) {
    uint16_t h;
    float back;
    lq_convert_from_f32(LQ_DTYPE_F16, &x, &h, 1);
    lq_convert_to_f32(LQ_DTYPE_F16, &h, &back, 1);
    return back;
}

/* ---- the effective weight and the objective --------------------------------------------
 * With C_r = Y_r ⊙ A2 (t1 × t3):  Q1_r = C_r·TRᵀ (t1 × t2),  P_r = TLᵀ·Q1_r,
 * Ŵ_r = scale_r · P_r ⊙ a1inv.  The per-row products TLᵀ·Q1_r are done as one GEMM on the
 * "t1-major" layout [i][r][j], which the two transposes below move to and from. */
typedef struct {
    int oc, t1, t2, t3, D, d, E;
    float *C, *Q1, *Q1t, *Pt, *P, *What, *Delta, *G, *Qg, *Qgt, *dQ1t, *dQ1, *dC;
    double *row_loss; /* oc: per-row terms, summed in row order whatever the thread count */
} lift_work;

static void work_free(lift_work *k) {
    free(k->C), free(k->Q1), free(k->Q1t), free(k->Pt), free(k->P), free(k->What), free(k->Delta),
        free(k->G), free(k->Qg), free(k->Qgt), free(k->dQ1t), free(k->dQ1), free(k->dC);
    free(k->row_loss);
    memset(k, 0, sizeof *k);
}

static lq_status work_init(lift_work *k, const lq_lift_weights *w) {
    memset(k, 0, sizeof *k);
    k->oc = w->out_features, k->t1 = w->t1, k->t2 = w->t2, k->t3 = lq_lift_t3(w);
    k->D = w->D, k->d = w->d, k->E = w->t1 * w->t2;
    size_t ok = (size_t)k->oc * k->t1 * k->t3, oe = (size_t)k->oc * k->E;
    k->C = malloc(ok * sizeof(float));
    k->dC = malloc(ok * sizeof(float));
    k->row_loss = malloc((size_t)k->oc * sizeof(double));
    float **e_arrays[] = {&k->Q1, &k->Q1t, &k->Pt, &k->P, &k->What, &k->Delta, &k->G, &k->Qg,
                          &k->Qgt, &k->dQ1t, &k->dQ1};
    int bad = !k->C || !k->dC || !k->row_loss;
    for (size_t i = 0; i < sizeof e_arrays / sizeof *e_arrays; i++) {
        *e_arrays[i] = malloc(oe * sizeof(float));
        bad |= !*e_arrays[i];
    }
    if (bad) {
        work_free(k);
        return lq_fail(LQ_ERR_NOMEM, "lift quantizer: out of memory for a %d × %d layer",
                       w->out_features, k->E);
    }
    return LQ_OK;
}

/* [r][i][j] (oc × t1 × t2) ↔ [i][r][j] (t1 × oc × t2) */
static void to_t1_major(const float *src, float *dst, int oc, int t1, int t2) {
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < t1; i++)
            memcpy(dst + ((size_t)i * oc + r) * t2, src + ((size_t)r * t1 + i) * t2,
                   (size_t)t2 * sizeof(float));
}
static void from_t1_major(const float *src, float *dst, int oc, int t1, int t2) {
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < t1; i++)
            memcpy(dst + ((size_t)r * t1 + i) * t2, src + ((size_t)i * oc + r) * t2,
                   (size_t)t2 * sizeof(float));
}

/* A2 entry for lifted column c of t1-row i */
static inline float a2_at(const lq_lift_weights *w, int i, int c) {
    return w->a2inv[(size_t)i * (w->t2 / w->d) + c / w->D];
}

/* Ŵ (oc × E) into k->What, keeping P for the gradient. */
static void effective_weight(lift_work *k, const lq_lift_weights *w, const float *Y) {
    int oc = k->oc, t1 = k->t1, t2 = k->t2, t3 = k->t3, E = k->E;
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < t1; i++)
            for (int c = 0; c < t3; c++) {
                size_t at = ((size_t)r * t1 + i) * t3 + c;
                k->C[at] = Y[at] * a2_at(w, i, c);
            }
    lq_gemm_f32(0, 1, oc * t1, t2, t3, 1.0f, k->C, t3, w->tr, t3, 0.0f, k->Q1, t2);
    to_t1_major(k->Q1, k->Q1t, oc, t1, t2);
    lq_gemm_f32(1, 0, t1, oc * t2, t1, 1.0f, w->tl, t1, k->Q1t, oc * t2, 0.0f, k->Pt, oc * t2);
    from_t1_major(k->Pt, k->P, oc, t1, t2);
    for (int r = 0; r < oc; r++)
        for (int c = 0; c < E; c++)
            k->What[(size_t)r * E + c] = w->scale[r] * k->P[(size_t)r * E + c] * w->a1inv[c];
}

/* The chain from dL/dŴ (k->G, OC × E) to every parameter, at the point of the last
 * effective_weight call (it reads k->P, k->Q1t and k->C). Shared by the per-linear objective
 * below and the per-block correction (lq_lift_trainer), whose dL/dŴ comes from a backward
 * pass through the whole decoder layer. */
static void grads_from_weight_grad(lift_work *k, const lq_lift_weights *w, const float *Y,
                                   float *g_scale, float *g_a1inv, float *g_tl, float *g_tr,
                                   float *g_a2inv, float *g_y) {
    int oc = k->oc, t1 = k->t1, t2 = k->t2, t3 = k->t3, E = k->E;
    if (g_a1inv) memset(g_a1inv, 0, (size_t)E * sizeof(float));
    for (int r = 0; r < oc; r++) {
        const float *g = k->G + (size_t)r * E, *p = k->P + (size_t)r * E;
        double ds = 0.0;
        for (int c = 0; c < E; c++) {
            ds += (double)g[c] * p[c] * w->a1inv[c];
            if (g_a1inv) g_a1inv[c] += g[c] * w->scale[r] * p[c];
            k->Qg[(size_t)r * E + c] = w->scale[r] * g[c] * w->a1inv[c];
        }
        if (g_scale) g_scale[r] = (float)ds;
    }
    to_t1_major(k->Qg, k->Qgt, oc, t1, t2);
    /* P = TLᵀ·Q1  ⇒  dTL = Q1·Qgᵀ (summed over rows), dQ1 = TL·Qg */
    if (g_tl) lq_gemm_f32(0, 1, t1, t1, oc * t2, 1.0f, k->Q1t, oc * t2, k->Qgt, oc * t2, 0.0f, g_tl, t1);
    lq_gemm_f32(0, 0, t1, oc * t2, t1, 1.0f, w->tl, t1, k->Qgt, oc * t2, 0.0f, k->dQ1t, oc * t2);
    from_t1_major(k->dQ1t, k->dQ1, oc, t1, t2);
    /* Q1 = C·TRᵀ  ⇒  dTR = dQ1ᵀ·C, dC = dQ1·TR */
    if (g_tr) lq_gemm_f32(1, 0, t2, t3, oc * t1, 1.0f, k->dQ1, t2, k->C, t3, 0.0f, g_tr, t3);
    lq_gemm_f32(0, 0, oc * t1, t3, t2, 1.0f, k->dQ1, t2, w->tr, t3, 0.0f, k->dC, t3);
    int blocks = t2 / k->d;
    if (g_a2inv) memset(g_a2inv, 0, (size_t)t1 * blocks * sizeof(float));
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < t1; i++)
            for (int c = 0; c < t3; c++) {
                size_t at = ((size_t)r * t1 + i) * t3 + c;
                if (g_a2inv) g_a2inv[(size_t)i * blocks + c / k->D] += k->dC[at] * Y[at];
                if (g_y) g_y[at] = k->dC[at] * a2_at(w, i, c);
            }
}

/* loss and gradient; Y is OC × K (= oc × t1 × t3) of ±1 */
static double loss_grad(lift_work *k, const lq_lift_weights *w, const float *Y, const float *W,
                        const float *H, double norm, float *g_scale, float *g_a1inv, float *g_tl,
                        float *g_tr, float *g_a2inv, float *g_y) {
    int oc = k->oc, E = k->E;
    effective_weight(k, w, Y);
    for (size_t i = 0; i < (size_t)oc * E; i++) k->Delta[i] = k->What[i] - W[i];
    /* G = Δ·H (H symmetric); loss = Σ Δ ⊙ G; dL/dŴ = 2G/norm */
    lq_gemm_f32(0, 0, oc, E, E, 1.0f, k->Delta, E, H, E, 0.0f, k->G, E);
    /* Not an OpenMP reduction: its partial sums follow the thread count, and the correction keeps
     * the iterate with the least loss, so a last-bit difference could pick another iterate and
     * change the model's bytes between a 1-thread and a 2-thread run of the same job. */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < oc; r++) {
        double acc = 0.0;
        for (int c = 0; c < E; c++) acc += (double)k->Delta[(size_t)r * E + c] * k->G[(size_t)r * E + c];
        k->row_loss[r] = acc;
    }
    double loss = 0.0;
    for (int r = 0; r < oc; r++) loss += k->row_loss[r];
    loss /= norm;
    if (!g_scale && !g_a1inv && !g_tl && !g_tr && !g_a2inv && !g_y) return loss;
    float two = (float)(2.0 / norm);
    for (size_t i = 0; i < (size_t)oc * E; i++) k->G[i] *= two;
    grads_from_weight_grad(k, w, Y, g_scale, g_a1inv, g_tl, g_tr, g_a2inv, g_y);
    return loss;
}

double lq_lift_loss_grad(const lq_lift_weights *w, const float *Y, const float *W, const float *H,
                         double norm, float *g_scale, float *g_a1inv, float *g_tl, float *g_tr,
                         float *g_a2inv, float *g_y) {
    lift_work k;
    if (work_init(&k, w) != LQ_OK) return NAN;
    double loss = loss_grad(&k, w, Y, W, H, norm, g_scale, g_a1inv, g_tl, g_tr, g_a2inv, g_y);
    work_free(&k);
    return loss;
}

/* ---- Adam --------------------------------------------------------------------------------- */
typedef struct {
    float *param, *grad, *m, *v;
    size_t n;
    double lr;
    const float *lr_ref; /* per-element step size multiplier (NULL: 1): the scales' own size */
} adam_group;

static void adam_step(adam_group *g, double lr_factor, int t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double c1 = 1.0 - pow(b1, t), c2 = 1.0 - pow(b2, t), lr = g->lr * lr_factor;
    for (size_t i = 0; i < g->n; i++) {
        double gr = g->grad[i];
        g->m[i] = (float)(b1 * g->m[i] + (1 - b1) * gr);
        g->v[i] = (float)(b2 * g->v[i] + (1 - b2) * gr * gr);
        double step = lr * (g->m[i] / c1) / (sqrt(g->v[i] / c2) + eps);
        g->param[i] -= (float)(g->lr_ref ? step * fabsf(g->lr_ref[i]) : step);
    }
}

/* ---- encoding ----------------------------------------------------------------------------- */

/* Encodes Wt (oc × E, whitened, modified in place by the LDLQ feedback) into codes
 * (oc × E/d) with row scales ell. U: upper Cholesky factor of the damped whitened H⁻¹, or
 * NULL for independent blocks. */
static lq_status encode_rows(const lq_lift_options *o, double *Wt, int oc, int E,
                             const double *ell, const double *U, uint64_t *codes) {
    int d = o->lattice->d, D = o->lattice->D, nb = E / d;
    const float *M = o->lattice->M;
    float *blocks = malloc((size_t)oc * d * sizeof(float));
    uint64_t *col_codes = malloc((size_t)oc * sizeof(uint64_t));
    double *err = malloc((size_t)oc * d * sizeof(double));
    /* lazy batch: feedback inside a span of columns is applied at once per block; the rest of
     * the matrix is updated once per span with one GEMM */
    int span_blocks = (128 + d - 1) / d, span = span_blocks * d;
    double *span_err = malloc((size_t)oc * span * sizeof(double));
    double *ubb_inv = malloc((size_t)d * d * sizeof(double));
    if (!blocks || !col_codes || !err || !span_err || !ubb_inv) {
        free(blocks), free(col_codes), free(err), free(span_err), free(ubb_inv);
        return lq_fail(LQ_ERR_NOMEM, "lift encode: out of memory");
    }
    lq_status st = LQ_OK;
    for (int s0 = 0; s0 < nb && st == LQ_OK; s0 += span_blocks) {
        int s1 = s0 + span_blocks < nb ? s0 + span_blocks : nb;
        int c_begin = s0 * d, c_end = s1 * d;
        for (int b = s0; b < s1; b++) {
            int c0 = b * d;
            for (int r = 0; r < oc; r++)
                for (int i = 0; i < d; i++)
                    blocks[(size_t)r * d + i] = (float)(Wt[(size_t)r * E + c0 + i] / ell[r]);
            st = lq_encode(o->encoder, o->lattice, blocks, (size_t)oc, col_codes, NULL, NULL);
            if (st != LQ_OK) break;
            for (int r = 0; r < oc; r++) {
                codes[(size_t)r * nb + b] = col_codes[r];
                for (int i = 0; i < d; i++) {
                    double q = 0.0;
                    for (int j = 0; j < D; j++) q += (double)M[i * D + j] * lq_code_sign(col_codes[r], j);
                    err[(size_t)r * d + i] = Wt[(size_t)r * E + c0 + i] - ell[r] * q;
                }
            }
            if (!U) continue;
            /* feedback: Err = E_b · U_bb⁻¹ (U_bb upper triangular: invert by substitution) */
            for (int i = 0; i < d * d; i++) ubb_inv[i] = 0.0;
            for (int col = 0; col < d; col++) {
                /* solve U_bb x = e_col */
                for (int i = d - 1; i >= 0; i--) {
                    double v = (i == col) ? 1.0 : 0.0;
                    for (int j = i + 1; j < d; j++) v -= U[(size_t)(c0 + i) * E + c0 + j] * ubb_inv[j * d + col];
                    ubb_inv[i * d + col] = v / U[(size_t)(c0 + i) * E + c0 + i];
                }
            }
            for (int r = 0; r < oc; r++)
                for (int j = 0; j < d; j++) {
                    double v = 0.0;
                    for (int i = 0; i <= j; i++) v += err[(size_t)r * d + i] * ubb_inv[i * d + j];
                    span_err[(size_t)r * span + (c0 - c_begin) + j] = v;
                }
            /* within the span: W[:, c0+d : c_end] −= Err_b · U[b, c0+d : c_end] */
            int rest = c_end - (c0 + d);
            if (rest > 0)
                lq_gemm_f64(0, 0, oc, rest, d, -1.0, span_err + (c0 - c_begin), span,
                            U + (size_t)c0 * E + c0 + d, E, 1.0, Wt + c0 + d, E);
        }
        if (st != LQ_OK || !U) continue;
        int rest = E - c_end;
        if (rest > 0)
            lq_gemm_f64(0, 0, oc, rest, c_end - c_begin, -1.0, span_err, span,
                        U + (size_t)c_begin * E + c_end, E, 1.0, Wt + c_end, E);
    }
    free(blocks), free(col_codes), free(err), free(span_err), free(ubb_inv);
    return st;
}

/* ---- the quantizer ------------------------------------------------------------------------ */

/* The side data is stored in f16 (schemas/FORMAT.md); the final error is measured on it. */
static void round_side_to_f16(lq_lift_weights *w) {
    int t1 = w->t1, t2 = w->t2, t3 = lq_lift_t3(w);
    for (int r = 0; r < w->out_features; r++) w->scale[r] = round_f16(w->scale[r]);
    for (int c = 0; c < t1 * t2; c++) w->a1inv[c] = round_f16(w->a1inv[c]);
    for (int i = 0; i < t1 * t1; i++) w->tl[i] = round_f16(w->tl[i]);
    for (int i = 0; i < t2 * t3; i++) w->tr[i] = round_f16(w->tr[i]);
    for (int i = 0; i < t1 * (t2 / w->d); i++) w->a2inv[i] = round_f16(w->a2inv[i]);
}

/* closed-form scale per row under H: s = ⟨W_r, P_r⟩_H / ⟨P_r, P_r⟩_H with P_r = Ŵ_r / s_r */
static void refit_scale(lift_work *k, lq_lift_weights *w, const float *Y, const float *W,
                        const float *H) {
    int oc = k->oc, E = k->E;
    for (int r = 0; r < oc; r++) w->scale[r] = 1.0f;
    effective_weight(k, w, Y); /* What = P ⊙ a1inv */
    lq_gemm_f32(0, 0, oc, E, E, 1.0f, k->What, E, H, E, 0.0f, k->G, E);
    for (int r = 0; r < oc; r++) {
        double num = 0.0, den = 0.0;
        for (int c = 0; c < E; c++) {
            num += (double)W[(size_t)r * E + c] * k->G[(size_t)r * E + c];
            den += (double)k->What[(size_t)r * E + c] * k->G[(size_t)r * E + c];
        }
        w->scale[r] = den > 0.0 ? (float)(num / den) : 0.0f;
    }
}

lq_status lq_quantize_lift(const float *W, int oc, int ic, const float *bias, const double *H,
                           const lq_lift_options *o, lq_lift_weights *out,
                           lq_lift_report *report) {
    memset(report, 0, sizeof *report);
    if (!o->lattice || !o->lattice->M)
        return lq_fail(LQ_ERR_ARG, "lift quantizer: no lattice prepared");
    int t1, t2;
    lq_status st = lq_lift_layout(ic, o->lattice->d, &t1, &t2);
    if (st != LQ_OK) return st;
    int E = t1 * t2, D = o->lattice->D, d = o->lattice->d, nb = E / d;
    const float *M = o->lattice->M;
    st = lq_lift_weights_alloc(out, oc, ic, D, d, t1, t2, bias != NULL);
    if (st != LQ_OK) return st;
    int t3 = lq_lift_t3(out);
    size_t K = lq_lift_k(out);

    double *P1 = malloc((size_t)t1 * t1 * sizeof(double)), *P2 = malloc((size_t)t2 * t2 * sizeof(double));
    double *Kr = malloc((size_t)E * E * sizeof(double)), *Hw = malloc((size_t)E * E * sizeof(double));
    double *tmp = malloc((size_t)E * E * sizeof(double));
    double *Wt = malloc((size_t)oc * E * sizeof(double)), *Wa = malloc((size_t)oc * E * sizeof(double));
    double *a1 = malloc((size_t)E * sizeof(double)), *ell = malloc((size_t)oc * sizeof(double));
    uint64_t *codes = malloc((size_t)oc * nb * sizeof(uint64_t));
    float *Y = malloc((size_t)oc * K * sizeof(float));
    float *Wf = malloc((size_t)oc * E * sizeof(float)), *Hf = malloc((size_t)E * E * sizeof(float));
    lift_work k = {0};
    if (!P1 || !P2 || !Kr || !Hw || !tmp || !Wt || !Wa || !a1 || !ell || !codes || !Y || !Wf || !Hf) {
        st = lq_fail(LQ_ERR_NOMEM, "lift quantizer: out of memory for a %d × %d layer", oc, ic);
        goto done;
    }
    memcpy(out->M, M, (size_t)d * D * sizeof(float));
    if (bias) memcpy(out->bias, bias, (size_t)oc * sizeof(float));

    /* 1. T = diag(a1)(P1 ⊗ P2): a1 from the activations' per-channel RMS against the mean */
    double mean_diag = 0.0;
    for (int c = 0; c < ic; c++) mean_diag += H[(size_t)c * ic + c];
    mean_diag /= ic;
    if (!(mean_diag > 0.0)) {
        st = lq_fail(LQ_ERR_NUMERIC, "lift quantizer: calibration inputs are all zero");
        goto done;
    }
    for (int c = 0; c < E; c++) {
        double v = 1.0;
        if (o->a1_init && c < ic) {
            v = sqrt(H[(size_t)c * ic + c] / mean_diag);
            v = v < 1.0 ? 1.0 : v > 16.0 ? 16.0 : v;
        }
        a1[c] = round_f16((float)(1.0 / v)); /* stored as its f16 reciprocal */
        a1[c] = 1.0 / a1[c];
    }
    lq_rng rng;
    lq_rng_seed(&rng, o->seed);
    random_orthogonal(&rng, t1, P1);
    random_orthogonal(&rng, t2, P2);
    kron(P1, t1, P2, t2, Kr);

    /* whitened weight W·T = (W ⊙ a1)·(P1 ⊗ P2), and whitened H = Kᵀ diag(1/a1) H diag(1/a1) K */
    for (int r = 0; r < oc; r++)
        for (int c = 0; c < E; c++)
            Wa[(size_t)r * E + c] = c < ic ? W[(size_t)r * ic + c] * a1[c] : 0.0;
    lq_gemm_f64(0, 0, oc, E, E, 1.0, Wa, E, Kr, E, 0.0, Wt, E);
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++)
            tmp[(size_t)i * E + j] = (i < ic && j < ic) ? H[(size_t)i * ic + j] / (a1[i] * a1[j]) : 0.0;
    lq_gemm_f64(1, 0, E, E, E, 1.0, Kr, E, tmp, E, 0.0, Hw, E);
    lq_gemm_f64(0, 0, E, E, E, 1.0, Hw, E, Kr, E, 0.0, tmp, E); /* tmp = whitened H */

    /* the objective in the original (padded) domain, normalised: f32 for the correction */
    double hscale = 1.0 / mean_diag, norm = 0.0;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++)
            Hf[(size_t)i * E + j] = (i < ic && j < ic) ? (float)(H[(size_t)i * ic + j] * hscale) : 0.0f;
    for (int r = 0; r < oc; r++)
        for (int c = 0; c < E; c++) Wf[(size_t)r * E + c] = c < ic ? W[(size_t)r * ic + c] : 0.0f;
    float *zero = calloc((size_t)oc * ic, sizeof(float));
    if (!zero) {
        st = lq_fail(LQ_ERR_NOMEM, "lift quantizer: out of memory for a %d × %d layer", oc, ic);
        goto done;
    }
    norm = lq_output_error(W, zero, oc, ic, H) * hscale; /* tr(W H Wᵀ) */
    free(zero);
    if (!(norm > 0.0)) norm = 1.0; /* an all-zero layer: any code is exact */

    /* 2. row scales and encoding */
    for (int r = 0; r < oc; r++) {
        double ss = 0.0;
        for (int c = 0; c < E; c++) ss += Wt[(size_t)r * E + c] * Wt[(size_t)r * E + c];
        ell[r] = sqrt(ss / E);
        if (ell[r] < 1e-7) ell[r] = 1e-7;
    }
    double t_start = lq_seconds();
    double *U = NULL;
    if (o->ldlq) {
        double wmean = 0.0;
        for (int i = 0; i < E; i++) wmean += tmp[(size_t)i * E + i];
        wmean /= E;
        for (int i = 0; i < E; i++) tmp[(size_t)i * E + i] += o->damp * wmean;
        if ((st = lq_spd_inverse(tmp, E, "whitened H")) != LQ_OK) goto done;
        if ((st = lq_cholesky_upper(tmp, E, "whitened H inverse")) != LQ_OK) goto done;
        U = tmp;
    }
    if ((st = encode_rows(o, Wt, oc, E, ell, U, codes)) != LQ_OK) goto done;
    report->seconds_encode = lq_seconds() - t_start;

    /* stored form: TL = P1ᵀ, TR = P2·Bᵀ (B: the block-diagonal lift, t3 × t2), a2 = 1 */
    for (int i = 0; i < t1; i++)
        for (int j = 0; j < t1; j++) out->tl[(size_t)i * t1 + j] = round_f16((float)P1[(size_t)j * t1 + i]);
    for (int i = 0; i < t2; i++)
        for (int c = 0; c < t3; c++) {
            int blk = c / D, jj = c % D;
            double v = 0.0;
            for (int q = 0; q < d; q++) v += P2[(size_t)i * t2 + blk * d + q] * M[q * D + jj];
            out->tr[(size_t)i * t3 + c] = round_f16((float)v);
        }
    for (int c = 0; c < E; c++) out->a1inv[c] = (float)(1.0 / a1[c]);
    for (int i = 0; i < t1 * (t2 / d); i++) out->a2inv[i] = 1.0f;
    for (int r = 0; r < oc; r++) out->scale[r] = (float)ell[r];
    for (int r = 0; r < oc; r++)
        for (int b = 0; b < nb; b++)
            for (int j = 0; j < D; j++)
                Y[(size_t)r * K + (size_t)b * D + j] = lq_code_sign(codes[(size_t)r * nb + b], j);

    if ((st = work_init(&k, out)) != LQ_OK) goto done;
    report->err_encoded = loss_grad(&k, out, Y, Wf, Hf, norm, NULL, NULL, NULL, NULL, NULL, NULL);
    refit_scale(&k, out, Y, Wf, Hf);
    report->err_refit = loss_grad(&k, out, Y, Wf, Hf, norm, NULL, NULL, NULL, NULL, NULL, NULL);

    /* 4. correction */
    t_start = lq_seconds();
    if (o->steps > 0) {
        size_t n_a2 = (size_t)t1 * (t2 / d);
        size_t sizes[6] = {(size_t)oc, (size_t)E, (size_t)t1 * t1, (size_t)t2 * t3, n_a2,
                           o->train_bits ? (size_t)oc * K : 0};
        float *params[6] = {out->scale, out->a1inv, out->tl, out->tr, out->a2inv, NULL};
        double lrs[6] = {o->lr_scale, o->lr_act, o->lr_transform, o->lr_transform, o->lr_act,
                         o->lr_bits};
        float *latent = NULL;
        if (o->train_bits) {
            latent = malloc((size_t)oc * K * sizeof(float));
            if (latent) memcpy(latent, Y, (size_t)oc * K * sizeof(float));
            params[5] = latent;
        }
        adam_group groups[6];
        float *mem[6][3] = {{0}};
        int ok = !o->train_bits || latent;
        for (int g = 0; g < 6; g++) {
            groups[g] = (adam_group){params[g], NULL, NULL, NULL, sizes[g], lrs[g], NULL};
            for (int q = 0; q < 3 && sizes[g]; q++) {
                mem[g][q] = calloc(sizes[g], sizeof(float));
                ok &= mem[g][q] != NULL;
            }
            groups[g].grad = mem[g][0], groups[g].m = mem[g][1], groups[g].v = mem[g][2];
        }
        /* best iterate, restored at the end: the loss is exact, so this is a pure gain */
        size_t side = (size_t)oc + E + (size_t)t1 * t1 + (size_t)t2 * t3 + n_a2;
        float *best_side = malloc(side * sizeof(float));
        float *scale0 = malloc((size_t)oc * sizeof(float));
        if (scale0) memcpy(scale0, out->scale, (size_t)oc * sizeof(float));
        groups[0].lr_ref = scale0;
        float *bestY = malloc((size_t)oc * K * sizeof(float));
        ok &= best_side && bestY && scale0;
        if (!ok) {
            st = lq_fail(LQ_ERR_NOMEM, "lift correction: out of memory");
        } else {
            double best_loss = report->err_refit;
            memcpy(bestY, Y, (size_t)oc * K * sizeof(float));
#define SAVE_SIDE(dst)                                                                    \
    do {                                                                                  \
        float *p_ = (dst);                                                                \
        for (int g_ = 0; g_ < 5; g_++) memcpy(p_, params[g_], sizes[g_] * sizeof(float)), \
                                       p_ += sizes[g_];                                   \
    } while (0)
            SAVE_SIDE(best_side);
            for (int t = 1; t <= o->steps; t++) {
                double loss = loss_grad(&k, out, Y, Wf, Hf, norm, groups[0].grad, groups[1].grad,
                                        groups[2].grad, groups[3].grad, groups[4].grad,
                                        o->train_bits ? groups[5].grad : NULL);
                if (loss < best_loss) {
                    best_loss = loss;
                    SAVE_SIDE(best_side);
                    memcpy(bestY, Y, (size_t)oc * K * sizeof(float));
                }
                double f = 0.05 + 0.95 * 0.5 * (1.0 + cos(M_PI * (t - 1) / o->steps));
                for (int g = 0; g < 6; g++)
                    if (sizes[g] && groups[g].lr > 0) adam_step(&groups[g], f, t);
                if (o->train_bits)
                    for (size_t i = 0; i < (size_t)oc * K; i++) Y[i] = latent[i] > 0.0f ? 1.0f : -1.0f;
            }
            double loss = loss_grad(&k, out, Y, Wf, Hf, norm, NULL, NULL, NULL, NULL, NULL, NULL);
            if (loss >= best_loss) {
                float *p = best_side;
                for (int g = 0; g < 5; g++) memcpy(params[g], p, sizes[g] * sizeof(float)), p += sizes[g];
                memcpy(Y, bestY, (size_t)oc * K * sizeof(float));
            }
#undef SAVE_SIDE
        }
        free(best_side), free(bestY), free(latent), free(scale0);
        for (int g = 0; g < 6; g++)
            for (int q = 0; q < 3; q++) free(mem[g][q]);
        if (st != LQ_OK) goto done;
    }
    report->seconds_correct = lq_seconds() - t_start;

    /* 5. stored precision, then the bits */
    round_side_to_f16(out);
    report->err_final = loss_grad(&k, out, Y, Wf, Hf, norm, NULL, NULL, NULL, NULL, NULL, NULL);
    size_t row_bytes = lq_lift_row_bytes(out);
    memset(out->bits, 0, (size_t)oc * row_bytes);
    for (int r = 0; r < oc; r++)
        for (size_t c = 0; c < K; c++) {
            int y = Y[(size_t)r * K + c] > 0.0f;
            if (y != (lq_code_sign(codes[(size_t)r * nb + c / D], (int)(c % D)) > 0.0f))
                report->bits_flipped++;
            if (y) out->bits[(size_t)r * row_bytes + c / 8] |= (uint8_t)(1u << (c % 8));
        }
done:
    work_free(&k);
    free(P1), free(P2), free(Kr), free(Hw), free(tmp), free(Wt), free(Wa), free(a1), free(ell),
        free(codes), free(Y), free(Wf), free(Hf);
    if (st != LQ_OK) lq_lift_weights_free(out);
    return st;
}

/* ---- per-block correction ----------------------------------------------------------------
 * The same parameters and Adam groups as the per-linear correction, but the gradient dL/dŴ is
 * handed in from outside (a backward pass through the decoder layer) and the loss is not known
 * here, so there is no best-iterate bookkeeping: the caller measures the layer before and after
 * and keeps the better. */
struct lq_lift_trainer {
    lq_lift_weights w;        /* working copy; its bits are written by lq_lift_trainer_take */
    lift_work k;
    float *Y, *latent;        /* OC × K: ±1 codes, and their latent values when training bits */
    float *weight;            /* OC × IC: Ŵ at the current parameters */
    float *scale0;            /* the scales at the start: the scale group's step size */
    adam_group groups[6];
    float *mem[6][3];
    int steps, current;       /* current: weight matches the parameters (a step may follow) */
};

void lq_lift_trainer_free(lq_lift_trainer *t) {
    if (!t) return;
    lq_lift_weights_free(&t->w);
    work_free(&t->k);
    free(t->Y), free(t->latent), free(t->weight), free(t->scale0);
    for (int g = 0; g < 6; g++)
        for (int q = 0; q < 3; q++) free(t->mem[g][q]);
    free(t);
}

lq_status lq_lift_trainer_new(const lq_lift_weights *src, const lq_lift_options *o, int steps,
                              lq_lift_trainer **out) {
    *out = NULL;
    if (steps < 1) return lq_fail(LQ_ERR_ARG, "lift trainer: %d steps (at least 1)", steps);
    lq_status st = lq_lift_weights_validate(src, "lift trainer");
    if (st != LQ_OK) return st;
    lq_lift_trainer *t = calloc(1, sizeof *t);
    if (!t) return lq_fail(LQ_ERR_NOMEM, "lift trainer: out of memory");
    int oc = src->out_features, ic = src->in_features, t1 = src->t1, t2 = src->t2, d = src->d;
    int E = t1 * t2, t3 = lq_lift_t3(src);
    size_t K = lq_lift_k(src), rb = lq_lift_row_bytes(src);
    if ((st = lq_lift_weights_alloc(&t->w, oc, ic, src->D, d, t1, t2, src->bias != NULL)) != LQ_OK) {
        free(t);
        return st;
    }
    lq_lift_weights *w = &t->w;
    memcpy(w->bits, src->bits, (size_t)oc * rb);
    memcpy(w->scale, src->scale, (size_t)oc * sizeof(float));
    memcpy(w->a1inv, src->a1inv, (size_t)E * sizeof(float));
    memcpy(w->tl, src->tl, (size_t)t1 * t1 * sizeof(float));
    memcpy(w->tr, src->tr, (size_t)t2 * t3 * sizeof(float));
    memcpy(w->a2inv, src->a2inv, (size_t)t1 * (t2 / d) * sizeof(float));
    memcpy(w->M, src->M, (size_t)d * src->D * sizeof(float));
    if (src->bias) memcpy(w->bias, src->bias, (size_t)oc * sizeof(float));
    t->steps = steps;
    t->Y = malloc((size_t)oc * K * sizeof(float));
    t->weight = malloc((size_t)oc * ic * sizeof(float));
    t->scale0 = malloc((size_t)oc * sizeof(float));
    if (o->train_bits) t->latent = malloc((size_t)oc * K * sizeof(float));
    size_t sizes[6] = {(size_t)oc, (size_t)E, (size_t)t1 * t1, (size_t)t2 * t3,
                       (size_t)t1 * (t2 / d), o->train_bits ? (size_t)oc * K : 0};
    float *params[6] = {w->scale, w->a1inv, w->tl, w->tr, w->a2inv, t->latent};
    double lrs[6] = {o->lr_scale, o->lr_act, o->lr_transform, o->lr_transform, o->lr_act,
                     o->lr_bits};
    int ok = t->Y && t->weight && t->scale0 && (!o->train_bits || t->latent);
    for (int g = 0; g < 6; g++) {
        for (int q = 0; q < 3 && sizes[g]; q++) ok &= (t->mem[g][q] = calloc(sizes[g], sizeof(float))) != NULL;
        t->groups[g] = (adam_group){params[g], t->mem[g][0], t->mem[g][1], t->mem[g][2], sizes[g],
                                    lrs[g], NULL};
    }
    if (!ok || (st = work_init(&t->k, w)) != LQ_OK) {
        lq_lift_trainer_free(t);
        return st != LQ_OK ? st : lq_fail(LQ_ERR_NOMEM, "lift trainer: out of memory for a %d × %d layer", oc, ic);
    }
    memcpy(t->scale0, w->scale, (size_t)oc * sizeof(float));
    t->groups[0].lr_ref = t->scale0;
    for (int r = 0; r < oc; r++)
        for (size_t c = 0; c < K; c++)
            t->Y[(size_t)r * K + c] = (w->bits[(size_t)r * rb + c / 8] >> (c % 8)) & 1 ? 1.0f : -1.0f;
    if (t->latent) memcpy(t->latent, t->Y, (size_t)oc * K * sizeof(float));
    *out = t;
    return LQ_OK;
}

const float *lq_lift_trainer_weight(lq_lift_trainer *t) {
    if (!t->current) {
        int oc = t->k.oc, E = t->k.E, ic = t->w.in_features;
        effective_weight(&t->k, &t->w, t->Y);
        for (int r = 0; r < oc; r++)
            memcpy(t->weight + (size_t)r * ic, t->k.What + (size_t)r * E, (size_t)ic * sizeof(float));
        t->current = 1;
    }
    return t->weight;
}

void lq_lift_trainer_step(lq_lift_trainer *t, const float *grad_weight, int step) {
    lq_lift_trainer_weight(t); /* the chain reads the intermediates of Ŵ at these parameters */
    lift_work *k = &t->k;
    int oc = k->oc, E = k->E, ic = t->w.in_features;
    /* padded columns meet zero inputs: their gradient is zero */
    for (int r = 0; r < oc; r++)
        for (int c = 0; c < E; c++)
            k->G[(size_t)r * E + c] = c < ic ? grad_weight[(size_t)r * ic + c] : 0.0f;
    adam_group *g = t->groups;
    grads_from_weight_grad(k, &t->w, t->Y, g[0].grad, g[1].grad, g[2].grad, g[3].grad, g[4].grad,
                           g[5].n ? g[5].grad : NULL);
    double f = 0.05 + 0.95 * 0.5 * (1.0 + cos(M_PI * (step - 1) / t->steps));
    for (int q = 0; q < 6; q++)
        if (g[q].n && g[q].lr > 0) adam_step(&g[q], f, step);
    if (t->latent)
        for (size_t i = 0; i < g[5].n; i++) t->Y[i] = t->latent[i] > 0.0f ? 1.0f : -1.0f;
    t->current = 0;
}

void lq_lift_trainer_take(lq_lift_trainer *t, lq_lift_weights *out) {
    lq_lift_weights *w = &t->w;
    size_t K = lq_lift_k(w), rb = lq_lift_row_bytes(w);
    round_side_to_f16(w);
    memset(w->bits, 0, (size_t)w->out_features * rb);
    for (int r = 0; r < w->out_features; r++)
        for (size_t c = 0; c < K; c++)
            if (t->Y[(size_t)r * K + c] > 0.0f) w->bits[(size_t)r * rb + c / 8] |= (uint8_t)(1u << (c % 8));
    *out = *w;
    memset(w, 0, sizeof *w);
    t->current = 0;
}
