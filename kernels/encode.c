/* The three encoders of a block w ∈ R^d to a code y ∈ {±1}^D (ALGORITHM.md §2):
 *   exact      — branch and bound, provably a nearest code;
 *   heuristic  — the reference's 2^(D−d) null-space enumeration;
 *   bruteforce — all 2^D codes, the scalar reference the tests compare against. */
#include "lq_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encode_internal.h"

const char *lq_encoder_name(lq_encoder e) {
    switch (e) {
    case LQ_ENCODER_EXACT: return "exact";
    case LQ_ENCODER_HEURISTIC: return "heuristic";
    case LQ_ENCODER_BRUTEFORCE: return "bruteforce";
    }
    return "?";
}

lq_status lq_encoder_from_name(const char *name, lq_encoder *out) {
    for (int e = LQ_ENCODER_EXACT; e <= LQ_ENCODER_BRUTEFORCE; e++)
        if (!strcmp(name, lq_encoder_name((lq_encoder)e))) {
            *out = (lq_encoder)e;
            return LQ_OK;
        }
    return lq_fail(LQ_ERR_ARG, "unknown encoder '%s' (exact, heuristic, bruteforce)", name);
}

/* ---- exact: branch and bound, split or depth-first (exact_search.inc) -------------------
 * The scalar instance below is the reference; encode_avx2.c instantiates the same search
 * with vector bounds, chosen at run time. */
static inline void child_bounds_scalar(const lq_lattice *L, int k, const float *parent,
                                       float *plus, float *minus, float *bounds) {
    lq_child_bounds(parent, L->r_columns + (size_t)k * L->dpad, L->reach + (size_t)k * L->dpad,
                    L->dpad, plus, minus, bounds);
}

#define EXACT_SEARCH_NAME exact_search_scalar
#define EXACT_WINDOW_NAME exact_window_scalar
#define EXACT_SUBTREE_NAME exact_subtree_scalar
#define EXACT_SPLIT_NAME exact_split_scalar
#define EXACT_CHILD_BOUNDS child_bounds_scalar
#define EXACT_EXCESS_BOUNDS lq_excess_bounds
#include "exact_search.inc"

size_t lq_exact_candidates(const lq_lattice *L, const float *w, float window, uint64_t *codes,
                           float *dist, size_t cap, uint64_t *nodes) {
    if (cap == 0) return 0;
    return lq_simd_usable(L) ? lq_exact_window_avx2(L, w, window, codes, dist, cap, nodes)
                             : exact_window_scalar(L, w, window, codes, dist, cap, nodes);
}

lq_status lq_encode_exact(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                          float *dist, lq_encode_stats *stats) {
    uint64_t nodes = 0;
    const int use_avx2 = lq_simd_usable(L);
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : nodes)
    for (size_t b = 0; b < nblocks; b++) {
        const float *wb = w + b * (size_t)L->d;
        codes[b] = use_avx2 ? lq_exact_search_avx2(L, wb, &nodes) : exact_search_scalar(L, wb, &nodes);
        if (dist) dist[b] = lq_code_distance(L->M, L->d, L->D, wb, codes[b]);
    }
    if (stats) stats->nodes += nodes;
    return LQ_OK;
}

/* ---- heuristic: §2.2 enumeration in Gray-code order ----------------------------------
 * v = M⁺w + Nᵀz changes by ±2 N_g per step, one row of the null basis, instead of being
 * rebuilt; consecutive z often give the same sign pattern, which is scored once. Ties keep
 * the first code found in Gray order (the reference uses lexicographic z order; ties have
 * probability zero on real data). Candidates that differ only in that order are the same
 * set, so soft-min training over them matches the reference up to duplicates. */
/* Calls visit(code, distance, ctx) for every candidate of §2.2 in Gray-code order, skipping a
 * code equal to the one just before it. Shared by the encoder and by lattice training, whose
 * soft-min runs over the same candidate set (ALGORITHM.md §1.2 variant B). The scalar
 * instance is the reference; encode_avx2.c has the vector one. */
static inline void heuristic_step_scalar(float *v, const float *n, float step, int D) {
    for (int j = 0; j < D; j++) v[j] += step * n[j];
}

