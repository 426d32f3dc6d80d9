/* Binary (±1) GEMV and GEMM of a quantized linear layer (lq_binary.h): repacking, the scalar
 * reference, the portable LUT kernel, the threaded driver and the prefill GEMM. The AVX2 LUT
 * kernel is in binary_avx2.c, compiled for AVX2 and picked at run time. */
#define LQ_BINARY_PRIVATE
#include "lq_binary.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "binary_math.h"
#include "lq_blas.h"

/* Weight-tokens (OC·K·ntok) from which a product is split over threads. Waking the second
 * thread costs a few microseconds on an idle machine and much more when the cores are busy;
 * at ~0.017 ns per weight per core (measured, lq-bench-binary) 2^21 are ~35 µs of work. The
 * thread count depends only on the shape, and rows are summed the same way in any split, so a
 * layer's output never changes with load. */
#define PARALLEL_WEIGHTS ((size_t)1 << 21)

/* Groups whose tables are consumed in one pass over a run of rows: 4096 groups are 256 KiB
 * of tables, which stay in the L2 cache while every row streams past them. Chunking keeps
 * each row's additions in group order, so it does not change any result. */
#define GROUP_CHUNK ((size_t)4096)

static lq_status check_shape(const char *who, int out_features, int k) {
    if (out_features <= 0)
        return lq_fail(LQ_ERR_ARG, "%s: out_features = %d must be positive", who, out_features);
    if (k <= 0 || k % 8 != 0)
        return lq_fail(LQ_ERR_ARG,
                       "%s: k = %d must be a positive multiple of 8 (the file layout packs whole bytes per row)",
                       who, k);
    /* the runtime layout pads rows to a multiple of 8: that product must fit as well */
    const size_t rows = ((size_t)out_features + 7) / 8 * 8;
    if (rows > SIZE_MAX / (size_t)k / sizeof(float))
        return lq_fail(LQ_ERR_RANGE, "%s: %d × %d matrix is too large", who, out_features, k);
    return LQ_OK;
}

/* ---- layout --------------------------------------------------------------------------------- */

lq_status lq_binary_pack(const uint8_t *file_bits, int out_features, int k, lq_binary_matrix **out) {
    if (!out) return lq_fail(LQ_ERR_ARG, "lq_binary_pack: NULL result pointer");
    *out = NULL;
    lq_status s = check_shape("lq_binary_pack", out_features, k);
    if (s != LQ_OK) return s;
    if (!file_bits) return lq_fail(LQ_ERR_ARG, "lq_binary_pack: NULL bits");

    lq_binary_matrix *W = calloc(1, sizeof *W);
    if (!W) return lq_fail(LQ_ERR_NOMEM, "lq_binary_pack: out of memory");
    W->out_features = out_features;
    W->k = k;
    W->tiles = ((size_t)out_features + LQ_BIN_TILE - 1) / LQ_BIN_TILE;
    W->groups = (size_t)k / LQ_BIN_GROUP;
    const size_t bytes = (W->tiles * W->groups * sizeof(uint32_t) + 63) / 64 * 64;
    W->words = aligned_alloc(64, bytes);
    if (!W->words) {
        free(W);
        return lq_fail(LQ_ERR_NOMEM, "lq_binary_pack: out of memory for %d × %d bits", out_features, k);
    }
    const size_t OC = (size_t)out_features, K = (size_t)k;
    for (size_t t = 0; t < W->tiles; t++) {
        uint32_t *row = W->words + t * W->groups;
        for (size_t g = 0; g < W->groups; g++) {
            uint32_t word = 0;
            for (size_t i = 0; i < LQ_BIN_TILE; i++) {
                const size_t r = t * LQ_BIN_TILE + i;
                /* padding rows are 0 → stored 0: finite table entries nobody reads */
                if (r < OC) word |= lq_bin_nibble_store(lq_bin_file_nibble(file_bits, K, r, g)) << (4 * i);
            }
            row[g] = word;
        }
    }
    *out = W;
    return LQ_OK;
}

void lq_binary_free(lq_binary_matrix *W) {
    if (!W) return;
    free(W->words);
    free(W);
}

int lq_binary_out_features(const lq_binary_matrix *W) { return W ? W->out_features : 0; }
int lq_binary_k(const lq_binary_matrix *W) { return W ? W->k : 0; }

