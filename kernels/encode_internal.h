/* Private to kernels/: the vector instances of the encoders, in their own translation units
 * compiled for AVX2, and the test that says whether this CPU may call them. */
#ifndef LQ_ENCODE_INTERNAL_H
#define LQ_ENCODE_INTERNAL_H

#include "lq_kernels.h"

#define DPAD_MAX 32

/* 1 when this CPU has AVX2+FMA, the lattice has d ≤ 16, and LQ_NO_SIMD is
 * unset in the environment (the switch the tests use to run the scalar reference). */
int lq_simd_usable(const lq_lattice *L);
uint64_t lq_exact_search_avx2(const lq_lattice *L, const float *w, uint64_t *nodes);
size_t lq_exact_window_avx2(const lq_lattice *L, const float *w, float window, uint64_t *codes,
                            float *dists, size_t cap, uint64_t *nodes);
void lq_heuristic_walk_avx2(const lq_lattice *L, const float *w,
                            void (*visit)(uint64_t code, float dist, void *ctx), void *ctx);

#endif
