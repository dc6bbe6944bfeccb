/* backend.h: the math of one forward, behind a small table of operations.
 *
 * The engine (engine.c) owns the order of the forward: for each layer it
 * calls rmsnorm, matmul, rope, attention, add, swiglu on the backend's
 * activation buffers, and records trace points in between. A backend owns
 * the activation buffers, the KV cache and the kernels, at its precision
 * (cpu: float32, ref: float64). Every operation works on rows [0, n) of
 * the current forward; row i holds the token at position pos[i].
 *
 * Contract that makes prefill/decode parity possible: the value a backend
 * computes for row i depends only on that row's inputs and the KV cache,
 * never on n, on the other rows, or on the number of threads. */
#ifndef GRETA_BACKEND_H
#define GRETA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Activation buffers, each [max_rows][width] (width in parentheses). */
typedef enum {
    BUF_X,      /* residual stream (n_embd) */
    BUF_XN,     /* normed input of a projection (n_embd) */
    BUF_Q,      /* queries (n_embd) */
    BUF_K,      /* keys of the new rows (kv_dim) */
    BUF_V,      /* values of the new rows (kv_dim) */
    BUF_ATT,    /* attention output, heads concatenated (n_embd) */
    BUF_PROJ,   /* output of wo / w_down (n_embd) */
    BUF_GATE,   /* ffn gate, then silu(gate) * up (n_ff) */
    BUF_UP,     /* ffn up (n_ff) */
    BUF_LOGITS, /* logits (n_vocab), logits_rows rows */
    BUF_COUNT
} backend_buf;

typedef struct {
    int32_t n_ctx;       /* KV cache positions */
    int32_t max_rows;    /* rows per forward */
    int32_t logits_rows; /* rows of BUF_LOGITS (1 or max_rows) */
    int32_t n_threads;   /* cpu only */
} backend_config;

typedef struct backend backend;

typedef struct {
    const char *name;      /* "cpu", "ref" */
    const char *precision; /* "f32", "f64": activations and accumulation */
    bool f64;              /* activations are double (trace records keep them) */

    backend *(*create)(const model *m, const backend_config *config, char *err, size_t err_size);
    void (*destroy)(backend *be);

    /* Starts a forward of n rows: X[i] = embedding of tokens[i]; RoPE
     * angles for positions pos[i]. */
    void (*begin)(backend *be, const int32_t *tokens, const int32_t *pos, int n);
    /* dst[i] = src[i] / sqrt(mean(src[i]^2) + eps) * weight, for n_embd-wide buffers. */
    void (*rmsnorm)(backend *be, backend_buf dst, backend_buf src, const float *weight, int n);
    /* dst[k][i - src_row0] = W[k] . src[i] for i in [src_row0, src_row0 + n), k < n_mats:
     * several matrices that read the same input, in one pass over the rows. */
    void (*matmul)(backend *be, int n_mats, const model_weight *const *weights, const backend_buf *dst,
                   backend_buf src, int src_row0, int n);
    /* Rotates the first rope_dim dims of every head of buf (Q or K) at pos[i]. */
    void (*rope)(backend *be, backend_buf buf, int n);
    /* Writes K, V rows into the cache of layer at pos[i], then
     * ATT[i] = causal attention of Q[i] over cache positions [0, pos[i]]. */
    void (*attention)(backend *be, int layer, int n);
    /* dst[i] += src[i] (n_embd wide). */
    void (*add)(backend *be, backend_buf dst, backend_buf src, int n);
    /* GATE[i] = silu(GATE[i]) * UP[i]. */
    void (*swiglu)(backend *be, int n);
    /* Copies rows [row0, row0 + n) of buf into out32 [n][width] and/or
     * out64 [n][width] (either may be NULL; width as in backend_buf). The
     * engine reads logits and trace records through it. */
    void (*read_rows)(backend *be, backend_buf buf, int row0, int n, float *out32, double *out64);
} backend_ops;

extern const backend_ops backend_cpu_ops;
extern const backend_ops backend_ref_ops;

#endif
