/* The LiftQuant layer quantizer (worker/lift_quantize.c): layout rule, the correction's
 * hand-written gradients against finite differences, and the quantizer's promises — each
 * stage lowers the output error, LDLQ beats independent encoding, the stored layer computes
 * what the quantizer measured, and bad inputs fail with a message. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define LQ_TEST_NAME "lift"
#include "lq_quant.h"
#include "lq_worker.h"
#include "test_util.h"

static void test_layout(void **state) {
    (void)state;
    struct { int ic, d, t1, t2; } cases[] = {
        {576, 8, 24, 24}, {576, 10, 29, 20}, {4096, 8, 64, 64}, {1536, 10, 77, 20},
        {64, 8, 8, 8}, {172, 8, 11, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int t1 = 0, t2 = 0;
        assert_int_equal(lq_lift_layout(cases[i].ic, cases[i].d, &t1, &t2), LQ_OK);
        assert_int_equal(t2 % cases[i].d, 0);
        assert_true(t1 * t2 >= cases[i].ic);
        assert_int_equal(t1, cases[i].t1);
        assert_int_equal(t2, cases[i].t2);
    }
    int t1, t2;
    assert_int_equal(lq_lift_layout(0, 8, &t1, &t2), LQ_ERR_ARG);
}

/* H = XᵀX/n for X with correlated, unequally scaled columns: what real activations look like */
static double *correlated_h(int ic, int n, uint64_t seed) {
    lq_rng rng;
    lq_rng_seed(&rng, seed);
    double *H = calloc((size_t)ic * ic, sizeof(double));
    double *x = malloc((size_t)ic * sizeof(double));
    for (int t = 0; t < n; t++) {
        double common = lq_rng_normal(&rng);
        for (int c = 0; c < ic; c++)
            x[c] = (0.5 * common + lq_rng_normal(&rng)) * (1.0 + 3.0 * (c % 7 == 0));
        for (int i = 0; i < ic; i++)
            for (int j = 0; j < ic; j++) H[(size_t)i * ic + j] += x[i] * x[j] / n;
    }
    free(x);
    return H;
}

/* Directional derivatives of the correction loss, every parameter group and the code
 * gradient, against central differences. */
