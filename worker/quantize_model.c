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
#include "lq_block.h"

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

const char *lq_propagate_name(lq_propagate p) {
    switch (p) {
    case LQ_PROPAGATE_FP: return "fp";
    case LQ_PROPAGATE_QUANT: return "quant";
    case LQ_PROPAGATE_ASYM: return "asym";
    }
    return "?";
}

lq_status lq_propagate_from_name(const char *name, lq_propagate *out) {
    for (int p = LQ_PROPAGATE_FP; p <= LQ_PROPAGATE_ASYM; p++)
        if (!strcmp(name, lq_propagate_name((lq_propagate)p))) {
            *out = (lq_propagate)p;
            return LQ_OK;
        }
    return lq_fail(LQ_ERR_ARG, "--propagate %s: unknown (fp, quant, asym)", name);
}

/* Width of the input each tap sees, and the widest of the four (one buffer serves them all). */
static int tap_width(const lq_model_config *c, lq_tap tap) {
    switch (tap) {
    case LQ_TAP_ATTN_OUT: return c->n_heads * c->head_dim;
    case LQ_TAP_MLP_HIDDEN: return c->hidden_dim;
    default: return c->dim;
    }
}

static int widest_tap(const lq_model_config *c) {
    int widest = 0;
    for (int t = 0; t < LQ_TAP_COUNT; t++)
        if (tap_width(c, (lq_tap)t) > widest) widest = tap_width(c, (lq_tap)t);
    return widest;
}

/* ---- capture ---------------------------------------------------------------------------- */
struct lq_layer_moments {
    int width[LQ_TAP_COUNT];
    double *H[LQ_TAP_COUNT];  /* width × width, f64 sums across chunks */
    float *chunk;             /* widest², one chunk's XᵀX in f32 (≤ 128 tokens: exact enough) */
};

