/* GGUF reader (versions 2 and 3, as llama.cpp writes them) and ggml block dequantizers.
 *
 * File layout (all little-endian):
 *   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count × { string key, u32 value_type, value },
 *   tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
 *   padding to general.alignment (default 32), then the data section; tensor offsets are
 *   relative to it. A string is a u64 byte length and that many bytes (no NUL); an array is
 *   u32 element type, u64 count, then the elements.
 * Dimensions are in ggml order: ne[0] is the contiguous one, so a weight with
 * ne = [in, out] is the PyTorch out × in row-major matrix, byte for byte.
 *
 * lq_gguf_open maps the file and validates everything up front (types known, strings and
 * arrays inside the file, tensor sizes consistent with the block layout, offsets aligned, in
 * bounds and not overlapping), so the accessors below cannot fail on a file that opened. */
#ifndef LQ_GGUF_H
#define LQ_GGUF_H

#include "lq_common.h"

/* Metadata value types, numbered as in the file. */
typedef enum {
    LQ_GGUF_U8 = 0, LQ_GGUF_I8 = 1, LQ_GGUF_U16 = 2, LQ_GGUF_I16 = 3, LQ_GGUF_U32 = 4,
    LQ_GGUF_I32 = 5, LQ_GGUF_F32 = 6, LQ_GGUF_BOOL = 7, LQ_GGUF_STRING = 8, LQ_GGUF_ARRAY = 9,
    LQ_GGUF_U64 = 10, LQ_GGUF_I64 = 11, LQ_GGUF_F64 = 12
} lq_gguf_value_type;

/* ggml tensor types (the numbers are the file format's; gaps are retired types). */
enum {
    LQ_GGML_F32 = 0, LQ_GGML_F16 = 1, LQ_GGML_Q4_0 = 2, LQ_GGML_Q4_1 = 3, LQ_GGML_Q5_0 = 6,
    LQ_GGML_Q5_1 = 7, LQ_GGML_Q8_0 = 8, LQ_GGML_Q8_1 = 9, LQ_GGML_Q2_K = 10, LQ_GGML_Q3_K = 11,
    LQ_GGML_Q4_K = 12, LQ_GGML_Q5_K = 13, LQ_GGML_Q6_K = 14, LQ_GGML_Q8_K = 15,
    LQ_GGML_I8 = 24, LQ_GGML_I16 = 25, LQ_GGML_I32 = 26, LQ_GGML_I64 = 27, LQ_GGML_F64 = 28,
    LQ_GGML_BF16 = 30
};

#define LQ_GGUF_MAX_DIMS 4

typedef struct {
    const char *name;            /* NUL-terminated */
    int n_dims;                  /* 1..4 */
    int64_t ne[LQ_GGUF_MAX_DIMS];/* ggml order; unused dimensions are 1 */
    uint32_t type;               /* LQ_GGML_* */
    uint64_t offset;             /* from the start of the data section */
    size_t n_elements;
    size_t nbytes;
    const void *data;            /* into the mapping; valid until lq_gguf_close */
} lq_gguf_tensor;

typedef struct lq_gguf lq_gguf;

lq_status lq_gguf_open(const char *path, lq_gguf **out);
/* The same validation over a file's bytes already in memory (a fuzzer's input); name stands
 * for the file in messages. Tensors and strings point into bytes, which must outlive g. */
lq_status lq_gguf_open_memory(const void *bytes, size_t len, const char *name, lq_gguf **out);
void lq_gguf_close(lq_gguf *g);
const char *lq_gguf_path(const lq_gguf *g);
uint32_t lq_gguf_version(const lq_gguf *g);
size_t lq_gguf_alignment(const lq_gguf *g);
uint64_t lq_gguf_data_offset(const lq_gguf *g);   /* file offset of the data section */

