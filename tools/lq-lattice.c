/* lq-lattice: train LiftQuant mapping matrices and benchmark the lifted-space encoders.
 *
 *   lq-lattice train D/d [--seed S] [--out FILE] [training options]
 *   lq-lattice bench [--configs LIST] [--vectors N] [--encoders LIST] [--json]
 *   lq-lattice info FILE
 */
#include "cli_args.h"
#include "lq_worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LQ_DEFAULT_LATTICE_DIR
#define LQ_DEFAULT_LATTICE_DIR "lattices"
#endif
#define STANDARD_CONFIGS "16/8,20/8,24/8,16/10,20/10,24/10,25/10,27/12,30/14,32/16,32/20"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lq-lattice train D/d [--seed S] [--out FILE] [--restarts R] [--steps N]\n"
            "                   [--batch B] [--lr LR] [--tau T] [--tau-end T]\n"
            "                   [--candidates full|heuristic|window]\n"
            "                   [--lloyd N] [--lloyd-samples N] [--lloyd-encoder E]\n"
            "                   [--eval-vectors N] [--quiet]\n"
            "       lq-lattice bench [--configs LIST] [--vectors N] [--exact-vectors N]\n"
            "                   [--encoders LIST] [--lattices DIR] [--seed S] [--json]\n"
            "       lq-lattice info FILE\n"
            "\n"
            "train   trains M (d x D) on N(0, I_d): soft-min Adam (tau = 10, cosine lr,\n"
            "        restarts) then Lloyd refinement; writes FILE (default\n"
            "        DIR/{D}to{d}.safetensors, DIR = --lattices or %s).\n"
            "bench   MSE per dimension on i.i.d. N(0,1) vectors for every config and encoder,\n"
            "        the Shannon bound 2^(-2R), and seconds per 1M weights (2 threads unless\n"
            "        OMP_NUM_THREADS says otherwise). Default configs: %s.\n"
            "        --exact-vectors caps the vectors given to the exact encoder for configs\n"
            "        with D - d >= 14 or D >= 28, where it costs seconds per thousand\n"
            "        (default 2000).\n"
            "encoders: exact, heuristic, bruteforce (D <= 24); bench also takes exact-dfs,\n"
            "        the exact encoder's depth-first search without its split tables.\n",
            LQ_DEFAULT_LATTICE_DIR, STANDARD_CONFIGS);
}


