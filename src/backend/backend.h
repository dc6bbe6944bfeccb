/* backend.h: the math of one forward, behind a table of operations
 * (interface v2, docs/engine.md "The backend interface").
 *
 * Three objects with three lifetimes:
 *
 *   backend_model  per model and backend: the weights placed where the
 *                  kernels read them, addressed by weight id (below), never
 *                  by host pointer. cpu and ref reference the file mapping
 *                  (no copy, memory does not grow); a GPU backend uploads
 *                  once. Created once per model per backend and shared by
 *                  every session of that model; read-only afterwards, so
 *                  sessions on different threads may use it at once.
 *   backend_kv     per sequence: the K and V cache of every layer for
 *                  n_ctx positions.
 *   backend_ctx    per session (or per batch of sessions): the activation
 *                  buffers of max_rows rows, scratch, the worker threads
 *                  (cpu) or the stream (GPU). One thread at a time.
 *
 * The engine owns the order of a forward and drives a ctx: begin() loads
 * the rows' embeddings and RoPE angles, then per layer rmsnorm, matmul,
 * rope, kv_store, attend, add, swiglu on the ctx's buffers (or the fused
 * layer() when nothing inside the layer is traced), then the logits;
 * read_rows() copies results out in bulk (one call for many rows: one
 * device sync on a GPU).
 *
 * Rows of different sequences in one forward (continuous batching): the
 * rows of a forward need not belong to one sequence. kv_store and attend
 * take, per row, the sequence's cache and the row's position in it
 * (backend_kv_row); every other step is per row and does not care. The
 * engine uses this in engine_step() to evaluate one token of several
 * sessions of the same model in one forward; a server schedules its
 * sessions' prefill chunks and decode tokens the same way.
 *
 * Contract that makes prefill/decode parity and batching possible: the
 * value a backend computes for row i depends only on that row's inputs
 * and its own sequence's cache, never on n, on the other rows (of its own
 * or of other sequences), or on the number of threads.
 *
 * Errors: every operation returns a greta_status and, on failure, writes
 * one line into the caller's (err, err_size). cpu and ref steps cannot
 * fail once created; a GPU backend reports launch and copy errors. */
#ifndef GRETA_BACKEND_H
#define GRETA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"
#include "model/model.h"

/* Activation buffers of a ctx, each [max_rows][width] (width in
 * parentheses; backend_buf_width() in backend_common.h). */
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

/* Weight ids. The three model-wide weights come first, then each layer's
 * nine: backend_layer_weight(layer, kind). */
typedef int32_t backend_weight;

enum {
    WEIGHT_TOKEN_EMBD = 0,  /* matrix n_embd -> n_vocab (row t: embedding of token t) */
    WEIGHT_OUTPUT_NORM = 1, /* vector [n_embd] */
    WEIGHT_OUTPUT = 2,      /* matrix n_embd -> n_vocab (may be token_embd: tied) */
    WEIGHTS_GLOBAL = 3
};

typedef enum {
    WEIGHT_ATTN_NORM, /* vector [n_embd] */
    WEIGHT_Q,         /* matrix n_embd -> n_embd */
    WEIGHT_K,         /* matrix n_embd -> kv_dim */
    WEIGHT_V,         /* matrix n_embd -> kv_dim */
    WEIGHT_O,         /* matrix n_embd -> n_embd */
    WEIGHT_FFN_NORM,  /* vector [n_embd] */
    WEIGHT_GATE,      /* matrix n_embd -> n_ff */
    WEIGHT_UP,        /* matrix n_embd -> n_ff */
    WEIGHT_DOWN,      /* matrix n_ff -> n_embd */
    WEIGHTS_PER_LAYER
} layer_weight_kind;

static inline backend_weight backend_layer_weight(int layer, layer_weight_kind kind) {
    return WEIGHTS_GLOBAL + layer * WEIGHTS_PER_LAYER + (int)kind;
}

typedef struct {
    int32_t max_rows;    /* rows per forward */
    int32_t logits_rows; /* rows of BUF_LOGITS (1 .. max_rows) */
    int32_t max_keys;    /* longest sequence attend reads (a kv's n_ctx at most) */
    int32_t n_threads;   /* worker threads (cpu); others ignore it */
    bool q8;             /* 8-bit activations, integer dot products: cpu (cpu_q8.h), cuda's decode
                            products (cuda_matvec_q8.cu); ref ignores it */
    bool deterministic;  /* --deterministic: only batch-invariant kernels (a backend whose kernels
                            all are, as cpu and ref, ignores it; cuda: docs/cuda.md) */
} backend_ctx_config;

/* What a backend's placements hold, in bytes (backend_ops.memory). */
typedef struct {
    int64_t weights;     /* the model's placement (shared by its sessions) */
    int64_t kv;          /* this session's KV cache */
    int64_t activations; /* this session's activation buffers and scratch */
    int64_t device_used; /* the device's memory in use by anyone (total - free), 0 if not a device */
    int64_t device_total;
} backend_memory;

typedef struct backend_model backend_model;
typedef struct backend_ctx backend_ctx;
typedef struct backend_kv backend_kv;

