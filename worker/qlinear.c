/* Quantized linear layers at inference (lq_quant.h): the LiftQuant stored form, its double
 * precision reference and effective weight, the grouped integer form of the RTN/GPTQ
 * baselines, and the runtime objects that plug either into an lq_linear of a model.
 *
 * Lift fast path, for a run of n tokens (ALGORITHM.md §7, with TL applied first because
 * t1²·t2 + t1·t2·t3 < t1·t2·t3 + t1²·t3 whenever t3 > t2, i.e. always for D > d):
 *   gather   Xt[tok][i2][i1] = x[tok][i1·t2 + i2] · a1inv (0 in the padding)
 *   GEMM 1   C1 = TL · Xtᵀ          t1 × (n·t2): row i1 holds every token's (TL·X)[i1][·]
 *   GEMM 2   C2 = C1' · TR          (t1·n) × t3, C1' = C1 read as t1·n rows of t2
 *   scatter  z[tok][i1·t3 + j] = C2[i1·n + tok][j] · A2[i1][j/D]   (K padded to whole bytes)
 *   binary   out = diag(scale) · Wq · z      (LUT GEMV for one token, LUT GEMM for more)
 * Laying the tokens out this way makes both transforms a single GEMM over the whole run, and
 * both are "NT" products, so lq_gemm_f32_nt serves them (TR is kept transposed for GEMM 2).
 * Runs are at most RUN_TOKENS long so the scratch stays bounded whatever ntok the caller
 * passes; the scratch lives in the impl and grows on first use, which is why a layer's forward
 * may run on one thread at a time only (the model runs its layers one after another). */
#include "lq_quant.h"

#include "lq_binary.h"
#include "lq_blas.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per pass of the lift forward: the binary GEMM reaches its per-token speed from 4
 * tokens on, and 256 tokens of scratch stay a few MB for 8B-class layers. */
#define RUN_TOKENS 256

/* Bounds that keep every product of two sizes inside int/size_t arithmetic on the way to it
 * (K must fit the kernels' int), far above any real layer. */
#define MAX_FEATURES (1 << 24)
#define MAX_FACTOR (1 << 20)
#define MAX_LIFT 4096

/* ---- LiftQuant stored form ------------------------------------------------------------ */

static lq_status check_lift_shape(int out_features, int in_features, int D, int d, int t1,
                                  int t2, const char *what) {
    if (out_features <= 0 || out_features > MAX_FEATURES)
        return lq_fail(LQ_ERR_ARG, "%s: out_features = %d is out of range [1, %d]", what,
                       out_features, MAX_FEATURES);
    if (in_features <= 0 || in_features > MAX_FEATURES)
        return lq_fail(LQ_ERR_ARG, "%s: in_features = %d is out of range [1, %d]", what,
                       in_features, MAX_FEATURES);
    if (D <= 0 || D > MAX_LIFT || d <= 0 || d > MAX_LIFT)
        return lq_fail(LQ_ERR_ARG, "%s: lattice config %d/%d is out of range (both in [1, %d])",
                       what, D, d, MAX_LIFT);
    if (t1 <= 0 || t1 > MAX_FACTOR || t2 <= 0 || t2 > MAX_FACTOR)
        return lq_fail(LQ_ERR_ARG, "%s: t1 × t2 = %d × %d is out of range (both in [1, %d])", what,
                       t1, t2, MAX_FACTOR);
    if (t2 % d != 0)
        return lq_fail(LQ_ERR_ARG,
                       "%s: d = %d does not divide t2 = %d (a d-block must not straddle a row of "
                       "the t1 × t2 view)",
                       what, d, t2);
    if ((int64_t)t1 * t2 < in_features)
        return lq_fail(LQ_ERR_ARG, "%s: t1 × t2 = %d × %d is smaller than in_features = %d", what,
                       t1, t2, in_features);
    int64_t k = (int64_t)t1 * (t2 / d) * D;
    if (k > INT_MAX - 7 || (int64_t)t1 * t2 > INT_MAX)
        return lq_fail(LQ_ERR_RANGE, "%s: lifted width K = %lld is too large", what, (long long)k);
    /* the packed bits, padded to 8 rows, and the float scratch of RUN_TOKENS rows must be
     * addressable */
    if ((uint64_t)(out_features + 8) * (uint64_t)(k + 8) / 8 > (uint64_t)SIZE_MAX / 64)
        return lq_fail(LQ_ERR_RANGE, "%s: %d × %lld bit matrix is too large", what, out_features,
                       (long long)k);
    return LQ_OK;
}

