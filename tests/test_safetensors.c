/* safetensors tests: writer/reader round trip, sharded checkpoints, and malformed files,
 * each of which must give the expected status and a message naming the file, never a crash.
 * All files live in a mkdtemp directory that the group teardown removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "safetensors"
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

/* ---- fixture and file helpers ---------------------------------------------------------- */
/* Path of `name` inside the temp dir; a few rotating buffers so several can be live. */
static void make_subdir(const char *name) { assert_int_equal(mkdir(temp_path(name), 0755), 0); }

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size >= 0);
    rewind(fp);
    unsigned char *data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *len = (size_t)size;
    return data;
}

static void put_u64_le(unsigned char *out, uint64_t value) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(value >> (8 * i));
}

/* Writes length + header text exactly as given + data_len bytes of a counting pattern. */
static void write_raw_safetensors(const char *path, const char *header, size_t data_len) {
    size_t header_len = strlen(header);
    unsigned char *buffer = malloc(8 + header_len + data_len);
    assert_non_null(buffer);
    put_u64_le(buffer, header_len);
    memcpy(buffer + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) buffer[8 + header_len + i] = (unsigned char)i;
    write_file(path, buffer, 8 + header_len + data_len);
    free(buffer);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Opening `path` must fail with `expected`, leave *out NULL, and say which file (by
 * `named_file`, or path's own name when NULL) and, if given, `fragment`. */
static void expect_open_failure_naming(const char *path, lq_status expected,
                                       const char *named_file, const char *fragment) {
    lq_st_file *f = (lq_st_file *)&f;   /* any non-NULL value: must be reset */
    lq_clear_error();
    lq_status st = lq_st_open(path, &f);
    const char *message = lq_last_error();
    if (st != expected)
        fail_msg("%s: expected %s, got %s: %s", path, lq_status_name(expected),
                 lq_status_name(st), message);
    assert_null(f);
    print_message("    %s: %s\n", lq_status_name(st), message);   /* what a user would read */
    const char *file = named_file ? named_file : base_name(path);
    if (!strstr(message, file)) fail_msg("message does not name %s: %s", file, message);
    if (fragment && !strstr(message, fragment))
        fail_msg("message lacks \"%s\": %s", fragment, message);
}

static void expect_open_failure(const char *path, lq_status expected, const char *fragment) {
    expect_open_failure_naming(path, expected, NULL, fragment);
}

static void fill_pattern(unsigned char *data, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) data[i] = (unsigned char)(seed * 31u + i * 7u + (i >> 8));
}

/* ---- writer / reader round trip -------------------------------------------------------- */
typedef struct {
    const char *name;
    lq_dtype dtype;
    int ndim;
    int64_t shape[LQ_MAX_DIMS];
} tensor_spec;

/* Odd sizes (U8 [5], BOOL [3]) make later tensors unaligned in the file, as real files can. */
static const tensor_spec round_trip_specs[] = {
    {"model.layers.0.weight", LQ_DTYPE_F32, 2, {2, 3}},
    {"half", LQ_DTYPE_F16, 1, {4}},
    {"brain", LQ_DTYPE_BF16, 2, {2, 2}},
    {"bytes", LQ_DTYPE_U8, 1, {5}},
    {"double", LQ_DTYPE_F64, 1, {3}},
    {"scale", LQ_DTYPE_F32, 0, {0}},          /* 0-d scalar */
    {"empty", LQ_DTYPE_F32, 2, {0, 4}},       /* zero elements */
    {"flags", LQ_DTYPE_BOOL, 1, {3}},
    {"i64", LQ_DTYPE_I64, 3, {1, 2, 1}},
    {"i32", LQ_DTYPE_I32, 1, {2}},
    {"i16", LQ_DTYPE_I16, 1, {3}},
    {"i8", LQ_DTYPE_I8, 1, {1}},
    {"u64", LQ_DTYPE_U64, 1, {1}},
    {"u32", LQ_DTYPE_U32, 1, {2}},
    {"u16", LQ_DTYPE_U16, 8, {1, 1, 1, 1, 1, 1, 1, 3}},
    {"trailing.empty", LQ_DTYPE_BF16, 1, {0}},
};
#define ROUND_TRIP_COUNT (sizeof round_trip_specs / sizeof round_trip_specs[0])

static size_t spec_bytes(const tensor_spec *s) {
    size_t n = lq_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

/* Writes the specs (data from fill_pattern seeded by index) plus two metadata entries. */
static void write_spec_file(const char *path, const tensor_spec *specs, size_t count) {
    lq_st_writer *w = NULL;
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    for (size_t i = 0; i < count; i++) {
        unsigned char data[256];
        size_t n = spec_bytes(&specs[i]);
        assert_true(n <= sizeof data);
        fill_pattern(data, n, (unsigned)i);
        assert_int_equal(lq_st_writer_add(w, specs[i].name, specs[i].dtype, specs[i].ndim,
                                          specs[i].shape, data), LQ_OK);
    }
    assert_int_equal(lq_st_writer_metadata(w, "format", "pt"), LQ_OK);
    assert_int_equal(lq_st_writer_metadata(w, "note", "h\xc3\xa9llo \"quoted\""), LQ_OK);
    assert_int_equal(lq_st_writer_write(w, path), LQ_OK);
    lq_st_writer_free(w);
}

static void check_tensor_matches_spec(const lq_st_tensor *t, const tensor_spec *spec,
                                      unsigned seed, int shard) {
    assert_non_null(t);
    assert_string_equal(t->name, spec->name);
    assert_int_equal(t->dtype, spec->dtype);
    assert_int_equal(t->ndim, spec->ndim);
    for (int d = 0; d < spec->ndim; d++) assert_int_equal(t->shape[d], spec->shape[d]);
    assert_int_equal(t->nbytes, spec_bytes(spec));
    assert_int_equal(t->shard, shard);
    unsigned char expected[256];
    fill_pattern(expected, t->nbytes, seed);
    if (t->nbytes) assert_memory_equal(t->data, expected, t->nbytes);
}

static void test_round_trip(void **state) {
    (void)state;
    const char *path = temp_path("round_trip.safetensors");
    write_spec_file(path, round_trip_specs, ROUND_TRIP_COUNT);

    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(path, &f), LQ_OK);
    assert_int_equal(lq_st_count(f), ROUND_TRIP_COUNT);
    for (size_t i = 0; i < ROUND_TRIP_COUNT; i++) {
        /* tensors come back in file order, which the writer makes insertion order */
        check_tensor_matches_spec(lq_st_at(f, i), &round_trip_specs[i], (unsigned)i, 0);
        assert_ptr_equal(lq_st_find(f, round_trip_specs[i].name), lq_st_at(f, i));
    }
    assert_null(lq_st_at(f, ROUND_TRIP_COUNT));
    assert_null(lq_st_find(f, "absent"));

    const lq_st_tensor *t = NULL;
    assert_int_equal(lq_st_require(f, "half", &t), LQ_OK);
    assert_string_equal(t->name, "half");
    lq_clear_error();
    assert_int_equal(lq_st_require(f, "absent", &t), LQ_ERR_NOT_FOUND);
    assert_null(t);
    char expected_message[PATH_MAX + 64];
    snprintf(expected_message, sizeof expected_message, "tensor 'absent' not found in %s", path);
    assert_string_equal(lq_last_error(), expected_message);

    assert_int_equal(lq_st_metadata_count(f), 2);
    assert_string_equal(lq_st_metadata(f, "format"), "pt");
    assert_string_equal(lq_st_metadata(f, "note"), "h\xc3\xa9llo \"quoted\"");
    assert_null(lq_st_metadata(f, "absent"));
    const char *key, *value;
    lq_st_metadata_at(f, 1, &key, &value);
    assert_string_equal(key, "note");
    lq_st_metadata_at(f, 2, &key, &value);
    assert_null(key);
    assert_null(value);
    lq_st_close(f);

    /* raw layout: data section 8-byte aligned, header padded with spaces, valid JSON
     * whose first key is __metadata__ */
    size_t len;
    unsigned char *raw = read_file(path, &len);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | raw[i];
    assert_int_equal((8 + header_len) % 8, 0);
    json_error_t error;
    json_t *header = json_loadb((const char *)raw + 8, header_len, 0, &error);
    assert_non_null(header);
    assert_string_equal(json_object_iter_key(json_object_iter(header)), "__metadata__");
    json_decref(header);
    free(raw);

    /* no temporary file left behind by the atomic write */
    DIR *dir = opendir(temp_dir);
    assert_non_null(dir);
    for (struct dirent *entry; (entry = readdir(dir));)
        if (strstr(entry->d_name, ".tmp.")) fail_msg("leftover temporary file %s", entry->d_name);
    closedir(dir);
}

static void test_empty_file_round_trip(void **state) {
    (void)state;
    /* no tensors, no metadata: header "{}" padded to 8 bytes, nothing else */
    const char *path = temp_path("nothing.safetensors");
    lq_st_writer *w = NULL;
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    assert_int_equal(lq_st_writer_write(w, path), LQ_OK);
    lq_st_writer_free(w);
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    assert_int_equal(info.st_size, 16);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(path, &f), LQ_OK);
    assert_int_equal(lq_st_count(f), 0);
    assert_int_equal(lq_st_metadata_count(f), 0);
    assert_null(lq_st_find(f, "x"));
    lq_st_close(f);
}

