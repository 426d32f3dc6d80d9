/* Fleet protocol and queue tests (coordinator/fleet_proto.c, fleet_queue.c): every refusal of
 * the request parser names its field; buffers without a terminating NUL and random bytes are
 * parsed without reading past their end (the sanitizer build checks that); budgets; loopback
 * endpoints; the queue's state machine (a job is launched only from queued, finished once,
 * requeued only while running); the fingerprint follows the model file's mtime; key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "fleet"
#include "test_util.h"

#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lq_fleet.h"

#define assert_ok(call)                                                                         \
    do {                                                                                        \
        lq_status st_ = (call);                                                                 \
        if (st_ != LQ_OK) fail_msg("%s: %s", #call, lq_last_error());                           \
    } while (0)

/* Parses text from an exact-size heap copy (no NUL after it), so a read past the end is an
 * ASan error rather than luck. */
static lq_status parse_exact(const char *text, lq_fleet_request *req) {
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    lq_status st = lq_fleet_request_parse(copy, n, req);
    free(copy);
    return st;
}

static void expect_refused(const char *text, const char *needle) {
    lq_fleet_request req;
    lq_status st = parse_exact(text, &req);
    if (st == LQ_OK) fail_msg("accepted: %s", text);
    const char *msg = lq_last_error();
    if (!strstr(msg, needle)) fail_msg("%s -> \"%s\", which lacks \"%s\"", text, msg, needle);
    /* a failed parse leaves a zeroed struct that free accepts */
    assert_null(req.model);
    assert_int_equal(req.n_budgets, 0);
    lq_fleet_request_free(&req);
}

static void test_parse_valid(void **state) {
    (void)state;
    lq_fleet_request req;
    assert_ok(parse_exact("{\"op\":\"submit\",\"model\":\"/m.bin\",\"tokenizer\":\"/t.bin\","
                          "\"budgets\":[\"600KiB\",\"2.5bits\"],\"out\":\"/o\",\"args\":[\"--steps\",\"5\"],"
                          "\"if_changed\":true}", &req));
    assert_int_equal(req.op, LQ_FLEET_SUBMIT);
    assert_string_equal(req.model, "/m.bin");
    assert_string_equal(req.tokenizer, "/t.bin");
    assert_int_equal(req.n_budgets, 2);
    assert_string_equal(req.budgets[1], "2.5bits");
    assert_int_equal(req.out_is_parent, 1);
    assert_int_equal(req.n_args, 2);
    assert_string_equal(req.args[1], "5");
    assert_int_equal(req.if_changed, 1);
    assert_null(req.db);
    /* the client's serialisation parses back to the same request */
    char *json;
    assert_ok(lq_fleet_request_json(&req, &json));
    lq_fleet_request again;
    assert_ok(lq_fleet_request_parse(json, strlen(json), &again));
    assert_string_equal(again.budgets[0], "600KiB");
    assert_int_equal(again.n_args, 2);
    assert_int_equal(again.if_changed, 1);
    free(json);
    lq_fleet_request_free(&again);
    lq_fleet_request_free(&req);
    lq_fleet_request_free(&req);   /* twice is fine: free zeroes it */

    assert_ok(parse_exact("{\"op\":\"submit\",\"model\":\"/m\",\"budget\":\"4bits\",\"out\":\"/o\"}", &req));
    assert_int_equal(req.out_is_parent, 0);
    assert_int_equal(req.n_budgets, 1);
    lq_fleet_request_free(&req);
    assert_ok(parse_exact("{\"op\":\"status\"}", &req));
    assert_int_equal(req.op, LQ_FLEET_STATUS);
    assert_int_equal(req.job, 0);
    assert_ok(parse_exact("{\"job\":12,\"op\":\"cancel\"}", &req));
    assert_int_equal(req.op, LQ_FLEET_CANCEL);
    assert_int_equal(req.job, 12);
}

