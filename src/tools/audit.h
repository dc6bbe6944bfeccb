/* audit.h: the paired experiments of `greta audit` (design.md sections
 * 3-5, docs/trace.md "Audits"). Each runs sessions of the engine with
 * in-memory tracers and compares the records with trace_diff, so a failure
 * names the first divergence (layer, point, pos_id) in forward order.
 *
 *   parity       the prompt prefilled whole vs prefilled without its last
 *                token, then that token decoded at the same position; and
 *                token-by-token decoding of the whole prompt vs one prefill
 *                (every position compared). Exact by default.
 *   backends     every point on backend A vs backend B (reference), with
 *                the error growth per layer. Default tolerance rel 1e-4;
 *                when a side is a cpu session at q8 (the default precision)
 *                the per-point bounds of audit_q8_bound (docs/engine.md,
 *                "Precision q8", error bounds).
 *   determinism  the same run twice; and with n_threads vs n_threads_alt.
 *                Exact by default.
 *   neutrality   tracing on (every point, whole rows) vs off: the logits of
 *                every prompt row and of n_decode greedy steps bitwise equal. */
#ifndef GRETA_AUDIT_H
#define GRETA_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "greta.h"
#include "engine/trace.h"
#include "tools/trace_diff.h"

typedef enum { AUDIT_PARITY, AUDIT_BACKENDS, AUDIT_DETERMINISM, AUDIT_NEUTRALITY } audit_kind;

/* Parses "parity", "backends", "determinism", "neutrality"; -1 if unknown. */
int audit_kind_from_name(const char *name);
const char *audit_kind_name(audit_kind kind);

typedef struct {
    greta_backend backend;        /* parity, determinism, neutrality (default cpu) */
    greta_backend backend_a;      /* backends: A (default cpu) */
    greta_backend backend_b;      /* backends: B, the reference (default ref) */
    int n_threads;                /* default 2 */
    int n_threads_alt;            /* determinism: the other thread count (default 1) */
    int n_decode;                 /* neutrality: greedy decode steps (default 4) */
    greta_precision precision;    /* of every cpu session (default: the backend's, q8 on cpu) */
    greta_kv_type kv_type;        /* of every cuda session's KV cache (default: the backend's) */
    bool deterministic;           /* every session: batch-invariant kernels only */
    bool tolerance_set;           /* tolerance below given (else the audit's default) */
    trace_diff_options tolerance;
    char layers[TRACE_SPEC_MAX];  /* what to trace (default all) */
    char points[TRACE_SPEC_MAX];
    FILE *report;                 /* tables and per-experiment lines (NULL = quiet) */
    bool full_tables;             /* print the layer x point table of each comparison */
} audit_options;

void audit_options_init(audit_options *options);

typedef struct {
    bool pass;
    int experiments;              /* comparisons run */
    char failed_experiment[128];  /* "" if pass */
    bool has_divergence;          /* first_* below are set */
    int first_layer;
    int first_point;              /* trace_point */
    int64_t first_pos_id;
    char verdict[1024];           /* one line: PASS / FAIL with the first divergence */
} audit_result;

/* Runs one audit of model m on the prompt ids[0..n_ids). Returns 0 when the
 * audit ran (result->pass says how it went), -1 with a message in err when
 * it could not run (bad options, too short a prompt, out of memory). */
int audit_run(audit_kind kind, greta_model *m, const char *model_path, const int32_t *ids, size_t n_ids,
              const audit_options *options, audit_result *result, char *err, size_t err_size);

/* One session run: the prompt evaluated in chunks (sizes sum to n_ids),
 * then n_decode greedy steps, with an optional tracer attached. logits, if
 * not NULL, receives a malloc'ed [n_ids + n_decode][n_vocab] copy of every
 * row's float32 logits (and logits64 the float64 ones). Returns 0 or -1 with
 * err. Used by the audits and by `greta trace record`. */
typedef struct {
    greta_backend backend;
    int n_threads;
    const size_t *chunks;   /* NULL = one prefill of all n_ids */
    size_t n_chunks;
    int n_decode;
    trace *tracer;          /* NULL = tracing off */
    greta_precision precision; /* of a cpu session (default: the backend's) */
    greta_kv_type kv_type;     /* of a cuda session's KV cache (default: the backend's) */
    bool deterministic;        /* batch-invariant kernels only */
} audit_session_spec;

/* What a session of backend at precision computes in, as trace headers and
 * reports name it: "q8" for a cpu session at q8 (DEFAULT resolved by
 * greta_backend_default_precision), else the registry's "f32" / "f64". */
const char *audit_precision_label(greta_backend backend, greta_precision precision);

/* The documented bound of precision q8 against the float64 ref backend at one
 * trace point: the largest relative row error ||a - b|| / ||b|| a row of that
 * point may have (docs/engine.md, "Precision q8": about 1.5 times the largest
 * measured on nine prompts of the default model, chat and plain). */
double audit_q8_bound(trace_point point);

int audit_run_session(greta_model *m, const int32_t *ids, size_t n_ids, const audit_session_spec *spec,
                      float **logits, double **logits64, int32_t *decoded, char *err, size_t err_size);

/* The token ids of a prompt: plain text (with the model's BOS rule), or with
 * chat, the model's chat template over [system,] user = text with the
 * generation prompt. *ids is malloc'ed (greta_free). 0 or -1 with err. */
int audit_prompt_ids(greta_model *m, const char *text, bool chat, const char *system, int32_t **ids,
                     size_t *n_ids, char *err, size_t err_size);

#endif