static void test_gradients(void **state) {
    (void)state;
    lq_lift_weights w;
    memset(&w, 0, sizeof w);
    int oc = 5, ic = 22, D = 10, d = 4, t1 = 3, t2 = 8, E = t1 * t2;
    assert_int_equal(lq_lift_weights_alloc(&w, oc, ic, D, d, t1, t2, 0), LQ_OK);
    int t3 = lq_lift_t3(&w);
    size_t K = lq_lift_k(&w);
    lq_rng rng;
    lq_rng_seed(&rng, 7);
    for (int i = 0; i < oc; i++) w.scale[i] = (float)(0.5 + lq_rng_uniform(&rng));
    for (int i = 0; i < E; i++) w.a1inv[i] = (float)(0.5 + lq_rng_uniform(&rng));
    for (int i = 0; i < t1 * t1; i++) w.tl[i] = (float)lq_rng_normal(&rng);
    for (int i = 0; i < t2 * t3; i++) w.tr[i] = (float)(0.3 * lq_rng_normal(&rng));
    for (int i = 0; i < t1 * (t2 / d); i++) w.a2inv[i] = (float)(0.5 + lq_rng_uniform(&rng));
    float *Y = malloc((size_t)oc * K * sizeof(float)), *W = malloc((size_t)oc * E * sizeof(float));
    float *H = malloc((size_t)E * E * sizeof(float));
    for (size_t i = 0; i < (size_t)oc * K; i++) Y[i] = lq_rng_uniform(&rng) < 0.5 ? -1.0f : 1.0f;
    for (size_t i = 0; i < (size_t)oc * E; i++) W[i] = (float)lq_rng_normal(&rng);
    double *Hd = correlated_h(E, 200, 3);
    for (size_t i = 0; i < (size_t)E * E; i++) H[i] = (float)Hd[i];
    free(Hd);
    double norm = 10.0;

    float *g[6];
    size_t sizes[6] = {(size_t)oc, (size_t)E, (size_t)t1 * t1, (size_t)t2 * t3,
                       (size_t)t1 * (t2 / d), (size_t)oc * K};
    float *params[6] = {w.scale, w.a1inv, w.tl, w.tr, w.a2inv, Y};
    for (int k = 0; k < 6; k++) g[k] = calloc(sizes[k], sizeof(float));
    double loss = lq_lift_loss_grad(&w, Y, W, H, norm, g[0], g[1], g[2], g[3], g[4], g[5]);
    assert_true(loss > 0.0);
    for (int k = 0; k < 6; k++) {
        float *dir = malloc(sizes[k] * sizeof(float)), *saved = malloc(sizes[k] * sizeof(float));
        memcpy(saved, params[k], sizes[k] * sizeof(float));
        double predicted = 0.0;
        for (size_t i = 0; i < sizes[k]; i++) {
            dir[i] = (float)lq_rng_normal(&rng);
            predicted += (double)dir[i] * g[k][i];
        }
        double eps = 1e-3, lp, lm;
        for (size_t i = 0; i < sizes[k]; i++) params[k][i] = saved[i] + (float)eps * dir[i];
        lp = lq_lift_loss_grad(&w, Y, W, H, norm, NULL, NULL, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < sizes[k]; i++) params[k][i] = saved[i] - (float)eps * dir[i];
        lm = lq_lift_loss_grad(&w, Y, W, H, norm, NULL, NULL, NULL, NULL, NULL, NULL);
        memcpy(params[k], saved, sizes[k] * sizeof(float));
        double numeric = (lp - lm) / (2 * eps);
        print_message("group %d: analytic %.6g numeric %.6g\n", k, predicted, numeric);
        assert_true(fabs(numeric - predicted) <= 1e-2 * fabs(numeric) + 1e-4);
        free(dir), free(saved);
    }
    /* the loss itself: Ŵ from the effective-weight reference (worker/qlinear.c), cropped to IC,
     * against the same objective computed independently here */
    float *What = malloc((size_t)oc * ic * sizeof(float));
    /* bits of w hold the codes for the reference */
    size_t rb = lq_lift_row_bytes(&w);
    memset(w.bits, 0, (size_t)oc * rb);
    for (int r = 0; r < oc; r++)
        for (size_t c = 0; c < K; c++)
            if (Y[(size_t)r * K + c] > 0) w.bits[(size_t)r * rb + c / 8] |= (uint8_t)(1u << (c % 8));
    assert_int_equal(lq_lift_effective_weight(&w, What), LQ_OK);
    /* padded columns of W and H must be zero for the two to agree */
    for (int r = 0; r < oc; r++)
        for (int c = ic; c < E; c++) W[(size_t)r * E + c] = 0.0f;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++)
            if (i >= ic || j >= ic) H[(size_t)i * E + j] = 0.0f;
    double fast = lq_lift_loss_grad(&w, Y, W, H, norm, NULL, NULL, NULL, NULL, NULL, NULL);
    double ref = 0.0;
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < ic; i++)
            for (int j = 0; j < ic; j++)
                ref += ((double)What[(size_t)r * ic + i] - W[(size_t)r * E + i]) * H[(size_t)i * E + j] *
                       ((double)What[(size_t)r * ic + j] - W[(size_t)r * E + j]);
    ref /= norm;
    assert_true(fabs(fast - ref) <= 1e-4 * ref);
    for (int k = 0; k < 6; k++) free(g[k]);
    free(Y), free(W), free(H), free(What);
    lq_lift_weights_free(&w);
}

typedef struct {
    lq_lattice_file file;
    lq_lattice lattice;
} test_lattice;

