/* Hugging Face directory loader tests: tiny random llama / qwen2 / qwen3 checkpoints written
 * with the project's safetensors writer (BF16, F16, F32; single file and sharded) plus a
 * config.json and a small tokenizer.json, loaded and checked value by value; then broken
 * directories (bad JSON, missing or mistyped keys, unknown model_type, missing tensor, wrong
 * shape or dtype, unsupported tokenizer), each of which must fail naming the file and the key
 * or tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "hf"
#include "test_util.h"

#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loaders.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

/* A fresh, empty model directory per call. */
static const char *new_model_dir(void) {
    static char path[PATH_MAX + 32];
    static int counter;
    snprintf(path, sizeof path, "%s/model%d", temp_dir, counter++);
    assert_int_equal(mkdir(path, 0755), 0);
    return path;
}

static const char *in_dir(const char *dir, const char *name) {
    static char buffers[4][PATH_MAX + 64];
    static int next;
    char *b = buffers[next++ % 4];
    snprintf(b, sizeof buffers[0], "%s/%s", dir, name);
    return b;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void write_json(const char *path, json_t *j) {
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(1) | JSON_ENSURE_ASCII), 0);
}

/* ---- the tiny checkpoint ------------------------------------------------------------------ */
typedef struct {
    const char *model_type;
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab;
    int explicit_head_dim;
    int tied, lm_head_present;
    lq_dtype dtype;
    int shards;                 /* 1 or 2 */
    const char *omit, *reshape, *int_tensor;   /* tensor left out / wrong shape / I32 */
    int tokenizer;              /* 0 none, 1 byte-level (smollm), 2 byte-level (llama3 split,
                                   [a, b] merges), 3 SentencePiece-style, 4 Unigram */
} hf_spec;

#define MAX_TENSORS 64
typedef struct {
    char names[MAX_TENSORS][96];
    float *values[MAX_TENSORS];
    size_t counts[MAX_TENSORS];
    size_t n;
} expected;

static float pattern(size_t t, size_t i) { return (float)((t * 37 + i * 11) % 101) / 101.0f - 0.5f; }

static void add_tensor(lq_st_writer **w, const hf_spec *s, expected *e, const char *name,
                       int64_t d0, int64_t d1) {
    if (s->omit && !strcmp(s->omit, name)) return;
    int64_t shape[2] = {d0, d1};
    if (s->reshape && !strcmp(s->reshape, name)) shape[0] += 1;
    size_t n = (size_t)shape[0] * (size_t)(d1 ? d1 : 1);
    float *v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = pattern(e->n, i);
    lq_dtype dt = s->int_tensor && !strcmp(s->int_tensor, name) ? LQ_DTYPE_I32 : s->dtype;
    void *raw = calloc(n, 4);
    if (dt == LQ_DTYPE_I32) {
        memset(raw, 0, n * 4);
    } else {
        assert_int_equal(lq_convert_from_f32(dt, v, raw, n), LQ_OK);
        assert_int_equal(lq_convert_to_f32(dt, raw, v, n), LQ_OK);   /* what the loader must see */
    }
    /* shard 1 holds the layers of odd index, shard 0 everything else */
    int shard = s->shards > 1 && strstr(name, "layers.1.") ? 1 : 0;
    assert_int_equal(lq_st_writer_add(w[shard], name, dt, d1 ? 2 : 1, shape, raw), LQ_OK);
    free(raw);
    snprintf(e->names[e->n], sizeof e->names[0], "%s", name);
    e->values[e->n] = v;
    e->counts[e->n++] = n;
}

static void expected_free(expected *e) {
    for (size_t i = 0; i < e->n; i++) free(e->values[i]);
}

static const float *expected_find(const expected *e, const char *name) {
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->names[i], name)) return e->values[i];
    fail_msg("test bug: no tensor %s", name);
    return NULL;
}

static json_t *make_config(const hf_spec *s) {
    json_t *c = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:i, s:i}",
                          "model_type", s->model_type, "hidden_size", s->dim, "intermediate_size",
                          s->hidden, "num_hidden_layers", s->layers, "num_attention_heads", s->heads,
                          "num_key_value_heads", s->kv_heads, "vocab_size", s->vocab,
                          "max_position_embeddings", 512, "rms_norm_eps", 1e-5, "rope_theta",
                          1000000.0, "tie_word_embeddings", s->tied, "hidden_act", "silu",
                          "bos_token_id", 1, "eos_token_id", 2);
    assert_non_null(c);
    if (s->explicit_head_dim) json_object_set_new(c, "head_dim", json_integer(s->head_dim));
    return c;
}

