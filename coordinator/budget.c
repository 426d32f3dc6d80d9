/* Sizes, KV-cache arithmetic and the multiple-choice knapsack that fits a model into a budget
 * (lq_coord.h, DESIGN.md §5). */
#include "lq_coord.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sizes ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    uint64_t factor;
} lq_size_unit;

static const lq_size_unit lq_size_units[] = {
    {"B", 1},
    {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
    {"KB", 1000ull}, {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull},
};
#define LQ_SIZE_UNIT_LIST "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"

/* Sizes end up in off_t and int64 SQLite columns, so the largest accepted is 2^63 - 1. */
#define LQ_SIZE_MAX ((uint64_t)INT64_MAX)

static int lq_mul_overflows(uint64_t a, uint64_t b, uint64_t *product) {
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *product = a * b;
    return 0;
}

/* The number is exact decimal, not strtod: "0.1TB" must be 100000000000 bytes, not one less
 * after a binary round trip. Exponent notation ("1e3") is rejected on purpose: a budget typed
 * by a person never needs it, and accepting it would make "1e3" and "1E3B" two more spellings
 * to document and test. */
lq_status lq_size_parse(const char *text, const char *flag, uint64_t *out) {
    const char *what = flag && flag[0] ? flag : "size";
    if (!out) return lq_fail(LQ_ERR_ARG, "%s: no output for the parsed size", what);
    *out = 0;
    if (!text || !text[0])
        return lq_fail(LQ_ERR_ARG, "%s: empty size (expected e.g. 24GiB, 1.5 GB or 4096)", what);
    const char *p = text;
    if (*p == '-')
        return lq_fail(LQ_ERR_ARG, "%s: '%s' is negative; a size is a non-negative number of bytes",
                       what, text);
    if (!isdigit((unsigned char)*p))
        return lq_fail(LQ_ERR_ARG, "%s: '%s' does not start with a digit (expected e.g. 24GiB, "
                       "1.5 GB or 4096)", what, text);

    uint64_t whole = 0;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (whole > (LQ_SIZE_MAX - digit) / 10)
            return lq_fail(LQ_ERR_RANGE, "%s: '%s' is too large (at most 2^63 - 1 bytes)", what, text);
        whole = whole * 10 + digit;
    }
    const char *fraction = NULL, *fraction_end = NULL;
    if (*p == '.') {
        fraction = ++p;
        while (isdigit((unsigned char)*p)) p++;
        fraction_end = p;
        if (fraction == fraction_end)
            return lq_fail(LQ_ERR_ARG, "%s: '%s' has no digits after the decimal point", what, text);
    }
    const char *number_end = p;
    while (*p == ' ') p++;

    uint64_t factor = 1;
    if (*p) {
        const lq_size_unit *unit = NULL;
        for (size_t u = 0; u < sizeof lq_size_units / sizeof lq_size_units[0]; u++)
            if (!strcmp(p, lq_size_units[u].name)) unit = &lq_size_units[u];
        if (!unit) {
            if (p == number_end && (*p == 'e' || *p == 'E') &&
                (isdigit((unsigned char)p[1]) || p[1] == '+' || p[1] == '-'))
                return lq_fail(LQ_ERR_ARG, "%s: '%s': exponent notation is not accepted; write the "
                               "digits or use a unit (e.g. 1000 or 1KB)", what, text);
            return lq_fail(LQ_ERR_ARG, "%s: '%s': unexpected '%s' after the number (units: "
                           LQ_SIZE_UNIT_LIST ", case as written; none means bytes)", what, text, p);
        }
        factor = unit->factor;
    }

    uint64_t total;
    if (lq_mul_overflows(whole, factor, &total) || total > LQ_SIZE_MAX)
        return lq_fail(LQ_ERR_RANGE, "%s: '%s' is too large (at most 2^63 - 1 bytes)", what, text);
    if (fraction) {
        /* floor(0.d1d2…dk · factor) by long multiplication from the last digit: the carry out
         * of the decimal point is the whole-byte part, exact for any number of digits. The
         * carry stays below factor ≤ 10^12, so digit · factor + carry fits easily. */
        uint64_t carry = 0;
        for (const char *d = fraction_end; d-- > fraction;)
            carry = ((uint64_t)(*d - '0') * factor + carry) / 10;
        if (carry > LQ_SIZE_MAX - total)
            return lq_fail(LQ_ERR_RANGE, "%s: '%s' is too large (at most 2^63 - 1 bytes)", what, text);
        total += carry;
    }
    *out = total;
    return LQ_OK;
}

