/* CUDA instance of the binary GEMV (lq_binary.h).
 *
 * Decomposition: a warp owns ROWS_PER_WARP rows. The device layout keeps each row as
 * ⌈K/32⌉ little-endian words of the file's bits (lq_bin_file_word), so lane l of a warp loads
 * word w0 + l of its rows — one coalesced 128-byte read per row — and the words are then passed
 * round with __shfl_sync: at word w every lane adds its own bit, element 32w + l, with z read
 * from shared memory at consecutive addresses (no bank conflicts). The lanes' partial sums are
 * combined by a __shfl_down_sync tree.
 *
 * The arithmetic is binary_math.h's: lq_bin_signed for each term, the lane sums in word order
 * of lq_bin_lane_sum and the tree of lq_bin_warp_reduce, so the output is
 * scale·lq_bin_warp_row(...) bit for bit — which the CPU tests check against the reference.
 * Each element costs a lane a shift, a select and an add; the z value is loaded once for all
 * the warp's rows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

/* Outside extern "C": under nvcc its functions are __host__ __device__ C++ inlines. */
#include "binary_math.h"
#include "lq_binary.h"
#include "cuda_util.cuh"

#define ROWS_PER_WARP 4
#define WARPS_PER_BLOCK 8
#define FULL_MASK 0xffffffffu
/* z is staged in shared memory up to this many bytes, the limit without an opt-in; larger K
 * reads z through L1 from global memory (same addresses, same order, same result). */
#define SMEM_Z_BYTES (48 * 1024)

struct lq_cuda_binary {
    int out_features, k;
    int nwords;     /* ⌈K/32⌉ per row */
    uint32_t *bits; /* device, OC × nwords */
};

__global__ void binary_gemv_kernel(const uint32_t *__restrict__ bits, int oc, int k, int nwords,
                                   const float *__restrict__ scale, const float *__restrict__ z,
                                   float *__restrict__ out, int z_in_smem) {
    extern __shared__ float zs[];
    const float *zp = z;
    if (z_in_smem) {
        for (int c = threadIdx.x; c < k; c += blockDim.x) zs[c] = z[c];
        __syncthreads();
        zp = zs;
    }
    const int lane = threadIdx.x % LQ_BIN_WARP, warp = threadIdx.x / LQ_BIN_WARP;
    /* rows past oc still run the loop with zero words: every lane must reach each shuffle */
    const int row0 = (blockIdx.x * WARPS_PER_BLOCK + warp) * ROWS_PER_WARP;
    float acc[ROWS_PER_WARP];
    for (int q = 0; q < ROWS_PER_WARP; q++) acc[q] = 0.0f;

    for (int w0 = 0; w0 < nwords; w0 += LQ_BIN_WARP) {
        uint32_t mine[ROWS_PER_WARP];
        for (int q = 0; q < ROWS_PER_WARP; q++) {
            const int r = row0 + q;
            mine[q] = (r < oc && w0 + lane < nwords) ? bits[(size_t)r * nwords + w0 + lane] : 0u;
        }
        const int nw = nwords - w0 < LQ_BIN_WARP ? nwords - w0 : LQ_BIN_WARP;
        for (int i = 0; i < nw; i++) {
            const int c = LQ_BIN_WARP * (w0 + i) + lane;
            const float zc = c < k ? zp[c] : 0.0f;
            for (int q = 0; q < ROWS_PER_WARP; q++) {
                const uint32_t word = __shfl_sync(FULL_MASK, mine[q], i);
                if (c < k) acc[q] += lq_bin_signed((word >> lane) & 1u, zc);
            }
        }
    }
    for (int q = 0; q < ROWS_PER_WARP; q++) {
        float v = acc[q];
        for (int off = LQ_BIN_WARP / 2; off > 0; off /= 2) v += __shfl_down_sync(FULL_MASK, v, off);
        const int r = row0 + q;
        if (lane == 0 && r < oc) out[r] = scale ? scale[r] * v : v;
    }
}

/* ---- host side --------------------------------------------------------------------------- */


static void release(void *p, lq_status *status) {
    if (!p) return;
    cudaError_t err = cudaFree(p);
    if (err != cudaSuccess && *status == LQ_OK) *status = cuda_fail(err, "cudaFree");
}

static lq_status check_device(void) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) return cuda_fail(err, "cudaGetDeviceCount");
    if (n == 0) return lq_fail(LQ_ERR_UNSUPPORTED, "cuda: cudaGetDeviceCount: no CUDA device");
    return LQ_OK;
}

