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

#include "greta.h"

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

/* ------------------------------------------------------------------ */
/* Configuration (docs/trace.md)                                        */
/* ------------------------------------------------------------------ */

#define TRACE_SPEC_MAX 1024   /* longest layers/points/phases list */
#define TRACE_PATH_MAX 4096
#define TRACE_TOPK_MAX 64
#define TRACE_DEFAULT_SAMPLE 16
#define TRACE_DEFAULT_TOPK 10

/* What to trace. Lists are kept as text here and checked twice: their
 * syntax and names when set (trace_config_set), the layer range against
 * the model in trace_open. */
typedef struct {
    bool enabled;                  /* GRETA_TRACE_STAGE=1 or --trace FILE */
    bool in_memory;                /* collect records in memory (trace_records) instead of a file */
    char out_path[TRACE_PATH_MAX]; /* JSONL output (file mode); "-" = stdout */
    char layers[TRACE_SPEC_MAX];   /* "0,1,2,15,29", ranges "0-3", or "all" */
    char points[TRACE_SPEC_MAX];   /* "x_in,attn_out,..." or "all" */
    char phases[TRACE_SPEC_MAX];   /* "prefill,prefill_last,decode0,decode,all" */
    int64_t sample;                /* values kept per row; 0 = the whole row */
    int top_k;                     /* top-k of logits records (1..TRACE_TOPK_MAX) */
    char prompt_id[256];           /* GRETA_TRACE_PROMPT_ID, copied into every record */
} trace_config;

/* Defaults: disabled, layers/points/phases "all", sample 16, top_k 10. */
void trace_config_init(trace_config *config);

/* Sets one key: "out", "layers", "points", "phases", "sample", "top_k",
 * "prompt_id" (also enables tracing for "out"). Returns 0, or -1 with a
 * one-line message in err naming the bad value (unknown point or phase,
 * malformed layer list, bad number). */
int trace_config_set(trace_config *config, const char *key, const char *value, char *err,
                     size_t err_size);

/* Reads GRETA_TRACE_STAGE, GRETA_TRACE_STAGE_OUT, _LAYERS, _POINTS, _PHASES,
 * _SAMPLE, _TOPK and GRETA_TRACE_PROMPT_ID over config. Returns 0 or -1 with a
 * message naming the variable. */
int trace_config_from_env(trace_config *config, char *err, size_t err_size);

/* Command-line flags, applied after trace_config_from_env so flags win:
 * --trace FILE, --trace-layers L, --trace-points P, --trace-phases P,
 * --trace-sample N, --trace-top-k K, --trace-prompt-id ID (also as
 * --flag=value). If argv[*i] is one of them, consumes it (and its value),
 * advances *i past it and returns 1; returns 0 if argv[*i] is not a trace
 * flag; -1 with a message on a bad or missing value. */
int trace_parse_flag(trace_config *config, int argc, char **argv, int *i, char *err,
                     size_t err_size);

/* One line per flag for --help texts. */
const char *trace_flags_help(void);

/* What the header line says about the run. Strings are copied. */
typedef struct {
    int n_layers;           /* layers of the model; final_norm/logits use layer n_layers */
    const char *backend;    /* "cpu", "ref", ... */
    const char *precision;  /* "f32", "q8" (cpu at precision q8) or "f64" (activations) */
    const char *model_path;
    const char *build;      /* NULL = trace_build_string() */
} trace_model_info;

/* "greta 0.1.0 (gcc VERSION)". */
const char *trace_build_string(void);

/* Opens a tracer for config into *out (file mode: creates out_path and
 * writes the header line). GRETA_OK with *out = NULL and err "" when config
 * is not enabled. On error *out = NULL, a message, and the status:
 * GRETA_ERR_INVALID_ARGUMENT (layer out of range, bad list, no output),
 * GRETA_ERR_IO (file not writable), GRETA_ERR_NO_MEMORY. */
greta_status trace_open(const trace_config *config, const trace_model_info *info, trace **out, char *err,
                        size_t err_size);

/* Flushes and closes the output and frees the tracer. GRETA_OK, or with a
 * message GRETA_ERR_IO if a write failed (GRETA_ERR_NO_MEMORY if an
 * in-memory tracer could not keep a record); err may be NULL. NULL is fine. */
greta_status trace_close(trace *tracer, char *err, size_t err_size);

/* ------------------------------------------------------------------ */
/* Records in memory (in-memory tracers and parsed JSONL files)         */
/* ------------------------------------------------------------------ */

/* One traced row, the fields of one JSONL line. values holds the first
 * n_values values (all n when the row was kept whole), at double precision
 * (float32 rows are promoted exactly). */
typedef struct {
    char phase[24];          /* "prefill", "prefill_last", "decode<N>" */
    int point;               /* trace_point */
    int layer;
    int64_t step;            /* decode step, -1 for prefill rows */
    int64_t pos_id;
    int32_t token_id;
    int64_t token_index;
    int64_t seq_len;
    int64_t tokens_total;
    bool is_f64;             /* dtype "f64": values at double precision */
    int64_t n;               /* row length */
    uint64_t hash;           /* FNV-1a 64 over the float32 little-endian bytes of the whole row */
    double min, max, mean, rms; /* over the finite values of the whole row (NAN if none) */
    int64_t nan, inf;
    int64_t n_values;
    double *values;
    int n_top;               /* logits only: top-k, highest first (ties: lower id first) */
    int32_t *top_ids;
    double *top_values;
} trace_record;

typedef struct {
    trace_record *records;
    size_t count, capacity;
    char model[TRACE_PATH_MAX];
    char backend[32];
    char precision[16];
    char build[128];
    char prompt_id[256];
    int n_layers;            /* -1 if unknown (no header) */
    int64_t sample;          /* -1 if unknown */
} trace_set;

void trace_set_init(trace_set *set);
void trace_set_free(trace_set *set);
/* Appends a copy of *record (values and top-k copied). 0 or -1 on OOM. */
int trace_set_add(trace_set *set, const trace_record *record);

/* The records an in-memory tracer has collected (NULL for a file tracer).
 * Valid until trace_close. */
const trace_set *trace_records(const trace *tracer);

/* Moves the records of an in-memory tracer into *out (free with
 * trace_set_free); the tracer keeps collecting into an empty set. Returns 0,
 * or -1 for a file tracer. */
int trace_take_records(trace *tracer, trace_set *out);

/* FNV-1a 64 over the float32 little-endian bytes of values[0..n). */
uint64_t trace_hash_f32(const float *values, int64_t n);

/* Phase names: prefill, prefill_last, decode<N>, decode, all. */
bool trace_phase_name_valid(const char *name);

#endif
