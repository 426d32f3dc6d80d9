/* GGUF reader, ggml block dequantizers, and the GGUF → lq_model loader.
 *
 * The file is mapped read-only and parsed completely at open time; every length, count,
 * offset and size is checked against the file before it is used, so a truncated or corrupt
 * file is an error naming the file (and the key or tensor), never a read past the mapping.
 * Strings are copied out NUL-terminated (the file's strings are length-prefixed and
 * unterminated); tensor data stays in the mapping.
 *
 * The block layouts are those of ggml (ggml-common.h / ggml-quants.c); each dequantizer here
 * is written from the layout and checked in tests/test_gguf.c against the gguf Python
 * package's own dequantization (fixtures in tests/data/, made by tests/make_gguf_fixtures.py).
 * The arithmetic follows the reference order of operations (scale products first, then times
 * the quant) so results are bit-identical to the reference, not merely close. */
#include "gguf.h"
#include "loaders.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF as llama.cpp writes it is little-endian; this reader does not byte-swap"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
/* Nested arrays are legal in the format but no llama.cpp key uses them; the depth limit
 * keeps a corrupt file from recursing without bound. */
#define GGUF_MAX_ARRAY_DEPTH 4

/* ---- ggml type table ------------------------------------------------------------------ */
typedef struct {
    const char *name;
    uint32_t block_elems, block_bytes;
} ggml_type_info;

/* Indexed by type number; a NULL name is an unknown (or retired) type. Sizes from
 * ggml-common.h: e.g. Q4_K = f16 d, f16 dmin, 12 bytes of 6-bit scales, 128 bytes of nibbles. */
static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4},         [1] = {"F16", 1, 2},
    [2] = {"Q4_0", 32, 18},      [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},    [11] = {"Q3_K", 256, 110},
    [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},   [15] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},   [23] = {"IQ4_XS", 256, 136},
    [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},        [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},        [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},
    [40] = {"NVFP4", 64, 36},    [41] = {"Q1_0", 128, 18},
};
#define GGML_TYPE_TABLE_SIZE (sizeof ggml_types / sizeof ggml_types[0])

const char *lq_ggml_type_name(uint32_t type) {
    return type < GGML_TYPE_TABLE_SIZE && ggml_types[type].name ? ggml_types[type].name : "?";
}

int lq_ggml_type_block(uint32_t type, size_t *block_elems, size_t *block_bytes) {
    if (type >= GGML_TYPE_TABLE_SIZE || !ggml_types[type].name) return 0;
    if (block_elems) *block_elems = ggml_types[type].block_elems;
    if (block_bytes) *block_bytes = ggml_types[type].block_bytes;
    return 1;
}

int lq_ggml_type_dequantizable(uint32_t type) {
    switch (type) {
    case LQ_GGML_F32: case LQ_GGML_F16: case LQ_GGML_BF16: case LQ_GGML_F64:
    case LQ_GGML_I8: case LQ_GGML_I16: case LQ_GGML_I32:
    case LQ_GGML_Q4_0: case LQ_GGML_Q4_1: case LQ_GGML_Q5_0: case LQ_GGML_Q5_1:
    case LQ_GGML_Q8_0: case LQ_GGML_Q2_K: case LQ_GGML_Q3_K: case LQ_GGML_Q4_K:
    case LQ_GGML_Q5_K: case LQ_GGML_Q6_K: case LQ_GGML_Q8_K:
        return 1;
    default:
        return 0;
    }
}

/* ---- dequantizers ---------------------------------------------------------------------- */
/* Blocks are read byte-wise through memcpy: ggml blocks are packed (e.g. Q4_0 is 18 bytes),
 * so their f16 scales are not 2-byte aligned inside a tensor. */
static float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lq_f16_to_f32(h);
}

static uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Q4_0: f16 d, 16 bytes; element j is the low nibble of byte j, element j+16 the high
 * nibble; value (q − 8)·d. */
static void dequant_q4_0(const uint8_t *b, float *y) {
    float d = load_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0x0F) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; value q·d + m. */
static void dequant_q4_1(const uint8_t *b, float *y) {
    float d = load_f16(b), m = load_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0x0F) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q5_0: f16 d, u32 qh (bit i is the fifth bit of element i), 16 bytes of nibbles;
 * value (q − 16)·d. */
static void dequant_q5_0(const uint8_t *b, float *y) {
    float d = load_f16(b);
    uint32_t qh = load_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

/* Q5_1: f16 d, f16 m, u32 qh, 16 bytes; value q·d + m. */
static void dequant_q5_1(const uint8_t *b, float *y) {
    float d = load_f16(b), m = load_f16(b + 2);
    uint32_t qh = load_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

/* Q8_0: f16 d, 32 signed bytes; value q·d. */
static void dequant_q8_0(const uint8_t *b, float *y) {
    float d = load_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = d * (float)qs[j];
}

/* Q8_K: f32 d, 256 signed bytes, 16 i16 block sums (only used by dot products); value q·d. */
static void dequant_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)qs[j];
}

/* Q2_K: 16 bytes of scales (low nibble: scale, high nibble: min, one per 16 elements),
 * 64 bytes of 2-bit quants, f16 d, f16 dmin. Element e lives in byte 32·(e/128) + e%32 at
 * bit 2·((e%128)/32); value (d·sc)·q − (dmin·m). */
static void dequant_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *qs = b + 16;
    float d = load_f16(b + 80), dmin = load_f16(b + 82);
    for (int e = 0; e < 256; e++) {
        int sb = e / 16;
        float dl = d * (float)(scales[sb] & 0x0F);
        float ml = dmin * (float)(scales[sb] >> 4);
        int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        y[e] = dl * (float)q - ml;
    }
}

/* Q3_K: 32 bytes hmask, 64 bytes of 2-bit quants (laid out as Q2_K), 12 bytes of 6-bit
 * signed scales (offset 32), f16 d. The high bit of element e is bit e/32 of hmask[e%32]; a
 * clear bit means −4 (ggml stores the bit inverted). Scale i: low nibble from byte i (i < 8)
 * or the high nibble of byte i − 8, top two bits from byte 8 + i%4 at bit 2·(i/4). */
