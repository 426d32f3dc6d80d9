/* Private to common/: one loader per input format, dispatched by lq_model_load (model.c). */
#ifndef LQ_LOADERS_H
#define LQ_LOADERS_H

#include "model.h"

lq_status lq_llama2c_load(const char *path, const char *tokenizer_path, lq_model **out); /* llama2c.c */
lq_status lq_gguf_load_model(const char *path, lq_model **out);                         /* gguf.c */
lq_status lq_hf_load_model(const char *dir, lq_model **out);                            /* hf.c */
/* A Hugging Face tokenizer.json already parsed (root), with tokenizer_config.json (tc) and
 * config.json (cfg), each NULL when absent; path names tokenizer.json in messages. The
 * directory loader reads its files with this, and the fuzzer feeds it bytes (hf.c). */
struct json_t;
lq_status lq_hf_tokenizer_from_json(const char *path, struct json_t *root, struct json_t *tc,
                                    struct json_t *cfg, int vocab_size, lq_tokenizer **out);

#endif