static inline float heuristic_distance_scalar(const lq_lattice *L, const float *w, uint64_t code) {
    float cw[LQ_LATTICE_MAX_SMALL_D], e = 0.0f;
    lq_codeword_from_byte_tables(L->byte_tables, L->d, L->D, code, cw);
    for (int i = 0; i < L->d; i++) {
        float diff = w[i] - cw[i];
        e += diff * diff;
    }
    return e;
}

#define HEURISTIC_WALK_NAME heuristic_walk_scalar
#define HEURISTIC_STEP heuristic_step_scalar
#define HEURISTIC_SIGNS lq_code_from_signs
#define HEURISTIC_DISTANCE heuristic_distance_scalar
#include "heuristic_walk.inc"

static void heuristic_walk(const lq_lattice *L, const float *w,
                           void (*visit)(uint64_t code, float dist, void *ctx), void *ctx) {
    if (lq_simd_usable(L)) lq_heuristic_walk_avx2(L, w, visit, ctx);
    else heuristic_walk_scalar(L, w, visit, ctx);
}

typedef struct {
    float best;
    uint64_t best_code, scored;
} heuristic_best;

static void keep_best(uint64_t code, float dist, void *ctx) {
    heuristic_best *h = ctx;
    h->scored++;
    if (dist < h->best) { /* strict: ties keep the first code in Gray order */
        h->best = dist;
        h->best_code = code;
    }
}

typedef struct {
    uint64_t *codes;
    float *dist;
    size_t count, cap;
} candidate_list;

static void append_candidate(uint64_t code, float dist, void *ctx) {
    candidate_list *c = ctx;
    if (c->count < c->cap) {
        c->codes[c->count] = code;
        c->dist[c->count] = dist;
    }
    c->count++;
}

size_t lq_heuristic_candidates(const lq_lattice *L, const float *w, uint64_t *codes, float *dist,
                               size_t cap) {
    candidate_list c = {codes, dist, 0, cap};
    heuristic_walk(L, w, append_candidate, &c);
    return c.count;
}

static uint64_t encode_heuristic_block(const lq_lattice *L, const float *w, uint64_t *candidates) {
    heuristic_best h = {INFINITY, 0, 0};
    heuristic_walk(L, w, keep_best, &h);
    *candidates += h.scored;
    return h.best_code;
}

lq_status lq_encode_heuristic(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                              float *dist, lq_encode_stats *stats) {
    uint64_t candidates = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : candidates)
    for (size_t b = 0; b < nblocks; b++) {
        const float *wb = w + b * (size_t)L->d;
        codes[b] = encode_heuristic_block(L, wb, &candidates);
        if (dist) dist[b] = lq_code_distance(L->M, L->d, L->D, wb, codes[b]);
    }
    if (stats) stats->candidates += candidates;
    return LQ_OK;
}

/* ---- scalar reference ------------------------------------------------------------------ */
lq_status lq_encode_bruteforce(const lq_lattice *L, const float *w, size_t nblocks, uint64_t *codes,
                               float *dist) {
    if (L->D > 30) return lq_fail(LQ_ERR_UNSUPPORTED, "bruteforce encoder: D = %d is too large (at most 30)", L->D);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < nblocks; b++) {
        const float *wb = w + b * (size_t)L->d;
        float best = INFINITY;
        uint64_t best_code = 0;
        for (uint64_t code = 0; code < ((uint64_t)1 << L->D); code++) {
            float e = lq_code_distance(L->M, L->d, L->D, wb, code);
            if (e < best) {
                best = e;
                best_code = code;
            }
        }
        codes[b] = best_code;
        if (dist) dist[b] = best;
    }
    return LQ_OK;
}

lq_status lq_encode(lq_encoder e, const lq_lattice *L, const float *w, size_t nblocks,
                    uint64_t *codes, float *dist, lq_encode_stats *stats) {
    switch (e) {
    case LQ_ENCODER_EXACT: return lq_encode_exact(L, w, nblocks, codes, dist, stats);
    case LQ_ENCODER_HEURISTIC: return lq_encode_heuristic(L, w, nblocks, codes, dist, stats);
    case LQ_ENCODER_BRUTEFORCE: return lq_encode_bruteforce(L, w, nblocks, codes, dist);
    }
    return lq_fail(LQ_ERR_ARG, "unknown encoder %d", (int)e);
}