static void dequant_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    float d = load_f16(b + 108);
    float dl[16];
    for (int i = 0; i < 16; i++) {
        int low = i < 8 ? (sc[i] & 0x0F) : (sc[i - 8] >> 4);
        int high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        dl[i] = d * (float)((low | (high << 4)) - 32);
    }
    for (int e = 0; e < 256; e++) {
        int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        int h = (hmask[e % 32] >> (e / 32)) & 1;
        y[e] = dl[e / 16] * (float)(q - (h ? 0 : 4));
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K, packed in 12 bytes:
 * j < 4: scale = q[j] & 63, min = q[j+4] & 63; otherwise the low four bits come from
 * q[j+4] (scale: low nibble, min: high nibble) and the top two from the spare bits of
 * q[j−4] (scale) and q[j] (min). */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles: each 32-byte chunk
 * holds 64 elements, the first 32 in the low nibbles. Value (d·sc)·q − (dmin·m). */
static void dequant_q4_k(const uint8_t *b, float *y) {
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int sb = 0; sb < 8; sb++) {
        int sc, m;
        scale_min_k4(sb, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (sb / 2);
        int shift = 4 * (sb % 2);
        for (int l = 0; l < 32; l++) y[32 * sb + l] = d1 * (float)((q[l] >> shift) & 0x0F) - m1;
    }
}

/* Q5_K: as Q4_K plus 32 bytes qh before the nibbles: bit sb of qh[l] is the fifth bit of
 * element 32·sb + l. */
static void dequant_q5_k(const uint8_t *b, float *y) {
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int sb = 0; sb < 8; sb++) {
        int sc, m;
        scale_min_k4(sb, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (sb / 2);
        int shift = 4 * (sb % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> sb) & 1) << 4);
            y[32 * sb + l] = d1 * (float)v - m1;
        }
    }
}

/* Q6_K: 128 bytes ql (low four bits), 64 bytes qh (top two bits), 16 signed 8-bit scales,
 * f16 d. Per 128-element half h: element 32·k + l (k = 0..3) takes the low (k < 2) or high
 * (k ≥ 2) nibble of ql[64h + 32·(k%2) + l] and bits 2k..2k+1 of qh[32h + l]; value
 * (d·scale[e/16])·(q − 32). */
static void dequant_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = load_f16(b + 208);
    for (int h = 0; h < 2; h++) {
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * k + l;
                int lo = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
                int hi = (qh[32 * h + l] >> (2 * k)) & 3;
                float dl = d * (float)scales[e / 16];
                y[e] = dl * (float)((lo | (hi << 4)) - 32);
            }
        }
    }
}

lq_status lq_ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n) {
    size_t be, bb;
    if (!lq_ggml_type_block(type, &be, &bb))
        return lq_fail(LQ_ERR_UNSUPPORTED, "unknown ggml type %u", (unsigned)type);
    if (n % be != 0)
        return lq_fail(LQ_ERR_ARG, "%zu elements are not a whole number of %s blocks of %zu", n,
                       lq_ggml_type_name(type), be);
    const uint8_t *s = src;
    size_t nb = n / be;
    void (*block_fn)(const uint8_t *, float *) = NULL;
    switch (type) {
    case LQ_GGML_F32: memcpy(dst, src, n * sizeof(float)); return LQ_OK;
    case LQ_GGML_F16: return lq_convert_to_f32(LQ_DTYPE_F16, src, dst, n);
    case LQ_GGML_BF16: return lq_convert_to_f32(LQ_DTYPE_BF16, src, dst, n);
    case LQ_GGML_F64: return lq_convert_to_f32(LQ_DTYPE_F64, src, dst, n);
    case LQ_GGML_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i];
        return LQ_OK;
    case LQ_GGML_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = (float)v;
        }
        return LQ_OK;
    case LQ_GGML_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, s + 4 * i, 4);
            dst[i] = (float)v;
        }
        return LQ_OK;
    case LQ_GGML_Q4_0: block_fn = dequant_q4_0; break;
    case LQ_GGML_Q4_1: block_fn = dequant_q4_1; break;
    case LQ_GGML_Q5_0: block_fn = dequant_q5_0; break;
    case LQ_GGML_Q5_1: block_fn = dequant_q5_1; break;
    case LQ_GGML_Q8_0: block_fn = dequant_q8_0; break;
    case LQ_GGML_Q2_K: block_fn = dequant_q2_k; break;
    case LQ_GGML_Q3_K: block_fn = dequant_q3_k; break;
    case LQ_GGML_Q4_K: block_fn = dequant_q4_k; break;
    case LQ_GGML_Q5_K: block_fn = dequant_q5_k; break;
    case LQ_GGML_Q6_K: block_fn = dequant_q6_k; break;
    case LQ_GGML_Q8_K: block_fn = dequant_q8_k; break;
    default:
        return lq_fail(LQ_ERR_UNSUPPORTED, "no dequantizer for ggml type %s (%u)",
                       lq_ggml_type_name(type), (unsigned)type);
    }
    /* Blocks are independent; a large embedding table is worth both cores, a norm is not. */
    long nbl = (long)nb;
#pragma omp parallel for schedule(static) if (nbl > 16384)
    for (long i = 0; i < nbl; i++) block_fn(s + (size_t)i * bb, dst + (size_t)i * be);
    return LQ_OK;
}

/* ---- the reader ----------------------------------------------------------------------- */
typedef struct {
    char *key;
    lq_gguf_value_type type;
    lq_gguf_value_type array_type;  /* arrays only */
    uint64_t array_len;             /* arrays only */
    const uint8_t *value;           /* scalars: the value; arrays: the first element */
    char *str;                      /* strings: NUL-terminated copy */
    size_t str_len;
    char **strs;                    /* string arrays: NUL-terminated copies */
    size_t *str_lens;
} gguf_kv;

struct lq_gguf {
    char *path;
    const uint8_t *map;
    size_t size;
    int mapped;                /* map is our mmap (a file), not the caller's bytes */
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;
    size_t n_kv;
    gguf_kv *kv;
    size_t n_tensors;
    lq_gguf_tensor *tensors;
    char **tensor_names;
};

/* A bounds-checked cursor over the mapping. `what` describes the item being read, for the
 * truncation message. */
typedef struct {
    const uint8_t *base;
    size_t size, pos;
    const char *path;
} cursor;

static lq_status need(cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: %s at byte %zu needs %llu bytes, "
                       "only %zu remain", c->path, what, c->pos, (unsigned long long)n,
                       c->size - c->pos);
    return LQ_OK;
}

/* n raw bytes into v. GGUF is little-endian like our hosts; big-endian files are refused
 * when the header is read. */
static lq_status read_raw(cursor *c, void *v, size_t n, const char *what) {
    lq_status st = need(c, n, what);
    if (st) return st;
    memcpy(v, c->base + c->pos, n);
    c->pos += n;
    return LQ_OK;
}

static lq_status read_u32(cursor *c, uint32_t *v, const char *what) { return read_raw(c, v, 4, what); }
static lq_status read_u64(cursor *c, uint64_t *v, const char *what) { return read_raw(c, v, 8, what); }

/* A string: u64 length then bytes; *s points into the mapping. */
static lq_status read_str(cursor *c, const uint8_t **s, uint64_t *len, const char *what) {
    lq_status st = read_u64(c, len, what);
    if (st) return st;
    if ((st = need(c, *len, what))) return st;
    *s = c->base + c->pos;
    c->pos += (size_t)*len;
    return LQ_OK;
}

