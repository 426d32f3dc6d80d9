/* Lattice files: M as an F32 safetensors tensor "M" [d, D] with its provenance in metadata. */
#include "lq_worker.h"
#include "safetensors.h"

#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LATTICE_FORMAT "liftquant-lattice"

lq_status lq_lattice_file_path(const char *dir, int D, int d, char *out, size_t cap) {
    if (snprintf(out, cap, "%s/%dto%d.safetensors", dir, D, d) >= (int)cap)
        return lq_fail(LQ_ERR_ARG, "lattice directory path too long: %s", dir);
    return LQ_OK;
}

lq_status lq_lattice_file_write(const char *path, const float *M, int D, int d, uint64_t seed,
                                const char *encoder, double mse, const lq_train_options *o) {
    lq_st_writer *w = NULL;
    lq_status st = lq_st_writer_new(&w);
    if (st != LQ_OK) return st;
    char buf[64];
    int64_t shape[2] = {d, D};
    st = lq_st_writer_add(w, "M", LQ_DTYPE_F32, 2, shape, M);
#define META(key, ...)                                                   \
    do {                                                                 \
        if (st == LQ_OK) {                                               \
            snprintf(buf, sizeof buf, __VA_ARGS__);                      \
            st = lq_st_writer_metadata(w, key, buf);                     \
        }                                                                \
    } while (0)
    META("format", "%s", LATTICE_FORMAT);
    META("D", "%d", D);
    META("d", "%d", d);
    META("seed", "%llu", (unsigned long long)seed);
    META("encoder", "%s", encoder);
    META("mse", "%.6f", mse);
    if (o) {
        META("eval_vectors", "%d", o->eval_vectors);
        META("restarts", "%d", o->restarts);
        META("softmin_steps", "%d", o->steps);
        META("softmin_batch", "%d", o->batch);
        META("softmin_tau", "%g", o->tau);
        META("softmin_tau_end", "%g", o->tau_end);
        META("softmin_lr", "%g", o->lr);
        META("softmin_candidates", "%s", o->candidates == LQ_CANDIDATES_FULL ? "full"
                                         : o->candidates == LQ_CANDIDATES_HEURISTIC ? "heuristic" : "window");
        META("lloyd_iterations", "%d", o->lloyd_iterations);
        META("lloyd_samples", "%d", o->lloyd_samples);
        META("lloyd_encoder", "%s", lq_encoder_name(o->lloyd_encoder));
    }
#undef META
    if (st == LQ_OK) st = lq_st_writer_write(w, path);
    lq_st_writer_free(w);
    return st;
}

static lq_status metadata_int(lq_st_file *f, const char *path, const char *key, long *out) {
    const char *v = lq_st_metadata(f, key);
    char *end;
    if (!v) return lq_fail(LQ_ERR_FORMAT, "%s: lattice metadata '%s' missing", path, key);
    errno = 0;
    *out = strtol(v, &end, 10);
    if (errno || end == v || *end)
        return lq_fail(LQ_ERR_FORMAT, "%s: lattice metadata '%s' = '%s' is not an integer", path, key, v);
    return LQ_OK;
}

lq_status lq_lattice_file_read(const char *path, lq_lattice_file *out) {
    memset(out, 0, sizeof *out);
    lq_st_file *f = NULL;
    lq_status st = lq_st_open(path, &f);
    if (st != LQ_OK) return st;
    const char *format = lq_st_metadata(f, "format");
    long D = 0, d = 0;
    const lq_st_tensor *t = NULL;
    if (!format || strcmp(format, LATTICE_FORMAT) != 0)
        st = lq_fail(LQ_ERR_FORMAT, "%s: not a liftquant lattice (metadata format = %s)", path,
                     format ? format : "missing");
    if (st == LQ_OK) st = metadata_int(f, path, "D", &D);
    if (st == LQ_OK) st = metadata_int(f, path, "d", &d);
    if (st == LQ_OK) st = lq_st_require(f, "M", &t);
    if (st == LQ_OK && (t->dtype != LQ_DTYPE_F32 || t->ndim != 2 || t->shape[0] != d || t->shape[1] != D))
        st = lq_fail(LQ_ERR_FORMAT, "%s: tensor 'M' must be F32 [%ld, %ld] for a %ld/%ld lattice",
                     path, d, D, D, d);
    if (st == LQ_OK && (d < 1 || d > LQ_LATTICE_MAX_SMALL_D || D <= d || D > LQ_LATTICE_MAX_D))
        st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: lattice %ld/%ld out of the supported range", path, D, d);
    if (st == LQ_OK) {
        out->M = malloc(sizeof(float) * d * D);
        if (!out->M) st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st == LQ_OK) {
        memcpy(out->M, t->data, sizeof(float) * d * D); /* the mapping may be unaligned */
        out->D = (int)D;
        out->d = (int)d;
        const char *v = lq_st_metadata(f, "seed");
        out->seed = v ? strtoull(v, NULL, 10) : 0;
        v = lq_st_metadata(f, "mse");
        out->mse = v ? strtod(v, NULL) : 0.0;
        v = lq_st_metadata(f, "encoder");
        snprintf(out->encoder, sizeof out->encoder, "%s", v ? v : "");
    }
    lq_st_close(f);
    return st;
}

void lq_lattice_file_free(lq_lattice_file *f) {
    if (!f) return;
    free(f->M);
    memset(f, 0, sizeof *f);
}

lq_status lq_lattice_load_config(const char *dir, int D, int d, lq_lattice_file *file, lq_lattice *L) {
    char path[4096];
    lq_status st = lq_lattice_file_path(dir, D, d, path, sizeof path);
    if (st) return st;
    if (access(path, R_OK) != 0)
        return lq_fail(LQ_ERR_NOT_FOUND, "no lattice file %s (train it with `lq-lattice train %d/%d`, "
                       "or give --lattices DIR)", path, D, d);
    if ((st = lq_lattice_file_read(path, file))) return st;
    if ((st = lq_lattice_init(L, D, d, file->M))) lq_lattice_file_free(file);
    return st;
}
