/* GPU encoders (lq_cuda.h): without a usable device (or without CUDA in the build) every call
 * fails cleanly with a "cuda:" message; with one, the GPU codes reach the CPU encoders'
 * distances. Both halves are compiled in every build; the one that does not apply is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#define LQ_TEST_NAME "cuda"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_cuda.h"
#include "lq_kernels.h"

static void expect_cuda_failure(lq_status s) {
    assert_int_not_equal(s, LQ_OK);
    const char *msg = lq_last_error();
    assert_non_null(msg);
    if (strncmp(msg, "cuda:", 5) != 0) {
        fprintf(stderr, "message does not start with \"cuda:\": %s\n", msg);
        fail();
    }
}

static void test_without_gpu_fails_cleanly(void **state) {
    (void)state;
    if (lq_cuda_available()) skip();
    float *M = random_matrix(8, 16, 1);
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, 16, 8, M), LQ_OK);
    float *w = random_blocks(8, 4, 2);
    uint64_t codes[4];
    float dist[4];
    expect_cuda_failure(lq_cuda_encode(LQ_ENCODER_EXACT, &L, w, 4, codes, dist));
    expect_cuda_failure(lq_cuda_encode(LQ_ENCODER_HEURISTIC, &L, w, 4, codes, NULL));
    free(w), free(M);
    lq_lattice_free(&L);
}

/* dist[b] must equal the reference's within 1e-5 relative (the same code, or a tie within
 * float rounding), and be the true distance of the code returned. */
static void compare(const char *what, int D, int d, const float *M, const float *w, size_t n,
                    const uint64_t *codes, const float *dist, const float *ref) {
    for (size_t b = 0; b < n; b++) {
        if (!(fabsf(dist[b] - ref[b]) <= 1e-5f * fabsf(ref[b]) + 1e-7f)) {
            fprintf(stderr, "%d/%d %s block %zu: cuda %.8g, cpu %.8g\n", D, d, what, b, dist[b], ref[b]);
            fail();
        }
        float true_dist = lq_code_distance(M, d, D, w + b * d, codes[b]);
        assert_true(fabsf(true_dist - dist[b]) <= 1e-5f * true_dist + 1e-7f);
    }
}

static void test_gpu_matches_cpu(void **state) {
    (void)state;
    if (!lq_cuda_available()) skip();
    static const int configs[][2] = {{16, 8}, {20, 10}};
    const size_t n = 200;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const int D = configs[c][0], d = configs[c][1];
        float *M = random_matrix(d, D, 50 + c);
        lq_lattice L;
        assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
        float *w = random_blocks(d, n, 60 + c);
        uint64_t *cg = malloc(8 * n), *cc = malloc(8 * n), *cn = malloc(8 * n);
        float *dg = malloc(4 * n), *dc = malloc(4 * n);

        assert_int_equal(lq_encode_exact(&L, w, n, cc, dc, NULL), LQ_OK);
        lq_status s = lq_cuda_encode(LQ_ENCODER_EXACT, &L, w, n, cg, dg);
        if (s != LQ_OK) fprintf(stderr, "%s\n", lq_last_error());
        assert_int_equal(s, LQ_OK);
        compare("exact", D, d, M, w, n, cg, dg, dc);

        assert_int_equal(lq_encode_heuristic(&L, w, n, cc, dc, NULL), LQ_OK);
        s = lq_cuda_encode(LQ_ENCODER_HEURISTIC, &L, w, n, cg, dg);
        if (s != LQ_OK) fprintf(stderr, "%s\n", lq_last_error());
        assert_int_equal(s, LQ_OK);
        compare("heuristic", D, d, M, w, n, cg, dg, dc);
        /* dist is optional and does not change the codes */
        assert_int_equal(lq_cuda_encode(LQ_ENCODER_HEURISTIC, &L, w, n, cn, NULL), LQ_OK);
        assert_memory_equal(cn, cg, 8 * n);

        /* brute force has no GPU instance; an empty batch is fine */
        expect_cuda_failure(lq_cuda_encode(LQ_ENCODER_BRUTEFORCE, &L, w, n, cg, dg));
        assert_int_equal(lq_cuda_encode(LQ_ENCODER_EXACT, &L, w, 0, cg, dg), LQ_OK);

        free(w), free(cg), free(cc), free(cn), free(dg), free(dc), free(M);
        lq_lattice_free(&L);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_gpu_fails_cleanly),
        cmocka_unit_test(test_gpu_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
