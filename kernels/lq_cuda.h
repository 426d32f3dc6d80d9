/* liftquant kernels/: the exact and heuristic encoders on a CUDA GPU.
 *
 * Callable from C whether or not liftquant was built with CUDA: without it (LQ_CUDA=OFF)
 * lq_cuda_available() is 0 and lq_cuda_encode() fails with LQ_ERR_UNSUPPORTED, so callers
 * need no #ifdef to fall back to lq_encode(). */
#ifndef LQ_CUDA_H
#define LQ_CUDA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "lattice_math.h"

#ifdef __cplusplus
extern "C" { /* lq_kernels.h and lq_base.h declare C functions but have no extern "C" */
#endif

#include "lq_kernels.h"

/* 1 when liftquant was built with CUDA and a usable device is present, else 0. */
int lq_cuda_available(void);

/* lq_encode() on the current CUDA device, for LQ_ENCODER_EXACT and LQ_ENCODER_HEURISTIC
 * (LQ_ENCODER_BRUTEFORCE → LQ_ERR_UNSUPPORTED). All arrays are host memory with lq_encode()'s
 * shapes; the lattice tables and the blocks are copied to the device on every call, so pass
 * large batches. Codes reach the same distances as the CPU encoders (exact: a nearest code;
 * heuristic: the best §2.2 candidate, ties to the first in Gray order); dist may be NULL.
 * CUDA failures return LQ_ERR_UNSUPPORTED (no device, no kernel image for it) or LQ_ERR_IO
 * with a message "cuda: <call>: <reason>". */
lq_status lq_cuda_encode(lq_encoder e, const lq_lattice *L, const float *w, size_t nblocks,
                         uint64_t *codes, float *dist);

#ifdef __cplusplus
}
#endif

#endif