static void test_parse_refusals(void **state) {
    (void)state;
    expect_refused("", "empty message");
    expect_refused("{\"op\":\"status\"", "not JSON");
    expect_refused("[1,2]", "expected a JSON object");
    expect_refused("\"status\"", "not JSON");   /* jansson refuses a bare string at the top */
    expect_refused("{}", "field 'op' is missing");
    expect_refused("{\"op\":5}", "field 'op' must be a string");
    expect_refused("{\"op\":\"reboot\"}", "'reboot' is not submit, status or cancel");
    expect_refused("{\"op\":\"status\",\"op\":\"cancel\"}", "not JSON");   /* duplicate key */
    expect_refused("{\"op\":\"status\",\"job\":\"7\"}", "field 'job' must be a positive integer");
    expect_refused("{\"op\":\"status\",\"job\":0}", "field 'job' must be a positive integer");
    expect_refused("{\"op\":\"status\",\"job\":1.5}", "field 'job' must be a positive integer");
    expect_refused("{\"op\":\"cancel\"}", "field 'job' is missing");
    expect_refused("{\"op\":\"status\",\"verbose\":true}", "unknown field 'verbose' for op 'status'");
    const char *sub = "{\"op\":\"submit\",";
    char buf[512];
#define SUBMIT(rest) (snprintf(buf, sizeof buf, "%s%s}", sub, rest), buf)
    expect_refused(SUBMIT("\"out\":\"/o\",\"budget\":\"4bits\""), "field 'model' is missing");
    expect_refused(SUBMIT("\"model\":7,\"out\":\"/o\",\"budget\":\"4bits\""), "field 'model' must be a string");
    expect_refused(SUBMIT("\"model\":\"\",\"out\":\"/o\",\"budget\":\"4bits\""), "field 'model' is empty");
    expect_refused(SUBMIT("\"model\":\"m.bin\",\"out\":\"/o\",\"budget\":\"4bits\""), "field 'model' must be an absolute path");
    expect_refused(SUBMIT("\"model\":\"/m\",\"budget\":\"4bits\""), "field 'out' is missing");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"tokenizer\":[],\"budget\":\"4bits\""), "field 'tokenizer' must be a string");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\""), "exactly one of the fields 'budget' and 'budgets'");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"budgets\":[\"1GiB\"]"), "exactly one");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":4"), "field 'budget' must be a string");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budgets\":\"4bits\""), "field 'budgets' must be an array");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budgets\":[]"), "field 'budgets' is empty");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budgets\":[\"1GiB\",3]"), "field 'budgets[1]' must be a string");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budgets\":[\"1GiB\",\"1GiB\"]"), "'1GiB' is listed twice");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"12XB\""), "field 'budget'");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"40bits\""), "bit width must be a number in (0, 32]");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"bits\""), "field 'budget'");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"0B\""), "a zero budget");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"args\":\"--x\""), "field 'args' must be an array");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"args\":[\"--x\",1]"), "field 'args[1]' must be a string");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"args\":[\"--db\",\"/x\"]"), "--db is set by the request's own fields");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"if_changed\":1"), "field 'if_changed' must be true or false");
    expect_refused(SUBMIT("\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"nodes\":4"), "unknown field 'nodes' for op 'submit'");
    expect_refused(SUBMIT("\"model\":\"/m\\u0000x\",\"out\":\"/o\",\"budget\":\"4bits\""), "not JSON");
#undef SUBMIT
    /* oversize: refused before parsing */
    size_t big = LQ_FLEET_MAX_REQUEST + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    lq_fleet_request req;
    expect_error(lq_fleet_request_parse(huge, big, &req), LQ_ERR_RANGE, "over the limit of 65536");
    free(huge);
    /* too many args */
    char *many = malloc(8 * (LQ_FLEET_MAX_ARGS + 2) + 128);
    assert_non_null(many);
    size_t n = (size_t)sprintf(many, "{\"op\":\"submit\",\"model\":\"/m\",\"out\":\"/o\",\"budget\":\"4bits\",\"args\":[");
    for (int i = 0; i <= LQ_FLEET_MAX_ARGS; i++) n += (size_t)sprintf(many + n, "%s\"a\"", i ? "," : "");
    strcpy(many + n, "]}");
    expect_refused(many, "field 'args' has 257 entries (at most 256)");
    free(many);
}

