/* Quantized linear layers at inference (worker/qlinear.c, lq_quant.h).
 *
 *  - lift fast path (repacked bits, batched transforms, LUT GEMV/GEMM) equals the double
 *    precision reference at 1, 5 and 130 tokens, for shapes with padded IC, K not a multiple
 *    of 8, odd t1, with and without bias; the portable kernel (LQ_NO_SIMD=1) too, bit for bit
 *    equal to the AVX2 one;
 *  - the reference equals Ŵ·x (+ bias) with Ŵ from lq_lift_effective_weight: the forward and
 *    the effective weight state the same layer;
 *  - validation names the tensor at fault: d ∤ t2, t1·t2 < IC, NaN side data, padding bits;
 *  - grouped: dequantization formula with and without perm; forward equals the dense GEMM;
 *  - a model whose linears are all replaced by lift layers gives the logits of the same model
 *    with dense Ŵ weights (prefill across the 128-token chunk and decode), and frees cleanly
 *    (the ASan build checks the leaks); stories260K too when shared/data is present.
 *
 * Tolerances: fast vs reference |Δ| ≤ 1e-5·|scale_r|·Σ|z| per output (float GEMMs for the
 * transforms, float LUT sums; lq_binary.h bounds the sums by ~(K/4)·2⁻²⁴·|s|·Σ|z|), reference
 * vs Ŵ·x |Δ| ≤ 1e-6·(Σ_c|Ŵ_rc·x_c| + |b_r|) (Ŵ is rounded to float). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "qlinear"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq_blas.h"
#include "lq_quant.h"

#ifndef LQ_SHARED_DATA
#define LQ_SHARED_DATA "../shared/data"
#endif
#define STORIES LQ_SHARED_DATA "/llama2c-stories260K/stories260K.bin"

typedef struct {
    int oc, ic, D, d, t1, t2, bias;
} lift_shape;

static const lift_shape SHAPES[] = {
    {37, 95, 24, 10, 5, 20, 1},    /* IC 95 padded to 100 */
    {19, 47, 25, 10, 5, 10, 0},    /* K = 125: padded to 128 bits per row; odd t1 */
    {64, 64, 20, 8, 8, 8, 1},      /* no padding at all */
    {9, 33, 16, 7, 5, 7, 1},       /* odd d and t2 */
    {200, 300, 24, 10, 15, 20, 0}, /* 200·720·130 weight-tokens: the threaded binary GEMM */
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static double uniform(lq_rng *r, double lo, double hi) { return lo + (hi - lo) * lq_rng_uniform(r); }

static void random_lift(const lift_shape *s, uint64_t seed, lq_lift_weights *w) {
    lq_status st = lq_lift_weights_alloc(w, s->oc, s->ic, s->D, s->d, s->t1, s->t2, s->bias);
    if (st != LQ_OK) print_error("%s\n", lq_last_error());
    assert_int_equal(st, LQ_OK);
    lq_rng r;
    lq_rng_seed(&r, seed);
    size_t K = lq_lift_k(w), rb = lq_lift_row_bytes(w), t3 = (size_t)lq_lift_t3(w);
    for (size_t row = 0; row < (size_t)s->oc; row++)
        for (size_t b = 0; b < rb; b++) {
            uint8_t v = (uint8_t)lq_rng_u64(&r);
            if (b == rb - 1 && K % 8) v &= (uint8_t)((1u << (K % 8)) - 1);
            w->bits[row * rb + b] = v;
        }
    for (int i = 0; i < s->oc; i++) w->scale[i] = (float)uniform(&r, 0.5, 1.5);
    for (int i = 0; i < s->t1 * s->t2; i++) w->a1inv[i] = (float)exp(0.3 * lq_rng_normal(&r));
    for (int i = 0; i < s->t1; i++)
        for (int j = 0; j < s->t1; j++)
            w->tl[i * s->t1 + j] = (float)((i == j) + lq_rng_normal(&r) / sqrt((double)s->t1));
    for (size_t i = 0; i < (size_t)s->t2 * t3; i++)
        w->tr[i] = (float)(lq_rng_normal(&r) / sqrt((double)s->t2));
    for (int i = 0; i < s->t1 * (s->t2 / s->d); i++) w->a2inv[i] = (float)uniform(&r, 0.5, 1.5);
    for (int i = 0; i < s->d * s->D; i++) w->M[i] = (float)(lq_rng_normal(&r) / sqrt((double)s->D));
    if (w->bias)
        for (int i = 0; i < s->oc; i++) w->bias[i] = (float)lq_rng_normal(&r);
}