static void test_reads_unpadded_third_party_layout(void **state) {
    (void)state;
    /* as another writer might produce it: no padding, tensors not in header order, extra
     * whitespace in the JSON, an unknown extra key in an entry (ignored, as upstream does) */
    const char *path = temp_path("third_party.safetensors");
    write_raw_safetensors(path,
                          "{ \"b\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [4, 7]},\n"
                          "  \"a\": {\"data_offsets\": [0, 4], \"shape\": [2], \"dtype\": \"BF16\","
                          " \"extra\": null} } ",
                          7);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(path, &f), LQ_OK);
    assert_int_equal(lq_st_count(f), 2);
    assert_string_equal(lq_st_at(f, 0)->name, "a");   /* file order */
    assert_string_equal(lq_st_at(f, 1)->name, "b");
    const unsigned char *b = lq_st_find(f, "b")->data;
    assert_int_equal(b[0], 4);
    assert_int_equal(b[2], 6);
    lq_st_close(f);
}

static void test_directory_with_single_file(void **state) {
    (void)state;
    make_subdir("single");
    write_spec_file(temp_path("single/model.safetensors"), round_trip_specs, 3);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(temp_path("single"), &f), LQ_OK);
    assert_int_equal(lq_st_count(f), 3);
    check_tensor_matches_spec(lq_st_find(f, "brain"), &round_trip_specs[2], 2, 0);
    lq_st_close(f);
}

