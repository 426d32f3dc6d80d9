/* One decoder layer as a differentiable function of its seven linear weights, for per-block
 * reconstruction: the forward pass of common/forward.c's layer_chunk over one calibration
 * window (positions 0 … ntok−1), the squared error of its output against a target, and the
 * gradient of that error with respect to every linear's dense weight, written out by hand
 * (worker/block_grad.c). Every matrix product is an lq_gemm_f32 call, so a call costs about
 * three forward passes of the layer.
 *
 * The linears are numbered as lq_layer_linear() numbers them (worker/qformat.c):
 *     0 wq, 1 wk, 2 wv, 3 wo, 4 w_gate, 5 w_up, 6 w_down
 * with the shapes of model.h (out × in, row-major):
 *     wq (n_heads·head_dim) × dim, wk and wv (n_kv_heads·head_dim) × dim,
 *     wo dim × (n_heads·head_dim), w_gate and w_up hidden_dim × dim, w_down dim × hidden_dim. */
#ifndef LQ_BLOCK_H
#define LQ_BLOCK_H

#include "lq_common.h"
#include "model.h"

#define LQ_BLOCK_LINEARS 7

/* Scratch for one decoder layer over up to max_tokens rows: the activations the backward pass
 * reuses, their gradients, the softmax probabilities of every head, and the RoPE tables.
 * With T = max_tokens, D = dim, Q = n_heads·head_dim, K = n_kv_heads·head_dim, H = hidden_dim,
 * it holds, in bytes,
 *     4·T·(5·D + 5·Q + 5·K + 5·H + (n_heads + 1)·T) + 4·T·rope_dim
 * (SmolLM2-135M at T = 512: 40.1 MB = 38.2 MiB, of which the probabilities, n_heads·T²
 * floats, are 9.4 MB).
 * A handle serves one thread at a time; the GEMMs inside use OpenBLAS's threads. */
typedef struct lq_block_grad lq_block_grad;

/* c is validated and copied; max_tokens in [1, 65536]. */
lq_status lq_block_grad_new(const lq_model_config *c, int max_tokens, lq_block_grad **out);
void lq_block_grad_free(lq_block_grad *b);
/* Bytes of scratch b holds (the formula above). */
size_t lq_block_grad_bytes(const lq_block_grad *b);

/* One decoder layer L of a model with config c (the shapes and RoPE settings of the config
 * lq_block_grad_new was given), its 7 linears replaced by dense weights: weights[i] is
 * out_i × in_i row-major, bias[i] out_i or NULL (bias itself may be NULL: no biases), in the
 * order above. The norm weights (attn_norm, ffn_norm, and q_norm / k_norm when L has them)
 * come from L, as do the linears' in/out_features, which must match the config; L's own linear
 * weights are not read.
 *
 * x: ntok × dim input rows, positions 0 … ntok−1 of one sequence, 1 ≤ ntok ≤ max_tokens.
 * out (may be NULL): ntok × dim, the layer's output y.
 * target (may be NULL): ntok × dim; then *loss = loss_scale · Σ (y − target)², accumulated in
 * double; without a target, forward only and *loss = 0. loss may be NULL.
 * grads (may be NULL; needs a target): grads[i] (out_i × in_i, overwritten) = ∂loss/∂weights[i];
 * an entry grads[i] may be NULL to skip that matrix (the rest of the backward runs anyway).
 * No gradient for biases, norm weights or x.
 *
 * Errors: LQ_ERR_ARG naming the argument (ntok out of range, a config or linear shape that
 * differs from the scratch's, a missing weight, norm or input, grads without a target). */
lq_status lq_block_loss_grad(lq_block_grad *b, const lq_model_config *c, const lq_layer *L,
                             const float *const weights[7], const float *const bias[7],
                             const float *x, int ntok, const float *target, double loss_scale,
                             float *out, float *const grads[7], double *loss);

#endif
