/* Replays committed inputs through a fuzz target without libFuzzer, so every build (gcc,
 * Release and ASan) re-checks the seed corpus and the crash regressions:
 *
 *   fuzz_replay_<parser> DIR...
 *
 * feeds every regular file under each DIR (sorted, so failures reproduce in order) to
 * LLVMFuzzerTestOneInput, each in a buffer of exactly its size so that AddressSanitizer sees
 * a read past the end. A crash or a broken invariant ends the run; a seed named valid-* that
 * the parser rejects fails it, as does a missing directory or finding no input at all. */
#include "fuzz_common.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static lq_status read_input(const char *path, uint8_t **out, size_t *size) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return lq_fail(LQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fileno(fp), &info) != 0) {
        fclose(fp);
        return lq_fail(LQ_ERR_IO, "%s: cannot stat", path);
    }
    size_t len = (size_t)info.st_size;
    /* malloc(0) may return NULL; a one-byte buffer still ends where the input does */
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(fp);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %zu bytes", path, len);
    }
    size_t got = fread(buf, 1, len, fp);
    fclose(fp);
    if (got != len) {
        free(buf);
        return lq_fail(LQ_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, len);
    }
    *out = buf;
    *size = len;
    return LQ_OK;
}

/* Replays the files of dir; counts them in *replayed and the rejected valid-* seeds in
 * *rejected_valid. */
static lq_status replay_directory(const char *dir, size_t *replayed, size_t *rejected_valid) {
    DIR *d = opendir(dir);
    if (!d) return lq_fail(LQ_ERR_NOT_FOUND, "%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    size_t count = 0, cap = 0;
    lq_status st = LQ_OK;
    struct dirent *entry;
    while ((entry = readdir(d))) {
        if (entry->d_name[0] == '.') continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            names = grown;
        }
        if (!(names[count] = strdup(entry->d_name))) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        count++;
    }
    closedir(d);
    if (st == LQ_OK) qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; st == LQ_OK && i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat info;
        if (stat(path, &info) != 0 || !S_ISREG(info.st_mode)) continue;
        uint8_t *input;
        size_t size = 0;
        if ((st = read_input(path, &input, &size)) != LQ_OK) break;
        LLVMFuzzerTestOneInput(input, size);
        free(input);
        (*replayed)++;
        if (!strncmp(names[i], "valid-", 6) && !lq_fuzz_accepted) {
            fprintf(stderr, "replay: %s: a valid seed was rejected: %s\n", path, lq_last_error());
            (*rejected_valid)++;
        }
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: %s DIR...\nFeeds every file under each DIR to this fuzz target's "
                "LLVMFuzzerTestOneInput;\nfails on a crash, a broken invariant, a rejected "
                "valid-* seed, or no input.\n", argv[0]);
        return argc < 2 ? 2 : 0;
    }
    size_t replayed = 0, rejected_valid = 0;
    for (int i = 1; i < argc; i++) {
        if (replay_directory(argv[i], &replayed, &rejected_valid) != LQ_OK) {
            fprintf(stderr, "replay: %s\n", lq_last_error());
            return 1;
        }
    }
    printf("replay: %zu inputs, %zu valid seeds rejected\n", replayed, rejected_valid);
    if (replayed == 0) {
        fprintf(stderr, "replay: no input found under the given directories\n");
        return 1;
    }
    return rejected_valid ? 1 : 0;
}
