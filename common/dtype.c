/* dtypes: sizes, safetensors names, and the f16/bf16 <-> f32 conversions.
 *
 * The conversions are written with integer bit manipulation rather than _Float16 or F16C
 * intrinsics so that the library behaves identically with every compiler and CPU, and so the
 * exact rounding rule (nearest, ties to even) is visible in the code. Tensor data read from
 * a mapped file need not be aligned for its element type, so every element is loaded and
 * stored through memcpy (which compilers turn into a plain unaligned move). */
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

/* ---- bit casts ------------------------------------------------------------------------- */
static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#define F32_SIGN 0x80000000u
#define F32_EXP_MASK 0x7f800000u
#define F32_MANT_MASK 0x007fffffu
#define F32_QUIET_BIT 0x00400000u

/* Shifts `value` right by `shift` (1..31) rounding to nearest, ties to even. */
static uint32_t shift_right_round_even(uint32_t value, unsigned shift) {
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (dropped > half || (dropped == half && (kept & 1u))) kept++;
    return kept;
}

/* ---- binary16 -------------------------------------------------------------------------- */
/* binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
/* lq_f16_to_f32 lives in kernels/half.c (lq_base.h): the f16 GEMM widens with it. */

uint16_t lq_f32_to_f16(float f) {
    uint32_t bits = float_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & ~F32_SIGN;

    if (magnitude > F32_EXP_MASK) /* NaN: quiet, sign and top payload bits kept */
        return (uint16_t)(sign | 0x7e00u | ((magnitude & F32_MANT_MASK) >> 13));
    if (magnitude == F32_EXP_MASK) return (uint16_t)(sign | 0x7c00u);

    int32_t unbiased = (int32_t)(magnitude >> 23) - 127;
    uint32_t significand = (magnitude & F32_MANT_MASK) | 0x800000u; /* 24 bits with the 1 */

    if (unbiased > 15) return (uint16_t)(sign | 0x7c00u); /* ≥ 2^16: beyond every f16 */
    if (unbiased >= -14) {
        /* Normal range. Rounding may carry out of the mantissa into the exponent, which is
         * exactly right: 0x3ff + 1 becomes the next binade, and the largest binade overflows
         * into 0x7c00 = Inf (values ≥ 65520 round up to Inf). */
        uint32_t biased_and_mantissa = ((uint32_t)(unbiased + 15) << 10) |
                                       ((magnitude & F32_MANT_MASK) >> 13);
        uint32_t dropped = magnitude & 0x1fffu;
        if (dropped > 0x1000u || (dropped == 0x1000u && (biased_and_mantissa & 1u)))
            biased_and_mantissa++;
        return (uint16_t)(sign | biased_and_mantissa);
    }
    /* Subnormal range, in units of 2^-24: value = significand * 2^(unbiased + 1). Below
     * 2^-25 (half the smallest subnormal) everything rounds to zero; f32 subnormals land
     * here too since their unbiased exponent reads -127. A result of 0x400 is the smallest
     * normal, whose bit pattern is exactly right. */
    if (unbiased < -25) return sign;
    return (uint16_t)(sign | shift_right_round_even(significand, (unsigned)(-unbiased - 1)));
}

/* ---- bfloat16: the top half of an f32 ------------------------------------------------- */
float lq_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    if ((bits & ~F32_SIGN) > F32_EXP_MASK) bits |= F32_QUIET_BIT;
    return bits_float(bits);
}

uint16_t lq_f32_to_bf16(float f) {
    uint32_t bits = float_bits(f);
    if ((bits & ~F32_SIGN) > F32_EXP_MASK) /* NaN: truncate payload, force quiet */
        return (uint16_t)((bits | F32_QUIET_BIT) >> 16);
    /* Adding 0x7fff (+1 when the kept part is odd) and truncating rounds to nearest, ties to
     * even. Carries into the exponent are correct, including max-finite -> Inf, and the
     * exponent range is the same as f32 so subnormals need no special case. */
    uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding_bias) >> 16);
}

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
