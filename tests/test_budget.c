/* Budget tests (coordinator/budget.c): size parsing and formatting, the KV-cache formula, and
 * the multiple-choice knapsack solver.
 *
 * The solver is checked against references computed differently from it:
 *  - brute force over every assignment of small random instances (many ties on purpose) for
 *    the exact optimum, and the fewest bytes among optimal assignments, when g = 1;
 *  - the Lagrangian dual max_λ≥0 Σ_i min_j (e_ij + λ b_ij) − λ C, evaluated at every
 *    breakpoint, for the LP bound (LP duality makes the two equal; the solver uses the
 *    convex-hull greedy instead);
 *  - a model-sized instance that forces g > 1, where the gap to the bound must stay small. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LQ_TEST_NAME "budget"
#include "test_util.h"

#include "lq_coord.h"

/* ---- sizes ------------------------------------------------------------------------------ */

static uint64_t parsed(const char *text) {
    uint64_t v = 12345;
    lq_status s = lq_size_parse(text, "--budget", &v);
    if (s != LQ_OK) fprintf(stderr, "'%s': %s\n", text, lq_last_error());
    assert_int_equal(s, LQ_OK);
    return v;
}

static void test_size_parse_units(void **state) {
    (void)state;
    assert_int_equal(parsed("100"), 100);
    assert_int_equal(parsed("0"), 0);
    assert_int_equal(parsed("100B"), 100);
    assert_int_equal(parsed("3KiB"), 3072);
    assert_int_equal(parsed("3MiB"), 3ull << 20);
    assert_int_equal(parsed("24GiB"), 24ull << 30);
    assert_int_equal(parsed("24 GiB"), 24ull << 30);
    assert_int_equal(parsed("24   GiB"), 24ull << 30);
    assert_int_equal(parsed("2TiB"), 2ull << 40);
    assert_int_equal(parsed("3KB"), 3000);
    assert_int_equal(parsed("3MB"), 3000000);
    assert_int_equal(parsed("1.5GB"), 1500000000ull);
    assert_int_equal(parsed("1.5 GB"), 1500000000ull);
    assert_int_equal(parsed("2TB"), 2000000000000ull);
    assert_int_equal(parsed("0.5KiB"), 512);
    assert_int_equal(parsed("512MiB"), 512ull << 20);
    assert_int_equal(parsed("007KB"), 7000);
    /* exact decimal, no binary round trip: 0.1 TB is 10^11 bytes */
    assert_int_equal(parsed("0.1TB"), 100000000000ull);
    assert_int_equal(parsed("0.3GB"), 300000000ull);
    assert_int_equal(parsed("0.0009765625KiB"), 1);
    /* rounded down to whole bytes, however many digits */
    assert_int_equal(parsed("1.9999B"), 1);
    assert_int_equal(parsed("0.99999999999999999999999999KiB"), 1023);
    assert_int_equal(parsed("1.2345KiB"), 1264);   /* 1264.128 */
    assert_int_equal(parsed("9223372036854775807"), (uint64_t)INT64_MAX);
    /* 8388607 · 2^40 + floor(0.999999 · 2^40) */
    assert_int_equal(parsed("8388607.999999TiB"), (8388607ull << 40) + 1099510528264ull);
}

static void expect_parse_error(const char *text, lq_status code, const char *needle) {
    uint64_t v = 777;
    lq_clear_error();
    lq_status s = lq_size_parse(text, "--budget", &v);
    if (s == LQ_OK) fprintf(stderr, "'%s' was accepted as %" PRIu64 "\n", text, v);
    expect_error(s, code, needle);
    expect_error(s, code, "--budget");
}

