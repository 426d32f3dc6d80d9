/* safetensors reader and writer.
 *
 * File layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data
 * section. The JSON maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets
 * relative to the data section) plus an optional "__metadata__" object of string values.
 *
 * The header is parsed with jansson because it keeps integers as exact 64-bit values (offsets
 * of multi-gigabyte shards do not survive a trip through a double) and can reject duplicate
 * keys. Every header is validated completely at open time so the rest of the program can
 * trust lq_st_tensor without re-checking: a malformed file is an error naming the file and
 * tensor, never a crash later. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; tensors are handed out in place without byte swaps"
#endif

/* The reference implementation refuses headers above 100 MB; so do we, so that a corrupt
 * length field cannot make us parse gigabytes of tensor data as JSON. */
#define ST_MAX_HEADER_BYTES 100000000ull
#define ST_METADATA_KEY "__metadata__"
#define ST_SINGLE_FILE_NAME "model.safetensors"
#define ST_INDEX_FILE_NAME "model.safetensors.index.json"

/* ---- small helpers --------------------------------------------------------------------- */
static char *string_copy(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

static char *path_join(const char *dir, const char *name) {
    size_t dir_len = strlen(dir), name_len = strlen(name);
    char *joined = malloc(dir_len + 1 + name_len + 1);
    if (!joined) return NULL;
    memcpy(joined, dir, dir_len);
    joined[dir_len] = '/';
    memcpy(joined + dir_len + 1, name, name_len + 1);
    return joined;
}

/* Directory part of a path ("." when there is none); caller frees. */
static char *path_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return string_copy(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (!dir) return NULL;
    memcpy(dir, path, len);
    dir[len] = 0;
    return dir;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Formats "[2, 2]" ("[]" for a scalar) into buf. */
static const char *format_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    used += (size_t)snprintf(buf + used, cap - used, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

/* Number of bytes of a tensor, failing on overflow. */
static int tensor_byte_count(lq_dtype dtype, int ndim, const int64_t *shape, size_t *out) {
    size_t bytes = lq_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX) return 0;
        if (__builtin_mul_overflow(bytes, (size_t)shape[i], &bytes)) return 0;
    }
    *out = bytes;
    return 1;
}

/* Appends a key/value pair to parallel arrays, growing them as needed. */
static int pair_list_push(char ***keys, char ***values, size_t *count, size_t *cap,
                          const char *key, const char *value) {
    if (*count == *cap) {
        size_t new_cap = *cap ? *cap * 2 : 8;
        char **new_keys = realloc(*keys, new_cap * sizeof *new_keys);
        if (!new_keys) return 0;
        *keys = new_keys;
        char **new_values = realloc(*values, new_cap * sizeof *new_values);
        if (!new_values) return 0;
        *values = new_values;
        *cap = new_cap;
    }
    char *key_copy = string_copy(key), *value_copy = string_copy(value);
    if (!key_copy || !value_copy) {
        free(key_copy);
        free(value_copy);
        return 0;
    }
    (*keys)[*count] = key_copy;
    (*values)[*count] = value_copy;
    (*count)++;
    return 1;
}

/* ======================================================================================= */
/* Reader                                                                                   */
/* ======================================================================================= */

typedef struct {
    char *path;
    const unsigned char *map;
    size_t map_len;
    int mapped;               /* map is our mmap (a file), not the caller's bytes */
} st_shard;

struct lq_st_file {
    char *path;               /* as given to lq_st_open */
    st_shard *shards;
    size_t shard_count;
    lq_st_tensor *tensors;    /* shard order, then data-section order within a shard */
    size_t tensor_count, tensor_cap;
    size_t *by_name;          /* tensor indices sorted by name, for lq_st_find */
    char **meta_keys, **meta_values;   /* file order; a key repeated in a later shard keeps */
    size_t meta_count, meta_cap;       /* the first shard's value and is listed once */
};

/* One header entry while a shard is being validated. */
typedef struct {
    char *name;
    lq_dtype dtype;
    int ndim;
    int64_t shape[LQ_MAX_DIMS];
    uint64_t begin, end;
    size_t header_position;   /* order in the JSON, to keep sorting stable */
} st_entry;

static int compare_entries_by_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->header_position < y->header_position ? -1 : x->header_position > y->header_position;
}

