/* liftquant fleet service: the lqd daemon's request protocol (fleet_proto.c), its durable job
 * queue (fleet_queue.c, schemas/fleet.sql), and what lqd.c and tools/lq-fleet.c share.
 * docs/FLEET.md describes the protocol, the manifest and the durability argument.
 *
 * Requests are one JSON object per ZeroMQ message, at most LQ_FLEET_MAX_REQUEST bytes:
 *   {"op":"submit","model":PATH,"tokenizer":PATH?,"budget":B | "budgets":[B,...],
 *    "out":DIR,"db":FILE?,"args":[FLAG,...]?,"if_changed":BOOL?}
 *   {"op":"status","job":ID?}      {"op":"cancel","job":ID}
 * A budget B is a size ("600KiB", lq_size_parse's grammar) or a bit width ("4bits", "2.5bits").
 * One job is one model at one budget: with "budget" its output is OUT itself, with "budgets"
 * each job writes OUT/<budget as written>.
 * Replies are {"ok":true,...} or {"ok":false,"error":TEXT}. */
#ifndef LQ_FLEET_H
#define LQ_FLEET_H

#include "lq_common.h"
#include "lq_coord.h"   /* lq_endpoint_is_local */

#include <stdint.h>

/* where lqd listens and lq-fleet connects unless told otherwise */
#define LQ_FLEET_DEFAULT_ENDPOINT "tcp://127.0.0.1:5590"
#define LQ_FLEET_MAX_REQUEST (64 * 1024)
#define LQ_FLEET_MAX_BUDGETS 64
#define LQ_FLEET_MAX_ARGS 256
#define LQ_FLEET_MAX_PATH 4096

typedef enum { LQ_FLEET_SUBMIT = 1, LQ_FLEET_STATUS, LQ_FLEET_CANCEL } lq_fleet_op;

typedef struct lq_fleet_request {
    lq_fleet_op op;
    int64_t job;            /* status: 0 means every job; cancel: the job (> 0) */
    /* submit only (NULL / 0 otherwise); every string is NUL-terminated and NUL-free */
    char *model, *tokenizer, *out, *db;
    char **budgets;         /* n_budgets, each valid (lq_fleet_budget_parse) */
    int n_budgets;
    int out_is_parent;      /* "budgets" (1): OUT/<budget> per job; "budget" (0): OUT itself */
    char **args;            /* n_args extra lq-calibrate flags, passed as given */
    int n_args;
    int if_changed;         /* skip a job whose fingerprint equals the last done one for its out */
} lq_fleet_request;

/* Parses one request message: any bytes, not NUL-terminated, len may be 0. On failure the
 * message names the field at fault (LQ_ERR_FORMAT for malformed, LQ_ERR_RANGE for oversize) and
 * *out is left zeroed. lq_fleet_request_free is safe on a zeroed or failed-parse struct. */
lq_status lq_fleet_request_parse(const char *bytes, size_t len, lq_fleet_request *out);
void lq_fleet_request_free(lq_fleet_request *req);

/* A budget: "600KiB" → --budget 600KiB; "4bits" / "2.5bits" (0 < B ≤ 32) → --target-bits 4.
 * flag_out is "--budget" or "--target-bits"; value_out is that flag's value (cap bytes). */
lq_status lq_fleet_budget_parse(const char *text, const char **flag_out, char *value_out,
                                size_t cap);

/* Serialises a request (lq-fleet's side); *out malloc'ed, free(). */
lq_status lq_fleet_request_json(const lq_fleet_request *req, char **out);

/* {"ok":false,"error":message}, malloc'ed; never fails (falls back to a static text copy). */
char *lq_fleet_error_reply(const char *message);

/* Loopback or not: lq_endpoint_is_local() in lq_coord.h, shared with lq-calibrate --progress. */

/* Reads a Z85 key file (40 characters, surrounding white space ignored) into 32 bytes; the
 * message names the file. */
lq_status lq_fleet_key_load(const char *path, uint8_t key[32]);

