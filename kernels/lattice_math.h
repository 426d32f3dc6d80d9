/* Arithmetic of the LiftQuant lattice encoders, shared by the CPU code and the CUDA kernels.
 *
 * Everything here is a pure inline function on plain arrays, compiled as __host__ __device__
 * under nvcc and as static inline C elsewhere, so the CPU unit tests exercise exactly the
 * arithmetic the GPU runs.
 *
 * Conventions (ALGORITHM.md §1–§2):
 *   M is d × D row-major (row i = coordinate i of the block, column j = lifted bit j).
 *   A code is a uint64_t: bit j set <=> y_j = +1, clear <=> y_j = −1.
 *   A codeword is c(y) = M y. Distances are full squared distances over the d coordinates. */
#ifndef LQ_LATTICE_MATH_H
#define LQ_LATTICE_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define LQ_HD __host__ __device__ __forceinline__
#else
#define LQ_HD static inline

#endif

#define LQ_LATTICE_MAX_D 48     /* lifted dimension: codes fit a uint64_t, tables stay small */
#define LQ_LATTICE_MAX_SMALL_D 32 /* block dimension */

/* y_j in {−1, +1} for bit j of code. */
LQ_HD float lq_code_sign(uint64_t code, int j) { return ((code >> j) & 1u) ? 1.0f : -1.0f; }

/* out = M y (d values). */
LQ_HD void lq_codeword(const float *M, int d, int D, uint64_t code, float *out) {
    for (int i = 0; i < d; i++) {
        float acc = 0.0f;
        for (int j = 0; j < D; j++) acc += M[i * D + j] * lq_code_sign(code, j);
        out[i] = acc;
    }
}

/* ‖w − M y‖². The reference every encoder is checked against. */
LQ_HD float lq_code_distance(const float *M, int d, int D, const float *w, uint64_t code) {
    float dist = 0.0f;
    for (int i = 0; i < d; i++) {
        float acc = 0.0f;
        for (int j = 0; j < D; j++) acc += M[i * D + j] * lq_code_sign(code, j);
        float e = w[i] - acc;
        dist += e * e;
    }
    return dist;
}

/* Sign pattern of v as a code; v_j > 0 → +1, v_j ≤ 0 → −1 (a zero maps to −1, which is the
 * bit the reference's packing gives its sign(0) = 0 as well, ALGORITHM.md §2.2). */
LQ_HD uint64_t lq_code_from_signs(const float *v, int D) {
    uint64_t code = 0;
    for (int j = 0; j < D; j++) code |= (uint64_t)(v[j] > 0.0f) << j;
    return code;
}

/* M y assembled from byte tables: table[b][v] (d floats) = Σ_{j in byte b} M[:, j] · y_j(v),
 * so a codeword costs ⌈D/8⌉ table rows instead of D columns. */
LQ_HD void lq_codeword_from_byte_tables(const float *byte_tables, int d, int D, uint64_t code,
                                        float *out) {
    int nbytes = (D + 7) / 8;
    for (int i = 0; i < d; i++) out[i] = 0.0f;
    for (int b = 0; b < nbytes; b++) {
        const float *row = byte_tables + ((size_t)b * 256 + ((code >> (8 * b)) & 0xffu)) * d;
        for (int i = 0; i < d; i++) out[i] += row[i];
    }
}

/* Lower bound on the squared residual of one partial row of the branch-and-bound search:
 * the unfixed columns can move the residual by at most `reach`, so what is left is at least
 * (|residual| − reach)₊². */
LQ_HD float lq_row_lower_bound(float residual, float reach) {
    float gap = (residual < 0.0f ? -residual : residual) - reach;
    return gap > 0.0f ? gap * gap : 0.0f;
}


/* One node of the exact search (exact_search.inc): both children of fixing column k of R
 * (rcol) to +1 and to −1 from the parent's residuals, and their lower bounds Σ_i
 * (|residual_i| − reach_i)₊². dp rows, zero-padded; the scalar CPU path and the CUDA kernel
 * run exactly this, the AVX2 path the same operations eight rows at a time. */
LQ_HD void lq_child_bounds(const float *parent, const float *rcol, const float *reach, int dp,
                           float *plus, float *minus, float *bounds) {
    float bp = 0.0f, bm = 0.0f;
    for (int i = 0; i < dp; i++) {
        plus[i] = parent[i] - rcol[i];
        minus[i] = parent[i] + rcol[i];
        bp += lq_row_lower_bound(plus[i], reach[i]);
        bm += lq_row_lower_bound(minus[i], reach[i]);
    }
    bounds[0] = bp;
    bounds[1] = bm;
}

/* Bounds of n nodes at once, the split exact search's inner loop (exact_search.inc): node z's
 * residual is base − T[:, z], T given by its rows (rows[i·n + z], i < d), and its bound is
 * Σ_i (|base_i − T_iz| − reach_i)₊², except that the rows exact_first … exact_first +
 * exact_rows − 1 (≤ 3 free columns each) use the exact one-row minimum min_v (|r| − v)² over the four values v of
 * row_values (what ±R_i,j summed over the free columns can reach, in absolute value):
 * the box bound is zero whenever |r| is inside the reach, the exact one rarely is.
 * Writes every node's bound to bounds, the nodes whose bound is below radius to below in
 * ascending order, and returns how many those are.
 * The scalar reference; encode_avx2.c computes the same sums eight nodes per register,
 * rows in the same order. */
LQ_HD float lq_row_exact_bound(float residual, const float *values) {
    float r = residual < 0.0f ? -residual : residual, best = INFINITY;
    for (int v = 0; v < 4; v++) {
        float g = r - values[v];
        best = fminf(best, g * g);
    }
    return best;
}

LQ_HD int lq_excess_bounds(const float *rows, int n, const float *base, const float *reach, int d,
                           int exact_first, int exact_rows, const float *row_values, float radius,
                           float *bounds, uint16_t *below) {
    for (int z = 0; z < n; z++) bounds[z] = 0.0f;
    for (int i = 0; i < d; i++) {
        const float *values = row_values + (size_t)(i - exact_first) * 4;
        const int exact = i >= exact_first && i < exact_first + exact_rows;
        for (int z = 0; z < n; z++) {
            float r = base[i] - rows[(size_t)i * n + z];
            bounds[z] += exact ? lq_row_exact_bound(r, values) : lq_row_lower_bound(r, reach[i]);
        }
    }
    int count = 0;
    for (int z = 0; z < n; z++)
        if (bounds[z] < radius) below[count++] = (uint16_t)z;
    return count;
}

#endif
