/* Hugging Face checkpoint directory → lq_model: config.json, safetensors weights (single file
 * or sharded) in BF16/F16/F32, and tokenizer.json (+ tokenizer_config.json).
 *
 * config.json is read with jansson (duplicate keys rejected); every key the model needs is
 * checked for presence and type, and errors name config.json and the key. Weights are
 * converted to f32 with lq_convert_to_f32, which reads through memcpy, so tensors need not be
 * aligned in the file. The config keys are mapped by lq_model_config_from_json
 * (config_json.c); Hugging Face's rotary embedding is rotate_half, so rope_style is
 * LQ_ROPE_HALF unless the project's own liftquant_rope_style key says otherwise.
 *
 * tokenizer.json:
 *   - model.type "BPE" with a byte-level pre-tokenizer → GPT-2 tokenizer. The pre-tokenizer is
 *     recognised by structure: ByteLevel(use_regex) → "gpt2"; Sequence[Digits(individual),
 *     ByteLevel(use_regex)] → "smollm"; Sequence[Split(Llama 3 or Qwen2 regex, Isolated),
 *     ByteLevel(use_regex=false)] → "llama-bpe" / "qwen2". Anything else is LQ_ERR_UNSUPPORTED
 *     naming tokenizer.json, rather than a tokenizer that silently splits text differently.
 *   - model.type "BPE" with byte_fallback (Llama 2 / Mistral style, "▁" for spaces) → the
 *     SentencePiece BPE of tokenizer.c. SentencePiece merges by token score; tokenizer.json has
 *     merge ranks instead, so each merge result gets score −rank (the earliest merge wins, as in
 *     BPE). Equivalent whenever every token has one merge that makes it, which is how
 *     SentencePiece BPE vocabularies are built.
 *   - added_tokens become CONTROL (special: true) or USER_DEFINED tokens.
 *   - bos/eos: tokenizer_config.json's bos_token/eos_token (a string or {"content": …}),
 *     else config.json's bos_token_id/eos_token_id. add_bos: tokenizer_config.json's
 *     add_bos_token, else whether tokenizer.json's post-processor template starts with a
 *     special token (Llama 3 does), else SentencePiece yes, GPT-2 no. */
#include "loaders.h"
#include "tokenizer_internal.h"
#include "safetensors.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


#define HF_MAX_TOKENS (1 << 24)

static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Loads a JSON file; a missing file is LQ_ERR_NOT_FOUND, bad JSON LQ_ERR_FORMAT with the
 * position. */
static lq_status load_json(const char *path, json_t **out) {
    *out = NULL;
    if (!file_exists(path)) return lq_fail(LQ_ERR_NOT_FOUND, "%s: no such file", path);
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return lq_fail(LQ_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path,
                       err.line, err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return lq_fail(LQ_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return LQ_OK;
}

/* ---- weights ---------------------------------------------------------------------------- */
typedef struct {
    const char *dir;
    lq_st_file *st;
    lq_model *m;
} weights;

/* Loads `name` of shape [d0] (d1 = 0) or [d0, d1] as f32. Absent and optional → *out NULL. */
static lq_status load_weight(weights *w, const char *name, int64_t d0, int64_t d1, int optional,
                             float **out) {
    *out = NULL;
    const lq_st_tensor *t = lq_st_find(w->st, name);
    if (!t) {
        if (optional) return LQ_OK;
        return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor '%s'", w->dir, name);
    }
    int want_ndim = d1 ? 2 : 1;
    if (t->ndim != want_ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char have[96] = "";
        for (int i = 0; i < t->ndim && strlen(have) < 80; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        if (d1)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]",
                           w->dir, name, have, (long long)d0, (long long)d1);
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld]", w->dir,
                       name, have, (long long)d0);
    }
    if (t->dtype != LQ_DTYPE_F32 && t->dtype != LQ_DTYPE_F16 && t->dtype != LQ_DTYPE_BF16 &&
        t->dtype != LQ_DTYPE_F64)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (expected BF16, F16 or "
                       "F32)", w->dir, name, lq_dtype_name(t->dtype));
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *buf = lq_model_alloc(w->m, n);
    if (!buf) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for tensor '%s'", w->dir, name);
    lq_status st = lq_convert_to_f32(t->dtype, t->data, buf, n);
    if (st) return lq_fail_context(st, "%s: tensor '%s'", w->dir, name);
    *out = buf;
    return LQ_OK;
}

