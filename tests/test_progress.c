/* Progress events (coordinator/progress.c): the JSON round trip, the parser's refusals, the
 * endpoint policy, both renderings, and the publisher end to end over ipc — including the
 * XPUB welcome that shows a late subscriber the latest state without waiting for a new event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define LQ_TEST_NAME "progress"
#include "test_util.h"

#include "lq_coord.h"

static lq_progress_event result_event(void) {
    lq_progress_event ev;
    lq_progress_event_init(&ev, LQ_STAGE_MEASURE);
    ev.seq = 7, ev.time = 1790000000.25, ev.run = 3, ev.done = 40, ev.total = 105;
    ev.elapsed_s = 12.5, ev.eta_s = 20.0, ev.layer = 4, ev.error = 0.0123, ev.seconds = 0.4;
    ev.bytes = 2345;
    snprintf(ev.tensor, sizeof ev.tensor, "model.layers.4.mlp.up_proj");
    snprintf(ev.config, sizeof ev.config, "24/10");
    snprintf(ev.host, sizeof ev.host, "node7");
    return ev;
}

static void test_json_round_trip(void **state) {
    (void)state;
    lq_progress_event ev = result_event(), back;
    char *json = NULL;
    assert_int_equal(lq_progress_event_json(&ev, &json), LQ_OK);
    assert_non_null(strstr(json, "\"stage\":\"measure\""));
    assert_null(strstr(json, "perplexity"));   /* unknown numbers are left out */
    assert_null(strstr(json, "message"));
    /* not NUL-terminated: the parser must use the length only */
    size_t n = strlen(json);
    char *copy = malloc(n);
    memcpy(copy, json, n);
    assert_int_equal(lq_progress_event_parse(copy, n, &back), LQ_OK);
    free(copy);
    free(json);
    assert_int_equal(back.stage, LQ_STAGE_MEASURE);
    assert_int_equal(back.seq, 7);
    assert_int_equal(back.run, 3);
    assert_int_equal(back.done, 40);
    assert_int_equal(back.total, 105);
    assert_int_equal(back.layer, 4);
    assert_int_equal(back.bytes, 2345);
    assert_int_equal(back.budget_bytes, -1);
    assert_true(back.perplexity < 0);
    assert_true(back.error == 0.0123 && back.eta_s == 20.0 && back.time == 1790000000.25);
    assert_string_equal(back.tensor, "model.layers.4.mlp.up_proj");
    assert_string_equal(back.config, "24/10");
    assert_string_equal(back.host, "node7");

    lq_progress_event done;
    lq_progress_event_init(&done, LQ_STAGE_DONE);
    done.perplexity = 5.25, done.bytes = 1000;
    snprintf(done.out, sizeof done.out, "/models/x");
    assert_int_equal(lq_progress_event_json(&done, &json), LQ_OK);
    assert_non_null(strstr(json, "\"eta_s\":null"));
    assert_int_equal(lq_progress_event_parse(json, strlen(json), &back), LQ_OK);
    free(json);
    assert_int_equal(back.stage, LQ_STAGE_DONE);
    assert_true(back.perplexity == 5.25 && back.eta_s < 0);
    assert_string_equal(back.out, "/models/x");
}

static void refused(const char *text, const char *why) {
    lq_progress_event ev;
    lq_status st = lq_progress_event_parse(text, strlen(text), &ev);
    if (st == LQ_OK) fprintf(stderr, "accepted: %s\n", text);
    assert_int_not_equal(st, LQ_OK);
    if (!strstr(lq_last_error(), why)) fprintf(stderr, "'%s' -> %s\n", text, lq_last_error());
    assert_non_null(strstr(lq_last_error(), why));
}

#define BASE "\"seq\":1,\"time\":2.5,\"run\":1,\"done\":0,\"total\":5,\"elapsed_s\":1"

static void test_parse_refusals(void **state) {
    (void)state;
    refused("", "not JSON");
    refused("{\"v\":1", "not JSON");
    refused("[1,2]", "not a JSON object");
    refused("{" BASE ",\"stage\":\"measure\"}", "no \"v\"");
    refused("{\"v\":2," BASE ",\"stage\":\"measure\"}", "version 2");
    refused("{\"v\":1,\"time\":2.5,\"run\":1,\"done\":0,\"total\":5,\"elapsed_s\":1,\"stage\":\"solve\"}",
            "no \"seq\"");
    refused("{\"v\":1," BASE ",\"stage\":\"sleep\"}", "\"stage\" is not one of");
    refused("{\"v\":1," BASE "}", "\"stage\" is not one of");
    refused("{\"v\":1," BASE ",\"stage\":\"done\",\"bytes\":-4}", "\"bytes\" is not an integer >= 0");
    refused("{\"v\":1," BASE ",\"stage\":\"done\",\"bytes\":\"4\"}", "\"bytes\" is not an integer");
    refused("{\"v\":1," BASE ",\"stage\":\"done\",\"error\":-1.5}", "\"error\" is not a number >= 0");
    refused("{\"v\":1," BASE ",\"stage\":\"done\",\"tensor\":7}", "\"tensor\" is not a string");
    refused("{\"v\":1," BASE ",\"stage\":\"done\",\"tensor\":\"a\\u0000b\"}", "not JSON");
    refused("{\"v\":1,\"v\":1," BASE ",\"stage\":\"done\"}", "not JSON");
    char big[300];
    memset(big, 'x', sizeof big);
    char text[512];
    snprintf(text, sizeof text, "{\"v\":1," BASE ",\"stage\":\"done\",\"config\":\"%.*s\"}", 200, big);
    refused(text, "\"config\" is not a string of < 16 bytes");
}

