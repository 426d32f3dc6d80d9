/* Progress events: one JSON object per ZeroMQ message (schemas/progress.json), published by rank 0
 * and rendered on its stderr; lq-watch parses and renders the same events.
 *
 * Why XPUB rather than PUB: a PUB socket silently drops what it sends before a subscriber's
 * subscription arrives, so a watcher started a moment after the job (or attaching hours into
 * it) would see nothing until the next result. XPUB hands rank 0 each subscription, and rank 0
 * answers it with the latest event, so a watcher shows the whole state at once. */
#include "lq_coord.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static const char *const stage_names[] = {"prepare", "measure", "solve", "assemble",
                                          "eval",    "done",    "failed"};

const char *lq_stage_name(lq_stage s) {
    return (unsigned)s < sizeof stage_names / sizeof *stage_names ? stage_names[s] : "?";
}

void lq_progress_event_init(lq_progress_event *ev, lq_stage stage) {
    memset(ev, 0, sizeof *ev);
    ev->stage = stage;
    ev->eta_s = -1, ev->layer = -1, ev->error = -1, ev->seconds = -1;
    ev->bytes = -1, ev->budget_bytes = -1, ev->perplexity = -1;
}

/* ---- JSON ---------------------------------------------------------------------------------- */
lq_status lq_progress_event_json(const lq_progress_event *ev, char **out) {
    json_t *o = json_pack("{s:i, s:I, s:f, s:I, s:s, s:I, s:I, s:f}", "v", 1, "seq",
                          (json_int_t)ev->seq, "time", ev->time, "run", (json_int_t)ev->run,
                          "stage", lq_stage_name(ev->stage), "done", (json_int_t)ev->done,
                          "total", (json_int_t)ev->total, "elapsed_s", ev->elapsed_s);
    if (!o) return lq_fail(LQ_ERR_NOMEM, "progress event: out of memory");
    int bad = json_object_set_new(o, "eta_s", ev->eta_s >= 0 ? json_real(ev->eta_s) : json_null());
    if (ev->layer >= 0) bad |= json_object_set_new(o, "layer", json_integer(ev->layer));
    if (ev->tensor[0]) bad |= json_object_set_new(o, "tensor", json_string(ev->tensor));
    if (ev->config[0]) bad |= json_object_set_new(o, "config", json_string(ev->config));
    if (ev->error >= 0) bad |= json_object_set_new(o, "error", json_real(ev->error));
    if (ev->seconds >= 0) bad |= json_object_set_new(o, "seconds", json_real(ev->seconds));
    if (ev->bytes >= 0) bad |= json_object_set_new(o, "bytes", json_integer(ev->bytes));
    if (ev->host[0]) bad |= json_object_set_new(o, "host", json_string(ev->host));
    if (ev->budget_bytes >= 0)
        bad |= json_object_set_new(o, "budget_bytes", json_integer(ev->budget_bytes));
    if (ev->perplexity > 0) bad |= json_object_set_new(o, "perplexity", json_real(ev->perplexity));
    if (ev->out[0]) bad |= json_object_set_new(o, "out", json_string(ev->out));
    if (ev->message[0]) bad |= json_object_set_new(o, "message", json_string(ev->message));
    *out = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    /* json_string refuses invalid UTF-8 (a file name in another encoding): say which event */
    if (!*out) return lq_fail(LQ_ERR_FORMAT, "progress event (%s): a string is not UTF-8",
                              lq_stage_name(ev->stage));
    return LQ_OK;
}

static lq_status get_int(json_t *o, const char *key, int required, int64_t lo, int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return required ? lq_fail(LQ_ERR_FORMAT, "progress event: no \"%s\"", key) : LQ_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo)
        return lq_fail(LQ_ERR_FORMAT, "progress event: \"%s\" is not an integer >= %lld", key,
                       (long long)lo);
    *out = json_integer_value(v);
    return LQ_OK;
}

static lq_status get_number(json_t *o, const char *key, int required, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return required ? lq_fail(LQ_ERR_FORMAT, "progress event: no \"%s\"", key) : LQ_OK;
    if (json_is_null(v) && !required) return LQ_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
        return lq_fail(LQ_ERR_FORMAT, "progress event: \"%s\" is not a number >= 0", key);
    *out = json_number_value(v);
    return LQ_OK;
}

