/* liftquant worker/: quantized linear layers — their stored form, their forward pass at
 * inference, the quantizers that produce them (LiftQuant, RTN, GPTQ), calibration capture,
 * and the quantized model directory (schemas/FORMAT.md).
 *
 * Shapes follow lq_linear (model.h): a weight is OC × IC row-major (out_features ×
 * in_features), activations are ntok × IC. */
#ifndef LQ_QUANT_H
#define LQ_QUANT_H

#include "lq_common.h"
#include "lq_kernels.h"
#include "model.h"

/* ---- LiftQuant linear: stored form ------------------------------------------------------
 * ALGORITHM.md §3–§4 and §7.1 in this project's notation. IC is zero-padded to
 * expIC = t1·t2 (d divides t2); the lifted width per t1-row is t3 = (t2/d)·D and the code
 * matrix has K = t1·t3 columns, in the lifted order k = (i1·(t2/d) + blk)·D + j.
 *
 * Inference, for one token x (IC floats, padded with zeros to expIC):
 *     X  = reshape(x ⊙ a1inv, t1, t2)
 *     Zm = (TL · X · TR) ⊙ A2          TL: t1×t1, TR: t2×t3, A2: a2inv expanded so that
 *                                       entry (i1, blk) covers lifted columns blk·D … blk·D+D−1
 *     z  = vec(Zm)                      (K floats, row-major: the lifted order above)
 *     o[r] = scale[r] · Σ_k (2·b[r][k] − 1)·z[k]   (+ bias[r])
 * Effective weight (what the quantizer optimises; equal to the above for every x):
 *     Ŵ_r (t1×t2 view) = scale[r] · (TLᵀ · (Y_r ⊙ A2) · TRᵀ) ⊙ a1inv, cropped to IC,
 * with Y_r the row's ±1 codes as a t1 × t3 matrix.
 *
 * Bits: row-major, LSB first (bit k of row r is bit (k mod 8) of byte r·row_bytes + k/8),
 * rows padded to whole bytes: row_bytes = ⌈K/8⌉, padding bits 0 (their z entries are zero). */
typedef struct {
    int out_features, in_features;
    int D, d;              /* lattice config D/d */
    int t1, t2;            /* expIC = t1·t2 ≥ IC, t2 % d == 0 */
    uint8_t *bits;         /* OC × row_bytes */
    float *scale;          /* OC */
    float *a1inv;          /* t1·t2 */
    float *tl;             /* t1 × t1 */
    float *tr;             /* t2 × t3 */
    float *a2inv;          /* t1 × (t2/d) */
    float *bias;           /* OC, or NULL */
    float *M;              /* d × D, the lattice (for decoding codes back to weights) */
} lq_lift_weights;

static inline int lq_lift_t3(const lq_lift_weights *w) { return w->t2 / w->d * w->D; }
static inline size_t lq_lift_k(const lq_lift_weights *w) { return (size_t)w->t1 * lq_lift_t3(w); }
static inline size_t lq_lift_row_bytes(const lq_lift_weights *w) { return (lq_lift_k(w) + 7) / 8; }

/* Allocates every array of w (zeroed; bias only when with_bias) for the given shape. */
lq_status lq_lift_weights_alloc(lq_lift_weights *w, int out_features, int in_features, int D,
                                int d, int t1, int t2, int with_bias);
void lq_lift_weights_free(lq_lift_weights *w);
/* Checks shapes and values (finite side data, t1·t2 ≥ IC, d | t2), naming `what`. */
lq_status lq_lift_weights_validate(const lq_lift_weights *w, const char *what);
/* Ŵ (OC × IC, row-major), the effective weight above, in double precision internally. */
lq_status lq_lift_effective_weight(const lq_lift_weights *w, float *out);
/* Reference forward (plain loops, double accumulation): y = Ŵ-linear of x, ntok tokens. */
lq_status lq_lift_forward_reference(const lq_lift_weights *w, const float *x, int ntok, float *y);

/* ---- grouped integer linear (RTN and GPTQ baselines) -------------------------------------
 * W[r][perm[j]] ≈ scales[r][g]·(codes[r][j] − zeros[r][g]), g = j / group, for stored
 * column j (perm NULL: identity). Codes and zeros are in [0, 2^bits − 1]. */
