/* lq-calibrate — the distributed calibration service (DESIGN.md §1, §4, §5; docs/CALIBRATE.md).
 *
 *   mpirun -n N lq-calibrate --model DIR --budget 24GiB --out OUT [options]
 *
 * Rank 0 plans and keeps the store; ranks 1..N−1 are workers (with -n 1 rank 0 is the worker
 * too). The flow, top to bottom in main():
 *   1. every rank parses the same argv; rank 0 checks the inputs, opens the SQLite store, finds
 *      or creates the run (keyed by everything that determines a result), verifies the blobs of
 *      finished results by checksum, and broadcasts what is still to do;
 *   2. if anything is: workers load the model themselves, each takes a contiguous block of
 *      decoder layers, passes calibration hidden states down the pipeline (MPI), measures every
 *      candidate config of its linears and sends each result (a few numbers; the blob itself goes
 *      to the shared filesystem) to rank 0, which commits it to the store in its own transaction;
 *   3. rank 0 solves the budget (multiple-choice knapsack over tensors × configs), assembles OUT
 *      from the chosen blobs (written as OUT.tmp, renamed), checks its size against the budget,
 *      records the assignment and prints the report.
 * Rerunning the same command resumes: finished results are skipped; with everything measured,
 * a new --budget only re-solves and re-assembles (seconds). */
#include "eval.h"
#include "hidden_link.h"
#include "lq_calib.h"
#include "lq_coord.h"
#include "lq_worker.h"

#include "cli_args.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef LQ_DEFAULT_LATTICE_DIR
#define LQ_DEFAULT_LATTICE_DIR "lattices"
#endif
#ifndef LQ_DEFAULT_CALIB
#define LQ_DEFAULT_CALIB "wiki.valid.raw"
#endif

#define TOOL "lq-calibrate"
#define N_LINEARS 7
#define MAX_CONFIGS 16
#define DEFAULT_CONFIGS "16/8,30/14,24/10,25/10,27/12,24/8"

enum { TAG_RESULT = 1, TAG_DONE, TAG_ERROR };

static int g_rank, g_size;

/* ---- options ------------------------------------------------------------------------------- */
typedef struct {
    const char *model, *tokenizer, *out, *budget, *calib, *db, *lattice_dir, *configs_text;
    const char *kv_dtype, *reserve, *measure, *encoder, *eval_text, *transport, *progress, *bar;
    int progress_remote;
    long nsamples, seqlen, seed, steps, ctx, batch, eval_ctx, eval_windows;
    long db_timeout;          /* seconds a store write waits for another writer's lock */
    double target_bits;
    int n_configs;
    int D[MAX_CONFIGS], d[MAX_CONFIGS];
    char config_name[MAX_CONFIGS][16];
} options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: mpirun -n N " TOOL " --model PATH --out DIR (--budget SIZE | --target-bits B)\n"
            "                 [options]\n"
            "Quantizes a model with LiftQuant so that it fits a memory budget: every linear of every\n"
            "decoder layer is measured at each candidate config (distributed over the MPI ranks),\n"
            "then a knapsack solver gives each its config, and OUT is assembled. Rerunning resumes.\n"
            "\n"
            "  --model PATH        Hugging Face dir, GGUF file, or llama2.c .bin (with --tokenizer)\n"
            "  --tokenizer FILE    tokenizer for a llama2.c checkpoint\n"
            "  --out DIR           output model directory (written as DIR.tmp, then renamed)\n"
            "  --budget SIZE       total device memory: weights + KV cache + reserve; units B, KiB,\n"
            "                      MiB, GiB, TiB, KB, MB, GB, TB (e.g. 24GiB)\n"
            "  --target-bits B     instead of --budget: quantized linears take at most B bits per\n"
            "                      weight including side data (codes, scales, whitening, lattices)\n"
            "  --configs LIST      candidate configs D/d (default " DEFAULT_CONFIGS ")\n"
            "  --calib FILE|DIR    calibration text (default %s)\n"
            "  --nsamples N        calibration windows (default 128)\n"
            "  --seqlen L          tokens per window (default 512)\n"
            "  --ctx N --batch N   KV cache the budget must hold (default 4096 and 1)\n"
            "  --kv-dtype T        f16, bf16, f32 or q8 (default f16)\n"
            "  --reserve SIZE      runtime reserve counted in the budget (default 0)\n"
            "  --db FILE           the SQLite store (default OUT's parent/liftquant-store/store.db;\n"
            "                      blobs go next to it)\n"
            "  --db-timeout S      seconds a store write waits while another process holds the\n"
            "                      store's write lock, then fails naming it (default 60)\n"
            "  --measure M         error the solver minimises: stream (default), output, relative\n"
            "                      (docs/CALIBRATE.md)\n"
            "  --steps N           LiftQuant correction steps (default 100)\n"
            "  --seed N            calibration windows and rotations (default 42)\n"
            "  --encoder E         exact (default) or heuristic lattice encoding\n"
            "  --lattices DIR      lattice files (default %s)\n"
            "  --transport T       hidden states between workers: mpi (default) or nccl (GPU\n"
            "                      workers; built with CUDA only)\n"
            "  --eval-text FILE    after writing OUT, its perplexity on FILE (lq-eval ppl's\n"
            "                      protocol, docs/EVAL.md) with --eval-ctx N (default 512 or the\n"
            "                      model's context) over --eval-windows N windows (default all)\n"
            "  --progress ENDPOINT publish progress events (JSON, schemas/progress.json) on a\n"
            "                      ZeroMQ endpoint, e.g. tcp://127.0.0.1:5557 or ipc:///tmp/lq.sock;\n"
            "                      watch with lq-watch ENDPOINT\n"
            "  --progress-remote   allow a --progress endpoint beyond loopback\n"
            "  --bar WHEN          progress bar on stderr: auto (default: when stderr is a\n"
            "                      terminal), on, off (one line per event); under mpirun stderr\n"
            "                      is a pipe, so a terminal needs --bar on (or lq-watch)\n"
            "  --help              this text\n"
            "",
            LQ_DEFAULT_CALIB, LQ_DEFAULT_LATTICE_DIR);
}

