/* The two JSON mappings a saved model relies on (common/):
 *  - lq_model_config_to_json → lq_model_config_from_json keeps every field of lq_model_config,
 *    through the JSON text too, for configs that set every optional feature (interleaved
 *    rope, llama3 scaling, partial rotary, q/k/v bias and q/k norm on a llama, untied head);
 *    a plain Hugging Face config still reads as "half" rope; bad project keys are errors;
 *  - lq_tokenizer_save_json → lq_tokenizer_load_json gives a tokenizer that encodes and
 *    decodes identically: the SentencePiece tokenizer of stories260K (tok512.bin), the GPT-2
 *    tokenizer of SmolLM2 (GGUF), and a spec-built vocabulary with a non-UTF-8 token, a NUL
 *    byte and a non-finite score; malformed files give errors naming the file and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "model_json"
#include "test_util.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer_internal.h"

#ifndef LQ_SHARED_DATA
#define LQ_SHARED_DATA "../shared/data"
#endif
#define TOK512 LQ_SHARED_DATA "/llama2c-stories260K/tok512.bin"

/* ---- model config ------------------------------------------------------------------------ */
static void assert_same_config(const lq_model_config *a, const lq_model_config *b) {
    assert_string_equal(a->arch, b->arch);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->hidden_dim, b->hidden_dim);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->max_seq_len, b->max_seq_len);
    assert_true(a->norm_eps == b->norm_eps);
    assert_true(a->rope_theta == b->rope_theta);
    assert_int_equal(a->rope_dim, b->rope_dim);
    assert_int_equal(a->rope_style, b->rope_style);
    assert_true(a->rope_scale_factor == b->rope_scale_factor);
    assert_true(a->rope_low_freq_factor == b->rope_low_freq_factor);
    assert_true(a->rope_high_freq_factor == b->rope_high_freq_factor);
    assert_int_equal(a->rope_original_max_pos, b->rope_original_max_pos);
    assert_int_equal(a->has_qkv_bias, b->has_qkv_bias);
    assert_int_equal(a->has_qk_norm, b->has_qk_norm);
    assert_int_equal(a->tied_embeddings, b->tied_embeddings);
}

/* to_json, then through the text (as config.json is written), then from_json */
static void round_trip(const lq_model_config *c, lq_model_config *back, char **text_out) {
    json_t *j = NULL;
    if (lq_model_config_to_json(c, &j) != LQ_OK) fail_msg("%s", lq_last_error());
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    assert_non_null(text);
    json_decref(j);
    json_error_t err;
    json_t *parsed = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(parsed);
    if (lq_model_config_from_json("config.json", parsed, back) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_int_equal(lq_model_config_validate(back, "config.json"), LQ_OK);
    json_decref(parsed);
    if (text_out) *text_out = text;
    else free(text);
}

static lq_model_config base_config(const char *arch) {
    lq_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.dim = 96, c.hidden_dim = 250, c.n_layers = 3, c.n_heads = 6, c.n_kv_heads = 2;
    c.head_dim = 16, c.vocab_size = 512, c.max_seq_len = 2048;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.rope_dim = 16, c.rope_style = LQ_ROPE_HALF;
    return c;
}

static void test_config_round_trip(void **state) {
    (void)state;
    lq_model_config cases[6];
    cases[0] = base_config("llama");
    /* a GGUF Llama 3 with everything optional switched on */
    cases[1] = base_config("llama");
    cases[1].rope_style = LQ_ROPE_INTERLEAVED;
    cases[1].rope_scale_factor = 8.0f, cases[1].rope_low_freq_factor = 1.0f;
    cases[1].rope_high_freq_factor = 4.0f, cases[1].rope_original_max_pos = 8192;
    cases[1].rope_theta = 500000.0f, cases[1].norm_eps = 1e-6f;
    cases[1].has_qkv_bias = 1, cases[1].has_qk_norm = 1, cases[1].tied_embeddings = 1;
    cases[1].rope_dim = 12;   /* partial rotary: 12 of 16 */
    cases[2] = base_config("qwen2");
    cases[2].has_qkv_bias = 1, cases[2].rope_theta = 1000000.0f, cases[2].norm_eps = 1e-6f;
    cases[3] = base_config("qwen3");
    cases[3].has_qk_norm = 1, cases[3].head_dim = 32, cases[3].rope_dim = 32;
    cases[4] = base_config("mistral");
    cases[4].norm_eps = 3.3333e-7f, cases[4].rope_theta = 12345.678f;
    /* rope_dim / head_dim with no short decimal form */
    cases[5] = base_config("llama");
    cases[5].head_dim = 96, cases[5].n_heads = 1, cases[5].n_kv_heads = 1, cases[5].rope_dim = 22;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(lq_model_config_validate(&cases[i], "case"), LQ_OK);
        lq_model_config back;
        char *text;
        round_trip(&cases[i], &back, &text);
        assert_same_config(&cases[i], &back);
        if (i == 0) {
            /* Hugging Face readers see their own keys, floats in their short form */
            assert_non_null(strstr(text, "\"rms_norm_eps\": 1e-5"));
            assert_non_null(strstr(text, "\"LlamaForCausalLM\""));
            assert_non_null(strstr(text, "\"num_key_value_heads\": 2"));
            assert_non_null(strstr(text, "\"liftquant_rope_style\": \"half\""));
            assert_null(strstr(text, "rope_scaling"));
        }
        if (i == 1) {
            assert_non_null(strstr(text, "\"liftquant_rope_style\": \"interleaved\""));
            assert_non_null(strstr(text, "\"rope_type\": \"llama3\""));
            assert_non_null(strstr(text, "\"partial_rotary_factor\": 0.75"));
        }
        free(text);
    }
}