static void load_lattice(test_lattice *t, int D, int d) {
    char path[4096];
    assert_int_equal(lq_lattice_file_path(LQ_LATTICE_DIR, D, d, path, sizeof path), LQ_OK);
    assert_int_equal(lq_lattice_file_read(path, &t->file), LQ_OK);
    assert_int_equal(lq_lattice_init(&t->lattice, D, d, t->file.M), LQ_OK);
}

static double quantize_error(const float *W, int oc, int ic, const double *H, test_lattice *t,
                             int ldlq, int steps, lq_lift_report *rep, lq_lift_weights *out) {
    lq_lift_options o;
    lq_lift_options_default(&o);
    o.lattice = &t->lattice;
    o.ldlq = ldlq, o.steps = steps;
    memset(out, 0, sizeof *out);
    assert_int_equal(lq_quantize_lift(W, oc, ic, NULL, H, &o, out, rep), LQ_OK);
    return rep->err_final;
}

static void test_quantizer_stages(void **state) {
    (void)state;
    int oc = 48, ic = 70;
    float *W = random_matrix(oc, ic, 11);
    double *H = correlated_h(ic, 400, 5);
    test_lattice t;
    memset(&t, 0, sizeof t);
    load_lattice(&t, 16, 8);
    lq_lift_report plain, ldlq, corrected;
    lq_lift_weights w0, w1, w2;
    quantize_error(W, oc, ic, H, &t, 0, 0, &plain, &w0);
    quantize_error(W, oc, ic, H, &t, 1, 0, &ldlq, &w1);
    quantize_error(W, oc, ic, H, &t, 1, 60, &corrected, &w2);
    print_message("plain %.5f/%.5f  ldlq %.5f/%.5f  corrected %.5f\n", plain.err_encoded,
                  plain.err_refit, ldlq.err_encoded, ldlq.err_refit, corrected.err_final);
    /* the closed-form scale is optimal per row for fixed codes */
    assert_true(plain.err_refit <= plain.err_encoded * (1 + 1e-6));
    assert_true(ldlq.err_refit <= ldlq.err_encoded * (1 + 1e-6));
    /* Hessian-aware encoding wins on correlated inputs */
    assert_true(ldlq.err_refit < 0.95 * plain.err_refit);
    /* the correction keeps its best iterate, so it can only help (f16 rounding aside) */
    assert_true(corrected.err_final < ldlq.err_refit);
    assert_true(corrected.err_final > 0.0 && corrected.err_final < 0.5);
    /* the stored layer is what was measured: Ŵ from the stored form gives err_final */
    float *What = malloc((size_t)oc * ic * sizeof(float));
    assert_int_equal(lq_lift_weights_validate(&w2, "test"), LQ_OK);
    assert_int_equal(lq_lift_effective_weight(&w2, What), LQ_OK);
    double num = lq_output_error(W, What, oc, ic, H), den = 0.0;
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < ic; i++)
            for (int j = 0; j < ic; j++)
                den += (double)W[(size_t)r * ic + i] * H[(size_t)i * ic + j] * W[(size_t)r * ic + j];
    print_message("stored layer: %.6f, quantizer reported %.6f\n", num / den, corrected.err_final);
    assert_true(fabs(num / den - corrected.err_final) <= 1e-3 * corrected.err_final + 1e-7);
    /* same inputs, same bytes */
    lq_lift_report again;
    lq_lift_weights w3;
    quantize_error(W, oc, ic, H, &t, 1, 60, &again, &w3);
    assert_memory_equal(w2.bits, w3.bits, (size_t)oc * lq_lift_row_bytes(&w2));
    assert_memory_equal(w2.tr, w3.tr, (size_t)w2.t2 * lq_lift_t3(&w2) * sizeof(float));
    free(What), free(W), free(H);
    lq_lift_weights_free(&w0), lq_lift_weights_free(&w1), lq_lift_weights_free(&w2),
        lq_lift_weights_free(&w3);
    lq_lattice_free(&t.lattice);
    lq_lattice_file_free(&t.file);
}

