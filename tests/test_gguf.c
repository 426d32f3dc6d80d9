/* GGUF tests: the reader (metadata of every type, tensor infos, dimension order), every
 * dequantizer against the gguf Python package's own dequantization (committed fixtures made by
 * tests/make_gguf_fixtures.py), malformed files (each must fail with a message naming the
 * file, never crash), and lq_gguf_load_model on models this test writes (llama, qwen2 with
 * q/k/v bias, qwen3 with q/k norm, tied and untied) and on the committed tiny model.
 * With LQ_SMOLLM2_GGUF (default models/SmolLM2-135M-Instruct.Q4_1.gguf, from tools/get_smollm2.sh)
 * present, the real SmolLM2-135M file is loaded too; otherwise that test is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "gguf"
#include "test_util.h"

#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "loaders.h"
#include "model.h"
#include "tokenizer.h"

#ifndef LQ_TEST_DATA_DIR
#error "LQ_TEST_DATA_DIR must name tests/data"
#endif

static const char *data_path(const char *name) {
    static char buffer[PATH_MAX];
    snprintf(buffer, sizeof buffer, "%s/%s", LQ_TEST_DATA_DIR, name);
    return buffer;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    rewind(fp);
    unsigned char *data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *len = (size_t)size;
    return data;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Opening must fail with `expected`, leave *out NULL, name the file and contain fragment. */
static void expect_open_failure(const char *path, lq_status expected, const char *fragment) {
    lq_gguf *g = (lq_gguf *)&g;
    lq_clear_error();
    lq_status st = lq_gguf_open(path, &g);
    const char *msg = lq_last_error();
    if (st != expected)
        fail_msg("%s: expected %s, got %s: %s", path, lq_status_name(expected), lq_status_name(st), msg);
    assert_null(g);
    print_message("    %s: %s\n", lq_status_name(st), msg);
    if (!strstr(msg, base_name(path))) fail_msg("message does not name the file: %s", msg);
    if (fragment && !strstr(msg, fragment)) fail_msg("message lacks \"%s\": %s", fragment, msg);
}

static void expect_load_failure(const char *path, lq_status expected, const char *fragment) {
    lq_model *m = (lq_model *)&m;
    lq_clear_error();
    lq_status st = lq_gguf_load_model(path, &m);
    const char *msg = lq_last_error();
    if (st != expected)
        fail_msg("%s: expected %s, got %s: %s", path, lq_status_name(expected), lq_status_name(st), msg);
    assert_null(m);
    print_message("    %s: %s\n", lq_status_name(st), msg);
    if (!strstr(msg, base_name(path))) fail_msg("message does not name the file: %s", msg);
    if (fragment && !strstr(msg, fragment)) fail_msg("message lacks \"%s\": %s", fragment, msg);
}

/* ---- a small GGUF writer ------------------------------------------------------------------ */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} gbuf;

static void gb_put(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void gb_u32(gbuf *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(gbuf *b, uint64_t v) { gb_put(b, &v, 8); }
static void gb_str(gbuf *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}

typedef struct {
    gbuf b;
    uint64_t n;
} kvlist;

static void kv_u32(kvlist *k, const char *key, uint32_t v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_U32); gb_u32(&k->b, v); k->n++;
}
static void kv_i32(kvlist *k, const char *key, int32_t v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_I32); gb_put(&k->b, &v, 4); k->n++;
}
static void kv_f32(kvlist *k, const char *key, float v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_F32); gb_put(&k->b, &v, 4); k->n++;
}
static void kv_bool(kvlist *k, const char *key, int v) {
    unsigned char c = (unsigned char)v;
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_BOOL); gb_put(&k->b, &c, 1); k->n++;
}
static void kv_str(kvlist *k, const char *key, const char *v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_STRING); gb_str(&k->b, v); k->n++;
}
static void kv_str_array(kvlist *k, const char *key, size_t n, char **v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_ARRAY); gb_u32(&k->b, LQ_GGUF_STRING); gb_u64(&k->b, n);
    for (size_t i = 0; i < n; i++) gb_str(&k->b, v[i]);
    k->n++;
}
static void kv_i32_array(kvlist *k, const char *key, size_t n, const int32_t *v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_ARRAY); gb_u32(&k->b, LQ_GGUF_I32); gb_u64(&k->b, n);
    gb_put(&k->b, v, 4 * n);
    k->n++;
}
static void kv_f32_array(kvlist *k, const char *key, size_t n, const float *v) {
    gb_str(&k->b, key); gb_u32(&k->b, LQ_GGUF_ARRAY); gb_u32(&k->b, LQ_GGUF_F32); gb_u64(&k->b, n);
    gb_put(&k->b, v, 4 * n);
    k->n++;
}

typedef struct {
    char name[96];
    int n_dims;
    int64_t ne[8];    /* room for a malformed 5-dimensional entry */
    uint32_t type;
    const void *data;
    size_t nbytes;
    int64_t offset;   /* −1: next aligned position */
} gtensor;

/* Writes header, kvs, tensor infos, padding and data. align = 0: default 32. */
static void write_gguf(const char *path, uint32_t version, const kvlist *kv, const gtensor *t,
                       size_t nt, size_t align) {
    if (!align) align = 32;
    gbuf b = {0};
    gb_put(&b, "GGUF", 4);
    gb_u32(&b, version);
    gb_u64(&b, nt);
    gb_u64(&b, kv ? kv->n : 0);
    if (kv) gb_put(&b, kv->b.p, kv->b.n);
    uint64_t *offsets = calloc(nt + 1, sizeof *offsets);
    uint64_t next = 0;
    for (size_t i = 0; i < nt; i++) {
        offsets[i] = t[i].offset >= 0 ? (uint64_t)t[i].offset : next;
        uint64_t end = offsets[i] + t[i].nbytes;
        next = (end + align - 1) / align * align;
        gb_str(&b, t[i].name);
        gb_u32(&b, (uint32_t)t[i].n_dims);
        for (int d = 0; d < t[i].n_dims; d++) gb_u64(&b, (uint64_t)t[i].ne[d]);
        gb_u32(&b, t[i].type);
        gb_u64(&b, offsets[i]);
    }
    static const unsigned char zeros[256];
    size_t pad = (align - b.n % align) % align;
    gb_put(&b, zeros, pad);
    /* The data section is laid out by offset, so overlapping entries can be written; an entry
     * placed at 1 MiB or beyond stands for one past the end and gets no bytes. */
    size_t data_len = 0;
    for (size_t i = 0; i < nt; i++)
        if (offsets[i] < (1u << 20) && offsets[i] + t[i].nbytes > data_len)
            data_len = offsets[i] + t[i].nbytes;
    unsigned char *section = calloc(data_len + 1, 1);
    for (size_t i = 0; i < nt; i++)
        if (offsets[i] < (1u << 20) && t[i].nbytes) memcpy(section + offsets[i], t[i].data, t[i].nbytes);
    gb_put(&b, section, data_len);
    free(section);
    write_file(path, b.p, b.n);
    free(offsets);
    free(b.p);
}

