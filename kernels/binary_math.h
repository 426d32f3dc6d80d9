/* Arithmetic of the binary (±1) GEMV, shared by the CPU kernels and the CUDA kernel.
 *
 * Pure inline functions, __host__ __device__ under nvcc and static inline C elsewhere
 * (LQ_HD, lattice_math.h), so the CPU tests exercise the arithmetic the GPU runs: the bit
 * addressing of the file layout, the signed term (2b − 1)·z, the 4-activation lookup tables of
 * the CPU LUT kernels, and the whole per-row sum of the CUDA kernel in its lane order.
 *
 * File layout (ALGORITHM.md §4.4): the OC × K bit matrix, row-major and flattened, 8 bits per
 * byte LSB first (flat element 8m + i is bit i of byte m), bit 1 ↔ +1; K is a multiple of 8,
 * so every row starts on a byte. */
#ifndef LQ_BINARY_MATH_H
#define LQ_BINARY_MATH_H

#include <stddef.h>
#include <stdint.h>

#include "lattice_math.h" /* LQ_HD */

/* Activations per lookup table of the CPU LUT kernels: a nibble of weight bits indexes a table
 * of 16 partial sums. 4 divides 8, so a group never straddles a byte of the file layout. */
#define LQ_BIN_GROUP 4
#define LQ_BIN_TABLE 16
/* Rows whose nibbles share one 32-bit word of the CPU layout (one AVX2 register of lanes). */
#define LQ_BIN_TILE 8
/* Lanes of the CUDA kernel: a row is read as 32-bit words, lane l owning bit l of each. */
#define LQ_BIN_WARP 32

/* Bit c of row r in the file layout. */
LQ_HD uint32_t lq_bin_file_bit(const uint8_t *bits, size_t k, size_t r, size_t c) {
    const size_t flat = r * k + c;
    return (uint32_t)(bits[flat >> 3] >> (flat & 7)) & 1u;
}

/* (2b − 1)·z, computed as a sign flip: multiplying by ±1 is exact, so the CPU and GPU need not
 * agree on how it is done, but a flip has no multiply for a compiler to fuse. */
LQ_HD float lq_bin_signed(uint32_t bit, float z) { return bit ? z : -z; }

/* Nibble j of row r (elements 4j … 4j+3, element 4j+i in bit i): half of a file byte. */
LQ_HD uint32_t lq_bin_file_nibble(const uint8_t *bits, size_t k, size_t r, size_t j) {
    return (uint32_t)(bits[r * (k / 8) + j / 2] >> (4 * (j & 1))) & 0xfu;
}

/* Word w of row r as the CUDA kernel holds it: elements 32w … 32w+31, element 32w+i in bit i
 * (the file's bytes read little-endian); bits past the end of the row are 0. */
LQ_HD uint32_t lq_bin_file_word(const uint8_t *bits, size_t k, size_t r, size_t w) {
    const size_t row_bytes = k / 8, first = 4 * w;
    uint32_t word = 0;
    for (size_t b = 0; b < 4 && first + b < row_bytes; b++)
        word |= (uint32_t)bits[r * row_bytes + first + b] << (8 * b);
    return word;
}

/* The first half of a group's table of partial sums: table[n] = Σ_i (2·bit_i(n) − 1)·z[i] for
 * n < 8, computed as (±z0 ± z1) + (−z2 ± z3). The other half follows exactly by symmetry:
 * table[15 − n] = (∓z0 ∓ z1) + (z2 ∓ z3) = −table[n], rounding being symmetric (a zero may
 * change sign, which no sum starting from +0 can see). */
LQ_HD void lq_bin_half_table(const float *z, float *table) {
    const float lo[4] = {-z[0] - z[1], z[0] - z[1], -z[0] + z[1], z[0] + z[1]};
    const float hi0 = -z[2] - z[3], hi1 = z[2] - z[3];
    for (int m = 0; m < 4; m++) {
        table[m] = lo[m] + hi0;
        table[4 + m] = lo[m] + hi1;
    }
}

/* Nibble as stored in the CPU layout: bit 3 is a sign and bits 0–2 index the first half of the
 * table, which by table[15 − n] = −table[n] holds every value:
 *     stored = n < 8 ? n : 8 | (15 − n),   table[n] = (stored & 8 ? −1 : 1)·table[stored & 7].
 * The AVX2 kernel then needs one 8-lane permute per lookup instead of two and a blend. */
LQ_HD uint32_t lq_bin_nibble_store(uint32_t n) { return n < 8 ? n : 8u | (15u - n); }
LQ_HD uint32_t lq_bin_nibble_load(uint32_t s) { return s < 8 ? s : 15u - (s & 7u); }

/* What lane `lane` of the CUDA kernel adds up for one row: its bit of every word, in word
 * order, skipping elements past k. `words` are the row's lq_bin_file_word()s. */
LQ_HD float lq_bin_lane_sum(const uint32_t *words, size_t k, const float *z, int lane) {
    float acc = 0.0f;
    const size_t nwords = (k + 31) / 32;
    for (size_t w = 0; w < nwords; w++) {
        const size_t c = 32 * w + (size_t)lane;
        if (c < k) acc += lq_bin_signed((words[w] >> lane) & 1u, z[c]);
    }
    return acc;
}

/* The warp's tree reduction in the order __shfl_down_sync gives: at offset o lane l adds lane
 * l + o. partial[] is overwritten; the result is what lane 0 ends with. */
LQ_HD float lq_bin_warp_reduce(float *partial) {
    for (int off = LQ_BIN_WARP / 2; off > 0; off /= 2)
        for (int l = 0; l < off; l++) partial[l] = partial[l] + partial[l + off];
    return partial[0];
}

/* One row of the CUDA GEMV, serialised: lanes in turn, then the tree. The GPU's output equals
 * scale·lq_bin_warp_row(...) bit for bit. */
LQ_HD float lq_bin_warp_row(const uint32_t *words, size_t k, const float *z) {
    float partial[LQ_BIN_WARP];
    for (int l = 0; l < LQ_BIN_WARP; l++) partial[l] = lq_bin_lane_sum(words, k, z, l);
    return lq_bin_warp_reduce(partial);
}

#endif
