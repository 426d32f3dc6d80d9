/* liftquant kernels/: the binary (±1) matrix of a quantized linear layer at inference.
 *
 * A LiftQuant linear computes o = diag(s)·Wq·z (ALGORITHM.md §7.1 step 4): Wq is OC × K with
 * entries ±1, stored as bits (1 ↔ +1), z is the lifted activation (K floats) and s the
 * per-output-channel scale:
 *
 *     out[r] = s[r] · Σ_c (2·b[r][c] − 1) · z[c]
 *
 * Bits arrive in the file layout of ALGORITHM.md §4.4 (row-major, 8 per byte, LSB first,
 * K a multiple of 8). lq_binary_pack() repacks them once, at load time, into the layout the
 * fast kernels read; the file layout never depends on the CPU (DESIGN.md §3).
 *
 * Runtime layout (private to binary*.c; lq_binary_unpack() gives the file layout back). Rows
 * are taken 8 at a time ("tiles", the last one padded with zero rows) and K 4 at a time
 * ("groups"). Word [tile][group] is a uint32 whose nibble i belongs to row 8·tile + i and holds
 * that row's bits of elements 4·group … 4·group+3, bit 3 turned into a sign:
 *     n = Σ_i b[4g+i] << i  is stored as  n < 8 ? n : 8 | (15 − n)
 * so the 8 rows of a tile sit in the 8 lanes of an AVX2 register and bits 0–2 of each lane index
 * an 8-entry table (binary_math.h). Same size as the file: OC·K/8 bytes, plus the padding rows.
 *
 * GEMV kernels (T-MAC-style lookup tables): per call, every group of 4 activations gets the 16
 * signed partial sums of its 4 values; each row then adds one table entry per nibble, a quarter
 * of the adds of a bit-by-bit loop. The portable C kernel and the AVX2 kernel compute exactly
 * the same float operations in the same order, so their outputs are bit-identical; both differ
 * from the reference by rounding only: |fast − ref| ≲ (K/4 + 2)·2⁻²⁴·|s|·Σ|z| in the worst case,
 * ~3e-8·|s|·Σ|z| measured on Gaussian z. (Relative to |out| itself the difference can reach
 * ~5e-5, since ±1 sums cancel: |out| ~ √K·|z| while Σ|z| ~ K·|z|.)
 *
 * Measured (lq-bench-binary, one thread, 2-core AMD EPYC Zen 4 while another job held both
 * cores), ns per weight: reference 4.0, portable LUT 0.077–0.079, AVX2 LUT 0.017–0.018
 * (7 GB/s of weight bits), OpenBLAS f32 sgemv 0.050 (576×1536, in cache) and 0.20 (4096×9832,
 * 154 MiB streamed): AVX2 LUT is 2.8× and 12× the f32 GEMV.
 *
 * Threads: rows are taken in runs by OpenMP threads (lq_default_threads()) once a product has
 * PARALLEL_WEIGHTS weight-tokens (binary.c). On a machine whose cores are busy, OpenMP's
 * default spinning workers made 2 threads up to 10× slower than 1 at every join;
 * OMP_WAIT_POLICY=passive removed that (2 threads then ran as fast as 1 with no free core).
 *
 * Thread safety: a packed matrix is read-only after lq_binary_pack(), so any number of threads
 * may multiply with it at once. */
#ifndef LQ_BINARY_H
#define LQ_BINARY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* lq_base.h declares C functions but has no extern "C" */
#endif

#include "lq_base.h"

typedef struct lq_binary_matrix lq_binary_matrix;

/* Repacks OC × K file-layout bits (OC·K/8 bytes) for the CPU kernels. K must be a positive
 * multiple of 8, OC positive, OC·K/8 addressable; file_bits is not kept. */
lq_status lq_binary_pack(const uint8_t *file_bits, int out_features, int k, lq_binary_matrix **out);
void lq_binary_free(lq_binary_matrix *W);
int lq_binary_out_features(const lq_binary_matrix *W);
int lq_binary_k(const lq_binary_matrix *W);
/* Writes the file layout back (OC·K/8 bytes): the inverse of lq_binary_pack. */
lq_status lq_binary_unpack(const lq_binary_matrix *W, uint8_t *file_bits);

/* Which GEMV kernel runs. AUTO is AVX2 when the CPU has it and LQ_NO_SIMD is not set in the
 * environment (read at every call, so tests can flip it), else SCALAR. Asking for AVX2 on a
 * CPU without it is LQ_ERR_UNSUPPORTED. */
typedef enum { LQ_BINARY_AUTO = 0, LQ_BINARY_SCALAR, LQ_BINARY_AVX2 } lq_binary_kernel;