static int capture_hook(void *ctx, int layer, lq_tap tap, const float *x, int ntok, int width) {
    (void)layer;
    lq_layer_moments *c = ctx;
    lq_gemm_f32(1, 0, width, width, ntok, 1.0f, x, width, x, width, 0.0f, c->chunk, width);
    double *H = c->H[tap];
    for (size_t i = 0; i < (size_t)width * width; i++) H[i] += c->chunk[i];
    return 0;
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
    int widest = widest_tap(c), bad = 0;
    for (int t = 0; t < LQ_TAP_COUNT; t++) {
        mo->width[t] = tap_width(c, (lq_tap)t);
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

typedef struct {
    lq_model *m;
    const lq_quantize_options *o;
    lq_linear_result *results;
    int done, total;
} model_run;

/* Quantizes linear idx of layer l from H (its weight may be a stand-in target, see ASYM) and
 * reports it. */
static lq_status quantize_and_report(model_run *run, int l, int idx, const double *H) {
    char name[96];
    lq_linear_name(l, idx, name, sizeof name);
    lq_linear *lin = lq_layer_linear(&run->m->layers[l], idx);
    double t0 = lq_seconds(), err = 0.0;
    lq_status st = lq_quantize_linear(lin, name, H, lq_linear_seed(run->o->lift.seed, l, idx),
                                      run->o, &err);
    if (st != LQ_OK) return st;
    if (run->results) {
        lq_linear_result *r = &run->results[7 * l + idx];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->out_features = lin->out_features;
        r->in_features = lin->in_features;
        r->rel_error = err;
        r->seconds = lq_seconds() - t0;
    }
    run->done++;
    if (run->o->progress) run->o->progress(run->o->progress_ctx, run->done, run->total, name, err);
    return LQ_OK;
}

/* ---- asymmetric calibration (LQ_PROPAGATE_ASYM) -----------------------------------------------
 * A linear of layer l sees x̂ (the quantized model's input) where the FP model sees x; the fit
 * minimises Σ ‖Ŵx̂ − Wx‖². With Ĥ = Σ x̂x̂ᵀ and C = Σ x̂xᵀ that is tr((Ŵ − W*) Ĥ (Ŵ − W*)ᵀ) plus a
 * constant, W* = W·Cᵀ·Ĥ⁻¹: every quantizer then runs unchanged on (W*, Ĥ). Written as
 * W* = W + W·(Cᵀ − Ĥ)·(Ĥ + λI)⁻¹ — Cᵀ − Ĥ = Σ (x − x̂) x̂ᵀ — so that W* = W exactly when the
 * input carries no error, whatever the damping λ (which keeps directions x̂ barely visits from
 * blowing up). */
typedef struct {
    lq_tap tap;         /* the tap being fitted (quantized pass) */
    int row;            /* rows of the current sample seen so far (all samples, FP pass) */
    float *fp_taps[LQ_TAP_COUNT]; /* nsamples × seqlen × tap width: the FP stream's tap inputs */
    float *fp_rows;     /* the current sample's rows of fp_taps[tap] */
    double *H, *C;      /* Σ x̂x̂ᵀ, Σ x̂xᵀ */
    float *chunk;       /* widest² */
} asym_capture;

/* FP pass: keeps every tap's input rows of sample `row / seqlen`, and lets the layer run to its
 * end (the FP stream moves on in the same pass). */
static int asym_store_hook(void *ctx, int layer, lq_tap tap, const float *x, int ntok, int width) {
    (void)layer;
    asym_capture *a = ctx;
    memcpy(a->fp_taps[tap] + (size_t)a->row * width, x, (size_t)ntok * width * sizeof(float));
    if (tap == LQ_TAP_COUNT - 1) a->row += ntok;
    return 0;
}

/* Quantized pass: accumulates Ĥ and C at the tap being fitted, and ends the chunk there. */
static int asym_hook(void *ctx, int layer, lq_tap tap, const float *x, int ntok, int width) {
    (void)layer;
    asym_capture *a = ctx;
    if (tap != a->tap) return 0;
    const float *fp = a->fp_rows + (size_t)a->row * width; /* the same rows of the FP stream */
    size_t n = (size_t)width * width;
    lq_gemm_f32(1, 0, width, width, ntok, 1.0f, x, width, x, width, 0.0f, a->chunk, width);
    for (size_t i = 0; i < n; i++) a->H[i] += a->chunk[i];
    lq_gemm_f32(1, 0, width, width, ntok, 1.0f, x, width, fp, width, 0.0f, a->chunk, width);
    for (size_t i = 0; i < n; i++) a->C[i] += a->chunk[i];
    a->row += ntok;
    return 1; /* nothing after this tap is needed */
}

lq_status lq_asym_target(const float *W, int oc, int ic, const double *H, const double *C,
                         double damp, double alpha, const char *name, float **out) {
    *out = NULL;
    if (!isfinite(alpha) || alpha < 0.0 || alpha > 1.0)
        return lq_fail(LQ_ERR_ARG, "%s: asymmetric share %g outside [0, 1]", name, alpha);
    size_t n = (size_t)ic * ic;
    double *Hinv = malloc(n * sizeof(double)), *D = malloc(n * sizeof(double));
    double *Wd = malloc((size_t)oc * ic * sizeof(double)), *Wc = malloc((size_t)oc * ic * sizeof(double));
    float *Wstar = malloc((size_t)oc * ic * sizeof(float));
    lq_status st = LQ_OK;
    if (!Hinv || !D || !Wd || !Wc || !Wstar) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory for the asymmetric target", name);
        goto done;
    }
    double mean_diag = 0.0;
    for (int i = 0; i < ic; i++) mean_diag += H[(size_t)i * ic + i];
    mean_diag /= ic;
    memcpy(Hinv, H, n * sizeof(double));
    /* a floor keeps dead input channels (Ĥ_ii = 0) invertible at --damp 0; an input that is zero
     * everywhere gets λ = 1 (W* = W then, as x̂ = 0 leaves Cᵀ − Ĥ = 0) */
    double lambda = mean_diag > 0.0 ? (damp > 1e-6 ? damp : 1e-6) * mean_diag : 1.0;
    for (int i = 0; i < ic; i++) Hinv[(size_t)i * ic + i] += lambda;
    if ((st = lq_spd_inverse(Hinv, ic, name)) != LQ_OK) goto done;
    for (int i = 0; i < ic; i++) /* D = Cᵀ − Ĥ */
        for (int j = 0; j < ic; j++) D[(size_t)i * ic + j] = C[(size_t)j * ic + i] - H[(size_t)i * ic + j];
    for (size_t i = 0; i < (size_t)oc * ic; i++) Wd[i] = W[i];
    lq_gemm_f64(0, 0, oc, ic, ic, 1.0, Wd, ic, D, ic, 0.0, Wc, ic);    /* W·(Cᵀ − Ĥ) */
    lq_gemm_f64(0, 0, oc, ic, ic, alpha, Wc, ic, Hinv, ic, 1.0, Wd, ic); /* W + α…·(Ĥ + λI)⁻¹ */
    for (size_t i = 0; i < (size_t)oc * ic; i++) Wstar[i] = (float)Wd[i];
    *out = Wstar, Wstar = NULL;
done:
    free(Hinv), free(D), free(Wd), free(Wc), free(Wstar);
    return st;
}

/* ---- per-block correction (o->block_steps) --------------------------------------------------
 * The per-linear correction fits each linear's output alone; the layer's output also depends on
 * how the errors of q/k/v pass through softmax and of gate/up through SiLU, which only a fit
 * through the whole layer sees. Inputs are the windows the layer was calibrated on and targets
 * the FP layer's outputs (on the same inputs, or on the FP stream's with ASYM), both
 * nsamples × seqlen × dim. */
static lq_status block_error(lq_block_grad *bg, const lq_model_config *c, const lq_layer *L,
                             lq_lift_trainer *const tr[7], const float *const bias[7],
                             const float *inputs, const float *targets, int nsamples, int seqlen,
                             double *err) {
    const float *W[7];
    for (int idx = 0; idx < 7; idx++) W[idx] = lq_lift_trainer_weight(tr[idx]);
    size_t per_sample = (size_t)seqlen * c->dim;
    *err = 0.0;
    for (int i = 0; i < nsamples; i++) {
        double e;
        lq_status st = lq_block_loss_grad(bg, c, L, W, bias, inputs + i * per_sample, seqlen,
                                          targets + i * per_sample, 1.0, NULL, NULL, &e);
        if (st != LQ_OK) return st;
        *err += e;
    }
    return LQ_OK;
}

static lq_status correct_block(model_run *run, lq_block_grad *bg, int l, const float *inputs,
                               const float *targets, int nsamples, int seqlen) {
    lq_model *m = run->m;
    const lq_model_config *c = &m->cfg;
    lq_layer *L = &m->layers[l];
    int steps = run->o->block_steps;
    size_t per_sample = (size_t)seqlen * c->dim;
    lq_lift_trainer *tr[7] = {0};
    float *grad[7] = {0};
    const float *bias[7];
    lq_status st = LQ_OK;
    double t0 = lq_seconds();
    for (int idx = 0; idx < 7 && st == LQ_OK; idx++) {
        lq_linear *lin = lq_layer_linear(L, idx);
        const lq_lift_weights *w = lq_linear_lift(lin);
        char name[96];
        lq_linear_name(l, idx, name, sizeof name);
        bias[idx] = lin->bias;
        if (!w) {
            st = lq_fail(LQ_ERR_ARG, "%s: the per-block correction needs LiftQuant linears", name);
        } else if ((st = lq_lift_trainer_new(w, &run->o->lift, steps, &tr[idx])) != LQ_OK) {
            st = lq_fail_context(st, "%s", name);
        } else if (!(grad[idx] = malloc((size_t)lin->out_features * lin->in_features * sizeof(float)))) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory for the per-block correction", name);
        }
    }
    /* the layer's own contribution to its output, Σ ‖target − input‖², makes the error relative */
    double ref = 0.0, before = 0.0, after = 0.0;
    for (size_t i = 0; i < (size_t)nsamples * per_sample; i++)
        ref += (double)(targets[i] - inputs[i]) * (targets[i] - inputs[i]);
    if (!(ref > 0.0)) ref = 1.0;
    if (st == LQ_OK) st = block_error(bg, c, L, tr, bias, inputs, targets, nsamples, seqlen, &before);
    /* mean squared error per element: Adam does not care about the scale, f32 sums do */
    double loss_scale = 1.0 / (double)per_sample;
    for (int t = 1; t <= steps && st == LQ_OK; t++) {
        const float *W[7];
        for (int idx = 0; idx < 7; idx++) W[idx] = lq_lift_trainer_weight(tr[idx]);
        int i = (t - 1) % nsamples;
        double loss;
        st = lq_block_loss_grad(bg, c, L, W, bias, inputs + i * per_sample, seqlen,
                                targets + i * per_sample, loss_scale, NULL, grad, &loss);
        for (int idx = 0; idx < 7 && st == LQ_OK; idx++) lq_lift_trainer_step(tr[idx], grad[idx], t);
    }
    if (st == LQ_OK) st = block_error(bg, c, L, tr, bias, inputs, targets, nsamples, seqlen, &after);
    int keep = st == LQ_OK && after < before;
    for (int idx = 0; idx < 7 && keep && st == LQ_OK; idx++) {
        lq_lift_weights w;
        lq_lift_trainer_take(tr[idx], &w);
        if ((st = lq_linear_set_lift(lq_layer_linear(L, idx), &w)) != LQ_OK) lq_lift_weights_free(&w);
    }
    if (st == LQ_OK)
        LQ_INFO("layer %d: per-block correction, relative output error %.5f -> %.5f (%d steps, "
                "%.1f s)%s", l, before / ref, after / ref, steps, lq_seconds() - t0,
                keep ? "" : ", not kept");
    for (int idx = 0; idx < 7; idx++) lq_lift_trainer_free(tr[idx]), free(grad[idx]);
    return st;
}