/* ---- the job queue (fleet_queue.c) --------------------------------------------------------
 * One SQLite file (WAL, STRICT tables, every state change its own BEGIN IMMEDIATE transaction
 * committed before lqd acts on it). States: queued → running → done | failed | cancelled;
 * running → queued again when lqd restarts and finds its process gone without an exit status. */
typedef enum {
    LQ_JOB_QUEUED, LQ_JOB_RUNNING, LQ_JOB_DONE, LQ_JOB_FAILED, LQ_JOB_CANCELLED
} lq_job_state;
const char *lq_job_state_name(lq_job_state s);

typedef struct {
    int64_t id;
    lq_job_state state;
    char *model, *tokenizer, *budget, *out, *db;   /* tokenizer may be NULL */
    char *args_json;        /* JSON array of strings */
    char *fingerprint;
    char *launcher;         /* "local" or "slurm" */
    int64_t pid;            /* local launch: the process group leader, 0 when none */
    char *slurm_id;         /* slurm launch, NULL when none */
    int64_t launches;       /* how many times the job was started */
    int64_t exit_code;      /* -1 when none */
    char *message;          /* why it failed or was cancelled, NULL when none */
    char *submitted, *started, *finished;   /* UTC ISO-8601, NULL when not yet */
} lq_job;
void lq_job_free(lq_job *j);
void lq_jobs_free(lq_job *jobs, size_t n);

typedef struct lq_fleet_queue lq_fleet_queue;
lq_status lq_fleet_queue_open(const char *path, lq_fleet_queue **out);
void lq_fleet_queue_close(lq_fleet_queue *q);

/* A new queued job; *id set. */
lq_status lq_fleet_queue_add(lq_fleet_queue *q, const lq_job *job, int64_t *id);
lq_status lq_fleet_queue_get(lq_fleet_queue *q, int64_t id, lq_job *out);  /* NOT_FOUND */
/* Every job by id (state_filter < 0), or those in one state; *out malloc'ed. */
lq_status lq_fleet_queue_list(lq_fleet_queue *q, int state_filter, lq_job **out, size_t *n);
/* The newest done job writing `out`, *found 0 when none. */
lq_status lq_fleet_queue_last_done(lq_fleet_queue *q, const char *out_dir, lq_job *job, int *found);

/* queued → running, launches + 1, pid/slurm id cleared: committed before the launch, so a crash
 * after it is seen as "running, no process" and resolved at restart. Fails (LQ_ERR_RANGE) when
 * the job is no longer queued. *launch receives the new launch number. */
lq_status lq_fleet_queue_mark_launching(lq_fleet_queue *q, int64_t id, int64_t *launch);
/* Records the launched process or slurm job (a running job). */
lq_status lq_fleet_queue_set_pid(lq_fleet_queue *q, int64_t id, int64_t pid);
lq_status lq_fleet_queue_set_slurm(lq_fleet_queue *q, int64_t id, const char *slurm_id);
/* running|queued → a final state, with exit code (-1: none) and message (NULL: none). Only
 * from a non-final state: a final job is never changed (LQ_ERR_RANGE). */
lq_status lq_fleet_queue_finish(lq_fleet_queue *q, int64_t id, lq_job_state state,
                                int64_t exit_code, const char *message);
/* running → queued (its process vanished without a status). */
lq_status lq_fleet_queue_requeue(lq_fleet_queue *q, int64_t id, const char *why);
/* An entry in the events table (what lqd did and when): launch, adopt, requeue, finish… */
lq_status lq_fleet_queue_event(lq_fleet_queue *q, int64_t job, const char *event,
                               const char *detail);

/* The fingerprint of a job: FNV-1a 64 over the model and tokenizer paths with their files'
 * sizes and modification times (every regular file of a directory, by name), the budget and
 * the args. 16 hex digits + NUL. */
lq_status lq_fleet_fingerprint(const char *model, const char *tokenizer, const char *budget,
                               const char *const *args, int n_args, char out[17]);

/* The job as a JSON object (status replies), malloc'ed. */
lq_status lq_job_json(const lq_job *job, char **out);

#endif
