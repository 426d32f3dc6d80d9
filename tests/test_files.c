/* common's directory helper, lq_make_dirs (mkdir -p): every branch, including the failures
 * lq-calibrate and lqd report to users — a component that is a regular file, a directory that
 * cannot be made, a path too long or empty — each naming the path at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "lq_common.h"
#define LQ_TEST_NAME "files"
#include "test_util.h"

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_make_dirs_creates_and_is_idempotent(void **state) {
    (void)state;
    assert_int_equal(lq_make_dirs(temp_path("a/b/c")), LQ_OK);
    assert_true(is_dir(temp_path("a/b/c")));
    assert_int_equal(lq_make_dirs(temp_path("a/b/c")), LQ_OK); /* exists: fine */
    assert_int_equal(lq_make_dirs(temp_path("a//b/d/")), LQ_OK); /* doubled and trailing '/' */
    assert_true(is_dir(temp_path("a/b/d")));
}

static void test_make_dirs_failures_name_the_component(void **state) {
    (void)state;
    FILE *f = fopen(temp_path("plain"), "w");
    assert_non_null(f);
    fclose(f);
    /* a regular file where a directory must go, at the end or in the middle */
    assert_int_equal(lq_make_dirs(temp_path("plain")), LQ_ERR_IO);
    assert_non_null(strstr(lq_last_error(), "plain: not a directory"));
    assert_int_equal(lq_make_dirs(temp_path("plain/x/y")), LQ_ERR_IO);
    assert_non_null(strstr(lq_last_error(), "plain: not a directory"));
    /* a place no one may create in, root included (sysfs refuses mkdir) */
    assert_int_equal(lq_make_dirs("/sys/lq_test_not_allowed/x"), LQ_ERR_IO);
    assert_non_null(strstr(lq_last_error(), "/sys/lq_test_not_allowed: cannot create directory"));

    char long_path[5000];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(lq_make_dirs(long_path), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "path too long"));
    assert_int_equal(lq_make_dirs(""), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "empty directory path"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_dirs_creates_and_is_idempotent),
        cmocka_unit_test(test_make_dirs_failures_name_the_component),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
