/* tokenizer.c: loading the vocabulary from GGUF metadata, special tokens,
 * the encode entry point (special-token partition, then SPM or BPE), and
 * decoding (whole sequences and the streaming detokenizer).
 * See tokenizer.h for the contract and docs/tokenizer.md for the rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "text/tokenizer_internal.h"

/* ---- small containers ---- */

bool id_list_push(id_list *list, int32_t id) {
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        int32_t *ids = realloc(list->ids, cap * sizeof *ids);
        if (!ids) return false;
        list->ids = ids;
        list->cap = cap;
    }
    list->ids[list->n++] = id;
    return true;
}

int32_t tokenizer_lookup(const tokenizer *tok, const char *text, size_t len) {
    const text_map *map = &tok->vocab;
    for (uint64_t i = hash_bytes(map->key, text, len) & map->mask;; i = (i + 1) & map->mask) {
        int32_t id = map->slots[i];
        if (id < 0) return -1;
        if (tok->length[id] == len && memcmp(tok_text(tok, id), text, len) == 0) return id;
    }
}

/* Inserts id; a later token with the same text replaces an earlier one
 * (as the HF vocabulary dict and llama.cpp do). */
static void vocab_insert(tokenizer *tok, int32_t id) {
    text_map *map = &tok->vocab;
    const char *text = tok_text(tok, id);
    size_t len = tok->length[id];
    for (uint64_t i = hash_bytes(map->key, text, len) & map->mask;; i = (i + 1) & map->mask) {
        int32_t other = map->slots[i];
        if (other < 0 || (tok->length[other] == len && memcmp(tok_text(tok, other), text, len) == 0)) {
            map->slots[i] = id;
            return;
        }
    }
}

/* ---- loading ---- */

static bool fail(char *err, size_t err_size, const char *msg) {
    snprintf(err, err_size, "%s", msg);
    return false;
}