static void gtensor_set(gtensor *t, const char *name, uint32_t type, int n_dims, int64_t ne0,
                        int64_t ne1, const void *data, size_t nbytes) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = t->ne[3] = 1;
    t->data = data;
    t->nbytes = nbytes;
    t->offset = -1;
}

/* ---- reader on the committed fixture ------------------------------------------------------ */
static void test_metadata_of_every_type(void **state) {
    (void)state;
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(data_path("gguf_quants.gguf"), &g), LQ_OK);
    assert_int_equal(lq_gguf_version(g), 3);
    assert_int_equal(lq_gguf_alignment(g), 32);
    assert_int_equal(lq_gguf_data_offset(g) % 32, 0);
    int64_t i;
    double f;
    int b;
    const char *s;
    size_t len;
    assert_int_equal(lq_gguf_get_int(g, "test.u8", &i), LQ_OK); assert_int_equal(i, 200);
    assert_int_equal(lq_gguf_get_int(g, "test.i8", &i), LQ_OK); assert_int_equal(i, -100);
    assert_int_equal(lq_gguf_get_int(g, "test.u16", &i), LQ_OK); assert_int_equal(i, 60000);
    assert_int_equal(lq_gguf_get_int(g, "test.i16", &i), LQ_OK); assert_int_equal(i, -30000);
    assert_int_equal(lq_gguf_get_int(g, "test.u32", &i), LQ_OK); assert_true(i == 4000000000LL);
    assert_int_equal(lq_gguf_get_int(g, "test.i32", &i), LQ_OK); assert_true(i == -2000000000LL);
    assert_int_equal(lq_gguf_get_int(g, "test.u64", &i), LQ_OK); assert_true(i == (1LL << 40) + 7);
    assert_int_equal(lq_gguf_get_int(g, "test.i64", &i), LQ_OK); assert_true(i == -(1LL << 40) - 7);
    assert_int_equal(lq_gguf_get_float(g, "test.f32", &f), LQ_OK); assert_true(f == 0.15625);
    assert_int_equal(lq_gguf_get_float(g, "test.f64", &f), LQ_OK); assert_true(f == 1.0 / 3.0);
    assert_int_equal(lq_gguf_get_float(g, "test.u32", &f), LQ_OK); assert_true(f == 4e9);
    assert_int_equal(lq_gguf_get_bool(g, "test.bool", &b), LQ_OK); assert_int_equal(b, 1);
    assert_int_equal(lq_gguf_get_string(g, "test.string", &s, &len), LQ_OK);
    assert_string_equal(s, "h\xc3\xa9llo w\xc3\xb6rld");
    assert_int_equal(len, strlen(s));
    assert_int_equal(lq_gguf_get_string(g, "general.architecture", &s, NULL), LQ_OK);
    assert_string_equal(s, "test");

    int64_t *iv;
    size_t n;
    assert_int_equal(lq_gguf_get_int_array(g, "test.array_i32", &iv, &n), LQ_OK);
    assert_int_equal(n, 4);
    assert_true(iv[0] == 1 && iv[1] == -2 && iv[2] == 3 && iv[3] == -4);
    free(iv);
    assert_int_equal(lq_gguf_get_int_array(g, "test.array_u8", &iv, &n), LQ_OK);
    assert_true(n == 3 && iv[2] == 255);
    free(iv);
    float *fv;
    assert_int_equal(lq_gguf_get_float_array(g, "test.array_f32", &fv, &n), LQ_OK);
    assert_true(n == 3 && fv[0] == 0.5f && fv[1] == -1.25f && fv[2] == 8.0f);
    free(fv);
    const char *const *sv;
    const size_t *lens;
    assert_int_equal(lq_gguf_get_string_array(g, "test.array_str", &sv, &lens, &n), LQ_OK);
    assert_int_equal(n, 4);
    assert_string_equal(sv[0], "a");
    assert_string_equal(sv[1], "");
    assert_string_equal(sv[2], "\xe4\xb8\xad\xe6\x96\x87");
    assert_int_equal(lens[2], 6);
    assert_string_equal(sv[3], "last");

    long k = lq_gguf_find_key(g, "test.array_nested");
    assert_true(k >= 0);
    assert_int_equal(lq_gguf_kv_type(g, (size_t)k), LQ_GGUF_ARRAY);
    assert_int_equal(lq_gguf_kv_array_type(g, (size_t)k), LQ_GGUF_ARRAY);
    assert_int_equal(lq_gguf_kv_array_len(g, (size_t)k), 2);

    /* errors name the key and the file */
    lq_status st = lq_gguf_get_int(g, "test.string", &i);
    assert_int_equal(st, LQ_ERR_FORMAT);
    assert_non_null(strstr(lq_last_error(), "test.string"));
    assert_non_null(strstr(lq_last_error(), "gguf_quants.gguf"));
    assert_int_equal(lq_gguf_get_int(g, "no.such.key", &i), LQ_ERR_NOT_FOUND);
    assert_non_null(strstr(lq_last_error(), "no.such.key"));
    assert_int_equal(lq_gguf_get_string_array(g, "test.array_i32", &sv, NULL, &n), LQ_ERR_FORMAT);
    assert_int_equal(lq_gguf_get_int_array(g, "test.array_nested", &iv, &n), LQ_ERR_FORMAT);
    assert_int_equal(lq_gguf_get_bool(g, "test.u8", &b), LQ_ERR_FORMAT);
    assert_int_equal(lq_gguf_get_float(g, "test.string", &f), LQ_ERR_FORMAT);
    assert_int_equal(lq_gguf_get_int_or(g, "absent", 42, &i), LQ_OK);
    assert_int_equal(i, 42);
    assert_int_equal(lq_gguf_get_int_or(g, "test.string", 42, &i), LQ_ERR_FORMAT);
    lq_gguf_close(g);
}

