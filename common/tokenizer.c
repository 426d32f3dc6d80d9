/* Tokenizers (tokenizer.h): construction from a spec or a llama2.c tok*.bin, the
 * SentencePiece-style BPE with scores and byte fallback, special-token splitting, streaming
 * decode, and the lookups bpe.c (GPT-2 byte-level BPE) builds on.
 *
 * SentencePiece BPE, as llama2.c's run.c encodes:
 *   1. a dummy-prefix space is put before non-empty text (add_space_prefix);
 *   2. the text is cut into UTF-8 code points; each one that is a vocabulary entry becomes that
 *      token, any other becomes one "<0xAB>" byte token per byte (byte fallback);
 *   3. repeatedly, the adjacent pair whose concatenation is a vocabulary entry with the highest
 *      score is merged (ties: the leftmost pair), until no pair is in the vocabulary.
 * run.c rescans the whole sequence for every merge (quadratic); here a heap of candidate pairs
 * with lazy invalidation picks the same pair each step (highest score, then leftmost), so the
 * result is identical and encoding a whole corpus stays fast.
 *
 * Vocabularies come in two spellings of the word-boundary space: llama2.c's export already
 * replaced SentencePiece's "▁" (U+2581) by " ", GGUF keeps "▁". A vocabulary that contains "▁"
 * anywhere is encoded with spaces escaped to "▁" and decoded back, as llama.cpp does. The
 * tokenizer struct has no field for this, and `pre` is meaningful only for GPT-2, so an SPM
 * tokenizer records the choice in `pre` as SPM_METASPACE. */
#include "tokenizer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPM_METASPACE "spm:metaspace"
#define METASPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */
#define METASPACE_LEN 3
#define MAX_TOKENS (1 << 24)
#define MAX_TOKEN_BYTES (1 << 16)

/* ---- lq_string_map: open addressing with linear probing, FNV-1a -------------------------- */
static uint64_t fnv1a(uint64_t h, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

/* Hash of a, or of "a b" when b is given, without building the joined key: merge lookups in
 * bpe.c's inner loop then need no allocation. */
static uint64_t hash_parts(const char *a, size_t alen, const char *b, size_t blen) {
    uint64_t h = fnv1a(FNV_OFFSET, a, alen);
    if (b) {
        h = fnv1a(h, " ", 1);
        h = fnv1a(h, b, blen);
    }
    return h;
}

static int key_equals(const char *key, size_t key_len, const char *a, size_t alen, const char *b,
                      size_t blen) {
    if (!b) return key_len == alen && memcmp(key, a, alen) == 0;
    return key_len == alen + 1 + blen && memcmp(key, a, alen) == 0 && key[alen] == ' ' &&
           memcmp(key + alen + 1, b, blen) == 0;
}

static lq_status map_init(lq_string_map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < 2 * expected) cap *= 2; /* load factor at most 1/2 keeps probes short */
    m->keys = calloc(cap, sizeof *m->keys);
    m->key_len = calloc(cap, sizeof *m->key_len);
    m->values = calloc(cap, sizeof *m->values);
    if (!m->keys || !m->key_len || !m->values) {
        free(m->keys), free(m->key_len), free(m->values);
        memset(m, 0, sizeof *m);
        return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory for a %zu-entry table", expected);
    }
    m->cap = cap;
    return LQ_OK;
}

static void map_free(lq_string_map *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys), free(m->key_len), free(m->values);
    memset(m, 0, sizeof *m);
}

static int map_find(const lq_string_map *m, const char *a, size_t alen, const char *b, size_t blen) {
    if (m->cap == 0) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_parts(a, alen, b, blen) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i]) return -1;
        if (key_equals(m->keys[i], m->key_len[i], a, alen, b, blen)) return m->values[i];
    }
}

/* Inserts key → value unless the key is present: the first (lowest id or rank) wins. The
 * table never grows; map_init sized it for every key. */
