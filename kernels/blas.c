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

void lq_gemm_f32_nt(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, int accumulate) {
    if (m <= 0 || n <= 0) return;
    pthread_once(&threads_once, apply_default_threads);
    use_threads((uint64_t)m * (uint64_t)n * (uint64_t)k >= PARALLEL_WORK ? threads_allowed : 1);
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
