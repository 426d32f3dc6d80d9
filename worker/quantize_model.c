/* The whole-model driver (lq_quant.h): calibration hidden states go through the model one
 * decoder layer at a time; each layer's four linear inputs are summarised as second moments
 * H = Σ x xᵀ, its seven linears are quantized from them, and the hidden states move on to
 * the next layer — through the quantized layer (default: later layers then see, and correct
 * for, the error of earlier ones, as GPTQ does) or through the FP layer.
 *
 * Why H and not activation samples: every quantizer here minimises the output error of one
 * linear, tr(ΔW H ΔWᵀ), which H determines exactly; its size does not grow with the
 * calibration set, so memory per layer is bounded by the layer's widths alone. */
#include "lq_quant.h"

#include "lq_blas.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* which tap feeds each linear */
static const lq_tap LINEAR_TAP[7] = {LQ_TAP_ATTN_IN, LQ_TAP_ATTN_IN, LQ_TAP_ATTN_IN,
                                     LQ_TAP_ATTN_OUT, LQ_TAP_MLP_IN, LQ_TAP_MLP_IN,
                                     LQ_TAP_MLP_HIDDEN};

const char *lq_method_name(lq_method m) {
    switch (m) {
    case LQ_METHOD_LIFTQUANT: return "liftquant";
    case LQ_METHOD_RTN: return "rtn";
    case LQ_METHOD_GPTQ: return "gptq";
    }
    return "?";
}

lq_status lq_method_from_name(const char *name, lq_method *out) {
    for (int m = LQ_METHOD_LIFTQUANT; m <= LQ_METHOD_GPTQ; m++)
        if (!strcmp(name, lq_method_name((lq_method)m))) {
            *out = (lq_method)m;
            return LQ_OK;
        }
    return lq_fail(LQ_ERR_ARG, "--method %s: unknown (liftquant, rtn, gptq)", name);
}

/* ---- capture ---------------------------------------------------------------------------- */
struct lq_layer_moments {
    int width[LQ_TAP_COUNT];
    double *H[LQ_TAP_COUNT];  /* width × width, f64 sums across chunks */
    float *chunk;             /* widest², one chunk's XᵀX in f32 (≤ 128 tokens: exact enough) */
};

static void capture_hook(void *ctx, int layer, lq_tap tap, const float *x, int ntok, int width) {
    (void)layer;
    lq_layer_moments *c = ctx;
    lq_gemm_f32(1, 0, width, width, ntok, 1.0f, x, width, x, width, 0.0f, c->chunk, width);
    double *H = c->H[tap];
    for (size_t i = 0; i < (size_t)width * width; i++) H[i] += c->chunk[i];
}

void lq_layer_moments_free(lq_layer_moments *mo) {
    if (!mo) return;
    for (int t = 0; t < LQ_TAP_COUNT; t++) free(mo->H[t]);
    free(mo->chunk);
    free(mo);
}

lq_status lq_layer_moments_new(const lq_model_config *c, lq_layer_moments **out) {
    *out = NULL;
    lq_layer_moments *mo = calloc(1, sizeof *mo);
    if (!mo) return lq_fail(LQ_ERR_NOMEM, "calibration: out of memory");
    mo->width[LQ_TAP_ATTN_IN] = c->dim;
    mo->width[LQ_TAP_ATTN_OUT] = c->n_heads * c->head_dim;
    mo->width[LQ_TAP_MLP_IN] = c->dim;
    mo->width[LQ_TAP_MLP_HIDDEN] = c->hidden_dim;
    int widest = 0, bad = 0;
    for (int t = 0; t < LQ_TAP_COUNT; t++) {
        if (mo->width[t] > widest) widest = mo->width[t];
        bad |= !(mo->H[t] = malloc((size_t)mo->width[t] * mo->width[t] * sizeof(double)));
    }
    bad |= !(mo->chunk = malloc((size_t)widest * widest * sizeof(float)));
    if (bad) {
        lq_layer_moments_free(mo);
        return lq_fail(LQ_ERR_NOMEM, "calibration: out of memory for one layer's second moments "
                       "(widths %d and %d)", c->dim, c->hidden_dim);
    }
    *out = mo;
    return LQ_OK;
}

