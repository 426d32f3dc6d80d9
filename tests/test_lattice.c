/* Lattice core: encoders against the brute-force reference, the heuristic's candidate set
 * against a direct construction, the reference null-space basis, the soft-min gradient
 * against finite differences, training determinism, lattice files and config parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#define LQ_TEST_NAME "lattice"
#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq_worker.h"
#include "safetensors.h"

/* Whether lattice_init gives D/d the split search (kernels/lattice.c: the excess levels and
 * the first triangle level, 6 to 18 of them). */
static int split_expected(int D, int d) {
    int enumerated = D - (d > 1 ? d - 1 : d);
    return enumerated >= 2 * LQ_SPLIT_MIN_GROUP_BITS && enumerated <= 2 * LQ_SPLIT_MAX_GROUP_BITS;
}

/* Exact must reach the brute-force minimum on every block; the code may differ only where
 * two codes tie in distance (within float rounding). Run with the split search where the
 * lattice has one, and with the depth-first search it falls back to (depth_first). */
static void check_exact_against_bruteforce_mode(const float *M, int D, int d, size_t n, uint64_t seed,
                                                const char *simd, int depth_first) {
    if (simd) setenv("LQ_NO_SIMD", "1", 1);
    else unsetenv("LQ_NO_SIMD");
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
    assert_int_equal(L.split_hi_bits > 0, split_expected(D, d));
    const int split_hi_bits = L.split_hi_bits;
    if (depth_first) L.split_hi_bits = 0;
    float *w = random_blocks(d, n, seed);
    uint64_t *ce = malloc(8 * n), *cb = malloc(8 * n);
    float *de = malloc(4 * n), *db = malloc(4 * n);
    lq_encode_stats stats = {0};
    assert_int_equal(lq_encode_exact(&L, w, n, ce, de, &stats), LQ_OK);
    assert_int_equal(lq_encode_bruteforce(&L, w, n, cb, db), LQ_OK);
    int differing = 0;
    for (size_t b = 0; b < n; b++) {
        float tol = 1e-5f * (1.0f + db[b]);
        if (!(de[b] <= db[b] + tol)) {
            fprintf(stderr, "%d/%d block %zu: exact %.7f > brute force %.7f\n", D, d, b, de[b], db[b]);
            fail();
        }
        /* the distance reported is the true distance of the code returned */
        assert_true(fabsf(de[b] - lq_code_distance(M, d, D, w + b * d, ce[b])) <= 1e-6f);
        if (ce[b] != cb[b]) differing++;
    }
    /* the search must prune: far fewer nodes than the 2^(D+1) of the full tree */
    assert_true(stats.nodes < (uint64_t)n << D);
    (void)differing;
    free(w), free(ce), free(cb), free(de), free(db);
    L.split_hi_bits = split_hi_bits;
    lq_lattice_free(&L);
    unsetenv("LQ_NO_SIMD");
}

static void check_exact_against_bruteforce(const float *M, int D, int d, size_t n, uint64_t seed,
                                           const char *simd) {
    check_exact_against_bruteforce_mode(M, D, d, n, seed, simd, 0);
    if (split_expected(D, d)) check_exact_against_bruteforce_mode(M, D, d, n, seed, simd, 1);
}

static void test_exact_matches_bruteforce(void **state) {
    (void)state;
    /* split search: 12/6 … 18/2 (18/2 fills both groups to LQ_SPLIT_MAX_GROUP_BITS; 12/1 has no
       triangle level to enumerate); depth-first only: 8/4, 14/10, 13/12, 17/16 */
    static const int configs[][2] = {{8, 4}, {12, 6}, {16, 8}, {10, 3}, {14, 10}, {13, 12}, {18, 9},
                                     {17, 16}, {12, 1}, {18, 2}};
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        int D = configs[c][0], d = configs[c][1];
        float *M = random_matrix(d, D, 100 + c);
        size_t n = D >= 17 ? 40 : 150; /* brute force costs 2^D·d·D per block */
        check_exact_against_bruteforce(M, D, d, n, 7 + c, NULL);
        check_exact_against_bruteforce(M, D, d, n, 7 + c, "scalar");
        free(M);
    }
}

