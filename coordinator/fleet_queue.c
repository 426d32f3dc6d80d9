/* lqd's job queue (lq_fleet.h, schemas/fleet.sql): SQLite in WAL mode with synchronous=FULL,
 * one BEGIN IMMEDIATE transaction per state change, plus the files a job is judged by (the
 * fingerprint) and the key files CurveZMQ reads.
 *
 * Why FULL rather than the store's NORMAL: the store can lose its last results to a power cut
 * and simply recompute them, but a lost "running, launch 2" commit would make lqd launch the
 * job again, and the point of the queue is that a job is never run twice.
 *
 * Statements are prepared per call: lqd makes a few queue calls a second at most, and the
 * simplicity is worth more than the microseconds. */
#include "lq_fleet.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "lq_fleet_sql.h"   /* generated from schemas/fleet.sql: lq_fleet_sql, LQ_FLEET_SCHEMA_VERSION */

#define LQ_FLEET_BUSY_TIMEOUT_MS 10000
#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

struct lq_fleet_queue {
    sqlite3 *db;
    char path[];
};

static const char *const state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *lq_job_state_name(lq_job_state s) {
    return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

static int state_from_name(const char *name) {
    for (int i = 0; i < (int)(sizeof state_names / sizeof *state_names); i++)
        if (name && !strcmp(name, state_names[i])) return i;
    return -1;
}

static lq_status db_fail(const lq_fleet_queue *q, const char *what) {
    return lq_fail(LQ_ERR_IO, "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
}

static lq_status exec_sql(lq_fleet_queue *q, const char *sql, const char *what) {
    return sqlite3_exec(q->db, sql, NULL, NULL, NULL) == SQLITE_OK ? LQ_OK : db_fail(q, what);
}

/* One statement with text/integer parameters given as a format: 't' text (NULL → NULL),
 * 'i' int64. Runs it to completion (no rows expected); *changes receives sqlite3_changes. */
static lq_status run_stmt(lq_fleet_queue *q, const char *what, int *changes, const char *sql,
                          const char *types, ...) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(q, what);
    va_list ap;
    va_start(ap, types);
    int rc = SQLITE_OK;
    for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
        if (types[i] == 't') {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i + 1);
        } else {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        }
    }
    va_end(ap);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    lq_status status = rc == SQLITE_DONE ? LQ_OK : db_fail(q, what);
    if (changes) *changes = sqlite3_changes(q->db);
    sqlite3_finalize(st);
    return status;
}

static lq_status begin(lq_fleet_queue *q, const char *what) {
    return exec_sql(q, "BEGIN IMMEDIATE", what);
}
static lq_status commit(lq_fleet_queue *q, const char *what) {
    return exec_sql(q, "COMMIT", what);
}
static lq_status rollback(lq_fleet_queue *q, lq_status status) {
    if (!sqlite3_get_autocommit(q->db)) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return status;
}

static lq_status ensure_schema(lq_fleet_queue *q) {
    lq_status st = begin(q, "starting the schema transaction");
    if (st) return st;
    sqlite3_stmt *s = NULL;
    long version = -1, tables = 0;
    if (sqlite3_prepare_v2(q->db, "SELECT (SELECT user_version FROM pragma_user_version),"
                                  " (SELECT count(*) FROM sqlite_schema WHERE type = 'table')",
                           -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        version = sqlite3_column_int(s, 0);
        tables = sqlite3_column_int(s, 1);
    }
    sqlite3_finalize(s);
    if (version < 0) st = db_fail(q, "reading the schema version");
    else if (version == 0 && tables > 0)
        st = lq_fail(LQ_ERR_FORMAT, "%s: a SQLite database with %ld tables but no fleet schema "
                     "version: not an lqd queue", q->path, tables);
    else if (version != 0 && version != LQ_FLEET_SCHEMA_VERSION)
        st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: fleet queue schema version %ld (this build knows "
                     "version %d)", q->path, version, LQ_FLEET_SCHEMA_VERSION);
    if (!st) st = exec_sql(q, lq_fleet_sql, "creating the schema (schemas/fleet.sql)");
    if (!st) st = commit(q, "committing the schema");
    return st ? rollback(q, st) : LQ_OK;
}

lq_status lq_fleet_queue_open(const char *path, lq_fleet_queue **out) {
    *out = NULL;
    size_t n = strlen(path) + 1;
    lq_fleet_queue *q = calloc(1, sizeof *q + n);
    if (!q) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    memcpy(q->path, path, n);
    lq_status st = LQ_OK;
    if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        st = q->db ? db_fail(q, "opening the fleet queue")
                   : lq_fail(LQ_ERR_NOMEM, "%s: out of memory opening the fleet queue", path);
    if (!st && sqlite3_busy_timeout(q->db, LQ_FLEET_BUSY_TIMEOUT_MS) != SQLITE_OK)
        st = db_fail(q, "setting the busy timeout");
    if (!st) st = exec_sql(q, "PRAGMA journal_mode = WAL", "switching to WAL mode (is it a SQLite file?)");
    if (!st) st = exec_sql(q, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "configuring");
    if (!st) st = ensure_schema(q);
    if (st) {
        lq_fleet_queue_close(q);
        return st;
    }
    *out = q;
    return LQ_OK;
}

void lq_fleet_queue_close(lq_fleet_queue *q) {
    if (!q) return;
    sqlite3_close(q->db);
    free(q);
}

lq_status lq_fleet_queue_event(lq_fleet_queue *q, int64_t job, const char *event, const char *detail) {
    return run_stmt(q, "recording an event", NULL,
                    "INSERT INTO events (job, event, detail) VALUES (?1, ?2, ?3)", "itt", job, event,
                    detail);
}

lq_status lq_fleet_queue_add(lq_fleet_queue *q, const lq_job *j, int64_t *id) {
    lq_status st = begin(q, "adding a job");
    if (!st)
        st = run_stmt(q, "adding a job", NULL,
                      "INSERT INTO jobs (state, model, tokenizer, budget, out, db, args, fingerprint,"
                      " launcher) VALUES ('queued', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                      "tttttttt", j->model, j->tokenizer, j->budget, j->out, j->db,
                      j->args_json ? j->args_json : "[]", j->fingerprint, j->launcher);
    if (!st) {
        *id = sqlite3_last_insert_rowid(q->db);
        st = lq_fleet_queue_event(q, *id, "submit", NULL);
    }
    if (!st) st = commit(q, "adding a job");
    return st ? rollback(q, st) : LQ_OK;
}

static char *col_text(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t) return NULL;
    size_t n = strlen((const char *)t) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, t, n);
    return d;
}

