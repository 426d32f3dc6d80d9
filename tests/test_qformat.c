/* The quantized model directory (worker/qformat.c):
 *  - stories260K with every decoder linear replaced by a random but valid quantized layer
 *    (LiftQuant 24/10 and 12/4 with f16-rounded side data and random lattices, RTN, GPTQ with
 *    and without act order, q/k/v biases switched on to cover them) and f16-rounded embeddings
 *    saves, loads back through lq_load_any_model with every stored array bit-identical, and
 *    gives exactly the logits of the in-memory model; lq_linear_stored_size and
 *    lq_quantized_inspect agree with the bytes in the file; saving over it replaces it;
 *  - bad directories give errors naming the thing at fault: truncated model.safetensors, a
 *    missing tensor, a wrong shape or dtype, an unknown method, a config whose lattice tensor
 *    is absent, a foreign tensor, padding bits set, a repeated perm entry;
 *  - bad outputs are refused before anything is written: an unwritable path, an unrelated
 *    existing directory or file, a model with an unquantized linear, reserved extra keys.
 * Run as `test_qformat --make-fixture DIR` it only writes the quantized stories260K to DIR (for
 * tests/cli_qformat.sh). Needs shared/data (LQ_SHARED_DATA); skips without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define LQ_TEST_NAME "qformat"
#include "test_util.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lq_quant.h"
#include "model.h"
#include "safetensors.h"

#ifndef LQ_SHARED_DATA
#define LQ_SHARED_DATA "../shared/data"
#endif
#define STORIES LQ_SHARED_DATA "/llama2c-stories260K/stories260K.bin"
#define TOK512 LQ_SHARED_DATA "/llama2c-stories260K/tok512.bin"

static int have_data(void) {
    if (access(STORIES, R_OK) == 0 && access(TOK512, R_OK) == 0) return 1;
    print_message("shared data not found under %s: skipping\n", LQ_SHARED_DATA);
    return 0;
}

static float f16_round(float x) { return lq_f16_to_f32(lq_f32_to_f16(x)); }

static lq_linear *linear_at(lq_layer *L, int i) {
    lq_linear *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[i];
}

/* ---- the random quantized model ------------------------------------------------------------ */
static void random_floats(lq_rng *r, float *x, size_t n, double mean, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = f16_round((float)(mean + sd * lq_rng_normal(r)));
}

static void install_lift(lq_linear *lin, int D, int d, const float *M, int with_bias, lq_rng *r) {
    int ic = lin->in_features, oc = lin->out_features;
    int t2 = d * (int)(sqrt((double)ic) / d + 0.5);
    if (t2 < d) t2 = d;
    int t1 = (ic + t2 - 1) / t2;
    lq_lift_weights w;
    assert_int_equal(lq_lift_weights_alloc(&w, oc, ic, D, d, t1, t2, with_bias), LQ_OK);
    size_t rb = lq_lift_row_bytes(&w), k = lq_lift_k(&w), t3 = (size_t)lq_lift_t3(&w);
    for (size_t i = 0; i < (size_t)oc * rb; i++) w.bits[i] = (uint8_t)lq_rng_u64(r);
    if (k % 8)
        for (int row = 0; row < oc; row++) w.bits[row * rb + rb - 1] &= (uint8_t)((1u << (k % 8)) - 1);
    random_floats(r, w.scale, (size_t)oc, 0.05, 0.01);
    random_floats(r, w.a1inv, (size_t)t1 * t2, 1.0, 0.1);
    random_floats(r, w.tl, (size_t)t1 * t1, 0.0, 1.0 / sqrt((double)t1));
    random_floats(r, w.tr, (size_t)t2 * t3, 0.0, 1.0 / sqrt((double)t2));
    random_floats(r, w.a2inv, (size_t)t1 * (t2 / d), 1.0, 0.1);
    if (with_bias) random_floats(r, w.bias, (size_t)oc, 0.0, 0.1);
    memcpy(w.M, M, sizeof(float) * (size_t)d * D);
    if (lq_linear_set_lift(lin, &w) != LQ_OK) fail_msg("%s", lq_last_error());
}