static lq_status check_finite(const float *v, size_t n, const char *what, const char *field) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return lq_fail(LQ_ERR_NUMERIC, "%s: %s[%zu] = %g is not finite", what, field, i,
                           (double)v[i]);
    return LQ_OK;
}

lq_status lq_lift_weights_alloc(lq_lift_weights *w, int out_features, int in_features, int D,
                                int d, int t1, int t2, int with_bias) {
    memset(w, 0, sizeof *w);
    lq_status st = check_lift_shape(out_features, in_features, D, d, t1, t2,
                                    "lq_lift_weights_alloc");
    if (st != LQ_OK) return st;
    w->out_features = out_features;
    w->in_features = in_features;
    w->D = D;
    w->d = d;
    w->t1 = t1;
    w->t2 = t2;
    size_t t3 = (size_t)lq_lift_t3(w);
    w->bits = calloc((size_t)out_features * lq_lift_row_bytes(w), 1);
    w->scale = calloc((size_t)out_features, sizeof(float));
    w->a1inv = calloc((size_t)t1 * t2, sizeof(float));
    w->tl = calloc((size_t)t1 * t1, sizeof(float));
    w->tr = calloc((size_t)t2 * t3, sizeof(float));
    w->a2inv = calloc((size_t)t1 * (t2 / d), sizeof(float));
    w->M = calloc((size_t)d * D, sizeof(float));
    if (with_bias) w->bias = calloc((size_t)out_features, sizeof(float));
    if (!w->bits || !w->scale || !w->a1inv || !w->tl || !w->tr || !w->a2inv || !w->M ||
        (with_bias && !w->bias)) {
        lq_lift_weights_free(w);
        return lq_fail(LQ_ERR_NOMEM, "lq_lift_weights_alloc: out of memory for a %d × %d layer (%d/%d)",
                       out_features, in_features, D, d);
    }
    return LQ_OK;
}

void lq_lift_weights_free(lq_lift_weights *w) {
    if (!w) return;
    free(w->bits);
    free(w->scale);
    free(w->a1inv);
    free(w->tl);
    free(w->tr);
    free(w->a2inv);
    free(w->bias);
    free(w->M);
    memset(w, 0, sizeof *w);
}