static lq_status map_insert(lq_string_map *m, const char *key, size_t len, int value) {
    if (2 * (m->count + 1) > m->cap) return lq_fail(LQ_ERR_INTERNAL, "tokenizer: table overfull");
    size_t mask = m->cap - 1;
    size_t i = (size_t)hash_parts(key, len, NULL, 0) & mask;
    for (; m->keys[i]; i = (i + 1) & mask)
        if (key_equals(m->keys[i], m->key_len[i], key, len, NULL, 0)) return LQ_OK;
    char *copy = malloc(len + 1);
    if (!copy) return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(copy, key, len);
    copy[len] = '\0';
    m->keys[i] = copy;
    m->key_len[i] = len;
    m->values[i] = value;
    m->count++;
    return LQ_OK;
}

int lq_tokenizer_lookup(const lq_tokenizer *t, const char *s, size_t len) {
    return map_find(&t->vocab, s, len, NULL, 0);
}

int lq_tokenizer_merge_rank(const lq_tokenizer *t, const char *left, size_t left_len,
                            const char *right, size_t right_len) {
    return map_find(&t->merges, left, left_len, right ? right : "", right_len);
}

/* ---- construction -------------------------------------------------------------------------- */

/* The byte a "<0xAB>" piece stands for, or −1. SentencePiece writes two upper-case hex digits;
 * lower case is accepted too since nothing else could mean. */
static int byte_piece_value(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

typedef struct {
    size_t len;
    int id;
} special_entry;

static int compare_special(const void *pa, const void *pb) {
    const special_entry *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first: "<|im_end|>" beats "<|im" */
    return (a->id > b->id) - (a->id < b->id);
}

/* Orders t->special_ids longest first (ties by id) so the first match is the longest. */
static lq_status sort_specials(lq_tokenizer *t) {
    if (t->n_special < 2) return LQ_OK;
    special_entry *e = malloc((size_t)t->n_special * sizeof *e);
    if (!e) return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_special; i++) e[i] = (special_entry){t->token_len[t->special_ids[i]], t->special_ids[i]};
    qsort(e, (size_t)t->n_special, sizeof *e, compare_special);
    for (int i = 0; i < t->n_special; i++) t->special_ids[i] = e[i].id;
    free(e);
    return LQ_OK;
}

typedef struct {
    lq_tokenizer_kind kind;
    int n;
    const char *const *tokens;
    const size_t *lens;       /* NULL: strlen */
    const float *scores;
    const int *types;
    int n_merges;
    const char *const *merges;
    const char *pre;
    int bos, eos, unk, add_bos, add_space_prefix;
    const char *what;         /* for messages: the file or "tokenizer spec" */
} build_args;

