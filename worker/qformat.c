/* The quantized model directory (lq_quant.h, schemas/FORMAT.md): writing it, reading it back
 * into an lq_model with the quantized linears installed, and its size accounting.
 *
 *   OUT/config.json                the model config (lq_model_config_to_json) plus
 *                                  "quantization_config": method and shape of every module,
 *                                  the lattice tensor of every LiftQuant config
 *   OUT/model.safetensors          every tensor, names as Hugging Face checkpoints use them
 *   OUT/tokenizer.liftquant.json   the tokenizer (lq_tokenizer_save_json), when the model has one
 *
 * Side data (scales, whitening parameters) is stored as F16. The LiftQuant quantizer rounds it
 * to F16 before its last error measurement, so the stored model is the one it measured and a
 * reload is bit-exact; anything not pre-rounded is rounded here (reported once at info level).
 *
 * Replacing an output: the new directory is built as OUT.tmp and renamed in; an existing OUT is
 * replaced only when it is a liftquant output (its config.json says so and it holds only the
 * files above) or an empty directory, so a mistyped --out never deletes someone's data. */
#include "lq_quant.h"
#include "lq_worker.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_VERSION 1
#define CONFIG_FILE "config.json"
#define WEIGHTS_FILE "model.safetensors"
#define TOKENIZER_FILE "tokenizer.liftquant.json"
#define N_LINEARS 7

static const char *const OUTPUT_FILES[] = {CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE};
#define N_OUTPUT_FILES (sizeof OUTPUT_FILES / sizeof OUTPUT_FILES[0])

/* The Hugging Face module names of a layer's linears, in lq_layer order: part of the format. */
static const char *const LINEAR_NAMES[N_LINEARS] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

void lq_linear_name(int layer, int index, char *out, size_t cap) {
    snprintf(out, cap, "model.layers.%d.%s", layer, LINEAR_NAMES[index]);
}

