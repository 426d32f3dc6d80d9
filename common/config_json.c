/* The model config ↔ Hugging Face config.json mapping (model.h), one table both ways: the
 * Hugging Face loader reads checkpoints with it and the quantized-model writer (worker/) writes
 * config.json with it, so a saved model reads back through the same code.
 *
 * Hugging Face keys cannot state everything lq_model_config holds for models that came from
 * GGUF or llama2.c files, so three project keys complete it:
 *   liftquant_rope_style  "interleaved" | "half": the rotary pairs. Hugging Face checkpoints
 *                         are always "half" (rotate_half), the default when the key is
 *                         absent; GGUF Llama and llama2.c weights are "interleaved" and are
 *                         stored as they are rather than permuted back;
 *   liftquant_qkv_bias    q/k/v carry a bias (default: model_type "qwen2");
 *   liftquant_qk_norm     RMSNorm over q and k heads (default: model_type "qwen3").
 * Float fields are written as the shortest decimal that reads back to the same float, so
 * config.json shows "rms_norm_eps": 1e-5 rather than 9.9999997473787516e-06. */
#include "model.h"

#include <jansson.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A positive integer key; absent or null → dflt, or an error when dflt < 0. */
static lq_status cfg_int(const char *path, const json_t *o, const char *key, long dflt, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (dflt < 0) return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing key '%s'", path, key);
        *out = (int)dflt;
        return LQ_OK;
    }
    if (!json_is_integer(v))
        return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > INT_MAX)
        return lq_fail(LQ_ERR_RANGE, "%s: key '%s' = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return LQ_OK;
}

/* A positive finite number; absent or null → dflt, or an error when dflt < 0. */
static lq_status cfg_num(const char *path, const json_t *o, const char *key, double dflt, float *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (dflt < 0) return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing key '%s'", path, key);
        *out = (float)dflt;
        return LQ_OK;
    }
    if (!json_is_number(v)) return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' must be a number", path, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0)
        return lq_fail(LQ_ERR_RANGE, "%s: key '%s' = %g must be positive", path, key, x);
    /* the value is kept as a float: one beyond its range would become inf or 0 (found by
     * fuzz_config_json: a high_freq_factor of 2e88 came back as inf, which JSON cannot write) */
    float f = (float)x;
    if (!isfinite(f) || f <= 0)
        return lq_fail(LQ_ERR_RANGE, "%s: key '%s' = %g is outside a float's positive range "
                       "(%g to %g)", path, key, x, (double)FLT_MIN, (double)FLT_MAX);
    *out = f;
    return LQ_OK;
}

static lq_status cfg_bool(const char *path, const json_t *o, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return LQ_OK;
    }
    if (!json_is_boolean(v)) return lq_fail(LQ_ERR_FORMAT, "%s: key '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return LQ_OK;
}

static lq_status load_rope_scaling(const char *path, const json_t *cfg, lq_model_config *c) {
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (!rs || json_is_null(rs)) return LQ_OK;
    if (!json_is_object(rs))
        return lq_fail(LQ_ERR_FORMAT, "%s: key 'rope_scaling' must be an object or null", path);
    /* transformers accepts both spellings */
    json_t *type = json_object_get(rs, "rope_type");
    if (!type) type = json_object_get(rs, "type");
    if (!json_is_string(type))
        return lq_fail(LQ_ERR_FORMAT, "%s: key 'rope_scaling.rope_type' is missing or not a string", path);
    const char *t = json_string_value(type);
    if (!strcmp(t, "default")) return LQ_OK;
    if (strcmp(t, "llama3") != 0)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (only "
                       "llama3)", path, t);
    lq_status st;
    if ((st = cfg_num(path, rs, "factor", -1, &c->rope_scale_factor)) ||
        (st = cfg_num(path, rs, "low_freq_factor", -1, &c->rope_low_freq_factor)) ||
        (st = cfg_num(path, rs, "high_freq_factor", -1, &c->rope_high_freq_factor)) ||
        (st = cfg_int(path, rs, "original_max_position_embeddings", -1, &c->rope_original_max_pos)))
        return lq_fail_context(st, "rope_scaling");
    return LQ_OK;
}

static lq_status load_rope_style(const char *path, const json_t *cfg, lq_model_config *c) {
    c->rope_style = LQ_ROPE_HALF;
    json_t *v = json_object_get(cfg, "liftquant_rope_style");
    if (!v || json_is_null(v)) return LQ_OK;
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (!strcmp(s, "interleaved"))
        c->rope_style = LQ_ROPE_INTERLEAVED;
    else if (strcmp(s, "half") != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: key 'liftquant_rope_style' must be \"interleaved\" or "
                       "\"half\"", path);
    return LQ_OK;
}