#define JOB_COLUMNS "id, state, model, tokenizer, budget, out, db, args, fingerprint, launcher," \
                    " pid, slurm_id, launches, exit_code, message, submitted, started, finished"

static void read_job(sqlite3_stmt *s, lq_job *j) {
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(s, 0);
    int state = state_from_name((const char *)sqlite3_column_text(s, 1));
    j->state = state < 0 ? LQ_JOB_FAILED : (lq_job_state)state;
    j->model = col_text(s, 2);
    j->tokenizer = col_text(s, 3);
    j->budget = col_text(s, 4);
    j->out = col_text(s, 5);
    j->db = col_text(s, 6);
    j->args_json = col_text(s, 7);
    j->fingerprint = col_text(s, 8);
    j->launcher = col_text(s, 9);
    j->pid = sqlite3_column_int64(s, 10);
    j->slurm_id = col_text(s, 11);
    j->launches = sqlite3_column_int64(s, 12);
    j->exit_code = sqlite3_column_type(s, 13) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 13);
    j->message = col_text(s, 14);
    j->submitted = col_text(s, 15);
    j->started = col_text(s, 16);
    j->finished = col_text(s, 17);
}

void lq_job_free(lq_job *j) {
    if (!j) return;
    char *fields[] = {j->model, j->tokenizer, j->budget, j->out, j->db, j->args_json,
                      j->fingerprint, j->launcher, j->slurm_id, j->message, j->submitted,
                      j->started, j->finished};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) free(fields[i]);
    memset(j, 0, sizeof *j);
}

void lq_jobs_free(lq_job *jobs, size_t n) {
    for (size_t i = 0; jobs && i < n; i++) lq_job_free(&jobs[i]);
    free(jobs);
}

/* Every row of a job query into a malloc'ed array. */
static lq_status query_jobs(lq_fleet_queue *q, const char *sql, const char *what, int has_int,
                            int64_t int_param, const char *text_param, lq_job **out, size_t *n) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK) return db_fail(q, what);
    int rc = SQLITE_OK;
    if (has_int) rc = sqlite3_bind_int64(s, 1, int_param);
    if (rc == SQLITE_OK && text_param) rc = sqlite3_bind_text(s, 1, text_param, -1, SQLITE_TRANSIENT);
    lq_job *jobs = NULL;
    size_t count = 0, cap = 0;
    lq_status st = LQ_OK;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? 2 * cap : 8;
            lq_job *grown = realloc(jobs, cap * sizeof *grown);
            if (!grown) {
                st = lq_fail(LQ_ERR_NOMEM, "%s: %s: out of memory", q->path, what);
                break;
            }
            jobs = grown;
        }
        read_job(s, &jobs[count++]);
        rc = SQLITE_OK;
    }
    if (!st && rc != SQLITE_DONE) st = db_fail(q, what);
    sqlite3_finalize(s);
    if (st) {
        lq_jobs_free(jobs, count);
        return st;
    }
    *out = jobs;
    *n = count;
    return LQ_OK;
}

