/* llama2.c checkpoints, legacy (version 0) format, as Karpathy's export writes them:
 *
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   (vocab_size < 0 means the classifier is not shared with the embedding)
 *   f32 token_embedding[vocab][dim]
 *       rms_att[L][dim], wq[L][dim][dim], wk[L][kv_dim][dim], wv[L][kv_dim][dim],
 *       wo[L][dim][dim], rms_ffn[L][dim], w1[L][hidden][dim], w2[L][dim][hidden],
 *       w3[L][hidden][dim], rms_final[dim],
 *       freq_cis_real[seq_len][head_size/2], freq_cis_imag[seq_len][head_size/2] (unused:
 *       RoPE is recomputed), then wcls[vocab][dim] when unshared.
 *
 * The whole expected size is computed from the header and checked against the file before
 * anything is read, so a truncated or mismatched file is one clear error. Weights are copied
 * out of a read-only mapping into model-owned arrays (lq_model_alloc). */
#include "loaders.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llama2.c checkpoints are little-endian; weights are copied without byte swaps"
#endif

#define HEADER_BYTES 28
/* The newer llama2.c export (version 1/2) starts with this magic ("ak42" little-endian). */
#define LLAMA2C_V1_MAGIC 0x616b3432u

typedef struct {
    const char *path;
    const unsigned char *data;
    size_t size, offset;
} reader;

/* Copies `count` floats from the file's current position to dst (which may be NULL to skip). */
static void take(reader *r, float *dst, size_t count) {
    if (dst) memcpy(dst, r->data + r->offset, count * sizeof(float));
    r->offset += count * sizeof(float);
}

static lq_status alloc_tensor(lq_model *m, size_t count, const char *name, int layer,
                              const char *path, float **out) {
    *out = lq_model_alloc(m, count);
    if (!*out) {
        if (layer >= 0)
            return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for layer %d %s (%zu floats)", path,
                           layer, name, count);
        return lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %s (%zu floats)", path, name, count);
    }
    return LQ_OK;
}

static void set_linear(lq_linear *lin, int in, int out) {
    memset(lin, 0, sizeof *lin);
    lin->in_features = in;
    lin->out_features = out;
}

/* Checks the header and fills cfg; errors name the file and the field. */
static lq_status parse_header(const char *path, const int32_t h[7], size_t file_size,
                              lq_model_config *cfg, int *shared_classifier, size_t *expected) {
    if ((uint32_t)h[0] == LLAMA2C_V1_MAGIC)
        return lq_fail(LQ_ERR_UNSUPPORTED,
                       "%s: this is a llama2.c version-%d export (magic \"ak42\"); only the "
                       "legacy version-0 format is supported",
                       path, h[1]);
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                   "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        if (h[i] == 0 || (h[i] < 0 && i != 5))
            return lq_fail(LQ_ERR_FORMAT,
                           "%s: header field %s = %d must be positive (is this a llama2.c "
                           "checkpoint?)",
                           path, names[i], h[i]);
    }
    if (h[5] == INT32_MIN)
        return lq_fail(LQ_ERR_FORMAT, "%s: header field vocab_size = %d is invalid", path, h[5]);
    int dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4];
    int vocab = h[5] < 0 ? -h[5] : h[5], seq_len = h[6];
    if (dim % n_heads != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: n_heads = %d does not divide dim = %d", path, n_heads,
                       dim);
    if (n_kv > n_heads || n_heads % n_kv != 0)
        return lq_fail(LQ_ERR_FORMAT, "%s: n_kv_heads = %d does not divide n_heads = %d", path,
                       n_kv, n_heads);

    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->arch, sizeof cfg->arch, "llama");
    cfg->dim = dim;
    cfg->hidden_dim = hidden;
    cfg->n_layers = n_layers;
    cfg->n_heads = n_heads;
    cfg->n_kv_heads = n_kv;
    cfg->head_dim = dim / n_heads;
    cfg->vocab_size = vocab;
    cfg->max_seq_len = seq_len;
    cfg->norm_eps = 1e-5f;
    cfg->rope_theta = 10000.0f;
    cfg->rope_dim = cfg->head_dim;
    cfg->rope_style = LQ_ROPE_INTERLEAVED;
    cfg->tied_embeddings = h[5] > 0;
    *shared_classifier = h[5] > 0;
    lq_status st = lq_model_config_validate(cfg, path);
    if (st != LQ_OK) return st;

    /* Every count below fits comfortably in 64 bits after validation (dims ≤ 2^20,
     * vocab ≤ 2^24, layers ≤ 2^12), but not necessarily in the file. */
    uint64_t D = (uint64_t)dim, H = (uint64_t)hidden, L = (uint64_t)n_layers;
    uint64_t KV = (uint64_t)n_kv * (uint64_t)cfg->head_dim, V = (uint64_t)vocab;
    uint64_t floats = V * D                          /* token embedding */
                      + L * D                        /* rms_att */
                      + L * D * D + 2 * L * KV * D   /* wq, wk, wv */
                      + L * D * D                    /* wo */
                      + L * D                        /* rms_ffn */
                      + 3 * L * H * D                /* w1, w2, w3 */
                      + D                            /* rms_final */
                      + (uint64_t)seq_len * (uint64_t)cfg->head_dim; /* freq_cis real + imag */
    if (!*shared_classifier) floats += V * D;
    uint64_t bytes = HEADER_BYTES + 4 * floats;
    if ((uint64_t)file_size != bytes)
        return lq_fail(LQ_ERR_FORMAT,
                       "%s: file has %zu bytes but its header (dim %d, hidden_dim %d, n_layers "
                       "%d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d) implies %llu "
                       "bytes%s",
                       path, file_size, dim, hidden, n_layers, n_heads, n_kv, h[5], seq_len,
                       (unsigned long long)bytes,
                       (uint64_t)file_size < bytes ? " (truncated?)" : " (not a version-0 file?)");
    *expected = (size_t)bytes;
    return LQ_OK;
}

