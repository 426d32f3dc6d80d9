/* Calibration store tests (coordinator/store.c, schemas/store.sql): create and reopen, WAL,
 * runs, tensors, results (round trip, replace, delete), two runs in one file, assignments, a
 * second writer holding the lock, and files that are not stores. Each test uses its own
 * database file in the group's mkdtemp directory; a second sqlite3 handle looks at what the
 * store wrote, so the checks do not rely on the store reading back its own mistakes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "store"
#include "test_util.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lq_coord.h"

/* ---- helpers --------------------------------------------------------------------------- */
/* A store call that must succeed; on failure the test shows the store's message. */
#define assert_ok(call)                                                                         \
    do {                                                                                        \
        lq_status st_ = (call);                                                                 \
        if (st_ != LQ_OK) fail_msg("%s: %s", #call, lq_last_error());                           \
    } while (0)

/* Path of `name` inside the temp dir; a few rotating buffers so several can be live. */
static lq_store *open_store(const char *path) {
    lq_store *s = NULL;
    lq_status st = lq_store_open(path, &s);
    if (st != LQ_OK) fail_msg("lq_store_open(%s): %s", path, lq_last_error());
    assert_non_null(s);
    return s;
}

static int64_t new_run(lq_store *s, const char *key) {
    int64_t run = -1;
    int created = -1;
    assert_ok(lq_store_run(s, key, "models/m", "{\"seed\": 1}", &run, &created));
    assert_int_equal(created, 1);
    return run;
}

/* Registers tensors 0..n-1 named blk.<i>.w, 8×(16+i). */
static void add_tensors(lq_store *s, int64_t run, int n) {
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.w", i);
        assert_ok(lq_store_tensor(s, run, i, name, i / 2, 8, 16 + i));
    }
}

/* A result whose every field depends on (tensor, config, salt), so mixed-up rows show. */
static lq_store_result make_result(int tensor, const char *config, int salt) {
    lq_store_result r;
    memset(&r, 0, sizeof r);
    r.tensor = tensor;
    snprintf(r.config, sizeof r.config, "%s", config);
    r.rel_error = 0.001 * (tensor + 1) + 1e-7 * salt + 1.0 / 3.0;
    r.out_energy = 2.5 + tensor + 0.125 * salt;
    r.stream_energy = 1e-3 / (tensor + 1) + salt;
    r.code_bytes = 1000u * (uint64_t)(tensor + 1) + (uint64_t)salt;
    r.side_bytes = 64u + (uint64_t)tensor;
    r.seconds = 0.5 * (salt + 1);
    snprintf(r.host, sizeof r.host, "node%02d", salt % 7);
    snprintf(r.blob, sizeof r.blob, "blobs/t%03d_%d.bin", tensor, salt);
    r.checksum = 0x0123456789abcdefULL * (uint64_t)(tensor + 1) + (uint64_t)salt;
    return r;
}

static void assert_result_equal(const lq_store_result *a, const lq_store_result *b) {
    assert_int_equal(a->tensor, b->tensor);
    assert_string_equal(a->config, b->config);
    /* bit-exact: the store keeps IEEE doubles and 64-bit integers unchanged */
    assert_memory_equal(&a->rel_error, &b->rel_error, sizeof a->rel_error);
    assert_memory_equal(&a->out_energy, &b->out_energy, sizeof a->out_energy);
    assert_memory_equal(&a->stream_energy, &b->stream_energy, sizeof a->stream_energy);
    assert_true(a->code_bytes == b->code_bytes);
    assert_true(a->side_bytes == b->side_bytes);
    assert_memory_equal(&a->seconds, &b->seconds, sizeof a->seconds);
    assert_string_equal(a->host, b->host);
    assert_string_equal(a->blob, b->blob);
    if (a->checksum != b->checksum)
        fail_msg("checksum %016llx read back as %016llx", (unsigned long long)a->checksum,
                 (unsigned long long)b->checksum);
}

/* Asserts a failure with `code` whose message names `path` and contains `needle`. */
static void expect_store_error(lq_status st, lq_status code, const char *path, const char *needle) {
    const char *msg = lq_last_error();
    if (st != code)
        fail_msg("expected %s, got %s: %s", lq_status_name(code), lq_status_name(st), msg ? msg : "");
    print_message("    %s: %s\n", lq_status_name(st), msg);
    expect_error(st, code, path);
    expect_error(st, code, needle);
}