static lq_status build(const build_args *a, lq_tokenizer **out) {
    *out = NULL;
    const char *what = a->what;
    if (a->kind != LQ_TOKENIZER_SPM && a->kind != LQ_TOKENIZER_GPT2)
        return lq_fail(LQ_ERR_ARG, "%s: unknown tokenizer kind %d", what, (int)a->kind);
    if (a->n < 1 || a->n > MAX_TOKENS)
        return lq_fail(LQ_ERR_FORMAT, "%s: %d tokens is out of range [1, %d]", what, a->n,
                       MAX_TOKENS);
    if (!a->tokens) return lq_fail(LQ_ERR_ARG, "%s: no token strings", what);
    struct { const char *name; int id; } ids[] = {{"bos", a->bos}, {"eos", a->eos}, {"unk", a->unk}};
    for (int i = 0; i < 3; i++)
        if (ids[i].id < -1 || ids[i].id >= a->n)
            return lq_fail(LQ_ERR_FORMAT, "%s: %s id %d is outside the %d-token vocabulary", what,
                           ids[i].name, ids[i].id, a->n);
    if (a->kind == LQ_TOKENIZER_GPT2 && a->n_merges > 0 && !a->merges)
        return lq_fail(LQ_ERR_ARG, "%s: %d merges announced but none given", what, a->n_merges);

    lq_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lq_fail(LQ_ERR_NOMEM, "%s: out of memory", what);
    lq_status st = LQ_OK;
    int n = a->n;
    t->kind = a->kind;
    t->n_tokens = n;
    t->bos_id = a->bos, t->eos_id = a->eos, t->unk_id = a->unk;
    t->add_bos = a->add_bos, t->add_space_prefix = a->add_space_prefix;
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    t->tokens = calloc((size_t)n, sizeof *t->tokens);
    t->token_len = calloc((size_t)n, sizeof *t->token_len);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->token_types = calloc((size_t)n, sizeof *t->token_types);
    t->special_ids = calloc((size_t)n, sizeof *t->special_ids);
    if (!t->tokens || !t->token_len || !t->scores || !t->token_types || !t->special_ids) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory for %d tokens", what, n);
        goto fail;
    }
    if ((st = map_init(&t->vocab, (size_t)n)) != LQ_OK) goto fail;
    int metaspace = 0;
    for (int i = 0; i < n; i++) {
        const char *s = a->tokens[i];
        if (!s) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: token %d has no string", what, i);
            goto fail;
        }
        size_t len = a->lens ? a->lens[i] : strlen(s);
        if (len > MAX_TOKEN_BYTES) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: token %d is %zu bytes long", what, i, len);
            goto fail;
        }
        t->tokens[i] = malloc(len + 1);
        if (!t->tokens[i]) {
            st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", what);
            goto fail;
        }
        memcpy(t->tokens[i], s, len);
        t->tokens[i][len] = '\0';
        t->token_len[i] = len;
        t->scores[i] = a->scores ? a->scores[i] : 0.0f;
        int type = a->types ? a->types[i] : LQ_TOKEN_NORMAL;
        if (type < LQ_TOKEN_NORMAL || type > LQ_TOKEN_BYTE) type = LQ_TOKEN_NORMAL;
        t->token_types[i] = type;
        if ((st = map_insert(&t->vocab, s, len, i)) != LQ_OK) goto fail;
        if (a->kind == LQ_TOKENIZER_SPM) {
            int b = byte_piece_value(s, len);
            if (b >= 0 && t->byte_token[b] < 0) t->byte_token[b] = i;
            if (!metaspace && len >= METASPACE_LEN) {
                for (size_t p = 0; p + METASPACE_LEN <= len && !metaspace; p++)
                    metaspace = memcmp(s + p, METASPACE, METASPACE_LEN) == 0;
            }
        }
        /* empty strings can never be matched in text (and would match everywhere) */
        if ((type == LQ_TOKEN_CONTROL || type == LQ_TOKEN_USER_DEFINED) && len > 0)
            t->special_ids[t->n_special++] = i;
    }
    if ((st = sort_specials(t)) != LQ_OK) goto fail;

    if (a->kind == LQ_TOKENIZER_GPT2) {
        const char *pre = a->pre ? a->pre : "";
        if (strlen(pre) >= sizeof t->pre) {
            st = lq_fail(LQ_ERR_UNSUPPORTED, "%s: pre-tokenizer name '%s' is too long", what, pre);
            goto fail;
        }
        snprintf(t->pre, sizeof t->pre, "%s", pre);
        int nm = a->n_merges > 0 ? a->n_merges : 0;
        if ((st = map_init(&t->merges, (size_t)nm)) != LQ_OK) goto fail;
        for (int r = 0; r < nm; r++) {
            const char *mg = a->merges[r];
            if (!mg || !strchr(mg, ' ')) {
                st = lq_fail(LQ_ERR_FORMAT, "%s: merge %d (\"%s\") is not \"left right\"", what, r,
                             mg ? mg : "(null)");
                goto fail;
            }
            if ((st = map_insert(&t->merges, mg, strlen(mg), r)) != LQ_OK) goto fail;
        }
    } else if (metaspace) {
        snprintf(t->pre, sizeof t->pre, "%s", SPM_METASPACE);
    }
    *out = t;
    return LQ_OK;
fail:
    lq_tokenizer_free(t);
    return st;
}