static void install_grouped(lq_linear *lin, int bits, int group, int gptq, int act_order,
                            int with_bias, lq_rng *r) {
    int ic = lin->in_features, oc = lin->out_features;
    lq_grouped_weights w;
    assert_int_equal(lq_grouped_weights_alloc(&w, oc, ic, bits, group, act_order, with_bias), LQ_OK);
    w.gptq = gptq;
    int ng = lq_grouped_ngroups(&w);
    for (size_t i = 0; i < (size_t)oc * ic; i++) w.codes[i] = (uint8_t)(lq_rng_u64(r) % (1u << bits));
    for (size_t i = 0; i < (size_t)oc * ng; i++) w.zeros[i] = (uint8_t)(lq_rng_u64(r) % (1u << bits));
    random_floats(r, w.scales, (size_t)oc * ng, 0.02, 0.005);
    if (act_order)
        for (int j = ic - 1; j > 0; j--) { /* Fisher–Yates over the identity alloc made */
            int k = (int)(lq_rng_u64(r) % (uint64_t)(j + 1));
            int32_t tmp = w.perm[j];
            w.perm[j] = w.perm[k];
            w.perm[k] = tmp;
        }
    if (with_bias) random_floats(r, w.bias, (size_t)oc, 0.0, 0.1);
    if (lq_linear_set_grouped(lin, &w) != LQ_OK) fail_msg("%s", lq_last_error());
}

/* stories260K, every decoder linear quantized at random, embeddings rounded to f16 (as stored). */
static lq_model *random_quantized_stories(void) {
    lq_model *m = NULL;
    if (lq_model_load(STORIES, TOK512, &m) != LQ_OK) fail_msg("%s", lq_last_error());
    lq_model_config *c = &m->cfg;
    c->has_qkv_bias = 1;   /* exercises the bias tensors; quantized layers add their own bias */
    for (size_t i = 0; i < (size_t)c->vocab_size * c->dim; i++)
        m->tok_embeddings[i] = f16_round(m->tok_embeddings[i]);
    float *M24 = random_matrix(10, 24, 7), *M12 = random_matrix(4, 12, 8);
    lq_rng r;
    lq_rng_seed(&r, 42);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < 7; i++) {
            lq_linear *lin = linear_at(&m->layers[l], i);
            int bias = i < 3;
            switch ((l * 7 + i) % 6) {
            case 0: install_lift(lin, 24, 10, M24, bias, &r); break;
            case 1: install_lift(lin, 12, 4, M12, bias, &r); break;
            case 2: install_grouped(lin, 3, 16, 0, 0, bias, &r); break;        /* RTN */
            case 3: install_grouped(lin, 4, 32, 1, 1, bias, &r); break;        /* GPTQ, act order */
            case 4: install_grouped(lin, 2, 128, 1, 0, bias, &r); break;       /* GPTQ */
            default: install_lift(lin, 24, 10, M24, bias, &r); break;
            }
        }
    free(M24);
    free(M12);
    return m;
}

static const char *EXTRA = "{\"calibration\": {\"samples\": 128, \"seqlen\": 2048}, \"seconds\": 12.5}";

static void save_or_fail(const lq_model *m, const char *dir, const char *extra) {
    if (lq_quantized_save(m, dir, extra) != LQ_OK) fail_msg("%s", lq_last_error());
}

/* ---- comparisons --------------------------------------------------------------------------- */
#define SAME_FLOATS(a, b, n) assert_memory_equal((a), (b), sizeof(float) * (size_t)(n))