static char *copy_str(const uint8_t *s, size_t len) {
    char *p = malloc(len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static size_t value_size(lq_gguf_value_type t) {
    switch (t) {
    case LQ_GGUF_U8: case LQ_GGUF_I8: case LQ_GGUF_BOOL: return 1;
    case LQ_GGUF_U16: case LQ_GGUF_I16: return 2;
    case LQ_GGUF_U32: case LQ_GGUF_I32: case LQ_GGUF_F32: return 4;
    case LQ_GGUF_U64: case LQ_GGUF_I64: case LQ_GGUF_F64: return 8;
    default: return 0;   /* strings and arrays have variable size */
    }
}

const char *lq_gguf_value_type_name(lq_gguf_value_type t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static int value_type_valid(uint32_t t) { return t <= LQ_GGUF_F64; }

/* Skips one value of type t (used for the elements of nested arrays, which are not kept). */
static lq_status skip_value(cursor *c, uint32_t t, int depth, const char *key) {
    if (!value_type_valid(t))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s': unknown value type %u", c->path, key, t);
    if (t == LQ_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return read_str(c, &s, &len, key);
    }
    if (t == LQ_GGUF_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return lq_fail(LQ_ERR_FORMAT, "%s: key '%s': arrays nested deeper than %d", c->path,
                           key, GGUF_MAX_ARRAY_DEPTH);
        uint32_t et;
        uint64_t n;
        lq_status st = read_u32(c, &et, key);
        if (!st) st = read_u64(c, &n, key);
        if (st) return st;
        if (!value_type_valid(et))
            return lq_fail(LQ_ERR_FORMAT, "%s: key '%s': unknown array element type %u", c->path,
                           key, et);
        size_t es = value_size(et);
        if (es) {
            if (n > (c->size - c->pos) / es) return need(c, UINT64_MAX, key);
            c->pos += (size_t)n * es;
            return LQ_OK;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_value(c, et, depth + 1, key))) return st;
        return LQ_OK;
    }
    lq_status st = need(c, value_size(t), key);
    if (!st) c->pos += value_size(t);
    return st;
}

static lq_status parse_kv(lq_gguf *g, cursor *c, gguf_kv *kv, uint64_t index) {
    char what[64];
    snprintf(what, sizeof what, "key %llu", (unsigned long long)index);
    const uint8_t *ks;
    uint64_t klen;
    uint32_t type;
    lq_status st = read_str(c, &ks, &klen, what);
    if (st) return st;
    if (!(kv->key = copy_str(ks, (size_t)klen))) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    if (strlen(kv->key) != klen)
        return lq_fail(LQ_ERR_FORMAT, "%s: key %llu contains a NUL byte", g->path,
                       (unsigned long long)index);
    if ((st = read_u32(c, &type, kv->key))) return st;
    if (!value_type_valid(type))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s': unknown value type %u", g->path, kv->key, type);
    kv->type = (lq_gguf_value_type)type;
    if (type == LQ_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        if ((st = read_str(c, &s, &len, kv->key))) return st;
        kv->value = s;
        kv->str_len = (size_t)len;
        if (!(kv->str = copy_str(s, (size_t)len))) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
        return LQ_OK;
    }
    if (type != LQ_GGUF_ARRAY) {
        if ((st = need(c, value_size(kv->type), kv->key))) return st;
        kv->value = c->base + c->pos;
        c->pos += value_size(kv->type);
        return LQ_OK;
    }
    uint32_t et;
    uint64_t n;
    if ((st = read_u32(c, &et, kv->key)) || (st = read_u64(c, &n, kv->key))) return st;
    if (!value_type_valid(et))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s': unknown array element type %u", g->path,
                       kv->key, et);
    kv->array_type = (lq_gguf_value_type)et;
    kv->array_len = n;
    kv->value = c->base + c->pos;
    size_t es = value_size(kv->array_type);
    if (es) {
        if (n > (c->size - c->pos) / es)
            return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: array '%s' of %llu %s values "
                           "at byte %zu runs past the end of the file", g->path, kv->key,
                           (unsigned long long)n, lq_gguf_value_type_name(kv->array_type), c->pos);
        c->pos += (size_t)n * es;
        return LQ_OK;
    }
    if (et == LQ_GGUF_ARRAY) {
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_value(c, et, 1, kv->key))) return st;
        return LQ_OK;
    }
    /* Array of strings: every string needs at least its 8-byte length, which bounds n before
     * anything is allocated. */
    if (n > (c->size - c->pos) / 8)
        return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: array '%s' of %llu strings at "
                       "byte %zu runs past the end of the file", g->path, kv->key,
                       (unsigned long long)n, c->pos);
    size_t start = c->pos, total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint64_t len;
        if ((st = read_str(c, &s, &len, kv->key))) return st;
        total += (size_t)len + 1;
    }
    /* One block holds the pointers, the lengths and the NUL-terminated bytes. */
    size_t nn = (size_t)n;
    char *block = malloc(nn * (sizeof(char *) + sizeof(size_t)) + total + 1);
    if (!block) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for array '%s'", g->path, kv->key);
    kv->strs = (char **)(void *)block;
    kv->str_lens = (size_t *)(void *)(block + nn * sizeof(char *));
    char *bytes = block + nn * (sizeof(char *) + sizeof(size_t));
    cursor again = {c->base, c->size, start, c->path};
    for (size_t i = 0; i < nn; i++) {
        const uint8_t *s;
        uint64_t len;
        read_str(&again, &s, &len, kv->key);   /* cannot fail: checked above */
        kv->strs[i] = bytes;
        kv->str_lens[i] = (size_t)len;
        if (len) memcpy(bytes, s, (size_t)len);
        bytes[len] = '\0';
        bytes += len + 1;
    }
    return LQ_OK;
}

static lq_status parse_tensor_info(lq_gguf *g, cursor *c, size_t index) {
    lq_gguf_tensor *t = &g->tensors[index];
    char what[64];
    snprintf(what, sizeof what, "tensor info %zu", index);
    const uint8_t *ns;
    uint64_t nlen;
    lq_status st = read_str(c, &ns, &nlen, what);
    if (st) return st;
    if (!(g->tensor_names[index] = copy_str(ns, (size_t)nlen)))
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    const char *name = t->name = g->tensor_names[index];
    if (strlen(name) != nlen)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor %zu: name contains a NUL byte", g->path, index);
    uint32_t n_dims;
    if ((st = read_u32(c, &n_dims, name))) return st;
    if (n_dims < 1 || n_dims > LQ_GGUF_MAX_DIMS)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': %u dimensions, expected 1 to %d", g->path,
                       name, n_dims, LQ_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t count = 1;
    for (int d = 0; d < LQ_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)n_dims && (st = read_u64(c, &ne, name))) return st;
        if (ne > (uint64_t)INT64_MAX)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': dimension %d is %llu", g->path, name,
                           d, (unsigned long long)ne);
        if (ne != 0 && count > SIZE_MAX / ne)
            return lq_fail(LQ_ERR_RANGE, "%s: tensor '%s': element count overflows", g->path, name);
        count *= ne;
        t->ne[d] = (int64_t)ne;
    }
    uint32_t type;
    if ((st = read_u32(c, &type, name)) || (st = read_u64(c, &t->offset, name))) return st;
    size_t be, bb;
    if (!lq_ggml_type_block(type, &be, &bb))
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown ggml type %u", g->path,
                       name, type);
    t->type = type;
    if ((uint64_t)t->ne[0] % be != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': row length %lld is not a multiple of the "
                       "%s block size %zu", g->path, name, (long long)t->ne[0],
                       lq_ggml_type_name(type), be);
    t->n_elements = (size_t)count;
    size_t blocks = (size_t)count / be;
    if (blocks > SIZE_MAX / bb)
        return lq_fail(LQ_ERR_RANGE, "%s: tensor '%s': byte size overflows", g->path, name);
    t->nbytes = blocks * bb;
    return LQ_OK;
}

