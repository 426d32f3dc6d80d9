/* Binary (±1) GEMV/GEMM of the quantized linear (lq_binary.h, binary_math.h).
 *
 * Tolerance: the fast kernels add 4-element table entries in group order in float, the
 * reference adds every term in double, so they differ by rounding only. The check is
 *     |fast − ref| ≤ 1e-5 · |s_r| · Σ_c |z_c|
 * (relative to the magnitude of the terms, not of their sum, which cancels). The scalar and
 * AVX2 LUT kernels do the same float operations in the same order and must agree bit for bit;
 * so must the LUT GEMM and per-token GEMVs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#define LQ_TEST_NAME "binary"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary_math.h"
#include "lq_binary.h"
#include "lq_cuda.h"

static uint8_t *random_bits(int oc, int k, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    const size_t n = (size_t)oc * k / 8;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)lq_rng_u64(&r);
    return b;
}

static float *random_scale(int oc, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    float *s = malloc(sizeof(float) * oc);
    for (int i = 0; i < oc; i++) s[i] = (float)(0.25 + 2.0 * lq_rng_uniform(&r));
    return s;
}

static double abs_sum(const float *z, int k) {
    double s = 0.0;
    for (int c = 0; c < k; c++) s += fabs((double)z[c]);
    return s;
}

static void expect_close(const char *what, int oc, int k, const float *got, const float *ref,
                         const float *scale, const float *z) {
    const double mag = abs_sum(z, k);
    for (int r = 0; r < oc; r++) {
        const double s = scale ? fabs((double)scale[r]) : 1.0;
        const double tol = 1e-5 * s * mag + 1e-30;
        if (!(fabs((double)got[r] - (double)ref[r]) <= tol)) {
            fprintf(stderr, "%s %d×%d row %d: %.9g vs reference %.9g (tolerance %.3g)\n", what, oc,
                    k, r, got[r], ref[r], tol);
            fail();
        }
    }
}

static const int shapes_oc[] = {1, 7, 8, 33};
static const int shapes_k[] = {8, 24, 200, 1040};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int have_avx2(void) {
    /* the kernel says so itself: asking for AVX2 without it is LQ_ERR_UNSUPPORTED */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---- layout ------------------------------------------------------------------------------- */

static void test_nibble_encoding(void **state) {
    (void)state;
    for (uint32_t n = 0; n < 16; n++) {
        const uint32_t s = lq_bin_nibble_store(n);
        assert_true(s < 16);
        assert_int_equal(lq_bin_nibble_load(s), n);
    }
    /* the half table, and by symmetry every entry, is Σ ±z within rounding */
    const float z[4] = {0.3f, -1.7f, 2.25f, 1e-3f};
    float t[8];
    lq_bin_half_table(z, t);
    for (int n = 0; n < 16; n++) {
        double direct = 0.0;
        for (int i = 0; i < 4; i++) direct += ((n >> i) & 1) ? z[i] : -z[i];
        const float entry = n < 8 ? t[n] : -t[15 - n];
        assert_true(fabs(entry - direct) <= 1e-6);
    }
}

static void test_pack_round_trip(void **state) {
    (void)state;
    for (size_t a = 0; a < NELEM(shapes_oc); a++)
        for (size_t b = 0; b < NELEM(shapes_k); b++) {
            const int oc = shapes_oc[a], k = shapes_k[b];
            uint8_t *bits = random_bits(oc, k, 100 + 10 * a + b);
            const size_t n = (size_t)oc * k / 8;
            uint8_t *back = malloc(n);
            memset(back, 0xa5, n);
            lq_binary_matrix *W = NULL;
            assert_int_equal(lq_binary_pack(bits, oc, k, &W), LQ_OK);
            assert_int_equal(lq_binary_out_features(W), oc);
            assert_int_equal(lq_binary_k(W), k);
            assert_int_equal(lq_binary_unpack(W, back), LQ_OK);
            assert_memory_equal(back, bits, n);
            lq_binary_free(W);
            free(back), free(bits);
        }
}

/* ---- GEMV --------------------------------------------------------------------------------- */