/* Reads a JSON value that must be a non-negative integer. */
static int json_non_negative(const json_t *value, uint64_t *out) {
    if (!json_is_integer(value) || json_integer_value(value) < 0) return 0;
    *out = (uint64_t)json_integer_value(value);
    return 1;
}

/* Validates one tensor entry of a header, except its place relative to other tensors. */
static lq_status parse_tensor_entry(const char *path, const char *name, json_t *entry,
                                    uint64_t data_len, st_entry *out) {
    if (!json_is_object(entry))
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);

    json_t *dtype_json = json_object_get(entry, "dtype");
    if (!dtype_json) return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': no dtype", path, name);
    if (!json_is_string(dtype_json))
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", path, name);
    lq_status st = lq_dtype_from_name(json_string_value(dtype_json), &out->dtype);
    if (st != LQ_OK) return lq_fail_context(st, "%s: tensor '%s'", path, name);

    json_t *shape_json = json_object_get(entry, "shape");
    if (!shape_json) return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': no shape", path, name);
    if (!json_is_array(shape_json))
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': shape is not an array", path, name);
    size_t ndim = json_array_size(shape_json);
    if (ndim > LQ_MAX_DIMS)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %zu dimensions, at most %d "
                       "are supported", path, name, ndim, LQ_MAX_DIMS);
    out->ndim = (int)ndim;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t dim;
        if (!json_non_negative(json_array_get(shape_json, i), &dim))
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative "
                           "integer", path, name, i);
        out->shape[i] = (int64_t)dim;
    }

    json_t *offsets_json = json_object_get(entry, "data_offsets");
    if (!offsets_json)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': no data_offsets", path, name);
    if (!json_is_array(offsets_json) || json_array_size(offsets_json) != 2 ||
        !json_non_negative(json_array_get(offsets_json, 0), &out->begin) ||
        !json_non_negative(json_array_get(offsets_json, 1), &out->end))
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': data_offsets is not an array of two "
                       "non-negative integers", path, name);
    if (out->begin > out->end)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before "
                       "they begin", path, name, (unsigned long long)out->begin,
                       (unsigned long long)out->end);

    char shape_text[256];
    format_shape(out->shape, out->ndim, shape_text, sizeof shape_text);
    size_t expected_bytes;
    if (!tensor_byte_count(out->dtype, out->ndim, out->shape, &expected_bytes))
        return lq_fail(LQ_ERR_RANGE, "%s: tensor '%s': shape %s x %s overflows the address "
                       "space", path, name, shape_text, lq_dtype_name(out->dtype));
    if ((uint64_t)expected_bytes != out->end - out->begin)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] do not match "
                       "shape %s x %s = %zu bytes", path, name, (unsigned long long)out->begin,
                       (unsigned long long)out->end, shape_text, lq_dtype_name(out->dtype),
                       expected_bytes);
    if (out->end > data_len)
        return lq_fail(LQ_ERR_RANGE, "%s: tensor '%s': data_offsets [%llu, %llu] run past the "
                       "end of the %llu-byte data section (truncated file?)", path, name,
                       (unsigned long long)out->begin, (unsigned long long)out->end,
                       (unsigned long long)data_len);
    return LQ_OK;
}

/* Checks that the tensors, sorted by offset, tile the data section exactly. The official
 * format requires it: no two tensors may share bytes, and no byte may belong to no tensor
 * (an uncovered gap is how a writer bug or a splice of two files usually shows). */