static float *random_floats(size_t n, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (float)lq_rng_normal(&r);
    return v;
}

/* Σ_k |z_k| of one token, written here from the header's formula (the scale of the fast
 * path's rounding error) */
static double lifted_abs_sum(const lq_lift_weights *w, const float *x) {
    int t1 = w->t1, t2 = w->t2, t3 = lq_lift_t3(w), nblk = t2 / w->d;
    double total = 0.0;
    for (int a = 0; a < t1; a++)
        for (int j = 0; j < t3; j++) {
            double z = 0.0;
            for (int b = 0; b < t1; b++)
                for (int i2 = 0; i2 < t2; i2++) {
                    int c = b * t2 + i2;
                    double xv = c < w->in_features ? (double)x[c] * w->a1inv[c] : 0.0;
                    z += (double)w->tl[a * t1 + b] * xv * w->tr[i2 * t3 + j];
                }
            total += fabs(z * w->a2inv[a * nblk + j / w->D]);
        }
    return total;
}

static lq_linear empty_linear(int out_features, int in_features) {
    lq_linear lin;
    memset(&lin, 0, sizeof lin);
    lin.out_features = out_features;
    lin.in_features = in_features;
    return lin;
}

static void free_linear(lq_linear *lin) {
    if (lin->impl && lin->free_impl) lin->free_impl(lin->impl);
    memset(lin, 0, sizeof *lin);
}

/* fast forward vs reference for every token count; returns the worst |Δ| / (|s|·Σ|z|) */
static double compare_fast(const lq_linear *lin, const lq_lift_weights *w, const float *x,
                           int ntok, const float *ref, float *fast_out) {
    assert_int_equal(lin->forward(lin, x, ntok, fast_out), LQ_OK);
    double worst = 0.0;
    for (int t = 0; t < ntok; t++) {
        double zsum = lifted_abs_sum(w, x + (size_t)t * w->in_features);
        for (int r = 0; r < w->out_features; r++) {
            size_t i = (size_t)t * w->out_features + r;
            double bound = fabs((double)w->scale[r]) * zsum;
            double err = fabs((double)fast_out[i] - ref[i]);
            if (err > 1e-5 * bound + 1e-30)
                fail_msg("token %d row %d: fast %.9g vs reference %.9g (|s|·Σ|z| = %g)", t, r,
                         (double)fast_out[i], (double)ref[i], bound);
            if (bound > 0 && err / bound > worst) worst = err / bound;
        }
    }
    return worst;
}

/* ---- lift: fast path, reference, effective weight --------------------------------------- */

static void test_lift_forward_matches_reference(void **state) {
    (void)state;
    static const int counts[] = {1, 5, 130};
    double worst = 0.0;
    for (size_t si = 0; si < N_SHAPES; si++) {
        const lift_shape *s = &SHAPES[si];
        lq_lift_weights w, copy;
        random_lift(s, 100 + si, &w);
        random_lift(s, 100 + si, &copy); /* the layer takes w's arrays; copy stays ours */
        lq_linear lin = empty_linear(s->oc, s->ic);
        assert_int_equal(lq_linear_set_lift(&lin, &w), LQ_OK);
        assert_null(w.bits); /* ownership passed */
        assert_null(lin.weight);
        assert_ptr_equal(lin.bias, lq_linear_lift(&lin)->bias);
        assert_true(s->bias ? lin.bias != NULL : lin.bias == NULL);

        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            int ntok = counts[ci];
            float *x = random_floats((size_t)ntok * s->ic, 7 + si * 10 + ci);
            float *ref = malloc(sizeof(float) * ntok * s->oc);
            float *fast = malloc(sizeof(float) * ntok * s->oc);
            float *scalar = malloc(sizeof(float) * ntok * s->oc);
            assert_int_equal(lq_lift_forward_reference(&copy, x, ntok, ref), LQ_OK);
            double e = compare_fast(&lin, &copy, x, ntok, ref, fast);
            if (e > worst) worst = e;
            /* the portable kernel: same bound, and bit-identical to AVX2 (lq_binary.h) */
            setenv("LQ_NO_SIMD", "1", 1);
            e = compare_fast(&lin, &copy, x, ntok, ref, scalar);
            unsetenv("LQ_NO_SIMD");
            if (e > worst) worst = e;
            assert_memory_equal(fast, scalar, sizeof(float) * ntok * s->oc);
            free(x);
            free(ref);
            free(fast);
            free(scalar);
        }
        /* the stored form comes back unchanged */
        const lq_lift_weights *stored = lq_linear_lift(&lin);
        assert_non_null(stored);
        assert_null(lq_linear_grouped(&lin));
        assert_int_equal(stored->t1, copy.t1);
        assert_int_equal(stored->t2, copy.t2);
        assert_memory_equal(stored->bits, copy.bits, (size_t)s->oc * lq_lift_row_bytes(&copy));
        assert_memory_equal(stored->tr, copy.tr, sizeof(float) * s->t2 * lq_lift_t3(&copy));
        free_linear(&lin);
        lq_lift_weights_free(&copy);
    }
    print_message("worst fast-path error: %.2e · |s|·Σ|z| (tolerance 1e-5)\n", worst);
}