static void test_size_parse_rejects(void **state) {
    (void)state;
    expect_parse_error("", LQ_ERR_ARG, "empty");
    expect_parse_error(NULL, LQ_ERR_ARG, "empty");
    expect_parse_error("-1", LQ_ERR_ARG, "negative");
    expect_parse_error("-1GiB", LQ_ERR_ARG, "negative");
    expect_parse_error("GiB", LQ_ERR_ARG, "digit");
    expect_parse_error("+1", LQ_ERR_ARG, "digit");
    expect_parse_error(" 1", LQ_ERR_ARG, "digit");
    expect_parse_error(".5GB", LQ_ERR_ARG, "digit");
    expect_parse_error("1.GB", LQ_ERR_ARG, "decimal point");
    expect_parse_error("12XB", LQ_ERR_ARG, "'XB'");
    expect_parse_error("12XB", LQ_ERR_ARG, "KiB");
    expect_parse_error("12 gib", LQ_ERR_ARG, "'gib'");
    expect_parse_error("12kb", LQ_ERR_ARG, "'kb'");
    expect_parse_error("12GiBs", LQ_ERR_ARG, "'GiBs'");
    expect_parse_error("12 GiB ", LQ_ERR_ARG, "'GiB '");
    expect_parse_error("1.5.5GB", LQ_ERR_ARG, "'.5GB'");
    expect_parse_error("1,5GB", LQ_ERR_ARG, "',5GB'");
    expect_parse_error("1e3", LQ_ERR_ARG, "exponent");
    expect_parse_error("1E9", LQ_ERR_ARG, "exponent");
    expect_parse_error("1.5e-3GB", LQ_ERR_ARG, "exponent");
    expect_parse_error("9223372036854775808", LQ_ERR_RANGE, "too large");
    expect_parse_error("18446744073709551616", LQ_ERR_RANGE, "too large");
    expect_parse_error("99999999999999999999999999", LQ_ERR_RANGE, "too large");
    expect_parse_error("8388608TiB", LQ_ERR_RANGE, "too large");          /* 2^63 */
    expect_parse_error("9223372036854775807.5KB", LQ_ERR_RANGE, "too large");
    expect_parse_error("9223372036854775.808KB", LQ_ERR_RANGE, "too large");  /* 2^63 */
    assert_int_equal(parsed("9223372036854775.807KB"), (uint64_t)INT64_MAX);

    /* without a flag the message still says what failed */
    uint64_t v;
    lq_clear_error();
    expect_error(lq_size_parse("x", NULL, &v), LQ_ERR_ARG, "size");
}

static void expect_format(uint64_t bytes, const char *want) {
    char text[64];
    lq_size_format(bytes, text, sizeof text);
    if (strcmp(text, want)) fprintf(stderr, "%" PRIu64 " formats as '%s', not '%s'\n", bytes, text, want);
    assert_string_equal(text, want);
}

static void test_size_format(void **state) {
    (void)state;
    expect_format(0, "0 B");
    expect_format(1023, "1023 B");
    expect_format(1024, "1.00 KiB (1024 B)");
    expect_format(10485760, "10.00 MiB (10485760 B)");
    expect_format(24ull << 30, "24.00 GiB (25769803776 B)");
    expect_format(1536ull << 20, "1.50 GiB (1610612736 B)");
    expect_format(3ull << 40, "3.00 TiB (3298534883328 B)");
    expect_format(1ull << 62, "4194304.00 TiB (4611686018427387904 B)");
    /* truncated, never overrun */
    char small[6];
    memset(small, 'x', sizeof small);
    lq_size_format(10485760, small, sizeof small);
    assert_string_equal(small, "10.00");
    /* what it prints parses back to the same number of bytes (the part in parentheses) */
    char text[64];
    lq_size_format(123456789, text, sizeof text);
    assert_non_null(strstr(text, "(123456789 B)"));
}

/* ---- KV cache --------------------------------------------------------------------------- */