void lq_size_format(uint64_t bytes, char *out, size_t cap) {
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (!out || cap == 0) return;
    int k = 0;
    while (k < 4 && bytes >= (1ull << (10 * (k + 1)))) k++;
    if (k == 0)
        snprintf(out, cap, "%" PRIu64 " B", bytes);
    else
        snprintf(out, cap, "%.2f %s (%" PRIu64 " B)", ldexp((double)bytes, -10 * k), names[k], bytes);
}

/* ---- KV cache ------------------------------------------------------------------------- */

lq_status lq_kv_cache_bytes(int n_layers, int n_kv_heads, int head_dim, long ctx, long batch,
                            const char *kv_dtype, uint64_t *out) {
    static const struct { const char *name; uint64_t bytes; } dtypes[] = {
        {"f16", 2}, {"bf16", 2}, {"f32", 4}, {"q8", 1},
    };
    if (!out) return lq_fail(LQ_ERR_ARG, "KV cache size: no output");
    *out = 0;
    if (n_layers <= 0) return lq_fail(LQ_ERR_ARG, "KV cache size: the model has %d layers", n_layers);
    if (n_kv_heads <= 0)
        return lq_fail(LQ_ERR_ARG, "KV cache size: the model has %d KV heads", n_kv_heads);
    if (head_dim <= 0) return lq_fail(LQ_ERR_ARG, "KV cache size: head_dim is %d", head_dim);
    if (ctx <= 0) return lq_fail(LQ_ERR_ARG, "--ctx %ld: the context must be at least 1 token", ctx);
    if (batch <= 0) return lq_fail(LQ_ERR_ARG, "--batch %ld: the batch must be at least 1", batch);
    uint64_t element = 0;
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++)
        if (kv_dtype && !strcmp(kv_dtype, dtypes[t].name)) element = dtypes[t].bytes;
    if (!element)
        return lq_fail(LQ_ERR_ARG, "KV cache dtype '%s' is unknown (valid: f16, bf16, f32, q8)",
                       kv_dtype ? kv_dtype : "(none)");

    const uint64_t factors[] = {2, (uint64_t)n_layers, (uint64_t)n_kv_heads, (uint64_t)head_dim,
                                (uint64_t)ctx, (uint64_t)batch, element};
    uint64_t total = 1;
    for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++)
        if (lq_mul_overflows(total, factors[f], &total) || total > LQ_SIZE_MAX)
            return lq_fail(LQ_ERR_RANGE, "KV cache size overflows 2^63 bytes (--ctx %ld, --batch %ld, "
                           "%d layers × %d KV heads × %d)", ctx, batch, n_layers, n_kv_heads, head_dim);
    *out = total;
    return LQ_OK;
}

/* ---- the budget solver ------------------------------------------------------------------ */

/* Back-pointers are one byte per item and capacity cell. */
#define LQ_MCKP_MAX_CHOICES 255

/* The DP table is limited three ways, whichever binds first: cells per row (two rows of
 * doubles, 16 MiB at most), back-pointer bytes (items × cells, 128 MiB at most), and cell
 * updates (Pareto choices × cells), which set the time: 2^29 updates take a few tenths of a
 * second, so a 600-item × 8-choice model solves well under a second. A coarser g costs at most
 * g bytes per item, which the gap reports. */
#define LQ_DP_MAX_CELLS (1ull << 20)
#define LQ_DP_MAX_BACKPOINTER_BYTES (1ull << 27)
#define LQ_DP_MAX_UPDATES (1ull << 29)

typedef struct {
    uint64_t bytes;
    double error;
    int index;
} lq_choice_key;

/* Fewer bytes first, then less error, then lower index: the order that makes every later
 * tie-break deterministic. */