static int parse_configs(options *o) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", o->configs_text);
    o->n_configs = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int D, d;
        if (lq_lattice_config_parse(t, &D, &d) != LQ_OK) {
            fprintf(stderr, TOOL ": --configs: %s\n", lq_last_error());
            return 0;
        }
        for (int k = 0; k < o->n_configs; k++)
            if (o->D[k] == D && o->d[k] == d) {
                fprintf(stderr, TOOL ": --configs: %d/%d is listed twice\n", D, d);
                return 0;
            }
        if (o->n_configs == MAX_CONFIGS) {
            fprintf(stderr, TOOL ": --configs: at most %d configs\n", MAX_CONFIGS);
            return 0;
        }
        o->D[o->n_configs] = D, o->d[o->n_configs] = d;
        snprintf(o->config_name[o->n_configs], sizeof o->config_name[0], "%d/%d", D, d);
        o->n_configs++;
    }
    if (o->n_configs == 0) {
        fprintf(stderr, TOOL ": --configs: empty list\n");
        return 0;
    }
    return 1;
}

/* Returns 0 to go on, else the exit status (0 for --help is signalled by -1). */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->lattice_dir = LQ_DEFAULT_LATTICE_DIR, o->configs_text = DEFAULT_CONFIGS;
    o->kv_dtype = "f16", o->reserve = "0", o->measure = "stream", o->encoder = "exact";
    o->transport = "mpi", o->bar = "auto";
    o->nsamples = 128, o->seqlen = 512, o->seed = 42, o->steps = 100, o->ctx = 4096, o->batch = 1;
    o->db_timeout = 60;
    o->target_bits = -1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(var)                                                                  \
    do {                                                                           \
        if (!lq_arg_string(TOOL, a, v, &var)) return 2;                   \
        i++;                                                                       \
    } while (0)
#define TAKE_LONG(var, lo, hi)                                                     \
    do {                                                                           \
        if (!lq_arg_long(TOOL, a, v, lo, hi, &var)) return 2;                      \
        i++;                                                                       \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        else if (!strcmp(a, "--model")) TAKE(o->model);
        else if (!strcmp(a, "--tokenizer")) TAKE(o->tokenizer);
        else if (!strcmp(a, "--out")) TAKE(o->out);
        else if (!strcmp(a, "--budget")) TAKE(o->budget);
        else if (!strcmp(a, "--calib")) TAKE(o->calib);
        else if (!strcmp(a, "--db")) TAKE(o->db);
        else if (!strcmp(a, "--lattices")) TAKE(o->lattice_dir);
        else if (!strcmp(a, "--configs")) TAKE(o->configs_text);
        else if (!strcmp(a, "--kv-dtype")) TAKE(o->kv_dtype);
        else if (!strcmp(a, "--reserve")) TAKE(o->reserve);
        else if (!strcmp(a, "--measure")) TAKE(o->measure);
        else if (!strcmp(a, "--encoder")) TAKE(o->encoder);
        else if (!strcmp(a, "--eval-text")) TAKE(o->eval_text);
        else if (!strcmp(a, "--transport")) TAKE(o->transport);
        else if (!strcmp(a, "--progress")) TAKE(o->progress);
        else if (!strcmp(a, "--progress-remote")) o->progress_remote = 1;
        else if (!strcmp(a, "--bar")) TAKE(o->bar);
        else if (!strcmp(a, "--eval-ctx")) TAKE_LONG(o->eval_ctx, 2, 1 << 20);
        else if (!strcmp(a, "--eval-windows")) TAKE_LONG(o->eval_windows, 1, 1L << 40);
        else if (!strcmp(a, "--nsamples")) TAKE_LONG(o->nsamples, 1, 1 << 20);
        else if (!strcmp(a, "--seqlen")) TAKE_LONG(o->seqlen, 2, 1 << 20);
        else if (!strcmp(a, "--seed")) TAKE_LONG(o->seed, 0, 1L << 62);
        else if (!strcmp(a, "--steps")) TAKE_LONG(o->steps, 0, 1 << 20);
        else if (!strcmp(a, "--ctx")) TAKE_LONG(o->ctx, 1, 1L << 30);
        else if (!strcmp(a, "--batch")) TAKE_LONG(o->batch, 1, 1L << 20);
        else if (!strcmp(a, "--db-timeout")) TAKE_LONG(o->db_timeout, 0, 86400);
        else if (!strcmp(a, "--target-bits")) {
            if (!lq_arg_double(TOOL, a, v, 0.01, 64.0, &o->target_bits)) return 2;
            i++;
        } else {
            fprintf(stderr, TOOL ": unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef TAKE
#undef TAKE_LONG
    }
    if (!o->model || !o->out) {
        fprintf(stderr, TOOL ": --model and --out are required (see --help)\n");
        return 2;
    }
    if (!o->budget == (o->target_bits < 0)) {
        fprintf(stderr, TOOL ": give exactly one of --budget SIZE and --target-bits B\n");
        return 2;
    }
    if (strcmp(o->measure, "output") && strcmp(o->measure, "relative") && strcmp(o->measure, "stream")) {
        fprintf(stderr, TOOL ": --measure %s: expected output, relative or stream\n", o->measure);
        return 2;
    }
    if (strcmp(o->encoder, "exact") && strcmp(o->encoder, "heuristic")) {
        fprintf(stderr, TOOL ": --encoder %s: expected exact or heuristic\n", o->encoder);
        return 2;
    }
    lq_link_kind kind;
    if (lq_link_kind_from_name(o->transport, &kind) != LQ_OK) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        return 2;
    }
    if (strcmp(o->bar, "auto") && strcmp(o->bar, "on") && strcmp(o->bar, "off")) {
        fprintf(stderr, TOOL ": --bar %s: expected auto, on or off\n", o->bar);
        return 2;
    }
    if (o->progress && lq_progress_endpoint_check(o->progress, "--progress", o->progress_remote)) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        return 2;
    }
    if (!o->calib) o->calib = LQ_DEFAULT_CALIB;
    return parse_configs(o) ? 0 : 2;
}

/* ---- lattices (every rank: workers encode with them, rank 0 counts their bytes) ------------ */
typedef struct {
    int n;
    lq_lattice_file files[MAX_CONFIGS];
    lq_lattice lattices[MAX_CONFIGS];
    const lq_lattice *ptr[MAX_CONFIGS];
} lattice_set;

static void lattice_set_free(lattice_set *ls) {
    for (int k = 0; k < ls->n; k++) {
        lq_lattice_free(&ls->lattices[k]);
        lq_lattice_file_free(&ls->files[k]);
    }
    ls->n = 0;
}

static lq_status lattice_set_load(const options *o, lattice_set *ls) {
    memset(ls, 0, sizeof *ls);
    for (int k = 0; k < o->n_configs; k++) {
        lq_status st = lq_lattice_load_config(o->lattice_dir, o->D[k], o->d[k], &ls->files[k],
                                              &ls->lattices[k]);
        if (st) {
            lattice_set_free(ls);
            return lq_fail_context(st, "--configs %s", o->config_name[k]);
        }
        ls->ptr[k] = &ls->lattices[k];
        ls->n = k + 1;
    }
    return LQ_OK;
}