static void test_config_hf_defaults_and_errors(void **state) {
    (void)state;
    json_error_t err;
    json_t *j = json_loads("{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                           " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                           " \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-6}", 0, &err);
    assert_non_null(j);
    lq_model_config c;
    assert_int_equal(lq_model_config_from_json("x/config.json", j, &c), LQ_OK);
    assert_int_equal(c.rope_style, LQ_ROPE_HALF);
    assert_int_equal(c.has_qkv_bias, 1);
    assert_int_equal(c.has_qk_norm, 0);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rope_theta == 10000.0f);

    json_object_set_new(j, "liftquant_rope_style", json_string("sideways"));
    assert_int_equal(lq_model_config_from_json("x/config.json", j, &c), LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "x/config.json"));
    assert_non_null(strstr(lq_last_error(), "liftquant_rope_style"));
    json_object_set_new(j, "liftquant_rope_style", json_string("interleaved"));
    json_object_set_new(j, "liftquant_qk_norm", json_string("yes"));
    assert_int_equal(lq_model_config_from_json("x/config.json", j, &c), LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "liftquant_qk_norm"));
    json_object_set_new(j, "liftquant_qk_norm", json_true());
    /* numbers a float cannot hold: too large (inf) and too small (0) are refused by name */
    json_object_set_new(j, "rope_theta", json_real(1e50));
    expect_error(lq_model_config_from_json("x/config.json", j, &c), LQ_ERR_RANGE,
                 "key 'rope_theta' = 1e+50 is outside a float's positive range");
    json_object_set_new(j, "rope_theta", json_real(10000.0));
    json_object_set_new(j, "rms_norm_eps", json_real(1e-60));
    expect_error(lq_model_config_from_json("x/config.json", j, &c), LQ_ERR_RANGE,
                 "key 'rms_norm_eps' = 1e-60 is outside a float's positive range");
    json_decref(j);

    lq_model_config bad = base_config("llama");
    bad.n_kv_heads = 4;  /* 6 heads do not share 4 KV heads */
    assert_int_not_equal(lq_model_config_to_json(&bad, &j), LQ_OK);
    bad = base_config("gpt2");
    assert_int_equal(lq_model_config_to_json(&bad, &j), LQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(lq_last_error(), "gpt2"));
}

/* ---- tokenizer ----------------------------------------------------------------------------- */
static const char *const texts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82 caf\xc3\xa9",
    "  two leading spaces\n\nand 12345 digits, tabs\tand <s> specials </s><|im_start|>",
    "",
    "\xff\xfe invalid UTF-8 \xc3",
};