lq_status lq_lift_weights_validate(const lq_lift_weights *w, const char *what) {
    if (!what) what = "lift linear";
    if (!w) return lq_fail(LQ_ERR_ARG, "%s: no weights", what);
    lq_status st = check_lift_shape(w->out_features, w->in_features, w->D, w->d, w->t1, w->t2, what);
    if (st != LQ_OK) return st;
    const char *missing = !w->bits ? "bits" : !w->scale ? "scale" : !w->a1inv ? "a1inv"
                          : !w->tl ? "tl" : !w->tr ? "tr" : !w->a2inv ? "a2inv" : !w->M ? "M" : NULL;
    if (missing) return lq_fail(LQ_ERR_ARG, "%s: %s is missing", what, missing);
    size_t t1 = (size_t)w->t1, t2 = (size_t)w->t2, t3 = (size_t)lq_lift_t3(w);
    size_t oc = (size_t)w->out_features;
    if ((st = check_finite(w->scale, oc, what, "scale")) != LQ_OK) return st;
    if ((st = check_finite(w->a1inv, t1 * t2, what, "a1inv")) != LQ_OK) return st;
    if ((st = check_finite(w->tl, t1 * t1, what, "tl")) != LQ_OK) return st;
    if ((st = check_finite(w->tr, t2 * t3, what, "tr")) != LQ_OK) return st;
    if ((st = check_finite(w->a2inv, t1 * (t2 / (size_t)w->d), what, "a2inv")) != LQ_OK) return st;
    if ((st = check_finite(w->M, (size_t)w->d * (size_t)w->D, what, "M")) != LQ_OK) return st;
    if (w->bias && (st = check_finite(w->bias, oc, what, "bias")) != LQ_OK) return st;
    /* padding bits must be 0 (the format says so): a file that sets them is not ours */
    size_t k = lq_lift_k(w), row_bytes = lq_lift_row_bytes(w);
    if (k % 8 != 0) {
        uint8_t pad_mask = (uint8_t)(0xFFu << (k % 8));
        for (size_t r = 0; r < oc; r++)
            if (w->bits[r * row_bytes + row_bytes - 1] & pad_mask)
                return lq_fail(LQ_ERR_FORMAT,
                               "%s: bits of row %zu set beyond K = %zu (padding bits must be 0)",
                               what, r, k);
    }
    return LQ_OK;
}

static int lift_bit(const lq_lift_weights *w, size_t row, size_t k) {
    return (w->bits[row * lq_lift_row_bytes(w) + k / 8] >> (k % 8)) & 1;
}

lq_status lq_lift_effective_weight(const lq_lift_weights *w, float *out) {
    lq_status st = lq_lift_weights_validate(w, "lq_lift_effective_weight");
    if (st != LQ_OK) return st;
    const size_t t1 = (size_t)w->t1, t2 = (size_t)w->t2, t3 = (size_t)lq_lift_t3(w);
    const size_t D = (size_t)w->D, nblk = t2 / (size_t)w->d, ic = (size_t)w->in_features;
    const int oc = w->out_features;
    const int threads = lq_default_threads();
    /* TRᵀ in double so the inner loop of (Y ⊙ A2)·TRᵀ runs over contiguous i2 */
    double *trt = malloc(t3 * t2 * sizeof(double));
    double *scratch = malloc((size_t)threads * 2 * t1 * t2 * sizeof(double));
    if (!trt || !scratch) {
        free(trt);
        free(scratch);
        return lq_fail(LQ_ERR_NOMEM, "lq_lift_effective_weight: out of memory for a %d × %d layer",
                       w->out_features, w->in_features);
    }
    for (size_t i2 = 0; i2 < t2; i2++)
        for (size_t j = 0; j < t3; j++) trt[j * t2 + i2] = w->tr[i2 * t3 + j];

    /* rows are independent and each is summed in a fixed order: the result does not depend on
     * the thread count */
#pragma omp parallel num_threads(threads)
    {
        double *V = scratch + (size_t)omp_get_thread_num() * 2 * t1 * t2;
        double *Wv = V + t1 * t2;
#pragma omp for schedule(static)
        for (int r = 0; r < oc; r++) {
            /* V = (Y_r ⊙ A2) · TRᵀ */
            memset(V, 0, t1 * t2 * sizeof(double));
            for (size_t i1 = 0; i1 < t1; i1++) {
                double *vrow = V + i1 * t2;
                for (size_t j = 0; j < t3; j++) {
                    double a2 = w->a2inv[i1 * nblk + j / D];
                    double y = lift_bit(w, (size_t)r, i1 * t3 + j) ? a2 : -a2;
                    const double *trow = trt + j * t2;
                    for (size_t i2 = 0; i2 < t2; i2++) vrow[i2] += y * trow[i2];
                }
            }
            /* Wv = TLᵀ · V */
            memset(Wv, 0, t1 * t2 * sizeof(double));
            for (size_t i1 = 0; i1 < t1; i1++) {
                const double *vrow = V + i1 * t2;
                for (size_t o = 0; o < t1; o++) {
                    double tl = w->tl[i1 * t1 + o];
                    double *wrow = Wv + o * t2;
                    for (size_t i2 = 0; i2 < t2; i2++) wrow[i2] += tl * vrow[i2];
                }
            }
            double s = w->scale[r];
            for (size_t c = 0; c < ic; c++)
                out[(size_t)r * ic + c] = (float)(s * Wv[c] * w->a1inv[c]);
        }
    }
    free(trt);
    free(scratch);
    return LQ_OK;
}