static int lq_compare_choices(const void *a, const void *b) {
    const lq_choice_key *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    if (x->error != y->error) return x->error < y->error ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

typedef struct {
    double efficiency;   /* error saved per byte added */
    int item, step;      /* step k goes from hull point k to k + 1 */
} lq_increment;

static int lq_compare_increments(const void *a, const void *b) {
    const lq_increment *x = a, *y = b;
    if (x->efficiency != y->efficiency) return x->efficiency > y->efficiency ? -1 : 1;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    return (x->step > y->step) - (x->step < y->step);
}

typedef struct {
    int n_items;
    int *pareto_start;   /* n_items + 1 offsets into pareto */
    int *pareto;         /* per item: the choices no other beats in both bytes and error,
                            ascending bytes, strictly descending error */
    int *hull_start;     /* n_items + 1 offsets into hull */
    int *hull;           /* per item: the Pareto choices on the lower convex hull, same order */
} lq_frontiers;

static void lq_frontiers_free(lq_frontiers *f) {
    free(f->pareto_start);
    free(f->pareto);
    free(f->hull_start);
    free(f->hull);
}

/* Error saved per extra byte going from choice a to choice b of one item (b has more bytes). */
static double lq_efficiency(const lq_mckp *p, int item, int a, int b) {
    double saved = p->error[item][a] - p->error[item][b];
    return saved / (double)(p->bytes[item][b] - p->bytes[item][a]);
}

static lq_status lq_frontiers_build(const lq_mckp *p, lq_frontiers *f) {
    int n = p->n_items;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)p->n_choices[i];
    f->n_items = n;
    f->pareto_start = malloc(sizeof(int) * ((size_t)n + 1));
    f->pareto = malloc(sizeof(int) * total);
    f->hull_start = malloc(sizeof(int) * ((size_t)n + 1));
    f->hull = malloc(sizeof(int) * total);
    lq_choice_key *sorted = malloc(sizeof(lq_choice_key) * LQ_MCKP_MAX_CHOICES);
    if (!f->pareto_start || !f->pareto || !f->hull_start || !f->hull || !sorted) {
        free(sorted);
        lq_frontiers_free(f);
        return lq_fail(LQ_ERR_NOMEM, "budget solver: out of memory for %zu choices", total);
    }
    int n_pareto = 0, n_hull = 0;
    for (int i = 0; i < n; i++) {
        int m = p->n_choices[i];
        for (int j = 0; j < m; j++) sorted[j] = (lq_choice_key){p->bytes[i][j], p->error[i][j], j};
        qsort(sorted, (size_t)m, sizeof(lq_choice_key), lq_compare_choices);

        f->pareto_start[i] = n_pareto;
        for (int s = 0; s < m; s++) {
            int j = sorted[s].index;
            if (n_pareto == f->pareto_start[i] || p->error[i][j] < p->error[i][f->pareto[n_pareto - 1]])
                f->pareto[n_pareto++] = j;
        }

        /* Monotone chain with the very efficiency the greedy sorts by as the test, so the hull's
         * steps have strictly decreasing computed efficiency and the greedy takes them in order
         * even where rounding would make a cross-product test disagree. */
        f->hull_start[i] = n_hull;
        for (int k = f->pareto_start[i]; k < n_pareto; k++) {
            int j = f->pareto[k];
            while (n_hull - f->hull_start[i] >= 2 &&
                   lq_efficiency(p, i, f->hull[n_hull - 2], f->hull[n_hull - 1]) <=
                       lq_efficiency(p, i, f->hull[n_hull - 1], j))
                n_hull--;
            f->hull[n_hull++] = j;
        }
    }
    f->pareto_start[n] = n_pareto;
    f->hull_start[n] = n_hull;
    free(sorted);
    return LQ_OK;
}

/* LP relaxation: every item starts at its smallest choice; hull steps are bought in order of
 * efficiency while they fit, the first that does not fit is bought fractionally, and nothing
 * after it (its efficiency bounds all later ones, so the capacity is used best). The sum runs
 * over items in index order, like the objective, so an LP optimum that happens to be integral
 * prints exactly the objective's value and a zero gap. */