static void assert_same_linear(const lq_linear *a, const lq_linear *b) {
    assert_int_equal(a->in_features, b->in_features);
    assert_int_equal(a->out_features, b->out_features);
    const lq_lift_weights *la = lq_linear_lift(a), *lb = lq_linear_lift(b);
    const lq_grouped_weights *ga = lq_linear_grouped(a), *gb = lq_linear_grouped(b);
    assert_true((la != NULL) == (lb != NULL));
    assert_true((ga != NULL) == (gb != NULL));
    assert_true(la || ga);
    if (la) {
        assert_int_equal(la->D, lb->D);
        assert_int_equal(la->d, lb->d);
        assert_int_equal(la->t1, lb->t1);
        assert_int_equal(la->t2, lb->t2);
        size_t t1 = (size_t)la->t1, t2 = (size_t)la->t2, t3 = (size_t)lq_lift_t3(la);
        assert_memory_equal(la->bits, lb->bits, (size_t)la->out_features * lq_lift_row_bytes(la));
        SAME_FLOATS(la->scale, lb->scale, la->out_features);
        SAME_FLOATS(la->a1inv, lb->a1inv, t1 * t2);
        SAME_FLOATS(la->tl, lb->tl, t1 * t1);
        SAME_FLOATS(la->tr, lb->tr, t2 * t3);
        SAME_FLOATS(la->a2inv, lb->a2inv, t1 * (t2 / (size_t)la->d));
        SAME_FLOATS(la->M, lb->M, la->d * la->D);
        assert_true((la->bias != NULL) == (lb->bias != NULL));
        if (la->bias) SAME_FLOATS(la->bias, lb->bias, la->out_features);
    } else {
        assert_int_equal(ga->bits, gb->bits);
        assert_int_equal(ga->group, gb->group);
        assert_int_equal(ga->gptq || ga->perm, gb->gptq);
        size_t oc = (size_t)ga->out_features, ic = (size_t)ga->in_features;
        size_t ng = (size_t)lq_grouped_ngroups(ga);
        assert_memory_equal(ga->codes, gb->codes, oc * ic);
        assert_memory_equal(ga->zeros, gb->zeros, oc * ng);
        SAME_FLOATS(ga->scales, gb->scales, oc * ng);
        assert_true((ga->perm != NULL) == (gb->perm != NULL));
        if (ga->perm) assert_memory_equal(ga->perm, gb->perm, ic * sizeof(int32_t));
        assert_true((ga->bias != NULL) == (gb->bias != NULL));
        if (ga->bias) SAME_FLOATS(ga->bias, gb->bias, oc);
    }
}

static void assert_same_model(const lq_model *a, const lq_model *b) {
    assert_memory_equal(&a->cfg, &b->cfg, sizeof a->cfg);
    const lq_model_config *c = &a->cfg;
    /* a liftquant directory's embeddings stay binary16 in memory, widening to a's values */
    const size_t n_embed = (size_t)c->vocab_size * c->dim;
    assert_null(b->tok_embeddings);
    assert_non_null(b->tok_embeddings_f16);
    float *widened = malloc(n_embed * sizeof *widened);
    assert_non_null(widened);
    for (size_t i = 0; i < n_embed; i++) widened[i] = lq_f16_to_f32(b->tok_embeddings_f16[i]);
    SAME_FLOATS(a->tok_embeddings, widened, n_embed);
    free(widened);
    SAME_FLOATS(a->final_norm, b->final_norm, c->dim);
    assert_null(b->lm_head.weight);
    assert_true(b->lm_head.weight_f16 == b->tok_embeddings_f16);   /* tied */
    for (int l = 0; l < c->n_layers; l++) {
        SAME_FLOATS(a->layers[l].attn_norm, b->layers[l].attn_norm, c->dim);
        SAME_FLOATS(a->layers[l].ffn_norm, b->layers[l].ffn_norm, c->dim);
        for (int i = 0; i < 7; i++) assert_same_linear(linear_at(&a->layers[l], i), linear_at(&b->layers[l], i));
    }
}

/* logits of a prefill and three decode steps */
static float *run_logits(const lq_model *m, size_t *n_out) {
    static const char text[] = "Once upon a time, there was a little dog named Max.";
    int *ids;
    size_t n;
    assert_int_equal(lq_tokenizer_encode(m->tokenizer, text, strlen(text), 1, 0, &ids, &n), LQ_OK);
    int vocab = m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)vocab * (n + 3));
    lq_session *s = NULL;
    assert_int_equal(lq_session_new(m, m->cfg.max_seq_len, &s), LQ_OK);
    if (lq_forward(s, ids, (int)n, logits, 1) != LQ_OK) fail_msg("%s", lq_last_error());
    for (int step = 0; step < 3; step++) {
        int tok = ids[step + 1];
        assert_int_equal(lq_forward(s, &tok, 1, logits + (size_t)vocab * (n + (size_t)step), 0), LQ_OK);
    }
    lq_session_free(s);
    free(ids);
    *n_out = (size_t)vocab * (n + 3);
    return logits;
}

/* ---- the round trip -------------------------------------------------------------------------- */
static json_t *read_config(const char *dir) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j) fail_msg("%s: %s", path, err.text);
    return j;
}

