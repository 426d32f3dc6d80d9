/* The fleet protocol (lq_fleet.h): requests and replies as JSON, pure functions with no I/O.
 *
 * lq_fleet_request_parse is reached by anyone who can connect to lqd, so it trusts nothing:
 * the length is checked before jansson sees the bytes (json_loadb takes a length, so an
 * unterminated buffer is never read past its end), every field's type is checked, unknown
 * fields are refused rather than ignored (a misspelt "if_changed" must not silently resubmit),
 * and the partly built request is freed on every failure path. */
#include "lq_fleet.h"
#include "lq_coord.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lqd sets these itself from the request's own fields; a second copy in "args" would make the
 * job's output or store differ from what the queue records */
static const char *const reserved_flags[] = {
    "--model", "--tokenizer", "--out", "--budget", "--target-bits", "--db", NULL,
};

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

lq_status lq_fleet_budget_parse(const char *text, const char **flag_out, char *value_out,
                                size_t cap) {
    size_t n = strlen(text);
    if (n == 0 || n >= 64)
        return lq_fail(LQ_ERR_FORMAT, "budget '%.64s': expected a size such as 600KiB or a bit "
                       "width such as 4bits", text);
    if (n > 4 && !strcmp(text + n - 4, "bits")) {
        char number[64];
        memcpy(number, text, n - 4);
        number[n - 4] = '\0';
        char *end;
        double bits = strtod(number, &end);
        if (end == number || *end || !isfinite(bits) || bits <= 0 || bits > 32 ||
            number[0] == '+' || number[0] == ' ')
            return lq_fail(LQ_ERR_FORMAT, "budget '%s': the bit width must be a number in (0, 32]",
                           text);
        if (strlen(number) + 1 > cap) return lq_fail(LQ_ERR_RANGE, "budget '%s': too long", text);
        *flag_out = "--target-bits";
        memcpy(value_out, number, strlen(number) + 1);
        return LQ_OK;
    }
    uint64_t bytes;
    if (lq_size_parse(text, "budget", &bytes) != LQ_OK)
        return lq_fail_context(LQ_ERR_FORMAT, "budget '%s' is neither a size nor NNbits", text);
    if (bytes == 0) return lq_fail(LQ_ERR_FORMAT, "budget '%s': a zero budget", text);
    if (n + 1 > cap) return lq_fail(LQ_ERR_RANGE, "budget '%s': too long", text);
    *flag_out = "--budget";
    memcpy(value_out, text, n + 1);
    return LQ_OK;
}

/* A required (or optional, when absent is fine) absolute path field. */
static lq_status take_path(json_t *root, const char *field, int required, char **out) {
    json_t *v = json_object_get(root, field);
    if (!v) {
        if (required) return lq_fail(LQ_ERR_FORMAT, "request: field '%s' is missing", field);
        return LQ_OK;
    }
    if (!json_is_string(v)) return lq_fail(LQ_ERR_FORMAT, "request: field '%s' must be a string", field);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) return lq_fail(LQ_ERR_FORMAT, "request: field '%s' is empty", field);
    if (n >= LQ_FLEET_MAX_PATH)
        return lq_fail(LQ_ERR_FORMAT, "request: field '%s' is longer than %d bytes", field,
                       LQ_FLEET_MAX_PATH - 1);
    /* lqd's working directory is not the client's */
    if (s[0] != '/') return lq_fail(LQ_ERR_FORMAT, "request: field '%s' must be an absolute path", field);
    if (!(*out = dup_string(s))) return lq_fail(LQ_ERR_NOMEM, "request: field '%s': out of memory", field);
    return LQ_OK;
}

static lq_status take_job(json_t *root, int required, int64_t *out) {
    json_t *v = json_object_get(root, "job");
    if (!v) {
        if (required) return lq_fail(LQ_ERR_FORMAT, "request: field 'job' is missing");
        *out = 0;
        return LQ_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return lq_fail(LQ_ERR_FORMAT, "request: field 'job' must be a positive integer");
    *out = (int64_t)json_integer_value(v);
    return LQ_OK;
}

static lq_status check_fields(json_t *root, const char *const *allowed, const char *op) {
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= !strcmp(key, *a);
        if (!ok) return lq_fail(LQ_ERR_FORMAT, "request: unknown field '%.64s' for op '%s'", key, op);
    }
    return LQ_OK;
}

