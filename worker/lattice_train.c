/* Training the mapping matrix M (ALGORITHM.md §1.2), plus a Lloyd polish; see lq_worker.h. */
#include "lq_worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Work is split into this many fixed chunks whose results are added in chunk order, so
 * the sums — and the trained M — do not depend on how many threads ran them. */
#define TRAIN_CHUNKS 16
/* Candidates further than this above a sample's best distance weigh < e^(−τ·window) and are
 * left out of the gradient (e^(−30) at τ = 10). */
#define SOFTMIN_WINDOW_TAU 30.0
/* The exact enumeration stops at e^(−12) ≈ 6·10⁻⁶ relative weight: the hundreds of codes
 * between that and e^(−30) change the gradient by less than float noise but cost many nodes. */
#define SOFTMIN_ENUM_TAU 12.0
/* At most this many window candidates per sample: the soft-min weights of any beyond the
 * nearest few hundred are negligible at τ = 10. */
#define SOFTMIN_WINDOW_CAP 4096

lq_status lq_lattice_config_parse(const char *text, int *D, int *d) {
    int a = 0, b = 0, used = 0;
    if (!text || (sscanf(text, "%d/%d%n", &a, &b, &used) != 2 &&
                  sscanf(text, "%dto%d%n", &a, &b, &used) != 2) ||
        text[used] != '\0')
        return lq_fail(LQ_ERR_ARG, "config '%s': expected D/d, e.g. 24/10", text ? text : "(null)");
    if (b < 1 || b > LQ_LATTICE_MAX_SMALL_D || a <= b || a > LQ_LATTICE_MAX_D)
        return lq_fail(LQ_ERR_ARG, "config '%s': need 1 <= d <= %d and d < D <= %d", text,
                       LQ_LATTICE_MAX_SMALL_D, LQ_LATTICE_MAX_D);
    *D = a;
    *d = b;
    return LQ_OK;
}

void lq_train_options_default(lq_train_options *o, int D, int d) {
    memset(o, 0, sizeof *o);
    o->D = D;
    o->d = d;
    o->seed = 1;
    o->tau = 10.0;
    const int excess = D - d, exact_ok = D <= 25 && d <= 16;
    /* Where the exact search is affordable the soft-min runs over the exact window (variant
     * A's objective, measured better: 16/8 0.0908 vs 0.0911, 20/10 0.0877 vs 0.0883 with the
     * heuristic set); elsewhere over the heuristic's candidates (variant B). τ rises 10 → 100
     * so the last steps fit the hard minimum the encoders use (16/8: −0.1 %). */
    o->candidates = exact_ok ? LQ_CANDIDATES_WINDOW : LQ_CANDIDATES_HEURISTIC;
    o->tau_end = 100.0;
    long samples;
    if (exact_ok) {
        samples = D <= 20 ? 384000 : 128000;
    } else { /* the heuristic set costs 2^(D−d) per sample: keep samples × candidates ≈ 2·10^8 */
        samples = 200000000L >> excess;
        if (samples > 120000) samples = 120000;
        if (samples < 4000) samples = 4000;
    }
    o->batch = samples >= 60000 ? 128 : 32;
    o->steps = (int)(samples / o->batch);
    o->lr = 0.02;
    o->lr_min = o->lr / 20.0;
    /* restarts are cheap where the search is: local optima differ by ~1 % (16/8: 0.0908–0.0918) */
    o->restarts = excess <= 10 ? 4 : 2;
    o->lloyd_encoder = exact_ok ? LQ_ENCODER_EXACT : LQ_ENCODER_HEURISTIC;
    o->lloyd_iterations = 20;
    /* Lloyd fits M to its sample: 40k vectors left a 1 % gap to held-out MSE at 24/10 */
    o->lloyd_samples = exact_ok ? 80000 : (excess <= 12 ? 40000 : 8000);
    o->eval_encoder = o->lloyd_encoder;
    o->select_vectors = exact_ok ? 40000 : 4000;
    o->eval_vectors = exact_ok ? 400000 : 20000;
    o->progress = 1;
}

