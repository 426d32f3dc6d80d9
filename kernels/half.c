/* IEEE binary16 and bfloat16 <-> binary32 (lq_base.h), and the f16-weight product (lq_blas.h)
 * that widens with them.
 *
 * The scalar conversions use integer bit manipulation rather than _Float16 or F16C intrinsics
 * so that the library behaves identically with every compiler and CPU, and so the exact
 * rounding rule (nearest, ties to even) is visible in the code.
 *
 * Decode multiplies one token by the whole head (vocab × dim: 49152 × 576 for SmolLM2), a
 * pure stream of weight bytes; holding it in f16 halves the stream and the memory. The dot
 * path's AVX2 instance is half_avx2.c (F16C widens 8 halves an instruction); the scalar one
 * below is its lane-by-lane twin, with the same 4 × 8 partial sums added in the same order, so
 * the two give the same floats. Batches (prefill, lq-eval's windows) widen panels of rows and
 * hand them to sgemm, which beats any dot loop once a row is reused by many tokens. */
#include "lq_blas.h"
#include "half_internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---- bit casts ------------------------------------------------------------------------- */
static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#define F32_SIGN 0x80000000u
#define F32_EXP_MASK 0x7f800000u
#define F32_MANT_MASK 0x007fffffu
#define F32_QUIET_BIT 0x00400000u

/* Shifts `value` right by `shift` (1..31) rounding to nearest, ties to even. */
static uint32_t shift_right_round_even(uint32_t value, unsigned shift) {
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (dropped > half || (dropped == half && (kept & 1u))) kept++;
    return kept;
}

/* ---- binary16 -------------------------------------------------------------------------- */
/* binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float lq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1fu) {
        if (mantissa == 0) return bits_float(sign | F32_EXP_MASK);
        /* keep the payload, force the quiet bit so a signalling NaN never escapes */
        return bits_float(sign | F32_EXP_MASK | F32_QUIET_BIT | (mantissa << 13));
    }
    if (exponent == 0) {
        if (mantissa == 0) return bits_float(sign);
        /* Subnormal: value = mantissa * 2^-24. Every one is a normal f32; shift the leading
         * one up to the implicit-bit position, lowering the exponent once per shift. */
        int32_t unbiased = -14;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            unbiased--;
        }
        mantissa &= 0x3ffu;
        return bits_float(sign | ((uint32_t)(unbiased + 127) << 23) | (mantissa << 13));
    }
    return bits_float(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
}

uint16_t lq_f32_to_f16(float f) {
    uint32_t bits = float_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & ~F32_SIGN;

    if (magnitude > F32_EXP_MASK) /* NaN: quiet, sign and top payload bits kept */
        return (uint16_t)(sign | 0x7e00u | ((magnitude & F32_MANT_MASK) >> 13));
    if (magnitude == F32_EXP_MASK) return (uint16_t)(sign | 0x7c00u);

    int32_t unbiased = (int32_t)(magnitude >> 23) - 127;
    uint32_t significand = (magnitude & F32_MANT_MASK) | 0x800000u; /* 24 bits with the 1 */

    if (unbiased > 15) return (uint16_t)(sign | 0x7c00u); /* ≥ 2^16: beyond every f16 */
    if (unbiased >= -14) {
        /* Normal range. Rounding may carry out of the mantissa into the exponent, which is
         * exactly right: 0x3ff + 1 becomes the next binade, and the largest binade overflows
         * into 0x7c00 = Inf (values ≥ 65520 round up to Inf). */
        uint32_t biased_and_mantissa = ((uint32_t)(unbiased + 15) << 10) |
                                       ((magnitude & F32_MANT_MASK) >> 13);
        uint32_t dropped = magnitude & 0x1fffu;
        if (dropped > 0x1000u || (dropped == 0x1000u && (biased_and_mantissa & 1u)))
            biased_and_mantissa++;
        return (uint16_t)(sign | biased_and_mantissa);
    }
    /* Subnormal range, in units of 2^-24: value = significand * 2^(unbiased + 1). Below
     * 2^-25 (half the smallest subnormal) everything rounds to zero; f32 subnormals land
     * here too since their unbiased exponent reads -127. A result of 0x400 is the smallest
     * normal, whose bit pattern is exactly right. */
    if (unbiased < -25) return sign;
    return (uint16_t)(sign | shift_right_round_even(significand, (unsigned)(-unbiased - 1)));
}

/* ---- bfloat16: the top half of an f32 ------------------------------------------------- */
float lq_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    if ((bits & ~F32_SIGN) > F32_EXP_MASK) bits |= F32_QUIET_BIT;
    return bits_float(bits);
}

uint16_t lq_f32_to_bf16(float f) {
    uint32_t bits = float_bits(f);
    if ((bits & ~F32_SIGN) > F32_EXP_MASK) /* NaN: truncate payload, force quiet */
        return (uint16_t)((bits | F32_QUIET_BIT) >> 16);
    /* Adding 0x7fff (+1 when the kept part is odd) and truncating rounds to nearest, ties to
     * even. Carries into the exponent are correct, including max-finite -> Inf, and the
     * exponent range is the same as f32 so subnormals need no special case. */
    uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding_bias) >> 16);
}

