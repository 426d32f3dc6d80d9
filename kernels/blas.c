/* Dense f32 GEMM for the forward pass (lq_blas.h): OpenBLAS's sgemm/sgemv, plus a scalar
 * reference the tests compare it to.
 *
 * Thread policy: OpenBLAS reads OPENBLAS_NUM_THREADS once at start-up and would otherwise use
 * every core; the project's rule (LQ_THREADS, else min(cores, 2)) is applied on the first GEMM
 * unless lq_blas_set_threads() was called before. Products smaller than PARALLEL_WORK run on
 * one thread: waking a second thread costs tens of microseconds, far more than such a product
 * takes (and on a busy machine the wait for a core is worse), which made a 260K-parameter
 * model 3-5x slower with two threads than with one. The thread count used depends only on the
 * shape, so results are reproducible run after run. */
#include "lq_blas.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* multiply-adds from which a product is split across threads (about half a millisecond of
 * single-core work) */
#define PARALLEL_WORK (1u << 22)

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_chosen;            /* set by lq_blas_set_threads: the default must not override it */
static _Atomic int threads_allowed = 1; /* what the policy allows for large products */
static _Atomic int threads_active = 0;  /* what OpenBLAS is currently set to; 0 = unknown */

/* Sets OpenBLAS's thread count only when it changes: the call takes a lock inside OpenBLAS. */
static void use_threads(int n) {
    if (threads_active != n) {
        openblas_set_num_threads(n);
        threads_active = n;
    }
}


static void apply_default_threads(void) {
    if (!threads_chosen) threads_allowed = lq_default_threads();
}

void lq_blas_set_threads(int n) {
    threads_chosen = 1;
    threads_allowed = n >= 1 ? n : lq_default_threads();
}

/* The thread count for a product of `work` multiply-adds (a function of the shape only). */
static void threads_for(uint64_t work) {
    pthread_once(&threads_once, apply_default_threads);
    use_threads(work >= PARALLEL_WORK ? threads_allowed : 1);
}

void lq_gemm_f32_nt(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, int accumulate) {
    if (m <= 0 || n <= 0) return;
    threads_for((uint64_t)m * (uint64_t)n * (uint64_t)k);
    float beta = accumulate ? 1.0f : 0.0f;
    if (k <= 0) {
        /* BLAS would also just scale C by beta; done here so a zero-width product is defined
         * without relying on the library's handling of k = 0 */
        if (!accumulate)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = 0.0f;
        return;
    }
    if (m == 1) {
        /* one token (decode): y = W x is a matrix-vector product; sgemv streams W once instead
         * of packing it as sgemm does, which is most of the cost at m = 1 */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, B, ldb, A, 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, A, lda, B, ldb, beta, C,
                ldc);
}

void lq_gemm_f32_nt_reference(int m, int n, int k, const float *A, int lda, const float *B,
                              int ldb, float *C, int ldc, int accumulate) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            /* double accumulation: the reference should be the more accurate of the two */
            double sum = 0.0;
            for (int p = 0; p < k; p++)
                sum += (double)A[(size_t)i * lda + p] * (double)B[(size_t)j * ldb + p];
            float *c = &C[(size_t)i * ldc + j];
            *c = accumulate ? *c + (float)sum : (float)sum;
        }
    }
}

/* An empty product (k = 0) only scales C by beta; done here so that it is defined without
 * relying on the library's handling of k = 0. Type-generic, for the f32 and f64 entry points. */
static int degenerate_product(int m, int n, int k) { return m <= 0 || n <= 0 || k <= 0; }
#define SCALE_ONLY(C, ldc, m, n, beta)                                          \
    do {                                                                        \
        for (int i_ = 0; i_ < (m); i_++)                                        \
            for (int j_ = 0; j_ < (n); j_++) (C)[(size_t)i_ * (ldc) + j_] *= (beta); \
    } while (0)

void lq_gemm_f64(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *A,
                 int lda, const double *B, int ldb, double beta, double *C, int ldc) {
    if (degenerate_product(m, n, k)) {
        SCALE_ONLY(C, ldc, m, n, beta);
        return;
    }
    threads_for((uint64_t)m * (uint64_t)n * (uint64_t)k);
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void lq_gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (degenerate_product(m, n, k)) {
        SCALE_ONLY(C, ldc, m, n, beta);
        return;
    }
    threads_for((uint64_t)m * (uint64_t)n * (uint64_t)k);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* LAPACK's Fortran entry points (OpenBLAS exports them; Debian's OpenBLAS has no LAPACKE
 * header). Column-major: a row-major symmetric matrix is its own column-major image, and the
 * column-major lower factor L (A = L·Lᵀ) read row-major is U = Lᵀ with A = Uᵀ·U. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

/* dpotrf, plus the check OpenBLAS's blocked dpotrf leaves out: a NaN in A goes through it
 * with info = 0 (reference LAPACK stops), so a factor whose diagonal is not finite and
 * positive counts as a failed leading minor. */
static void cholesky_lower(double *A, int n, int *info) {
    dpotrf_("L", &n, A, &n, info);
    for (int i = 0; *info == 0 && i < n; i++)
        if (!(isfinite(A[(size_t)i * n + i]) && A[(size_t)i * n + i] > 0.0)) *info = i + 1;
}

lq_status lq_cholesky_upper(double *A, int n, const char *what) {
    int info = 0;
    threads_for((uint64_t)n * n * n / 3);
    cholesky_lower(A, n, &info);
    if (info > 0)
        return lq_fail(LQ_ERR_NUMERIC,
                       "%s: matrix is not positive definite or not finite (leading minor %d)", what,
                       info);
    if (info < 0) return lq_fail(LQ_ERR_INTERNAL, "%s: dpotrf argument %d invalid", what, -info);
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++) A[(size_t)i * n + j] = 0.0;
    return LQ_OK;
}

lq_status lq_spd_inverse(double *A, int n, const char *what) {
    int info = 0;
    threads_for((uint64_t)n * n * n);
    cholesky_lower(A, n, &info);
    if (info == 0) dpotri_("L", &n, A, &n, &info);
    if (info > 0)
        return lq_fail(LQ_ERR_NUMERIC,
                       "%s: matrix is not positive definite or not finite (leading minor %d)", what,
                       info);
    if (info < 0) return lq_fail(LQ_ERR_INTERNAL, "%s: LAPACK argument %d invalid", what, -info);
    /* dpotri fills the column-major lower triangle = row-major upper; mirror it */
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++) A[(size_t)i * n + j] = A[(size_t)j * n + i];
    return LQ_OK;
}