static void test_dimension_order(void **state) {
    (void)state;
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(data_path("gguf_quants.gguf"), &g), LQ_OK);
    const lq_gguf_tensor *t = lq_gguf_find_tensor(g, "dims3");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 3);
    /* numpy (2, 3, 4) is ggml ne = [4, 3, 2] */
    assert_true(t->ne[0] == 4 && t->ne[1] == 3 && t->ne[2] == 2 && t->ne[3] == 1);
    assert_int_equal(t->n_elements, 24);
    float v[24];
    assert_int_equal(lq_gguf_tensor_to_f32(g, t, v), LQ_OK);
    for (int i = 0; i < 24; i++) assert_true(v[i] == (float)i);
    t = lq_gguf_find_tensor(g, "dims4");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 4);
    assert_true(t->ne[0] == 32 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 2);
    assert_null(lq_gguf_find_tensor(g, "nope"));
    lq_gguf_close(g);
}

/* Every dequantizer must reproduce the gguf package's dequantization bit for bit. */
static void test_dequantize_matches_reference(void **state) {
    (void)state;
    static const char *types[] = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                                  "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"};
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(data_path("gguf_quants.gguf"), &g), LQ_OK);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.expected", types[k]);
        const lq_gguf_tensor *q = lq_gguf_find_tensor(g, types[k]);
        const lq_gguf_tensor *e = lq_gguf_find_tensor(g, name);
        assert_non_null(q);
        assert_non_null(e);
        assert_string_equal(lq_ggml_type_name(q->type), types[k]);
        assert_true(lq_ggml_type_dequantizable(q->type));
        assert_int_equal(q->n_elements, e->n_elements);
        assert_true(q->ne[0] == e->ne[0] && q->ne[1] == e->ne[1]);
        float *got = malloc(q->n_elements * sizeof *got), *want = malloc(e->n_elements * sizeof *want);
        assert_int_equal(lq_gguf_tensor_to_f32(g, q, got), LQ_OK);
        assert_int_equal(lq_gguf_tensor_to_f32(g, e, want), LQ_OK);
        size_t mismatches = 0, first = 0;
        for (size_t i = 0; i < q->n_elements; i++)
            if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && !mismatches++) first = i;
        if (mismatches)
            fail_msg("%s: %zu of %zu values differ from gguf.quants.dequantize; first at %zu: "
                     "%.9g vs %.9g", types[k], mismatches, q->n_elements, first,
                     (double)got[first], (double)want[first]);
        /* a non-trivial tensor: not all zeros */
        int nonzero = 0;
        for (size_t i = 0; i < q->n_elements; i++) nonzero |= got[i] != 0;
        assert_true(nonzero);
        free(got);
        free(want);
    }
    lq_gguf_close(g);
}

static void test_type_table(void **state) {
    (void)state;
    size_t be, bb;
    assert_true(lq_ggml_type_block(LQ_GGML_Q4_K, &be, &bb));
    assert_true(be == 256 && bb == 144);
    assert_true(lq_ggml_type_block(LQ_GGML_Q8_0, &be, &bb));
    assert_true(be == 32 && bb == 34);
    assert_false(lq_ggml_type_block(4, &be, &bb));      /* retired Q4_2 */
    assert_false(lq_ggml_type_block(1000, &be, &bb));
    assert_string_equal(lq_ggml_type_name(1000), "?");
    assert_false(lq_ggml_type_dequantizable(16));       /* IQ2_XXS: known size, no dequantizer */
    float out[32];
    unsigned char block[34] = {0};
    assert_int_equal(lq_ggml_dequantize(LQ_GGML_Q8_0, block, out, 31), LQ_ERR_ARG);
    assert_int_equal(lq_ggml_dequantize(16, block, out, 256), LQ_ERR_UNSUPPORTED);
}

/* ---- malformed files -------------------------------------------------------------------- */
static void test_every_truncation_fails_cleanly(void **state) {
    (void)state;
    size_t len;
    unsigned char *data = read_file(data_path("gguf_quants.gguf"), &len);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(data_path("gguf_quants.gguf"), &g), LQ_OK);
    uint64_t end = 0;
    for (size_t i = 0; i < lq_gguf_tensor_count(g); i++) {
        const lq_gguf_tensor *t = lq_gguf_tensor_at(g, i);
        uint64_t e = lq_gguf_data_offset(g) + t->offset + t->nbytes;
        if (e > end) end = e;
    }
    uint64_t header_end = lq_gguf_data_offset(g);
    lq_gguf_close(g);
    const char *path = temp_path("truncated.gguf");
    /* every length through the header, then strides through the data */
    for (size_t cut = 0; cut < end; cut += cut < header_end + 64 ? 1 : 61) {
        write_file(path, data, cut);
        lq_clear_error();
        lq_gguf *h = (lq_gguf *)&h;
        lq_status st = lq_gguf_open(path, &h);
        if (st == LQ_OK) fail_msg("a file cut at %zu of %llu bytes opened", cut, (unsigned long long)end);
        assert_null(h);
        if (!strstr(lq_last_error(), "truncated.gguf")) fail_msg("cut %zu: %s", cut, lq_last_error());
        if (cut >= 24 && !strstr(lq_last_error(), "truncated"))
            fail_msg("cut %zu: message does not say truncated: %s", cut, lq_last_error());
    }
    free(data);
}