/* A second, independent connection, for looking at and tampering with the file. */
static sqlite3 *raw_open(const char *path) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 10000), SQLITE_OK);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err);
}

/* The one integer a query answers (with one optional int64 parameter ?1). */
static int64_t raw_int(sqlite3 *db, const char *sql, int64_t param) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_bind_parameter_count(st) > 0) assert_int_equal(sqlite3_bind_int64(st, 1, param), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void raw_text(sqlite3 *db, const char *sql, int64_t param, char *out, size_t cap) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_bind_parameter_count(st) > 0) assert_int_equal(sqlite3_bind_int64(st, 1, param), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *text = sqlite3_column_text(st, 0);
    snprintf(out, cap, "%s", text ? (const char *)text : "(null)");
    sqlite3_finalize(st);
}

/* ---- open, reopen, WAL ----------------------------------------------------------------- */
static void test_open_creates_file_and_schema(void **state) {
    (void)state;
    const char *path = temp_path("create.db");
    lq_store *s = open_store(path);
    assert_string_equal(lq_store_path(s), path);
    struct stat info;
    assert_int_equal(stat(path, &info), 0);

    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "PRAGMA user_version", 0), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                                 "('runs', 'tensors', 'results', 'solves', 'assignments')", 0), 5);
    /* WAL is a property of the file, so another connection sees it too */
    char mode[16];
    raw_text(db, "PRAGMA journal_mode", 0, mode, sizeof mode);
    assert_string_equal(mode, "wal");
    sqlite3_close(db);
    lq_store_close(s);

    /* a second open of the same file runs the (idempotent) schema again and must not fail */
    s = open_store(path);
    lq_store *t = open_store(path);   /* two handles on one file at once */
    lq_store_close(t);
    lq_store_close(s);
    lq_store_close(NULL);
}

static void test_reopen_keeps_data(void **state) {
    (void)state;
    const char *path = temp_path("reopen.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-reopen");
    add_tensors(s, run, 2);
    lq_store_result a = make_result(1, "24/10", 3), b = make_result(0, "8/3", 4);
    assert_ok(lq_store_put_result(s, run, &a));
    assert_ok(lq_store_put_result(s, run, &b));
    lq_store_close(s);

    s = open_store(path);
    int64_t again = -1;
    int created = -1;
    assert_ok(lq_store_run(s, "key-reopen", "other", "{}", &again, &created));
    assert_int_equal(created, 0);
    assert_int_equal(again, run);
    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 2);
    assert_result_equal(&rows[0], &b);
    assert_result_equal(&rows[1], &a);
    free(rows);
    /* the tensors survived too: registering them again is the no-op, another shape is not */
    assert_ok(lq_store_tensor(s, run, 1, "blk.1.w", 0, 8, 17));
    assert_int_equal(lq_store_tensor(s, run, 1, "blk.1.w", 0, 8, 18), LQ_ERR_ARG);
    lq_store_close(s);
}

/* ---- runs ------------------------------------------------------------------------------ */
static void test_run_created_vs_found(void **state) {
    (void)state;
    const char *path = temp_path("runs.db");
    lq_store *s = open_store(path);
    int64_t r1 = -1, r1b = -1, r2 = -1;
    int created = -1;
    assert_ok(lq_store_run(s, "k1", "models/llama", "{\"tokens\": 4096}", &r1, &created));
    assert_int_equal(created, 1);
    assert_ok(lq_store_run(s, "k1", "models/ignored", "{\"ignored\": true}", &r1b, &created));
    assert_int_equal(created, 0);
    assert_int_equal(r1b, r1);
    assert_ok(lq_store_run(s, "k2", "models/llama", "{}", &r2, &created));
    assert_int_equal(created, 1);
    assert_true(r2 != r1);

    /* the first creation's model and settings are kept, stored as given */
    sqlite3 *db = raw_open(path);
    char text[128];
    raw_text(db, "SELECT model FROM runs WHERE id = ?1", r1, text, sizeof text);
    assert_string_equal(text, "models/llama");
    raw_text(db, "SELECT settings FROM runs WHERE id = ?1", r1, text, sizeof text);
    assert_string_equal(text, "{\"tokens\": 4096}");
    sqlite3_close(db);

    int64_t bad = -1;
    expect_store_error(lq_store_run(s, "k3", "m", "{not json", &bad, &created), LQ_ERR_ARG, path,
                       "run_settings_is_json");
    expect_store_error(lq_store_run(s, "", "m", "{}", &bad, &created), LQ_ERR_ARG, path, "key");
    assert_int_equal(bad, -1);
    lq_store_close(s);
}

