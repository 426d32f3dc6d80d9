/* The calibration store (lq_coord.h, schemas/store.sql): SQLite in WAL mode, one transaction
 * per write, prepared statements only.
 *
 * Why each write takes BEGIN IMMEDIATE rather than a plain BEGIN: a deferred transaction that
 * reads first and then writes can fail with SQLITE_BUSY at the write without the busy handler
 * being able to help (its snapshot is stale); taking the write lock up front makes a second
 * writer wait on the busy timeout (60 s unless the caller chose another) instead. The checks
 * a write depends on (is the tensor registered, does the row exist) run inside the same
 * transaction, so they cannot go stale.
 *
 * One lq_store is for one thread at a time; separate processes or threads open their own. */
#include "lq_coord.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_store_sql.h"   /* generated from schemas/store.sql: lq_store_sql, LQ_STORE_SCHEMA_VERSION */

/* long enough for a second writer's whole run of work between its commits */
#define LQ_STORE_DEFAULT_BUSY_TIMEOUT_MS 60000

#define LQ_STORE_NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
    ST_RUN_FIND, ST_RUN_INSERT, ST_RUN_EXISTS,
    ST_TENSOR_FIND, ST_TENSOR_BY_NAME, ST_TENSOR_INSERT, ST_TENSOR_COUNT,
    ST_RESULT_PUT, ST_RESULTS, ST_RESULT_DELETE,
    ST_ASSIGN_CLEAR, ST_SOLVE_PUT, ST_ASSIGN_PUT,
    ST_COUNT
};

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_RUN_FIND] = "SELECT id FROM runs WHERE key = ?1",
    [ST_RUN_INSERT] = "INSERT INTO runs (key, model, settings) VALUES (?1, ?2, ?3)",
    [ST_RUN_EXISTS] = "SELECT 1 FROM runs WHERE id = ?1",
    [ST_TENSOR_FIND] = "SELECT name, layer, out_features, in_features FROM tensors"
                       " WHERE run = ?1 AND tensor = ?2",
    [ST_TENSOR_BY_NAME] = "SELECT tensor FROM tensors WHERE run = ?1 AND name = ?2",
    [ST_TENSOR_INSERT] = "INSERT INTO tensors (run, tensor, name, layer, out_features, in_features)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_TENSOR_COUNT] = "SELECT count(*) FROM tensors WHERE run = ?1",
    [ST_RESULT_PUT] =
        "INSERT INTO results (run, tensor, config, rel_error, out_energy, stream_energy,"
        " code_bytes, side_bytes, seconds, host, blob, checksum)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT (run, tensor, config) DO UPDATE SET"
        " rel_error = excluded.rel_error, out_energy = excluded.out_energy,"
        " stream_energy = excluded.stream_energy, code_bytes = excluded.code_bytes,"
        " side_bytes = excluded.side_bytes, seconds = excluded.seconds, host = excluded.host,"
        " blob = excluded.blob, checksum = excluded.checksum, created = " LQ_STORE_NOW,
    [ST_RESULTS] = "SELECT tensor, config, rel_error, out_energy, stream_energy, code_bytes,"
                   " side_bytes, seconds, host, blob, checksum FROM results WHERE run = ?1"
                   " ORDER BY tensor, config",
    [ST_RESULT_DELETE] = "DELETE FROM results WHERE run = ?1 AND tensor = ?2 AND config = ?3",
    [ST_ASSIGN_CLEAR] = "DELETE FROM assignments WHERE run = ?1 AND budget_bytes = ?2"
                        " AND measure = ?3",
    [ST_SOLVE_PUT] =
        "INSERT INTO solves (run, budget_bytes, measure, used_bytes, objective, lower_bound,"
        " out_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT (run, budget_bytes, measure) DO UPDATE SET"
        " used_bytes = excluded.used_bytes, objective = excluded.objective,"
        " lower_bound = excluded.lower_bound, out_path = excluded.out_path,"
        " created = " LQ_STORE_NOW,
    /* the SELECT … WHERE EXISTS inserts nothing when the chosen config has no result, which
     * the caller turns into an error naming the tensor and config */
    [ST_ASSIGN_PUT] =
        "INSERT INTO assignments (run, budget_bytes, measure, tensor, config)"
        " SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS"
        " (SELECT 1 FROM results WHERE run = ?1 AND tensor = ?4 AND config = ?5)",
};