lq_status lq_lift_forward_reference(const lq_lift_weights *w, const float *x, int ntok, float *y) {
    lq_status st = lq_lift_weights_validate(w, "lq_lift_forward_reference");
    if (st != LQ_OK) return st;
    if (ntok < 0) return lq_fail(LQ_ERR_ARG, "lq_lift_forward_reference: ntok = %d", ntok);
    const size_t t1 = (size_t)w->t1, t2 = (size_t)w->t2, t3 = (size_t)lq_lift_t3(w);
    const size_t D = (size_t)w->D, nblk = t2 / (size_t)w->d, ic = (size_t)w->in_features;
    const size_t oc = (size_t)w->out_features, K = lq_lift_k(w);
    double *X = malloc(t1 * t2 * sizeof(double));
    double *P = malloc(t1 * t2 * sizeof(double));
    double *z = malloc(K * sizeof(double));
    if (!X || !P || !z) {
        free(X);
        free(P);
        free(z);
        return lq_fail(LQ_ERR_NOMEM, "lq_lift_forward_reference: out of memory");
    }
    for (int t = 0; t < ntok; t++) {
        const float *xt = x + (size_t)t * ic;
        for (size_t c = 0; c < t1 * t2; c++) X[c] = c < ic ? (double)xt[c] * w->a1inv[c] : 0.0;
        for (size_t a = 0; a < t1; a++) /* P = TL · X */
            for (size_t i2 = 0; i2 < t2; i2++) {
                double sum = 0.0;
                for (size_t b = 0; b < t1; b++) sum += (double)w->tl[a * t1 + b] * X[b * t2 + i2];
                P[a * t2 + i2] = sum;
            }
        for (size_t a = 0; a < t1; a++) /* z = vec((P · TR) ⊙ A2) */
            for (size_t j = 0; j < t3; j++) {
                double sum = 0.0;
                for (size_t i2 = 0; i2 < t2; i2++) sum += P[a * t2 + i2] * w->tr[i2 * t3 + j];
                z[a * t3 + j] = sum * w->a2inv[a * nblk + j / D];
            }
        for (size_t r = 0; r < oc; r++) {
            double sum = 0.0;
            for (size_t k = 0; k < K; k++) sum += lift_bit(w, r, k) ? z[k] : -z[k];
            double o = (double)w->scale[r] * sum;
            if (w->bias) o += w->bias[r];
            y[(size_t)t * oc + r] = (float)o;
        }
    }
    free(X);
    free(P);
    free(z);
    return LQ_OK;
}

/* ---- grouped integer linear ----------------------------------------------------------- */