/* Random byte flips in the header: open fails cleanly or the file is usable. */
static void test_header_mutations(void **state) {
    (void)state;
    size_t len;
    unsigned char *data = read_file(data_path("gguf_quants.gguf"), &len);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(data_path("gguf_quants.gguf"), &g), LQ_OK);
    size_t header_end = (size_t)lq_gguf_data_offset(g);
    lq_gguf_close(g);
    unsigned char *copy = malloc(len);
    const char *path = temp_path("mutated.gguf");
    lq_rng rng;
    lq_rng_seed(&rng, 12345);
    int opened = 0;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(copy, data, len);
        int flips = 1 + (int)(lq_rng_u64(&rng) % 3);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(lq_rng_u64(&rng) % header_end);
            copy[at] ^= (unsigned char)(1u << (lq_rng_u64(&rng) % 8));
        }
        write_file(path, copy, len);
        lq_gguf *h = NULL;
        if (lq_gguf_open(path, &h) != LQ_OK) {
            assert_null(h);
            assert_non_null(strstr(lq_last_error(), "mutated.gguf"));
            continue;
        }
        opened++;
        for (size_t i = 0; i < lq_gguf_tensor_count(h); i++) {
            const lq_gguf_tensor *t = lq_gguf_tensor_at(h, i);
            if (t->n_elements > (1u << 20)) continue;
            float *buf = malloc((t->n_elements ? t->n_elements : 1) * sizeof *buf);
            lq_gguf_tensor_to_f32(h, t, buf);   /* may fail for unsupported types; must not crash */
            free(buf);
        }
        for (size_t i = 0; i < lq_gguf_kv_count(h); i++) {
            int64_t iv;
            lq_gguf_get_int(h, lq_gguf_kv_key(h, i), &iv);
        }
        lq_gguf_close(h);
    }
    print_message("    %d of 300 mutated files still opened\n", opened);
    free(copy);
    free(data);
}

static void test_bad_headers(void **state) {
    (void)state;
    float data[64] = {0};
    gtensor t;
    gtensor_set(&t, "weights", LQ_GGML_F32, 2, 8, 8, data, sizeof data);
    const char *path = temp_path("bad.gguf");

    write_file(path, "GGUF", 4);
    expect_open_failure(path, LQ_ERR_FORMAT, "truncated");
    write_file(path, "", 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "truncated");

    write_gguf(path, 3, NULL, &t, 1, 0);
    size_t len;
    unsigned char *bytes = read_file(path, &len);
    bytes[0] = 'X';
    write_file(path, bytes, len);
    expect_open_failure(path, LQ_ERR_FORMAT, "magic");
    free(bytes);

    write_gguf(path, 1, NULL, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_UNSUPPORTED, "version 1");
    write_gguf(path, 4, NULL, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_UNSUPPORTED, "version 4");
    write_gguf(path, 0x03000000u, NULL, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_UNSUPPORTED, "big-endian");

    /* version 2 reads like 3 */
    write_gguf(path, 2, NULL, &t, 1, 0);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(path, &g), LQ_OK);
    assert_int_equal(lq_gguf_version(g), 2);
    lq_gguf_close(g);

    /* unknown tensor type: names the tensor and the number */
    gtensor u = t;
    u.type = 99;
    write_gguf(path, 3, NULL, &u, 1, 0);
    expect_open_failure(path, LQ_ERR_UNSUPPORTED, "'weights' has unknown ggml type 99");

    /* too many dimensions, row not a whole number of blocks */
    u = t;
    u.n_dims = 5;
    u.ne[2] = u.ne[3] = 1;
    write_gguf(path, 3, NULL, &u, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "5 dimensions");
    unsigned char q8[34 * 2] = {0};
    gtensor_set(&u, "q8", LQ_GGML_Q8_0, 2, 16, 4, q8, sizeof q8);
    write_gguf(path, 3, NULL, &u, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "not a multiple of the Q8_0 block size");

    /* offsets: unaligned, beyond the file, overlapping */
    u = t;
    u.offset = 4;
    write_gguf(path, 3, NULL, &u, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "alignment");
    u.offset = 1 << 20;
    write_gguf(path, 3, NULL, &u, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "'weights'");
    gtensor two[2] = {t, t};
    snprintf(two[1].name, sizeof two[1].name, "other");
    two[1].offset = 32;
    write_gguf(path, 3, NULL, two, 2, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "overlap");
    two[1] = t;
    write_gguf(path, 3, NULL, two, 2, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "appears twice");

    /* metadata problems */
    kvlist kv = {0};
    kv_u32(&kv, "a", 1);
    kv_u32(&kv, "a", 2);
    write_gguf(path, 3, &kv, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "'a' appears twice");
    free(kv.b.p);
    memset(&kv, 0, sizeof kv);
    kv_u32(&kv, "general.alignment", 48);
    write_gguf(path, 3, &kv, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "power of two");
    free(kv.b.p);
    memset(&kv, 0, sizeof kv);
    kv_str(&kv, "general.alignment", "x");
    write_gguf(path, 3, &kv, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "general.alignment");
    free(kv.b.p);
    memset(&kv, 0, sizeof kv);
    gb_str(&kv.b, "weird");
    gb_u32(&kv.b, 13);   /* no such value type */
    gb_u32(&kv.b, 0);
    kv.n = 1;
    write_gguf(path, 3, &kv, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "'weird': unknown value type 13");
    free(kv.b.p);
    memset(&kv, 0, sizeof kv);
    gb_str(&kv.b, "big");   /* an array claiming 2^60 strings */
    gb_u32(&kv.b, LQ_GGUF_ARRAY);
    gb_u32(&kv.b, LQ_GGUF_STRING);
    gb_u64(&kv.b, 1ull << 60);
    kv.n = 1;
    write_gguf(path, 3, &kv, &t, 1, 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "'big'");
    free(kv.b.p);

    /* counts that cannot fit */
    gbuf b = {0};
    gb_put(&b, "GGUF", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 1ull << 62);
    gb_u64(&b, 0);
    write_file(path, b.p, b.n);
    expect_open_failure(path, LQ_ERR_FORMAT, "cannot fit");
    free(b.p);

    expect_open_failure(temp_path("does-not-exist.gguf"), LQ_ERR_NOT_FOUND, NULL);
}