/* Duplicated and negated columns make many codes tie exactly: the exact encoder must still
 * return a code at the minimum distance (which one is unspecified). */
static void test_exact_with_ties(void **state) {
    (void)state;
    int D = 12, d = 6;
    float *M = random_matrix(d, D, 5);
    for (int i = 0; i < d; i++) {
        M[i * D + 7] = M[i * D + 3];
        M[i * D + 9] = -M[i * D + 1];
    }
    check_exact_against_bruteforce(M, D, d, 200, 9, NULL);
    check_exact_against_bruteforce(M, D, d, 200, 9, "scalar");
    free(M);
}

/* The window enumeration returns exactly the codes within the window of the minimum (as
 * brute force finds them), and with a small cap the nearest of them. */
static void test_exact_window_matches_bruteforce(void **state) {
    (void)state;
    int D = 12, d = 6;
    float *M = random_matrix(d, D, 31);
    float *w = random_blocks(d, 40, 32);
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
    const int split_hi_bits = L.split_hi_bits;
    assert_true(split_hi_bits > 0);
    for (int mode = 0; mode < 4; mode++) { /* scalar / AVX2 × split / depth-first */
        if (mode & 1) unsetenv("LQ_NO_SIMD");
        else setenv("LQ_NO_SIMD", "1", 1);
        L.split_hi_bits = mode & 2 ? 0 : split_hi_bits;
        for (int b = 0; b < 40; b++) {
            const float *wb = w + b * d;
            float all[4096], best = INFINITY;
            for (uint64_t c = 0; c < 4096; c++) {
                all[c] = lq_code_distance(M, d, D, wb, c);
                if (all[c] < best) best = all[c];
            }
            const float window = 0.6f;
            uint64_t codes[4096], nodes = 0;
            float dist[4096];
            size_t n = lq_exact_candidates(&L, wb, window, codes, dist, 4096, &nodes);
            size_t expected = 0;
            for (uint64_t c = 0; c < 4096; c++) expected += all[c] < best + window;
            /* codes right at the window's edge may fall either side through rounding */
            size_t edge = 0;
            for (uint64_t c = 0; c < 4096; c++) edge += fabsf(all[c] - (best + window)) < 1e-5f;
            assert_true(n + edge >= expected && n <= expected + edge);
            for (size_t i = 0; i < n; i++) {
                assert_true(fabsf(dist[i] - all[codes[i]]) <= 1e-5f * (1 + all[codes[i]]));
                for (size_t j = 0; j < i; j++) assert_true(codes[i] != codes[j]);
            }
            /* cap 3: the three nearest */
            size_t k = lq_exact_candidates(&L, wb, window, codes, dist, 3, &nodes);
            assert_true(k == (expected < 3 ? expected : 3) || edge);
            float sorted[4096];
            memcpy(sorted, all, sizeof all);
            for (size_t i = 0; i < k; i++) { /* each kept one is among the k nearest */
                size_t nearer = 0;
                for (uint64_t c = 0; c < 4096; c++) nearer += sorted[c] < dist[i] - 1e-5f;
                assert_true(nearer < k);
            }
        }
    }
    unsetenv("LQ_NO_SIMD");
    L.split_hi_bits = split_hi_bits;
    lq_lattice_free(&L);
    free(M), free(w);
}

/* lq_excess_bounds, the split search's inner loop, against the bound written out row by row
 * from R: each node's value is a lower bound on the distance of every code in its subtree
 * (checked against the best completion found by brute force over the free levels). */