lq_status lq_grouped_weights_alloc(lq_grouped_weights *w, int out_features, int in_features,
                                   int bits, int group, int with_perm, int with_bias) {
    memset(w, 0, sizeof *w);
    if (out_features <= 0 || out_features > MAX_FEATURES || in_features <= 0 ||
        in_features > MAX_FEATURES)
        return lq_fail(LQ_ERR_ARG, "lq_grouped_weights_alloc: shape %d × %d is out of range",
                       out_features, in_features);
    if (bits < 1 || bits > 8)
        return lq_fail(LQ_ERR_ARG, "lq_grouped_weights_alloc: bits = %d is not in [1, 8]", bits);
    if (group < 1)
        return lq_fail(LQ_ERR_ARG, "lq_grouped_weights_alloc: group = %d must be positive", group);
    w->out_features = out_features;
    w->in_features = in_features;
    w->bits = bits;
    w->group = group;
    size_t oc = (size_t)out_features, ic = (size_t)in_features;
    size_t ng = (size_t)lq_grouped_ngroups(w);
    w->codes = calloc(oc * ic, 1);
    w->scales = calloc(oc * ng, sizeof(float));
    w->zeros = calloc(oc * ng, 1);
    if (with_perm) w->perm = malloc(ic * sizeof(int32_t));
    if (with_bias) w->bias = calloc(oc, sizeof(float));
    if (!w->codes || !w->scales || !w->zeros || (with_perm && !w->perm) || (with_bias && !w->bias)) {
        lq_grouped_weights_free(w);
        return lq_fail(LQ_ERR_NOMEM, "lq_grouped_weights_alloc: out of memory for a %d × %d layer",
                       out_features, in_features);
    }
    /* the identity, so that freshly allocated weights are valid */
    if (w->perm)
        for (size_t j = 0; j < ic; j++) w->perm[j] = (int32_t)j;
    return LQ_OK;
}

void lq_grouped_weights_free(lq_grouped_weights *w) {
    if (!w) return;
    free(w->codes);
    free(w->scales);
    free(w->zeros);
    free(w->perm);
    free(w->bias);
    memset(w, 0, sizeof *w);
}

lq_status lq_grouped_weights_validate(const lq_grouped_weights *w, const char *what) {
    if (!what) what = "grouped linear";
    if (!w) return lq_fail(LQ_ERR_ARG, "%s: no weights", what);
    if (w->out_features <= 0 || w->out_features > MAX_FEATURES || w->in_features <= 0 ||
        w->in_features > MAX_FEATURES)
        return lq_fail(LQ_ERR_ARG, "%s: shape %d × %d is out of range", what, w->out_features,
                       w->in_features);
    if (w->bits < 1 || w->bits > 8)
        return lq_fail(LQ_ERR_ARG, "%s: bits = %d is not in [1, 8]", what, w->bits);
    if (w->group < 1) return lq_fail(LQ_ERR_ARG, "%s: group = %d must be positive", what, w->group);
    const char *missing = !w->codes ? "codes" : !w->scales ? "scales" : !w->zeros ? "zeros" : NULL;
    if (missing) return lq_fail(LQ_ERR_ARG, "%s: %s is missing", what, missing);
    size_t oc = (size_t)w->out_features, ic = (size_t)w->in_features;
    size_t ng = (size_t)lq_grouped_ngroups(w);
    unsigned max_code = (1u << w->bits) - 1;
    for (size_t i = 0; i < oc * ic; i++)
        if (w->codes[i] > max_code)
            return lq_fail(LQ_ERR_RANGE, "%s: codes[%zu][%zu] = %u exceeds %u (%d bits)", what,
                           i / ic, i % ic, w->codes[i], max_code, w->bits);
    for (size_t i = 0; i < oc * ng; i++)
        if (w->zeros[i] > max_code)
            return lq_fail(LQ_ERR_RANGE, "%s: zeros[%zu][%zu] = %u exceeds %u (%d bits)", what,
                           i / ng, i % ng, w->zeros[i], max_code, w->bits);
    lq_status st = check_finite(w->scales, oc * ng, what, "scales");
    if (st != LQ_OK) return st;
    if (w->bias && (st = check_finite(w->bias, oc, what, "bias")) != LQ_OK) return st;
    if (w->perm) {
        uint8_t *seen = calloc(ic, 1);
        if (!seen) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory checking perm", what);
        for (size_t j = 0; j < ic; j++) {
            int32_t p = w->perm[j];
            if (p < 0 || (size_t)p >= ic || seen[p]) {
                free(seen);
                return lq_fail(LQ_ERR_FORMAT, "%s: perm[%zu] = %d is %s", what, j, (int)p,
                               p < 0 || (size_t)p >= ic ? "out of range" : "repeated");
            }
            seen[p] = 1;
        }
        free(seen);
    }
    return LQ_OK;
}