static void check_gemv(int oc, int k, uint64_t seed) {
    uint8_t *bits = random_bits(oc, k, seed);
    float *z = random_blocks(k, 1, seed + 1);
    float *scale = random_scale(oc, seed + 2);
    float *ref = malloc(sizeof(float) * oc), *ref1 = malloc(sizeof(float) * oc);
    float *scalar = malloc(sizeof(float) * oc), *fast = malloc(sizeof(float) * oc);
    lq_binary_matrix *W = NULL;
    assert_int_equal(lq_binary_pack(bits, oc, k, &W), LQ_OK);
    assert_int_equal(lq_binary_gemv_reference(bits, oc, k, scale, z, ref), LQ_OK);
    assert_int_equal(lq_binary_gemv_reference(bits, oc, k, NULL, z, ref1), LQ_OK);

    assert_int_equal(lq_binary_gemv_with(W, scale, z, scalar, LQ_BINARY_SCALAR), LQ_OK);
    expect_close("scalar", oc, k, scalar, ref, scale, z);

    /* AUTO under LQ_NO_SIMD is the scalar kernel */
    setenv("LQ_NO_SIMD", "1", 1);
    assert_int_equal(lq_binary_gemv(W, scale, z, fast), LQ_OK);
    unsetenv("LQ_NO_SIMD");
    assert_memory_equal(fast, scalar, sizeof(float) * oc);

    if (have_avx2()) {
        assert_int_equal(lq_binary_gemv_with(W, scale, z, fast, LQ_BINARY_AVX2), LQ_OK);
        assert_memory_equal(fast, scalar, sizeof(float) * oc);
    } else {
        expect_error(lq_binary_gemv_with(W, scale, z, fast, LQ_BINARY_AVX2), LQ_ERR_UNSUPPORTED, "AVX2");
    }
    assert_int_equal(lq_binary_gemv(W, scale, z, fast), LQ_OK);
    assert_memory_equal(fast, scalar, sizeof(float) * oc);

    /* no scale is a scale of 1 */
    assert_int_equal(lq_binary_gemv(W, NULL, z, fast), LQ_OK);
    expect_close("unscaled", oc, k, fast, ref1, NULL, z);

    lq_binary_free(W);
    free(bits), free(z), free(scale), free(ref), free(ref1), free(scalar), free(fast);
}

static void test_gemv_matches_reference(void **state) {
    (void)state;
    for (size_t a = 0; a < NELEM(shapes_oc); a++)
        for (size_t b = 0; b < NELEM(shapes_k); b++) check_gemv(shapes_oc[a], shapes_k[b], 7 + 13 * a + b);
    /* K past one chunk of tables (4096 groups) */
    check_gemv(11, 16400, 99);
}

/* Large enough to be split over threads: any split gives the same bits as one thread. */
static void test_threads(void **state) {
    (void)state;
    const int oc = 300, k = 8192, ntok = 17; /* 2.5 M weights, above the parallel threshold */
    uint8_t *bits = random_bits(oc, k, 5);
    float *z = random_blocks(k, ntok, 6), *scale = random_scale(oc, 7);
    const size_t n = (size_t)oc * ntok;
    float *one = malloc(sizeof(float) * n), *two = malloc(sizeof(float) * n);
    float *ref = malloc(sizeof(float) * oc);
    lq_binary_matrix *W = NULL;
    assert_int_equal(lq_binary_pack(bits, oc, k, &W), LQ_OK);
    const char *old = getenv("LQ_THREADS");
    char *saved = old ? strdup(old) : NULL;
    setenv("LQ_THREADS", "1", 1);
    assert_int_equal(lq_binary_gemv(W, scale, z, one), LQ_OK);
    setenv("LQ_THREADS", "2", 1);
    assert_int_equal(lq_binary_gemv(W, scale, z, two), LQ_OK);
    assert_memory_equal(one, two, sizeof(float) * oc);
    setenv("LQ_THREADS", "3", 1); /* more threads than cores, runs of 4 of the 38 tiles */
    assert_int_equal(lq_binary_gemv_with(W, scale, z, two, LQ_BINARY_SCALAR), LQ_OK);
    assert_memory_equal(one, two, sizeof(float) * oc);
    assert_int_equal(lq_binary_gemv_reference(bits, oc, k, scale, z, ref), LQ_OK);
    expect_close("threaded", oc, k, one, ref, scale, z);
    /* two token blocks (16 + 1), the first in 4-token passes */
    setenv("LQ_THREADS", "1", 1);
    assert_int_equal(lq_binary_gemm_with(W, scale, z, ntok, one, LQ_BINARY_GEMM_LUT), LQ_OK);
    setenv("LQ_THREADS", "2", 1);
    assert_int_equal(lq_binary_gemm_with(W, scale, z, ntok, two, LQ_BINARY_GEMM_LUT), LQ_OK);
    assert_memory_equal(one, two, sizeof(float) * n);
    if (saved) setenv("LQ_THREADS", saved, 1);
    else unsetenv("LQ_THREADS");
    free(saved);
    lq_binary_free(W);
    free(bits), free(z), free(scale), free(one), free(two), free(ref);
}

