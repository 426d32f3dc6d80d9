/* GPT-2 byte-level BPE tests (common/bpe.c through the public tokenizer API).
 *
 * A small tokenizer is built by hand: the 256 byte-level characters as ids 0..255 (id b is
 * byte b), a dozen merges, and two special tokens; expected ids are derived by hand from the
 * merge ranks in the comments. Then: lossless round trips of random bytes (invalid UTF-8
 * included) for every pre-tokenizer, long inputs that would be quadratic without the heap, and
 * errors. With LQ_SMOLLM2_GGUF (default models/SmolLM2-135M-Instruct.Q4_1.gguf, from tools/get_smollm2.sh)
 * present, the real 49152-token vocabulary is compared with the ids of Hugging Face
 * `tokenizers` (tests/data/smollm2_bpe_expected.json, made by tests/make_bpe_fixtures.py) for
 * the smollm, gpt2, llama-bpe and qwen2 pre-tokenizers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "bpe"
#include "test_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "tokenizer.h"

/* Merges in rank order; the merged token of rank r gets id 256 + r.
 * Ġ = space (U+0120), Ċ = newline (U+010A), é = C3 A9 = "Ã©", 中 = E4 B8 AD = "ä¸" + "Ń"
 * (0xAD, the soft hyphen, is not printable and maps to U+0143). */
static const char *hand_merges[] = {
    "\xc4\xa0 t",                 /* 0: Ġt     id 256 */
    "h e",                        /* 1: he     id 257 */
    "\xc4\xa0t he",               /* 2: Ġthe   id 258 */
    "i n",                        /* 3: in     id 259 */
    "\xc4\xa0 a",                 /* 4: Ġa     id 260 */
    "\xc3\x83 \xc2\xa9",          /* 5: é      id 261 */
    "\xc3\xa4 \xc2\xb8",          /* 6: ä¸     id 262 */
    "\xc3\xa4\xc2\xb8 \xc5\x83",  /* 7: 中     id 263 */
    "1 2",                        /* 8: 12     id 264 */
    "\xc4\xa0 \xc4\xa0",          /* 9: ĠĠ     id 265 */
    "\xc4\x8a \xc4\x8a",          /* 10: ĊĊ    id 266 */
    "n '",                        /* 11: n'    id 267 (must never apply across "don|'t") */
    "a a",                        /* 12: aa    id 268 */
};
#define N_MERGES ((int)(sizeof hand_merges / sizeof hand_merges[0]))
enum { ID_GT = 256, ID_HE, ID_GTHE, ID_IN, ID_GA, ID_E_ACUTE, ID_ZH_HALF, ID_ZH, ID_12, ID_GG,
       ID_NLNL, ID_NQ, ID_AA, ID_EOT, ID_USER, N_HAND_TOKENS };

static lq_tokenizer *hand_tokenizer(const char *pre) {
    char *tokens[N_HAND_TOKENS];
    int types[N_HAND_TOKENS];
    for (int b = 0; b < 256; b++) {
        tokens[b] = malloc(4);
        byte_char(b, tokens[b]);
        types[b] = LQ_TOKEN_NORMAL;
    }
    for (int r = 0; r < N_MERGES; r++) {
        /* the merged token is the merge with its space removed */
        const char *m = hand_merges[r];
        const char *sp = strchr(m, ' ');
        size_t a = (size_t)(sp - m), b = strlen(sp + 1);
        tokens[256 + r] = malloc(a + b + 1);
        memcpy(tokens[256 + r], m, a);
        memcpy(tokens[256 + r] + a, sp + 1, b + 1);
        types[256 + r] = LQ_TOKEN_NORMAL;
    }
    tokens[ID_EOT] = strdup("<|endoftext|>");
    types[ID_EOT] = LQ_TOKEN_CONTROL;
    tokens[ID_USER] = strdup("<|user|>");
    types[ID_USER] = LQ_TOKEN_USER_DEFINED;
    lq_tokenizer_spec spec = {
        .kind = LQ_TOKENIZER_GPT2, .n_tokens = N_HAND_TOKENS, .tokens = (const char *const *)tokens,
        .token_types = types, .n_merges = N_MERGES, .merges = hand_merges, .pre = pre,
        .bos_id = ID_EOT, .eos_id = ID_EOT, .unk_id = -1, .add_bos = 0, .add_space_prefix = 0,
    };
    lq_tokenizer *t = NULL;
    lq_status st = lq_tokenizer_new(&spec, &t);
    for (int i = 0; i < N_HAND_TOKENS; i++) free(tokens[i]);
    if (st) fail_msg("lq_tokenizer_new: %s", lq_last_error());
    return t;
}

