/* One decoder layer's loss and hand-written gradient (worker/lq_block.h):
 *
 *  - the forward equals lq_layer_forward (common/forward.c) on small random models with GQA,
 *    both RoPE pair conventions, partial rotary, q/k/v bias and q/k norm, and across
 *    forward.c's 128-row chunks; it also equals the double-precision layer of
 *    reference_model.h, written from the Hugging Face definitions, as does the loss;
 *  - every weight gradient equals central finite differences of that double-precision loss,
 *    entry by entry and along a random direction over the whole matrix, for plain llama,
 *    Qwen-style bias + q/k norm, llama3 RoPE scaling and partial rotary;
 *  - bad arguments are refused with LQ_ERR_ARG naming them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "block"
#include "test_util.h"
#include "reference_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_block.h"
#include "lq_quant.h"
#include "model.h"

/* ---- a small random layer ----------------------------------------------------------------- */
/* One layer (its embeddings are made but not used), GQA (4 query heads on 2 KV heads) of 8,
 * HALF pairs; hidden 40 so no width coincides */
static lq_model_config small_config(void) { return synthetic_config(24, 40, 1, 16); }

/* random_model's spread of the attention and MLP norm weights around 1 */
#define NORM_SPREAD 0.2

/* the layer's weights and biases in lq_block.h's order, through lq_layer_linear so that the
 * order is the quantizer's */
static void layer_weights(lq_layer *L, const float *w[7], const float *bias[7]) {
    for (int i = 0; i < 7; i++) {
        w[i] = lq_layer_linear(L, i)->weight;
        bias[i] = lq_layer_linear(L, i)->bias;
    }
    assert_ptr_equal(w[0], L->wq.weight);
    assert_ptr_equal(w[3], L->wo.weight);
    assert_ptr_equal(w[6], L->w_down.weight);
}

/* ---- the double-precision layer (reference_model.h), its loss ------------------------------ */
static double ref_loss(const lq_model_config *c, const lq_layer *L, double *const W[7],
                       const float *x, int T, const float *target, double scale) {
    double *xd = double_copy(x, (size_t)T * c->dim), *y = malloc(sizeof(double) * T * c->dim), s = 0;
    ref_layer(c, L, W, xd, T, y);
    for (int i = 0; i < T * c->dim; i++) s += (y[i] - target[i]) * (y[i] - target[i]);
    free(xd), free(y);
    return scale * s;
}

static float *random_rows(int T, int D, uint64_t seed) {
    float *x = malloc(sizeof(float) * T * D);
    lq_rng r;
    lq_rng_seed(&r, seed);
    fill_normal(&r, x, (size_t)T * D, 1.0, 0.0);
    return x;
}

/* ---- forward ------------------------------------------------------------------------------ */
static void check_forward(const lq_model_config *c, int T, uint64_t seed) {
    lq_model *m = random_model(c, seed, NORM_SPREAD);
    lq_layer *L = &m->layers[0];
    int D = c->dim;
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    float *x = random_rows(T, D, seed + 100);
    float *ours = malloc(sizeof(float) * T * D), *theirs = malloc(sizeof(float) * T * D);
    double *ref = malloc(sizeof(double) * T * D);
    lq_block_grad *b;
    assert_int_equal(lq_block_grad_new(c, T + 3, &b), LQ_OK);
    double loss = -1;
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, NULL, 1.0, ours, NULL, &loss), LQ_OK);
    assert_true(loss == 0.0);

    lq_session *s;
    assert_int_equal(lq_session_new(m, T, &s), LQ_OK);
    memcpy(theirs, x, sizeof(float) * T * D);
    assert_int_equal(lq_layer_forward(s, 0, theirs, T, NULL), LQ_OK);
    double **W = double_weights(L);
    double *xd = double_copy(x, (size_t)T * D);
    ref_layer(c, L, W, xd, T, ref);

    double scale = 0, d_forward = 0, d_ref = 0;
    for (int i = 0; i < T * D; i++) {
        scale = fmax(scale, fabs(theirs[i]));
        d_forward = fmax(d_forward, fabs((double)ours[i] - theirs[i]));
        d_ref = fmax(d_ref, fabs(ours[i] - ref[i]));
    }
    if (d_forward > 1e-5 * scale)
        fail_msg("rope %d, bias %d, qk norm %d, %d tokens: differs from lq_layer_forward by %g "
                 "(outputs up to %g)", c->rope_style, c->has_qkv_bias, c->has_qk_norm, T,
                 d_forward, scale);
    if (d_ref > 1e-4 * scale) fail_msg("differs from the double reference by %g", d_ref);

    /* with a target, the loss is the reference's; y is the same with and without one */
    float *target = random_rows(T, D, seed + 200), *again = malloc(sizeof(float) * T * D);
    double lambda = 1.0 / (T * D);
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, target, lambda, again, NULL, &loss),
                     LQ_OK);
    assert_memory_equal(again, ours, sizeof(float) * T * D);
    double want = ref_loss(c, L, W, x, T, target, lambda);
    if (fabs(loss - want) > 1e-5 * want) fail_msg("loss %.9g, reference %.9g", loss, want);

    free_double_weights(W);
    free(x), free(xd), free(ours), free(theirs), free(ref), free(target), free(again);
    lq_session_free(s);
    lq_block_grad_free(b);
    lq_model_free(m);
}