#define LLAMA3_REGEX                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Byte-level vocabulary: ids 0..255 the bytes, 256 "he", 257 "Ġhe", 258 <|endoftext|>. */
static json_t *byte_level_tokenizer(int llama3) {
    json_t *vocab = json_object();
    char c[4];
    for (int b = 0; b < 256; b++) {
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    json_object_set_new(vocab, "he", json_integer(256));
    json_object_set_new(vocab, "\xc4\xa0he", json_integer(257));
    json_t *merges = llama3 ? json_pack("[[s,s],[s,s]]", "h", "e", "\xc4\xa0", "he")
                            : json_pack("[s,s]", "h e", "\xc4\xa0 he");
    json_t *pre;
    if (llama3)
        pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                        "pretokenizers", "type", "Split", "pattern", "Regex", LLAMA3_REGEX,
                        "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                        "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    else
        pre = json_pack("{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                        "pretokenizers", "type", "Digits", "individual_digits", 1, "type",
                        "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    json_t *post = llama3 ? json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}]}", "type",
                                      "TemplateProcessing", "single", "SpecialToken", "id",
                                      "<|endoftext|>", "type_id", 0, "Sequence", "id", "A",
                                      "type_id", 0)
                          : json_null();
    json_t *tok = json_pack("{s:s, s:[{s:i, s:s, s:b}], s:n, s:o, s:o, s:{s:s, s:o, s:o, s:b}}",
                            "version", "1.0", "added_tokens", "id", 258, "content", "<|endoftext|>",
                            "special", 1, "normalizer", "pre_tokenizer", pre, "post_processor", post,
                            "model", "type", "BPE", "vocab", vocab, "merges", merges,
                            "ignore_merges", llama3);
    assert_non_null(tok);
    return tok;
}

/* SentencePiece-style: <unk> <s> </s>, 256 byte pieces, then ▁ h e ▁h he ▁he. */
static json_t *spm_tokenizer(void) {
    json_t *vocab = json_object();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        json_object_set_new(vocab, piece, json_integer(3 + b));
    }
    const char *rest[] = {"\xe2\x96\x81", "h", "e", "\xe2\x96\x81h", "he", "\xe2\x96\x81he"};
    for (int i = 0; i < 6; i++) json_object_set_new(vocab, rest[i], json_integer(259 + i));
    json_t *tok = json_pack(
        "{s:[{s:i, s:s, s:b}, {s:i, s:s, s:b}, {s:i, s:s, s:b}],"
        " s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n,"
        " s:{s:s, s:o, s:[s, s, s], s:s, s:b}}",
        "added_tokens", "id", 0, "content", "<unk>", "special", 1, "id", 1, "content", "<s>",
        "special", 1, "id", 2, "content", "</s>", "special", 1, "normalizer", "type", "Sequence",
        "normalizers", "type", "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace", "pattern",
        "String", " ", "content", "\xe2\x96\x81", "pre_tokenizer", "model", "type", "BPE", "vocab",
        vocab, "merges", "\xe2\x96\x81 h", "h e", "\xe2\x96\x81h e", "unk_token", "<unk>",
        "byte_fallback", 1);
    assert_non_null(tok);
    return tok;
}

