/* Calibration windows from text (lq_quant.h): one file, or a directory of files read in name
 * order so the same folder always gives the same windows. */
#include "lq_quant.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Appends the bytes of `path` to *buf. */
static lq_status append_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return lq_fail(LQ_ERR_IO, "%s: cannot open calibration text: %s", path, strerror(errno));
    lq_status st = LQ_OK;
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        char *grown = realloc(*buf, *len + n + 1);
        if (!grown) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory reading calibration text", path);
            break;
        }
        *buf = grown;
        memcpy(*buf + *len, chunk, n);
        *len += n;
        (*buf)[*len] = '\0';
    }
    if (st == LQ_OK && ferror(f)) st = lq_fail(LQ_ERR_IO, "%s: read error", path);
    fclose(f);
    return st;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static lq_status read_text(const char *path, char **text, size_t *len) {
    struct stat sb;
    *text = NULL, *len = 0;
    if (stat(path, &sb) != 0)
        return lq_fail(LQ_ERR_IO, "%s: calibration text not found: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return append_file(path, text, len);
    DIR *dir = opendir(path);
    if (!dir) return lq_fail(LQ_ERR_IO, "%s: cannot list directory: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    lq_status st = LQ_OK;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        char *name = strdup(e->d_name);
        if (!grown || !name) {
            free(name);
            if (grown) names = grown;
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        names = grown;
        names[n++] = name;
    }
    closedir(dir);
    if (st == LQ_OK && n > 1) qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n && st == LQ_OK; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        st = append_file(full, text, len);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st == LQ_OK && *len == 0) st = lq_fail(LQ_ERR_FORMAT, "%s: no calibration text in it", path);
    return st;
}

lq_status lq_calib_tokens(const lq_tokenizer *tok, const char *path, int nsamples, int seqlen,
                          uint64_t seed, int **tokens) {
    *tokens = NULL;
    if (!tok)
        return lq_fail(LQ_ERR_ARG, "calibration needs a tokenizer: this model was loaded "
                       "without one (give --tokenizer for a llama2.c checkpoint)");
    if (nsamples < 1 || seqlen < 2)
        return lq_fail(LQ_ERR_ARG, "calibration: --nsamples %d and --seqlen %d must be ≥ 1 and ≥ 2",
                       nsamples, seqlen);
    char *text;
    size_t len;
    lq_status st = read_text(path, &text, &len);
    if (st != LQ_OK) return st;
    int *ids = NULL;
    size_t n_ids = 0;
    st = lq_tokenizer_encode(tok, text, len, 0, 0, &ids, &n_ids);
    free(text);
    if (st != LQ_OK) return lq_fail_context(st, "%s", path);
    int bos = lq_tokenizer_add_bos(tok) ? lq_tokenizer_bos(tok) : -1;
    size_t body = (size_t)seqlen - (bos >= 0 ? 1 : 0);
    if (n_ids < body) {
        free(ids);
        return lq_fail(LQ_ERR_RANGE, "%s: calibration text has %zu tokens, fewer than one "
                       "window of --seqlen %d", path, n_ids, seqlen);
    }
    int *out = malloc((size_t)nsamples * seqlen * sizeof(int));
    if (!out) {
        free(ids);
        return lq_fail(LQ_ERR_NOMEM, "calibration: out of memory for %d × %d tokens", nsamples, seqlen);
    }
    lq_rng rng;
    lq_rng_seed(&rng, seed);
    size_t starts = n_ids - body + 1;
    for (int s = 0; s < nsamples; s++) {
        size_t start = (size_t)(lq_rng_uniform(&rng) * (double)starts);
        if (start >= starts) start = starts - 1;
        int *w = out + (size_t)s * seqlen;
        size_t at = 0;
        if (bos >= 0) w[at++] = bos;
        memcpy(w + at, ids + start, body * sizeof(int));
    }
    free(ids);
    *tokens = out;
    return LQ_OK;
}
