/* Shared by the fuzz targets in tests/fuzz/: each defines LLVMFuzzerTestOneInput, which
 * libFuzzer drives in the LQ_FUZZ build and replay_main.c drives over the committed corpus and
 * regression inputs in every build. */
#ifndef LQ_FUZZ_COMMON_H
#define LQ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lq_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each target sets this to whether the parser accepted its last input, so the replay can
 * insist that the committed valid seeds (files named valid-*) still parse through the same
 * entry point the fuzzer drives. */
extern int lq_fuzz_accepted;

/* A broken invariant aborts, which libFuzzer records as a crash with its input. */
#define LQ_FUZZ_CHECK(cond)                                                                    \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s (last error: %s)\n", __FILE__,   \
                    __LINE__, #cond, lq_last_error());                                         \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* A rejected input must say why: every failure path calls lq_fail. */
#define LQ_FUZZ_REJECTED(status) LQ_FUZZ_CHECK((status) != LQ_OK && lq_last_error()[0] != '\0')

/* Called first for every input: no verdict and no message yet, and no warnings (an ignored
 * sliding_window, a model without a tokenizer), which would flood the fuzzer's output. */
static inline void lq_fuzz_begin(void) {
    lq_log_set_level(LQ_LOG_ERROR);
    lq_clear_error();
    lq_fuzz_accepted = 0;
}

#endif
