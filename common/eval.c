/* Perplexity of a model on a text (common/eval.h), the measurement of `lq-eval ppl`.
 *
 * Protocol (docs/EVAL.md): the whole text is tokenized once, without BOS, and cut into
 * consecutive non-overlapping windows. When the tokenizer uses BOS, each window is BOS followed
 * by ctx − 1 text tokens, otherwise ctx text tokens; only full windows are scored. Every token
 * after the first of a window is predicted from all tokens before it in the window, and the
 * reported NLL is the mean over all predicted tokens (log-softmax in double); ppl = exp(nll).
 *
 * pack_paragraphs is the protocol of the reference figure in shared/data (each non-blank line
 * tokenized on its own with its newline, greedily packed into windows of at most ctx − 1
 * tokens after BOS, partial windows scored too), for comparing with it.
 *
 * Error messages are lq-eval's (it prints them after "lq-eval: "), so they name the text and
 * the window length by the caller's flags. */
#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows of logits computed per lq_forward call inside a window: vocab × EVAL_ROWS floats. */
#define EVAL_ROWS 64
/* Seconds between progress callbacks: often enough to show a long run is alive, rarely enough
 * that a log does not fill with them. */
#define PROGRESS_SECONDS 10.0

void lq_ppl_options_default(lq_ppl_options *o) { memset(o, 0, sizeof *o); }

static const char *text_flag(const lq_ppl_options *o) {
    return o && o->text_flag ? o->text_flag : "--text";
}
static const char *ctx_flag(const lq_ppl_options *o) {
    return o && o->ctx_flag ? o->ctx_flag : "--ctx";
}

/* lq_read_file with the flag in front of its message; a file that cannot be opened stays
 * LQ_ERR_IO here (lq_read_file says NOT_FOUND for a missing one), as eval has always reported. */
