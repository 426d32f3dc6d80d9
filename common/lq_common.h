/* liftquant common/: logging, dtypes, atomic file writes, and (re-exported from
 * kernels/lq_base.h) status codes, error messages, clock and RNG. */
#ifndef LQ_COMMON_H
#define LQ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#include "lq_base.h"

/* Logging to stderr. Level from LQ_LOG (error|warn|info|debug), default info. */
typedef enum { LQ_LOG_ERROR = 0, LQ_LOG_WARN, LQ_LOG_INFO, LQ_LOG_DEBUG } lq_log_level;
void lq_log(lq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lq_log_set_level(lq_log_level level);
#define LQ_ERROR(...) lq_log(LQ_LOG_ERROR, __VA_ARGS__)
#define LQ_WARN(...)  lq_log(LQ_LOG_WARN, __VA_ARGS__)
#define LQ_INFO(...)  lq_log(LQ_LOG_INFO, __VA_ARGS__)
#define LQ_DEBUG(...) lq_log(LQ_LOG_DEBUG, __VA_ARGS__)


/* ---- dtypes ------------------------------------------------------------------------ */
typedef enum {
    LQ_DTYPE_F64, LQ_DTYPE_F32, LQ_DTYPE_F16, LQ_DTYPE_BF16,
    LQ_DTYPE_I64, LQ_DTYPE_I32, LQ_DTYPE_I16, LQ_DTYPE_I8,
    LQ_DTYPE_U64, LQ_DTYPE_U32, LQ_DTYPE_U16, LQ_DTYPE_U8, LQ_DTYPE_BOOL,
    LQ_DTYPE_COUNT
} lq_dtype;

size_t lq_dtype_size(lq_dtype t);
const char *lq_dtype_name(lq_dtype t);               /* safetensors spelling: "F32", "BF16", … */
lq_status lq_dtype_from_name(const char *name, lq_dtype *out);

/* (The scalar f16/bf16 <-> f32 conversions are kernels/lq_base.h's, re-exported here.) */

/* Converts n elements of a float dtype (F32/F16/BF16/F64) to f32. */
lq_status lq_convert_to_f32(lq_dtype src_type, const void *src, float *dst, size_t n);
lq_status lq_convert_from_f32(lq_dtype dst_type, const float *src, void *dst, size_t n);

/* Reads a whole file into *data (malloc'ed, free(); not NUL-terminated) and its length. */
lq_status lq_read_file(const char *path, char **data, size_t *size);

/* mkdir -p: creates path and every missing directory above it (mode 0777 before the umask);
 * LQ_ERR_IO naming the component that could not be created or is not a directory. */
lq_status lq_make_dirs(const char *path);

/* Writes `len` bytes to path atomically: path.tmp.<pid>, fsync, rename, fsync(dir). */
lq_status lq_write_file_atomic(const char *path, const void *data, size_t len);
/* The same with the new file's permission bits (before the umask), e.g. 0600 for a secret. */
lq_status lq_write_file_atomic_mode(const char *path, const void *data, size_t len, unsigned mode);

/* FNV-1a 64 of a buffer, and of a whole file (equal for equal bytes). */
uint64_t lq_checksum64(const void *data, size_t len);
lq_status lq_file_checksum(const char *path, uint64_t *out);

#endif