const double *lq_layer_moments_for(const lq_layer_moments *mo, int linear_index) {
    return mo->H[LINEAR_TAP[linear_index]];
}

lq_status lq_layer_moments_capture(lq_layer_moments *mo, lq_session *s, int layer, float *hidden,
                                   int nsamples, int seqlen) {
    for (int t = 0; t < LQ_TAP_COUNT; t++)
        memset(mo->H[t], 0, (size_t)mo->width[t] * mo->width[t] * sizeof(double));
    lq_layer_hook hook = {capture_hook, mo};
    size_t per_sample = (size_t)seqlen * mo->width[LQ_TAP_ATTN_IN];
    lq_status st = LQ_OK;
    for (int i = 0; i < nsamples && st == LQ_OK; i++)
        st = lq_layer_forward(s, layer, hidden + (size_t)i * per_sample, seqlen, &hook);
    return st;
}

/* ---- one linear ---------------------------------------------------------------------------- */
lq_status lq_quantize_linear(lq_linear *lin, const char *name, const double *H, uint64_t seed,
                             const lq_quantize_options *o, double *rel_error) {
    int oc = lin->out_features, ic = lin->in_features;
    const float *W = lin->weight;
    if (!W) return lq_fail(LQ_ERR_ARG, "%s: already quantized", name);
    lq_status st;
    if (o->method == LQ_METHOD_LIFTQUANT) {
        lq_lift_options lo = o->lift;
        lo.seed = seed;
        lq_lift_weights w;
        lq_lift_report rep;
        memset(&w, 0, sizeof w);
        st = lq_quantize_lift(W, oc, ic, lin->bias, H, &lo, &w, &rep);
        if (st != LQ_OK) return lq_fail_context(st, "%s", name);
        *rel_error = rep.err_final;
        LQ_DEBUG("%s: rel. output error encoded %.5f refit %.5f final %.5f (%.1f s encode, "
                 "%.1f s correct, %ld bits flipped)", name, rep.err_encoded, rep.err_refit,
                 rep.err_final, rep.seconds_encode, rep.seconds_correct, rep.bits_flipped);
        st = lq_linear_set_lift(lin, &w);
        if (st != LQ_OK) lq_lift_weights_free(&w);
        return st;
    }
    lq_grouped_weights g;
    memset(&g, 0, sizeof g);
    if (o->method == LQ_METHOD_RTN)
        st = lq_quantize_rtn(W, oc, ic, o->bits, o->group, &g);
    else
        st = lq_quantize_gptq(W, oc, ic, H, o->bits, o->group, o->act_order, o->damp, &g);
    if (st != LQ_OK) return lq_fail_context(st, "%s", name);
    if (lin->bias) {
        g.bias = malloc((size_t)oc * sizeof(float));
        if (!g.bias) {
            lq_grouped_weights_free(&g);
            return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", name);
        }
        memcpy(g.bias, lin->bias, (size_t)oc * sizeof(float));
    }
    float *What = malloc((size_t)oc * ic * sizeof(float));
    if (!What) {
        lq_grouped_weights_free(&g);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", name);
    }
    st = lq_grouped_dequantize(&g, What);
    if (st == LQ_OK) {
        double err = lq_output_error(W, What, oc, ic, H);
        memset(What, 0, (size_t)oc * ic * sizeof(float));
        double ref = lq_output_error(W, What, oc, ic, H); /* tr(W H Wᵀ) */
        *rel_error = ref > 0.0 ? err / ref : err;
        st = lq_linear_set_grouped(lin, &g);
    }
    free(What);
    if (st != LQ_OK) lq_grouped_weights_free(&g);
    return st;
}