static lq_status load_linear(weights *w, const char *prefix, int in, int out, int bias,
                             lq_linear *lin) {
    char name[256];
    lin->in_features = in;
    lin->out_features = out;
    snprintf(name, sizeof name, "%s.weight", prefix);
    lq_status st = load_weight(w, name, out, in, 0, &lin->weight);
    if (st || !bias) return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return load_weight(w, name, out, 0, 0, &lin->bias);
}

static lq_status load_weights(weights *w) {
    lq_model *m = w->m;
    lq_model_config *c = &m->cfg;
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    lq_status st = load_weight(w, "model.embed_tokens.weight", c->vocab_size, c->dim, 0, &m->tok_embeddings);
    if (st) return st;
    for (int l = 0; l < c->n_layers; l++) {
        lq_layer *L = &m->layers[l];
        char p[128];
#define P(x) (snprintf(p, sizeof p, "model.layers.%d.%s", l, x), p)
        if ((st = load_weight(w, P("input_layernorm.weight"), c->dim, 0, 0, &L->attn_norm)) ||
            (st = load_weight(w, P("post_attention_layernorm.weight"), c->dim, 0, 0, &L->ffn_norm)) ||
            (st = load_linear(w, P("self_attn.q_proj"), c->dim, q, c->has_qkv_bias, &L->wq)) ||
            (st = load_linear(w, P("self_attn.k_proj"), c->dim, kv, c->has_qkv_bias, &L->wk)) ||
            (st = load_linear(w, P("self_attn.v_proj"), c->dim, kv, c->has_qkv_bias, &L->wv)) ||
            (st = load_linear(w, P("self_attn.o_proj"), q, c->dim, 0, &L->wo)) ||
            (st = load_linear(w, P("mlp.gate_proj"), c->dim, c->hidden_dim, 0, &L->w_gate)) ||
            (st = load_linear(w, P("mlp.up_proj"), c->dim, c->hidden_dim, 0, &L->w_up)) ||
            (st = load_linear(w, P("mlp.down_proj"), c->hidden_dim, c->dim, 0, &L->w_down)))
            return st;
        if (c->has_qk_norm &&
            ((st = load_weight(w, P("self_attn.q_norm.weight"), c->head_dim, 0, 0, &L->q_norm)) ||
             (st = load_weight(w, P("self_attn.k_norm.weight"), c->head_dim, 0, 0, &L->k_norm))))
            return st;
#undef P
    }
    if ((st = load_weight(w, "model.norm.weight", c->dim, 0, 0, &m->final_norm))) return st;
    m->lm_head.in_features = c->dim;
    m->lm_head.out_features = c->vocab_size;
    if (!c->tied_embeddings) {
        if ((st = load_weight(w, "lm_head.weight", c->vocab_size, c->dim, 1, &m->lm_head.weight)))
            return st;
        if (!m->lm_head.weight) {
            LQ_WARN("%s: no lm_head.weight although tie_word_embeddings is false; using the "
                    "embeddings", w->dir);
            c->tied_embeddings = 1;
        }
    }
    if (c->tied_embeddings) m->lm_head.weight = m->tok_embeddings;
    return LQ_OK;
}

/* ---- tokenizer ---------------------------------------------------------------------------- */
typedef struct {
    const char *path;        /* tokenizer.json */
    json_t *root, *model, *vocab, *added;
    int n_tokens;
    const char **tokens;
    int *types;
    float *scores;
    char **merges;           /* "left right" */
    int n_merges;
    char *merge_block;
} tok_build;

static void tok_build_free(tok_build *b) {
    free(b->tokens);
    free(b->types);
    free(b->scores);
    free(b->merges);
    free(b->merge_block);
}