struct lq_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int busy_timeout_ms;     /* for messages: how long a write waited before giving up */
    char path[];
};

/* ---- errors ---------------------------------------------------------------------------- */
static lq_status status_of(int rc) {
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return LQ_ERR_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return LQ_ERR_FORMAT;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE: return LQ_ERR_ARG;
    case SQLITE_MISUSE:
    case SQLITE_INTERNAL: return LQ_ERR_INTERNAL;
    default: return LQ_ERR_IO;   /* BUSY, LOCKED, IOERR, CANTOPEN, FULL, READONLY, … */
    }
}

/* "PATH: <what>: <SQLite's message>", with errno's text where the OS refused something */
static lq_status db_fail(const lq_store *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lq_status db_fail(const lq_store *s, int rc, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    int os_errno = s->db ? sqlite3_system_errno(s->db) : 0;
    int primary = rc & 0xff;
    if (primary == SQLITE_NOTADB)
        return lq_fail(LQ_ERR_FORMAT, "%s: %s: not a SQLite database, so not a liftquant store (%s)",
                       s->path, what, msg);
    /* the two a running job meets from outside, each with what to do about it; every
     * committed result survives both, so the answer is always to rerun */
    if (primary == SQLITE_BUSY)
        return lq_fail(status_of(rc), "%s: %s: %s: another process held the store's write lock "
                       "longer than the %.3g s busy timeout; committed results are kept, rerun "
                       "when it is done", s->path, what, msg, s->busy_timeout_ms / 1000.0);
    if (primary == SQLITE_FULL)
        return lq_fail(status_of(rc), "%s: %s: %s%s%s: no space left for the store (or its -wal "
                       "file); committed results are kept, free space and rerun", s->path, what,
                       msg, os_errno ? ", " : "", os_errno ? strerror(os_errno) : "");
    if (os_errno && (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR ||
                     primary == SQLITE_READONLY))
        return lq_fail(status_of(rc), "%s: %s: %s (%s)", s->path, what, msg, strerror(os_errno));
    return lq_fail(status_of(rc), "%s: %s: %s", s->path, what, msg);
}

/* ---- statements ------------------------------------------------------------------------ */
/* Binders that do nothing once one has failed, so a statement's bindings read as a list and
 * are checked once. */
static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc) {
    if (*rc == SQLITE_OK) *rc = sqlite3_bind_int64(st, i, v);
}
static void bind_u64(sqlite3_stmt *st, int i, uint64_t v, int *rc) {
    int64_t bits;   /* the bit pattern, so a checksum with the top bit set reads back exactly */
    memcpy(&bits, &v, sizeof bits);
    bind_i64(st, i, bits, rc);
}
static void bind_double(sqlite3_stmt *st, int i, double v, int *rc) {
    if (*rc == SQLITE_OK) *rc = sqlite3_bind_double(st, i, v);
}
static void bind_text(sqlite3_stmt *st, int i, const char *v, int *rc) {
    if (*rc == SQLITE_OK) *rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}
static uint64_t column_u64(sqlite3_stmt *st, int i) {
    int64_t bits = sqlite3_column_int64(st, i);
    uint64_t v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Leaves a statement ready for its next use and drops pointers to the caller's strings. */
static void done_with(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement expected to return no rows; `what` names the operation in the error. */
static lq_status exec_stmt(lq_store *s, int id, int bind_rc, const char *what) {
    sqlite3_stmt *st = s->stmt[id];
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(st) : bind_rc;
    lq_status status = LQ_OK;
    if (rc != SQLITE_DONE) status = db_fail(s, rc, "%s", what);
    done_with(st);
    return status;
}

/* Steps a query for at most one row: *found says whether there was one. The statement is left
 * positioned on it; the caller reads the columns and then calls done_with(). */
static lq_status query_row(lq_store *s, int id, int bind_rc, const char *what, int *found) {
    sqlite3_stmt *st = s->stmt[id];
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(st) : bind_rc;
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return LQ_OK;
    lq_status status = db_fail(s, rc, "%s", what);
    done_with(st);
    return status;
}

/* ---- transactions ---------------------------------------------------------------------- */
static lq_status begin_write(lq_store *s, const char *what) {
    int rc = sqlite3_step(s->stmt[ST_BEGIN]);
    lq_status status = LQ_OK;
    if (rc != SQLITE_DONE) status = db_fail(s, rc, "%s: starting the write transaction", what);
    done_with(s->stmt[ST_BEGIN]);
    return status;
}

static lq_status commit_write(lq_store *s, const char *what) {
    int rc = sqlite3_step(s->stmt[ST_COMMIT]);
    lq_status status = LQ_OK;
    if (rc != SQLITE_DONE) status = db_fail(s, rc, "%s: committing", what);
    done_with(s->stmt[ST_COMMIT]);
    return status;
}

/* After a failure whose message is already recorded: undo, keeping that message. SQLite has
 * already rolled back by itself after some errors (disk full, I/O), hence the autocommit check. */
static lq_status abandon_write(lq_store *s, lq_status status) {
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->stmt[ST_ROLLBACK]);
        done_with(s->stmt[ST_ROLLBACK]);
    }
    return status;
}