static void test_round_trip(void **state) {
    (void)state;
    if (!have_data()) skip();
    lq_model *m = random_quantized_stories();
    const char *out = temp_path("rt");
    save_or_fail(m, out, EXTRA);

    json_t *cfg = read_config(out);
    json_t *qc = json_object_get(cfg, "quantization_config");
    assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "liftquant");
    assert_int_equal(json_integer_value(json_object_get(qc, "format_version")), 1);
    assert_int_equal(json_object_size(json_object_get(qc, "modules")), 7 * (size_t)m->cfg.n_layers);
    assert_string_equal(json_string_value(json_object_get(json_object_get(qc, "lattices"), "24/10")),
                        "liftquant.lattice.24to10");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(qc, "calibration"), "samples")), 128);
    json_t *q0 = json_object_get(json_object_get(qc, "modules"), "model.layers.0.self_attn.q_proj");
    assert_string_equal(json_string_value(json_object_get(q0, "method")), "liftquant");
    assert_string_equal(json_string_value(json_object_get(q0, "config")), "24/10");
    json_t *v0 = json_object_get(json_object_get(qc, "modules"), "model.layers.0.self_attn.v_proj");
    assert_string_equal(json_string_value(json_object_get(v0, "method")), "rtn");
    json_t *o0 = json_object_get(json_object_get(qc, "modules"), "model.layers.0.self_attn.o_proj");
    assert_string_equal(json_string_value(json_object_get(o0, "method")), "gptq");
    assert_true(json_is_true(json_object_get(o0, "act_order")));
    assert_string_equal(json_string_value(json_object_get(cfg, "liftquant_rope_style")), "interleaved");
    json_decref(cfg);

    lq_model *back = NULL;
    if (lq_load_any_model(out, NULL, &back) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_string_equal(back->format, "liftquant");
    assert_same_model(m, back);
    size_t na, nb;
    float *la = run_logits(m, &na), *lb = run_logits(back, &nb);
    assert_int_equal(na, nb);
    /* the same weights, but the loaded head is binary16 under lq_gemm_f16_nt where m's is
     * f32 under sgemm: the same products summed in another order */
    for (size_t i = 0; i < na; i++)
        if (fabsf(la[i] - lb[i]) > 1e-5f * (1.0f + fabsf(la[i])))
            fail_msg("logit %zu: %.9g in memory, %.9g after save and load", i, (double)la[i],
                     (double)lb[i]);
    free(la);
    free(lb);

    /* sizes: lq_linear_stored_size = the bytes in the file = lq_quantized_inspect */
    char wpath[PATH_MAX + 64];
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", out);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(wpath, &f), LQ_OK);
    lq_quantized_info info;
    if (lq_quantized_inspect(out, &info) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_int_equal(info.n_modules, 7 * (size_t)m->cfg.n_layers);
    size_t all_bytes = 0, module_bytes = 0;
    for (size_t i = 0; i < lq_st_count(f); i++) all_bytes += lq_st_at(f, i)->nbytes;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const lq_module_info *mi = &info.modules[l * 7 + i];
            lq_linear_size sz;
            assert_int_equal(lq_linear_stored_size(linear_at(&back->layers[l], i), &sz), LQ_OK);
            char t[160];
            snprintf(t, sizeof t, "%s.qweight", mi->name);
            assert_non_null(lq_st_find(f, t));
            assert_int_equal(sz.code_bytes, lq_st_find(f, t)->nbytes);
            assert_int_equal(sz.code_bytes, mi->code_bytes);
            assert_int_equal(sz.side_bytes, mi->side_bytes);
            assert_int_equal(sz.weights, (size_t)mi->out_features * mi->in_features);
            /* every tensor of the module but bias is codes or side data */
            size_t prefix_bytes = 0, len = strlen(mi->name);
            for (size_t k = 0; k < lq_st_count(f); k++) {
                const lq_st_tensor *x = lq_st_at(f, k);
                if (!strncmp(x->name, mi->name, len) && x->name[len] == '.' && strcmp(x->name + len, ".bias"))
                    prefix_bytes += x->nbytes;
            }
            assert_int_equal(prefix_bytes, sz.code_bytes + sz.side_bytes);
            module_bytes += prefix_bytes;
        }
    assert_int_equal(info.lattice_bytes, sizeof(float) * (10 * 24 + 4 * 12));
    assert_int_equal(info.unquantized_bytes, all_bytes - module_bytes - info.lattice_bytes);
    struct stat sb;
    assert_int_equal(stat(wpath, &sb), 0);
    assert_int_equal(info.file_bytes, (size_t)sb.st_size);
    lq_quantized_info_free(&info);
    lq_st_close(f);

    /* saving over a previous output replaces it and leaves nothing beside it */
    save_or_fail(back, out, NULL);
    assert_int_not_equal(access(temp_path("rt.tmp"), F_OK), 0);
    assert_int_not_equal(access(temp_path("rt.old"), F_OK), 0);
    lq_model *again = NULL;
    if (lq_load_any_model(out, NULL, &again) != LQ_OK) fail_msg("%s", lq_last_error());
    assert_same_model(m, again);
    cfg = read_config(out);
    assert_null(json_object_get(json_object_get(cfg, "quantization_config"), "calibration"));
    json_decref(cfg);
    lq_model_free(again);

    /* a binary16 embedding that is not finite is refused by name, as an f32 one is */
    back->tok_embeddings_f16[5] = 0x7c00; /* +Inf */
    assert_int_equal(lq_quantized_save(back, temp_path("rt_inf"), NULL), LQ_ERR_NUMERIC);
    assert_non_null(strstr(lq_last_error(), "'model.embed_tokens.weight': element 5 is not finite"));
    assert_int_not_equal(access(temp_path("rt_inf"), F_OK), 0);
    lq_model_free(back);
    lq_model_free(m);
}