static bool load_tokens(tokenizer *tok, const gguf_file *file, char *err, size_t err_size) {
    int64_t kv = gguf_find_key(file, "tokenizer.ggml.tokens");
    if (kv < 0) return fail(err, err_size, "missing key tokenizer.ggml.tokens");
    if (gguf_kv_type(file, (uint64_t)kv) != GGUF_ARRAY || gguf_arr_type(file, (uint64_t)kv) != GGUF_STRING)
        return fail(err, err_size, "tokenizer.ggml.tokens is not an array of strings");
    uint64_t n = gguf_arr_count(file, (uint64_t)kv);
    if (n == 0) return fail(err, err_size, "tokenizer.ggml.tokens is empty");
    if (n > (1u << 24)) return fail(err, err_size, "tokenizer.ggml.tokens has more than 16777216 entries");
    tok->n_vocab = (int32_t)n;
    uint64_t arena_size = 0;
    for (uint64_t i = 0; i < n; i++) arena_size += gguf_arr_str(file, (uint64_t)kv, i).len + 1;
    if (arena_size > UINT32_MAX) return fail(err, err_size, "tokenizer.ggml.tokens texts exceed 4 GiB");
    tok->arena = malloc(arena_size);
    tok->offset = malloc(n * sizeof *tok->offset);
    tok->length = malloc(n * sizeof *tok->length);
    tok->score = calloc(n, sizeof *tok->score);
    tok->type = malloc(n);
    tok->is_eog = calloc(n, sizeof *tok->is_eog);
    uint64_t cap = 16;
    while (cap < n * 2) cap *= 2;
    tok->vocab.slots = malloc(cap * sizeof *tok->vocab.slots);
    tok->vocab.mask = cap - 1;
    tok->vocab.key = hash_random_key();
    if (!tok->arena || !tok->offset || !tok->length || !tok->score || !tok->type || !tok->is_eog ||
        !tok->vocab.slots)
        return fail(err, err_size, "out of memory");
    for (uint64_t i = 0; i < cap; i++) tok->vocab.slots[i] = -1;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(file, (uint64_t)kv, i);
        memcpy(tok->arena + pos, s.ptr, s.len);
        tok->arena[pos + s.len] = '\0';
        tok->offset[i] = (uint32_t)pos;
        tok->length[i] = (uint32_t)s.len;
        tok->type[i] = TOKEN_TYPE_NORMAL;
        pos += s.len + 1;
    }
    for (uint64_t i = 0; i < n; i++) vocab_insert(tok, (int32_t)i);

    int64_t skv = gguf_find_key(file, "tokenizer.ggml.scores");
    if (skv >= 0) {
        gguf_type t = gguf_arr_type(file, (uint64_t)skv);
        if (gguf_kv_type(file, (uint64_t)skv) != GGUF_ARRAY || (t != GGUF_FLOAT32 && t != GGUF_FLOAT64))
            return fail(err, err_size, "tokenizer.ggml.scores is not an array of floats");
        if (gguf_arr_count(file, (uint64_t)skv) != n)
            return fail(err, err_size, "tokenizer.ggml.scores and tokenizer.ggml.tokens differ in length");
        for (uint64_t i = 0; i < n; i++) tok->score[i] = (float)gguf_arr_float(file, (uint64_t)skv, i);
    }
    int64_t tkv = gguf_find_key(file, "tokenizer.ggml.token_type");
    if (tkv >= 0) {
        gguf_type t = gguf_arr_type(file, (uint64_t)tkv);
        if (gguf_kv_type(file, (uint64_t)tkv) != GGUF_ARRAY || t == GGUF_STRING || t == GGUF_ARRAY ||
            t == GGUF_FLOAT32 || t == GGUF_FLOAT64 || t == GGUF_BOOL)
            return fail(err, err_size, "tokenizer.ggml.token_type is not an array of integers");
        if (gguf_arr_count(file, (uint64_t)tkv) != n)
            return fail(err, err_size, "tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length");
        for (uint64_t i = 0; i < n; i++) {
            int64_t v = gguf_arr_int(file, (uint64_t)tkv, i);
            if (v < TOKEN_TYPE_UNDEFINED || v > TOKEN_TYPE_BYTE) {
                snprintf(err, err_size, "tokenizer.ggml.token_type[%llu] = %lld is not a token type (0..6)",
                         (unsigned long long)i, (long long)v);
                return false;
            }
            tok->type[i] = (uint8_t)v;
        }
    }
    return true;
}