static void test_excess_bounds_are_lower_bounds(void **state) {
    (void)state;
    const int D = 16, d = 6;
    float *M = random_matrix(d, D, 41);
    float *w = random_blocks(d, 20, 42);
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
    const int level = L.split_level, b = L.split_lo_bits, a = L.split_hi_bits, dp = L.dpad;
    assert_int_equal(level, d - 1);
    assert_int_equal(a + b, D - level);
    for (int blk = 0; blk < 20; blk++) {
        const float *wb = w + blk * d;
        float root[32] = {0}, bounds[1 << LQ_SPLIT_MAX_GROUP_BITS];
        uint16_t below[1 << LQ_SPLIT_MAX_GROUP_BITS];
        for (int i = 0; i < d; i++)
            for (int c = 0; c < d; c++) root[i] += L.rotation[i * d + c] * wb[c];
        for (int za = 0; za < (1 << a); za++) {
            float u0[32];
            for (int i = 0; i < dp; i++) u0[i] = root[i] - L.split_hi_sums[za * dp + i];
            int n = lq_excess_bounds(L.split_lo_rows, 1 << b, u0, L.reach + level * dp, d,
                                     level - L.split_exact_rows, L.split_exact_rows, L.split_row_values,
                                     INFINITY, bounds, below);
            assert_int_equal(n, 1 << b);
            for (int zb = 0; zb < (1 << b); zb++) {
                /* the least distance over the subtree's 2^level completions, in the R basis */
                float least = INFINITY;
                for (int free_bits = 0; free_bits < (1 << level); free_bits++) {
                    uint64_t path = ((uint64_t)za << (D - a)) | ((uint64_t)zb << level) | (uint64_t)free_bits;
                    float dist = 0.0f;
                    for (int i = 0; i < d; i++) {
                        float r = root[i];
                        for (int k = 0; k < D; k++)
                            r -= ((path >> k) & 1 ? 1.0f : -1.0f) * L.r_columns[k * dp + i];
                        dist += r * r;
                    }
                    if (dist < least) least = dist;
                }
                assert_true(bounds[zb] <= least * (1.0f + 1e-5f) + 1e-6f);
            }
            /* the radius filter keeps exactly the nodes below it, in order */
            float radius = bounds[0] + 0.1f;
            int kept = lq_excess_bounds(L.split_lo_rows, 1 << b, u0, L.reach + level * dp, d,
                                        level - L.split_exact_rows, L.split_exact_rows,
                                        L.split_row_values, radius, bounds, below);
            int expected = 0;
            for (int zb = 0; zb < (1 << b); zb++)
                if (bounds[zb] < radius) assert_int_equal(below[expected++], zb);
            assert_int_equal(kept, expected);
        }
    }
    lq_lattice_free(&L);
    free(M), free(w);
}

/* The reference basis: Householder QR of Mᵀ with LAPACK's sign convention. For M = [3 4]
 * the reflector is H = [[−0.6, −0.8], [−0.8, 0.6]], so N = (−0.8, 0.6) — numpy's SVD gives
 * Vh[1] = the same vector up to sign. */
static void test_null_basis_reference_convention(void **state) {
    (void)state;
    float M[2] = {3.0f, 4.0f};
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, 2, 1, M), LQ_OK);
    assert_float_equal(L.null_basis[0], -0.8f, 1e-6);
    assert_float_equal(L.null_basis[1], 0.6f, 1e-6);
    assert_float_equal(L.pinv[0], 0.12f, 1e-6); /* M⁺ = Mᵀ/25 */
    assert_float_equal(L.pinv[1], 0.16f, 1e-6);
    lq_lattice_free(&L);
}

static void test_null_basis_properties(void **state) {
    (void)state;
    int D = 20, d = 8;
    float *M = random_matrix(d, D, 11);
    lq_lattice L;
    assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
    for (int r = 0; r < D - d; r++) {
        for (int s = 0; s < D - d; s++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)L.null_basis[r * D + j] * L.null_basis[s * D + j];
            assert_float_equal(dot, r == s ? 1.0 : 0.0, 1e-5);
        }
        for (int i = 0; i < d; i++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)M[i * D + j] * L.null_basis[r * D + j];
            assert_float_equal(dot, 0.0, 1e-5);
        }
    }
    for (int i = 0; i < d; i++) /* M M⁺ = I */
        for (int c = 0; c < d; c++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)M[i * D + j] * L.pinv[j * d + c];
            assert_float_equal(dot, i == c ? 1.0 : 0.0, 1e-5);
        }
    free(M);
    lq_lattice_free(&L);
}

/* The heuristic's answer is the best of sign(M⁺w + Nᵀz) over all z, built here directly in
 * double in lexicographic z order. */
