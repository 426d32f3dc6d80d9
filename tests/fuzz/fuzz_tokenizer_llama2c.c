/* Fuzz target: the llama2.c tokenizer file parser (tok512.bin; common/tokenizer.c) through
 * lq_tokenizer_parse_llama2c, the parser lq_tokenizer_load_llama2c runs on the file's bytes.
 * The file does not state its vocabulary size (the checkpoint does), so the first two input
 * bytes give it (little-endian) and the rest is the file; a loaded tokenizer then encodes
 * and decodes (fuzz_tokenizer_common.h). */
#include "fuzz_tokenizer_common.h"

int lq_fuzz_accepted;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    if (size < 2) return 0;
    int vocab_size = data[0] | data[1] << 8;
    lq_tokenizer *t;
    lq_status st = lq_tokenizer_parse_llama2c(data + 2, size - 2, vocab_size, "fuzz-tok.bin", &t);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        LQ_FUZZ_CHECK(t == NULL);
        return 0;
    }
    lq_fuzz_accepted = 1;
    LQ_FUZZ_CHECK(lq_tokenizer_vocab_size(t) == vocab_size);
    fuzz_tokenizer_exercise(t, data + 2, size - 2);
    lq_tokenizer_free(t);
    return 0;
}