/* Encodes text and compares with the expected ids (terminated by −1). */
static void expect_ids(const lq_tokenizer *t, const char *text, int parse_special, const int *want) {
    int *ids = NULL;
    size_t n = 0;
    if (lq_tokenizer_encode(t, text, strlen(text), 0, parse_special, &ids, &n) != LQ_OK)
        fail_msg("encode \"%s\": %s", text, lq_last_error());
    size_t nw = 0;
    while (want[nw] >= 0) nw++;
    int same = n == nw;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[512] = "", exp[512] = "";
        for (size_t i = 0; i < n && strlen(got) < 480; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
        for (size_t i = 0; i < nw && strlen(exp) < 480; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%d ", want[i]);
        fail_msg("\"%s\": got [%s], expected [%s]", text, got, exp);
    }
    free(ids);
}

#define IDS(...) ((const int[]){__VA_ARGS__, -1})

static void test_gpt2_merges_by_hand(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("gpt2");
    /* "the": t,h,e → (h e) rank 1 → t he; "t he" is no merge (only "Ġt he") */
    expect_ids(t, "the", 0, IDS('t', ID_HE));
    /* " the" is one piece: Ġ t h e → (Ġ t) 0 → Ġt h e → (h e) 1 → Ġt he → (Ġt he) 2 */
    expect_ids(t, " the", 0, IDS(ID_GTHE));
    expect_ids(t, "in the", 0, IDS(ID_IN, ID_GTHE));
    /* é is a letter: " é" is one piece Ġ Ã © → (Ã ©) 5 */
    expect_ids(t, "\xc3\xa9", 0, IDS(ID_E_ACUTE));
    expect_ids(t, " \xc3\xa9", 0, IDS(' ', ID_E_ACUTE));
    /* 中: ä ¸ Ń → (ä ¸) 6 → (ä¸ Ń) 7 */
    expect_ids(t, "\xe4\xb8\xad", 0, IDS(ID_ZH));
    expect_ids(t, "a\xe4\xb8\xad", 0, IDS('a', ID_ZH));   /* both letters: one piece */
    /* digits: gpt2 keeps a run of digits (with one leading space) together */
    expect_ids(t, "123", 0, IDS(ID_12, '3'));
    expect_ids(t, " 123", 0, IDS(' ', ID_12, '3'));
    /* white space: "a   b" → a | ␣␣ | ␣b: \s+(?!\S) leaves the last space to the word */
    expect_ids(t, "a   b", 0, IDS('a', ID_GG, ' ', 'b'));
    expect_ids(t, "a  ", 0, IDS('a', ID_GG));                  /* trailing run is one piece */
    expect_ids(t, "a\n\nb", 0, IDS('a', '\n', '\n', 'b'));    /* \n | \n: no ĊĊ across pieces */
    expect_ids(t, "a\n\n", 0, IDS('a', ID_NLNL));
    /* contractions split before the apostrophe: "don" | "'t", so "n '" cannot merge */
    expect_ids(t, "don't", 0, IDS('d', 'o', 'n', '\'', 't'));
    /* without a contraction the apostrophe is punctuation: "n" | "'x" */
    expect_ids(t, "n'x", 0, IDS('n', '\'', 'x'));
    /* gpt2 contractions are case-sensitive: "'T" is punctuation + letter, not a contraction */
    expect_ids(t, "DON'T", 0, IDS('D', 'O', 'N', '\'', 'T'));
    /* merges apply leftmost first at equal rank: aaa → aa a */
    expect_ids(t, "aaa", 0, IDS(ID_AA, 'a'));
    expect_ids(t, "aaaa", 0, IDS(ID_AA, ID_AA));
    lq_tokenizer_free(t);
}

static void test_pre_tokenizer_variants(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("smollm");
    /* smollm: each digit alone, and the space before them is a piece of its own */
    expect_ids(t, "123", 0, IDS('1', '2', '3'));
    expect_ids(t, " 123", 0, IDS(' ', '1', '2', '3'));
    expect_ids(t, "x12 the", 0, IDS('x', '1', '2', ID_GTHE));
    expect_ids(t, "a   b", 0, IDS('a', ID_GG, ' ', 'b'));
    lq_tokenizer_free(t);

    t = hand_tokenizer("llama-bpe");
    /* llama3: digits in groups of up to three, \s*[\r\n]+ keeps newlines together */
    expect_ids(t, "123", 0, IDS(ID_12, '3'));
    expect_ids(t, "1212", 0, IDS(ID_12, '1', '2'));      /* 121 | 2 */
    expect_ids(t, "a\n\nb", 0, IDS('a', ID_NLNL, 'b'));
    /* case-insensitive contraction: DON | 'T */
    expect_ids(t, "DON'T", 0, IDS('D', 'O', 'N', '\'', 'T'));
    /* a non-letter, non-digit character may lead a word: "(the" is one piece; the space
     * before "the" still merges */
    expect_ids(t, " the", 0, IDS(ID_GTHE));
    /* ignore_merges: a piece that is a token is taken whole */
    expect_ids(t, "in", 0, IDS(ID_IN));
    lq_tokenizer_free(t);

    t = hand_tokenizer("qwen2");
    expect_ids(t, "123", 0, IDS('1', '2', '3'));          /* single digits */
    expect_ids(t, "a\n\nb", 0, IDS('a', ID_NLNL, 'b'));
    lq_tokenizer_free(t);
}

static void test_special_tokens(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("gpt2");
    /* CONTROL tokens are matched only with parse_special */
    expect_ids(t, "the<|endoftext|>the", 1, IDS('t', ID_HE, ID_EOT, 't', ID_HE));
    expect_ids(t, "<|endoftext|>", 0,
               IDS('<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>'));
    /* USER_DEFINED tokens always */
    expect_ids(t, " the<|user|> the", 0, IDS(ID_GTHE, ID_USER, ID_GTHE));
    lq_tokenizer_free(t);
}

static void test_decode(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("gpt2");
    char buf[64];
    int n = lq_tokenizer_decode(t, -1, ID_GTHE, buf, sizeof buf);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, " the", 4);
    n = lq_tokenizer_decode(t, -1, ID_ZH, buf, sizeof buf);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "\xe4\xb8\xad", 3);
    for (int b = 0; b < 256; b++) {
        n = lq_tokenizer_decode(t, -1, b, buf, sizeof buf);
        assert_int_equal(n, 1);
        assert_int_equal((unsigned char)buf[0], b);
    }
    n = lq_tokenizer_decode(t, -1, ID_EOT, buf, sizeof buf);
    assert_int_equal(n, 13);
    assert_memory_equal(buf, "<|endoftext|>", 13);
    n = lq_tokenizer_decode(t, -1, ID_GTHE, buf, 2);   /* truncated to cap */
    assert_int_equal(n, 2);
    assert_memory_equal(buf, " t", 2);
    assert_int_equal(lq_tokenizer_decode(t, -1, N_HAND_TOKENS, buf, sizeof buf), -1);
    assert_int_equal(lq_tokenizer_decode(t, -1, -1, buf, sizeof buf), -1);
    lq_tokenizer_free(t);
}