/* ‖w − M y‖² in double: the loss and gradient must be smooth to far below float rounding. */
static double code_distance_f64(const float *M, int d, int D, const float *w, uint64_t code) {
    double dist = 0.0;
    for (int i = 0; i < d; i++) {
        double acc = 0.0;
        for (int j = 0; j < D; j++) acc += (double)M[i * D + j] * lq_code_sign(code, j);
        dist += ((double)w[i] - acc) * ((double)w[i] - acc);
    }
    return dist;
}

/* ---- soft-min loss and gradient -------------------------------------------------------
 * `dist` holds each candidate's distance as the encoder computed it (float); it only decides
 * which candidates fall in the window where they weigh anything. Those few are recomputed in
 * double for the loss and the gradient, so the result does not depend on that rounding. */
static double softmin_sample(const float *M, int d, int D, const float *w, const uint64_t *codes,
                             const float *dist, size_t count, double tau, double *grad) {
    float fmin = INFINITY;
    for (size_t k = 0; k < count; k++)
        if (dist[k] < fmin) fmin = dist[k];
    /* float distances are within ~1e-5 of the exact ones: widen the window by that */
    const double window = SOFTMIN_WINDOW_TAU / tau + 1e-4 * (1.0 + fmin);
    double best = INFINITY;
    for (size_t k = 0; k < count; k++)
        if (dist[k] <= fmin + window) {
            double e = code_distance_f64(M, d, D, w, codes[k]);
            if (e < best) best = e;
        }
    double z = 0.0;
    for (size_t k = 0; k < count; k++)
        if (dist[k] <= fmin + window)
            z += exp(-tau * (code_distance_f64(M, d, D, w, codes[k]) - best));
    if (grad) {
        double cw[LQ_LATTICE_MAX_SMALL_D];
        for (size_t k = 0; k < count; k++) {
            if (dist[k] > fmin + window) continue;
            double e = 0.0;
            for (int i = 0; i < d; i++) {
                cw[i] = 0.0;
                for (int j = 0; j < D; j++) cw[i] += (double)M[i * D + j] * lq_code_sign(codes[k], j);
                e += ((double)w[i] - cw[i]) * ((double)w[i] - cw[i]);
            }
            double p = exp(-tau * (e - best)) / z;
            /* d e_k / d M = −2 (w − M y_k) y_kᵀ */
            for (int i = 0; i < d; i++) {
                double r = -2.0 * p * ((double)w[i] - cw[i]);
                for (int j = 0; j < D; j++) grad[i * D + j] += r * lq_code_sign(codes[k], j);
            }
        }
    }
    return best - log(z) / tau;
}

double lq_softmin_loss_grad(const float *M, int d, int D, const float *w, int n,
                            const uint64_t *cand_codes, const size_t *cand_offsets, double tau,
                            double *grad) {
    double loss = 0.0;
    for (int b = 0; b < n; b++) {
        size_t count = cand_offsets[b + 1] - cand_offsets[b];
        const uint64_t *codes = cand_codes + cand_offsets[b];
        float *dist = malloc(sizeof(float) * (count ? count : 1));
        if (!dist) return NAN;
        for (size_t k = 0; k < count; k++)
            dist[k] = lq_code_distance(M, d, D, w + (size_t)b * d, codes[k]);
        loss += softmin_sample(M, d, D, w + (size_t)b * d, codes, dist, count, tau, grad);
        free(dist);
    }
    double scale = 1.0 / ((double)d * n);
    if (grad)
        for (int i = 0; i < d * D; i++) grad[i] *= scale;
    return loss * scale;
}

static void fill_gaussian(lq_rng *rng, float *w, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] = (float)lq_rng_normal(rng);
}