/* Every text encodes to the same ids with each flag combination; every id decodes alike. */
static void assert_same_tokenizer(const lq_tokenizer *a, const lq_tokenizer *b) {
    assert_int_equal(lq_tokenizer_vocab_size(a), lq_tokenizer_vocab_size(b));
    assert_int_equal(lq_tokenizer_bos(a), lq_tokenizer_bos(b));
    assert_int_equal(lq_tokenizer_eos(a), lq_tokenizer_eos(b));
    assert_int_equal(lq_tokenizer_add_bos(a), lq_tokenizer_add_bos(b));
    size_t nonempty = 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (int flags = 0; flags < 4; flags++) {
            int *ia, *ib;
            size_t na, nb;
            /* a vocabulary may lack a byte of the invalid-UTF-8 text: then both must fail */
            lq_status sa = lq_tokenizer_encode(a, texts[i], strlen(texts[i]), flags & 1, flags >> 1, &ia, &na);
            lq_status sb = lq_tokenizer_encode(b, texts[i], strlen(texts[i]), flags & 1, flags >> 1, &ib, &nb);
            assert_int_equal(sa, sb);
            if (sa != LQ_OK) {
                assert_true(i == 4);
                continue;
            }
            assert_int_equal(na, nb);
            if (na) assert_memory_equal(ia, ib, na * sizeof *ia);
            nonempty += na > 0;
            free(ia);
            free(ib);
        }
    assert_true(nonempty > 10);
    for (int id = 0; id < lq_tokenizer_vocab_size(a); id++) {
        char da[256], db[256];
        int prev = id % 7 == 0 ? lq_tokenizer_bos(a) : id - 1;
        int la = lq_tokenizer_decode(a, prev, id, da, sizeof da);
        int lb = lq_tokenizer_decode(b, prev, id, db, sizeof db);
        assert_int_equal(la, lb);
        if (la > 0) assert_memory_equal(da, db, (size_t)la);
    }
}

static lq_tokenizer *save_and_load(const lq_tokenizer *t, const char *name) {
    const char *path = temp_path(name);
    if (lq_tokenizer_save_json(t, path) != LQ_OK) fail_msg("%s", lq_last_error());
    lq_tokenizer *back = NULL;
    if (lq_tokenizer_load_json(path, &back) != LQ_OK) fail_msg("%s", lq_last_error());
    return back;
}

static void test_tokenizer_spm_stories(void **state) {
    (void)state;
    if (access(TOK512, R_OK) != 0) {
        print_message("%s not found: skipping\n", TOK512);
        skip();
    }
    lq_tokenizer *t = NULL;
    assert_int_equal(lq_tokenizer_load_llama2c(TOK512, 512, &t), LQ_OK);
    lq_tokenizer *back = save_and_load(t, "tok512.liftquant.json");
    assert_same_tokenizer(t, back);
    /* a known encoding, so "identical" is not identical nonsense */
    int *ids;
    size_t n;
    assert_int_equal(lq_tokenizer_encode(back, "Once upon a time", 16, 1, 0, &ids, &n), LQ_OK);
    assert_true(n >= 3 && ids[0] == 1);
    free(ids);
    lq_tokenizer_free(t);
    lq_tokenizer_free(back);
}

static const char *smollm2_path(void) {
    const char *p = getenv("LQ_SMOLLM2_GGUF");
    return p && p[0] ? p : LQ_SMOLLM2_DEFAULT;
}