/* ---- bad directories ------------------------------------------------------------------------- */
static char good_dir[PATH_MAX + 64];

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* A fresh copy of the good directory under name. */
static const char *copy_good(const char *name) {
    const char *dir = temp_path(name);
    assert_int_equal(mkdir(dir, 0777), 0);
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.liftquant.json"};
    for (int i = 0; i < 3; i++) {
        char a[PATH_MAX + 128], b[PATH_MAX + 128];
        snprintf(a, sizeof a, "%s/%s", good_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        copy_file(a, b);
    }
    return dir;
}

static int setup_good_dir(void **state) {
    (void)state;
    if (!have_data()) return 0;
    lq_model *m = random_quantized_stories();
    snprintf(good_dir, sizeof good_dir, "%s/good", temp_dir);
    int rc = lq_quantized_save(m, good_dir, NULL) == LQ_OK ? 0 : -1;
    lq_model_free(m);
    return rc;
}

/* Rewrites dir/model.safetensors: `drop` left out, `change` given shape/dtype (its data cut
 * or repeated to fit), `add` appended as a 1-element F32 tensor; patch (may be NULL) edits
 * the bytes of tensor `patch_name`. */
static void rewrite_weights(const char *dir, const char *drop, const char *change, int ndim,
                            const int64_t *shape, lq_dtype dtype, const char *add,
                            const char *patch_name, void (*patch)(uint8_t *, size_t)) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lq_st_file *f = NULL;
    assert_int_equal(lq_st_open(path, &f), LQ_OK);
    lq_st_writer *w = NULL;
    assert_int_equal(lq_st_writer_new(&w), LQ_OK);
    for (size_t i = 0; i < lq_st_count(f); i++) {
        const lq_st_tensor *t = lq_st_at(f, i);
        if (drop && !strcmp(t->name, drop)) continue;
        if (change && !strcmp(t->name, change)) {
            size_t n = lq_dtype_size(dtype);
            for (int k = 0; k < ndim; k++) n *= (size_t)shape[k];
            uint8_t *buf = calloc(n + 1, 1);
            for (size_t k = 0; k < n; k++) buf[k] = ((const uint8_t *)t->data)[k % t->nbytes];
            assert_int_equal(lq_st_writer_add(w, t->name, dtype, ndim, shape, buf), LQ_OK);
            free(buf);
            continue;
        }
        uint8_t *buf = malloc(t->nbytes + 1);
        memcpy(buf, t->data, t->nbytes);
        if (patch && !strcmp(t->name, patch_name)) patch(buf, t->nbytes);
        assert_int_equal(lq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, buf), LQ_OK);
        free(buf);
    }
    if (add) {
        float one = 1.0f;
        int64_t s1 = 1;
        assert_int_equal(lq_st_writer_add(w, add, LQ_DTYPE_F32, 1, &s1, &one), LQ_OK);
    }
    lq_st_close(f);
    assert_int_equal(lq_st_writer_write(w, path), LQ_OK);
    lq_st_writer_free(w);
}

/* Sets quantization_config.modules[module][key] = value (a JSON text), or lattices[key] when
 * module is NULL. */