/* Reads an optional token id key; absent -> fallback. */
static bool load_id(const tokenizer *tok, const gguf_file *file, const char *key, int32_t fallback, int32_t *out,
                    char *err, size_t err_size) {
    *out = fallback;
    if (gguf_find_key(file, key) < 0) return true;
    int64_t v;
    if (!gguf_get_int(file, key, &v)) {
        snprintf(err, err_size, "%s is not an integer", key);
        return false;
    }
    if (v < 0 || v >= tok->n_vocab) {
        snprintf(err, err_size, "%s = %lld is outside the vocabulary (%d tokens)", key, (long long)v, tok->n_vocab);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

static bool load_flag(const gguf_file *file, const char *key, bool fallback, bool *out, char *err,
                      size_t err_size) {
    *out = fallback;
    if (gguf_find_key(file, key) < 0) return true;
    if (!gguf_get_bool(file, key, out)) {
        snprintf(err, err_size, "%s is not a bool", key);
        return false;
    }
    return true;
}

/* Control-token texts that end generation (as llama.cpp's EOT/EOG lists). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", /* <｜end▁of▁sentence｜> */
    "<|eom_id|>", "<|end_of_text|>", "<|return|>", "<|call|>", NULL,
};

static bool load_specials(tokenizer *tok, const gguf_file *file, char *err, size_t err_size) {
    bool spm = tok->kind == TOKENIZER_SPM;
    int32_t def_bos = spm && tok->n_vocab > 1 ? 1 : -1;
    int32_t def_eos = spm && tok->n_vocab > 2 ? 2 : -1;
    int32_t def_unk = spm ? 0 : -1;
    int32_t eom = -1;
    if (!load_id(tok, file, "tokenizer.ggml.bos_token_id", def_bos, &tok->bos, err, err_size) ||
        !load_id(tok, file, "tokenizer.ggml.eos_token_id", def_eos, &tok->eos, err, err_size) ||
        !load_id(tok, file, "tokenizer.ggml.unknown_token_id", def_unk, &tok->unk, err, err_size) ||
        !load_id(tok, file, "tokenizer.ggml.padding_token_id", -1, &tok->pad, err, err_size) ||
        !load_id(tok, file, "tokenizer.ggml.eot_token_id", -1, &tok->eot, err, err_size) ||
        !load_id(tok, file, "tokenizer.ggml.eom_token_id", -1, &eom, err, err_size))
        return false;
    if (!load_flag(file, "tokenizer.ggml.add_bos_token", spm, &tok->add_bos, err, err_size) ||
        !load_flag(file, "tokenizer.ggml.add_eos_token", false, &tok->add_eos, err, err_size) ||
        !load_flag(file, "tokenizer.ggml.add_space_prefix", spm, &tok->add_space_prefix, err, err_size))
        return false;
    if (tok->add_bos && tok->bos < 0) return fail(err, err_size, "tokenizer.ggml.add_bos_token is set but there is no BOS token");
    if (tok->add_eos && tok->eos < 0) return fail(err, err_size, "tokenizer.ggml.add_eos_token is set but there is no EOS token");

    for (int j = 0; EOG_TEXTS[j]; j++) {
        int32_t id = tokenizer_lookup(tok, EOG_TEXTS[j], strlen(EOG_TEXTS[j]));
        if (id < 0) continue;
        tok->is_eog[id] = true;
        if (tok->eot < 0 && j < 8) tok->eot = id; /* the first eight are EOT texts */
    }
    if (tok->eos >= 0) tok->is_eog[tok->eos] = true;
    if (tok->eot >= 0) tok->is_eog[tok->eot] = true;
    if (eom >= 0) tok->is_eog[eom] = true;
    return true;
}

/* Special tokens matched in text: CONTROL, UNKNOWN and USER_DEFINED. */
static bool is_special_type(uint8_t type) {
    return type == TOKEN_TYPE_CONTROL || type == TOKEN_TYPE_USER_DEFINED || type == TOKEN_TYPE_UNKNOWN;
}

/* Whether a special token of this type may match in mode (see special_mode). */
static bool special_allowed(const tokenizer *tok, int32_t id, special_mode mode) {
    bool user = tok->type[id] == TOKEN_TYPE_USER_DEFINED;
    switch (mode) {
    case SPECIAL_PARSE: return user ? tok->kind != TOKENIZER_SPM : true;
    case SPECIAL_PLAIN: return user && tok->kind != TOKENIZER_SPM;
    case SPECIAL_USER: return user;
    default: return false;
    }
}

static uint32_t trie_child(const special_trie *t, uint32_t node, unsigned char byte) {
    if (node == 0) return t->root_child[byte];
    for (uint64_t i = hash_u64(t->key, ((uint64_t)node << 8) | byte) & t->mask;; i = (i + 1) & t->mask) {
        const special_edge *e = &t->edges[i];
        if (e->parent == UINT32_MAX) return 0;
        if (e->parent == node && e->byte == byte) return e->child;
    }
}

static uint32_t trie_add_child(special_trie *t, uint32_t node, unsigned char byte) {
    uint32_t child = t->n_nodes++;
    for (int m = 0; m < SPECIAL_MODES; m++) t->ends[child][m] = -1;
    if (node == 0) {
        t->root_child[byte] = child;
        return child;
    }
    uint64_t i = hash_u64(t->key, ((uint64_t)node << 8) | byte) & t->mask;
    while (t->edges[i].parent != UINT32_MAX) i = (i + 1) & t->mask;
    t->edges[i] = (special_edge){node, child, byte};
    return child;
}

static bool build_special_index(tokenizer *tok, char *err, size_t err_size) {
    special_trie *t = &tok->specials;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < tok->n_vocab; i++) {
        if (!is_special_type(tok->type[i]) || tok->length[i] == 0) continue;
        bytes += tok->length[i];
        t->n_tokens++;
    }
    if (bytes >= UINT32_MAX / 2) return fail(err, err_size, "special tokens exceed 2 GiB of text");
    uint64_t cap = 16;
    while (cap < bytes * 2) cap *= 2;
    t->edges = malloc(cap * sizeof *t->edges);
    t->ends = malloc((bytes + 1) * sizeof *t->ends);
    if (!t->edges || !t->ends) return fail(err, err_size, "out of memory");
    for (uint64_t i = 0; i < cap; i++) t->edges[i].parent = UINT32_MAX;
    t->mask = cap - 1;
    t->key = hash_random_key();
    t->n_nodes = 1;
    for (int m = 0; m < SPECIAL_MODES; m++) t->ends[0][m] = -1;
    /* ascending ids: the lowest id wins among tokens with the same text */
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        if (!is_special_type(tok->type[id]) || tok->length[id] == 0) continue;
        const unsigned char *text = (const unsigned char *)tok_text(tok, id);
        uint32_t node = 0;
        for (uint32_t k = 0; k < tok->length[id]; k++) {
            uint32_t next = trie_child(t, node, text[k]);
            node = next ? next : trie_add_child(t, node, text[k]);
        }
        for (int m = 0; m < SPECIAL_MODES; m++)
            if (t->ends[node][m] < 0 && special_allowed(tok, id, (special_mode)m)) t->ends[node][m] = id;
    }
    return true;
}