static void test_lift_reference_is_effective_weight(void **state) {
    (void)state;
    for (size_t si = 0; si < N_SHAPES; si++) {
        const lift_shape *s = &SHAPES[si];
        lq_lift_weights w;
        random_lift(s, 200 + si, &w);
        const int ntok = 3;
        float *x = random_floats((size_t)ntok * s->ic, 300 + si);
        float *ref = malloc(sizeof(float) * ntok * s->oc);
        float *W = malloc(sizeof(float) * s->oc * s->ic);
        assert_int_equal(lq_lift_forward_reference(&w, x, ntok, ref), LQ_OK);
        assert_int_equal(lq_lift_effective_weight(&w, W), LQ_OK);
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < s->oc; r++) {
                double y = w.bias ? w.bias[r] : 0.0, mag = w.bias ? fabs(w.bias[r]) : 0.0;
                for (int c = 0; c < s->ic; c++) {
                    double p = (double)W[(size_t)r * s->ic + c] * x[(size_t)t * s->ic + c];
                    y += p;
                    mag += fabs(p);
                }
                double got = ref[(size_t)t * s->oc + r];
                if (fabs(got - y) > 1e-6 * mag)
                    fail_msg("shape %zu token %d row %d: reference %.9g vs Ŵx %.9g", si, t, r, got, y);
            }
        /* a zero activation gives the bias (or zero): padding and a1inv do not leak */
        memset(x, 0, sizeof(float) * s->ic);
        assert_int_equal(lq_lift_forward_reference(&w, x, 1, ref), LQ_OK);
        for (int r = 0; r < s->oc; r++) assert_true(ref[r] == (w.bias ? w.bias[r] : 0.0f));
        free(x);
        free(ref);
        free(W);
        lq_lift_weights_free(&w);
    }
}

/* Row r of Ŵ depends on row r of the bits only: flipping one bit changes exactly that row. */
static void test_lift_effective_weight_rows(void **state) {
    (void)state;
    const lift_shape *s = &SHAPES[0];
    lq_lift_weights w;
    random_lift(s, 400, &w);
    size_t n = (size_t)s->oc * s->ic;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    assert_int_equal(lq_lift_effective_weight(&w, a), LQ_OK);
    w.bits[3 * lq_lift_row_bytes(&w) + 2] ^= 0x10;
    assert_int_equal(lq_lift_effective_weight(&w, b), LQ_OK);
    for (int r = 0; r < s->oc; r++) {
        int same = !memcmp(a + (size_t)r * s->ic, b + (size_t)r * s->ic, sizeof(float) * s->ic);
        assert_int_equal(same, r != 3);
    }
    free(a);
    free(b);
    lq_lift_weights_free(&w);
}

/* ---- validation ---------------------------------------------------------------------------- */

static void expect_failure(lq_status st, lq_status code, const char *needle1, const char *needle2) {
    assert_int_equal(st, code);
    const char *msg = lq_last_error();
    if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("message \"%s\" does not name \"%s\"%s%s", msg, needle1, needle2 ? " / " : "",
                 needle2 ? needle2 : "");
}