lq_status lq_binary_unpack(const lq_binary_matrix *W, uint8_t *file_bits) {
    if (!W || !file_bits) return lq_fail(LQ_ERR_ARG, "lq_binary_unpack: NULL matrix or bits");
    const size_t row_bytes = (size_t)W->k / 8;
    for (size_t r = 0; r < (size_t)W->out_features; r++) {
        const uint32_t *tile = W->words + (r / LQ_BIN_TILE) * W->groups;
        const unsigned shift = 4 * (unsigned)(r % LQ_BIN_TILE);
        for (size_t m = 0; m < row_bytes; m++) {
            const uint32_t lo = lq_bin_nibble_load((tile[2 * m] >> shift) & 0xfu);
            const uint32_t hi = lq_bin_nibble_load((tile[2 * m + 1] >> shift) & 0xfu);
            file_bits[r * row_bytes + m] = (uint8_t)(lo | hi << 4);
        }
    }
    return LQ_OK;
}

/* ---- reference ---------------------------------------------------------------------------- */

lq_status lq_binary_gemv_reference(const uint8_t *file_bits, int out_features, int k,
                                   const float *scale, const float *z, float *out) {
    lq_status s = check_shape("lq_binary_gemv_reference", out_features, k);
    if (s != LQ_OK) return s;
    if (!file_bits || !z || !out)
        return lq_fail(LQ_ERR_ARG, "lq_binary_gemv_reference: NULL bits, z or out");
    for (size_t r = 0; r < (size_t)out_features; r++) {
        double acc = 0.0;
        for (size_t c = 0; c < (size_t)k; c++)
            acc += (double)lq_bin_signed(lq_bin_file_bit(file_bits, (size_t)k, r, c), z[c]);
        out[r] = (float)(scale ? (double)scale[r] * acc : acc);
    }
    return LQ_OK;
}

/* ---- LUT GEMV ------------------------------------------------------------------------------ */

/* Tables of groups [g0, g1) in stored-nibble order: lq_bin_half_table, then its negation,
 * which is what the AVX2 kernel gets with its sign flip. lq_binary_tables_avx2 computes the same
 * roundings two registers at a time: 0.8 ns a group against 4.3 here (measured), where the
 * 16 scalar stores alone would cost the AVX2 GEMV of a 576-row layer a sixth of its time. */
static void build_tables(const float *z, size_t g0, size_t g1, float *tables) {
    for (size_t g = g0; g < g1; g++) {
        float *t = tables + g * LQ_BIN_TABLE;
        lq_bin_half_table(z + g * LQ_BIN_GROUP, t);
        for (int m = 0; m < 8; m++) t[8 + m] = -t[m];
    }
}

/* The portable kernel: the AVX2 kernel's arithmetic one lane at a time, token by token
 * (lq_binary_lut_avx2 has the same contract). */
static void lut_scalar(const lq_binary_matrix *W, size_t t0, size_t t1, size_t g0, size_t g1,
                       const float *tables, size_t table_stride, int ntok, float *acc,
                       size_t acc_stride) {
    for (int b = 0; b < ntok; b++)
        for (size_t t = t0; t < t1; t++) {
            const uint32_t *words = W->words + t * W->groups;
            float *out = acc + (size_t)b * acc_stride + t * LQ_BIN_TILE;
            float a[LQ_BIN_TILE];
            memcpy(a, out, sizeof a);
            for (size_t g = g0; g < g1; g++) {
                const uint32_t word = words[g];
                const float *tab = tables + (size_t)b * table_stride + g * LQ_BIN_TABLE;
                for (int i = 0; i < LQ_BIN_TILE; i++) a[i] += tab[(word >> (4 * i)) & 0xfu];
            }
            memcpy(out, a, sizeof a);
        }
}

/* Tokens whose tables are built at once: 16 × 64 bytes per group (2.5 MiB at K = 9832). */
#define TOKEN_BLOCK 16

static int product_threads(const lq_binary_matrix *W, int ntok) {
    const size_t weights = W->tiles * LQ_BIN_TILE * (size_t)W->k * (size_t)ntok;
    if (weights < PARALLEL_WEIGHTS || W->tiles < 2) return 1;
    const int n = lq_default_threads();
    return (size_t)n > W->tiles ? (int)W->tiles : n;
}

/* out[t][r] = scale[r]·(LUT sum of row r for token t).
 *
 * The calling thread builds a token block's tables (AVX2: ~1 ns per group and token, a few
 * percent of the row work once OC ≥ 64), then the threads take runs of tiles from a shared
 * counter. No thread owns a fixed share and there is no barrier inside: on a machine where
 * the second core is busy, a statically split loop waited milliseconds for the preempted
 * thread's half at every barrier (2 threads 10× slower than 1, measured while a training job
 * held both cores); with runs claimed on demand the running thread does the work it finds.
 * Row r's sum for token t is the same float sequence whatever the thread count, run, token
 * block or kernel. */
