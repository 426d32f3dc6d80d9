/* RTN and GPTQ baselines (worker/baselines.c): RTN's grid and error bound, GPTQ against RTN on
 * correlated inputs, the H = I (no error feedback) identity with RTN, GPTQ against a plain
 * unbatched double-precision implementation written here from the paper, determinism across
 * thread counts, dead columns, the output error against its definition, and bad arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#define LQ_TEST_NAME "baselines"
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_blas.h"
#include "lq_quant.h"

static float *dequantized(const lq_grouped_weights *w) {
    float *out = malloc(sizeof(float) * w->out_features * w->in_features);
    assert_non_null(out);
    assert_int_equal(lq_grouped_dequantize(w, out), LQ_OK);
    return out;
}

/* ntok tokens whose channels follow an AR(1) chain (neighbours correlated by rho) with
 * log-normal channel scales, so diag H varies and act-order has something to sort;
 * H = XᵀX. */
static double *correlated_hessian(int ic, int ntok, double rho, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    double *scale = malloc(sizeof(double) * ic), *X = malloc(sizeof(double) * ntok * ic);
    double *H = malloc(sizeof(double) * ic * ic);
    assert_true(scale && X && H);
    for (int c = 0; c < ic; c++) scale[c] = exp(0.7 * lq_rng_normal(&r));
    for (int t = 0; t < ntok; t++) {
        double prev = lq_rng_normal(&r);
        for (int c = 0; c < ic; c++) {
            prev = rho * prev + sqrt(1.0 - rho * rho) * lq_rng_normal(&r);
            X[(size_t)t * ic + c] = scale[c] * prev;
        }
    }
    lq_gemm_f64(1, 0, ic, ic, ntok, 1.0, X, ic, X, ic, 0.0, H, ic);
    free(scale);
    free(X);
    return H;
}

static double *identity(int n) {
    double *H = calloc((size_t)n * n, sizeof(double));
    assert_non_null(H);
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] = 1.0;
    return H;
}

static int is_permutation(const int32_t *perm, int n) {
    char *seen = calloc(n, 1);
    int ok = 1;
    for (int j = 0; j < n && ok; j++) {
        if (perm[j] < 0 || perm[j] >= n || seen[perm[j]]) ok = 0;
        else seen[perm[j]] = 1;
    }
    free(seen);
    return ok;
}

/* every element within half a step of its group's grid, codes and zeros in range */
static void check_rtn_bound(const float *W, const lq_grouped_weights *w) {
    const int ic = w->in_features, ng = lq_grouped_ngroups(w), maxq = (1 << w->bits) - 1;
    float *Wq = dequantized(w);
    for (int r = 0; r < w->out_features; r++)
        for (int c = 0; c < ic; c++) {
            const int g = c / w->group;
            const float s = w->scales[(size_t)r * ng + g];
            assert_true(s > 0.0f);
            assert_true(w->codes[(size_t)r * ic + c] <= maxq);
            assert_true(w->zeros[(size_t)r * ng + g] <= maxq);
            const double e = fabs((double)Wq[(size_t)r * ic + c] - W[(size_t)r * ic + c]);
            const double bound = s / 2.0 + 4.0 * FLT_EPSILON * (fabs(W[(size_t)r * ic + c]) + s);
            if (!(e <= bound)) {
                fprintf(stderr, "%d bits, group %d: [%d][%d] = %g dequantizes to %g (scale %g)\n",
                        w->bits, w->group, r, c, W[(size_t)r * ic + c], Wq[(size_t)r * ic + c], s);
                fail();
            }
        }
    free(Wq);
}

