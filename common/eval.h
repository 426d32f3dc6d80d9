/* Perplexity of a model on a text file (common/eval.c): the measurement behind `lq-eval ppl`,
 * shared so that other programs (lq-calibrate's held-out check) report the same figure for the
 * same model and text. The protocol is docs/EVAL.md; eval.c states it next to the code.
 *
 * Errors carry the messages lq-eval prints after "lq-eval: ", naming the text by
 * text_flag ("--text") and its path, the window length by ctx_flag ("--ctx"). */
#ifndef LQ_EVAL_H
#define LQ_EVAL_H

#include "model.h"

typedef struct {
    int ctx;              /* window length in tokens, BOS included; 0: min(512, model context) */
    long max_windows;     /* score only the first N windows; <= 0: all */
    long max_chars;       /* use only the first N characters (code points) of the text; <= 0: all */
    int pack_paragraphs;  /* the reference protocol: paragraphs packed into windows */
    /* How messages name the text and the window length, so that a program whose flags differ
     * (lq-calibrate --eval-text) names its own; NULL: "--text", "--ctx". */
    const char *text_flag, *ctx_flag;
    /* Called about every 10 s between windows (never after the last one), for a progress
     * line; NULL: none. running_ppl is over the windows done so far. */
    void (*progress)(void *ctx, size_t windows_done, size_t n_windows, double running_ppl,
                     double tokens_per_second, double seconds_left);
    void *progress_ctx;
} lq_ppl_options;

typedef struct {
    double ppl, nll;          /* nll: mean over predicted tokens, nats/token; ppl = exp(nll) */
    double seconds;           /* forward passes and scoring only, not reading or tokenizing */
    double tokens_per_second; /* tokens / seconds */
    size_t tokens;            /* predicted tokens */
    size_t windows;           /* scored windows (≤ max_windows) */
    size_t windows_total;     /* windows the text yields */
    size_t text_tokens;       /* tokens of the text, BOS not counted */
    int ctx;                  /* the window length used */
} lq_ppl_result;

/* Zeroes o: all defaults (ctx from the model, every window, the whole text, contiguous). */
void lq_ppl_options_default(lq_ppl_options *o);

/* Reads the text file whole and cuts it to o->max_chars characters (o may be NULL); fails on an
 * unreadable or empty text. The caller frees *text. lq_perplexity does this itself; calling it
 * first lets a program reject a bad text before loading a model or running a long job. */
lq_status lq_ppl_read_text(const char *path, const lq_ppl_options *o, char **text, size_t *len);

/* Perplexity of m on the text file at text_path (o may be NULL: defaults). m must have a
 * tokenizer. Uses both cores through lq_forward; the result is bit-identical from run to run
 * for a fixed thread count. */
lq_status lq_perplexity(const lq_model *m, const char *text_path, const lq_ppl_options *o,
                        lq_ppl_result *out);
/* The same on text already in memory (len bytes, cut to o->max_chars again, which is
 * idempotent); text_path only names it in messages. */
lq_status lq_perplexity_text(const lq_model *m, const char *text, size_t len,
                             const char *text_path, const lq_ppl_options *o, lq_ppl_result *out);

#endif