/* ---- sharded checkpoints --------------------------------------------------------------- */
static const tensor_spec shard1_specs[] = {
    {"embed", LQ_DTYPE_BF16, 2, {4, 2}},
    {"layer.0.w", LQ_DTYPE_F32, 1, {3}},
};
static const tensor_spec shard2_specs[] = {
    {"layer.1.w", LQ_DTYPE_F16, 1, {5}},
    {"lm_head", LQ_DTYPE_F32, 2, {2, 2}},
};
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static const char *const valid_index_json =
    "{\"metadata\": {\"total_size\": 58},\n"
    " \"weight_map\": {\"lm_head\": \"" SHARD2 "\", \"embed\": \"" SHARD1 "\",\n"
    "                \"layer.1.w\": \"" SHARD2 "\", \"layer.0.w\": \"" SHARD1 "\"}}";

/* Creates <dir>/ with both shards and the given index text. */
static void write_sharded_checkpoint(const char *dir, const char *index_json) {
    char name[256];
    make_subdir(dir);
    snprintf(name, sizeof name, "%s/" SHARD1, dir);
    write_spec_file(temp_path(name), shard1_specs, 2);
    snprintf(name, sizeof name, "%s/" SHARD2, dir);
    write_spec_file(temp_path(name), shard2_specs, 2);
    snprintf(name, sizeof name, "%s/model.safetensors.index.json", dir);
    write_file(temp_path(name), index_json, strlen(index_json));
}

static void check_sharded(lq_st_file *f) {
    assert_int_equal(lq_st_count(f), 4);
    /* shards in file-name order, tensors in file order within each */
    check_tensor_matches_spec(lq_st_at(f, 0), &shard1_specs[0], 0, 0);
    check_tensor_matches_spec(lq_st_at(f, 1), &shard1_specs[1], 1, 0);
    check_tensor_matches_spec(lq_st_at(f, 2), &shard2_specs[0], 0, 1);
    check_tensor_matches_spec(lq_st_at(f, 3), &shard2_specs[1], 1, 1);
    check_tensor_matches_spec(lq_st_find(f, "lm_head"), &shard2_specs[1], 1, 1);
    /* both shards carry the same metadata keys; each key is reported once */
    assert_int_equal(lq_st_metadata_count(f), 2);
    assert_string_equal(lq_st_metadata(f, "format"), "pt");
}

static void test_sharded_open(void **state) {
    (void)state;
    write_sharded_checkpoint("sharded", valid_index_json);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(temp_path("sharded"), &f), LQ_OK);   /* the directory */
    check_sharded(f);
    lq_st_close(f);
    f = NULL;
    assert_int_equal(lq_st_open(temp_path("sharded/model.safetensors.index.json"), &f), LQ_OK);
    check_sharded(f);
    lq_clear_error();
    const lq_st_tensor *t;
    assert_int_equal(lq_st_require(f, "layer.2.w", &t), LQ_ERR_NOT_FOUND);
    assert_non_null(strstr(lq_last_error(), "model.safetensors.index.json"));
    lq_st_close(f);
}

