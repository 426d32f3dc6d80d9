/* liftquant worker/: one worker's share of a distributed calibration (lq-calibrate). The
 * transport is the caller's (MPI in coordinator/calibrate.c, direct calls with -n 1): hidden
 * states arrive and leave through callbacks, and so do results.
 *
 * A worker owns decoder layers [layer_begin, layer_end). It
 *   1. pipeline: for each calibration window, takes the hidden states entering its first layer
 *      (embeds the tokens itself when it owns layer 0), keeps them, runs them through its FP
 *      layers and passes them on, so the next worker starts on window i while this one runs
 *      window i + 1;
 *   2. measure: for each of its layers, again from the kept states, captures the layer's
 *      second moments (lq_layer_moments), then quantizes every linear at every candidate config
 *      not already done, writes each result as a blob (lq_linear_blob_save) and reports it.
 * Layers whose results are all done are only run forward. Calibration runs on the FP model's
 * hidden states: a candidate's result must not depend on which configs earlier layers will be
 * given, since the budget solver chooses those later.
 *
 * A result depends only on the weights, the calibration windows, the config and the seed —
 * never on which worker computed it or how many there are. */
#ifndef LQ_CALIB_H
#define LQ_CALIB_H

#include "lq_quant.h"

typedef struct {
    int tensor;              /* 7·layer + linear index (q k v o gate up down) */
    int config;              /* index into the work's configs */
    double rel_error;        /* tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) */
    double out_energy;       /* tr(W H Wᵀ)/tokens */
    double stream_energy;    /* mean squared norm of the residual stream entering the layer */
    uint64_t code_bytes, side_bytes;
    double seconds;
    uint64_t checksum;       /* lq_file_checksum of the blob */
} lq_candidate_result;

typedef struct {
    lq_model *model;                    /* the FP model */
    const int *tokens;                  /* nsamples × seqlen; read only when layer_begin == 0 */
    int nsamples, seqlen;
    int layer_begin, layer_end;
    int n_configs;
    const lq_lattice *const *lattices;  /* one per config */
    lq_quantize_options options;        /* LiftQuant settings; options.lift.lattice is set per config */
    const uint8_t *done;                /* 7·n_layers × n_configs, 1 = measured already */
    const char *blob_dir;               /* existing directory for this run's blobs */
    /* NULL when the worker owns layer 0: it embeds the tokens */
    lq_status (*receive_hidden)(void *ctx, int sample, float *hidden);
    /* NULL when the worker owns the last layer */
    lq_status (*send_hidden)(void *ctx, int sample, const float *hidden);
    lq_status (*report)(void *ctx, const lq_candidate_result *r);
    void *ctx;
} lq_calib_work;

/* The blob's file name inside blob_dir: "<module>.<D>x<d>.safetensors". */
void lq_calib_blob_name(const char *module, int D, int d, char *out, size_t cap);
lq_status lq_calib_worker_run(const lq_calib_work *w);

#endif