lq_linear *lq_layer_linear(lq_layer *L, int index) {
    lq_linear *all[N_LINEARS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[index];
}

static const lq_linear *layer_linear_const(const lq_layer *L, int index) {
    const lq_linear *all[N_LINEARS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[index];
}

/* in × out of linear `index` of a layer, from the config */
static void linear_shape(const lq_model_config *c, int index, int *in, int *out) {
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    static const int is_kv[N_LINEARS] = {0, 1, 1, 0, 0, 0, 0};
    switch (index) {
    case 0: case 1: case 2: *in = c->dim, *out = is_kv[index] ? kv : q; break;
    case 3: *in = q, *out = c->dim; break;
    case 4: case 5: *in = c->dim, *out = c->hidden_dim; break;
    default: *in = c->hidden_dim, *out = c->dim; break;
    }
}

static size_t packed_bytes(size_t count, int bits) { return (count * (size_t)bits + 7) / 8; }

static void lattice_tensor_name(int D, int d, char *out, size_t cap) {
    snprintf(out, cap, "liftquant.lattice.%dto%d", D, d);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

/* ---- bit streams ------------------------------------------------------------------------------
 * n codes of `bits` bits as one LSB-first stream: bit b of code j is stream bit j·bits + b, and
 * stream bit p is bit p mod 8 of byte p / 8. */
static void pack_codes(const uint8_t *codes, size_t n, int bits, uint8_t *out) {
    memset(out, 0, packed_bytes(n, bits));
    size_t p = 0;
    for (size_t j = 0; j < n; j++)
        for (int b = 0; b < bits; b++, p++)
            if ((codes[j] >> b) & 1) out[p >> 3] |= (uint8_t)(1u << (p & 7));
}

/* Returns 0, or 1 when a padding bit after the last code is set. */
static int unpack_codes(const uint8_t *in, size_t n, int bits, uint8_t *codes) {
    size_t p = 0;
    for (size_t j = 0; j < n; j++) {
        unsigned v = 0;
        for (int b = 0; b < bits; b++, p++) v |= (unsigned)((in[p >> 3] >> (p & 7)) & 1) << b;
        codes[j] = (uint8_t)v;
    }
    for (; p < packed_bytes(n, bits) * 8; p++)
        if ((in[p >> 3] >> (p & 7)) & 1) return 1;
    return 0;
}

/* ---- size accounting ------------------------------------------------------------------------ */
lq_status lq_linear_stored_size(const lq_linear *lin, lq_linear_size *out) {
    memset(out, 0, sizeof *out);
    if (!lin) return lq_fail(LQ_ERR_ARG, "lq_linear_stored_size: no linear");
    const lq_lift_weights *lw = lq_linear_lift(lin);
    const lq_grouped_weights *gw = lq_linear_grouped(lin);
    out->weights = (size_t)lin->out_features * (size_t)lin->in_features;
    if (lw) {
        size_t oc = (size_t)lw->out_features, t1 = (size_t)lw->t1, t2 = (size_t)lw->t2;
        out->code_bytes = oc * lq_lift_row_bytes(lw);
        out->side_bytes = 2 * (oc + t1 * t2 + t1 * t1 + t2 * (size_t)lq_lift_t3(lw) +
                               t1 * (t2 / (size_t)lw->d));
    } else if (gw) {
        size_t oc = (size_t)gw->out_features, ng = (size_t)lq_grouped_ngroups(gw);
        out->code_bytes = oc * packed_bytes((size_t)gw->in_features, gw->bits);
        out->side_bytes = oc * ng * 2 + oc * packed_bytes(ng, gw->bits) +
                          (gw->perm ? (size_t)gw->in_features * sizeof(int32_t) : 0);
    } else if (lin->weight && !lin->forward) {
        /* an unquantized matrix is stored as F16 */
        out->code_bytes = out->weights * 2;
    } else {
        return lq_fail(LQ_ERR_UNSUPPORTED, "lq_linear_stored_size: a %d × %d linear of a kind "
                       "the format does not store", lin->out_features, lin->in_features);
    }
    return LQ_OK;
}

/* ---- the output directory -------------------------------------------------------------------- */
static int is_output_file(const char *name, int allow_temp) {
    for (size_t i = 0; i < N_OUTPUT_FILES; i++) {
        size_t n = strlen(OUTPUT_FILES[i]);
        if (!strcmp(name, OUTPUT_FILES[i])) return 1;
        /* lq_write_file_atomic's and the safetensors writer's temporary names, left by a crash */
        if (allow_temp && !strncmp(name, OUTPUT_FILES[i], n) && !strncmp(name + n, ".tmp", 4)) return 1;
    }
    return 0;
}

typedef enum { DIR_ABSENT, DIR_EMPTY, DIR_OURS, DIR_OTHER, DIR_UNREADABLE } dir_kind;

/* What lies at path. DIR_OURS: a directory holding only output files (temporary ones too when
 * allow_temp) and, unless allow_temp, a config.json of a liftquant output. why: for messages. */
static dir_kind classify(const char *path, int allow_temp, char *why, size_t cap) {
    struct stat sb;
    why[0] = 0;
    if (lstat(path, &sb) != 0) {
        /* ENOTDIR: a parent is a file; mkdir will then say so */
        if (errno == ENOENT || errno == ENOTDIR) return DIR_ABSENT;
        snprintf(why, cap, "%s", strerror(errno));
        return DIR_UNREADABLE;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(why, cap, "it is not a directory");
        return DIR_OTHER;
    }
    DIR *dp = opendir(path);
    if (!dp) {
        snprintf(why, cap, "%s", strerror(errno));
        return DIR_UNREADABLE;
    }
    int entries = 0, foreign = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries++;
        if (!foreign && !is_output_file(e->d_name, allow_temp)) {
            foreign = 1;
            snprintf(why, cap, "it holds '%s', which a liftquant output does not", e->d_name);
        }
    }
    closedir(dp);
    if (foreign) return DIR_OTHER;
    if (entries == 0) return DIR_EMPTY;
    if (allow_temp) return DIR_OURS;
    char *cfg_path = path_join(path, CONFIG_FILE);
    json_t *cfg = cfg_path ? json_load_file(cfg_path, 0, NULL) : NULL;
    free(cfg_path);
    json_t *qm = json_object_get(json_object_get(cfg, "quantization_config"), "quant_method");
    int ours = json_is_string(qm) && !strcmp(json_string_value(qm), "liftquant");
    json_decref(cfg);
    if (!ours) snprintf(why, cap, "its config.json is not that of a liftquant output");
    return ours ? DIR_OURS : DIR_OTHER;
}

/* Removes a directory classify() accepted: its output files, then itself. */
static lq_status remove_output_dir(const char *path) {
    DIR *dp = opendir(path);
    if (!dp) return lq_fail(LQ_ERR_IO, "%s: cannot list: %s", path, strerror(errno));
    struct dirent *e;
    lq_status st = LQ_OK;
    while ((e = readdir(dp)) && !st) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!is_output_file(e->d_name, 1)) continue;
        char *p = path_join(path, e->d_name);
        if (!p) st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        else if (unlink(p) != 0 && errno != ENOENT)
            st = lq_fail(LQ_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
        free(p);
    }
    closedir(dp);
    if (!st && rmdir(path) != 0)
        st = lq_fail(LQ_ERR_IO, "%s: cannot remove the directory: %s", path, strerror(errno));
    return st;
}

/* fsync of the directory holding path, so a rename survives a crash */
static void sync_parent(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    char *slash = strrchr(copy, '/');
    const char *parent = slash ? (slash == copy ? "/" : (*slash = 0, copy)) : ".";
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* ---- saving ---------------------------------------------------------------------------------- */
typedef struct {
    const lq_model *m;
    const char *out;        /* for messages */
    lq_st_writer *w;
    json_t *modules, *lattices;
    int rounded_modules;    /* modules whose F16 side data was not pre-rounded */
    struct stored_lattice { int D, d; const float *M; } *lattices_seen; /* to check they agree */
    size_t n_lattices;
} saver;

static lq_status add_tensor(saver *s, const char *name, lq_dtype dtype, int64_t d0, int64_t d1,
                            const void *data) {
    int64_t shape[2] = {d0, d1};
    lq_status st = lq_st_writer_add(s->w, name, dtype, d1 ? 2 : 1, shape, data);
    return st ? lq_fail_context(st, "%s: tensor '%s'", s->out, name) : LQ_OK;
}

/* Stores n floats as F16 under name; *rounded is set when a value changed. Values that do not
 * fit F16 (or are not finite) are an error naming the tensor. */
static lq_status add_f16(saver *s, const char *name, const float *x, int64_t d0, int64_t d1,
                         int *rounded) {
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for tensor '%s'", s->out, name);
    lq_status st = lq_convert_from_f32(LQ_DTYPE_F16, x, h, n);
    for (size_t i = 0; i < n && !st; i++) {
        float back = lq_f16_to_f32(h[i]);
        if (!isfinite(back))
            st = lq_fail(LQ_ERR_RANGE, "%s: tensor '%s': element %zu = %g does not fit F16", s->out,
                         name, i, (double)x[i]);
        else if (back != x[i] && rounded)
            *rounded = 1;
    }
    if (!st) st = add_tensor(s, name, LQ_DTYPE_F16, d0, d1, h);
    free(h);
    return st;
}

/* The embeddings or the head as F16, from f32 or from a loaded directory's binary16 copy. */
static lq_status add_vocab_table(saver *s, const char *name, const float *f32, const uint16_t *f16,
                                 int64_t rows, int64_t cols) {
    if (!f16) return add_f16(s, name, f32, rows, cols, NULL);
    const size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++)
        if ((f16[i] & 0x7c00u) == 0x7c00u) /* all-ones exponent: Inf or NaN */
            return lq_fail(LQ_ERR_NUMERIC, "%s: tensor '%s': element %zu is not finite", s->out,
                           name, i);
    return add_tensor(s, name, LQ_DTYPE_F16, rows, cols, f16);
}

static lq_status add_f32(saver *s, const char *name, const float *x, int64_t d0, int64_t d1) {
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return lq_fail(LQ_ERR_NUMERIC, "%s: tensor '%s': element %zu is not finite", s->out,
                           name, i);
    return add_tensor(s, name, LQ_DTYPE_F32, d0, d1, x);
}

/* The lattice of config D/d, stored once; every module of that config must use the same M. */
static lq_status add_lattice(saver *s, const lq_lift_weights *w, const char *module) {
    char config[32], tname[64];
    snprintf(config, sizeof config, "%d/%d", w->D, w->d);
    lattice_tensor_name(w->D, w->d, tname, sizeof tname);
    size_t bytes = (size_t)w->d * (size_t)w->D * sizeof(float);
    for (size_t i = 0; i < s->n_lattices; i++) {
        const struct stored_lattice *known = &s->lattices_seen[i];
        if (known->D != w->D || known->d != w->d) continue;
        if (memcmp(known->M, w->M, bytes) != 0)
            return lq_fail(LQ_ERR_ARG, "%s: %s uses a different lattice M than an earlier module "
                           "of config %s; the format stores one lattice per config", s->out,
                           module, config);
        return LQ_OK;
    }
    struct stored_lattice *grown = realloc(s->lattices_seen, (s->n_lattices + 1) * sizeof *grown);
    if (!grown) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
    s->lattices_seen = grown;
    s->lattices_seen[s->n_lattices++] = (struct stored_lattice){w->D, w->d, w->M};
    if (json_object_set_new(s->lattices, config, json_string(tname)) != 0)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
    return add_f32(s, tname, w->M, w->d, w->D);
}

static lq_status save_lift(saver *s, const char *name, const lq_lift_weights *w) {
    char t[160];
    lq_status st = lq_lift_weights_validate(w, name);
    if (st) return lq_fail_context(st, "%s", s->out);
    int64_t oc = w->out_features, t1 = w->t1, t2 = w->t2, t3 = lq_lift_t3(w);
    int rounded = 0;
#define T(suffix) (snprintf(t, sizeof t, "%s.%s", name, suffix), t)
    if ((st = add_tensor(s, T("qweight"), LQ_DTYPE_U8, oc, (int64_t)lq_lift_row_bytes(w), w->bits)) ||
        (st = add_f16(s, T("scale"), w->scale, oc, 0, &rounded)) ||
        (st = add_f16(s, T("a1inv"), w->a1inv, t1 * t2, 0, &rounded)) ||
        (st = add_f16(s, T("tl"), w->tl, t1, t1, &rounded)) ||
        (st = add_f16(s, T("tr"), w->tr, t2, t3, &rounded)) ||
        (st = add_f16(s, T("a2inv"), w->a2inv, t1, t2 / w->d, &rounded)) ||
        (w->bias && (st = add_f32(s, T("bias"), w->bias, oc, 0))) ||
        (st = add_lattice(s, w, name)))
        return st;
#undef T
    s->rounded_modules += rounded;
    char config[32];
    snprintf(config, sizeof config, "%d/%d", w->D, w->d);
    json_t *entry = json_pack("{s:s, s:s, s:i, s:i}", "method", "liftquant", "config", config,
                              "t1", w->t1, "t2", w->t2);
    if (!entry || json_object_set_new(s->modules, name, entry) != 0)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
    return LQ_OK;
}

static lq_status save_grouped(saver *s, const char *name, const lq_grouped_weights *w) {
    char t[160];
    lq_status st = lq_grouped_weights_validate(w, name);
    if (st) return lq_fail_context(st, "%s", s->out);
    size_t oc = (size_t)w->out_features, ic = (size_t)w->in_features;
    size_t ng = (size_t)lq_grouped_ngroups(w);
    size_t code_row = packed_bytes(ic, w->bits), zero_row = packed_bytes(ng, w->bits);
    uint8_t *codes = malloc(oc * code_row), *zeros = malloc(oc * zero_row);
    if (!codes || !zeros) {
        free(codes), free(zeros);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for module %s", s->out, name);
    }
    for (size_t r = 0; r < oc; r++) {
        pack_codes(w->codes + r * ic, ic, w->bits, codes + r * code_row);
        pack_codes(w->zeros + r * ng, ng, w->bits, zeros + r * zero_row);
    }
    int rounded = 0;
#define T(suffix) (snprintf(t, sizeof t, "%s.%s", name, suffix), t)
    if (!(st = add_tensor(s, T("qweight"), LQ_DTYPE_U8, (int64_t)oc, (int64_t)code_row, codes)) &&
        !(st = add_f16(s, T("scales"), w->scales, (int64_t)oc, (int64_t)ng, &rounded)) &&
        !(st = add_tensor(s, T("qzeros"), LQ_DTYPE_U8, (int64_t)oc, (int64_t)zero_row, zeros)) &&
        !(w->perm && (st = add_tensor(s, T("perm"), LQ_DTYPE_I32, (int64_t)ic, 0, w->perm))) &&
        !(w->bias && (st = add_f32(s, T("bias"), w->bias, (int64_t)oc, 0)))) {
        s->rounded_modules += rounded;
        /* act order exists only in GPTQ */
        json_t *entry = json_pack("{s:s, s:i, s:i, s:b}", "method", w->gptq || w->perm ? "gptq" : "rtn",
                                  "bits", w->bits, "group", w->group, "act_order", w->perm != NULL);
        if (!entry || json_object_set_new(s->modules, name, entry) != 0)
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
    }
#undef T
    free(codes);
    free(zeros);
    return st;
}

static lq_status save_tensors(saver *s) {
    const lq_model *m = s->m;
    const lq_model_config *c = &m->cfg;
    lq_status st;
    if (!(m->tok_embeddings || m->tok_embeddings_f16) || !m->final_norm)
        return lq_fail(LQ_ERR_ARG, "%s: the model has no embeddings or final norm", s->out);
    if ((st = add_vocab_table(s, "model.embed_tokens.weight", m->tok_embeddings,
                              m->tok_embeddings_f16, c->vocab_size, c->dim)))
        return st;
    for (int l = 0; l < c->n_layers; l++) {
        const lq_layer *L = &m->layers[l];
        char name[128], t[160];
#define T(suffix) (snprintf(t, sizeof t, "model.layers.%d.%s", l, suffix), t)
        if ((st = add_f32(s, T("input_layernorm.weight"), L->attn_norm, c->dim, 0)) ||
            (st = add_f32(s, T("post_attention_layernorm.weight"), L->ffn_norm, c->dim, 0)))
            return st;
        if (c->has_qk_norm &&
            ((st = add_f32(s, T("self_attn.q_norm.weight"), L->q_norm, c->head_dim, 0)) ||
             (st = add_f32(s, T("self_attn.k_norm.weight"), L->k_norm, c->head_dim, 0))))
            return st;
#undef T
        for (int i = 0; i < N_LINEARS; i++) {
            const lq_linear *lin = layer_linear_const(L, i);
            lq_linear_name(l, i, name, sizeof name);
            const lq_lift_weights *lw = lq_linear_lift(lin);
            const lq_grouped_weights *gw = lq_linear_grouped(lin);
            if (lw) st = save_lift(s, name, lw);
            else if (gw) st = save_grouped(s, name, gw);
            else
                st = lq_fail(LQ_ERR_ARG, "%s: %s is not quantized; every decoder-layer linear must "
                             "be (LiftQuant, GPTQ or RTN) before saving", s->out, name);
            if (st) return st;
        }
    }
    if ((st = add_f32(s, "model.norm.weight", m->final_norm, c->dim, 0))) return st;
    if (!c->tied_embeddings) {
        if (!(m->lm_head.weight || m->lm_head.weight_f16) || m->lm_head.forward)
            return lq_fail(LQ_ERR_UNSUPPORTED, "%s: lm_head must be a dense matrix (the format "
                           "stores it as F16)", s->out);
        if ((st = add_vocab_table(s, "lm_head.weight", m->lm_head.weight, m->lm_head.weight_f16,
                                  c->vocab_size, c->dim)))
            return st;
    }
    return LQ_OK;
}

/* What save_tensors writes besides the decoder linears' codes and side data, in bytes, bounded
 * above where the exact figure is only known on writing (lq_quant.h). Kept beside save_tensors
 * because it must follow it: embeddings and an untied head in F16, norms and biases in F32,
 * one F32 lattice per config, and the header, whose entries are each the tensor's quoted name
 * plus at most HEADER_ENTRY_MAX bytes of {"dtype":"F16","shape":[N,N],"data_offsets":[N,N]}
 * with 11-digit numbers. Module entries are counted for LiftQuant's seven tensors. */
#define HEADER_ENTRY_MAX 80
uint64_t lq_quantized_fixed_bytes(const lq_model *m, const int *D, const int *d, int n_configs) {
    const lq_model_config *c = &m->cfg;
    uint64_t b = (uint64_t)c->vocab_size * c->dim * 2;
    if (!c->tied_embeddings) b += (uint64_t)c->vocab_size * c->dim * 2;
    b += ((uint64_t)2 * c->n_layers + 1) * c->dim * 4;
    if (c->has_qk_norm) b += (uint64_t)2 * c->n_layers * c->head_dim * 4;
    if (c->has_qkv_bias)
        b += (uint64_t)c->n_layers * (c->n_heads + 2 * c->n_kv_heads) * c->head_dim * 4;
    uint64_t header = 4096;   /* the metadata and the JSON around the entries */
    for (int k = 0; k < n_configs; k++)
        b += (uint64_t)D[k] * d[k] * 4, header += 64 + HEADER_ENTRY_MAX;
    /* embeddings, final norm, and an untied head */
    header += (uint64_t)(2 + !c->tied_embeddings) * (64 + HEADER_ENTRY_MAX);
    for (int l = 0; l < c->n_layers; l++) {
        char module[96];
        /* two or four norms, named like "model.layers.L.post_attention_layernorm.weight" */
        lq_linear_name(l, 0, module, sizeof module);
        header += (uint64_t)(2 + 2 * (c->has_qk_norm != 0)) * (strlen(module) + 32 + HEADER_ENTRY_MAX);
        for (int i = 0; i < N_LINEARS; i++) {
            lq_linear_name(l, i, module, sizeof module);
            /* qweight, scale, a1inv, tl, tr, a2inv, bias: suffixes of ≤ 8 bytes */
            header += 7 * (strlen(module) + 12 + HEADER_ENTRY_MAX);
        }
    }
    return b + header;
}

/* config.json: the model config, then quantization_config with `extra` merged in. */
static lq_status build_config(saver *s, const char *extra_json, json_t **out) {
    *out = NULL;
    json_t *extra = NULL;
    if (extra_json) {
        json_error_t err;
        extra = json_loads(extra_json, JSON_REJECT_DUPLICATES, &err);
        if (!extra || !json_is_object(extra)) {
            json_decref(extra);
            return lq_fail(LQ_ERR_ARG, "%s: extra_json is not a JSON object%s%s", s->out,
                           extra ? "" : ": ", extra ? "" : err.text);
        }
        static const char *const reserved[] = {"quant_method", "format_version", "modules", "lattices"};
        for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
            if (json_object_get(extra, reserved[i])) {
                json_decref(extra);
                return lq_fail(LQ_ERR_ARG, "%s: extra_json sets '%s', which the format reserves",
                               s->out, reserved[i]);
            }
    }
    json_t *cfg = NULL;
    lq_status st = lq_model_config_to_json(&s->m->cfg, &cfg);
    if (st) {
        json_decref(extra);
        return lq_fail_context(st, "%s", s->out);
    }
    json_t *qc = json_pack("{s:s, s:i, s:O, s:O}", "quant_method", "liftquant", "format_version",
                           FORMAT_VERSION, "modules", s->modules, "lattices", s->lattices);
    int failed = !qc || (extra && json_object_update(qc, extra) != 0) ||
                 json_object_set_new(cfg, "torch_dtype", json_string("float16")) != 0;
    const lq_tokenizer *tok = s->m->tokenizer;
    if (tok && lq_tokenizer_bos(tok) >= 0)
        failed |= json_object_set_new(cfg, "bos_token_id", json_integer(lq_tokenizer_bos(tok))) != 0;
    if (tok && lq_tokenizer_eos(tok) >= 0)
        failed |= json_object_set_new(cfg, "eos_token_id", json_integer(lq_tokenizer_eos(tok))) != 0;
    failed |= !qc || json_object_set(cfg, "quantization_config", qc) != 0;
    json_decref(qc);
    json_decref(extra);
    if (failed) {
        json_decref(cfg);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory building config.json", s->out);
    }
    *out = cfg;
    return LQ_OK;
}

/* Writes the three files into dir (which exists). */
static lq_status write_files(saver *s, const char *dir, const char *extra_json) {
    lq_status st = lq_st_writer_new(&s->w);
    if (st) return st;
    s->modules = json_object();
    s->lattices = json_object();
    if (!s->modules || !s->lattices) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
    char *wpath = path_join(dir, WEIGHTS_FILE), *cpath = path_join(dir, CONFIG_FILE);
    char *tpath = path_join(dir, TOKENIZER_FILE);
    json_t *cfg = NULL;
    char *text = NULL;
    if (!wpath || !cpath || !tpath) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", s->out);
        goto done;
    }
    if ((st = save_tensors(s)) ||
        (st = lq_st_writer_metadata(s->w, "format", "pt")) ||
        (st = lq_st_writer_metadata(s->w, "liftquant_format_version", "1")) ||
        (st = lq_st_writer_write(s->w, wpath)))
        goto done;
    if (s->m->tokenizer && (st = lq_tokenizer_save_json(s->m->tokenizer, tpath))) goto done;
    if ((st = build_config(s, extra_json, &cfg))) goto done;
    /* 15 digits print the short decimals lq_model_config_to_json chose, and keep extra's */
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (!text) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory writing config.json", s->out);
        goto done;
    }
    size_t len = strlen(text);
    text[len] = '\n';   /* json_dumps leaves no newline; the NUL slot takes it */
    st = lq_write_file_atomic(cpath, text, len + 1);