static void test_sharded_unlisted_tensors_are_loaded(void **state) {
    (void)state;
    /* as in transformers, a shard's tensors missing from weight_map are still available */
    const char *index = "{\"weight_map\": {\"embed\": \"" SHARD1 "\", \"lm_head\": \"" SHARD2 "\"}}";
    write_sharded_checkpoint("partial_map", index);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(temp_path("partial_map"), &f), LQ_OK);
    check_sharded(f);
    lq_st_close(f);
}

static void test_sharded_missing_shard(void **state) {
    (void)state;
    const char *index = "{\"weight_map\": {\"embed\": \"" SHARD1 "\", \"layer.0.w\": \"" SHARD1
                        "\", \"x\": \"model-00003-of-00003.safetensors\"}}";
    write_sharded_checkpoint("missing_shard", index);
    expect_open_failure_naming(temp_path("missing_shard"), LQ_ERR_NOT_FOUND,
                               "model-00003-of-00003.safetensors", "index.json");
}

static void test_sharded_tensor_in_two_shards(void **state) {
    (void)state;
    /* shard 2 also holds "embed": write it with shard1's first spec added */
    write_sharded_checkpoint("two_shards", valid_index_json);
    const tensor_spec both[] = {shard2_specs[0], shard2_specs[1], shard1_specs[0]};
    write_spec_file(temp_path("two_shards/" SHARD2), both, 3);
    expect_open_failure_naming(temp_path("two_shards"), LQ_ERR_FORMAT, SHARD2,
                               "tensor 'embed' is stored in two shards");
    assert_non_null(strstr(lq_last_error(), SHARD1));
}

static void test_sharded_tensor_not_in_named_shard(void **state) {
    (void)state;
    const char *index = "{\"weight_map\": {\"embed\": \"" SHARD1 "\", \"ghost\": \"" SHARD2 "\"}}";
    write_sharded_checkpoint("ghost", index);
    expect_open_failure_naming(temp_path("ghost"), LQ_ERR_NOT_FOUND,
                               "model.safetensors.index.json", "tensor 'ghost'");
}

static void test_sharded_tensor_in_wrong_shard(void **state) {
    (void)state;
    const char *index = "{\"weight_map\": {\"embed\": \"" SHARD2 "\", \"lm_head\": \"" SHARD1
                        "\"}}";
    write_sharded_checkpoint("wrong_shard", index);
    expect_open_failure_naming(temp_path("wrong_shard"), LQ_ERR_FORMAT,
                               "model.safetensors.index.json", "but stored in");
}

