/* lq_cuda.h when liftquant is built without CUDA (LQ_CUDA=OFF): callers link the same symbols
 * and fall back to the CPU encoders at run time. */
#include "lq_cuda.h"

int lq_cuda_available(void) { return 0; }

lq_status lq_cuda_encode(lq_encoder e, const lq_lattice *L, const float *w, size_t nblocks,
                         uint64_t *codes, float *dist) {
    (void)e, (void)L, (void)w, (void)nblocks, (void)codes, (void)dist;
    return lq_fail(LQ_ERR_UNSUPPORTED,
                   "cuda: liftquant was built without CUDA (configure with -DLQ_CUDA=ON where nvcc is installed)");
}
