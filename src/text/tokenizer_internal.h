/* tokenizer_internal.h: the tokenizer's data, shared by tokenizer.c (load,
 * special tokens, decode), tokenizer_spm.c, tokenizer_bpe.c and
 * pretokenize.c. Not part of the public API. */
#ifndef GRETA_TOKENIZER_INTERNAL_H
#define GRETA_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"
#include "base/hash.h"
#include "base/utf8.h"

/* A growable array of token ids (the encoder's output). */
typedef struct {
    int32_t *ids;
    size_t n;
    size_t cap;
} id_list;

bool id_list_push(id_list *list, int32_t id);

/* Hash map from byte string to token id (open addressing, linear probing).
 * Keys point into the tokenizer's text arena. Hashed with SipHash under a
 * random key of its own, so a vocabulary crafted to collide cannot make
 * loading quadratic (base/hash.h). */
typedef struct {
    int32_t *slots; /* [capacity], token id or -1 */
    uint64_t mask;  /* capacity - 1 (capacity a power of two) */
    hash_key key;
} text_map;

/* Hash map from a pair of token ids to a merge (BPE ranks). */
typedef struct {
    uint64_t key;   /* (left << 32) | right; UINT64_MAX when empty */
    int32_t rank;   /* position in tokenizer.ggml.merges (lower merges first) */
    int32_t result; /* id of the merged token */
} merge_slot;

typedef struct {
    merge_slot *slots; /* [capacity] */
    uint64_t mask;
    uint64_t seed;     /* random, drawn at load (tokenizer_bpe.c merge_hash) */
} merge_map;

/* One step of a pre-tokenizer (see pretokenize.c). */
typedef enum {
    PRETOK_SPLIT,     /* split off every regex match as its own piece (HF "Isolated") */
    PRETOK_BYTELEVEL, /* map bytes to GPT-2's printable code points */
} pretok_step_kind;

typedef struct {
    pretok_step_kind kind;
    void *regex; /* pcre2_code_8 * (compiled once at load, JIT if available) */
} pretok_step;

typedef struct {
    char name[64];
    pretok_step steps[8];
    int n_steps;
    bool ignore_merges; /* a piece that is itself a token is not merged (llama-bpe) */
} pretokenizer;

/* Special (control / unknown / user-defined) tokens matched in text: a
 * trie over their bytes. Finding the longest special token at a position
 * walks at most as many bytes as that token has, whatever the number of
 * special tokens (a scan over all tokens sharing the first byte took 45 s
 * for 100 KB against 100k crafted tokens). Edges (node, byte) -> child are
 * in a hash table under a random key; the root's are a direct table. */
typedef enum {
    SPECIAL_PARSE, /* tokenizer_encode with parse_special */
    SPECIAL_PLAIN, /* tokenizer_encode without parse_special (BPE user-defined tokens only) */
    SPECIAL_USER,  /* SentencePiece's user-defined pieces (tokenizer_spm.c) */
    SPECIAL_MODES,
} special_mode;

typedef struct {
    uint32_t parent; /* UINT32_MAX when the slot is empty */
    uint32_t child;
    uint8_t byte;
} special_edge;

typedef struct {
    size_t n_tokens;             /* special tokens in the trie (0: nothing to match) */
    uint32_t root_child[256];    /* node reached from the root by a byte, 0 = none */
    special_edge *edges;         /* [mask + 1] edges of the other nodes */
    uint64_t mask;
    hash_key key;
    int32_t (*ends)[SPECIAL_MODES]; /* [node] the token ending at the node, per mode; -1 none */
    uint32_t n_nodes;            /* node 0 is the root */
} special_trie;

/* The longest special token allowed in mode at text[pos], or -1. */
int32_t special_longest(const tokenizer *tok, special_mode mode, const char *text, size_t len, size_t pos);

struct tokenizer {
    tokenizer_kind kind;
    int32_t n_vocab;
    char *arena;       /* all token texts, each NUL-terminated */
    uint32_t *offset;  /* [n_vocab] start of each text in arena */
    uint32_t *length;  /* [n_vocab] bytes, excluding the NUL */
    float *score;      /* [n_vocab] */
    uint8_t *type;     /* [n_vocab] token_type */
    bool *is_eog;      /* [n_vocab] */
    text_map vocab;    /* text -> id, every token */

    int32_t bos, eos, eot, unk, pad;
    bool add_bos, add_eos, add_space_prefix;

    special_trie specials;

    /* SPM */
    int32_t byte_token[256]; /* id of <0xNN> (or the 1-char token), -1 if none */

    /* BPE */
    merge_map merges;
    pretokenizer pre;
    int32_t char_token[256];    /* id of the one-character token for mapped byte b, -1 if none */
    uint32_t byte_to_cp[256];   /* GPT-2 byte -> code point */
    int16_t cp_to_byte[324];    /* inverse for code points < 324, -1 elsewhere */
};

static inline const char *tok_text(const tokenizer *tok, int32_t id) { return tok->arena + tok->offset[id]; }

/* Lookup of a byte string in the vocabulary; -1 if absent. */
int32_t tokenizer_lookup(const tokenizer *tok, const char *text, size_t len);

/* SPM: encodes one fragment of raw text (no special tokens inside), with
 * the space prefix already decided by the caller. */
bool spm_encode_fragment(const tokenizer *tok, const char *text, size_t len, bool space_prefix,
                         id_list *out, char *err, size_t err_size);

/* BPE: builds merge ranks and byte tables at load. */
bool bpe_init(tokenizer *tok, const gguf_file *file, char *err, size_t err_size);
void bpe_free(tokenizer *tok);
bool bpe_encode_fragment(const tokenizer *tok, const char *text, size_t len, id_list *out, char *err,
                         size_t err_size);

/* Pre-tokenizers (pretokenize.c). */
bool pretokenizer_init(pretokenizer *pre, const char *name, char *err, size_t err_size);
void pretokenizer_free(pretokenizer *pre);

/* The pieces of a pre-tokenized fragment: byte ranges of `text`, which is
 * the fragment after byte-level mapping (UTF-8 of the mapped code points). */
typedef struct {
    char *text;
    size_t text_len;
    size_t *start; /* [n] */
    size_t *len;   /* [n] */
    size_t n;
    size_t cap;
} piece_list;

bool pretokenize(const pretokenizer *pre, const uint32_t byte_to_cp[256], const char *text, size_t len,
                 piece_list *out, char *err, size_t err_size);
void piece_list_free(piece_list *pieces);

#endif