typedef struct {
    uint64_t *codes;
    float *dist;
    size_t cap;
    double *grad;       /* d × D */
    double loss;
} train_chunk;

/* One Adam run of the soft-min phase from the M given. */
static lq_status softmin_phase(const lq_train_options *o, float *M, lq_rng *rng) {
    const int D = o->D, d = o->d, P = d * D;
    size_t cap = o->candidates == LQ_CANDIDATES_FULL        ? ((size_t)1 << D)
                 : o->candidates == LQ_CANDIDATES_HEURISTIC ? ((size_t)1 << (D - d))
                                                            : SOFTMIN_WINDOW_CAP;
    train_chunk chunks[TRAIN_CHUNKS];
    memset(chunks, 0, sizeof chunks);
    double *adam_m = calloc(P, sizeof(double)), *adam_v = calloc(P, sizeof(double));
    float *w = malloc(sizeof(float) * o->batch * d);
    lq_status st = LQ_OK;
    if (!adam_m || !adam_v || !w) st = lq_fail(LQ_ERR_NOMEM, "lattice training: out of memory");
    for (int c = 0; c < TRAIN_CHUNKS && st == LQ_OK; c++) {
        chunks[c].codes = malloc(sizeof(uint64_t) * cap);
        chunks[c].dist = malloc(sizeof(float) * cap);
        chunks[c].grad = malloc(sizeof(double) * P);
        chunks[c].cap = cap;
        if (!chunks[c].codes || !chunks[c].dist || !chunks[c].grad)
            st = lq_fail(LQ_ERR_NOMEM, "lattice training: out of memory");
    }
    double t0 = lq_seconds();
    for (int step = 0; step < o->steps && st == LQ_OK; step++) {
        fill_gaussian(rng, w, (size_t)o->batch * d);
        const double tau = o->tau * pow(o->tau_end / o->tau, o->steps > 1 ? (double)step / (o->steps - 1) : 0.0);
        lq_lattice L;
        int have_lattice = 0;
        if (o->candidates != LQ_CANDIDATES_FULL) {
            if (lq_lattice_init(&L, D, d, M) != LQ_OK) {
                /* the reference skips a step whose SVD fails; a rank-deficient M is that case */
                lq_log(LQ_LOG_DEBUG, "step %d skipped: %s", step, lq_last_error());
                continue;
            }
            have_lattice = 1;
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int c = 0; c < TRAIN_CHUNKS; c++) {
            train_chunk *ch = &chunks[c];
            memset(ch->grad, 0, sizeof(double) * P);
            ch->loss = 0.0;
            int lo = o->batch * c / TRAIN_CHUNKS, hi = o->batch * (c + 1) / TRAIN_CHUNKS;
            for (int b = lo; b < hi; b++) {
                const float *wb = w + (size_t)b * d;
                size_t count;
                if (have_lattice && o->candidates == LQ_CANDIDATES_WINDOW) {
                    uint64_t nodes = 0;
                    count = lq_exact_candidates(&L, wb, (float)(SOFTMIN_ENUM_TAU / tau),
                                                ch->codes, ch->dist, ch->cap, &nodes);
                    if (count > ch->cap) count = ch->cap;
                } else if (have_lattice) {
                    count = lq_heuristic_candidates(&L, wb, ch->codes, ch->dist, ch->cap);
                    if (count > ch->cap) count = ch->cap;
                } else {
                    count = cap;
                    for (size_t k = 0; k < cap; k++) {
                        ch->codes[k] = k;
                        ch->dist[k] = lq_code_distance(M, d, D, wb, k);
                    }
                }
                ch->loss += softmin_sample(M, d, D, wb, ch->codes, ch->dist, count, tau, ch->grad);
            }
        }
        if (have_lattice) lq_lattice_free(&L);
        double loss = 0.0, scale = 1.0 / ((double)d * o->batch);
        double lr = o->lr_min + 0.5 * (o->lr - o->lr_min) * (1.0 + cos(M_PI * step / o->steps));
        double b1 = 0.9, b2 = 0.999, c1 = 1.0 - pow(b1, step + 1), c2 = 1.0 - pow(b2, step + 1);
        for (int c = 0; c < TRAIN_CHUNKS; c++) loss += chunks[c].loss;
        for (int p = 0; p < P; p++) {
            double g = 0.0;
            for (int c = 0; c < TRAIN_CHUNKS; c++) g += chunks[c].grad[p];
            g *= scale;
            adam_m[p] = b1 * adam_m[p] + (1 - b1) * g;
            adam_v[p] = b2 * adam_v[p] + (1 - b2) * g * g;
            M[p] -= (float)(lr * (adam_m[p] / c1) / (sqrt(adam_v[p] / c2) + 1e-8));
        }
        if (o->progress && (step % 100 == 0 || step == o->steps - 1))
            LQ_INFO("  soft-min step %d/%d  loss %.5f /dim  tau %.1f  lr %.4f  %.0f s", step + 1,
                    o->steps, loss * scale, tau, lr, lq_seconds() - t0);
    }
    for (int c = 0; c < TRAIN_CHUNKS; c++) {
        free(chunks[c].codes);
        free(chunks[c].dist);
        free(chunks[c].grad);
    }
    free(adam_m);
    free(adam_v);
    free(w);
    return st;
}

