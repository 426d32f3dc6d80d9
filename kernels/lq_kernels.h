/* liftquant kernels/: the lifted-space encoders (nearest ±1 code to a block) and the small
 * dense linear algebra they are prepared with. Shapes are explicit; every fast path has the
 * scalar reference beside it (lq_encode_bruteforce), and the tests hold them equal. */
#ifndef LQ_KERNELS_H
#define LQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "lq_base.h"
#include "lattice_math.h"

#define LQ_NULL_STRIDE (LQ_LATTICE_MAX_D + 8)
/* group sizes of the split exact search: 2^3 fills one 8-lane register, 2^9 floats per row
 * keep a group's tables in L1 */
#define LQ_SPLIT_MIN_GROUP_BITS 3
#define LQ_SPLIT_MAX_GROUP_BITS 9

/* A mapping matrix M (d × D) with everything the encoders precompute from it. */
typedef struct {
    int D, d;
    float *M;            /* d × D row-major, the matrix itself */

    /* heuristic encoder, ALGORITHM.md §2.2 */
    float *pinv;         /* D × d: M⁺ = Mᵀ(MMᵀ)⁻¹ */
    float *null_basis;   /* (D−d) × D: rows span null(M), the Householder-QR complement of
                            Mᵀ with LAPACK's dlarfg sign convention (the reference basis) */
    float *null_padded;  /* (D−d) × LQ_NULL_STRIDE: the same rows, zero-padded for vector loads */
    float *byte_tables;  /* ⌈D/8⌉ × 256 × d: Σ_{j in byte b} M[:, j]·y_j for each byte value */

    /* exact encoder: branch and bound in a rotated basis where M becomes upper trapezoidal */
    int dpad;            /* d rounded up to 8 lanes; padding rows are zero */
    int *tree_column;    /* D: tree level k fixes original column tree_column[k] */
    float *rotation;     /* dpad × d: Qᵀ, rotates a block into the R basis */
    float *r_columns;    /* D × dpad: column k of R = Qᵀ M[:, tree_column[k]] (zeros below row k) */
    float *reach;        /* (D+1) × dpad: reach[k][i] = Σ_{j<k} |R_ij|, how far the columns not
                            yet fixed at level k can still move row i */

    /* split exact search (exact_search.inc): levels split_level … D−1 are enumerated, cut
       into a low group of b levels (split_level … split_level+b−1) and a high group of a
       levels (D−a … D−1), each group's signed column sums Σ_k R_k·y_k tabulated for every
       pattern z (bit t of z = y at the group's t-th level, set = +1); the levels below are
       searched depth-first. a = b = 0 (tables NULL) when the lattice is outside the split's
       range: then the search is depth-first throughout. Tests and benchmarks zero
       split_hi_bits to force the depth-first search. */
    int split_level, split_hi_bits, split_lo_bits;
    float *split_hi_sums, *split_lo_sums; /* 2^a × dpad and 2^b × dpad */
    float *split_hi_rows, *split_lo_rows; /* the same transposed: dpad × 2^a and dpad × 2^b */
    /* below split_level row i < split_level has split_level − i free columns; the
       split_exact_rows rows just above it (≤ 3 free columns) are bounded exactly by the
       enumeration from the four absolute values their free columns can sum to */
    int split_exact_rows;
    float split_row_values[3 * 4];
} lq_lattice;

/* Validates M (finite, full row rank, 1 ≤ d < D ≤ LQ_LATTICE_MAX_D, d ≤ 32) and builds the
 * tables. On failure L is left empty and safe to free. */
lq_status lq_lattice_init(lq_lattice *L, int D, int d, const float *M);
void lq_lattice_free(lq_lattice *L);

/* Counters an encoder can report (summed over blocks); NULL to skip. */
typedef struct {
    uint64_t nodes;      /* exact: tree nodes whose bound was evaluated */
    uint64_t candidates; /* heuristic: distinct candidate codes scored */
} lq_encode_stats;

/* Each encoder maps nblocks blocks (w: nblocks × d, row-major) to codes, and writes
 * ‖w − M y‖² to dist when dist is non-NULL. Blocks are independent; both cores are used.
 *
 * Exact: returns a code at minimum distance (provably: branch and bound with the row
 * bounds of lattice_math.h; float rounding can only matter between codes whose distances
 * agree to ~1e-6 relative, and then either is returned). */
lq_status lq_encode_exact(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                     float *dist, lq_encode_stats *stats);
/* Heuristic (§2.2): best of sign(M⁺w + Nᵀz) over all z ∈ {±1}^(D−d). */
lq_status lq_encode_heuristic(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                         float *dist, lq_encode_stats *stats);
/* Every code within `window` of the nearest one for one block, found by the exact branch
 * and bound with its radius widened by window: writes up to cap codes and distances (the
 * nearest always among them), returns how many qualified (may exceed cap; then the cap
 * nearest-found are kept). */
size_t lq_exact_candidates(const lq_lattice *L, const float *w, float window, uint64_t *codes,
                           float *dist, size_t cap, uint64_t *nodes);
/* The heuristic's candidate set for one block (consecutive duplicates removed): writes up to
 * cap codes and their distances, returns how many there are (may exceed cap). */
size_t lq_heuristic_candidates(const lq_lattice *L, const float *w, uint64_t *codes, float *dist,
                               size_t cap);
/* Scalar reference: all 2^D codes, first minimum in code order. For tests, D ≤ 24. */
lq_status lq_encode_bruteforce(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                          float *dist);

typedef enum { LQ_ENCODER_EXACT, LQ_ENCODER_HEURISTIC, LQ_ENCODER_BRUTEFORCE } lq_encoder;
const char *lq_encoder_name(lq_encoder e);
lq_status lq_encoder_from_name(const char *name, lq_encoder *out);
lq_status lq_encode(lq_encoder e, const lq_lattice *L, const float *w, size_t nblocks,
               uint64_t *codes, float *dist, lq_encode_stats *stats);

/* Dense helpers (double precision, small matrices) used to prepare lattices and by training. */
/* Householder triangularization with LAPACK's dlarfg convention: applies `nreflect`
 * reflectors to A (rows × cols, row-major) in place, leaving R, and writes Qᵀ
 * (rows × rows) = H_{n−1}⋯H_0 to qt when non-NULL. */
void lq_householder_qr(double *A, int rows, int cols, int nreflect, double *qt);

#endif