static void test_heuristic_matches_direct_enumeration(void **state) {
    (void)state;
    static const int configs[][2] = {{12, 6}, {16, 8}, {14, 10}, {20, 10}, {22, 16}, {36, 24}};
    for (size_t c = 0; c < 2 * sizeof configs / sizeof configs[0]; c++) {
        /* every config twice: the vector path, then the scalar reference */
        if (c % 2) setenv("LQ_NO_SIMD", "1", 1);
        else unsetenv("LQ_NO_SIMD");
        int D = configs[c / 2][0], d = configs[c / 2][1];
        float *M = random_matrix(d, D, 200 + c / 2);
        lq_lattice L;
        assert_int_equal(lq_lattice_init(&L, D, d, M), LQ_OK);
        size_t n = 60;
        float *w = random_blocks(d, n, 3 + c);
        uint64_t *ch = malloc(8 * n), *ce = malloc(8 * n);
        float *dh = malloc(4 * n), *de = malloc(4 * n);
        assert_int_equal(lq_encode_heuristic(&L, w, n, ch, dh, NULL), LQ_OK);
        if (D <= 24) assert_int_equal(lq_encode_exact(&L, w, n, ce, de, NULL), LQ_OK);
        for (size_t b = 0; b < n; b++) {
            const float *wb = w + b * d;
            double u[LQ_LATTICE_MAX_D], best = INFINITY;
            for (int j = 0; j < D; j++) {
                u[j] = 0;
                for (int i = 0; i < d; i++) u[j] += (double)L.pinv[j * d + i] * wb[i];
            }
            for (uint64_t zbits = 0; zbits < ((uint64_t)1 << (D - d)); zbits++) {
                uint64_t code = 0;
                for (int j = 0; j < D; j++) {
                    double v = u[j];
                    for (int r = 0; r < D - d; r++)
                        v += ((zbits >> r) & 1 ? 1.0 : -1.0) * L.null_basis[r * D + j];
                    if (v > 0) code |= (uint64_t)1 << j;
                }
                double e = lq_code_distance(M, d, D, wb, code);
                if (e < best) best = e;
            }
            assert_true(fabs(dh[b] - best) <= 1e-5 * (1 + best));
            if (D <= 24) assert_true(de[b] <= dh[b] + 1e-6f); /* exact is never worse */
        }
        free(M), free(w), free(ch), free(ce), free(dh), free(de);
        lq_lattice_free(&L);
    }
    unsetenv("LQ_NO_SIMD");
}

static void test_softmin_gradient_finite_differences(void **state) {
    (void)state;
    int D = 6, d = 3, n = 5;
    float *M = random_matrix(d, D, 21);
    float *w = random_blocks(d, n, 22);
    size_t per = (size_t)1 << D;
    uint64_t *codes = malloc(8 * per * n);
    size_t *off = malloc(sizeof(size_t) * (n + 1));
    for (int b = 0; b <= n; b++) off[b] = per * b;
    for (int b = 0; b < n; b++)
        for (size_t k = 0; k < per; k++) codes[b * per + k] = k;
    for (int t = 0; t < 2; t++) {
        double tau = t == 0 ? 10.0 : 2.0;
        double grad[18] = {0};
        lq_softmin_loss_grad(M, d, D, w, n, codes, off, tau, grad);
        for (int p = 0; p < d * D; p++) {
            float keep = M[p], h = 1e-3f;
            M[p] = keep + h;
            double up = lq_softmin_loss_grad(M, d, D, w, n, codes, off, tau, NULL);
            float hu = M[p] - keep;
            M[p] = keep - h;
            double down = lq_softmin_loss_grad(M, d, D, w, n, codes, off, tau, NULL);
            float hd = keep - M[p];
            M[p] = keep;
            double fd = (up - down) / ((double)hu + hd);
            if (fabs(fd - grad[p]) > 1e-3 * fabs(grad[p]) + 1e-6) {
                fprintf(stderr, "tau %g param %d: analytic %.6f, finite difference %.6f\n", tau, p, grad[p], fd);
                fail();
            }
        }
    }
    /* the soft-min is a lower bound of the hard minimum (every candidate adds to Σ exp) */
    double soft = lq_softmin_loss_grad(M, d, D, w, n, codes, off, 10.0, NULL), hard = 0;
    for (int b = 0; b < n; b++) {
        double best = INFINITY;
        for (size_t k = 0; k < per; k++) {
            double e = lq_code_distance(M, d, D, w + b * d, k);
            if (e < best) best = e;
        }
        hard += best;
    }
    assert_true(soft <= hard / (d * n) + 1e-9);
    free(M), free(w), free(codes), free(off);
}