static void test_custom_alignment_and_unsupported_type(void **state) {
    (void)state;
    float a[5] = {1, 2, 3, 4, 5}, c[3] = {-1, -2, -3};
    unsigned char iq[66 * 1] = {0};
    kvlist kv = {0};
    kv_u32(&kv, "general.alignment", 64);
    gtensor t[3];
    gtensor_set(&t[0], "a", LQ_GGML_F32, 1, 5, 1, a, sizeof a);
    gtensor_set(&t[1], "iq", 16 /* IQ2_XXS */, 1, 256, 1, iq, sizeof iq);
    gtensor_set(&t[2], "c", LQ_GGML_F32, 1, 3, 1, c, sizeof c);
    const char *path = temp_path("aligned64.gguf");
    write_gguf(path, 3, &kv, t, 3, 64);
    free(kv.b.p);
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(path, &g), LQ_OK);
    assert_int_equal(lq_gguf_alignment(g), 64);
    assert_int_equal(lq_gguf_data_offset(g) % 64, 0);
    const lq_gguf_tensor *tc = lq_gguf_find_tensor(g, "c");
    assert_int_equal(tc->offset, 192);   /* a: [0, 20), iq: [64, 130), c: next multiple of 64 */
    float out[5];
    assert_int_equal(lq_gguf_tensor_to_f32(g, tc, out), LQ_OK);
    assert_true(out[0] == -1 && out[2] == -3);
    assert_int_equal(lq_gguf_tensor_to_f32(g, lq_gguf_find_tensor(g, "a"), out), LQ_OK);
    assert_true(out[4] == 5);
    float big[256];
    lq_clear_error();
    assert_int_equal(lq_gguf_tensor_to_f32(g, lq_gguf_find_tensor(g, "iq"), big), LQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(lq_last_error(), "'iq'"));
    assert_non_null(strstr(lq_last_error(), "IQ2_XXS"));
    assert_non_null(strstr(lq_last_error(), "aligned64.gguf"));
    lq_gguf_close(g);
}

/* ---- model loading ---------------------------------------------------------------------- */
typedef struct {
    const char *arch;
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab;
    int qkv_bias, qk_norm, tied;
    int tokenizer;             /* 0 none, 1 gpt2, 2 llama (SPM) */
    const char *omit;          /* tensor left out */
    const char *reshape;       /* tensor written with a wrong shape */
    int experts;
    int rope_freqs;            /* write a Llama 3 rope_freqs.weight (factor 8) */
} tiny_spec;

typedef struct {
    gtensor t[128];
    float *data[128];
    size_t n;
} tiny_tensors;

static float pattern(size_t tensor, size_t i) {
    return (float)((tensor * 131 + i * 7) % 257) / 257.0f - 0.5f;
}

static void tiny_add(tiny_tensors *tt, const tiny_spec *s, const char *name, int64_t ne0, int64_t ne1) {
    if (s->omit && !strcmp(s->omit, name)) return;
    size_t n = (size_t)(ne0 * ne1);
    if (s->reshape && !strcmp(s->reshape, name)) ne0 += 1, n = (size_t)(ne0 * ne1);
    float *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = pattern(tt->n, i);
    gtensor_set(&tt->t[tt->n], name, LQ_GGML_F32, ne1 == 1 ? 1 : 2, ne0, ne1, d, n * sizeof *d);
    tt->data[tt->n++] = d;
}