static void test_kv_cache_bytes(void **state) {
    (void)state;
    uint64_t b = 0;
    /* SmolLM2-135M: 30 layers, 3 KV heads of 64 */
    assert_int_equal(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "f16", &b), LQ_OK);
    assert_int_equal(b, 2ull * 30 * 3 * 64 * 4096 * 1 * 2);
    assert_int_equal(b, 94371840ull);
    assert_int_equal(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "bf16", &b), LQ_OK);
    assert_int_equal(b, 94371840ull);
    assert_int_equal(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "f32", &b), LQ_OK);
    assert_int_equal(b, 2 * 94371840ull);
    assert_int_equal(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "q8", &b), LQ_OK);
    assert_int_equal(b, 94371840ull / 2);
    assert_int_equal(lq_kv_cache_bytes(30, 3, 64, 4096, 8, "f16", &b), LQ_OK);
    assert_int_equal(b, 8 * 94371840ull);
    /* Llama-3-70B-like: 80 layers, 8 KV heads of 128, 128k context */
    assert_int_equal(lq_kv_cache_bytes(80, 8, 128, 131072, 1, "f16", &b), LQ_OK);
    assert_int_equal(b, 2ull * 80 * 8 * 128 * 131072 * 2);

    expect_error(lq_kv_cache_bytes(30, 3, 64, 0, 1, "f16", &b), LQ_ERR_ARG, "--ctx");
    expect_error(lq_kv_cache_bytes(30, 3, 64, -5, 1, "f16", &b), LQ_ERR_ARG, "--ctx");
    expect_error(lq_kv_cache_bytes(30, 3, 64, 4096, 0, "f16", &b), LQ_ERR_ARG, "--batch");
    expect_error(lq_kv_cache_bytes(30, 3, 64, 4096, -1, "f16", &b), LQ_ERR_ARG, "--batch");
    expect_error(lq_kv_cache_bytes(0, 3, 64, 4096, 1, "f16", &b), LQ_ERR_ARG, "layers");
    expect_error(lq_kv_cache_bytes(30, 0, 64, 4096, 1, "f16", &b), LQ_ERR_ARG, "KV heads");
    expect_error(lq_kv_cache_bytes(30, 3, -64, 4096, 1, "f16", &b), LQ_ERR_ARG, "head_dim");
    expect_error(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "f8", &b), LQ_ERR_ARG, "'f8'");
    expect_error(lq_kv_cache_bytes(30, 3, 64, 4096, 1, "F16", &b), LQ_ERR_ARG,
                 "f16, bf16, f32, q8");
    expect_error(lq_kv_cache_bytes(30, 3, 64, 4096, 1, NULL, &b), LQ_ERR_ARG, "f16, bf16, f32, q8");
    expect_error(lq_kv_cache_bytes(1 << 30, 1 << 30, 1 << 30, 1L << 40, 1, "f32", &b), LQ_ERR_RANGE,
                 "overflows");
    /* just past 2^63: 2 · 2^62 · 1 B */
    expect_error(lq_kv_cache_bytes(1, 1, 1, 1L << 62, 1, "q8", &b), LQ_ERR_RANGE, "overflows");
    assert_int_equal(lq_kv_cache_bytes(1, 1, 1, (1L << 62) - 1, 1, "q8", &b), LQ_OK);
    assert_int_equal(b, (1ull << 63) - 2);
}

/* ---- the solver ---------------------------------------------------------------------------- */

typedef struct {
    int n_items;
    int *n_choices;
    uint64_t **bytes;
    double **error;
    lq_mckp problem;
} instance;

static void instance_alloc(instance *t, int n_items, const int *n_choices) {
    t->n_items = n_items;
    t->n_choices = malloc(sizeof(int) * n_items);
    t->bytes = calloc(n_items, sizeof(uint64_t *));
    t->error = calloc(n_items, sizeof(double *));
    for (int i = 0; i < n_items; i++) {
        t->n_choices[i] = n_choices[i];
        t->bytes[i] = calloc(n_choices[i] > 0 ? n_choices[i] : 1, sizeof(uint64_t));
        t->error[i] = calloc(n_choices[i] > 0 ? n_choices[i] : 1, sizeof(double));
    }
    t->problem = (lq_mckp){n_items, t->n_choices, (const uint64_t *const *)t->bytes,
                           (const double *const *)t->error};
}

static void instance_free(instance *t) {
    for (int i = 0; i < t->n_items; i++) {
        free(t->bytes[i]);
        free(t->error[i]);
    }
    free(t->bytes);
    free(t->error);
    free(t->n_choices);
}

static uint64_t min_bytes(const instance *t) {
    uint64_t sum = 0;
    for (int i = 0; i < t->n_items; i++) {
        uint64_t m = t->bytes[i][0];
        for (int j = 1; j < t->n_choices[i]; j++)
            if (t->bytes[i][j] < m) m = t->bytes[i][j];
        sum += m;
    }
    return sum;
}

/* Checks what holds for every solution: valid choices, feasibility in exact bytes, the reported
 * sums, gap = max(0, objective − bound). */