static void test_rtn_round_trip(void **state) {
    (void)state;
    const int oc = 12, ic = 100;
    float *W = random_blocks(ic, oc, 1);
    /* rows that stress the grid: all positive, constant, all zero, all negative, tiny */
    for (int c = 0; c < ic; c++) {
        W[0 * ic + c] = 1.0f + (float)c / ic;
        W[1 * ic + c] = 0.5f;
        W[2 * ic + c] = 0.0f;
        W[3 * ic + c] = -2.0f - (float)c;
        W[4 * ic + c] = 1e-40f * (float)(c % 5);
    }
    const int bits[] = {2, 3, 4, 8}, groups[] = {32, 7, 100, 1, -1, 1000};
    for (size_t b = 0; b < 4; b++)
        for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++) {
            lq_grouped_weights w = {0};
            assert_int_equal(lq_quantize_rtn(W, oc, ic, bits[b], groups[k], &w), LQ_OK);
            assert_int_equal(lq_grouped_weights_validate(&w, "rtn"), LQ_OK);
            assert_int_equal(w.bits, bits[b]);
            /* -1 and anything wider than the row are one group per row */
            assert_int_equal(w.group, groups[k] == -1 || groups[k] > ic ? ic : groups[k]);
            assert_null(w.perm);
            check_rtn_bound(W, &w);
            /* zero is on every grid: the all-zero row comes back exactly */
            float *Wq = dequantized(&w);
            for (int c = 0; c < ic; c++) assert_true(Wq[2 * ic + c] == 0.0f);
            /* one group of width 1 holds a single value, which is exact (it is hi or lo) */
            if (groups[k] == 1)
                for (int i = 0; i < oc * ic; i++)
                    if (i / ic != 4) /* not the subnormals: below the scale floor FLT_MIN */
                        assert_true(fabsf(Wq[i] - W[i]) <= 1e-6f * fabsf(W[i]));
            free(Wq);
            lq_grouped_weights_free(&w);
        }
    free(W);
}

static void test_rtn_8bit_nearly_exact(void **state) {
    (void)state;
    const int oc = 64, ic = 256;
    float *W = random_blocks(ic, oc, 2);
    lq_grouped_weights w = {0};
    assert_int_equal(lq_quantize_rtn(W, oc, ic, 8, 128, &w), LQ_OK);
    float *Wq = dequantized(&w);
    double num = 0.0, den = 0.0;
    for (int i = 0; i < oc * ic; i++) {
        num += ((double)Wq[i] - W[i]) * ((double)Wq[i] - W[i]);
        den += (double)W[i] * W[i];
    }
    /* a step of about 6σ/255: relative RMS error ≈ 0.024/√12 ≈ 0.007 */
    assert_true(sqrt(num / den) < 0.01);
    check_rtn_bound(W, &w);
    free(Wq);
    free(W);
    lq_grouped_weights_free(&w);
}

static double rtn_error(const float *W, int oc, int ic, const double *H, int bits, int group) {
    lq_grouped_weights w = {0};
    assert_int_equal(lq_quantize_rtn(W, oc, ic, bits, group, &w), LQ_OK);
    float *Wq = dequantized(&w);
    double e = lq_output_error(W, Wq, oc, ic, H);
    free(Wq);
    lq_grouped_weights_free(&w);
    return e;
}

static double gptq_error(const float *W, int oc, int ic, const double *H, int bits, int group,
                         int act_order) {
    lq_grouped_weights w = {0};
    assert_int_equal(lq_quantize_gptq(W, oc, ic, H, bits, group, act_order, 0.01, &w), LQ_OK);
    assert_int_equal(lq_grouped_weights_validate(&w, "gptq"), LQ_OK);
    if (act_order) {
        assert_non_null(w.perm);
        assert_true(is_permutation(w.perm, ic));
    } else {
        assert_null(w.perm);
    }
    float *Wq = dequantized(&w);
    double e = lq_output_error(W, Wq, oc, ic, H);
    free(Wq);
    lq_grouped_weights_free(&w);
    return e;
}

static void test_gptq_beats_rtn(void **state) {
    (void)state;
    const int oc = 64, ic = 256;
    double *H = correlated_hessian(ic, 2048, 0.9, 3);
    float *W = random_blocks(ic, oc, 4);
    for (int bits = 2; bits <= 4; bits++) {
        const double rtn = rtn_error(W, oc, ic, H, bits, 64);
        for (int act = 0; act <= 1; act++) {
            const double gptq = gptq_error(W, oc, ic, H, bits, 64, act);
            fprintf(stderr, "  %d bits, group 64, act-order %d: GPTQ/RTN output error %.3f\n", bits,
                    act, gptq / rtn);
            /* with neighbours correlated at 0.9 the error feedback removes most of it */
            assert_true(gptq < 0.5 * rtn);
        }
    }
    free(H);
    free(W);
}

/* With a diagonal H, U is diagonal: no error reaches another column, and GPTQ without
 * act-order is RTN exactly (same grids, same codes). */