/* ---- tensors --------------------------------------------------------------------------- */
static void test_tensor_registration(void **state) {
    (void)state;
    const char *path = temp_path("tensors.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-tensors");
    assert_ok(lq_store_tensor(s, run, 0, "model.layers.0.mlp.up_proj", 0, 11008, 4096));
    assert_ok(lq_store_tensor(s, run, 0, "model.layers.0.mlp.up_proj", 0, 11008, 4096));
    assert_ok(lq_store_tensor(s, run, 1, "lm_head", -1, 32000, 4096));
    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM tensors WHERE run = ?1", run), 2);

    /* another shape, name or layer under the same index names both */
    lq_status st = lq_store_tensor(s, run, 0, "model.layers.0.mlp.up_proj", 0, 4096, 11008);
    expect_store_error(st, LQ_ERR_ARG, path, "11008×4096");
    expect_error(st, LQ_ERR_ARG, "4096×11008");
    st = lq_store_tensor(s, run, 0, "model.layers.0.mlp.down_proj", 0, 11008, 4096);
    expect_store_error(st, LQ_ERR_ARG, path, "model.layers.0.mlp.up_proj");
    expect_error(st, LQ_ERR_ARG, "model.layers.0.mlp.down_proj");
    expect_store_error(lq_store_tensor(s, run, 0, "model.layers.0.mlp.up_proj", 1, 11008, 4096),
                       LQ_ERR_ARG, path, "layer 1");
    /* the same name under a second index */
    expect_store_error(lq_store_tensor(s, run, 2, "lm_head", -1, 32000, 4096), LQ_ERR_ARG, path,
                       "already registered as index 1");
    expect_store_error(lq_store_tensor(s, run + 100, 0, "x", 0, 1, 1), LQ_ERR_NOT_FOUND, path, "no run");
    expect_store_error(lq_store_tensor(s, run, -1, "x", 0, 1, 1), LQ_ERR_ARG, path, "index");
    expect_store_error(lq_store_tensor(s, run, 3, "x", 0, 0, 1), LQ_ERR_ARG, path, "x");
    assert_int_equal(raw_int(db, "SELECT count(*) FROM tensors WHERE run = ?1", run), 2);
    sqlite3_close(db);
    lq_store_close(s);
}

/* ---- results --------------------------------------------------------------------------- */
static void test_result_round_trip(void **state) {
    (void)state;
    const char *path = temp_path("results.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-results");
    add_tensors(s, run, 3);
    lq_store_result put[5] = {
        make_result(2, "24/10", 1), make_result(0, "8/3", 2), make_result(2, "16/4", 3),
        make_result(1, "24/10", 4), make_result(0, "16/4", 5),
    };
    put[0].checksum = 0x8000000000000001ULL;   /* top bit set: negative as a signed INTEGER */
    put[1].checksum = UINT64_MAX;
    put[2].checksum = 0;
    put[3].code_bytes = (uint64_t)INT64_MAX;
    put[4].rel_error = 0.0;
    put[4].host[0] = '\0';                      /* host may be unknown */
    for (int i = 0; i < 5; i++) assert_ok(lq_store_put_result(s, run, &put[i]));

    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 5);
    /* ordered by tensor, then config as text */
    const int order[5] = {4, 1, 3, 2, 0};
    for (int i = 0; i < 5; i++) assert_result_equal(&rows[i], &put[order[i]]);
    free(rows);

    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT checksum FROM results WHERE tensor = 2 AND config = '24/10'", 0),
                     INT64_MIN + 1);
    sqlite3_close(db);

    /* a run with no results: empty, not an error */
    int64_t empty = new_run(s, "key-empty");
    rows = (lq_store_result *)&rows;
    assert_ok(lq_store_results(s, empty, &rows, &n));
    assert_int_equal(n, 0);
    free(rows);
    lq_store_close(s);
}