static lq_status lut_product(const lq_binary_matrix *W, const float *scale, const float *z,
                             int ntok, float *out, int avx2) {
    const size_t tiles = W->tiles, groups = W->groups, OC = (size_t)W->out_features;
    const size_t K = (size_t)W->k;
    const int block = ntok < TOKEN_BLOCK ? ntok : TOKEN_BLOCK;
    const size_t table_stride = groups * LQ_BIN_TABLE, acc_stride = tiles * LQ_BIN_TILE;
    /* the kernels consume tokens 4 at a time: their tables for one chunk of groups stay
     * within GROUP_CHUNK·64 bytes */
    const size_t chunk = GROUP_CHUNK / (size_t)(block < 4 ? block : 4);
    float *tables = malloc(((size_t)block * (table_stride + acc_stride)) * sizeof(float));
    if (!tables)
        return lq_fail(LQ_ERR_NOMEM, "lq_binary: out of memory for the tables of %d × k = %d", block, W->k);
    float *acc = tables + (size_t)block * table_stride;
    const int nthreads = product_threads(W, ntok);
    /* about 8 runs per thread, each a multiple of the AVX2 kernel's 4 tiles */
    size_t run = nthreads > 1 ? tiles / (8 * (size_t)nthreads) : tiles;
    run = run < 4 ? 4 : (run + 3) / 4 * 4;
    const size_t nruns = (tiles + run - 1) / run;

    for (int tok0 = 0; tok0 < ntok; tok0 += block) {
        const int nb = ntok - tok0 < block ? ntok - tok0 : block;
        /* the block's z rows are contiguous and so are its tables: group c of the
         * concatenation is at z + 4c and tables + 16c */
        const float *zb = z + (size_t)tok0 * K;
        if (avx2) lq_binary_tables_avx2(zb, 0, (size_t)nb * groups, tables);
        else build_tables(zb, 0, (size_t)nb * groups, tables);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1)
        for (size_t i = 0; i < nruns; i++) {
            const size_t t0 = i * run, t1 = t0 + run < tiles ? t0 + run : tiles;
            const size_t r0 = t0 * LQ_BIN_TILE, r1 = t1 * LQ_BIN_TILE < OC ? t1 * LQ_BIN_TILE : OC;
            for (int b = 0; b < nb; b++)
                memset(acc + b * acc_stride + r0, 0, (t1 - t0) * LQ_BIN_TILE * sizeof(float));
            for (size_t g0 = 0; g0 < groups; g0 += chunk) {
                const size_t g1 = groups - g0 < chunk ? groups : g0 + chunk;
                if (avx2) lq_binary_lut_avx2(W, t0, t1, g0, g1, tables, table_stride, nb, acc, acc_stride);
                else lut_scalar(W, t0, t1, g0, g1, tables, table_stride, nb, acc, acc_stride);
            }
            for (int b = 0; b < nb; b++) {
                const float *a = acc + b * acc_stride;
                float *o = out + (size_t)(tok0 + b) * OC;
                for (size_t r = r0; r < r1; r++) o[r] = scale ? scale[r] * a[r] : a[r];
            }
        }
    }
    free(tables);
    return LQ_OK;
}

static lq_status resolve_kernel(lq_binary_kernel kernel, int *avx2) {
    switch (kernel) {
    case LQ_BINARY_AUTO: *avx2 = lq_cpu_has_avx2(0) && !getenv("LQ_NO_SIMD"); return LQ_OK;
    case LQ_BINARY_SCALAR: *avx2 = 0; return LQ_OK;
    case LQ_BINARY_AVX2:
        if (!lq_cpu_has_avx2(0))
            return lq_fail(LQ_ERR_UNSUPPORTED, "lq_binary_gemv: this CPU has no AVX2+FMA");
        *avx2 = 1;
        return LQ_OK;
    }
    return lq_fail(LQ_ERR_ARG, "lq_binary_gemv: unknown kernel %d", (int)kernel);
}

lq_status lq_binary_gemv_with(const lq_binary_matrix *W, const float *scale, const float *z,
                              float *out, lq_binary_kernel kernel) {
    if (!W || !z || !out) return lq_fail(LQ_ERR_ARG, "lq_binary_gemv: NULL matrix, z or out");
    int avx2 = 0;
    lq_status s = resolve_kernel(kernel, &avx2);
    if (s != LQ_OK) return s;
    return lut_product(W, scale, z, 1, out, avx2);
}

