/* lq-fleet: the client of the fleet daemon lqd (coordinator/lqd.c, docs/FLEET.md): submit jobs,
 * ask their status, cancel them, submit a manifest (models × budgets, only what changed), make
 * CurveZMQ key pairs, and send raw bytes (to check lqd's refusals).
 *
 * The socket is a REQ with ZMQ_REQ_RELAXED and ZMQ_REQ_CORRELATE, so `raw` can go on after a
 * request whose reply never came. A socket monitor reports a refused CurveZMQ handshake at once
 * instead of letting the client wait out its timeout. */
#include "lq_fleet.h"
#include "cli_args.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define TOOL "lq-fleet"

static void usage(FILE *out) {
    fprintf(out,
            "usage: " TOOL " [--endpoint E] [--server-key FILE --key FILE] [--timeout S] [--json]\n"
            "                COMMAND ...\n"
            "The client of the fleet daemon lqd (docs/FLEET.md).\n"
            "\n"
            "commands:\n"
            "  submit --model PATH [--tokenizer FILE] --out DIR --budget B [--budget B ...]\n"
            "         [--db FILE] [--if-changed] [-- LQ-CALIBRATE FLAGS...]\n"
            "                      queue one job per budget (B: a size such as 600KiB, or NNbits);\n"
            "                      with one budget the output is DIR, with several DIR/<budget>\n"
            "  status [JOB]        every job, or one\n"
            "  cancel JOB          a queued job is dropped, a running one stopped\n"
            "  manifest FILE.json  submit every (model, budget) pair of a manifest whose inputs\n"
            "                      changed since its last done job; the rest are skipped\n"
            "  keygen PREFIX       a CurveZMQ key pair: PREFIX.key (secret, mode 0600), PREFIX.pub\n"
            "  raw [--multipart] FILE...\n"
            "                      send each FILE's bytes as one request (or all as the frames of\n"
            "                      one message) and print each reply: for testing lqd's refusals\n"
            "\n"
            "options:\n"
            "  --endpoint E        lqd's endpoint (default " LQ_FLEET_DEFAULT_ENDPOINT ")\n"
            "  --server-key FILE   lqd's public key (its --curve-secret's .pub): use CurveZMQ\n"
            "  --key FILE          this client's secret key (from keygen; its .pub must be in\n"
            "                      lqd's --curve-clients directory)\n"
            "  --timeout S         seconds to wait for a reply (default 10)\n"
            "  --json              print lqd's replies as JSON\n"
            "  --help              this text\n"
            "Exit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.\n");
}

typedef struct {
    const char *endpoint, *server_key, *key;
    double timeout;
    int json;
} client_options;

typedef struct {
    void *ctx, *sock, *monitor;
    const client_options *o;
} client;

static int client_open(client *c, const client_options *o) {
    memset(c, 0, sizeof *c);
    c->o = o;
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_REQ);
    int one = 1, linger = 0;
    zmq_setsockopt(c->sock, ZMQ_REQ_RELAXED, &one, sizeof one);
    zmq_setsockopt(c->sock, ZMQ_REQ_CORRELATE, &one, sizeof one);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (o->server_key) {
        uint8_t server[32], secret[32];
        char secret_text[41], public_text[41];
        if (lq_fleet_key_load(o->server_key, server) || lq_fleet_key_load(o->key, secret)) {
            fprintf(stderr, TOOL ": %s\n", lq_last_error());
            return 0;
        }
        zmq_z85_encode(secret_text, secret, 32);
        if (zmq_curve_public(public_text, secret_text) != 0) {
            fprintf(stderr, TOOL ": --key %s: %s\n", o->key, zmq_strerror(zmq_errno()));
            return 0;
        }
        uint8_t public_key[32];
        zmq_z85_decode(public_key, public_text);
        zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server, 32);
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, public_key, 32);
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, secret, 32);
    }
    const char *monitor_ep = "inproc://lq-fleet-monitor";   /* one client per process */
    zmq_socket_monitor(c->sock, monitor_ep,
                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    c->monitor = zmq_socket(c->ctx, ZMQ_PAIR);
    zmq_connect(c->monitor, monitor_ep);
    if (zmq_connect(c->sock, o->endpoint) != 0) {
        fprintf(stderr, TOOL ": --endpoint %s: %s\n", o->endpoint, zmq_strerror(zmq_errno()));
        return 0;
    }
    return 1;
}

