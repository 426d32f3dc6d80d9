/* Preparing a mapping matrix M for the encoders: the reference null-space basis and
 * pseudo-inverse for the heuristic, byte tables for fast codewords, and the rotated,
 * column-ordered triangular form the exact branch and bound walks. All in double, then
 * stored as float. */
#include "lq_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lq_householder_qr(double *A, int rows, int cols, int nreflect, double *qt) {
    if (qt) {
        memset(qt, 0, sizeof(double) * (size_t)rows * rows);
        for (int i = 0; i < rows; i++) qt[i * rows + i] = 1.0;
    }
    double v[256];
    for (int k = 0; k < nreflect && k < rows - 1; k++) {
        /* dlarfg: x = A[k:, k]; β = −sign(x₀)‖x‖; v = (1, x₁/(x₀−β), …); τ = (β − x₀)/β;
         * no reflection at all when x[1:] is already zero. */
        double x0 = A[k * cols + k], tail = 0.0;
        for (int i = k + 1; i < rows; i++) tail += A[i * cols + k] * A[i * cols + k];
        if (tail == 0.0) continue;
        double norm = sqrt(x0 * x0 + tail);
        double beta = x0 >= 0.0 ? -norm : norm;
        double tau = (beta - x0) / beta;
        v[k] = 1.0;
        for (int i = k + 1; i < rows; i++) v[i] = A[i * cols + k] / (x0 - beta);
        /* A ← (I − τvvᵀ) A, only rows k.. are touched */
        for (int c = 0; c < cols; c++) {
            double dot = 0.0;
            for (int i = k; i < rows; i++) dot += v[i] * A[i * cols + c];
            dot *= tau;
            for (int i = k; i < rows; i++) A[i * cols + c] -= dot * v[i];
        }
        for (int i = k + 1; i < rows; i++) A[i * cols + k] = 0.0; /* exact zeros below R */
        A[k * cols + k] = beta;
        if (qt) /* Qᵀ ← H_k Qᵀ */
            for (int c = 0; c < rows; c++) {
                double dot = 0.0;
                for (int i = k; i < rows; i++) dot += v[i] * qt[i * rows + c];
                dot *= tau;
                for (int i = k; i < rows; i++) qt[i * rows + c] -= dot * v[i];
            }
    }
}

void lq_lattice_free(lq_lattice *L) {
    if (!L) return;
    free(L->M);
    free(L->pinv);
    free(L->null_basis);
    free(L->null_padded);
    free(L->byte_tables);
    free(L->tree_column);
    free(L->rotation);
    free(L->r_columns);
    free(L->reach);
    free(L->split_hi_sums);
    free(L->split_lo_sums);
    free(L->split_hi_rows);
    free(L->split_lo_rows);
    memset(L, 0, sizeof *L);
}

/* Heuristic encoder tables: M⁺ and the null-space basis from one Householder QR of Mᵀ.
 * Mᵀ = Q [R1; 0] gives M⁺ = Q[:, :d] R1⁻ᵀ and null(M) = span(Q[:, d:]). */