lq_status lq_binary_gemv(const lq_binary_matrix *W, const float *scale, const float *z, float *out) {
    return lq_binary_gemv_with(W, scale, z, out, LQ_BINARY_AUTO);
}

/* ---- GEMM ----------------------------------------------------------------------------------- */

/* Floats of ±1 rows expanded per sgemm call: ~2 MiB, so a block stays in L2/L3 while sgemm
 * streams the tokens past it, and the scratch stays small whatever the layer's size. */
#define DEQUANT_FLOATS ((size_t)1 << 19)

/* Rows [r0, r1) of W as ±1 floats, row-major K wide. */
static void dequant_rows(const lq_binary_matrix *W, size_t r0, size_t r1, float *dst) {
    /* signs[s] = the 4 values of stored nibble s */
    float signs[LQ_BIN_TABLE][LQ_BIN_GROUP];
    for (uint32_t s = 0; s < LQ_BIN_TABLE; s++)
        for (int i = 0; i < LQ_BIN_GROUP; i++)
            signs[s][i] = lq_bin_signed((lq_bin_nibble_load(s) >> i) & 1u, 1.0f);
    const size_t K = (size_t)W->k;
#pragma omp parallel for schedule(static) if ((r1 - r0) * K >= PARALLEL_WEIGHTS)
    for (size_t r = r0; r < r1; r++) {
        const uint32_t *tile = W->words + (r / LQ_BIN_TILE) * W->groups;
        const unsigned shift = 4 * (unsigned)(r % LQ_BIN_TILE);
        float *row = dst + (r - r0) * K;
        for (size_t g = 0; g < W->groups; g++)
            memcpy(row + g * LQ_BIN_GROUP, signs[(tile[g] >> shift) & 0xfu], sizeof signs[0]);
    }
}

static lq_status gemm_dequant(const lq_binary_matrix *W, const float *scale, const float *z,
                              int ntok, float *out) {
    const size_t OC = (size_t)W->out_features, K = (size_t)W->k;
    size_t block = DEQUANT_FLOATS / K;
    block = block < 16 ? 16 : block / 16 * 16;
    if (block > OC) block = OC;
    float *wf = malloc(block * K * sizeof(float));
    if (!wf) return lq_fail(LQ_ERR_NOMEM, "lq_binary_gemm: out of memory for %zu ±1 rows", block);
    for (size_t r0 = 0; r0 < OC; r0 += block) {
        const size_t r1 = OC - r0 < block ? OC : r0 + block;
        dequant_rows(W, r0, r1, wf);
        lq_gemm_f32_nt(ntok, (int)(r1 - r0), (int)K, z, (int)K, wf, (int)K, out + r0, (int)OC, 0);
    }
    free(wf);
    if (scale)
        for (size_t t = 0; t < (size_t)ntok; t++)
            for (size_t r = 0; r < OC; r++) out[t * OC + r] *= scale[r];
    return LQ_OK;
}

lq_status lq_binary_gemm_with(const lq_binary_matrix *W, const float *scale, const float *z,
                              int ntok, float *out, lq_binary_gemm_algo algo) {
    if (!W || !z || !out) return lq_fail(LQ_ERR_ARG, "lq_binary_gemm: NULL matrix, z or out");
    if (ntok <= 0) return lq_fail(LQ_ERR_ARG, "lq_binary_gemm: ntok = %d must be positive", ntok);
    switch (algo) {
    case LQ_BINARY_GEMM_AUTO: /* the LUT won at every token count measured (lq_binary.h) */
    case LQ_BINARY_GEMM_LUT: {
        int avx2 = 0;
        (void)resolve_kernel(LQ_BINARY_AUTO, &avx2);
        return lut_product(W, scale, z, ntok, out, avx2);
    }
    case LQ_BINARY_GEMM_DEQUANT: return gemm_dequant(W, scale, z, ntok, out);
    }
    return lq_fail(LQ_ERR_ARG, "lq_binary_gemm: unknown algorithm %d", (int)algo);
}

lq_status lq_binary_gemm(const lq_binary_matrix *W, const float *scale, const float *z, int ntok,
                         float *out) {
    return lq_binary_gemm_with(W, scale, z, ntok, out, LQ_BINARY_GEMM_AUTO);
}
