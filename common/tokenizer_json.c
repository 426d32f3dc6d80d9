/* tokenizer.liftquant.json: the project's own serialisation of a tokenizer (tokenizer.h,
 * schemas/FORMAT.md). It states the lq_tokenizer_spec the tokenizer was built from, so
 * loading it rebuilds the same tokenizer through the same constructor, whatever the tokenizer
 * came from (tokenizer.json, GGUF metadata, a llama2.c tok*.bin):
 *
 *   {"format": "liftquant.tokenizer", "format_version": 1, "kind": "spm" | "gpt2",
 *    "pre": "smollm" | null, "bos_id": 1, "eos_id": 2, "unk_id": -1,
 *    "add_bos": true, "add_space_prefix": false,
 *    "tokens": [...], "scores": [...], "token_types": [...], "merges": ["Ġ t", ...]}
 *
 * A token is a JSON string, or {"hex": "e296"} when its bytes are not valid UTF-8 or hold a
 * NUL (JSON text must be Unicode, and many readers stop at \u0000). Scores are numbers with 9
 * significant digits, which reads back to the same float; a non-finite score is the string
 * "inf", "-inf" or "nan". Merges come from the tokenizer's rank map, ordered by rank: ranks
 * only ever compare with each other, so their order is all the tokenizer needs. */
#include "tokenizer_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FORMAT_NAME "liftquant.tokenizer"
#define FORMAT_VERSION 1

/* ---- saving ---------------------------------------------------------------------------------- */
static json_t *bytes_json(const char *s, size_t len) {
    if (!memchr(s, 0, len)) {
        json_t *v = json_stringn(s, len);   /* NULL when s is not valid UTF-8 */
        if (v) return v;
    }
    static const char hex[] = "0123456789abcdef";
    char *h = malloc(2 * len + 1);
    if (!h) return NULL;
    for (size_t i = 0; i < len; i++) {
        h[2 * i] = hex[(unsigned char)s[i] >> 4];
        h[2 * i + 1] = hex[(unsigned char)s[i] & 15];
    }
    h[2 * len] = 0;
    json_t *o = json_pack("{s:s}", "hex", h);
    free(h);
    return o;
}

static json_t *score_json(float f) {
    if (isnan(f)) return json_string("nan");
    if (isinf(f)) return json_string(f > 0 ? "inf" : "-inf");
    return json_real(f);
}

typedef struct {
    const char *key;
    int rank;
} ranked_merge;