lq_status lq_grouped_dequantize(const lq_grouped_weights *w, float *out) {
    lq_status st = lq_grouped_weights_validate(w, "lq_grouped_dequantize");
    if (st != LQ_OK) return st;
    size_t oc = (size_t)w->out_features, ic = (size_t)w->in_features;
    size_t ng = (size_t)lq_grouped_ngroups(w), group = (size_t)w->group;
    for (size_t r = 0; r < oc; r++) {
        const uint8_t *codes = w->codes + r * ic;
        const float *scales = w->scales + r * ng;
        const uint8_t *zeros = w->zeros + r * ng;
        float *row = out + r * ic;
        for (size_t j = 0; j < ic; j++) {
            size_t g = j / group;
            float v = scales[g] * (float)((int)codes[j] - (int)zeros[g]);
            row[w->perm ? (size_t)w->perm[j] : j] = v;
        }
    }
    return LQ_OK;
}

/* ---- quantized linears inside a model ------------------------------------------------- */

typedef struct {
    lq_lift_weights w;         /* the stored form, as handed over */
    lq_binary_matrix *packed;  /* the bits for the LUT kernels, K padded to kpad */
    int kpad;                  /* row_bytes · 8 */
    float *trt;                /* t3 × t2: TRᵀ, the B operand of GEMM 2 */
    float *a2e;                /* t1 × t3: a2inv expanded over the lifted columns */
    int cap_tokens;            /* tokens the scratch below holds */
    float *xt, *c1, *c2, *z;   /* cap × t1·t2, cap × t1·t2, cap × K, cap × kpad */
} lift_impl;

typedef struct {
    lq_grouped_weights w;
    float *dense;              /* OC × IC dequantized */
} grouped_impl;

static void lift_impl_free(void *p) {
    lift_impl *impl = p;
    if (!impl) return;
    lq_lift_weights_free(&impl->w);
    lq_binary_free(impl->packed);
    free(impl->trt);
    free(impl->a2e);
    free(impl->xt);
    free(impl->c1);
    free(impl->c2);
    free(impl->z);
    free(impl);
}

static void grouped_impl_free(void *p) {
    grouped_impl *impl = p;
    if (!impl) return;
    lq_grouped_weights_free(&impl->w);
    free(impl->dense);
    free(impl);
}

static void add_bias(const float *bias, int ntok, int oc, float *y) {
    if (!bias) return;
    for (size_t t = 0; t < (size_t)ntok; t++)
        for (size_t r = 0; r < (size_t)oc; r++) y[t * (size_t)oc + r] += bias[r];
}

static lq_status lift_reserve(lift_impl *impl, int n) {
    if (n <= impl->cap_tokens) return LQ_OK;
    const lq_lift_weights *w = &impl->w;
    size_t exp_ic = (size_t)w->t1 * w->t2, K = lq_lift_k(w);
    free(impl->xt);
    free(impl->c1);
    free(impl->c2);
    free(impl->z);
    impl->xt = malloc((size_t)n * exp_ic * sizeof(float));
    impl->c1 = malloc((size_t)n * exp_ic * sizeof(float));
    impl->c2 = malloc((size_t)n * K * sizeof(float));
    /* zeroed: the padding columns K … kpad−1 of every row are never written afterwards */
    impl->z = calloc((size_t)n * (size_t)impl->kpad, sizeof(float));
    if (!impl->xt || !impl->c1 || !impl->c2 || !impl->z) {
        free(impl->xt);
        free(impl->c1);
        free(impl->c2);
        free(impl->z);
        impl->xt = impl->c1 = impl->c2 = impl->z = NULL;
        impl->cap_tokens = 0;
        return lq_fail(LQ_ERR_NOMEM, "lift linear %d × %d: out of memory for %d tokens of scratch",
                       w->out_features, w->in_features, n);
    }
    impl->cap_tokens = n;
    return LQ_OK;
}