extern "C" lq_status lq_cuda_binary_upload(const uint8_t *file_bits, int out_features, int k,
                                           lq_cuda_binary **out) {
    if (!out) return lq_fail(LQ_ERR_ARG, "cuda: lq_cuda_binary_upload: NULL result pointer");
    *out = NULL;
    if (out_features <= 0 || k <= 0 || k % 8 != 0)
        return lq_fail(LQ_ERR_ARG,
                       "cuda: lq_cuda_binary_upload: %d × %d: out_features must be positive and k a positive multiple of 8",
                       out_features, k);
    if (!file_bits) return lq_fail(LQ_ERR_ARG, "cuda: lq_cuda_binary_upload: NULL bits");
    lq_status status = check_device();
    if (status != LQ_OK) return status;

    const size_t OC = (size_t)out_features, K = (size_t)k, nwords = (K + 31) / 32;
    uint32_t *host = (uint32_t *)malloc(OC * nwords * sizeof(uint32_t));
    lq_cuda_binary *W = (lq_cuda_binary *)calloc(1, sizeof *W);
    if (!host || !W) {
        free(host);
        free(W);
        return lq_fail(LQ_ERR_NOMEM, "cuda: lq_cuda_binary_upload: out of host memory");
    }
    for (size_t r = 0; r < OC; r++)
        for (size_t w = 0; w < nwords; w++) host[r * nwords + w] = lq_bin_file_word(file_bits, K, r, w);
    W->out_features = out_features;
    W->k = k;
    W->nwords = (int)nwords;
    CUDA_TRY("cudaMalloc", cudaMalloc((void **)&W->bits, OC * nwords * sizeof(uint32_t)));
    CUDA_TRY("cudaMemcpy", cudaMemcpy(W->bits, host, OC * nwords * sizeof(uint32_t), cudaMemcpyHostToDevice));
done:
    free(host);
    if (status != LQ_OK) {
        lq_cuda_binary_free(W);
        return status;
    }
    *out = W;
    return LQ_OK;
}

extern "C" void lq_cuda_binary_free(lq_cuda_binary *W) {
    if (!W) return;
    if (W->bits) (void)cudaFree(W->bits);
    free(W);
}

extern "C" lq_status lq_cuda_binary_matrix_gemv(const lq_cuda_binary *W, const float *scale,
                                                const float *z, float *out) {
    if (!W || !z || !out) return lq_fail(LQ_ERR_ARG, "cuda: lq_cuda_binary_matrix_gemv: NULL matrix, z or out");
    lq_status status = LQ_OK;
    const size_t OC = (size_t)W->out_features, K = (size_t)W->k;
    float *dz = NULL, *dscale = NULL, *dout = NULL;
    const int z_in_smem = K * sizeof(float) <= SMEM_Z_BYTES;
    const int rows_per_block = ROWS_PER_WARP * WARPS_PER_BLOCK;
    const unsigned grid = (unsigned)((OC + rows_per_block - 1) / rows_per_block);

    CUDA_TRY("cudaMalloc", cudaMalloc((void **)&dz, K * sizeof(float)));
    CUDA_TRY("cudaMalloc", cudaMalloc((void **)&dout, OC * sizeof(float)));
    CUDA_TRY("cudaMemcpy", cudaMemcpy(dz, z, K * sizeof(float), cudaMemcpyHostToDevice));
    if (scale) {
        CUDA_TRY("cudaMalloc", cudaMalloc((void **)&dscale, OC * sizeof(float)));
        CUDA_TRY("cudaMemcpy", cudaMemcpy(dscale, scale, OC * sizeof(float), cudaMemcpyHostToDevice));
    }
    binary_gemv_kernel<<<grid, WARPS_PER_BLOCK * LQ_BIN_WARP, z_in_smem ? K * sizeof(float) : 0>>>(
        W->bits, W->out_features, W->k, W->nwords, dscale, dz, dout, z_in_smem);
    CUDA_TRY("binary_gemv_kernel launch", cudaGetLastError());
    CUDA_TRY("binary_gemv_kernel", cudaDeviceSynchronize());
    CUDA_TRY("cudaMemcpy", cudaMemcpy(out, dout, OC * sizeof(float), cudaMemcpyDeviceToHost));
done:
    release(dz, &status);
    release(dscale, &status);
    release(dout, &status);
    return status;
}

extern "C" lq_status lq_cuda_binary_gemv(const uint8_t *file_bits, int out_features, int k,
                                         const float *scale, const float *z, float *out) {
    if (!z || !out) return lq_fail(LQ_ERR_ARG, "cuda: lq_cuda_binary_gemv: NULL z or out");
    lq_cuda_binary *W = NULL;
    lq_status status = lq_cuda_binary_upload(file_bits, out_features, k, &W);
    if (status == LQ_OK) status = lq_cuda_binary_matrix_gemv(W, scale, z, out);
    lq_cuda_binary_free(W);
    return status;
}