static lq_status prepare_heuristic(lq_lattice *L, const double *Md) {
    int D = L->D, d = L->d;
    double *A = malloc(sizeof(double) * D * d), *qt = malloc(sizeof(double) * D * D);
    if (!A || !qt) {
        free(A);
        free(qt);
        return lq_fail(LQ_ERR_NOMEM, "lattice %d/%d: out of memory", D, d);
    }
    for (int j = 0; j < D; j++)
        for (int i = 0; i < d; i++) A[j * d + i] = Md[i * D + j];
    lq_householder_qr(A, D, d, d, qt);
    double rmax = 0.0, rmin = INFINITY;
    for (int i = 0; i < d; i++) {
        double r = fabs(A[i * d + i]);
        if (r > rmax) rmax = r;
        if (r < rmin) rmin = r;
    }
    if (!(rmin > 1e-9 * rmax) || !(rmax > 0.0)) {
        free(A);
        free(qt);
        return lq_fail(LQ_ERR_NUMERIC, "lattice %d/%d: M does not have full row rank", D, d);
    }
    memset(L->null_padded, 0, sizeof(float) * (D - d) * LQ_NULL_STRIDE);
    for (int r = 0; r < D - d; r++)
        for (int c = 0; c < D; c++)
            L->null_basis[r * D + c] = L->null_padded[r * LQ_NULL_STRIDE + c] = (float)qt[(d + r) * D + c];
    /* X = R1⁻ᵀ (d × d, lower triangular): solve R1ᵀ X = I column by column */
    double X[LQ_LATTICE_MAX_SMALL_D * LQ_LATTICE_MAX_SMALL_D];
    for (int c = 0; c < d; c++)
        for (int i = 0; i < d; i++) {
            double s = (i == c) ? 1.0 : 0.0;
            for (int k = 0; k < i; k++) s -= A[k * d + i] * X[k * d + c];
            X[i * d + c] = s / A[i * d + i];
        }
    for (int j = 0; j < D; j++)
        for (int c = 0; c < d; c++) {
            double s = 0.0;
            for (int k = 0; k < d; k++) s += qt[k * D + j] * X[k * d + c];
            L->pinv[j * d + c] = (float)s;
        }
    free(A);
    free(qt);
    return LQ_OK;
}

static void prepare_byte_tables(lq_lattice *L) {
    int D = L->D, d = L->d, nbytes = (D + 7) / 8;
    for (int b = 0; b < nbytes; b++)
        for (int v = 0; v < 256; v++) {
            float *row = L->byte_tables + ((size_t)b * 256 + v) * d;
            for (int i = 0; i < d; i++) {
                double s = 0.0;
                for (int t = 0; t < 8 && 8 * b + t < D; t++)
                    s += L->M[i * D + 8 * b + t] * (((v >> t) & 1) ? 1.0 : -1.0);
                row[i] = (float)s;
            }
        }
}

/* Exact-search tables. The tree fixes columns from level D−1 down to 0; a row of R is
 * complete (its residual exact) once every column at or right of its diagonal is fixed, so
 * the D−d columns right of the triangle are decided first with box bounds only, and the
 * triangle is then a classic sphere decoder. Column order: pivoted QR puts the columns that
 * carry most of what is left last in the triangle, so the rows completed first have large
 * diagonals and prune hardest; the excess columns are taken largest first. */