lq_status lq_fleet_queue_get(lq_fleet_queue *q, int64_t id, lq_job *out) {
    lq_job *jobs;
    size_t n;
    lq_status st = query_jobs(q, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1", "reading a job",
                              1, id, NULL, &jobs, &n);
    if (st) return st;
    if (n == 0) {
        free(jobs);
        return lq_fail(LQ_ERR_NOT_FOUND, "job %lld: no such job", (long long)id);
    }
    *out = jobs[0];
    free(jobs);
    return LQ_OK;
}

lq_status lq_fleet_queue_list(lq_fleet_queue *q, int state_filter, lq_job **out, size_t *n) {
    if (state_filter < 0)
        return query_jobs(q, "SELECT " JOB_COLUMNS " FROM jobs ORDER BY id", "listing jobs", 0, 0,
                          NULL, out, n);
    return query_jobs(q, "SELECT " JOB_COLUMNS " FROM jobs WHERE state = ?1 ORDER BY id",
                      "listing jobs", 0, 0, lq_job_state_name((lq_job_state)state_filter), out, n);
}

lq_status lq_fleet_queue_last_done(lq_fleet_queue *q, const char *out_dir, lq_job *job, int *found) {
    lq_job *jobs;
    size_t n;
    lq_status st = query_jobs(q, "SELECT " JOB_COLUMNS " FROM jobs WHERE out = ?1 AND state = 'done'"
                              " ORDER BY id DESC LIMIT 1", "finding the last done job", 0, 0,
                              out_dir, &jobs, &n);
    if (st) return st;
    *found = n > 0;
    if (n) *job = jobs[0];
    free(jobs);
    return LQ_OK;
}

lq_status lq_fleet_queue_mark_launching(lq_fleet_queue *q, int64_t id, int64_t *launch) {
    int changes = 0;
    lq_status st = begin(q, "marking a job running");
    if (!st)
        st = run_stmt(q, "marking a job running", &changes,
                      "UPDATE jobs SET state = 'running', launches = launches + 1, pid = NULL,"
                      " slurm_id = NULL, started = " NOW " WHERE id = ?1 AND state = 'queued'",
                      "i", id);
    if (!st && changes != 1)
        st = lq_fail(LQ_ERR_RANGE, "job %lld: not queued any more", (long long)id);
    sqlite3_stmt *s = NULL;
    if (!st) {
        if (sqlite3_prepare_v2(q->db, "SELECT launches FROM jobs WHERE id = ?1", -1, &s, NULL) == SQLITE_OK &&
            sqlite3_bind_int64(s, 1, id) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            *launch = sqlite3_column_int64(s, 0);
        else
            st = db_fail(q, "reading the launch count");
        sqlite3_finalize(s);
    }
    char detail[32];
    snprintf(detail, sizeof detail, "launch %lld", (long long)(st ? 0 : *launch));
    if (!st) st = lq_fleet_queue_event(q, id, "launch", detail);
    if (!st) st = commit(q, "marking a job running");
    return st ? rollback(q, st) : LQ_OK;
}

lq_status lq_fleet_queue_set_pid(lq_fleet_queue *q, int64_t id, int64_t pid) {
    return run_stmt(q, "recording a job's process", NULL,
                    "UPDATE jobs SET pid = ?2, launcher = 'local' WHERE id = ?1 AND state = 'running'", "ii", id, pid);
}

lq_status lq_fleet_queue_set_slurm(lq_fleet_queue *q, int64_t id, const char *slurm_id) {
    return run_stmt(q, "recording a job's Slurm id", NULL,
                    "UPDATE jobs SET slurm_id = ?2, launcher = 'slurm' WHERE id = ?1 AND state = 'running'", "it", id,
                    slurm_id);
}

lq_status lq_fleet_queue_finish(lq_fleet_queue *q, int64_t id, lq_job_state state, int64_t exit_code,
                                const char *message) {
    if (state != LQ_JOB_DONE && state != LQ_JOB_FAILED && state != LQ_JOB_CANCELLED)
        return lq_fail(LQ_ERR_ARG, "job %lld: %s is not a final state", (long long)id,
                       lq_job_state_name(state));
    int changes = 0;
    lq_status st = begin(q, "finishing a job");
    if (!st)
        st = run_stmt(q, "finishing a job", &changes,
                      "UPDATE jobs SET state = ?2, exit_code = ?3, message = ?4, finished = " NOW
                      " WHERE id = ?1 AND state IN ('queued', 'running')", "itit", id,
                      lq_job_state_name(state), exit_code, message);
    if (!st) {
        if (changes != 1) st = lq_fail(LQ_ERR_RANGE, "job %lld: already finished", (long long)id);
        /* a NULL exit code reads better than -1 in the shell */
        else if (exit_code < 0)
            st = run_stmt(q, "finishing a job", NULL, "UPDATE jobs SET exit_code = NULL WHERE id = ?1",
                          "i", id);
    }
    if (!st) st = lq_fleet_queue_event(q, id, lq_job_state_name(state), message);
    if (!st) st = commit(q, "finishing a job");
    return st ? rollback(q, st) : LQ_OK;
}

lq_status lq_fleet_queue_requeue(lq_fleet_queue *q, int64_t id, const char *why) {
    int changes = 0;
    lq_status st = begin(q, "requeueing a job");
    if (!st)
        st = run_stmt(q, "requeueing a job", &changes,
                      "UPDATE jobs SET state = 'queued', pid = NULL, slurm_id = NULL"
                      " WHERE id = ?1 AND state = 'running'", "i", id);
    if (!st && changes != 1) st = lq_fail(LQ_ERR_RANGE, "job %lld: not running", (long long)id);
    if (!st) st = lq_fleet_queue_event(q, id, "requeue", why);
    if (!st) st = commit(q, "requeueing a job");
    return st ? rollback(q, st) : LQ_OK;
}

/* ---- files: fingerprints and key files ----------------------------------------------------- */
typedef struct {
    char *text;
    size_t len, cap;
} buffer;

static int buf_add(buffer *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->text, cap);
        if (!grown) return 0;
        b->text = grown;
        b->cap = cap;
    }
    memcpy(b->text + b->len, data, n);
    b->len += n;
    return 1;
}