static void test_sharded_bad_index(void **state) {
    (void)state;
    static const struct {
        const char *dir, *index;
        const char *fragment;
    } cases[] = {
        {"index_not_json", "{\"weight_map\": ", "not a valid JSON index"},
        {"index_no_weight_map", "{\"metadata\": {}}", "weight_map"},
        {"index_empty_map", "{\"weight_map\": {}}", "weight_map is empty"},
        {"index_array", "[]", "weight_map"},
        {"index_value_not_string", "{\"weight_map\": {\"embed\": 1}}", "weight_map['embed']"},
        {"index_path_escape", "{\"weight_map\": {\"embed\": \"../" SHARD1 "\"}}",
         "weight_map['embed']"},
        {"index_duplicate", "{\"weight_map\": {\"embed\": \"" SHARD1 "\", \"embed\": \"" SHARD1
         "\"}}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_sharded_checkpoint(cases[i].dir, cases[i].index);
        expect_open_failure_naming(temp_path(cases[i].dir), LQ_ERR_FORMAT,
                                   "model.safetensors.index.json", cases[i].fragment);
    }
}

static void test_sharded_bad_shard_names_the_shard(void **state) {
    (void)state;
    write_sharded_checkpoint("bad_shard", valid_index_json);
    write_raw_safetensors(temp_path("bad_shard/" SHARD2), "{\"lm_head\": 7}", 0);
    expect_open_failure_naming(temp_path("bad_shard"), LQ_ERR_FORMAT, SHARD2,
                               "tensor 'lm_head'");
}

static void test_missing_paths(void **state) {
    (void)state;
    expect_open_failure(temp_path("no_such.safetensors"), LQ_ERR_NOT_FOUND, NULL);
    make_subdir("empty_dir");
    expect_open_failure(temp_path("empty_dir"), LQ_ERR_NOT_FOUND, "holds neither");
}

static void test_special_files_refused(void **state) {
    (void)state;
    /* a FIFO must be refused, not block the open forever */
    assert_int_equal(mkfifo(temp_path("fifo.safetensors"), 0644), 0);
    expect_open_failure(temp_path("fifo.safetensors"), LQ_ERR_IO, "neither a regular file");
    write_sharded_checkpoint("fifo_shard", valid_index_json);
    assert_int_equal(unlink(temp_path("fifo_shard/" SHARD2)), 0);
    assert_int_equal(mkfifo(temp_path("fifo_shard/" SHARD2), 0644), 0);
    expect_open_failure_naming(temp_path("fifo_shard"), LQ_ERR_IO, SHARD2, "not a regular file");
}

/* ---- malformed single files ------------------------------------------------------------ */
static void test_empty_file(void **state) {
    (void)state;
    const char *path = temp_path("empty.safetensors");
    write_file(path, "", 0);
    expect_open_failure(path, LQ_ERR_FORMAT, "0 bytes");
}

static void test_truncated_before_header_length(void **state) {
    (void)state;
    const char *path = temp_path("five_bytes.safetensors");
    write_file(path, "\x10\0\0\0\0", 5);
    expect_open_failure(path, LQ_ERR_FORMAT, "5 bytes");
}

static void test_header_length_beyond_file(void **state) {
    (void)state;
    const char *path = temp_path("long_header.safetensors");
    unsigned char bytes[10];
    put_u64_le(bytes, 1000);
    memcpy(bytes + 8, "{}", 2);
    write_file(path, bytes, sizeof bytes);
    expect_open_failure(path, LQ_ERR_FORMAT, "header length 1000 exceeds");
    /* a length with the top bit set must not wrap around in the comparison */
    put_u64_le(bytes, UINT64_MAX - 3);
    write_file(path, bytes, sizeof bytes);
    expect_open_failure(path, LQ_ERR_FORMAT, "exceeds");
}

static void test_header_length_too_small(void **state) {
    (void)state;
    const char *path = temp_path("tiny_header.safetensors");
    unsigned char bytes[9];
    put_u64_le(bytes, 1);
    bytes[8] = '{';
    write_file(path, bytes, sizeof bytes);
    expect_open_failure(path, LQ_ERR_FORMAT, "too small");
}

static void test_header_over_size_limit(void **state) {
    (void)state;
    /* a sparse file, so the test costs no disk: length 100,000,001 with that much after it */
    const char *path = temp_path("huge_header.safetensors");
    const uint64_t header_len = 100000001;
    unsigned char prefix[9];
    put_u64_le(prefix, header_len);
    prefix[8] = '{';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, prefix, sizeof prefix), (ssize_t)sizeof prefix);
    assert_int_equal(ftruncate(fd, (off_t)(8 + header_len)), 0);
    close(fd);
    expect_open_failure(path, LQ_ERR_FORMAT, "limit");
    unlink(path);
}

static void test_truncated_data_section(void **state) {
    (void)state;
    const char *path = temp_path("truncated_data.safetensors");
    write_spec_file(path, round_trip_specs, 5);
    size_t len;
    unsigned char *raw = read_file(path, &len);
    write_file(path, raw, len - 3);
    free(raw);
    expect_open_failure(path, LQ_ERR_RANGE, "truncated file?");
}

/* Every proper prefix of a valid file is invalid and must be reported, not crash. */
static void test_every_truncation(void **state) {
    (void)state;
    const char *source = temp_path("prefix_source.safetensors");
    const char *path = temp_path("prefix.safetensors");
    write_spec_file(source, round_trip_specs, 4);   /* last tensor (U8 [5]) is non-empty */
    size_t len;
    unsigned char *raw = read_file(source, &len);
    write_file(path, raw, len);
    /* shrink one file in place, longest prefix first: rewriting a truncated file each time
     * makes ext4 flush it on every close (auto_da_alloc), which is slow on a busy disk */
    for (size_t cut = len; cut-- > 0;) {
        assert_int_equal(truncate(path, (off_t)cut), 0);
        lq_st_file *f = NULL;
        lq_clear_error();
        lq_status st = lq_st_open(path, &f);
        if (st == LQ_OK) fail_msg("prefix of %zu of %zu bytes opened", cut, len);
        assert_null(f);
        assert_non_null(strstr(lq_last_error(), "prefix.safetensors"));
    }
    free(raw);
}

static volatile unsigned checksum_sink;

/* Header bytes overwritten with JSON-significant characters: whatever the outcome, no crash
 * (ASan/UBSan builds check memory), and any failure names the file. */