static int compare_by_offset(const void *a, const void *b) {
    const lq_gguf_tensor *x = *(const lq_gguf_tensor *const *)a, *y = *(const lq_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every tensor inside the data section, aligned, no two overlapping, no duplicate names. */
static lq_status check_tensor_layout(lq_gguf *g) {
    uint64_t data_size = g->size - g->data_offset;
    for (size_t i = 0; i < g->n_tensors; i++) {
        lq_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the "
                           "alignment %zu", g->path, t->name, (unsigned long long)t->offset,
                           g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: tensor '%s' (%s, %zu bytes at "
                           "data offset %llu) runs past the end of the file (data section is "
                           "%llu bytes)", g->path, t->name, lq_ggml_type_name(t->type), t->nbytes,
                           (unsigned long long)t->offset, (unsigned long long)data_size);
        t->data = g->map + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return LQ_OK;
    const lq_gguf_tensor **order = malloc(g->n_tensors * sizeof *order);
    if (!order) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, compare_by_offset);
    lq_status st = LQ_OK;
    for (size_t i = 1; i < g->n_tensors && !st; i++) {
        const lq_gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset)
            st = lq_fail(LQ_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", g->path, a->name, b->name);
    }
    free(order);
    if (st) return st;
    /* Duplicate names: sort a copy (MoE files have tens of thousands of tensors). */
    char **names = malloc(g->n_tensors * sizeof *names);
    if (!names) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    memcpy(names, g->tensor_names, g->n_tensors * sizeof *names);
    qsort(names, g->n_tensors, sizeof *names, compare_strings);
    for (size_t i = 1; i < g->n_tensors && !st; i++)
        if (!strcmp(names[i - 1], names[i]))
            st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' appears twice", g->path, names[i]);
    free(names);
    return st;
}

static lq_status parse(lq_gguf *g) {
    if (g->size < 24)
        return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: %zu bytes, the header alone is 24",
                       g->path, g->size);
    cursor c = {g->map, g->size, 0, g->path};
    lq_status st;
    if (memcmp(g->map, GGUF_MAGIC, 4) != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: not a GGUF file (magic is not \"GGUF\")", g->path);
    c.pos = 4;
    if ((st = read_u32(&c, &g->version, "version"))) return st;
    if (g->version == 1)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3); "
                       "re-convert the model with a current llama.cpp", g->path);
    if (g->version != 2 && g->version != 3) {
        /* a big-endian file reads as a byte-swapped version number */
        if (g->version == 0x02000000u || g->version == 0x03000000u)
            return lq_fail(LQ_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", g->path);
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (only 2 and 3)",
                       g->path, g->version);
    }
    uint64_t n_tensors, n_kv;
    if ((st = read_u64(&c, &n_tensors, "tensor count")) || (st = read_u64(&c, &n_kv, "key count")))
        return st;
    /* A key/value pair takes at least 13 bytes and a tensor info at least 32, which bounds
     * the counts by the file size before anything is allocated. */
    if (n_kv > g->size / 13 || n_tensors > g->size / 32)
        return lq_fail(LQ_ERR_FORMAT, "%s: %llu keys and %llu tensors cannot fit in a %zu-byte "
                       "file (truncated or corrupt header)", g->path, (unsigned long long)n_kv,
                       (unsigned long long)n_tensors, g->size);
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->tensor_names = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensor_names);
    if (!g->kv || !g->tensors || !g->tensor_names)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    for (size_t i = 0; i < g->n_kv; i++) {
        if ((st = parse_kv(g, &c, &g->kv[i], i))) return st;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(g->kv[j].key, g->kv[i].key))
                return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' appears twice", g->path, g->kv[i].key);
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    long ai = lq_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        if (kv->type != LQ_GGUF_U32)
            return lq_fail(LQ_ERR_FORMAT, "%s: general.alignment has type %s, expected u32", g->path,
                           lq_gguf_value_type_name(kv->type));
        uint32_t a = load_u32(kv->value);
        if (a == 0 || (a & (a - 1)) != 0)
            return lq_fail(LQ_ERR_FORMAT, "%s: general.alignment %u is not a power of two", g->path, a);
        g->alignment = a;
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        if ((st = parse_tensor_info(g, &c, i))) return st;
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = (uint64_t)c.pos + pad;
    if (g->data_offset > g->size) {
        /* only a file without tensor data may end inside the padding */
        if (g->n_tensors > 0)
            return lq_fail(LQ_ERR_FORMAT, "%s: truncated GGUF file: data section would start at "
                           "byte %llu, past the end of the %zu-byte file", g->path,
                           (unsigned long long)g->data_offset, g->size);
        g->data_offset = g->size;
    }
    return check_tensor_layout(g);
}

lq_status lq_gguf_open(const char *path, lq_gguf **out) {
    *out = NULL;
    lq_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = copy_str((const uint8_t *)path, strlen(path)))) {
        free(g);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        lq_gguf_close(g);
        return lq_fail(e == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        lq_gguf_close(g);
        return lq_fail(LQ_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        lq_gguf_close(g);
        return lq_fail(LQ_ERR_RANGE, "%s: file too large to map", path);
    }
    /* an empty file cannot be mapped; parse reports it as truncated */
    if (sb.st_size > 0) {
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        int map_errno = errno;
        if (map == MAP_FAILED) {
            close(fd);
            lq_gguf_close(g);
            return lq_fail(LQ_ERR_IO, "%s: mmap failed: %s", path, strerror(map_errno));
        }
        g->map = map;
        g->size = (size_t)sb.st_size;
        g->mapped = 1;
    }
    close(fd);
    lq_status st = parse(g);
    if (st) {
        lq_gguf_close(g);
        return st;
    }
    *out = g;
    return LQ_OK;
}

lq_status lq_gguf_open_memory(const void *bytes, size_t len, const char *name, lq_gguf **out) {
    *out = NULL;
    if ((!bytes && len) || !name)
        return lq_fail(LQ_ERR_ARG, "lq_gguf_open_memory: NULL bytes or name");
    lq_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = copy_str((const uint8_t *)name, strlen(name)))) {
        free(g);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", name);
    }
    g->map = bytes;
    g->size = len;
    lq_status st = parse(g);
    if (st) {
        lq_gguf_close(g);
        return st;
    }
    *out = g;
    return LQ_OK;
}

