/* dtype tests: names and sizes, f16/bf16 conversions checked exhaustively against
 * independent references, bulk conversion.
 *
 * References, each computed differently from the library's integer bit manipulation:
 *  - exact double arithmetic (ldexp/frexp, comparing the distances to the two neighbouring
 *    candidates) for binary16 and bfloat16 in both directions;
 *  - additionally for binary16, the compiler's _Float16 where it has one (gcc ≥ 12 on x86-64
 *    converts through libgcc's soft-float routines). __FLT16_MAX__ is defined exactly when
 *    the type exists, so the test still builds with compilers that lack it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lq_common.h"

#define RANDOM_SAMPLES 4000000

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

static int f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

/* binary16 value by its definition: (-1)^s * mantissa * 2^(exponent - 25), with the
 * implicit leading 1 (1024) for normal numbers. */
static float reference_f16_to_f32(uint16_t h) {
    int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double magnitude;
    if (exponent == 0x1f) magnitude = mantissa ? NAN : INFINITY;
    else if (exponent == 0) magnitude = ldexp(mantissa, -24);
    else magnitude = ldexp(1024 + mantissa, exponent - 25);
    return (float)((h & 0x8000) ? -magnitude : magnitude);
}

/* Round |f| to a multiple of the binary16 spacing of its binade, nearest, ties to even,
 * deciding with exact double distances; then encode the multiple. NaN is not handled. */
static uint16_t reference_f32_to_f16(float f) {
    uint16_t sign = (float_bits(f) >> 31) ? 0x8000u : 0;
    double magnitude = fabs((double)f);
    if (isinf(magnitude)) return sign | 0x7c00u;
    int binade;   /* magnitude in [2^binade, 2^(binade+1)) */
    frexp(magnitude, &binade);
    binade -= 1;
    int subnormal = magnitude < 0x1p-14;
    double spacing = subnormal ? 0x1p-24 : ldexp(1.0, binade - 10);
    double below = floor(magnitude / spacing), above = below + 1;    /* in units of spacing */
    double distance_below = magnitude - below * spacing, distance_above = above * spacing - magnitude;
    double units = distance_below < distance_above ? below
                 : distance_below > distance_above ? above
                 : (fmod(below, 2.0) == 0 ? below : above);
    if (subnormal) return sign | (uint16_t)units;                       /* 1024 = smallest normal */
    if (binade > 15) return sign | 0x7c00u;
    uint32_t bits = ((uint32_t)(binade + 15) << 10) + (uint32_t)units - 1024u; /* 2048 carries */
    return sign | (uint16_t)(bits >= 0x7c00u ? 0x7c00u : bits);
}

#ifdef __FLT16_MAX__
#define HAVE_FLOAT16 1
static float compiler_f16_to_f32(uint16_t h) {
    _Float16 x;
    memcpy(&x, &h, sizeof h);
    return (float)x;
}

static uint16_t compiler_f32_to_f16(float f) {
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, sizeof h);
    return h;
}
#else
#define HAVE_FLOAT16 0
#endif

/* Round to nearest bf16, ties to even, decided by comparing exact distances in double. */
static uint16_t reference_f32_to_bf16(float f) {
    uint32_t bits = float_bits(f);
    uint16_t truncated = (uint16_t)(bits >> 16);          /* the candidate toward zero */
    double magnitude = fabs((double)f);
    double below = fabs((double)bits_float(bits & 0xffff0000u));
    int biased_exponent = (int)((bits >> 23) & 0xffu);
    /* spacing of bf16 values (8 significant bits) in this binade; subnormals share 2^-133 */
    double spacing = ldexp(1.0, (biased_exponent ? biased_exponent : 1) - 127 - 7);
    double above = below + spacing;    /* 2^128 past the largest finite: the overflow point */
    double distance_below = magnitude - below, distance_above = above - magnitude;
    if (distance_below < distance_above) return truncated;
    if (distance_below > distance_above) return (uint16_t)(truncated + 1);
    return (truncated & 1u) ? (uint16_t)(truncated + 1) : truncated;
}