/* The id of a token string (vocabulary or added tokens), −1 if absent. */
static int token_id_of(const tok_build *b, const char *s) {
    json_t *v = json_object_get(b->vocab, s);
    if (json_is_integer(v)) return (int)json_integer_value(v);
    size_t i;
    json_t *a;
    json_array_foreach(b->added, i, a) {
        json_t *content = json_object_get(a, "content");
        if (json_is_string(content) && !strcmp(json_string_value(content), s))
            return (int)json_integer_value(json_object_get(a, "id"));
    }
    return -1;
}

/* Fills tokens/types from model.vocab and added_tokens. An id beyond the model's vocabulary
 * is refused before anything is allocated by it. */
static lq_status collect_tokens(tok_build *b, int vocab_size) {
    const char *key;
    json_t *v;
    json_int_t max_id = -1;
    json_object_foreach(b->vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= HF_MAX_TOKENS)
            return lq_fail(LQ_ERR_FORMAT, "%s: model.vocab['%s'] is not a valid token id", b->path, key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    size_t i;
    json_t *a;
    json_array_foreach(b->added, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= HF_MAX_TOKENS ||
            !json_is_string(content))
            return lq_fail(LQ_ERR_FORMAT, "%s: added_tokens[%zu] needs an integer id and a string "
                           "content", b->path, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return lq_fail(LQ_ERR_FORMAT, "%s: model.vocab is empty", b->path);
    if (max_id >= vocab_size)
        return lq_fail(LQ_ERR_FORMAT, "%s: %lld tokens, but the model's vocab_size is %d", b->path,
                       (long long)max_id + 1, vocab_size);
    b->n_tokens = (int)max_id + 1;
    b->tokens = calloc((size_t)b->n_tokens, sizeof *b->tokens);
    b->types = calloc((size_t)b->n_tokens, sizeof *b->types);
    b->scores = calloc((size_t)b->n_tokens, sizeof *b->scores);
    if (!b->tokens || !b->types || !b->scores)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %d tokens", b->path, b->n_tokens);
    json_object_foreach(b->vocab, key, v) {
        int id = (int)json_integer_value(v);
        if (b->tokens[id])
            return lq_fail(LQ_ERR_FORMAT, "%s: tokens '%s' and '%s' share id %d", b->path,
                           b->tokens[id], key, id);
        b->tokens[id] = key;
        b->types[id] = LQ_TOKEN_NORMAL;
    }
    json_array_foreach(b->added, i, a) {
        int id = (int)json_integer_value(json_object_get(a, "id"));
        b->tokens[id] = json_string_value(json_object_get(a, "content"));
        b->types[id] = json_is_true(json_object_get(a, "special")) ? LQ_TOKEN_CONTROL
                                                                   : LQ_TOKEN_USER_DEFINED;
    }
    /* ids nobody uses (gaps) become unused empty tokens, which can never be produced */
    for (int id = 0; id < b->n_tokens; id++)
        if (!b->tokens[id]) {
            b->tokens[id] = "";
            b->types[id] = LQ_TOKEN_UNUSED;
        }
    return LQ_OK;
}

/* model.merges as "left right" strings; tokenizers writes either that or [left, right]. */
static lq_status collect_merges(tok_build *b) {
    json_t *merges = json_object_get(b->model, "merges");
    if (!merges || json_is_null(merges)) return LQ_OK;
    if (!json_is_array(merges)) return lq_fail(LQ_ERR_FORMAT, "%s: model.merges is not an array", b->path);
    size_t n = json_array_size(merges), bytes = 0, i;
    if (n > INT_MAX) return lq_fail(LQ_ERR_RANGE, "%s: too many merges", b->path);
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            if (!strchr(json_string_value(m), ' '))
                return lq_fail(LQ_ERR_FORMAT, "%s: model.merges[%zu] \"%s\" is not \"left right\"",
                               b->path, i, json_string_value(m));
            bytes += json_string_length(m) + 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            bytes += json_string_length(json_array_get(m, 0)) + json_string_length(json_array_get(m, 1)) + 2;
        } else {
            return lq_fail(LQ_ERR_FORMAT, "%s: model.merges[%zu] is neither \"left right\" nor "
                           "[left, right]", b->path, i);
        }
    }
    b->merges = malloc((n ? n : 1) * sizeof *b->merges);
    b->merge_block = malloc(bytes + 1);
    if (!b->merges || !b->merge_block) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", b->path);
    char *p = b->merge_block;
    json_array_foreach(merges, i, m) {
        b->merges[i] = p;
        if (json_is_string(m)) {
            memcpy(p, json_string_value(m), json_string_length(m) + 1);
            p += json_string_length(m) + 1;
        } else {
            size_t l0 = json_string_length(json_array_get(m, 0)), l1 = json_string_length(json_array_get(m, 1));
            memcpy(p, json_string_value(json_array_get(m, 0)), l0);
            p[l0] = ' ';
            memcpy(p + l0 + 1, json_string_value(json_array_get(m, 1)), l1 + 1);
            p += l0 + l1 + 2;
        }
    }
    b->n_merges = (int)n;
    return LQ_OK;
}

