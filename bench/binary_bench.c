/* Binary GEMV/GEMM side by side (lq_binary.h): the bit-by-bit reference, the portable LUT
 * kernel, the AVX2 LUT kernel on 1 and 2 threads, and an f32 GEMV (OpenBLAS sgemv through
 * lq_gemm_f32_nt with m = 1) over the same shape; then the prefill GEMM's two algorithms per
 * token, which is how lq_binary_gemm's AUTO was chosen (lq_binary.h).
 *
 *   lq-bench-binary [seconds per measurement, default 0.15]
 *
 * Times are the best of repeated calls (the least disturbed by other load). "GB/s" is the
 * weight storage read per second: K/8 bytes per row for bits, 4K for f32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_binary.h"
#include "lq_blas.h"

typedef struct {
    const lq_binary_matrix *W;
    const uint8_t *bits;
    const float *wf, *scale, *z;
    float *out;
    int oc, k, ntok;
    int what;
} job;

enum { REF, SCALAR, AVX2, F32, GEMM_LUT, GEMM_DEQUANT };

static void run(const job *j) {
    lq_status s = LQ_OK;
    switch (j->what) {
    case REF: s = lq_binary_gemv_reference(j->bits, j->oc, j->k, j->scale, j->z, j->out); break;
    case SCALAR: s = lq_binary_gemv_with(j->W, j->scale, j->z, j->out, LQ_BINARY_SCALAR); break;
    case AVX2: s = lq_binary_gemv_with(j->W, j->scale, j->z, j->out, LQ_BINARY_AVX2); break;
    case F32: lq_gemm_f32_nt(1, j->oc, j->k, j->z, j->k, j->wf, j->k, j->out, j->oc, 0); break;
    case GEMM_LUT: s = lq_binary_gemm_with(j->W, j->scale, j->z, j->ntok, j->out, LQ_BINARY_GEMM_LUT); break;
    case GEMM_DEQUANT:
        s = lq_binary_gemm_with(j->W, j->scale, j->z, j->ntok, j->out, LQ_BINARY_GEMM_DEQUANT);
        break;
    }
    if (s != LQ_OK) {
        fprintf(stderr, "lq-bench-binary: %s\n", lq_last_error());
        exit(1);
    }
}

/* best time of one call, repeating for about `budget` seconds (at least twice) */
static double best_time(const job *j, double budget) {
    double best = 1e30, start = lq_seconds();
    for (int rep = 0; rep < 2 || lq_seconds() - start < budget; rep++) {
        double t0 = lq_seconds();
        run(j);
        double t = lq_seconds() - t0;
        if (t < best) best = t;
        if (rep > 10000) break;
    }
    return best;
}

static void set_threads(int n) {
    char v[16];
    snprintf(v, sizeof v, "%d", n);
    setenv("LQ_THREADS", v, 1); /* binary kernels read it per call */
    lq_blas_set_threads(n);
}

static void layer(int oc, int k, double budget) {
    const size_t nw = (size_t)oc * k;
    uint8_t *bits = malloc(nw / 8);
    float *z = malloc(sizeof(float) * k * 64), *scale = malloc(sizeof(float) * oc);
    float *wf = malloc(sizeof(float) * nw), *out = malloc(sizeof(float) * oc * 64);
    if (!bits || !z || !scale || !wf || !out) {
        fprintf(stderr, "lq-bench-binary: out of memory\n");
        exit(1);
    }
    lq_rng r;
    lq_rng_seed(&r, 1);
    for (size_t i = 0; i < nw / 8; i++) bits[i] = (uint8_t)lq_rng_u64(&r);
    for (int i = 0; i < k * 64; i++) z[i] = (float)lq_rng_normal(&r);
    for (int i = 0; i < oc; i++) scale[i] = (float)(0.5 + lq_rng_uniform(&r));
    for (size_t i = 0; i < nw; i++) wf[i] = ((bits[i / 8] >> (i % 8)) & 1) ? 1.0f : -1.0f;
    lq_binary_matrix *W = NULL;
    if (lq_binary_pack(bits, oc, k, &W) != LQ_OK) {
        fprintf(stderr, "lq-bench-binary: %s\n", lq_last_error());
        exit(1);
    }
    job j = {W, bits, wf, scale, z, out, oc, k, 1, REF};

    printf("\n%d × %d (%.2f M weights, %.0f KiB of bits, %.1f MiB as f32)\n", oc, k, nw / 1e6,
           nw / 8 / 1024.0, nw * 4 / 1048576.0);
    printf("  %-28s %10s %10s %10s %9s\n", "GEMV", "µs", "ns/weight", "GB/s", "vs f32");
    static const struct { const char *name; int what, threads; } rows[] = {
        {"reference (bit by bit)", REF, 1}, {"LUT, portable C", SCALAR, 1},
        {"LUT, AVX2", AVX2, 1}, {"LUT, AVX2, 2 threads", AVX2, 2},
        {"f32 sgemv (OpenBLAS)", F32, 1}, {"f32 sgemv, 2 threads", F32, 2},
    };
    double t_f32 = 0.0, times[6];
    for (int i = 5; i >= 0; i--) { /* f32 first: the ratio column needs it */
        set_threads(rows[i].threads);
        j.what = rows[i].what;
        times[i] = best_time(&j, rows[i].what == REF ? budget / 3 : budget);
        if (rows[i].what == F32 && rows[i].threads == 1) t_f32 = times[i];
    }
    for (int i = 0; i < 6; i++) {
        const double bytes = rows[i].what == F32 ? nw * 4.0 : nw / 8.0;
        printf("  %-28s %10.1f %10.4f %10.2f %8.2fx\n", rows[i].name, times[i] * 1e6, times[i] * 1e9 / nw,
               bytes / times[i] / 1e9, t_f32 / times[i]);
    }

    /* prefill: time per token of the two GEMM algorithms */
    printf("  %-28s", "GEMM ns/weight/token: ntok");
    static const int ntoks[] = {1, 4, 16, 64};
    const int nn = (int)(sizeof ntoks / sizeof ntoks[0]);
    for (int i = 0; i < nn; i++) printf(" %8d", ntoks[i]);
    printf("\n");
    for (int what = GEMM_LUT; what <= GEMM_DEQUANT; what++)
        for (int threads = 1; threads <= 2; threads++) {
            char name[64];
            snprintf(name, sizeof name, "  %s, %d thread%s",
                     what == GEMM_LUT ? "LUT" : "dequantize + sgemm", threads, threads > 1 ? "s" : "");
            printf("  %-28s", name);
            set_threads(threads);
            for (int i = 0; i < nn; i++) {
                j.what = what;
                j.ntok = ntoks[i];
                printf(" %8.4f", best_time(&j, budget / 2) * 1e9 / ntoks[i] / nw);
                fflush(stdout);
            }
            printf("\n");
        }
    lq_binary_free(W);
    free(bits), free(z), free(scale), free(wf), free(out);
}

int main(int argc, char **argv) {
    const double budget = argc > 1 ? atof(argv[1]) : 0.15;
    printf("lq-bench-binary: best of repeated calls, ~%.2f s per measurement\n", budget);
    layer(576, 1536, budget);
    layer(4096, 9832, budget); /* K = 4096·2.4 rounded to a multiple of 8 */
    return 0;
}
