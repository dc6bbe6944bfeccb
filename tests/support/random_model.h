/* random_model.h: small random Llama models written with greta's gguf_writer,
 * for test_model.c and test_engine.c. Weights come from a fixed-seed
 * generator, so every run writes the same bytes. */
#ifndef GRETA_TESTS_RANDOM_MODEL_H
#define GRETA_TESTS_RANDOM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int n_embd, n_head, n_head_kv, n_ff, n_layer, n_vocab, ctx;
    int rope_dim;          /* 0 = head_dim (key omitted) */
    double rope_base;      /* 0 = key omitted */
    double eps;
    double linear_factor;  /* != 1: llama.rope.scaling.type linear */
    bool tied;
    bool rope_freqs;       /* add rope_freqs.weight (llama3 scaling) */
    uint32_t type;         /* matrix type (QT_*, format/quant.h) */
    uint32_t embd_type;    /* token_embd type */
    const char *omit;      /* tensor left out */
    const char *misshape;  /* tensor written with one row too many */
    const char *extra;     /* an extra tensor the model does not know */
    const char *arch;      /* NULL = "llama" */
    int vocab_tokens;      /* > 0: a SentencePiece vocabulary of this many tokens ("t0", "t1", ...) */
    uint64_t seed;
} tm_spec;

/* A 2-layer F32 model: n_embd 64, 4 heads (2 KV), n_ff 96, vocab 50, ctx 128. */
tm_spec tm_default(void);

/* The weights' generator: xorshift64* -> roughly normal values (mean 0, sd 1). */
double tm_normal(uint64_t *state);

/* Writes the model to path; false on a writer error (printed to stderr). */
bool tm_write(const tm_spec *s, const char *path);

#endif
