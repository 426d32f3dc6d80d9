/* The RTN and GPTQ baselines (lq_quant.h, "baselines"): grouped asymmetric integer weights,
 * and the layer output error tr((Ŵ − W) H (Ŵ − W)ᵀ) every quantizer is compared by.
 *
 * Grid. Each group of `group` consecutive stored columns of a row gets
 *     lo = min(0, min w), hi = max(0, max w)   ([−1, 1] when both are 0)
 *     scale = (hi − lo)/(2^b − 1),  zero = round(−lo/scale),  code = clamp(round(w/scale) + zero)
 * as in the GPTQ reference quantizer (quant.py). Widening the range to include 0 keeps the
 * zero-point inside [0, 2^b − 1] (a plain min/max grid would need it clamped whenever all of a
 * group is positive, and then the top of the group would be off the grid), makes 0 exactly
 * representable (dead columns stay 0), and bounds every element's error by scale/2. Rounding
 * is to nearest, ties to even (rintf, like torch.round). group = −1 means one group per row;
 * a group wider than the row is one group too, stored as group = in_features.
 *
 * GPTQ (Frantar et al. 2022, Algorithm 1, and the reference gptq.py with static_groups off):
 *   dead columns (H_ii = 0) get H_ii = 1 and W[:, i] = 0; with act_order the columns are
 *   visited by descending diag H (stable: ties keep channel order) and stored in that order
 *   with perm[j] = the input channel of stored column j, groups formed in the visiting order;
 *   H += λI with λ = damp·mean(diag H); U = the upper Cholesky factor of H⁻¹ (in double);
 *   then, column by column, q = quant(w), err = (w − q)/U_ii, W[:, i+1:] −= err·U[i, i+1:],
 *   with the updates to columns past the current block of (at most) 128 applied lazily as one
 *   GEMM per block. A group's scale and zero are fitted to the row's current weights — every
 *   error update from earlier columns applied — when its first column is reached.
 *
 *   Where this differs from the reference: the reference fits a group that starts inside a
 *   128-column block to that block's weights as they were at the block's start, so its result
 *   depends on the block size (for group 128, the common setting, the two agree). Here the
 *   blocks are cut at group starts instead (a block never holds the start of a group that
 *   runs past the block's end), which makes "current" exact for every group size. H is
 *   symmetrised ((H + Hᵀ)/2) so that which triangle LAPACK reads cannot matter, and the
 *   Cholesky and inverse run in double (the reference uses float32); the per-column updates
 *   and the block GEMM are float, like the reference.
 *
 *   A damped H that is still not positive definite is retried with 10× and 100× the damping,
 *   up to λ = mean(diag H) (a warning is logged each time), then it is LQ_ERR_NUMERIC.
 *
 * Rows are independent in GPTQ (they share only U), so each block's column loop runs over rows
 * in parallel and every row's arithmetic is the same whatever the thread count. */
#include "lq_quant.h"

#include "lq_blas.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* columns per lazy batch update (the reference's blocksize) */
#define GPTQ_BLOCK 128
/* multiply-adds from which a loop over rows is worth a second thread */
#define PARALLEL_WORK (1 << 18)
/* rows of (Ŵ − W) multiplied by H at a time in lq_output_error: bounds its scratch */
#define ERROR_ROWS 256

/* ---- the grid ---------------------------------------------------------------------------- */

/* The grid of one group (n values, see the top of the file). */
static void fit_group(const float *w, int n, int maxq, float *scale, uint8_t *zero) {
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, w[i]);
        hi = fmaxf(hi, w[i]);
    }
    if (lo == 0.0f && hi == 0.0f) {
        lo = -1.0f;
        hi = 1.0f;
    }
    /* in double so that hi − lo cannot overflow for finite weights near FLT_MAX; the floor
     * keeps w/scale finite for groups of subnormals (the error bound scale/2 still holds) */
    float s = (float)(((double)hi - (double)lo) / maxq);
    if (s < FLT_MIN) s = FLT_MIN;
    float z = rintf(-lo / s);
    *scale = s;
    *zero = (uint8_t)(z < 0.0f ? 0.0f : z > (float)maxq ? (float)maxq : z);
}

static inline uint8_t quantize_value(float w, float scale, uint8_t zero, int maxq) {
    float c = rintf(w / scale) + (float)zero;
    return (uint8_t)(c < 0.0f ? 0.0f : c > (float)maxq ? (float)maxq : c);
}

/* the same expression as lq_grouped_dequantize, so the error GPTQ feeds back is the error of
 * the weight that is stored */
static inline float dequantize_value(uint8_t code, float scale, uint8_t zero) {
    return scale * (float)((int)code - (int)zero);
}

/* ---- arguments ---------------------------------------------------------------------------- */