/* ---- names and sizes ------------------------------------------------------------------- */
static void test_dtype_names_and_sizes(void **state) {
    (void)state;
    static const struct {
        lq_dtype type;
        const char *name;
        size_t size;
    } expected[] = {
        {LQ_DTYPE_F64, "F64", 8}, {LQ_DTYPE_F32, "F32", 4}, {LQ_DTYPE_F16, "F16", 2},
        {LQ_DTYPE_BF16, "BF16", 2}, {LQ_DTYPE_I64, "I64", 8}, {LQ_DTYPE_I32, "I32", 4},
        {LQ_DTYPE_I16, "I16", 2}, {LQ_DTYPE_I8, "I8", 1}, {LQ_DTYPE_U64, "U64", 8},
        {LQ_DTYPE_U32, "U32", 4}, {LQ_DTYPE_U16, "U16", 2}, {LQ_DTYPE_U8, "U8", 1},
        {LQ_DTYPE_BOOL, "BOOL", 1},
    };
    assert_int_equal(sizeof expected / sizeof expected[0], LQ_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        assert_string_equal(lq_dtype_name(expected[i].type), expected[i].name);
        assert_int_equal(lq_dtype_size(expected[i].type), expected[i].size);
        lq_dtype parsed = LQ_DTYPE_COUNT;
        assert_int_equal(lq_dtype_from_name(expected[i].name, &parsed), LQ_OK);
        assert_int_equal(parsed, expected[i].type);
    }
    assert_int_equal(lq_dtype_size(LQ_DTYPE_COUNT), 0);
}

static void test_dtype_unknown_names(void **state) {
    (void)state;
    const char *unknown[] = {"F8_E4M3", "f32", "", "F32 ", "FLOAT"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        lq_dtype parsed = LQ_DTYPE_F32;
        lq_clear_error();
        assert_int_equal(lq_dtype_from_name(unknown[i], &parsed), LQ_ERR_UNSUPPORTED);
        char expected[64];
        snprintf(expected, sizeof expected, "unknown dtype '%s'", unknown[i]);
        assert_string_equal(lq_last_error(), expected);
        assert_int_equal(parsed, LQ_DTYPE_F32);   /* untouched on failure */
    }
}

/* ---- binary16 -------------------------------------------------------------------------- */
static void test_f16_every_pattern(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xffffu; h++) {
        uint16_t half = (uint16_t)h;
        float ours = lq_f16_to_f32(half), reference = reference_f16_to_f32(half);
        uint16_t back = lq_f32_to_f16(ours);
        if (f16_is_nan(half)) {
            if (!isnan(ours) || !isnan(reference) || !f16_is_nan(back)
#if HAVE_FLOAT16
                || !isnan(compiler_f16_to_f32(half))
#endif
            )
                fail_msg("f16 NaN 0x%04x did not stay NaN", h);
            assert_int_equal(float_bits(ours) >> 31, h >> 15);          /* sign kept */
            assert_true(float_bits(ours) & 0x00400000u);                 /* quiet */
            assert_int_equal(back, half | 0x200u);                       /* payload kept */
            continue;
        }
        if (float_bits(ours) != float_bits(reference))
            fail_msg("f16 0x%04x -> f32 0x%08x, reference 0x%08x", h, float_bits(ours),
                     float_bits(reference));
#if HAVE_FLOAT16
        if (float_bits(ours) != float_bits(compiler_f16_to_f32(half)))
            fail_msg("f16 0x%04x -> f32 0x%08x, _Float16 gives 0x%08x", h, float_bits(ours),
                     float_bits(compiler_f16_to_f32(half)));
#endif
        if (back != half) fail_msg("f16 0x%04x -> f32 -> f16 0x%04x", h, back);
    }
}