/* ---- the model ------------------------------------------------------------------------------ */
uint64_t lq_linear_seed(uint64_t seed, int layer, int index) {
    return seed * 1000003u + (uint64_t)layer * 7u + (uint64_t)index;
}

lq_status lq_quantize_model(lq_model *m, const int *tokens, int nsamples, int seqlen,
                            const lq_quantize_options *o, lq_linear_result *results) {
    const lq_model_config *c = &m->cfg;
    int dim = c->dim;
    size_t per_sample = (size_t)seqlen * dim;
    lq_layer_moments *mo = NULL;
    float *hidden = malloc((size_t)nsamples * per_sample * sizeof(float));
    float *inputs = o->propagate_quantized ? malloc((size_t)nsamples * per_sample * sizeof(float)) : NULL;
    lq_session *s = NULL;
    lq_status st = LQ_OK;
    if (!hidden || (o->propagate_quantized && !inputs)) {
        st = lq_fail(LQ_ERR_NOMEM, "quantize: out of memory for %d × %d calibration tokens "
                     "(%zu MiB of hidden states)", nsamples, seqlen,
                     (size_t)nsamples * per_sample * sizeof(float) >> 20);
        goto done;
    }
    if ((st = lq_layer_moments_new(c, &mo)) != LQ_OK) goto done;
    if ((st = lq_session_new(m, seqlen, &s)) != LQ_OK) goto done;
    for (int i = 0; i < nsamples && st == LQ_OK; i++)
        st = lq_embed_tokens(s, tokens + (size_t)i * seqlen, seqlen, hidden + (size_t)i * per_sample);
    if (st != LQ_OK) goto done;

    int total = 7 * c->n_layers, done_count = 0;
    for (int l = 0; l < c->n_layers && st == LQ_OK; l++) {
        if (inputs) memcpy(inputs, hidden, (size_t)nsamples * per_sample * sizeof(float));
        /* FP pass: captures H and (when not propagating the quantized model) moves the hidden
         * states on */
        double t_layer = lq_seconds(), t_quant = 0.0, t_prop = 0.0;
        if ((st = lq_layer_moments_capture(mo, s, l, hidden, nsamples, seqlen)) != LQ_OK) break;
        t_quant = lq_seconds();
        for (int idx = 0; idx < 7 && st == LQ_OK; idx++) {
            char name[96];
            lq_linear_name(l, idx, name, sizeof name);
            lq_linear *lin = lq_layer_linear(&m->layers[l], idx);
            double t0 = lq_seconds(), err = 0.0;
            st = lq_quantize_linear(lin, name, lq_layer_moments_for(mo, idx),
                                    lq_linear_seed(o->lift.seed, l, idx), o, &err);
            if (st != LQ_OK) break;
            if (results) {
                lq_linear_result *r = &results[7 * l + idx];
                snprintf(r->name, sizeof r->name, "%s", name);
                r->out_features = lin->out_features;
                r->in_features = lin->in_features;
                r->rel_error = err;
                r->seconds = lq_seconds() - t0;
            }
            done_count++;
            if (o->progress) o->progress(o->progress_ctx, done_count, total, name, err);
        }
        t_prop = lq_seconds();
        if (st == LQ_OK && inputs) {
            memcpy(hidden, inputs, (size_t)nsamples * per_sample * sizeof(float));
            for (int i = 0; i < nsamples && st == LQ_OK; i++)
                st = lq_layer_forward(s, l, hidden + (size_t)i * per_sample, seqlen, NULL);
        }
        LQ_DEBUG("layer %d: capture %.1f s, quantize %.1f s, propagate %.1f s", l,
                t_quant - t_layer, t_prop - t_quant, lq_seconds() - t_prop);
    }
done:
    lq_session_free(s);
    lq_layer_moments_free(mo);
    free(hidden), free(inputs);
    return st;
}