int32_t special_longest(const tokenizer *tok, special_mode mode, const char *text, size_t len, size_t pos) {
    const special_trie *t = &tok->specials;
    int32_t best = -1;
    uint32_t node = 0;
    for (size_t i = pos; i < len; i++) {
        node = trie_child(t, node, (unsigned char)text[i]);
        if (node == 0) break;
        if (t->ends[node][mode] >= 0) best = t->ends[node][mode];
    }
    return best;
}

static void build_byte_tokens(tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tokenizer_lookup(tok, name, 6);
        if (id >= 0 && tok->type[id] != TOKEN_TYPE_BYTE) id = -1;
        if (id < 0 && b < 0x80) {
            char c = (char)b;
            id = tokenizer_lookup(tok, &c, 1);
        }
        tok->byte_token[b] = id;
    }
}

tokenizer *tokenizer_load(const gguf_file *file, char *err, size_t err_size) {
    gguf_str model;
    if (gguf_find_key(file, "tokenizer.ggml.model") < 0) {
        snprintf(err, err_size, "missing key tokenizer.ggml.model (the file has no tokenizer)");
        return NULL;
    }
    if (!gguf_get_str(file, "tokenizer.ggml.model", &model)) {
        snprintf(err, err_size, "tokenizer.ggml.model is a %s, not a string",
                 gguf_type_name(gguf_kv_type(file, (uint64_t)gguf_find_key(file, "tokenizer.ggml.model"))));
        return NULL;
    }
    tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (gguf_str_eq(model, "llama")) {
        tok->kind = TOKENIZER_SPM;
    } else if (gguf_str_eq(model, "gpt2")) {
        tok->kind = TOKENIZER_BPE;
    } else if (gguf_str_eq(model, "none")) {
        snprintf(err, err_size, "the model has no vocabulary (tokenizer.ggml.model is 'none')");
        free(tok);
        return NULL;
    } else {
        char shown[80];
        snprintf(err, err_size, "unsupported tokenizer.ggml.model '%s' (supported: llama, gpt2)",
                 escape_text(model.ptr, model.len, shown, sizeof shown));
        free(tok);
        return NULL;
    }
    if (!load_tokens(tok, file, err, err_size) || !load_specials(tok, file, err, err_size) ||
        !build_special_index(tok, err, err_size))
        goto fail;
    if (tok->kind == TOKENIZER_SPM) {
        build_byte_tokens(tok);
    } else {
        char pre[64] = "default";
        gguf_str s;
        if (gguf_find_key(file, "tokenizer.ggml.pre") >= 0) {
            if (!gguf_get_str(file, "tokenizer.ggml.pre", &s)) {
                snprintf(err, err_size, "tokenizer.ggml.pre is not a string");
                goto fail;
            }
            snprintf(pre, sizeof pre, "%.*s", (int)(s.len > 63 ? 63 : s.len), s.ptr);
            if (s.len > 63 || memchr(s.ptr, '\0', s.len)) {
                char shown[80];
                snprintf(err, err_size, "unknown tokenizer.ggml.pre '%s'", escape_text(s.ptr, s.len, shown, sizeof shown));
                goto fail;
            }
        }
        for (int b = 0; b < 256; b++) tok->byte_token[b] = -1;
        if (!pretokenizer_init(&tok->pre, pre, err, err_size) || !bpe_init(tok, file, err, err_size)) goto fail;
    }
    return tok;
fail:
    tokenizer_free(tok);
    return NULL;
}

