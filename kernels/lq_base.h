/* liftquant's base: status codes, error messages, clock and RNG.
 *
 * It lives in kernels/, the lowest room (DESIGN.md §2: kernels/ uses nothing above it, and
 * common/ uses kernels/), because the kernels report errors the same way as everything else;
 * common/lq_common.h re-exports it, so other rooms include that.
 *
 * Error convention (SQLite style): every function that can fail returns an lq_status. On
 * failure it has called lq_fail(), which stores a message naming the file, tensor or flag at
 * fault in a thread-local buffer; lq_last_error() reads it back. Only mains exit. */
#ifndef LQ_BASE_H
#define LQ_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LQ_OK = 0,
    LQ_ERR_ARG,          /* bad argument or flag */
    LQ_ERR_IO,           /* open/read/write/mmap/rename failed */
    LQ_ERR_FORMAT,       /* malformed file contents */
    LQ_ERR_NOMEM,        /* allocation failed */
    LQ_ERR_RANGE,        /* value out of range, offsets out of bounds */
    LQ_ERR_UNSUPPORTED,  /* valid but not supported (dtype, architecture, config) */
    LQ_ERR_NOT_FOUND,    /* missing tensor, key or file */
    LQ_ERR_NUMERIC,      /* non-finite values, singular matrix */
    LQ_ERR_INTERNAL
} lq_status;

const char *lq_status_name(lq_status s);

/* Records a printf-style message for the current thread and returns `code`, so failure paths
 * read `return lq_fail(LQ_ERR_FORMAT, "%s: header is not JSON", path);`. */
lq_status lq_fail(lq_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends context to the current message ("loading lattice x: " + old message). */
lq_status lq_fail_context(lq_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *lq_last_error(void);
void lq_clear_error(void);

/* Monotonic wall clock in seconds. */
double lq_seconds(void);

/* Threads for compute: LQ_THREADS when it is a number in 1..1024, else min(cores, 2) — two
 * because that is the target machine and more oversubscribes shared runners. */
int lq_default_threads(void);

/* IEEE binary16 and bfloat16 <-> binary32 (kernels/half.c). Narrowing rounds to nearest, ties
 * to even; NaN stays NaN (quiet), ±Inf and overflow map to ±Inf, subnormals are exact both
 * ways. */
float lq_f16_to_f32(uint16_t h);
uint16_t lq_f32_to_f16(float f);
float lq_bf16_to_f32(uint16_t h);
uint16_t lq_f32_to_bf16(float f);

/* 1 when this CPU runs the project's AVX2 kernels: AVX2 and FMA, and F16C when f16c is set
 * (probed once). LQ_NO_SIMD is the callers' to read: some force an instance regardless. */
int lq_cpu_has_avx2(int f16c);

/* Deterministic RNG (xoshiro256**, splitmix64 seeding) with Gaussian draws. */
typedef struct { uint64_t s[4]; int has_spare; double spare; } lq_rng;
void lq_rng_seed(lq_rng *r, uint64_t seed);
uint64_t lq_rng_u64(lq_rng *r);
double lq_rng_uniform(lq_rng *r);          /* [0, 1) */
double lq_rng_normal(lq_rng *r);           /* N(0, 1), Box–Muller */

#endif
