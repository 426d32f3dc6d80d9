/* AVX2 instance of the exact search: both children's residuals and bounds for 8 or 16 rows
 * in registers. Compiled with -mavx2 -mfma; called only when lq_exact_avx2_usable says so. */
#include "encode_internal.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

static inline __m256 row_bounds8(__m256 r, __m256 reach) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 gap = _mm256_max_ps(_mm256_sub_ps(_mm256_and_ps(r, abs_mask), reach), _mm256_setzero_ps());
    return _mm256_mul_ps(gap, gap);
}

/* horizontal sums of a and b, returned as (Σa, Σb) */
static inline void hsum2(__m256 a, __m256 b, float *out) {
    __m256 h = _mm256_hadd_ps(a, b);                 /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_hadd_ps(s, s);                           /* Σa Σb Σa Σb */
    out[0] = _mm_cvtss_f32(s);
    out[1] = _mm_cvtss_f32(_mm_shuffle_ps(s, s, 1));
}

static inline void child_bounds_avx2(const lq_lattice *L, int k, const float *parent,
                                     float *plus, float *minus, float *bounds) {
    const int dp = L->dpad;
    const float *rcol = L->r_columns + (size_t)k * dp;
    const float *reach = L->reach + (size_t)k * dp;
    __m256 p0 = _mm256_load_ps(parent), c0 = _mm256_loadu_ps(rcol), h0 = _mm256_loadu_ps(reach);
    __m256 rp = _mm256_sub_ps(p0, c0), rm = _mm256_add_ps(p0, c0);
    _mm256_store_ps(plus, rp);
    _mm256_store_ps(minus, rm);
    __m256 bp = row_bounds8(rp, h0), bm = row_bounds8(rm, h0);
    if (dp == 16) {
        __m256 p1 = _mm256_load_ps(parent + 8), c1 = _mm256_loadu_ps(rcol + 8);
        __m256 h1 = _mm256_loadu_ps(reach + 8);
        __m256 rp1 = _mm256_sub_ps(p1, c1), rm1 = _mm256_add_ps(p1, c1);
        _mm256_store_ps(plus + 8, rp1);
        _mm256_store_ps(minus + 8, rm1);
        bp = _mm256_add_ps(bp, row_bounds8(rp1, h1));
        bm = _mm256_add_ps(bm, row_bounds8(rm1, h1));
    }
    hsum2(bp, bm, bounds);
}

/* lq_excess_bounds eight nodes per register: rows in the same order, each node's sum built
 * by the same operations as the scalar loop (mul then add, no fma), so both give the same
 * floats. */
/* lq_excess_bounds eight nodes per register, four registers at a time: a node's sum is a
 * chain of d dependent adds, so independent chains are what keeps the adder busy. Rows are
 * summed in the scalar loop's order with the same operations (mul then add, no fma), so both
 * give the same floats. The per-row constants are broadcast once per call. */
static inline __m256 excess_row_box(__m256 t, __m256 base, __m256 reach) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 gap = _mm256_max_ps(_mm256_sub_ps(_mm256_and_ps(_mm256_sub_ps(base, t), abs_mask), reach),
                               _mm256_setzero_ps());
    return _mm256_mul_ps(gap, gap);
}

static inline __m256 excess_row_exact(__m256 t, __m256 base, const __m256 *values) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 r = _mm256_and_ps(_mm256_sub_ps(base, t), abs_mask);
    __m256 g0 = _mm256_sub_ps(r, values[0]), g1 = _mm256_sub_ps(r, values[1]);
    __m256 g2 = _mm256_sub_ps(r, values[2]), g3 = _mm256_sub_ps(r, values[3]);
    /* the scalar loop's min order: ((min(inf, g0²), g1²), g2²), g3² — min is exact, any order */
    return _mm256_min_ps(_mm256_min_ps(_mm256_mul_ps(g0, g0), _mm256_mul_ps(g1, g1)),
                         _mm256_min_ps(_mm256_mul_ps(g2, g2), _mm256_mul_ps(g3, g3)));
}

#define EXCESS_CHAINS 4