done:
    free(text);
    json_decref(cfg);
    free(wpath), free(cpath), free(tpath);
    return st;
}

lq_status lq_quantized_save(const lq_model *m, const char *out_dir, const char *extra_json) {
    if (!m || !out_dir || !*out_dir) return lq_fail(LQ_ERR_ARG, "lq_quantized_save: no model or no output path");
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;   /* "out/" names the directory out */
    char *out = strndup(out_dir, n);
    char *tmp = malloc(n + 8), *old = malloc(n + 8);
    saver s = {.m = m, .out = out};
    lq_status st = LQ_OK;
    char why[512];
    if (!out || !tmp || !old) {
        st = lq_fail(LQ_ERR_NOMEM, "lq_quantized_save: out of memory");
        goto done;
    }
    snprintf(tmp, n + 8, "%s.tmp", out);
    snprintf(old, n + 8, "%s.old", out);
    /* refuse before hours of writing, not after */
    dir_kind target = classify(out, 0, why, sizeof why);
    if (target == DIR_UNREADABLE) {
        st = lq_fail(LQ_ERR_IO, "%s: cannot examine the output path: %s", out, why);
        goto done;
    }
    if (target == DIR_OTHER) {
        st = lq_fail(LQ_ERR_ARG, "%s exists and is not a liftquant output (%s); refusing to replace "
                     "it: choose another output path or remove it", out, why);
        goto done;
    }
    const char *leftovers[2] = {tmp, old};
    for (int i = 0; i < 2; i++) {
        dir_kind k = classify(leftovers[i], 1, why, sizeof why);
        if (k == DIR_UNREADABLE) {
            st = lq_fail(LQ_ERR_IO, "%s: cannot examine: %s", leftovers[i], why);
            goto done;
        }
        if (k == DIR_OTHER) {
            st = lq_fail(LQ_ERR_ARG, "%s exists and is not a leftover liftquant output (%s); "
                         "remove it", leftovers[i], why);
            goto done;
        }
        if (k != DIR_ABSENT && (st = remove_output_dir(leftovers[i]))) goto done;
    }
    if (mkdir(tmp, 0777) != 0) {
        st = lq_fail(LQ_ERR_IO, "%s: cannot create the output directory: %s", tmp, strerror(errno));
        goto done;
    }
    if ((st = write_files(&s, tmp, extra_json))) {
        /* a full disk reports "write failed" about a file inside OUT.tmp; the message says
         * what that means for OUT, and keeps the cause even when the clean-up fails too */
        char cause[1024];
        snprintf(cause, sizeof cause, "%s", lq_last_error());
        int removed = remove_output_dir(tmp) == LQ_OK;
        st = lq_fail(st, "%s: not written (%s %s; %s): %s", out, tmp,
                     removed ? "removed" : "could not be removed, remove it by hand",
                     target != DIR_ABSENT ? "the previous output is as it was" : "nothing else changed",
                     cause);
        goto done;
    }
    if (s.rounded_modules)
        LQ_INFO("%s: side data of %d module(s) rounded to F16 on saving (not pre-rounded by the "
                "quantizer)", out, s.rounded_modules);
    sync_parent(tmp);
    if (target != DIR_ABSENT && rename(out, old) != 0) {
        st = lq_fail(LQ_ERR_IO, "%s: cannot move the previous output aside: %s", out, strerror(errno));
        remove_output_dir(tmp);
        goto done;
    }
    if (rename(tmp, out) != 0) {
        st = lq_fail(LQ_ERR_IO, "%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
        if (target != DIR_ABSENT) rename(old, out);
        goto done;
    }
    sync_parent(out);
    if (target != DIR_ABSENT && (st = remove_output_dir(old)))
        st = lq_fail_context(st, "%s was written, but the previous output remains as %s", out, old);
done:
    lq_st_writer_free(s.w);
    json_decref(s.modules);
    json_decref(s.lattices);
    free(s.lattices_seen);
    free(out), free(tmp), free(old);
    return st;
}

/* ---- loading --------------------------------------------------------------------------------- */
typedef struct {
    const char *dir;
    char *wpath;            /* dir/model.safetensors, for messages */
    lq_st_file *st;
    lq_model *m;
    json_t *used;           /* tensor names consumed, to find foreign ones */
} loader;

static void shape_text(const int64_t *shape, int ndim, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < ndim && strlen(out) + 24 < cap; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%lld", i ? ", " : "", (long long)shape[i]);
}

/* The tensor `name` with this dtype (any float dtype when float_any) and shape [d0] or [d0, d1]. */
static lq_status require(loader *ld, const char *name, lq_dtype dtype, int float_any, int64_t d0,
                         int64_t d1, const lq_st_tensor **out) {
    const lq_st_tensor *t = lq_st_find(ld->st, name);
    if (!t) return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor '%s'", ld->wpath, name);
    if (json_object_set_new(ld->used, name, json_true()) != 0)
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", ld->wpath);
    int ok_dtype = float_any ? (t->dtype == LQ_DTYPE_F32 || t->dtype == LQ_DTYPE_F16 ||
                                t->dtype == LQ_DTYPE_BF16)
                             : t->dtype == dtype;
    if (!ok_dtype)
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", ld->wpath, name,
                       lq_dtype_name(t->dtype), float_any ? "F16, BF16 or F32" : lq_dtype_name(dtype));
    int64_t want[2] = {d0, d1};
    int ndim = d1 ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char have[96], exp[64];
        shape_text(t->shape, t->ndim, have, sizeof have);
        shape_text(want, ndim, exp, sizeof exp);
        return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", ld->wpath,
                       name, have, exp);
    }
    *out = t;
    return LQ_OK;
}