lq_status lq_tokenizer_new(const lq_tokenizer_spec *spec, lq_tokenizer **out) {
    if (!spec) {
        *out = NULL;
        return lq_fail(LQ_ERR_ARG, "lq_tokenizer_new: no spec");
    }
    build_args a = {
        .kind = spec->kind, .n = spec->n_tokens, .tokens = spec->tokens, .lens = NULL,
        .scores = spec->scores, .types = spec->token_types, .n_merges = spec->n_merges,
        .merges = spec->merges, .pre = spec->pre, .bos = spec->bos_id, .eos = spec->eos_id,
        .unk = spec->unk_id, .add_bos = spec->add_bos, .add_space_prefix = spec->add_space_prefix,
        .what = "tokenizer spec",
    };
    return build(&a, out);
}

lq_status lq_tokenizer_new_sized(const lq_tokenizer_spec *spec, const size_t *token_lens,
                                 const char *what, lq_tokenizer **out) {
    build_args a = {
        .kind = spec->kind, .n = spec->n_tokens, .tokens = spec->tokens, .lens = token_lens,
        .scores = spec->scores, .types = spec->token_types, .n_merges = spec->n_merges,
        .merges = spec->merges, .pre = spec->pre, .bos = spec->bos_id, .eos = spec->eos_id,
        .unk = spec->unk_id, .add_bos = spec->add_bos, .add_space_prefix = spec->add_space_prefix,
        .what = what,
    };
    return build(&a, out);
}

void lq_tokenizer_free(lq_tokenizer *t) {
    if (!t) return;
    if (t->tokens)
        for (int i = 0; i < t->n_tokens; i++) free(t->tokens[i]);
    free(t->tokens);
    free(t->token_len);
    free(t->scores);
    free(t->token_types);
    free(t->special_ids);
    map_free(&t->vocab);
    map_free(&t->merges);
    free(t);
}

/* ---- llama2.c tok*.bin --------------------------------------------------------------------- */
lq_status lq_tokenizer_load_llama2c(const char *path, int vocab_size, lq_tokenizer **out) {
    *out = NULL;
    if (vocab_size < 3 || vocab_size > MAX_TOKENS)
        return lq_fail(LQ_ERR_ARG, "%s: vocab_size %d is out of range (BOS is 1, EOS is 2)", path,
                       vocab_size);
    char *data;
    size_t size;
    lq_status st = lq_read_file(path, &data, &size);
    if (st != LQ_OK) return st;
    st = lq_tokenizer_parse_llama2c(data, size, vocab_size, path, out);
    free(data);
    return st;
}

lq_status lq_tokenizer_parse_llama2c(const void *bytes, size_t size, int vocab_size,
                                     const char *path, lq_tokenizer **out) {
    *out = NULL;
    if (vocab_size < 3 || vocab_size > MAX_TOKENS)
        return lq_fail(LQ_ERR_ARG, "%s: vocab_size %d is out of range (BOS is 1, EOS is 2)", path,
                       vocab_size);
    const unsigned char *data = bytes;
    lq_status st = LQ_OK;
    const char **tokens = calloc((size_t)vocab_size, sizeof *tokens);
    size_t *lens = calloc((size_t)vocab_size, sizeof *lens);
    float *scores = calloc((size_t)vocab_size, sizeof *scores);
    int *types = calloc((size_t)vocab_size, sizeof *types);
    if (!tokens || !lens || !scores || !types) {
        st = lq_fail(LQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int32_t max_len;
    if (size < 4) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: file has %zu bytes, too short for a llama2.c tokenizer",
                     path, size);
        goto done;
    }
    memcpy(&max_len, data, 4);
    if (max_len < 1 || max_len > MAX_TOKEN_BYTES) {
        st = lq_fail(LQ_ERR_FORMAT, "%s: max_token_length = %d is out of range (not a llama2.c "
                     "tokenizer?)", path, max_len);
        goto done;
    }
    size_t off = 4;
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        if (size - off < 8) {
            st = lq_fail(LQ_ERR_FORMAT,
                         "%s: truncated at token %d of %d (offset %zu of %zu bytes); is it the "
                         "tokenizer for a %d-token model?",
                         path, i, vocab_size, off, size, vocab_size);
            goto done;
        }
        memcpy(&scores[i], data + off, 4);
        memcpy(&len, data + off + 4, 4);
        off += 8;
        if (len < 0 || len > max_len) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: token %d has length %d, outside [0, max_token_length "
                         "= %d]", path, i, len, max_len);
            goto done;
        }
        if (size - off < (size_t)len) {
            st = lq_fail(LQ_ERR_FORMAT, "%s: truncated at token %d of %d (inside its %d bytes)",
                         path, i, vocab_size, len);
            goto done;
        }
        tokens[i] = (const char *)data + off;
        lens[i] = (size_t)len;
        off += (size_t)len;
        int b = byte_piece_value(tokens[i], lens[i]);
        types[i] = b >= 0 ? LQ_TOKEN_BYTE : LQ_TOKEN_NORMAL;
    }
    if (off != size) {
        /* a larger vocabulary's tokenizer (tokenizer.bin's 32000 with a 512-token model) would
         * otherwise load its first tokens and encode everything wrongly */
        st = lq_fail(LQ_ERR_FORMAT,
                     "%s: %zu bytes follow the %d tokens the checkpoint declares; this tokenizer "
                     "belongs to a larger vocabulary",
                     path, size - off, vocab_size);
        goto done;
    }
    /* run.c's conventions: 0 is <unk>, 1 BOS, 2 EOS */
    types[0] = LQ_TOKEN_UNKNOWN;
    types[1] = LQ_TOKEN_CONTROL;
    types[2] = LQ_TOKEN_CONTROL;
    build_args a = {
        .kind = LQ_TOKENIZER_SPM, .n = vocab_size, .tokens = tokens, .lens = lens,
        .scores = scores, .types = types, .bos = 1, .eos = 2, .unk = 0, .add_bos = 1,
        .add_space_prefix = 1, .what = path,
    };
    st = build(&a, out);