static void write_tiny_model(const char *path, const tiny_spec *s, tiny_tensors *tt) {
    kvlist kv = {0};
    char key[128];
    kv_str(&kv, "general.architecture", s->arch);
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", s->arch, suffix), key)
    kv_u32(&kv, K("block_count"), (uint32_t)s->layers);
    kv_u32(&kv, K("context_length"), 128);
    kv_u32(&kv, K("embedding_length"), (uint32_t)s->dim);
    kv_u32(&kv, K("feed_forward_length"), (uint32_t)s->hidden);
    kv_u32(&kv, K("attention.head_count"), (uint32_t)s->heads);
    kv_u32(&kv, K("attention.head_count_kv"), (uint32_t)s->kv_heads);
    if (s->head_dim != s->dim / s->heads) kv_u32(&kv, K("attention.key_length"), (uint32_t)s->head_dim);
    kv_f32(&kv, K("rope.freq_base"), 500000.0f);
    kv_f32(&kv, K("attention.layer_norm_rms_epsilon"), 1e-6f);
    if (s->experts) kv_u32(&kv, K("expert_count"), (uint32_t)s->experts);
#undef K
    char *tokens[300];
    int32_t types[300];
    float scores[300];
    int n_tokens = 0;
    if (s->tokenizer == 1) {
        for (int b = 0; b < 256; b++) {
            tokens[n_tokens] = malloc(4);
            byte_char(b, tokens[n_tokens]);
            types[n_tokens++] = LQ_TOKEN_NORMAL;
        }
        tokens[n_tokens] = strdup("he");
        types[n_tokens++] = LQ_TOKEN_NORMAL;
        tokens[n_tokens] = strdup("<|endoftext|>");
        types[n_tokens++] = LQ_TOKEN_CONTROL;
        char *merges[] = {"h e"};
        kv_str(&kv, "tokenizer.ggml.model", "gpt2");
        kv_str(&kv, "tokenizer.ggml.pre", "smollm");
        kv_str_array(&kv, "tokenizer.ggml.tokens", (size_t)n_tokens, tokens);
        kv_i32_array(&kv, "tokenizer.ggml.token_type", (size_t)n_tokens, types);
        kv_str_array(&kv, "tokenizer.ggml.merges", 1, merges);
        kv_u32(&kv, "tokenizer.ggml.bos_token_id", 257);
        kv_u32(&kv, "tokenizer.ggml.eos_token_id", 257);
    } else if (s->tokenizer == 2) {
        const char *fixed[] = {"<unk>", "<s>", "</s>"};
        for (int i = 0; i < 3; i++) {
            tokens[n_tokens] = strdup(fixed[i]);
            scores[n_tokens] = 0;
            types[n_tokens++] = i == 0 ? LQ_TOKEN_UNKNOWN : LQ_TOKEN_CONTROL;
        }
        for (int b = 0; b < 256; b++) {
            tokens[n_tokens] = malloc(8);
            snprintf(tokens[n_tokens], 8, "<0x%02X>", b);
            scores[n_tokens] = 0;
            types[n_tokens++] = LQ_TOKEN_BYTE;
        }
        tokens[n_tokens] = strdup("\xe2\x96\x81h");
        scores[n_tokens] = -1;
        types[n_tokens++] = LQ_TOKEN_NORMAL;
        kv_str(&kv, "tokenizer.ggml.model", "llama");
        kv_str_array(&kv, "tokenizer.ggml.tokens", (size_t)n_tokens, tokens);
        kv_f32_array(&kv, "tokenizer.ggml.scores", (size_t)n_tokens, scores);
        kv_i32_array(&kv, "tokenizer.ggml.token_type", (size_t)n_tokens, types);
        kv_bool(&kv, "tokenizer.ggml.add_bos_token", 1);
    }
    for (int i = 0; i < n_tokens; i++) free(tokens[i]);

    memset(tt, 0, sizeof *tt);
    int q = s->heads * s->head_dim, kvd = s->kv_heads * s->head_dim;
    tiny_add(tt, s, "token_embd.weight", s->dim, s->vocab);
    for (int l = 0; l < s->layers; l++) {
        char n[96];
#define N(x) (snprintf(n, sizeof n, "blk.%d.%s", l, x), n)
        tiny_add(tt, s, N("attn_norm.weight"), s->dim, 1);
        tiny_add(tt, s, N("attn_q.weight"), s->dim, q);
        tiny_add(tt, s, N("attn_k.weight"), s->dim, kvd);
        tiny_add(tt, s, N("attn_v.weight"), s->dim, kvd);
        if (s->qkv_bias) {
            tiny_add(tt, s, N("attn_q.bias"), q, 1);
            tiny_add(tt, s, N("attn_k.bias"), kvd, 1);
            tiny_add(tt, s, N("attn_v.bias"), kvd, 1);
        }
        if (s->qk_norm) {
            tiny_add(tt, s, N("attn_q_norm.weight"), s->head_dim, 1);
            tiny_add(tt, s, N("attn_k_norm.weight"), s->head_dim, 1);
        }
        tiny_add(tt, s, N("attn_output.weight"), q, s->dim);
        tiny_add(tt, s, N("ffn_norm.weight"), s->dim, 1);
        tiny_add(tt, s, N("ffn_gate.weight"), s->dim, s->hidden);
        tiny_add(tt, s, N("ffn_up.weight"), s->dim, s->hidden);
        tiny_add(tt, s, N("ffn_down.weight"), s->hidden, s->dim);
#undef N
    }
    tiny_add(tt, s, "output_norm.weight", s->dim, 1);
    if (!s->tied) tiny_add(tt, s, "output.weight", s->dim, s->vocab);
    if (s->rope_freqs) {
        /* Llama 3.1 factors (factor 8, low 1, high 4, original context 8192) for theta 500000 */
        int n = s->head_dim / 2;
        float *d = malloc((size_t)n * sizeof *d);
        for (int i = 0; i < n; i++) {
            double freq = 1.0 / pow(500000.0, 2.0 * i / s->head_dim);
            double wavelen = 2 * 3.14159265358979323846 / freq;
            if (wavelen < 8192.0 / 4) d[i] = 1;
            else if (wavelen > 8192.0 / 1) d[i] = 8;
            else {
                double smooth = (8192.0 / wavelen - 1) / (4 - 1);
                d[i] = (float)(1 / ((1 - smooth) / 8 + smooth));
            }
        }
        gtensor_set(&tt->t[tt->n], "rope_freqs.weight", LQ_GGML_F32, 1, n, 1, d, (size_t)n * 4);
        tt->data[tt->n++] = d;
    }
    write_gguf(path, 3, &kv, tt->t, tt->n, 0);
    free(kv.b.p);
}

static void tiny_free(tiny_tensors *tt) {
    for (size_t i = 0; i < tt->n; i++) free(tt->data[i]);
}

static const float *tiny_find(const tiny_tensors *tt, const char *name) {
    for (size_t i = 0; i < tt->n; i++)
        if (!strcmp(tt->t[i].name, name)) return tt->data[i];
    fail_msg("test bug: no tensor %s", name);
    return NULL;
}

static void expect_same(const float *got, const float *want, size_t n, const char *what) {
    assert_non_null(got);
    if (memcmp(got, want, n * sizeof *got) != 0) fail_msg("%s: values differ", what);
}

static void check_linear(const lq_linear *lin, const tiny_tensors *tt, const char *name, int in,
                         int out, int bias) {
    char n[128];
    assert_int_equal(lin->in_features, in);
    assert_int_equal(lin->out_features, out);
    assert_null(lin->forward);
    snprintf(n, sizeof n, "%s.weight", name);
    expect_same(lin->weight, tiny_find(tt, n), (size_t)in * out, n);
    if (bias) {
        snprintf(n, sizeof n, "%s.bias", name);
        expect_same(lin->bias, tiny_find(tt, n), (size_t)out, n);
    } else {
        assert_null(lin->bias);
    }
}