static void test_endpoint_policy(void **state) {
    (void)state;
    const char *local[] = {"tcp://127.0.0.1:5557", "tcp://127.1.2.3:1", "tcp://localhost:9",
                           "tcp://[::1]:5557", "ipc:///tmp/lq.sock"};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        assert_int_equal(lq_progress_endpoint_check(local[i], "--progress", 0), LQ_OK);
    const char *remote[] = {"tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://10.0.0.1:5557",
                            "tcp://127.0.0.1.evil.com:5", "tcp://localhost.example:5", "tcp://eth0:5",
                            "tcp://127.0.0.1:1;10.0.0.5:5557"};
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
        assert_int_equal(lq_progress_endpoint_check(remote[i], "--progress", 0), LQ_ERR_ARG);
        assert_non_null(strstr(lq_last_error(), "--progress-remote"));
        assert_int_equal(lq_progress_endpoint_check(remote[i], "--progress", 1), LQ_OK);
    }
    assert_int_equal(lq_progress_endpoint_check("udp://127.0.0.1:5", "--progress", 1), LQ_ERR_ARG);
    assert_int_equal(lq_progress_endpoint_check("", "--progress", 1), LQ_ERR_ARG);
    assert_int_equal(lq_progress_endpoint_check("tcp://127.0.0.1", "--progress", 0), LQ_ERR_ARG);
}

static char *render(int tty, const lq_progress_event *evs, int n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int bar_open = 0;
    for (int i = 0; i < n; i++) lq_progress_render(f, tty, "lq-calibrate", &evs[i], &bar_open);
    fclose(f);
    return text;
}

static void test_render(void **state) {
    (void)state;
    lq_progress_event evs[2];
    evs[0] = result_event();
    lq_progress_event_init(&evs[1], LQ_STAGE_FAILED);
    evs[1].elapsed_s = 3;
    snprintf(evs[1].message, sizeof evs[1].message, "rank 2: disk full");
    char *log = render(0, evs, 2);
    assert_non_null(strstr(log, "lq-calibrate: [40/105] model.layers.4.mlp.up_proj 24/10: relative "
                                "output error 0.01230"));
    assert_non_null(strstr(log, "on node7, ~20 s left\n"));
    assert_non_null(strstr(log, "\nlq-calibrate: failed after 3.0 s: rank 2: disk full\n"));
    assert_null(strchr(log, '\r'));
    free(log);
    char *bar = render(1, evs, 2);
    /* 40/105 of 30 cells = 11 filled; the failure starts on a line of its own */
    assert_non_null(strstr(bar, "\rlq-calibrate: [###########...................] 40/105 results (38%)"));
    assert_non_null(strstr(bar, "\033[K\nlq-calibrate: failed"));
    free(bar);
}

/* The publisher over ipc: a subscriber connected before the events gets them all in order; one
 * that connects after the last event still gets that event (the welcome), without a new one. */
static void test_publish_and_late_subscriber(void **state) {
    (void)state;
    char endpoint[PATH_MAX + 16];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/p.sock", temp_dir);
    lq_progress *p = NULL;
    assert_int_equal(lq_progress_open(endpoint, 0, NULL, 0, "t", &p), LQ_OK);
    lq_progress *refused_remote = NULL;
    assert_int_equal(lq_progress_open("tcp://0.0.0.0:5557", 0, NULL, 0, "t", &refused_remote),
                     LQ_ERR_ARG);
    assert_null(refused_remote);

    void *ctx = zmq_ctx_new();
    void *early = zmq_socket(ctx, ZMQ_SUB);
    int timeout_ms = 5000;
    zmq_setsockopt(early, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(early, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(early, endpoint), 0);
    /* wait until the publisher has the subscription: tick answers it with a welcome once an
     * event exists, so publish a first one and read until it arrives */
    lq_progress_event ev;
    lq_progress_event_init(&ev, LQ_STAGE_PREPARE);
    ev.total = 3;
    lq_progress_publish(p, &ev);
    char buf[4096];
    lq_progress_event got;
    int n = -1;
    for (int tries = 0; tries < 100 && n < 0; tries++) {
        lq_progress_tick(p);
        n = zmq_recv(early, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0) usleep(20000);
    }
    assert_true(n > 0);
    assert_int_equal(lq_progress_event_parse(buf, (size_t)n, &got), LQ_OK);
    assert_int_equal(got.stage, LQ_STAGE_PREPARE);
    for (int k = 1; k <= 3; k++) {
        lq_progress_event_init(&ev, LQ_STAGE_MEASURE);
        ev.done = k, ev.total = 3;
        lq_progress_publish(p, &ev);
    }
    for (int k = 1; k <= 3; k++) {
        n = zmq_recv(early, buf, sizeof buf, 0);
        assert_true(n > 0);
        assert_int_equal(lq_progress_event_parse(buf, (size_t)n, &got), LQ_OK);
        assert_int_equal(got.stage, LQ_STAGE_MEASURE);
        assert_int_equal(got.done, k);
        assert_int_equal(got.seq, k);
    }

    void *late = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(late, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(late, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(late, endpoint), 0);
    n = -1;
    for (int tries = 0; tries < 100 && n < 0; tries++) {
        lq_progress_tick(p);   /* no new event: only the welcome can arrive */
        n = zmq_recv(late, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0) usleep(20000);
    }
    assert_true(n > 0);
    assert_int_equal(lq_progress_event_parse(buf, (size_t)n, &got), LQ_OK);
    assert_int_equal(got.seq, 3);
    assert_int_equal(got.done, 3);

    zmq_close(early);
    zmq_close(late);
    zmq_ctx_term(ctx);
    lq_progress_close(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_endpoint_policy),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_publish_and_late_subscriber),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