lq_status lq_model_config_from_json(const char *path, const json_t *cfg, lq_model_config *c) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(cfg)) return lq_fail(LQ_ERR_FORMAT, "%s: the config is not a JSON object", path);
    json_t *mt = json_object_get(cfg, "model_type");
    if (!mt) return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing key 'model_type'", path);
    if (!json_is_string(mt)) return lq_fail(LQ_ERR_FORMAT, "%s: key 'model_type' must be a string", path);
    const char *arch = json_string_value(mt);
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "mistral") != 0 && strcmp(arch, "qwen2") != 0 &&
        strcmp(arch, "qwen3") != 0)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: unknown model_type '%s' (supported: llama, "
                       "mistral, qwen2, qwen3)", path, arch);
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    lq_status st;
    if ((st = cfg_int(path, cfg, "hidden_size", -1, &c->dim)) ||
        (st = cfg_int(path, cfg, "intermediate_size", -1, &c->hidden_dim)) ||
        (st = cfg_int(path, cfg, "num_hidden_layers", -1, &c->n_layers)) ||
        (st = cfg_int(path, cfg, "num_attention_heads", -1, &c->n_heads)) ||
        (st = cfg_int(path, cfg, "num_key_value_heads", c->n_heads, &c->n_kv_heads)) ||
        (st = cfg_int(path, cfg, "vocab_size", -1, &c->vocab_size)) ||
        (st = cfg_int(path, cfg, "max_position_embeddings", -1, &c->max_seq_len)) ||
        (st = cfg_num(path, cfg, "rms_norm_eps", -1, &c->norm_eps)) ||
        (st = cfg_num(path, cfg, "rope_theta", 10000.0, &c->rope_theta)))
        return st;
    json_t *hd = json_object_get(cfg, "head_dim");
    if ((!hd || json_is_null(hd)) && c->dim % c->n_heads != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads "
                       "%d and key 'head_dim' is absent", path, c->dim, c->n_heads);
    if ((st = cfg_int(path, cfg, "head_dim", c->dim / c->n_heads, &c->head_dim))) return st;
    c->rope_dim = c->head_dim;
    json_t *prf = json_object_get(cfg, "partial_rotary_factor");
    if (prf && !json_is_null(prf)) {
        if (!json_is_number(prf) || json_number_value(prf) <= 0 || json_number_value(prf) > 1)
            return lq_fail(LQ_ERR_FORMAT, "%s: key 'partial_rotary_factor' must be in (0, 1]", path);
        /* transformers truncates head_dim · factor; the small margin keeps a factor written as
         * rope_dim / head_dim (one rounding away from exact) from truncating to rope_dim − 1 */
        c->rope_dim = (int)(c->head_dim * json_number_value(prf) + 1e-6);
    }
    if ((st = load_rope_style(path, cfg, c))) return st;
    int tied, attention_bias, mlp_bias;
    if ((st = cfg_bool(path, cfg, "tie_word_embeddings", 0, &tied)) ||
        (st = cfg_bool(path, cfg, "attention_bias", 0, &attention_bias)) ||
        (st = cfg_bool(path, cfg, "mlp_bias", 0, &mlp_bias)))
        return st;
    /* Llama's attention_bias also biases o_proj, which the forward pass does not model */
    if ((attention_bias && strcmp(arch, "qwen2") != 0) || mlp_bias)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: key '%s' = true is not supported", path,
                       mlp_bias ? "mlp_bias" : "attention_bias");
    json_t *act = json_object_get(cfg, "hidden_act");
    if (act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu")))
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: key 'hidden_act' must be \"silu\"", path);
    json_t *sw = json_object_get(cfg, "sliding_window");
    int use_sw = 1;
    if ((st = cfg_bool(path, cfg, "use_sliding_window", 1, &use_sw))) return st;
    if (use_sw && sw && json_is_integer(sw) && json_integer_value(sw) < c->max_seq_len)
        LQ_WARN("%s: sliding_window %lld is ignored; attention is full up to %d positions", path,
                (long long)json_integer_value(sw), c->max_seq_len);
    c->tied_embeddings = tied;
    if ((st = cfg_bool(path, cfg, "liftquant_qkv_bias", !strcmp(arch, "qwen2"), &c->has_qkv_bias)) ||
        (st = cfg_bool(path, cfg, "liftquant_qk_norm", !strcmp(arch, "qwen3"), &c->has_qk_norm)))
        return st;
    return load_rope_scaling(path, cfg, c);
}