static lq_status check_tiling(const char *path, const st_entry *sorted, size_t count,
                              uint64_t data_len) {
    uint64_t covered_to = 0;
    const st_entry *previous = NULL;
    for (size_t i = 0; i < count; i++) {
        const st_entry *e = &sorted[i];
        if (e->begin < covered_to)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] "
                           "overlap", path, previous->name, (unsigned long long)previous->begin,
                           (unsigned long long)previous->end, e->name,
                           (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin > covered_to) {
            if (previous)
                return lq_fail(LQ_ERR_FORMAT, "%s: gap of %llu bytes between tensor '%s' (ends at "
                               "%llu) and tensor '%s' (begins at %llu); the data section must be "
                               "fully covered", path, (unsigned long long)(e->begin - covered_to),
                               previous->name, (unsigned long long)covered_to, e->name,
                               (unsigned long long)e->begin);
            return lq_fail(LQ_ERR_FORMAT, "%s: gap of %llu bytes before the first tensor '%s'; "
                           "the data section must be fully covered", path,
                           (unsigned long long)e->begin, e->name);
        }
        covered_to = e->end;
        previous = e;
    }
    if (covered_to != data_len)
        return lq_fail(LQ_ERR_FORMAT, "%s: the last %llu bytes of the data section belong to no "
                       "tensor; the data section must be fully covered", path,
                       (unsigned long long)(data_len - covered_to));
    return LQ_OK;
}

static lq_status add_metadata(lq_st_file *f, const char *path, json_t *metadata) {
    if (!json_is_object(metadata))
        return lq_fail(LQ_ERR_FORMAT, "%s: %s is not a JSON object", path, ST_METADATA_KEY);
    const char *key;
    json_t *value;
    json_object_foreach(metadata, key, value) {
        if (!json_is_string(value))
            return lq_fail(LQ_ERR_FORMAT, "%s: %s['%s'] is not a string", path, ST_METADATA_KEY,
                           key);
    }
    json_object_foreach(metadata, key, value) {
        /* a key already seen in an earlier shard keeps that shard's value */
        if (lq_st_metadata(f, key)) continue;
        if (!pair_list_push(&f->meta_keys, &f->meta_values, &f->meta_count, &f->meta_cap, key,
                            json_string_value(value)))
            return lq_fail(LQ_ERR_NOMEM, "%s: out of memory reading metadata", path);
    }
    return LQ_OK;
}

/* Appends an empty shard named path; lq_st_close releases it from then on. */
static lq_status add_shard(lq_st_file *f, const char *path, st_shard **out) {
    st_shard *grown = realloc(f->shards, (f->shard_count + 1) * sizeof *grown);
    if (!grown) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    f->shards = grown;
    st_shard *shard = &f->shards[f->shard_count];
    memset(shard, 0, sizeof *shard);
    shard->path = string_copy(path);
    if (!shard->path) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    f->shard_count++;
    *out = shard;
    return LQ_OK;
}

static lq_status parse_shard(lq_st_file *f, int shard_index);