/* ---- Lloyd phase ------------------------------------------------------------------------ */
/* Solves A x = b for symmetric positive definite A (n × n) by Cholesky; A is overwritten. */
static int cholesky_solve(double *A, int n, double *b) {
    for (int j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int k = 0; k < j; k++) s -= A[j * n + k] * A[j * n + k];
        if (!(s > 0.0)) return 0;
        A[j * n + j] = sqrt(s);
        for (int i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int k = 0; k < j; k++) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / A[j * n + j];
        }
    }
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++) s -= A[i * n + k] * b[k];
        b[i] = s / A[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < n; k++) s -= A[k * n + i] * b[k];
        b[i] = s / A[i * n + i];
    }
    return 1;
}

/* M ← argmin Σ‖w − M y‖² = (Σ w yᵀ)(Σ y yᵀ)⁻¹. Returns 0 when Σ y yᵀ is singular. */
static int least_squares_update(float *M, int d, int D, const float *w, const uint64_t *codes,
                                size_t n) {
    double *yy = calloc((size_t)D * D, sizeof(double)), *wy = calloc((size_t)d * D, sizeof(double));
    double *chunk_yy = calloc((size_t)TRAIN_CHUNKS * D * D, sizeof(double));
    double *chunk_wy = calloc((size_t)TRAIN_CHUNKS * d * D, sizeof(double));
    double *A = malloc(sizeof(double) * D * D), *rhs = malloc(sizeof(double) * D);
    int ok = yy && wy && chunk_yy && chunk_wy && A && rhs;
    if (ok) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int c = 0; c < TRAIN_CHUNKS; c++) {
            double *cyy = chunk_yy + (size_t)c * D * D, *cwy = chunk_wy + (size_t)c * d * D;
            size_t lo = n * c / TRAIN_CHUNKS, hi = n * (c + 1) / TRAIN_CHUNKS;
            for (size_t s = lo; s < hi; s++) {
                float y[LQ_LATTICE_MAX_D];
                for (int j = 0; j < D; j++) y[j] = lq_code_sign(codes[s], j);
                for (int a = 0; a < D; a++)
                    for (int b = a; b < D; b++) cyy[a * D + b] += y[a] * y[b];
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < D; j++) cwy[i * D + j] += (double)w[s * d + i] * y[j];
            }
        }
        for (int c = 0; c < TRAIN_CHUNKS; c++) {
            for (int p = 0; p < D * D; p++) yy[p] += chunk_yy[(size_t)c * D * D + p];
            for (int p = 0; p < d * D; p++) wy[p] += chunk_wy[(size_t)c * d * D + p];
        }
        for (int a = 0; a < D; a++)
            for (int b = 0; b < a; b++) yy[a * D + b] = yy[b * D + a];
        /* row i of M solves (Σ y yᵀ) m_i = Σ w_i y */
        float *Mnew = malloc(sizeof(float) * d * D);
        ok = Mnew != NULL;
        for (int i = 0; i < d && ok; i++) {
            memcpy(A, yy, sizeof(double) * D * D);
            for (int j = 0; j < D; j++) rhs[j] = wy[i * D + j];
            ok = cholesky_solve(A, D, rhs);
            for (int j = 0; j < D && ok; j++) Mnew[i * D + j] = (float)rhs[j];
        }
        if (ok) memcpy(M, Mnew, sizeof(float) * d * D);
        free(Mnew);
    }
    free(yy);
    free(wy);
    free(chunk_yy);
    free(chunk_wy);
    free(A);
    free(rhs);
    return ok;
}