/* Row i of a forward in its sequence: the sequence's cache and the
 * position the row occupies in it (it attends to positions 0 .. pos).
 * The caller guarantees pos < the kv's n_ctx and pos < the ctx's max_keys,
 * and that positions 0 .. pos - 1 were stored before. */
typedef struct {
    backend_kv *kv;
    int32_t pos;
} backend_kv_row;

typedef struct {
    const char *name;      /* "cpu", "ref" */
    const char *precision; /* "f32", "f64": activations, accumulation, KV cache */
    bool f64;              /* activations are double (trace records keep them) */
    bool kv_on_device;     /* the KV cache lives in device memory (the backend checks its size
                              there), not in the host's (the engine checks MemAvailable) */
    size_t activation_budget; /* bytes of activation rows per forward the engine aims for when the
                              session does not say (0: the engine's default, 64 MiB) */

    /* ---- per model ---- */
    /* Places m's weights for this backend (m outlives it). */
    greta_status (*model_new)(const model *m, backend_model **out, char *err, size_t err_size);
    void (*model_free)(backend_model *bm);

    /* ---- per session ---- */
    greta_status (*ctx_new)(backend_model *bm, const backend_ctx_config *config, backend_ctx **out, char *err,
                            size_t err_size);
    void (*ctx_free)(backend_ctx *ctx);
    /* A KV cache of n_ctx positions for every layer, values of kv_type
     * (GRETA_KV_DEFAULT: the backend's own; a type the backend does not
     * keep is GRETA_ERR_UNSUPPORTED with a line naming the ones it does).
     * Its contents start undefined: a position is read only after kv_store
     * wrote it. */
    greta_status (*kv_new)(backend_model *bm, int32_t n_ctx, greta_kv_type kv_type, backend_kv **out, char *err,
                           size_t err_size);
    void (*kv_free)(backend_kv *kv);

    /* ---- one forward of n <= max_rows rows ---- */
    /* X[i] = embedding of tokens[i]; RoPE angles of row i for position
     * pos[i] (used by rope() until the next begin). */
    greta_status (*begin)(backend_ctx *ctx, const int32_t *tokens, const int32_t *pos, int n, char *err,
                          size_t err_size);
    /* dst[i] = src[i] / sqrt(mean(src[i]^2) + eps) * weight (a vector id),
     * for n_embd-wide buffers. */
    greta_status (*rmsnorm)(backend_ctx *ctx, backend_buf dst, backend_buf src, backend_weight weight, int n,
                            char *err, size_t err_size);
    /* dst[k][i - src_row0] = W[k] . src[i] for i in [src_row0, src_row0 + n),
     * k < n_mats (at most 4 matrices that read the same input, in one pass). */
    greta_status (*matmul)(backend_ctx *ctx, int n_mats, const backend_weight *weights, const backend_buf *dst,
                           backend_buf src, int src_row0, int n, char *err, size_t err_size);
    /* Rotates the first rope_dim dims of every head of buf (Q or K), row i
     * by the angles of begin()'s pos[i]. */
    greta_status (*rope)(backend_ctx *ctx, backend_buf buf, int n, char *err, size_t err_size);
    /* Writes K[i], V[i] into layer's cache of rows[i].kv at rows[i].pos. */
    greta_status (*kv_store)(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                             size_t err_size);
    /* ATT[i] = causal attention of Q[i] over positions 0 .. rows[i].pos of
     * layer's cache of rows[i].kv (softmax(q.k / sqrt(head_dim)) . v). */
    greta_status (*attend)(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                           size_t err_size);
    /* dst[i] += src[i] (n_embd wide). */
    greta_status (*add)(backend_ctx *ctx, backend_buf dst, backend_buf src, int n, char *err, size_t err_size);
    /* GATE[i] = silu(GATE[i]) * UP[i]. */
    greta_status (*swiglu)(backend_ctx *ctx, int n, char *err, size_t err_size);
    /* Optional (NULL if absent): the whole of layer on X, bit for bit what
     * the engine's step sequence computes (docs/engine.md). The engine
     * calls it only when no trace point inside the layer is wanted, since
     * the intermediate buffers are then left undefined. */
    greta_status (*layer)(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                          size_t err_size);
    /* Copies rows [row0, row0 + n) of buf into out32 [n][width] and/or
     * out64 [n][width] (either may be NULL). */
    greta_status (*read_rows)(backend_ctx *ctx, backend_buf buf, int row0, int n, float *out32, double *out64,
                              char *err, size_t err_size);
    /* The reverse: rows [row0, row0 + n) of buf from in32 or in64 (exactly
     * one non-NULL), converted to the backend's precision. For tests and
     * tools that inject values (the fault backend of tests/support). */
    greta_status (*write_rows)(backend_ctx *ctx, backend_buf buf, int row0, int n, const float *in32,
                               const double *in64, char *err, size_t err_size);
    /* Optional (NULL if absent): what the placements of a session hold. */
    greta_status (*memory)(const backend_model *bm, const backend_ctx *ctx, const backend_kv *kv, backend_memory *out,
                           char *err, size_t err_size);
} backend_ops;

extern const backend_ops backend_cpu_ops;
extern const backend_ops backend_ref_ops;
#ifdef GRETA_CUDA
extern const backend_ops backend_cuda_ops; /* make CUDA=1: src/backend/cuda, docs/cuda.md */
#endif

#endif
