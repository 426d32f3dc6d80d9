/* Time of the RTN and GPTQ baselines (worker/baselines.c) on one linear, with H from synthetic
 * correlated activations, and the output error each reaches.
 *
 *   lq-bench-gptq [OUTxIN ...] [--bits B] [--group G] [--act-order 0|1] [--reps N]
 *
 * Defaults: SmolLM2-135M's MLP shapes 1536x576 (gate/up) and 576x1536 (down), 4 bits, group
 * 128, act-order on, best of 3. Threads: LQ_THREADS (OpenMP loops and OpenBLAS alike). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_blas.h"
#include "lq_quant.h"

/* tokens × channels with neighbouring channels correlated (AR(1), rho 0.9) and log-normal
 * channel scales, as in tests/test_baselines.c; H = XᵀX */
static double *synthetic_hessian(int ic, int ntok, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    double *scale = malloc(sizeof(double) * ic), *X = malloc(sizeof(double) * ntok * ic);
    double *H = malloc(sizeof(double) * ic * ic);
    if (!scale || !X || !H) return free(scale), free(X), free(H), NULL;
    for (int c = 0; c < ic; c++) scale[c] = exp(0.7 * lq_rng_normal(&r));
    for (int t = 0; t < ntok; t++) {
        double prev = lq_rng_normal(&r);
        for (int c = 0; c < ic; c++) {
            prev = 0.9 * prev + sqrt(1.0 - 0.81) * lq_rng_normal(&r);
            X[(size_t)t * ic + c] = scale[c] * prev;
        }
    }
    lq_gemm_f64(1, 0, ic, ic, ntok, 1.0, X, ic, X, ic, 0.0, H, ic);
    free(scale);
    free(X);
    return H;
}

static int run_shape(int oc, int ic, int bits, int group, int act_order, int reps) {
    double *H = synthetic_hessian(ic, 2048, 1);
    float *W = malloc(sizeof(float) * oc * ic), *Wq = malloc(sizeof(float) * oc * ic);
    if (!H || !W || !Wq) {
        fprintf(stderr, "lq-bench-gptq: out of memory for %dx%d\n", oc, ic);
        return 1;
    }
    lq_rng r;
    lq_rng_seed(&r, 2);
    for (size_t i = 0; i < (size_t)oc * ic; i++) W[i] = (float)(0.02 * lq_rng_normal(&r));

    double best_gptq = INFINITY, best_rtn = INFINITY, err_gptq = 0.0, err_rtn = 0.0;
    for (int rep = 0; rep < reps; rep++) {
        lq_grouped_weights w = {0};
        double t0 = lq_seconds();
        lq_status st = lq_quantize_gptq(W, oc, ic, H, bits, group, act_order, 0.01, &w);
        double t1 = lq_seconds();
        if (st != LQ_OK || lq_grouped_dequantize(&w, Wq) != LQ_OK) {
            fprintf(stderr, "lq-bench-gptq: %s\n", lq_last_error());
            return 1;
        }
        if (t1 - t0 < best_gptq) best_gptq = t1 - t0;
        err_gptq = lq_output_error(W, Wq, oc, ic, H);
        lq_grouped_weights_free(&w);

        t0 = lq_seconds();
        st = lq_quantize_rtn(W, oc, ic, bits, group, &w);
        t1 = lq_seconds();
        if (st != LQ_OK || lq_grouped_dequantize(&w, Wq) != LQ_OK) {
            fprintf(stderr, "lq-bench-gptq: %s\n", lq_last_error());
            return 1;
        }
        if (t1 - t0 < best_rtn) best_rtn = t1 - t0;
        err_rtn = lq_output_error(W, Wq, oc, ic, H);
        lq_grouped_weights_free(&w);
    }
    double t0 = lq_seconds();
    (void)lq_output_error(W, Wq, oc, ic, H);
    double t_err = lq_seconds() - t0;
    printf("%5dx%-5d bits %d group %d act-order %d threads %d: GPTQ %.3f s, RTN %.4f s, "
           "output error %.3f s; GPTQ/RTN error %.3f\n",
           oc, ic, bits, group, act_order, lq_default_threads(), best_gptq, best_rtn, t_err,
           err_gptq / err_rtn);
    free(H), free(W), free(Wq);
    return 0;
}

int main(int argc, char **argv) {
    int bits = 4, group = 128, act_order = 1, reps = 3, nshapes = 0;
    int shapes[16][2];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: lq-bench-gptq [OUTxIN ...] [--bits B] [--group G] [--act-order 0|1] "
                   "[--reps N]\n");
            return 0;
        }
        if (i + 1 < argc && !strcmp(argv[i], "--bits")) bits = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--group")) group = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--act-order")) act_order = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else if (nshapes < 16 && sscanf(argv[i], "%dx%d", &shapes[nshapes][0], &shapes[nshapes][1]) == 2 &&
                 shapes[nshapes][0] > 0 && shapes[nshapes][1] > 0)
            nshapes++;
        else {
            fprintf(stderr, "lq-bench-gptq: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (!nshapes) {
        shapes[0][0] = 1536, shapes[0][1] = 576;
        shapes[1][0] = 576, shapes[1][1] = 1536;
        nshapes = 2;
    }
    for (int s = 0; s < nshapes; s++)
        if (run_shape(shapes[s][0], shapes[s][1], bits, group, act_order, reps)) return 1;
    return 0;
}
