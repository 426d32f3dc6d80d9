/* Flag values for the command-line mains (tools/ and coordinator/'s lq-calibrate): one parser,
 * one message shape ("TOOL: --flag: 'value' is not an integer in [lo, hi]", "TOOL: --flag needs
 * a value"), shared by every main. Header-only and printing to stderr: mains only. */
#ifndef LQ_CLI_ARGS_H
#define LQ_CLI_ARGS_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Each returns 1 and sets *out, or prints the problem naming tool and flag and returns 0. */
static inline int lq_arg_string(const char *tool, const char *flag, const char *v, const char **out) {
    if (!v) {
        fprintf(stderr, "%s: %s needs a value\n", tool, flag);
        return 0;
    }
    *out = v;
    return 1;
}

static inline int lq_arg_long(const char *tool, const char *flag, const char *v, long lo, long hi,
                              long *out) {
    if (!v) {
        fprintf(stderr, "%s: %s needs a value\n", tool, flag);
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not an integer in [%ld, %ld]\n", tool, flag, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

static inline int lq_arg_double(const char *tool, const char *flag, const char *v, double lo,
                                double hi, double *out) {
    if (!v) {
        fprintf(stderr, "%s: %s needs a value\n", tool, flag);
        return 0;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || errno || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a number in [%g, %g]\n", tool, flag, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

#endif