static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : "";
}

/* A ByteLevel pre-tokenizer that does (use_regex) or does not run the GPT-2 regex itself, and
 * adds no prefix space. */
static int is_byte_level(json_t *o, int use_regex) {
    if (strcmp(type_of(o), "ByteLevel") != 0) return 0;
    json_t *ur = json_object_get(o, "use_regex"), *aps = json_object_get(o, "add_prefix_space");
    int regex = ur ? json_is_true(ur) : 1;
    return regex == use_regex && !json_is_true(aps);
}

/* The pre-tokenizer name bpe.c knows for tokenizer.json's pre_tokenizer, or NULL. */
static const char *byte_level_pre(json_t *pre) {
    if (!json_is_object(pre)) return NULL;
    if (is_byte_level(pre, 1)) return "gpt2";
    if (strcmp(type_of(pre), "Sequence") != 0) return NULL;
    json_t *list = json_object_get(pre, "pretokenizers");
    if (!json_is_array(list) || json_array_size(list) != 2) return NULL;
    json_t *first = json_array_get(list, 0), *second = json_array_get(list, 1);
    if (!strcmp(type_of(first), "Digits") && json_is_true(json_object_get(first, "individual_digits")) &&
        is_byte_level(second, 1))
        return "smollm";
    if (!strcmp(type_of(first), "Split") && is_byte_level(second, 0)) {
        json_t *pattern = json_object_get(json_object_get(first, "pattern"), "Regex");
        json_t *behavior = json_object_get(first, "behavior");
        if (!json_is_string(pattern) || !json_is_string(behavior) ||
            strcmp(json_string_value(behavior), "Isolated") != 0 || json_is_true(json_object_get(first, "invert")))
            return NULL;
        const char *re = json_string_value(pattern);
        if (!strcmp(re, LLAMA3_REGEX)) return "llama-bpe";
        if (!strcmp(re, QWEN2_REGEX)) return "qwen2";
        if (!strcmp(re, GPT2_REGEX)) return "gpt2";
    }
    return NULL;
}

/* Whether the post-processor's single-sequence template starts with a special token. */
static int template_adds_bos(json_t *pp) {
    if (!json_is_object(pp)) return 0;
    if (!strcmp(type_of(pp), "Sequence")) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(pp, "processors"), i, p)
            if (template_adds_bos(p)) return 1;
        return 0;
    }
    if (strcmp(type_of(pp), "TemplateProcessing") != 0) return 0;
    json_t *single = json_object_get(pp, "single");
    return json_is_array(single) && json_array_size(single) > 0 &&
           json_object_get(json_array_get(single, 0), "SpecialToken") != NULL;
}