/* ---- writing --------------------------------------------------------------------------------- */
/* The shortest decimal that reads back (through a double, as the reader does) to f, as a JSON
 * real: dumped with up to 15 significant digits it prints as that decimal. */
static json_t *float_json(float f) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static const char *architecture_class(const char *arch) {
    if (!strcmp(arch, "mistral")) return "MistralForCausalLM";
    if (!strcmp(arch, "qwen2")) return "Qwen2ForCausalLM";
    if (!strcmp(arch, "qwen3")) return "Qwen3ForCausalLM";
    return "LlamaForCausalLM";
}

/* json_object_set_new with the allocation failures of both the value and the set folded into
 * one flag, so the writer below reads as the table it is. */
static void put(json_t *o, const char *key, json_t *v, int *failed) {
    if (!v || json_object_set_new(o, key, v) != 0) *failed = 1;
}

lq_status lq_model_config_to_json(const lq_model_config *c, json_t **out) {
    *out = NULL;
    lq_status st = lq_model_config_validate(c, "lq_model_config_to_json");
    if (st) return st;
    if (strcmp(c->arch, "llama") != 0 && strcmp(c->arch, "mistral") != 0 &&
        strcmp(c->arch, "qwen2") != 0 && strcmp(c->arch, "qwen3") != 0)
        return lq_fail(LQ_ERR_UNSUPPORTED, "lq_model_config_to_json: architecture '%s' has no "
                       "Hugging Face model_type here (supported: llama, mistral, qwen2, qwen3)",
                       c->arch);
    json_t *o = json_object();
    int failed = !o;
    if (failed) return lq_fail(LQ_ERR_NOMEM, "lq_model_config_to_json: out of memory");
    json_t *archs = json_array();
    if (!archs || json_array_append_new(archs, json_string(architecture_class(c->arch))) != 0)
        failed = 1;
    put(o, "architectures", archs, &failed);
    put(o, "model_type", json_string(c->arch), &failed);
    put(o, "hidden_size", json_integer(c->dim), &failed);
    put(o, "intermediate_size", json_integer(c->hidden_dim), &failed);
    put(o, "num_hidden_layers", json_integer(c->n_layers), &failed);
    put(o, "num_attention_heads", json_integer(c->n_heads), &failed);
    put(o, "num_key_value_heads", json_integer(c->n_kv_heads), &failed);
    put(o, "head_dim", json_integer(c->head_dim), &failed);
    put(o, "vocab_size", json_integer(c->vocab_size), &failed);
    put(o, "max_position_embeddings", json_integer(c->max_seq_len), &failed);
    put(o, "rms_norm_eps", float_json(c->norm_eps), &failed);
    put(o, "rope_theta", float_json(c->rope_theta), &failed);
    if (c->rope_dim != c->head_dim)
        put(o, "partial_rotary_factor", json_real((double)c->rope_dim / c->head_dim), &failed);
    if (c->rope_scale_factor != 0.0f) {
        json_t *rs = json_object();
        if (!rs) failed = 1;
        else {
            put(rs, "rope_type", json_string("llama3"), &failed);
            put(rs, "factor", float_json(c->rope_scale_factor), &failed);
            put(rs, "low_freq_factor", float_json(c->rope_low_freq_factor), &failed);
            put(rs, "high_freq_factor", float_json(c->rope_high_freq_factor), &failed);
            put(rs, "original_max_position_embeddings", json_integer(c->rope_original_max_pos), &failed);
        }
        put(o, "rope_scaling", rs, &failed);
    }
    put(o, "hidden_act", json_string("silu"), &failed);
    put(o, "tie_word_embeddings", json_boolean(c->tied_embeddings), &failed);
    put(o, "liftquant_rope_style",
        json_string(c->rope_style == LQ_ROPE_INTERLEAVED ? "interleaved" : "half"), &failed);
    put(o, "liftquant_qkv_bias", json_boolean(c->has_qkv_bias), &failed);
    put(o, "liftquant_qk_norm", json_boolean(c->has_qk_norm), &failed);
    if (failed) {
        json_decref(o);
        return lq_fail(LQ_ERR_NOMEM, "lq_model_config_to_json: out of memory");
    }
    *out = o;
    return LQ_OK;
}
