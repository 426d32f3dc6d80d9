/* Fuzz target: the Hugging Face tokenizer.json reader (BPE, GPT-2 byte-level or SentencePiece
 * byte-fallback; common/hf.c) through lq_hf_tokenizer_from_json, the function the directory
 * loader calls. The input is tokenizer.json, optionally followed by a NUL byte and
 * tokenizer_config.json (JSON text holds no raw NUL, so the split is unambiguous); the model's
 * vocab_size is fixed at 65536. A loaded tokenizer then encodes and decodes
 * (fuzz_tokenizer_common.h). */
#include "fuzz_tokenizer_common.h"
#include "loaders.h"

#include <jansson.h>
#include <string.h>

int lq_fuzz_accepted;

#define FUZZ_VOCAB_SIZE 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    const uint8_t *split = memchr(data, 0, size);
    size_t tokenizer_len = split ? (size_t)(split - data) : size;
    json_error_t err;
    json_t *root = json_loadb((const char *)data, tokenizer_len, JSON_REJECT_DUPLICATES, &err);
    if (!root) return 0;
    json_t *config = NULL;
    if (split) {
        config = json_loadb((const char *)split + 1, size - tokenizer_len - 1,
                            JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(config)) {
            json_decref(config);
            json_decref(root);
            return 0;
        }
    }
    lq_tokenizer *t;
    lq_status st = lq_hf_tokenizer_from_json("tokenizer.json", root, config, NULL, FUZZ_VOCAB_SIZE,
                                             &t);
    json_decref(root);
    json_decref(config);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        LQ_FUZZ_CHECK(t == NULL);
        return 0;
    }
    lq_fuzz_accepted = 1;
    LQ_FUZZ_CHECK(lq_tokenizer_vocab_size(t) <= FUZZ_VOCAB_SIZE);
    fuzz_tokenizer_exercise(t, data, tokenizer_len);
    lq_tokenizer_free(t);
    return 0;
}