static void check_f32_to_f16(float f) {
    uint16_t ours = lq_f32_to_f16(f);
    if (isnan(f)) {
        if (!f16_is_nan(ours) || (ours >> 15) != (float_bits(f) >> 31))
            fail_msg("f32 NaN 0x%08x -> f16 0x%04x", float_bits(f), ours);
        return;
    }
    uint16_t reference = reference_f32_to_f16(f);
    if (ours != reference)
        fail_msg("f32 0x%08x (%.9g) -> f16 0x%04x, reference 0x%04x", float_bits(f), (double)f,
                 ours, reference);
#if HAVE_FLOAT16
    if (ours != compiler_f32_to_f16(f))
        fail_msg("f32 0x%08x (%.9g) -> f16 0x%04x, _Float16 gives 0x%04x", float_bits(f),
                 (double)f, ours, compiler_f32_to_f16(f));
#endif
}

/* Midpoints between adjacent binary16 values are exact in f32 and are where ties-to-even
 * matters; the f32 neighbours of each midpoint check that the tie is detected exactly. */
static void test_f16_rounding_at_midpoints(void **state) {
    (void)state;
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
        for (uint32_t k = 0; k < 0x7c00u; k++) {
            uint16_t low = (uint16_t)(sign | k), high = (uint16_t)(sign | (k + 1));
            float a = lq_f16_to_f32(low);
            /* the step above the largest finite value goes to Inf: use 2^16 as its end */
            float b = k + 1 == 0x7c00u ? (sign ? -65536.0f : 65536.0f) : lq_f16_to_f32(high);
            float midpoint = (a + b) / 2;
            assert_true((double)midpoint == ((double)a + (double)b) / 2);
            uint16_t even = (k & 1u) ? high : low;
            if (lq_f32_to_f16(midpoint) != even)
                fail_msg("midpoint of f16 0x%04x and 0x%04x rounded to 0x%04x", low, high,
                         lq_f32_to_f16(midpoint));
            check_f32_to_f16(midpoint);
            check_f32_to_f16(nextafterf(midpoint, INFINITY));
            check_f32_to_f16(nextafterf(midpoint, -INFINITY));
        }
    }
}