static void edit_config(const char *dir, const char *module, const char *key, const char *value) {
    json_t *cfg = read_config(dir);
    json_t *qc = json_object_get(cfg, "quantization_config");
    json_t *target = module ? json_object_get(json_object_get(qc, "modules"), module)
                            : json_object_get(qc, "lattices");
    assert_non_null(target);
    json_error_t err;
    json_t *v = json_loads(value, JSON_DECODE_ANY, &err);
    assert_non_null(v);
    assert_int_equal(json_object_set_new(target, key, v), 0);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
}

static void expect_load_error(const char *dir, const char *fragment1, const char *fragment2) {
    lq_model *m = (lq_model *)1;
    lq_status st = lq_load_any_model(dir, NULL, &m);
    if (st == LQ_OK) fail_msg("%s loaded without error", dir);
    assert_null(m);
    const char *e = lq_last_error();
    print_message("  %s\n", e);
    if (!strstr(e, fragment1) || (fragment2 && !strstr(e, fragment2)))
        fail_msg("error '%s' lacks '%s' / '%s'", e, fragment1, fragment2 ? fragment2 : "");
}

#define Q0 "model.layers.0.self_attn.q_proj"      /* LiftQuant 24/10 */
#define K0 "model.layers.0.self_attn.k_proj"      /* LiftQuant 12/4 */
#define V0 "model.layers.0.self_attn.v_proj"      /* RTN 3 bits */
#define O0 "model.layers.0.self_attn.o_proj"      /* GPTQ act order */
#define DOWN1 "model.layers.1.mlp.down_proj"      /* LiftQuant 12/4, K = 540: padded rows */
#define DOWN2 "model.layers.2.mlp.down_proj"      /* RTN 3 bits, 172 codes: padded rows */

static void flip_last_byte(uint8_t *b, size_t n) { b[n - 1] = 0xFF; }
static void repeat_perm(uint8_t *b, size_t n) {
    (void)n;
    memcpy(b + 4, b, 4);   /* perm[1] = perm[0] */
}

static void test_bad_directories(void **state) {
    (void)state;
    if (!have_data()) skip();
    lq_model *ok = NULL;
    if (lq_load_any_model(good_dir, NULL, &ok) != LQ_OK) fail_msg("%s", lq_last_error());
    lq_model_free(ok);

    const char *d = copy_good("truncated");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    expect_load_error(d, "model.safetensors", NULL);

    d = copy_good("missing");
    rewrite_weights(d, K0 ".tr", NULL, 0, NULL, 0, NULL, NULL, NULL);
    expect_load_error(d, "missing tensor '" K0 ".tr'", NULL);

    d = copy_good("shape");
    int64_t bad_shape[1] = {7};
    rewrite_weights(d, NULL, Q0 ".scale", 1, bad_shape, LQ_DTYPE_F16, NULL, NULL, NULL);
    expect_load_error(d, "'" Q0 ".scale' has shape [7], expected [64]", NULL);

    d = copy_good("dtype");
    int64_t scales_shape[2] = {32, 4};
    rewrite_weights(d, NULL, V0 ".scales", 2, scales_shape, LQ_DTYPE_F32, NULL, NULL, NULL);
    expect_load_error(d, "'" V0 ".scales' has dtype F32, expected F16", NULL);

    d = copy_good("method");
    edit_config(d, K0, "method", "\"foo\"");
    expect_load_error(d, "'foo'", K0);

    d = copy_good("lattice");
    edit_config(d, Q0, "config", "\"20/8\"");
    edit_config(d, NULL, "20/8", "\"liftquant.lattice.20to8\"");
    expect_load_error(d, "missing tensor 'liftquant.lattice.20to8'", Q0);

    d = copy_good("no_lattice_entry");
    edit_config(d, Q0, "config", "\"20/8\"");
    expect_load_error(d, "no tensor for config '20/8'", Q0);

    d = copy_good("bad_config");
    edit_config(d, Q0, "config", "\"ten/four\"");
    expect_load_error(d, Q0, "config");

    d = copy_good("foreign");
    rewrite_weights(d, NULL, NULL, 0, NULL, 0, "model.layers.0.self_attn.q_proj.weight", NULL, NULL);
    expect_load_error(d, "'model.layers.0.self_attn.q_proj.weight' is not part of this model", NULL);

    d = copy_good("padding");
    rewrite_weights(d, NULL, NULL, 0, NULL, 0, NULL, DOWN2 ".qweight", flip_last_byte);
    expect_load_error(d, DOWN2 ".qweight", "padding bits");

    d = copy_good("zeros_padding");   /* 4 groups of 3 bits: 12 bits in 2 bytes */
    rewrite_weights(d, NULL, NULL, 0, NULL, 0, NULL, V0 ".qzeros", flip_last_byte);
    expect_load_error(d, V0 ".qzeros", "padding bits");

    d = copy_good("lift_padding");
    rewrite_weights(d, NULL, NULL, 0, NULL, 0, NULL, DOWN1 ".qweight", flip_last_byte);
    expect_load_error(d, DOWN1, "padding bits");

    d = copy_good("perm");
    rewrite_weights(d, NULL, NULL, 0, NULL, 0, NULL, O0 ".perm", repeat_perm);
    expect_load_error(d, O0, "repeated");

    d = copy_good("no_entry");
    json_t *cfg = read_config(d);
    json_object_del(json_object_get(json_object_get(cfg, "quantization_config"), "modules"),
                    "model.layers.4.mlp.down_proj");
    snprintf(path, sizeof path, "%s/config.json", d);
    assert_int_equal(json_dump_file(cfg, path, 0), 0);
    json_decref(cfg);
    expect_load_error(d, "no entry for 'model.layers.4.mlp.down_proj'", NULL);

    d = copy_good("version");
    cfg = read_config(d);
    json_object_set_new(json_object_get(cfg, "quantization_config"), "format_version", json_integer(2));
    snprintf(path, sizeof path, "%s/config.json", d);
    assert_int_equal(json_dump_file(cfg, path, 0), 0);
    json_decref(cfg);
    expect_load_error(d, "format_version", NULL);

    /* a tokenizer file and --tokenizer together are ambiguous */
    lq_model *m = (lq_model *)1;
    assert_int_equal(lq_load_any_model(good_dir, TOK512, &m), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "tokenizer"));
}

