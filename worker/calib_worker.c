/* One worker's share of lq-calibrate (lq_calib.h). */
#include "lq_calib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_LINEARS 7

void lq_calib_blob_name(const char *module, int D, int d, char *out, size_t cap) {
    snprintf(out, cap, "%s.%dx%d.safetensors", module, D, d);
}

/* tr(W H Wᵀ): the output error of quantizing W to zero */
static double output_energy(const float *W, int oc, int ic, const double *H) {
    float *zeros = calloc((size_t)oc * ic, sizeof(float));
    if (!zeros) return -1.0;
    double e = lq_output_error(W, zeros, oc, ic, H);
    free(zeros);
    return e;
}

static int layer_all_done(const lq_calib_work *w, int layer) {
    for (int idx = 0; idx < N_LINEARS; idx++)
        for (int c = 0; c < w->n_configs; c++)
            if (!w->done[(size_t)(N_LINEARS * layer + idx) * w->n_configs + c]) return 0;
    return 1;
}

/* Every config not yet done of one linear, from its layer's second moments. */
static lq_status measure_linear(const lq_calib_work *w, int layer, int idx, const double *H,
                                double stream_energy, double ntok) {
    lq_linear *lin = lq_layer_linear(&w->model->layers[layer], idx);
    char module[96], file[160], path[4096];
    lq_linear_name(layer, idx, module, sizeof module);
    int tensor = N_LINEARS * layer + idx;
    double out_energy = -1.0;
    for (int c = 0; c < w->n_configs; c++) {
        if (w->done[(size_t)tensor * w->n_configs + c]) continue;
        if (out_energy < 0.0) {
            out_energy = output_energy(lin->weight, lin->out_features, lin->in_features, H);
            if (out_energy < 0.0) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", module);
            out_energy /= ntok;
        }
        const lq_lattice *L = w->lattices[c];
        lq_quantize_options o = w->options;
        o.lift.lattice = L;
        double t0 = lq_seconds();
        /* a scratch linear borrowing the FP weight: the model keeps its FP layer for the next
         * config and for the pipeline */
        lq_linear scratch = {.in_features = lin->in_features, .out_features = lin->out_features,
                             .weight = lin->weight, .bias = lin->bias};
        lq_candidate_result r = {.tensor = tensor, .config = c, .stream_energy = stream_energy,
                                 .out_energy = out_energy};
        lq_status st = lq_quantize_linear(&scratch, module, H, lq_linear_seed(o.lift.seed, layer, idx),
                                          &o, &r.rel_error);
        if (st) return st;
        lq_linear_size size;
        lq_calib_blob_name(module, L->D, L->d, file, sizeof file);
        if (snprintf(path, sizeof path, "%s/%s", w->blob_dir, file) >= (int)sizeof path)
            st = lq_fail(LQ_ERR_ARG, "%s: blob path too long", w->blob_dir);
        if (!st) st = lq_linear_stored_size(&scratch, &size);
        if (!st) st = lq_linear_blob_save(&scratch, module, path);
        if (scratch.free_impl) scratch.free_impl(scratch.impl);
        if (!st) st = lq_file_checksum(path, &r.checksum);
        if (st) return lq_fail_context(st, "%s at %d/%d", module, L->D, L->d);
        r.code_bytes = size.code_bytes;
        r.side_bytes = size.side_bytes;
        r.seconds = lq_seconds() - t0;
        if ((st = w->report(w->ctx, &r))) return st;
    }
    return LQ_OK;
}

lq_status lq_calib_worker_run(const lq_calib_work *w) {
    lq_model *m = w->model;
    const lq_model_config *c = &m->cfg;
    if (w->layer_begin < 0 || w->layer_end > c->n_layers || w->layer_begin >= w->layer_end)
        return lq_fail(LQ_ERR_ARG, "calibration worker: layers [%d, %d) outside the model's %d",
                       w->layer_begin, w->layer_end, c->n_layers);
    if ((w->layer_begin == 0) != (w->receive_hidden == NULL) ||
        (w->layer_end == c->n_layers) != (w->send_hidden == NULL))
        return lq_fail(LQ_ERR_ARG, "calibration worker: hidden-state callbacks do not match layers "
                       "[%d, %d)", w->layer_begin, w->layer_end);
    size_t per_sample = (size_t)w->seqlen * c->dim;
    float *kept = malloc((size_t)w->nsamples * per_sample * sizeof(float));
    float *moving = malloc(per_sample * sizeof(float));
    lq_session *s = NULL;
    lq_layer_moments *mo = NULL;
    lq_status st = LQ_OK;
    if (!kept || !moving) {
        st = lq_fail(LQ_ERR_NOMEM, "calibration worker: out of memory for %d × %d hidden states "
                     "(%zu MiB)", w->nsamples, w->seqlen,
                     (size_t)w->nsamples * per_sample * sizeof(float) >> 20);
        goto done;
    }
    if ((st = lq_session_new(m, w->seqlen, &s))) goto done;

    /* 1. pipeline */
    for (int i = 0; i < w->nsamples && !st; i++) {
        float *h = kept + (size_t)i * per_sample;
        st = w->receive_hidden ? w->receive_hidden(w->ctx, i, h)
                               : lq_embed_tokens(s, w->tokens + (size_t)i * w->seqlen, w->seqlen, h);
        if (st || !w->send_hidden) continue;
        memcpy(moving, h, per_sample * sizeof(float));
        for (int l = w->layer_begin; l < w->layer_end && !st; l++)
            st = lq_layer_forward(s, l, moving, w->seqlen, NULL);
        if (!st) st = w->send_hidden(w->ctx, i, moving);
    }
    if (st) goto done;

    /* 2. measure */
    if ((st = lq_layer_moments_new(c, &mo))) goto done;
    double ntok = (double)w->nsamples * w->seqlen;
    for (int l = w->layer_begin; l < w->layer_end && !st; l++) {
        if (layer_all_done(w, l)) {
            if (l + 1 == w->layer_end) break;   /* nothing after it needs its outputs */
            for (int i = 0; i < w->nsamples && !st; i++)
                st = lq_layer_forward(s, l, kept + (size_t)i * per_sample, w->seqlen, NULL);
            continue;
        }
        /* fixed summation order: the same value on any worker */
        double energy = 0.0;
        for (size_t k = 0; k < (size_t)w->nsamples * per_sample; k++) energy += (double)kept[k] * kept[k];
        energy /= ntok;
        if ((st = lq_layer_moments_capture(mo, s, l, kept, w->nsamples, w->seqlen))) break;
        for (int idx = 0; idx < N_LINEARS && !st; idx++)
            st = measure_linear(w, l, idx, lq_layer_moments_for(mo, idx), energy, ntok);
    }
done:
    lq_layer_moments_free(mo);
    lq_session_free(s);
    free(kept), free(moving);
    return st;
}