static void load_and_check(const tiny_spec *s) {
    const char *path = temp_path("tiny.gguf");
    tiny_tensors tt;
    write_tiny_model(path, s, &tt);
    lq_model *m = NULL;
    lq_status st = lq_gguf_load_model(path, &m);
    if (st) fail_msg("%s: %s", s->arch, lq_last_error());
    const lq_model_config *c = &m->cfg;
    assert_string_equal(c->arch, s->arch);
    assert_int_equal(c->dim, s->dim);
    assert_int_equal(c->hidden_dim, s->hidden);
    assert_int_equal(c->n_layers, s->layers);
    assert_int_equal(c->n_heads, s->heads);
    assert_int_equal(c->n_kv_heads, s->kv_heads);
    assert_int_equal(c->head_dim, s->head_dim);
    assert_int_equal(c->rope_dim, s->head_dim);
    assert_int_equal(c->vocab_size, s->vocab);
    assert_int_equal(c->max_seq_len, 128);
    assert_true(c->rope_theta == 500000.0f);
    assert_true(c->norm_eps == 1e-6f);
    assert_int_equal(c->rope_style, strcmp(s->arch, "llama") ? LQ_ROPE_HALF : LQ_ROPE_INTERLEAVED);
    assert_int_equal(c->has_qkv_bias, s->qkv_bias);
    assert_int_equal(c->has_qk_norm, s->qk_norm);
    assert_int_equal(c->tied_embeddings, s->tied);
    if (s->rope_freqs) {
        assert_true(c->rope_scale_factor == 8.0f);
        assert_true(c->rope_low_freq_factor == 1.0f && c->rope_high_freq_factor == 4.0f);
        assert_int_equal(c->rope_original_max_pos, 8192);
    } else {
        assert_true(c->rope_scale_factor == 0.0f);
    }
    assert_string_equal(m->format, "gguf");
    assert_non_null(strstr(m->source, "tiny.gguf"));
    expect_same(m->tok_embeddings, tiny_find(&tt, "token_embd.weight"), (size_t)s->dim * s->vocab, "embd");
    expect_same(m->final_norm, tiny_find(&tt, "output_norm.weight"), (size_t)s->dim, "output_norm");
    int q = s->heads * s->head_dim, kvd = s->kv_heads * s->head_dim;
    for (int l = 0; l < s->layers; l++) {
        const lq_layer *L = &m->layers[l];
        char n[96];
#define N(x) (snprintf(n, sizeof n, "blk.%d.%s", l, x), n)
        expect_same(L->attn_norm, tiny_find(&tt, N("attn_norm.weight")), (size_t)s->dim, n);
        expect_same(L->ffn_norm, tiny_find(&tt, N("ffn_norm.weight")), (size_t)s->dim, n);
        check_linear(&L->wq, &tt, N("attn_q"), s->dim, q, s->qkv_bias);
        check_linear(&L->wk, &tt, N("attn_k"), s->dim, kvd, s->qkv_bias);
        check_linear(&L->wv, &tt, N("attn_v"), s->dim, kvd, s->qkv_bias);
        check_linear(&L->wo, &tt, N("attn_output"), q, s->dim, 0);
        check_linear(&L->w_gate, &tt, N("ffn_gate"), s->dim, s->hidden, 0);
        check_linear(&L->w_up, &tt, N("ffn_up"), s->dim, s->hidden, 0);
        check_linear(&L->w_down, &tt, N("ffn_down"), s->hidden, s->dim, 0);
        if (s->qk_norm) {
            expect_same(L->q_norm, tiny_find(&tt, N("attn_q_norm.weight")), (size_t)s->head_dim, n);
            expect_same(L->k_norm, tiny_find(&tt, N("attn_k_norm.weight")), (size_t)s->head_dim, n);
        } else {
            assert_null(L->q_norm);
            assert_null(L->k_norm);
        }
#undef N
    }
    assert_int_equal(m->lm_head.in_features, s->dim);
    assert_int_equal(m->lm_head.out_features, s->vocab);
    if (s->tied) assert_ptr_equal(m->lm_head.weight, m->tok_embeddings);
    else expect_same(m->lm_head.weight, tiny_find(&tt, "output.weight"), (size_t)s->dim * s->vocab, "output");
    if (s->tokenizer == 0) {
        assert_null(m->tokenizer);
    } else {
        assert_non_null(m->tokenizer);
        if (s->tokenizer == 1) {
            assert_int_equal(lq_tokenizer_vocab_size(m->tokenizer), 258);
            assert_int_equal(lq_tokenizer_bos(m->tokenizer), 257);
            assert_int_equal(lq_tokenizer_add_bos(m->tokenizer), 0);
            int *ids = NULL;
            size_t n_ids = 0;
            assert_int_equal(lq_tokenizer_encode(m->tokenizer, "hehe", 4, 0, 0, &ids, &n_ids), LQ_OK);
            assert_int_equal(n_ids, 2);
            assert_true(ids[0] == 256 && ids[1] == 256);
            free(ids);
        } else {
            assert_int_equal(lq_tokenizer_vocab_size(m->tokenizer), 260);
            assert_int_equal(lq_tokenizer_bos(m->tokenizer), 1);
            assert_int_equal(lq_tokenizer_eos(m->tokenizer), 2);
            assert_int_equal(lq_tokenizer_add_bos(m->tokenizer), 1);
        }
    }
    lq_model_free(m);
    tiny_free(&tt);
}

static const tiny_spec llama_spec = {"llama", 16, 24, 2, 4, 2, 4, 300, 0, 0, 0, 1, NULL, NULL, 0, 0};

static void test_load_llama(void **state) {
    (void)state;
    load_and_check(&llama_spec);
    tiny_spec s = llama_spec;
    s.tied = 1;
    s.tokenizer = 0;
    load_and_check(&s);
    s = llama_spec;
    s.rope_freqs = 1;
    s.head_dim = 16;    /* explicit attention.key_length ≠ dim/heads */
    s.tokenizer = 2;
    load_and_check(&s);
}

static void test_load_qwen(void **state) {
    (void)state;
    tiny_spec s = llama_spec;
    s.arch = "qwen2";
    s.qkv_bias = 1;
    s.tied = 1;
    load_and_check(&s);
    s = llama_spec;
    s.arch = "qwen3";
    s.qk_norm = 1;
    s.head_dim = 8;
    load_and_check(&s);
}

