/* CUDA instances of the exact and heuristic encoders (lq_cuda.h).
 *
 * The arithmetic is the CPU's: the exact search is exact_search.inc itself compiled for the
 * device, with child bounds from lq_row_lower_bound, and the heuristic scores candidates with
 * lq_code_from_signs / lq_codeword_from_byte_tables, all __host__ __device__ in
 * lattice_math.h. Only the parallel decomposition is new:
 *   exact      one thread per block (the search is a sequential depth-first walk);
 *   heuristic  one warp per block: the 2^(D−d) Gray-code steps are cut into 32 contiguous
 *              chunks, each lane rebuilds v at its chunk's start, and a warp reduction keeps
 *              the smallest distance, ties to the lowest chunk, which is the CPU's "first in
 *              Gray order". */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

/* Outside extern "C": under nvcc its functions are __host__ __device__ C++ inlines. */
#include "lattice_math.h"
#include "lq_cuda.h"
#include "cuda_util.cuh"

/* ---- exact ------------------------------------------------------------------------------
 * The search keeps (D+1)·2·DPAD_MAX floats of residuals per thread in local memory, and the
 * driver reserves local memory for every thread the device can hold at once, so lattices
 * with d ≤ 16 (nearly all of them) get an instance with half the buffer. */
static __device__ __forceinline__ void child_bounds_cuda(const lq_lattice *L, int k,
                                                         const float *parent, float *plus,
                                                         float *minus, float *bounds) {
    lq_child_bounds(parent, L->r_columns + (size_t)k * L->dpad, L->reach + (size_t)k * L->dpad,
                    L->dpad, plus, minus, bounds);
}

#define DPAD_MAX 16
#define EXACT_SEARCH_NAME exact_search_cuda16
#define EXACT_WINDOW_NAME exact_window_cuda16
#define EXACT_SUBTREE_NAME exact_subtree_cuda16
#define EXACT_CHILD_BOUNDS child_bounds_cuda
#define EXACT_SEARCH_QUALIFIER static __device__
#include "exact_search.inc"
#undef DPAD_MAX

#define DPAD_MAX 32 /* = encode_internal.h's, enough for d ≤ LQ_LATTICE_MAX_SMALL_D */
#define EXACT_SEARCH_NAME exact_search_cuda32
#define EXACT_WINDOW_NAME exact_window_cuda32
#define EXACT_SUBTREE_NAME exact_subtree_cuda32
#define EXACT_CHILD_BOUNDS child_bounds_cuda
#define EXACT_SEARCH_QUALIFIER static __device__
#include "exact_search.inc"
#undef DPAD_MAX

template <int DPAD>
__global__ void exact_kernel(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                             float *dist) {
    const int D = L->D, d = L->d;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x; b < nblocks; b += stride) {
        const float *wb = w + b * (size_t)d;
        uint64_t nodes = 0, code;
        if constexpr (DPAD == 16) code = exact_search_cuda16(L, wb, &nodes);
        else code = exact_search_cuda32(L, wb, &nodes);
        codes[b] = code;
        if (dist) dist[b] = lq_code_distance(L->M, d, D, wb, code);
    }
}

/* ---- heuristic --------------------------------------------------------------------------- */
#define WARP 32