typedef struct {
    int out_features, in_features, bits, group;
    uint8_t *codes;        /* OC × IC, one code per byte in memory (bit-packed in files) */
    float *scales;         /* OC × ngroups */
    uint8_t *zeros;        /* OC × ngroups */
    int32_t *perm;         /* IC, or NULL */
    float *bias;           /* OC, or NULL */
    int gptq;              /* 1: made by GPTQ, 0: by RTN — the module's "method" in saved
                              directories (a perm implies GPTQ whatever this says) */
} lq_grouped_weights;

static inline int lq_grouped_ngroups(const lq_grouped_weights *w) {
    return (w->in_features + w->group - 1) / w->group;
}
lq_status lq_grouped_weights_alloc(lq_grouped_weights *w, int out_features, int in_features,
                                   int bits, int group, int with_perm, int with_bias);
void lq_grouped_weights_free(lq_grouped_weights *w);
lq_status lq_grouped_weights_validate(const lq_grouped_weights *w, const char *what);
/* Dense OC × IC dequantized weight. */
lq_status lq_grouped_dequantize(const lq_grouped_weights *w, float *out);

/* ---- quantized linears inside a model ----------------------------------------------------
 * Install a quantized layer in lin (which keeps its in/out features): lin->forward and
 * lin->impl are set, lin->weight becomes NULL (its memory, owned by the model, is left
 * alone), lin->bias is set to the quantized layer's bias. Ownership of *w's arrays passes to
 * lin (w is zeroed). */
lq_status lq_linear_set_lift(lq_linear *lin, lq_lift_weights *w);
lq_status lq_linear_set_grouped(lq_linear *lin, lq_grouped_weights *w);
/* The stored form of an installed layer, or NULL when lin is not of that kind. */
const lq_lift_weights *lq_linear_lift(const lq_linear *lin);
const lq_grouped_weights *lq_linear_grouped(const lq_linear *lin);

/* ---- baselines (worker/baselines.c) -------------------------------------------------------
 * RTN: asymmetric min/max per group of `group` input columns. GPTQ (Frantar et al. 2022):
 * column-by-column with error feedback through the Cholesky factor of H⁻¹, lazy batch updates,
 * damping `damp`·mean(diag H), act-order (columns by descending diag H, groups formed in that
 * order, perm stored) when act_order is set. H is IC × IC, f64, = Σ x xᵀ over calibration
 * tokens. Output w must be unallocated (zeroed); it is allocated here.
 * bits ∈ {2, 3, 4, 8}; group ≥ 1 columns, or −1 for one group per row (a group wider than the
 * row is one group too; both are stored as group = in_features). The grid of a group spans
 * [min(0, min w), max(0, max w)], as in the GPTQ reference quantizer, so every element is
 * within scale/2 and 0 is exact. Details and where GPTQ departs from the reference code:
 * the top of baselines.c. */
lq_status lq_quantize_rtn(const float *W, int out_features, int in_features, int bits, int group,
                          lq_grouped_weights *w);
lq_status lq_quantize_gptq(const float *W, int out_features, int in_features, const double *H,
                           int bits, int group, int act_order, double damp,
                           lq_grouped_weights *w);
/* tr((Ŵ − W) H (Ŵ − W)ᵀ) — the summed squared output error of the layer over the calibration
 * tokens that built H. */
double lq_output_error(const float *W, const float *W_hat, int out_features, int in_features,
                       const double *H);

/* ---- the LiftQuant layer quantizer (worker/lift_quantize.c) ------------------------------
 * One linear at a time, from its weight and its calibration second moments H = Σ x xᵀ
 * (IC × IC, f64). The objective everywhere is the layer's output error over the calibration
 * tokens, tr((Ŵ − W) H (Ŵ − W)ᵀ), reported relative to tr(W H Wᵀ).
 *   1. layout t1 × t2 (lq_lift_layout), a1 from activation RMS (clamped to [1, 16]), P1, P2
 *      random orthogonal (seeded), a2 = 1: T = diag(a1)(P1 ⊗ P2)diag(a2);
 *   2. encoding of W·T with the lattice, per-output-channel RMS scale; with `ldlq` the d-blocks
 *      are encoded in order with the error of each fed forward through the Cholesky factor of
 *      the whitened H⁻¹ (block LDLQ, QuIP#-style), else each block independently (reference);
 *   3. scale refit in closed form under H;
 *   4. correction: `steps` of Adam on scale, a1, a2, TL, TR (and, with `train_bits`, latent
 *      ±1 weights through a straight-through estimator), gradients by hand over BLAS, full
 *      batch, cosine learning rate; the best iterate is kept;
 *   5. side data rounded to f16 (the stored precision) and the error measured again. */