static void test_result_conflict_replaces(void **state) {
    (void)state;
    const char *path = temp_path("replace.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-replace");
    add_tensors(s, run, 1);
    lq_store_result first = make_result(0, "24/10", 1), second = make_result(0, "24/10", 9);
    second.checksum = 0xfedcba9876543210ULL;
    assert_ok(lq_store_put_result(s, run, &first));
    assert_ok(lq_store_put_result(s, run, &second));
    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 1);
    assert_result_equal(&rows[0], &second);
    free(rows);
    lq_store_close(s);
}

static void test_result_errors(void **state) {
    (void)state;
    const char *path = temp_path("result_errors.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-errors");
    add_tensors(s, run, 1);

    lq_store_result r = make_result(1, "24/10", 0);   /* tensor 1 is not registered */
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_NOT_FOUND, path, "no tensor 1");
    r = make_result(0, "24/10", 0);
    r.rel_error = NAN;
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_NUMERIC, path, "rel_error");
    r = make_result(0, "24/10", 0);
    r.seconds = -1;
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_NUMERIC, path, "seconds");
    r = make_result(0, "24/10", 0);
    memset(r.config, 'x', sizeof r.config);         /* not terminated */
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_ARG, path, "config");
    r = make_result(0, "24/10", 0);
    snprintf(r.blob, sizeof r.blob, "/abs/blob.bin");
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_ARG, path, "relative");
    r = make_result(0, "24/10", 0);
    r.side_bytes = UINT64_MAX;
    expect_store_error(lq_store_put_result(s, run, &r), LQ_ERR_RANGE, path, "2^63");

    lq_store_result *rows = NULL;
    size_t n = 1;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 0);   /* nothing half-written */
    free(rows);
    lq_store_close(s);
}

static void test_delete_result(void **state) {
    (void)state;
    const char *path = temp_path("delete.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-delete");
    add_tensors(s, run, 2);
    lq_store_result a = make_result(0, "24/10", 1), b = make_result(0, "16/4", 2),
                    c = make_result(1, "24/10", 3);
    assert_ok(lq_store_put_result(s, run, &a));
    assert_ok(lq_store_put_result(s, run, &b));
    assert_ok(lq_store_put_result(s, run, &c));
    assert_ok(lq_store_delete_result(s, run, 0, "24/10"));
    expect_store_error(lq_store_delete_result(s, run, 0, "24/10"), LQ_ERR_NOT_FOUND, path, "no such result");

    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 2);
    assert_result_equal(&rows[0], &b);
    assert_result_equal(&rows[1], &c);
    free(rows);
    /* deleted, it can be put again (the recompute after a bad checksum) */
    assert_ok(lq_store_put_result(s, run, &a));
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 3);
    free(rows);
    lq_store_close(s);
}

static void test_two_runs_apart(void **state) {
    (void)state;
    const char *path = temp_path("two_runs.db");
    lq_store *s = open_store(path);
    int64_t r1 = new_run(s, "key-one"), r2 = new_run(s, "key-two");
    add_tensors(s, r1, 2);
    add_tensors(s, r2, 2);   /* the same indices and names: they belong to different runs */
    assert_ok(lq_store_tensor(s, r2, 2, "only.in.two", 3, 4, 4));
    lq_store_result a1 = make_result(0, "24/10", 1), a2 = make_result(0, "24/10", 2),
                    b2 = make_result(2, "8/3", 3);
    assert_ok(lq_store_put_result(s, r1, &a1));
    assert_ok(lq_store_put_result(s, r2, &a2));
    assert_ok(lq_store_put_result(s, r2, &b2));
    expect_store_error(lq_store_put_result(s, r1, &b2), LQ_ERR_NOT_FOUND, path, "no tensor 2");

    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, r1, &rows, &n));
    assert_int_equal(n, 1);
    assert_result_equal(&rows[0], &a1);
    free(rows);
    assert_ok(lq_store_delete_result(s, r1, 0, "24/10"));
    assert_ok(lq_store_results(s, r2, &rows, &n));
    assert_int_equal(n, 2);
    assert_result_equal(&rows[0], &a2);
    assert_result_equal(&rows[1], &b2);
    free(rows);
    lq_store_close(s);
}

