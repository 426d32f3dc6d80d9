/* Fuzz target: the project's tokenizer.liftquant.json loader (common/tokenizer_json.c)
 * through lq_tokenizer_load_json_memory, the loader behind lq_tokenizer_load_json; a loaded
 * tokenizer then encodes and decodes (fuzz_tokenizer_common.h). */
#include "fuzz_tokenizer_common.h"

int lq_fuzz_accepted;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    lq_tokenizer *t;
    lq_status st = lq_tokenizer_load_json_memory((const char *)data, size,
                                                 "tokenizer.liftquant.json", &t);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        LQ_FUZZ_CHECK(t == NULL);
        return 0;
    }
    lq_fuzz_accepted = 1;
    fuzz_tokenizer_exercise(t, data, size);
    lq_tokenizer_free(t);
    return 0;
}