static lq_status parse_submit(json_t *root, lq_fleet_request *r) {
    static const char *const allowed[] = {"op", "model", "tokenizer", "budget", "budgets", "out",
                                          "db", "args", "if_changed", NULL};
    lq_status st = check_fields(root, allowed, "submit");
    if (st) return st;
    if ((st = take_path(root, "model", 1, &r->model)) || (st = take_path(root, "tokenizer", 0, &r->tokenizer)) ||
        (st = take_path(root, "out", 1, &r->out)) || (st = take_path(root, "db", 0, &r->db)))
        return st;

    json_t *one = json_object_get(root, "budget"), *many = json_object_get(root, "budgets");
    if (!one == !many)
        return lq_fail(LQ_ERR_FORMAT, "request: exactly one of the fields 'budget' and 'budgets' is needed");
    json_t *list = one ? json_array() : many;
    if (!list) return lq_fail(LQ_ERR_NOMEM, "request: out of memory");
    if (one && json_array_append(list, one)) {
        json_decref(list);
        return lq_fail(LQ_ERR_NOMEM, "request: out of memory");
    }
    const char *field = one ? "budget" : "budgets";
    if (!json_is_array(list)) return lq_fail(LQ_ERR_FORMAT, "request: field 'budgets' must be an array of strings");
    size_t n = json_array_size(list);
    if (n == 0) st = lq_fail(LQ_ERR_FORMAT, "request: field 'budgets' is empty");
    else if (n > LQ_FLEET_MAX_BUDGETS)
        st = lq_fail(LQ_ERR_FORMAT, "request: field 'budgets' has %zu entries (at most %d)", n,
                     LQ_FLEET_MAX_BUDGETS);
    else if (!(r->budgets = calloc(n, sizeof *r->budgets)))
        st = lq_fail(LQ_ERR_NOMEM, "request: out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        json_t *b = json_array_get(list, i);
        if (!json_is_string(b)) {
            st = one ? lq_fail(LQ_ERR_FORMAT, "request: field 'budget' must be a string")
                     : lq_fail(LQ_ERR_FORMAT, "request: field 'budgets[%zu]' must be a string", i);
            break;
        }
        const char *flag;
        char value[64];
        if (lq_fleet_budget_parse(json_string_value(b), &flag, value, sizeof value)) {
            st = lq_fail_context(LQ_ERR_FORMAT, "request: field '%s'", field);
            break;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r->budgets[k], json_string_value(b))) {
                st = lq_fail(LQ_ERR_FORMAT, "request: field 'budgets': '%s' is listed twice",
                             r->budgets[k]);
                break;
            }
        if (st) break;
        if (!(r->budgets[i] = dup_string(json_string_value(b))))
            st = lq_fail(LQ_ERR_NOMEM, "request: out of memory");
        else
            r->n_budgets = (int)i + 1;
    }
    r->out_is_parent = many != NULL;
    if (one) json_decref(list);
    if (st) return st;

    json_t *args = json_object_get(root, "args");
    if (args) {
        if (!json_is_array(args)) return lq_fail(LQ_ERR_FORMAT, "request: field 'args' must be an array of strings");
        size_t na = json_array_size(args);
        if (na > LQ_FLEET_MAX_ARGS)
            return lq_fail(LQ_ERR_FORMAT, "request: field 'args' has %zu entries (at most %d)", na,
                           LQ_FLEET_MAX_ARGS);
        if (na && !(r->args = calloc(na, sizeof *r->args))) return lq_fail(LQ_ERR_NOMEM, "request: out of memory");
        for (size_t i = 0; i < na; i++) {
            json_t *a = json_array_get(args, i);
            if (!json_is_string(a))
                return lq_fail(LQ_ERR_FORMAT, "request: field 'args[%zu]' must be a string", i);
            const char *s = json_string_value(a);
            for (const char *const *f = reserved_flags; *f; f++)
                if (!strcmp(s, *f))
                    return lq_fail(LQ_ERR_FORMAT, "request: field 'args[%zu]': %s is set by the "
                                   "request's own fields, not by args", i, s);
            if (!(r->args[i] = dup_string(s))) return lq_fail(LQ_ERR_NOMEM, "request: out of memory");
            r->n_args = (int)i + 1;
        }
    }
    json_t *ic = json_object_get(root, "if_changed");
    if (ic) {
        if (!json_is_boolean(ic)) return lq_fail(LQ_ERR_FORMAT, "request: field 'if_changed' must be true or false");
        r->if_changed = json_is_true(ic);
    }
    return LQ_OK;
}

lq_status lq_fleet_request_parse(const char *bytes, size_t len, lq_fleet_request *out) {
    memset(out, 0, sizeof *out);
    if (!bytes && len) return lq_fail(LQ_ERR_ARG, "request: no bytes");
    if (len == 0) return lq_fail(LQ_ERR_FORMAT, "request: empty message (expected one JSON object)");
    if (len > LQ_FLEET_MAX_REQUEST)
        return lq_fail(LQ_ERR_RANGE, "request: %zu bytes, over the limit of %d", len, LQ_FLEET_MAX_REQUEST);
    json_error_t jerr;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return lq_fail(LQ_ERR_FORMAT, "request: not JSON (line %d column %d: %.120s)", jerr.line,
                       jerr.column, jerr.text);
    lq_status st = LQ_OK;
    json_t *op = json_object_get(root, "op");
    const char *name = json_is_string(op) ? json_string_value(op) : NULL;
    if (!json_is_object(root)) st = lq_fail(LQ_ERR_FORMAT, "request: expected a JSON object");
    else if (!op) st = lq_fail(LQ_ERR_FORMAT, "request: field 'op' is missing");
    else if (!name) st = lq_fail(LQ_ERR_FORMAT, "request: field 'op' must be a string");
    else if (!strcmp(name, "submit")) {
        out->op = LQ_FLEET_SUBMIT;
        st = parse_submit(root, out);
    } else if (!strcmp(name, "status") || !strcmp(name, "cancel")) {
        static const char *const allowed[] = {"op", "job", NULL};
        int cancel = name[0] == 'c';
        out->op = cancel ? LQ_FLEET_CANCEL : LQ_FLEET_STATUS;
        st = check_fields(root, allowed, name);
        if (!st) st = take_job(root, cancel, &out->job);
    } else
        st = lq_fail(LQ_ERR_FORMAT, "request: field 'op': '%.32s' is not submit, status or cancel", name);
    json_decref(root);
    if (st) lq_fleet_request_free(out);
    return st;
}

