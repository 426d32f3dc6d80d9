/* AVX2 instance of the LUT kernel (lq_binary.h; binary.c's lut_scalar is its lane-by-lane
 * twin). Compiled with -mavx2 -mfma; binary.c calls it only when the CPU has AVX2.
 *
 * A tile's word holds one nibble per row, so broadcasting it and shifting lane i right by 4i
 * puts row i's stored nibble in lane i: bits 0–2 index the group's 8-entry table (one vpermps
 * over a register holding it) and bit 3 flips the sign (binary_math.h). Per 8 rows × 4 weights
 * and token: broadcast-load, shift, shift, and (decoding, shared by the tokens of a block), then
 * permute, xor, add per token.
 *
 * Measured on the 2-core AMD EPYC (Zen 4, one thread, machine busy with other jobs), kernel
 * alone: 0.0175 ns/weight for one token — 7 instructions per 32 weights in ~1.5 cycles at the
 * 2.6 GHz nominal clock, i.e. issue-bound, which is why 2, 4 or 8 tiles per pass all ran at the
 * same speed (4 are kept for independent add chains). That is 7 GB/s of weight bits per core;
 * OpenBLAS's f32 sgemv on the same shapes takes 0.05–0.20 ns/weight. With 4 tokens sharing the
 * decoding (below) a weight-token costs 0.011 ns.
 *
 * Not taken: a 16-entry table (two permutes and a blend: as many instructions, twice the
 * permutes), and T-MAC's int8 tables with pshufb (32 lookups an instruction, but it rounds the
 * activations, which LiftQuant never does, ALGORITHM.md §8). */
#define LQ_BINARY_PRIVATE
#include "lq_binary.h"

#include <immintrin.h>
#include <stdint.h>

#include "binary_math.h"

#define NT_MAX 4 /* tiles per pass */
#define TB_MAX 4 /* tokens per pass */

/* acc[b][t..t+nt) += the lookups of groups [g0, g1) for tokens b < tb. nt and tb are constants
 * at every call site, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void pass(const lq_binary_matrix *W, size_t t,
                                                       const int nt, size_t g0, size_t g1,
                                                       const float *tables, size_t table_stride,
                                                       const int tb, float *acc, size_t acc_stride) {
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i signbit = _mm256_set1_epi32((int)0x80000000u);
    const uint32_t *words[NT_MAX];
    __m256 a[TB_MAX][NT_MAX];
    for (int u = 0; u < nt; u++) {
        words[u] = W->words + (t + (size_t)u) * W->groups;
        for (int b = 0; b < tb; b++)
            a[b][u] = _mm256_loadu_ps(acc + (size_t)b * acc_stride + (t + (size_t)u) * LQ_BIN_TILE);
    }
    for (size_t g = g0; g < g1; g++) {
        __m256i idx[NT_MAX], sign[NT_MAX];
        for (int u = 0; u < nt; u++) {
            idx[u] = _mm256_srlv_epi32(_mm256_set1_epi32((int)words[u][g]), shifts);
            sign[u] = _mm256_and_si256(_mm256_slli_epi32(idx[u], 28), signbit);
        }
        for (int b = 0; b < tb; b++) {
            const __m256 tab = _mm256_loadu_ps(tables + (size_t)b * table_stride + g * LQ_BIN_TABLE);
            for (int u = 0; u < nt; u++) {
                const __m256 v = _mm256_xor_ps(_mm256_permutevar8x32_ps(tab, idx[u]),
                                               _mm256_castsi256_ps(sign[u]));
                a[b][u] = _mm256_add_ps(a[b][u], v);
            }
        }
    }
    for (int u = 0; u < nt; u++)
        for (int b = 0; b < tb; b++)
            _mm256_storeu_ps(acc + (size_t)b * acc_stride + (t + (size_t)u) * LQ_BIN_TILE, a[b][u]);
}

/* lq_bin_half_table's additions, operand for operand: sign flips are xors (exact), so every
 * entry rounds the same two sums the portable builder does. */
void lq_binary_tables_avx2(const float *z, size_t g0, size_t g1, float *tables) {
    const __m256 neg = _mm256_set1_ps(-0.0f);
    /* lo[m] = (±z0) + (±z1): z0 negated where m is even, z1 where m < 2; the pattern twice */
    const __m256 flip0 = _mm256_castsi256_ps(_mm256_setr_epi32(INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0));
    const __m256 flip1 = _mm256_castsi256_ps(_mm256_setr_epi32(INT32_MIN, INT32_MIN, 0, 0, INT32_MIN, INT32_MIN, 0, 0));
    /* hi0 = (−z2) + (−z3) in lanes 0–3, hi1 = z2 + (−z3) in lanes 4–7 */
    const __m256 flip2 = _mm256_castsi256_ps(_mm256_setr_epi32(INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, 0, 0, 0, 0));
    for (size_t g = g0; g < g1; g++) {
        const float *x = z + g * LQ_BIN_GROUP;
        const __m256 lo = _mm256_add_ps(_mm256_xor_ps(_mm256_broadcast_ss(x), flip0),
                                        _mm256_xor_ps(_mm256_broadcast_ss(x + 1), flip1));
        const __m256 hi = _mm256_add_ps(_mm256_xor_ps(_mm256_broadcast_ss(x + 2), flip2),
                                        _mm256_xor_ps(_mm256_broadcast_ss(x + 3), neg));
        const __m256 t = _mm256_add_ps(lo, hi);
        _mm256_storeu_ps(tables + g * LQ_BIN_TABLE, t);
        _mm256_storeu_ps(tables + g * LQ_BIN_TABLE + 8, _mm256_xor_ps(t, neg));
    }
}

void lq_binary_lut_avx2(const lq_binary_matrix *W, size_t t0, size_t t1, size_t g0, size_t g1,
                        const float *tables, size_t table_stride, int ntok, float *acc,
                        size_t acc_stride) {
    int b = 0;
    /* 4 tokens × 2 tiles: 8 accumulators, 4 decoded registers, a table, temporaries */
    for (; b + 4 <= ntok; b += 4) {
        const float *tb = tables + (size_t)b * table_stride;
        float *ab = acc + (size_t)b * acc_stride;
        size_t t = t0;
        for (; t + 2 <= t1; t += 2) pass(W, t, 2, g0, g1, tb, table_stride, 4, ab, acc_stride);
        for (; t < t1; t++) pass(W, t, 1, g0, g1, tb, table_stride, 4, ab, acc_stride);
    }
    for (; b < ntok; b++) {
        const float *tb = tables + (size_t)b * table_stride;
        float *ab = acc + (size_t)b * acc_stride;
        size_t t = t0;
        for (; t + 4 <= t1; t += 4) pass(W, t, 4, g0, g1, tb, table_stride, 1, ab, acc_stride);
        for (; t < t1; t++) pass(W, t, 1, g0, g1, tb, table_stride, 1, ab, acc_stride);
    }
}
