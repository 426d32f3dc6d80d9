/* lq_cuda.h (and lq_binary.h's CUDA entry points) when liftquant is built without CUDA
 * (LQ_CUDA=OFF): callers link the same symbols and fall back to the CPU kernels at run time. */
#include "lq_cuda.h"

int lq_cuda_available(void) { return 0; }

lq_status lq_cuda_encode(lq_encoder e, const lq_lattice *L, const float *w, size_t nblocks,
                         uint64_t *codes, float *dist) {
    (void)e, (void)L, (void)w, (void)nblocks, (void)codes, (void)dist;
    return lq_fail(LQ_ERR_UNSUPPORTED,
                   "cuda: liftquant was built without CUDA (configure with -DLQ_CUDA=ON where nvcc is installed)");
}

/* lq_binary.h's CUDA entry points without CUDA: the CPU GEMV is the fallback. */
#include "lq_binary.h"

static lq_status binary_no_cuda(void) {
    return lq_fail(LQ_ERR_UNSUPPORTED,
                   "cuda: liftquant was built without CUDA (configure with -DLQ_CUDA=ON where nvcc is installed)");
}

lq_status lq_cuda_binary_upload(const uint8_t *file_bits, int out_features, int k,
                                lq_cuda_binary **out) {
    (void)file_bits, (void)out_features, (void)k;
    if (out) *out = NULL;
    return binary_no_cuda();
}

void lq_cuda_binary_free(lq_cuda_binary *W) { (void)W; }

lq_status lq_cuda_binary_matrix_gemv(const lq_cuda_binary *W, const float *scale, const float *z,
                                     float *out) {
    (void)W, (void)scale, (void)z, (void)out;
    return binary_no_cuda();
}

lq_status lq_cuda_binary_gemv(const uint8_t *file_bits, int out_features, int k,
                              const float *scale, const float *z, float *out) {
    (void)file_bits, (void)out_features, (void)k, (void)scale, (void)z, (void)out;
    return binary_no_cuda();
}