/* Maps one shard, validates its header and appends its tensors and metadata to f. */
static lq_status load_shard(lq_st_file *f, const char *path) {
    st_shard *shard = NULL;
    lq_status added = add_shard(f, path, &shard);
    if (added != LQ_OK) return added;
    int shard_index = (int)(f->shard_count - 1);

    /* O_NONBLOCK: a FIFO given as a shard must be refused below, not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return lq_fail(errno == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int e = errno;
        close(fd);
        return lq_fail(LQ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        return lq_fail(LQ_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t file_size = (uint64_t)info.st_size;
    if (file_size > SIZE_MAX) {
        close(fd);
        return lq_fail(LQ_ERR_RANGE, "%s: file too large to map", path);
    }
    /* an empty file cannot be mapped; parse_shard reports it as too short */
    if (file_size > 0) {
        void *map = mmap(NULL, (size_t)file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        int map_errno = errno;
        if (map == MAP_FAILED) {
            close(fd);
            return lq_fail(LQ_ERR_IO, "%s: mmap failed: %s", path, strerror(map_errno));
        }
        shard->map = map;
        shard->map_len = (size_t)file_size;
        shard->mapped = 1;
    }
    close(fd);   /* the mapping keeps the file alive */
    return parse_shard(f, shard_index);
}

/* Validates the header of a shard whose bytes are in place and appends its tensors and
 * metadata to f. The one parser behind files and lq_st_open_memory. */
static lq_status parse_shard(lq_st_file *f, int shard_index) {
    const st_shard *shard = &f->shards[shard_index];
    const char *path = shard->path;
    uint64_t file_size = shard->map_len;
    if (file_size < 8)
        return lq_fail(LQ_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header "
                       "length of a safetensors file", path, (unsigned long long)file_size);

    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | shard->map[i];
    if (header_len < 2)
        return lq_fail(LQ_ERR_FORMAT, "%s: header length %llu is too small for a JSON object",
                       path, (unsigned long long)header_len);
    if (header_len > file_size - 8)
        return lq_fail(LQ_ERR_FORMAT, "%s: header length %llu exceeds the %llu bytes that follow "
                       "it (truncated or not a safetensors file?)", path,
                       (unsigned long long)header_len, (unsigned long long)(file_size - 8));
    if (header_len > ST_MAX_HEADER_BYTES)
        return lq_fail(LQ_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte limit", path,
                       (unsigned long long)header_len, ST_MAX_HEADER_BYTES);

    json_error_t json_error;
    /* JSON_DECODE_ANY so a valid non-object header gets the precise message below */
    json_t *header = json_loadb((const char *)shard->map + 8, (size_t)header_len,
                                JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &json_error);
    if (!header)
        return lq_fail(LQ_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s",
                       path, json_error.line, json_error.column, json_error.text);
    if (!json_is_object(header)) {
        json_decref(header);
        return lq_fail(LQ_ERR_FORMAT, "%s: header is JSON but not an object", path);
    }

    const unsigned char *data = shard->map + 8 + header_len;
    uint64_t data_len = file_size - 8 - header_len;
    lq_status st = LQ_OK;
    size_t entry_cap = json_object_size(header), entry_count = 0;
    st_entry *entries = calloc(entry_cap ? entry_cap : 1, sizeof *entries);
    if (!entries) {
        json_decref(header);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    }

    const char *name;
    json_t *value;
    json_object_foreach(header, name, value) {
        if (strcmp(name, ST_METADATA_KEY) == 0) {
            st = add_metadata(f, path, value);
            if (st != LQ_OK) goto done;
            continue;
        }
        st_entry *e = &entries[entry_count];
        st = parse_tensor_entry(path, name, value, data_len, e);
        if (st != LQ_OK) goto done;
        e->name = string_copy(name);
        if (!e->name) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        e->header_position = entry_count++;
    }

    qsort(entries, entry_count, sizeof *entries, compare_entries_by_offset);
    st = check_tiling(path, entries, entry_count, data_len);
    if (st != LQ_OK) goto done;

    if (f->tensor_count + entry_count > f->tensor_cap) {
        size_t new_cap = f->tensor_cap * 2;
        if (new_cap < f->tensor_count + entry_count) new_cap = f->tensor_count + entry_count;
        lq_st_tensor *tensors = realloc(f->tensors, new_cap * sizeof *tensors);
        if (!tensors) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        f->tensors = tensors;
        f->tensor_cap = new_cap;
    }
    for (size_t i = 0; i < entry_count; i++) {
        lq_st_tensor *t = &f->tensors[f->tensor_count++];
        memset(t, 0, sizeof *t);
        t->name = entries[i].name;
        entries[i].name = NULL;   /* ownership moves to f */
        t->dtype = entries[i].dtype;
        t->ndim = entries[i].ndim;
        memcpy(t->shape, entries[i].shape, sizeof t->shape);
        t->data = data + entries[i].begin;
        t->nbytes = (size_t)(entries[i].end - entries[i].begin);
        t->shard = shard_index;
    }

done:
    for (size_t i = 0; i < entry_count; i++) free(entries[i].name);
    free(entries);
    json_decref(header);
    return st;
}

typedef struct {
    const char *name;
    int shard;
    size_t index;
} st_name_ref;

static int compare_name_refs(const void *a, const void *b) {
    const st_name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->shard - y->shard;
}

/* Builds the name index and rejects a name stored in two shards. */
static lq_status build_name_index(lq_st_file *f) {
    size_t n = f->tensor_count;
    st_name_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    f->by_name = malloc((n ? n : 1) * sizeof *f->by_name);
    if (!refs || !f->by_name) {
        free(refs);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", f->path);
    }
    for (size_t i = 0; i < n; i++)
        refs[i] = (st_name_ref){f->tensors[i].name, f->tensors[i].shard, i};
    qsort(refs, n, sizeof *refs, compare_name_refs);
    for (size_t i = 0; i < n; i++) f->by_name[i] = refs[i].index;
    free(refs);
    for (size_t i = 1; i < n; i++) {
        const lq_st_tensor *a = &f->tensors[f->by_name[i - 1]], *b = &f->tensors[f->by_name[i]];
        if (strcmp(a->name, b->name) == 0)
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' is stored in two shards: %s and %s",
                           f->path, a->name, f->shards[a->shard].path, f->shards[b->shard].path);
    }
    return LQ_OK;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name in an index must name a file next to the index. */
static int is_plain_file_name(const char *name) {
    return name[0] && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

/* Sharded checkpoint: the index's weight_map names, for every tensor, the shard holding it.
 * Like Hugging Face transformers, tensors a shard holds beyond its weight_map entries are
 * still loaded; what must hold is that every listed tensor is where the index says it is. */
static lq_status load_index(lq_st_file *f, const char *index_path) {
    json_error_t json_error;
    json_t *index = json_load_file(index_path, JSON_REJECT_DUPLICATES, &json_error);
    if (!index)
        return lq_fail(LQ_ERR_FORMAT, "%s: not a valid JSON index (line %d, column %d): %s",
                       index_path, json_error.line, json_error.column, json_error.text);
    lq_status st = LQ_OK;
    const char **shard_names = NULL;
    char *directory = NULL, *shard_path = NULL;

    json_t *weight_map = json_is_object(index) ? json_object_get(index, "weight_map") : NULL;
    if (!json_is_object(weight_map)) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    size_t entry_count = json_object_size(weight_map);
    if (entry_count == 0) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    shard_names = malloc(entry_count * sizeof *shard_names);
    directory = path_directory(index_path);
    if (!shard_names || !directory) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }

    const char *tensor_name;
    json_t *shard_json;
    size_t name_count = 0;
    json_object_foreach(weight_map, tensor_name, shard_json) {
        if (!json_is_string(shard_json) || !is_plain_file_name(json_string_value(shard_json))) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: weight_map['%s'] is not a file name in the index's "
                         "directory", index_path, tensor_name);
            goto done;
        }
        shard_names[name_count++] = json_string_value(shard_json);
    }
    /* distinct shards, opened in sorted order so shard indices are deterministic */
    qsort(shard_names, name_count, sizeof *shard_names, compare_strings);
    for (size_t i = 0; i < name_count; i++) {
        if (i > 0 && strcmp(shard_names[i], shard_names[i - 1]) == 0) continue;
        shard_path = path_join(directory, shard_names[i]);
        if (!shard_path) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        st = load_shard(f, shard_path);
        if (st != LQ_OK) {
            if (st == LQ_ERR_NOT_FOUND)
                lq_fail_context(st, "%s names shard %s", index_path, shard_names[i]);
            goto done;
        }
        free(shard_path);
        shard_path = NULL;
    }

    st = build_name_index(f);
    if (st != LQ_OK) goto done;
    json_object_foreach(weight_map, tensor_name, shard_json) {
        const lq_st_tensor *t = lq_st_find(f, tensor_name);
        const char *shard_name = json_string_value(shard_json);
        if (!t) {
            st = lq_fail(LQ_ERR_NOT_FOUND, "%s: tensor '%s' is mapped to shard %s, which does not "
                         "contain it", index_path, tensor_name, shard_name);
            goto done;
        }
        const char *holder = f->shards[t->shard].path;
        const char *holder_base = strrchr(holder, '/') ? strrchr(holder, '/') + 1 : holder;
        if (strcmp(holder_base, shard_name) != 0) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' is mapped to shard %s but stored in %s",
                         index_path, tensor_name, shard_name, holder);
            goto done;
        }
    }