static void check_solution(const instance *t, uint64_t capacity, const lq_mckp_solution *s) {
    assert_non_null(s->choice);
    uint64_t used = 0;
    double objective = 0;
    for (int i = 0; i < t->n_items; i++) {
        assert_true(s->choice[i] >= 0 && s->choice[i] < t->n_choices[i]);
        used += t->bytes[i][s->choice[i]];
        objective += t->error[i][s->choice[i]];
    }
    assert_true(used <= capacity);
    assert_int_equal(s->used_bytes, used);
    assert_true(s->objective == objective);
    assert_int_equal(s->min_feasible, min_bytes(t));
    assert_true(s->granularity >= 1 && (s->granularity & (s->granularity - 1)) == 0);
    assert_true(s->gap >= 0);
    assert_true(s->gap == (objective > s->lower_bound ? objective - s->lower_bound : 0));
    assert_true(s->lower_bound <= objective + 1e-12 * (1 + objective));
}

/* max over λ ≥ 0 of Σ_i min_j (e_ij + λ b_ij) − λ C. The dual is concave and piecewise linear
 * with breaks where two choices of one item cost the same, so its maximum is at one of those
 * λ or at 0. */
static double lagrangian_bound(const instance *t, uint64_t capacity) {
    double best = -INFINITY;
    for (int i0 = -1; i0 < t->n_items; i0++) {
        int m0 = i0 < 0 ? 1 : t->n_choices[i0];
        for (int a = 0; a < m0; a++)
            for (int b = 0; b < m0; b++) {
                double lambda = 0;
                if (i0 >= 0) {
                    if (t->bytes[i0][b] <= t->bytes[i0][a] || t->error[i0][b] >= t->error[i0][a]) continue;
                    lambda = (t->error[i0][a] - t->error[i0][b]) / (double)(t->bytes[i0][b] - t->bytes[i0][a]);
                }
                double value = -lambda * (double)capacity;
                for (int i = 0; i < t->n_items; i++) {
                    double m = INFINITY;
                    for (int j = 0; j < t->n_choices[i]; j++) {
                        double c = t->error[i][j] + lambda * (double)t->bytes[i][j];
                        if (c < m) m = c;
                    }
                    value += m;
                }
                if (value > best) best = value;
            }
    }
    return best;
}

typedef struct {
    double objective;
    uint64_t bytes;   /* the fewest among assignments with that objective */
} brute_result;

/* Every assignment, errors summed in item order from 0 like the solver's objective, so equal
 * assignments give bit-equal sums. */
static brute_result brute_force(const instance *t, uint64_t capacity) {
    int choice[16] = {0};
    brute_result best = {INFINITY, UINT64_MAX};
    for (;;) {
        uint64_t used = 0;
        double objective = 0;
        for (int i = 0; i < t->n_items; i++) {
            used += t->bytes[i][choice[i]];
            objective += t->error[i][choice[i]];
        }
        if (used <= capacity && (objective < best.objective || (objective == best.objective && used < best.bytes)))
            best = (brute_result){objective, used};
        int i = 0;
        while (i < t->n_items && ++choice[i] == t->n_choices[i]) choice[i++] = 0;
        if (i == t->n_items) break;
    }
    return best;
}

static void random_instance(instance *t, lq_rng *r) {
    int n_items = 1 + (int)(lq_rng_u64(r) % 6), n_choices[16];
    for (int i = 0; i < n_items; i++) n_choices[i] = 1 + (int)(lq_rng_u64(r) % 5);
    instance_alloc(t, n_items, n_choices);
    /* small integer ranges make equal bytes, equal errors and dominated choices common */
    int integral_errors = lq_rng_u64(r) % 2 == 0;
    uint64_t byte_range = 1 + lq_rng_u64(r) % 40;
    for (int i = 0; i < n_items; i++)
        for (int j = 0; j < n_choices[i]; j++) {
            t->bytes[i][j] = lq_rng_u64(r) % byte_range;
            t->error[i][j] = integral_errors ? (double)(lq_rng_u64(r) % 6) : lq_rng_uniform(r) * 10;
        }
}