static void test_gptq_diagonal_h_is_rtn(void **state) {
    (void)state;
    const int oc = 20, ic = 300;
    float *W = random_blocks(ic, oc, 5);
    double *I = identity(ic), *D = identity(ic);
    lq_rng r;
    lq_rng_seed(&r, 6);
    for (int i = 0; i < ic; i++) D[(size_t)i * ic + i] = 0.1 + 10.0 * lq_rng_uniform(&r);
    /* 48 and 100 do not divide 128: the blocks are cut at group starts */
    const int bits[] = {2, 3, 4, 8}, groups[] = {128, 48, 100, 7, -1};
    for (size_t b = 0; b < 4; b++)
        for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++)
            for (int h = 0; h < 2; h++) {
                lq_grouped_weights rtn = {0}, gptq = {0};
                assert_int_equal(lq_quantize_rtn(W, oc, ic, bits[b], groups[k], &rtn), LQ_OK);
                assert_int_equal(lq_quantize_gptq(W, oc, ic, h ? D : I, bits[b], groups[k], 0,
                                                  0.01, &gptq),
                                 LQ_OK);
                assert_int_equal(gptq.group, rtn.group);
                const int ng = lq_grouped_ngroups(&rtn);
                assert_memory_equal(gptq.codes, rtn.codes, (size_t)oc * ic);
                assert_memory_equal(gptq.zeros, rtn.zeros, (size_t)oc * ng);
                assert_memory_equal(gptq.scales, rtn.scales, sizeof(float) * oc * ng);
                lq_grouped_weights_free(&rtn);
                lq_grouped_weights_free(&gptq);
            }
    free(W);
    free(I);
    free(D);
}

/* ---- a plain GPTQ, written from the paper: no lazy batches, double everywhere ------------- */

/* lower Cholesky factor in place (A = L·Lᵀ); 0 when A is not positive definite */
static int plain_cholesky(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double d = A[(size_t)j * n + j];
        for (int k = 0; k < j; k++) d -= A[(size_t)j * n + k] * A[(size_t)j * n + k];
        if (!(d > 0.0)) return 0;
        d = sqrt(d);
        A[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            for (int k = 0; k < j; k++) s -= A[(size_t)i * n + k] * A[(size_t)j * n + k];
            A[(size_t)i * n + j] = s / d;
        }
        for (int k = j + 1; k < n; k++) A[(size_t)j * n + k] = 0.0;
    }
    return 1;
}

/* U with H⁻¹ = UᵀU, H already permuted and damped */
static double *plain_inverse_factor(const double *H, int n) {
    double *L = malloc(sizeof(double) * n * n), *Hinv = malloc(sizeof(double) * n * n);
    double *U = malloc(sizeof(double) * n * n);
    memcpy(L, H, sizeof(double) * n * n);
    assert_true(plain_cholesky(L, n));
    /* H⁻¹ column by column: L y = e_c, Lᵀ x = y */
    double *y = malloc(sizeof(double) * n);
    for (int c = 0; c < n; c++) {
        for (int i = 0; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int k = 0; k < i; k++) s -= L[(size_t)i * n + k] * y[k];
            y[i] = s / L[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = y[i];
            for (int k = i + 1; k < n; k++) s -= L[(size_t)k * n + i] * Hinv[(size_t)k * n + c];
            Hinv[(size_t)i * n + c] = s / L[(size_t)i * n + i];
        }
    }
    assert_true(plain_cholesky(Hinv, n));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) U[(size_t)i * n + j] = Hinv[(size_t)j * n + i];
    free(L), free(Hinv), free(y);
    return U;
}