/* tokenizer_config.json's bos_token / eos_token: a string or {"content": string}. */
static const char *special_string(json_t *tc, const char *key) {
    json_t *v = json_object_get(tc, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* bos/eos from tokenizer_config.json, else config.json's *_token_id (eos may be a list). */
static lq_status special_id(const tok_build *b, json_t *tc, json_t *cfg, const char *tc_key,
                            const char *cfg_key, int *out) {
    *out = -1;
    const char *s = tc ? special_string(tc, tc_key) : NULL;
    if (s) {
        int id = token_id_of(b, s);
        if (id < 0)
            return lq_fail(LQ_ERR_FORMAT, "%s: tokenizer_config.json names %s '%s', which is not a "
                           "token", b->path, tc_key, s);
        *out = id;
        return LQ_OK;
    }
    json_t *v = json_object_get(cfg, cfg_key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (json_is_integer(v)) {
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= b->n_tokens)
            return lq_fail(LQ_ERR_RANGE, "config.json: %s = %lld is outside the %d-token vocabulary",
                           cfg_key, (long long)id, b->n_tokens);
        *out = (int)id;
    }
    return LQ_OK;
}

/* Whether a SentencePiece-style tokenizer.json prepends "▁" to the text. */
static int spm_adds_space_prefix(json_t *root) {
    json_t *norm = json_object_get(root, "normalizer");
    json_t *list = json_object_get(norm, "normalizers");
    size_t i;
    json_t *n;
    if (!strcmp(type_of(norm), "Prepend")) return 1;
    json_array_foreach(list, i, n)
        if (!strcmp(type_of(n), "Prepend")) return 1;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!strcmp(type_of(pre), "Metaspace")) {
        json_t *scheme = json_object_get(pre, "prepend_scheme");
        if (json_is_string(scheme)) return strcmp(json_string_value(scheme), "never") != 0;
        return !json_is_false(json_object_get(pre, "add_prefix_space"));
    }
    return 0;
}

lq_status lq_hf_tokenizer_from_json(const char *path, json_t *root, json_t *tc, json_t *cfg,
                                    int vocab_size, lq_tokenizer **out) {
    *out = NULL;
    tok_build b = {0};
    lq_status st = LQ_OK;
    b.path = path;
    b.root = root;
    if (!json_is_object(root)) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    b.model = json_object_get(b.root, "model");
    if (!json_is_object(b.model)) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: no \"model\" object", path);
        goto done;
    }
    if (strcmp(type_of(b.model), "BPE") != 0) {
        st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: tokenizer model type '%s' is not supported (only BPE)",
                     path, type_of(b.model));
        goto done;
    }
    b.vocab = json_object_get(b.model, "vocab");
    if (!json_is_object(b.vocab)) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: model.vocab is not an object", path);
        goto done;
    }
    b.added = json_object_get(b.root, "added_tokens");
    if (b.added && !json_is_array(b.added) && !json_is_null(b.added)) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: added_tokens is not an array", path);
        goto done;
    }
    if ((st = collect_tokens(&b, vocab_size)) || (st = collect_merges(&b))) goto done;
    lq_tokenizer_spec spec = {0};
    spec.n_tokens = b.n_tokens;
    spec.tokens = b.tokens;
    spec.token_types = b.types;
    spec.unk_id = -1;
    json_t *unk = json_object_get(b.model, "unk_token");
    if (json_is_string(unk)) spec.unk_id = token_id_of(&b, json_string_value(unk));
    int spm = json_is_true(json_object_get(b.model, "byte_fallback"));
    if (spm) {
        spec.kind = LQ_TOKENIZER_SPM;
        /* scores from merge ranks (see the top of the file); byte pieces are BYTE tokens */
        for (int id = 0; id < b.n_tokens; id++) {
            const char *s = b.tokens[id];
            b.scores[id] = -1e9f;
            if (strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && b.types[id] == LQ_TOKEN_NORMAL)
                b.types[id] = LQ_TOKEN_BYTE;
        }
        if (spec.unk_id >= 0) b.types[spec.unk_id] = LQ_TOKEN_UNKNOWN;
        for (int r = b.n_merges - 1; r >= 0; r--) {
            char merged[1024];
            const char *m = b.merges[r], *sp = strchr(m, ' ');
            size_t l0 = (size_t)(sp - m), l1 = strlen(sp + 1);
            if (l0 + l1 >= sizeof merged) continue;
            memcpy(merged, m, l0);
            memcpy(merged + l0, sp + 1, l1 + 1);
            int id = token_id_of(&b, merged);
            if (id >= 0) b.scores[id] = -(float)r;
        }
        spec.scores = b.scores;
        spec.add_space_prefix = spm_adds_space_prefix(b.root);
        spec.add_bos = 1;
    } else {
        spec.kind = LQ_TOKENIZER_GPT2;
        const char *pre = byte_level_pre(json_object_get(b.root, "pre_tokenizer"));
        if (!pre || !lq_bpe_pre_supported(pre)) {
            char *desc = json_dumps(json_object_get(b.root, "pre_tokenizer"), JSON_COMPACT);
            st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: pre_tokenizer %.300s is not supported (supported: "
                         "byte-level GPT-2, SmolLM (digits + byte-level), Llama 3 and Qwen2 split "
                         "regexes)", path, desc ? desc : "null");
            free(desc);
            goto done;
        }
        spec.pre = pre;
        spec.merges = (const char *const *)b.merges;
        spec.n_merges = b.n_merges;
        spec.add_bos = template_adds_bos(json_object_get(b.root, "post_processor"));
    }
    if ((st = special_id(&b, tc, cfg, "bos_token", "bos_token_id", &spec.bos_id)) ||
        (st = special_id(&b, tc, cfg, "eos_token", "eos_token_id", &spec.eos_id)))
        goto done;
    json_t *ab = tc ? json_object_get(tc, "add_bos_token") : NULL;
    if (json_is_boolean(ab)) spec.add_bos = json_is_true(ab);
    if (spec.bos_id < 0) spec.add_bos = 0;
    if ((st = lq_tokenizer_new(&spec, out))) st = lq_fail_context(st, "%s", path);
