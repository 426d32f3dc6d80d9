/* Private to common/: one loader per input format, dispatched by lq_model_load (model.c). */
#ifndef LQ_LOADERS_H
#define LQ_LOADERS_H

#include "model.h"

lq_status lq_llama2c_load(const char *path, const char *tokenizer_path, lq_model **out); /* llama2c.c */
lq_status lq_gguf_load_model(const char *path, lq_model **out);                         /* gguf.c */
lq_status lq_hf_load_model(const char *dir, lq_model **out);                            /* hf.c */

#endif
