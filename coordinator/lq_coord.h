/* liftquant coordinator/: what MPI rank 0 owns — the SQLite store of candidate results
 * (store.c, schemas/store.sql), the budget arithmetic and the multiple-choice knapsack solver
 * (budget.c), and the lq-calibrate driver (calibrate.c). DESIGN.md §1, §4, §5.
 *
 * Units: every size is in bytes (uint64_t); errors are doubles in whatever measure the caller
 * chose (docs/CALIBRATE.md says which and why). */
#ifndef LQ_COORD_H
#define LQ_COORD_H

#include "lq_common.h"

#include <stdint.h>
#include <stdio.h>

/* ---- sizes and budgets (budget.c) ---------------------------------------------------------
 * "24GiB", "1.5 GB", "512MiB", "4096", "3KB": a non-negative decimal number, optional spaces,
 * then an optional unit B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of
 * 1000), case-sensitive as written here; no unit means bytes. The result is rounded down to
 * whole bytes. Errors (name `flag` in the message): empty, negative, no digits, unknown unit,
 * trailing garbage, overflow past 2^63. */
lq_status lq_size_parse(const char *text, const char *flag, uint64_t *out);
/* "24.00 GiB (25769803776 B)"-style text: the largest binary unit ≥ 1, two decimals, and the
 * exact byte count. */
void lq_size_format(uint64_t bytes, char *out, size_t cap);

/* KV cache bytes for a context: 2 (K and V) · layers · kv_heads · head_dim · ctx · batch ·
 * bytes per element. kv_dtype: "f16" (2), "bf16" (2), "f32" (4), "q8" (1). */
lq_status lq_kv_cache_bytes(int n_layers, int n_kv_heads, int head_dim, long ctx, long batch,
                            const char *kv_dtype, uint64_t *out);

/* ---- the budget solver ---------------------------------------------------------------------
 * A multiple-choice knapsack: n_items items (tensors), item i has n_choices[i] choices (its
 * candidate configs), choice j with bytes[i][j] and error[i][j] ≥ 0. Pick exactly one choice per
 * item minimising Σ error subject to Σ bytes ≤ capacity.
 *
 * Exactness: the solver first computes the LP-relaxation bound (lower convex hull of each
 * item's choices, greedy on incremental efficiency); then an integer solution by dynamic
 * programming over bytes rounded UP to a granularity g (g = 1 when capacity is small enough for
 * the DP table, else the smallest power of two keeping it within 2^20 cells, 128 MiB of
 * one-byte back-pointers and 2^29 cell updates), so the solution is always feasible in exact
 * bytes; then improves it greedily with the slack left by rounding. Rounding loses up to g bytes
 * per item, so the gap grows with the item count (measured: 1.5e-4 relative at 560 × 6, 11 % on
 * a synthetic 2,000 × 16); the printed gap always says how far from optimal it may be. It reports the objective, the LP bound and the gap = objective − bound (0 means
 * proven optimal; otherwise the printed gap is a proof that no assignment is better by more).
 * Ties are broken deterministically (fewer bytes, then lower choice index), so the same input
 * gives the same assignment.
 *
 * Infeasible (Σ min bytes > capacity): LQ_ERR_RANGE with the message naming the smallest
 * feasible capacity, and *min_feasible set. */
typedef struct {
    int n_items;
    const int *n_choices;          /* n_items */
    const uint64_t *const *bytes;  /* bytes[i][j] */
    const double *const *error;    /* error[i][j] */
} lq_mckp;

typedef struct {
    int *choice;                   /* n_items, malloc'ed by the solver; free with free() */
    uint64_t used_bytes;           /* Σ bytes of the chosen choices */
    double objective;              /* Σ error of the chosen choices */
    double lower_bound;            /* LP relaxation */
    double gap;                    /* objective − lower_bound, ≥ 0 */
    uint64_t granularity;          /* g used by the DP (1: exact in bytes) */
    uint64_t min_feasible;         /* Σ over items of the smallest bytes */
} lq_mckp_solution;

lq_status lq_mckp_solve(const lq_mckp *problem, uint64_t capacity, lq_mckp_solution *out);
void lq_mckp_solution_free(lq_mckp_solution *s);

/* ---- the store (store.c, schemas/store.sql) -----------------------------------------------
 * One SQLite file per run directory (it may hold several runs: two runs on one DB keep their
 * rows apart by run id). WAL mode, a 60 s busy timeout (a second writer waits instead of
 * failing), every write in its own transaction, so a killed process loses at most the result
 * it was writing. UNIQUE(run, tensor, config): a restarted job skips what is done; putting a
 * result again (recomputed after its blob failed its checksum) replaces the row.
 * Every failure names the database file and the SQLite message. */
typedef struct lq_store lq_store;

lq_status lq_store_open(const char *path, lq_store **out);   /* creates file and schema */
/* The same with another busy timeout: how long a write waits for another process's write lock
 * before failing with a message that names the store (0: fail at once). */
lq_status lq_store_open_with_timeout(const char *path, int busy_timeout_ms, lq_store **out);
void lq_store_close(lq_store *s);
const char *lq_store_path(const lq_store *s);

/* The run with this key (a hash of everything that determines the results: model file,
 * calibration settings, seed), created with `model` and `settings_json` (stored as given)
 * when new; *created tells which. */
lq_status lq_store_run(lq_store *s, const char *key, const char *model, const char *settings_json,
                       int64_t *run_id, int *created);

/* Registers tensor `index` of a run (idempotent; the same index with another name or shape is
 * an error naming both). */