/* ---- assignments ----------------------------------------------------------------------- */
static void test_assignment_replace(void **state) {
    (void)state;
    const char *path = temp_path("assign.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-assign");
    add_tensors(s, run, 3);
    const char *configs[2] = {"24/10", "16/4"};
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < 2; c++) {
            lq_store_result r = make_result(t, configs[c], c);
            assert_ok(lq_store_put_result(s, run, &r));
        }

    lq_store_solve_info info = {.budget_bytes = 1 << 20, .used_bytes = 1000, .measure = "rel",
                                .objective = 0.5, .lower_bound = 0.25, .out_path = "out/a"};
    const char *first[3] = {"24/10", "24/10", "16/4"};
    assert_ok(lq_store_put_assignment(s, run, &info, first, 3));
    lq_store_solve_info other = info;
    other.measure = "output";
    other.out_path = NULL;
    assert_ok(lq_store_put_assignment(s, run, &other, first, 3));

    /* the same (run, budget, measure) again replaces the configs and the figures */
    info.used_bytes = 900;
    info.objective = 0.75;
    info.out_path = "out/b";
    const char *second[3] = {"16/4", "24/10", "24/10"};
    assert_ok(lq_store_put_assignment(s, run, &info, second, 3));

    sqlite3 *db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM solves WHERE run = ?1", run), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM assignments WHERE run = ?1", run), 6);
    assert_int_equal(raw_int(db, "SELECT used_bytes FROM solves WHERE run = ?1 AND measure = 'rel'", run), 900);
    char text[64];
    raw_text(db, "SELECT out_path FROM solves WHERE run = ?1 AND measure = 'rel'", run, text, sizeof text);
    assert_string_equal(text, "out/b");
    raw_text(db, "SELECT group_concat(config, ',') FROM (SELECT config FROM assignments"
                 " WHERE run = ?1 AND measure = 'rel' ORDER BY tensor)", run, text, sizeof text);
    assert_string_equal(text, "16/4,24/10,24/10");
    raw_text(db, "SELECT group_concat(config, ',') FROM (SELECT config FROM assignments"
                 " WHERE run = ?1 AND measure = 'output' ORDER BY tensor)", run, text, sizeof text);
    assert_string_equal(text, "24/10,24/10,16/4");

    /* a failed put leaves the earlier assignment whole */
    const char *missing[3] = {"24/10", "8/3", "24/10"};
    expect_store_error(lq_store_put_assignment(s, run, &info, missing, 3), LQ_ERR_NOT_FOUND, path,
                       "tensor 1 has no result for config 8/3");
    expect_store_error(lq_store_put_assignment(s, run, &info, second, 2), LQ_ERR_ARG, path,
                       "2 configs for the run's 3 tensors");
    info.used_bytes = info.budget_bytes + 1;
    expect_store_error(lq_store_put_assignment(s, run, &info, second, 3), LQ_ERR_RANGE, path, "budget");
    raw_text(db, "SELECT group_concat(config, ',') FROM (SELECT config FROM assignments"
                 " WHERE run = ?1 AND measure = 'rel' ORDER BY tensor)", run, text, sizeof text);
    assert_string_equal(text, "16/4,24/10,24/10");
    assert_int_equal(raw_int(db, "SELECT used_bytes FROM solves WHERE run = ?1 AND measure = 'rel'", run), 900);
    sqlite3_close(db);
    lq_store_close(s);
}

/* ---- a second writer ------------------------------------------------------------------- */
typedef struct {
    sqlite3 *db;
    int rc;
} lock_holder;