done:
    free(shard_path);
    free(directory);
    free(shard_names);
    json_decref(index);
    return st;
}

lq_status lq_st_open(const char *path, lq_st_file **out) {
    if (out) *out = NULL;
    if (!path || !out) return lq_fail(LQ_ERR_ARG, "lq_st_open: NULL path or output");

    struct stat info;
    if (stat(path, &info) != 0)
        return lq_fail(errno == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: %s", path,
                       strerror(errno));
    if (!S_ISDIR(info.st_mode) && !S_ISREG(info.st_mode))
        return lq_fail(LQ_ERR_IO, "%s: neither a regular file nor a directory", path);

    lq_st_file *f = calloc(1, sizeof *f);
    if (!f) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    f->path = string_copy(path);
    if (!f->path) {
        free(f);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    }

    lq_status st;
    if (S_ISDIR(info.st_mode)) {
        /* same preference as transformers: a single file wins over an index */
        char *single = path_join(path, ST_SINGLE_FILE_NAME);
        char *index = path_join(path, ST_INDEX_FILE_NAME);
        if (!single || !index)
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        else if (is_regular_file(single))
            st = load_shard(f, single);
        else if (is_regular_file(index))
            st = load_index(f, index);
        else
            st = lq_fail(LQ_ERR_NOT_FOUND, "%s: directory holds neither %s nor %s", path,
                         ST_SINGLE_FILE_NAME, ST_INDEX_FILE_NAME);
        free(single);
        free(index);
    } else if (ends_with(path, ".json")) {
        st = load_index(f, path);
    } else {
        st = load_shard(f, path);
    }
    /* load_index builds the name index itself, since it needs it for its own checks */
    if (st == LQ_OK && !f->by_name) st = build_name_index(f);
    if (st != LQ_OK) {
        lq_st_close(f);
        return st;
    }
    *out = f;
    return LQ_OK;
}