/* ---- bad outputs ----------------------------------------------------------------------------- */
static void test_bad_outputs(void **state) {
    (void)state;
    if (!have_data()) skip();
    lq_model *m = random_quantized_stories();

    /* a parent that is a file: nothing can be created there */
    const char *file = temp_path("plain_file");
    write_file(file, "x", 1);
    char under[PATH_MAX + 64];
    snprintf(under, sizeof under, "%s/out", file);
    assert_int_not_equal(lq_quantized_save(m, under, NULL), LQ_OK);
    assert_non_null(strstr(lq_last_error(), under));

    /* an unrelated directory is left alone */
    const char *mine = temp_path("my_notes");
    assert_int_equal(mkdir(mine, 0777), 0);
    char note[PATH_MAX + 64];
    snprintf(note, sizeof note, "%s/notes.txt", mine);
    write_file(note, "keep me", 7);
    assert_int_equal(lq_quantized_save(m, mine, NULL), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), mine));
    assert_non_null(strstr(lq_last_error(), "notes.txt"));
    assert_int_equal(access(note, R_OK), 0);
    assert_int_not_equal(access(temp_path("my_notes.tmp"), F_OK), 0);

    /* a directory with a config.json of some other model */
    const char *hf = temp_path("hf_model");
    assert_int_equal(mkdir(hf, 0777), 0);
    snprintf(note, sizeof note, "%s/config.json", hf);
    write_file(note, "{\"model_type\": \"llama\"}", 23);
    assert_int_equal(lq_quantized_save(m, hf, NULL), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "not a liftquant output"));

    /* an existing file */
    assert_int_equal(lq_quantized_save(m, file, NULL), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "not a directory"));

    /* an empty directory is fine, and a trailing slash names the same directory */
    const char *empty = temp_path("empty_out");
    assert_int_equal(mkdir(empty, 0777), 0);
    char slash[PATH_MAX + 64];
    snprintf(slash, sizeof slash, "%s/", empty);
    save_or_fail(m, slash, NULL);
    snprintf(note, sizeof note, "%s/model.safetensors", empty);
    assert_int_equal(access(note, R_OK), 0);

    /* extra_json must be an object without the format's own keys */
    assert_int_equal(lq_quantized_save(m, temp_path("x1"), "{\"modules\": {}}"), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "'modules'"));
    assert_int_equal(lq_quantized_save(m, temp_path("x2"), "[1, 2"), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "extra_json"));
    assert_int_not_equal(access(temp_path("x1"), F_OK), 0);
    assert_int_not_equal(access(temp_path("x1.tmp"), F_OK), 0);
    lq_model_free(m);

    /* a model with a dense linear cannot be saved, and nothing is left behind */
    lq_model *dense = NULL;
    assert_int_equal(lq_model_load(STORIES, TOK512, &dense), LQ_OK);
    assert_int_equal(lq_quantized_save(dense, temp_path("dense"), NULL), LQ_ERR_ARG);
    assert_non_null(strstr(lq_last_error(), "model.layers.0.self_attn.q_proj is not quantized"));
    assert_int_not_equal(access(temp_path("dense"), F_OK), 0);
    assert_int_not_equal(access(temp_path("dense.tmp"), F_OK), 0);
    lq_model_free(dense);
}

