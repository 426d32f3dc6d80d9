/* Private to kernels/half*.c: the two instances of one f16-weight dot product. */
#ifndef LQ_HALF_INTERNAL_H
#define LQ_HALF_INTERNAL_H

#include <stdint.h>

/* Σ_p a[p]·widen(b[p]) over k elements, both instances summing in the same order. */
float lq_half_dot_scalar(const float *a, const uint16_t *b, int k);
float lq_half_dot_avx2(const float *a, const uint16_t *b, int k);

#endif