/* out[r] = scale[r]·Σ_c (2b[r][c] − 1)·z[c] for r < OC; scale NULL means 1. z has K floats,
 * out OC; out must not overlap z or scale. */
lq_status lq_binary_gemv(const lq_binary_matrix *W, const float *scale, const float *z, float *out);
lq_status lq_binary_gemv_with(const lq_binary_matrix *W, const float *scale, const float *z,
                              float *out, lq_binary_kernel kernel);

/* The plain reference on the file layout, bit by bit, accumulating in double so that it is the
 * more accurate side of every comparison. */
lq_status lq_binary_gemv_reference(const uint8_t *file_bits, int out_features, int k,
                                   const float *scale, const float *z, float *out);

/* Prefill: out[t][r] = scale[r]·Σ_c (2b[r][c] − 1)·z[t][c], z ntok × K and out ntok × OC,
 * row-major. Two algorithms:
 *   LUT      the GEMV's tables for every token; the AVX2 kernel decodes each weight word once
 *            for 4 tokens. Bit-identical to ntok calls of lq_binary_gemv.
 *   DEQUANT  rows of W expanded to ±1 floats a block at a time, multiplied with
 *            lq_gemm_f32_nt (OpenBLAS sgemm), then scaled: the same sums in another order.
 * AUTO is LUT. Measured with lq-bench-binary (one thread, 2-core Zen 4, ns per weight and
 * token, 576×1536 / 4096×9832): LUT 0.018/0.017 at 1 token and 0.011 from 4 tokens on;
 * DEQUANT 0.10 at 4, 0.040/0.042 at 16, 0.024/0.027 at 64, 0.020/0.029 at 256 — the LUT won
 * at every count. DEQUANT is kept for CPUs whose sgemm is well above this one's ~75 GFLOP/s. */
typedef enum { LQ_BINARY_GEMM_AUTO = 0, LQ_BINARY_GEMM_LUT, LQ_BINARY_GEMM_DEQUANT } lq_binary_gemm_algo;
lq_status lq_binary_gemm(const lq_binary_matrix *W, const float *scale, const float *z, int ntok,
                         float *out);
lq_status lq_binary_gemm_with(const lq_binary_matrix *W, const float *scale, const float *z,
                              int ntok, float *out, lq_binary_gemm_algo algo);

/* ---- CUDA ------------------------------------------------------------------------------------
 * The GEMV on the current CUDA device (kernels/cuda_binary.cu): a warp per 4 rows, lane l adding
 * bit l of each 32-bit word of a row; each output is scale·lq_bin_warp_row() of binary_math.h
 * bit for bit (compiled and its no-GPU path tested here; not yet run on a GPU). Without a usable device, or in a build without CUDA, every call fails with
 * LQ_ERR_UNSUPPORTED and a message starting "cuda:", so callers fall back to the CPU.
 *
 * A device matrix keeps the bits on the GPU (OC × ⌈K/32⌉ words); scale, z and out are host
 * arrays copied on every call. */
typedef struct lq_cuda_binary lq_cuda_binary;
lq_status lq_cuda_binary_upload(const uint8_t *file_bits, int out_features, int k,
                                lq_cuda_binary **out);
void lq_cuda_binary_free(lq_cuda_binary *W);
lq_status lq_cuda_binary_matrix_gemv(const lq_cuda_binary *W, const float *scale, const float *z,
                                     float *out);
/* Upload, multiply, free: one call for tests and one-off products. */
lq_status lq_cuda_binary_gemv(const uint8_t *file_bits, int out_features, int k,
                              const float *scale, const float *z, float *out);

/* ---- private to kernels/binary*.c -------------------------------------------------------- */
#ifdef LQ_BINARY_PRIVATE
struct lq_binary_matrix {
    int out_features, k;
    size_t tiles, groups;  /* ⌈OC/8⌉ and K/4 */
    uint32_t *words;       /* tiles × groups, the runtime layout above (64-byte aligned) */
};

/* For tokens b < ntok and tiles [t0, t1): acc[b·acc_stride + 8t + i] += the table values of
 * row 8t+i's nibbles g in [g0, g1), added in increasing g. Token b's tables start at
 * tables + b·table_stride, 16 floats per group in stored-nibble order (entry s + 8 = −entry s;
 * the AVX2 kernel reads only the first 8). */
void lq_binary_lut_avx2(const lq_binary_matrix *W, size_t t0, size_t t1, size_t g0, size_t g1,
                        const float *tables, size_t table_stride, int ntok, float *acc,
                        size_t acc_stride);
/* tables + 16g for groups [g0, g1) of z: lq_bin_half_table and its negation, bit for bit. */
void lq_binary_tables_avx2(const float *z, size_t g0, size_t g1, float *tables);
#endif

#ifdef __cplusplus
}
#endif

#endif