/* unquantized inputs still load through lq_load_any_model */
static void test_any_model_passes_through(void **state) {
    (void)state;
    if (!have_data()) skip();
    lq_model *m = NULL;
    assert_int_equal(lq_load_any_model(STORIES, TOK512, &m), LQ_OK);
    assert_string_equal(m->format, "llama2c");
    lq_model_free(m);
    assert_int_equal(lq_load_any_model(temp_path("absent"), NULL, &m), LQ_ERR_NOT_FOUND);
    assert_non_null(strstr(lq_last_error(), "absent"));
    /* a directory quantized by something else is named as such */
    const char *other = temp_path("gptq_hf");
    assert_int_equal(mkdir(other, 0777), 0);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", other);
    const char *cfg = "{\"model_type\": \"llama\", \"quantization_config\": {\"quant_method\": \"gptq\"}}";
    write_file(path, cfg, strlen(cfg));
    assert_int_equal(lq_load_any_model(other, NULL, &m), LQ_ERR_UNSUPPORTED);
    if (!strstr(lq_last_error(), "'gptq'")) fail_msg("%s", lq_last_error());
}

/* A module blob holds the module exactly as the model directory does: every quantized linear of
 * the random model saved alone and loaded into a fresh linear of its shape is the same linear;
 * a blob loaded under another module's name, or a truncated blob, is an error naming the file. */
static void test_module_blobs(void **state) {
    (void)state;
    if (!have_data()) skip();
    lq_model *m = random_quantized_stories();
    const lq_model_config *c = &m->cfg;
    char path[PATH_MAX + 200], name[96], other[96];
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const lq_linear *lin = linear_at(&m->layers[l], i);
            lq_linear_name(l, i, name, sizeof name);
            snprintf(path, sizeof path, "%s/%s.blob", temp_dir, name);
            if (lq_linear_blob_save(lin, name, path) != LQ_OK) fail_msg("%s", lq_last_error());
            lq_linear fresh = {.in_features = lin->in_features, .out_features = lin->out_features};
            if (lq_linear_blob_load(path, name, lin->bias != NULL, &fresh) != LQ_OK)
                fail_msg("%s", lq_last_error());
            assert_same_linear(lin, &fresh);
            fresh.free_impl(fresh.impl);
        }
    lq_linear_name(0, 0, name, sizeof name);
    lq_linear_name(0, 1, other, sizeof other);
    snprintf(path, sizeof path, "%s/%s.blob", temp_dir, name);
    lq_linear wrong = {.in_features = c->dim, .out_features = c->n_kv_heads * c->head_dim};
    expect_error(lq_linear_blob_load(path, other, 0, &wrong), LQ_ERR_NOT_FOUND, other);
    assert_null(wrong.impl);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    lq_linear fresh = {.in_features = c->dim, .out_features = c->n_heads * c->head_dim};
    assert_int_not_equal(lq_linear_blob_load(path, name, 0, &fresh), LQ_OK);
    assert_non_null(strstr(lq_last_error(), ".blob"));
    assert_null(fresh.impl);
    lq_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--make-fixture")) {
        if (!have_data()) return 77;
        lq_model *m = random_quantized_stories();
        lq_status st = lq_quantized_save(m, argv[2], EXTRA);
        if (st) fprintf(stderr, "test_qformat: %s\n", lq_last_error());
        lq_model_free(m);
        return st ? 1 : 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test_setup(test_bad_directories, setup_good_dir),
        cmocka_unit_test(test_bad_outputs),
        cmocka_unit_test(test_any_model_passes_through),
        cmocka_unit_test(test_module_blobs),
    };
    return cmocka_run_group_tests(tests, create_temp_dir, remove_temp_dir);
}