typedef struct {
    const lq_lattice *lattice; /* the config D/d and its M, prepared once by the caller and
                                  shared by all linears */
    lq_encoder encoder;
    int ldlq;                /* 1: Hessian-aware sequential encoding */
    int a1_init;             /* 1: a1 from activation statistics; 0: a1 = 1 */
    double damp;             /* LDLQ damping, fraction of mean diag(H) */
    int steps;               /* correction steps (0: none) */
    double lr_transform, lr_scale, lr_act, lr_bits;
    int train_bits;
    uint64_t seed;
} lq_lift_options;

void lq_lift_options_default(lq_lift_options *o);

typedef struct {
    double err_encoded;      /* relative output error right after encoding */
    double err_refit;        /* after the closed-form scale */
    double err_final;        /* after correction and f16 rounding (what is stored) */
    double seconds_encode, seconds_correct;
    long bits_flipped;
} lq_lift_report;

/* t2: a multiple of d in [√IC/2, 2√IC] with the least padding t1·t2 − IC (ties: nearest √IC). */
lq_status lq_lift_layout(int in_features, int d, int *t1, int *t2);
lq_status lq_quantize_lift(const float *W, int out_features, int in_features, const float *bias,
                           const double *H, const lq_lift_options *o, lq_lift_weights *out,
                           lq_lift_report *report);

/* The correction objective and its gradient, exposed for the gradient check: loss =
 * tr((Ŵ − W) H (Ŵ − W)ᵀ)/tr(W H Wᵀ) over the padded width E = t1·t2 (W: OC × E, H: E × E,
 * f32), Ŵ from w's side data and codes Y (OC × K floats ±1; the bits of w are ignored).
 * Gradients (any may be NULL) have the shapes of the parameters; g_y is OC × K. */
double lq_lift_loss_grad(const lq_lift_weights *w, const float *Y, const float *W, const float *H,
                         double norm, float *g_scale, float *g_a1inv, float *g_tl, float *g_tr,
                         float *g_a2inv, float *g_y);

/* Per-block correction of one LiftQuant linear (worker/quantize_model.c): a trainable copy of
 * an installed linear's side data (and latent bits when o->train_bits), stepped by Adam with
 * o's learning rates on a cosine schedule over `steps`, from a gradient dL/dŴ that the caller
 * gets by a backward pass through the decoder layer. Use: weight (Ŵ, OC × IC, valid until the
 * next step or take), then step with dL/dŴ at that Ŵ (step = 1 … steps); take rounds the side
 * data to f16 as stored, packs the bits and moves the weights out (for lq_linear_set_lift).
 * Memory: the per-linear correction's working set, about 14 floats per OC × t1·t2 entry. */
typedef struct lq_lift_trainer lq_lift_trainer;
lq_status lq_lift_trainer_new(const lq_lift_weights *w, const lq_lift_options *o, int steps,
                              lq_lift_trainer **out);
const float *lq_lift_trainer_weight(lq_lift_trainer *t);
void lq_lift_trainer_step(lq_lift_trainer *t, const float *grad_weight, int step);
void lq_lift_trainer_take(lq_lift_trainer *t, lq_lift_weights *out);
void lq_lift_trainer_free(lq_lift_trainer *t);

/* ---- calibration and the whole-model driver (worker/calib.c, worker/quantize_model.c) ----
 * Calibration text: a file, or every regular file of a directory in name order, tokenised
 * whole; nsamples windows of seqlen tokens at seeded random offsets (a window starts with BOS
 * when the tokenizer adds one). tokens: nsamples × seqlen, malloc'ed. */
lq_status lq_calib_tokens(const lq_tokenizer *tok, const char *path, int nsamples, int seqlen,
                          uint64_t seed, int **tokens);

typedef enum { LQ_METHOD_LIFTQUANT = 0, LQ_METHOD_RTN, LQ_METHOD_GPTQ } lq_method;
const char *lq_method_name(lq_method m);
lq_status lq_method_from_name(const char *name, lq_method *out);

