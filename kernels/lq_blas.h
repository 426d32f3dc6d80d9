/* Dense f32 GEMM for the forward pass: OpenBLAS behind one call, with a scalar reference the
 * tests compare it to. */
#ifndef LQ_BLAS_H
#define LQ_BLAS_H

#include "lq_base.h"

/* C[m×n] = A[m×k] · B[n×k]ᵀ (+ C when accumulate): the nn.Linear product y = x Wᵀ with
 * x = A (tokens × in), W = B (out × in), all row-major with leading dimensions lda, ldb, ldc. */
void lq_gemm_f32_nt(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, int accumulate);
void lq_gemm_f32_nt_reference(int m, int n, int k, const float *A, int lda, const float *B,
                              int ldb, float *C, int ldc, int accumulate);
/* Threads OpenBLAS may use (default: all cores, at most 2 unless LQ_THREADS says more). */
void lq_blas_set_threads(int n);

#endif