/* Byte-level BPE is lossless: decoding the ids gives back the exact bytes, for any bytes. */
static void test_round_trip_random_bytes(void **state) {
    (void)state;
    static const char *pres[] = {"gpt2", "smollm", "llama-bpe", "qwen2"};
    static const char *alphabet[] = {"a", "b", "t", "h", "e", " ", "  ", "\n", "\r\n", "\t", "1",
                                     "2", "'", "'s", "'LL", "\xc3\xa9", "\xe4\xb8\xad", "!",
                                     "\xf0\x9f\x91\x8b", "\xc2\xa0", "\x80", "\xff", "\xe4\xb8",
                                     "\xed\xa0\x80", "\xc0\xaf", "<|user|>", "\x00"};
    lq_rng rng;
    lq_rng_seed(&rng, 99);
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        lq_tokenizer *t = hand_tokenizer(pres[p]);
        for (int trial = 0; trial < 300; trial++) {
            char text[400];
            size_t len = 0;
            int parts = (int)(lq_rng_u64(&rng) % 40);
            for (int k = 0; k < parts; k++) {
                size_t which = (size_t)(lq_rng_u64(&rng) % (sizeof alphabet / sizeof alphabet[0]));
                const char *a = alphabet[which];
                size_t al = which == sizeof alphabet / sizeof alphabet[0] - 1 ? 1 : strlen(a);
                memcpy(text + len, a, al);
                len += al;
            }
            int *ids = NULL;
            size_t n = 0;
            if (lq_tokenizer_encode(t, text, len, 0, 0, &ids, &n) != LQ_OK)
                fail_msg("%s: %s", pres[p], lq_last_error());
            char back[800];
            size_t bl = 0;
            for (size_t i = 0; i < n; i++) {
                int w = lq_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], back + bl, sizeof back - bl);
                assert_true(w >= 0);
                bl += (size_t)w;
            }
            if (bl != len || memcmp(back, text, len) != 0)
                fail_msg("%s: round trip of %zu bytes gave %zu bytes", pres[p], len, bl);
            free(ids);
        }
        lq_tokenizer_free(t);
    }
}