static lq_status lloyd_phase(const lq_train_options *o, float *M, lq_rng *rng) {
    const int D = o->D, d = o->d;
    size_t n = (size_t)o->lloyd_samples;
    float *w = malloc(sizeof(float) * n * d), *dist = malloc(sizeof(float) * n);
    float *best_M = malloc(sizeof(float) * d * D);
    uint64_t *codes = malloc(sizeof(uint64_t) * n);
    if (!w || !dist || !codes || !best_M) {
        free(w), free(dist), free(codes), free(best_M);
        return lq_fail(LQ_ERR_NOMEM, "lattice training: out of memory");
    }
    fill_gaussian(rng, w, n * d);
    double best = INFINITY;
    lq_status st = LQ_OK;
    double t0 = lq_seconds();
    for (int it = 0; it <= o->lloyd_iterations; it++) {
        lq_lattice L;
        if ((st = lq_lattice_init(&L, D, d, M)) != LQ_OK) break;
        st = lq_encode(o->lloyd_encoder, &L, w, n, codes, dist, NULL);
        lq_lattice_free(&L);
        if (st != LQ_OK) break;
        double sum = 0.0;
        for (size_t s = 0; s < n; s++) sum += dist[s];
        double mse = sum / ((double)n * d);
        if (o->progress)
            LQ_INFO("  lloyd %d/%d  sample mse %.5f /dim  %.0f s", it, o->lloyd_iterations, mse,
                    lq_seconds() - t0);
        if (mse < best) {
            best = mse;
            memcpy(best_M, M, sizeof(float) * d * D);
        } else if (o->lloyd_encoder == LQ_ENCODER_EXACT) {
            break; /* with exact encoding Lloyd cannot go up: it has converged */
        }
        if (it == o->lloyd_iterations || !least_squares_update(M, d, D, w, codes, n)) break;
    }
    if (st == LQ_OK) memcpy(M, best_M, sizeof(float) * d * D);
    free(w);
    free(dist);
    free(codes);
    free(best_M);
    return st;
}

lq_status lq_lattice_gaussian_mse(const lq_lattice *L, lq_encoder encoder, size_t n,
                                  uint64_t seed, double *mse, double *seconds) {
    float *w = malloc(sizeof(float) * n * L->d), *dist = malloc(sizeof(float) * n);
    uint64_t *codes = malloc(sizeof(uint64_t) * n);
    if (!w || !dist || !codes) {
        free(w), free(dist), free(codes);
        return lq_fail(LQ_ERR_NOMEM, "gaussian mse: out of memory for %zu vectors", n);
    }
    lq_rng rng;
    lq_rng_seed(&rng, seed);
    fill_gaussian(&rng, w, n * L->d);
    double t0 = lq_seconds();
    lq_status st = lq_encode(encoder, L, w, n, codes, dist, NULL);
    double t1 = lq_seconds();
    if (st == LQ_OK) {
        double sum = 0.0;
        for (size_t s = 0; s < n; s++) sum += dist[s];
        *mse = sum / ((double)n * L->d);
        if (seconds) *seconds = t1 - t0;
    }
    free(w);
    free(dist);
    free(codes);
    return st;
}