/* ---- metadata ------------------------------------------------------------------------ */
size_t lq_gguf_kv_count(const lq_gguf *g);
const char *lq_gguf_kv_key(const lq_gguf *g, size_t i);
lq_gguf_value_type lq_gguf_kv_type(const lq_gguf *g, size_t i);
/* For arrays: element type and length (an array of arrays reports LQ_GGUF_ARRAY and has no
 * typed getter). */
lq_gguf_value_type lq_gguf_kv_array_type(const lq_gguf *g, size_t i);
size_t lq_gguf_kv_array_len(const lq_gguf *g, size_t i);
long lq_gguf_find_key(const lq_gguf *g, const char *key);   /* index, or −1 */
const char *lq_gguf_value_type_name(lq_gguf_value_type t);

/* Typed getters. Absent key → LQ_ERR_NOT_FOUND, wrong type → LQ_ERR_FORMAT, each naming the
 * key and the file. */
/* A string value, NUL-terminated (GGUF strings carry a length; an embedded NUL is kept in
 * *len, when len is not NULL). Valid until lq_gguf_close. */
lq_status lq_gguf_get_string(const lq_gguf *g, const char *key, const char **out, size_t *len);
/* Any integer type (and bool); a u64 above INT64_MAX is LQ_ERR_RANGE. */
lq_status lq_gguf_get_int(const lq_gguf *g, const char *key, int64_t *out);
/* f32 or f64 (integers are accepted too: some writers store e.g. rope.freq_base as u32). */
lq_status lq_gguf_get_float(const lq_gguf *g, const char *key, double *out);
lq_status lq_gguf_get_bool(const lq_gguf *g, const char *key, int *out);
/* Same, with a default when the key is absent (a present key of the wrong type still fails). */
lq_status lq_gguf_get_int_or(const lq_gguf *g, const char *key, int64_t dflt, int64_t *out);
lq_status lq_gguf_get_float_or(const lq_gguf *g, const char *key, double dflt, double *out);
lq_status lq_gguf_get_bool_or(const lq_gguf *g, const char *key, int dflt, int *out);
/* An array of strings: *out points to n NUL-terminated strings, valid until lq_gguf_close
 * (lengths in *lens when lens is not NULL). */
lq_status lq_gguf_get_string_array(const lq_gguf *g, const char *key, const char *const **out,
                                   const size_t **lens, size_t *n);
/* An array of any integer type, converted to int64 (a u64 above INT64_MAX is LQ_ERR_RANGE);
 * *out is malloc'ed, the caller frees it. */
lq_status lq_gguf_get_int_array(const lq_gguf *g, const char *key, int64_t **out, size_t *n);
/* An array of f32/f64 (or integers), converted to float; *out is malloc'ed. */
lq_status lq_gguf_get_float_array(const lq_gguf *g, const char *key, float **out, size_t *n);

/* ---- tensors ------------------------------------------------------------------------- */
size_t lq_gguf_tensor_count(const lq_gguf *g);
const lq_gguf_tensor *lq_gguf_tensor_at(const lq_gguf *g, size_t i);
const lq_gguf_tensor *lq_gguf_find_tensor(const lq_gguf *g, const char *name);  /* NULL if absent */

/* Type name ("Q4_K"), "?" for an unknown number. */
const char *lq_ggml_type_name(uint32_t type);
/* Elements and bytes per block of a ggml type; returns 0 for an unknown type. */
int lq_ggml_type_block(uint32_t type, size_t *block_elems, size_t *block_bytes);
/* Whether lq_ggml_dequantize handles the type: F32, F16, BF16, F64, I8/I16/I32, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K. */
int lq_ggml_type_dequantizable(uint32_t type);
/* Dequantizes n elements (a multiple of the block size) from src, which may be unaligned. */
lq_status lq_ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n);
/* The whole tensor as f32 into dst (t->n_elements floats); errors name the tensor and file. */
lq_status lq_gguf_tensor_to_f32(const lq_gguf *g, const lq_gguf_tensor *t, float *dst);

#endif