static void test_load_errors(void **state) {
    (void)state;
    const char *path = temp_path("broken.gguf");
    tiny_tensors tt;
    tiny_spec s = llama_spec;
    s.arch = "gptneox";
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_UNSUPPORTED, "unknown architecture 'gptneox'");

    s = llama_spec;
    s.omit = "blk.1.ffn_up.weight";
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_NOT_FOUND, "'blk.1.ffn_up.weight'");

    s = llama_spec;
    s.reshape = "blk.0.attn_k.weight";
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_FORMAT, "'blk.0.attn_k.weight' has shape");

    s = llama_spec;
    s.arch = "qwen2";
    s.omit = "blk.0.attn_v.bias";
    s.qkv_bias = 1;
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_NOT_FOUND, "'blk.0.attn_v.bias'");

    s = llama_spec;
    s.arch = "qwen3";
    s.qk_norm = 0;      /* qwen3 without q/k norm */
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_NOT_FOUND, "attn_q_norm");

    s = llama_spec;
    s.experts = 8;
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_UNSUPPORTED, "expert");

    s = llama_spec;
    s.omit = "token_embd.weight";
    write_tiny_model(path, &s, &tt);
    tiny_free(&tt);
    expect_load_failure(path, LQ_ERR_NOT_FOUND, "token_embd.weight");

    /* missing hyperparameter */
    kvlist kv = {0};
    kv_str(&kv, "general.architecture", "llama");
    kv_u32(&kv, "llama.block_count", 1);
    write_gguf(path, 3, &kv, NULL, 0, 0);
    free(kv.b.p);
    expect_load_failure(path, LQ_ERR_NOT_FOUND, "llama.embedding_length");
    memset(&kv, 0, sizeof kv);
    kv_i32(&kv, "general.architecture", 5);
    write_gguf(path, 3, &kv, NULL, 0, 0);
    free(kv.b.p);
    expect_load_failure(path, LQ_ERR_FORMAT, "general.architecture");
}

static void test_load_committed_tiny_llama(void **state) {
    (void)state;
    const char *path = data_path("gguf_tiny_llama.gguf");
    lq_model *m = NULL;
    if (lq_gguf_load_model(path, &m) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_int_equal(m->cfg.dim, 32);
    assert_int_equal(m->cfg.n_layers, 2);
    assert_int_equal(m->cfg.n_heads, 4);
    assert_int_equal(m->cfg.n_kv_heads, 2);
    assert_int_equal(m->cfg.head_dim, 8);
    assert_int_equal(m->cfg.hidden_dim, 64);
    assert_int_equal(m->cfg.vocab_size, 263);
    assert_int_equal(m->cfg.max_seq_len, 256);
    assert_int_equal(m->cfg.tied_embeddings, 0);
    assert_int_equal(m->cfg.rope_style, LQ_ROPE_INTERLEAVED);
    /* every weight equals the reader's own dequantization of the same tensor */
    lq_gguf *g = NULL;
    assert_int_equal(lq_gguf_open(path, &g), LQ_OK);
    struct { const char *name; const float *got; } checks[] = {
        {"token_embd.weight", m->tok_embeddings},
        {"output.weight", m->lm_head.weight},
        {"output_norm.weight", m->final_norm},
        {"blk.1.attn_q.weight", m->layers[1].wq.weight},
        {"blk.1.attn_v.weight", m->layers[1].wv.weight},
        {"blk.0.ffn_gate.weight", m->layers[0].w_gate.weight},
        {"blk.0.ffn_up.weight", m->layers[0].w_up.weight},
        {"blk.0.ffn_down.weight", m->layers[0].w_down.weight},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const lq_gguf_tensor *t = lq_gguf_find_tensor(g, checks[i].name);
        assert_non_null(t);
        float *want = malloc(t->n_elements * sizeof *want);
        assert_int_equal(lq_gguf_tensor_to_f32(g, t, want), LQ_OK);
        expect_same(checks[i].got, want, t->n_elements, checks[i].name);
        free(want);
    }
    lq_gguf_close(g);
    assert_non_null(m->tokenizer);
    assert_int_equal(lq_tokenizer_vocab_size(m->tokenizer), 263);
    assert_int_equal(lq_tokenizer_bos(m->tokenizer), 261);
    lq_model_free(m);
}

static const char *smollm2_path(void) {
    const char *p = getenv("LQ_SMOLLM2_GGUF");
    return p && p[0] ? p : LQ_SMOLLM2_DEFAULT;
}

static void test_load_smollm2(void **state) {
    (void)state;
    const char *path = smollm2_path();
    /* tools/setup.sh fetches it (tools/get_smollm2.sh): its absence is a failure, not a skip */
    if (access(path, R_OK) != 0) fail_msg("%s not present: run tools/get_smollm2.sh", path);
    lq_model *m = NULL;
    if (lq_gguf_load_model(path, &m) != LQ_OK) fail_msg("%s", lq_last_error());
    const lq_model_config *c = &m->cfg;
    assert_string_equal(c->arch, "llama");
    assert_int_equal(c->dim, 576);
    assert_int_equal(c->hidden_dim, 1536);
    assert_int_equal(c->n_layers, 30);
    assert_int_equal(c->n_heads, 9);
    assert_int_equal(c->n_kv_heads, 3);
    assert_int_equal(c->head_dim, 64);
    assert_int_equal(c->vocab_size, 49152);
    assert_int_equal(c->max_seq_len, 8192);
    assert_true(c->rope_theta == 100000.0f);
    assert_int_equal(c->tied_embeddings, 1);
    assert_int_equal(c->rope_style, LQ_ROPE_INTERLEAVED);
    assert_non_null(m->tokenizer);
    assert_int_equal(lq_tokenizer_vocab_size(m->tokenizer), 49152);
    assert_int_equal(lq_tokenizer_bos(m->tokenizer), 1);
    assert_int_equal(lq_tokenizer_eos(m->tokenizer), 2);
    /* weights are finite and of a sane scale */
    double sum = 0;
    for (size_t i = 0; i < (size_t)c->dim * c->hidden_dim; i++) {
        float v = m->layers[29].w_gate.weight[i];
        assert_true(isfinite(v));
        sum += (double)v * v;
    }
    double rms = sqrt(sum / ((double)c->dim * c->hidden_dim));
    assert_true(rms > 1e-3 && rms < 1.0);
    lq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_of_every_type),
        cmocka_unit_test(test_dimension_order),
        cmocka_unit_test(test_dequantize_matches_reference),
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_every_truncation_fails_cleanly),
        cmocka_unit_test(test_header_mutations),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_custom_alignment_and_unsupported_type),
        cmocka_unit_test(test_load_llama),
        cmocka_unit_test(test_load_qwen),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_committed_tiny_llama),
        cmocka_unit_test(test_load_smollm2),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