static void test_header_mutations(void **state) {
    (void)state;
    const char *source = temp_path("mutation_source.safetensors");
    const char *path = temp_path("mutated.safetensors");
    write_spec_file(source, round_trip_specs, ROUND_TRIP_COUNT);
    size_t len;
    unsigned char *raw = read_file(source, &len);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | raw[i];
    static const unsigned char replacements[] = {'{', '}', '[', ']', '"', ',', ':', '-', '0',
                                                 '9', ' ', 'e', 0x00, 0xff, 0x80};
    int opened = 0, refused = 0;
    /* bytes are changed in place with pwrite, for the reason given in test_every_truncation */
    write_file(path, raw, len);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    for (size_t pos = 0; pos < 8 + header_len; pos++) {
        unsigned char original = raw[pos];
        for (size_t r = 0; r < sizeof replacements; r++) {
            if (replacements[r] == original) continue;
            assert_int_equal(pwrite(fd, &replacements[r], 1, (off_t)pos), 1);
            lq_st_file *f = NULL;
            lq_clear_error();
            if (lq_st_open(path, &f) == LQ_OK) {
                /* touch every byte of every tensor: ASan reports any that lies outside */
                for (size_t i = 0; i < lq_st_count(f); i++) {
                    const lq_st_tensor *t = lq_st_at(f, i);
                    for (size_t b = 0; b < t->nbytes; b++)
                        checksum_sink += ((const unsigned char *)t->data)[b];
                }
                lq_st_close(f);
                opened++;
            } else {
                assert_null(f);
                if (!strstr(lq_last_error(), "mutated.safetensors"))
                    fail_msg("byte %zu -> 0x%02x: message does not name the file: %s", pos,
                             replacements[r], lq_last_error());
                refused++;
            }
        }
        assert_int_equal(pwrite(fd, &original, 1, (off_t)pos), 1);
    }
    close(fd);
    free(raw);
    assert_true(refused > 0);
    print_message("header mutations: %d opened, %d refused\n", opened, refused);
}

/* Headers with a defect each; the data section holds data_len bytes. */
typedef struct {
    const char *name;
    const char *header;
    size_t data_len;
    lq_status expected;
    const char *fragment;
} malformed_case;

#define F32_ENTRY(name, shape, begin, end) \
    "\"" name "\": {\"dtype\": \"F32\", \"shape\": " shape ", \"data_offsets\": [" #begin ", " #end "]}"