static void test_lift_validate(void **state) {
    (void)state;
    lq_lift_weights w;
    random_lift(&SHAPES[0], 500, &w); /* 37 × 95, 24/10, 5 × 20, bias */
    const char *name = "layers.3.mlp.up_proj";
    assert_int_equal(lq_lift_weights_validate(&w, name), LQ_OK);

    w.t2 = 15; /* d = 10 does not divide it */
    expect_failure(lq_lift_weights_validate(&w, name), LQ_ERR_ARG, name, "t2 = 15");
    w.t2 = 20;
    w.in_features = 101; /* t1·t2 = 100 */
    expect_failure(lq_lift_weights_validate(&w, name), LQ_ERR_ARG, name, "in_features = 101");
    w.in_features = 95;

    struct { float *v; const char *field; } sides[] = {
        {&w.tl[3], "tl"}, {&w.tr[7], "tr"}, {&w.a1inv[99], "a1inv"}, {&w.a2inv[1], "a2inv"},
        {&w.scale[36], "scale"}, {&w.bias[0], "bias"}, {&w.M[5], "M"}};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        float keep = *sides[i].v;
        *sides[i].v = NAN;
        expect_failure(lq_lift_weights_validate(&w, name), LQ_ERR_NUMERIC, name, sides[i].field);
        *sides[i].v = INFINITY;
        expect_failure(lq_lift_weights_validate(&w, name), LQ_ERR_NUMERIC, name, sides[i].field);
        *sides[i].v = keep;
    }
    assert_int_equal(lq_lift_weights_validate(&w, name), LQ_OK);

    /* a layer that fails validation is not installed, and the caller keeps its arrays */
    lq_linear lin = empty_linear(37, 95);
    w.tl[0] = NAN;
    expect_failure(lq_linear_set_lift(&lin, &w), LQ_ERR_NUMERIC, "tl", NULL);
    assert_null(lin.forward);
    assert_non_null(w.tl);
    w.tl[0] = 1.0f;
    lq_linear wrong = empty_linear(37, 96);
    expect_failure(lq_linear_set_lift(&wrong, &w), LQ_ERR_ARG, "37 × 95", "37 × 96");
    assert_null(wrong.forward);
    lq_lift_weights_free(&w);

    /* K = 125: bits 125..127 of each row are padding and must be zero */
    random_lift(&SHAPES[1], 501, &w);
    assert_int_equal(lq_lift_weights_validate(&w, name), LQ_OK);
    w.bits[4 * lq_lift_row_bytes(&w) + 15] |= 0x80;
    expect_failure(lq_lift_weights_validate(&w, name), LQ_ERR_FORMAT, name, "padding");
    lq_lift_weights_free(&w);

    /* alloc refuses the same shapes and leaves nothing allocated */
    expect_failure(lq_lift_weights_alloc(&w, 8, 40, 24, 10, 3, 15, 0), LQ_ERR_ARG, "t2 = 15", NULL);
    assert_null(w.bits);
    expect_failure(lq_lift_weights_alloc(&w, 8, 40, 24, 10, 1, 20, 0), LQ_ERR_ARG,
                   "in_features = 40", NULL);
    expect_failure(lq_lift_weights_alloc(&w, 0, 40, 24, 10, 2, 20, 0), LQ_ERR_ARG,
                   "out_features = 0", NULL);
    lq_lift_weights_free(&w); /* harmless on a zeroed struct */
}

/* ---- grouped ------------------------------------------------------------------------------- */

static void random_grouped(int oc, int ic, int bits, int group, int with_perm, int with_bias,
                           uint64_t seed, lq_grouped_weights *w) {
    assert_int_equal(lq_grouped_weights_alloc(w, oc, ic, bits, group, with_perm, with_bias), LQ_OK);
    lq_rng r;
    lq_rng_seed(&r, seed);
    int levels = 1 << bits, ng = lq_grouped_ngroups(w);
    for (size_t i = 0; i < (size_t)oc * ic; i++) w->codes[i] = (uint8_t)(lq_rng_u64(&r) % levels);
    for (size_t i = 0; i < (size_t)oc * ng; i++) {
        w->zeros[i] = (uint8_t)(lq_rng_u64(&r) % levels);
        w->scales[i] = (float)uniform(&r, 0.01, 0.1);
    }
    if (w->perm) /* Fisher–Yates over the identity alloc gives */
        for (int j = ic - 1; j > 0; j--) {
            int k = (int)(lq_rng_u64(&r) % (uint64_t)(j + 1));
            int32_t t = w->perm[j];
            w->perm[j] = w->perm[k];
            w->perm[k] = t;
        }
    if (w->bias)
        for (int i = 0; i < oc; i++) w->bias[i] = (float)lq_rng_normal(&r);
}

