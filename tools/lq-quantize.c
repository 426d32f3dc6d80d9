/* lq-quantize: one model, one method, one setting for every decoder-layer linear.
 *
 *   lq-quantize --model M --out DIR [--config 24/10] [--calib FILE|DIR --nsamples N --seqlen L]
 *   lq-quantize --model M --out DIR --method rtn|gptq --bits B [--group 128]
 *
 * Reads the model, cuts calibration windows from the text, quantizes layer by layer
 * (worker/quantize_model.c) and writes the quantized directory (schemas/FORMAT.md), which
 * lq-run, lq-eval and lq-inspect load. Budgets and per-layer configs are lq-calibrate's job. */
#include "cli_args.h"
#include "lq_quant.h"
#include "lq_worker.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LQ_DEFAULT_LATTICE_DIR
#define LQ_DEFAULT_LATTICE_DIR "lattices"
#endif
#ifndef LQ_DEFAULT_CALIB
#define LQ_DEFAULT_CALIB "../shared/data/wikitext-2-raw/wiki.valid.raw"
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: lq-quantize --model M --out DIR [options]\n"
            "\n"
            "  --model M           Hugging Face directory, GGUF file or llama2.c .bin\n"
            "  --tokenizer F       the tok*.bin of a llama2.c checkpoint\n"
            "  --out DIR           output directory (written as DIR.tmp, then renamed)\n"
            "  --method NAME       liftquant (default), rtn or gptq\n"
            "calibration:\n"
            "  --calib PATH        text file or directory of text files\n"
            "                      (default %s)\n"
            "  --nsamples N        windows (default 128)\n"
            "  --seqlen L          tokens per window (default 512, at most the model's context)\n"
            "  --propagate fp|quant|asym  calibrate layer l+1 on the FP model's hidden states\n"
            "                      or on the quantized layers' outputs; asym (default):\n"
            "                      quantized inputs, FP model's outputs as the target, a layer's\n"
            "                      linear groups in order (docs/QUANTIZE.md)\n"
            "  --asym-alpha A      with asym: the share of the fitted correction applied,\n"
            "                      0..1 (default 0.5, docs/BENCHMARKS.md §3)\n"
            "  --seed S            windows and transforms (default 42)\n"
            "liftquant:\n"
            "  --config D/d        lattice config for every linear (default 24/10)\n"
            "  --lattices DIR      where {D}to{d}.safetensors live (default %s)\n"
            "  --encoder NAME      exact (default) or heuristic\n"
            "  --steps N           correction steps (default 100; 0 = none)\n"
            "  --no-ldlq           encode blocks independently (the reference) instead of with\n"
            "                      Hessian-aware error feedback\n"
            "  --no-a1             no activation-statistics scaling in the transform\n"
            "  --train-bits        let the correction flip bits (straight-through latents)\n"
            "  --block-steps N     then N more steps per decoder layer on all seven linears\n"
            "                      against the layer's output (per-block reconstruction; one\n"
            "                      window per step; default 0 = per-linear only)\n"
            "  --lr X              learning rate of every correction parameter (default 0.001)\n"
            "  --transform-seed S  seed of the random mixing matrices (default: --seed)\n"
            "rtn / gptq:\n"
            "  --bits B            2, 3, 4 or 8\n"
            "  --group G           input columns per scale and zero point (default 128)\n"
            "  --no-act-order      GPTQ in natural column order\n"
            "  --damp X            damping of H for GPTQ and LiftQuant's LDLQ, fraction of\n"
            "                      mean diag(H) (default 0.01)\n"
            "Threads: LQ_THREADS (default min(cores, 2)).\n",
            LQ_DEFAULT_CALIB, LQ_DEFAULT_LATTICE_DIR);
}



/* Progress: a redrawn bar on a terminal, a line per layer otherwise. */
typedef struct {
    double start;
    int tty;
    int last_layer_logged;
} progress_state;

