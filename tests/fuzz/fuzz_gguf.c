/* Fuzz target: the GGUF reader (common/gguf.c) through lq_gguf_open_memory, the same parser
 * lq_gguf_open runs on a mapped file, then every accessor gguf.h promises cannot fail on a
 * file that opened: each key read back with the getter of its type, each tensor inside the
 * data section, small tensors dequantized. */
#include "fuzz_common.h"
#include "gguf.h"

#include <string.h>

int lq_fuzz_accepted;

static int is_integer_type(lq_gguf_value_type t) {
    return t == LQ_GGUF_U8 || t == LQ_GGUF_I8 || t == LQ_GGUF_U16 || t == LQ_GGUF_I16 ||
           t == LQ_GGUF_U32 || t == LQ_GGUF_I32 || t == LQ_GGUF_U64 || t == LQ_GGUF_I64 ||
           t == LQ_GGUF_BOOL;
}

static void read_key(const lq_gguf *g, size_t i) {
    const char *key = lq_gguf_kv_key(g, i);
    LQ_FUZZ_CHECK(key != NULL);
    LQ_FUZZ_CHECK(lq_gguf_find_key(g, key) == (long)i);
    lq_gguf_value_type type = lq_gguf_kv_type(g, i);
    LQ_FUZZ_CHECK(strcmp(lq_gguf_value_type_name(type), "?") != 0);
    if (type == LQ_GGUF_STRING) {
        const char *s;
        size_t len;
        LQ_FUZZ_CHECK(lq_gguf_get_string(g, key, &s, &len) == LQ_OK);
        (void)lq_checksum64(s, len + 1);   /* the bytes and the NUL the header promises */
    } else if (type == LQ_GGUF_ARRAY) {
        lq_gguf_value_type element = lq_gguf_kv_array_type(g, i);
        size_t len = lq_gguf_kv_array_len(g, i), n = 0;
        if (element == LQ_GGUF_STRING) {
            const char *const *strings;
            const size_t *lens;
            LQ_FUZZ_CHECK(lq_gguf_get_string_array(g, key, &strings, &lens, &n) == LQ_OK);
            LQ_FUZZ_CHECK(n == len);
            for (size_t j = 0; j < n; j++) (void)lq_checksum64(strings[j], lens[j] + 1);
        } else if (is_integer_type(element)) {
            int64_t *values = NULL;
            lq_status st = lq_gguf_get_int_array(g, key, &values, &n);
            /* a u64 above INT64_MAX is the one refusal */
            LQ_FUZZ_CHECK(st == LQ_OK ? n == len : st == LQ_ERR_RANGE && values == NULL);
            free(values);
        } else if (element == LQ_GGUF_F32 || element == LQ_GGUF_F64) {
            float *values = NULL;
            LQ_FUZZ_CHECK(lq_gguf_get_float_array(g, key, &values, &n) == LQ_OK && n == len);
            free(values);
        }
    } else if (type == LQ_GGUF_F32 || type == LQ_GGUF_F64) {
        double v;
        LQ_FUZZ_CHECK(lq_gguf_get_float(g, key, &v) == LQ_OK);
    } else if (is_integer_type(type)) {
        int64_t v;
        lq_status st = lq_gguf_get_int(g, key, &v);
        LQ_FUZZ_CHECK(st == LQ_OK || (st == LQ_ERR_RANGE && type == LQ_GGUF_U64));
        if (type == LQ_GGUF_BOOL) {
            int b;
            LQ_FUZZ_CHECK(lq_gguf_get_bool(g, key, &b) == LQ_OK);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    lq_gguf *g;
    lq_status st = lq_gguf_open_memory(data, size, "fuzz.gguf", &g);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        LQ_FUZZ_CHECK(g == NULL);
        return 0;
    }
    lq_fuzz_accepted = 1;
    LQ_FUZZ_CHECK(lq_gguf_data_offset(g) <= size);
    for (size_t i = 0; i < lq_gguf_kv_count(g); i++) read_key(g, i);
    const uint8_t *end = data + size;
    for (size_t i = 0; i < lq_gguf_tensor_count(g); i++) {
        const lq_gguf_tensor *t = lq_gguf_tensor_at(g, i);
        LQ_FUZZ_CHECK(t != NULL && t->name != NULL);
        LQ_FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= LQ_GGUF_MAX_DIMS);
        LQ_FUZZ_CHECK(lq_gguf_find_tensor(g, t->name) == t);
        const uint8_t *bytes = t->data;
        LQ_FUZZ_CHECK(bytes >= data && bytes <= end && t->nbytes <= (size_t)(end - bytes));
        (void)lq_checksum64(bytes, t->nbytes);
        if (lq_ggml_type_dequantizable(t->type) && t->n_elements > 0 && t->n_elements <= 65536) {
            float *values = malloc(t->n_elements * sizeof *values);
            LQ_FUZZ_CHECK(values != NULL);
            LQ_FUZZ_CHECK(lq_gguf_tensor_to_f32(g, t, values) == LQ_OK);
            free(values);
        }
    }
    lq_gguf_close(g);
    return 0;
}
