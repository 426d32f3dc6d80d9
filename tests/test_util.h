/* Helpers shared by the cmocka test programs: one scratch directory per program (created by
 * the group setup, removed with everything in it by the group teardown) and seeded random
 * data. Define LQ_TEST_NAME before including; include after cmocka.h. */
#ifndef LQ_TEST_UTIL_H
#define LQ_TEST_UTIL_H

#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_base.h"

#ifndef LQ_TEST_NAME
#error "define LQ_TEST_NAME (the scratch directory's prefix) before including test_util.h"
#endif

#define LQ_TEST_UNUSED __attribute__((unused))

static char temp_dir[PATH_MAX];

/* cmocka group setup: $TMPDIR/lq_test_<name>.XXXXXX */
static LQ_TEST_UNUSED int create_temp_dir(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(temp_dir, sizeof temp_dir, "%s/lq_test_%s.XXXXXX", base && base[0] ? base : "/tmp",
             LQ_TEST_NAME);
    return mkdtemp(temp_dir) ? 0 : -1;
}

static int lq_test_remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info, (void)flag, (void)ftw;
    return remove(path);
}

/* cmocka group teardown: the directory and everything under it */
static LQ_TEST_UNUSED int remove_temp_dir(void **state) {
    (void)state;
    return nftw(temp_dir, lq_test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* NAME inside the scratch directory; eight rotating buffers so one call's arguments can hold
 * several paths at once. */
static LQ_TEST_UNUSED const char *temp_path(const char *name) {
    static char buffers[8][PATH_MAX + 64];
    static int next;
    char *buffer = buffers[next++ % 8];
    int n = snprintf(buffer, sizeof buffers[0], "%s/%s", temp_dir, name);
    assert_true(n > 0 && (size_t)n < sizeof buffers[0]);
    return buffer;
}

/* d × D entries N(0, 1/D): the scale of a trained mapping matrix */
static LQ_TEST_UNUSED float *random_matrix(int d, int D, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    float *M = malloc(sizeof(float) * d * D);
    for (int i = 0; i < d * D; i++) M[i] = (float)(lq_rng_normal(&r) / sqrt((double)D));
    return M;
}

/* n blocks of d i.i.d. N(0, 1) values */
static LQ_TEST_UNUSED float *random_blocks(int d, size_t n, uint64_t seed) {
    lq_rng r;
    lq_rng_seed(&r, seed);
    float *w = malloc(sizeof(float) * d * n);
    for (size_t i = 0; i < d * n; i++) w[i] = (float)lq_rng_normal(&r);
    return w;
}

/* Asserts that a call failed with `code` and left a message containing `needle`. */
static LQ_TEST_UNUSED void expect_error(lq_status s, lq_status code, const char *needle) {
    assert_int_equal(s, code);
    const char *msg = lq_last_error();
    if (!msg || !strstr(msg, needle)) {
        fprintf(stderr, "error message \"%s\" lacks \"%s\"\n", msg ? msg : "(null)", needle);
        fail();
    }
}

/* Writes len bytes to path (a test fixture), failing the test on any error. */
static LQ_TEST_UNUSED void write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len) assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* UTF-8 of GPT-2's byte-level character for byte b, written independently of common/bpe.c so
 * the tests check it rather than repeat it: printable bytes stand for themselves, the others
 * map in order to U+0100 onwards. */
static LQ_TEST_UNUSED void byte_char(int b, char *out) {
#define LQ_GPT2_PRINTABLE(x) (((x) >= 33 && (x) <= 126) || ((x) >= 161 && (x) <= 172) || ((x) >= 174 && (x) <= 255))
    int cp = b;
    if (!LQ_GPT2_PRINTABLE(b)) {
        int n = 0;
        for (int x = 0; x < b; x++) n += !LQ_GPT2_PRINTABLE(x);
        cp = 256 + n;
    }
#undef LQ_GPT2_PRINTABLE
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

#endif