/* Codes of the plain algorithm, in the stored (visiting) order given by perm. */
static uint8_t *plain_gptq(const float *W, int oc, int ic, const double *H, int bits, int group,
                           const int32_t *perm, double damp) {
    double *Hp = malloc(sizeof(double) * ic * ic);
    double mean = 0.0;
    for (int i = 0; i < ic; i++)
        for (int j = 0; j < ic; j++) Hp[(size_t)i * ic + j] = H[(size_t)perm[i] * ic + perm[j]];
    for (int i = 0; i < ic; i++) mean += Hp[(size_t)i * ic + i] / ic;
    for (int i = 0; i < ic; i++) Hp[(size_t)i * ic + i] += damp * mean;
    double *U = plain_inverse_factor(Hp, ic);
    const int maxq = (1 << bits) - 1;
    uint8_t *codes = malloc((size_t)oc * ic);
    double *w = malloc(sizeof(double) * ic);
    for (int r = 0; r < oc; r++) {
        for (int j = 0; j < ic; j++) w[j] = W[(size_t)r * ic + perm[j]];
        double scale = 1.0, zero = 0.0;
        for (int i = 0; i < ic; i++) {
            if (i % group == 0) {
                double lo = 0.0, hi = 0.0;
                for (int j = i; j < i + group && j < ic; j++) lo = fmin(lo, w[j]), hi = fmax(hi, w[j]);
                scale = (hi - lo) / maxq;
                zero = nearbyint(-lo / scale);
            }
            const double c = fmin(fmax(nearbyint(w[i] / scale) + zero, 0.0), maxq);
            codes[(size_t)r * ic + i] = (uint8_t)c;
            const double e = (w[i] - scale * (c - zero)) / U[(size_t)i * ic + i];
            for (int j = i + 1; j < ic; j++) w[j] -= e * U[(size_t)i * ic + j];
        }
    }
    free(Hp), free(U), free(w);
    return codes;
}

static void test_gptq_matches_plain_algorithm(void **state) {
    (void)state;
    const int oc = 24, ic = 300, bits = 3;
    double *H = correlated_hessian(ic, 1024, 0.8, 7);
    float *W = random_blocks(ic, oc, 8);
    /* groups of 100 cut the 128-column blocks; group -1 spans them */
    const int groups[] = {100, 128, -1};
    for (size_t k = 0; k < 3; k++)
        for (int act = 0; act <= 1; act++) {
            lq_grouped_weights w = {0};
            assert_int_equal(lq_quantize_gptq(W, oc, ic, H, bits, groups[k], act, 0.01, &w), LQ_OK);
            int32_t *perm = malloc(sizeof(int32_t) * ic);
            for (int j = 0; j < ic; j++) perm[j] = act ? w.perm[j] : j;
            if (act)
                /* act-order: descending diag H */
                for (int j = 1; j < ic; j++)
                    assert_true(H[(size_t)perm[j - 1] * ic + perm[j - 1]] >=
                                H[(size_t)perm[j] * ic + perm[j]]);
            uint8_t *ref = plain_gptq(W, oc, ic, H, bits, w.group, perm, 0.01);
            long same = 0;
            for (int i = 0; i < oc * ic; i++) same += w.codes[i] == ref[i];
            /* float updates against double ones: a code may differ where the weight falls on a
             * rounding boundary, and the difference then feeds forward along the row */
            fprintf(stderr, "  group %d, act-order %d: %.2f %% of codes as the plain algorithm\n",
                    groups[k], act, 100.0 * same / (oc * ic));
            assert_true(same >= 0.99 * oc * ic);
            free(perm);
            free(ref);
            lq_grouped_weights_free(&w);
        }
    free(H);
    free(W);
}

static void test_gptq_deterministic_across_threads(void **state) {
    (void)state;
    const int oc = 128, ic = 512;
    double *H = correlated_hessian(ic, 1024, 0.9, 9);
    float *W = random_blocks(ic, oc, 10);
    lq_grouped_weights w[2] = {{0}, {0}};
    for (int t = 0; t < 2; t++) {
        setenv("LQ_THREADS", t ? "2" : "1", 1);
        lq_blas_set_threads(t + 1);
        assert_int_equal(lq_quantize_gptq(W, oc, ic, H, 4, 128, 1, 0.01, &w[t]), LQ_OK);
    }
    unsetenv("LQ_THREADS");
    lq_blas_set_threads(0);
    const int ng = lq_grouped_ngroups(&w[0]);
    assert_memory_equal(w[0].codes, w[1].codes, (size_t)oc * ic);
    assert_memory_equal(w[0].scales, w[1].scales, sizeof(float) * oc * ng);
    assert_memory_equal(w[0].zeros, w[1].zeros, (size_t)oc * ng);
    assert_memory_equal(w[0].perm, w[1].perm, sizeof(int32_t) * ic);
    lq_grouped_weights_free(&w[0]);
    lq_grouped_weights_free(&w[1]);
    free(H);
    free(W);
}