static void small_options(lq_train_options *o, int D, int d, uint64_t seed) {
    lq_train_options_default(o, D, d);
    o->seed = seed;
    o->restarts = 2;
    o->steps = 30;
    o->batch = 24;
    o->lloyd_iterations = 3;
    o->lloyd_samples = 3000;
    o->select_vectors = 500;
    o->eval_vectors = 2000;
    o->progress = 0;
}

static void test_training_deterministic_and_improves(void **state) {
    (void)state;
    int D = 10, d = 5;
    float a[50], b[50], c[50];
    lq_train_options o;
    lq_train_result ra, rb, rc;
    small_options(&o, D, d, 3);
    omp_set_num_threads(1);
    assert_int_equal(lq_lattice_train(&o, a, &ra), LQ_OK);
    omp_set_num_threads(2);
    assert_int_equal(lq_lattice_train(&o, b, &rb), LQ_OK);
    assert_memory_equal(a, b, sizeof a); /* same seed, any thread count: same bytes */
    o.seed = 4;
    assert_int_equal(lq_lattice_train(&o, c, &rc), LQ_OK);
    assert_memory_not_equal(a, c, sizeof a);
    /* a trained 10/5 (2 bits) beats its random start by far and respects the Shannon bound */
    float *M0 = random_matrix(d, D, 99);
    lq_lattice L;
    double mse0;
    assert_int_equal(lq_lattice_init(&L, D, d, M0), LQ_OK);
    assert_int_equal(lq_lattice_gaussian_mse(&L, LQ_ENCODER_EXACT, 2000, 1, &mse0, NULL), LQ_OK);
    lq_lattice_free(&L);
    assert_true(ra.mse < 0.8 * mse0);
    assert_true(ra.mse > 0.0625);
    free(M0);
}

static void test_training_rejects_bad_options(void **state) {
    (void)state;
    lq_train_options o;
    float M[64];
    small_options(&o, 8, 4, 1);
    o.restarts = 0;
    assert_int_equal(lq_lattice_train(&o, M, NULL), LQ_ERR_ARG);
    small_options(&o, 24, 8, 1);
    o.candidates = LQ_CANDIDATES_FULL;
    assert_int_equal(lq_lattice_train(&o, M, NULL), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "full candidate set"));
}

static void test_lattice_init_rejects_bad_matrices(void **state) {
    (void)state;
    lq_lattice L;
    float M[8] = {1, 2, 3, 4, 2, 4, 6, 8}; /* rank 1 */
    assert_int_equal(lq_lattice_init(&L, 4, 2, M), LQ_ERR_NUMERIC);
    assert_non_null(strstr(lq_last_error(), "full row rank"));
    M[3] = NAN;
    assert_int_equal(lq_lattice_init(&L, 4, 2, M), LQ_ERR_NUMERIC);
    assert_non_null(strstr(lq_last_error(), "not finite"));
    assert_int_equal(lq_lattice_init(&L, 4, 4, M), LQ_ERR_UNSUPPORTED);
    lq_lattice_free(&L); /* safe on a failed init */
}