/* A float tensor converted to f32 into dst (n = d0·d1 floats). */
static lq_status read_floats(loader *ld, const char *name, lq_dtype dtype, int float_any,
                             int64_t d0, int64_t d1, float *dst) {
    const lq_st_tensor *t;
    lq_status st = require(ld, name, dtype, float_any, d0, d1, &t);
    if (st) return st;
    st = lq_convert_to_f32(t->dtype, t->data, dst, (size_t)d0 * (size_t)(d1 ? d1 : 1));
    return st ? lq_fail_context(st, "%s: tensor '%s'", ld->wpath, name) : LQ_OK;
}

/* An unquantized tensor into model memory. */
static lq_status read_model_tensor(loader *ld, const char *name, int64_t d0, int64_t d1, float **out) {
    *out = lq_model_alloc(ld->m, (size_t)d0 * (size_t)(d1 ? d1 : 1));
    if (!*out) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for tensor '%s'", ld->wpath, name);
    return read_floats(ld, name, LQ_DTYPE_F32, 1, d0, d1, *out);
}

/* The embeddings or the head. The format stores them in F16 (DESIGN.md §3) and the runtime
 * keeps them so (*f16): widening them would double the largest tensors in memory and the
 * bytes a decode step reads through the head. Any other float dtype is widened into *f32. */
