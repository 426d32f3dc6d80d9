/* lq-watch — a live view of a running lq-calibrate job (its --progress ZeroMQ endpoint).
 *
 *   lq-watch tcp://127.0.0.1:5557            a bar on a terminal, one line per event otherwise
 *   lq-watch --json ipc:///tmp/lq.sock       the events themselves, one JSON object per line
 *
 * It subscribes, renders each event with the same function rank 0 draws its own stderr with
 * (coordinator/progress.c), and exits when the job does: 0 after "done", 1 after "failed". The
 * job may start before or after the watcher; a late watcher is sent the job's current state at
 * once. Events are advisory: one that does not parse is reported and skipped. */
#include "cli_args.h"
#include "lq_coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define TOOL "lq-watch"
#define MAX_EVENT_BYTES 65536

static void usage(FILE *out) {
    fprintf(out,
            "usage: " TOOL " [--json] [--timeout S] [--follow] ENDPOINT\n"
            "Shows the progress of `lq-calibrate --progress ENDPOINT` (schemas/progress.json).\n"
            "\n"
            "  ENDPOINT      tcp://HOST:PORT or ipc://PATH, as given to lq-calibrate\n"
            "  --json        print each event as its JSON object, one per line\n"
            "  --timeout S   give up (exit 3) after S seconds without an event (default: wait)\n"
            "  --follow      keep watching after a job ends (a requeued or next job)\n"
            "  --help        this text\n"
            "Exit status: 0 the job finished, 1 it failed, 2 bad usage, 3 timeout.\n");
}

int main(int argc, char **argv) {
    const char *endpoint = NULL;
    int json = 0, follow = 0;
    double timeout_s = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--follow")) {
            follow = 1;
        } else if (!strcmp(a, "--timeout")) {
            if (!lq_arg_double(TOOL, a, v, 0.001, 1e9, &timeout_s)) return 2;
            i++;
        } else if (a[0] == '-' || endpoint) {
            fprintf(stderr, TOOL ": unknown argument '%s' (see --help)\n", a);
            return 2;
        } else {
            endpoint = a;
        }
    }
    if (!endpoint) {
        fprintf(stderr, TOOL ": an ENDPOINT is required (see --help)\n");
        return 2;
    }
    /* a watcher only reads, so any address may be watched; the publisher guards what it binds */
    if (lq_progress_endpoint_check(endpoint, "ENDPOINT", 1)) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        return 2;
    }

    void *ctx = zmq_ctx_new();
    void *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    /* retry the connection every 20 ms, not 100: a short job is over in a fraction of a second */
    int linger = 0, reconnect_ms = 20;
    if (!sub || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) ||
        zmq_setsockopt(sub, ZMQ_RECONNECT_IVL, &reconnect_ms, sizeof reconnect_ms) ||
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(sub, endpoint)) {
        fprintf(stderr, TOOL ": %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        if (sub) zmq_close(sub);
        if (ctx) zmq_ctx_term(ctx);
        return 2;
    }

    char *buf = malloc(MAX_EVENT_BYTES);
    int rc = -1, bar_open = 0, tty = isatty(1);
    int64_t last_seq = -1;
    double last_time = -1, last_event = lq_seconds();
    while (rc < 0 && buf) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        long wait_ms = 500;
        if (zmq_poll(&item, 1, wait_ms) < 0) {
            fprintf(stderr, TOOL ": %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
            rc = 2;
            break;
        }
        if (!(item.revents & ZMQ_POLLIN)) {
            if (timeout_s > 0 && lq_seconds() - last_event > timeout_s) {
                if (bar_open) fputc('\n', stdout);
                fprintf(stderr, TOOL ": no event from %s in %.0f s (is lq-calibrate running with "
                        "--progress %s?)\n", endpoint, timeout_s, endpoint);
                rc = 3;
            }
            continue;
        }
        int n = zmq_recv(sub, buf, MAX_EVENT_BYTES, 0);
        if (n < 0) continue;
        last_event = lq_seconds();
        lq_progress_event ev;
        if (n > MAX_EVENT_BYTES) {
            fprintf(stderr, TOOL ": skipping an event of %d bytes (more than %d)\n", n, MAX_EVENT_BYTES);
            continue;
        }
        if (lq_progress_event_parse(buf, (size_t)n, &ev)) {
            fprintf(stderr, TOOL ": skipping an event: %s\n", lq_last_error());
            continue;
        }
        /* the publisher repeats its latest event while it waits: show each one once */
        if (ev.seq == last_seq && ev.time == last_time) continue;
        last_seq = ev.seq, last_time = ev.time;
        if (json) {
            printf("%.*s\n", n, buf);
            fflush(stdout);
        } else {
            lq_progress_render(stdout, tty, "lq-calibrate", &ev, &bar_open);
        }
        if (!follow && ev.stage == LQ_STAGE_DONE) rc = 0;
        if (!follow && ev.stage == LQ_STAGE_FAILED) rc = 1;
    }
    if (!buf) {
        fprintf(stderr, TOOL ": out of memory\n");
        rc = 2;
    }
    if (bar_open) fputc('\n', stdout);
    free(buf);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