static void write_model(const char *dir, const hf_spec *s, expected *e) {
    json_t *cfg = make_config(s);
    write_json(in_dir(dir, "config.json"), cfg);
    json_decref(cfg);
    memset(e, 0, sizeof *e);
    lq_st_writer *w[2] = {NULL, NULL};
    for (int i = 0; i < s->shards; i++) assert_int_equal(lq_st_writer_new(&w[i]), LQ_OK);
    int q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    int bias = !strcmp(s->model_type, "qwen2"), qk_norm = !strcmp(s->model_type, "qwen3");
    add_tensor(w, s, e, "model.embed_tokens.weight", s->vocab, s->dim);
    for (int l = 0; l < s->layers; l++) {
        char n[128];
#define N(x) (snprintf(n, sizeof n, "model.layers.%d.%s", l, x), n)
        add_tensor(w, s, e, N("input_layernorm.weight"), s->dim, 0);
        add_tensor(w, s, e, N("post_attention_layernorm.weight"), s->dim, 0);
        add_tensor(w, s, e, N("self_attn.q_proj.weight"), q, s->dim);
        add_tensor(w, s, e, N("self_attn.k_proj.weight"), kv, s->dim);
        add_tensor(w, s, e, N("self_attn.v_proj.weight"), kv, s->dim);
        add_tensor(w, s, e, N("self_attn.o_proj.weight"), s->dim, q);
        if (bias) {
            add_tensor(w, s, e, N("self_attn.q_proj.bias"), q, 0);
            add_tensor(w, s, e, N("self_attn.k_proj.bias"), kv, 0);
            add_tensor(w, s, e, N("self_attn.v_proj.bias"), kv, 0);
        }
        if (qk_norm) {
            add_tensor(w, s, e, N("self_attn.q_norm.weight"), s->head_dim, 0);
            add_tensor(w, s, e, N("self_attn.k_norm.weight"), s->head_dim, 0);
        }
        add_tensor(w, s, e, N("mlp.gate_proj.weight"), s->hidden, s->dim);
        add_tensor(w, s, e, N("mlp.up_proj.weight"), s->hidden, s->dim);
        add_tensor(w, s, e, N("mlp.down_proj.weight"), s->dim, s->hidden);
#undef N
    }
    add_tensor(w, s, e, "model.norm.weight", s->dim, 0);
    if (s->lm_head_present) add_tensor(w, s, e, "lm_head.weight", s->vocab, s->dim);
    if (s->shards == 1) {
        assert_int_equal(lq_st_writer_write(w[0], in_dir(dir, "model.safetensors")), LQ_OK);
    } else {
        const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
        json_t *map = json_object();
        for (size_t i = 0; i < e->n; i++)
            json_object_set_new(map, e->names[i], json_string(files[strstr(e->names[i], "layers.1.") ? 1 : 0]));
        json_t *index = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
        write_json(in_dir(dir, "model.safetensors.index.json"), index);
        json_decref(index);
        for (int i = 0; i < 2; i++)
            assert_int_equal(lq_st_writer_write(w[i], in_dir(dir, files[i])), LQ_OK);
    }
    for (int i = 0; i < s->shards; i++) lq_st_writer_free(w[i]);

    json_t *tok = NULL;
    if (s->tokenizer == 1 || s->tokenizer == 2) tok = byte_level_tokenizer(s->tokenizer == 2);
    else if (s->tokenizer == 3) tok = spm_tokenizer();
    else if (s->tokenizer == 4)
        tok = json_pack("{s:{s:s, s:[[s,f]]}}", "model", "type", "Unigram", "vocab", "a", -1.0);
    if (tok) {
        write_json(in_dir(dir, "tokenizer.json"), tok);
        json_decref(tok);
    }
    if (s->tokenizer == 1)
        write_text(in_dir(dir, "tokenizer_config.json"),
                   "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"},"
                   " \"add_bos_token\": false}");
}

static void expect_same(const float *got, const float *want, size_t n, const char *what) {
    assert_non_null(got);
    if (memcmp(got, want, n * sizeof *got) != 0) fail_msg("%s: values differ", what);
}

static void check_linear(const lq_linear *lin, const expected *e, int l, const char *proj, int in,
                         int out, int bias) {
    char n[128];
    assert_int_equal(lin->in_features, in);
    assert_int_equal(lin->out_features, out);
    snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, proj);
    expect_same(lin->weight, expected_find(e, n), (size_t)in * out, n);
    if (bias) {
        snprintf(n, sizeof n, "model.layers.%d.%s.bias", l, proj);
        expect_same(lin->bias, expected_find(e, n), (size_t)out, n);
    } else {
        assert_null(lin->bias);
    }
}

