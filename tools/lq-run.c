/* lq-run: generate text with a model (any input lq_model_load reads, or a liftquant output).
 *
 *   lq-run --model M [--tokenizer FILE] [--prompt TEXT] [-n N] [--temp T] [--top-p P] [--seed S]
 *
 * Output follows llama2.c's run.c: the prompt's pieces (after BOS) are echoed, then each
 * generated piece is streamed as soon as it is sampled, and a newline ends the output.
 * Generation stops after N new tokens, at the context limit, or when the model produces BOS
 * or EOS. Everything that is not the text (settings, speed) goes to stderr. */
#include "cli_args.h"
#include "lq_quant.h"
#include "model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: lq-run --model M [--tokenizer FILE] [--prompt TEXT] [-n N]\n"
            "              [--temp T] [--top-p P] [--seed S] [--quiet]\n"
            "\n"
            "  --model M       Hugging Face directory, GGUF file, llama2.c .bin checkpoint or a\n"
            "                  liftquant output directory\n"
            "  --tokenizer F   the tok*.bin of a llama2.c checkpoint (others carry their own)\n"
            "  --prompt TEXT   text to continue (default: empty, start from BOS)\n"
            "  -n N            tokens to generate after the prompt (default 256; capped by the\n"
            "                  model's context length)\n"
            "  --temp T        sampling temperature; 0 = greedy (default 1.0)\n"
            "  --top-p P       nucleus sampling: sample from the smallest set of tokens whose\n"
            "                  probability reaches P; 1 = off (default 0.9)\n"
            "  --seed S        random seed (default: from the clock; printed on stderr)\n"
            "  --quiet         no settings or speed report on stderr\n"
            "Threads: LQ_THREADS (default min(cores, 2)).\n");
}



/* ---- sampling ----------------------------------------------------------------------------- */
static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i; /* first maximum, as run.c */
    return best;
}

typedef struct {
    float p;
    int id;
} candidate;

static int compare_candidates(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    if (a->p != b->p) return a->p > b->p ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id); /* ties by id: the order, and so the draw, is fixed */
}

/* Samples from softmax(logits / temp), restricted to the top-p nucleus when top_p < 1. */
static int sample(float *logits, int n, double temp, double top_p, lq_rng *rng, candidate *buf) {
    float max = logits[argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        buf[i].p = expf((float)((logits[i] - max) / temp));
        buf[i].id = i;
        sum += buf[i].p;
    }
    int keep = n;
    if (top_p < 1.0) {
        qsort(buf, (size_t)n, sizeof *buf, compare_candidates);
        double cum = 0.0;
        for (keep = 0; keep < n;) {
            cum += buf[keep++].p / sum;
            if (cum >= top_p) break;
        }
        sum = 0.0;
        for (int i = 0; i < keep; i++) sum += buf[i].p;
    }
    double r = lq_rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < keep; i++) {
        acc += buf[i].p;
        if (r < acc) return buf[i].id;
    }
    return buf[keep - 1].id; /* rounding left r just above the total */
}

/* Prints a piece as run.c's safe_printf does: a lone control byte that is not whitespace (a
 * byte-fallback token of a raw control character) would garble a terminal, so it is dropped.
 * Bytes of 0x80 and above are kept: byte tokens of a multi-byte character must reach the
 * output for the character to appear. */