lq_status lq_lattice_train(const lq_train_options *o, float *M_out, lq_train_result *result) {
    const int D = o->D, d = o->d;
    if (d < 1 || d > LQ_LATTICE_MAX_SMALL_D || D <= d || D > LQ_LATTICE_MAX_D)
        return lq_fail(LQ_ERR_ARG, "lattice %d/%d: need 1 <= d <= %d and d < D <= %d", D, d,
                       LQ_LATTICE_MAX_SMALL_D, LQ_LATTICE_MAX_D);
    if (o->candidates == LQ_CANDIDATES_FULL && D > 20)
        return lq_fail(LQ_ERR_ARG, "lattice %d/%d: the full candidate set needs D <= 20", D, d);
    if (o->restarts < 1 || o->steps < 0 || o->batch < 1 || o->lloyd_iterations < 0 ||
        o->lloyd_samples < D || o->select_vectors < 1 || o->eval_vectors < 1 || !(o->tau > 0) || !(o->tau_end > 0))
        return lq_fail(LQ_ERR_ARG, "lattice %d/%d: bad training options", D, d);
    float *M = malloc(sizeof(float) * d * D);
    if (!M) return lq_fail(LQ_ERR_NOMEM, "lattice training: out of memory");
    double t0 = lq_seconds(), best = INFINITY;
    lq_status st = LQ_OK;
    for (int r = 0; r < o->restarts && st == LQ_OK; r++) {
        lq_rng rng;
        lq_rng_seed(&rng, o->seed * 1000003u + (uint64_t)r);
        /* The reference draws N(0, 1) entries; N(0, 1/D) is the same direction at the scale
         * the trained codebook ends at (unit-variance codewords), so Adam starts there. */
        for (int p = 0; p < d * D; p++) M[p] = (float)(lq_rng_normal(&rng) / sqrt((double)D));
        if (o->progress) LQ_INFO("lattice %d/%d restart %d/%d", D, d, r + 1, o->restarts);
        if ((st = softmin_phase(o, M, &rng)) != LQ_OK) break;
        if ((st = lloyd_phase(o, M, &rng)) != LQ_OK) break;
        lq_lattice L;
        double mse;
        if ((st = lq_lattice_init(&L, D, d, M)) != LQ_OK) break;
        st = lq_lattice_gaussian_mse(&L, o->eval_encoder, (size_t)o->select_vectors,
                                     o->seed * 7919u + 17u, &mse, NULL);
        lq_lattice_free(&L);
        if (st != LQ_OK) break;
        if (o->progress) LQ_INFO("lattice %d/%d restart %d: held-out mse %.5f /dim", D, d, r + 1, mse);
        if (mse < best) {
            best = mse;
            memcpy(M_out, M, sizeof(float) * d * D);
            if (result) result->best_restart = r;
        }
    }
    free(M);
    if (st != LQ_OK) return lq_fail_context(st, "training lattice %d/%d", D, d);
    /* the reported figure comes from vectors neither phase nor the selection saw */
    lq_lattice L;
    if ((st = lq_lattice_init(&L, D, d, M_out)) != LQ_OK) return st;
    double mse = 0.0;
    st = lq_lattice_gaussian_mse(&L, o->eval_encoder, (size_t)o->eval_vectors,
                                 o->seed * 104729u + 99u, &mse, NULL);
    lq_lattice_free(&L);
    if (st != LQ_OK) return st;
    if (result) {
        result->mse = mse;
        result->seconds = lq_seconds() - t0;
    }
    return LQ_OK;
}
