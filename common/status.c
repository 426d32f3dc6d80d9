/* Logging, atomic file writes (status codes, errors, clock and RNG are in kernels/base.c). */
#include "lq_common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int lq_log_level_current = -1;

void lq_log_set_level(lq_log_level level) { lq_log_level_current = (int)level; }

static int lq_log_level_get(void) {
    if (lq_log_level_current < 0) {
        const char *e = getenv("LQ_LOG");
        lq_log_level_current = LQ_LOG_INFO;
        if (e) {
            if (!strcmp(e, "error")) lq_log_level_current = LQ_LOG_ERROR;
            else if (!strcmp(e, "warn")) lq_log_level_current = LQ_LOG_WARN;
            else if (!strcmp(e, "debug")) lq_log_level_current = LQ_LOG_DEBUG;
        }
    }
    return lq_log_level_current;
}

void lq_log(lq_log_level level, const char *fmt, ...) {
    static const char *tag[] = {"error", "warn", "info", "debug"};
    if ((int)level > lq_log_level_get()) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one fprintf per line so lines from several threads or ranks do not interleave */
    fprintf(stderr, "[%s] %s\n", tag[level], line);
}

/* ---- whole-file read ------------------------------------------------------------------ */
lq_status lq_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return lq_fail(errno == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(fp);
            return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        }
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) {
        free(buf);
        return lq_fail(LQ_ERR_IO, "%s: read error", path);
    }
    *data = buf;
    *size = len;
    return LQ_OK;
}

/* ---- atomic write ---------------------------------------------------------------------- */
lq_status lq_write_file_atomic(const char *path, const void *data, size_t len) {
    return lq_write_file_atomic_mode(path, data, len, 0644);
}

lq_status lq_write_file_atomic_mode(const char *path, const void *data, size_t len, unsigned mode) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lq_fail(LQ_ERR_ARG, "%s: path too long", path);
    /* created with its final mode, so a secret is never readable by others, not even briefly */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) return lq_fail(LQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return lq_fail(LQ_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        p += n;
        left -= (size_t)n;
    }
    /* close even when fsync fails, or the descriptor leaks on that error path */
    int sync_failed = fsync(fd) != 0, sync_errno = errno;
    int close_failed = close(fd) != 0;
    if (sync_failed || close_failed) {
        int e = sync_failed ? sync_errno : errno;
        unlink(tmp);
        return lq_fail(LQ_ERR_IO, "%s: fsync/close failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lq_fail(LQ_ERR_IO, "%s: rename to %s failed: %s", tmp, path, strerror(e));
    }
    /* the rename itself is durable only once the directory entry is synced */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return LQ_OK;
}

/* ---- checksums ----------------------------------------------------------------------------- */
/* FNV-1a, 64 bit: detects the corruption a blob can suffer on disk (truncation, flipped or
 * zeroed pages); it is not meant to resist an attacker. */
#define FNV64_OFFSET 0xcbf29ce484222325ull
static uint64_t fnv64_update(uint64_t h, const unsigned char *p, size_t len) {
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t lq_checksum64(const void *data, size_t len) { return fnv64_update(FNV64_OFFSET, data, len); }

lq_status lq_file_checksum(const char *path, uint64_t *out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lq_fail(LQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = FNV64_OFFSET;
    unsigned char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return lq_fail(LQ_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (n == 0) break;
        h = fnv64_update(h, buf, (size_t)n);
    }
    close(fd);
    *out = h;
    return LQ_OK;
}

lq_status lq_make_dirs(const char *path) {
    char buf[4096];
    if (!path[0]) return lq_fail(LQ_ERR_ARG, "an empty directory path"); /* buf + 1 below */
    /* the reason before the path: a path this long would push it out of the message */
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return lq_fail(LQ_ERR_ARG, "directory path too long (%zu bytes, at most %zu): %.80s…",
                       strlen(path), sizeof buf - 1, path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return lq_fail(LQ_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        struct stat sb;
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return lq_fail(LQ_ERR_IO, "%s: not a directory", buf);
        *p = saved;
        if (!saved) break;
    }
    return LQ_OK;
}
