/* lq-eval: quality measurements of a model on text.
 *
 *   lq-eval ppl --model M [--tokenizer FILE] --text FILE [--ctx 512] [--max-windows N]
 *               [--max-chars N] [--pack-paragraphs] [--json]
 *
 * Perplexity protocol (docs/EVAL.md): the whole text is tokenized once, without BOS, and cut
 * into consecutive non-overlapping windows. When the tokenizer uses BOS, each window is BOS
 * followed by ctx − 1 text tokens, otherwise ctx text tokens; only full windows are scored.
 * Every token after the first of a window is predicted from all tokens before it in the window,
 * and the reported NLL is the mean over all predicted tokens (log-softmax in double);
 * ppl = exp(nll).
 *
 * --pack-paragraphs is the protocol of the reference figure in shared/data (each non-blank line
 * tokenized on its own with its newline, greedily packed into windows of at most ctx − 1
 * tokens after BOS, partial windows scored too), for comparing with it. */
#include "cli_args.h"
#include "lq_quant.h"
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows of logits computed per lq_forward call inside a window: vocab × EVAL_ROWS floats. */
#define EVAL_ROWS 64

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


static int read_text(const char *path, char **data, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "lq-eval: --text %s: cannot open: %s\n", path, strerror(errno));
        return 0;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(fp);
    fclose(fp);
    if (failed) {
        fprintf(stderr, "lq-eval: --text %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return 0;
    }
    *data = buf;
    *size = len;
    return 1;
}