static int cmd_train(int argc, char **argv, const char *lattice_dir) {
    if (argc < 1 || argv[0][0] == '-') {
        usage(stderr);
        return 2;
    }
    int D, d;
    if (lq_lattice_config_parse(argv[0], &D, &d) != LQ_OK) {
        fprintf(stderr, "lq-lattice: %s\n", lq_last_error());
        return 2;
    }
    lq_train_options o;
    lq_train_options_default(&o, D, d);
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "--seed")) {
            if (!lq_arg_long("lq-lattice", a, v, 0, 1L << 62, &x)) return 2;
            o.seed = (uint64_t)x, i++;
        } else if (!strcmp(a, "--out")) {
            if (!v) { fprintf(stderr, "lq-lattice: --out needs a value\n"); return 2; }
            out = v, i++;
        } else if (!strcmp(a, "--restarts")) {
            if (!lq_arg_long("lq-lattice", a, v, 1, 1000, &x)) return 2;
            o.restarts = (int)x, i++;
        } else if (!strcmp(a, "--steps")) {
            if (!lq_arg_long("lq-lattice", a, v, 0, 10000000, &x)) return 2;
            o.steps = (int)x, i++;
        } else if (!strcmp(a, "--batch")) {
            if (!lq_arg_long("lq-lattice", a, v, 1, 1000000, &x)) return 2;
            o.batch = (int)x, i++;
        } else if (!strcmp(a, "--lr")) {
            if (!v || !(atof(v) > 0)) { fprintf(stderr, "lq-lattice: --lr needs a positive number\n"); return 2; }
            o.lr = atof(v), o.lr_min = o.lr / 20.0, i++;
        } else if (!strcmp(a, "--tau") || !strcmp(a, "--tau-end")) {
            if (!v || !(atof(v) > 0)) { fprintf(stderr, "lq-lattice: %s needs a positive number\n", a); return 2; }
            if (!strcmp(a, "--tau")) o.tau = o.tau_end = atof(v);
            else o.tau_end = atof(v);
            i++;
        } else if (!strcmp(a, "--candidates")) {
            if (v && !strcmp(v, "full")) o.candidates = LQ_CANDIDATES_FULL;
            else if (v && !strcmp(v, "heuristic")) o.candidates = LQ_CANDIDATES_HEURISTIC;
            else if (v && !strcmp(v, "window")) o.candidates = LQ_CANDIDATES_WINDOW;
            else { fprintf(stderr, "lq-lattice: --candidates: full, heuristic or window\n"); return 2; }
            i++;
        } else if (!strcmp(a, "--lloyd")) {
            if (!lq_arg_long("lq-lattice", a, v, 0, 100000, &x)) return 2;
            o.lloyd_iterations = (int)x, i++;
        } else if (!strcmp(a, "--lloyd-samples")) {
            if (!lq_arg_long("lq-lattice", a, v, D, 100000000, &x)) return 2;
            o.lloyd_samples = (int)x, i++;
        } else if (!strcmp(a, "--lloyd-encoder")) {
            if (!v || lq_encoder_from_name(v, &o.lloyd_encoder) != LQ_OK) {
                fprintf(stderr, "lq-lattice: --lloyd-encoder: %s\n", lq_last_error());
                return 2;
            }
            o.eval_encoder = o.lloyd_encoder, i++;
        } else if (!strcmp(a, "--eval-vectors")) {
            if (!lq_arg_long("lq-lattice", a, v, 1, 100000000, &x)) return 2;
            o.eval_vectors = (int)x, i++;
        } else if (!strcmp(a, "--quiet")) {
            o.progress = 0;
        } else {
            fprintf(stderr, "lq-lattice train: unknown option '%s'\n", a);
            return 2;
        }
    }
    char path[4096];
    if (!out) {
        if (lq_lattice_file_path(lattice_dir, D, d, path, sizeof path) != LQ_OK) {
            fprintf(stderr, "lq-lattice: %s\n", lq_last_error());
            return 1;
        }
        out = path;
    }
    float *M = malloc(sizeof(float) * D * d);
    lq_train_result r;
    lq_status st = M ? lq_lattice_train(&o, M, &r) : LQ_ERR_NOMEM;
    if (st == LQ_OK)
        st = lq_lattice_file_write(out, M, D, d, o.seed, lq_encoder_name(o.eval_encoder), r.mse, &o);
    free(M);
    if (st != LQ_OK) {
        fprintf(stderr, "lq-lattice: %s\n", lq_last_error());
        return 1;
    }
    printf("%d/%d: mse %.5f per dimension (%s encoder, %d fresh vectors), bound %.5f, "
           "ratio %.3f, %.0f s; wrote %s\n",
           D, d, r.mse, lq_encoder_name(o.eval_encoder), o.eval_vectors,
           pow(2.0, -2.0 * D / d), r.mse / pow(2.0, -2.0 * D / d), r.seconds, out);
    return 0;
}