static void test_solver_matches_brute_force(void **state) {
    (void)state;
    lq_rng r;
    lq_rng_seed(&r, 20240611);
    int solved = 0, infeasible = 0, lp_integral = 0;
    for (int trial = 0; trial < 4000; trial++) {
        instance t;
        random_instance(&t, &r);
        uint64_t max_sum = 0;
        for (int i = 0; i < t.n_items; i++) {
            uint64_t m = 0;
            for (int j = 0; j < t.n_choices[i]; j++)
                if (t.bytes[i][j] > m) m = t.bytes[i][j];
            max_sum += m;
        }
        uint64_t lo = min_bytes(&t), capacity = lq_rng_u64(&r) % (max_sum + 6);
        if (trial % 10 == 0) capacity = lo;   /* the tightest feasible budget */
        lq_mckp_solution s;
        lq_clear_error();
        lq_status st = lq_mckp_solve(&t.problem, capacity, &s);
        if (capacity < lo) {
            expect_error(st, LQ_ERR_RANGE, "infeasible");
            assert_int_equal(s.min_feasible, lo);
            assert_null(s.choice);
            infeasible++;
        } else {
            if (st != LQ_OK) fprintf(stderr, "trial %d: %s\n", trial, lq_last_error());
            assert_int_equal(st, LQ_OK);
            check_solution(&t, capacity, &s);
            assert_int_equal(s.granularity, 1);
            brute_result want = brute_force(&t, capacity);
            if (s.objective != want.objective || s.used_bytes != want.bytes)
                fprintf(stderr, "trial %d: solver %.17g in %" PRIu64 " B, brute force %.17g in %" PRIu64 " B\n",
                        trial, s.objective, s.used_bytes, want.objective, want.bytes);
            assert_true(s.objective == want.objective);
            assert_int_equal(s.used_bytes, want.bytes);
            /* among choices equal in bytes and error, the lowest index */
            for (int i = 0; i < t.n_items; i++)
                for (int j = 0; j < s.choice[i]; j++)
                    assert_false(t.bytes[i][j] == t.bytes[i][s.choice[i]] &&
                                 t.error[i][j] == t.error[i][s.choice[i]]);
            double dual = lagrangian_bound(&t, capacity);
            if (fabs(s.lower_bound - dual) > 1e-9 * (1 + fabs(dual)))
                fprintf(stderr, "trial %d: LP bound %.17g, Lagrangian dual %.17g\n", trial, s.lower_bound, dual);
            assert_true(fabs(s.lower_bound - dual) <= 1e-9 * (1 + fabs(dual)));
            lp_integral += s.gap == 0;
            /* the same input gives the same assignment */
            lq_mckp_solution again;
            assert_int_equal(lq_mckp_solve(&t.problem, capacity, &again), LQ_OK);
            assert_memory_equal(again.choice, s.choice, sizeof(int) * t.n_items);
            lq_mckp_solution_free(&again);
            lq_mckp_solution_free(&s);
            assert_null(s.choice);
            solved++;
        }
        instance_free(&t);
    }
    print_message("%d solved exactly (%d with a zero gap), %d infeasible\n", solved, lp_integral, infeasible);
    assert_true(solved > 2000 && infeasible > 100);
}

/* A known answer where the LP bound is fractional: the integer optimum leaves bytes unused and
 * the gap is what the fractional step would have bought. */
static void test_solver_known_answer(void **state) {
    (void)state;
    const int n_choices[3] = {3, 2, 2};
    instance t;
    instance_alloc(&t, 3, n_choices);
    const uint64_t bytes[3][3] = {{10, 20, 40}, {10, 30}, {5, 25}};
    const double error[3][3] = {{9, 4, 1}, {6, 1}, {3, 2.5}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < n_choices[i]; j++) {
            t.bytes[i][j] = bytes[i][j];
            t.error[i][j] = error[i][j];
        }
    /* slack 35 over the minimum 25: item 0 +10 saves 0.5/B, item 1 +20 saves 0.25/B, item 0
     * +20 more saves 0.15/B (fractionally 5 of 20), item 2 +20 saves 0.025/B */
    lq_mckp_solution s;
    assert_int_equal(lq_mckp_solve(&t.problem, 60, &s), LQ_OK);
    check_solution(&t, 60, &s);
    assert_int_equal(s.choice[0], 1);
    assert_int_equal(s.choice[1], 1);
    assert_int_equal(s.choice[2], 0);
    assert_true(s.objective == 8);
    assert_int_equal(s.used_bytes, 55);
    assert_true(fabs(s.lower_bound - (8 - 5 * 0.15)) < 1e-12);
    assert_true(fabs(s.gap - 0.75) < 1e-12);
    assert_int_equal(s.min_feasible, 25);
    lq_mckp_solution_free(&s);

    /* everything fits: each item's least error, a zero gap */
    assert_int_equal(lq_mckp_solve(&t.problem, 1000, &s), LQ_OK);
    check_solution(&t, 1000, &s);
    assert_int_equal(s.choice[0], 2);
    assert_int_equal(s.choice[1], 1);
    assert_int_equal(s.choice[2], 1);
    assert_true(s.gap == 0 && s.lower_bound == s.objective);
    lq_mckp_solution_free(&s);
    instance_free(&t);
}

