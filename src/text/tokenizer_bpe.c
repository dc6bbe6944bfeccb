/* tokenizer_bpe.c: byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * Each pre-tokenized piece (already byte-mapped, see pretokenize.c) starts
 * as one symbol per mapped character; then the adjacent pair with the
 * lowest merge rank (tokenizer.ggml.merges order) is merged, leftmost first
 * among equal ranks, until no pair has a rank -- the Hugging Face BPE model
 * without dropout. Pairs wait in a binary heap keyed (rank, position), so a
 * piece of n symbols costs O(n log n); ranks are found through a hash map
 * keyed by the two token ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"

#define MERGE_EMPTY UINT64_MAX

/* A strong 64-bit mixer (murmur3's finalizer) of the pair key XOR the map's
 * random seed: as unpredictable as SipHash for pairs of ids chosen by a file,
 * at a tenth of the cost in the merge loop. */
static uint64_t merge_hash(const merge_map *map, uint64_t x) {
    x ^= map->seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static const merge_slot *merge_find(const merge_map *map, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = merge_hash(map, key) & map->mask;; i = (i + 1) & map->mask) {
        const merge_slot *slot = &map->slots[i];
        if (slot->key == key) return slot;
        if (slot->key == MERGE_EMPTY) return NULL;
    }
}

/* Inserts unless the pair is already there (the first, lowest rank wins). */
static void merge_insert(merge_map *map, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = merge_hash(map, key) & map->mask;; i = (i + 1) & map->mask) {
        merge_slot *slot = &map->slots[i];
        if (slot->key == key) return;
        if (slot->key == MERGE_EMPTY) {
            slot->key = key;
            slot->rank = rank;
            slot->result = result;
            return;
        }
    }
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68
 * to 256, 257, ... in byte order. */
static void build_byte_table(tokenizer *tok) {
    uint32_t next = 256;
    for (int i = 0; i < 324; i++) tok->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        tok->byte_to_cp[b] = printable ? (uint32_t)b : next++;
        tok->cp_to_byte[tok->byte_to_cp[b]] = (int16_t)b;
    }
}

bool bpe_init(tokenizer *tok, const gguf_file *file, char *err, size_t err_size) {
    build_byte_table(tok);
    for (int b = 0; b < 256; b++) {
        char buf[4];
        int n = utf8_encode(tok->byte_to_cp[b], buf);
        tok->char_token[b] = tokenizer_lookup(tok, buf, (size_t)n);
    }
    int64_t kv = gguf_find_key(file, "tokenizer.ggml.merges");
    if (kv < 0) {
        snprintf(err, err_size, "missing key tokenizer.ggml.merges (required for tokenizer.ggml.model 'gpt2')");
        return false;
    }
    if (gguf_kv_type(file, (uint64_t)kv) != GGUF_ARRAY || gguf_arr_type(file, (uint64_t)kv) != GGUF_STRING) {
        snprintf(err, err_size, "tokenizer.ggml.merges is not an array of strings");
        return false;
    }
    uint64_t n_merges = gguf_arr_count(file, (uint64_t)kv);
    if (n_merges > INT32_MAX / 4) {
        snprintf(err, err_size, "tokenizer.ggml.merges has too many entries (%llu)", (unsigned long long)n_merges);
        return false;
    }
    uint64_t cap = 16;
    while (cap < n_merges * 2) cap *= 2;
    tok->merges.slots = malloc(cap * sizeof(merge_slot));
    if (!tok->merges.slots) {
        snprintf(err, err_size, "out of memory");
        return false;
    }
    for (uint64_t i = 0; i < cap; i++) tok->merges.slots[i].key = MERGE_EMPTY;
    tok->merges.mask = cap - 1;
    tok->merges.seed = hash_random_key().k0;

    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint64_t m = 0; m < n_merges; m++) {
        gguf_str s = gguf_arr_str(file, (uint64_t)kv, m);
        const char *space = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!space) {
            snprintf(err, err_size, "tokenizer.ggml.merges[%llu] is not two tokens separated by a space",
                     (unsigned long long)m);
            free(joined);
            return false;
        }
        size_t left_len = (size_t)(space - s.ptr);
        size_t right_len = s.len - left_len - 1;
        int32_t left = tokenizer_lookup(tok, s.ptr, left_len);
        int32_t right = tokenizer_lookup(tok, space + 1, right_len);
        if (joined_cap < s.len) {
            joined_cap = s.len * 2;
            char *grown = realloc(joined, joined_cap);
            if (!grown) {
                free(joined);
                snprintf(err, err_size, "out of memory");
                return false;
            }
            joined = grown;
        }
        memcpy(joined, s.ptr, left_len);
        memcpy(joined + left_len, space + 1, right_len);
        int32_t result = tokenizer_lookup(tok, joined, left_len + right_len);
        /* A merge whose parts or result are not tokens can never apply. */
        if (left < 0 || right < 0 || result < 0) continue;
        merge_insert(&tok->merges, left, right, (int32_t)m, result);
    }
    free(joined);
    return true;
}