static int buf_file(buffer *b, const char *path, const struct stat *sb) {
    char line[128];
    int n = snprintf(line, sizeof line, "\n%lld %lld.%09ld\n", (long long)sb->st_size,
                     (long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
    return buf_add(b, path, strlen(path) + 1) && buf_add(b, line, (size_t)n);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* A model is a file or a directory (Hugging Face): each regular file in it counts, by name. */
static lq_status fingerprint_path(buffer *b, const char *path, const char *field) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lq_fail(LQ_ERR_NOT_FOUND, "%s %s: %s", field, path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return buf_file(b, path, &sb) ? LQ_OK : lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, by_name);
    if (n < 0) return lq_fail(LQ_ERR_IO, "%s %s: %s", field, path, strerror(errno));
    lq_status st = LQ_OK;
    for (int i = 0; i < n; i++) {
        char child[LQ_FLEET_MAX_PATH + 256];
        snprintf(child, sizeof child, "%s/%s", path, names[i]->d_name);
        struct stat cs;
        if (!st && stat(child, &cs) == 0 && S_ISREG(cs.st_mode) && !buf_file(b, child, &cs))
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        free(names[i]);
    }
    free(names);
    return st;
}

lq_status lq_fleet_fingerprint(const char *model, const char *tokenizer, const char *budget,
                               const char *const *args, int n_args, char out[17]) {
    buffer b = {0};
    lq_status st = fingerprint_path(&b, model, "model");
    if (!st && tokenizer) st = fingerprint_path(&b, tokenizer, "tokenizer");
    int ok = !st && buf_add(&b, "budget\n", 7) && buf_add(&b, budget, strlen(budget) + 1);
    for (int i = 0; ok && i < n_args; i++) ok = buf_add(&b, args[i], strlen(args[i]) + 1);
    if (!st && !ok) st = lq_fail(LQ_ERR_NOMEM, "fingerprint of %s: out of memory", model);
    if (!st) snprintf(out, 17, "%016llx", (unsigned long long)lq_checksum64(b.text, b.len));
    free(b.text);
    return st;
}

lq_status lq_fleet_key_load(const char *path, uint8_t key[32]) {
    FILE *f = fopen(path, "r");
    if (!f) return lq_fail(LQ_ERR_IO, "%s: %s", path, strerror(errno));
    char text[128];
    size_t n = fread(text, 1, sizeof text - 1, f);
    int too_long = fgetc(f) != EOF;
    fclose(f);
    text[n] = '\0';
    int has_nul = strlen(text) != n;
    char *start = text;
    while (*start == ' ' || *start == '\n' || *start == '\r' || *start == '\t') start++;
    size_t len = strlen(start);
    while (len && (start[len - 1] == ' ' || start[len - 1] == '\n' || start[len - 1] == '\r' ||
                   start[len - 1] == '\t'))
        start[--len] = '\0';
    if (too_long || has_nul || len != 40)
        return lq_fail(LQ_ERR_FORMAT, "%s: not a CurveZMQ key file (expected 40 Z85 characters)", path);
    if (!zmq_z85_decode(key, start))
        return lq_fail(LQ_ERR_FORMAT, "%s: not a CurveZMQ key file (the key is not valid Z85)", path);
    return LQ_OK;
}