static lq_status read_text(const char *path, const char *flag, char **data, size_t *size) {
    lq_status st = lq_read_file(path, data, size);
    if (st == LQ_OK) return LQ_OK;
    char why[4096];
    snprintf(why, sizeof why, "%s", lq_last_error());
    return lq_fail(st == LQ_ERR_NOMEM ? LQ_ERR_NOMEM : LQ_ERR_IO, "%s %s", flag, why);
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

/* The text's length after max_chars, or a failure when nothing is left. */
static lq_status cut_text(const char *text, size_t *len, const char *path,
                          const lq_ppl_options *o) {
    if (o && o->max_chars > 0) *len = utf8_prefix(text, *len, o->max_chars);
    if (*len == 0) return lq_fail(LQ_ERR_ARG, "%s %s is empty", text_flag(o), path);
    return LQ_OK;
}

lq_status lq_ppl_read_text(const char *path, const lq_ppl_options *o, char **text, size_t *len) {
    char *data = NULL;
    size_t n = 0;
    lq_status st = read_text(path, text_flag(o), &data, &n);
    if (st == LQ_OK) st = cut_text(data, &n, path, o);
    if (st != LQ_OK) {
        free(data);
        return st;
    }
    *text = data;
    *len = n;
    return LQ_OK;
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
 * longer than a window is split. */
static lq_status pack_paragraphs(const lq_tokenizer *tok, const char *text, size_t len, int ctx,
                                 int bos, const char *flag, window_set *ws) {
    size_t room = (size_t)(bos >= 0 ? ctx - 1 : ctx);
    int *cur = malloc(room * sizeof *cur);
    char *line = malloc(len + 1);
    size_t n_cur = 0;
    int ok = cur && line;
    lq_status st = LQ_OK;
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
        if ((st = lq_tokenizer_encode(tok, line, b - a + 1, 0, 0, &ids, &n)) != LQ_OK) {
            st = lq_fail_context(st, "%s", flag);
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
    if (st == LQ_OK && ok && n_cur > 0) ok = ws_push(ws, cur, n_cur, bos);
    free(cur);
    free(line);
    if (st == LQ_OK && !ok) st = lq_fail(LQ_ERR_NOMEM, "out of memory");
    return st;
}

/* Mean NLL of the windows [0, n_windows) of ws, each run from an empty KV cache. */
static lq_status score_windows(const lq_model *m, int ctx, const window_set *ws, size_t n_windows,
                               const lq_ppl_options *o, lq_ppl_result *r) {
    int vocab = m->cfg.vocab_size;
    float *logits = malloc((size_t)EVAL_ROWS * vocab * sizeof *logits);
    if (!logits) return lq_fail(LQ_ERR_NOMEM, "out of memory");
    lq_session *s = NULL;
    lq_status st = lq_session_new(m, ctx, &s);
    if (st != LQ_OK) {
        free(logits);
        return st;
    }
    double nll_sum = 0.0, t0 = lq_seconds(), last_report = t0;
    size_t predicted = 0;
    for (size_t w = 0; w < n_windows && st == LQ_OK; w++) {
        const int *ids = ws->ids + ws->start[w];
        int n = (int)(ws->start[w + 1] - ws->start[w]);
        lq_session_reset(s);
        for (int done = 0; done < n - 1;) {
            /* the last token of a window is only a target, never an input */
            int rows = n - 1 - done < EVAL_ROWS ? n - 1 - done : EVAL_ROWS;
            if ((st = lq_forward(s, ids + done, rows, logits, 1)) != LQ_OK) {
                st = lq_fail_context(st, "window %zu", w);
                break;
            }
            for (int k = 0; k < rows; k++) {
                const float *row = logits + (size_t)k * vocab;
                double max = row[0], sum = 0.0;
                for (int j = 1; j < vocab; j++) max = row[j] > max ? row[j] : max;
                for (int j = 0; j < vocab; j++) sum += exp((double)row[j] - max);
                nll_sum += max + log(sum) - (double)row[ids[done + k + 1]];
            }
            predicted += (size_t)rows;
            done += rows;
        }
        double now = lq_seconds();
        if (st == LQ_OK && o && o->progress && now - last_report >= PROGRESS_SECONDS &&
            w + 1 < n_windows) {
            double rate = (double)predicted / (now - t0);
            o->progress(o->progress_ctx, w + 1, n_windows, exp(nll_sum / (double)predicted), rate,
                        (double)(n_windows - w - 1) * (double)(n - 1) / rate);
            last_report = now;
        }
    }
    double seconds = lq_seconds() - t0;
    free(logits);
    lq_session_free(s);
    if (st != LQ_OK) return st;
    double nll = nll_sum / (double)predicted;
    if (!isfinite(nll))
        return lq_fail(LQ_ERR_NUMERIC, "the mean NLL is not finite (%g): the model produced "
                       "non-finite logits", nll);
    r->nll = nll;
    r->ppl = exp(nll);
    r->seconds = seconds;
    r->tokens_per_second = seconds > 0 ? (double)predicted / seconds : 0.0;
    r->tokens = predicted;
    r->windows = n_windows;
    return LQ_OK;
}

lq_status lq_perplexity_text(const lq_model *m, const char *text, size_t len,
                             const char *text_path, const lq_ppl_options *o, lq_ppl_result *out) {
    memset(out, 0, sizeof *out);
    lq_status st = cut_text(text, &len, text_path, o);
    if (st != LQ_OK) return st;
    if (!m->tokenizer)
        return lq_fail(LQ_ERR_ARG, "%s has no tokenizer; pass the llama2.c tok*.bin with "
                       "--tokenizer", m->source);
    const lq_tokenizer *tok = m->tokenizer;
    int max_ctx = m->cfg.max_seq_len;
    int ctx = o && o->ctx ? o->ctx : (max_ctx < 512 ? max_ctx : 512);
    if (ctx > max_ctx)
        return lq_fail(LQ_ERR_RANGE, "%s %d exceeds the model's context length %d", ctx_flag(o),
                       ctx, max_ctx);
    /* one token of input and one target at the least; with BOS, a window of 1 would hold no
     * text and the cutting loop below would never advance */
    if (ctx < 2)
        return lq_fail(LQ_ERR_ARG, "%s %d: a window needs at least 2 tokens", ctx_flag(o), ctx);
    int bos = lq_tokenizer_add_bos(tok) ? lq_tokenizer_bos(tok) : -1;
    size_t per_window = (size_t)(bos >= 0 ? ctx - 1 : ctx);
    size_t n_stream = 0;
    int *stream = NULL;
    window_set ws = {0};
    if (o && o->pack_paragraphs) {
        st = pack_paragraphs(tok, text, len, ctx, bos, text_flag(o), &ws);
        n_stream = ws.n_ids - (bos >= 0 ? ws.n_windows : 0);
    } else if ((st = lq_tokenizer_encode(tok, text, len, 0, 0, &stream, &n_stream)) != LQ_OK) {
        st = lq_fail_context(st, "%s %s", text_flag(o), text_path);
    } else {
        for (size_t w = 0; (w + 1) * per_window <= n_stream && st == LQ_OK; w++)
            if (!ws_push(&ws, stream + w * per_window, per_window, bos))
                st = lq_fail(LQ_ERR_NOMEM, "out of memory");
    }
    /* packing scores partial windows too, so it comes up short only on a text of blank lines */
    if (st == LQ_OK && ws.n_windows == 0)
        st = lq_fail(LQ_ERR_ARG, "%s %s is shorter than one window: it has %zu tokens, a window "
                     "of %s %d needs %zu%s", text_flag(o), text_path, n_stream, ctx_flag(o), ctx,
                     per_window, bos >= 0 ? " after BOS" : "");
    if (st == LQ_OK) {
        size_t n_windows = ws.n_windows;
        if (o && o->max_windows > 0 && (size_t)o->max_windows < n_windows)
            n_windows = (size_t)o->max_windows;
        lq_ppl_result r = {0};
        st = score_windows(m, ctx, &ws, n_windows, o, &r);
        if (st == LQ_OK) {
            r.windows_total = ws.n_windows;
            r.text_tokens = n_stream;
            r.ctx = ctx;
            *out = r;
        }
    }
    free(stream);
    free(ws.ids);
    free(ws.start);
    return st;
}

lq_status lq_perplexity(const lq_model *m, const char *text_path, const lq_ppl_options *o,
                        lq_ppl_result *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    lq_status st = lq_ppl_read_text(text_path, o, &text, &len);
    if (st == LQ_OK) st = lq_perplexity_text(m, text, len, text_path, o, out);
    free(text);
    return st;
}