void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    if (tok->kind == TOKENIZER_BPE) bpe_free(tok);
    free(tok->arena);
    free(tok->offset);
    free(tok->length);
    free(tok->score);
    free(tok->type);
    free(tok->is_eog);
    free(tok->vocab.slots);
    free(tok->specials.edges);
    free(tok->specials.ends);
    free(tok);
}

/* ---- accessors ---- */

tokenizer_kind tokenizer_get_kind(const tokenizer *tok) { return tok->kind; }
const char *tokenizer_pre_name(const tokenizer *tok) { return tok->kind == TOKENIZER_BPE ? tok->pre.name : ""; }
int32_t tokenizer_vocab_size(const tokenizer *tok) { return tok->n_vocab; }
int32_t tokenizer_bos(const tokenizer *tok) { return tok->bos; }
int32_t tokenizer_eos(const tokenizer *tok) { return tok->eos; }
int32_t tokenizer_eot(const tokenizer *tok) { return tok->eot; }
int32_t tokenizer_unk(const tokenizer *tok) { return tok->unk; }
int32_t tokenizer_pad(const tokenizer *tok) { return tok->pad; }
bool tokenizer_adds_bos(const tokenizer *tok) { return tok->add_bos; }
bool tokenizer_adds_eos(const tokenizer *tok) { return tok->add_eos; }

static bool in_range(const tokenizer *tok, int32_t id) { return id >= 0 && id < tok->n_vocab; }

bool tokenizer_is_end_of_generation(const tokenizer *tok, int32_t id) { return in_range(tok, id) && tok->is_eog[id]; }
const char *tokenizer_token_text(const tokenizer *tok, int32_t id) { return in_range(tok, id) ? tok_text(tok, id) : NULL; }
token_type tokenizer_token_type(const tokenizer *tok, int32_t id) {
    return in_range(tok, id) ? (token_type)tok->type[id] : TOKEN_TYPE_UNDEFINED;
}
float tokenizer_token_score(const tokenizer *tok, int32_t id) { return in_range(tok, id) ? tok->score[id] : 0.0f; }
int32_t tokenizer_find_token(const tokenizer *tok, const char *text, size_t len) { return tokenizer_lookup(tok, text, len); }

/* ---- encoding ---- */

static bool encode_fragment(const tokenizer *tok, const char *text, size_t len, bool after_special, id_list *out,
                            char *err, size_t err_size) {
    if (tok->kind == TOKENIZER_SPM)
        return spm_encode_fragment(tok, text, len, tok->add_space_prefix && after_special, out, err, err_size);
    return bpe_encode_fragment(tok, text, len, out, err, err_size);
}

