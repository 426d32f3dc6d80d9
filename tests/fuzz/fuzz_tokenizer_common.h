/* What the tokenizer fuzz targets do with a tokenizer that loaded: encode a fixed text and a
 * slice of the input itself (so the fuzzer steers the text too), with and without special
 * tokens, and decode every id produced. Every id must lie in the vocabulary. */
#ifndef LQ_FUZZ_TOKENIZER_COMMON_H
#define LQ_FUZZ_TOKENIZER_COMMON_H

#include "fuzz_common.h"
#include "tokenizer.h"

static void fuzz_encode_decode(const lq_tokenizer *t, const char *text, size_t len) {
    int vocab = lq_tokenizer_vocab_size(t);
    for (int special = 0; special <= 1; special++) {
        int *ids = NULL;
        size_t n = 0;
        lq_status st = lq_tokenizer_encode(t, text, len, special, special, &ids, &n);
        if (st != LQ_OK) {
            LQ_FUZZ_REJECTED(st);
            LQ_FUZZ_CHECK(ids == NULL);
            continue;
        }
        int prev = lq_tokenizer_bos(t);
        for (size_t i = 0; i < n; i++) {
            LQ_FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
            char piece[512];
            int written = lq_tokenizer_decode(t, prev, ids[i], piece, sizeof piece);
            LQ_FUZZ_CHECK(written >= 0);
            prev = ids[i];
        }
        free(ids);
    }
    char piece[64];
    LQ_FUZZ_CHECK(lq_tokenizer_decode(t, 0, vocab, piece, sizeof piece) == -1);
}

static void fuzz_tokenizer_exercise(const lq_tokenizer *t, const uint8_t *data, size_t size) {
    static const char sample[] = "Once upon a time, Lily saw 42 cats \xf0\x9f\x90\x88 na\xc3\xafve "
                                 "<s> </s> <0x41> <|endoftext|>\n\t  end\xff";
    fuzz_encode_decode(t, sample, sizeof sample - 1);
    fuzz_encode_decode(t, (const char *)data, size < 256 ? size : 256);
}

#endif