/* Random bytes, and every prefix of a valid request (each an unterminated heap buffer): never
 * accepted by accident in a way that crashes, and nothing leaks. */
static void test_parse_garbage(void **state) {
    (void)state;
    lq_rng rng;
    lq_rng_seed(&rng, 6);
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(lq_rng_u64(&rng) % 200);
        char *bytes = malloc(n ? n : 1);
        assert_non_null(bytes);
        for (size_t k = 0; k < n; k++) bytes[k] = (char)(lq_rng_u64(&rng) & 0xff);
        if (n && i % 3 == 0) bytes[0] = '{';
        lq_fleet_request req;
        if (lq_fleet_request_parse(bytes, n, &req) == LQ_OK) lq_fleet_request_free(&req);
        free(bytes);
    }
    const char *valid = "{\"op\":\"submit\",\"model\":\"/m\",\"budgets\":[\"1GiB\",\"3bits\"],\"out\":\"/o\","
                        "\"args\":[\"--seed\",\"3\"],\"if_changed\":false}";
    size_t len = strlen(valid);
    int accepted = 0;
    for (size_t n = 0; n <= len; n++) {
        char *prefix = malloc(n ? n : 1);
        assert_non_null(prefix);
        memcpy(prefix, valid, n);
        lq_fleet_request req;
        if (lq_fleet_request_parse(prefix, n, &req) == LQ_OK) {
            accepted++;
            lq_fleet_request_free(&req);
        }
        free(prefix);
    }
    assert_int_equal(accepted, 1);   /* only the whole request */
    assert_null(NULL);
    lq_fleet_request zero = {0};
    lq_fleet_request_free(&zero);
    lq_fleet_request_free(NULL);
}

static void test_budgets_and_endpoints(void **state) {
    (void)state;
    const char *flag;
    char value[64];
    assert_ok(lq_fleet_budget_parse("600KiB", &flag, value, sizeof value));
    assert_string_equal(flag, "--budget");
    assert_string_equal(value, "600KiB");
    assert_ok(lq_fleet_budget_parse("2.5bits", &flag, value, sizeof value));
    assert_string_equal(flag, "--target-bits");
    assert_string_equal(value, "2.5");
    expect_error(lq_fleet_budget_parse("-1bits", &flag, value, sizeof value), LQ_ERR_FORMAT, "(0, 32]");
    expect_error(lq_fleet_budget_parse("nanbits", &flag, value, sizeof value), LQ_ERR_FORMAT, "(0, 32]");
    expect_error(lq_fleet_budget_parse("4 bits", &flag, value, sizeof value), LQ_ERR_FORMAT, "(0, 32]");
    expect_error(lq_fleet_budget_parse("", &flag, value, sizeof value), LQ_ERR_FORMAT, "expected a size");

    assert_true(lq_endpoint_is_local("tcp://127.0.0.1:5590"));
    assert_true(lq_endpoint_is_local("tcp://127.1.2.3:1"));
    assert_true(lq_endpoint_is_local("tcp://localhost:5590"));
    assert_true(lq_endpoint_is_local("tcp://[::1]:5590"));
    assert_true(lq_endpoint_is_local("ipc:///tmp/lqd.sock"));
    assert_false(lq_endpoint_is_local("tcp://0.0.0.0:5590"));
    assert_false(lq_endpoint_is_local("tcp://*:5590"));
    assert_false(lq_endpoint_is_local("tcp://10.0.0.5:5590"));
    assert_false(lq_endpoint_is_local("tcp://127.0.0.1.evil.com:5590"));
    assert_false(lq_endpoint_is_local("tcp://eth0:5590"));
    assert_false(lq_endpoint_is_local("tcp://127.0.0.1"));
    assert_false(lq_endpoint_is_local("udp://127.0.0.1:5590"));
    assert_false(lq_endpoint_is_local("tcp://127.0.0.1:1;10.0.0.5:5590"));
}