/* A channel that never fires (H row and column 0) cannot affect the output: GPTQ zeroes it. */
static void test_gptq_dead_columns(void **state) {
    (void)state;
    const int oc = 16, ic = 64, dead[] = {0, 5, 17, 63};
    double *H = correlated_hessian(ic, 512, 0.5, 11);
    for (size_t k = 0; k < 4; k++)
        for (int i = 0; i < ic; i++) H[(size_t)dead[k] * ic + i] = H[(size_t)i * ic + dead[k]] = 0.0;
    float *W = random_blocks(ic, oc, 12);
    for (int act = 0; act <= 1; act++) {
        lq_grouped_weights w = {0};
        assert_int_equal(lq_quantize_gptq(W, oc, ic, H, 3, 16, act, 0.01, &w), LQ_OK);
        float *Wq = dequantized(&w);
        for (int r = 0; r < oc; r++)
            for (size_t k = 0; k < 4; k++) assert_true(Wq[(size_t)r * ic + dead[k]] == 0.0f);
        /* and the live columns still beat RTN */
        const double e = lq_output_error(W, Wq, oc, ic, H);
        assert_true(e < rtn_error(W, oc, ic, H, 3, 16));
        free(Wq);
        lq_grouped_weights_free(&w);
    }
    free(H);
    free(W);
}

static void test_output_error_definition(void **state) {
    (void)state;
    const int oc = 5, ic = 7;
    float *W = random_blocks(ic, oc, 13), *Wq = random_blocks(ic, oc, 14);
    double *H = correlated_hessian(ic, 20, 0.3, 15);
    double ref = 0.0;
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < ic; i++)
            for (int j = 0; j < ic; j++)
                ref += ((double)Wq[r * ic + i] - W[r * ic + i]) * H[i * ic + j] *
                       ((double)Wq[r * ic + j] - W[r * ic + j]);
    assert_true(fabs(lq_output_error(W, Wq, oc, ic, H) - ref) <= 1e-10 * fabs(ref));
    /* H = I: the squared Frobenius distance */
    double *I = identity(ic);
    double frob = 0.0;
    for (int i = 0; i < oc * ic; i++) frob += ((double)Wq[i] - W[i]) * ((double)Wq[i] - W[i]);
    assert_true(fabs(lq_output_error(W, Wq, oc, ic, I) - frob) <= 1e-12 * frob);
    assert_true(lq_output_error(W, W, oc, ic, H) == 0.0);
    /* more rows than one GEMM chunk */
    const int tall = 600;
    float *A = random_blocks(ic, tall, 16), *B = random_blocks(ic, tall, 17);
    double sum = 0.0;
    for (int r = 0; r < tall; r++) sum += lq_output_error(A + r * ic, B + r * ic, 1, ic, H);
    assert_true(fabs(lq_output_error(A, B, tall, ic, H) - sum) <= 1e-12 * sum);
    free(W), free(Wq), free(H), free(I), free(A), free(B);
}