static void print_piece(const char *piece, int len) {
    if (len == 1) {
        unsigned char b = (unsigned char)piece[0];
        if ((b < 0x20 && !isspace(b)) || b == 0x7F) return;
    }
    fwrite(piece, 1, (size_t)len, stdout);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *prompt = "";
    long n_new = 256, seed = -1;
    double temp = 1.0, top_p = 0.9;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--tokenizer") || !strcmp(a, "--prompt")) {
            if (!v) {
                fprintf(stderr, "lq-run: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--model")) model_path = v;
            else if (!strcmp(a, "--tokenizer")) tokenizer_path = v;
            else prompt = v;
            i++;
        } else if (!strcmp(a, "-n")) {
            if (!lq_arg_long("lq-run", a, v, 0, 1L << 30, &n_new)) return 2;
            i++;
        } else if (!strcmp(a, "--temp")) {
            if (!lq_arg_double("lq-run", a, v, 0.0, 100.0, &temp)) return 2;
            i++;
        } else if (!strcmp(a, "--top-p")) {
            if (!lq_arg_double("lq-run", a, v, 0.0, 1.0, &top_p)) return 2;
            if (top_p == 0.0) {
                fprintf(stderr, "lq-run: --top-p: 0 keeps no token; use --temp 0 for greedy\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (!lq_arg_long("lq-run", a, v, 0, 0x7fffffffffffffffL, &seed)) return 2;
            i++;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            fprintf(stderr, "lq-run: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path) {
        fprintf(stderr, "lq-run: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (seed < 0) seed = (long)time(NULL);

    lq_model *m = NULL;
    lq_session *s = NULL;
    int *ids = NULL;
    float *logits = NULL;
    candidate *cand = NULL;
    int rc = 1;
    if (lq_load_any_model(model_path, tokenizer_path, &m) != LQ_OK) {
        fprintf(stderr, "lq-run: %s\n", lq_last_error());
        goto done;
    }
    if (!m->tokenizer) {
        fprintf(stderr, "lq-run: %s has no tokenizer; pass the llama2.c tok*.bin with --tokenizer\n",
                model_path);
        goto done;
    }
    const lq_tokenizer *tok = m->tokenizer;
    size_t n_ids;
    if (lq_tokenizer_encode(tok, prompt, strlen(prompt), lq_tokenizer_add_bos(tok), 0, &ids,
                            &n_ids) != LQ_OK) {
        fprintf(stderr, "lq-run: --prompt: %s\n", lq_last_error());
        goto done;
    }
    if (n_ids == 0) {
        /* a model whose tokenizer adds no BOS still needs one token to start from */
        fprintf(stderr, "lq-run: the prompt is empty and %s adds no BOS token; give a --prompt\n",
                model_path);
        goto done;
    }
    int ctx = m->cfg.max_seq_len;
    if ((long)n_ids > ctx) {
        fprintf(stderr, "lq-run: --prompt: %zu tokens exceed the model's context of %d\n", n_ids,
                ctx);
        goto done;
    }
    /* the last generated token is never fed back, so n_ids + n_new positions can be produced
     * with n_ids + n_new − 1 forwards */
    long total = (long)n_ids + n_new;
    if (total > ctx + 1) {
        if (!quiet)
            fprintf(stderr, "lq-run: -n %ld capped to %ld by the context length %d\n", n_new,
                    (long)ctx + 1 - (long)n_ids, ctx);
        n_new = (long)ctx + 1 - (long)n_ids;
    }
    int vocab = m->cfg.vocab_size;
    logits = malloc((size_t)vocab * sizeof *logits);
    cand = malloc((size_t)vocab * sizeof *cand);
    if (!logits || !cand) {
        fprintf(stderr, "lq-run: out of memory\n");
        goto done;
    }
    if (lq_session_new(m, ctx, &s) != LQ_OK) {
        fprintf(stderr, "lq-run: %s\n", lq_last_error());
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "lq-run: %s (%s, %zu parameters), %zu prompt tokens, temp %g, top-p %g, "
                "seed %ld\n", model_path, m->format, lq_model_parameter_count(m), n_ids, temp,
                top_p, seed);
    lq_rng rng;
    lq_rng_seed(&rng, (uint64_t)seed);
    int bos = lq_tokenizer_bos(tok), eos = lq_tokenizer_eos(tok);
    char piece[1024];

    /* echo the prompt as run.c does: each piece decoded after its predecessor, BOS itself
     * not printed (a tokenizer without BOS starts with a text token, which is) */
    for (size_t i = ids[0] == bos ? 1 : 0; i < n_ids; i++) {
        int len = lq_tokenizer_decode(tok, i > 0 ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        if (len > 0) print_piece(piece, len);
    }
    fflush(stdout);
    double t0 = lq_seconds();
    if (n_new > 0 && lq_forward(s, ids, (int)n_ids, logits, 0) != LQ_OK) {
        fprintf(stderr, "\nlq-run: %s\n", lq_last_error());
        goto done;
    }
    double t_prefill = lq_seconds() - t0, t1 = lq_seconds();
    int prev = ids[n_ids - 1];
    long generated = 0;
    for (; generated < n_new; generated++) {
        int next = temp == 0.0 ? argmax(logits, vocab)
                               : sample(logits, vocab, temp, top_p, &rng, cand);
        if (next == bos || next == eos) break;
        int len = lq_tokenizer_decode(tok, prev, next, piece, sizeof piece);
        if (len > 0) print_piece(piece, len);
        fflush(stdout);
        prev = next;
        if (generated + 1 < n_new && lq_forward(s, &next, 1, logits, 0) != LQ_OK) {
            fprintf(stderr, "\nlq-run: %s\n", lq_last_error());
            goto done;
        }
    }
    printf("\n");
    fflush(stdout);
    double t_gen = lq_seconds() - t1;
    if (!quiet)
        fprintf(stderr, "lq-run: prefill %zu tokens in %.3f s (%.1f tokens/s); generated %ld tokens "
                "in %.3f s (%.1f tokens/s)\n", n_ids, t_prefill,
                t_prefill > 0 ? (double)n_ids / t_prefill : 0.0, generated, t_gen,
                t_gen > 0 ? (double)generated / t_gen : 0.0);
    rc = 0;
done:
    free(ids);
    free(logits);
    free(cand);
    lq_session_free(s);
    lq_model_free(m);
    return rc;
}
