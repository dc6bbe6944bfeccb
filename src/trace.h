/* trace.h: StageTrace, the per-stage recorder (design.md sections 2-4).
 *
 * The engine calls trace_wants() before copying anything, and trace_record_*
 * for each (layer, point, row) it wants. A NULL tracer means tracing is off;
 * every function accepts NULL and then does nothing. Tracing only reads the
 * values it is given: it never changes what the engine computes. */
#ifndef GRETA_TRACE_H
#define GRETA_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Trace points in forward order (design.md section 2). The layer of
 * TP_FINAL_NORM and TP_LOGITS is the number of layers (after the last). */
typedef enum {
    TP_X_IN,
    TP_ATTN_NORM,
    TP_Q,
    TP_K,
    TP_V,
    TP_Q_ROPE,
    TP_K_ROPE,
    TP_ATTN_OUT,
    TP_WO_OUT,
    TP_X_AFTER_ATTN,
    TP_FFN_NORM,
    TP_FFN_GATE,
    TP_FFN_UP,
    TP_FFN_ACT,
    TP_MLP_OUT,
    TP_X_AFTER_MLP,
    TP_FINAL_NORM,
    TP_LM_HEAD_IN, /* same values as TP_FINAL_NORM, kept as the original's name */
    TP_LOGITS,
    TP_COUNT
} trace_point;

/* Name of a point ("x_in"); and the reverse, -1 if unknown. */
const char *trace_point_name(trace_point point);
int trace_point_from_name(const char *name);

/* What the engine knows about one row of a forward call. */
typedef struct {
    bool is_prefill;      /* row of a prompt prefill (else a decode step) */
    bool is_last;         /* last row of its prefill call */
    int64_t decode_step;  /* 0 for the first decode step after a prefill; -1 in prefill */
    int64_t pos_id;       /* absolute position */
    int32_t token_id;
    int64_t token_index;  /* index of the row within its forward call */
    int64_t seq_len;      /* rows in this forward call */
    int64_t tokens_total; /* positions in the KV cache after this call */
} trace_row;

typedef struct trace trace;

/* True if the tracer records (layer, point) for this row; false for NULL.
 * The engine calls it before gathering values, so tracing off costs nothing. */
bool trace_wants(const trace *tracer, int layer, trace_point point, const trace_row *row);

/* Records one row of n values (float32 backends / the FP64 backend). */
void trace_record_f32(trace *tracer, int layer, trace_point point, const trace_row *row,
                      const float *values, int64_t n);
void trace_record_f64(trace *tracer, int layer, trace_point point, const trace_row *row,
                      const double *values, int64_t n);

#endif