static const malformed_case malformed_cases[] = {
    {"header_not_json", "{\"w\": {\"dtype\": ", 0, LQ_ERR_FORMAT, "not valid JSON (line 1"},
    {"header_garbage", "\x01\x02garbage", 0, LQ_ERR_FORMAT, "not valid JSON"},
    {"header_array", "[1, 2, 3]", 0, LQ_ERR_FORMAT, "not an object"},
    {"header_string", "\"just a string\"", 0, LQ_ERR_FORMAT, "not an object"},
    {"header_invalid_utf8", "{\"\xff\xfe\": 1}", 0, LQ_ERR_FORMAT, "not valid JSON"},
    {"duplicate_tensor", "{" F32_ENTRY("w", "[1]", 0, 4) ", " F32_ENTRY("w", "[1]", 4, 8) "}", 8,
     LQ_ERR_FORMAT, "duplicate"},
    {"entry_not_object", "{\"w\": [1, 2]}", 0, LQ_ERR_FORMAT, "tensor 'w': entry is not a JSON object"},
    {"unknown_dtype", "{\"w\": {\"dtype\": \"F7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     LQ_ERR_UNSUPPORTED, "tensor 'w': unknown dtype 'F7'"},
    {"dtype_not_string", "{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     LQ_ERR_FORMAT, "tensor 'w': dtype is not a string"},
    {"missing_dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, LQ_ERR_FORMAT,
     "tensor 'w': no dtype"},
    {"missing_shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, LQ_ERR_FORMAT,
     "tensor 'w': no shape"},
    {"shape_negative", "{" F32_ENTRY("w", "[2, -1]", 0, 4) "}", 4, LQ_ERR_FORMAT,
     "tensor 'w': shape[1] is not a non-negative integer"},
    {"shape_not_array", "{" F32_ENTRY("w", "4", 0, 16) "}", 16, LQ_ERR_FORMAT,
     "tensor 'w': shape is not an array"},
    {"shape_not_integer", "{" F32_ENTRY("w", "[2.0]", 0, 8) "}", 8, LQ_ERR_FORMAT,
     "tensor 'w': shape[0]"},
    {"shape_too_many_dims", "{" F32_ENTRY("w", "[1, 1, 1, 1, 1, 1, 1, 1, 1]", 0, 4) "}", 4,
     LQ_ERR_UNSUPPORTED, "9 dimensions"},
    {"shape_overflow", "{" F32_ENTRY("w", "[4294967296, 4294967296, 16]", 0, 4) "}", 4,
     LQ_ERR_RANGE, "overflows"},
    {"missing_data_offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, LQ_ERR_FORMAT,
     "tensor 'w': no data_offsets"},
    {"data_offsets_three", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
     4, LQ_ERR_FORMAT, "tensor 'w': data_offsets is not an array of two"},
    {"data_offsets_negative", "{" F32_ENTRY("w", "[1]", -4, 0) "}", 4, LQ_ERR_FORMAT,
     "tensor 'w': data_offsets"},
    {"data_offsets_reversed", "{" F32_ENTRY("w", "[1]", 8, 4) "}", 8, LQ_ERR_FORMAT,
     "tensor 'w': data_offsets [8, 4] end before they begin"},
    {"data_offsets_out_of_range", "{" F32_ENTRY("a", "[2]", 0, 8) ", " F32_ENTRY("b", "[2]", 16, 24) "}",
     16, LQ_ERR_RANGE, "tensor 'b': data_offsets [16, 24] run past the end of the 16-byte data section"},
    {"data_offsets_huge", "{" F32_ENTRY("w", "[1]", 9223372036854775800, 9223372036854775804) "}", 4,
     LQ_ERR_RANGE, "tensor 'w'"},
    {"shape_bytes_mismatch", "{" F32_ENTRY("w", "[2, 2]", 0, 12) "}", 12, LQ_ERR_FORMAT,
     "tensor 'w': data_offsets [0, 12] do not match shape [2, 2] x F32 = 16 bytes"},
    {"overlapping_tensors", "{" F32_ENTRY("a", "[2]", 0, 8) ", " F32_ENTRY("b", "[2]", 4, 12) "}", 12,
     LQ_ERR_FORMAT, "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
    {"same_range_twice", "{" F32_ENTRY("a", "[1]", 0, 4) ", " F32_ENTRY("b", "[1]", 0, 4) "}", 4,
     LQ_ERR_FORMAT, "overlap"},
    {"gap_between_tensors", "{" F32_ENTRY("a", "[1]", 0, 4) ", " F32_ENTRY("b", "[1]", 8, 12) "}", 12,
     LQ_ERR_FORMAT, "gap of 4 bytes between tensor 'a'"},
    {"gap_before_first", "{" F32_ENTRY("a", "[1]", 4, 8) "}", 8, LQ_ERR_FORMAT,
     "gap of 4 bytes before the first tensor 'a'"},
    {"uncovered_tail", "{" F32_ENTRY("a", "[1]", 0, 4) "}", 8, LQ_ERR_FORMAT,
     "the last 4 bytes of the data section belong to no tensor"},
    {"bytes_without_tensors", "{}", 3, LQ_ERR_FORMAT, "the last 3 bytes"},
    {"metadata_non_string", "{\"__metadata__\": {\"format\": \"pt\", \"epoch\": 3}, "
     F32_ENTRY("a", "[1]", 0, 4) "}", 4, LQ_ERR_FORMAT, "__metadata__['epoch'] is not a string"},
    {"metadata_not_object", "{\"__metadata__\": \"pt\"}", 0, LQ_ERR_FORMAT,
     "__metadata__ is not a JSON object"},
};
#define MALFORMED_COUNT (sizeof malformed_cases / sizeof malformed_cases[0])

static void run_malformed_case(void **state) {
    const malformed_case *c = *state;
    char file_name[128];
    snprintf(file_name, sizeof file_name, "%s.safetensors", c->name);
    const char *path = temp_path(file_name);
    write_raw_safetensors(path, c->header, c->data_len);
    expect_open_failure(path, c->expected, c->fragment);
}

/* ---- writer argument checks ------------------------------------------------------------ */
static void expect_writer_error(lq_status got, lq_status expected, const char *fragment) {
    if (got != expected)
        fail_msg("expected %s, got %s: %s", lq_status_name(expected), lq_status_name(got),
                 lq_last_error());
    if (!strstr(lq_last_error(), fragment))
        fail_msg("message lacks \"%s\": %s", fragment, lq_last_error());
}

static void test_writer_rejects_bad_input(void **state) {
    (void)state;
    lq_st_writer *w = NULL;
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    const int64_t shape[2] = {2, 2};
    const float data[4] = {1, 2, 3, 4};
    assert_int_equal(lq_st_writer_add(w, "w", LQ_DTYPE_F32, 2, shape, data), LQ_OK);

    expect_writer_error(lq_st_writer_add(w, "w", LQ_DTYPE_F32, 2, shape, data), LQ_ERR_ARG,
                        "tensor 'w' added twice");
    expect_writer_error(lq_st_writer_add(w, "bad", LQ_DTYPE_COUNT, 2, shape, data), LQ_ERR_ARG,
                        "tensor 'bad': invalid dtype");
    expect_writer_error(lq_st_writer_add(w, "bad", (lq_dtype)-1, 2, shape, data), LQ_ERR_ARG,
                        "tensor 'bad': invalid dtype");
    const int64_t negative[2] = {2, -2};
    expect_writer_error(lq_st_writer_add(w, "neg", LQ_DTYPE_F32, 2, negative, data), LQ_ERR_ARG,
                        "tensor 'neg': shape[1] = -2 is negative");
    const int64_t many[LQ_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    expect_writer_error(lq_st_writer_add(w, "deep", LQ_DTYPE_F32, LQ_MAX_DIMS + 1, many, data),
                        LQ_ERR_ARG, "tensor 'deep'");
    expect_writer_error(lq_st_writer_add(w, "__metadata__", LQ_DTYPE_F32, 2, shape, data),
                        LQ_ERR_ARG, "reserved");
    expect_writer_error(lq_st_writer_add(w, "nodata", LQ_DTYPE_F32, 2, shape, NULL), LQ_ERR_ARG,
                        "tensor 'nodata': NULL data");
    expect_writer_error(lq_st_writer_add(w, "\xff", LQ_DTYPE_F32, 2, shape, data), LQ_ERR_ARG,
                        "UTF-8");
    const int64_t huge[3] = {INT64_MAX, INT64_MAX, 4};
    expect_writer_error(lq_st_writer_add(w, "huge", LQ_DTYPE_F32, 3, huge, data), LQ_ERR_RANGE,
                        "tensor 'huge'");
    /* an empty tensor needs no data */
    const int64_t empty[1] = {0};
    assert_int_equal(lq_st_writer_add(w, "empty", LQ_DTYPE_F32, 1, empty, NULL), LQ_OK);

    assert_int_equal(lq_st_writer_metadata(w, "k", "v"), LQ_OK);
    expect_writer_error(lq_st_writer_metadata(w, "k", "v2"), LQ_ERR_ARG, "metadata key 'k' set twice");

    /* a failed write names the file and leaves nothing behind */
    char missing_dir_path[PATH_MAX + 64];
    snprintf(missing_dir_path, sizeof missing_dir_path, "%s/no_such_dir/out.safetensors",
             temp_dir);
    expect_writer_error(lq_st_writer_write(w, missing_dir_path), LQ_ERR_IO, "out.safetensors");

    /* the rejected calls left the writer intact */
    const char *path = temp_path("after_errors.safetensors");
    assert_int_equal(lq_st_writer_write(w, path), LQ_OK);
    lq_st_writer_free(w);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(path, &f), LQ_OK);
    assert_int_equal(lq_st_count(f), 2);
    assert_memory_equal(lq_st_find(f, "w")->data, data, sizeof data);
    assert_string_equal(lq_st_metadata(f, "k"), "v");
    lq_st_close(f);
    lq_st_writer_free(NULL);
    lq_st_close(NULL);
}

int main(void) {
    static const struct CMUnitTest fixed_tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_file_round_trip),
        cmocka_unit_test(test_reads_unpadded_third_party_layout),
        cmocka_unit_test(test_directory_with_single_file),
        cmocka_unit_test(test_sharded_open),
        cmocka_unit_test(test_sharded_unlisted_tensors_are_loaded),
        cmocka_unit_test(test_sharded_missing_shard),
        cmocka_unit_test(test_sharded_tensor_in_two_shards),
        cmocka_unit_test(test_sharded_tensor_not_in_named_shard),
        cmocka_unit_test(test_sharded_tensor_in_wrong_shard),
        cmocka_unit_test(test_sharded_bad_index),
        cmocka_unit_test(test_sharded_bad_shard_names_the_shard),
        cmocka_unit_test(test_missing_paths),
        cmocka_unit_test(test_special_files_refused),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_truncated_before_header_length),
        cmocka_unit_test(test_header_length_beyond_file),
        cmocka_unit_test(test_header_length_too_small),
        cmocka_unit_test(test_header_over_size_limit),
        cmocka_unit_test(test_truncated_data_section),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_header_mutations),
        cmocka_unit_test(test_writer_rejects_bad_input),
    };
    enum { FIXED = sizeof fixed_tests / sizeof fixed_tests[0] };
    /* one named test per malformed-header case, so a failure says which case */
    static struct CMUnitTest tests[FIXED + MALFORMED_COUNT];
    memcpy(tests, fixed_tests, sizeof fixed_tests);
    for (size_t i = 0; i < MALFORMED_COUNT; i++)
        tests[FIXED + i] = (struct CMUnitTest){.name = malformed_cases[i].name,
                                               .test_func = run_malformed_case,
                                               .initial_state = (void *)&malformed_cases[i]};
    return _cmocka_run_group_tests("safetensors", tests, FIXED + MALFORMED_COUNT,
                                   create_temp_dir, remove_temp_dir);
}