static int cmd_bench(int argc, char **argv, const char *lattice_dir) {
    const char *configs = STANDARD_CONFIGS, *encoders = "exact,heuristic";
    long vectors = 100000, exact_vectors = 2000, seed = 12345;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--configs") && v) configs = v, i++;
        else if (!strcmp(a, "--encoders") && v) encoders = v, i++;
        else if (!strcmp(a, "--lattices") && v) lattice_dir = v, i++;
        else if (!strcmp(a, "--vectors")) {
            if (!lq_arg_long("lq-lattice", a, v, 1, 100000000, &vectors)) return 2;
            i++;
        } else if (!strcmp(a, "--exact-vectors")) {
            if (!lq_arg_long("lq-lattice", a, v, 1, 100000000, &exact_vectors)) return 2;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (!lq_arg_long("lq-lattice", a, v, 0, 1L << 62, &seed)) return 2;
            i++;
        } else if (!strcmp(a, "--json")) json = 1;
        else {
            fprintf(stderr, "lq-lattice bench: unknown option or missing value '%s'\n", a);
            return 2;
        }
    }
    /* check every name first, so a typo fails before minutes of benchmarking */
    char list[1024], elist[256];
    snprintf(list, sizeof list, "%s", configs);
    snprintf(elist, sizeof elist, "%s", encoders);
    for (char *save = NULL, *e = strtok_r(elist, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        lq_encoder enc;
        if (strcmp(e, "exact-dfs") && lq_encoder_from_name(e, &enc) != LQ_OK) {
            fprintf(stderr, "lq-lattice: --encoders: %s\n", lq_last_error());
            return 2;
        }
    }
    for (char *save = NULL, *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        int D, d;
        if (lq_lattice_config_parse(c, &D, &d) != LQ_OK) {
            fprintf(stderr, "lq-lattice: --configs: %s\n", lq_last_error());
            return 2;
        }
    }
    if (!json)
        printf("%-7s %5s %-10s %9s %9s %8s %9s %12s\n", "config", "bits", "encoder", "vectors",
               "mse", "bound", "mse/bound", "s/1M weights");
    snprintf(list, sizeof list, "%s", configs);
    int failures = 0;
    for (char *save = NULL, *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        int D, d;
        lq_lattice_config_parse(c, &D, &d);
        char path[4096];
        lq_lattice_file f;
        lq_lattice L;
        if (lq_lattice_file_path(lattice_dir, D, d, path, sizeof path) != LQ_OK ||
            lq_lattice_file_read(path, &f) != LQ_OK) {
            fprintf(stderr, "lq-lattice: %s (train it with: lq-lattice train %d/%d)\n",
                    lq_last_error(), D, d);
            failures++;
            continue;
        }
        if (lq_lattice_init(&L, f.D, f.d, f.M) != LQ_OK) {
            fprintf(stderr, "lq-lattice: %s: %s\n", path, lq_last_error());
            lq_lattice_file_free(&f);
            failures++;
            continue;
        }
        double bits = (double)D / d, bound = pow(2.0, -2.0 * bits);
        snprintf(elist, sizeof elist, "%s", encoders);
        for (char *s2 = NULL, *e = strtok_r(elist, ",", &s2); e; e = strtok_r(NULL, ",", &s2)) {
            /* exact-dfs: the exact encoder with its split tables hidden, so the depth-first
               search it falls back to runs side by side with the split one */
            const int dfs = !strcmp(e, "exact-dfs");
            lq_encoder enc = LQ_ENCODER_EXACT;
            if (!dfs) lq_encoder_from_name(e, &enc);
            lq_lattice Lrun = L;
            if (dfs) Lrun.split_hi_bits = 0;
            if (enc == LQ_ENCODER_BRUTEFORCE && D > 24) continue;
            long n = vectors;
            if (enc == LQ_ENCODER_EXACT && (D - d >= 14 || D >= 28) && n > exact_vectors) n = exact_vectors;
            if (enc == LQ_ENCODER_BRUTEFORCE && n > 2000) n = 2000;
            double mse, sec;
            if (lq_lattice_gaussian_mse(&Lrun, enc, (size_t)n, (uint64_t)seed, &mse, &sec) != LQ_OK) {
                fprintf(stderr, "lq-lattice: %d/%d %s: %s\n", D, d, e, lq_last_error());
                failures++;
                continue;
            }
            double spm = sec / ((double)n * d) * 1e6;
            if (json)
                printf("{\"config\": \"%d/%d\", \"D\": %d, \"d\": %d, \"bits\": %.4f, "
                       "\"encoder\": \"%s\", \"mse\": %.6f, \"bound\": %.6f, "
                       "\"seconds_per_mweights\": %.4f, \"vectors\": %ld, \"ratio_to_bound\": %.4f}\n",
                       D, d, D, d, bits, e, mse, bound, spm, n, mse / bound);
            else
                printf("%-7s %5.2f %-10s %9ld %9.5f %8.5f %9.3f %12.3f\n", c, bits, e, n, mse,
                       bound, mse / bound, spm);
            fflush(stdout);
        }
        lq_lattice_free(&L);
        lq_lattice_file_free(&f);
    }
    return failures ? 1 : 0;
}

static int cmd_info(int argc, char **argv) {
    if (argc != 1) {
        usage(stderr);
        return 2;
    }
    lq_lattice_file f;
    if (lq_lattice_file_read(argv[0], &f) != LQ_OK) {
        fprintf(stderr, "lq-lattice: %s\n", lq_last_error());
        return 1;
    }
    printf("%s: %d/%d (%.3f bits per weight), seed %llu, mse %.5f per dimension (%s)\n", argv[0],
           f.D, f.d, (double)f.D / f.d, (unsigned long long)f.seed, f.mse, f.encoder);
    lq_lattice_file_free(&f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *lattice_dir = getenv("LQ_LATTICE_DIR");
    if (!lattice_dir) lattice_dir = LQ_DEFAULT_LATTICE_DIR;
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2, lattice_dir);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2, lattice_dir);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 2, argv + 2);
    fprintf(stderr, "lq-lattice: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