static lq_status fill_weights(lq_model *m, reader *r, int shared_classifier) {
    const lq_model_config *c = &m->cfg;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    size_t KV = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    int nl = c->n_layers;
    const char *path = r->path;
    lq_status st;

    if ((st = alloc_tensor(m, V * D, "token_embedding_table", -1, path, &m->tok_embeddings)))
        return st;
    take(r, m->tok_embeddings, V * D);

    /* The file groups each tensor kind across layers (all rms_att, then all wq, …), so each
     * kind is a loop over layers in file order. */
    for (int l = 0; l < nl; l++) {
        if ((st = alloc_tensor(m, D, "rms_att_weight", l, path, &m->layers[l].attn_norm))) return st;
        take(r, m->layers[l].attn_norm, D);
    }
    struct { size_t lin_off; int in, out; const char *name; } mats[] = {
        {offsetof(lq_layer, wq), (int)D, (int)D, "wq"},
        {offsetof(lq_layer, wk), (int)D, (int)KV, "wk"},
        {offsetof(lq_layer, wv), (int)D, (int)KV, "wv"},
        {offsetof(lq_layer, wo), (int)D, (int)D, "wo"},
    };
    for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++) {
        for (int l = 0; l < nl; l++) {
            lq_linear *lin = (lq_linear *)(void *)((char *)&m->layers[l] + mats[k].lin_off);
            set_linear(lin, mats[k].in, mats[k].out);
            size_t count = (size_t)mats[k].in * (size_t)mats[k].out;
            if ((st = alloc_tensor(m, count, mats[k].name, l, path, &lin->weight))) return st;
            take(r, lin->weight, count);
        }
    }
    for (int l = 0; l < nl; l++) {
        if ((st = alloc_tensor(m, D, "rms_ffn_weight", l, path, &m->layers[l].ffn_norm))) return st;
        take(r, m->layers[l].ffn_norm, D);
    }
    /* llama2.c: w1 = gate, w2 = down, w3 = up; FFN = w2(silu(w1 x) * w3 x) */
    struct { size_t lin_off; int in, out; const char *name; } ffn[] = {
        {offsetof(lq_layer, w_gate), (int)D, (int)H, "w1"},
        {offsetof(lq_layer, w_down), (int)H, (int)D, "w2"},
        {offsetof(lq_layer, w_up), (int)D, (int)H, "w3"},
    };
    for (size_t k = 0; k < sizeof ffn / sizeof ffn[0]; k++) {
        for (int l = 0; l < nl; l++) {
            lq_linear *lin = (lq_linear *)(void *)((char *)&m->layers[l] + ffn[k].lin_off);
            set_linear(lin, ffn[k].in, ffn[k].out);
            size_t count = (size_t)ffn[k].in * (size_t)ffn[k].out;
            if ((st = alloc_tensor(m, count, ffn[k].name, l, path, &lin->weight))) return st;
            take(r, lin->weight, count);
        }
    }
    if ((st = alloc_tensor(m, D, "rms_final_weight", -1, path, &m->final_norm))) return st;
    take(r, m->final_norm, D);
    /* freq_cis_real and freq_cis_imag: seq_len × head_size/2 each, recomputed at run time */
    take(r, NULL, (size_t)c->max_seq_len * (size_t)c->head_dim);

    set_linear(&m->lm_head, (int)D, (int)V);
    if (shared_classifier) {
        m->lm_head.weight = m->tok_embeddings;
    } else {
        if ((st = alloc_tensor(m, V * D, "wcls", -1, path, &m->lm_head.weight))) return st;
        take(r, m->lm_head.weight, V * D);
    }
    return r->offset == r->size
               ? LQ_OK
               : lq_fail(LQ_ERR_INTERNAL, "%s: read %zu of %zu bytes", path, r->offset, r->size);
}

lq_status lq_llama2c_load(const char *path, const char *tokenizer_path, lq_model **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lq_fail(errno == ENOENT ? LQ_ERR_NOT_FOUND : LQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lq_fail(LQ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    size_t size = (size_t)sb.st_size;
    if (size < HEADER_BYTES) {
        close(fd);
        return lq_fail(LQ_ERR_FORMAT,
                       "%s: file has %zu bytes, shorter than the 28-byte llama2.c header", path,
                       size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) return lq_fail(LQ_ERR_IO, "%s: mmap failed: %s", path, strerror(map_errno));

    int32_t header[7];
    memcpy(header, map, sizeof header);
    lq_model_config cfg;
    int shared = 0;
    size_t expected = 0;
    lq_model *m = NULL;
    lq_status st = parse_header(path, header, size, &cfg, &shared, &expected);
    if (st == LQ_OK) st = lq_model_new(&cfg, &m);
    if (st == LQ_OK) {
        reader r = {path, map, expected, HEADER_BYTES};
        st = fill_weights(m, &r, shared);
    }
    munmap(map, size);
    if (st == LQ_OK && tokenizer_path) {
        st = lq_tokenizer_load_llama2c(tokenizer_path, cfg.vocab_size, &m->tokenizer);
        if (st != LQ_OK)
            lq_fail_context(st, "tokenizer for %s", path);
    }
    if (st != LQ_OK) {
        lq_model_free(m);
        return st;
    }
    snprintf(m->source, sizeof m->source, "%s", path);
    snprintf(m->format, sizeof m->format, "llama2c");
    *out = m;
    return LQ_OK;
}