void lq_gguf_close(lq_gguf *g) {
    if (!g) return;
    if (g->mapped) munmap((void *)g->map, g->size);
    for (size_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        free(g->kv[i].strs);   /* one block with the lengths and bytes */
    }
    free(g->kv);
    for (size_t i = 0; g->tensor_names && i < g->n_tensors; i++) free(g->tensor_names[i]);
    free(g->tensor_names);
    free(g->tensors);
    free(g->path);
    free(g);
}

const char *lq_gguf_path(const lq_gguf *g) { return g->path; }
uint32_t lq_gguf_version(const lq_gguf *g) { return g->version; }
size_t lq_gguf_alignment(const lq_gguf *g) { return g->alignment; }
uint64_t lq_gguf_data_offset(const lq_gguf *g) { return g->data_offset; }
size_t lq_gguf_kv_count(const lq_gguf *g) { return g->n_kv; }
const char *lq_gguf_kv_key(const lq_gguf *g, size_t i) { return i < g->n_kv ? g->kv[i].key : NULL; }
lq_gguf_value_type lq_gguf_kv_type(const lq_gguf *g, size_t i) { return g->kv[i].type; }
lq_gguf_value_type lq_gguf_kv_array_type(const lq_gguf *g, size_t i) { return g->kv[i].array_type; }
size_t lq_gguf_kv_array_len(const lq_gguf *g, size_t i) { return (size_t)g->kv[i].array_len; }
size_t lq_gguf_tensor_count(const lq_gguf *g) { return g->n_tensors; }

const lq_gguf_tensor *lq_gguf_tensor_at(const lq_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

long lq_gguf_find_key(const lq_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return (long)i;
    return -1;
}

const lq_gguf_tensor *lq_gguf_find_tensor(const lq_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* Reads a scalar integer of type t at p; 0 when t is not an integer type. */
static int scalar_int(lq_gguf_value_type t, const uint8_t *p, int64_t *out, int *overflow) {
    *overflow = 0;
    switch (t) {
    case LQ_GGUF_U8: case LQ_GGUF_BOOL: *out = p[0]; return 1;
    case LQ_GGUF_I8: *out = (int8_t)p[0]; return 1;
    case LQ_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case LQ_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case LQ_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case LQ_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case LQ_GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 1; }
    case LQ_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) *overflow = 1;
        *out = (int64_t)(v & (uint64_t)INT64_MAX);
        return 1;
    }
    default: return 0;
    }
}

static int scalar_float(lq_gguf_value_type t, const uint8_t *p, double *out) {
    if (t == LQ_GGUF_F32) { float v; memcpy(&v, p, 4); *out = v; return 1; }
    if (t == LQ_GGUF_F64) { double v; memcpy(&v, p, 8); *out = v; return 1; }
    int64_t i;
    int overflow;
    if (t != LQ_GGUF_BOOL && scalar_int(t, p, &i, &overflow) && !overflow) {
        *out = (double)i;
        return 1;
    }
    return 0;
}

static lq_status find_kv(const lq_gguf *g, const char *key, const gguf_kv **kv) {
    long i = lq_gguf_find_key(g, key);
    if (i < 0) return lq_fail(LQ_ERR_NOT_FOUND, "%s: no key '%s'", g->path, key);
    *kv = &g->kv[i];
    return LQ_OK;
}

static lq_status wrong_type(const lq_gguf *g, const gguf_kv *kv, const char *expected) {
    if (kv->type == LQ_GGUF_ARRAY)
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' is an array of %s, expected %s", g->path,
                       kv->key, lq_gguf_value_type_name(kv->array_type), expected);
    return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->path, kv->key,
                   lq_gguf_value_type_name(kv->type), expected);
}

lq_status lq_gguf_get_string(const lq_gguf *g, const char *key, const char **out, size_t *len) {
    const gguf_kv *kv = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    if (kv->type != LQ_GGUF_STRING) return wrong_type(g, kv, "string");
    *out = kv->str;
    if (len) *len = kv->str_len;
    return LQ_OK;
}

lq_status lq_gguf_get_int(const lq_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    int overflow;
    if (kv->type == LQ_GGUF_ARRAY || !scalar_int(kv->type, kv->value, out, &overflow))
        return wrong_type(g, kv, "an integer");
    if (overflow)
        return lq_fail(LQ_ERR_RANGE, "%s: key '%s': value does not fit in int64", g->path, key);
    return LQ_OK;
}

lq_status lq_gguf_get_float(const lq_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    if (kv->type == LQ_GGUF_ARRAY || !scalar_float(kv->type, kv->value, out))
        return wrong_type(g, kv, "a number");
    return LQ_OK;
}

lq_status lq_gguf_get_bool(const lq_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    if (kv->type != LQ_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = kv->value[0] != 0;
    return LQ_OK;
}

lq_status lq_gguf_get_int_or(const lq_gguf *g, const char *key, int64_t dflt, int64_t *out) {
    if (lq_gguf_find_key(g, key) < 0) {
        *out = dflt;
        return LQ_OK;
    }
    return lq_gguf_get_int(g, key, out);
}

lq_status lq_gguf_get_float_or(const lq_gguf *g, const char *key, double dflt, double *out) {
    if (lq_gguf_find_key(g, key) < 0) {
        *out = dflt;
        return LQ_OK;
    }
    return lq_gguf_get_float(g, key, out);
}

lq_status lq_gguf_get_bool_or(const lq_gguf *g, const char *key, int dflt, int *out) {
    if (lq_gguf_find_key(g, key) < 0) {
        *out = dflt;
        return LQ_OK;
    }
    return lq_gguf_get_bool(g, key, out);
}

lq_status lq_gguf_get_string_array(const lq_gguf *g, const char *key, const char *const **out,
                                   const size_t **lens, size_t *n) {
    const gguf_kv *kv = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    if (kv->type != LQ_GGUF_ARRAY || kv->array_type != LQ_GGUF_STRING)
        return wrong_type(g, kv, "an array of strings");
    *out = (const char *const *)kv->strs;
    if (lens) *lens = kv->str_lens;
    *n = (size_t)kv->array_len;
    return LQ_OK;
}

lq_status lq_gguf_get_int_array(const lq_gguf *g, const char *key, int64_t **out, size_t *n) {
    const gguf_kv *kv = NULL;
    *out = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    size_t es = value_size(kv->array_type);
    /* the element type is probed on zeros, not on the first element: an empty array at the
     * end of the file has none, and reading it ran past the mapping */
    static const uint8_t zeros[8];
    int64_t probe;
    int overflow;
    if (kv->type != LQ_GGUF_ARRAY || es == 0 || !scalar_int(kv->array_type, zeros, &probe, &overflow))
        return wrong_type(g, kv, "an array of integers");
    size_t len = (size_t)kv->array_len;
    int64_t *v = malloc((len ? len : 1) * sizeof *v);
    if (!v) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for '%s'", g->path, key);
    for (size_t i = 0; i < len; i++) {
        scalar_int(kv->array_type, kv->value + i * es, &v[i], &overflow);
        if (overflow) {
            free(v);
            return lq_fail(LQ_ERR_RANGE, "%s: key '%s': element %zu does not fit in int64", g->path,
                           key, i);
        }
    }
    *out = v;
    *n = len;
    return LQ_OK;
}

lq_status lq_gguf_get_float_array(const lq_gguf *g, const char *key, float **out, size_t *n) {
    const gguf_kv *kv = NULL;
    *out = NULL;
    lq_status st = find_kv(g, key, &kv);
    if (st) return st;
    size_t es = value_size(kv->array_type);
    if (kv->type != LQ_GGUF_ARRAY || es == 0 || kv->array_type == LQ_GGUF_BOOL)
        return wrong_type(g, kv, "an array of numbers");
    size_t len = (size_t)kv->array_len;
    float *v = malloc((len ? len : 1) * sizeof *v);
    if (!v) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for '%s'", g->path, key);
    for (size_t i = 0; i < len; i++) {
        double x = 0;
        if (!scalar_float(kv->array_type, kv->value + i * es, &x)) {
            free(v);
            return lq_fail(LQ_ERR_RANGE, "%s: key '%s': element %zu is out of range", g->path,
                           key, i);
        }
        v[i] = (float)x;
    }
    *out = v;
    *n = len;
    return LQ_OK;
}

lq_status lq_gguf_tensor_to_f32(const lq_gguf *g, const lq_gguf_tensor *t, float *dst) {
    if (!lq_ggml_type_dequantizable(t->type))
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (%u), which liftquant "
                       "cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
                       "Q8_0, Q2_K..Q6_K, Q8_K)", g->path, t->name, lq_ggml_type_name(t->type),
                       (unsigned)t->type);
    lq_status st = lq_ggml_dequantize(t->type, t->data, dst, t->n_elements);
    if (st) return lq_fail_context(st, "%s: tensor '%s'", g->path, t->name);
    return LQ_OK;
}