/* Lifted activations of n tokens into impl->z (n × kpad). */
static void lift_activations(lift_impl *impl, const float *x, int n) {
    const lq_lift_weights *w = &impl->w;
    const int t1 = w->t1, t2 = w->t2, t3 = lq_lift_t3(w);
    const size_t ic = (size_t)w->in_features, exp_ic = (size_t)t1 * t2;
    const size_t kpad = (size_t)impl->kpad;
    float *xt = impl->xt, *c1 = impl->c1, *c2 = impl->c2, *z = impl->z;
    for (size_t tok = 0; tok < (size_t)n; tok++) {
        const float *xr = x + tok * ic;
        float *dst = xt + tok * exp_ic;
        for (size_t i1 = 0; i1 < (size_t)t1; i1++)
            for (size_t i2 = 0; i2 < (size_t)t2; i2++) {
                size_t c = i1 * (size_t)t2 + i2;
                dst[i2 * (size_t)t1 + i1] = c < ic ? xr[c] * w->a1inv[c] : 0.0f;
            }
    }
    lq_gemm_f32_nt(t1, n * t2, t1, w->tl, t1, xt, t1, c1, n * t2, 0);
    lq_gemm_f32_nt(t1 * n, t3, t2, c1, t2, impl->trt, t2, c2, t3, 0);
    for (size_t i1 = 0; i1 < (size_t)t1; i1++) {
        const float *a2 = impl->a2e + i1 * (size_t)t3;
        for (size_t tok = 0; tok < (size_t)n; tok++) {
            const float *src = c2 + (i1 * (size_t)n + tok) * (size_t)t3;
            float *dst = z + tok * kpad + i1 * (size_t)t3;
            for (size_t j = 0; j < (size_t)t3; j++) dst[j] = src[j] * a2[j];
        }
    }
}

static lq_status lift_forward(const lq_linear *self, const float *x, int ntok, float *y) {
    lift_impl *impl = self->impl;
    const lq_lift_weights *w = &impl->w;
    if (ntok < 0) return lq_fail(LQ_ERR_ARG, "lift linear: ntok = %d", ntok);
    const size_t ic = (size_t)w->in_features, oc = (size_t)w->out_features;
    for (int done = 0; done < ntok;) {
        int n = ntok - done < RUN_TOKENS ? ntok - done : RUN_TOKENS;
        lq_status st = lift_reserve(impl, n);
        if (st != LQ_OK) return st;
        lift_activations(impl, x + (size_t)done * ic, n);
        float *out = y + (size_t)done * oc;
        st = n == 1 ? lq_binary_gemv(impl->packed, w->scale, impl->z, out)
                    : lq_binary_gemm(impl->packed, w->scale, impl->z, n, out);
        if (st != LQ_OK) return st;
        add_bias(w->bias, n, (int)oc, out);
        done += n;
    }
    return LQ_OK;
}

static lq_status grouped_forward(const lq_linear *self, const float *x, int ntok, float *y) {
    const grouped_impl *impl = self->impl;
    int ic = impl->w.in_features, oc = impl->w.out_features;
    if (ntok < 0) return lq_fail(LQ_ERR_ARG, "grouped linear: ntok = %d", ntok);
    lq_gemm_f32_nt(ntok, oc, ic, x, ic, impl->dense, ic, y, oc, 0);
    add_bias(impl->w.bias, ntok, oc, y);
    return LQ_OK;
}

static lq_status check_install_shape(const lq_linear *lin, int out_features, int in_features,
                                     const char *who) {
    if (lin->out_features != out_features || lin->in_features != in_features)
        return lq_fail(LQ_ERR_ARG, "%s: weights are %d × %d but the linear is %d × %d", who,
                       out_features, in_features, lin->out_features, lin->in_features);
    return LQ_OK;
}

/* Replaces whatever lin held: a previous quantized impl is freed, a dense weight (the model's
 * memory) is only dropped. */