static void test_solver_infeasible_message(void **state) {
    (void)state;
    const int n_choices[2] = {2, 1};
    instance t;
    instance_alloc(&t, 2, n_choices);
    /* 12.34 MiB at the least: 12939427 B */
    t.bytes[0][0] = 12000000;
    t.bytes[0][1] = 900000;
    t.bytes[1][0] = 12939427 - 900000;
    t.error[0][1] = 1;
    lq_mckp_solution s;
    lq_clear_error();
    expect_error(lq_mckp_solve(&t.problem, 10485760, &s), LQ_ERR_RANGE,
                 "budget 10.00 MiB (10485760 B) is infeasible: the smallest feasible is 12.34 MiB (12939427 B)");
    assert_int_equal(s.min_feasible, 12939427);
    assert_null(s.choice);
    lq_mckp_solution_free(&s);

    /* one byte short, then exactly enough */
    expect_error(lq_mckp_solve(&t.problem, 12939426, &s), LQ_ERR_RANGE, "(12939427 B)");
    assert_int_equal(lq_mckp_solve(&t.problem, 12939427, &s), LQ_OK);
    check_solution(&t, 12939427, &s);
    assert_int_equal(s.choice[0], 1);
    lq_mckp_solution_free(&s);

    /* smallest choices that add up past 2^64 */
    t.bytes[0][1] = UINT64_MAX - 5;
    t.bytes[0][0] = UINT64_MAX;
    expect_error(lq_mckp_solve(&t.problem, UINT64_MAX, &s), LQ_ERR_RANGE, "2^64");
    assert_int_equal(s.min_feasible, UINT64_MAX);
    instance_free(&t);
}

static void test_solver_rejects_bad_input(void **state) {
    (void)state;
    lq_mckp_solution s;
    expect_error(lq_mckp_solve(NULL, 100, &s), LQ_ERR_ARG, "no problem");

    int counts[2] = {2, 2};
    instance t;
    instance_alloc(&t, 2, counts);
    t.problem.n_items = 0;
    expect_error(lq_mckp_solve(&t.problem, 100, &s), LQ_ERR_ARG, "n_items = 0");
    t.problem.n_items = 2;

    t.n_choices[1] = 0;
    expect_error(lq_mckp_solve(&t.problem, 100, &s), LQ_ERR_ARG, "item 1 has 0 choices");
    t.n_choices[1] = 256;
    expect_error(lq_mckp_solve(&t.problem, 100, &s), LQ_ERR_ARG, "1 to 255");
    t.n_choices[1] = 2;

    const double bad[] = {NAN, INFINITY, -1e-9};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        t.error[1][1] = bad[b];
        expect_error(lq_mckp_solve(&t.problem, 100, &s), LQ_ERR_NUMERIC, "item 1 choice 1");
        assert_null(s.choice);
    }
    t.error[0][0] = t.error[1][1] = 1.5e308;
    expect_error(lq_mckp_solve(&t.problem, 100, &s), LQ_ERR_NUMERIC, "overflows");
    t.error[0][0] = t.error[1][1] = 0;
    assert_int_equal(lq_mckp_solve(&t.problem, 100, &s), LQ_OK);
    lq_mckp_solution_free(&s);
    expect_error(lq_mckp_solve(&t.problem, 100, NULL), LQ_ERR_ARG, "no output");
    instance_free(&t);
}

/* 255 choices are the documented maximum (one-byte back-pointers): the last one must be
 * reachable. */
static void test_solver_255_choices(void **state) {
    (void)state;
    int counts[2] = {255, 255};
    instance t;
    instance_alloc(&t, 2, counts);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 255; j++) {
            t.bytes[i][j] = (uint64_t)j * 3;
            t.error[i][j] = 1000.0 / (1 + j) + (i ? 0.5 : 0);
        }
    lq_mckp_solution s;
    assert_int_equal(lq_mckp_solve(&t.problem, 254 * 3 + 254 * 3 - 1, &s), LQ_OK);
    check_solution(&t, 254 * 3 * 2 - 1, &s);
    assert_int_equal(s.granularity, 1);
    assert_true(s.choice[0] + s.choice[1] == 253 + 254);
    lq_mckp_solution_free(&s);
    instance_free(&t);
}