/* ---- the plan: what every rank needs to know ------------------------------------------------ */
typedef struct {
    int32_t status;          /* 0: go on; else every rank exits with it */
    int32_t n_layers;
    int64_t run_id;
    int64_t todo;            /* results still to measure */
    char blob_dir[3072];     /* absolute */
} plan_header;

/* Worker k of n_workers owns layers [begin, end): contiguous blocks over the first
 * min(n_workers, n_layers) workers, so pipeline neighbours are neighbouring workers; any
 * further workers idle. */
static void worker_layers(int k, int n_workers, int n_layers, int *begin, int *end) {
    int busy = n_workers < n_layers ? n_workers : n_layers;
    if (k >= busy) {
        *begin = *end = n_layers;
        return;
    }
    *begin = (int)((long)k * n_layers / busy);
    *end = (int)((long)(k + 1) * n_layers / busy);
}

/* ---- rank 0: inputs, store, run --------------------------------------------------------------- */
static lq_status file_identity(const char *path, char *out, size_t cap) {
    char real[PATH_MAX];
    struct stat sb;
    if (!realpath(path, real) || stat(real, &sb) != 0)
        return lq_fail(LQ_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    snprintf(out, cap, "%s|%lld|%lld.%09ld", real, (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             (long)sb.st_mtim.tv_nsec);
    return LQ_OK;
}

/* Everything a result depends on. The model file is identified by path, size and mtime (hashing
 * a 140 GB checkpoint on every rerun would cost minutes): replacing it in place with a file of the
 * same size and mtime would go unnoticed. */
static lq_status run_key(const options *o, char *key, size_t key_cap, json_t **settings) {
    char model_id[PATH_MAX + 64], tok_id[PATH_MAX + 64] = "-", calib_id[PATH_MAX + 64];
    lq_status st = file_identity(o->model, model_id, sizeof model_id);
    if (!st && o->tokenizer) st = file_identity(o->tokenizer, tok_id, sizeof tok_id);
    if (!st) st = file_identity(o->calib, calib_id, sizeof calib_id);
    if (st) return st;
    char text[16384];
    int n = snprintf(text, sizeof text, "liftquant-run-1|%s|%s|%s|%ld|%ld|%ld|%ld|%s", model_id,
                     tok_id, calib_id, o->nsamples, o->seqlen, o->seed, o->steps, o->encoder);
    if (n >= (int)sizeof text) return lq_fail(LQ_ERR_ARG, "%s: paths too long", o->model);
    /* not in the key: the configs (adding one to --configs extends the run; results carry their
     * config) and the lattice files, which are trained deterministically from a seed */
    uint64_t h = lq_checksum64(text, strlen(text));
    snprintf(key, key_cap, "%016llx", (unsigned long long)h);
    *settings = json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "model", o->model,
                          "tokenizer", o->tokenizer, "calib", o->calib, "nsamples",
                          (json_int_t)o->nsamples, "seqlen", (json_int_t)o->seqlen, "seed",
                          (json_int_t)o->seed, "steps", (json_int_t)o->steps, "encoder", o->encoder,
                          "lattices", o->lattice_dir);
    return *settings ? LQ_OK : lq_fail(LQ_ERR_NOMEM, "out of memory");
}

static lq_status parent_dir(const char *path, char *out, size_t cap) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return lq_fail(LQ_ERR_ARG, "%s: path too long", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    snprintf(out, cap, "%s", dirname(buf));
    return LQ_OK;
}

typedef struct {
    const options *o;
    lq_model *model;          /* rank 0: the FP model, for planning and assembly */
    uint64_t budget, kv, reserve;   /* parsed in prepare(), before any measuring */
    lq_store *store;
    char store_dir[4096];
    int64_t run_id;
    int n_tensors;
    uint8_t *done;            /* n_tensors × n_configs */
    /* progress */
    int64_t todo, received;
    double t_job, t_start;    /* the job's start, the measure stage's start */
    lq_progress *progress;    /* renders on stderr; publishes with --progress */
    int stop_after;           /* test hook: LQ_CALIBRATE_STOP_AFTER */
} coordinator;

/* The checks that should fail in seconds, not after hours: OUT's parent is a writable directory,
 * the calibration text exists. */
static lq_status check_paths(const options *o) {
    char parent[4096];
    lq_status st = parent_dir(o->out, parent, sizeof parent);
    if (st) return st;
    struct stat sb;
    if (stat(parent, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lq_fail(LQ_ERR_IO, "--out %s: its parent %s is not a directory", o->out, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return lq_fail(LQ_ERR_IO, "--out %s: cannot write in %s: %s", o->out, parent, strerror(errno));
    if (access(o->calib, R_OK) != 0)
        return lq_fail(LQ_ERR_NOT_FOUND, "--calib %s: %s", o->calib, strerror(errno));
    if (o->eval_text && access(o->eval_text, R_OK) != 0)
        return lq_fail(LQ_ERR_NOT_FOUND, "--eval-text %s: %s", o->eval_text, strerror(errno));
    return LQ_OK;
}

static lq_status open_run(coordinator *co) {
    const options *o = co->o;
    char db[4096 + 64];
    lq_status st;
    if (o->db) {
        snprintf(db, sizeof db, "%s", o->db);
    } else {
        char parent[4096];
        if ((st = parent_dir(o->out, parent, sizeof parent))) return st;
        snprintf(db, sizeof db, "%s/liftquant-store/store.db", parent);
    }
    if ((st = parent_dir(db, co->store_dir, sizeof co->store_dir)) || (st = lq_make_dirs(co->store_dir)))
        return lq_fail_context(st, "--db %s", db);
    if ((st = lq_store_open_with_timeout(db, (int)(o->db_timeout * 1000), &co->store))) return st;
    char key[64];
    json_t *settings = NULL;
    if ((st = run_key(o, key, sizeof key, &settings))) return st;
    char *settings_text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(settings);
    if (!settings_text) return lq_fail(LQ_ERR_NOMEM, "out of memory");
    int created = 0;
    st = lq_store_run(co->store, key, o->model, settings_text, &co->run_id, &created);
    free(settings_text);
    if (st) return st;
    const lq_model_config *c = &co->model->cfg;
    co->n_tensors = N_LINEARS * c->n_layers;
    for (int t = 0; t < co->n_tensors && !st; t++) {
        char name[96];
        lq_linear_name(t / N_LINEARS, t % N_LINEARS, name, sizeof name);
        const lq_linear *lin = lq_layer_linear(&co->model->layers[t / N_LINEARS], t % N_LINEARS);
        st = lq_store_tensor(co->store, co->run_id, t, name, t / N_LINEARS, lin->out_features,
                             lin->in_features);
    }
    if (st) return st;
    LQ_INFO("store %s: run %lld (%s)", lq_store_path(co->store), (long long)co->run_id,
            created ? "new" : "resumed");
    return LQ_OK;
}

static int config_index(const options *o, const char *name) {
    for (int k = 0; k < o->n_configs; k++)
        if (!strcmp(o->config_name[k], name)) return k;
    return -1;
}

/* Which (tensor, config) pairs are done: a row in the store whose blob still has its checksum.
 * A blob that does not (a disk error, a partial copy) loses its row and is measured again. */
static lq_status find_done(coordinator *co, int64_t *todo) {
    const options *o = co->o;
    co->done = calloc((size_t)co->n_tensors * o->n_configs, 1);
    if (!co->done) return lq_fail(LQ_ERR_NOMEM, "out of memory");
    lq_store_result *rows = NULL;
    size_t n = 0;
    lq_status st = lq_store_results(co->store, co->run_id, &rows, &n);
    for (size_t i = 0; i < n && !st; i++) {
        int k = config_index(o, rows[i].config);
        if (k < 0 || rows[i].tensor < 0 || rows[i].tensor >= co->n_tensors) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", co->store_dir, rows[i].blob);
        uint64_t sum = 0;
        if (lq_file_checksum(path, &sum) != LQ_OK || sum != rows[i].checksum) {
            LQ_WARN("blob %s is missing or fails its checksum: measuring tensor %d at %s again",
                    path, rows[i].tensor, rows[i].config);
            st = lq_store_delete_result(co->store, co->run_id, rows[i].tensor, rows[i].config);
            continue;
        }
        co->done[(size_t)rows[i].tensor * o->n_configs + k] = 1;
    }
    free(rows);
    *todo = 0;
    for (size_t i = 0; i < (size_t)co->n_tensors * o->n_configs; i++) *todo += !co->done[i];
    return st;
}

/* ---- rank 0: receiving results ---------------------------------------------------------------- */
typedef struct {
    lq_candidate_result r;
    char host[64];
} result_message;

/* An event with the job's counters filled in; the caller adds what its stage knows. */
static void progress_event(const coordinator *co, lq_stage stage, lq_progress_event *ev) {
    lq_progress_event_init(ev, stage);
    ev->run = co->run_id;
    ev->done = co->received, ev->total = co->todo;
    ev->elapsed_s = lq_seconds() - co->t_job;
}

static lq_status store_result(coordinator *co, const result_message *msg) {
    const options *o = co->o;
    const lq_candidate_result *r = &msg->r;
    if (r->tensor < 0 || r->tensor >= co->n_tensors || r->config < 0 || r->config >= o->n_configs)
        return lq_fail(LQ_ERR_INTERNAL, "result for tensor %d config %d is out of range", r->tensor,
                       r->config);
    lq_store_result row;
    memset(&row, 0, sizeof row);
    row.tensor = r->tensor;
    snprintf(row.config, sizeof row.config, "%s", o->config_name[r->config]);
    row.rel_error = r->rel_error, row.out_energy = r->out_energy, row.stream_energy = r->stream_energy;
    row.code_bytes = r->code_bytes, row.side_bytes = r->side_bytes, row.seconds = r->seconds;
    row.checksum = r->checksum;
    snprintf(row.host, sizeof row.host, "%s", msg->host);
    char module[96], file[160];
    lq_linear_name(r->tensor / N_LINEARS, r->tensor % N_LINEARS, module, sizeof module);
    lq_calib_blob_name(module, o->D[r->config], o->d[r->config], file, sizeof file);
    snprintf(row.blob, sizeof row.blob, "blobs/run%lld/%s", (long long)co->run_id, file);
    lq_status st = lq_store_put_result(co->store, co->run_id, &row);
    if (st) return st;
    co->received++;
    lq_progress_event ev;
    progress_event(co, LQ_STAGE_MEASURE, &ev);
    ev.eta_s = (lq_seconds() - co->t_start) / (double)co->received * (double)(co->todo - co->received);
    ev.layer = r->tensor / N_LINEARS;
    snprintf(ev.tensor, sizeof ev.tensor, "%s", module);
    snprintf(ev.config, sizeof ev.config, "%s", row.config);
    snprintf(ev.host, sizeof ev.host, "%s", msg->host);
    ev.error = r->rel_error, ev.seconds = r->seconds;
    ev.bytes = (int64_t)(r->code_bytes + r->side_bytes);
    lq_progress_publish(co->progress, &ev);
    if (co->stop_after > 0 && co->received >= co->stop_after) {
        fprintf(stderr, "\n" TOOL ": LQ_CALIBRATE_STOP_AFTER=%d reached: aborting as a crash would\n",
                co->stop_after);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    return LQ_OK;
}

/* After the first failure, how long rank 0 keeps listening for the other workers' last word
 * before it aborts the job (see receive_results). */
#define FAILURE_GRACE_S 10.0

/* Rank 0's side of the measuring: results go into the store until every worker has said DONE
 * or ERROR. The first failure (a worker's, or the store's) is the job's; rank 0 then listens
 * for up to FAILURE_GRACE_S more seconds, discarding results, and *all_reported says whether
 * every worker had its say by then. Why not abort at once: only MPI_Abort frees a worker stuck
 * on a dead peer, but Debian 12's Open MPI 4.1.4 (external PMIx) now and then deadlocks or
 * segfaults in mpirun's own teardown after an abort (PMIx_server_finalize: exit 139, or a hang
 * with every rank already gone), which turns a clear error into a hung batch job. Errors every
 * worker meets at the start (no GPU for --transport nccl, a model they cannot read) then end
 * with MPI_Finalize like a finished job; only a worker that stays silent costs an abort. */
static lq_status receive_results(coordinator *co, int n_workers, int *all_reported) {
    int finished = 0;
    lq_status failure = LQ_OK;
    char failure_text[2200] = "";
    double failed_at = 0.0;
    *all_reported = 0;
    while (finished < n_workers) {
        MPI_Status status;
        /* Open MPI's blocking probe spins a core; rank 0 waits for hours between results, on
         * cores the workers need (mpirun -n N on N cores), so it polls and sleeps instead */
        int flag = 0;
        for (;;) {
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &status);
            if (flag) break;
            if (failure && lq_seconds() - failed_at > FAILURE_GRACE_S)
                return lq_fail(failure, "%s", failure_text);
            struct timespec pause = {0, 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
            lq_progress_tick(co->progress);
        }
        lq_status st = LQ_OK;
        if (status.MPI_TAG == TAG_RESULT) {
            result_message msg;
            MPI_Recv(&msg, sizeof msg, MPI_BYTE, status.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
            if (!failure) st = store_result(co, &msg);
        } else if (status.MPI_TAG == TAG_DONE) {
            MPI_Recv(NULL, 0, MPI_BYTE, status.MPI_SOURCE, TAG_DONE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            finished++;
        } else if (status.MPI_TAG == TAG_ERROR) {
            char text[2048];
            MPI_Recv(text, sizeof text, MPI_CHAR, status.MPI_SOURCE, TAG_ERROR, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
            text[sizeof text - 1] = '\0';
            finished++;
            if (!failure) st = lq_fail(LQ_ERR_INTERNAL, "rank %d: %s", status.MPI_SOURCE, text);
        } else {
            /* a broken protocol: nothing the other workers say can be trusted any more */
            return lq_fail(LQ_ERR_INTERNAL, "unexpected message tag %d from rank %d",
                           status.MPI_TAG, status.MPI_SOURCE);
        }
        if (st) {
            failure = st;
            snprintf(failure_text, sizeof failure_text, "%s", lq_last_error());
            failed_at = lq_seconds();
        }
    }
    *all_reported = 1;
    return failure ? lq_fail(failure, "%s", failure_text) : LQ_OK;
}

/* ---- workers ------------------------------------------------------------------------------------ */
typedef struct {
    lq_hidden_link *link;       /* NULL with one worker */
    coordinator *co;            /* -n 1: results go straight to the store */
    char host[64];
} worker_link;

static lq_status receive_hidden(void *ctx, int sample, float *hidden) {
    (void)sample;   /* windows travel in order between two workers */
    return lq_hidden_link_recv(((worker_link *)ctx)->link, hidden);
}

static lq_status send_hidden(void *ctx, int sample, const float *hidden) {
    (void)sample;
    return lq_hidden_link_send(((worker_link *)ctx)->link, hidden);
}

static lq_status report_result(void *ctx, const lq_candidate_result *r) {
    worker_link *wl = ctx;
    result_message msg;
    memset(&msg, 0, sizeof msg);
    msg.r = *r;
    snprintf(msg.host, sizeof msg.host, "%s", wl->host);
    if (wl->co) return store_result(wl->co, &msg);
    return MPI_Send(&msg, sizeof msg, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD) == MPI_SUCCESS
               ? LQ_OK
               : lq_fail(LQ_ERR_IO, "MPI_Send of a result failed");
}

/* One worker's whole job; with -n 1, co is rank 0's coordinator. `workers` holds every worker
 * (the hidden-state link is opened collectively over it, idle workers included). */
static lq_status run_worker(const options *o, const lattice_set *ls, const plan_header *plan,
                            const uint8_t *done, MPI_Comm workers, coordinator *co) {
    int k = 0, n_workers = 1, begin, end;
    MPI_Comm_rank(workers, &k);
    MPI_Comm_size(workers, &n_workers);
    worker_layers(k, n_workers, plan->n_layers, &begin, &end);
    lq_model *m = NULL;
    int *tokens = NULL;
    worker_link wl = {.co = co};
    int len = 0;
    MPI_Get_processor_name(wl.host, &len);
    lq_status st = LQ_OK;
    if (begin < end) {
        st = co ? LQ_OK : lq_load_any_model(o->model, o->tokenizer, &m);
        if (co) m = co->model;
    }
    int seqlen = (int)o->seqlen;
    if (m && seqlen > m->cfg.max_seq_len) seqlen = m->cfg.max_seq_len;
    /* every worker joins the collective open, even one that failed to load or idles: a rank
     * missing from it would hang the others */
    if (n_workers > 1) {
        lq_link_kind kind = LQ_LINK_MPI;
        lq_link_kind_from_name(o->transport, &kind);
        int dim = 0, my_dim = m ? m->cfg.dim : 0;
        MPI_Allreduce(&my_dim, &dim, 1, MPI_INT, MPI_MAX, workers);
        lq_status lst = lq_hidden_link_open(kind, workers, (size_t)seqlen * dim, &wl.link);
        if (!st) st = lst;
    }
    if (!st && begin == 0)
        st = lq_calib_tokens(m->tokenizer, o->calib, (int)o->nsamples, seqlen, (uint64_t)o->seed, &tokens);
    if (!st && begin < end) {
        lq_calib_work w = {.model = m, .tokens = tokens, .nsamples = (int)o->nsamples,
                           .seqlen = seqlen, .layer_begin = begin, .layer_end = end,
                           .n_configs = o->n_configs, .lattices = ls->ptr, .done = done,
                           .blob_dir = plan->blob_dir,
                           .receive_hidden = begin == 0 ? NULL : receive_hidden,
                           .send_hidden = end == plan->n_layers ? NULL : send_hidden,
                           .report = report_result, .ctx = &wl};
        w.options.method = LQ_METHOD_LIFTQUANT;
        lq_lift_options_default(&w.options.lift);
        w.options.lift.steps = (int)o->steps;
        w.options.lift.seed = (uint64_t)o->seed;
        st = lq_encoder_from_name(o->encoder, &w.options.lift.encoder);
        if (!st) {
            LQ_INFO("rank %d on %s: layers %d..%d", g_rank, wl.host, begin, end - 1);
            st = lq_calib_worker_run(&w);
        }
    }
    lq_hidden_link_close(wl.link);
    free(tokens);
    if (!co) lq_model_free(m);
    return st;
}

/* ---- rank 0: budget, solve, assemble ------------------------------------------------------------ */
/* The lattices of every candidate, as stored (F32 d × D each). */
static uint64_t candidate_lattice_bytes(const options *o) {
    uint64_t b = 0;
    for (int k = 0; k < o->n_configs; k++) b += (uint64_t)o->D[k] * o->d[k] * sizeof(float);
    return b;
}

static double result_error(const lq_store_result *r, const char *measure) {
    if (!strcmp(measure, "relative")) return r->rel_error;
    double out = r->rel_error * r->out_energy;
    if (!strcmp(measure, "stream")) return r->stream_energy > 0 ? out / r->stream_energy : out;
    return out;
}

typedef struct {
    uint64_t budget, fixed, kv, reserve, capacity;
    lq_mckp_solution sol;
    lq_store_result *rows;   /* n_tensors × n_configs, in config order */
    uint64_t weights;        /* Σ OC·IC of the decoder linears */
} solved;

static lq_status solve(coordinator *co, solved *sv) {
    const options *o = co->o;
    int nt = co->n_tensors, nc = o->n_configs;
    memset(sv, 0, sizeof *sv);
    lq_store_result *all = NULL;
    size_t n_all = 0;
    lq_status st = lq_store_results(co->store, co->run_id, &all, &n_all);
    if (st) return st;
    sv->rows = calloc((size_t)nt * nc, sizeof *sv->rows);
    uint64_t *bytes = calloc((size_t)nt * nc, sizeof *bytes);
    double *err = calloc((size_t)nt * nc, sizeof *err);
    const uint64_t **bp = calloc((size_t)nt, sizeof *bp);
    const double **ep = calloc((size_t)nt, sizeof *ep);
    int *nch = calloc((size_t)nt, sizeof *nch);
    uint8_t *have = calloc((size_t)nt * nc, 1);
    if (!sv->rows || !bytes || !err || !bp || !ep || !nch || !have) {
        st = lq_fail(LQ_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_all; i++) {
        int k = config_index(o, all[i].config);
        if (k < 0 || all[i].tensor < 0 || all[i].tensor >= nt) continue;
        size_t at = (size_t)all[i].tensor * nc + k;
        sv->rows[at] = all[i];
        bytes[at] = all[i].code_bytes + all[i].side_bytes;
        err[at] = result_error(&all[i], o->measure);
        have[at] = 1;
    }
    for (int t = 0; t < nt; t++) {
        for (int k = 0; k < nc; k++)
            if (!have[(size_t)t * nc + k]) {
                st = lq_fail(LQ_ERR_INTERNAL, "store %s: run %lld has no result for tensor %d at %s",
                             lq_store_path(co->store), (long long)co->run_id, t, o->config_name[k]);
                goto done;
            }
        bp[t] = bytes + (size_t)t * nc, ep[t] = err + (size_t)t * nc, nch[t] = nc;
        const lq_linear *lin = lq_layer_linear(&co->model->layers[t / N_LINEARS], t % N_LINEARS);
        sv->weights += (uint64_t)lin->out_features * lin->in_features;
    }
    sv->fixed = lq_quantized_fixed_bytes(co->model, o->D, o->d, nc);
    sv->kv = co->kv, sv->reserve = co->reserve, sv->budget = co->budget;
    if (o->budget) {
        uint64_t overhead = sv->fixed + sv->kv + sv->reserve;
        sv->capacity = sv->budget > overhead ? sv->budget - overhead : 0;
    } else {
        /* bits per weight as lq-inspect counts them: the lattices stored with the linears
         * included (all candidates', since which will be used is not known before solving) */
        uint64_t target = (uint64_t)floor(o->target_bits * (double)sv->weights / 8.0);
        uint64_t lattices = candidate_lattice_bytes(o);
        sv->capacity = target > lattices ? target - lattices : 0;
    }
    lq_mckp problem = {.n_items = nt, .n_choices = nch, .bytes = bp, .error = ep};
    st = lq_mckp_solve(&problem, sv->capacity, &sv->sol);
    if (st == LQ_ERR_RANGE) {
        char need[96];
        if (o->budget) {
            lq_size_format(sv->sol.min_feasible + sv->fixed + sv->kv + sv->reserve, need, sizeof need);
            st = lq_fail(LQ_ERR_RANGE, "--budget %s is infeasible: the smallest feasible budget is %s "
                         "(quantized linears at their smallest config, plus embeddings, norms, head "
                         "and KV cache for --ctx %ld --batch %ld --kv-dtype %s, plus --reserve)",
                         o->budget, need, o->ctx, o->batch, o->kv_dtype);
        } else {
            uint64_t lattices = candidate_lattice_bytes(o);
            st = lq_fail(LQ_ERR_RANGE, "--target-bits %g is infeasible: the smallest feasible is %.4f "
                         "bits per weight (codes, side data and the candidates' lattices)",
                         o->target_bits,
                         8.0 * (double)(sv->sol.min_feasible + lattices) / (double)sv->weights);
        }
    }
done:
    free(all), free(bytes), free(err), free(bp), free(ep), free(nch), free(have);
    return st;
}

static void solved_free(solved *sv) {
    lq_mckp_solution_free(&sv->sol);
    free(sv->rows);
}

static lq_status assemble(coordinator *co, solved *sv) {
    const options *o = co->o;
    const lq_model_config *c = &co->model->cfg;
    int nc = o->n_configs;
    json_t *x = json_object(), *report = json_object();
    lq_status st = (x && report) ? LQ_OK : lq_fail(LQ_ERR_NOMEM, "out of memory");
    for (int t = 0; t < co->n_tensors && !st; t++) {
        const lq_store_result *r = &sv->rows[(size_t)t * nc + sv->sol.choice[t]];
        char module[96], path[8192];
        lq_linear_name(t / N_LINEARS, t % N_LINEARS, module, sizeof module);
        snprintf(path, sizeof path, "%s/%s", co->store_dir, r->blob);
        uint64_t sum = 0;
        lq_linear *lin = lq_layer_linear(&co->model->layers[t / N_LINEARS], t % N_LINEARS);
        uint64_t weights = (uint64_t)lin->out_features * lin->in_features;
        if ((st = lq_file_checksum(path, &sum))) break;
        if (sum != r->checksum) {
            st = lq_fail(LQ_ERR_FORMAT, "blob %s fails its checksum (the store says %016llx, the file "
                         "has %016llx): rerun the same command to measure it again", path,
                         (unsigned long long)r->checksum, (unsigned long long)sum);
            lq_store_delete_result(co->store, co->run_id, r->tensor, r->config);
            break;
        }
        if ((st = lq_linear_blob_load(path, module, c->has_qkv_bias && t % N_LINEARS < 3, lin))) break;
        uint64_t b = r->code_bytes + r->side_bytes;
        json_object_set_new(report, module,
                            json_pack("{s:s, s:f, s:I, s:f}", "config", r->config, "bits_per_weight",
                                      8.0 * (double)b / (double)weights, "bytes", (json_int_t)b,
                                      "relative_output_error", r->rel_error));
    }
    char *extra = NULL;
    if (!st) {
        json_object_set_new(x, "calibration",
                            json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "text", o->calib,
                                      "nsamples", (json_int_t)o->nsamples, "seqlen",
                                      (json_int_t)o->seqlen, "seed", (json_int_t)o->seed,
                                      "correction_steps", (json_int_t)o->steps, "propagate", "fp",
                                      "candidates", o->configs_text));
        json_object_set_new(x, "budget",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:f, s:f}", "budget_bytes",
                                      (json_int_t)sv->budget, "quantized_bytes",
                                      (json_int_t)sv->sol.used_bytes, "other_weight_bytes_max",
                                      (json_int_t)sv->fixed, "kv_cache_bytes", (json_int_t)sv->kv,
                                      "reserve_bytes", (json_int_t)sv->reserve, "measure", o->measure,
                                      "objective", sv->sol.objective, "lower_bound",
                                      sv->sol.lower_bound, "gap", sv->sol.gap));
        json_object_set_new(x, "report", report);
        report = NULL;
        extra = json_dumps(x, JSON_COMPACT);
        if (!extra) st = lq_fail(LQ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = lq_quantized_save(co->model, o->out, extra);
    free(extra);
    json_decref(x);
    json_decref(report);
    return st;
}

static void print_report(coordinator *co, const solved *sv, uint64_t file_bytes) {
    const options *o = co->o;
    int nc = o->n_configs, count[MAX_CONFIGS] = {0};
    printf("%-44s %-7s %10s %12s %12s\n", "tensor", "config", "bits/w", "bytes", "rel. error");
    for (int t = 0; t < co->n_tensors; t++) {
        const lq_store_result *r = &sv->rows[(size_t)t * nc + sv->sol.choice[t]];
        const lq_linear *lin = lq_layer_linear(&co->model->layers[t / N_LINEARS], t % N_LINEARS);
        char module[96];
        lq_linear_name(t / N_LINEARS, t % N_LINEARS, module, sizeof module);
        uint64_t b = r->code_bytes + r->side_bytes;
        printf("%-44s %-7s %10.4f %12llu %12.6f\n", module, r->config,
               8.0 * (double)b / ((double)lin->out_features * lin->in_features), (unsigned long long)b,
               r->rel_error);
        count[sv->sol.choice[t]]++;
    }
    char s1[96], s2[96], s3[96], s4[96];
    printf("configs chosen:");
    for (int k = 0; k < nc; k++) printf(" %s×%d", o->config_name[k], count[k]);
    printf("\n");
    lq_size_format(sv->sol.used_bytes, s1, sizeof s1);
    printf("quantized linears: %s, %.4f bits per weight incl. side data\n", s1,
           8.0 * (double)sv->sol.used_bytes / (double)sv->weights);
    lq_size_format(file_bytes, s2, sizeof s2);
    lq_size_format(sv->kv, s3, sizeof s3);
    lq_size_format(sv->reserve, s4, sizeof s4);
    printf("model.safetensors: %s; KV cache: %s; reserve: %s\n", s2, s3, s4);
    if (o->budget) {
        char sb[96], st[96];
        lq_size_format(sv->budget, sb, sizeof sb);
        lq_size_format(file_bytes + sv->kv + sv->reserve, st, sizeof st);
        printf("total %s of budget %s\n", st, sb);
    }
    printf("solver (%s error): objective %.6g, lower bound %.6g, gap %.3g (%.4f%%)%s\n", o->measure,
           sv->sol.objective, sv->sol.lower_bound, sv->sol.gap,
           sv->sol.objective > 0 ? 100.0 * sv->sol.gap / sv->sol.objective : 0.0,
           sv->sol.gap == 0.0 ? ", optimal" : "");
}

/* The held-out check: OUT loaded back as the runtime loads it, scored as lq-eval ppl scores. */
static lq_status check_perplexity(const options *o, double *ppl) {
    lq_model *q = NULL;
    lq_status st = lq_load_any_model(o->out, NULL, &q);
    if (st) return st;
    lq_ppl_options po;
    lq_ppl_options_default(&po);
    po.ctx = (int)o->eval_ctx, po.max_windows = o->eval_windows;
    po.text_flag = "--eval-text", po.ctx_flag = "--eval-ctx";
    lq_ppl_result r;
    st = lq_perplexity(q, o->eval_text, &po, &r);
    if (!st) *ppl = r.ppl;
    if (!st)
        printf("perplexity on %s: %.4f (ctx %d, %zu of %zu windows, %zu tokens, %.1f s)\n",
               o->eval_text, r.ppl, r.ctx, r.windows, r.windows_total, r.tokens, r.seconds);
    lq_model_free(q);
    return st;
}

static lq_status finish(coordinator *co) {
    const options *o = co->o;
    solved sv;
    double t0 = lq_seconds();
    lq_status st = solve(co, &sv);
    if (st) {
        solved_free(&sv);
        return st;
    }
    double t_solve = lq_seconds() - t0;
    lq_progress_event ev;
    progress_event(co, LQ_STAGE_SOLVE, &ev);
    ev.budget_bytes = (int64_t)sv.capacity;
    lq_progress_publish(co->progress, &ev);
    if ((st = assemble(co, &sv))) {
        solved_free(&sv);
        return st;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", o->out);
    struct stat sb;
    uint64_t file_bytes = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    progress_event(co, LQ_STAGE_ASSEMBLE, &ev);
    ev.bytes = (int64_t)file_bytes;
    snprintf(ev.out, sizeof ev.out, "%s", o->out);
    lq_progress_publish(co->progress, &ev);
    print_report(co, &sv, file_bytes);
    if (o->budget && file_bytes + sv.kv + sv.reserve > sv.budget)
        st = lq_fail(LQ_ERR_INTERNAL, "%s holds %llu bytes, over the budget's room for weights: the "
                     "size accounting is wrong (a bug)", path, (unsigned long long)file_bytes);
    const char **configs = calloc((size_t)co->n_tensors, sizeof *configs);
    if (!st && !configs) st = lq_fail(LQ_ERR_NOMEM, "out of memory");
    for (int t = 0; !st && t < co->n_tensors; t++) configs[t] = o->config_name[sv.sol.choice[t]];
    lq_store_solve_info info = {.budget_bytes = o->budget ? sv.budget : sv.capacity,
                                .used_bytes = sv.sol.used_bytes, .measure = o->measure,
                                .objective = sv.sol.objective, .lower_bound = sv.sol.lower_bound,
                                .out_path = o->out};
    if (!st) st = lq_store_put_assignment(co->store, co->run_id, &info, configs, co->n_tensors);
    free(configs);
    if (!st)
        fprintf(stderr, TOOL ": wrote %s (solve %.2f s, assemble %.2f s)\n", o->out, t_solve,
                lq_seconds() - t0 - t_solve);
    solved_free(&sv);
    double ppl = -1;
    if (!st && o->eval_text) {
        progress_event(co, LQ_STAGE_EVAL, &ev);
        snprintf(ev.out, sizeof ev.out, "%s", o->out);
        lq_progress_publish(co->progress, &ev);
        st = check_perplexity(o, &ppl);
    }
    if (!st) {
        progress_event(co, LQ_STAGE_DONE, &ev);
        ev.bytes = (int64_t)file_bytes, ev.perplexity = ppl;
        snprintf(ev.out, sizeof ev.out, "%s", o->out);
        lq_progress_publish(co->progress, &ev);
    }
    return st;
}

/* ---- main -------------------------------------------------------------------------------------- */
/* The last event of a failed job: rendered on stderr like every event ("failed after N s: the
 * error") and published for watchers; printed plainly when progress itself could not start. */
static void fail_job(coordinator *co) {
    if (!co->progress) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        return;
    }
    lq_progress_event ev;
    progress_event(co, LQ_STAGE_FAILED, &ev);
    snprintf(ev.message, sizeof ev.message, "%s", lq_last_error());
    lq_progress_publish(co->progress, &ev);
}

static lq_status prepare(coordinator *co, plan_header *plan) {
    const options *o = co->o;
    lq_status st = check_paths(o);
    if (!st) st = lq_load_any_model(o->model, o->tokenizer, &co->model);
    /* the budget's arithmetic too, before any measuring */
    const lq_model_config *c = st ? NULL : &co->model->cfg;
    if (!st && (st = lq_kv_cache_bytes(c->n_layers, c->n_kv_heads, c->head_dim, o->ctx, o->batch,
                                       o->kv_dtype, &co->kv)))
        st = lq_fail_context(st, "--kv-dtype %s --ctx %ld --batch %ld", o->kv_dtype, o->ctx, o->batch);
    if (!st) st = lq_size_parse(o->reserve, "--reserve", &co->reserve);
    if (!st && o->budget) st = lq_size_parse(o->budget, "--budget", &co->budget);
    if (!st) st = open_run(co);
    if (!st) st = find_done(co, &plan->todo);
    if (st) return st;
    plan->n_layers = co->model->cfg.n_layers;
    plan->run_id = co->run_id;
    char dir[4096 + 64];
    snprintf(dir, sizeof dir, "%s/blobs/run%lld", co->store_dir, (long long)co->run_id);
    if ((st = lq_make_dirs(dir))) return st;
    if (!realpath(dir, plan->blob_dir)) return lq_fail(LQ_ERR_IO, "%s: %s", dir, strerror(errno));
    return LQ_OK;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    options o;
    /* every rank parses the same argv and so reaches the same verdict; only rank 0 says it */
    int saved_stderr = -1;
    if (g_rank != 0) {
        saved_stderr = dup(2);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2), close(null);
    }
    int rc = parse_args(argc, argv, &o);
    if (saved_stderr >= 0) dup2(saved_stderr, 2), close(saved_stderr);
    if (rc != 0) {
        if (rc < 0 && g_rank == 0) usage(stdout);
        MPI_Finalize();
        return rc < 0 ? 0 : rc;
    }

    lattice_set ls;
    lq_status st = lattice_set_load(&o, &ls);
    int lattice_ok = st == LQ_OK, all_ok = 0;
    MPI_Allreduce(&lattice_ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!all_ok) {
        if (g_rank == 0) fprintf(stderr, TOOL ": %s\n", st ? lq_last_error() : "a rank could not load the lattices");
        lattice_set_free(&ls);
        MPI_Finalize();
        return 2;
    }

    coordinator co;
    memset(&co, 0, sizeof co);
    co.o = &o;
    co.t_job = lq_seconds();
    const char *stop = getenv("LQ_CALIBRATE_STOP_AFTER");
    co.stop_after = stop ? atoi(stop) : 0;
    plan_header plan;
    memset(&plan, 0, sizeof plan);
    if (g_rank == 0) {
        int bar = !strcmp(o.bar, "on") || (!strcmp(o.bar, "auto") && isatty(2));
        st = lq_progress_open(o.progress, o.progress_remote, stderr, bar, TOOL, &co.progress);
        if (!st) st = prepare(&co, &plan);
        if (st) {
            fail_job(&co);
            plan.status = 1;
        } else {
            co.todo = plan.todo;
            lq_progress_event ev;
            progress_event(&co, LQ_STAGE_PREPARE, &ev);
            lq_progress_publish(co.progress, &ev);
        }
    }
    MPI_Bcast(&plan, sizeof plan, MPI_BYTE, 0, MPI_COMM_WORLD);
    rc = plan.status;
    uint8_t *done = NULL;
    int n_workers = g_size == 1 ? 1 : g_size - 1;
    if (!rc && plan.todo > 0) {
        size_t n_done = (size_t)N_LINEARS * plan.n_layers * o.n_configs;
        done = g_rank == 0 ? co.done : malloc(n_done);
        if (!done) MPI_Abort(MPI_COMM_WORLD, 1);
        MPI_Bcast(done, (int)n_done, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (g_rank == 0) {
            fprintf(stderr, TOOL ": %lld results to measure on %d worker(s)\n",
                    (long long)plan.todo, n_workers);
            co.t_start = lq_seconds();
        }
        /* the workers: rank 0 alone with -n 1, else ranks 1..N-1 in rank order */
        int all_reported = 1;   /* with -n 1, rank 0 is the only worker */
        MPI_Comm workers = MPI_COMM_NULL;
        MPI_Comm_split(MPI_COMM_WORLD, g_size == 1 || g_rank > 0 ? 0 : MPI_UNDEFINED, g_rank, &workers);
        if (g_size == 1) {
            st = run_worker(&o, &ls, &plan, done, workers, &co);
        } else if (g_rank == 0) {
            st = receive_results(&co, n_workers, &all_reported);
        } else {
            st = run_worker(&o, &ls, &plan, done, workers, NULL);
            if (st) {
                char text[2048];
                snprintf(text, sizeof text, "%s", lq_last_error());
                MPI_Send(text, sizeof text, MPI_CHAR, 0, TAG_ERROR, MPI_COMM_WORLD);
            } else {
                MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_DONE, MPI_COMM_WORLD);
            }
        }
        if (workers != MPI_COMM_NULL) MPI_Comm_free(&workers);
        if (g_rank == 0 && st) {
            /* a worker's failure (or the store's) ends the job; rerunning resumes. A worker
             * that did not report may be blocked on a dead peer, and only an abort frees it. */
            fail_job(&co);
            if (!all_reported) {
                lq_progress_close(co.progress);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            rc = 1;
        }
    }
    if (!rc && g_rank == 0) {
        st = finish(&co);
        if (st) {
            fail_job(&co);
            rc = 1;
        }
    }
    if (g_rank != 0) free(done);
    if (g_rank == 0) {
        free(co.done);
        lq_model_free(co.model);
        lq_store_close(co.store);
        lq_progress_close(co.progress);
    }
    lattice_set_free(&ls);
    MPI_Finalize();
    return rc;
}