static void check_grouped(int oc, int ic, int bits, int group, int with_perm, int with_bias,
                          uint64_t seed) {
    lq_grouped_weights w;
    random_grouped(oc, ic, bits, group, with_perm, with_bias, seed, &w);
    assert_int_equal(lq_grouped_weights_validate(&w, "g"), LQ_OK);
    float *W = malloc(sizeof(float) * oc * ic);
    assert_int_equal(lq_grouped_dequantize(&w, W), LQ_OK);
    int ng = lq_grouped_ngroups(&w);
    for (int r = 0; r < oc; r++)
        for (int j = 0; j < ic; j++) {
            int g = j / group, col = w.perm ? w.perm[j] : j;
            double want = (double)w.scales[r * ng + g] *
                          ((int)w.codes[(size_t)r * ic + j] - (int)w.zeros[r * ng + g]);
            if (fabs(W[(size_t)r * ic + col] - want) > 1e-7 * fabs(want))
                fail_msg("W[%d][%d] = %g, want %g", r, col, (double)W[(size_t)r * ic + col], want);
        }

    lq_grouped_weights keep;
    random_grouped(oc, ic, bits, group, with_perm, with_bias, seed, &keep);
    lq_linear lin = empty_linear(oc, ic);
    assert_int_equal(lq_linear_set_grouped(&lin, &w), LQ_OK);
    assert_null(w.codes);
    assert_null(lin.weight);
    assert_null(lq_linear_lift(&lin));
    const lq_grouped_weights *stored = lq_linear_grouped(&lin);
    assert_non_null(stored);
    assert_memory_equal(stored->codes, keep.codes, (size_t)oc * ic);
    if (with_perm) assert_memory_equal(stored->perm, keep.perm, sizeof(int32_t) * ic);
    for (int ntok = 1; ntok <= 7; ntok += 6) {
        float *x = random_floats((size_t)ntok * ic, seed + ntok);
        float *y = malloc(sizeof(float) * ntok * oc), *want = malloc(sizeof(float) * ntok * oc);
        assert_int_equal(lin.forward(&lin, x, ntok, y), LQ_OK);
        lq_gemm_f32_nt_reference(ntok, oc, ic, x, ic, W, ic, want, oc, 0);
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < oc; r++) {
                double mag = keep.bias ? fabs(keep.bias[r]) : 0.0, wv = want[t * oc + r];
                for (int c = 0; c < ic; c++) mag += fabs(W[(size_t)r * ic + c] * x[(size_t)t * ic + c]);
                if (keep.bias) wv += keep.bias[r];
                if (fabs(y[t * oc + r] - wv) > 1e-5 * mag)
                    fail_msg("token %d row %d: %g vs dense %g", t, r, (double)y[t * oc + r], wv);
            }
        free(x);
        free(y);
        free(want);
    }
    free_linear(&lin);
    lq_grouped_weights_free(&keep);
    free(W);
}

static void test_grouped(void **state) {
    (void)state;
    check_grouped(13, 70, 3, 16, 1, 1, 600); /* perm, bias, a partial last group */
    check_grouped(13, 70, 3, 16, 0, 0, 601);
    check_grouped(32, 64, 4, 32, 0, 1, 602);
    check_grouped(5, 20, 2, 128, 1, 0, 603); /* one group wider than the row */
    check_grouped(6, 9, 8, 1, 0, 0, 604);    /* 8 bits, group 1 */
}