static void prepare_exact(lq_lattice *L, const double *Md) {
    int D = L->D, d = L->d, dp = L->dpad;
    double *A = malloc(sizeof(double) * d * D);
    double qt[LQ_LATTICE_MAX_SMALL_D * LQ_LATTICE_MAX_SMALL_D];
    int order[LQ_LATTICE_MAX_D], used[LQ_LATTICE_MAX_D] = {0};
    memcpy(A, Md, sizeof(double) * d * D);
    /* greedy pivoted Gram–Schmidt on a working copy to choose the triangle's columns */
    double *W = malloc(sizeof(double) * d * D);
    memcpy(W, Md, sizeof(double) * d * D);
    for (int t = 0; t < d; t++) {
        int best = -1;
        double bestn = -1.0;
        for (int j = 0; j < D; j++) {
            if (used[j]) continue;
            double n = 0.0;
            for (int i = 0; i < d; i++) n += W[i * D + j] * W[i * D + j];
            if (n > bestn) bestn = n, best = j;
        }
        used[best] = 1;
        /* triangle position d−1−t: the strongest remaining pivot goes to the bottom row */
        order[d - 1 - t] = best;
        double nn = sqrt(bestn);
        double q[LQ_LATTICE_MAX_SMALL_D];
        for (int i = 0; i < d; i++) q[i] = W[i * D + best] / nn;
        for (int j = 0; j < D; j++) {
            double dot = 0.0;
            for (int i = 0; i < d; i++) dot += q[i] * W[i * D + j];
            for (int i = 0; i < d; i++) W[i * D + j] -= dot * q[i];
        }
    }
    /* excess columns, by descending norm, are fixed first: positions D−1, D−2, … */
    int pos = D - 1;
    for (int t = 0; t < D - d; t++) {
        int best = -1;
        double bestn = -1.0;
        for (int j = 0; j < D; j++) {
            if (used[j]) continue;
            double n = 0.0;
            for (int i = 0; i < d; i++) n += Md[i * D + j] * Md[i * D + j];
            if (n > bestn) bestn = n, best = j;
        }
        used[best] = 1;
        order[pos--] = best;
    }
    free(W);
    for (int k = 0; k < D; k++) {
        L->tree_column[k] = order[k];
        for (int i = 0; i < d; i++) A[i * D + k] = Md[i * D + order[k]];
    }
    lq_householder_qr(A, d, D, d, qt);
    memset(L->rotation, 0, sizeof(float) * dp * d);
    for (int i = 0; i < d; i++)
        for (int c = 0; c < d; c++) L->rotation[i * d + c] = (float)qt[i * d + c];
    memset(L->r_columns, 0, sizeof(float) * D * dp);
    for (int k = 0; k < D; k++)
        for (int i = 0; i < d; i++) L->r_columns[k * dp + i] = (float)A[i * D + k];
    memset(L->reach, 0, sizeof(float) * (D + 1) * dp);
    for (int k = 1; k <= D; k++)
        for (int i = 0; i < d; i++)
            L->reach[k * dp + i] = L->reach[(k - 1) * dp + i] + fabsf(L->r_columns[(k - 1) * dp + i]);
    free(A);
}

/* One group of the split search's tables: for every pattern z of the n = 2^bits levels
 * first … first+bits−1, Σ_t y_t R_{first+t} (bit t of z set: y_t = +1), summed in double. */
static void tabulate_excess_group(const lq_lattice *L, int first, int bits, float *sums, float *rows) {
    const int d = L->d, dp = L->dpad, n = 1 << bits;
    for (int z = 0; z < n; z++)
        for (int i = 0; i < dp; i++) {
            double s = 0.0;
            for (int t = 0; t < bits; t++)
                s += ((z >> t) & 1 ? 1.0 : -1.0) * L->r_columns[(size_t)(first + t) * dp + i];
            float v = i < d ? (float)s : 0.0f;
            sums[(size_t)z * dp + i] = v;
            rows[(size_t)i * n + z] = v;
        }
}

/* The split search pays 2^(D−split_level) bounds per block, about a nanosecond each; below
 * 2^6 patterns the depth-first walk is as fast, above 2^18 the tables and the enumeration are
 * too big. Besides the excess columns it enumerates the first triangle level: measured on the
 * shipped lattices (BENCHMARKS.md §1), that halves the patterns left for depth-first search
 * and is 5–20 % faster overall than stopping at the excess levels; a second triangle level
 * costs more enumeration than it saves. */