/* What calibrates layer l + 1, and against what each linear is fitted:
 *   FP:    the FP model's hidden states; target W·x (ALGORITHM.md §5.3's --align 1);
 *   QUANT: the outputs of the quantized layers before it, x̂; target W·x̂ (GPTQ's way);
 *   ASYM:  x̂ as in QUANT, the groups of a layer in order (q k v, then o, then gate up, then
 *          down, each seeing the earlier groups quantized), and target W·x, the FP model's
 *          output on its own hidden states: the fit also undoes the error that reaches the
 *          linear's input (asymmetric calibration, as GPTAQ). Costs a second hidden-state
 *          stream, its tap inputs for one layer, and about two more layer passes per layer. */
typedef enum { LQ_PROPAGATE_FP = 0, LQ_PROPAGATE_QUANT, LQ_PROPAGATE_ASYM } lq_propagate;
const char *lq_propagate_name(lq_propagate p);
lq_status lq_propagate_from_name(const char *name, lq_propagate *out);

typedef struct {
    lq_method method;
    lq_lift_options lift;      /* LiftQuant (lattice set by the caller) */
    int bits, group, act_order;/* RTN / GPTQ */
    double damp;               /* GPTQ */
    lq_propagate propagate;
    /* ASYM: the share of the fitted correction W* − W applied (1 = the whole least-squares fit,
     * 0 = none, i.e. QUANT's target with ASYM's ordering); below 1 it shrinks a fit made from
     * finitely many windows toward W (GPTAQ's reference code defaults to 0.25; lq-quantize's
     * 0.5 measured better than 1 for LiftQuant on both test models and for GPTQ on SmolLM2) */
    double asym_alpha;
    /* LiftQuant only: after a layer's seven linears are quantized one by one, this many Adam
     * steps (one calibration window each) on their side data (and latent bits when
     * lift.train_bits) jointly, against the decoder layer's output (per-block reconstruction,
     * ALGORITHM.md §5.2); kept only when it lowers the layer's error over all windows.
     * 0: per-linear correction only. */
    int block_steps;
    /* called after every linear (may be NULL): done/total linears, for progress */
    void (*progress)(void *ctx, int done, int total, const char *name, double rel_error);
    void *progress_ctx;
} lq_quantize_options;

/* Per-linear outcome, in model order (layer-major, then q k v o gate up down). */
typedef struct {
    char name[96];
    int out_features, in_features;
    double rel_error;          /* tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) on the layer's calibration inputs */
    double seconds;
} lq_linear_result;

/* Quantizes every decoder-layer linear of m in place, layer by layer, from nsamples × seqlen
 * calibration tokens. results (may be NULL): 7·n_layers entries. Memory: the hidden states
 * (nsamples·seqlen·dim floats, twice unless propagating FP without block steps) plus one
 * layer's four input second-moment matrices (dim² ×2 + q_dim² + hidden² doubles); ASYM instead
 * two widest² doubles and the FP stream's inputs of the four taps for one layer,
 * nsamples·seqlen·(2·dim + q_dim + hidden) floats (5.7 hidden-state copies for SmolLM2, 6.5
 * for Llama-3 8B/70B: small beside the f32 model in memory). block_steps: lq_block.h's scratch
 * for one window. */
lq_status lq_quantize_model(lq_model *m, const int *tokens, int nsamples, int seqlen,
                            const lq_quantize_options *o, lq_linear_result *results);

/* Quantizes one linear in place from its input second moments H with o's method (LiftQuant
 * with o->lift's lattice, RTN or GPTQ); *rel_error = tr(ΔW H ΔWᵀ)/tr(W H Wᵀ). The FP weight is
 * only read: lin->weight is set to NULL, not freed (the model, or the caller, owns it). */
lq_status lq_quantize_linear(lq_linear *lin, const char *name, const double *H, uint64_t seed,
                             const lq_quantize_options *o, double *rel_error);
/* The seed of linear `index` of `layer` given the run's seed: distinct per linear, and the same
 * for every config and every driver, so lq-quantize and lq-calibrate agree. */
uint64_t lq_linear_seed(uint64_t seed, int layer, int index);

/* One layer's calibration second moments: H = Σ x xᵀ of each of its four distinct linear
 * inputs (f32 per ≤128-token chunk, summed in f64), dim² ×2 + q_dim² + hidden² doubles. capture
 * zeroes them, then runs the FP layer over nsamples × seqlen hidden states in place (they leave
 * as the layer's outputs). */
typedef struct lq_layer_moments lq_layer_moments;
lq_status lq_layer_moments_new(const lq_model_config *c, lq_layer_moments **out);
void lq_layer_moments_free(lq_layer_moments *mo);
lq_status lq_layer_moments_capture(lq_layer_moments *mo, lq_session *s, int layer, float *hidden,
                                   int nsamples, int seqlen);