/* Checks what RTN and GPTQ share and resolves group (−1 or wider than the row: in_features). */
static lq_status check_args(const char *who, const float *W, int out_features, int in_features,
                            int bits, int group, const lq_grouped_weights *w, int *group_out) {
    if (!W || !w) return lq_fail(LQ_ERR_ARG, "%s: %s is NULL", who, !W ? "W" : "output");
    if (out_features <= 0 || in_features <= 0)
        return lq_fail(LQ_ERR_ARG, "%s: shape %d × %d is empty", who, out_features, in_features);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return lq_fail(LQ_ERR_ARG, "%s: --bits %d is not supported (2, 3, 4 or 8)", who, bits);
    if (group == 0 || group < -1)
        return lq_fail(LQ_ERR_ARG,
                       "%s: --group %d is invalid (a positive column count, or -1 for one "
                       "group per row)", who, group);
    *group_out = group == -1 || group > in_features ? in_features : group;
    size_t n = (size_t)out_features * (size_t)in_features;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            return lq_fail(LQ_ERR_NUMERIC, "%s: W[%zu][%zu] = %g is not finite", who,
                           i / (size_t)in_features, i % (size_t)in_features, (double)W[i]);
    return LQ_OK;
}

static int threads_for(size_t work) {
    return work >= PARALLEL_WORK ? lq_default_threads() : 1;
}

/* ---- RTN ----------------------------------------------------------------------------------- */

lq_status lq_quantize_rtn(const float *W, int out_features, int in_features, int bits, int group,
                          lq_grouped_weights *w) {
    int g;
    lq_status st = check_args("RTN", W, out_features, in_features, bits, group, w, &g);
    if (st != LQ_OK) return st;
    if ((st = lq_grouped_weights_alloc(w, out_features, in_features, bits, g, 0, 0)) != LQ_OK)
        return st;
    const int maxq = (1 << bits) - 1, ng = lq_grouped_ngroups(w);
    const size_t ic = (size_t)in_features;
    const int nthreads = threads_for((size_t)out_features * ic);
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int r = 0; r < out_features; r++) {
        const float *row = W + (size_t)r * ic;
        uint8_t *codes = w->codes + (size_t)r * ic;
        for (int k = 0; k < ng; k++) {
            const int c0 = k * g, n = in_features - c0 < g ? in_features - c0 : g;
            float *scale = &w->scales[(size_t)r * ng + k];
            uint8_t *zero = &w->zeros[(size_t)r * ng + k];
            fit_group(row + c0, n, maxq, scale, zero);
            for (int c = c0; c < c0 + n; c++) codes[c] = quantize_value(row[c], *scale, *zero, maxq);
        }
    }
    return LQ_OK;
}

/* ---- GPTQ ----------------------------------------------------------------------------------- */

typedef struct {
    const double *diag;
    int32_t index;
} diag_entry;