static void client_close(client *c) {
    if (c->sock) zmq_close(c->sock);
    if (c->monitor) zmq_close(c->monitor);
    if (c->ctx) zmq_ctx_term(c->ctx);
}

/* Sends one message of n frames and waits for the reply (malloc'ed, NUL-terminated) or
 * reports why none came. */
static char *client_call(client *c, const char *const *frames, const size_t *lens, int n) {
    double deadline = lq_seconds() + c->o->timeout;
    /* a REQ socket blocks in send while it has no usable connection, which is the state a
     * refused handshake leaves it in: send without waiting, and watch the monitor meanwhile */
    int sent = 0;
    for (;;) {
        double left = deadline - lq_seconds();
        if (left <= 0) break;
        if (!sent) {
            if (zmq_send(c->sock, frames[0], lens[0], (n > 1 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) >= 0) {
                for (int i = 1; i < n; i++)   /* once the first frame is queued, the rest follow */
                    zmq_send(c->sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
                sent = 1;
            } else if (zmq_errno() != EAGAIN) {
                fprintf(stderr, TOOL ": sending to %s: %s\n", c->o->endpoint, zmq_strerror(zmq_errno()));
                return NULL;
            }
        }
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->monitor, 0, ZMQ_POLLIN, 0}};
        long wait_ms = sent ? (long)(left * 1000) + 1 : 20;
        int got = zmq_poll(items, 2, wait_ms);
        if (got < 0 && zmq_errno() != EINTR) break;
        if (got > 0 && (items[1].revents & ZMQ_POLLIN)) {
            zmq_msg_t ev;
            zmq_msg_init(&ev);
            uint16_t event = 0;
            uint32_t value = 0;
            if (zmq_msg_recv(&ev, c->monitor, 0) >= 6) {
                memcpy(&event, zmq_msg_data(&ev), 2);
                memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
            }
            int more = zmq_msg_more(&ev);
            zmq_msg_close(&ev);
            while (more) {   /* the endpoint frame */
                zmq_msg_init(&ev);
                zmq_msg_recv(&ev, c->monitor, 0);
                more = zmq_msg_more(&ev);
                zmq_msg_close(&ev);
            }
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
                fprintf(stderr, TOOL ": %s refused this client: CurveZMQ authentication failed "
                        "(status %u; is this key's .pub in lqd's --curve-clients?)\n",
                        c->o->endpoint, value);
                return NULL;
            }
            fprintf(stderr, TOOL ": handshake with %s failed (%s, code 0x%x): %s\n", c->o->endpoint,
                    event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "protocol error" : "no detail",
                    value,
                    c->o->server_key ? "the server may not use CurveZMQ, or its key differs from --server-key"
                                     : "the server requires CurveZMQ: pass --server-key and --key");
            return NULL;
        }
        if (sent && got > 0 && (items[0].revents & ZMQ_POLLIN)) {
            zmq_msg_t reply;
            zmq_msg_init(&reply);
            if (zmq_msg_recv(&reply, c->sock, 0) < 0) {
                zmq_msg_close(&reply);
                break;
            }
            size_t len = zmq_msg_size(&reply);
            char *text = malloc(len + 1);
            if (text) {
                memcpy(text, zmq_msg_data(&reply), len);
                text[len] = '\0';
            }
            zmq_msg_close(&reply);
            return text;
        }
    }
    fprintf(stderr, TOOL ": %s %s within %g s (is lqd running there? a CurveZMQ server "
            "gives no answer to a client without keys)\n", sent ? "no reply from" : "no connection to",
            c->o->endpoint, c->o->timeout);
    return NULL;
}

/* A request's reply as JSON; prints lqd's error and returns NULL when it is not ok. */
static json_t *call_json(client *c, const char *request) {
    size_t len = strlen(request);
    char *text = client_call(c, &request, &len, 1);
    if (!text) return NULL;
    json_error_t jerr;
    json_t *reply = json_loads(text, 0, &jerr);
    if (!reply || !json_is_object(reply)) {
        fprintf(stderr, TOOL ": %s answered something that is not a JSON object: %.200s\n",
                c->o->endpoint, text);
        free(text);
        json_decref(reply);
        return NULL;
    }
    if (c->o->json) printf("%s\n", text);
    free(text);
    if (!json_is_true(json_object_get(reply, "ok"))) {
        json_t *e = json_object_get(reply, "error");
        fprintf(stderr, TOOL ": lqd: %s\n", json_is_string(e) ? json_string_value(e) : "(no error text)");
        json_decref(reply);
        return NULL;
    }
    return reply;
}