static lq_model *load_and_check(const hf_spec *s, const char **dir_out) {
    const char *dir = new_model_dir();
    static char dir_copy[PATH_MAX + 32];
    snprintf(dir_copy, sizeof dir_copy, "%s", dir);
    expected e;
    write_model(dir_copy, s, &e);
    lq_model *m = NULL;
    if (lq_hf_load_model(dir_copy, &m) != LQ_OK) fail_msg("%s", lq_last_error());
    const lq_model_config *c = &m->cfg;
    assert_string_equal(c->arch, s->model_type);
    assert_int_equal(c->dim, s->dim);
    assert_int_equal(c->hidden_dim, s->hidden);
    assert_int_equal(c->n_layers, s->layers);
    assert_int_equal(c->n_heads, s->heads);
    assert_int_equal(c->n_kv_heads, s->kv_heads);
    assert_int_equal(c->head_dim, s->head_dim);
    assert_int_equal(c->rope_dim, s->head_dim);
    assert_int_equal(c->vocab_size, s->vocab);
    assert_int_equal(c->max_seq_len, 512);
    assert_true(c->norm_eps == 1e-5f);
    assert_true(c->rope_theta == 1000000.0f);
    assert_int_equal(c->rope_style, LQ_ROPE_HALF);
    int bias = !strcmp(s->model_type, "qwen2"), qk_norm = !strcmp(s->model_type, "qwen3");
    assert_int_equal(c->has_qkv_bias, bias);
    assert_int_equal(c->has_qk_norm, qk_norm);
    int tied = s->tied || !s->lm_head_present;
    assert_int_equal(c->tied_embeddings, tied);
    assert_string_equal(m->format, "hf");
    expect_same(m->tok_embeddings, expected_find(&e, "model.embed_tokens.weight"),
                (size_t)s->vocab * s->dim, "embed_tokens");
    expect_same(m->final_norm, expected_find(&e, "model.norm.weight"), (size_t)s->dim, "norm");
    int q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    for (int l = 0; l < s->layers; l++) {
        const lq_layer *L = &m->layers[l];
        char n[128];
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        expect_same(L->attn_norm, expected_find(&e, n), (size_t)s->dim, n);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        expect_same(L->ffn_norm, expected_find(&e, n), (size_t)s->dim, n);
        check_linear(&L->wq, &e, l, "self_attn.q_proj", s->dim, q, bias);
        check_linear(&L->wk, &e, l, "self_attn.k_proj", s->dim, kv, bias);
        check_linear(&L->wv, &e, l, "self_attn.v_proj", s->dim, kv, bias);
        check_linear(&L->wo, &e, l, "self_attn.o_proj", q, s->dim, 0);
        check_linear(&L->w_gate, &e, l, "mlp.gate_proj", s->dim, s->hidden, 0);
        check_linear(&L->w_up, &e, l, "mlp.up_proj", s->dim, s->hidden, 0);
        check_linear(&L->w_down, &e, l, "mlp.down_proj", s->hidden, s->dim, 0);
        if (qk_norm) {
            snprintf(n, sizeof n, "model.layers.%d.self_attn.q_norm.weight", l);
            expect_same(L->q_norm, expected_find(&e, n), (size_t)s->head_dim, n);
            snprintf(n, sizeof n, "model.layers.%d.self_attn.k_norm.weight", l);
            expect_same(L->k_norm, expected_find(&e, n), (size_t)s->head_dim, n);
        } else {
            assert_null(L->q_norm);
        }
    }
    assert_int_equal(m->lm_head.in_features, s->dim);
    assert_int_equal(m->lm_head.out_features, s->vocab);
    if (tied) assert_ptr_equal(m->lm_head.weight, m->tok_embeddings);
    else expect_same(m->lm_head.weight, expected_find(&e, "lm_head.weight"), (size_t)s->vocab * s->dim, "lm_head");
    expected_free(&e);
    if (dir_out) *dir_out = dir_copy;
    return m;
}

static const hf_spec base = {"llama", 16, 32, 2, 4, 2, 4, 300, 0, 1, 0, LQ_DTYPE_BF16, 1,
                             NULL, NULL, NULL, 1};

static int *encode(const lq_tokenizer *t, const char *text, int add_bos, size_t *n) {
    int *ids = NULL;
    if (lq_tokenizer_encode(t, text, strlen(text), add_bos, 1, &ids, n) != LQ_OK)
        fail_msg("%s", lq_last_error());
    return ids;
}

static void test_llama_bf16_tied_byte_level(void **state) {
    (void)state;
    lq_model *m = load_and_check(&base, NULL);
    const lq_tokenizer *t = m->tokenizer;
    assert_non_null(t);
    assert_int_equal(lq_tokenizer_vocab_size(t), 259);
    assert_int_equal(lq_tokenizer_bos(t), 258);     /* from tokenizer_config.json, not config.json */
    assert_int_equal(lq_tokenizer_eos(t), 258);
    assert_int_equal(lq_tokenizer_add_bos(t), 0);
    size_t n;
    int *ids = encode(t, "he he<|endoftext|>1", 0, &n);
    /* "he" → 256, " he" → 257, special, digit */
    assert_int_equal(n, 4);
    assert_true(ids[0] == 256 && ids[1] == 257 && ids[2] == 258 && ids[3] == '1');
    free(ids);
    lq_model_free(m);
}