static void *commit_after_200ms(void *arg) {
    lock_holder *h = arg;
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    h->rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

static void test_waits_for_other_writer(void **state) {
    (void)state;
    const char *path = temp_path("busy.db");
    lq_store *s = open_store(path);
    int64_t run = new_run(s, "key-busy");
    add_tensors(s, run, 1);

    /* another process's write in progress: it holds the write lock and has written the same
     * key, which our put must then replace, not fail on */
    lock_holder h = {raw_open(path), -1};
    raw_exec(h.db, "BEGIN IMMEDIATE");
    sqlite3_stmt *insert = NULL;
    assert_int_equal(sqlite3_prepare_v2(h.db,
                                        "INSERT INTO results (run, tensor, config, rel_error, out_energy,"
                                        " stream_energy, code_bytes, side_bytes, seconds, host, blob,"
                                        " checksum) VALUES (?1, 0, '24/10', 9, 9, 9, 9, 9, 9, 'other',"
                                        " 'other.bin', 9)", -1, &insert, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_int64(insert, 1, run), SQLITE_OK);
    assert_int_equal(sqlite3_step(insert), SQLITE_DONE);
    sqlite3_finalize(insert);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, commit_after_200ms, &h), 0);

    lq_store_result mine = make_result(0, "24/10", 5);
    double t0 = lq_seconds();
    lq_status st = lq_store_put_result(s, run, &mine);
    double waited = lq_seconds() - t0;
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (st != LQ_OK) fail_msg("put_result while another writer held the lock: %s", lq_last_error());
    assert_int_equal(h.rc, SQLITE_OK);
    print_message("    waited %.3f s for the other writer\n", waited);
    assert_true(waited >= 0.15);   /* it did wait for the lock, rather than slip past it */

    lq_store_result *rows = NULL;
    size_t n = 0;
    assert_ok(lq_store_results(s, run, &rows, &n));
    assert_int_equal(n, 1);
    assert_result_equal(&rows[0], &mine);
    free(rows);
    sqlite3_close(h.db);
    lq_store_close(s);
}

/* ---- files that are not stores --------------------------------------------------------- */
static void test_unwritable_path(void **state) {
    (void)state;
    const char *path = temp_path("no_such_dir/store.db");
    lq_store *s = (lq_store *)&s;   /* any non-NULL value: must be reset */
    expect_store_error(lq_store_open(path, &s), LQ_ERR_IO, path, "unable to open");
    assert_null(s);
    expect_error(lq_store_open("", &s), LQ_ERR_ARG, "empty");
}

static void test_not_a_database(void **state) {
    (void)state;
    const char *path = temp_path("junk.db");
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("not a database\n"[i % 15]);
    write_file(path, junk, sizeof junk);
    lq_store *s = (lq_store *)&s;
    expect_store_error(lq_store_open(path, &s), LQ_ERR_FORMAT, path, "not a SQLite database");
    assert_null(s);
}

static void test_foreign_database(void **state) {
    (void)state;
    const char *path = temp_path("foreign.db");
    sqlite3 *db = raw_open(path);
    raw_exec(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)");
    sqlite3_close(db);
    lq_store *s = (lq_store *)&s;
    expect_store_error(lq_store_open(path, &s), LQ_ERR_FORMAT, path, "not a liftquant store");
    assert_null(s);
    /* and it was left alone */
    db = raw_open(path);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'", 0), 1);
    sqlite3_close(db);
}

static void test_newer_schema_version(void **state) {
    (void)state;
    const char *path = temp_path("newer.db");
    lq_store_close(open_store(path));
    sqlite3 *db = raw_open(path);
    raw_exec(db, "PRAGMA user_version = 999");
    sqlite3_close(db);
    lq_store *s = (lq_store *)&s;
    expect_store_error(lq_store_open(path, &s), LQ_ERR_UNSUPPORTED, path, "version 999 is newer");
    assert_null(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_creates_file_and_schema),
        cmocka_unit_test(test_reopen_keeps_data),
        cmocka_unit_test(test_run_created_vs_found),
        cmocka_unit_test(test_tensor_registration),
        cmocka_unit_test(test_result_round_trip),
        cmocka_unit_test(test_result_conflict_replaces),
        cmocka_unit_test(test_result_errors),
        cmocka_unit_test(test_delete_result),
        cmocka_unit_test(test_two_runs_apart),
        cmocka_unit_test(test_assignment_replace),
        cmocka_unit_test(test_waits_for_other_writer),
        cmocka_unit_test(test_unwritable_path),
        cmocka_unit_test(test_not_a_database),
        cmocka_unit_test(test_foreign_database),
        cmocka_unit_test(test_newer_schema_version),
    };
    return cmocka_run_group_tests_name("store", tests, create_temp_dir, remove_temp_dir);
}