void lq_fleet_request_free(lq_fleet_request *req) {
    if (!req) return;
    free(req->model);
    free(req->tokenizer);
    free(req->out);
    free(req->db);
    for (int i = 0; i < req->n_budgets; i++) free(req->budgets[i]);
    free(req->budgets);
    for (int i = 0; i < req->n_args; i++) free(req->args[i]);
    free(req->args);
    memset(req, 0, sizeof *req);
}

static int set_new(json_t *o, const char *k, json_t *v) { return !v || json_object_set_new(o, k, v); }

lq_status lq_fleet_request_json(const lq_fleet_request *req, char **out) {
    json_t *o = json_object();
    int bad = !o;
    if (!bad && req->op == LQ_FLEET_SUBMIT) {
        bad |= set_new(o, "op", json_string("submit"));
        bad |= set_new(o, "model", json_string(req->model ? req->model : ""));
        if (req->tokenizer) bad |= set_new(o, "tokenizer", json_string(req->tokenizer));
        bad |= set_new(o, "out", json_string(req->out ? req->out : ""));
        if (req->db) bad |= set_new(o, "db", json_string(req->db));
        if (!req->out_is_parent && req->n_budgets == 1)
            bad |= set_new(o, "budget", json_string(req->budgets[0]));
        else {
            json_t *b = json_array();
            for (int i = 0; b && i < req->n_budgets; i++) bad |= json_array_append_new(b, json_string(req->budgets[i]));
            bad |= set_new(o, "budgets", b);
        }
        json_t *a = json_array();
        for (int i = 0; a && i < req->n_args; i++) bad |= json_array_append_new(a, json_string(req->args[i]));
        bad |= set_new(o, "args", a);
        if (req->if_changed) bad |= set_new(o, "if_changed", json_true());
    } else if (!bad) {
        bad |= set_new(o, "op", json_string(req->op == LQ_FLEET_CANCEL ? "cancel" : "status"));
        if (req->job > 0) bad |= set_new(o, "job", json_integer(req->job));
    }
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) return lq_fail(LQ_ERR_NOMEM, "request: cannot serialise (a string that is not UTF-8?)");
    *out = text;
    return LQ_OK;
}

char *lq_fleet_error_reply(const char *message) {
    json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) text = dup_string("{\"ok\":false,\"error\":\"lqd: out of memory\"}");
    return text;
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

lq_status lq_job_json(const lq_job *j, char **out) {
    json_t *o = json_object();
    int bad = !o;
    json_error_t jerr;
    json_t *args = j->args_json ? json_loads(j->args_json, 0, &jerr) : json_array();
    if (o) {
        bad |= set_new(o, "id", json_integer(j->id));
        bad |= set_new(o, "state", json_string(lq_job_state_name(j->state)));
        bad |= set_new(o, "model", string_or_null(j->model));
        bad |= set_new(o, "tokenizer", string_or_null(j->tokenizer));
        bad |= set_new(o, "budget", string_or_null(j->budget));
        bad |= set_new(o, "out", string_or_null(j->out));
        bad |= set_new(o, "db", string_or_null(j->db));
        bad |= set_new(o, "args", args ? args : json_array());
        bad |= set_new(o, "fingerprint", string_or_null(j->fingerprint));
        bad |= set_new(o, "launcher", string_or_null(j->launcher));
        bad |= set_new(o, "pid", j->pid > 0 ? json_integer(j->pid) : json_null());
        bad |= set_new(o, "slurm_id", string_or_null(j->slurm_id));
        bad |= set_new(o, "launches", json_integer(j->launches));
        bad |= set_new(o, "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
        bad |= set_new(o, "message", string_or_null(j->message));
        bad |= set_new(o, "submitted", string_or_null(j->submitted));
        bad |= set_new(o, "started", string_or_null(j->started));
        bad |= set_new(o, "finished", string_or_null(j->finished));
    } else
        json_decref(args);
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) return lq_fail(LQ_ERR_NOMEM, "job %lld: cannot serialise", (long long)j->id);
    *out = text;
    return LQ_OK;
}