static lq_status lq_lp_bound(const lq_mckp *p, const lq_frontiers *f, uint64_t slack, double *bound) {
    int n = p->n_items;
    size_t n_steps = (size_t)(f->hull_start[n] - n);
    lq_increment *steps = malloc(sizeof(lq_increment) * (n_steps ? n_steps : 1));
    int *reached = malloc(sizeof(int) * (size_t)n);
    if (!steps || !reached) {
        free(steps);
        free(reached);
        return lq_fail(LQ_ERR_NOMEM, "budget solver: out of memory for the LP bound");
    }
    size_t s = 0;
    for (int i = 0; i < n; i++) {
        reached[i] = f->hull_start[i];
        for (int k = f->hull_start[i]; k + 1 < f->hull_start[i + 1]; k++)
            steps[s++] = (lq_increment){lq_efficiency(p, i, f->hull[k], f->hull[k + 1]), i,
                                        k - f->hull_start[i]};
    }
    qsort(steps, n_steps, sizeof(lq_increment), lq_compare_increments);

    int fractional_item = -1;
    double fraction = 0;
    for (s = 0; s < n_steps; s++) {
        int i = steps[s].item, k = f->hull_start[i] + steps[s].step;
        uint64_t extra = p->bytes[i][f->hull[k + 1]] - p->bytes[i][f->hull[k]];
        if (extra <= slack) {
            slack -= extra;
            reached[i] = k + 1;
        } else {
            fractional_item = i;
            fraction = (double)slack / (double)extra;
            break;
        }
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += p->error[i][f->hull[reached[i]]];
    if (fractional_item >= 0) {
        int k = reached[fractional_item];
        sum -= fraction * (p->error[fractional_item][f->hull[k]] - p->error[fractional_item][f->hull[k + 1]]);
    }
    *bound = sum;
    free(steps);
    free(reached);
    return LQ_OK;
}

static uint64_t lq_round_up_cells(uint64_t extra_bytes, uint64_t granularity) {
    return extra_bytes / granularity + (extra_bytes % granularity != 0);
}

/* Integer solution over extra bytes above each item's smallest choice, in cells of
 * `granularity` bytes rounded up, so whatever fits in floor(slack / g) cells fits in slack
 * bytes. f[c] is the least error with at most c cells; strict improvement keeps the earlier
 * (fewer-bytes) Pareto choice on ties. chosen_pareto[i] is an offset into f->pareto. */
static lq_status lq_dp(const lq_mckp *p, const lq_frontiers *f, uint64_t slack, uint64_t granularity,
                       int *chosen_pareto) {
    int n = p->n_items;
    size_t cells = (size_t)(slack / granularity) + 1;
    double *previous = malloc(sizeof(double) * cells);
    double *current = malloc(sizeof(double) * cells);
    uint8_t *back = malloc((size_t)n * cells);
    if (!previous || !current || !back) {
        free(previous);
        free(current);
        free(back);
        return lq_fail(LQ_ERR_NOMEM, "budget solver: out of memory for a %d × %zu DP table", n, cells);
    }
    for (size_t c = 0; c < cells; c++) previous[c] = 0;
    for (int i = 0; i < n; i++) {
        const int *choices = f->pareto + f->pareto_start[i];
        int m = f->pareto_start[i + 1] - f->pareto_start[i];
        uint64_t smallest = p->bytes[i][choices[0]];
        uint8_t *row = back + (size_t)i * cells;
        double e0 = p->error[i][choices[0]];
        for (size_t c = 0; c < cells; c++) {
            current[c] = previous[c] + e0;
            row[c] = 0;
        }
        for (int k = 1; k < m; k++) {
            uint64_t width = lq_round_up_cells(p->bytes[i][choices[k]] - smallest, granularity);
            if (width >= cells) break;   /* Pareto order: every later choice is wider still */
            double e = p->error[i][choices[k]];
            const double *shifted = previous - width;
            for (size_t c = (size_t)width; c < cells; c++) {
                double v = shifted[c] + e;
                if (v < current[c]) {
                    current[c] = v;
                    row[c] = (uint8_t)k;
                }
            }
        }
        double *t = previous;
        previous = current;
        current = t;
    }
    /* Backtracking from the fewest cells that reach the optimum gives, at g = 1, the optimal
     * assignment with the fewest bytes. */
    size_t c = 0;
    while (previous[c] != previous[cells - 1]) c++;
    for (int i = n - 1; i >= 0; i--) {
        const int *choices = f->pareto + f->pareto_start[i];
        int k = back[(size_t)i * cells + c];
        chosen_pareto[i] = k;
        c -= (size_t)lq_round_up_cells(p->bytes[i][choices[k]] - p->bytes[i][choices[0]], granularity);
    }
    free(previous);
    free(current);
    free(back);
    return LQ_OK;
}

/* Spends the exact bytes that rounding left over: repeatedly the single upgrade (same item, a
 * Pareto choice with less error) that still fits and saves the most error; ties go to fewer
 * extra bytes, then the lower item index. Each step adds bytes only within the leftover, so the
 * assignment stays feasible, and strictly lowers the objective, so it ends. */
static void lq_improve(const lq_mckp *p, const lq_frontiers *f, uint64_t leftover, int *chosen_pareto) {
    for (;;) {
        int best_item = -1, best_k = -1;
        double best_saving = 0;
        uint64_t best_extra = 0;
        for (int i = 0; i < p->n_items; i++) {
            const int *choices = f->pareto + f->pareto_start[i];
            int m = f->pareto_start[i + 1] - f->pareto_start[i];
            int now = chosen_pareto[i];
            uint64_t now_bytes = p->bytes[i][choices[now]];
            /* the largest Pareto choice that fits saves the most within this item */
            int k = now;
            while (k + 1 < m && p->bytes[i][choices[k + 1]] - now_bytes <= leftover) k++;
            if (k == now) continue;
            double saving = p->error[i][choices[now]] - p->error[i][choices[k]];
            uint64_t extra = p->bytes[i][choices[k]] - now_bytes;
            if (best_item < 0 || saving > best_saving || (saving == best_saving && extra < best_extra)) {
                best_item = i;
                best_k = k;
                best_saving = saving;
                best_extra = extra;
            }
        }
        if (best_item < 0) return;
        chosen_pareto[best_item] = best_k;
        leftover -= best_extra;
    }
}

/* The smallest power of two whose cell count floor(slack / g) + 1 stays within the limits. */
static uint64_t lq_choose_granularity(const lq_frontiers *f, uint64_t slack) {
    uint64_t n_items = (uint64_t)f->n_items, n_pareto = (uint64_t)f->pareto_start[f->n_items];
    uint64_t max_cells = LQ_DP_MAX_CELLS;
    if (LQ_DP_MAX_BACKPOINTER_BYTES / n_items < max_cells) max_cells = LQ_DP_MAX_BACKPOINTER_BYTES / n_items;
    if (LQ_DP_MAX_UPDATES / n_pareto < max_cells) max_cells = LQ_DP_MAX_UPDATES / n_pareto;
    if (max_cells < 2) max_cells = 2;   /* g = 2^63 always gives at most 2 cells */
    uint64_t g = 1;
    while (slack / g + 1 > max_cells) g <<= 1;
    return g;
}

static lq_status lq_mckp_validate(const lq_mckp *p) {
    if (!p) return lq_fail(LQ_ERR_ARG, "budget solver: no problem given");
    if (p->n_items < 1) return lq_fail(LQ_ERR_ARG, "budget solver: no items to choose for (n_items = %d)", p->n_items);
    if (!p->n_choices || !p->bytes || !p->error)
        return lq_fail(LQ_ERR_ARG, "budget solver: the problem lacks its choice counts, bytes or errors");
    double worst_sum = 0;
    for (int i = 0; i < p->n_items; i++) {
        int m = p->n_choices[i];
        if (m < 1 || m > LQ_MCKP_MAX_CHOICES)
            return lq_fail(LQ_ERR_ARG, "budget solver: item %d has %d choices (1 to %d are supported)",
                           i, m, LQ_MCKP_MAX_CHOICES);
        if (!p->bytes[i] || !p->error[i])
            return lq_fail(LQ_ERR_ARG, "budget solver: item %d lacks its bytes or errors", i);
        double worst = 0;
        for (int j = 0; j < m; j++) {
            double e = p->error[i][j];
            if (!isfinite(e) || e < 0)
                return lq_fail(LQ_ERR_NUMERIC, "budget solver: item %d choice %d has error %g (errors "
                               "must be finite and non-negative)", i, j, e);
            if (e > worst) worst = e;
        }
        worst_sum += worst;
    }
    if (!isfinite(worst_sum))
        return lq_fail(LQ_ERR_NUMERIC, "budget solver: the errors are so large that their sum "
                       "overflows a double; rescale them");
    return LQ_OK;
}

lq_status lq_mckp_solve(const lq_mckp *problem, uint64_t capacity, lq_mckp_solution *out) {
    if (!out) return lq_fail(LQ_ERR_ARG, "budget solver: no output for the solution");
    memset(out, 0, sizeof *out);
    lq_status st = lq_mckp_validate(problem);
    if (st != LQ_OK) return st;
    const lq_mckp *p = problem;
    int n = p->n_items;

    lq_frontiers f;
    if ((st = lq_frontiers_build(p, &f)) != LQ_OK) return st;

    uint64_t min_feasible = 0, span = 0;
    int min_overflows = 0;
    for (int i = 0; i < n; i++) {
        uint64_t smallest = p->bytes[i][f.pareto[f.pareto_start[i]]];
        uint64_t widest = p->bytes[i][f.pareto[f.pareto_start[i + 1] - 1]] - smallest;
        if (smallest > UINT64_MAX - min_feasible) min_overflows = 1;
        else min_feasible += smallest;
        span = widest > UINT64_MAX - span ? UINT64_MAX : span + widest;
    }
    if (min_overflows) {
        out->min_feasible = UINT64_MAX;
        lq_frontiers_free(&f);
        return lq_fail(LQ_ERR_RANGE, "budget is infeasible: the smallest choices of the %d items "
                       "add up past 2^64 bytes", n);
    }
    out->min_feasible = min_feasible;
    if (min_feasible > capacity) {
        char budget_text[64], min_text[64];
        lq_size_format(capacity, budget_text, sizeof budget_text);
        lq_size_format(min_feasible, min_text, sizeof min_text);
        lq_frontiers_free(&f);
        return lq_fail(LQ_ERR_RANGE, "budget %s is infeasible: the smallest feasible is %s (every "
                       "item at its smallest choice)", budget_text, min_text);
    }
    uint64_t slack = capacity - min_feasible;

    int *chosen_pareto = malloc(sizeof(int) * (size_t)n);
    out->choice = malloc(sizeof(int) * (size_t)n);
    if (!chosen_pareto || !out->choice) {
        free(chosen_pareto);
        lq_mckp_solution_free(out);
        lq_frontiers_free(&f);
        return lq_fail(LQ_ERR_NOMEM, "budget solver: out of memory for %d items", n);
    }
    double bound = 0;
    if ((st = lq_lp_bound(p, &f, slack, &bound)) != LQ_OK) goto fail;

    out->granularity = 1;
    if (slack >= span) {
        /* everything fits: each item's least-error choice (the last Pareto one) */
        for (int i = 0; i < n; i++) chosen_pareto[i] = f.pareto_start[i + 1] - 1 - f.pareto_start[i];
    } else {
        out->granularity = lq_choose_granularity(&f, slack);
        if ((st = lq_dp(p, &f, slack, out->granularity, chosen_pareto)) != LQ_OK) goto fail;
        uint64_t used = 0;
        for (int i = 0; i < n; i++) used += p->bytes[i][f.pareto[f.pareto_start[i] + chosen_pareto[i]]];
        if (used > capacity) {
            st = lq_fail(LQ_ERR_INTERNAL, "budget solver: the DP used %" PRIu64 " B of %" PRIu64 " B",
                         used, capacity);
            goto fail;
        }
        lq_improve(p, &f, capacity - used, chosen_pareto);
    }

    out->used_bytes = 0;
    out->objective = 0;
    for (int i = 0; i < n; i++) {
        int j = f.pareto[f.pareto_start[i] + chosen_pareto[i]];
        out->choice[i] = j;
        out->used_bytes += p->bytes[i][j];
        out->objective += p->error[i][j];
    }
    out->lower_bound = bound;
    /* the bound is computed in floating point; an objective a rounding below it is optimal */
    out->gap = out->objective > bound ? out->objective - bound : 0;
    free(chosen_pareto);
    lq_frontiers_free(&f);
    return LQ_OK;

fail:
    free(chosen_pareto);
    lq_mckp_solution_free(out);
    lq_frontiers_free(&f);
    return st;
}

void lq_mckp_solution_free(lq_mckp_solution *s) {
    if (!s) return;
    free(s->choice);
    s->choice = NULL;
}