const double *lq_layer_moments_for(const lq_layer_moments *mo, int linear_index);

/* ASYM's target (worker/quantize_model.c): with Ĥ = Σ x̂x̂ᵀ and C = Σ x̂xᵀ (IC × IC, f64) of the
 * inputs x̂ a linear receives and x the FP model gives it, W* = W + α·W·(Cᵀ − Ĥ)·(Ĥ + λI)⁻¹,
 * λ = damp·mean(diag Ĥ) (at least 10⁻⁶ of it); at α = 1, Σ ‖Ŵx̂ − Wx‖² = tr((Ŵ − W*)Ĥ(Ŵ − W*)ᵀ)
 * + a constant up to the damping; α = 0 gives W back bit for bit. *out: OC × IC floats,
 * malloc'ed; `name` is for messages. */
lq_status lq_asym_target(const float *W, int out_features, int in_features, const double *H,
                         const double *C, double damp, double alpha, const char *name, float **out);

/* Linear `index` (0..6: q k v o gate up down) of a layer, and its Hugging Face module name
 * (worker/qformat.c: the names are part of the file format). */
void lq_linear_name(int layer, int index, char *out, size_t cap);
lq_linear *lq_layer_linear(lq_layer *L, int index);

/* ---- quantized model directory (worker/qformat.c, schemas/FORMAT.md) ---------------------
 * OUT/config.json (the model config, Hugging Face keys, plus "quantization_config"),
 * OUT/model.safetensors, OUT/tokenizer.liftquant.json. Every decoder-layer linear must be
 * quantized (lift or grouped). Written to OUT.tmp, fsynced, renamed. `extra` (may be NULL) is
 * a JSON object text merged into quantization_config (calibration settings, timings). */
lq_status lq_quantized_save(const lq_model *m, const char *out_dir, const char *extra_json);
/* Loads any input lq_model_load takes, and quantized directories. */
lq_status lq_load_any_model(const char *path, const char *tokenizer_path, lq_model **out);

/* One quantized linear alone in a file (lq-calibrate's candidate results): the tensors and
 * lattice the model directory would store for `module`, and its quantization_config entry in the
 * metadata. Written atomically. Loading installs it into lin, which must have the module's shape
 * (with_bias: the model config gives the linear a bias). */
lq_status lq_linear_blob_save(const lq_linear *lin, const char *module, const char *path);
lq_status lq_linear_blob_load(const char *path, const char *module, int with_bias, lq_linear *lin);

/* Bytes lq_quantized_save writes for m besides its decoder linears' codes and side data:
 * embeddings, head, norms, biases, the lattices of the n_configs configs D[k]/d[k], and an upper
 * bound on the safetensors header. With each linear's lq_linear_stored_size it bounds the file
 * from above (lq-calibrate's budget). */
uint64_t lq_quantized_fixed_bytes(const lq_model *m, const int *D, const int *d, int n_configs);

/* Size accounting of one linear as stored: bytes of codes and of side data (scales, zeros,
 * whitening parameters, perm; bias excluded), and its weight count OC·IC. */
typedef struct {
    size_t code_bytes, side_bytes, weights;
} lq_linear_size;
lq_status lq_linear_stored_size(const lq_linear *lin, lq_linear_size *out);

/* What a quantized directory holds, read from config.json and the safetensors header without
 * loading the model (lq-inspect). Byte counts are those of the stored tensors: code_bytes the
 * module's qweight, side_bytes its other tensors but bias. */
typedef struct {
    char name[96];
    char method[16];          /* "liftquant", "gptq", "rtn" */
    char config[32];          /* "24/10", or "w3g128" (+ " act" with act order) */
    int out_features, in_features;
    size_t code_bytes, side_bytes;
} lq_module_info;
typedef struct {
    lq_module_info *modules;  /* decoder-layer linears, in model order */
    size_t n_modules;
    size_t lattice_bytes;     /* the lattices M, stored once per config */
    size_t unquantized_bytes; /* embeddings, norms, lm_head, biases */
    size_t file_bytes;        /* size of model.safetensors */
} lq_quantized_info;
lq_status lq_quantized_inspect(const char *dir, lq_quantized_info *out);
void lq_quantized_info_free(lq_quantized_info *info);

#endif