static void test_lattice_file_round_trip_and_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/lq_lattice_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    assert_int_equal(lq_lattice_file_path(dir, 12, 6, path, sizeof path), LQ_OK);
    float *M = random_matrix(6, 12, 1);
    assert_int_equal(lq_lattice_file_write(path, M, 12, 6, 77, "exact", 0.0912, NULL), LQ_OK);
    lq_lattice_file f;
    assert_int_equal(lq_lattice_file_read(path, &f), LQ_OK);
    assert_int_equal(f.D, 12);
    assert_int_equal(f.d, 6);
    assert_int_equal(f.seed, 77);
    assert_float_equal(f.mse, 0.0912, 1e-9);
    assert_string_equal(f.encoder, "exact");
    assert_memory_equal(f.M, M, sizeof(float) * 72);
    lq_lattice_file_free(&f);

    /* a safetensors file that is not a lattice */
    char other[300];
    snprintf(other, sizeof other, "%s/other.safetensors", dir);
    lq_st_writer *w;
    int64_t shape[2] = {6, 12};
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    assert_int_equal(lq_st_writer_add(w, "M", LQ_DTYPE_F32, 2, shape, M), LQ_OK);
    assert_int_equal(lq_st_writer_write(w, other), LQ_OK);
    lq_st_writer_free(w);
    assert_int_equal(lq_lattice_file_read(other, &f), LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "not a liftquant lattice"));

    /* metadata claiming another shape */
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    assert_int_equal(lq_st_writer_add(w, "M", LQ_DTYPE_F32, 2, shape, M), LQ_OK);
    lq_st_writer_metadata(w, "format", "liftquant-lattice");
    lq_st_writer_metadata(w, "D", "16");
    lq_st_writer_metadata(w, "d", "8");
    assert_int_equal(lq_st_writer_write(w, other), LQ_OK);
    lq_st_writer_free(w);
    assert_int_equal(lq_lattice_file_read(other, &f), LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "tensor 'M' must be F32 [8, 16]"));

    /* a missing file names the path */
    snprintf(other, sizeof other, "%s/none.safetensors", dir);
    assert_int_not_equal(lq_lattice_file_read(other, &f), LQ_OK);
    assert_non_null(strstr(lq_last_error(), "none.safetensors"));
    unlink(path);
    snprintf(other, sizeof other, "%s/other.safetensors", dir);
    unlink(other);
    rmdir(dir);
    free(M);
}

static void test_config_parse(void **state) {
    (void)state;
    int D, d;
    assert_int_equal(lq_lattice_config_parse("24/10", &D, &d), LQ_OK);
    assert_int_equal(D, 24);
    assert_int_equal(d, 10);
    assert_int_equal(lq_lattice_config_parse("16to8", &D, &d), LQ_OK);
    assert_int_equal(D, 16);
    const char *bad[] = {"", "24", "24/", "/10", "10/10", "8/10", "24/10x", "64/32", "a/b", "24/0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lq_lattice_config_parse(bad[i], &D, &d), LQ_ERR_ARG);
        assert_non_null(strstr(lq_last_error(), "config"));
    }
    lq_encoder e;
    assert_int_equal(lq_encoder_from_name("heuristic", &e), LQ_OK);
    assert_int_equal(e, LQ_ENCODER_HEURISTIC);
    assert_int_equal(lq_encoder_from_name("fast", &e), LQ_ERR_ARG);
}

static void test_householder_qr(void **state) {
    (void)state;
    int rows = 7, cols = 4;
    double A[28], R[28], qt[49];
    lq_rng r;
    lq_rng_seed(&r, 8);
    for (int i = 0; i < 28; i++) A[i] = R[i] = lq_rng_normal(&r);
    lq_householder_qr(R, rows, cols, cols, qt);
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < cols; c++) {
            if (i > c) assert_true(R[i * cols + c] == 0.0);
            double s = 0; /* Qᵀ A = R */
            for (int k = 0; k < rows; k++) s += qt[i * rows + k] * A[k * cols + c];
            assert_float_equal(s, R[i * cols + c], 1e-12);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_matches_bruteforce),
        cmocka_unit_test(test_exact_with_ties),
        cmocka_unit_test(test_exact_window_matches_bruteforce),
        cmocka_unit_test(test_excess_bounds_are_lower_bounds),
        cmocka_unit_test(test_null_basis_reference_convention),
        cmocka_unit_test(test_null_basis_properties),
        cmocka_unit_test(test_heuristic_matches_direct_enumeration),
        cmocka_unit_test(test_softmin_gradient_finite_differences),
        cmocka_unit_test(test_training_deterministic_and_improves),
        cmocka_unit_test(test_training_rejects_bad_options),
        cmocka_unit_test(test_lattice_init_rejects_bad_matrices),
        cmocka_unit_test(test_lattice_file_round_trip_and_errors),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_householder_qr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