static lq_status read_vocab_table(loader *ld, const char *name, int64_t rows, int64_t cols,
                                  float **f32, uint16_t **f16) {
    const lq_st_tensor *t;
    lq_status st = require(ld, name, LQ_DTYPE_F16, 1, rows, cols, &t);
    if (st) return st;
    if (t->dtype != LQ_DTYPE_F16) return read_model_tensor(ld, name, rows, cols, f32);
    const size_t n = (size_t)rows * (size_t)cols;
    *f16 = lq_model_alloc_f16(ld->m, n);
    if (!*f16) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for tensor '%s'", ld->wpath, name);
    memcpy(*f16, t->data, n * sizeof **f16);
    return LQ_OK;
}

static lq_status entry_int(const char *cfg_path, const char *module, const json_t *entry,
                           const char *key, int lo, int hi, int *out) {
    json_t *v = json_object_get(entry, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.modules['%s'].%s must be an integer "
                       "in [%d, %d]", cfg_path, module, key, lo, hi);
    *out = (int)json_integer_value(v);
    return LQ_OK;
}

/* The bias of q/k/v when the config has one, and no bias tensor anywhere else. */
static lq_status read_bias(loader *ld, const char *module, int want, int64_t oc, float *dst) {
    char t[160];
    snprintf(t, sizeof t, "%s.bias", module);
    if (!want) {
        if (lq_st_find(ld->st, t))
            return lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' is present, but the model config has no "
                           "bias for this linear", ld->wpath, t);
        return LQ_OK;
    }
    return read_floats(ld, t, LQ_DTYPE_F32, 0, oc, 0, dst);
}

static lq_status load_lift(loader *ld, const char *cfg_path, const char *module, const json_t *entry,
                           const json_t *lattices, int with_bias, lq_linear *lin) {
    json_t *cv = json_object_get(entry, "config");
    if (!json_is_string(cv))
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.modules['%s'].config must be a "
                       "lattice config string such as \"24/10\"", cfg_path, module);
    const char *config = json_string_value(cv);
    int D = 0, d = 0, t1 = 0, t2 = 0;
    lq_status st = lq_lattice_config_parse(config, &D, &d);
    if (st) return lq_fail_context(st, "%s: quantization_config.modules['%s'].config", cfg_path, module);
    if ((st = entry_int(cfg_path, module, entry, "t1", 1, INT_MAX, &t1)) ||
        (st = entry_int(cfg_path, module, entry, "t2", 1, INT_MAX, &t2)))
        return st;
    json_t *lname = json_object_get(lattices, config);
    if (!json_is_string(lname))
        return lq_fail(LQ_ERR_NOT_FOUND, "%s: quantization_config.lattices has no tensor for config "
                       "'%s' (used by %s)", cfg_path, config, module);
    const lq_st_tensor *lat;
    if ((st = require(ld, json_string_value(lname), LQ_DTYPE_F32, 0, d, D, &lat)))
        return lq_fail_context(st, "lattice of config %s, used by %s", config, module);
    lq_lift_weights w;
    if ((st = lq_lift_weights_alloc(&w, lin->out_features, lin->in_features, D, d, t1, t2, with_bias)))
        return lq_fail_context(st, "%s: %s", cfg_path, module);
    int64_t oc = w.out_features, t3 = lq_lift_t3(&w);
    const lq_st_tensor *q;
    char t[160];
#define T(suffix) (snprintf(t, sizeof t, "%s.%s", module, suffix), t)
    if (!(st = require(ld, T("qweight"), LQ_DTYPE_U8, 0, oc, (int64_t)lq_lift_row_bytes(&w), &q)))
        memcpy(w.bits, q->data, q->nbytes);
    if (!st) st = lq_convert_to_f32(LQ_DTYPE_F32, lat->data, w.M, (size_t)d * (size_t)D);
    if (!st && !(st = read_floats(ld, T("scale"), LQ_DTYPE_F16, 0, oc, 0, w.scale)) &&
        !(st = read_floats(ld, T("a1inv"), LQ_DTYPE_F16, 0, (int64_t)t1 * t2, 0, w.a1inv)) &&
        !(st = read_floats(ld, T("tl"), LQ_DTYPE_F16, 0, t1, t1, w.tl)) &&
        !(st = read_floats(ld, T("tr"), LQ_DTYPE_F16, 0, t2, t3, w.tr)) &&
        !(st = read_floats(ld, T("a2inv"), LQ_DTYPE_F16, 0, t1, t2 / d, w.a2inv)))
        st = read_bias(ld, module, with_bias, oc, w.bias);
