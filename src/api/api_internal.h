/* api_internal.h: what the handles of include/greta.h hold (shared by the
 * files of src/api/; nothing else should use it). */
#ifndef GRETA_API_INTERNAL_H
#define GRETA_API_INTERNAL_H

#include "engine/engine.h"
#include "greta.h"
#include "format/gguf.h"
#include "model/model.h"
#include "text/tokenizer.h"

#define GRETA_ERR_MAX 512

struct greta_model {
    model *m;             /* NULL when vocab_only */
    engine_model *em;     /* m's weight placements per backend; NULL when vocab_only */
    tokenizer *tok;       /* NULL when the file has no vocabulary */
    bool vocab_none;      /* tokenizer.ggml.model is "none" (a file without a vocabulary) */
    char *chat_template;  /* NULL when absent */
    char *name;
    char file_type[16];
    bool vocab_only;
};

struct greta_session {
    greta_model *model;
    engine *e;
    greta_sampler *sampler;
    greta_backend backend;
    greta_precision precision; /* f32 or q8 (never DEFAULT) */
    struct trace *owned_tracer; /* opened by greta_session_open_trace; NULL if none */
    char err[GRETA_ERR_MAX];
};

/* Sets session->err (printf-style) and returns status. */
greta_status greta_session_fail(greta_session *session, greta_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
