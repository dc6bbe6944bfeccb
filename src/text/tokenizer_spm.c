/* tokenizer_spm.c: SentencePiece-style BPE (tokenizer.ggml.model = "llama").
 *
 * As SentencePiece's BPE model encodes (and llama.cpp's llm_tokenizer_spm):
 * spaces become U+2581 '▁' (and one '▁' is prepended when the caller asks
 * for the space prefix), the text starts as one symbol per UTF-8
 * character, and the adjacent pair whose concatenation is a vocabulary
 * token with the highest score is merged (leftmost first among equal
 * scores) until no pair forms a token. A final symbol that is not a token
 * (a character outside the vocabulary) becomes its bytes as <0xNN> tokens
 * (byte fallback), or the unknown token when the vocabulary has no byte
 * tokens. Merges only form NORMAL / USER_DEFINED / UNDEFINED tokens, never
 * control, byte, unknown or unused ones. USER_DEFINED tokens found in the
 * (escaped) text start as one symbol each, as SentencePiece does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"

typedef struct {
    size_t start; /* byte offset of the symbol's text in the escaped buffer */
    size_t len;   /* bytes; 0 once merged into the left neighbour */
    int32_t prev, next;
} spm_symbol;

typedef struct {
    float score;
    int32_t left, right;
    size_t len; /* bytes of the merged text, to detect stale entries */
} spm_bigram;

typedef struct {
    spm_bigram *items;
    size_t n, cap;
} spm_heap;

static bool bigram_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool spm_heap_push(spm_heap *h, spm_bigram e) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        spm_bigram *items = realloc(h->items, cap * sizeof *items);
        if (!items) return false;
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&e, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = e;
    return true;
}

static spm_bigram spm_heap_pop(spm_heap *h) {
    spm_bigram top = h->items[0];
    spm_bigram last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n) break;
        if (child + 1 < h->n && bigram_before(&h->items[child + 1], &h->items[child])) child++;
        if (!bigram_before(&h->items[child], &last)) break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->n > 0) h->items[i] = last;
    return top;
}

/* A token that merges may form. */
static int32_t mergeable_token(const tokenizer *tok, const char *text, size_t len) {
    int32_t id = tokenizer_lookup(tok, text, len);
    if (id < 0) return -1;
    uint8_t type = tok->type[id];
    if (type == TOKEN_TYPE_NORMAL || type == TOKEN_TYPE_USER_DEFINED || type == TOKEN_TYPE_UNDEFINED) return id;
    return -1;
}

static bool try_bigram(const tokenizer *tok, const char *buf, const spm_symbol *sym, spm_heap *heap, int32_t left,
                       int32_t right) {
    if (left < 0 || right < 0) return true;
    size_t len = sym[left].len + sym[right].len;
    int32_t id = mergeable_token(tok, buf + sym[left].start, len);
    if (id < 0) return true;
    spm_bigram e = {tok->score[id], left, right, len};
    return spm_heap_push(heap, e);
}

/* Emits the token of one final symbol, or its bytes. */
static bool emit_symbol(const tokenizer *tok, const char *text, size_t len, id_list *out, char *err,
                        size_t err_size) {
    int32_t id = mergeable_token(tok, text, len);
    if (id >= 0 && id_list_push(out, id)) return true;
    if (id >= 0) goto oom;
    for (size_t i = 0; i < len; i++) {
        int32_t byte_id = tok->byte_token[(unsigned char)text[i]];
        if (byte_id < 0) {
            /* No byte fallback: one unknown token for the whole character. */
            if (tok->unk < 0) {
                snprintf(err, err_size, "the vocabulary has no token for a character and no unknown token");
                return false;
            }
            if (!id_list_push(out, tok->unk)) goto oom;
            return true;
        }
        if (!id_list_push(out, byte_id)) goto oom;
    }
    return true;
oom:
    snprintf(err, err_size, "out of memory");
    return false;
}

static size_t char_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

/* Length of the longest USER_DEFINED token at buf[pos] (0 if none): such
 * a token starts as one symbol, as SentencePiece's prefix matcher does. */
static size_t user_defined_at(const tokenizer *tok, const char *buf, size_t len, size_t pos) {
    int32_t id = tok->specials.n_tokens ? special_longest(tok, SPECIAL_USER, buf, len, pos) : -1;
    return id < 0 ? 0 : tok->length[id];
}

bool spm_encode_fragment(const tokenizer *tok, const char *text, size_t len, bool space_prefix, id_list *out,
                         char *err, size_t err_size) {
    static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 */
    bool ok = false;
    spm_heap heap = {0};
    spm_symbol *sym = NULL;
    char *buf = NULL;
    /* Escape: every ' ' becomes 3 bytes. */
    if (len > (SIZE_MAX - 3) / 3) goto oom;
    buf = malloc(len * 3 + 4);
    if (!buf) goto oom;
    size_t n_buf = 0;
    if (space_prefix) {
        memcpy(buf, SPACE_MARK, 3);
        n_buf = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n_buf, SPACE_MARK, 3);
            n_buf += 3;
        } else {
            buf[n_buf++] = text[i];
        }
    }
    if (n_buf == 0) {
        free(buf);
        return true;
    }
    sym = malloc(n_buf * sizeof *sym);
    if (!sym) goto oom;
    int32_t n_sym = 0;
    for (size_t i = 0; i < n_buf;) {
        size_t n = user_defined_at(tok, buf, n_buf, i);
        if (n == 0) n = char_len((unsigned char)buf[i]);
        if (n > n_buf - i) n = n_buf - i;
        sym[n_sym] = (spm_symbol){i, n, n_sym - 1, n_sym + 1};
        n_sym++;
        i += n;
    }
    sym[n_sym - 1].next = -1;
    for (int32_t i = 1; i < n_sym; i++) {
        if (!try_bigram(tok, buf, sym, &heap, i - 1, i)) goto oom;
    }
    while (heap.n > 0) {
        spm_bigram e = spm_heap_pop(&heap);
        spm_symbol *l = &sym[e.left], *r = &sym[e.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != e.len) continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = e.left;
        if (!try_bigram(tok, buf, sym, &heap, l->prev, e.left)) goto oom;
        if (!try_bigram(tok, buf, sym, &heap, e.left, l->next)) goto oom;
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (!emit_symbol(tok, buf + sym[i].start, sym[i].len, out, err, err_size)) goto done;
    }
    ok = true;
    goto done;
oom:
    snprintf(err, err_size, "out of memory");
done:
    free(heap.items);
    free(sym);
    free(buf);
    return ok;
}