static void test_tokenizer_gpt2_smollm2(void **state) {
    (void)state;
    const char *path = smollm2_path();
    if (access(path, R_OK) != 0) fail_msg("%s not present: run tools/get_smollm2.sh", path);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(path, &g), LQ_OK);
    const char *const *tokens, *const *merges;
    const char *pre;
    size_t n_tokens, n_merges, n_types;
    int64_t *types64, bos, eos;
    assert_int_equal(lq_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, NULL, &n_tokens), LQ_OK);
    assert_int_equal(lq_gguf_get_string_array(g, "tokenizer.ggml.merges", &merges, NULL, &n_merges), LQ_OK);
    assert_int_equal(lq_gguf_get_int_array(g, "tokenizer.ggml.token_type", &types64, &n_types), LQ_OK);
    assert_int_equal(lq_gguf_get_string(g, "tokenizer.ggml.pre", &pre, NULL), LQ_OK);
    assert_int_equal(lq_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos), LQ_OK);
    assert_int_equal(lq_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos), LQ_OK);
    int *types = malloc(n_types * sizeof *types);
    for (size_t i = 0; i < n_types; i++) types[i] = (int)types64[i];
    lq_tokenizer_spec spec = {
        .kind = LQ_TOKENIZER_GPT2, .n_tokens = (int)n_tokens, .tokens = tokens,
        .token_types = types, .n_merges = (int)n_merges, .merges = merges, .pre = pre,
        .bos_id = (int)bos, .eos_id = (int)eos, .unk_id = -1,
    };
    lq_tokenizer *t = NULL;
    if (lq_tokenizer_new(&spec, &t) != LQ_OK) fail_msg("%s", lq_last_error());
    free(types);
    free(types64);
    lq_tokenizer *back = save_and_load(t, "smollm2.liftquant.json");
    lq_gguf_close(g);
    assert_same_tokenizer(t, back);
    lq_tokenizer_free(t);
    lq_tokenizer_free(back);
}

static void test_tokenizer_odd_bytes(void **state) {
    (void)state;
    /* token 3 is not UTF-8, token 4 holds a NUL (as a llama2.c file may), token 5 scores −inf */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xff\xfe", "a\0b", ("\xe2\x96\x81" "a"),
                                       "a", "b", "<0x41>"};
    const int n = (int)(sizeof toks / sizeof toks[0]);
    lq_tokenizer_spec spec = {.kind = LQ_TOKENIZER_SPM, .n_tokens = n, .tokens = toks,
                              .bos_id = 1, .eos_id = 2, .unk_id = 0, .add_bos = 1,
                              .add_space_prefix = 1};
    float scores[9] = {0, 0, 0, -1.5f, -2.25f, -INFINITY, -3.0f, -4.0f, 0};
    int types[9] = {LQ_TOKEN_UNKNOWN, LQ_TOKEN_CONTROL, LQ_TOKEN_CONTROL, 1, 1, 1, 1, 1, LQ_TOKEN_BYTE};
    spec.scores = scores;
    spec.token_types = types;
    size_t lens[9];
    for (int i = 0; i < n; i++) lens[i] = i == 4 ? 3 : strlen(toks[i]);
    lq_tokenizer *t = NULL;
    assert_int_equal(lq_tokenizer_new_sized(&spec, lens, "odd spec", &t), LQ_OK);
    lq_tokenizer *back = save_and_load(t, "odd.liftquant.json");
    assert_same_tokenizer(t, back);
    assert_memory_equal(lq_tokenizer_token(back, 3), "\xff\xfe", 3);
    assert_memory_equal(lq_tokenizer_token(back, 4), "a\0b", 4);
    assert_true(isinf(back->scores[5]) && back->scores[5] < 0);
    lq_tokenizer_free(t);
    lq_tokenizer_free(back);
}

static void expect_load_error(const char *json, lq_status code, const char *fragment) {
    const char *path = temp_path("bad.liftquant.json");
    write_file(path, json, strlen(json));
    lq_tokenizer *t = (lq_tokenizer *)1;
    assert_int_equal(lq_tokenizer_load_json(path, &t), code);
    assert_null(t);
    if (!strstr(lq_last_error(), fragment) || !strstr(lq_last_error(), "bad.liftquant.json"))
        fail_msg("error '%s' lacks '%s'", lq_last_error(), fragment);
}

#define GOOD_HEAD "{\"format\": \"liftquant.tokenizer\", \"format_version\": 1, "
#define GOOD_IDS "\"bos_id\": 0, \"eos_id\": 1, \"unk_id\": -1, \"add_bos\": true, \"add_space_prefix\": false, "