/* One row of B against one row of A in the AVX2 kernel's order: lane l of accumulator a sums
 * elements p ≡ 8a + l (mod 32), then a0+a1+a2+a3 lane-wise, then the lanes pairwise as
 * half_avx2.c folds its register, then the tail in order. */
float lq_half_dot_scalar(const float *a, const uint16_t *b, int k) {
    float acc[4][8] = {{0}};
    int p = 0;
    for (; p + 32 <= k; p += 32)
        for (int r = 0; r < 4; r++)
            for (int l = 0; l < 8; l++)
                acc[r][l] = fmaf(a[p + 8 * r + l], lq_f16_to_f32(b[p + 8 * r + l]), acc[r][l]);
    for (; p + 8 <= k; p += 8)
        for (int l = 0; l < 8; l++) acc[0][l] = fmaf(a[p + l], lq_f16_to_f32(b[p + l]), acc[0][l]);
    float lane[8];
    for (int l = 0; l < 8; l++) lane[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    /* 8 -> 4 -> 2 -> 1 */
    for (int l = 0; l < 4; l++) lane[l] += lane[l + 4];
    lane[0] += lane[2], lane[1] += lane[3];
    float sum = lane[0] + lane[1];
    for (; p < k; p++) sum = fmaf(a[p], lq_f16_to_f32(b[p]), sum);
    return sum;
}

/* rows·k from which the dot path splits rows across threads (as binary.c's PARALLEL_WEIGHTS) */
#define PARALLEL_WEIGHTS ((size_t)1 << 21)
/* rows per thread task: 64 rows of a 576-wide head are 72 KiB, so tasks are many and short and
 * a preempted thread delays little (binary.c explains why nothing is split statically) */
#define DOT_RUN 64

lq_status lq_gemm_f16_nt_dot(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                             int ldb, float *C, int ldc, int simd) {
    if (simd && !lq_cpu_has_avx2(1))
        return lq_fail(LQ_ERR_UNSUPPORTED, "lq_gemm_f16_nt: this CPU lacks AVX2, FMA or F16C");
    if (m <= 0 || n <= 0) return LQ_OK;
    const size_t runs = ((size_t)n + DOT_RUN - 1) / DOT_RUN;
    const int nthreads = (size_t)n * (size_t)(k > 0 ? k : 0) * (size_t)m >= PARALLEL_WEIGHTS
                             ? lq_default_threads() : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1)
    for (size_t run = 0; run < runs; run++) {
        const size_t j1 = (run + 1) * DOT_RUN < (size_t)n ? (run + 1) * DOT_RUN : (size_t)n;
        for (size_t j = run * DOT_RUN; j < j1; j++) {
            const uint16_t *row = B + j * (size_t)ldb;
            for (int i = 0; i < m; i++)
                C[(size_t)i * ldc + j] = simd ? lq_half_dot_avx2(A + (size_t)i * lda, row, k)
                                              : lq_half_dot_scalar(A + (size_t)i * lda, row, k);
        }
    }
    return LQ_OK;
}

/* Floats of widened rows per sgemm call: ~2 MiB, as binary.c's dequantized panels. */
#define PANEL_FLOATS ((size_t)1 << 19)

lq_status lq_gemm_f16_nt(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                         int ldb, float *C, int ldc) {
    if (m <= 0 || n <= 0) return LQ_OK;
    if (m <= LQ_GEMM_F16_DOT_ROWS || k <= 0)
        return lq_gemm_f16_nt_dot(m, n, k, A, lda, B, ldb, C, ldc,
                                  lq_cpu_has_avx2(1) && !getenv("LQ_NO_SIMD"));
    size_t block = PANEL_FLOATS / (size_t)k;
    block = block < 16 ? 16 : block / 16 * 16;
    if (block > (size_t)n) block = (size_t)n;
    float *panel = malloc(block * (size_t)k * sizeof *panel);
    if (!panel)
        return lq_fail(LQ_ERR_NOMEM, "lq_gemm_f16_nt: out of memory for %zu widened rows of %d",
                       block, k);
    for (size_t j0 = 0; j0 < (size_t)n; j0 += block) {
        const size_t j1 = (size_t)n - j0 < block ? (size_t)n : j0 + block;
        for (size_t j = j0; j < j1; j++)
            for (int p = 0; p < k; p++)
                panel[(j - j0) * (size_t)k + p] = lq_f16_to_f32(B[j * (size_t)ldb + p]);
        lq_gemm_f32_nt(m, (int)(j1 - j0), k, A, lda, panel, k, C + j0, ldc, 0);
    }
    free(panel);
    return LQ_OK;
}

void lq_gemm_f16_nt_reference(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                              int ldb, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int p = 0; p < k; p++)
                sum += (double)A[(size_t)i * lda + p] *
                       (double)lq_f16_to_f32(B[(size_t)j * ldb + p]);
            C[(size_t)i * ldc + j] = (float)sum;
        }
}