/* descending diag H, ties by channel: a total order, so qsort gives one answer */
static int by_descending_diag(const void *a, const void *b) {
    const diag_entry *x = a, *y = b;
    double dx = x->diag[x->index], dy = y->diag[y->index];
    if (dx != dy) return dx > dy ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* H must be a Gram matrix: finite, with a non-negative diagonal. */
static lq_status check_hessian(const double *H, int n) {
    if (!H) return lq_fail(LQ_ERR_ARG, "GPTQ: H is NULL");
    const size_t nn = (size_t)n;
    for (size_t i = 0; i < nn * nn; i++)
        if (!isfinite(H[i]))
            return lq_fail(LQ_ERR_NUMERIC, "GPTQ: H[%zu][%zu] = %g is not finite", i / nn, i % nn,
                           H[i]);
    for (size_t i = 0; i < nn; i++)
        if (H[i * nn + i] < 0.0)
            return lq_fail(LQ_ERR_NUMERIC,
                           "GPTQ: H[%zu][%zu] = %g is negative, so H is not positive definite "
                           "(it must be Σ x xᵀ over calibration tokens)", i, i, H[i * nn + i]);
    return LQ_OK;
}

/* A = the permuted, symmetrised H with dead columns' diagonal set to 1, plus lambda on the
 * diagonal. */
static void build_damped(const double *H, int n, const int32_t *perm, double lambda, double *A) {
    const size_t nn = (size_t)n;
    for (size_t i = 0; i < nn; i++) {
        const size_t pi = (size_t)perm[i];
        for (size_t j = 0; j < nn; j++) {
            const size_t pj = (size_t)perm[j];
            A[i * nn + j] = 0.5 * (H[pi * nn + pj] + H[pj * nn + pi]);
        }
        if (A[i * nn + i] == 0.0) A[i * nn + i] = 1.0;
        A[i * nn + i] += lambda;
    }
}

/* Uf (n × n, float) = the upper Cholesky factor of (damped permuted H)⁻¹, retrying with more
 * damping while H is not numerically positive definite. */
static lq_status inverse_factor(const double *H, int n, const int32_t *perm, double damp,
                                float *Uf) {
    const size_t nn = (size_t)n;
    double *A = malloc(nn * nn * sizeof *A);
    if (!A) return lq_fail(LQ_ERR_NOMEM, "GPTQ: out of memory for H (%d × %d)", n, n);
    double mean_diag = 0.0;
    for (size_t i = 0; i < nn; i++) {
        const double h = H[i * nn + i];
        mean_diag += h == 0.0 ? 1.0 : h;
    }
    mean_diag /= (double)n;
    lq_status st;
    for (double d = damp;;) {
        build_damped(H, n, perm, d * mean_diag, A);
        st = lq_spd_inverse(A, n, "GPTQ: damped H");
        if (st == LQ_OK) st = lq_cholesky_upper(A, n, "GPTQ: inverse of damped H");
        if (st != LQ_ERR_NUMERIC) break;
        const double next = d > 0.0 ? 10.0 * d : 0.01;
        if (next > 1.0 + 1e-9) { /* the tolerance keeps 0.01·10·10 from missing 1 */
            st = lq_fail_context(LQ_ERR_NUMERIC,
                                 "GPTQ: H is not positive definite even with damping %g·mean(diag H)",
                                 d);
            break;
        }
        LQ_WARN("GPTQ: H is not positive definite with damping %g·mean(diag H); retrying with %g",
                d, next);
        d = next;
    }
    if (st == LQ_OK) {
        for (size_t i = 0; i < nn * nn; i++) {
            Uf[i] = (float)A[i];
            if (!isfinite(Uf[i]) || (i % (nn + 1) == 0 && !(Uf[i] > 0.0f))) {
                st = lq_fail(LQ_ERR_NUMERIC,
                             "GPTQ: Cholesky factor of H⁻¹ has [%zu][%zu] = %g (H too badly "
                             "conditioned for float)", i / nn, i % nn, A[i]);
                break;
            }
        }
    }
    free(A);
    return st;
}

/* End of the block starting at i1: at most GPTQ_BLOCK columns, and cut at the start of a group
 * that would run past the block's end, so that every group starting inside a block lies
 * wholly in it (its columns are then current when it starts; see the top of the file). */
static int block_end(int i1, int n, int group) {
    int i2 = i1 + GPTQ_BLOCK < n ? i1 + GPTQ_BLOCK : n;
    const int last_start = (i2 - 1) / group * group;
    const int last_end = last_start + group < n ? last_start + group : n;
    if (last_start > i1 && last_end > i2) i2 = last_start;
    return i2;
}

/* One row over the columns [i1, i2) of a block: quantize each column, feed its error forward
 * into the rest of the block, and record the scaled errors for the lazy update. */
static void gptq_row_block(float *row, uint8_t *codes, float *scales, uint8_t *zeros,
                           const float *Uf, int n, int i1, int i2, int group, int maxq,
                           float *err) {
    const size_t nn = (size_t)n;
    for (int i = i1; i < i2; i++) {
        const int g = i / group;
        if (i == g * group)
            fit_group(row + i, n - i < group ? n - i : group, maxq, &scales[g], &zeros[g]);
        const float x = row[i];
        const uint8_t c = quantize_value(x, scales[g], zeros[g], maxq);
        codes[i] = c;
        const float *u = Uf + (size_t)i * nn;
        const float e = (x - dequantize_value(c, scales[g], zeros[g])) / u[i];
        err[i - i1] = e;
        for (int j = i + 1; j < i2; j++) row[j] -= e * u[j];
    }
}

lq_status lq_quantize_gptq(const float *W, int out_features, int in_features, const double *H,
                           int bits, int group, int act_order, double damp,
                           lq_grouped_weights *w) {
    int g;
    lq_status st = check_args("GPTQ", W, out_features, in_features, bits, group, w, &g);
    if (st != LQ_OK) return st;
    if (!isfinite(damp) || damp < 0.0)
        return lq_fail(LQ_ERR_ARG, "GPTQ: --damp %g must be a finite fraction ≥ 0", damp);
    if ((st = check_hessian(H, in_features)) != LQ_OK) return st;
    if ((st = lq_grouped_weights_alloc(w, out_features, in_features, bits, g, act_order != 0, 0)) !=
        LQ_OK)
        return st;
    w->gptq = 1; /* recorded in the file: nothing else tells GPTQ without act order from RTN */

    const int n = in_features, maxq = (1 << bits) - 1, ng = lq_grouped_ngroups(w);
    const size_t nn = (size_t)n, oc = (size_t)out_features;
    int32_t *perm = w->perm ? w->perm : malloc(nn * sizeof *perm);
    float *Uf = malloc(nn * nn * sizeof *Uf);
    float *Wp = malloc(oc * nn * sizeof *Wp);
    float *err = malloc(oc * GPTQ_BLOCK * sizeof *err);
    diag_entry *order = act_order ? malloc(nn * sizeof *order) : NULL;
    if (!perm || !Uf || !Wp || !err || (act_order && !order)) {
        st = lq_fail(LQ_ERR_NOMEM, "GPTQ: out of memory for a %d × %d layer", out_features, n);
        goto done;
    }

    /* the visiting order; diag H of a dead column counts as 1, as after the reference's fix */
    for (int j = 0; j < n; j++) perm[j] = j;
    if (act_order) {
        double *diag = malloc(nn * sizeof *diag);
        if (!diag) {
            st = lq_fail(LQ_ERR_NOMEM, "GPTQ: out of memory for a %d × %d layer", out_features, n);
            goto done;
        }
        for (size_t j = 0; j < nn; j++) {
            diag[j] = H[j * nn + j] == 0.0 ? 1.0 : H[j * nn + j];
            order[j] = (diag_entry){diag, (int32_t)j};
        }
        qsort(order, nn, sizeof *order, by_descending_diag);
        for (size_t j = 0; j < nn; j++) perm[j] = order[j].index;
        free(diag);
    }

    const double t_start = lq_seconds();
    if ((st = inverse_factor(H, n, perm, damp, Uf)) != LQ_OK) goto done;
    const double t_factor = lq_seconds();

    for (size_t r = 0; r < oc; r++)
        for (size_t j = 0; j < nn; j++) {
            const size_t p = (size_t)perm[j];
            Wp[r * nn + j] = H[p * nn + p] == 0.0 ? 0.0f : W[r * nn + p];
        }

    for (int i1 = 0; i1 < n;) {
        const int i2 = block_end(i1, n, g), width = i2 - i1;
        const int nthreads = threads_for(oc * (size_t)width * (size_t)width / 2);
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
        for (int r = 0; r < out_features; r++)
            gptq_row_block(Wp + (size_t)r * nn, w->codes + (size_t)r * nn,
                           w->scales + (size_t)r * ng, w->zeros + (size_t)r * ng, Uf, n, i1, i2,
                           g, maxq, err + (size_t)r * width);
        /* W[:, i2:] −= Err · U[i1:i2, i2:] */
        if (i2 < n)
            lq_gemm_f32(0, 0, out_features, n - i2, width, -1.0f, err, width,
                        Uf + (size_t)i1 * nn + i2, n, 1.0f, Wp + i2, n);
        i1 = i2;
    }
    LQ_DEBUG("GPTQ %d × %d, %d bits, group %d%s: H⁻¹ factor %.3f s, columns %.3f s", out_features,
             n, bits, g, act_order ? ", act-order" : "", t_factor - t_start, lq_seconds() - t_factor);

done:
    if (perm != w->perm) free(perm);
    free(Uf);
    free(Wp);
    free(err);
    free(order);
    if (st != LQ_OK) lq_grouped_weights_free(w);
    return st;
}

/* ---- output error --------------------------------------------------------------------------- */

double lq_output_error(const float *W, const float *W_hat, int out_features, int in_features,
                       const double *H) {
    if (!W || !W_hat || !H || out_features <= 0 || in_features <= 0) {
        lq_fail(LQ_ERR_ARG, "lq_output_error: empty shape %d × %d or NULL input", out_features,
                in_features);
        return NAN;
    }
    const size_t ic = (size_t)in_features, rows = out_features < ERROR_ROWS ? out_features : ERROR_ROWS;
    double *E = malloc(rows * ic * sizeof *E), *EH = malloc(rows * ic * sizeof *EH);
    if (!E || !EH) {
        free(E);
        free(EH);
        lq_fail(LQ_ERR_NOMEM, "lq_output_error: out of memory for a %d × %d layer", out_features,
                in_features);
        return NAN;
    }
    /* Σ_r e_r H e_rᵀ, a chunk of rows per GEMM, summed in row order */
    double total = 0.0;
    for (size_t r0 = 0; r0 < (size_t)out_features; r0 += rows) {
        const size_t m = (size_t)out_features - r0 < rows ? (size_t)out_features - r0 : rows;
        for (size_t i = 0; i < m * ic; i++)
            E[i] = (double)W_hat[r0 * ic + i] - (double)W[r0 * ic + i];
        lq_gemm_f64(0, 0, (int)m, in_features, in_features, 1.0, E, in_features, H, in_features,
                    0.0, EH, in_features);
        for (size_t r = 0; r < m; r++) {
            double s = 0.0;
            for (size_t j = 0; j < ic; j++) s += E[r * ic + j] * EH[r * ic + j];
            total += s;
        }
    }
    free(E);
    free(EH);
    return total;
}