static void test_bad_arguments(void **state) {
    (void)state;
    const int oc = 4, ic = 8;
    float *W = random_blocks(ic, oc, 18);
    double *H = identity(ic);
    lq_grouped_weights w = {0};
    expect_error(lq_quantize_rtn(W, oc, ic, 5, 4, &w), LQ_ERR_ARG, "--bits 5");
    expect_error(lq_quantize_gptq(W, oc, ic, H, 5, 4, 0, 0.01, &w), LQ_ERR_ARG, "--bits 5");
    expect_error(lq_quantize_rtn(W, oc, ic, 1, 4, &w), LQ_ERR_ARG, "--bits 1");
    expect_error(lq_quantize_rtn(W, oc, ic, 4, 0, &w), LQ_ERR_ARG, "--group 0");
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, -2, 0, 0.01, &w), LQ_ERR_ARG, "--group -2");
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, -0.1, &w), LQ_ERR_ARG, "--damp");
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, NAN, &w), LQ_ERR_ARG, "--damp");
    expect_error(lq_quantize_rtn(W, 0, ic, 4, 4, &w), LQ_ERR_ARG, "0 × 8");
    expect_error(lq_quantize_gptq(W, oc, ic, NULL, 4, 4, 0, 0.01, &w), LQ_ERR_ARG, "H is NULL");

    W[2 * ic + 3] = NAN;
    expect_error(lq_quantize_rtn(W, oc, ic, 4, 4, &w), LQ_ERR_NUMERIC, "W[2][3]");
    W[2 * ic + 3] = INFINITY;
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 1, 0.01, &w), LQ_ERR_NUMERIC, "W[2][3]");
    W[2 * ic + 3] = 0.5f;

    H[1 * ic + 6] = NAN;
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, 0.01, &w), LQ_ERR_NUMERIC, "H[1][6]");
    H[1 * ic + 6] = 0.0;
    /* a negative diagonal: no Gram matrix, and no damping could make it one */
    H[3 * ic + 3] = -1.0;
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, 0.01, &w), LQ_ERR_NUMERIC, "negative");
    H[3 * ic + 3] = 1.0;
    /* positive diagonal, yet indefinite (eigenvalue 1 − 3 = −2): the retries up to
     * λ = mean(diag H) do not rescue it */
    H[2 * ic + 5] = H[5 * ic + 2] = 3.0;
    expect_error(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, 0.01, &w), LQ_ERR_NUMERIC,
                 "not positive definite even with damping 1");
    /* a failed call leaves nothing allocated */
    assert_null(w.codes);
    assert_null(w.scales);
    assert_null(w.perm);
    /* a milder defect (eigenvalue 1 − 1.05) is rescued by the retry at 0.1 */
    H[2 * ic + 5] = H[5 * ic + 2] = 1.05;
    assert_int_equal(lq_quantize_gptq(W, oc, ic, H, 4, 4, 0, 0.01, &w), LQ_OK);
    lq_grouped_weights_free(&w);
    free(W);
    free(H);
}

/* GPTQ's and LDLQ's factorizations (kernels/blas.c): U with UᵀU = A and A⁻¹ on an SPD matrix;
 * a matrix that is not positive definite, or holds a NaN (which OpenBLAS's dpotrf lets through
 * with info = 0), fails with LQ_ERR_NUMERIC naming the matrix — for both functions. */
static void test_spd_factorizations(void **state) {
    (void)state;
    const double A[9] = {4, 2, 0.4, 2, 5, 1, 0.4, 1, 3};
    double U[9], inv[9];
    memcpy(U, A, sizeof A);
    assert_int_equal(lq_cholesky_upper(U, 3, "A"), LQ_OK);
    memcpy(inv, A, sizeof A);
    assert_int_equal(lq_spd_inverse(inv, 3, "A"), LQ_OK);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double utu = 0.0, ainv = 0.0;
            for (int k = 0; k < 3; k++) utu += U[k * 3 + i] * U[k * 3 + j], ainv += A[i * 3 + k] * inv[k * 3 + j];
            assert_true(fabs(utu - A[i * 3 + j]) < 1e-12);
            assert_true(fabs(ainv - (i == j)) < 1e-12);
            if (i > j) assert_true(U[i * 3 + j] == 0.0);
        }
    const double indefinite[4] = {1, 2, 2, 1};
    double nan_diag[4] = {1, 0, 0, 1};
    nan_diag[3] = NAN;
    const double *bad[2] = {indefinite, nan_diag};
    for (int b = 0; b < 2; b++) {
        double M[4];
        memcpy(M, bad[b], sizeof M);
        assert_int_equal(lq_cholesky_upper(M, 2, "the test matrix"), LQ_ERR_NUMERIC);
        assert_non_null(strstr(lq_last_error(), "the test matrix"));
        memcpy(M, bad[b], sizeof M);
        assert_int_equal(lq_spd_inverse(M, 2, "the test matrix"), LQ_ERR_NUMERIC);
        assert_non_null(strstr(lq_last_error(), "the test matrix"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn_round_trip),
        cmocka_unit_test(test_rtn_8bit_nearly_exact),
        cmocka_unit_test(test_gptq_beats_rtn),
        cmocka_unit_test(test_gptq_diagonal_h_is_rtn),
        cmocka_unit_test(test_gptq_matches_plain_algorithm),
        cmocka_unit_test(test_gptq_deterministic_across_threads),
        cmocka_unit_test(test_gptq_dead_columns),
        cmocka_unit_test(test_output_error_definition),
        cmocka_unit_test(test_spd_factorizations),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