static void test_bad_inputs(void **state) {
    (void)state;
    int oc = 4, ic = 16;
    float *W = random_matrix(oc, ic, 1);
    double *H = calloc((size_t)ic * ic, sizeof(double));
    test_lattice t;
    memset(&t, 0, sizeof t);
    load_lattice(&t, 16, 8);
    lq_lift_options o;
    lq_lift_options_default(&o);
    lq_lift_weights w;
    lq_lift_report rep;
    memset(&w, 0, sizeof w);
    /* no lattice prepared */
    assert_int_equal(lq_quantize_lift(W, oc, ic, NULL, H, &o, &w, &rep), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "lattice"));
    /* all-zero calibration inputs */
    o.lattice = &t.lattice;
    assert_int_equal(lq_quantize_lift(W, oc, ic, NULL, H, &o, &w, &rep), LQ_ERR_NUMERIC);
    assert_non_null(strstr(lq_last_error(), "calibration"));
    free(W), free(H);
    lq_lattice_free(&t.lattice);
    lq_lattice_file_free(&t.file);
}

/* The per-block correction's trainer (lq_lift_trainer): it starts from the installed layer
 * exactly, gives it back unchanged when not stepped, refuses zero steps, and, fed the gradient
 * of the per-linear objective from outside, lowers that objective as the built-in correction
 * does — a wrong sign or a missing term anywhere in the chain from dL/dŴ would raise it. */
static double stored_error(const lq_lift_weights *w, const float *W, int oc, int ic,
                           const double *H, float *What) {
    assert_int_equal(lq_lift_effective_weight(w, What), LQ_OK);
    float *zero = calloc((size_t)oc * ic, sizeof(float));
    double rel = lq_output_error(W, What, oc, ic, H) / lq_output_error(W, zero, oc, ic, H);
    free(zero);
    return rel;
}