#undef T
    char what[256];
    snprintf(what, sizeof what, "%s: %s", ld->wpath, module);
    if (!st) st = lq_lift_weights_validate(&w, what);
    if (!st) st = lq_linear_set_lift(lin, &w);
    lq_lift_weights_free(&w);
    return st;
}

static lq_status load_grouped(loader *ld, const char *cfg_path, const char *module,
                              const json_t *entry, int gptq, int with_bias, lq_linear *lin) {
    int bits = 0, group = 0;
    lq_status st;
    if ((st = entry_int(cfg_path, module, entry, "bits", 1, 8, &bits)) ||
        (st = entry_int(cfg_path, module, entry, "group", 1, INT_MAX, &group)))
        return st;
    json_t *ao = json_object_get(entry, "act_order");
    if (ao && !json_is_boolean(ao))
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.modules['%s'].act_order must be true "
                       "or false", cfg_path, module);
    int act_order = json_is_true(ao);
    lq_grouped_weights w;
    if ((st = lq_grouped_weights_alloc(&w, lin->out_features, lin->in_features, bits, group,
                                       act_order, with_bias)))
        return lq_fail_context(st, "%s: %s", cfg_path, module);
    w.gptq = gptq;
    size_t oc = (size_t)w.out_features, ic = (size_t)w.in_features, ng = (size_t)lq_grouped_ngroups(&w);
    size_t code_row = packed_bytes(ic, bits), zero_row = packed_bytes(ng, bits);
    const lq_st_tensor *q, *z, *p;
    char t[160];
#define T(suffix) (snprintf(t, sizeof t, "%s.%s", module, suffix), t)
    if (!(st = require(ld, T("qweight"), LQ_DTYPE_U8, 0, (int64_t)oc, (int64_t)code_row, &q)))
        for (size_t r = 0; r < oc && !st; r++)
            if (unpack_codes((const uint8_t *)q->data + r * code_row, ic, bits, w.codes + r * ic))
                st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': row %zu sets padding bits after its "
                             "%zu codes (they must be 0)", ld->wpath, t, r, ic);
    if (!st && !(st = require(ld, T("qzeros"), LQ_DTYPE_U8, 0, (int64_t)oc, (int64_t)zero_row, &z)))
        for (size_t r = 0; r < oc && !st; r++)
            if (unpack_codes((const uint8_t *)z->data + r * zero_row, ng, bits, w.zeros + r * ng))
                st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s': row %zu sets padding bits after its "
                             "%zu zeros (they must be 0)", ld->wpath, t, r, ng);
    if (!st) st = read_floats(ld, T("scales"), LQ_DTYPE_F16, 0, (int64_t)oc, (int64_t)ng, w.scales);
    if (!st && act_order && !(st = require(ld, T("perm"), LQ_DTYPE_I32, 0, (int64_t)ic, 0, &p)))
        memcpy(w.perm, p->data, p->nbytes);
    if (!st && !act_order && lq_st_find(ld->st, T("perm")))
        st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' is present, but act_order is false in "
                     "config.json", ld->wpath, t);
#undef T
    if (!st) st = read_bias(ld, module, with_bias, (int64_t)oc, w.bias);
    char what[256];
    snprintf(what, sizeof what, "%s: %s", ld->wpath, module);
    if (!st) st = lq_grouped_weights_validate(&w, what);
    if (!st) st = lq_linear_set_grouped(lin, &w);
    lq_grouped_weights_free(&w);
    return st;
}

static lq_status load_linears(loader *ld, const char *cfg_path, const json_t *qc) {
    const lq_model_config *c = &ld->m->cfg;
    json_t *modules = json_object_get(qc, "modules"), *lattices = json_object_get(qc, "lattices");
    if (!json_is_object(modules))
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.modules is missing or not an object", cfg_path);
    if (lattices && !json_is_object(lattices))
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.lattices is not an object", cfg_path);
    size_t expected = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N_LINEARS; i++, expected++) {
            char name[128];
            lq_linear_name(l, i, name, sizeof name);
            lq_linear *lin = lq_layer_linear(&ld->m->layers[l], i);
            linear_shape(c, i, &lin->in_features, &lin->out_features);
            json_t *entry = json_object_get(modules, name);
            if (!json_is_object(entry))
                return lq_fail(LQ_ERR_NOT_FOUND, "%s: quantization_config.modules has no entry for "
                               "'%s'", cfg_path, name);
            json_t *mv = json_object_get(entry, "method");
            const char *method = json_is_string(mv) ? json_string_value(mv) : "";
            int with_bias = c->has_qkv_bias && i < 3;
            lq_status st;
            if (!strcmp(method, "liftquant"))
                st = load_lift(ld, cfg_path, name, entry, lattices, with_bias, lin);
            else if (!strcmp(method, "gptq") || !strcmp(method, "rtn"))
                st = load_grouped(ld, cfg_path, name, entry, !strcmp(method, "gptq"), with_bias, lin);
            else
                st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: quantization_config.modules['%s'].method '%s' "
                             "is unknown (known: liftquant, gptq, rtn)", cfg_path, name, method);
            if (st) return st;
        }
    if (json_object_size(modules) != expected) {
        const char *key;
        json_t *v;
        json_object_foreach(modules, key, v) {
            int layer, used = 0;
            char rest[64];
            if (sscanf(key, "model.layers.%d.%63s", &layer, rest) == 2 && layer >= 0 && layer < c->n_layers)
                for (int i = 0; i < N_LINEARS && !used; i++) {
                    char name[128];
                    lq_linear_name(layer, i, name, sizeof name);
                    used = !strcmp(name, key);
                }
            if (!used)
                return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config.modules names '%s', which is "
                               "not a decoder-layer linear of this %d-layer model", cfg_path, key,
                               c->n_layers);
        }
    }
    return LQ_OK;
}

static lq_status load_plain(loader *ld) {
    lq_model *m = ld->m;
    const lq_model_config *c = &m->cfg;
    lq_status st;
    if ((st = read_vocab_table(ld, "model.embed_tokens.weight", c->vocab_size, c->dim,
                               &m->tok_embeddings, &m->tok_embeddings_f16)) ||
        (st = read_model_tensor(ld, "model.norm.weight", c->dim, 0, &m->final_norm)))
        return st;
    for (int l = 0; l < c->n_layers; l++) {
        lq_layer *L = &m->layers[l];
        char t[160];
#define T(suffix) (snprintf(t, sizeof t, "model.layers.%d.%s", l, suffix), t)
        if ((st = read_model_tensor(ld, T("input_layernorm.weight"), c->dim, 0, &L->attn_norm)) ||
            (st = read_model_tensor(ld, T("post_attention_layernorm.weight"), c->dim, 0, &L->ffn_norm)))
            return st;
        if (c->has_qk_norm &&
            ((st = read_model_tensor(ld, T("self_attn.q_norm.weight"), c->head_dim, 0, &L->q_norm)) ||
             (st = read_model_tensor(ld, T("self_attn.k_norm.weight"), c->head_dim, 0, &L->k_norm))))
            return st;
#undef T
    }
    m->lm_head.in_features = c->dim;
    m->lm_head.out_features = c->vocab_size;
    if (c->tied_embeddings) {
        m->lm_head.weight = m->tok_embeddings;
        m->lm_head.weight_f16 = m->tok_embeddings_f16;
        return LQ_OK;
    }
    uint16_t *head_f16 = NULL;
    st = read_vocab_table(ld, "lm_head.weight", c->vocab_size, c->dim, &m->lm_head.weight, &head_f16);
    m->lm_head.weight_f16 = head_f16;
    return st;
}