done:
    free(tokens);
    free(lens);
    free(scores);
    free(types);
    return st;
}

/* ---- encoding ------------------------------------------------------------------------------ */
typedef struct {
    int *ids;
    size_t n, cap;
} id_list;

static lq_status push_id(id_list *l, int id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int *ids = realloc(l->ids, cap * sizeof *ids);
        if (!ids) return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        l->ids = ids;
        l->cap = cap;
    }
    l->ids[l->n++] = id;
    return LQ_OK;
}

typedef struct {
    size_t start, len;  /* bytes of the prepared text */
    int id;
    int prev, next;     /* neighbours in the live list, −1 at the ends */
    int mergeable;      /* byte-fallback tokens never merge (their pieces are "<0xAB>" strings) */
} symbol;

typedef struct {
    float score;
    int left, right;
    size_t left_len, right_len; /* the lengths when queued: a later merge invalidates the pair */
    int id;
} pair;

typedef struct {
    pair *a;
    size_t n, cap;
} pair_heap;

/* heap order: higher score first, then the leftmost pair, exactly run.c's choice */
static int pair_before(const pair *x, const pair *y) {
    if (x->score != y->score) return x->score > y->score;
    return x->left < y->left;
}

static lq_status heap_push(pair_heap *h, pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        pair *a = realloc(h->a, cap * sizeof *a);
        if (!a) return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory");
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = p;
    return LQ_OK;
}

