/* Fuzz target: the safetensors header parser (common/safetensors.c) through
 * lq_st_open_memory, the same validation lq_st_open runs on a mapped file. An accepted file
 * must keep the promises safetensors.h makes: every tensor inside the data section with
 * shape × dtype bytes, found by its name, metadata found by its key. */
#include "fuzz_common.h"
#include "safetensors.h"

#include <string.h>

int lq_fuzz_accepted;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    lq_st_file *f;
    lq_status st = lq_st_open_memory(data, size, "fuzz.safetensors", &f);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        LQ_FUZZ_CHECK(f == NULL);
        return 0;
    }
    lq_fuzz_accepted = 1;
    const uint8_t *end = data + size;
    for (size_t i = 0; i < lq_st_count(f); i++) {
        const lq_st_tensor *t = lq_st_at(f, i);
        LQ_FUZZ_CHECK(t != NULL && t->name != NULL);
        LQ_FUZZ_CHECK(lq_st_find(f, t->name) == t);
        size_t expected = lq_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) expected *= (size_t)t->shape[d];
        LQ_FUZZ_CHECK(t->nbytes == expected);
        const uint8_t *bytes = t->data;
        LQ_FUZZ_CHECK(bytes >= data + 8 && bytes <= end && t->nbytes <= (size_t)(end - bytes));
        /* reading every byte lets AddressSanitizer check the bounds the parser promised */
        (void)lq_checksum64(bytes, t->nbytes);
        size_t n = t->nbytes / lq_dtype_size(t->dtype);
        int is_float = t->dtype == LQ_DTYPE_F32 || t->dtype == LQ_DTYPE_F16 ||
                       t->dtype == LQ_DTYPE_BF16 || t->dtype == LQ_DTYPE_F64;
        if (is_float && n > 0 && n <= 4096) {
            float *values = malloc(n * sizeof *values);
            LQ_FUZZ_CHECK(values != NULL);
            LQ_FUZZ_CHECK(lq_convert_to_f32(t->dtype, t->data, values, n) == LQ_OK);
            free(values);
        }
    }
    for (size_t i = 0; i < lq_st_metadata_count(f); i++) {
        const char *key, *value;
        lq_st_metadata_at(f, i, &key, &value);
        LQ_FUZZ_CHECK(key && value);
        const char *found = lq_st_metadata(f, key);
        LQ_FUZZ_CHECK(found && strcmp(found, value) == 0);
    }
    const lq_st_tensor *required;
    LQ_FUZZ_CHECK(lq_st_require(f, "\x01 no tensor has this name", &required) != LQ_OK);
    lq_st_close(f);
    return 0;
}