static void test_grouped_validate(void **state) {
    (void)state;
    lq_grouped_weights w;
    random_grouped(4, 24, 3, 8, 1, 1, 700, &w);
    const char *name = "layers.0.self_attn.q_proj";
    assert_int_equal(lq_grouped_weights_validate(&w, name), LQ_OK);
    uint8_t c = w.codes[5];
    w.codes[5] = 8;
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_RANGE, name, "codes[0][5]");
    w.codes[5] = c;
    uint8_t z = w.zeros[2];
    w.zeros[2] = 9;
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_RANGE, name, "zeros[0][2]");
    w.zeros[2] = z;
    int32_t p = w.perm[3];
    w.perm[3] = w.perm[4];
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_FORMAT, name, "repeated");
    w.perm[3] = 24;
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_FORMAT, name, "out of range");
    w.perm[3] = p;
    float s = w.scales[1];
    w.scales[1] = NAN;
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_NUMERIC, name, "scales");
    w.scales[1] = s;
    w.bias[3] = INFINITY;
    expect_failure(lq_grouped_weights_validate(&w, name), LQ_ERR_NUMERIC, name, "bias");
    w.bias[3] = 0.0f;
    assert_int_equal(lq_grouped_weights_validate(&w, name), LQ_OK);
    lq_grouped_weights_free(&w);
    expect_failure(lq_grouped_weights_alloc(&w, 4, 24, 9, 8, 0, 0), LQ_ERR_ARG, "bits = 9", NULL);
    expect_failure(lq_grouped_weights_alloc(&w, 4, 24, 3, 0, 0, 0), LQ_ERR_ARG, "group = 0", NULL);
}

/* ---- inside a model --------------------------------------------------------------------- */

/* A lift layer "quantizing" W: TL = I, TR = I ⊗ M (each d-block decodes as M·y), a1 = a2 = 1,
 * y = sign(Mᵀ·block), one least-squares scale per row. Crude, but the codes come from W. */
static void lift_from_weight(const lq_linear *lin, int D, int d, const float *M, lq_lift_weights *w) {
    int oc = lin->out_features, ic = lin->in_features;
    int t2 = 2 * d, t1 = (ic + t2 - 1) / t2;
    assert_int_equal(lq_lift_weights_alloc(w, oc, ic, D, d, t1, t2, lin->bias != NULL), LQ_OK);
    int t3 = lq_lift_t3(w), nblk = t2 / d;
    size_t rb = lq_lift_row_bytes(w);
    memcpy(w->M, M, sizeof(float) * d * D);
    for (int i = 0; i < t1; i++) w->tl[i * t1 + i] = 1.0f;
    for (int blk = 0; blk < nblk; blk++)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < D; j++) w->tr[(blk * d + i) * t3 + blk * D + j] = M[i * D + j];
    for (int i = 0; i < t1 * t2; i++) w->a1inv[i] = 1.0f;
    for (int i = 0; i < t1 * nblk; i++) w->a2inv[i] = 1.0f;
    for (int r = 0; r < oc; r++) {
        const float *row = lin->weight + (size_t)r * ic;
        double dot = 0.0, norm = 0.0;
        for (int i1 = 0; i1 < t1; i1++)
            for (int blk = 0; blk < nblk; blk++) {
                int c0 = i1 * t2 + blk * d;
                double dec[64] = {0};
                for (int j = 0; j < D; j++) {
                    double p = 0.0;
                    for (int i = 0; i < d; i++) p += c0 + i < ic ? (double)M[i * D + j] * row[c0 + i] : 0.0;
                    int bit = p >= 0.0;
                    size_t k = (size_t)(i1 * t3 + blk * D + j);
                    if (bit) w->bits[r * rb + k / 8] |= (uint8_t)(1u << (k % 8));
                    for (int i = 0; i < d; i++) dec[i] += (bit ? 1.0 : -1.0) * M[i * D + j];
                }
                for (int i = 0; i < d; i++) {
                    if (c0 + i < ic) dot += dec[i] * row[c0 + i];
                    norm += dec[i] * dec[i];
                }
            }
        w->scale[r] = norm > 0 ? (float)(dot / norm) : 1.0f;
    }
    if (lin->bias) memcpy(w->bias, lin->bias, sizeof(float) * oc);
}

static int model_linears(lq_model *m, lq_linear **out) {
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lq_layer *L = &m->layers[l];
        lq_linear *lins[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) out[n++] = lins[i];
    }
    out[n++] = &m->lm_head;
    return n;
}