static pair heap_pop(pair_heap *h) {
    pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

static lq_status queue_pair(const lq_tokenizer *t, const char *text, const symbol *s, int left,
                            pair_heap *h) {
    if (left < 0) return LQ_OK;
    int right = s[left].next;
    if (right < 0 || !s[left].mergeable || !s[right].mergeable) return LQ_OK;
    /* live neighbours are adjacent spans of the text, so their concatenation is contiguous */
    int id = lq_tokenizer_lookup(t, text + s[left].start, s[left].len + s[right].len);
    if (id < 0) return LQ_OK;
    pair p = {t->scores[id], left, right, s[left].len, s[right].len, id};
    return heap_push(h, p);
}

/* Encodes one stretch of text (no special tokens in it) with the SentencePiece BPE. */
static lq_status spm_encode_fragment(const lq_tokenizer *t, const char *raw, size_t raw_len,
                                     int add_prefix, id_list *out) {
    if (raw_len == 0) return LQ_OK; /* run.c adds the dummy prefix only to non-empty text */
    int metaspace = strcmp(t->pre, SPM_METASPACE) == 0;
    const char *space = metaspace ? METASPACE : " ";
    size_t space_len = metaspace ? METASPACE_LEN : 1;

    /* the prepared text: prefix, and spaces escaped when the vocabulary spells them "▁" */
    size_t n_spaces = 0;
    if (metaspace)
        for (size_t i = 0; i < raw_len; i++) n_spaces += raw[i] == ' ';
    size_t len = raw_len + (add_prefix ? space_len : 0) + n_spaces * (space_len - 1);
    char *text = malloc(len);
    symbol *s = malloc(len * sizeof *s); /* at most one symbol per byte */
    pair_heap h = {0};
    lq_status st = LQ_OK;
    if (!text || !s) {
        st = lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", raw_len);
        goto done;
    }
    size_t p = 0;
    if (add_prefix) memcpy(text, space, space_len), p = space_len;
    for (size_t i = 0; i < raw_len; i++) {
        if (metaspace && raw[i] == ' ')
            memcpy(text + p, METASPACE, METASPACE_LEN), p += METASPACE_LEN;
        else
            text[p++] = raw[i];
    }

    /* code points: a lead byte starts one, continuation bytes extend it up to 4 bytes (run.c's
     * rule, which also copes with malformed UTF-8 by cutting it into short pieces) */
    int n_sym = 0;
    for (size_t i = 0; i < len;) {
        size_t cp = 1;
        while (i + cp < len && cp < 4 && ((unsigned char)text[i + cp] & 0xC0) == 0x80) cp++;
        int id = lq_tokenizer_lookup(t, text + i, cp);
        if (id >= 0) {
            s[n_sym] = (symbol){i, cp, id, n_sym - 1, n_sym + 1, 1};
            n_sym++;
        } else {
            for (size_t b = 0; b < cp; b++) {
                unsigned char byte = (unsigned char)text[i + b];
                int bid = t->byte_token[byte] >= 0 ? t->byte_token[byte] : t->unk_id;
                if (bid < 0) {
                    st = lq_fail(LQ_ERR_UNSUPPORTED,
                                 "tokenizer: byte 0x%02X of the text has no token (no <0x%02X> "
                                 "piece and no <unk>)",
                                 byte, byte);
                    goto done;
                }
                s[n_sym] = (symbol){i + b, 1, bid, n_sym - 1, n_sym + 1, 0};
                n_sym++;
            }
        }
        i += cp;
    }
    s[n_sym - 1].next = -1;

    for (int i = 0; i + 1 < n_sym; i++)
        if ((st = queue_pair(t, text, s, i, &h)) != LQ_OK) goto done;
    while (h.n > 0) {
        pair q = heap_pop(&h);
        symbol *l = &s[q.left], *r = &s[q.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (l->len != q.left_len || r->len != q.right_len || l->next != q.right) continue;
        l->len += r->len;
        l->id = q.id;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = q.left;
        r->len = 0; /* dead: no queued pair can match its length again */
        r->next = -1;
        if ((st = queue_pair(t, text, s, l->prev, &h)) != LQ_OK) goto done;
        if ((st = queue_pair(t, text, s, q.left, &h)) != LQ_OK) goto done;
    }
    for (int i = 0; i >= 0; i = s[i].next)
        if ((st = push_id(out, s[i].id)) != LQ_OK) goto done;
done:
    free(text);
    free(s);
    free(h.a);
    return st;
}

/* The special token starting at text[i], or −1. USER_DEFINED pieces are always matched (they
 * are vocabulary words the normal algorithm cannot produce, llama.cpp and Hugging Face split
 * them out too); CONTROL pieces only when parse_special asks, so text that happens to contain
 * "<s>" stays text by default. */
static int special_at(const lq_tokenizer *t, const char *text, size_t len, size_t i,
                      int parse_special) {
    for (int k = 0; k < t->n_special; k++) {
        int id = t->special_ids[k];
        size_t sl = t->token_len[id];
        if (!parse_special && t->token_types[id] == LQ_TOKEN_CONTROL) continue;
        if (sl <= len - i && text[i] == t->tokens[id][0] && memcmp(text + i, t->tokens[id], sl) == 0)
            return id;
    }
    return -1;
}

static lq_status encode_fragment(const lq_tokenizer *t, const char *text, size_t len,
                                 int after_special, id_list *out) {
    if (t->kind == LQ_TOKENIZER_GPT2) {
        if (len == 0) return LQ_OK;
        return lq_bpe_encode(t, text, len, &out->ids, &out->n, &out->cap);
    }
    /* llama.cpp's rule: the dummy prefix goes before the first stretch of text and before any
     * stretch that follows a special token */
    return spm_encode_fragment(t, text, len, t->add_space_prefix && after_special, out);
}

lq_status lq_tokenizer_encode(const lq_tokenizer *t, const char *text, size_t len, int add_bos,
                              int parse_special, int **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len > 0) return lq_fail(LQ_ERR_ARG, "lq_tokenizer_encode: text is NULL");
    id_list out = {0};
    lq_status st = LQ_OK;
    if (add_bos && t->bos_id >= 0) st = push_id(&out, t->bos_id);
    size_t start = 0;
    int after_special = 1;
    if (st == LQ_OK && t->n_special > 0) {
        for (size_t i = 0; i < len && st == LQ_OK;) {
            int id = special_at(t, text, len, i, parse_special);
            if (id < 0) {
                i++;
                continue;
            }
            st = encode_fragment(t, text + start, i - start, after_special, &out);
            if (st == LQ_OK) st = push_id(&out, id);
            i += t->token_len[id];
            start = i;
            after_special = 1;
        }
    }
    if (st == LQ_OK) st = encode_fragment(t, text + start, len - start, after_special, &out);
    if (st != LQ_OK) {
        free(out.ids);
        return st;
    }
    if (!out.ids) { /* empty result: still hand back a freeable pointer */
        out.ids = malloc(sizeof(int));
        if (!out.ids) return lq_fail(LQ_ERR_NOMEM, "tokenizer: out of memory");
    }
    *ids = out.ids;
    *n_ids = out.n;
    return LQ_OK;
}

/* ---- decoding and accessors ---------------------------------------------------------------- */
int lq_tokenizer_decode(const lq_tokenizer *t, int prev, int id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_tokens) return -1;
    if (t->kind == LQ_TOKENIZER_GPT2) return lq_bpe_decode(t, id, buf, cap);
    const char *piece = t->tokens[id];
    size_t len = t->token_len[id];
    int b = byte_piece_value(piece, len);
    if (b >= 0 && t->byte_token[b] == id) {
        if (cap < 1) return 0;
        buf[0] = (char)b;
        return 1;
    }
    int metaspace = strcmp(t->pre, SPM_METASPACE) == 0;
    size_t w = 0;
    for (size_t i = 0; i < len && w < cap;) {
        if (metaspace && len - i >= METASPACE_LEN && memcmp(piece + i, METASPACE, METASPACE_LEN) == 0) {
            buf[w++] = ' ';
            i += METASPACE_LEN;
        } else {
            buf[w++] = piece[i++];
        }
    }
    /* the dummy prefix the encoder added shows as a leading space on the first word */
    if (prev >= 0 && prev == t->bos_id && t->add_space_prefix && w > 0 && buf[0] == ' ') {
        memmove(buf, buf + 1, w - 1);
        w--;
    }
    return (int)w;
}

int lq_tokenizer_vocab_size(const lq_tokenizer *t) { return t->n_tokens; }
int lq_tokenizer_bos(const lq_tokenizer *t) { return t->bos_id; }
int lq_tokenizer_eos(const lq_tokenizer *t) { return t->eos_id; }
int lq_tokenizer_add_bos(const lq_tokenizer *t) { return t->add_bos; }

const char *lq_tokenizer_token(const lq_tokenizer *t, int id) {
    return id >= 0 && id < t->n_tokens ? t->tokens[id] : NULL;
}