static int by_rank(const void *pa, const void *pb) {
    const ranked_merge *a = pa, *b = pb;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

/* The merge map's keys in rank order, as a JSON array. */
static json_t *merges_json(const lq_tokenizer *t) {
    json_t *arr = json_array();
    if (!arr || t->merges.count == 0) return arr;
    ranked_merge *list = malloc(t->merges.count * sizeof *list);
    if (!list) {
        json_decref(arr);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->merges.cap; i++)
        if (t->merges.keys[i]) list[n++] = (ranked_merge){t->merges.keys[i], t->merges.values[i]};
    qsort(list, n, sizeof *list, by_rank);
    for (size_t i = 0; i < n && arr; i++)
        if (json_array_append_new(arr, bytes_json(list[i].key, strlen(list[i].key))) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    free(list);
    return arr;
}

lq_status lq_tokenizer_save_json(const lq_tokenizer *t, const char *path) {
    json_t *tokens = json_array(), *scores = json_array(), *types = json_array();
    int failed = !tokens || !scores || !types;
    for (int i = 0; i < t->n_tokens && !failed; i++)
        failed = json_array_append_new(tokens, bytes_json(t->tokens[i], t->token_len[i])) != 0 ||
                 json_array_append_new(scores, score_json(t->scores[i])) != 0 ||
                 json_array_append_new(types, json_integer(t->token_types[i])) != 0;
    json_t *merges = failed ? NULL : merges_json(t);
    int gpt2 = t->kind == LQ_TOKENIZER_GPT2;
    /* "o" steals each reference, also when json_pack fails */
    json_t *root = failed || !merges ? NULL
        : json_pack("{s:s, s:i, s:s, s:o, s:i, s:i, s:i, s:b, s:b, s:o, s:o, s:o, s:o}",
                    "format", FORMAT_NAME, "format_version", FORMAT_VERSION,
                    "kind", gpt2 ? "gpt2" : "spm",
                    "pre", gpt2 ? json_string(t->pre) : json_null(),
                    "bos_id", t->bos_id, "eos_id", t->eos_id, "unk_id", t->unk_id,
                    "add_bos", t->add_bos, "add_space_prefix", t->add_space_prefix,
                    "tokens", tokens, "scores", scores, "token_types", types, "merges", merges);
    if (!root) {
        if (failed || !merges) json_decref(tokens), json_decref(scores), json_decref(types);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory serialising the tokenizer", path);
    }
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory serialising the tokenizer", path);
    lq_status st = lq_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* ---- loading --------------------------------------------------------------------------------- */
static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A token or merge: a string, or {"hex": …}. *bytes points into v, or is malloc'ed into
 * *owned (hex). */
static lq_status read_bytes(const char *path, const char *key, size_t i, const json_t *v,
                            const char **bytes, size_t *len, char **owned) {
    *owned = NULL;
    if (json_is_string(v)) {
        *bytes = json_string_value(v);
        *len = json_string_length(v);
        return LQ_OK;
    }
    json_t *h = json_is_object(v) && json_object_size(v) == 1 ? json_object_get(v, "hex") : NULL;
    const char *s = json_is_string(h) ? json_string_value(h) : NULL;
    size_t n = s ? json_string_length(h) : 0;
    if (!s || n % 2)
        return lq_fail(LQ_ERR_FORMAT, "%s: %s[%zu] is neither a string nor {\"hex\": an even number "
                       "of hex digits}", path, key, i);
    char *out = malloc(n / 2 + 1);
    if (!out) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    for (size_t k = 0; k < n / 2; k++) {
        int hi = hex_digit(s[2 * k]), lo = hex_digit(s[2 * k + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return lq_fail(LQ_ERR_FORMAT, "%s: %s[%zu].hex has a character that is not a hex "
                           "digit", path, key, i);
        }
        out[k] = (char)(hi * 16 + lo);
    }
    out[n / 2] = 0;
    *bytes = *owned = out;
    *len = n / 2;
    return LQ_OK;
}

static lq_status read_id(const char *path, const json_t *root, const char *key, int n_tokens, int *out) {
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' is missing or not an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < -1 || x >= n_tokens)
        return lq_fail(LQ_ERR_RANGE, "%s: %s = %lld is outside [-1, %d)", path, key, (long long)x,
                       n_tokens);
    *out = (int)x;
    return LQ_OK;
}

static lq_status read_flag(const char *path, const json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (!json_is_boolean(v))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' is missing or not true/false", path, key);
    *out = json_is_true(v);
    return LQ_OK;
}

/* An array of n entries under key, or NULL when n < 0 means "any length". */
static lq_status read_array(const char *path, const json_t *root, const char *key, long n,
                            json_t **out) {
    json_t *v = json_object_get(root, key);
    if (!json_is_array(v)) return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' is missing or not an array", path, key);
    if (n >= 0 && json_array_size(v) != (size_t)n)
        return lq_fail(LQ_ERR_FORMAT, "%s: '%s' has %zu entries, expected %ld (one per token)",
                       path, key, json_array_size(v), n);
    *out = v;
    return LQ_OK;
}

static lq_status read_score(const char *path, size_t i, const json_t *v, float *out) {
    if (json_is_number(v)) {
        *out = (float)json_number_value(v);
        return LQ_OK;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (!strcmp(s, "inf")) *out = INFINITY;
    else if (!strcmp(s, "-inf")) *out = -INFINITY;
    else if (!strcmp(s, "nan")) *out = NAN;
    else return lq_fail(LQ_ERR_FORMAT, "%s: scores[%zu] is not a number", path, i);
    return LQ_OK;
}

typedef struct {
    const char **tokens;
    size_t *lens;
    char **owned;           /* hex-decoded strings to free, one slot per token and merge */
    float *scores;
    int *types;
    const char **merges;
    size_t n_owned;
} load_arrays;

static void load_arrays_free(load_arrays *a) {
    for (size_t i = 0; i < a->n_owned; i++) free(a->owned[i]);
    free(a->tokens), free(a->lens), free(a->owned), free(a->scores), free(a->types), free(a->merges);
}

static lq_status load_root(const char *path, const json_t *root, lq_tokenizer **out) {
    json_t *v = json_object_get(root, "format");
    if (!json_is_string(v) || strcmp(json_string_value(v), FORMAT_NAME) != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: key 'format' is not \"%s\": not a liftquant tokenizer "
                       "file", path, FORMAT_NAME);
    v = json_object_get(root, "format_version");
    if (!json_is_integer(v) || json_integer_value(v) != FORMAT_VERSION)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: format_version must be %d (this build reads "
                       "version %d only)", path, FORMAT_VERSION, FORMAT_VERSION);
    lq_tokenizer_spec spec = {0};
    v = json_object_get(root, "kind");
    const char *kind = json_is_string(v) ? json_string_value(v) : "";
    if (!strcmp(kind, "spm")) spec.kind = LQ_TOKENIZER_SPM;
    else if (!strcmp(kind, "gpt2")) spec.kind = LQ_TOKENIZER_GPT2;
    else return lq_fail(LQ_ERR_FORMAT, "%s: key 'kind' must be \"spm\" or \"gpt2\"", path);
    json_t *tokens = NULL, *scores = NULL, *types = NULL, *merges = NULL;
    lq_status st = read_array(path, root, "tokens", -1, &tokens);
    if (st) return st;
    size_t n = json_array_size(tokens);
    if (n < 1 || n > (1 << 24)) return lq_fail(LQ_ERR_FORMAT, "%s: %zu tokens is out of range", path, n);
    spec.n_tokens = (int)n;
    if ((st = read_array(path, root, "scores", (long)n, &scores)) ||
        (st = read_array(path, root, "token_types", (long)n, &types)) ||
        (st = read_array(path, root, "merges", -1, &merges)) ||
        (st = read_id(path, root, "bos_id", spec.n_tokens, &spec.bos_id)) ||
        (st = read_id(path, root, "eos_id", spec.n_tokens, &spec.eos_id)) ||
        (st = read_id(path, root, "unk_id", spec.n_tokens, &spec.unk_id)) ||
        (st = read_flag(path, root, "add_bos", &spec.add_bos)) ||
        (st = read_flag(path, root, "add_space_prefix", &spec.add_space_prefix)))
        return st;
    size_t n_merges = json_array_size(merges);
    if (spec.kind == LQ_TOKENIZER_SPM && n_merges > 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: a SentencePiece (\"spm\") tokenizer has no merges, but "
                       "'merges' has %zu", path, n_merges);
    if (n_merges > (1 << 24)) return lq_fail(LQ_ERR_FORMAT, "%s: %zu merges is too many", path, n_merges);
    if (spec.kind == LQ_TOKENIZER_GPT2) {
        v = json_object_get(root, "pre");
        if (!json_is_string(v) || !lq_bpe_pre_supported(json_string_value(v)))
            return lq_fail(LQ_ERR_UNSUPPORTED, "%s: key 'pre' must name a GPT-2 pre-tokenizer (%s)",
                           path, lq_bpe_pre_list());
        spec.pre = json_string_value(v);
    }
    load_arrays a = {0};
    a.tokens = calloc(n, sizeof *a.tokens);
    a.lens = calloc(n, sizeof *a.lens);
    a.owned = calloc(n + n_merges, sizeof *a.owned);
    a.scores = calloc(n, sizeof *a.scores);
    a.types = calloc(n, sizeof *a.types);
    a.merges = calloc(n_merges ? n_merges : 1, sizeof *a.merges);
    if (!a.tokens || !a.lens || !a.owned || !a.scores || !a.types || !a.merges) {
        load_arrays_free(&a);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %zu tokens", path, n);
    }
    for (size_t i = 0; i < n && !st; i++) {
        json_t *ty = json_array_get(types, i);
        if ((st = read_bytes(path, "tokens", i, json_array_get(tokens, i), &a.tokens[i], &a.lens[i],
                             &a.owned[a.n_owned])))
            break;
        if (a.owned[a.n_owned]) a.n_owned++;
        if ((st = read_score(path, i, json_array_get(scores, i), &a.scores[i]))) break;
        if (!json_is_integer(ty) || json_integer_value(ty) < LQ_TOKEN_NORMAL ||
            json_integer_value(ty) > LQ_TOKEN_BYTE)
            st = lq_fail(LQ_ERR_FORMAT, "%s: token_types[%zu] is not a token type (%d to %d)", path,
                         i, LQ_TOKEN_NORMAL, LQ_TOKEN_BYTE);
        else
            a.types[i] = (int)json_integer_value(ty);
    }
    for (size_t i = 0; i < n_merges && !st; i++) {
        size_t len;
        if ((st = read_bytes(path, "merges", i, json_array_get(merges, i), &a.merges[i], &len,
                             &a.owned[a.n_owned])))
            break;
        if (a.owned[a.n_owned]) a.n_owned++;
        if (strlen(a.merges[i]) != len)
            st = lq_fail(LQ_ERR_FORMAT, "%s: merges[%zu] holds a NUL byte", path, i);
    }
    if (!st) {
        spec.tokens = a.tokens;
        spec.scores = a.scores;
        spec.token_types = a.types;
        spec.merges = a.merges;
        spec.n_merges = (int)n_merges;
        st = lq_tokenizer_new_sized(&spec, a.lens, path, out);
    }
    load_arrays_free(&a);
    return st;
}

/* root as decoded by jansson (NULL with err filled when the text is not JSON); takes it. */
static lq_status load_decoded(const char *path, json_t *root, const json_error_t *err,
                              lq_tokenizer **out) {
    if (!root)
        return lq_fail(LQ_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path, err->line,
                       err->column, err->text);
    lq_status st = json_is_object(root) ? load_root(path, root, out)
                                        : lq_fail(LQ_ERR_FORMAT, "%s: not a JSON object", path);
    json_decref(root);
    return st;
}

lq_status lq_tokenizer_load_json(const char *path, lq_tokenizer **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return lq_fail(LQ_ERR_NOT_FOUND, "%s: no such file", path);
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    return load_decoded(path, root, &err, out);
}

lq_status lq_tokenizer_load_json_memory(const char *bytes, size_t len, const char *name,
                                        lq_tokenizer **out) {
    *out = NULL;
    json_error_t err;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &err);
    return load_decoded(name, root, &err, out);
}