static inline int excess_bounds_avx2(const float *rows, int n, const float *base, const float *reach,
                                     int d, int exact_first, int exact_rows, const float *row_values,
                                     float radius, float *bounds, uint16_t *below) {
    __m256 base_v[DPAD_MAX], reach_v[DPAD_MAX], values_v[3 * 4];
    for (int i = 0; i < d; i++) {
        base_v[i] = _mm256_set1_ps(base[i]);
        reach_v[i] = _mm256_set1_ps(reach[i]);
    }
    for (int v = 0; v < exact_rows * 4; v++) values_v[v] = _mm256_set1_ps(row_values[v]);
    const int exact_end = exact_first + exact_rows;
    const __m256 limit = _mm256_set1_ps(radius);
    const int step = n >= 8 * EXCESS_CHAINS ? EXCESS_CHAINS : 1;
    int count = 0;
    for (int z = 0; z < n; z += 8 * step) {
        __m256 acc[EXCESS_CHAINS];
        for (int c = 0; c < step; c++) acc[c] = _mm256_setzero_ps();
        for (int i = 0; i < d; i++) {
            const float *row = rows + (size_t)i * n + z;
            if (i >= exact_first && i < exact_end) {
                const __m256 *values = values_v + (i - exact_first) * 4;
                for (int c = 0; c < step; c++)
                    acc[c] = _mm256_add_ps(acc[c], excess_row_exact(_mm256_loadu_ps(row + 8 * c), base_v[i], values));
            } else {
                for (int c = 0; c < step; c++)
                    acc[c] = _mm256_add_ps(acc[c], excess_row_box(_mm256_loadu_ps(row + 8 * c), base_v[i], reach_v[i]));
            }
        }
        for (int c = 0; c < step; c++) {
            _mm256_storeu_ps(bounds + z + 8 * c, acc[c]);
            unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(acc[c], limit, _CMP_LT_OQ));
            while (mask) { /* rare: a few nodes in a hundred */
                below[count++] = (uint16_t)(z + 8 * c + __builtin_ctz(mask));
                mask &= mask - 1;
            }
        }
    }
    return count;
}

#define EXACT_SEARCH_NAME lq_exact_search_avx2_impl
#define EXACT_WINDOW_NAME lq_exact_window_avx2_impl
#define EXACT_SUBTREE_NAME exact_subtree_avx2
#define EXACT_SPLIT_NAME exact_split_avx2
#define EXACT_CHILD_BOUNDS child_bounds_avx2
#define EXACT_EXCESS_BOUNDS excess_bounds_avx2
#include "exact_search.inc"

uint64_t lq_exact_search_avx2(const lq_lattice *L, const float *w, uint64_t *nodes) {
    return lq_exact_search_avx2_impl(L, w, nodes);
}

size_t lq_exact_window_avx2(const lq_lattice *L, const float *w, float window, uint64_t *codes,
                            float *dists, size_t cap, uint64_t *nodes) {
    return lq_exact_window_avx2_impl(L, w, window, codes, dists, cap, nodes);
}

/* ---- heuristic: v in 4 registers (D ≤ 32), signs by movemask, codewords from byte tables
 * as d ≤ 16 lanes. Lanes past D / d read zero padding of the caller's copies. */
static inline void heuristic_step_avx2(float *v, const float *n, float step, int D) {
    __m256 s = _mm256_set1_ps(step);
    for (int j = 0; j < D; j += 8) {
        __m256 x = _mm256_loadu_ps(v + j);
        _mm256_storeu_ps(v + j, _mm256_fmadd_ps(s, _mm256_loadu_ps(n + j), x));
    }
}

static inline uint64_t heuristic_signs_avx2(const float *v, int D) {
    uint64_t code = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (int j = 0; j < D; j += 8)
        code |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + j), zero, _CMP_GT_OQ)) << j;
    return D == 64 ? code : code & (((uint64_t)1 << D) - 1);
}

static inline float heuristic_distance_avx2(const lq_lattice *L, const float *w, uint64_t code) {
    /* w is the caller's 16-float zero-padded copy; table rows are d floats, so the second
     * half is loaded masked when d < 16 */
    const int d = L->d, nbytes = (L->D + 7) / 8;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(d), idx);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(d - 8), idx);
    for (int b = 0; b < nbytes; b++) {
        const float *row = L->byte_tables + ((size_t)b * 256 + ((code >> (8 * b)) & 0xffu)) * d;
        a0 = _mm256_add_ps(a0, _mm256_maskload_ps(row, m0));
        if (d > 8) a1 = _mm256_add_ps(a1, _mm256_maskload_ps(row + 8, m1));
    }
    __m256 e0 = _mm256_sub_ps(_mm256_loadu_ps(w), a0), e1 = _mm256_sub_ps(_mm256_loadu_ps(w + 8), a1);
    __m256 sq = _mm256_fmadd_ps(e1, e1, _mm256_mul_ps(e0, e0));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(sq), _mm256_extractf128_ps(sq, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

#define HEURISTIC_WALK_NAME heuristic_walk_avx2_impl
#define HEURISTIC_STEP heuristic_step_avx2
#define HEURISTIC_SIGNS heuristic_signs_avx2
#define HEURISTIC_DISTANCE heuristic_distance_avx2
#include "heuristic_walk.inc"

void lq_heuristic_walk_avx2(const lq_lattice *L, const float *w,
                            void (*visit)(uint64_t code, float dist, void *ctx), void *ctx) {
    heuristic_walk_avx2_impl(L, w, visit, ctx);
}

int lq_simd_usable(const lq_lattice *L) {
    /* LQ_NO_SIMD read each call (once per batch of blocks) so tests can run both paths in one
     * process */
    return lq_cpu_has_avx2(0) && !getenv("LQ_NO_SIMD") && L->d <= 16;
}