__global__ void heuristic_kernel(const lq_lattice *L, const float *w, size_t nblocks,
                                 uint64_t *codes, float *dist) {
    const int D = L->D, d = L->d, excess = D - d;
    const int lane = threadIdx.x % WARP;
    /* with fewer than 32 steps the high lanes get an empty chunk (t0 ≥ count) */
    const uint64_t count = (uint64_t)1 << excess, chunk = (count + WARP - 1) / WARP;
    const uint64_t t0 = lane * chunk, t1 = t0 + chunk < count ? t0 + chunk : count;
    const size_t nwarps = (size_t)gridDim.x * blockDim.x / WARP;
    /* b depends on the warp only, so every lane reaches the shuffles below together */
    for (size_t b = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / WARP; b < nblocks; b += nwarps) {
        float wl[LQ_LATTICE_MAX_SMALL_D], v[LQ_LATTICE_MAX_D], cw[LQ_LATTICE_MAX_SMALL_D];
        for (int i = 0; i < d; i++) wl[i] = w[b * (size_t)d + i];
        float best = INFINITY;
        uint64_t best_code = 0;
        if (t0 < count) {
            for (int j = 0; j < D; j++) {
                float s = 0.0f;
                for (int c = 0; c < d; c++) s += L->pinv[j * d + c] * wl[c];
                v[j] = s;
            }
            /* step t of the CPU walk has z_r = +1 exactly where bit r of the Gray code
             * t ^ (t >> 1) is set (all −1 at t = 0, step t flips z_ctz(t)) */
            uint64_t zbits = t0 ^ (t0 >> 1);
            for (int r = 0; r < excess; r++) {
                const float *n = L->null_basis + (size_t)r * D;
                if ((zbits >> r) & 1)
                    for (int j = 0; j < D; j++) v[j] += n[j];
                else
                    for (int j = 0; j < D; j++) v[j] -= n[j];
            }
            uint64_t prev = ~(uint64_t)0;
            for (uint64_t t = t0; t < t1; t++) {
                if (t > t0) {
                    const int g = __ffsll((long long)t) - 1;
                    const float step = ((zbits >> g) & 1) ? -2.0f : 2.0f;
                    zbits ^= (uint64_t)1 << g;
                    const float *n = L->null_basis + (size_t)g * D;
                    for (int j = 0; j < D; j++) v[j] += step * n[j];
                }
                const uint64_t code = lq_code_from_signs(v, D);
                if (code == prev) continue;
                prev = code;
                lq_codeword_from_byte_tables(L->byte_tables, d, D, code, cw);
                float e = 0.0f;
                for (int i = 0; i < d; i++) {
                    const float diff = wl[i] - cw[i];
                    e += diff * diff;
                }
                if (e < best) { /* strict: the first code of this chunk wins a tie */
                    best = e;
                    best_code = code;
                }
            }
        }
        int from = lane;
        for (int off = WARP / 2; off > 0; off /= 2) {
            const float ob = __shfl_down_sync(0xffffffffu, best, off);
            const unsigned long long oc = __shfl_down_sync(0xffffffffu, (unsigned long long)best_code, off);
            const int of = __shfl_down_sync(0xffffffffu, from, off);
            if (ob < best || (ob == best && of < from)) {
                best = ob;
                best_code = oc;
                from = of;
            }
        }
        if (lane == 0) {
            codes[b] = best_code;
            if (dist) dist[b] = lq_code_distance(L->M, d, D, wl, best_code);
        }
    }
}

/* ---- host side --------------------------------------------------------------------------- */
static constexpr int EXACT_THREADS = 128, HEURISTIC_THREADS = 256;
/* blocks per launch: bounds the device buffers (and the grid) whatever nblocks is */
static constexpr size_t BATCH = (size_t)1 << 20;


template <typename T> static lq_status upload(T **dst, const T *src, size_t n) {
    cudaError_t err = cudaMalloc((void **)dst, n * sizeof(T));
    if (err != cudaSuccess) {
        *dst = NULL;
        return cuda_fail(err, "cudaMalloc");
    }
    err = cudaMemcpy(*dst, src, n * sizeof(T), cudaMemcpyHostToDevice);
    return err == cudaSuccess ? LQ_OK : cuda_fail(err, "cudaMemcpy");
}

/* Frees p and keeps the first failure in *status. */
static void release(void *p, lq_status *status) {
    if (!p) return;
    cudaError_t err = cudaFree(p);
    if (err != cudaSuccess && *status == LQ_OK) *status = cuda_fail(err, "cudaFree");
}

/* The lattice as the kernels see it: `host` holds device pointers, `dev` is its copy in
 * device memory. Only the tables the encoder reads are uploaded; the others stay NULL. */
typedef struct {
    lq_lattice host;
    lq_lattice *dev;
} device_lattice;

static lq_status lattice_upload(const lq_lattice *L, lq_encoder e, device_lattice *out) {
    lq_lattice *h = &out->host;
    memset(out, 0, sizeof *out);
    h->D = L->D;
    h->d = L->d;
    h->dpad = L->dpad;
    const size_t D = (size_t)L->D, d = (size_t)L->d, dp = (size_t)L->dpad;
    lq_status s = upload(&h->M, (const float *)L->M, d * D);
    if (s != LQ_OK) return s;
    if (e == LQ_ENCODER_EXACT) {
        if ((s = upload(&h->tree_column, (const int *)L->tree_column, D)) != LQ_OK ||
            (s = upload(&h->rotation, (const float *)L->rotation, dp * d)) != LQ_OK ||
            (s = upload(&h->r_columns, (const float *)L->r_columns, D * dp)) != LQ_OK ||
            (s = upload(&h->reach, (const float *)L->reach, (D + 1) * dp)) != LQ_OK)
            return s;
    } else {
        if ((s = upload(&h->pinv, (const float *)L->pinv, D * d)) != LQ_OK ||
            (s = upload(&h->null_basis, (const float *)L->null_basis, (D - d) * D)) != LQ_OK ||
            (s = upload(&h->byte_tables, (const float *)L->byte_tables, (D + 7) / 8 * 256 * d)) != LQ_OK)
            return s;
    }
    return upload(&out->dev, (const lq_lattice *)h, 1);
}

static void lattice_release(device_lattice *dl, lq_status *status) {
    lq_lattice *h = &dl->host;
    release(dl->dev, status);
    release(h->M, status);
    release(h->tree_column, status);
    release(h->rotation, status);
    release(h->r_columns, status);
    release(h->reach, status);
    release(h->pinv, status);
    release(h->null_basis, status);
    release(h->byte_tables, status);
}

