/* engine.h: a session's KV cache, positions and the one forward.
 *
 * engine_eval() appends tokens at the current position and runs them
 * through forward() in chunks of at most max_rows rows; prefill and decode
 * are the same path (design.md section 2). The engine decides the order of
 * operations and the trace points; the backend (backend.h) does the math. */
#ifndef GRETA_ENGINE_H
#define GRETA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "greta.h"
#include "model/model.h"
#include "engine/trace.h"

typedef struct {
    int32_t n_ctx;      /* KV cache positions (> 0) */
    int32_t n_threads;  /* >= 1 (cpu) */
    greta_backend backend;
    bool logits_all;    /* keep every row's logits of the last eval */
    int32_t max_rows;   /* rows per forward chunk; 0 = min(512, n_ctx) */
} engine_config;

typedef struct {
    const model *m;
    const backend_ops *ops;
    backend *be;
    engine_config config;
    int32_t *tokens;       /* [n_ctx] token at each cached position */
    int32_t n_pos;         /* positions in the cache */
    trace *tracer;         /* not owned; NULL = off */
    int64_t decode_step;   /* next decode step number; -1 before any prefill */
    /* Logits of the last eval: last row always, every row with logits_all. */
    float *logits;         /* [n_vocab] */
    double *logits64;      /* [n_vocab] */
    bool has_logits;
    float *logits_all;     /* [logits_all_rows][n_vocab] */
    double *logits_all64;
    size_t logits_all_rows;
    size_t logits_all_cap; /* rows allocated */
    /* Scratch for one forward chunk. */
    int32_t *chunk_pos;    /* [max_rows] */
    float *row32;          /* [widest row] one row read back for the tracer */
    double *row64;         /* [widest row] */
} engine;

/* Creates a session for m (not owned). Returns NULL with a status in *status
 * and a line in err. */
engine *engine_new(const model *m, const engine_config *config, greta_status *status, char *err,
                   size_t err_size);
void engine_free(engine *e);

/* Evaluates n tokens at positions n_pos .. n_pos + n - 1. On failure the
 * session is unchanged and err says why. */
greta_status engine_eval(engine *e, const int32_t *tokens, size_t n, char *err, size_t err_size);

/* Forgets positions >= pos. */
greta_status engine_rewind(engine *e, int32_t pos, char *err, size_t err_size);

#endif