static lq_status prepare_split(lq_lattice *L) {
    const int dp = L->dpad;
    const int level = L->d > 1 ? L->d - 1 : L->d, enumerated = L->D - level;
    if (enumerated < 2 * LQ_SPLIT_MIN_GROUP_BITS || enumerated > 2 * LQ_SPLIT_MAX_GROUP_BITS) return LQ_OK;
    const int a = enumerated / 2, b = enumerated - a; /* the low group's loop is the inner one: the longer */
    L->split_hi_sums = malloc(sizeof(float) * ((size_t)dp << a));
    L->split_hi_rows = malloc(sizeof(float) * ((size_t)dp << a));
    L->split_lo_sums = malloc(sizeof(float) * ((size_t)dp << b));
    L->split_lo_rows = malloc(sizeof(float) * ((size_t)dp << b));
    if (!L->split_hi_sums || !L->split_hi_rows || !L->split_lo_sums || !L->split_lo_rows)
        return lq_fail(LQ_ERR_NOMEM, "lattice %d/%d: out of memory", L->D, L->d);
    tabulate_excess_group(L, L->D - a, a, L->split_hi_sums, L->split_hi_rows);
    tabulate_excess_group(L, level, b, L->split_lo_sums, L->split_lo_rows);
    /* row i's free columns below the split are i … level−1: for the last three rows above it,
       every |Σ ±R_ik| (the first sign fixed: the set is symmetric), padded by repetition */
    L->split_exact_rows = level < 3 ? level : 3;
    for (int r = 0; r < L->split_exact_rows; r++) {
        const int i = level - L->split_exact_rows + r, free_cols = level - i;
        for (int v = 0; v < 4; v++) {
            const int pattern = v % (1 << (free_cols - 1));
            double s = 0.0;
            for (int t = 0; t < free_cols; t++)
                s += (t > 0 && ((pattern >> (t - 1)) & 1) ? -1.0 : 1.0) * L->r_columns[(size_t)(i + t) * dp + i];
            L->split_row_values[r * 4 + v] = (float)fabs(s);
        }
    }
    L->split_level = level;
    L->split_hi_bits = a;
    L->split_lo_bits = b;
    return LQ_OK;
}

lq_status lq_lattice_init(lq_lattice *L, int D, int d, const float *M) {
    memset(L, 0, sizeof *L);
    if (d < 1 || d > LQ_LATTICE_MAX_SMALL_D || D <= d || D > LQ_LATTICE_MAX_D)
        return lq_fail(LQ_ERR_UNSUPPORTED,
                       "lattice %d/%d: need 1 <= d <= %d and d < D <= %d", D, d,
                       LQ_LATTICE_MAX_SMALL_D, LQ_LATTICE_MAX_D);
    for (int i = 0; i < d * D; i++)
        if (!isfinite(M[i]))
            return lq_fail(LQ_ERR_NUMERIC, "lattice %d/%d: M[%d][%d] is not finite", D, d,
                           i / D, i % D);
    L->D = D;
    L->d = d;
    L->dpad = (d + 7) / 8 * 8;
    int nbytes = (D + 7) / 8;
    L->M = malloc(sizeof(float) * d * D);
    L->pinv = malloc(sizeof(float) * D * d);
    L->null_basis = malloc(sizeof(float) * (D - d) * D);
    L->null_padded = malloc(sizeof(float) * (D - d) * LQ_NULL_STRIDE);
    L->byte_tables = malloc(sizeof(float) * nbytes * 256 * d);
    L->tree_column = malloc(sizeof(int) * D);
    L->rotation = malloc(sizeof(float) * L->dpad * d);
    L->r_columns = malloc(sizeof(float) * D * L->dpad);
    L->reach = malloc(sizeof(float) * (D + 1) * L->dpad);
    double *Md = malloc(sizeof(double) * d * D);
    if (!L->M || !L->pinv || !L->null_basis || !L->null_padded || !L->byte_tables || !L->tree_column ||
        !L->rotation || !L->r_columns || !L->reach || !Md) {
        free(Md);
        lq_lattice_free(L);
        return lq_fail(LQ_ERR_NOMEM, "lattice %d/%d: out of memory", D, d);
    }
    memcpy(L->M, M, sizeof(float) * d * D);
    for (int i = 0; i < d * D; i++) Md[i] = M[i];
    lq_status st = prepare_heuristic(L, Md);
    if (st != LQ_OK) {
        free(Md);
        lq_lattice_free(L);
        return st;
    }
    prepare_byte_tables(L);
    prepare_exact(L, Md);
    free(Md);
    st = prepare_split(L);
    if (st != LQ_OK) lq_lattice_free(L);
    return st;
}