static const char *str_field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "-";
}

static void print_job(json_t *j) {
    json_t *code = json_object_get(j, "exit_code");
    printf("job %lld  %-9s  %s  %s -> %s  launches %lld", (long long)json_integer_value(json_object_get(j, "id")),
           str_field(j, "state"), str_field(j, "budget"), str_field(j, "model"), str_field(j, "out"),
           (long long)json_integer_value(json_object_get(j, "launches")));
    if (json_is_integer(code)) printf("  exit %lld", (long long)json_integer_value(code));
    if (json_is_string(json_object_get(j, "message"))) printf("  (%s)", str_field(j, "message"));
    printf("\n");
}

/* An absolute path for lqd, whose working directory is not ours. */
static char *absolute(const char *path, const char *base_dir) {
    if (path[0] == '/') return strdup(path);
    char cwd[PATH_MAX];
    if (!base_dir) base_dir = getcwd(cwd, sizeof cwd) ? cwd : ".";
    size_t n = strlen(base_dir) + strlen(path) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", base_dir, path);
    return out;
}

static void print_submitted(json_t *reply, const char *label) {
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(reply, "jobs"), i, e) {
        if (json_is_true(json_object_get(e, "skipped"))) {
            json_t *done = json_object_get(e, "done_job");
            if (json_is_integer(done))
                printf("%s%s: skipped (done in job %lld)\n", label, str_field(e, "budget"),
                       (long long)json_integer_value(done));
            else
                printf("%s%s: skipped (already queued as job %lld)\n", label, str_field(e, "budget"),
                       (long long)json_integer_value(json_object_get(e, "pending_job")));
        } else {
            printf("%s%s: job %lld queued -> %s\n", label, str_field(e, "budget"),
                   (long long)json_integer_value(json_object_get(e, "id")), str_field(e, "out"));
        }
    }
}

static int send_request(client *c, lq_fleet_request *req, const char *label, int print) {
    char *text;
    if (lq_fleet_request_json(req, &text)) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        return 1;
    }
    /* the daemon would refuse it anyway; checking here names the flag instead of the field */
    lq_fleet_request check;
    if (lq_fleet_request_parse(text, strlen(text), &check)) {
        fprintf(stderr, TOOL ": %s\n", lq_last_error());
        free(text);
        return 2;
    }
    lq_fleet_request_free(&check);
    json_t *reply = call_json(c, text);
    free(text);
    if (!reply) return 1;
    if (!c->o->json && print) print_submitted(reply, label);
    json_decref(reply);
    return 0;
}

static int cmd_submit(client *c, int argc, char **argv) {
    lq_fleet_request req = {.op = LQ_FLEET_SUBMIT};
    char *budgets[LQ_FLEET_MAX_BUDGETS];
    int rc = 2;
    const char *model = NULL, *tokenizer = NULL, *out = NULL, *db = NULL;
    int i = 0;
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--model")) ok = lq_arg_string(TOOL, a, v, &model), i++;
        else if (!strcmp(a, "--tokenizer")) ok = lq_arg_string(TOOL, a, v, &tokenizer), i++;
        else if (!strcmp(a, "--out")) ok = lq_arg_string(TOOL, a, v, &out), i++;
        else if (!strcmp(a, "--db")) ok = lq_arg_string(TOOL, a, v, &db), i++;
        else if (!strcmp(a, "--if-changed")) req.if_changed = 1;
        else if (!strcmp(a, "--budget")) {
            const char *b = NULL;
            ok = lq_arg_string(TOOL, a, v, &b), i++;
            if (ok && req.n_budgets == LQ_FLEET_MAX_BUDGETS) {
                fprintf(stderr, TOOL ": --budget: at most %d\n", LQ_FLEET_MAX_BUDGETS);
                ok = 0;
            }
            if (ok) budgets[req.n_budgets++] = (char *)b;
        } else {
            fprintf(stderr, TOOL ": submit: unknown argument '%s' (lq-calibrate flags go after --)\n", a);
            ok = 0;
        }
        if (!ok) return 2;
    }
    if (!model || !out || req.n_budgets == 0) {
        fprintf(stderr, TOOL ": submit: --model, --out and --budget are required\n");
        return 2;
    }
    req.model = absolute(model, NULL);
    req.tokenizer = tokenizer ? absolute(tokenizer, NULL) : NULL;
    req.out = absolute(out, NULL);
    req.db = db ? absolute(db, NULL) : NULL;
    req.budgets = budgets;
    req.out_is_parent = req.n_budgets > 1;
    req.args = argv + i;
    req.n_args = argc - i;
    if (req.model && req.out && (!tokenizer || req.tokenizer) && (!db || req.db))
        rc = send_request(c, &req, "", 1);
    else
        fprintf(stderr, TOOL ": submit: out of memory resolving the paths\n"), rc = 1;
    free(req.model);
    free(req.tokenizer);
    free(req.out);
    free(req.db);
    return rc;
}