static void on_progress(void *ctx, int done, int total, const char *name, double err) {
    progress_state *p = ctx;
    double elapsed = lq_seconds() - p->start;
    double eta = done > 0 ? elapsed * (total - done) / done : 0.0;
    if (p->tty) {
        int width = 30, filled = (int)((double)done / total * width);
        fprintf(stderr, "\r[%.*s%*s] %d/%d linears  %s  err %.4f  %.0f s elapsed, ~%.0f s left   ",
                filled, "==============================", width - filled, "", done, total, name,
                err, elapsed, eta);
        if (done == total) fputc('\n', stderr);
    } else if (done % 7 == 0 || done == total) {
        fprintf(stderr, "lq-quantize: %d/%d linears (layer %d done), %.0f s elapsed, ~%.0f s left\n",
                done, total, done / 7 - 1, elapsed, eta);
    }
    fflush(stderr);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *out_dir = NULL, *calib = NULL;
    const char *lattice_dir = LQ_DEFAULT_LATTICE_DIR, *config = "24/10", *method_name = "liftquant";
    const char *encoder_name = "exact", *propagate = "asym";
    long nsamples = 128, seqlen = 512, seed = 42, steps = 100, bits = 0, group = 128;
    long block_steps = 0;
    int ldlq = 1, a1 = 1, act_order = 1, train_bits = 0;
    double damp = 0.01, lr = 1e-3, asym_alpha = 0.5;
    int asym_alpha_given = 0;
    long transform_seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(var)                                                                  \
    do {                                                                           \
        if (!lq_arg_string("lq-quantize", a, v, &var)) return 2;                   \
        i++;                                                                       \
    } while (0)
#define TAKE_LONG(var, lo, hi)                                             \
    do {                                                                   \
        if (!lq_arg_long("lq-quantize", a, v, lo, hi, &var)) return 2;                     \
        i++;                                                               \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) TAKE(model_path);
        else if (!strcmp(a, "--tokenizer")) TAKE(tok_path);
        else if (!strcmp(a, "--out")) TAKE(out_dir);
        else if (!strcmp(a, "--method")) TAKE(method_name);
        else if (!strcmp(a, "--calib")) TAKE(calib);
        else if (!strcmp(a, "--config")) TAKE(config);
        else if (!strcmp(a, "--lattices")) TAKE(lattice_dir);
        else if (!strcmp(a, "--encoder")) TAKE(encoder_name);
        else if (!strcmp(a, "--propagate")) TAKE(propagate);
        else if (!strcmp(a, "--nsamples")) TAKE_LONG(nsamples, 1, 1 << 20);
        else if (!strcmp(a, "--seqlen")) TAKE_LONG(seqlen, 2, 1 << 20);
        else if (!strcmp(a, "--seed")) TAKE_LONG(seed, 0, 1L << 62);
        else if (!strcmp(a, "--steps")) TAKE_LONG(steps, 0, 1 << 20);
        else if (!strcmp(a, "--block-steps")) TAKE_LONG(block_steps, 0, 1 << 20);
        else if (!strcmp(a, "--bits")) TAKE_LONG(bits, 1, 8);
        else if (!strcmp(a, "--group")) TAKE_LONG(group, 1, 1 << 30);
        else if (!strcmp(a, "--transform-seed")) TAKE_LONG(transform_seed, 0, 1L << 62);
        else if (!strcmp(a, "--lr")) {
            if (!lq_arg_double("lq-quantize", a, v, 0.0, 1.0, &lr)) return 2;
            i++;
        } else if (!strcmp(a, "--asym-alpha")) {
            if (!lq_arg_double("lq-quantize", a, v, 0.0, 1.0, &asym_alpha)) return 2;
            asym_alpha_given = 1;
            i++;
        } else if (!strcmp(a, "--damp")) {
            if (!lq_arg_double("lq-quantize", a, v, 0.0, 10.0, &damp)) return 2;
            i++;
        } else if (!strcmp(a, "--no-ldlq")) ldlq = 0;
        else if (!strcmp(a, "--no-a1")) a1 = 0;
        else if (!strcmp(a, "--no-act-order")) act_order = 0;
        else if (!strcmp(a, "--train-bits")) train_bits = 1;
        else {
            fprintf(stderr, "lq-quantize: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef TAKE
#undef TAKE_LONG
    }
    if (!model_path || !out_dir) {
        fprintf(stderr, "lq-quantize: --model and --out are required (see --help)\n");
        return 2;
    }
    lq_quantize_options o;
    memset(&o, 0, sizeof o);
    lq_lift_options_default(&o.lift);
    if (lq_method_from_name(method_name, &o.method) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", lq_last_error());
        return 2;
    }
    if (lq_propagate_from_name(propagate, &o.propagate) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", lq_last_error());
        return 2;
    }
    if (asym_alpha_given && o.propagate != LQ_PROPAGATE_ASYM) {
        fprintf(stderr, "lq-quantize: --asym-alpha applies to --propagate asym only (here %s)\n",
                propagate);
        return 2;
    }
    o.asym_alpha = asym_alpha;
    if (block_steps > 0 && o.method != LQ_METHOD_LIFTQUANT) {
        fprintf(stderr, "lq-quantize: --block-steps applies to --method liftquant only (here %s)\n",
                method_name);
        return 2;
    }
    o.block_steps = (int)block_steps;
    o.bits = (int)bits, o.group = (int)group, o.act_order = act_order, o.damp = damp;
    if (o.method != LQ_METHOD_LIFTQUANT && bits != 2 && bits != 3 && bits != 4 && bits != 8) {
        fprintf(stderr, "lq-quantize: --method %s needs --bits 2, 3, 4 or 8\n", method_name);
        return 2;
    }
    if (!calib) {
        calib = LQ_DEFAULT_CALIB;
        if (access(calib, R_OK) != 0) {
            fprintf(stderr, "lq-quantize: no calibration text: the default %s is missing; "
                    "give --calib FILE|DIR\n", calib);
            return 2;
        }
    }

    /* the lattice first: a bad --config should fail before minutes of loading */
    lq_lattice_file lattice_file;
    lq_lattice lattice;
    memset(&lattice_file, 0, sizeof lattice_file);
    memset(&lattice, 0, sizeof lattice);
    if (o.method == LQ_METHOD_LIFTQUANT) {
        if (lq_encoder_from_name(encoder_name, &o.lift.encoder) != LQ_OK ||
            o.lift.encoder == LQ_ENCODER_BRUTEFORCE) {
            fprintf(stderr, "lq-quantize: --encoder %s: expected exact or heuristic\n", encoder_name);
            return 2;
        }
        int D, d;
        if (lq_lattice_config_parse(config, &D, &d) != LQ_OK) {
            fprintf(stderr, "lq-quantize: --config %s: %s\n", config, lq_last_error());
            return 2;
        }
        lq_status st = lq_lattice_load_config(lattice_dir, D, d, &lattice_file, &lattice);
        if (st != LQ_OK) {
            fprintf(stderr, "lq-quantize: --config %s: %s\n", config, lq_last_error());
            return st == LQ_ERR_NOT_FOUND ? 2 : 1;
        }
        o.lift.lattice = &lattice;
        o.lift.ldlq = ldlq, o.lift.a1_init = a1, o.lift.steps = (int)steps;
        o.lift.train_bits = train_bits;
        if (train_bits) o.lift.lr_bits = 0.01;
        o.lift.seed = (uint64_t)(transform_seed >= 0 ? transform_seed : seed);
        o.lift.damp = damp;
        o.lift.lr_transform = o.lift.lr_scale = o.lift.lr_act = lr;
    }

    double t0 = lq_seconds();
    lq_model *m = NULL;
    int *tokens = NULL, rc = 1;
    lq_linear_result *results = NULL;
    char *extra = NULL;
    if (lq_model_load(model_path, tok_path, &m) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", lq_last_error());
        goto out;
    }
    if (seqlen > m->cfg.max_seq_len) {
        fprintf(stderr, "lq-quantize: --seqlen %ld exceeds the model's context %d; using %d\n",
                seqlen, m->cfg.max_seq_len, m->cfg.max_seq_len);
        seqlen = m->cfg.max_seq_len;
    }
    if (lq_calib_tokens(m->tokenizer, calib, (int)nsamples, (int)seqlen, (uint64_t)seed, &tokens) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", lq_last_error());
        goto out;
    }
    int n_lin = 7 * m->cfg.n_layers;
    results = calloc((size_t)n_lin, sizeof *results);
    if (!results) {
        fprintf(stderr, "lq-quantize: out of memory\n");
        goto out;
    }
    progress_state ps = {lq_seconds(), isatty(2), -1};
    o.progress = on_progress, o.progress_ctx = &ps;
    fprintf(stderr, "lq-quantize: %s, %d layers, method %s%s%s, calibration %ld × %ld tokens of %s\n",
            model_path, m->cfg.n_layers, method_name,
            o.method == LQ_METHOD_LIFTQUANT ? " " : "",
            o.method == LQ_METHOD_LIFTQUANT ? config : "", nsamples, seqlen, calib);
    if (lq_quantize_model(m, tokens, (int)nsamples, (int)seqlen, &o, results) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", lq_last_error());
        goto out;
    }
    double seconds = lq_seconds() - t0, mean_err = 0.0;
    for (int i = 0; i < n_lin; i++) mean_err += results[i].rel_error;
    mean_err /= n_lin;

    /* what produced the directory, for quantization_config */
    json_t *x = json_object(), *errs = json_object();
    json_object_set_new(x, "calibration",
                        json_pack("{s:s, s:I, s:I, s:I, s:s}", "text", calib, "nsamples",
                                  (json_int_t)nsamples, "seqlen", (json_int_t)seqlen, "seed",
                                  (json_int_t)seed, "propagate", propagate));
    if (o.propagate == LQ_PROPAGATE_ASYM)
        json_object_set_new(json_object_get(x, "calibration"), "asym_alpha", json_real(asym_alpha));
    if (o.method == LQ_METHOD_LIFTQUANT)
        json_object_set_new(x, "liftquant",
                            json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:b}", "config", config,
                                      "encoder", encoder_name, "ldlq", ldlq, "a1_init", a1,
                                      "correction_steps", (json_int_t)steps,
                                      "block_correction_steps", (json_int_t)block_steps,
                                      "train_bits", train_bits));
    for (int i = 0; i < n_lin; i++)
        json_object_set_new(errs, results[i].name, json_real(results[i].rel_error));
    json_object_set_new(x, "relative_output_error", errs);
    json_object_set_new(x, "quantize_seconds", json_real(seconds));
    extra = json_dumps(x, JSON_COMPACT);
    json_decref(x);
    if (!extra || lq_quantized_save(m, out_dir, extra) != LQ_OK) {
        fprintf(stderr, "lq-quantize: %s\n", extra ? lq_last_error() : "out of memory");
        goto out;
    }
    printf("lq-quantize: wrote %s in %.1f s; mean relative output error of the %d linears %.5f\n",
           out_dir, lq_seconds() - t0, n_lin, mean_err);
    rc = 0;
out:
    free(extra), free(results), free(tokens);
    lq_model_free(m);
    lq_lattice_free(&lattice);
    lq_lattice_file_free(&lattice_file);
    return rc;
}