static lq_status load_tokenizer(loader *ld, const char *tokenizer_path) {
    char *path = path_join(ld->dir, TOKENIZER_FILE);
    if (!path) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", ld->dir);
    struct stat sb;
    int present = stat(path, &sb) == 0;
    lq_status st = LQ_OK;
    int vocab = ld->m->cfg.vocab_size;
    if (present && tokenizer_path)
        st = lq_fail(LQ_ERR_ARG, "%s: a separate tokenizer (%s) applies only to llama2.c "
                     "checkpoints; this directory carries its own (%s)", ld->dir, tokenizer_path,
                     TOKENIZER_FILE);
    else if (present)
        st = lq_tokenizer_load_json(path, &ld->m->tokenizer);
    else if (tokenizer_path)
        st = lq_tokenizer_load_llama2c(tokenizer_path, vocab, &ld->m->tokenizer);
    else
        LQ_WARN("%s: no %s; loading the model without a tokenizer", ld->dir, TOKENIZER_FILE);
    if (!st && ld->m->tokenizer && lq_tokenizer_vocab_size(ld->m->tokenizer) > vocab)
        st = lq_fail(LQ_ERR_FORMAT, "%s: %d tokens, but the model's vocab_size is %d", path,
                     lq_tokenizer_vocab_size(ld->m->tokenizer), vocab);
    free(path);
    return st;
}

/* config.json of dir when it is a liftquant output (*cfg set), NULL when dir holds something
 * else; errors only for a quantization_config this runtime cannot read. */
static lq_status peek_config(const char *cfg_path, json_t **cfg) {
    *cfg = NULL;
    json_t *root = json_load_file(cfg_path, JSON_REJECT_DUPLICATES, NULL);
    json_t *qc = json_object_get(root, "quantization_config");
    if (!qc || json_is_null(qc)) {
        json_decref(root);
        return LQ_OK;   /* an unquantized checkpoint, or broken JSON: lq_model_load reports it */
    }
    json_t *qm = json_object_get(qc, "quant_method");
    const char *method = json_is_string(qm) ? json_string_value(qm) : "";
    if (strcmp(method, "liftquant") != 0) {
        lq_status st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: quantization_config.quant_method '%s' is "
                               "not supported (this runtime reads liftquant outputs and "
                               "unquantized checkpoints)", cfg_path, method);
        json_decref(root);
        return st;
    }
    *cfg = root;
    return LQ_OK;
}

static lq_status load_quantized(const char *dir, const char *cfg_path, json_t *root,
                                const char *tokenizer_path, lq_model **out) {
    loader ld = {.dir = dir};
    lq_model_config c;
    json_t *qc = json_object_get(root, "quantization_config");
    json_t *fv = json_object_get(qc, "format_version");
    lq_status st;
    if (!json_is_object(qc))
        return lq_fail(LQ_ERR_FORMAT, "%s: quantization_config is not an object", cfg_path);
    if (!json_is_integer(fv) || json_integer_value(fv) != FORMAT_VERSION)
        return lq_fail(LQ_ERR_UNSUPPORTED, "%s: quantization_config.format_version must be %d (this "
                       "build reads version %d)", cfg_path, FORMAT_VERSION, FORMAT_VERSION);
    if ((st = lq_model_config_from_json(cfg_path, root, &c)) ||
        (st = lq_model_config_validate(&c, cfg_path)))
        return st;
    ld.wpath = path_join(dir, WEIGHTS_FILE);
    ld.used = json_object();
    if (!ld.wpath || !ld.used) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((st = lq_st_open(ld.wpath, &ld.st)) || (st = lq_model_new(&c, &ld.m))) goto done;
    snprintf(ld.m->source, sizeof ld.m->source, "%s", dir);
    snprintf(ld.m->format, sizeof ld.m->format, "liftquant");
    if ((st = load_plain(&ld)) || (st = load_linears(&ld, cfg_path, qc))) goto done;
    for (size_t i = 0; i < lq_st_count(ld.st); i++) {
        const char *name = lq_st_at(ld.st, i)->name;
        if (!json_object_get(ld.used, name)) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: tensor '%s' is not part of this model (config.json "
                         "names no module or lattice that uses it)", ld.wpath, name);
            goto done;
        }
    }
    st = load_tokenizer(&ld, tokenizer_path);
done:
    lq_st_close(ld.st);
    json_decref(ld.used);
    free(ld.wpath);
    if (st) {
        lq_model_free(ld.m);
        return st;
    }
    *out = ld.m;
    return LQ_OK;
}

lq_status lq_load_any_model(const char *path, const char *tokenizer_path, lq_model **out) {
    *out = NULL;
    if (!path || !*path) return lq_fail(LQ_ERR_ARG, "lq_load_any_model: no model path given");
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return lq_model_load(path, tokenizer_path, out);
    char *cfg_path = path_join(path, CONFIG_FILE);
    if (!cfg_path) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    json_t *root = NULL;
    lq_status st = peek_config(cfg_path, &root);
    if (!st)
        st = root ? load_quantized(path, cfg_path, root, tokenizer_path, out)
                  : lq_model_load(path, tokenizer_path, out);
    json_decref(root);
    free(cfg_path);
    return st;
}

/* ---- inspection ------------------------------------------------------------------------------ */
void lq_quantized_info_free(lq_quantized_info *info) {
    if (!info) return;
    free(info->modules);
    memset(info, 0, sizeof *info);
}

/* nbytes of tensor module.suffix, added to *sum; absent and optional → 0. */
static lq_status module_bytes(const lq_st_file *f, const char *wpath, const char *module,
                              const char *suffix, int optional, size_t *sum) {
    char t[160];
    snprintf(t, sizeof t, "%s.%s", module, suffix);
    const lq_st_tensor *x = lq_st_find(f, t);
    if (!x) {
        if (optional) return LQ_OK;
        return lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor '%s'", wpath, t);
    }
    *sum += x->nbytes;
    return LQ_OK;
}

static lq_status inspect_module(const lq_st_file *f, const char *wpath, const char *cfg_path,
                                const json_t *entry, lq_module_info *mi) {
    json_t *mv = json_object_get(entry, "method");
    const char *method = json_is_string(mv) ? json_string_value(mv) : "";
    snprintf(mi->method, sizeof mi->method, "%s", method);
    lq_status st = module_bytes(f, wpath, mi->name, "qweight", 0, &mi->code_bytes);
    if (st) return st;
    if (!strcmp(method, "liftquant")) {
        json_t *cv = json_object_get(entry, "config");
        snprintf(mi->config, sizeof mi->config, "%s", json_is_string(cv) ? json_string_value(cv) : "?");
        static const char *const side[] = {"scale", "a1inv", "tl", "tr", "a2inv"};
        for (size_t i = 0; i < sizeof side / sizeof side[0] && !st; i++)
            st = module_bytes(f, wpath, mi->name, side[i], 0, &mi->side_bytes);
        return st;
    }
    if (!strcmp(method, "gptq") || !strcmp(method, "rtn")) {
        json_t *b = json_object_get(entry, "bits"), *g = json_object_get(entry, "group");
        snprintf(mi->config, sizeof mi->config, "w%lldg%lld%s", (long long)json_integer_value(b),
                 (long long)json_integer_value(g),
                 json_is_true(json_object_get(entry, "act_order")) ? " act" : "");
        if ((st = module_bytes(f, wpath, mi->name, "scales", 0, &mi->side_bytes)) ||
            (st = module_bytes(f, wpath, mi->name, "qzeros", 0, &mi->side_bytes)))
            return st;
        return module_bytes(f, wpath, mi->name, "perm", 1, &mi->side_bytes);
    }
    return lq_fail(LQ_ERR_UNSUPPORTED, "%s: quantization_config.modules['%s'].method '%s' is unknown "
                   "(known: liftquant, gptq, rtn)", cfg_path, mi->name, method);
}