/* One layer in ASYM mode: the FP stream runs through the FP layer once, keeping the inputs of
 * all four taps (and so producing its outputs, the per-block correction's targets); then for
 * each tap in forward order the quantized stream (the groups before it quantized) runs up to
 * the tap, sample by sample, and the tap's linears are quantized against W*; then the
 * quantized stream moves on through the layer. */
static lq_status quantize_layer_asym(model_run *run, lq_session *s, lq_block_grad *bg, int l,
                                     float *hidden_q, float *hidden_fp, float *work,
                                     asym_capture *a, int nsamples, int seqlen) {
    lq_model *m = run->m;
    int dim = m->cfg.dim;
    size_t per_sample = (size_t)seqlen * dim;
    lq_linear fp[7];
    for (int idx = 0; idx < 7; idx++) fp[idx] = *lq_layer_linear(&m->layers[l], idx);
    lq_status st = LQ_OK;
    lq_layer_hook store = {asym_store_hook, a}, hook = {asym_hook, a};
    a->row = 0;
    for (int i = 0; i < nsamples && st == LQ_OK; i++)
        st = lq_layer_forward(s, l, hidden_fp + i * per_sample, seqlen, &store);
    for (int tap = 0; tap < LQ_TAP_COUNT && st == LQ_OK; tap++) {
        int width = tap_width(&m->cfg, (lq_tap)tap);
        a->tap = (lq_tap)tap;
        memset(a->H, 0, (size_t)width * width * sizeof(double));
        memset(a->C, 0, (size_t)width * width * sizeof(double));
        for (int i = 0; i < nsamples && st == LQ_OK; i++) {
            memcpy(work, hidden_q + i * per_sample, per_sample * sizeof(float));
            a->fp_rows = a->fp_taps[tap] + (size_t)i * seqlen * width, a->row = 0;
            st = lq_layer_forward(s, l, work, seqlen, &hook);
        }
        for (int idx = 0; idx < 7 && st == LQ_OK; idx++) {
            if ((int)LINEAR_TAP[idx] != tap) continue;
            lq_linear *lin = lq_layer_linear(&m->layers[l], idx);
            char name[96];
            lq_linear_name(l, idx, name, sizeof name);
            float *Wstar = NULL;
            st = lq_asym_target(fp[idx].weight, lin->out_features, lin->in_features, a->H, a->C,
                                run->o->damp, run->o->asym_alpha, name, &Wstar);
            if (st != LQ_OK) break;
            lin->weight = Wstar;
            st = quantize_and_report(run, l, idx, a->H);
            if (lin->weight == Wstar) lin->weight = fp[idx].weight; /* failed: still FP */
            free(Wstar);
        }
    }
    if (st == LQ_OK && bg) st = correct_block(run, bg, l, hidden_q, hidden_fp, nsamples, seqlen);
    for (int i = 0; i < nsamples && st == LQ_OK; i++)
        st = lq_layer_forward(s, l, hidden_q + i * per_sample, seqlen, NULL);
    return st;
}

