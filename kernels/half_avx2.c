/* AVX2 + F16C instance of the f16-weight dot product (half.c has its scalar twin). Compiled
 * with -mavx2 -mfma -mf16c; half.c calls it only when the CPU has all three. Four independent
 * accumulators hide the FMA latency; vcvtph2ps widens 8 halves from a 16-byte load, so the
 * loop reads 64 bytes of weights per 4 FMAs. */
#include "half_internal.h"

#include <immintrin.h>
#include <math.h>

static inline __m256 widen8(const uint16_t *b) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)b));
}

float lq_half_dot_avx2(const float *a, const uint16_t *b, int k) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int p = 0;
    for (; p + 32 <= k; p += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), widen8(b + p), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 8), widen8(b + p + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 16), widen8(b + p + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 24), widen8(b + p + 24), acc3);
    }
    for (; p + 8 <= k; p += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), widen8(b + p), acc0);
    __m256 lanes = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    /* lanes l and l+4, then l and l+2, then 0 and 1: the scalar twin's order */
    __m128 four = _mm_add_ps(_mm256_castps256_ps128(lanes), _mm256_extractf128_ps(lanes, 1));
    __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    float sum = _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
    for (; p < k; p++) sum = fmaf(a[p], _cvtsh_ss(b[p]), sum);
    return sum;
}