/* ---- GGUF → lq_model -------------------------------------------------------------------- */

/* An integer hyperparameter "{arch}.{suffix}", 1..INT_MAX; absent → dflt, or an error when
 * dflt < 0. */
static lq_status arch_int(const lq_gguf *g, const char *arch, const char *suffix, int64_t dflt,
                          int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    lq_status st = dflt < 0 ? lq_gguf_get_int(g, key, &v) : lq_gguf_get_int_or(g, key, dflt, &v);
    if (st) return st;
    if (v < 1 || v > INT_MAX)
        return lq_fail(LQ_ERR_RANGE, "%s: %s = %lld is out of range", g->path, key, (long long)v);
    *out = (int)v;
    return LQ_OK;
}

static lq_status arch_float(const lq_gguf *g, const char *arch, const char *suffix, double dflt,
                            int required, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v;
    lq_status st = required ? lq_gguf_get_float(g, key, &v) : lq_gguf_get_float_or(g, key, dflt, &v);
    if (st) return st;
    if (!isfinite(v) || v <= 0)
        return lq_fail(LQ_ERR_RANGE, "%s: %s = %g must be positive and finite", g->path, key, v);
    *out = (float)v;
    return LQ_OK;
}

/* Loads tensor `name`, which must have ggml shape [n0, n1] (n1 = 1 for a vector), as f32
 * into a buffer owned by the model. A missing tensor is an error unless optional (then *out
 * stays NULL). */
static lq_status load_tensor(const lq_gguf *g, lq_model *m, const char *name, int64_t n0,
                             int64_t n1, int optional, float **out) {
    *out = NULL;
    const lq_gguf_tensor *t = lq_gguf_find_tensor(g, name);
    if (!t) {
        if (optional) return LQ_OK;
        return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor '%s'", g->path, name);
    }
    /* Compare all four dimensions, so a writer that stores a vector as [n, 1] still loads. */
    if (t->ne[0] != n0 || t->ne[1] != n1 || t->ne[2] != 1 || t->ne[3] != 1) {
        if (n1 == 1)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld] "
                           "(ggml order), expected [%lld]", g->path, name, (long long)t->ne[0],
                           (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                           (long long)n0);
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld] (ggml "
                       "order), expected [%lld, %lld] (= %lld x %lld row-major)", g->path, name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)n0, (long long)n1, (long long)n1,
                       (long long)n0);
    }
    float *buf = lq_model_alloc(m, t->n_elements);
    if (!buf)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for tensor '%s' (%zu floats)", g->path,
                       name, t->n_elements);
    lq_status st = lq_gguf_tensor_to_f32(g, t, buf);
    if (st) return st;
    *out = buf;
    return LQ_OK;
}

static lq_status load_linear(const lq_gguf *g, lq_model *m, const char *name, int in, int out,
                             int with_bias, lq_linear *lin) {
    char bias_name[256];
    lin->in_features = in;
    lin->out_features = out;
    lin->forward = NULL;
    lin->impl = NULL;
    lin->free_impl = NULL;
    char weight_name[256];
    snprintf(weight_name, sizeof weight_name, "%s.weight", name);
    lq_status st = load_tensor(g, m, weight_name, in, out, 0, &lin->weight);
    if (st || !with_bias) return st;
    snprintf(bias_name, sizeof bias_name, "%s.bias", name);
    return load_tensor(g, m, bias_name, out, 1, 0, &lin->bias);
}

/* llama.cpp's converter stores Llama 3 "llama3" rope scaling as a tensor of per-frequency
 * divisors (rope_freqs.weight) instead of metadata. Our config carries the parameters, so
 * recover them: the largest divisor is the factor, and the standard low/high frequency
 * factors and original context are confirmed by recomputing every divisor. */