static lq_status get_string(json_t *o, const char *key, char *out, size_t cap) {
    json_t *v = json_object_get(o, key);
    if (!v) return LQ_OK;
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v))
        return lq_fail(LQ_ERR_FORMAT, "progress event: \"%s\" is not a string of < %zu bytes", key,
                       cap);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return LQ_OK;
}

lq_status lq_progress_event_parse(const char *bytes, size_t len, lq_progress_event *ev) {
    lq_progress_event_init(ev, LQ_STAGE_PREPARE);
    json_error_t jerr;
    json_t *o = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) return lq_fail(LQ_ERR_FORMAT, "progress event: not JSON: %s", jerr.text);
    lq_status st = LQ_OK;
    int64_t version = 0, layer = -1;
    if (!json_is_object(o)) st = lq_fail(LQ_ERR_FORMAT, "progress event: not a JSON object");
    if (!st) st = get_int(o, "v", 1, 0, &version);
    if (!st && version != 1)
        st = lq_fail(LQ_ERR_UNSUPPORTED, "progress event: version %lld (this reader knows 1)",
                     (long long)version);
    if (!st) st = get_int(o, "seq", 1, 0, &ev->seq);
    if (!st) st = get_number(o, "time", 1, &ev->time);
    if (!st) st = get_int(o, "run", 1, 0, &ev->run);
    if (!st) st = get_int(o, "done", 1, 0, &ev->done);
    if (!st) st = get_int(o, "total", 1, 0, &ev->total);
    if (!st) st = get_number(o, "elapsed_s", 1, &ev->elapsed_s);
    if (!st) st = get_number(o, "eta_s", 0, &ev->eta_s);
    if (!st) st = get_int(o, "layer", 0, 0, &layer);
    if (!st && layer > 1 << 30) st = lq_fail(LQ_ERR_FORMAT, "progress event: \"layer\" too large");
    ev->layer = (int)layer;
    if (!st) st = get_number(o, "error", 0, &ev->error);
    if (!st) st = get_number(o, "seconds", 0, &ev->seconds);
    if (!st) st = get_int(o, "bytes", 0, 0, &ev->bytes);
    if (!st) st = get_int(o, "budget_bytes", 0, 0, &ev->budget_bytes);
    if (!st) st = get_number(o, "perplexity", 0, &ev->perplexity);
    if (!st) st = get_string(o, "tensor", ev->tensor, sizeof ev->tensor);
    if (!st) st = get_string(o, "config", ev->config, sizeof ev->config);
    if (!st) st = get_string(o, "host", ev->host, sizeof ev->host);
    if (!st) st = get_string(o, "out", ev->out, sizeof ev->out);
    if (!st) st = get_string(o, "message", ev->message, sizeof ev->message);
    if (!st) {
        const char *stage = json_string_value(json_object_get(o, "stage"));
        int k = 0, n = (int)(sizeof stage_names / sizeof *stage_names);
        while (stage && k < n && strcmp(stage, stage_names[k])) k++;
        if (!stage || k == n)
            st = lq_fail(LQ_ERR_FORMAT, "progress event: \"stage\" is not one of prepare, "
                                        "measure, solve, assemble, eval, done, failed");
        ev->stage = (lq_stage)k;
    }
    json_decref(o);
    return st;
}

/* ---- rendering ------------------------------------------------------------------------------ */
static void format_size(int64_t bytes, char *out, size_t cap) {
    if (bytes < 0) snprintf(out, cap, "?");
    else lq_size_format((uint64_t)bytes, out, cap);
}