done:
    tok_build_free(&b);
    return st;
}

static lq_status load_tokenizer(const char *dir, json_t *cfg, int vocab_size, lq_tokenizer **out) {
    *out = NULL;
    char *path = join_path(dir, "tokenizer.json");
    char *tc_path = join_path(dir, "tokenizer_config.json");
    json_t *root = NULL, *tc = NULL;
    lq_status st = LQ_OK;
    if (!path || !tc_path) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if (!file_exists(path)) {
        LQ_WARN("%s: no tokenizer.json; loading the model without a tokenizer", dir);
        goto done;
    }
    if ((st = load_json(path, &root))) goto done;
    if (file_exists(tc_path) && (st = load_json(tc_path, &tc))) goto done;
    st = lq_hf_tokenizer_from_json(path, root, tc, cfg, vocab_size, out);
done:
    json_decref(root);
    json_decref(tc);
    free(path);
    free(tc_path);
    return st;
}


lq_status lq_hf_load_model(const char *dir, lq_model **out) {
    *out = NULL;
    char *cfg_path = join_path(dir, "config.json");
    if (!cfg_path) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
    json_t *cfg = NULL;
    lq_model *m = NULL;
    weights w = {dir, NULL, NULL};
    lq_model_config c;
    lq_status st = load_json(cfg_path, &cfg);
    if (st) goto done;
    if ((st = lq_model_config_from_json(cfg_path, cfg, &c)) || (st = lq_model_config_validate(&c, cfg_path)))
        goto done;
    if ((st = lq_st_open(dir, &w.st))) goto done;
    if ((st = lq_model_new(&c, &m))) goto done;
    snprintf(m->source, sizeof m->source, "%s", dir);
    snprintf(m->format, sizeof m->format, "hf");
    w.m = m;
    if ((st = load_weights(&w))) goto done;
    st = load_tokenizer(dir, cfg, c.vocab_size, &m->tokenizer);
done:
    lq_st_close(w.st);
    json_decref(cfg);
    free(cfg_path);
    if (st) {
        lq_model_free(m);
        return st;
    }
    *out = m;
    return LQ_OK;
}