void bpe_free(tokenizer *tok) {
    free(tok->merges.slots);
    tok->merges.slots = NULL;
    pretokenizer_free(&tok->pre);
}

/* ---- merging one piece ---- */

typedef struct {
    int32_t rank;
    int32_t pos;   /* index of the left symbol */
    int32_t left;  /* ids expected at pos and at its right neighbour */
    int32_t right;
    int32_t result;
} pair_entry;

typedef struct {
    int32_t *id;   /* [n] token id, -1 once merged into its left neighbour */
    int32_t *prev; /* [n] */
    int32_t *next; /* [n] */
    size_t cap;
    pair_entry *heap;
    size_t heap_n, heap_cap;
} bpe_work;

static bool pair_before(const pair_entry *a, const pair_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(bpe_work *w, pair_entry e) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
        pair_entry *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return false;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&e, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = e;
    return true;
}

static pair_entry heap_pop(bpe_work *w) {
    pair_entry top = w->heap[0];
    pair_entry last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && pair_before(&w->heap[child + 1], &w->heap[child])) child++;
        if (!pair_before(&w->heap[child], &last)) break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static bool try_pair(const tokenizer *tok, bpe_work *w, int32_t pos) {
    if (pos < 0) return true;
    int32_t right = w->next[pos];
    if (right < 0) return true;
    const merge_slot *m = merge_find(&tok->merges, w->id[pos], w->id[right]);
    if (!m) return true;
    pair_entry e = {m->rank, pos, w->id[pos], w->id[right], m->result};
    return heap_push(w, e);
}

static bool work_reserve(bpe_work *w, size_t n) {
    if (n <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *id = realloc(w->id, cap * sizeof *id);
    if (!id) return false;
    w->id = id;
    int32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (!prev) return false;
    w->prev = prev;
    int32_t *next = realloc(w->next, cap * sizeof *next);
    if (!next) return false;
    w->next = next;
    w->cap = cap;
    return true;
}

/* Code point of the (valid, at most 2-byte for mapped text) character. */
static int32_t mapped_char_token(const tokenizer *tok, const unsigned char *s, size_t avail, size_t *used) {
    uint32_t cp;
    int n = utf8_decode(s, avail, &cp);
    if (n == 0 || n > 2) { /* cannot come out of the byte-level mapping */
        *used = 1;
        return -1;
    }
    *used = (size_t)n;
    if (cp >= 324 || tok->cp_to_byte[cp] < 0) return -1;
    return tok->char_token[tok->cp_to_byte[cp]];
}

static bool bpe_piece(const tokenizer *tok, bpe_work *w, const char *text, size_t len, id_list *out, char *err,
                      size_t err_size) {
    if (tok->pre.ignore_merges) {
        int32_t whole = tokenizer_lookup(tok, text, len);
        if (whole >= 0) return id_list_push(out, whole);
    }
    if (!work_reserve(w, len)) goto oom;
    int32_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t used;
        int32_t id = mapped_char_token(tok, (const unsigned char *)text + i, len - i, &used);
        i += used;
        /* A byte whose character is not in the vocabulary (SmolLM2 lacks
         * 0x04, 0xF2, ...) is dropped, as HF's BPE without an unknown token
         * does (and transformers' GGUF loader). */
        if (id < 0) continue;
        w->id[n] = id;
        w->prev[n] = n - 1;
        w->next[n] = n + 1;
        n++;
    }
    if (n == 0) return true;
    w->next[n - 1] = -1;
    w->heap_n = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        if (!try_pair(tok, w, i)) goto oom;
    }
    while (w->heap_n > 0) {
        pair_entry e = heap_pop(w);
        int32_t right = w->next[e.pos];
        if (w->id[e.pos] != e.left || right < 0 || w->id[right] != e.right) continue; /* stale */
        w->id[e.pos] = e.result;
        w->next[e.pos] = w->next[right];
        if (w->next[right] >= 0) w->prev[w->next[right]] = e.pos;
        w->id[right] = -1;
        if (!try_pair(tok, w, w->prev[e.pos]) || !try_pair(tok, w, e.pos)) goto oom;
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) {
        if (!id_list_push(out, w->id[i])) goto oom;
    }
    return true;
oom:
    snprintf(err, err_size, "out of memory");
    return false;
}

bool bpe_encode_fragment(const tokenizer *tok, const char *text, size_t len, id_list *out, char *err,
                         size_t err_size) {
    piece_list pieces;
    if (!pretokenize(&tok->pre, tok->byte_to_cp, text, len, &pieces, err, err_size)) return false;
    bpe_work w = {0};
    bool ok = true;
    for (size_t p = 0; p < pieces.n && ok; p++) {
        ok = bpe_piece(tok, &w, pieces.text + pieces.start[p], pieces.len[p], out, err, err_size);
    }
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.heap);
    piece_list_free(&pieces);
    return ok;
}