/* Every element of arr (which may be NULL: nothing to check) a string, at most max of them. */
static int manifest_strings(const json_t *arr, size_t max, const char *file, const char *what) {
    if (!arr) return 0;
    if (!json_is_array(arr)) {
        fprintf(stderr, TOOL ": %s: %s must be an array of strings\n", file, what);
        return 1;
    }
    if (json_array_size(arr) > max) {
        fprintf(stderr, TOOL ": %s: %s has %zu entries, at most %zu\n", file, what,
                json_array_size(arr), max);
        return 1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!json_is_string(v)) {
        fprintf(stderr, TOOL ": %s: %s[%zu] is not a string\n", file, what, i);
        return 1;
    }
    return 0;
}

/* The manifest is checked whole before anything is sent: a mistake in its last model must not
 * leave the first ones queued. */
static int manifest_check(const json_t *m, const char *file) {
    const json_t *root = json_object_get(m, "out_root"), *models = json_object_get(m, "models");
    if (!json_is_string(root) || !json_is_array(models) || json_array_size(models) == 0) {
        fprintf(stderr, TOOL ": %s: needs \"out_root\" (a string) and \"models\" (a non-empty array)\n", file);
        return 1;
    }
    const json_t *budgets = json_object_get(m, "budgets"), *common = json_object_get(m, "args");
    if (manifest_strings(budgets, LQ_FLEET_MAX_BUDGETS, file, "\"budgets\"") ||
        manifest_strings(common, LQ_FLEET_MAX_ARGS, file, "\"args\""))
        return 1;
    size_t k;
    json_t *entry;
    json_array_foreach(models, k, entry) {
        char what[64];
        const json_t *name = json_object_get(entry, "name"), *model = json_object_get(entry, "model");
        const json_t *tok = json_object_get(entry, "tokenizer"), *bl = json_object_get(entry, "budgets");
        const char *n = json_string_value(name);
        /* the name is a directory under out_root: one plain component */
        if (!n || !*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..")) {
            fprintf(stderr, TOOL ": %s: models[%zu] needs \"name\": a string usable as one "
                    "directory name (not empty, \".\" or \"..\", no '/')\n", file, k);
            return 1;
        }
        if (!json_is_string(model) || (tok && !json_is_string(tok))) {
            fprintf(stderr, TOOL ": %s: models[%zu] (%s) needs \"model\" and an optional "
                    "\"tokenizer\", both strings\n", file, k, n);
            return 1;
        }
        snprintf(what, sizeof what, "models[%zu].budgets", k);
        if (manifest_strings(bl, LQ_FLEET_MAX_BUDGETS, file, what)) return 1;
        snprintf(what, sizeof what, "models[%zu].args", k);
        if (manifest_strings(json_object_get(entry, "args"), LQ_FLEET_MAX_ARGS, file, what)) return 1;
        if (!bl) bl = budgets;
        if (json_array_size(bl) == 0) {
            fprintf(stderr, TOOL ": %s: models[%zu] (%s) has no budgets (its own or the "
                    "manifest's)\n", file, k, n);
            return 1;
        }
    }
    return 0;
}