lq_status lq_st_open_memory(const void *bytes, size_t len, const char *name, lq_st_file **out) {
    if (out) *out = NULL;
    if ((!bytes && len) || !name || !out)
        return lq_fail(LQ_ERR_ARG, "lq_st_open_memory: NULL bytes, name or output");
    lq_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = string_copy(name))) {
        free(f);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", name);
    }
    st_shard *shard = NULL;
    lq_status st = add_shard(f, name, &shard);
    if (st == LQ_OK) {
        shard->map = bytes;
        shard->map_len = len;
        st = parse_shard(f, 0);
    }
    if (st == LQ_OK) st = build_name_index(f);
    if (st != LQ_OK) {
        lq_st_close(f);
        return st;
    }
    *out = f;
    return LQ_OK;
}

void lq_st_close(lq_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->shard_count; i++) {
        if (f->shards[i].mapped) munmap((void *)f->shards[i].map, f->shards[i].map_len);
        free(f->shards[i].path);
    }
    for (size_t i = 0; i < f->tensor_count; i++) free((char *)f->tensors[i].name);
    for (size_t i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->by_name);
    free(f->tensors);
    free(f->shards);
    free(f->path);
    free(f);
}

size_t lq_st_count(const lq_st_file *f) { return f ? f->tensor_count : 0; }

const lq_st_tensor *lq_st_at(const lq_st_file *f, size_t i) {
    return f && i < f->tensor_count ? &f->tensors[i] : NULL;
}

const lq_st_tensor *lq_st_find(const lq_st_file *f, const char *name) {
    if (!f || !name || !f->by_name) return NULL;
    size_t low = 0, high = f->tensor_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return &f->tensors[f->by_name[mid]];
        if (c < 0) low = mid + 1;
        else high = mid;
    }
    return NULL;
}