lq_status lq_quantize_model(lq_model *m, const int *tokens, int nsamples, int seqlen,
                            const lq_quantize_options *o, lq_linear_result *results) {
    const lq_model_config *c = &m->cfg;
    int dim = c->dim, widest = widest_tap(c);
    size_t per_sample = (size_t)seqlen * dim, hidden_bytes = (size_t)nsamples * per_sample * sizeof(float);
    int asym = o->propagate == LQ_PROPAGATE_ASYM;
    lq_layer_moments *mo = NULL;
    /* hidden: the stream that calibrates (FP or quantized); second: the saved inputs when
     * propagating quantized, the FP stream in ASYM mode */
    float *hidden = malloc(hidden_bytes);
    int block = o->block_steps > 0;
    float *second = o->propagate != LQ_PROPAGATE_FP || block ? malloc(hidden_bytes) : NULL;
    float *work = asym ? malloc(per_sample * sizeof(float)) : NULL;
    asym_capture a = {0};
    if (asym) {
        for (int t = 0; t < LQ_TAP_COUNT; t++)
            a.fp_taps[t] = malloc((size_t)nsamples * seqlen * tap_width(c, (lq_tap)t) * sizeof(float));
        a.H = malloc((size_t)widest * widest * sizeof(double));
        a.C = malloc((size_t)widest * widest * sizeof(double));
        a.chunk = malloc((size_t)widest * widest * sizeof(float));
    }
    lq_session *s = NULL;
    lq_block_grad *bg = NULL;
    lq_status st = LQ_OK;
    model_run run = {m, o, results, 0, 7 * c->n_layers};
    if (o->block_steps < 0 || (block && o->method != LQ_METHOD_LIFTQUANT)) {
        st = lq_fail(LQ_ERR_ARG, "quantize: %d per-block correction steps with --method %s "
                     "(LiftQuant only, at least 0)", o->block_steps, lq_method_name(o->method));
        goto done;
    }
    if (block && (st = lq_block_grad_new(c, seqlen, &bg)) != LQ_OK) goto done;
    if (!hidden || (second == NULL && (o->propagate != LQ_PROPAGATE_FP || block)) ||
        (asym && (!work || !a.fp_taps[0] || !a.fp_taps[1] || !a.fp_taps[2] || !a.fp_taps[3] ||
                  !a.H || !a.C || !a.chunk))) {
        size_t tap_bytes = 0;
        for (int t = 0; asym && t < LQ_TAP_COUNT; t++)
            tap_bytes += (size_t)nsamples * seqlen * tap_width(c, (lq_tap)t) * sizeof(float);
        st = lq_fail(LQ_ERR_NOMEM, "quantize: out of memory for %d × %d calibration tokens "
                     "(%zu MiB of hidden states, %zu MiB of FP tap inputs)", nsamples, seqlen,
                     (second ? 2 : 1) * hidden_bytes >> 20, tap_bytes >> 20);
        goto done;
    }
    if (!asym && (st = lq_layer_moments_new(c, &mo)) != LQ_OK) goto done;
    if ((st = lq_session_new(m, seqlen, &s)) != LQ_OK) goto done;
    for (int i = 0; i < nsamples && st == LQ_OK; i++)
        st = lq_embed_tokens(s, tokens + (size_t)i * seqlen, seqlen, hidden + (size_t)i * per_sample);
    if (st != LQ_OK) goto done;
    if (asym) memcpy(second, hidden, hidden_bytes);

    for (int l = 0; l < c->n_layers && st == LQ_OK; l++) {
        double t_layer = lq_seconds(), t_quant = 0.0, t_prop = 0.0;
        if (asym) {
            st = quantize_layer_asym(&run, s, bg, l, hidden, second, work, &a, nsamples, seqlen);
            LQ_DEBUG("layer %d: %.1f s (asymmetric)", l, lq_seconds() - t_layer);
            continue;
        }
        if (second) memcpy(second, hidden, hidden_bytes);
        /* FP pass: captures H and (when not propagating the quantized model) moves the hidden
         * states on */
        if ((st = lq_layer_moments_capture(mo, s, l, hidden, nsamples, seqlen)) != LQ_OK) break;
        t_quant = lq_seconds();
        for (int idx = 0; idx < 7 && st == LQ_OK; idx++)
            st = quantize_and_report(&run, l, idx, lq_layer_moments_for(mo, idx));
        /* hidden now holds the FP layer's outputs on the inputs saved in second */
        if (st == LQ_OK && bg) st = correct_block(&run, bg, l, second, hidden, nsamples, seqlen);
        t_prop = lq_seconds();
        if (st == LQ_OK && o->propagate != LQ_PROPAGATE_FP) {
            memcpy(hidden, second, hidden_bytes);
            for (int i = 0; i < nsamples && st == LQ_OK; i++)
                st = lq_layer_forward(s, l, hidden + (size_t)i * per_sample, seqlen, NULL);
        }
        LQ_DEBUG("layer %d: capture %.1f s, quantize %.1f s, propagate %.1f s", l,
                t_quant - t_layer, t_prop - t_quant, lq_seconds() - t_prop);
    }
done:
    lq_block_grad_free(bg);
    lq_session_free(s);
    lq_layer_moments_free(mo);
    free(hidden), free(second), free(work);
    for (int t = 0; t < LQ_TAP_COUNT; t++) free(a.fp_taps[t]);
    free(a.H), free(a.C), free(a.chunk);
    return st;
}