static void llama3_rope_divisors(double theta, int rope_dim, double factor, double low,
                                 double high, double orig, float *out) {
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < rope_dim / 2; i++) {
        double freq = 1.0 / pow(theta, (2.0 * i) / rope_dim);
        double wavelen = 2 * pi / freq;
        if (wavelen < orig / high) out[i] = 1.0f;
        else if (wavelen > orig / low) out[i] = (float)factor;
        else {
            double smooth = (orig / wavelen - low) / (high - low);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

static lq_status load_rope_scaling(const lq_gguf *g, const char *arch, lq_model_config *cfg) {
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (lq_gguf_find_key(g, key) >= 0) {
        const char *type;
        lq_status st = lq_gguf_get_string(g, key, &type, NULL);
        if (st) return st;
        if (strcmp(type, "none") != 0)
            return lq_fail(LQ_ERR_UNSUPPORTED, "%s: %s = '%s' is not supported (only Llama 3 "
                           "scaling via rope_freqs.weight)", g->path, key, type);
    }
    const lq_gguf_tensor *t = lq_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return LQ_OK;
    if (t->ne[0] != cfg->rope_dim / 2 || t->n_elements != (size_t)(cfg->rope_dim / 2))
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' has %lld elements, expected "
                       "rope_dim/2 = %d", g->path, (long long)t->ne[0], cfg->rope_dim / 2);
    int n = cfg->rope_dim / 2;
    float *have = malloc(2 * (size_t)n * sizeof *have);
    if (!have) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
    float *want = have + n;
    lq_status st = lq_gguf_tensor_to_f32(g, t, have);
    if (st) {
        free(have);
        return st;
    }
    float factor = 1.0f;
    for (int i = 0; i < n; i++)
        if (have[i] > factor) factor = have[i];
    if (factor == 1.0f) {   /* all ones: no scaling */
        free(have);
        return LQ_OK;
    }
    static const double candidates[][3] = {{1, 4, 8192}, {1, 4, 4096}, {1, 4, 2048}, {1, 2, 8192}};
    for (size_t c = 0; c < sizeof candidates / sizeof candidates[0]; c++) {
        llama3_rope_divisors(cfg->rope_theta, cfg->rope_dim, factor, candidates[c][0],
                             candidates[c][1], candidates[c][2], want);
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = fabsf(have[i] - want[i]) <= 1e-4f * fabsf(want[i]);
        if (ok) {
            cfg->rope_scale_factor = factor;
            cfg->rope_low_freq_factor = (float)candidates[c][0];
            cfg->rope_high_freq_factor = (float)candidates[c][1];
            cfg->rope_original_max_pos = (int)candidates[c][2];
            free(have);
            return LQ_OK;
        }
    }
    free(have);
    return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight' does not match Llama 3 "
                   "rope scaling with factor %g and the standard frequency factors", g->path,
                   (double)factor);
}

/* A token id key: absent → dflt; present → must index the vocabulary. */
static lq_status token_id(const lq_gguf *g, const char *key, int n_tokens, int dflt, int *out) {
    int64_t v;
    lq_status st = lq_gguf_get_int_or(g, key, dflt, &v);
    if (st) return st;
    if (v != dflt && (v < 0 || v >= n_tokens))
        return lq_fail(LQ_ERR_RANGE, "%s: %s = %lld is outside the vocabulary of %d tokens",
                       g->path, key, (long long)v, n_tokens);
    *out = dflt >= n_tokens ? -1 : (int)v;
    return LQ_OK;
}

static lq_status load_tokenizer(const lq_gguf *g, int vocab_size, lq_tokenizer **out) {
    *out = NULL;
    if (lq_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
        LQ_WARN("%s: no tokenizer.ggml.model; loading the model without a tokenizer", g->path);
        return LQ_OK;
    }
    const char *model;
    lq_status st = lq_gguf_get_string(g, "tokenizer.ggml.model", &model, NULL);
    if (st) return st;
    lq_tokenizer_spec spec;
    memset(&spec, 0, sizeof spec);
    int spm = !strcmp(model, "llama");
    if (spm) spec.kind = LQ_TOKENIZER_SPM;
    else if (!strcmp(model, "gpt2")) spec.kind = LQ_TOKENIZER_GPT2;
    else
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model = '%s' is not supported "
                       "(only 'llama' and 'gpt2')", g->path, model);
    const char *const *tokens;
    size_t n_tokens;
    if ((st = lq_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, NULL, &n_tokens)))
        return st;
    if (n_tokens == 0 || n_tokens > (size_t)vocab_size)
        return lq_fail(LQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %zu tokens, the embedding "
                       "table %d rows", g->path, n_tokens, vocab_size);
    spec.n_tokens = (int)n_tokens;
    spec.tokens = tokens;
    float *scores = NULL;
    int64_t *types64 = NULL;
    int *types = NULL;
    if (lq_gguf_find_key(g, "tokenizer.ggml.scores") >= 0) {
        size_t n;
        if ((st = lq_gguf_get_float_array(g, "tokenizer.ggml.scores", &scores, &n))) goto done;
        if (n != n_tokens) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: tokenizer.ggml.scores has %zu entries for %zu tokens",
                         g->path, n, n_tokens);
            goto done;
        }
        spec.scores = scores;
    }
    if (lq_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        size_t n;
        if ((st = lq_gguf_get_int_array(g, "tokenizer.ggml.token_type", &types64, &n))) goto done;
        if (n != n_tokens) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %zu entries for %zu "
                         "tokens", g->path, n, n_tokens);
            goto done;
        }
        if (!(types = malloc(n * sizeof *types))) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", g->path);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            if (types64[i] < 0 || types64[i] > LQ_TOKEN_BYTE) {
                st = lq_fail(LQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%zu] = %lld is not a "
                             "token type", g->path, i, (long long)types64[i]);
                goto done;
            }
            types[i] = (int)types64[i];
        }
        spec.token_types = types;
    }
    if (!spm) {
        size_t n_merges;
        if ((st = lq_gguf_get_string_array(g, "tokenizer.ggml.merges", &spec.merges, NULL, &n_merges)))
            goto done;
        if (n_merges > INT_MAX) {
            st = lq_fail(LQ_ERR_RANGE, "%s: too many merges", g->path);
            goto done;
        }
        spec.n_merges = (int)n_merges;
        spec.pre = "default";
        if (lq_gguf_find_key(g, "tokenizer.ggml.pre") >= 0 &&
            (st = lq_gguf_get_string(g, "tokenizer.ggml.pre", &spec.pre, NULL)))
            goto done;
        if (!lq_bpe_pre_supported(spec.pre)) {
            st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre = '%s' is not supported "
                         "(supported: %s)", g->path, spec.pre, lq_bpe_pre_list());
            goto done;
        }
    }
    /* llama.cpp's defaults: SentencePiece vocabularies put <unk>, <s>, </s> at 0, 1, 2. */
    int nt = (int)n_tokens;
    if ((st = token_id(g, "tokenizer.ggml.bos_token_id", nt, spm ? 1 : -1, &spec.bos_id)) ||
        (st = token_id(g, "tokenizer.ggml.eos_token_id", nt, spm ? 2 : -1, &spec.eos_id)) ||
        (st = token_id(g, "tokenizer.ggml.unknown_token_id", nt, spm ? 0 : -1, &spec.unk_id)))
        goto done;
    if ((st = lq_gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", spm, &spec.add_bos)) ||
        (st = lq_gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", spm, &spec.add_space_prefix)))
        goto done;
    if ((st = lq_tokenizer_new(&spec, out))) st = lq_fail_context(st, "%s: tokenizer", g->path);
done:
    free(scores);
    free(types64);
    free(types);
    return st;
}

static lq_status load_config(const lq_gguf *g, const char *arch, lq_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->arch, sizeof cfg->arch, "%s", arch);
    lq_status st;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    int64_t experts = 0;
    if ((st = lq_gguf_get_int_or(g, key, 0, &experts))) return st;
    if (experts > 0)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: %s = %lld: mixture-of-experts models are not "
                       "supported", g->path, key, (long long)experts);
    if ((st = arch_int(g, arch, "embedding_length", -1, &cfg->dim)) ||
        (st = arch_int(g, arch, "feed_forward_length", -1, &cfg->hidden_dim)) ||
        (st = arch_int(g, arch, "block_count", -1, &cfg->n_layers)) ||
        (st = arch_int(g, arch, "attention.head_count", -1, &cfg->n_heads)) ||
        (st = arch_int(g, arch, "attention.head_count_kv", cfg->n_heads, &cfg->n_kv_heads)) ||
        (st = arch_int(g, arch, "context_length", -1, &cfg->max_seq_len)))
        return st;
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    if (lq_gguf_find_key(g, key) < 0 && cfg->dim % cfg->n_heads != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d "
                       "and %s is absent", g->path, cfg->dim, cfg->n_heads, key);
    if ((st = arch_int(g, arch, "attention.key_length", cfg->dim / cfg->n_heads, &cfg->head_dim)))
        return st;
    int value_length;
    if ((st = arch_int(g, arch, "attention.value_length", cfg->head_dim, &value_length))) return st;
    if (value_length != cfg->head_dim)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: %s.attention.value_length %d differs from "
                       "key_length %d", g->path, arch, value_length, cfg->head_dim);
    if ((st = arch_int(g, arch, "rope.dimension_count", cfg->head_dim, &cfg->rope_dim)) ||
        (st = arch_float(g, arch, "rope.freq_base", 10000.0, 0, &cfg->rope_theta)) ||
        (st = arch_float(g, arch, "attention.layer_norm_rms_epsilon", 0, 1, &cfg->norm_eps)))
        return st;
    /* llama.cpp's converter permutes Llama's q/k rows so that RoPE rotates adjacent pairs
     * (LLAMA_ROPE_TYPE_NORM); Qwen2/Qwen3 are converted unpermuted and use NEOX rope, which
     * rotates dimension i with i + rope_dim/2. */
    cfg->rope_style = (!strcmp(arch, "qwen2") || !strcmp(arch, "qwen3")) ? LQ_ROPE_HALF
                                                                          : LQ_ROPE_INTERLEAVED;
    cfg->has_qkv_bias = !strcmp(arch, "qwen2") || lq_gguf_find_tensor(g, "blk.0.attn_q.bias");
    cfg->has_qk_norm = !strcmp(arch, "qwen3") || lq_gguf_find_tensor(g, "blk.0.attn_q_norm.weight");
    const lq_gguf_tensor *emb = lq_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor 'token_embd.weight'", g->path);
    if (emb->ne[1] < 1 || emb->ne[1] > INT_MAX)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor 'token_embd.weight' has %lld rows", g->path,
                       (long long)emb->ne[1]);
    cfg->vocab_size = (int)emb->ne[1];
    cfg->tied_embeddings = lq_gguf_find_tensor(g, "output.weight") == NULL;
    return load_rope_scaling(g, arch, cfg);
}