static void test_lift_trainer(void **state) {
    (void)state;
    int oc = 48, ic = 70, steps = 60;
    float *W = random_matrix(oc, ic, 11);
    double *H = correlated_h(ic, 400, 5);
    test_lattice t;
    memset(&t, 0, sizeof t);
    load_lattice(&t, 16, 8);
    lq_lift_report rep;
    lq_lift_weights w0;
    double e0 = quantize_error(W, oc, ic, H, &t, 1, 0, &rep, &w0);
    lq_lift_options o;
    lq_lift_options_default(&o);
    o.lattice = &t.lattice;
    float *What = malloc((size_t)oc * ic * sizeof(float)), *G = malloc((size_t)oc * ic * sizeof(float));
    assert_true(fabs(stored_error(&w0, W, oc, ic, H, What) - e0) <= 1e-4 * e0);

    lq_lift_trainer *tr = NULL;
    assert_int_equal(lq_lift_trainer_new(&w0, &o, 0, &tr), LQ_ERR_ARG);
    assert_null(tr);
    /* not stepped: Ŵ as stored, and the same bytes back */
    assert_int_equal(lq_lift_trainer_new(&w0, &o, steps, &tr), LQ_OK);
    const float *Wt = lq_lift_trainer_weight(tr);
    double worst = 0.0, largest = 0.0;
    for (size_t i = 0; i < (size_t)oc * ic; i++) {
        worst = fmax(worst, fabs((double)Wt[i] - What[i]));
        largest = fmax(largest, fabs((double)What[i]));
    }
    print_message("trainer's Ŵ against the stored layer's: %.3g of the largest entry\n", worst / largest);
    assert_true(worst <= 1e-5 * largest); /* f32 sums in another order */
    lq_lift_weights same;
    lq_lift_trainer_take(tr, &same);
    lq_lift_trainer_free(tr);
    assert_memory_equal(same.bits, w0.bits, (size_t)oc * lq_lift_row_bytes(&w0));
    assert_memory_equal(same.scale, w0.scale, (size_t)oc * sizeof(float));
    assert_memory_equal(same.tr, w0.tr, (size_t)w0.t2 * lq_lift_t3(&w0) * sizeof(float));
    lq_lift_weights_free(&same);

    /* stepped with dL/dŴ = 2(Ŵ − W)H/tr(WHWᵀ) */
    float *zero = calloc((size_t)oc * ic, sizeof(float));
    double norm = lq_output_error(W, zero, oc, ic, H);
    assert_int_equal(lq_lift_trainer_new(&w0, &o, steps, &tr), LQ_OK);
    for (int step = 1; step <= steps; step++) {
        Wt = lq_lift_trainer_weight(tr);
        for (int r = 0; r < oc; r++)
            for (int j = 0; j < ic; j++) {
                double g = 0.0;
                for (int i = 0; i < ic; i++) g += ((double)Wt[r * ic + i] - W[r * ic + i]) * H[(size_t)i * ic + j];
                G[r * ic + j] = (float)(2.0 * g / norm);
            }
        lq_lift_trainer_step(tr, G, step);
    }
    lq_lift_weights trained;
    lq_lift_trainer_take(tr, &trained);
    lq_lift_trainer_free(tr);
    assert_int_equal(lq_lift_weights_validate(&trained, "test"), LQ_OK);
    double e1 = stored_error(&trained, W, oc, ic, H, What);
    lq_lift_weights w2;
    double built_in = quantize_error(W, oc, ic, H, &t, 1, steps, &rep, &w2);
    print_message("trainer: %.5f -> %.5f (built-in correction, same steps: %.5f)\n", e0, e1, built_in);
    assert_true(e1 < 0.9 * e0);
    assert_true(e1 < 1.2 * built_in);
    free(W), free(H), free(What), free(G), free(zero);
    lq_lift_weights_free(&w0), lq_lift_weights_free(&trained), lq_lift_weights_free(&w2);
    lq_lattice_free(&t.lattice);
    lq_lattice_file_free(&t.file);
}

/* ASYM's target W* (worker/quantize_model.c): the asymmetric objective Σ ‖Ŵx̂ − Wx‖² equals
 * tr((Ŵ − W*)Ĥ(Ŵ − W*)ᵀ) plus a constant, for any Ŵ; W* is W itself when x̂ = x; and W* fits
 * the FP outputs better than W does. */
static double asym_objective(const float *What, const float *W, const double *X, const double *Xh,
                             int oc, int ic, int n) {
    double sum = 0.0;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < oc; r++) {
            double e = 0.0;
            for (int c = 0; c < ic; c++)
                e += What[r * ic + c] * Xh[t * ic + c] - W[r * ic + c] * X[t * ic + c];
            sum += e * e;
        }
    return sum;
}

static double h_norm(const float *What, const float *Wstar, const double *H, int oc, int ic) {
    double sum = 0.0;
    for (int r = 0; r < oc; r++)
        for (int i = 0; i < ic; i++)
            for (int j = 0; j < ic; j++)
                sum += (What[r * ic + i] - Wstar[r * ic + i]) * H[i * ic + j] *
                       (What[r * ic + j] - Wstar[r * ic + j]);
    return sum;
}

