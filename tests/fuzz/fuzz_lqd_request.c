/* Fuzz target: the lqd request parser (coordinator/fleet_proto.c), lq_fleet_request_parse,
 * which reads every message a client sends the daemon. lq_fleet.h's promises are checked: a
 * refused message leaves the request zeroed with a message; an accepted one has NUL-free
 * strings, counts within the limits, budgets that parse, and survives
 * lq_fleet_request_json → lq_fleet_request_parse unchanged. */
#include "fuzz_common.h"
#include "lq_fleet.h"

#include <string.h>

int lq_fuzz_accepted;

static int same_string(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const lq_fleet_request *a, const lq_fleet_request *b) {
    LQ_FUZZ_CHECK(a->op == b->op && a->job == b->job);
    LQ_FUZZ_CHECK(same_string(a->model, b->model) && same_string(a->tokenizer, b->tokenizer));
    LQ_FUZZ_CHECK(same_string(a->out, b->out) && same_string(a->db, b->db));
    LQ_FUZZ_CHECK(a->n_budgets == b->n_budgets && a->out_is_parent == b->out_is_parent);
    for (int i = 0; i < a->n_budgets; i++) LQ_FUZZ_CHECK(same_string(a->budgets[i], b->budgets[i]));
    LQ_FUZZ_CHECK(a->n_args == b->n_args && a->if_changed == b->if_changed);
    for (int i = 0; i < a->n_args; i++) LQ_FUZZ_CHECK(same_string(a->args[i], b->args[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    lq_fleet_request req;
    lq_status st = lq_fleet_request_parse((const char *)data, size, &req);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        static const lq_fleet_request zeroed;
        LQ_FUZZ_CHECK(memcmp(&req, &zeroed, sizeof req) == 0);
        lq_fleet_request_free(&req);
        return 0;
    }
    lq_fuzz_accepted = 1;
    LQ_FUZZ_CHECK(req.op == LQ_FLEET_SUBMIT || req.op == LQ_FLEET_STATUS ||
                  req.op == LQ_FLEET_CANCEL);
    LQ_FUZZ_CHECK(req.n_budgets >= 0 && req.n_budgets <= LQ_FLEET_MAX_BUDGETS);
    LQ_FUZZ_CHECK(req.n_args >= 0 && req.n_args <= LQ_FLEET_MAX_ARGS);
    if (req.op == LQ_FLEET_CANCEL) LQ_FUZZ_CHECK(req.job > 0);
    for (int i = 0; i < req.n_budgets; i++) {
        const char *flag;
        char value[64];
        LQ_FUZZ_CHECK(lq_fleet_budget_parse(req.budgets[i], &flag, value, sizeof value) == LQ_OK);
    }
    char *text = NULL;
    LQ_FUZZ_CHECK(lq_fleet_request_json(&req, &text) == LQ_OK && text != NULL);
    lq_fleet_request again;
    LQ_FUZZ_CHECK(lq_fleet_request_parse(text, strlen(text), &again) == LQ_OK);
    check_same(&req, &again);
    free(text);
    lq_fleet_request_free(&again);
    lq_fleet_request_free(&req);
    return 0;
}
