/* dtypes: sizes, safetensors names, and bulk conversion to and from f32 (the scalar f16/bf16
 * conversions are kernels/half.c's). Tensor data read from a mapped file need not be aligned
 * for its element type, so every element is loaded and stored through memcpy (which compilers
 * turn into a plain unaligned move). */
#include "lq_common.h"

#include <string.h>

/* One table keeps size and name in step with the enum; indexed by lq_dtype. */
static const struct {
    const char *name;
    size_t size;
} dtype_table[LQ_DTYPE_COUNT] = {
    [LQ_DTYPE_F64] = {"F64", 8},  [LQ_DTYPE_F32] = {"F32", 4},   [LQ_DTYPE_F16] = {"F16", 2},
    [LQ_DTYPE_BF16] = {"BF16", 2}, [LQ_DTYPE_I64] = {"I64", 8},  [LQ_DTYPE_I32] = {"I32", 4},
    [LQ_DTYPE_I16] = {"I16", 2},  [LQ_DTYPE_I8] = {"I8", 1},     [LQ_DTYPE_U64] = {"U64", 8},
    [LQ_DTYPE_U32] = {"U32", 4},  [LQ_DTYPE_U16] = {"U16", 2},   [LQ_DTYPE_U8] = {"U8", 1},
    [LQ_DTYPE_BOOL] = {"BOOL", 1},
};

static int dtype_is_valid(lq_dtype t) { return (unsigned)t < (unsigned)LQ_DTYPE_COUNT; }

size_t lq_dtype_size(lq_dtype t) { return dtype_is_valid(t) ? dtype_table[t].size : 0; }

const char *lq_dtype_name(lq_dtype t) { return dtype_is_valid(t) ? dtype_table[t].name : "?"; }

lq_status lq_dtype_from_name(const char *name, lq_dtype *out) {
    if (name == NULL) return lq_fail(LQ_ERR_ARG, "dtype name is NULL");
    for (int t = 0; t < LQ_DTYPE_COUNT; t++) {
        if (strcmp(name, dtype_table[t].name) == 0) {
            *out = (lq_dtype)t;
            return LQ_OK;
        }
    }
    return lq_fail(LQ_ERR_UNSUPPORTED, "unknown dtype '%s'", name);
}

/* The scalar conversions (lq_f16_to_f32 and the rest) are kernels/half.c's, re-exported
 * through lq_base.h: the f16-weight GEMM widens with the same function. */

/* ---- bulk conversion ------------------------------------------------------------------- */
lq_status lq_convert_to_f32(lq_dtype src_type, const void *src, float *dst, size_t n) {
    const unsigned char *in = src;
    if (n > 0 && (src == NULL || dst == NULL))
        return lq_fail(LQ_ERR_ARG, "convert %s to F32: NULL buffer", lq_dtype_name(src_type));
    switch (src_type) {
    case LQ_DTYPE_F32:
        memmove(dst, src, n * sizeof(float));
        return LQ_OK;
    case LQ_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, in + i * sizeof v, sizeof v);
            dst[i] = (float)v;
        }
        return LQ_OK;
    case LQ_DTYPE_F16:
    case LQ_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, in + i * sizeof v, sizeof v);
            dst[i] = src_type == LQ_DTYPE_F16 ? lq_f16_to_f32(v) : lq_bf16_to_f32(v);
        }
        return LQ_OK;
    default:
        return lq_fail(LQ_ERR_UNSUPPORTED,
                       "cannot convert %s to F32: only F64, F32, F16 and BF16 are float dtypes",
                       lq_dtype_name(src_type));
    }
}

lq_status lq_convert_from_f32(lq_dtype dst_type, const float *src, void *dst, size_t n) {
    unsigned char *out = dst;
    if (n > 0 && (src == NULL || dst == NULL))
        return lq_fail(LQ_ERR_ARG, "convert F32 to %s: NULL buffer", lq_dtype_name(dst_type));
    switch (dst_type) {
    case LQ_DTYPE_F32:
        memmove(dst, src, n * sizeof(float));
        return LQ_OK;
    case LQ_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double v = (double)src[i];
            memcpy(out + i * sizeof v, &v, sizeof v);
        }
        return LQ_OK;
    case LQ_DTYPE_F16:
    case LQ_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v = dst_type == LQ_DTYPE_F16 ? lq_f32_to_f16(src[i]) : lq_f32_to_bf16(src[i]);
            memcpy(out + i * sizeof v, &v, sizeof v);
        }
        return LQ_OK;
    default:
        return lq_fail(LQ_ERR_UNSUPPORTED,
                       "cannot convert F32 to %s: only F64, F32, F16 and BF16 are float dtypes",
                       lq_dtype_name(dst_type));
    }
}
