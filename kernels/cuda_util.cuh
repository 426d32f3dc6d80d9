/* Private to the CUDA sources of kernels/: turning a CUDA error into an lq_status, the same way everywhere. */
#ifndef LQ_CUDA_UTIL_CUH
#define LQ_CUDA_UTIL_CUH

#include <cuda_runtime.h>

#include "lq_base.h"

/* No device, or no kernel image / PTX this device can run, is a configuration the caller can
 * fall back from; anything else is a failed operation. */
static inline lq_status cuda_fail(cudaError_t err, const char *call) {
    const int unsupported = err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
                            err == cudaErrorNoKernelImageForDevice ||
                            err == cudaErrorUnsupportedPtxVersion || err == cudaErrorInvalidDevice;
    (void)cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    return lq_fail(unsupported ? LQ_ERR_UNSUPPORTED : LQ_ERR_IO, "cuda: %s: %s", call,
                   cudaGetErrorString(err));
}

/* Runs a CUDA call; on failure sets `status` and jumps to the function's `done:` cleanup. */
#define CUDA_TRY(name, expr)                                                                      \
    do {                                                                                          \
        cudaError_t err_ = (expr);                                                                \
        if (err_ != cudaSuccess) {                                                                \
            status = cuda_fail(err_, name);                                                       \
            goto done;                                                                            \
        }                                                                                         \
    } while (0)

#endif