lq_status lq_st_require(const lq_st_file *f, const char *name, const lq_st_tensor **out) {
    if (!f || !name || !out) return lq_fail(LQ_ERR_ARG, "lq_st_require: NULL argument");
    *out = lq_st_find(f, name);
    if (!*out) return lq_fail(LQ_ERR_NOT_FOUND, "tensor '%s' not found in %s", name, f->path);
    return LQ_OK;
}

const char *lq_st_metadata(const lq_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

size_t lq_st_metadata_count(const lq_st_file *f) { return f ? f->meta_count : 0; }

void lq_st_metadata_at(const lq_st_file *f, size_t i, const char **key, const char **value) {
    int present = f && i < f->meta_count;
    if (key) *key = present ? f->meta_keys[i] : NULL;
    if (value) *value = present ? f->meta_values[i] : NULL;
}

/* ======================================================================================= */
/* Writer                                                                                   */
/* ======================================================================================= */

typedef struct {
    char *name;
    lq_dtype dtype;
    int ndim;
    int64_t shape[LQ_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_pending_tensor;

struct lq_st_writer {
    st_pending_tensor *tensors;
    size_t tensor_count, tensor_cap;
    size_t data_bytes;        /* sum of tensor sizes */
    char **meta_keys, **meta_values;
    size_t meta_count, meta_cap;
};

lq_status lq_st_writer_new(lq_st_writer **out) {
    if (!out) return lq_fail(LQ_ERR_ARG, "lq_st_writer_new: NULL output");
    *out = calloc(1, sizeof **out);
    return *out ? LQ_OK : lq_fail(LQ_ERR_NOMEM, "out of memory creating a safetensors writer");
}

/* jansson refuses strings that are not UTF-8; find out now rather than at write time. */
static int is_valid_json_string(const char *s) {
    json_t *probe = json_string(s);
    json_decref(probe);
    return probe != NULL;
}

lq_status lq_st_writer_add(lq_st_writer *w, const char *name, lq_dtype dtype, int ndim,
                           const int64_t *shape, const void *data) {
    if (!w || !name) return lq_fail(LQ_ERR_ARG, "lq_st_writer_add: NULL writer or name");
    if (strcmp(name, ST_METADATA_KEY) == 0)
        return lq_fail(LQ_ERR_ARG, "tensor name '%s' is reserved for metadata", name);
    if (!is_valid_json_string(name))
        return lq_fail(LQ_ERR_ARG, "tensor name '%s' is not valid UTF-8", name);
    if ((unsigned)dtype >= (unsigned)LQ_DTYPE_COUNT)
        return lq_fail(LQ_ERR_ARG, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > LQ_MAX_DIMS)
        return lq_fail(LQ_ERR_ARG, "tensor '%s': %d dimensions, expected 0..%d", name, ndim,
                       LQ_MAX_DIMS);
    if (ndim > 0 && !shape) return lq_fail(LQ_ERR_ARG, "tensor '%s': NULL shape", name);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return lq_fail(LQ_ERR_ARG, "tensor '%s': shape[%d] = %lld is negative", name, i,
                           (long long)shape[i]);
    size_t nbytes;
    size_t new_total;
    if (!tensor_byte_count(dtype, ndim, shape, &nbytes) ||
        __builtin_add_overflow(w->data_bytes, nbytes, &new_total))
        return lq_fail(LQ_ERR_RANGE, "tensor '%s': too large", name);
    if (nbytes > 0 && !data) return lq_fail(LQ_ERR_ARG, "tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->tensor_count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return lq_fail(LQ_ERR_ARG, "tensor '%s' added twice", name);

    if (w->tensor_count == w->tensor_cap) {
        size_t new_cap = w->tensor_cap ? w->tensor_cap * 2 : 16;
        st_pending_tensor *grown = realloc(w->tensors, new_cap * sizeof *grown);
        if (!grown) return lq_fail(LQ_ERR_NOMEM, "tensor '%s': out of memory", name);
        w->tensors = grown;
        w->tensor_cap = new_cap;
    }
    st_pending_tensor *t = &w->tensors[w->tensor_count];
    memset(t, 0, sizeof *t);
    t->name = string_copy(name);
    t->data = nbytes ? malloc(nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        free(t->name);
        free(t->data);
        return lq_fail(LQ_ERR_NOMEM, "tensor '%s': out of memory copying %zu bytes", name, nbytes);
    }
    if (nbytes) memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->data_bytes = new_total;
    w->tensor_count++;
    return LQ_OK;
}

lq_status lq_st_writer_metadata(lq_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return lq_fail(LQ_ERR_ARG, "lq_st_writer_metadata: NULL argument");
    if (!is_valid_json_string(key) || !is_valid_json_string(value))
        return lq_fail(LQ_ERR_ARG, "metadata '%s': key or value is not valid UTF-8", key);
    for (size_t i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta_keys[i], key) == 0)
            return lq_fail(LQ_ERR_ARG, "metadata key '%s' set twice", key);
    if (!pair_list_push(&w->meta_keys, &w->meta_values, &w->meta_count, &w->meta_cap, key, value))
        return lq_fail(LQ_ERR_NOMEM, "metadata '%s': out of memory", key);
    return LQ_OK;
}

/* Builds the header: __metadata__ first, then tensors in insertion order, laid out
 * contiguously in that same order. jansson keeps object keys in insertion order. */
static json_t *build_header(const lq_st_writer *w) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (w->meta_count > 0) {
        json_t *metadata = json_object();
        if (json_object_set_new(root, ST_METADATA_KEY, metadata) != 0) goto fail;
        for (size_t i = 0; i < w->meta_count; i++)
            if (json_object_set_new(metadata, w->meta_keys[i], json_string(w->meta_values[i])))
                goto fail;
    }
    size_t offset = 0;
    for (size_t i = 0; i < w->tensor_count; i++) {
        const st_pending_tensor *t = &w->tensors[i];
        json_t *shape = json_array();
        json_t *offsets = json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + t->nbytes));
        json_t *entry = json_pack("{s:s, s:o, s:o}", "dtype", lq_dtype_name(t->dtype), "shape",
                                  shape, "data_offsets", offsets);
        if (!entry || json_object_set_new(root, t->name, entry) != 0) goto fail;
        for (int d = 0; d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0)
                goto fail;
        offset += t->nbytes;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

lq_status lq_st_writer_write(lq_st_writer *w, const char *path) {
    if (!w || !path) return lq_fail(LQ_ERR_ARG, "lq_st_writer_write: NULL writer or path");
    json_t *header = build_header(w);
    char *header_text = header ? json_dumps(header, JSON_COMPACT) : NULL;
    json_decref(header);
    if (!header_text) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory building the header", path);

    /* spaces after the JSON make the data section start 8-byte aligned in the file, so
     * mapped tensors of 8-byte dtypes at offset 0 are naturally aligned */
    size_t header_len = strlen(header_text);
    size_t padded_len = (header_len + 7) & ~(size_t)7;
    size_t file_len = 8 + padded_len + w->data_bytes;
    unsigned char *buffer = malloc(file_len);
    if (!buffer) {
        free(header_text);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %zu bytes", path, file_len);
    }
    for (int i = 0; i < 8; i++) buffer[i] = (unsigned char)((uint64_t)padded_len >> (8 * i));
    memcpy(buffer + 8, header_text, header_len);
    memset(buffer + 8 + header_len, ' ', padded_len - header_len);
    free(header_text);
    unsigned char *cursor = buffer + 8 + padded_len;
    for (size_t i = 0; i < w->tensor_count; i++) {
        if (w->tensors[i].nbytes) memcpy(cursor, w->tensors[i].data, w->tensors[i].nbytes);
        cursor += w->tensors[i].nbytes;
    }
    lq_status st = lq_write_file_atomic(path, buffer, file_len);
    free(buffer);
    return st;
}

void lq_st_writer_free(lq_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->tensor_count; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->tensors);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}