static int64_t add_job(lq_fleet_queue *q, const char *out, const char *fingerprint) {
    lq_job j = {.model = "/m.bin", .budget = "4bits", .out = (char *)out, .db = "/s/store.db",
                .args_json = "[\"--steps\",\"3\"]", .fingerprint = (char *)fingerprint,
                .launcher = "local"};
    int64_t id = 0;
    assert_ok(lq_fleet_queue_add(q, &j, &id));
    return id;
}

static int64_t count_events(const char *db, int64_t job, const char *event) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT count(*) FROM events WHERE job = ?1 AND event = ?2",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_text(st, 2, event, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static void test_queue_lifecycle(void **state) {
    (void)state;
    const char *path = temp_path("queue.db");
    lq_fleet_queue *q;
    assert_ok(lq_fleet_queue_open(path, &q));
    int64_t a = add_job(q, "/out/a", "1111"), b = add_job(q, "/out/b", "2222");
    assert_true(b > a);
    lq_job *jobs;
    size_t n;
    assert_ok(lq_fleet_queue_list(q, LQ_JOB_QUEUED, &jobs, &n));
    assert_int_equal(n, 2);
    assert_string_equal(jobs[0].args_json, "[\"--steps\",\"3\"]");
    assert_null(jobs[0].tokenizer);
    assert_int_equal(jobs[0].exit_code, -1);
    lq_jobs_free(jobs, n);

    int64_t launch = 0;
    assert_ok(lq_fleet_queue_mark_launching(q, a, &launch));
    assert_int_equal(launch, 1);
    /* a running job is not launched again */
    expect_error(lq_fleet_queue_mark_launching(q, a, &launch), LQ_ERR_RANGE, "not queued any more");
    assert_ok(lq_fleet_queue_set_pid(q, a, 4242));
    lq_job j;
    assert_ok(lq_fleet_queue_get(q, a, &j));
    assert_int_equal(j.state, LQ_JOB_RUNNING);
    assert_int_equal(j.pid, 4242);
    assert_int_equal(j.launches, 1);
    assert_non_null(j.started);
    lq_job_free(&j);
    /* its process vanished: queued again, the next launch is number 2 */
    assert_ok(lq_fleet_queue_requeue(q, a, "test"));
    expect_error(lq_fleet_queue_requeue(q, a, "test"), LQ_ERR_RANGE, "not running");
    assert_ok(lq_fleet_queue_mark_launching(q, a, &launch));
    assert_int_equal(launch, 2);
    assert_ok(lq_fleet_queue_finish(q, a, LQ_JOB_DONE, 0, NULL));
    expect_error(lq_fleet_queue_finish(q, a, LQ_JOB_FAILED, 1, "late"), LQ_ERR_RANGE, "already finished");
    expect_error(lq_fleet_queue_finish(q, b, LQ_JOB_RUNNING, 0, NULL), LQ_ERR_ARG, "not a final state");
    assert_ok(lq_fleet_queue_finish(q, b, LQ_JOB_CANCELLED, -1, "by test"));
    expect_error(lq_fleet_queue_mark_launching(q, b, &launch), LQ_ERR_RANGE, "not queued any more");
    expect_error(lq_fleet_queue_get(q, 999, &j), LQ_ERR_NOT_FOUND, "job 999: no such job");

    int found = 0;
    assert_ok(lq_fleet_queue_last_done(q, "/out/a", &j, &found));
    assert_int_equal(found, 1);
    assert_int_equal(j.id, a);
    assert_int_equal(j.exit_code, 0);
    lq_job_free(&j);
    assert_ok(lq_fleet_queue_last_done(q, "/out/b", &j, &found));
    assert_int_equal(found, 0);
    lq_fleet_queue_close(q);

    /* a second handle (another process's view) sees what was committed */
    assert_int_equal(count_events(path, a, "launch"), 2);
    assert_int_equal(count_events(path, a, "requeue"), 1);
    assert_int_equal(count_events(path, b, "launch"), 0);
    assert_ok(lq_fleet_queue_open(path, &q));
    assert_ok(lq_fleet_queue_get(q, b, &j));
    assert_int_equal(j.state, LQ_JOB_CANCELLED);
    assert_string_equal(j.message, "by test");
    char *json;
    assert_ok(lq_job_json(&j, &json));
    assert_non_null(strstr(json, "\"state\":\"cancelled\""));
    assert_non_null(strstr(json, "\"args\":[\"--steps\",\"3\"]"));
    free(json);
    lq_job_free(&j);
    lq_fleet_queue_close(q);
}