/* Bytes of the first n UTF-8 code points of text. */
static size_t utf8_prefix(const char *text, size_t len, long n) {
    size_t i = 0;
    for (long c = 0; c < n && i < len; c++) {
        i++;
        while (i < len && ((unsigned char)text[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

/* The windows to score: each a run of token ids (BOS included when used). */
typedef struct {
    int *ids;         /* all windows back to back */
    size_t *start;    /* window w is ids[start[w] .. start[w+1]) */
    size_t n_windows, n_ids, cap_ids, cap_windows;
} window_set;

static int ws_push(window_set *ws, const int *ids, size_t n, int bos) {
    size_t need = ws->n_ids + n + 1;
    if (need > ws->cap_ids) {
        size_t cap = ws->cap_ids ? ws->cap_ids : 4096;
        while (cap < need) cap *= 2;
        int *p = realloc(ws->ids, cap * sizeof *p);
        if (!p) return 0;
        ws->ids = p, ws->cap_ids = cap;
    }
    if (ws->n_windows + 2 > ws->cap_windows) {
        size_t cap = ws->cap_windows ? 2 * ws->cap_windows : 64;
        size_t *p = realloc(ws->start, cap * sizeof *p);
        if (!p) return 0;
        ws->start = p, ws->cap_windows = cap;
    }
    if (ws->n_windows == 0) ws->start[0] = 0;
    if (bos >= 0) ws->ids[ws->n_ids++] = bos;
    memcpy(ws->ids + ws->n_ids, ids, n * sizeof *ids);
    ws->n_ids += n;
    ws->start[++ws->n_windows] = ws->n_ids;
    return 1;
}

/* Paragraph packing, the protocol of the reference figure in shared/data: every non-blank line
 * of the text (a TinyStories paragraph) is tokenized on its own with its newline, as
 * encode(line + "\n"), and the results are packed greedily into windows of at most ctx − 1
 * tokens after BOS; a line that does not fit in the current window starts the next one, a line
 * longer than a window is split. Returns 0 on error (message printed). */
static int pack_paragraphs(const lq_tokenizer *tok, const char *text, size_t len, int ctx, int bos,
                           window_set *ws) {
    size_t room = (size_t)(bos >= 0 ? ctx - 1 : ctx);
    int *cur = malloc(room * sizeof *cur);
    char *line = malloc(len + 1);
    size_t n_cur = 0;
    int ok = cur && line, encode_failed = 0;
    for (size_t p = 0; p < len && ok;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t a = p, b = nl ? (size_t)(nl - text) : len;
        p = nl ? b + 1 : len;
        int blank = 1;
        for (size_t i = a; i < b && blank; i++)
            blank = text[i] == ' ' || text[i] == '\t' || text[i] == '\r';
        if (blank) continue;
        memcpy(line, text + a, b - a);
        line[b - a] = '\n'; /* also after a last line that had none, as line + "\n" does */
        int *ids;
        size_t n;
        if (lq_tokenizer_encode(tok, line, b - a + 1, 0, 0, &ids, &n) != LQ_OK) {
            fprintf(stderr, "lq-eval: --text: %s\n", lq_last_error());
            ok = 0;
            encode_failed = 1;
            break;
        }
        if (n_cur + n > room && n_cur > 0) { /* does not fit: close the window */
            ok = ws_push(ws, cur, n_cur, bos);
            n_cur = 0;
        }
        for (size_t i = 0; i < n && ok;) {
            size_t take = n - i < room - n_cur ? n - i : room - n_cur;
            memcpy(cur + n_cur, ids + i, take * sizeof *cur);
            n_cur += take, i += take;
            if (n_cur == room) {
                ok = ws_push(ws, cur, n_cur, bos);
                n_cur = 0;
            }
        }
        free(ids);
    }
    if (ok && n_cur > 0) ok = ws_push(ws, cur, n_cur, bos);
    free(cur);
    free(line);
    if (!ok && !encode_failed) fprintf(stderr, "lq-eval: out of memory\n");
    return ok;
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

    char *text = NULL;
    size_t text_len = 0;
    lq_model *m = NULL;
    lq_session *s = NULL;
    int *stream = NULL;
    float *logits = NULL;
    window_set ws = {0};
    int rc = 1;
    if (!read_text(text_path, &text, &text_len)) goto done;
    if (max_chars > 0) text_len = utf8_prefix(text, text_len, max_chars);
    if (text_len == 0) {
        fprintf(stderr, "lq-eval: --text %s is empty\n", text_path);
        goto done;
    }
    if (lq_load_any_model(model_path, tokenizer_path, &m) != LQ_OK) {
        fprintf(stderr, "lq-eval: %s\n", lq_last_error());
        goto done;
    }
    if (!m->tokenizer) {
        fprintf(stderr, "lq-eval: %s has no tokenizer; pass the llama2.c tok*.bin with --tokenizer\n",
                model_path);
        goto done;
    }
    const lq_tokenizer *tok = m->tokenizer;
    int max_ctx = m->cfg.max_seq_len;
    int ctx = ctx_arg ? (int)ctx_arg : (max_ctx < 512 ? max_ctx : 512);
    if (ctx > max_ctx) {
        fprintf(stderr, "lq-eval: --ctx %d exceeds the model's context length %d\n", ctx, max_ctx);
        goto done;
    }
    int bos = lq_tokenizer_add_bos(tok) ? lq_tokenizer_bos(tok) : -1;
    size_t per_window = (size_t)(bos >= 0 ? ctx - 1 : ctx);
    size_t n_stream = 0;
    if (pack) {
        if (!pack_paragraphs(tok, text, text_len, ctx, bos, &ws)) goto done;
        n_stream = ws.n_ids - (bos >= 0 ? ws.n_windows : 0);
    } else {
        if (lq_tokenizer_encode(tok, text, text_len, 0, 0, &stream, &n_stream) != LQ_OK) {
            fprintf(stderr, "lq-eval: --text %s: %s\n", text_path, lq_last_error());
            goto done;
        }
        for (size_t w = 0; (w + 1) * per_window <= n_stream; w++)
            if (!ws_push(&ws, stream + w * per_window, per_window, bos)) {
                fprintf(stderr, "lq-eval: out of memory\n");
                goto done;
            }
    }
    if (ws.n_windows == 0 || (pack && ws.n_ids - ws.n_windows * (bos >= 0) == 0)) {
        fprintf(stderr,
                "lq-eval: --text %s is shorter than one window: it has %zu tokens, a window of "
                "--ctx %d needs %zu%s\n",
                text_path, n_stream, ctx, per_window, bos >= 0 ? " after BOS" : "");
        goto done;
    }
    size_t n_windows = ws.n_windows;
    if (max_windows > 0 && (size_t)max_windows < n_windows) n_windows = (size_t)max_windows;

    int vocab = m->cfg.vocab_size;
    logits = malloc((size_t)EVAL_ROWS * vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "lq-eval: out of memory\n");
        goto done;
    }
    if (lq_session_new(m, ctx, &s) != LQ_OK) {
        fprintf(stderr, "lq-eval: %s\n", lq_last_error());
        goto done;
    }
    double nll_sum = 0.0, t0 = lq_seconds(), last_report = t0;
    size_t predicted = 0;
    for (size_t w = 0; w < n_windows; w++) {
        const int *ids = ws.ids + ws.start[w];
        int n = (int)(ws.start[w + 1] - ws.start[w]);
        lq_session_reset(s);
        for (int done = 0; done < n - 1;) {
            /* the last token of a window is only a target, never an input */
            int rows = n - 1 - done < EVAL_ROWS ? n - 1 - done : EVAL_ROWS;
            if (lq_forward(s, ids + done, rows, logits, 1) != LQ_OK) {
                fprintf(stderr, "lq-eval: window %zu: %s\n", w, lq_last_error());
                goto done;
            }
            for (int r = 0; r < rows; r++) {
                const float *row = logits + (size_t)r * vocab;
                double max = row[0], sum = 0.0;
                for (int j = 1; j < vocab; j++) max = row[j] > max ? row[j] : max;
                for (int j = 0; j < vocab; j++) sum += exp((double)row[j] - max);
                nll_sum += max + log(sum) - (double)row[ids[done + r + 1]];
            }
            predicted += (size_t)rows;
            done += rows;
        }
        /* a progress line every ~10 s (stderr, so --json output stays one object) */
        double now = lq_seconds();
        if (now - last_report >= 10.0 && w + 1 < n_windows) {
            double rate = (double)predicted / (now - t0);
            fprintf(stderr, "lq-eval: window %zu/%zu, running ppl %.4f, %.1f tokens/s, ~%.0f s left\n",
                    w + 1, n_windows, exp(nll_sum / (double)predicted), rate,
                    (double)(n_windows - w - 1) * (double)(n - 1) / rate);
            last_report = now;
        }
    }
    double seconds = lq_seconds() - t0;
    double nll = nll_sum / (double)predicted, ppl = exp(nll);
    double tps = seconds > 0 ? (double)predicted / seconds : 0.0;
    if (!isfinite(nll)) {
        fprintf(stderr, "lq-eval: the mean NLL is not finite (%g): the model produced non-finite "
                "logits\n", nll);
        goto done;
    }
    if (json) {
        printf("{\"ppl\": %.6f, \"nll\": %.6f, \"tokens\": %zu, \"windows\": %zu, \"seconds\": %.3f, "
               "\"tokens_per_second\": %.1f}\n", ppl, nll, predicted, n_windows, seconds, tps);
    } else {
        printf("ppl %.4f  nll %.4f nats/token  tokens %zu  windows %zu  seconds %.2f  tokens/s "
               "%.0f\n", ppl, nll, predicted, n_windows, seconds, tps);
        fprintf(stderr, "lq-eval: %s on %s: ctx %d, %s, %zu text tokens, %zu of %zu windows\n",
                model_path, text_path, ctx, pack ? "paragraphs packed" : "contiguous windows",
                n_stream, n_windows, ws.n_windows);
    }
    rc = 0;
done:
    free(text);
    free(stream);
    free(logits);
    free(ws.ids);
    free(ws.start);
    lq_session_free(s);
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