static void test_asym_target(void **state) {
    (void)state;
    enum { oc = 5, ic = 12, n = 400 };
    lq_rng rng;
    lq_rng_seed(&rng, 7);
    static double X[n * ic], Xh[n * ic], H[ic * ic], C[ic * ic], Hx[ic * ic];
    float W[oc * ic], W1[oc * ic], W2[oc * ic];
    for (int t = 0; t < n; t++) {
        double common = lq_rng_normal(&rng);
        for (int c = 0; c < ic; c++) X[t * ic + c] = (0.5 * common + lq_rng_normal(&rng)) * (1 + c % 3);
        /* the upstream error: noise plus a part correlated with the input */
        for (int c = 0; c < ic; c++)
            Xh[t * ic + c] = X[t * ic + c] * (1.0 + 0.05 * (c % 4)) + 0.1 * lq_rng_normal(&rng) +
                             0.1 * X[t * ic + (c + 1) % ic];
    }
    for (int i = 0; i < ic; i++)
        for (int j = 0; j < ic; j++) {
            double h = 0, cc = 0, hx = 0;
            for (int t = 0; t < n; t++) {
                h += Xh[t * ic + i] * Xh[t * ic + j];
                cc += Xh[t * ic + i] * X[t * ic + j];
                hx += X[t * ic + i] * X[t * ic + j];
            }
            H[i * ic + j] = h, C[i * ic + j] = cc, Hx[i * ic + j] = hx;
        }
    for (int i = 0; i < oc * ic; i++) {
        W[i] = (float)lq_rng_normal(&rng);
        W1[i] = W[i] + 0.3f * (float)lq_rng_normal(&rng);
        W2[i] = (float)lq_rng_normal(&rng);
    }
    float *Wstar = NULL;
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.0, 1.0, "test", &Wstar), LQ_OK);
    double c1 = asym_objective(W1, W, X, Xh, oc, ic, n) - h_norm(W1, Wstar, H, oc, ic);
    double c2 = asym_objective(W2, W, X, Xh, oc, ic, n) - h_norm(W2, Wstar, H, oc, ic);
    double scale = asym_objective(W2, W, X, Xh, oc, ic, n);
    assert_true(fabs(c1 - c2) < 1e-5 * scale);
    assert_true(c1 >= -1e-6 * scale); /* the constant is the least error reachable */
    assert_true(asym_objective(Wstar, W, X, Xh, oc, ic, n) < 0.8 * asym_objective(W, W, X, Xh, oc, ic, n));

    /* α scales the correction: half of it at 0.5, none (W bit for bit) at 0 */
    float *Whalf = NULL, *Wnone = NULL;
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.0, 0.5, "test", &Whalf), LQ_OK);
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.0, 0.0, "test", &Wnone), LQ_OK);
    assert_memory_equal(Wnone, W, sizeof W);
    double worst = 0.0, delta = 0.0;
    for (int i = 0; i < oc * ic; i++) {
        double want = W[i] + 0.5 * ((double)Wstar[i] - W[i]);
        worst = fmax(worst, fabs(Whalf[i] - want));
        delta = fmax(delta, fabs((double)Wstar[i] - W[i]));
    }
    assert_true(delta > 1e-2);          /* there is a correction to halve */
    assert_true(worst < 1e-5 * delta);
    free(Whalf), free(Wnone), free(Wstar);
    Wstar = NULL;
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.0, 1.5, "test", &Wstar), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "asymmetric share 1.5"));
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.0, NAN, "test", &Wstar), LQ_ERR_ARG);
    assert_null(Wstar);
    /* moments no real input gives (a NaN from an overflowed window): an error naming the
     * linear, no target */
    double saved = H[0];
    H[0] = NAN;
    assert_int_equal(lq_asym_target(W, oc, ic, H, C, 0.01, 1.0, "layers.3.q", &Wstar), LQ_ERR_NUMERIC);
    assert_non_null(strstr(lq_last_error(), "layers.3.q: matrix is not positive definite"));
    assert_null(Wstar);
    H[0] = saved;

    /* no upstream error: the target is W, bit for bit, whatever the damping */
    assert_int_equal(lq_asym_target(W, oc, ic, Hx, Hx, 0.01, 1.0, "test", &Wstar), LQ_OK);
    assert_memory_equal(Wstar, W, sizeof W);
    free(Wstar);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_quantizer_stages),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_asym_target),
        cmocka_unit_test(test_lift_trainer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