/* ---- GEMM --------------------------------------------------------------------------------- */

static void test_gemm_equals_gemvs(void **state) {
    (void)state;
    static const int shapes[][2] = {{7, 200}, {33, 1040}, {130, 24}};
    static const int ntoks[] = {1, 3, 5, 17};
    for (size_t a = 0; a < NELEM(shapes); a++)
        for (size_t b = 0; b < NELEM(ntoks); b++) {
            const int oc = shapes[a][0], k = shapes[a][1], ntok = ntoks[b];
            uint8_t *bits = random_bits(oc, k, 40 + a);
            float *z = random_blocks(k, (size_t)ntok, 50 + b), *scale = random_scale(oc, 60 + a);
            const size_t n = (size_t)ntok * oc;
            float *gemv = malloc(sizeof(float) * n), *gemm = malloc(sizeof(float) * n);
            float *ref = malloc(sizeof(float) * n);
            lq_binary_matrix *W = NULL;
            assert_int_equal(lq_binary_pack(bits, oc, k, &W), LQ_OK);
            for (int t = 0; t < ntok; t++) {
                assert_int_equal(lq_binary_gemv(W, scale, z + (size_t)t * k, gemv + (size_t)t * oc), LQ_OK);
                assert_int_equal(lq_binary_gemv_reference(bits, oc, k, scale, z + (size_t)t * k,
                                                          ref + (size_t)t * oc), LQ_OK);
            }
            assert_int_equal(lq_binary_gemm_with(W, scale, z, ntok, gemm, LQ_BINARY_GEMM_LUT), LQ_OK);
            assert_memory_equal(gemm, gemv, sizeof(float) * n);
            setenv("LQ_NO_SIMD", "1", 1); /* the portable kernel's multi-token loop */
            assert_int_equal(lq_binary_gemm_with(W, scale, z, ntok, gemm, LQ_BINARY_GEMM_LUT), LQ_OK);
            unsetenv("LQ_NO_SIMD");
            assert_memory_equal(gemm, gemv, sizeof(float) * n);
            static const lq_binary_gemm_algo others[] = {LQ_BINARY_GEMM_DEQUANT, LQ_BINARY_GEMM_AUTO};
            for (size_t o = 0; o < NELEM(others); o++) {
                memset(gemm, 0xff, sizeof(float) * n); /* NaNs: every element must be written */
                assert_int_equal(lq_binary_gemm_with(W, scale, z, ntok, gemm, others[o]), LQ_OK);
                for (int t = 0; t < ntok; t++)
                    expect_close(others[o] == LQ_BINARY_GEMM_DEQUANT ? "dequant gemm" : "auto gemm",
                                 oc, k, gemm + (size_t)t * oc, ref + (size_t)t * oc, scale,
                                 z + (size_t)t * k);
            }
            assert_int_equal(lq_binary_gemm(W, NULL, z, ntok, gemm), LQ_OK);
            for (int t = 0; t < ntok; t++) {
                assert_int_equal(lq_binary_gemv_reference(bits, oc, k, NULL, z + (size_t)t * k,
                                                          ref + (size_t)t * oc), LQ_OK);
                expect_close("unscaled gemm", oc, k, gemm + (size_t)t * oc, ref + (size_t)t * oc,
                             NULL, z + (size_t)t * k);
            }
            lq_binary_free(W);
            free(bits), free(z), free(scale), free(gemv), free(gemm), free(ref);
        }
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_bad_inputs(void **state) {
    (void)state;
    uint8_t bits[64] = {0};
    float z[64] = {0}, out[64];
    lq_binary_matrix *W = (lq_binary_matrix *)(uintptr_t)1; /* must be reset to NULL */
    expect_error(lq_binary_pack(bits, 4, 12, &W), LQ_ERR_ARG, "multiple of 8");
    assert_null(W);
    expect_error(lq_binary_pack(bits, 4, 0, &W), LQ_ERR_ARG, "k = 0");
    expect_error(lq_binary_pack(bits, 0, 8, &W), LQ_ERR_ARG, "out_features = 0");
    expect_error(lq_binary_pack(bits, -3, 8, &W), LQ_ERR_ARG, "out_features = -3");
    expect_error(lq_binary_pack(NULL, 4, 8, &W), LQ_ERR_ARG, "NULL bits");
    expect_error(lq_binary_pack(bits, 4, 8, NULL), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_gemv_reference(bits, 2, 20, NULL, z, out), LQ_ERR_ARG, "multiple of 8");
    expect_error(lq_binary_gemv_reference(bits, 2, 8, NULL, NULL, out), LQ_ERR_ARG, "NULL");

    assert_int_equal(lq_binary_pack(bits, 4, 16, &W), LQ_OK);
    expect_error(lq_binary_gemv(NULL, NULL, z, out), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_gemv(W, NULL, NULL, out), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_gemv(W, NULL, z, NULL), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_gemv_with(W, NULL, z, out, (lq_binary_kernel)42), LQ_ERR_ARG, "unknown kernel");
    expect_error(lq_binary_gemm(W, NULL, z, 0, out), LQ_ERR_ARG, "ntok = 0");
    expect_error(lq_binary_gemm(W, NULL, NULL, 2, out), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_gemm_with(W, NULL, z, 2, out, (lq_binary_gemm_algo)9), LQ_ERR_ARG,
                 "unknown algorithm");
    expect_error(lq_binary_unpack(W, NULL), LQ_ERR_ARG, "NULL");
    expect_error(lq_binary_unpack(NULL, bits), LQ_ERR_ARG, "NULL");
    lq_binary_free(W);
    lq_binary_free(NULL);
    assert_int_equal(lq_binary_out_features(NULL), 0);
}

/* ---- CUDA --------------------------------------------------------------------------------- */

static void expect_cuda_error(lq_status s, lq_status code) {
    assert_int_equal(s, code);
    const char *msg = lq_last_error();
    if (!msg || strncmp(msg, "cuda:", 5) != 0) {
        fprintf(stderr, "message does not start with \"cuda:\": %s\n", msg ? msg : "(null)");
        fail();
    }
}

static void test_cuda_without_gpu(void **state) {
    (void)state;
    if (lq_cuda_available()) skip();
    const int oc = 7, k = 24;
    uint8_t *bits = random_bits(oc, k, 3);
    float *z = random_blocks(k, 1, 4), out[7];
    expect_cuda_error(lq_cuda_binary_gemv(bits, oc, k, NULL, z, out), LQ_ERR_UNSUPPORTED);
    lq_cuda_binary *W = (lq_cuda_binary *)(uintptr_t)1;
    expect_cuda_error(lq_cuda_binary_upload(bits, oc, k, &W), LQ_ERR_UNSUPPORTED);
    assert_null(W);
    assert_int_not_equal(lq_cuda_binary_matrix_gemv(NULL, NULL, z, out), LQ_OK);
    assert_int_equal(strncmp(lq_last_error(), "cuda:", 5), 0);
    lq_cuda_binary_free(NULL);
    free(bits), free(z);
}

/* The GPU's arithmetic, serialised on the CPU (binary_math.h): within rounding of the
 * reference. With a GPU, the device must reproduce it bit for bit. */
static void test_cuda_arithmetic(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 8}, {7, 24}, {33, 200}, {37, 1040}, {5, 13000}};
    for (size_t a = 0; a < NELEM(shapes); a++) {
        const int oc = shapes[a][0], k = shapes[a][1];
        const size_t nwords = ((size_t)k + 31) / 32;
        uint8_t *bits = random_bits(oc, k, 70 + a);
        float *z = random_blocks(k, 1, 80 + a), *scale = random_scale(oc, 90 + a);
        float *emu = malloc(sizeof(float) * oc), *ref = malloc(sizeof(float) * oc);
        float *gpu = malloc(sizeof(float) * oc);
        uint32_t *words = malloc(sizeof(uint32_t) * nwords);
        for (int r = 0; r < oc; r++) {
            for (size_t w = 0; w < nwords; w++) words[w] = lq_bin_file_word(bits, (size_t)k, (size_t)r, w);
            emu[r] = scale[r] * lq_bin_warp_row(words, (size_t)k, z);
        }
        assert_int_equal(lq_binary_gemv_reference(bits, oc, k, scale, z, ref), LQ_OK);
        expect_close("warp emulation", oc, k, emu, ref, scale, z);
        if (lq_cuda_available()) {
            assert_int_equal(lq_cuda_binary_gemv(bits, oc, k, scale, z, gpu), LQ_OK);
            assert_memory_equal(gpu, emu, sizeof(float) * oc);
        }
        free(bits), free(z), free(scale), free(emu), free(ref), free(gpu), free(words);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nibble_encoding),
        cmocka_unit_test(test_pack_round_trip),
        cmocka_unit_test(test_gemv_matches_reference),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_gemm_equals_gemvs),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_cuda_without_gpu),
        cmocka_unit_test(test_cuda_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