static void test_queue_refuses_other_files(void **state) {
    (void)state;
    const char *text = temp_path("not-a-db");
    write_file(text, "hello, this is not sqlite, honestly not at all", 46);
    lq_fleet_queue *q = NULL;
    assert_int_not_equal(lq_fleet_queue_open(text, &q), LQ_OK);
    assert_null(q);
    assert_non_null(strstr(lq_last_error(), text));
    const char *other = temp_path("other.db");
    sqlite3 *h;
    assert_int_equal(sqlite3_open(other, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    expect_error(lq_fleet_queue_open(other, &q), LQ_ERR_FORMAT, "not an lqd queue");
}

static void test_fingerprint_and_keys(void **state) {
    (void)state;
    const char *model = temp_path("model.bin");
    write_file(model, "weights", 7);
    const char *args[] = {"--steps", "3"};
    char a[17], b[17], c[17], d[17];
    assert_ok(lq_fleet_fingerprint(model, NULL, "4bits", args, 2, a));
    assert_ok(lq_fleet_fingerprint(model, NULL, "4bits", args, 2, b));
    assert_string_equal(a, b);
    assert_ok(lq_fleet_fingerprint(model, NULL, "3bits", args, 2, c));
    assert_string_not_equal(a, c);
    assert_ok(lq_fleet_fingerprint(model, NULL, "4bits", args, 1, c));
    assert_string_not_equal(a, c);
    struct timespec times[2] = {{.tv_sec = 1000000000, .tv_nsec = 0}, {.tv_sec = 1000000000, .tv_nsec = 0}};
    assert_int_equal(utimensat(AT_FDCWD, model, times, 0), 0);
    assert_ok(lq_fleet_fingerprint(model, NULL, "4bits", args, 2, d));
    assert_string_not_equal(a, d);   /* a touched model is new work */
    expect_error(lq_fleet_fingerprint(temp_path("missing.bin"), NULL, "4bits", args, 2, d),
                 LQ_ERR_NOT_FOUND, "model ");

    uint8_t key[32];
    const char *good = temp_path("k.pub");
    write_file(good, "  fnBq:omcAd6qOOWWiH8<b{MM7NG0e{qOrhBS8hR^\n", 43);
    assert_ok(lq_fleet_key_load(good, key));
    const char *bad = temp_path("bad.pub");
    write_file(bad, "short\n", 6);
    expect_error(lq_fleet_key_load(bad, key), LQ_ERR_FORMAT, "not a CurveZMQ key file");
    write_file(bad, "fnBq:omcAd6qOOWWiH8<b{MM7NG0e{qOrhBS8hR\x01", 40);
    expect_error(lq_fleet_key_load(bad, key), LQ_ERR_FORMAT, "not valid Z85");
    expect_error(lq_fleet_key_load(temp_path("none.pub"), key), LQ_ERR_IO, "none.pub");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_budgets_and_endpoints),
        cmocka_unit_test(test_queue_lifecycle),
        cmocka_unit_test(test_queue_refuses_other_files),
        cmocka_unit_test(test_fingerprint_and_keys),
    };
    return cmocka_run_group_tests_name("fleet", tests, create_temp_dir, remove_temp_dir);
}