void lq_progress_render(FILE *f, int tty, const char *tool, const lq_progress_event *ev,
                        int *bar_open) {
    char eta[48] = "";
    if (ev->eta_s >= 0) snprintf(eta, sizeof eta, ", ~%.0f s left", ev->eta_s);
    if (ev->stage == LQ_STAGE_MEASURE && tty) {
        enum { WIDTH = 30 };
        char bar[WIDTH + 1];
        int filled = ev->total > 0 ? (int)((double)ev->done / (double)ev->total * WIDTH) : 0;
        for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = '\0';
        /* \033[K clears what a longer previous line left behind */
        fprintf(f, "\r%s: [%s] %lld/%lld results (%.0f%%), %.0f s%s  %s %s\033[K", tool, bar,
                (long long)ev->done, (long long)ev->total,
                ev->total > 0 ? 100.0 * (double)ev->done / (double)ev->total : 0.0, ev->elapsed_s,
                eta, ev->tensor, ev->config);
        *bar_open = 1;
        fflush(f);
        return;
    }
    if (*bar_open) fputc('\n', f), *bar_open = 0;
    char size[64], budget[64];
    format_size(ev->bytes, size, sizeof size);
    format_size(ev->budget_bytes, budget, sizeof budget);
    switch (ev->stage) {
    case LQ_STAGE_PREPARE:
        if (ev->total > 0)
            fprintf(f, "%s: run %lld: %lld results left to measure\n", tool, (long long)ev->run,
                    (long long)ev->total);
        else
            fprintf(f, "%s: run %lld: every result is measured already\n", tool, (long long)ev->run);
        break;
    case LQ_STAGE_MEASURE:
        if (!ev->tensor[0]) {   /* a heartbeat or a late joiner's first view */
            fprintf(f, "%s: [%lld/%lld] measuring, %.0f s elapsed%s\n", tool, (long long)ev->done,
                    (long long)ev->total, ev->elapsed_s, eta);
            break;
        }
        fprintf(f, "%s: [%lld/%lld] %s %s: relative output error %.5f, %s, %.1f s on %s%s\n", tool,
                (long long)ev->done, (long long)ev->total, ev->tensor, ev->config, ev->error, size,
                ev->seconds, ev->host[0] ? ev->host : "?", eta);
        break;
    case LQ_STAGE_SOLVE:
        fprintf(f, "%s: solving: the decoder linears and the rest may take %s\n", tool, budget);
        break;
    case LQ_STAGE_ASSEMBLE:
        fprintf(f, "%s: assembled %s: model.safetensors %s\n", tool, ev->out, size);
        break;
    case LQ_STAGE_EVAL:
        fprintf(f, "%s: measuring perplexity of %s\n", tool, ev->out);
        break;
    case LQ_STAGE_DONE:
        if (ev->perplexity > 0)
            fprintf(f, "%s: done: %s (model.safetensors %s, perplexity %.4f) in %.1f s\n", tool,
                    ev->out, size, ev->perplexity, ev->elapsed_s);
        else
            fprintf(f, "%s: done: %s (model.safetensors %s) in %.1f s\n", tool, ev->out, size,
                    ev->elapsed_s);
        break;
    case LQ_STAGE_FAILED:
        fprintf(f, "%s: failed after %.1f s: %s\n", tool, ev->elapsed_s, ev->message);
        break;
    }
    fflush(f);
}

/* ---- the publisher ---------------------------------------------------------------------------- */
int lq_endpoint_is_local(const char *endpoint) {
    if (!strncmp(endpoint, "ipc://", 6) || !strncmp(endpoint, "inproc://", 9)) return 1;
    if (strncmp(endpoint, "tcp://", 6)) return 0;
    const char *host = endpoint + 6;
    /* ZeroMQ's "source;destination" form names a second host */
    if (strchr(host, ';')) return 0;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host || !colon[1]) return 0;
    size_t n = (size_t)(colon - host);
    if ((n == 9 && !memcmp(host, "localhost", 9)) || (n == 5 && !memcmp(host, "[::1]", 5))) return 1;
    if (n < 4 || memcmp(host, "127.", 4)) return 0;
    for (size_t i = 4; i < n; i++)
        if (host[i] != '.' && (host[i] < '0' || host[i] > '9')) return 0;
    return 1;
}

lq_status lq_progress_endpoint_check(const char *endpoint, const char *flag, int allow_remote) {
    if (!endpoint || !*endpoint) return lq_fail(LQ_ERR_ARG, "%s: empty endpoint", flag);
    if (strncmp(endpoint, "tcp://", 6) && strncmp(endpoint, "ipc://", 6))
        return lq_fail(LQ_ERR_ARG, "%s %s: expected tcp://HOST:PORT or ipc://PATH", flag, endpoint);
    if (!allow_remote && !lq_endpoint_is_local(endpoint))
        return lq_fail(LQ_ERR_ARG,
                       "%s %s: not a loopback address; events name the model and output paths, "
                       "so publishing beyond this host needs --progress-remote (or use "
                       "tcp://127.0.0.1:PORT)", flag, endpoint);
    return LQ_OK;
}

