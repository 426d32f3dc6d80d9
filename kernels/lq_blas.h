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
/* The same product with B (out × in) held in IEEE binary16, as a liftquant directory stores
 * the embeddings and the head: on a decode step (m = 1) the head is the largest read, and
 * half the bytes is nearly half the time. Every element of B is widened exactly to f32, so
 * the result is the f32 product of the f16 values. m ≤ LQ_GEMM_F16_DOT_ROWS: f32 dot products
 * streaming B once (AVX2+F16C when the CPU has them and LQ_NO_SIMD is unset, else scalar);
 * larger m: panels of B widened into an f32 buffer, then lq_gemm_f32_nt. LQ_ERR_NOMEM when
 * that buffer cannot be had. */
#define LQ_GEMM_F16_DOT_ROWS 4
lq_status lq_gemm_f16_nt(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                         int ldb, float *C, int ldc);
/* The scalar reference (double accumulation), and the dot path for any m with its instance
 * forced, for the tests: simd 0 scalar, 1 AVX2+F16C (LQ_ERR_UNSUPPORTED on a CPU without). */
void lq_gemm_f16_nt_reference(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                              int ldb, float *C, int ldc);
lq_status lq_gemm_f16_nt_dot(int m, int n, int k, const float *A, int lda, const uint16_t *B,
                             int ldb, float *C, int ldc, int simd);

/* General row-major products for the quantizers (calibration math, not the forward pass):
 * C = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when trans_X is set; op(A) is m×k, op(B) k×n.
 * Same threading rule as above. */
void lq_gemm_f64(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *A,
                 int lda, const double *B, int ldb, double beta, double *C, int ldc);
void lq_gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* LAPACK (OpenBLAS ships it) on row-major symmetric n×n matrices in double:
 *   lq_cholesky_upper: A = UᵀU, A overwritten by U (strict lower triangle zeroed);
 *   lq_spd_inverse:    A overwritten by A⁻¹ (both triangles).
 * A matrix that is not positive definite is LQ_ERR_NUMERIC naming `what`. */
lq_status lq_cholesky_upper(double *A, int n, const char *what);
lq_status lq_spd_inverse(double *A, int n, const char *what);

/* Threads OpenBLAS may use (default: all cores, at most 2 unless LQ_THREADS says more). */
void lq_blas_set_threads(int n);

#endif