static void test_qwen2_f16_bias_untied_llama3_pre(void **state) {
    (void)state;
    hf_spec s = base;
    s.model_type = "qwen2";
    s.dtype = LQ_DTYPE_F16;
    s.tied = 0;
    s.lm_head_present = 1;
    s.tokenizer = 2;
    lq_model *m = load_and_check(&s, NULL);
    const lq_tokenizer *t = m->tokenizer;
    assert_non_null(t);
    assert_int_equal(lq_tokenizer_bos(t), 1);      /* config.json's bos_token_id */
    assert_int_equal(lq_tokenizer_add_bos(t), 1);  /* the post-processor template starts with one */
    size_t n;
    int *ids = encode(t, "he he", 0, &n);
    assert_int_equal(n, 2);
    assert_true(ids[0] == 256 && ids[1] == 257);
    free(ids);
    lq_model_free(m);
}

static void test_qwen3_f32_sharded_rope_scaling_spm(void **state) {
    (void)state;
    hf_spec s = base;
    s.model_type = "qwen3";
    s.dtype = LQ_DTYPE_F32;
    s.head_dim = 8;
    s.explicit_head_dim = 1;
    s.shards = 2;
    s.tokenizer = 3;
    lq_model *m = load_and_check(&s, NULL);
    const lq_tokenizer *t = m->tokenizer;
    assert_non_null(t);
    assert_int_equal(lq_tokenizer_bos(t), 1);
    assert_int_equal(lq_tokenizer_add_bos(t), 1);
    size_t n;
    int *ids = encode(t, "he he", 1, &n);
    /* <s>, then "▁he▁he" merged by score: ▁h (rank 0) twice, then ▁he (rank 2) twice */
    assert_int_equal(n, 3);
    assert_true(ids[0] == 1 && ids[1] == 264 && ids[2] == 264);
    free(ids);
    ids = encode(t, "\xc3\xa9", 0, &n);   /* byte fallback: ▁ then <0xC3> <0xA9> */
    assert_int_equal(n, 3);
    assert_true(ids[0] == 259 && ids[1] == 3 + 0xC3 && ids[2] == 3 + 0xA9);
    free(ids);
    lq_model_free(m);

    /* rope scaling from config.json */
    const char *dir = new_model_dir();
    char d[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s", dir);
    expected e;
    s = base;
    s.tokenizer = 0;
    write_model(d, &s, &e);
    expected_free(&e);
    json_t *cfg = make_config(&s);
    json_object_set_new(cfg, "rope_scaling",
                        json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", 32.0,
                                  "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                  "original_max_position_embeddings", 8192));
    write_json(in_dir(d, "config.json"), cfg);
    json_decref(cfg);
    if (lq_hf_load_model(d, &m) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_true(m->cfg.rope_scale_factor == 32.0f);
    assert_true(m->cfg.rope_low_freq_factor == 1.0f && m->cfg.rope_high_freq_factor == 4.0f);
    assert_int_equal(m->cfg.rope_original_max_pos, 8192);
    assert_null(m->tokenizer);
    lq_model_free(m);
}

/* ---- errors ----------------------------------------------------------------------------- */
static void expect_failure(const char *dir, lq_status want, const char *file, const char *fragment) {
    lq_model *m = (lq_model *)&m;
    lq_clear_error();
    lq_status st = lq_hf_load_model(dir, &m);
    const char *msg = lq_last_error();
    if (st != want)
        fail_msg("expected %s, got %s: %s", lq_status_name(want), lq_status_name(st), msg);
    assert_null(m);
    print_message("    %s: %s\n", lq_status_name(st), msg);
    if (file && !strstr(msg, file)) fail_msg("message does not name %s: %s", file, msg);
    if (fragment && !strstr(msg, fragment)) fail_msg("message lacks \"%s\": %s", fragment, msg);
}

/* A valid model directory whose config.json is then replaced by `text`. */
static void expect_config_failure(const char *text, lq_status want, const char *fragment) {
    const char *dir = new_model_dir();
    char d[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s", dir);
    expected e;
    hf_spec s = base;
    s.tokenizer = 0;
    write_model(d, &s, &e);
    expected_free(&e);
    write_text(in_dir(d, "config.json"), text);
    expect_failure(d, want, "config.json", fragment);
}

static void expect_spec_failure(const hf_spec *s, lq_status want, const char *file, const char *fragment) {
    const char *dir = new_model_dir();
    char d[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s", dir);
    expected e;
    write_model(d, s, &e);
    expected_free(&e);
    expect_failure(d, want, file, fragment);
}

static void test_bad_config(void **state) {
    (void)state;
    expect_config_failure("{\"model_type\": \"llama\", ", LQ_ERR_FORMAT, "not valid JSON");
    expect_config_failure("[1, 2]", LQ_ERR_FORMAT, "not a JSON object");
    expect_config_failure("{\"model_type\": \"gpt_neox\"}", LQ_ERR_UNSUPPORTED, "'gpt_neox'");
    expect_config_failure("{\"hidden_size\": 16}", LQ_ERR_NOT_FOUND, "'model_type'");
    expect_config_failure("{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 32, "
                          "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 300, "
                          "\"max_position_embeddings\": 512}",
                          LQ_ERR_NOT_FOUND, "'rms_norm_eps'");
    expect_config_failure("{\"model_type\": \"llama\", \"hidden_size\": \"16\"}", LQ_ERR_FORMAT,
                          "'hidden_size'");
    expect_config_failure("{\"model_type\": \"llama\", \"hidden_size\": 16, \"hidden_size\": 16}",
                          LQ_ERR_FORMAT, "not valid JSON");
    expect_config_failure("{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 32, "
                          "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 300, "
                          "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5, "
                          "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
                          LQ_ERR_UNSUPPORTED, "yarn");
    expect_config_failure("{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 32, "
                          "\"num_hidden_layers\": 2, \"num_attention_heads\": 3, \"vocab_size\": 300, "
                          "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5}",
                          LQ_ERR_FORMAT, "head_dim");
    const char *empty = new_model_dir();
    expect_failure(empty, LQ_ERR_NOT_FOUND, "config.json", NULL);
}

static void test_bad_weights_and_tokenizer(void **state) {
    (void)state;
    hf_spec s = base;
    s.omit = "model.layers.1.mlp.up_proj.weight";
    expect_spec_failure(&s, LQ_ERR_NOT_FOUND, NULL, "'model.layers.1.mlp.up_proj.weight'");
    s = base;
    s.reshape = "model.layers.0.self_attn.k_proj.weight";
    expect_spec_failure(&s, LQ_ERR_FORMAT, NULL, "'model.layers.0.self_attn.k_proj.weight' has shape [9, 16], expected [8, 16]");
    s = base;
    s.int_tensor = "model.norm.weight";
    expect_spec_failure(&s, LQ_ERR_UNSUPPORTED, NULL, "'model.norm.weight' has dtype I32");
    s = base;
    s.model_type = "qwen2";
    s.omit = "model.layers.0.self_attn.v_proj.bias";
    expect_spec_failure(&s, LQ_ERR_NOT_FOUND, NULL, "v_proj.bias");
    s = base;
    s.model_type = "qwen3";
    s.omit = "model.layers.1.self_attn.k_norm.weight";
    expect_spec_failure(&s, LQ_ERR_NOT_FOUND, NULL, "k_norm");
    s = base;
    s.tokenizer = 4;
    expect_spec_failure(&s, LQ_ERR_UNSUPPORTED, "tokenizer.json", "Unigram");
    s = base;
    s.vocab = 200;      /* fewer embedding rows than tokens */
    expect_spec_failure(&s, LQ_ERR_FORMAT, "tokenizer.json", "vocab_size is 200");

    /* unsupported pre-tokenizer */
    const char *dir = new_model_dir();
    char d[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s", dir);
    expected e;
    s = base;
    write_model(d, &s, &e);
    expected_free(&e);
    json_t *tok = byte_level_tokenizer(0);
    json_object_set_new(tok, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
    write_json(in_dir(d, "tokenizer.json"), tok);
    json_decref(tok);
    expect_failure(d, LQ_ERR_UNSUPPORTED, "tokenizer.json", "Whitespace");
    write_text(in_dir(d, "tokenizer.json"), "{\"model\": ");
    expect_failure(d, LQ_ERR_FORMAT, "tokenizer.json", "not valid JSON");

    /* no weights at all */
    dir = new_model_dir();
    snprintf(d, sizeof d, "%s", dir);
    json_t *cfg = make_config(&base);
    write_json(in_dir(d, "config.json"), cfg);
    json_decref(cfg);
    expect_failure(d, LQ_ERR_NOT_FOUND, "model", "model.safetensors");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_bf16_tied_byte_level),
        cmocka_unit_test(test_qwen2_f16_bias_untied_llama3_pre),
        cmocka_unit_test(test_qwen3_f32_sharded_rope_scaling_spm),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_bad_weights_and_tokenizer),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