struct lq_progress {
    void *zmq, *socket;        /* NULL when rendering only */
    FILE *render_to;
    int tty, bar_open;
    const char *tool;
    int64_t seq;
    char *latest;              /* the latest event's JSON, for heartbeats and new subscribers */
    double last_send;
    int send_failed;
};

lq_status lq_progress_open(const char *endpoint, int allow_remote, FILE *render_to, int tty,
                           const char *tool, lq_progress **out) {
    *out = NULL;
    lq_progress *p = calloc(1, sizeof *p);
    if (!p) return lq_fail(LQ_ERR_NOMEM, "out of memory");
    p->render_to = render_to, p->tty = tty, p->tool = tool;
    if (endpoint) {
        lq_status st = lq_progress_endpoint_check(endpoint, "--progress", allow_remote);
        if (st) {
            free(p);
            return st;
        }
        int verbose = 1, hwm = 100000;
        p->zmq = zmq_ctx_new();
        p->socket = p->zmq ? zmq_socket(p->zmq, ZMQ_XPUB) : NULL;
        /* verbose: every subscription reaches us, not only a topic's first, so each new
         * watcher gets its welcome event */
        if (!p->socket || zmq_setsockopt(p->socket, ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose) ||
            zmq_setsockopt(p->socket, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
            zmq_bind(p->socket, endpoint)) {
            int e = zmq_errno();
            lq_progress_close(p);
            return lq_fail(LQ_ERR_IO, "--progress %s: %s", endpoint, zmq_strerror(e));
        }
    }
    *out = p;
    return LQ_OK;
}

static void send_latest(lq_progress *p) {
    if (!p->socket || !p->latest || p->send_failed) return;
    /* DONTWAIT: a subscriber that cannot keep up loses events (EAGAIN at the high-water mark)
     * rather than stalling the job */
    if (zmq_send(p->socket, p->latest, strlen(p->latest), ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN) {
        LQ_WARN("progress: sending failed (%s); publishing stops, the job goes on",
                zmq_strerror(zmq_errno()));
        p->send_failed = 1;
    }
    p->last_send = lq_seconds();
}

/* Subscriptions arrive as messages on the XPUB socket: byte 1 then the topic. */
static void answer_subscribers(lq_progress *p) {
    if (!p->socket) return;
    char buf[256];
    int joined = 0;
    for (;;) {
        int n = zmq_recv(p->socket, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0) break;
        if (n >= 1 && buf[0] == 1) joined = 1;
    }
    if (joined) send_latest(p);
}

void lq_progress_publish(lq_progress *p, lq_progress_event *ev) {
    if (!p) return;
    ev->seq = p->seq++;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ev->time = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
    if (p->render_to) lq_progress_render(p->render_to, p->tty, p->tool, ev, &p->bar_open);
    if (!p->socket) return;
    answer_subscribers(p);
    char *json = NULL;
    if (lq_progress_event_json(ev, &json)) {
        LQ_WARN("%s", lq_last_error());
        return;
    }
    free(p->latest);
    p->latest = json;
    send_latest(p);
}

void lq_progress_tick(lq_progress *p) {
    if (!p || !p->socket) return;
    answer_subscribers(p);
    if (lq_seconds() - p->last_send >= 2.0) send_latest(p);
}

void lq_progress_close(lq_progress *p) {
    if (!p) return;
    if (p->bar_open && p->render_to) fputc('\n', p->render_to);
    if (p->socket) {
        /* a watcher started with the job connects some milliseconds after the bind; a job that
         * ends sooner (a re-solve takes 0.1 s) would otherwise vanish unseen, so the endpoint
         * stays open a moment and answers subscriptions with the last event */
        double until = lq_seconds() + 0.3;
        while (lq_seconds() < until) {
            answer_subscribers(p);
            struct timespec pause = {0, 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        int linger_ms = 1000;
        zmq_setsockopt(p->socket, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
        zmq_close(p->socket);
    }
    if (p->zmq) zmq_ctx_term(p->zmq);
    free(p->latest);
    free(p);
}