bool tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t **ids, size_t *n_ids, char *err, size_t err_size) {
    *ids = NULL;
    *n_ids = 0;
    char *clean = NULL;
    size_t n_clean = 0;
    id_list out = {0};
    if (!utf8_sanitize(text ? text : "", text ? len : 0, &clean, &n_clean)) goto oom;
    if (add_special && tok->add_bos && !id_list_push(&out, tok->bos)) goto oom;
    /* SentencePiece adds its space prefix to the text at the start and after
     * each special token (llama.cpp's rule). */
    bool after_special = true;
    size_t frag_start = 0;
    for (size_t pos = 0; pos < n_clean;) {
        int32_t special = tok->specials.n_tokens
                              ? special_longest(tok, parse_special ? SPECIAL_PARSE : SPECIAL_PLAIN, clean, n_clean, pos)
                              : -1;
        if (special < 0) {
            pos++;
            continue;
        }
        if (pos > frag_start) {
            if (!encode_fragment(tok, clean + frag_start, pos - frag_start, after_special, &out, err, err_size))
                goto fail;
        }
        if (!id_list_push(&out, special)) goto oom;
        after_special = true;
        pos += tok->length[special];
        frag_start = pos;
    }
    if (n_clean > frag_start) {
        if (!encode_fragment(tok, clean + frag_start, n_clean - frag_start, after_special, &out, err, err_size))
            goto fail;
    }
    if (add_special && tok->add_eos && !id_list_push(&out, tok->eos)) goto oom;
    free(clean);
    *ids = out.ids;
    *n_ids = out.n;
    return true;
oom:
    snprintf(err, err_size, "out of memory");
fail:
    free(clean);
    free(out.ids);
    return false;
}

/* ---- decoding ---- */

/* Writes bytes into buf up to cap, counting all. */
typedef struct {
    char *buf;
    size_t cap;
    size_t n;
} byte_sink;

static void sink_put(byte_sink *s, const char *bytes, size_t len) {
    if (s->n < s->cap) {
        size_t room = s->cap - s->n;
        memcpy(s->buf + s->n, bytes, len < room ? len : room);
    }
    s->n += len;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* BPE: map each code point back to its byte (others pass unchanged). */
static void put_bytelevel(const tokenizer *tok, const char *text, size_t len, byte_sink *s) {
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = utf8_decode(u + i, len - i, &cp);
        if (n == 0) { /* not UTF-8: copy the byte */
            sink_put(s, text + i, 1);
            i++;
            continue;
        }
        if (cp < 324 && tok->cp_to_byte[cp] >= 0) {
            char b = (char)tok->cp_to_byte[cp];
            sink_put(s, &b, 1);
        } else {
            sink_put(s, text + i, (size_t)n);
        }
        i += (size_t)n;
    }
}

/* SPM: U+2581 becomes a space. */
static void put_unescaped(const char *text, size_t len, byte_sink *s) {
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
            sink_put(s, " ", 1);
            i += 3;
        } else {
            sink_put(s, text + i, 1);
            i++;
        }
    }
}

int tokenizer_token_bytes(const tokenizer *tok, int32_t id, bool render_special, char *buf, size_t cap) {
    if (!in_range(tok, id)) return -1;
    byte_sink s = {buf, cap, 0};
    const char *text = tok_text(tok, id);
    size_t len = tok->length[id];
    uint8_t type = tok->type[id];
    if (type == TOKEN_TYPE_CONTROL || type == TOKEN_TYPE_UNKNOWN) {
        if (render_special) sink_put(&s, text, len);
    } else if (tok->kind == TOKENIZER_BPE) {
        if (type == TOKEN_TYPE_USER_DEFINED) sink_put(&s, text, len);
        else put_bytelevel(tok, text, len, &s);
    } else if (type == TOKEN_TYPE_BYTE && len == 6 && memcmp(text, "<0x", 3) == 0 && text[5] == '>' &&
               hex_digit(text[3]) >= 0 && hex_digit(text[4]) >= 0) {
        char b = (char)(hex_digit(text[3]) * 16 + hex_digit(text[4]));
        sink_put(&s, &b, 1);
    } else {
        put_unescaped(text, len, &s);
    }
    return (int)s.n;
}