/* With g > 1 a choice can fit in exact bytes but not in rounded-up cells; the greedy pass must
 * then take it. One item, slack 2^40 − 1: g = 2^20, and the choice of 2^40 − 1 extra bytes
 * rounds up to 2^20 cells, one more than the table has. */
static void test_solver_uses_bytes_left_by_rounding(void **state) {
    (void)state;
    int counts[1] = {3};
    instance t;
    instance_alloc(&t, 1, counts);
    t.bytes[0][0] = 0, t.error[0][0] = 10;
    t.bytes[0][1] = (1ull << 40) - 1, t.error[0][1] = 1;
    t.bytes[0][2] = 1ull << 40, t.error[0][2] = 0;
    lq_mckp_solution s;
    assert_int_equal(lq_mckp_solve(&t.problem, (1ull << 40) - 1, &s), LQ_OK);
    check_solution(&t, (1ull << 40) - 1, &s);
    assert_true(s.granularity > 1);
    assert_int_equal(s.choice[0], 1);
    assert_true(s.objective == 1);
    lq_mckp_solution_free(&s);
    instance_free(&t);
}

/* A model-sized problem: 560 linears of 4M–120M weights, six bit widths with group scales, a
 * 16 GiB budget. The DP has to coarsen (g > 1); the answer must be feasible and within a small
 * fraction of the LP bound. */
static void test_solver_large_instance(void **state) {
    (void)state;
    enum { ITEMS = 560, CHOICES = 6 };
    static const int bits[CHOICES] = {2, 3, 4, 5, 6, 8};
    int counts[ITEMS];
    for (int i = 0; i < ITEMS; i++) counts[i] = CHOICES;
    instance t;
    instance_alloc(&t, ITEMS, counts);
    lq_rng r;
    lq_rng_seed(&r, 77);
    for (int i = 0; i < ITEMS; i++) {
        uint64_t weights = 4000000 + lq_rng_u64(&r) % 116000000;
        double sensitivity = exp(3 * lq_rng_normal(&r));
        for (int j = 0; j < CHOICES; j++) {
            t.bytes[i][j] = weights * bits[j] / 8 + weights / 64 * 2;   /* f16 scale per 64 */
            t.error[i][j] = sensitivity * pow(4.0, -bits[j]) * (1 + 0.2 * lq_rng_uniform(&r));
        }
    }
    uint64_t capacity = 1ull << 34;
    assert_true(min_bytes(&t) < capacity);
    double start = lq_seconds();
    lq_mckp_solution s;
    lq_status st = lq_mckp_solve(&t.problem, capacity, &s);
    double seconds = lq_seconds() - start;
    assert_int_equal(st, LQ_OK);
    check_solution(&t, capacity, &s);
    print_message("%d items × %d choices, budget 16 GiB: %.3f s, g = %" PRIu64 ", used %" PRIu64
                  " B (%" PRIu64 " B left), objective %.9g, bound %.9g, relative gap %.2e\n",
                  ITEMS, CHOICES, seconds, s.granularity, s.used_bytes, capacity - s.used_bytes,
                  s.objective, s.lower_bound, s.gap / s.objective);
    assert_true(s.granularity > 1);
    assert_true(s.gap / s.objective < 1e-3);
    /* the budget binds: the answer uses all but a sliver of it */
    assert_true(capacity - s.used_bytes < capacity / 1000);
    lq_mckp_solution_free(&s);
    instance_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_parse_units),
        cmocka_unit_test(test_size_parse_rejects),
        cmocka_unit_test(test_size_format),
        cmocka_unit_test(test_kv_cache_bytes),
        cmocka_unit_test(test_solver_matches_brute_force),
        cmocka_unit_test(test_solver_known_answer),
        cmocka_unit_test(test_solver_infeasible_message),
        cmocka_unit_test(test_solver_rejects_bad_input),
        cmocka_unit_test(test_solver_255_choices),
        cmocka_unit_test(test_solver_uses_bytes_left_by_rounding),
        cmocka_unit_test(test_solver_large_instance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
