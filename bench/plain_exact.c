/* The "careful but plain" exact search that ALGORITHM.md §2.1 measures (~50 s per 1M weights
 * at 24/10 on this machine), as a side-by-side baseline for liftquant's branch and bound.
 * Benchmark code only; the library never calls it.
 *
 * Every code is scanned, but cheaply: by symmetry only y with y_{D−1} = +1 (the nearest of ±y
 * scores 2|w·p| − ‖p‖²); M y = A[lo] + B[hi] with a 12-bit low part; w·A[lo] is computed once
 * per block; for each hi the 4096 codeword norms are shared by a group of 64 blocks, so a
 * (block, codeword) pair costs ~4 flops: add, abs, subtract, max.
 *
 *   lq-bench-plain LATTICE_FILE VECTORS SEED  →  prints "mse seconds_per_mweights" */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_worker.h"

#define LO_BITS 12
#define LO_COUNT (1 << LO_BITS)
#define GROUP 64

/* max over lo of 2|wa[lo] + wb| − c[lo] (8 lanes at a time) */
static float best_score_avx2(const float *wa, float wb, const float *c) {
    const __m256 sign = _mm256_set1_ps(-0.0f), two = _mm256_set1_ps(2.0f), vb = _mm256_set1_ps(wb);
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int lo = 0; lo < LO_COUNT; lo += 8) {
        __m256 s = _mm256_andnot_ps(sign, _mm256_add_ps(_mm256_loadu_ps(wa + lo), vb));
        m = _mm256_max_ps(m, _mm256_fmsub_ps(two, s, _mm256_loadu_ps(c + lo)));
    }
    float v[8];
    _mm256_storeu_ps(v, m);
    float r = v[0];
    for (int i = 1; i < 8; i++) r = v[i] > r ? v[i] : r;
    return r;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: lq-bench-plain LATTICE_FILE VECTORS SEED\n");
        return 2;
    }
    lq_lattice_file f;
    if (lq_lattice_file_read(argv[1], &f) != LQ_OK) {
        fprintf(stderr, "lq-bench-plain: %s\n", lq_last_error());
        return 1;
    }
    const int D = f.D, d = f.d, hi_bits = D - LO_BITS - 1; /* top bit fixed to +1 */
    if (hi_bits < 0 || D > 40) {
        fprintf(stderr, "lq-bench-plain: needs %d < D <= 40\n", LO_BITS);
        return 2;
    }
    const long n = atol(argv[2]);
    lq_rng rng;
    lq_rng_seed(&rng, (uint64_t)atoll(argv[3]));
    float *w = malloc(sizeof(float) * n * d);
    for (long i = 0; i < n * d; i++) w[i] = (float)lq_rng_normal(&rng);
    /* A[lo] (LO_COUNT × d) and its norms */
    float *A = malloc(sizeof(float) * LO_COUNT * d), *Anorm = malloc(sizeof(float) * LO_COUNT);
    for (int lo = 0; lo < LO_COUNT; lo++) {
        float s2 = 0;
        for (int i = 0; i < d; i++) {
            float s = 0;
            for (int j = 0; j < LO_BITS; j++) s += f.M[i * D + j] * ((lo >> j) & 1 ? 1.0f : -1.0f);
            A[lo * d + i] = s;
            s2 += s * s;
        }
        Anorm[lo] = s2;
    }
    double t0 = lq_seconds(), total = 0;
    const long hi_count = 1L << hi_bits;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
    for (long g0 = 0; g0 < n; g0 += GROUP) {
        int G = (int)(n - g0 < GROUP ? n - g0 : GROUP);
        float *wa = malloc(sizeof(float) * GROUP * LO_COUNT), *c = malloc(sizeof(float) * LO_COUNT);
        float best[GROUP], B[64];
        long best_hi[GROUP];
        for (int b = 0; b < G; b++) {
            best[b] = -INFINITY;
            best_hi[b] = 0;
            for (int lo = 0; lo < LO_COUNT; lo++) {
                float s = 0;
                for (int i = 0; i < d; i++) s += w[(g0 + b) * d + i] * A[lo * d + i];
                wa[b * LO_COUNT + lo] = s;
            }
        }
        for (long hi = 0; hi < hi_count; hi++) {
            float Bnorm = 0;
            for (int i = 0; i < d; i++) {
                float s = f.M[i * D + D - 1]; /* the symmetric top bit is +1 */
                for (int j = 0; j < hi_bits; j++) s += f.M[i * D + LO_BITS + j] * ((hi >> j) & 1 ? 1.0f : -1.0f);
                B[i] = s;
                Bnorm += s * s;
            }
            for (int lo = 0; lo < LO_COUNT; lo++) {
                float dot = 0;
                for (int i = 0; i < d; i++) dot += A[lo * d + i] * B[i];
                c[lo] = Anorm[lo] + 2 * dot + Bnorm;
            }
            for (int b = 0; b < G; b++) {
                float wb = 0;
                for (int i = 0; i < d; i++) wb += w[(g0 + b) * d + i] * B[i];
                float s = best_score_avx2(wa + b * LO_COUNT, wb, c);
                if (s > best[b]) best[b] = s, best_hi[b] = hi;
            }
        }
        for (int b = 0; b < G; b++) {
            float wn = 0;
            for (int i = 0; i < d; i++) wn += w[(g0 + b) * d + i] * w[(g0 + b) * d + i];
            total += wn - best[b];  /* ‖w‖² − max(2|w·p| − ‖p‖²) = the nearest distance */
            (void)best_hi;
        }
        free(wa);
        free(c);
    }
    double sec = lq_seconds() - t0;
    printf("%.6f %.4f\n", total / ((double)n * d), sec / ((double)n * d) * 1e6);
    lq_lattice_file_free(&f);
    free(w), free(A), free(Anorm);
    return 0;
}