/* Long inputs: a run of 200k spaces is one piece; without the heap the merge loop would be
 * quadratic in it. */
static void test_long_inputs(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("gpt2");
    size_t len = 200000;
    char *text = malloc(len);
    memset(text, ' ', len);
    int *ids = NULL;
    size_t n = 0;
    double t0 = lq_seconds();
    assert_int_equal(lq_tokenizer_encode(t, text, len, 0, 0, &ids, &n), LQ_OK);
    assert_int_equal(n, len / 2);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], ID_GG);
    free(ids);
    memset(text, 'a', len);
    assert_int_equal(lq_tokenizer_encode(t, text, len, 0, 0, &ids, &n), LQ_OK);
    assert_int_equal(n, len / 2);
    assert_int_equal(ids[n - 1], ID_AA);
    free(ids);
    double dt = lq_seconds() - t0;
    print_message("    400k bytes in %.3f s\n", dt);
    assert_true(dt < 20.0);
    free(text);
    lq_tokenizer_free(t);
}

static void test_errors(void **state) {
    (void)state;
    lq_tokenizer *t = hand_tokenizer("no-such-pre");
    int *ids = NULL;
    size_t n = 0;
    assert_int_equal(lq_tokenizer_encode(t, "x", 1, 0, 0, &ids, &n), LQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(lq_last_error(), "no-such-pre"));
    lq_tokenizer_free(t);

    /* a vocabulary without the byte-level character for a byte and without unk */
    const char *tokens[] = {"a", "b"};
    lq_tokenizer_spec spec = {.kind = LQ_TOKENIZER_GPT2, .n_tokens = 2, .tokens = tokens,
                              .pre = "gpt2", .bos_id = -1, .eos_id = -1, .unk_id = -1};
    assert_int_equal(lq_tokenizer_new(&spec, &t), LQ_OK);
    expect_ids(t, "ab", 0, IDS(0, 1));
    assert_int_equal(lq_tokenizer_encode(t, "ac", 2, 0, 0, &ids, &n), LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "0x63"));
    lq_tokenizer_free(t);
    spec.unk_id = 1;
    assert_int_equal(lq_tokenizer_new(&spec, &t), LQ_OK);
    expect_ids(t, "ac", 0, IDS(0, 1));
    lq_tokenizer_free(t);
}

/* ---- the real SmolLM2 vocabulary ----------------------------------------------------------- */
static const char *smollm2_path(void) {
    const char *p = getenv("LQ_SMOLLM2_GGUF");
    return p && p[0] ? p : LQ_SMOLLM2_DEFAULT;
}

