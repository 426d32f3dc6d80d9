/* Fuzz target: the Hugging Face config.json → model config mapping (common/config_json.c),
 * decoded with the flags hf.c's loader uses. A config that maps and validates must survive
 * lq_model_config_to_json → lq_model_config_from_json unchanged, as model.h promises. */
#include "fuzz_common.h"
#include "model.h"

#include <jansson.h>
#include <string.h>

int lq_fuzz_accepted;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lq_fuzz_begin();
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (!root) return 0;
    lq_model_config config;
    lq_status st = lq_model_config_from_json("config.json", root, &config);
    if (st == LQ_OK) st = lq_model_config_validate(&config, "config.json");
    json_decref(root);
    if (st != LQ_OK) {
        LQ_FUZZ_REJECTED(st);
        return 0;
    }
    lq_fuzz_accepted = 1;
    json_t *written;
    LQ_FUZZ_CHECK(lq_model_config_to_json(&config, &written) == LQ_OK);
    /* through text too, as a saved config.json is read back */
    char *text = json_dumps(written, JSON_COMPACT);
    json_decref(written);
    LQ_FUZZ_CHECK(text != NULL);
    json_t *reread = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    free(text);
    LQ_FUZZ_CHECK(reread != NULL);
    lq_model_config again;
    LQ_FUZZ_CHECK(lq_model_config_from_json("config.json (written)", reread, &again) == LQ_OK);
    json_decref(reread);
    LQ_FUZZ_CHECK(memcmp(&config, &again, sizeof config) == 0);
    return 0;
}