/* Manifest (docs/FLEET.md):
 *   {"out_root": DIR, "budgets": [B, ...], "args": [FLAG, ...]?,
 *    "models": [{"name": N, "model": PATH, "tokenizer": PATH?, "args": [...]?, "budgets": [...]?}]}
 * Relative paths are relative to the manifest's directory. Each model's jobs write
 * out_root/<name>/<budget> and share the store out_root/<name>/liftquant-store/store.db. */
static int cmd_manifest(client *c, const char *file) {
    json_error_t jerr;
    json_t *m = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    if (!m) {
        fprintf(stderr, TOOL ": %s: line %d: %s\n", file, jerr.line, jerr.text);
        return 1;
    }
    if (manifest_check(m, file)) {
        json_decref(m);
        return 1;
    }
    char file_copy[PATH_MAX];
    snprintf(file_copy, sizeof file_copy, "%s", file);
    char *base = absolute(dirname(file_copy), NULL);
    int rc = 0;
    json_t *models = json_object_get(m, "models");
    json_t *budgets = json_object_get(m, "budgets"), *common = json_object_get(m, "args");
    char *out_root = absolute(json_string_value(json_object_get(m, "out_root")), base);
    size_t k;
    json_t *entry;
    json_array_foreach(models, k, entry) {
        json_t *name = json_object_get(entry, "name"), *model = json_object_get(entry, "model");
        json_t *tok = json_object_get(entry, "tokenizer"), *own = json_object_get(entry, "args");
        json_t *bl = json_object_get(entry, "budgets");
        if (!bl) bl = budgets;
        lq_fleet_request req = {.op = LQ_FLEET_SUBMIT, .out_is_parent = 1, .if_changed = 1};
        char *bud[LQ_FLEET_MAX_BUDGETS];
        char *args[2 * LQ_FLEET_MAX_ARGS];
        size_t i;
        json_t *v;
        json_array_foreach(bl, i, v) bud[req.n_budgets++] = (char *)json_string_value(v);
        json_t *lists[2] = {common, own};
        for (int l = 0; l < 2; l++)
            json_array_foreach(lists[l], i, v) args[req.n_args++] = (char *)json_string_value(v);
        req.budgets = bud;
        req.args = args;
        req.model = absolute(json_string_value(model), base);
        req.tokenizer = tok ? absolute(json_string_value(tok), base) : NULL;
        size_t n = strlen(out_root) + strlen(json_string_value(name)) + 2;
        req.out = malloc(n);
        if (req.out) snprintf(req.out, n, "%s/%s", out_root, json_string_value(name));
        char label[256];
        snprintf(label, sizeof label, "%s ", json_string_value(name));
        int one = send_request(c, &req, label, 1);
        if (one) rc = one;
        free(req.model);
        free(req.tokenizer);
        free(req.out);
    }
    free(out_root);
    free(base);
    json_decref(m);
    return rc;
}