static lq_status load_weights(const lq_gguf *g, lq_model *m) {
    const lq_model_config *c = &m->cfg;
    int q_out = c->n_heads * c->head_dim, kv_out = c->n_kv_heads * c->head_dim;
    lq_status st = load_tensor(g, m, "token_embd.weight", c->dim, c->vocab_size, 0, &m->tok_embeddings);
    if (st) return st;
    for (int l = 0; l < c->n_layers; l++) {
        lq_layer *L = &m->layers[l];
        char name[128];
#define LAYER_NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
        if ((st = load_tensor(g, m, LAYER_NAME("attn_norm.weight"), c->dim, 1, 0, &L->attn_norm)) ||
            (st = load_tensor(g, m, LAYER_NAME("ffn_norm.weight"), c->dim, 1, 0, &L->ffn_norm)) ||
            (st = load_linear(g, m, LAYER_NAME("attn_q"), c->dim, q_out, c->has_qkv_bias, &L->wq)) ||
            (st = load_linear(g, m, LAYER_NAME("attn_k"), c->dim, kv_out, c->has_qkv_bias, &L->wk)) ||
            (st = load_linear(g, m, LAYER_NAME("attn_v"), c->dim, kv_out, c->has_qkv_bias, &L->wv)) ||
            (st = load_linear(g, m, LAYER_NAME("attn_output"), q_out, c->dim, 0, &L->wo)) ||
            (st = load_linear(g, m, LAYER_NAME("ffn_gate"), c->dim, c->hidden_dim, 0, &L->w_gate)) ||
            (st = load_linear(g, m, LAYER_NAME("ffn_up"), c->dim, c->hidden_dim, 0, &L->w_up)) ||
            (st = load_linear(g, m, LAYER_NAME("ffn_down"), c->hidden_dim, c->dim, 0, &L->w_down)))
            return st;
        if (c->has_qk_norm &&
            ((st = load_tensor(g, m, LAYER_NAME("attn_q_norm.weight"), c->head_dim, 1, 0, &L->q_norm)) ||
             (st = load_tensor(g, m, LAYER_NAME("attn_k_norm.weight"), c->head_dim, 1, 0, &L->k_norm))))
            return st;
#undef LAYER_NAME
    }
    if ((st = load_tensor(g, m, "output_norm.weight", c->dim, 1, 0, &m->final_norm))) return st;
    m->lm_head.in_features = c->dim;
    m->lm_head.out_features = c->vocab_size;
    if (c->tied_embeddings) {
        m->lm_head.weight = m->tok_embeddings;
        return LQ_OK;
    }
    return load_tensor(g, m, "output.weight", c->dim, c->vocab_size, 0, &m->lm_head.weight);
}

lq_status lq_gguf_load_model(const char *path, lq_model **out) {
    *out = NULL;
    lq_gguf *g;
    lq_status st = lq_gguf_open(path, &g);
    if (st) return st;
    lq_model *m = NULL;
    const char *arch;
    lq_model_config cfg;
    if ((st = lq_gguf_get_string(g, "general.architecture", &arch, NULL))) goto fail;
    /* llama.cpp writes Mistral and SmolLM checkpoints as "llama"; "mistral" is accepted for
     * files from other writers that name it. */
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "mistral") != 0 && strcmp(arch, "qwen2") != 0 &&
        strcmp(arch, "qwen3") != 0) {
        st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: unknown architecture '%s' (supported: llama, "
                     "mistral, qwen2, qwen3)", path, arch);
        goto fail;
    }
    if ((st = load_config(g, arch, &cfg))) goto fail;
    if ((st = lq_model_config_validate(&cfg, path))) goto fail;
    if ((st = lq_model_new(&cfg, &m))) goto fail;
    snprintf(m->source, sizeof m->source, "%s", path);
    snprintf(m->format, sizeof m->format, "gguf");
    if ((st = load_weights(g, m))) goto fail;
    if ((st = load_tokenizer(g, cfg.vocab_size, &m->tokenizer))) goto fail;
    lq_gguf_close(g);
    *out = m;
    return LQ_OK;
fail:
    lq_model_free(m);
    lq_gguf_close(g);
    return st;
}
