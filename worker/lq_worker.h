/* liftquant worker/: lattice (M) training and lattice files; later the per-layer
 * calibration. */
#ifndef LQ_WORKER_H
#define LQ_WORKER_H

#include "lq_common.h"
#include "lq_kernels.h"

/* ---- lattice configs "D/d" --------------------------------------------------------------- */
/* Parses "24/10" (also "24to10"); checks 1 ≤ d < D ≤ LQ_LATTICE_MAX_D, d ≤ 32. */
lq_status lq_lattice_config_parse(const char *text, int *D, int *d);

/* ---- training (ALGORITHM.md §1.2) ---------------------------------------------------------
 * Phase 1, the reference method: Adam on the soft-min loss
 *   L(M) = (1/d) · mean_w softmin_τ(‖w − M y‖² over candidates y),  w ~ N(0, I_d) fresh per step,
 * with the candidate set either the whole codebook (small D) or the heuristic encoder's
 * 2^(D−d) sign patterns (variant B), cosine learning rate, τ = 10.
 * Phase 2, measured to lower the MSE further: Lloyd iterations on a fixed sample — encode every
 * vector with the chosen encoder, then solve M = argmin Σ‖w − M y‖² in closed form — keeping
 * the M with the lowest MSE on held-out vectors.
 * Restarts repeat both from fresh inits; the best by held-out MSE is returned. Everything is
 * deterministic for a seed, whatever the thread count. */
/* FULL: all 2^D codes (variant A). HEURISTIC: the 2^(D−d) sign patterns (variant B).
 * WINDOW: every code within SOFTMIN_WINDOW of the nearest, enumerated exactly by the branch
 * and bound — the full set's soft-min up to terms weighing < e^(−τ·window), at a cost close
 * to one exact search, so variant A's objective is affordable for every D the exact search
 * handles. */
typedef enum { LQ_CANDIDATES_FULL, LQ_CANDIDATES_HEURISTIC, LQ_CANDIDATES_WINDOW } lq_candidate_set;

typedef struct {
    int D, d;
    uint64_t seed;
    int restarts;
    /* soft-min Adam phase */
    int steps, batch;
    double lr, lr_min, tau;
    double tau_end;      /* τ grows geometrically from tau to tau_end over the steps (soft → hard minimum) */
    lq_candidate_set candidates;
    /* Lloyd phase */
    int lloyd_iterations, lloyd_samples;
    lq_encoder lloyd_encoder;
    /* selection and the reported figure */
    int select_vectors, eval_vectors;
    lq_encoder eval_encoder;
    int progress;        /* log progress lines at info level */
} lq_train_options;

/* Defaults scaled to D/d so that every config of the standard set trains in minutes on two
 * cores; see docs/LATTICES.md for the figures they reach. */
void lq_train_options_default(lq_train_options *o, int D, int d);

typedef struct {
    double mse;           /* per dimension on eval_vectors fresh vectors, eval_encoder */
    double seconds;
    int best_restart;
} lq_train_result;

/* M_out: d × D. */
lq_status lq_lattice_train(const lq_train_options *o, float *M_out, lq_train_result *result);

/* Soft-min loss (1/(d·n)) Σ_b softmin_τ over each sample's candidates, and its gradient with
 * respect to M (d × D, accumulated into grad, double) — the candidates held fixed, as in the
 * reference. cand_offsets has n+1 entries into cand_codes. Exposed for the gradient test. */
double lq_softmin_loss_grad(const float *M, int d, int D, const float *w, int n,
                            const uint64_t *cand_codes, const size_t *cand_offsets, double tau,
                            double *grad);

/* Mean squared error per dimension of n fresh N(0, I_d) vectors drawn from seed. */
lq_status lq_lattice_gaussian_mse(const lq_lattice *L, lq_encoder encoder, size_t n,
                                  uint64_t seed, double *mse, double *seconds);

/* ---- lattice files -----------------------------------------------------------------------
 * safetensors with one F32 tensor "M" of shape [d, D] and metadata: format "liftquant-lattice",
 * D, d, seed, encoder, mse (per dimension, Gaussian), eval_vectors, trainer settings. */
typedef struct {
    int D, d;
    float *M;            /* d × D, owned */
    uint64_t seed;
    double mse;
    char encoder[32];
} lq_lattice_file;

lq_status lq_lattice_file_write(const char *path, const float *M, int D, int d, uint64_t seed,
                                const char *encoder, double mse, const lq_train_options *o);
lq_status lq_lattice_file_read(const char *path, lq_lattice_file *out);
void lq_lattice_file_free(lq_lattice_file *f);
/* dir/{D}to{d}.safetensors */
lq_status lq_lattice_file_path(const char *dir, int D, int d, char *out, size_t cap);
/* The lattice of config D/d from dir, read and prepared for encoding (file and L are the
 * caller's to free). A missing file is LQ_ERR_NOT_FOUND with a message saying how to make it. */
lq_status lq_lattice_load_config(const char *dir, int D, int d, lq_lattice_file *file, lq_lattice *L);

#endif
