/* safetensors reading (mmap; single file or sharded via model.safetensors.index.json) and
 * writing (temporary name, fsync, rename). Format: 8-byte little-endian header length N,
 * N bytes of JSON {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str:str}},
 * then the data section; offsets are relative to the data section. */
#ifndef LQ_SAFETENSORS_H
#define LQ_SAFETENSORS_H

#include "lq_common.h"

#define LQ_MAX_DIMS 8

typedef struct {
    const char *name;
    lq_dtype dtype;
    int ndim;
    int64_t shape[LQ_MAX_DIMS];
    const void *data;      /* points into the mapping; valid until lq_st_close */
    size_t nbytes;
    int shard;             /* index of the shard file holding it */
} lq_st_tensor;

typedef struct lq_st_file lq_st_file;

/* path: a .safetensors file, a model.safetensors.index.json, or a directory holding either
 * model.safetensors or model.safetensors.index.json. Validates every header fully: JSON
 * well-formed, dtype known, shape non-negative, offsets in bounds, non-overlapping and
 * covering, shape × dtype size = byte length, duplicate names across shards. */
lq_status lq_st_open(const char *path, lq_st_file **out);
/* The same validation over one file's bytes already in memory (a fuzzer's input, a file that
 * arrived another way); name stands for the file in messages. The tensors point into bytes,
 * which must outlive the handle. */
lq_status lq_st_open_memory(const void *bytes, size_t len, const char *name, lq_st_file **out);
void lq_st_close(lq_st_file *f);
size_t lq_st_count(const lq_st_file *f);
const lq_st_tensor *lq_st_at(const lq_st_file *f, size_t i);
const lq_st_tensor *lq_st_find(const lq_st_file *f, const char *name);   /* NULL if absent */
/* Like lq_st_find but fails with a message naming the tensor and file. */
lq_status lq_st_require(const lq_st_file *f, const char *name, const lq_st_tensor **out);
/* __metadata__ value for key (first shard holding it), NULL if absent. */
const char *lq_st_metadata(const lq_st_file *f, const char *key);
size_t lq_st_metadata_count(const lq_st_file *f);
void lq_st_metadata_at(const lq_st_file *f, size_t i, const char **key, const char **value);

/* Writer: tensors are copied in; the file is written to path.tmp.<pid>, fsynced, renamed. */
typedef struct lq_st_writer lq_st_writer;
lq_status lq_st_writer_new(lq_st_writer **out);
lq_status lq_st_writer_add(lq_st_writer *w, const char *name, lq_dtype dtype, int ndim,
                           const int64_t *shape, const void *data);
lq_status lq_st_writer_metadata(lq_st_writer *w, const char *key, const char *value);
lq_status lq_st_writer_write(lq_st_writer *w, const char *path);
void lq_st_writer_free(lq_st_writer *w);

#endif