static void install(lq_linear *lin, lq_status (*forward)(const lq_linear *, const float *, int, float *),
                    void *impl, void (*free_impl)(void *), float *bias) {
    if (lin->impl && lin->free_impl) lin->free_impl(lin->impl);
    lin->weight = NULL;
    lin->bias = bias;
    lin->forward = forward;
    lin->impl = impl;
    lin->free_impl = free_impl;
}

lq_status lq_linear_set_lift(lq_linear *lin, lq_lift_weights *w) {
    lq_status st = lq_lift_weights_validate(w, "lq_linear_set_lift");
    if (st != LQ_OK) return st;
    if ((st = check_install_shape(lin, w->out_features, w->in_features, "lq_linear_set_lift")))
        return st;
    lift_impl *impl = calloc(1, sizeof *impl);
    if (!impl) return lq_fail(LQ_ERR_NOMEM, "lq_linear_set_lift: out of memory");
    const size_t t1 = (size_t)w->t1, t2 = (size_t)w->t2, t3 = (size_t)lq_lift_t3(w);
    const size_t D = (size_t)w->D, nblk = t2 / (size_t)w->d;
    impl->kpad = (int)(lq_lift_row_bytes(w) * 8);
    impl->trt = malloc(t3 * t2 * sizeof(float));
    impl->a2e = malloc(t1 * t3 * sizeof(float));
    if (!impl->trt || !impl->a2e) {
        lift_impl_free(impl);
        return lq_fail(LQ_ERR_NOMEM, "lq_linear_set_lift: out of memory for a %d × %d layer",
                       w->out_features, w->in_features);
    }
    /* the stored rows are already whole bytes with zero padding bits: the file layout of a
     * kpad-wide matrix, whose extra columns meet zeros in z */
    if ((st = lq_binary_pack(w->bits, w->out_features, impl->kpad, &impl->packed)) != LQ_OK) {
        lift_impl_free(impl);
        return lq_fail_context(st, "lq_linear_set_lift");
    }
    for (size_t i2 = 0; i2 < t2; i2++)
        for (size_t j = 0; j < t3; j++) impl->trt[j * t2 + i2] = w->tr[i2 * t3 + j];
    for (size_t i1 = 0; i1 < t1; i1++)
        for (size_t j = 0; j < t3; j++) impl->a2e[i1 * t3 + j] = w->a2inv[i1 * nblk + j / D];
    impl->w = *w;
    memset(w, 0, sizeof *w);
    install(lin, lift_forward, impl, lift_impl_free, impl->w.bias);
    return LQ_OK;
}

lq_status lq_linear_set_grouped(lq_linear *lin, lq_grouped_weights *w) {
    lq_status st = lq_grouped_weights_validate(w, "lq_linear_set_grouped");
    if (st != LQ_OK) return st;
    if ((st = check_install_shape(lin, w->out_features, w->in_features, "lq_linear_set_grouped")))
        return st;
    grouped_impl *impl = calloc(1, sizeof *impl);
    if (impl) impl->dense = malloc((size_t)w->out_features * (size_t)w->in_features * sizeof(float));
    if (!impl || !impl->dense) {
        free(impl);
        return lq_fail(LQ_ERR_NOMEM, "lq_linear_set_grouped: out of memory for a %d × %d layer",
                       w->out_features, w->in_features);
    }
    if ((st = lq_grouped_dequantize(w, impl->dense)) != LQ_OK) {
        grouped_impl_free(impl);
        return st;
    }
    impl->w = *w;
    memset(w, 0, sizeof *w);
    install(lin, grouped_forward, impl, grouped_impl_free, impl->w.bias);
    return LQ_OK;
}

const lq_lift_weights *lq_linear_lift(const lq_linear *lin) {
    if (!lin || lin->forward != lift_forward || !lin->impl) return NULL;
    return &((const lift_impl *)lin->impl)->w;
}

const lq_grouped_weights *lq_linear_grouped(const lq_linear *lin) {
    if (!lin || lin->forward != grouped_forward || !lin->impl) return NULL;
    return &((const grouped_impl *)lin->impl)->w;
}
