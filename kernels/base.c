/* Status codes, thread-local error messages, clock, CPU features, threads and RNG (see
 * lq_base.h). */
#include "lq_base.h"

#include <cpuid.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char lq_error_message[1024];

const char *lq_status_name(lq_status s) {
    switch (s) {
    case LQ_OK: return "ok";
    case LQ_ERR_ARG: return "bad argument";
    case LQ_ERR_IO: return "I/O error";
    case LQ_ERR_FORMAT: return "malformed input";
    case LQ_ERR_NOMEM: return "out of memory";
    case LQ_ERR_RANGE: return "out of range";
    case LQ_ERR_UNSUPPORTED: return "unsupported";
    case LQ_ERR_NOT_FOUND: return "not found";
    case LQ_ERR_NUMERIC: return "numerical failure";
    case LQ_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

lq_status lq_fail(lq_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lq_error_message, sizeof lq_error_message, fmt, ap);
    va_end(ap);
    return code;
}

lq_status lq_fail_context(lq_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof lq_error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, lq_error_message, sizeof old);
    /* The old message is appended by hand, cut to what fits: a long message is truncated on
     * purpose, and gcc -Werror=format-truncation rejects doing this with snprintf. The prefix
     * (< 512 bytes) plus ": " always fits. */
    snprintf(lq_error_message, sizeof lq_error_message, "%s: ", prefix);
    size_t used = strlen(lq_error_message);
    size_t old_len = strnlen(old, sizeof old - 1);
    if (old_len > sizeof lq_error_message - 1 - used) old_len = sizeof lq_error_message - 1 - used;
    memcpy(lq_error_message + used, old, old_len);
    lq_error_message[used + old_len] = 0;
    return code;
}

const char *lq_last_error(void) { return lq_error_message[0] ? lq_error_message : "no error"; }
void lq_clear_error(void) { lq_error_message[0] = 0; }

double lq_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- RNG: xoshiro256** seeded through splitmix64, so every seed gives a good state ---- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lq_rng_seed(lq_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0;
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lq_rng_u64(lq_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double lq_rng_uniform(lq_rng *r) { return (double)(lq_rng_u64(r) >> 11) * 0x1.0p-53; }

double lq_rng_normal(lq_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1, u2;
    do u1 = lq_rng_uniform(r); while (u1 <= 0.0);
    u2 = lq_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * M_PI * u2);
    r->has_spare = 1;
    return rad * cos(2.0 * M_PI * u2);
}


int lq_cpu_has_avx2(int f16c) {
    /* bit 0: AVX2+FMA, bit 1: also F16C; one int written once, so a racing first call from
     * two threads can only store the same value */
    static int probed = -1;
    if (probed < 0) {
        __builtin_cpu_init();
        const int avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        /* F16C through cpuid: clang 14's __builtin_cpu_supports does not know "f16c" */
        unsigned eax, ebx, ecx, edx;
        const int with_f16c = avx2_fma && __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
        probed = avx2_fma | with_f16c << 1;
    }
    return f16c ? (probed >> 1) & 1 : probed & 1;
}

int lq_default_threads(void) {
    const char *env = getenv("LQ_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        /* an unusable value falls back to the default rather than failing deep in a GEMM */
        if (*end == '\0' && n >= 1 && n <= 1024) return (int)n;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    return cores < 2 ? (int)cores : 2;
}