static void test_tokenizer_bad_files(void **state) {
    (void)state;
    lq_tokenizer *t = (lq_tokenizer *)1;
    assert_int_equal(lq_tokenizer_load_json(temp_path("absent.json"), &t), LQ_ERR_NOT_FOUND);
    assert_non_null(strstr(lq_last_error(), "absent.json"));
    expect_load_error("{\"format\": ", LQ_ERR_FORMAT, "not valid JSON");
    expect_load_error("[1, 2]", LQ_ERR_FORMAT, "not a JSON object");
    expect_load_error("{\"format\": \"tokenizer\"}", LQ_ERR_FORMAT, "'format'");
    expect_load_error(GOOD_HEAD "\"format_version\": 2}", LQ_ERR_FORMAT, "duplicate");
    expect_load_error("{\"format\": \"liftquant.tokenizer\", \"format_version\": 2}", LQ_ERR_UNSUPPORTED,
                      "format_version");
    expect_load_error(GOOD_HEAD "\"kind\": \"wordpiece\"}", LQ_ERR_FORMAT, "'kind'");
    expect_load_error(GOOD_HEAD "\"kind\": \"spm\", " GOOD_IDS "\"tokens\": [\"a\", \"b\"], "
                      "\"scores\": [0], \"token_types\": [1, 1], \"merges\": []}",
                      LQ_ERR_FORMAT, "'scores' has 1 entries, expected 2");
    expect_load_error(GOOD_HEAD "\"kind\": \"spm\", " GOOD_IDS "\"tokens\": [\"a\", \"b\"], "
                      "\"scores\": [0, 0], \"token_types\": [1, 9], \"merges\": []}",
                      LQ_ERR_FORMAT, "token_types[1]");
    expect_load_error(GOOD_HEAD "\"kind\": \"spm\", " GOOD_IDS "\"tokens\": [\"a\", {\"hex\": \"zz\"}], "
                      "\"scores\": [0, 0], \"token_types\": [1, 1], \"merges\": []}",
                      LQ_ERR_FORMAT, "tokens[1].hex");
    expect_load_error(GOOD_HEAD "\"kind\": \"gpt2\", \"pre\": \"bogus\", " GOOD_IDS
                      "\"tokens\": [\"a\", \"b\"], \"scores\": [0, 0], \"token_types\": [1, 1], "
                      "\"merges\": [\"a b\"]}",
                      LQ_ERR_UNSUPPORTED, "'pre'");
    expect_load_error(GOOD_HEAD "\"kind\": \"gpt2\", \"pre\": \"gpt2\", " GOOD_IDS
                      "\"tokens\": [\"a\", \"b\"], \"scores\": [0, 0], \"token_types\": [1, 1], "
                      "\"merges\": [\"ab\"]}",
                      LQ_ERR_FORMAT, "merge 0");
    expect_load_error(GOOD_HEAD "\"kind\": \"spm\", \"bos_id\": 5, \"eos_id\": 1, \"unk_id\": -1, "
                      "\"add_bos\": true, \"add_space_prefix\": false, \"tokens\": [\"a\", \"b\"], "
                      "\"scores\": [0, 0], \"token_types\": [1, 1], \"merges\": []}",
                      LQ_ERR_RANGE, "bos_id");
    /* an unwritable destination is an error naming it */
    lq_tokenizer *ok = NULL;
    static const char *const two[] = {"a", "b"};
    lq_tokenizer_spec spec = {.kind = LQ_TOKENIZER_SPM, .n_tokens = 2, .tokens = two, .bos_id = -1,
                              .eos_id = -1, .unk_id = -1};
    assert_int_equal(lq_tokenizer_new(&spec, &ok), LQ_OK);
    assert_int_not_equal(lq_tokenizer_save_json(ok, temp_path("no/such/dir/t.json")), LQ_OK);
    assert_non_null(strstr(lq_last_error(), "no/such/dir"));
    lq_tokenizer_free(ok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_config_hf_defaults_and_errors),
        cmocka_unit_test(test_tokenizer_spm_stories),
        cmocka_unit_test(test_tokenizer_gpt2_smollm2),
        cmocka_unit_test(test_tokenizer_odd_bytes),
        cmocka_unit_test(test_tokenizer_bad_files),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