static void test_forward_matches_layer_forward(void **state) {
    (void)state;
    for (int style = 0; style < 2; style++) {
        lq_model_config c = small_config();
        c.rope_style = style ? LQ_ROPE_INTERLEAVED : LQ_ROPE_HALF;
        check_forward(&c, 13, 1 + style);
        c.has_qkv_bias = 1, c.has_qk_norm = 1;
        check_forward(&c, 13, 3 + style);
        /* partial rotary: only the first 4 of 8 dims turn */
        c.rope_dim = 4;
        check_forward(&c, 11, 5 + style);
    }
    /* llama3 scaling over its three wavelength bands (6.3, 63, 628, 6283 against 16 and 64) and
     * more rows than forward.c's 128-row chunk */
    lq_model_config c = small_config();
    c.rope_scale_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 64;
    c.has_qk_norm = 1;
    check_forward(&c, 150, 7);
    /* multi-head attention, no sharing */
    c = small_config();
    c.n_kv_heads = c.n_heads;
    check_forward(&c, 10, 8);
}

/* ---- gradients ---------------------------------------------------------------------------- */
/* Every weight gradient against central differences of the double loss: `entries` random
 * entries of each matrix, and the derivative along a random direction over the whole matrix
 * (which sees every entry at once). The step is 1e-4 on weights of size ~0.2: truncation error
 * ~1e-8 relative, rounding ~1e-12; what remains is the float arithmetic of the gradient. */