static void test_f16_special_values(void **state) {
    (void)state;
    assert_int_equal(lq_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(lq_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(lq_f32_to_f16(65504.0f), 0x7bff);                   /* largest finite */
    assert_int_equal(lq_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(lq_f32_to_f16(65520.0f), 0x7c00);                   /* tie -> Inf */
    assert_int_equal(lq_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(lq_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(lq_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(lq_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(lq_f32_to_f16(0x1p-24f), 0x0001);                   /* smallest subnormal */
    assert_int_equal(lq_f32_to_f16(0x1p-25f), 0x0000);                   /* tie -> even 0 */
    assert_int_equal(lq_f32_to_f16(0x1.8p-24f), 0x0002);                 /* tie -> even 2 */
    assert_int_equal(lq_f32_to_f16(0x1.000002p-25f), 0x0001);
    assert_int_equal(lq_f32_to_f16(0x1.ff8p-15f), 0x03ff);               /* largest subnormal */
    assert_int_equal(lq_f32_to_f16(0x1.ffcp-15f), 0x0400);               /* tie -> even normal */
    assert_int_equal(lq_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(lq_f32_to_f16(0x1p-149f), 0x0000);                  /* f32 subnormal */
    assert_int_equal(lq_f32_to_f16(-0x1p-149f), 0x8000);
    assert_true(lq_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(lq_f16_to_f32(0x03ff) == 0x1.ff8p-15f);
    assert_true(lq_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(lq_f16_to_f32(0xfc00)) && lq_f16_to_f32(0xfc00) < 0);
    /* a signalling NaN comes out quiet with its sign */
    assert_int_equal(float_bits(lq_f16_to_f32(0xfc01)), 0xffc02000u);
    assert_int_equal(lq_f32_to_f16(bits_float(0xff800001u)), 0xfe00);
    assert_int_equal(lq_f32_to_f16(bits_float(0x7fc00000u)), 0x7e00);
}

static void test_f16_random_values(void **state) {
    (void)state;
    lq_rng rng;
    lq_rng_seed(&rng, 20240611);
    for (int i = 0; i < RANDOM_SAMPLES; i++) {
        uint64_t r = lq_rng_u64(&rng);
        uint32_t bits = (uint32_t)r;
        if (i & 1) {
            /* half the samples anywhere, half with exponents in and around the f16 range
             * (2^-27 .. 2^17), where the interesting rounding happens */
            uint32_t exponent = 127u - 27u + (uint32_t)((r >> 32) % 45u);
            bits = (bits & 0x807fffffu) | (exponent << 23);
        }
        check_f32_to_f16(bits_float(bits));
    }
}

/* ---- bfloat16 -------------------------------------------------------------------------- */
static void test_bf16_every_pattern(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xffffu; h++) {
        uint16_t half = (uint16_t)h;
        float value = lq_bf16_to_f32(half);
        uint16_t back = lq_f32_to_bf16(value);
        if (bf16_is_nan(half)) {
            assert_true(isnan(value));
            assert_int_equal(float_bits(value), ((h << 16) | 0x00400000u));  /* quiet, signed */
            assert_int_equal(back, half | 0x40u);
            continue;
        }
        if (float_bits(value) != h << 16) fail_msg("bf16 0x%04x -> f32 0x%08x", h, float_bits(value));
        if (back != half) fail_msg("bf16 0x%04x -> f32 -> bf16 0x%04x", h, back);
    }
}

static void check_f32_to_bf16(float f) {
    uint16_t ours = lq_f32_to_bf16(f);
    if (isnan(f)) {
        if (!bf16_is_nan(ours) || (ours >> 15) != (float_bits(f) >> 31))
            fail_msg("f32 NaN 0x%08x -> bf16 0x%04x", float_bits(f), ours);
        return;
    }
    uint16_t reference = reference_f32_to_bf16(f);
    if (ours != reference)
        fail_msg("f32 0x%08x (%.9g) -> bf16 0x%04x, reference 0x%04x", float_bits(f), (double)f,
                 ours, reference);
}

static void test_bf16_rounding_at_midpoints(void **state) {
    (void)state;
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
        for (uint32_t k = 0; k < 0x7f80u; k++) {
            /* the f32 halfway between bf16 k and k+1 has bit 15 set and nothing below */
            float midpoint = bits_float(((sign | k) << 16) | 0x8000u);
            uint16_t even = (uint16_t)(sign | ((k & 1u) ? k + 1 : k));
            if (lq_f32_to_bf16(midpoint) != even)
                fail_msg("midpoint above bf16 0x%04x rounded to 0x%04x", sign | k,
                         lq_f32_to_bf16(midpoint));
            check_f32_to_bf16(midpoint);
            check_f32_to_bf16(nextafterf(midpoint, INFINITY));
            check_f32_to_bf16(nextafterf(midpoint, -INFINITY));
        }
    }
    assert_int_equal(lq_f32_to_bf16(bits_float(0x7f7fffffu)), 0x7f80);   /* overflow -> Inf */
    assert_int_equal(lq_f32_to_bf16(bits_float(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(lq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(lq_f32_to_bf16(bits_float(0x00008000u)), 0x0000);   /* subnormal tie */
    assert_int_equal(lq_f32_to_bf16(bits_float(0x00018000u)), 0x0002);
}

static void test_bf16_random_values(void **state) {
    (void)state;
    lq_rng rng;
    lq_rng_seed(&rng, 7);
    for (int i = 0; i < RANDOM_SAMPLES; i++) check_f32_to_bf16(bits_float((uint32_t)lq_rng_u64(&rng)));
}

/* ---- bulk conversion ------------------------------------------------------------------- */
static void test_convert_float_dtypes(void **state) {
    (void)state;
    const float values[] = {0.0f, -1.5f, 3.140625f, 65504.0f, 0x1p-24f, -7.0f, 1e-3f};
    enum { N = sizeof values / sizeof values[0] };
    const lq_dtype types[] = {LQ_DTYPE_F64, LQ_DTYPE_F32, LQ_DTYPE_F16, LQ_DTYPE_BF16};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        /* one byte of offset: mapped tensor data need not be aligned for its type */
        unsigned char storage[N * 8 + 1];
        void *encoded = storage + 1;
        float decoded[N];
        assert_int_equal(lq_convert_from_f32(types[t], values, encoded, N), LQ_OK);
        assert_int_equal(lq_convert_to_f32(types[t], encoded, decoded, N), LQ_OK);
        for (int i = 0; i < N; i++) {
            float expected = values[i];
            if (types[t] == LQ_DTYPE_F16) expected = lq_f16_to_f32(lq_f32_to_f16(values[i]));
            if (types[t] == LQ_DTYPE_BF16) expected = lq_bf16_to_f32(lq_f32_to_bf16(values[i]));
            if (float_bits(decoded[i]) != float_bits(expected))
                fail_msg("%s: element %d: %.9g became %.9g", lq_dtype_name(types[t]), i,
                         (double)values[i], (double)decoded[i]);
        }
    }
    /* element layout: F16 of 1.0 is bytes 00 3c (little-endian) */
    unsigned char half_bytes[2];
    const float one = 1.0f;
    assert_int_equal(lq_convert_from_f32(LQ_DTYPE_F16, &one, half_bytes, 1), LQ_OK);
    assert_int_equal(half_bytes[0], 0x00);
    assert_int_equal(half_bytes[1], 0x3c);
    /* n = 0 accepts NULL buffers */
    assert_int_equal(lq_convert_to_f32(LQ_DTYPE_F16, NULL, NULL, 0), LQ_OK);
}

static void test_convert_rejects_non_float_dtypes(void **state) {
    (void)state;
    const lq_dtype types[] = {LQ_DTYPE_I64, LQ_DTYPE_I32, LQ_DTYPE_I16, LQ_DTYPE_I8,
                              LQ_DTYPE_U64, LQ_DTYPE_U32, LQ_DTYPE_U16, LQ_DTYPE_U8,
                              LQ_DTYPE_BOOL};
    float f[2] = {1, 2};
    unsigned char raw[16] = {0};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        lq_clear_error();
        assert_int_equal(lq_convert_to_f32(types[t], raw, f, 2), LQ_ERR_UNSUPPORTED);
        assert_non_null(strstr(lq_last_error(), lq_dtype_name(types[t])));
        lq_clear_error();
        assert_int_equal(lq_convert_from_f32(types[t], f, raw, 2), LQ_ERR_UNSUPPORTED);
        assert_non_null(strstr(lq_last_error(), lq_dtype_name(types[t])));
    }
}

int main(void) {
    if (!HAVE_FLOAT16)
        print_message("note: this compiler has no _Float16; binary16 is checked against the "
                      "double-arithmetic reference only\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names_and_sizes),
        cmocka_unit_test(test_dtype_unknown_names),
        cmocka_unit_test(test_f16_every_pattern),
        cmocka_unit_test(test_f16_rounding_at_midpoints),
        cmocka_unit_test(test_f16_special_values),
        cmocka_unit_test(test_f16_random_values),
        cmocka_unit_test(test_bf16_every_pattern),
        cmocka_unit_test(test_bf16_rounding_at_midpoints),
        cmocka_unit_test(test_bf16_random_values),
        cmocka_unit_test(test_convert_float_dtypes),
        cmocka_unit_test(test_convert_rejects_non_float_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
