/* engine.h: a session's KV cache, positions and the one forward.
 *
 * engine_eval() appends tokens at the current position and runs them
 * through forward() in chunks of at most max_rows rows; prefill and decode
 * are the same path (design.md section 2). engine_step() evaluates one
 * token for each of several sessions of the same model and backend in ONE
 * forward, whose rows then belong to different sequences (continuous
 * batching; docs/engine.md). The engine decides the order of operations
 * and the trace points; the backend (backend.h) does the math.
 *
 * Weights are placed once per model and backend (engine_model) and shared
 * by every session of the model; each session owns its KV cache
 * (backend_kv) and its activations (backend_ctx). */
#ifndef GRETA_ENGINE_H
#define GRETA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "greta.h"
#include "model/model.h"
#include "engine/trace.h"

/* A model's placements: for each backend a session was created on, the
 * backend_model holding its weights. Thread-safe; freed after the last
 * session of the model. */
typedef struct engine_model engine_model;

/* NULL on out of memory. m is not owned and must outlive it. */
engine_model *engine_model_new(const model *m);
void engine_model_free(engine_model *em);

typedef struct {
    int32_t n_ctx;      /* KV cache positions (> 0) */
    int32_t n_threads;  /* >= 1 (cpu) */
    greta_backend backend;
    bool q8;            /* cpu: 8-bit activations (backend_config.q8) */
    greta_kv_type kv_type; /* the KV cache's values (backend kv_new) */
    bool deterministic; /* only batch-invariant kernels (backend_ctx_config.deterministic) */
    bool logits_all;    /* keep every row's logits of the last eval */
    int32_t max_rows;   /* rows per forward chunk; 0 = min(512, n_ctx), fewer when a chunk's
                           activation rows would pass 64 MiB (engine.c default_max_rows) */
} engine_config;

typedef struct engine {
    engine_model *em;      /* not owned */
    const model *m;
    const backend_ops *ops;
    backend_model *bm;     /* em's placement for ops (not owned) */
    backend_ctx *ctx;      /* activations, scratch, threads */
    backend_kv *kv;        /* this session's KV cache */
    engine_config config;
    int32_t *tokens;       /* [n_ctx] token at each cached position */
    int32_t n_pos;         /* positions in the cache */
    trace *tracer;         /* not owned; NULL = off */
    greta_abort_fn abort_fn; /* polled by engine_eval before every layer; NULL = never */
    void *abort_data;
    int64_t decode_step;   /* next decode step number; -1 before any prefill */
    /* Logits of the last eval: last row always, every row with logits_all. */
    float *logits;         /* [n_vocab] */
    double *logits64;      /* [n_vocab] */
    bool has_logits;
    float *logits_all;     /* [logits_all_rows][n_vocab] */
    double *logits_all64;
    size_t logits_all_rows;
    size_t logits_all_cap; /* rows allocated */
    /* One forward chunk this session leads, [max_rows] each: the rows may
     * belong to other sessions (engine_step). */
    int32_t *chunk_tokens;
    int32_t *chunk_pos;
    backend_kv_row *kv_rows;
    trace_row *rows;
    struct engine **owners; /* the session of each row */
    bool chunk_traced;      /* some row's session has a tracer */
    float *row32;           /* [widest row] one row read back */
    double *row64;
    float *span32;          /* [max_rows][widest layer row], allocated when first traced */
    double *span64;
} engine;

/* Creates a session of em's model. Refuses (GRETA_ERR_NO_MEMORY) a KV
 * cache larger than the memory available, before allocating it. Returns
 * NULL with a status in *status and a line in err. */
engine *engine_new(engine_model *em, const engine_config *config, greta_status *status, char *err,
                   size_t err_size);
void engine_free(engine *e);
/* What the session's backend placements hold (backend_ops.memory);
 * GRETA_ERR_UNSUPPORTED for a backend that does not say. */
greta_status engine_backend_memory(const engine *e, backend_memory *out, char *err, size_t err_size);

/* Evaluates n tokens at positions n_pos .. n_pos + n - 1. On a failure
 * found before the forward (bad token, context full, out of memory) the
 * session is unchanged; if the backend fails during the forward, or
 * abort_fn returns true before a layer (GRETA_ERR_CANCELLED), the position
 * is unchanged and the logits are cleared. */
greta_status engine_eval(engine *e, const int32_t *tokens, size_t n, char *err, size_t err_size);

/* Evaluates tokens[i] at the current position of sessions[i], for n
 * distinct sessions of the same model and backend, as the rows of one
 * forward (chunks of sessions[0]'s max_rows) run on sessions[0]'s
 * activations. Each session ends as if engine_eval(sessions[i], &tokens[i],
 * 1) had run alone, bit for bit (tested). Each session's position must be
 * below sessions[0]'s n_ctx. Checks everything before computing anything:
 * on such an error no session changes. */
greta_status engine_step(engine *const *sessions, const int32_t *tokens, size_t n, char *err, size_t err_size);

/* Forgets positions >= pos. */
greta_status engine_rewind(engine *e, int32_t pos, char *err, size_t err_size);

#endif
