/* The LiftQuant linear's forward (worker/qlinear.c) against an f32 linear of the same shape,
 * one thread: ns per weight (OC·IC) of the whole lift forward — a1 scaling, the TL and TR
 * transforms, A2, the binary LUT GEMV/GEMM — beside the binary kernel alone on the layer's
 * OC × K bits and OpenBLAS f32 (lq_gemm_f32_nt: sgemv at one token, sgemm above).
 *
 *   lq-bench-qlinear [seconds per measurement, default 0.3]
 *
 * t2 is the multiple of d nearest √IC among those that pad IC least (ALGORITHM.md §3.1's
 * suggested rule), t1 = ⌈IC/t2⌉. The side data is random (its values do not change the work).
 * Times are the best of repeated calls, the least disturbed by other load on a shared machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_binary.h"
#include "lq_blas.h"
#include "lq_quant.h"

typedef struct {
    const lq_linear *lift;
    const lq_binary_matrix *bin;
    const float *scale, *wf, *x, *z;
    float *out;
    int oc, ic, ntok, what;
} job;

enum { LIFT, BINARY, F32 };

static void die(const char *what) {
    fprintf(stderr, "lq-bench-qlinear: %s: %s\n", what, lq_last_error());
    exit(1);
}

static void run(const job *j) {
    lq_status s = LQ_OK;
    switch (j->what) {
    case LIFT: s = j->lift->forward(j->lift, j->x, j->ntok, j->out); break;
    case BINARY:
        s = j->ntok == 1 ? lq_binary_gemv(j->bin, j->scale, j->z, j->out)
                         : lq_binary_gemm(j->bin, j->scale, j->z, j->ntok, j->out);
        break;
    case F32: lq_gemm_f32_nt(j->ntok, j->oc, j->ic, j->x, j->ic, j->wf, j->ic, j->out, j->oc, 0); break;
    }
    if (s != LQ_OK) die("forward");
}

static double best_time(const job *j, double budget) {
    double best = 1e30, start = lq_seconds();
    for (int rep = 0; rep < 3 || lq_seconds() - start < budget; rep++) {
        double t0 = lq_seconds();
        run(j);
        double t = lq_seconds() - t0;
        if (t < best) best = t;
        if (rep > 100000) break;
    }
    return best;
}

static int choose_t2(int ic, int d) {
    int best = d;
    long best_pad = -1;
    double root = sqrt((double)ic);
    for (int t2 = d; t2 <= 4 * (int)root + d; t2 += d) {
        long pad = (long)((ic + t2 - 1) / t2) * t2 - ic;
        if (best_pad < 0 || pad < best_pad ||
            (pad == best_pad && fabs(t2 - root) < fabs(best - root))) {
            best = t2;
            best_pad = pad;
        }
    }
    return best;
}

static void layer(int oc, int ic, int D, int d, double budget) {
    int t2 = choose_t2(ic, d), t1 = (ic + t2 - 1) / t2;
    lq_lift_weights w;
    if (lq_lift_weights_alloc(&w, oc, ic, D, d, t1, t2, 0) != LQ_OK) die("alloc");
    lq_rng r;
    lq_rng_seed(&r, 1);
    size_t K = lq_lift_k(&w), rb = lq_lift_row_bytes(&w), t3 = (size_t)lq_lift_t3(&w);
    for (size_t i = 0; i < (size_t)oc * rb; i++) w.bits[i] = (uint8_t)lq_rng_u64(&r);
    if (K % 8)
        for (size_t row = 0; row < (size_t)oc; row++)
            w.bits[row * rb + rb - 1] &= (uint8_t)((1u << (K % 8)) - 1);
    for (int i = 0; i < oc; i++) w.scale[i] = (float)(0.5 + lq_rng_uniform(&r));
    for (int i = 0; i < t1 * t2; i++) w.a1inv[i] = (float)(0.5 + lq_rng_uniform(&r));
    for (int i = 0; i < t1 * t1; i++) w.tl[i] = (float)lq_rng_normal(&r);
    for (size_t i = 0; i < (size_t)t2 * t3; i++) w.tr[i] = (float)lq_rng_normal(&r);
    for (int i = 0; i < t1 * (t2 / d); i++) w.a2inv[i] = (float)(0.5 + lq_rng_uniform(&r));

    /* the binary kernel alone, on a copy of the same bits */
    lq_binary_matrix *bin = NULL;
    if (lq_binary_pack(w.bits, oc, (int)(rb * 8), &bin) != LQ_OK) die("pack");
    float *scale = malloc(sizeof(float) * oc);
    memcpy(scale, w.scale, sizeof(float) * oc);

    lq_linear lin = {.in_features = ic, .out_features = oc};
    if (lq_linear_set_lift(&lin, &w) != LQ_OK) die("lq_linear_set_lift");

    enum { MAX_TOK = 16 };
    float *x = malloc(sizeof(float) * ic * MAX_TOK), *wf = malloc(sizeof(float) * oc * ic);
    float *z = malloc(sizeof(float) * rb * 8 * MAX_TOK), *out = malloc(sizeof(float) * oc * MAX_TOK);
    if (!x || !wf || !z || !out || !scale) {
        fprintf(stderr, "lq-bench-qlinear: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < ic * MAX_TOK; i++) x[i] = (float)lq_rng_normal(&r);
    for (size_t i = 0; i < (size_t)oc * ic; i++) wf[i] = (float)(lq_rng_normal(&r) / sqrt((double)ic));
    for (size_t i = 0; i < rb * 8 * MAX_TOK; i++) z[i] = (float)lq_rng_normal(&r);

    double nw = (double)oc * ic;
    printf("\n%d × %d, %d/%d, t1 × t2 = %d × %d (IC padded by %d), K = %zu\n", oc, ic, D, d, t1, t2,
           t1 * t2 - ic, K);
    printf("  %-6s %16s %16s %16s %10s\n", "ntok", "lift forward", "binary alone", "f32 OpenBLAS",
           "f32 / lift");
    static const int ntoks[] = {1, 16};
    for (size_t n = 0; n < sizeof ntoks / sizeof ntoks[0]; n++) {
        job j = {&lin, bin, scale, wf, x, z, out, oc, ic, ntoks[n], LIFT};
        double t[3];
        for (int what = LIFT; what <= F32; what++) {
            j.what = what;
            t[what] = best_time(&j, budget) / ntoks[n];
        }
        printf("  %-6d %11.4f ns/w %11.4f ns/w %11.4f ns/w %9.2fx\n", ntoks[n], t[LIFT] * 1e9 / nw,
               t[BINARY] * 1e9 / nw, t[F32] * 1e9 / nw, t[F32] / t[LIFT]);
    }
    lin.free_impl(lin.impl);
    lq_binary_free(bin);
    free(scale);
    free(x);
    free(wf);
    free(z);
    free(out);
}

int main(int argc, char **argv) {
    double budget = argc > 1 ? atof(argv[1]) : 0.3;
    if (argc > 2 || !(budget > 0) || (argc > 1 && !strcmp(argv[1], "--help"))) {
        fprintf(stderr, "usage: lq-bench-qlinear [seconds per measurement, default 0.3]\n");
        return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    setenv("LQ_THREADS", "1", 1); /* the binary kernels read it per call */
    lq_blas_set_threads(1);
    printf("lift linear vs f32, one thread; ns per weight (OC·IC) per token, best of repeats\n");
    layer(576, 1536, 24, 10, budget);
    layer(1536, 576, 24, 10, budget);
    return 0;
}