/* Replaces every linear of q by a lift layer built from its weights (alternating 24/10 and
 * 25/10, so K is a multiple of 8 in some layers and not in others) and gives d, the same
 * model, dense weights equal to the lift layers' Ŵ. */
static void quantize_and_mirror(lq_model *q, lq_model *d) {
    lq_linear *ql[8 * 64], *dl[8 * 64];
    assert_true(q->cfg.n_layers < 64);
    int n = model_linears(q, ql);
    assert_int_equal(model_linears(d, dl), n);
    float *M24 = random_matrix(10, 24, 1), *M25 = random_matrix(10, 25, 2);
    for (int i = 0; i < n; i++) {
        int D = i % 2 ? 25 : 24;
        lq_lift_weights w;
        lift_from_weight(ql[i], D, 10, D == 24 ? M24 : M25, &w);
        assert_int_equal(lq_linear_set_lift(ql[i], &w), LQ_OK);
        /* the dense twin's weight: a fresh block when it is shared with the embeddings */
        if (dl[i]->weight == d->tok_embeddings) {
            dl[i]->weight = lq_model_alloc(d, (size_t)dl[i]->out_features * dl[i]->in_features);
            assert_non_null(dl[i]->weight);
        }
        assert_int_equal(lq_lift_effective_weight(lq_linear_lift(ql[i]), dl[i]->weight), LQ_OK);
        assert_null(ql[i]->weight);
    }
    free(M24);
    free(M25);
}

/* Prefill of ntok tokens (all logits) then 3 decode steps, quantized vs dense twin. */
static void compare_models(const lq_model *q, const lq_model *d, int ntok) {
    int vocab = q->cfg.vocab_size, total = ntok + 3;
    lq_session *sq, *sd;
    assert_int_equal(lq_session_new(q, total, &sq), LQ_OK);
    assert_int_equal(lq_session_new(d, total, &sd), LQ_OK);
    int *tokens = malloc(sizeof(int) * total);
    for (int i = 0; i < total; i++) tokens[i] = (i * 7 + 3) % vocab;
    float *lq = malloc(sizeof(float) * ntok * vocab), *ld = malloc(sizeof(float) * ntok * vocab);
    lq_status st = lq_forward(sq, tokens, ntok, lq, 1);
    if (st != LQ_OK) print_error("%s\n", lq_last_error());
    assert_int_equal(st, LQ_OK);
    assert_int_equal(lq_forward(sd, tokens, ntok, ld, 1), LQ_OK);
    double worst = 0.0;
    for (int step = 0; step <= 3; step++) {
        int rows = step == 0 ? ntok : 1;
        if (step > 0) {
            assert_int_equal(lq_forward(sq, tokens + ntok + step - 1, 1, lq, 0), LQ_OK);
            assert_int_equal(lq_forward(sd, tokens + ntok + step - 1, 1, ld, 0), LQ_OK);
        }
        for (int t = 0; t < rows; t++) {
            double scale = 0.0;
            for (int v = 0; v < vocab; v++) scale = fmax(scale, fabs(ld[(size_t)t * vocab + v]));
            for (int v = 0; v < vocab; v++) {
                size_t i = (size_t)t * vocab + v;
                assert_true(isfinite(lq[i]));
                double err = fabs((double)lq[i] - ld[i]) / (scale + 1e-3);
                if (err > 1e-4)
                    fail_msg("step %d token %d logit %d: quantized %g vs dense Ŵ %g", step, t, v,
                             (double)lq[i], (double)ld[i]);
                if (err > worst) worst = err;
            }
        }
    }
    print_message("%s: worst logit difference %.2e of the largest |logit| (tolerance 1e-4)\n",
                  q->source[0] ? q->source : "tiny model", worst);
    free(tokens);
    free(lq);
    free(ld);
    lq_session_free(sq);
    lq_session_free(sd);
}

static void fill_random(float *v, size_t n, double sd, double mean, lq_rng *r) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(mean + sd * lq_rng_normal(r));
}