/* ---- open / close ---------------------------------------------------------------------- */
/* A PRAGMA or query that answers one row; its first column as text into buf. */
static lq_status pragma_text(lq_store *s, const char *sql, const char *what, char *buf, size_t cap) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    lq_status status = LQ_OK;
    if (rc == SQLITE_ROW) {
        const unsigned char *text = sqlite3_column_text(st, 0);
        snprintf(buf, cap, "%s", text ? (const char *)text : "");
    } else {
        status = db_fail(s, rc, "%s", what);
    }
    sqlite3_finalize(st);
    return status;
}

static lq_status pragma_int(lq_store *s, const char *sql, const char *what, long *out) {
    char text[64];
    lq_status status = pragma_text(s, sql, what, text, sizeof text);
    if (status == LQ_OK) *out = strtol(text, NULL, 10);
    return status;
}

static lq_status exec_sql(lq_store *s, const char *sql, const char *what) {
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? LQ_OK : db_fail(s, rc, "%s", what);
}

/* Inside one write transaction, so two processes opening a new file at once cannot both
 * decide it is empty: checks the schema version and (re)runs the idempotent DDL. */
static lq_status ensure_schema(lq_store *s) {
    lq_status status = exec_sql(s, "BEGIN IMMEDIATE", "starting the schema transaction");
    if (status != LQ_OK) return status;
    long version = 0, tables = 0;
    status = pragma_int(s, "PRAGMA user_version", "reading the schema version", &version);
    if (status == LQ_OK && version == 0) {
        /* version 0 is every new SQLite file; one that already has tables belongs to someone
         * else, and creating ours next to theirs would only hide the mistake */
        status = pragma_int(s, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                            "listing the tables", &tables);
        if (status == LQ_OK && tables > 0)
            status = lq_fail(LQ_ERR_FORMAT,
                             "%s: a SQLite database with %ld tables but no liftquant schema "
                             "version (user_version 0): not a liftquant store",
                             s->path, tables);
    } else if (status == LQ_OK && version > LQ_STORE_SCHEMA_VERSION) {
        status = lq_fail(LQ_ERR_UNSUPPORTED,
                         "%s: store schema version %ld is newer than this build's (%d): open it "
                         "with the liftquant that wrote it, or a newer one",
                         s->path, version, LQ_STORE_SCHEMA_VERSION);
    } else if (status == LQ_OK && version != LQ_STORE_SCHEMA_VERSION) {
        status = lq_fail(LQ_ERR_UNSUPPORTED,
                         "%s: unknown store schema version %ld (this build knows version %d)",
                         s->path, version, LQ_STORE_SCHEMA_VERSION);
    }
    if (status == LQ_OK) status = exec_sql(s, lq_store_sql, "creating the schema (schemas/store.sql)");
    if (status == LQ_OK) status = exec_sql(s, "COMMIT", "committing the schema");
    if (status != LQ_OK && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return status;
}

static lq_status configure(lq_store *s) {
    int rc = sqlite3_busy_timeout(s->db, s->busy_timeout_ms);
    if (rc != SQLITE_OK) return db_fail(s, rc, "setting the busy timeout");

    /* the first statement reads the file header, so this is where a non-database file fails */
    char mode[32];
    lq_status status = pragma_text(s, "PRAGMA journal_mode = WAL", "switching to WAL mode", mode,
                                   sizeof mode);
    if (status != LQ_OK) return status;
    if (strcmp(mode, "wal") != 0)
        return lq_fail(LQ_ERR_UNSUPPORTED,
                       "%s: the store needs WAL mode, but SQLite kept journal_mode=%s (an "
                       "in-memory database, or a filesystem without shared-memory locking?)",
                       s->path, mode);

    long fk = 0;
    status = exec_sql(s, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    if (status == LQ_OK) status = pragma_int(s, "PRAGMA foreign_keys", "enabling foreign keys", &fk);
    if (status != LQ_OK) return status;
    if (fk != 1)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: this SQLite cannot enforce foreign keys", s->path);

    /* in WAL mode NORMAL still never corrupts the file; a power cut may lose the last commits,
     * which a resumed run simply recomputes */
    status = exec_sql(s, "PRAGMA synchronous = NORMAL", "setting synchronous=NORMAL");
    if (status == LQ_OK) status = ensure_schema(s);
    if (status != LQ_OK) return status;

    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
        if (rc != SQLITE_OK) return db_fail(s, rc, "preparing \"%s\"", statement_sql[i]);
    }
    return LQ_OK;
}

lq_status lq_store_open(const char *path, lq_store **out) {
    return lq_store_open_with_timeout(path, LQ_STORE_DEFAULT_BUSY_TIMEOUT_MS, out);
}

lq_status lq_store_open_with_timeout(const char *path, int busy_timeout_ms, lq_store **out) {
    if (!out) return lq_fail(LQ_ERR_ARG, "lq_store_open: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return lq_fail(LQ_ERR_ARG, "lq_store_open: empty store path");
    if (busy_timeout_ms < 0)
        return lq_fail(LQ_ERR_ARG, "%s: busy timeout %d ms is negative", path, busy_timeout_ms);
    size_t len = strlen(path);
    lq_store *s = calloc(1, sizeof *s + len + 1);
    if (!s) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory opening the store", path);
    memcpy(s->path, path, len + 1);
    s->busy_timeout_ms = busy_timeout_ms;

    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    lq_status status = rc == SQLITE_OK ? configure(s)
                                       : db_fail(s, rc, "cannot open or create the store");
    if (status != LQ_OK) {
        lq_store_close(s);
        return status;
    }
    *out = s;
    return LQ_OK;
}

void lq_store_close(lq_store *s) {
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->stmt[i]);
    /* the handle exists even when sqlite3_open_v2 failed, and must be closed either way */
    sqlite3_close(s->db);
    free(s);
}

const char *lq_store_path(const lq_store *s) { return s ? s->path : NULL; }

/* ---- runs and tensors ------------------------------------------------------------------ */
static lq_status check_store(const lq_store *s, const char *fn) {
    return s ? LQ_OK : lq_fail(LQ_ERR_ARG, "%s: store is NULL", fn);
}

lq_status lq_store_run(lq_store *s, const char *key, const char *model, const char *settings_json,
                       int64_t *run_id, int *created) {
    lq_status status = check_store(s, "lq_store_run");
    if (status != LQ_OK) return status;
    if (!key || !key[0] || !model || !settings_json || !run_id || !created)
        return lq_fail(LQ_ERR_ARG, "%s: lq_store_run: key (non-empty), model, settings_json, "
                       "run_id and created are required", s->path);
    const char *what = "finding or creating the run";
    status = begin_write(s, what);
    if (status != LQ_OK) return status;

    int rc = SQLITE_OK, found = 0;
    bind_text(s->stmt[ST_RUN_FIND], 1, key, &rc);
    status = query_row(s, ST_RUN_FIND, rc, what, &found);
    if (status != LQ_OK) return abandon_write(s, status);
    if (found) {
        *run_id = sqlite3_column_int64(s->stmt[ST_RUN_FIND], 0);
        *created = 0;
        done_with(s->stmt[ST_RUN_FIND]);
        return commit_write(s, what);
    }
    done_with(s->stmt[ST_RUN_FIND]);

    rc = SQLITE_OK;
    bind_text(s->stmt[ST_RUN_INSERT], 1, key, &rc);
    bind_text(s->stmt[ST_RUN_INSERT], 2, model, &rc);
    bind_text(s->stmt[ST_RUN_INSERT], 3, settings_json, &rc);
    status = exec_stmt(s, ST_RUN_INSERT, rc, "creating the run");
    if (status != LQ_OK) return abandon_write(s, status);
    int64_t id = sqlite3_last_insert_rowid(s->db);
    status = commit_write(s, what);
    if (status != LQ_OK) return abandon_write(s, status);
    *run_id = id;
    *created = 1;
    return LQ_OK;
}

/* Inside a write transaction: LQ_ERR_NOT_FOUND unless the run exists. */
static lq_status require_run(lq_store *s, int64_t run, const char *what) {
    int rc = SQLITE_OK, found = 0;
    bind_i64(s->stmt[ST_RUN_EXISTS], 1, run, &rc);
    lq_status status = query_row(s, ST_RUN_EXISTS, rc, what, &found);
    if (status != LQ_OK) return status;
    done_with(s->stmt[ST_RUN_EXISTS]);
    return found ? LQ_OK : lq_fail(LQ_ERR_NOT_FOUND, "%s: %s: no run with id %lld", s->path, what, (long long)run);
}

lq_status lq_store_tensor(lq_store *s, int64_t run, int index, const char *name, int layer,
                          int out_features, int in_features) {
    lq_status status = check_store(s, "lq_store_tensor");
    if (status != LQ_OK) return status;
    if (index < 0 || !name || !name[0] || layer < -1 || out_features <= 0 || in_features <= 0)
        return lq_fail(LQ_ERR_ARG,
                       "%s: tensor %d (%s): needs index ≥ 0, a name, layer ≥ -1 and positive "
                       "features (got layer %d, %d×%d)",
                       s->path, index, name ? name : "(null)", layer, out_features, in_features);
    char what[160];
    snprintf(what, sizeof what, "registering tensor %d (%s) of run %lld", index, name, (long long)run);
    status = begin_write(s, what);
    if (status == LQ_OK) status = require_run(s, run, what);
    if (status != LQ_OK) return abandon_write(s, status);

    sqlite3_stmt *find = s->stmt[ST_TENSOR_FIND];
    int rc = SQLITE_OK, found = 0;
    bind_i64(find, 1, run, &rc);
    bind_i64(find, 2, index, &rc);
    status = query_row(s, ST_TENSOR_FIND, rc, what, &found);
    if (status != LQ_OK) return abandon_write(s, status);
    if (found) {
        const char *old_name = (const char *)sqlite3_column_text(find, 0);
        int old_layer = sqlite3_column_int(find, 1);
        int old_out = sqlite3_column_int(find, 2), old_in = sqlite3_column_int(find, 3);
        if (old_name && strcmp(old_name, name) == 0 && old_layer == layer && old_out == out_features &&
            old_in == in_features) {
            done_with(find);
            return commit_write(s, what);   /* the same tensor again: nothing to do */
        }
        status = lq_fail(LQ_ERR_ARG,
                         "%s: run %lld tensor %d is already registered as %s (layer %d, %d×%d), "
                         "not %s (layer %d, %d×%d): is this store from another model?",
                         s->path, (long long)run, index, old_name ? old_name : "?", old_layer,
                         old_out, old_in, name, layer, out_features, in_features);
        done_with(find);
        return abandon_write(s, status);
    }
    done_with(find);

    sqlite3_stmt *by_name = s->stmt[ST_TENSOR_BY_NAME];
    rc = SQLITE_OK;
    bind_i64(by_name, 1, run, &rc);
    bind_text(by_name, 2, name, &rc);
    status = query_row(s, ST_TENSOR_BY_NAME, rc, what, &found);
    if (status != LQ_OK) return abandon_write(s, status);
    if (found) {
        status = lq_fail(LQ_ERR_ARG, "%s: run %lld: tensor %s is already registered as index %d, not %d",
                         s->path, (long long)run, name, sqlite3_column_int(by_name, 0), index);
        done_with(by_name);
        return abandon_write(s, status);
    }
    done_with(by_name);

    sqlite3_stmt *insert = s->stmt[ST_TENSOR_INSERT];
    rc = SQLITE_OK;
    bind_i64(insert, 1, run, &rc);
    bind_i64(insert, 2, index, &rc);
    bind_text(insert, 3, name, &rc);
    bind_i64(insert, 4, layer, &rc);
    bind_i64(insert, 5, out_features, &rc);
    bind_i64(insert, 6, in_features, &rc);
    status = exec_stmt(s, ST_TENSOR_INSERT, rc, what);
    if (status == LQ_OK) status = commit_write(s, what);
    return status == LQ_OK ? LQ_OK : abandon_write(s, status);
}

/* ---- results --------------------------------------------------------------------------- */
/* A string field of lq_store_result: terminated inside its array, non-empty unless allowed. */
static int field_ok(const char *field, size_t cap, int may_be_empty) {
    return memchr(field, '\0', cap) && (may_be_empty || field[0]);
}

static lq_status check_result(const lq_store *s, int64_t run, const lq_store_result *r) {
    if (!r) return lq_fail(LQ_ERR_ARG, "%s: lq_store_put_result: result is NULL", s->path);
    if (!field_ok(r->config, sizeof r->config, 0))
        return lq_fail(LQ_ERR_ARG, "%s: run %lld tensor %d: config must be 1 to %zu bytes",
                       s->path, (long long)run, r->tensor, sizeof r->config - 1);
    const char *config = r->config;
    if (r->tensor < 0)
        return lq_fail(LQ_ERR_ARG, "%s: run %lld config %s: tensor index %d is negative", s->path,
                       (long long)run, config, r->tensor);
    if (!field_ok(r->host, sizeof r->host, 1))
        return lq_fail(LQ_ERR_ARG, "%s: run %lld tensor %d config %s: host is not terminated within %zu bytes",
                       s->path, (long long)run, r->tensor, config, sizeof r->host);
    if (!field_ok(r->blob, sizeof r->blob, 0) || r->blob[0] == '/')
        return lq_fail(LQ_ERR_ARG,
                       "%s: run %lld tensor %d config %s: blob must be a non-empty path relative to "
                       "the store's directory, under %zu bytes",
                       s->path, (long long)run, r->tensor, config, sizeof r->blob);
    const struct { const char *name; double value; } reals[] = {
        {"rel_error", r->rel_error}, {"out_energy", r->out_energy},
        {"stream_energy", r->stream_energy}, {"seconds", r->seconds},
    };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        if (!isfinite(reals[i].value) || reals[i].value < 0)
            return lq_fail(LQ_ERR_NUMERIC, "%s: run %lld tensor %d config %s: %s is %g (must be finite and ≥ 0)",
                           s->path, (long long)run, r->tensor, config, reals[i].name, reals[i].value);
    if (r->code_bytes > INT64_MAX || r->side_bytes > INT64_MAX)
        return lq_fail(LQ_ERR_RANGE, "%s: run %lld tensor %d config %s: byte counts beyond 2^63",
                       s->path, (long long)run, r->tensor, config);
    return LQ_OK;
}

lq_status lq_store_put_result(lq_store *s, int64_t run, const lq_store_result *r) {
    lq_status status = check_store(s, "lq_store_put_result");
    if (status == LQ_OK) status = check_result(s, run, r);
    if (status != LQ_OK) return status;
    char what[128];
    snprintf(what, sizeof what, "storing the result of run %lld tensor %d config %s", (long long)run,
             r->tensor, r->config);
    status = begin_write(s, what);
    if (status != LQ_OK) return status;

    int rc = SQLITE_OK, found = 0;
    bind_i64(s->stmt[ST_TENSOR_FIND], 1, run, &rc);
    bind_i64(s->stmt[ST_TENSOR_FIND], 2, r->tensor, &rc);
    status = query_row(s, ST_TENSOR_FIND, rc, what, &found);
    if (status != LQ_OK) return abandon_write(s, status);
    done_with(s->stmt[ST_TENSOR_FIND]);
    if (!found)
        return abandon_write(s, lq_fail(LQ_ERR_NOT_FOUND,
                                        "%s: %s: run %lld has no tensor %d (register it with "
                                        "lq_store_tensor first)",
                                        s->path, what, (long long)run, r->tensor));

    sqlite3_stmt *put = s->stmt[ST_RESULT_PUT];
    rc = SQLITE_OK;
    bind_i64(put, 1, run, &rc);
    bind_i64(put, 2, r->tensor, &rc);
    bind_text(put, 3, r->config, &rc);
    bind_double(put, 4, r->rel_error, &rc);
    bind_double(put, 5, r->out_energy, &rc);
    bind_double(put, 6, r->stream_energy, &rc);
    bind_u64(put, 7, r->code_bytes, &rc);
    bind_u64(put, 8, r->side_bytes, &rc);
    bind_double(put, 9, r->seconds, &rc);
    bind_text(put, 10, r->host, &rc);
    bind_text(put, 11, r->blob, &rc);
    bind_u64(put, 12, r->checksum, &rc);
    status = exec_stmt(s, ST_RESULT_PUT, rc, what);
    if (status == LQ_OK) status = commit_write(s, what);
    return status == LQ_OK ? LQ_OK : abandon_write(s, status);
}

/* Copies a text column into a fixed field; longer text than the field holds is an error, not
 * a silent truncation (the schema's CHECKs make it impossible unless the file was edited). */
static lq_status copy_column(lq_store *s, sqlite3_stmt *st, int col, char *dst, size_t cap,
                             const char *field, int64_t run, int tensor) {
    const unsigned char *text = sqlite3_column_text(st, col);
    int bytes = sqlite3_column_bytes(st, col);
    if (!text && sqlite3_errcode(s->db) == SQLITE_NOMEM)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory reading results", s->path);
    if ((size_t)bytes >= cap)
        return lq_fail(LQ_ERR_FORMAT, "%s: run %lld tensor %d: %s is %d bytes, more than the %zu it may have",
                       s->path, (long long)run, tensor, field, bytes, cap - 1);
    if (bytes) memcpy(dst, text, (size_t)bytes);
    dst[bytes] = '\0';
    return LQ_OK;
}

lq_status lq_store_results(lq_store *s, int64_t run, lq_store_result **out, size_t *n) {
    lq_status status = check_store(s, "lq_store_results");
    if (status != LQ_OK) return status;
    if (!out || !n) return lq_fail(LQ_ERR_ARG, "%s: lq_store_results: out and n are required", s->path);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = s->stmt[ST_RESULTS];
    int rc = sqlite3_bind_int64(st, 1, run);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    lq_store_result *rows = NULL;
    size_t count = 0, cap = 0;
    for (; status == LQ_OK && rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        if (count == cap) {
            size_t grown = cap ? 2 * cap : 64;
            lq_store_result *bigger = realloc(rows, grown * sizeof *rows);
            if (!bigger) {
                status = lq_fail(LQ_ERR_NOMEM, "%s: out of memory reading the results of run %lld",
                                 s->path, (long long)run);
                break;
            }
            rows = bigger;
            cap = grown;
        }
        lq_store_result *r = &rows[count];
        memset(r, 0, sizeof *r);
        r->tensor = sqlite3_column_int(st, 0);
        status = copy_column(s, st, 1, r->config, sizeof r->config, "config", run, r->tensor);
        r->rel_error = sqlite3_column_double(st, 2);
        r->out_energy = sqlite3_column_double(st, 3);
        r->stream_energy = sqlite3_column_double(st, 4);
        r->code_bytes = column_u64(st, 5);
        r->side_bytes = column_u64(st, 6);
        r->seconds = sqlite3_column_double(st, 7);
        if (status == LQ_OK) status = copy_column(s, st, 8, r->host, sizeof r->host, "host", run, r->tensor);
        if (status == LQ_OK) status = copy_column(s, st, 9, r->blob, sizeof r->blob, "blob", run, r->tensor);
        r->checksum = column_u64(st, 10);
        count++;
        if (status != LQ_OK) break;
    }
    if (status == LQ_OK && rc != SQLITE_DONE)
        status = db_fail(s, rc, "reading the results of run %lld", (long long)run);
    done_with(st);
    if (status != LQ_OK) {
        free(rows);
        return status;
    }
    *out = rows;
    *n = count;
    return LQ_OK;
}

lq_status lq_store_delete_result(lq_store *s, int64_t run, int tensor, const char *config) {
    lq_status status = check_store(s, "lq_store_delete_result");
    if (status != LQ_OK) return status;
    if (!config || !config[0])
        return lq_fail(LQ_ERR_ARG, "%s: lq_store_delete_result: config is empty", s->path);
    char what[128];
    snprintf(what, sizeof what, "deleting the result of run %lld tensor %d config %.16s", (long long)run,
             tensor, config);
    status = begin_write(s, what);
    if (status != LQ_OK) return status;
    int rc = SQLITE_OK;
    bind_i64(s->stmt[ST_RESULT_DELETE], 1, run, &rc);
    bind_i64(s->stmt[ST_RESULT_DELETE], 2, tensor, &rc);
    bind_text(s->stmt[ST_RESULT_DELETE], 3, config, &rc);
    status = exec_stmt(s, ST_RESULT_DELETE, rc, what);
    if (status == LQ_OK && sqlite3_changes(s->db) == 0)
        status = lq_fail(LQ_ERR_NOT_FOUND, "%s: %s: no such result", s->path, what);
    if (status == LQ_OK) status = commit_write(s, what);
    return status == LQ_OK ? LQ_OK : abandon_write(s, status);
}

/* ---- assignments ----------------------------------------------------------------------- */
lq_status lq_store_put_assignment(lq_store *s, int64_t run, const lq_store_solve_info *info,
                                  const char *const *configs, int n) {
    lq_status status = check_store(s, "lq_store_put_assignment");
    if (status != LQ_OK) return status;
    if (!info || !info->measure || !info->measure[0] || !configs || n <= 0)
        return lq_fail(LQ_ERR_ARG, "%s: lq_store_put_assignment: needs solve info with a measure "
                       "name and at least one config", s->path);
    char what[192];
    snprintf(what, sizeof what, "storing the assignment of run %lld for budget %llu B, measure %s",
             (long long)run, (unsigned long long)info->budget_bytes, info->measure);
    if (info->budget_bytes > INT64_MAX || info->used_bytes > info->budget_bytes)
        return lq_fail(LQ_ERR_RANGE, "%s: %s: used %llu B is over the budget (or the budget is beyond 2^63)",
                       s->path, what, (unsigned long long)info->used_bytes);
    if (!isfinite(info->objective) || info->objective < 0 || !isfinite(info->lower_bound))
        return lq_fail(LQ_ERR_NUMERIC, "%s: %s: objective %g and lower bound %g must be finite, objective ≥ 0",
                       s->path, what, info->objective, info->lower_bound);
    for (int i = 0; i < n; i++)
        if (!configs[i] || !configs[i][0])
            return lq_fail(LQ_ERR_ARG, "%s: %s: no config for tensor %d", s->path, what, i);

    status = begin_write(s, what);
    if (status == LQ_OK) status = require_run(s, run, what);
    if (status != LQ_OK) return abandon_write(s, status);

    int rc = SQLITE_OK, found = 0;
    bind_i64(s->stmt[ST_TENSOR_COUNT], 1, run, &rc);
    status = query_row(s, ST_TENSOR_COUNT, rc, what, &found);
    if (status != LQ_OK) return abandon_write(s, status);
    int64_t tensors = found ? sqlite3_column_int64(s->stmt[ST_TENSOR_COUNT], 0) : 0;
    done_with(s->stmt[ST_TENSOR_COUNT]);
    if (tensors != n)
        return abandon_write(s, lq_fail(LQ_ERR_ARG, "%s: %s: %d configs for the run's %lld tensors",
                                        s->path, what, n, (long long)tensors));

    rc = SQLITE_OK;
    bind_i64(s->stmt[ST_ASSIGN_CLEAR], 1, run, &rc);
    bind_u64(s->stmt[ST_ASSIGN_CLEAR], 2, info->budget_bytes, &rc);
    bind_text(s->stmt[ST_ASSIGN_CLEAR], 3, info->measure, &rc);
    status = exec_stmt(s, ST_ASSIGN_CLEAR, rc, what);
    if (status != LQ_OK) return abandon_write(s, status);

    sqlite3_stmt *solve = s->stmt[ST_SOLVE_PUT];
    rc = SQLITE_OK;
    bind_i64(solve, 1, run, &rc);
    bind_u64(solve, 2, info->budget_bytes, &rc);
    bind_text(solve, 3, info->measure, &rc);
    bind_u64(solve, 4, info->used_bytes, &rc);
    bind_double(solve, 5, info->objective, &rc);
    bind_double(solve, 6, info->lower_bound, &rc);
    bind_text(solve, 7, info->out_path, &rc);
    status = exec_stmt(s, ST_SOLVE_PUT, rc, what);
    if (status != LQ_OK) return abandon_write(s, status);

    sqlite3_stmt *put = s->stmt[ST_ASSIGN_PUT];
    for (int i = 0; i < n; i++) {
        rc = SQLITE_OK;
        bind_i64(put, 1, run, &rc);
        bind_u64(put, 2, info->budget_bytes, &rc);
        bind_text(put, 3, info->measure, &rc);
        bind_i64(put, 4, i, &rc);
        bind_text(put, 5, configs[i], &rc);
        status = exec_stmt(s, ST_ASSIGN_PUT, rc, what);
        if (status == LQ_OK && sqlite3_changes(s->db) != 1)
            status = lq_fail(LQ_ERR_NOT_FOUND, "%s: %s: tensor %d has no result for config %.16s",
                             s->path, what, i, configs[i]);
        if (status != LQ_OK) return abandon_write(s, status);
    }
    status = commit_write(s, what);
    return status == LQ_OK ? LQ_OK : abandon_write(s, status);
}