static void check_gradients(const lq_model_config *c, int T, uint64_t seed) {
    lq_model *m = random_model(c, seed, NORM_SPREAD);
    lq_layer *L = &m->layers[0];
    int D = c->dim;
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    float *x = random_rows(T, D, seed + 100), *target = random_rows(T, D, seed + 200);
    double lambda = 1.0 / (T * D), loss;
    float *grads[7];
    for (int i = 0; i < 7; i++) grads[i] = malloc(sizeof(float) * linear_size(L, i));
    lq_block_grad *b;
    assert_int_equal(lq_block_grad_new(c, T, &b), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, c, L, w, bias, x, T, target, lambda, NULL, grads, &loss),
                     LQ_OK);
    double **W = double_weights(L);
    const double h = 1e-4;
    lq_rng r;
    lq_rng_seed(&r, seed + 300);
    static const char *names[7] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
    for (int i = 0; i < 7; i++) {
        size_t n = linear_size(L, i);
        double rms = 0;
        for (size_t j = 0; j < n; j++) rms += (double)grads[i][j] * grads[i][j];
        rms = sqrt(rms / n);
        assert_true(rms > 0);
        for (int e = 0; e < 8; e++) {
            size_t j = (size_t)(lq_rng_uniform(&r) * n);
            double keep = W[i][j];
            W[i][j] = keep + h;
            double up = ref_loss(c, L, W, x, T, target, lambda);
            W[i][j] = keep - h;
            double down = ref_loss(c, L, W, x, T, target, lambda);
            W[i][j] = keep;
            double fd = (up - down) / (2 * h), err = fabs(grads[i][j] - fd);
            /* relative to the entry, floored at a hundredth of the matrix's typical entry */
            if (err > 1e-3 * fmax(fabs(fd), 0.01 * rms))
                fail_msg("%s[%zu]: gradient %.7g, finite difference %.7g (rms %.3g; rope %d, "
                         "bias %d, qk norm %d)", names[i], j, grads[i][j], fd, rms, c->rope_style,
                         c->has_qkv_bias, c->has_qk_norm);
        }
        /* along a random direction R: d/dε loss(W + εR) = Σ grad ⊙ R */
        double *R = malloc(sizeof(double) * n), *W0 = malloc(sizeof(double) * n), dot = 0;
        memcpy(W0, W[i], sizeof(double) * n);
        for (size_t j = 0; j < n; j++) R[j] = lq_rng_normal(&r), dot += grads[i][j] * R[j];
        for (size_t j = 0; j < n; j++) W[i][j] = W0[j] + h * R[j];
        double up = ref_loss(c, L, W, x, T, target, lambda);
        for (size_t j = 0; j < n; j++) W[i][j] = W0[j] - h * R[j];
        double down = ref_loss(c, L, W, x, T, target, lambda);
        memcpy(W[i], W0, sizeof(double) * n);
        double fd = (up - down) / (2 * h);
        if (fabs(dot - fd) > 1e-3 * fabs(fd))
            fail_msg("%s along a random direction: gradient %.7g, finite difference %.7g",
                     names[i], dot, fd);
        free(R), free(W0);
    }
    free_double_weights(W);
    for (int i = 0; i < 7; i++) free(grads[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

static void test_gradients(void **state) {
    (void)state;
    lq_model_config c = small_config();
    check_gradients(&c, 12, 11);             /* plain llama, HALF */
    c.rope_style = LQ_ROPE_INTERLEAVED;
    check_gradients(&c, 12, 12);
    c = small_config();                      /* Qwen: bias and q/k norm */
    c.has_qkv_bias = 1, c.has_qk_norm = 1;
    check_gradients(&c, 12, 13);
    c.rope_style = LQ_ROPE_INTERLEAVED;
    check_gradients(&c, 12, 14);
    c = small_config();                      /* llama3 scaling, partial rotary */
    c.rope_scale_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 64;
    c.rope_dim = 4;
    check_gradients(&c, 16, 15);
}

/* grads[i] NULL skips that matrix only; the others are the full call's */
static void test_partial_grads(void **state) {
    (void)state;
    lq_model_config c = small_config();
    c.has_qk_norm = 1;
    lq_model *m = random_model(&c, 21, NORM_SPREAD);
    lq_layer *L = &m->layers[0];
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    int T = 10;
    float *x = random_rows(T, c.dim, 22), *target = random_rows(T, c.dim, 23);
    float *all[7], *some[7];
    for (int i = 0; i < 7; i++) {
        all[i] = malloc(sizeof(float) * linear_size(L, i));
        some[i] = i % 2 ? NULL : malloc(sizeof(float) * linear_size(L, i));
    }
    lq_block_grad *b;
    double l1, l2;
    assert_int_equal(lq_block_grad_new(&c, T, &b), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 0.5, NULL, all, &l1), LQ_OK);
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 0.5, NULL, some, &l2), LQ_OK);
    assert_true(l1 == l2 && l1 > 0);
    for (int i = 0; i < 7; i += 2)
        assert_memory_equal(all[i], some[i], sizeof(float) * linear_size(L, i));
    for (int i = 0; i < 7; i++) free(all[i]), free(some[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

/* ---- errors ------------------------------------------------------------------------------- */
static void test_errors(void **state) {
    (void)state;
    lq_model_config c = small_config();
    lq_model *m = random_model(&c, 31, NORM_SPREAD);
    lq_layer *L = &m->layers[0];
    const float *w[7], *bias[7];
    layer_weights(L, w, bias);
    int T = 8;
    float *x = random_rows(T + 1, c.dim, 32), *target = random_rows(T + 1, c.dim, 33);
    float *grads[7];
    for (int i = 0; i < 7; i++) grads[i] = malloc(sizeof(float) * linear_size(L, i));
    lq_block_grad *b;
    double loss = 1;
    expect_error(lq_block_grad_new(&c, 0, &b), LQ_ERR_ARG, "max_tokens");
    assert_null(b);
    assert_int_equal(lq_block_grad_new(&c, T, &b), LQ_OK);
    assert_true(lq_block_grad_bytes(b) > 0);

    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, 0, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "ntok = 0");
    assert_true(loss == 0.0);
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T + 1, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "ntok = 9 is outside [1, max_tokens = 8]");
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T, NULL, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "without a target");
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, NULL, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "x is NULL");
    const float *missing[7];
    memcpy(missing, w, sizeof missing);
    missing[5] = NULL;
    expect_error(lq_block_loss_grad(b, &c, L, missing, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "weights[5] (w_up)");
    lq_model_config other = c;
    other.hidden_dim = 48;
    expect_error(lq_block_loss_grad(b, &other, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "c->hidden_dim = 48");
    other = c;
    other.rope_style = LQ_ROPE_INTERLEAVED;
    expect_error(lq_block_loss_grad(b, &other, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "rope_style");
    L->wk.out_features = 8;
    expect_error(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                 LQ_ERR_ARG, "L->wk is 8 × 24, the config makes it 16 × 24");
    L->wk.out_features = 16;
    /* and after all that, a good call still works */
    assert_int_equal(lq_block_loss_grad(b, &c, L, w, bias, x, T, target, 1, NULL, grads, &loss),
                     LQ_OK);
    assert_true(loss > 0);
    for (int i = 0; i < 7; i++) free(grads[i]);
    free(x), free(target);
    lq_block_grad_free(b);
    lq_model_free(m);
}

/* lq_quantize_model refuses block steps it cannot run, before touching the model. */
static void test_quantize_model_refuses_block_steps(void **state) {
    (void)state;
    lq_model_config c = small_config();
    lq_model *m = random_model(&c, 41, NORM_SPREAD);
    int tokens[16] = {0};
    lq_quantize_options o;
    memset(&o, 0, sizeof o);
    lq_lift_options_default(&o.lift);
    o.method = LQ_METHOD_GPTQ, o.bits = 3, o.group = 8, o.block_steps = 4;
    expect_error(lq_quantize_model(m, tokens, 2, 8, &o, NULL), LQ_ERR_ARG, "LiftQuant only");
    o.method = LQ_METHOD_LIFTQUANT, o.block_steps = -1;
    expect_error(lq_quantize_model(m, tokens, 2, 8, &o, NULL), LQ_ERR_ARG, "-1 per-block");
    assert_non_null(m->layers[0].wq.weight); /* still FP */
    lq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_layer_forward),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_partial_grads),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_quantize_model_refuses_block_steps),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