static lq_status check_lattice(lq_encoder e, const lq_lattice *L) {
    if (!L || !L->M) return lq_fail(LQ_ERR_ARG, "cuda: lattice is not initialized");
    const int D = L->D, d = L->d;
    if (d < 1 || d >= D || D > LQ_LATTICE_MAX_D || d > LQ_LATTICE_MAX_SMALL_D || L->dpad < d ||
        L->dpad > 32)
        return lq_fail(LQ_ERR_ARG, "cuda: lattice has unsupported shape D = %d, d = %d, dpad = %d",
                       D, d, L->dpad);
    const int ready = e == LQ_ENCODER_EXACT
                          ? L->tree_column && L->rotation && L->r_columns && L->reach
                          : L->pinv && L->null_basis && L->byte_tables;
    if (!ready) return lq_fail(LQ_ERR_ARG, "cuda: lattice tables for the %s encoder are missing",
                               lq_encoder_name(e));
    return LQ_OK;
}

extern "C" int lq_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0;
}

extern "C" lq_status lq_cuda_encode(lq_encoder e, const lq_lattice *L, const float *w,
                                    size_t nblocks, uint64_t *codes, float *dist) {
    if (e == LQ_ENCODER_BRUTEFORCE)
        return lq_fail(LQ_ERR_UNSUPPORTED, "cuda: the bruteforce encoder has no GPU instance");
    if (e != LQ_ENCODER_EXACT && e != LQ_ENCODER_HEURISTIC)
        return lq_fail(LQ_ERR_ARG, "cuda: unknown encoder %d", (int)e);
    lq_status status = check_lattice(e, L);
    if (status != LQ_OK) return status;
    if (nblocks > 0 && (!w || !codes)) return lq_fail(LQ_ERR_ARG, "cuda: NULL blocks or codes");

    /* every declaration before the first goto: C++ forbids jumping past an initialization */
    device_lattice dl;
    memset(&dl, 0, sizeof dl);
    float *dw = NULL, *ddist = NULL;
    uint64_t *dcodes = NULL;
    const size_t d = (size_t)L->d, batch = nblocks < BATCH ? nblocks : BATCH;
    int ndev = 0;

    CUDA_TRY("cudaGetDeviceCount", cudaGetDeviceCount(&ndev));
    if (ndev == 0) {
        status = lq_fail(LQ_ERR_UNSUPPORTED, "cuda: cudaGetDeviceCount: no CUDA device");
        goto done;
    }
    if (nblocks == 0) goto done;
    if ((status = lattice_upload(L, e, &dl)) != LQ_OK) goto done;
    CUDA_TRY("cudaMalloc", cudaMalloc((void **)&dw, batch * d * sizeof(float)));
    CUDA_TRY("cudaMalloc", cudaMalloc((void **)&dcodes, batch * sizeof(uint64_t)));
    if (dist) CUDA_TRY("cudaMalloc", cudaMalloc((void **)&ddist, batch * sizeof(float)));

    for (size_t start = 0; start < nblocks; start += batch) {
        const size_t n = nblocks - start < batch ? nblocks - start : batch;
        CUDA_TRY("cudaMemcpy", cudaMemcpy(dw, w + start * d, n * d * sizeof(float), cudaMemcpyHostToDevice));
        if (e == LQ_ENCODER_EXACT) {
            const unsigned grid = (unsigned)((n + EXACT_THREADS - 1) / EXACT_THREADS);
            if (L->dpad <= 16) exact_kernel<16><<<grid, EXACT_THREADS>>>(dl.dev, dw, n, dcodes, ddist);
            else exact_kernel<32><<<grid, EXACT_THREADS>>>(dl.dev, dw, n, dcodes, ddist);
            CUDA_TRY("exact_kernel launch", cudaGetLastError());
            CUDA_TRY("exact_kernel", cudaDeviceSynchronize());
        } else {
            const size_t per_cta = HEURISTIC_THREADS / WARP;
            const unsigned grid = (unsigned)((n + per_cta - 1) / per_cta);
            heuristic_kernel<<<grid, HEURISTIC_THREADS>>>(dl.dev, dw, n, dcodes, ddist);
            CUDA_TRY("heuristic_kernel launch", cudaGetLastError());
            CUDA_TRY("heuristic_kernel", cudaDeviceSynchronize());
        }
        CUDA_TRY("cudaMemcpy", cudaMemcpy(codes + start, dcodes, n * sizeof(uint64_t), cudaMemcpyDeviceToHost));
        if (dist)
            CUDA_TRY("cudaMemcpy", cudaMemcpy(dist + start, ddist, n * sizeof(float), cudaMemcpyDeviceToHost));
    }

done:
    release(dw, &status);
    release(dcodes, &status);
    release(ddist, &status);
    lattice_release(&dl, &status);
    return status;
}