lq_status lq_quantized_inspect(const char *dir, lq_quantized_info *out) {
    memset(out, 0, sizeof *out);
    char *cfg_path = path_join(dir, CONFIG_FILE), *wpath = path_join(dir, WEIGHTS_FILE);
    json_t *root = NULL;
    lq_st_file *f = NULL;
    lq_status st = LQ_OK;
    if (!cfg_path || !wpath) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = lq_fail(LQ_ERR_NOT_FOUND, "%s: no such directory", dir);
        goto done;
    }
    json_error_t err;
    root = json_load_file(cfg_path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        st = lq_fail(stat(cfg_path, &sb) ? LQ_ERR_NOT_FOUND : LQ_ERR_FORMAT, "%s: %s", cfg_path,
                     stat(cfg_path, &sb) ? "no such file" : err.text);
        goto done;
    }
    json_t *qc = json_object_get(root, "quantization_config");
    json_t *qm = json_object_get(qc, "quant_method");
    if (!json_is_string(qm) || strcmp(json_string_value(qm), "liftquant") != 0) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: not a liftquant output (quantization_config.quant_method "
                     "is not \"liftquant\")", cfg_path);
        goto done;
    }
    lq_model_config c;
    if ((st = lq_model_config_from_json(cfg_path, root, &c)) ||
        (st = lq_model_config_validate(&c, cfg_path)) || (st = lq_st_open(wpath, &f)))
        goto done;
    if (stat(wpath, &sb) == 0) out->file_bytes = (size_t)sb.st_size;
    json_t *modules = json_object_get(qc, "modules");
    out->modules = calloc((size_t)c.n_layers * N_LINEARS, sizeof *out->modules);
    if (!out->modules) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    size_t quantized = 0;
    for (int l = 0; l < c.n_layers && !st; l++)
        for (int i = 0; i < N_LINEARS && !st; i++) {
            lq_module_info *mi = &out->modules[out->n_modules];
            lq_linear_name(l, i, mi->name, sizeof mi->name);
            linear_shape(&c, i, &mi->in_features, &mi->out_features);
            json_t *entry = json_object_get(modules, mi->name);
            if (!json_is_object(entry)) {
                st = lq_fail(LQ_ERR_NOT_FOUND, "%s: quantization_config.modules has no entry for "
                             "'%s'", cfg_path, mi->name);
                break;
            }
            st = inspect_module(f, wpath, cfg_path, entry, mi);
            quantized += mi->code_bytes + mi->side_bytes;
            out->n_modules++;
        }
    if (st) goto done;
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(qc, "lattices"), key, v) {
        const lq_st_tensor *t = json_is_string(v) ? lq_st_find(f, json_string_value(v)) : NULL;
        if (!t) {
            st = lq_fail(LQ_ERR_NOT_FOUND, "%s: missing tensor '%s' (the lattice of config %s)",
                         wpath, json_is_string(v) ? json_string_value(v) : "?", key);
            goto done;
        }
        out->lattice_bytes += t->nbytes;
    }
    size_t total = 0;
    for (size_t i = 0; i < lq_st_count(f); i++) total += lq_st_at(f, i)->nbytes;
    out->unquantized_bytes = total - quantized - out->lattice_bytes;
done:
    if (st) lq_quantized_info_free(out);
    lq_st_close(f);
    json_decref(root);
    free(cfg_path);
    free(wpath);
    return st;
}

/* ---- module blobs ------------------------------------------------------------------------------
 * lq-calibrate measures every candidate config of every linear on the worker that owns it, and
 * keeps each result as a blob so that any later budget is assembled without recalibrating. A
 * blob is the module as the final file stores it — the same tensor names, dtypes and lattice
 * tensor — plus its quantization_config entry and lattice map in the safetensors metadata, so
 * saving and loading go through the same code as the model directory and a blob round-trips
 * bit-exactly into the assembled model. */
#define BLOB_MODULE_KEY "liftquant_module"
#define BLOB_LATTICES_KEY "liftquant_lattices"

lq_status lq_linear_blob_save(const lq_linear *lin, const char *module, const char *path) {
    saver s = {.out = path};
    lq_status st = lq_st_writer_new(&s.w);
    if (st) return st;
    s.modules = json_object();
    s.lattices = json_object();
    char *entry_text = NULL, *lattices_text = NULL;
    if (!s.modules || !s.lattices) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    const lq_lift_weights *lw = lq_linear_lift(lin);
    const lq_grouped_weights *gw = lq_linear_grouped(lin);
    if (lw) st = save_lift(&s, module, lw);
    else if (gw) st = save_grouped(&s, module, gw);
    else st = lq_fail(LQ_ERR_ARG, "%s: %s is not quantized", path, module);
    if (st) goto done;
    entry_text = json_dumps(json_object_get(s.modules, module), JSON_COMPACT | JSON_SORT_KEYS);
    lattices_text = json_dumps(s.lattices, JSON_COMPACT | JSON_SORT_KEYS);
    if (!entry_text || !lattices_text) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (!(st = lq_st_writer_metadata(s.w, "format", "pt")) &&
        !(st = lq_st_writer_metadata(s.w, BLOB_MODULE_KEY, entry_text)) &&
        !(st = lq_st_writer_metadata(s.w, BLOB_LATTICES_KEY, lattices_text)))
        st = lq_st_writer_write(s.w, path);
done:
    free(entry_text), free(lattices_text);
    lq_st_writer_free(s.w);
    json_decref(s.modules);
    json_decref(s.lattices);
    free(s.lattices_seen);
    return st;
}

static lq_status blob_json(const lq_st_file *f, const char *path, const char *key, json_t **out) {
    const char *text = lq_st_metadata(f, key);
    if (!text) return lq_fail(LQ_ERR_FORMAT, "%s: not a liftquant module blob (no '%s' metadata)", path, key);
    json_error_t err;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return lq_fail(LQ_ERR_FORMAT, "%s: metadata '%s' is not a JSON object", path, key);
    }
    return LQ_OK;
}

lq_status lq_linear_blob_load(const char *path, const char *module, int with_bias, lq_linear *lin) {
    loader ld = {.wpath = (char *)path};
    json_t *entry = NULL, *lattices = NULL;
    lq_status st = lq_st_open(path, &ld.st);
    if (st) return st;
    if (!(ld.used = json_object())) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = blob_json(ld.st, path, BLOB_MODULE_KEY, &entry)) ||
        (st = blob_json(ld.st, path, BLOB_LATTICES_KEY, &lattices)))
        goto done;
    json_t *mv = json_object_get(entry, "method");
    const char *method = json_is_string(mv) ? json_string_value(mv) : "";
    if (!strcmp(method, "liftquant"))
        st = load_lift(&ld, path, module, entry, lattices, with_bias, lin);
    else if (!strcmp(method, "gptq") || !strcmp(method, "rtn"))
        st = load_grouped(&ld, path, module, entry, !strcmp(method, "gptq"), with_bias, lin);
    else
        st = lq_fail(LQ_ERR_FORMAT, "%s: module method '%s' is unknown", path, method);
    /* a blob of another module (a mixed-up path) fails above on its tensor names */
done:
    json_decref(entry);
    json_decref(lattices);
    json_decref(ld.used);
    lq_st_close(ld.st);
    return st;
}