static lq_tokenizer *gguf_tokenizer(lq_gguf *g, const char *pre) {
    const char *const *tokens, *const *merges;
    size_t n_tokens, n_merges, n_types;
    int64_t *types64;
    assert_int_equal(lq_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, NULL, &n_tokens), LQ_OK);
    assert_int_equal(lq_gguf_get_string_array(g, "tokenizer.ggml.merges", &merges, NULL, &n_merges), LQ_OK);
    assert_int_equal(lq_gguf_get_int_array(g, "tokenizer.ggml.token_type", &types64, &n_types), LQ_OK);
    int *types = malloc(n_types * sizeof *types);
    for (size_t i = 0; i < n_types; i++) types[i] = (int)types64[i];
    lq_tokenizer_spec spec = {
        .kind = LQ_TOKENIZER_GPT2, .n_tokens = (int)n_tokens, .tokens = tokens,
        .token_types = types, .n_merges = (int)n_merges, .merges = merges, .pre = pre,
        .bos_id = 1, .eos_id = 2, .unk_id = 0,
    };
    lq_tokenizer *t = NULL;
    if (lq_tokenizer_new(&spec, &t) != LQ_OK) fail_msg("%s", lq_last_error());
    free(types);
    free(types64);
    return t;
}

static void test_smollm2_matches_hf_tokenizers(void **state) {
    (void)state;
    const char *path = smollm2_path();
    /* tools/setup.sh fetches it (tools/get_smollm2.sh): its absence is a failure, not a skip */
    if (access(path, R_OK) != 0) fail_msg("%s not present: run tools/get_smollm2.sh", path);
    json_error_t err;
    json_t *doc = json_load_file(LQ_TEST_DATA_DIR "/smollm2_bpe_expected.json", 0, &err);
    if (!doc) fail_msg("smollm2_bpe_expected.json: %s", err.text);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(path, &g), LQ_OK);
    const char *pre_in_file;
    assert_int_equal(lq_gguf_get_string(g, "tokenizer.ggml.pre", &pre_in_file, NULL), LQ_OK);
    assert_string_equal(pre_in_file, "smollm");
    json_t *cases = json_object_get(doc, "cases");
    size_t i, checked = 0;
    json_t *c;
    lq_tokenizer *t = NULL;
    const char *current = "";
    json_array_foreach(cases, i, c) {
        const char *pre = json_string_value(json_object_get(c, "pre"));
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        if (strcmp(pre, current) != 0) {
            lq_tokenizer_free(t);
            t = gguf_tokenizer(g, pre);
            current = pre;
        }
        int *ids = NULL;
        size_t n = 0;
        if (lq_tokenizer_encode(t, text, strlen(text), 0, 1, &ids, &n) != LQ_OK)
            fail_msg("%s \"%s\": %s", pre, text, lq_last_error());
        int same = n == json_array_size(want);
        for (size_t k = 0; same && k < n; k++)
            same = ids[k] == (int)json_integer_value(json_array_get(want, k));
        if (!same) {
            char got[1024] = "";
            for (size_t k = 0; k < n && strlen(got) < 1000; k++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[k]);
            char *exp = json_dumps(want, JSON_COMPACT);
            fail_msg("pre %s, text \"%s\": got [%s], Hugging Face gives %s", pre, text, got, exp);
        }
        /* and the ids decode back to the text */
        char back[2048];
        size_t bl = 0;
        for (size_t k = 0; k < n; k++)
            bl += (size_t)lq_tokenizer_decode(t, k ? ids[k - 1] : -1, ids[k], back + bl, sizeof back - bl);
        assert_int_equal(bl, strlen(text));
        assert_memory_equal(back, text, bl);
        free(ids);
        checked++;
    }
    print_message("    %zu strings match Hugging Face tokenizers\n", checked);
    assert_true(checked >= 60);
    lq_tokenizer_free(t);
    lq_gguf_close(g);
    json_decref(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_merges_by_hand),
        cmocka_unit_test(test_pre_tokenizer_variants),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_round_trip_random_bytes),
        cmocka_unit_test(test_long_inputs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_smollm2_matches_hf_tokenizers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
