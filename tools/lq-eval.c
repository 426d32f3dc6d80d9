/* lq-eval: quality measurements of a model on text.
 *
 *   lq-eval ppl --model M [--tokenizer FILE] --text FILE [--ctx 512] [--max-windows N]
 *               [--max-chars N] [--pack-paragraphs] [--json]
 *
 * The measurement is lq_perplexity_text (common/eval.c, which states the protocol; docs/EVAL.md
 * explains it); this main parses flags and prints. */
#include "cli_args.h"
#include "eval.h"
#include "lq_quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: lq-eval ppl --model M [--tokenizer FILE] --text FILE [--ctx N]\n"
            "                   [--max-windows N] [--max-chars N] [--pack-paragraphs] [--json]\n"
            "\n"
            "ppl   perplexity over non-overlapping windows of --ctx tokens (default 512, or the\n"
            "      model's context if shorter), each starting with BOS when the tokenizer uses\n"
            "      one; only full windows are scored. See docs/EVAL.md.\n"
            "  --model M          Hugging Face directory, GGUF file, llama2.c .bin or liftquant\n"
            "                     output directory\n"
            "  --tokenizer F      the tok*.bin of a llama2.c checkpoint\n"
            "  --text F           UTF-8 text file\n"
            "  --max-windows N    score only the first N windows\n"
            "  --max-chars N      use only the first N characters (UTF-8 code points) of the text\n"
            "  --pack-paragraphs  the reference protocol: each non-blank line tokenized on its\n"
            "                     own with its newline, packed into windows of at most ctx - 1\n"
            "                     tokens after BOS; partial windows are scored too\n"
            "  --json             one JSON object: ppl, nll, tokens, windows, seconds,\n"
            "                     tokens_per_second\n"
            "Threads: LQ_THREADS (default min(cores, 2)).\n");
}

/* The progress line, on stderr so that --json output stays one object. */
static void progress(void *ctx, size_t windows_done, size_t n_windows, double running_ppl,
                     double tokens_per_second, double seconds_left) {
    (void)ctx;
    fprintf(stderr, "lq-eval: window %zu/%zu, running ppl %.4f, %.1f tokens/s, ~%.0f s left\n",
            windows_done, n_windows, running_ppl, tokens_per_second, seconds_left);
}

static int cmd_ppl(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *text_path = NULL;
    long ctx_arg = 0, max_windows = 0, max_chars = -1;
    int json = 0, pack = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--tokenizer") || !strcmp(a, "--text")) {
            if (!v) {
                fprintf(stderr, "lq-eval: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--model")) model_path = v;
            else if (!strcmp(a, "--tokenizer")) tokenizer_path = v;
            else text_path = v;
            i++;
        } else if (!strcmp(a, "--ctx")) {
            if (!lq_arg_long("lq-eval", a, v, 2, 1 << 20, &ctx_arg)) return 2;
            i++;
        } else if (!strcmp(a, "--max-windows")) {
            if (!lq_arg_long("lq-eval", a, v, 1, 1L << 40, &max_windows)) return 2;
            i++;
        } else if (!strcmp(a, "--max-chars")) {
            if (!lq_arg_long("lq-eval", a, v, 1, 1L << 50, &max_chars)) return 2;
            i++;
        } else if (!strcmp(a, "--pack-paragraphs")) {
            pack = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "lq-eval: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model_path || !text_path) {
        fprintf(stderr, "lq-eval: ppl needs --model and --text\n");
        usage(stderr);
        return 2;
    }

    lq_ppl_options opt;
    lq_ppl_options_default(&opt);
    opt.ctx = (int)ctx_arg;
    opt.max_windows = max_windows;
    opt.max_chars = max_chars;
    opt.pack_paragraphs = pack;
    opt.progress = progress;
    char *text = NULL;
    size_t text_len = 0;
    lq_model *m = NULL;
    lq_ppl_result r;
    int rc = 1;
    /* the text first: a bad --text fails before a large model is loaded */
    if (lq_ppl_read_text(text_path, &opt, &text, &text_len) != LQ_OK ||
        lq_load_any_model(model_path, tokenizer_path, &m) != LQ_OK ||
        lq_perplexity_text(m, text, text_len, text_path, &opt, &r) != LQ_OK) {
        fprintf(stderr, "lq-eval: %s\n", lq_last_error());
        goto done;
    }
    if (json) {
        printf("{\"ppl\": %.6f, \"nll\": %.6f, \"tokens\": %zu, \"windows\": %zu, \"seconds\": %.3f, "
               "\"tokens_per_second\": %.1f}\n", r.ppl, r.nll, r.tokens, r.windows, r.seconds,
               r.tokens_per_second);
    } else {
        printf("ppl %.4f  nll %.4f nats/token  tokens %zu  windows %zu  seconds %.2f  tokens/s "
               "%.0f\n", r.ppl, r.nll, r.tokens, r.windows, r.seconds, r.tokens_per_second);
        fprintf(stderr, "lq-eval: %s on %s: ctx %d, %s, %zu text tokens, %zu of %zu windows\n",
                model_path, text_path, r.ctx, pack ? "paragraphs packed" : "contiguous windows",
                r.text_tokens, r.windows, r.windows_total);
    }
    rc = 0;
done:
    free(text);
    lq_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "ppl")) return cmd_ppl(argc - 2, argv + 2);
    fprintf(stderr, "lq-eval: unknown command '%s' (see --help)\n", argv[1]);
    return 2;
}