lq_status lq_store_tensor(lq_store *s, int64_t run, int index, const char *name, int layer,
                          int out_features, int in_features);

typedef struct {
    int tensor;              /* the run's tensor index */
    char config[16];         /* "24/10" */
    double rel_error;        /* tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) over the calibration tokens */
    double out_energy;       /* tr(W H Wᵀ)/tokens: the FP linear's mean squared output */
    double stream_energy;    /* mean squared norm of the residual stream entering the layer */
    uint64_t code_bytes, side_bytes;
    double seconds;
    char host[64];
    char blob[256];          /* path of the blob, relative to the store's directory */
    uint64_t checksum;       /* lq_file_checksum of the blob */
} lq_store_result;

lq_status lq_store_put_result(lq_store *s, int64_t run, const lq_store_result *r);
/* All results of a run ordered by tensor, then config; *out malloc'ed (free()). */
lq_status lq_store_results(lq_store *s, int64_t run, lq_store_result **out, size_t *n);
lq_status lq_store_delete_result(lq_store *s, int64_t run, int tensor, const char *config);

/* A solved budget: the chosen config per tensor (configs[i] for tensor i, n tensors) and the
 * solver's figures, in one transaction; solving the same (run, budget, measure) again replaces
 * the earlier assignment. */
typedef struct {
    uint64_t budget_bytes, used_bytes;
    const char *measure;     /* error measure name */
    double objective, lower_bound;
    const char *out_path;
} lq_store_solve_info;
lq_status lq_store_put_assignment(lq_store *s, int64_t run, const lq_store_solve_info *info,
                                  const char *const *configs, int n);

/* ---- progress events (progress.c, schemas/progress.json) ----------------------------------
 * Rank 0 publishes one JSON event per stage change and per committed result on a ZeroMQ
 * endpoint (--progress), and renders the same events on its own stderr: a bar redrawn in place
 * on a terminal, one plain line per event otherwise (a log file or a Slurm output file).
 * lq-watch parses the JSON back into the struct and renders it with the same function, so both
 * views say the same thing. Numbers that are unknown hold a negative value and are left out of
 * the JSON. */
typedef enum {
    LQ_STAGE_PREPARE, LQ_STAGE_MEASURE, LQ_STAGE_SOLVE, LQ_STAGE_ASSEMBLE, LQ_STAGE_EVAL,
    LQ_STAGE_DONE, LQ_STAGE_FAILED
} lq_stage;
const char *lq_stage_name(lq_stage s);

typedef struct {
    int64_t seq;             /* set by lq_progress_publish */
    double time;             /* Unix seconds; set by lq_progress_publish */
    int64_t run;
    lq_stage stage;
    int64_t done, total;
    double elapsed_s, eta_s; /* eta_s < 0: unknown */
    int layer;               /* < 0: none */
    char tensor[96], config[16], host[64];
    double error, seconds;   /* < 0: none */
    int64_t bytes, budget_bytes;   /* < 0: none */
    double perplexity;       /* <= 0: none */
    char out[1024], message[1024];
} lq_progress_event;

/* An event with nothing known: every optional number negative, strings empty. */
void lq_progress_event_init(lq_progress_event *ev, lq_stage stage);
/* The event as one compact JSON object (malloc'ed; free()). */
lq_status lq_progress_event_json(const lq_progress_event *ev, char **out);
/* Parses one message (not NUL-terminated, any bytes) into *ev; a message that is not a valid
 * version-1 event is LQ_ERR_FORMAT naming the field at fault. */
lq_status lq_progress_event_parse(const char *bytes, size_t len, lq_progress_event *ev);
/* Writes the event to f as `tool: ...`: on a terminal (tty != 0) a bar line redrawn in place for
 * measure events and a finished line for the others; otherwise one line per event. *bar_open
 * (start at 0) remembers that a bar line waits for its newline. */
void lq_progress_render(FILE *f, int tty, const char *tool, const lq_progress_event *ev,
                        int *bar_open);

/* 1 when a ZeroMQ endpoint cannot be reached from another host: ipc://, inproc://, and tcp://
 * on 127.x.x.x, localhost or [::1] with a port (not the "source;destination" form). Both
 * --progress and lqd's --listen decide with it. */
int lq_endpoint_is_local(const char *endpoint);
/* Loopback (tcp://127.x.x.x, tcp://localhost, tcp://[::1]) and ipc:// endpoints are always
 * allowed; anything else only with allow_remote, since events name the model and output paths. */
lq_status lq_progress_endpoint_check(const char *endpoint, const char *flag, int allow_remote);

typedef struct lq_progress lq_progress;
/* endpoint NULL: render only. The PUB side is an XPUB socket, so that a subscriber joining late
 * is sent the latest event at once instead of waiting for the next one. */
lq_status lq_progress_open(const char *endpoint, int allow_remote, FILE *render_to, int tty,
                           const char *tool, lq_progress **out);
/* Stamps seq and time, renders, publishes. Never fails the job: progress is advisory, so a send
 * error is logged once and publishing stops. */
void lq_progress_publish(lq_progress *p, lq_progress_event *ev);
/* Republishes the latest event (a heartbeat while waiting) and answers new subscribers. */
void lq_progress_tick(lq_progress *p);
/* Answers subscriptions for 0.3 s more (a watcher started with a short job sees how it ended),
 * flushes queued events (waits at most 1 s for slow subscribers) and frees. NULL is fine. */
void lq_progress_close(lq_progress *p);

#endif