static int cmd_keygen(const char *prefix) {
    char public_text[41], secret_text[41];
    if (zmq_curve_keypair(public_text, secret_text) != 0) {
        fprintf(stderr, TOOL ": keygen: %s (is libzmq built with CurveZMQ?)\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    char path[PATH_MAX], key_line[42];
    snprintf(path, sizeof path, "%s.key", prefix);
    snprintf(key_line, sizeof key_line, "%s\n", secret_text);
    if (lq_write_file_atomic_mode(path, key_line, 41, 0600)) {
        fprintf(stderr, TOOL ": keygen: %s\n", lq_last_error());
        return 1;
    }
    char pub[42];
    snprintf(pub, sizeof pub, "%s\n", public_text);
    snprintf(path, sizeof path, "%s.pub", prefix);
    if (lq_write_file_atomic(path, pub, 41)) {
        fprintf(stderr, TOOL ": keygen: %s\n", lq_last_error());
        return 1;
    }
    printf("%s.key (secret), %s.pub (public: %s)\n", prefix, prefix, public_text);
    return 0;
}

static int cmd_raw(client *c, int argc, char **argv) {
    int multipart = argc > 0 && !strcmp(argv[0], "--multipart");
    if (multipart) argc--, argv++;
    if (argc <= 0) {
        fprintf(stderr, TOOL ": raw: no files\n");
        return 2;
    }
    size_t count = (size_t)(unsigned)argc;
    char **data = calloc(count, sizeof *data);
    size_t *lens = calloc(count, sizeof *lens);
    int rc = 0;
    for (int i = 0; i < argc && data && lens; i++)
        if (lq_read_file(argv[i], &data[i], &lens[i])) {
            fprintf(stderr, TOOL ": raw: %s\n", lq_last_error());
            rc = 1;
            break;
        }
    if (!data || !lens) rc = 1;
    for (int i = 0; !rc && i < (multipart ? 1 : argc); i++) {
        char *reply = multipart ? client_call(c, (const char *const *)data, lens, argc)
                                : client_call(c, (const char *const *)&data[i], &lens[i], 1);
        if (!reply) {
            rc = 1;
            break;
        }
        printf("%s\n", reply);
        free(reply);
    }
    for (int i = 0; data && i < argc; i++) free(data[i]);
    free(data);
    free(lens);
    return rc;
}

int main(int argc, char **argv) {
    client_options o = {.endpoint = LQ_FLEET_DEFAULT_ENDPOINT, .timeout = 10};
    int i = 1;
    const char *env = getenv("LQ_FLEET_ENDPOINT");
    if (env && *env) o.endpoint = env;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--endpoint")) ok = lq_arg_string(TOOL, a, v, &o.endpoint), i++;
        else if (!strcmp(a, "--server-key")) ok = lq_arg_string(TOOL, a, v, &o.server_key), i++;
        else if (!strcmp(a, "--key")) ok = lq_arg_string(TOOL, a, v, &o.key), i++;
        else if (!strcmp(a, "--timeout")) ok = lq_arg_double(TOOL, a, v, 0.01, 86400, &o.timeout), i++;
        else if (!strcmp(a, "--json")) o.json = 1;
        else {
            fprintf(stderr, TOOL ": unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (!o.server_key != !o.key) {
        fprintf(stderr, TOOL ": --server-key and --key go together\n");
        return 2;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;
    if (!strcmp(cmd, "keygen")) {
        if (rest != 1) {
            fprintf(stderr, TOOL ": keygen needs one PREFIX\n");
            return 2;
        }
        return cmd_keygen(args[0]);
    }
    int known = !strcmp(cmd, "submit") || !strcmp(cmd, "status") || !strcmp(cmd, "cancel") ||
                !strcmp(cmd, "manifest") || !strcmp(cmd, "raw");
    if (!known) {
        fprintf(stderr, TOOL ": unknown command '%s' (see --help)\n", cmd);
        return 2;
    }
    long job = 0;
    if ((!strcmp(cmd, "cancel") && rest != 1) || (!strcmp(cmd, "status") && rest > 1) ||
        (!strcmp(cmd, "manifest") && rest != 1)) {
        fprintf(stderr, TOOL ": %s: wrong number of arguments (see --help)\n", cmd);
        return 2;
    }
    if ((!strcmp(cmd, "cancel") || !strcmp(cmd, "status")) && rest == 1 &&
        !lq_arg_long(TOOL, cmd, args[0], 1, LONG_MAX, &job))
        return 2;
    client c;
    int rc = 1;
    if (!client_open(&c, &o)) {
        client_close(&c);
        return 1;
    }
    if (!strcmp(cmd, "submit")) rc = cmd_submit(&c, rest, args);
    else if (!strcmp(cmd, "manifest")) rc = cmd_manifest(&c, args[0]);
    else if (!strcmp(cmd, "raw")) rc = cmd_raw(&c, rest, args);
    else {
        lq_fleet_request req = {.op = !strcmp(cmd, "cancel") ? LQ_FLEET_CANCEL : LQ_FLEET_STATUS, .job = job};
        char *text;
        json_t *reply = NULL;
        if (lq_fleet_request_json(&req, &text) == LQ_OK) {
            reply = call_json(&c, text);
            free(text);
        }
        if (reply) {
            rc = 0;
            if (!o.json && req.op == LQ_FLEET_CANCEL) print_job(json_object_get(reply, "job"));
            size_t k;
            json_t *j;
            json_t *jobs = json_object_get(reply, "jobs");
            if (!o.json && req.op == LQ_FLEET_STATUS) json_array_foreach(jobs, k, j) print_job(j);
            if (!o.json && req.op == LQ_FLEET_STATUS && json_array_size(jobs) == 0) printf("no jobs\n");
            json_decref(reply);
        }
    }
    client_close(&c);
    return rc;
}