static void init_linear(lq_model *m, lq_linear *lin, int out_features, int in_features, int bias,
                        lq_rng *r) {
    lin->out_features = out_features;
    lin->in_features = in_features;
    lin->weight = lq_model_alloc(m, (size_t)out_features * in_features);
    assert_non_null(lin->weight);
    fill_random(lin->weight, (size_t)out_features * in_features, 1.0 / sqrt((double)in_features), 0, r);
    if (bias) {
        lin->bias = lq_model_alloc(m, (size_t)out_features);
        assert_non_null(lin->bias);
        fill_random(lin->bias, (size_t)out_features, 0.1, 0, r);
    }
}

/* Qwen2-like: q/k/v bias, GQA, untied head; sizes that pad (dim 40 → 2 × 20, hidden 90 → 5 × 20) */
static lq_model *tiny_model(uint64_t seed) {
    lq_model_config c;
    memset(&c, 0, sizeof c);
    strcpy(c.arch, "qwen2");
    c.dim = 40;
    c.hidden_dim = 90;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 10;
    c.vocab_size = 50;
    c.max_seq_len = 512;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.rope_dim = 10;
    c.rope_style = LQ_ROPE_HALF;
    c.has_qkv_bias = 1;
    lq_model *m;
    assert_int_equal(lq_model_new(&c, &m), LQ_OK);
    lq_rng r;
    lq_rng_seed(&r, seed);
    m->tok_embeddings = lq_model_alloc(m, (size_t)c.vocab_size * c.dim);
    m->final_norm = lq_model_alloc(m, (size_t)c.dim);
    assert_non_null(m->tok_embeddings);
    assert_non_null(m->final_norm);
    fill_random(m->tok_embeddings, (size_t)c.vocab_size * c.dim, 1.0, 0, &r);
    fill_random(m->final_norm, (size_t)c.dim, 0.1, 1.0, &r);
    for (int l = 0; l < c.n_layers; l++) {
        lq_layer *L = &m->layers[l];
        L->attn_norm = lq_model_alloc(m, (size_t)c.dim);
        L->ffn_norm = lq_model_alloc(m, (size_t)c.dim);
        assert_non_null(L->attn_norm);
        assert_non_null(L->ffn_norm);
        fill_random(L->attn_norm, (size_t)c.dim, 0.1, 1.0, &r);
        fill_random(L->ffn_norm, (size_t)c.dim, 0.1, 1.0, &r);
        int q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
        init_linear(m, &L->wq, q, c.dim, 1, &r);
        init_linear(m, &L->wk, kv, c.dim, 1, &r);
        init_linear(m, &L->wv, kv, c.dim, 1, &r);
        init_linear(m, &L->wo, c.dim, q, 0, &r);
        init_linear(m, &L->w_gate, c.hidden_dim, c.dim, 0, &r);
        init_linear(m, &L->w_up, c.hidden_dim, c.dim, 0, &r);
        init_linear(m, &L->w_down, c.dim, c.hidden_dim, 0, &r);
    }
    init_linear(m, &m->lm_head, c.vocab_size, c.dim, 0, &r);
    return m;
}

static void test_model_with_lift_layers(void **state) {
    (void)state;
    lq_model *q = tiny_model(42), *d = tiny_model(42);
    quantize_and_mirror(q, d);
    compare_models(q, d, 140); /* 128 + 12: both chunks of the forward pass */
    lq_model_free(q);
    lq_model_free(d);
}

static void test_stories_with_lift_layers(void **state) {
    (void)state;
    if (access(STORIES, R_OK) != 0) {
        print_message("%s not found: skipping\n", STORIES);
        skip();
    }
    lq_model *q = NULL, *d = NULL;
    assert_int_equal(lq_model_load(STORIES, NULL, &q), LQ_OK);
    assert_int_equal(lq_model_load(STORIES, NULL, &d), LQ_OK);
    assert_true(q->cfg.tied_embeddings); /* exercises the head sharing the embeddings */
    quantize_and_mirror(q, d);
    compare_models(q, d, 20);
    lq_model_free(q);
    lq_model_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lift_forward_matches_reference),
        cmocka_unit_test(test_lift_reference_is_effective_weight),
        cmocka_unit_test(test_lift_effective_weight_rows),
        cmocka_unit_test(test_lift_validate),
        cmocka_unit_test(test_grouped),
        cmocka_unit_test(test_grouped_validate),
        cmocka_unit_test(test_model_with_lift_layers),
        cmocka_unit_test(test_stories_with_lift_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