/* Appends the bytes of id to a growable buffer. */
static bool append_token(const tokenizer *tok, int32_t id, bool render_special, char **buf, size_t *n,
                         size_t *cap) {
    for (;;) {
        int need = tokenizer_token_bytes(tok, id, render_special, *buf + *n, *cap - *n);
        if (need < 0) return false;
        if ((size_t)need <= *cap - *n) {
            *n += (size_t)need;
            return true;
        }
        size_t new_cap = (*cap + (size_t)need) * 2;
        char *grown = realloc(*buf, new_cap);
        if (!grown) return false;
        *buf = grown;
        *cap = new_cap;
    }
}

bool tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, bool render_special, char **out,
                      size_t *out_len, char *err, size_t err_size) {
    size_t cap = 64, len = 0;
    char *buf = malloc(cap);
    if (!buf) goto oom;
    bool strip = tok->kind == TOKENIZER_SPM && tok->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        if (!in_range(tok, ids[i])) {
            snprintf(err, err_size, "token id %d is outside the vocabulary (%d tokens)", ids[i], tok->n_vocab);
            free(buf);
            return false;
        }
        size_t before = len;
        if (!append_token(tok, ids[i], render_special, &buf, &len, &cap)) goto oom;
        if (len > before && strip) {
            /* The first output of the sequence loses the space the encoder added. */
            if (buf[before] == ' ') {
                memmove(buf + before, buf + before + 1, len - before - 1);
                len--;
            }
            strip = false;
        }
    }
    if (len + 1 > cap) {
        char *grown = realloc(buf, len + 1);
        if (!grown) goto oom;
        buf = grown;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return true;
oom:
    free(buf);
    snprintf(err, err_size, "out of memory");
    return false;
}

/* ---- streaming detokenizer ---- */

struct detok_stream {
    const tokenizer *tok;
    bool render_special;
    char *pending; /* bytes not yet emitted (an incomplete UTF-8 tail) */
    size_t n_pending, cap_pending;
    char *out;
    size_t cap_out;
};

detok_stream *detok_stream_new(const tokenizer *tok, bool render_special) {
    detok_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->tok = tok;
    st->render_special = render_special;
    return st;
}

void detok_stream_free(detok_stream *st) {
    if (!st) return;
    free(st->pending);
    free(st->out);
    free(st);
}

/* Moves what is printable from pending to out; at_end: nothing more will come. */
static bool stream_drain(detok_stream *st, bool at_end, const char **out, size_t *out_len) {
    /* Each pending byte yields at most 3 output bytes (U+FFFD). */
    size_t need = st->n_pending * 3 + 1;
    if (need > st->cap_out) {
        char *grown = realloc(st->out, need);
        if (!grown) return false;
        st->out = grown;
        st->cap_out = need;
    }
    const unsigned char *p = (const unsigned char *)st->pending;
    size_t i = 0, o = 0;
    while (i < st->n_pending) {
        int subpart = 0;
        int n = utf8_valid_len(p + i, st->n_pending - i, &subpart);
        if (n > 0) {
            memcpy(st->out + o, p + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else if (subpart < 0 && !at_end) {
            break; /* incomplete: wait for the next token */
        } else {
            memcpy(st->out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += subpart < 0 ? st->n_pending - i : (size_t)subpart;
        }
    }
    memmove(st->pending, st->pending + i, st->n_pending - i);
    st->n_pending -= i;
    *out = st->out;
    *out_len = o;
    return true;
}

bool detok_stream_push(detok_stream *st, int32_t id, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (st->pending == NULL) {
        st->cap_pending = 64;
        st->pending = malloc(st->cap_pending);
        if (!st->pending) return false;
    }
    if (!append_token(st->tok, id, st->render_special, &st->pending, &st->n_pending, &st->cap_pending)) return false;
    return stream_drain(st, false, out, out_len);
}

bool detok_stream_flush(detok_stream *st, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (st->n_pending == 0) return true;
    return stream_drain(st, true, out, out_len);
}
