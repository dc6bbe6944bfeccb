/* engine.c: weight placements, session state and the one forward (see
 * engine.h). */
#include "engine/engine.h"
#include "backend/backend_common.h"
#include "backend/backend_registry.h"
#include "base/errors.h"
#include "base/sysmem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ROWS 512
#define MAX_PLACEMENTS 8
#define ACTIVATION_BUDGET ((size_t)64 << 20) /* bytes of activation rows per chunk, by default */

/* Rows per forward chunk: 512, fewer when the activation rows of a chunk
 * (x, xn, q, att, proj, k, v, gate, up) would pass ACTIVATION_BUDGET, so a
 * file with n_ff = 2^20 does not make a session reserve gigabytes. */
static int32_t default_max_rows(const model_hparams *hp, size_t budget) {
    size_t row_bytes = sizeof(float) * (5 * (size_t)hp->n_embd + 2 * (size_t)hp->kv_dim + 2 * (size_t)hp->n_ff);
    size_t rows = (budget ? budget : ACTIVATION_BUDGET) / row_bytes;
    if (rows > DEFAULT_MAX_ROWS) rows = DEFAULT_MAX_ROWS;
    return rows < 1 ? 1 : (int32_t)rows;
}

/* ---- placements: weights once per model per backend ---- */

struct engine_model {
    const model *m;
    pthread_mutex_t lock;
    int n_placed;
    const backend_ops *ops[MAX_PLACEMENTS];
    backend_model *placed[MAX_PLACEMENTS];
};

engine_model *engine_model_new(const model *m) {
    engine_model *em = calloc(1, sizeof *em);
    if (!em) return NULL;
    em->m = m;
    if (pthread_mutex_init(&em->lock, NULL) != 0) {
        free(em);
        return NULL;
    }
    return em;
}

void engine_model_free(engine_model *em) {
    if (!em) return;
    for (int i = 0; i < em->n_placed; i++) em->ops[i]->model_free(em->placed[i]);
    pthread_mutex_destroy(&em->lock);
    free(em);
}

/* The placement of em's weights for ops, created on first use. */
static greta_status place_weights(engine_model *em, const backend_ops *ops, backend_model **out, char *err,
                                  size_t err_size) {
    greta_status st = GRETA_OK;
    *out = NULL;
    pthread_mutex_lock(&em->lock);
    for (int i = 0; i < em->n_placed; i++)
        if (em->ops[i] == ops) *out = em->placed[i];
    if (!*out) {
        if (em->n_placed == MAX_PLACEMENTS) {
            format_error(err, err_size, "backend %s: too many backends for one model", ops->name);
            st = GRETA_ERR_INTERNAL;
        } else {
            st = ops->model_new(em->m, out, err, err_size);
            if (st == GRETA_OK) {
                em->ops[em->n_placed] = ops;
                em->placed[em->n_placed] = *out;
                em->n_placed++;
            }
        }
    }
    pthread_mutex_unlock(&em->lock);
    return st;
}

/* ---- sessions ---- */

/* Refuses a KV cache (K and V, every layer, n_ctx positions, in the
 * backend's precision) that the machine cannot hold, before allocating it. */
static bool kv_cache_fits(const model *m, const engine_config *config, bool f64, char *err, size_t err_size) {
    double bytes = 2.0 * m->hp.n_layer * (double)config->n_ctx * m->hp.kv_dim * (f64 ? 8.0 : 4.0);
    uint64_t available = 0;
    const char *source = NULL;
    if (!sysmem_available(&available, &source) || bytes <= (double)available) return true;
    format_error(err, err_size,
                 "the KV cache of %d positions needs %.2f GiB but only %.2f GiB of memory is available (%s); ask for "
                 "a smaller context",
                 config->n_ctx, bytes / 1073741824.0, (double)available / 1073741824.0, source);
    return false;
}

/* The backend's operations for config->backend, or a status and a line. */
static greta_status find_backend(const engine_config *config, const backend_ops **ops, char *err,
                                 size_t err_size) {
    const backend_entry *entry = backend_registry_find(config->backend);
    if (!entry) {
        format_error(err, err_size, "unknown backend id %d", (int)config->backend);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    *ops = backend_registry_ops(entry);
    if (!*ops) {
        format_error(err, err_size, "backend %s: %s", entry->name, entry->unavailable);
        return GRETA_ERR_UNSUPPORTED;
    }
    return GRETA_OK;
}

/* Widest row of any buffer (the logits, in practice). */
static int64_t widest_row(const model_hparams *hp) {
    int64_t w = hp->n_vocab;
    if (hp->n_embd > w) w = hp->n_embd;
    if (hp->n_ff > w) w = hp->n_ff;
    return w;
}

/* Widest row of the buffers inside a layer (the trace span scratch). */
static int64_t widest_layer_row(const model_hparams *hp) {
    int64_t w = hp->n_embd > hp->kv_dim ? hp->n_embd : hp->kv_dim;
    return hp->n_ff > w ? hp->n_ff : w;
}

engine *engine_new(engine_model *em, const engine_config *config, greta_status *status, char *err,
                   size_t err_size) {
    const backend_ops *ops = NULL;
    *status = find_backend(config, &ops, err, err_size);
    if (*status != GRETA_OK) return NULL;
    if (config->n_ctx <= 0 || config->n_threads <= 0 || config->max_rows < 0) {
        *status = GRETA_ERR_INVALID_ARGUMENT;
        format_error(err, err_size, "invalid session sizes (n_ctx %d, threads %d)", config->n_ctx, config->n_threads);
        return NULL;
    }
    const model *m = em->m;
    if (!ops->kv_on_device && !kv_cache_fits(m, config, ops->f64, err, err_size)) {
        *status = GRETA_ERR_NO_MEMORY;
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->em = em;
    e->m = m;
    e->ops = ops;
    e->config = *config;
    if (e->config.max_rows == 0) e->config.max_rows = default_max_rows(&m->hp, ops->activation_budget);
    if (e->config.max_rows > e->config.n_ctx) e->config.max_rows = e->config.n_ctx;
    e->decode_step = -1;
    size_t n_vocab = (size_t)m->hp.n_vocab;
    size_t max_rows = (size_t)e->config.max_rows;
    e->tokens = calloc((size_t)e->config.n_ctx, sizeof(int32_t));
    e->logits = calloc(n_vocab, sizeof(float));
    e->logits64 = calloc(n_vocab, sizeof(double));
    e->chunk_tokens = calloc(max_rows, sizeof *e->chunk_tokens);
    e->chunk_pos = calloc(max_rows, sizeof *e->chunk_pos);
    e->kv_rows = calloc(max_rows, sizeof *e->kv_rows);
    e->rows = calloc(max_rows, sizeof *e->rows);
    e->owners = calloc(max_rows, sizeof *e->owners);
    e->row32 = calloc((size_t)widest_row(&m->hp), sizeof(float));
    e->row64 = calloc((size_t)widest_row(&m->hp), sizeof(double));
    if (!e->tokens || !e->logits || !e->logits64 || !e->chunk_tokens || !e->chunk_pos || !e->kv_rows || !e->rows ||
        !e->owners || !e->row32 || !e->row64)
        goto oom;
    char berr[256] = "";
    *status = place_weights(em, ops, &e->bm, berr, sizeof berr);
    backend_ctx_config bc = {
        .max_rows = e->config.max_rows,
        .logits_rows = e->config.logits_all ? e->config.max_rows : 1,
        .max_keys = e->config.n_ctx,
        .n_threads = e->config.n_threads,
        .q8 = e->config.q8,
        .deterministic = e->config.deterministic,
    };
    if (*status == GRETA_OK) *status = ops->ctx_new(e->bm, &bc, &e->ctx, berr, sizeof berr);
    if (*status == GRETA_OK) *status = ops->kv_new(e->bm, e->config.n_ctx, e->config.kv_type, &e->kv, berr, sizeof berr);
    if (*status != GRETA_OK) {
        format_error(err, err_size, "backend %s: %s", ops->name, berr);
        engine_free(e);
        return NULL;
    }
    return e;
oom:
    *status = GRETA_ERR_NO_MEMORY;
    format_error(err, err_size, "out of memory creating a session of %d positions", config->n_ctx);
    engine_free(e);
    return NULL;
}

greta_status engine_backend_memory(const engine *e, backend_memory *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (!e->ops->memory) {
        format_error(err, err_size, "backend %s does not report its memory", e->ops->name);
        return GRETA_ERR_UNSUPPORTED;
    }
    return e->ops->memory(e->bm, e->ctx, e->kv, out, err, err_size);
}

void engine_free(engine *e) {
    if (!e) return;
    if (e->ctx) e->ops->ctx_free(e->ctx);
    if (e->kv) e->ops->kv_free(e->kv);
    free(e->tokens);
    free(e->logits);
    free(e->logits64);
    free(e->logits_all);
    free(e->logits_all64);
    free(e->chunk_tokens);
    free(e->chunk_pos);
    free(e->kv_rows);
    free(e->rows);
    free(e->owners);
    free(e->row32);
    free(e->row64);
    free(e->span32);
    free(e->span64);
    free(e);
}

/* ---- tracing inside a forward ---- */

/* True if the session of row i wants (layer, point) for it. */
static bool row_wants(const engine *lead, int i, int layer, trace_point point) {
    const engine *owner = lead->owners[i];
    return owner->tracer && trace_wants(owner->tracer, layer, point, &lead->rows[i]);
}

/* Records one row (width values at values32 or values64, whichever the
 * backend's precision uses) for row i's session. */
static void record_row(const engine *lead, int i, int layer, trace_point point, const float *values32,
                       const double *values64, int64_t width) {
    trace *tracer = lead->owners[i]->tracer;
    if (lead->ops->f64)
        trace_record_f64(tracer, layer, point, &lead->rows[i], values64, width);
    else
        trace_record_f32(tracer, layer, point, &lead->rows[i], values32, width);
}

/* Records buf at (layer, point) for every row whose session wants it:
 * one bulk read of the rows from the first to the last wanted one. */
static greta_status trace_rows(engine *lead, backend_buf buf, int layer, trace_point point, int n, char *err,
                               size_t err_size) {
    if (!lead->chunk_traced) return GRETA_OK;
    int first = -1, last = -1;
    for (int i = 0; i < n; i++) {
        if (!row_wants(lead, i, layer, point)) continue;
        if (first < 0) first = i;
        last = i;
    }
    if (first < 0) return GRETA_OK;
    int64_t width = backend_buf_width(&lead->m->hp, buf);
    size_t span = (size_t)lead->config.max_rows * (size_t)widest_layer_row(&lead->m->hp);
    if (lead->ops->f64 && !lead->span64) lead->span64 = malloc(span * sizeof(double));
    if (!lead->ops->f64 && !lead->span32) lead->span32 = malloc(span * sizeof(float));
    if (lead->ops->f64 ? !lead->span64 : !lead->span32) {
        format_error(err, err_size, "out of memory reading rows for the tracer");
        return GRETA_ERR_NO_MEMORY;
    }
    float *out32 = lead->ops->f64 ? NULL : lead->span32;
    double *out64 = lead->ops->f64 ? lead->span64 : NULL;
    greta_status st = lead->ops->read_rows(lead->ctx, buf, first, last - first + 1, out32, out64, err, err_size);
    if (st != GRETA_OK) return st;
    for (int i = first; i <= last; i++) {
        if (!row_wants(lead, i, layer, point)) continue;
        size_t off = (size_t)(i - first) * (size_t)width;
        record_row(lead, i, layer, point, out32 ? out32 + off : NULL, out64 ? out64 + off : NULL, width);
    }
    return GRETA_OK;
}

/* True if some row's session wants a trace point strictly inside layer il
 * (x_in and x_after_mlp are the layer's input and output: a fused layer
 * can still be traced there). */
static bool traced_inside(const engine *lead, int il, int n) {
    if (!lead->chunk_traced) return false;
    for (int p = TP_ATTN_NORM; p <= TP_MLP_OUT; p++)
        for (int i = 0; i < n; i++)
            if (row_wants(lead, i, il, (trace_point)p)) return true;
    return false;
}

/* ---- the forward ---- */

/* Layer il as the backend's step sequence, with its trace points. */
static greta_status layer_steps(engine *e, int il, int n, char *err, size_t err_size) {
    const backend_ops *ops = e->ops;
    backend_ctx *ctx = e->ctx;
    const backend_weight qkv[3] = {backend_layer_weight(il, WEIGHT_Q), backend_layer_weight(il, WEIGHT_K),
                                   backend_layer_weight(il, WEIGHT_V)};
    const backend_buf qkv_dst[3] = {BUF_Q, BUF_K, BUF_V};
    const backend_weight wo[1] = {backend_layer_weight(il, WEIGHT_O)};
    const backend_buf proj[1] = {BUF_PROJ};
    const backend_weight gate_up[2] = {backend_layer_weight(il, WEIGHT_GATE), backend_layer_weight(il, WEIGHT_UP)};
    const backend_buf gate_up_dst[2] = {BUF_GATE, BUF_UP};
    const backend_weight down[1] = {backend_layer_weight(il, WEIGHT_DOWN)};
    greta_status st;

    if ((st = ops->rmsnorm(ctx, BUF_XN, BUF_X, backend_layer_weight(il, WEIGHT_ATTN_NORM), n, err, err_size)) ||
        (st = trace_rows(e, BUF_XN, il, TP_ATTN_NORM, n, err, err_size)))
        return st;

    if ((st = ops->matmul(ctx, 3, qkv, qkv_dst, BUF_XN, 0, n, err, err_size)) ||
        (st = trace_rows(e, BUF_Q, il, TP_Q, n, err, err_size)) ||
        (st = trace_rows(e, BUF_K, il, TP_K, n, err, err_size)) ||
        (st = trace_rows(e, BUF_V, il, TP_V, n, err, err_size)))
        return st;

    if ((st = ops->rope(ctx, BUF_Q, n, err, err_size)) || (st = ops->rope(ctx, BUF_K, n, err, err_size)) ||
        (st = trace_rows(e, BUF_Q, il, TP_Q_ROPE, n, err, err_size)) ||
        (st = trace_rows(e, BUF_K, il, TP_K_ROPE, n, err, err_size)))
        return st;

    if ((st = ops->kv_store(ctx, il, e->kv_rows, n, err, err_size)) ||
        (st = ops->attend(ctx, il, e->kv_rows, n, err, err_size)) ||
        (st = trace_rows(e, BUF_ATT, il, TP_ATTN_OUT, n, err, err_size)))
        return st;

    if ((st = ops->matmul(ctx, 1, wo, proj, BUF_ATT, 0, n, err, err_size)) ||
        (st = trace_rows(e, BUF_PROJ, il, TP_WO_OUT, n, err, err_size)) ||
        (st = ops->add(ctx, BUF_X, BUF_PROJ, n, err, err_size)) ||
        (st = trace_rows(e, BUF_X, il, TP_X_AFTER_ATTN, n, err, err_size)))
        return st;

    if ((st = ops->rmsnorm(ctx, BUF_XN, BUF_X, backend_layer_weight(il, WEIGHT_FFN_NORM), n, err, err_size)) ||
        (st = trace_rows(e, BUF_XN, il, TP_FFN_NORM, n, err, err_size)))
        return st;

    if ((st = ops->matmul(ctx, 2, gate_up, gate_up_dst, BUF_XN, 0, n, err, err_size)) ||
        (st = trace_rows(e, BUF_GATE, il, TP_FFN_GATE, n, err, err_size)) ||
        (st = trace_rows(e, BUF_UP, il, TP_FFN_UP, n, err, err_size)) ||
        (st = ops->swiglu(ctx, n, err, err_size)) ||
        (st = trace_rows(e, BUF_GATE, il, TP_FFN_ACT, n, err, err_size)))
        return st;

    if ((st = ops->matmul(ctx, 1, down, proj, BUF_GATE, 0, n, err, err_size)) ||
        (st = trace_rows(e, BUF_PROJ, il, TP_MLP_OUT, n, err, err_size)) ||
        (st = ops->add(ctx, BUF_X, BUF_PROJ, n, err, err_size)))
        return st;
    return GRETA_OK;
}

/* Layer il: the backend's fused layer when it has one and nothing inside
 * the layer is traced, else the steps. */
static greta_status forward_layer(engine *e, int il, int n, char *err, size_t err_size) {
    greta_status st = trace_rows(e, BUF_X, il, TP_X_IN, n, err, err_size);
    if (st != GRETA_OK) return st;
    if (e->ops->layer && !traced_inside(e, il, n))
        st = e->ops->layer(e->ctx, il, e->kv_rows, n, err, err_size);
    else
        st = layer_steps(e, il, n, err, err_size);
    if (st != GRETA_OK) return st;
    return trace_rows(e, BUF_X, il, TP_X_AFTER_MLP, n, err, err_size);
}

/* True if row i of the chunk needs its logits computed. */
static bool row_needs_logits(const engine *lead, int i) {
    const engine *owner = lead->owners[i];
    if (lead->rows[i].is_last || owner->config.logits_all) return true;
    return row_wants(lead, i, lead->m->hp.n_layer, TP_LOGITS);
}

/* Stores the logits of chunk row i (BUF_LOGITS row src_row) where its
 * session keeps them, and records them if traced. */
static greta_status keep_logits(engine *lead, int src_row, int i, char *err, size_t err_size) {
    engine *owner = lead->owners[i];
    const trace_row *row = &lead->rows[i];
    size_t n_vocab = (size_t)lead->m->hp.n_vocab;
    float *out32 = lead->row32;
    double *out64 = lead->row64;
    if (owner->config.logits_all) {
        out32 = owner->logits_all + (size_t)row->token_index * n_vocab;
        out64 = owner->logits_all64 + (size_t)row->token_index * n_vocab;
    } else if (row->is_last) {
        out32 = owner->logits;
        out64 = owner->logits64;
    }
    greta_status st = lead->ops->read_rows(lead->ctx, BUF_LOGITS, src_row, 1, out32, out64, err, err_size);
    if (st != GRETA_OK) return st;
    if (owner->config.logits_all && row->is_last) {
        memcpy(owner->logits, out32, n_vocab * sizeof(float));
        memcpy(owner->logits64, out64, n_vocab * sizeof(double));
    }
    int n_layer = lead->m->hp.n_layer;
    if (row_wants(lead, i, n_layer, TP_LOGITS)) record_row(lead, i, n_layer, TP_LOGITS, out32, out64, (int64_t)n_vocab);
    return GRETA_OK;
}

/* All n rows' logits at once into lead's own logits_all (a chunk of one
 * logits_all session): one bulk read. */
static greta_status keep_logits_bulk(engine *lead, int n, char *err, size_t err_size) {
    size_t n_vocab = (size_t)lead->m->hp.n_vocab;
    size_t first = (size_t)lead->rows[0].token_index * n_vocab;
    greta_status st = lead->ops->read_rows(lead->ctx, BUF_LOGITS, 0, n, lead->logits_all + first,
                                           lead->logits_all64 + first, err, err_size);
    if (st != GRETA_OK) return st;
    int n_layer = lead->m->hp.n_layer;
    for (int i = 0; i < n; i++) {
        size_t off = first + (size_t)i * n_vocab;
        if (lead->rows[i].is_last) {
            memcpy(lead->logits, lead->logits_all + off, n_vocab * sizeof(float));
            memcpy(lead->logits64, lead->logits_all64 + off, n_vocab * sizeof(double));
        }
        if (row_wants(lead, i, n_layer, TP_LOGITS))
            record_row(lead, i, n_layer, TP_LOGITS, lead->logits_all + off, lead->logits_all64 + off,
                       (int64_t)n_vocab);
    }
    return GRETA_OK;
}

static bool chunk_is_own(const engine *lead, int n) {
    for (int i = 0; i < n; i++)
        if (lead->owners[i] != lead) return false;
    return true;
}

static greta_status forward_logits(engine *lead, int n, char *err, size_t err_size) {
    const backend_ops *ops = lead->ops;
    int n_layer = lead->m->hp.n_layer;
    const backend_weight out[1] = {WEIGHT_OUTPUT};
    const backend_buf dst[1] = {BUF_LOGITS};
    greta_status st;
    if ((st = ops->rmsnorm(lead->ctx, BUF_XN, BUF_X, WEIGHT_OUTPUT_NORM, n, err, err_size)) ||
        (st = trace_rows(lead, BUF_XN, n_layer, TP_FINAL_NORM, n, err, err_size)) ||
        (st = trace_rows(lead, BUF_XN, n_layer, TP_LM_HEAD_IN, n, err, err_size)))
        return st;
    if (lead->config.logits_all) {
        /* The logits buffer has max_rows rows: one product for the chunk. */
        if ((st = ops->matmul(lead->ctx, 1, out, dst, BUF_XN, 0, n, err, err_size))) return st;
        if (chunk_is_own(lead, n)) return keep_logits_bulk(lead, n, err, err_size);
        for (int i = 0; i < n; i++)
            if ((st = keep_logits(lead, i, i, err, err_size))) return st;
        return GRETA_OK;
    }
    /* One row at a time into the single logits row (batch-invariant
     * kernels make this identical to a batched product). */
    for (int i = 0; i < n; i++) {
        if (!row_needs_logits(lead, i)) continue;
        if ((st = ops->matmul(lead->ctx, 1, out, dst, BUF_XN, i, 1, err, err_size)) ||
            (st = keep_logits(lead, 0, i, err, err_size)))
            return st;
    }
    return GRETA_OK;
}

/* True when lead's abort callback asks to stop (engine_eval only: a step's
 * rows belong to several sessions, so engine_step is not abortable). */
static bool abort_requested(const engine *lead, bool abortable) {
    return abortable && lead->abort_fn && lead->abort_fn(lead->abort_data);
}

/* One forward of the n rows set up in lead's chunk arrays; every row's
 * cache holds the positions before it. abortable: poll lead's abort
 * callback before every layer (GRETA_ERR_CANCELLED). */
static greta_status forward(engine *lead, int n, bool abortable, char *err, size_t err_size) {
    lead->chunk_traced = false;
    for (int i = 0; i < n; i++)
        if (lead->owners[i]->tracer) lead->chunk_traced = true;
    greta_status st = lead->ops->begin(lead->ctx, lead->chunk_tokens, lead->chunk_pos, n, err, err_size);
    for (int il = 0; st == GRETA_OK && il < lead->m->hp.n_layer; il++) {
        if (abort_requested(lead, abortable)) {
            format_error(err, err_size, "evaluation aborted");
            return GRETA_ERR_CANCELLED;
        }
        st = forward_layer(lead, il, n, err, err_size);
    }
    if (st == GRETA_OK) st = forward_logits(lead, n, err, err_size);
    return st;
}

static bool ensure_logits_all(engine *e, size_t rows) {
    if (rows <= e->logits_all_cap) return true;
    size_t n_vocab = (size_t)e->m->hp.n_vocab;
    float *a = realloc(e->logits_all, rows * n_vocab * sizeof(float));
    if (!a) return false;
    e->logits_all = a;
    double *b = realloc(e->logits_all64, rows * n_vocab * sizeof(double));
    if (!b) return false;
    e->logits_all64 = b;
    e->logits_all_cap = rows;
    return true;
}

static greta_status check_token(const engine *e, int32_t token, size_t index, char *err, size_t err_size) {
    if (token >= 0 && token < e->m->hp.n_vocab) return GRETA_OK;
    format_error(err, err_size, "token id %d at index %zu is outside the vocabulary [0, %d)", token, index,
                 e->m->hp.n_vocab);
    return GRETA_ERR_INVALID_ARGUMENT;
}

/* Row i of lead's chunk: token at position pos of session owner. */
static void set_chunk_row(engine *lead, int i, engine *owner, int32_t token, int32_t pos, const trace_row *row) {
    lead->chunk_tokens[i] = token;
    lead->chunk_pos[i] = pos;
    lead->kv_rows[i] = (backend_kv_row){owner->kv, pos};
    lead->rows[i] = *row;
    lead->owners[i] = owner;
}

greta_status engine_eval(engine *e, const int32_t *tokens, size_t n, char *err, size_t err_size) {
    if (n == 0 || !tokens) {
        format_error(err, err_size, "eval of no tokens");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (n > (size_t)(e->config.n_ctx - e->n_pos)) {
        format_error(err, err_size, "%zu tokens do not fit the context: %d of %d positions are used, %d free", n,
                     e->n_pos, e->config.n_ctx, e->config.n_ctx - e->n_pos);
        return GRETA_ERR_CONTEXT_FULL;
    }
    for (size_t i = 0; i < n; i++) {
        greta_status st = check_token(e, tokens[i], i, err, err_size);
        if (st != GRETA_OK) return st;
    }
    if (e->config.logits_all && !ensure_logits_all(e, n)) {
        format_error(err, err_size, "out of memory keeping the logits of %zu rows", n);
        return GRETA_ERR_NO_MEMORY;
    }
    /* Phase: a call of several tokens (or the first call) is a prefill;
     * single tokens after it are decode steps 0, 1, ... */
    bool is_prefill = n > 1 || e->decode_step < 0;
    int64_t step = is_prefill ? -1 : e->decode_step;
    int32_t start = e->n_pos;
    for (size_t done = 0; done < n;) {
        int chunk = (int)((n - done) < (size_t)e->config.max_rows ? (n - done) : (size_t)e->config.max_rows);
        for (int i = 0; i < chunk; i++) {
            size_t idx = done + (size_t)i;
            trace_row row = {
                .is_prefill = is_prefill,
                .is_last = idx == n - 1,
                .decode_step = step,
                .pos_id = start + (int64_t)idx,
                .token_id = tokens[idx],
                .token_index = (int64_t)idx,
                .seq_len = (int64_t)n,
                .tokens_total = start + (int64_t)n,
            };
            set_chunk_row(e, i, e, tokens[idx], start + (int32_t)idx, &row);
        }
        greta_status st = forward(e, chunk, true, err, err_size);
        if (st != GRETA_OK) {
            e->has_logits = false;
            e->logits_all_rows = 0;
            return st;
        }
        done += (size_t)chunk;
    }
    memmove(e->tokens + start, tokens, n * sizeof(int32_t)); /* tokens may point into e->tokens */
    e->n_pos = start + (int32_t)n;
    e->has_logits = true;
    e->logits_all_rows = e->config.logits_all ? n : 0;
    e->decode_step = is_prefill ? 0 : e->decode_step + 1;
    return GRETA_OK;
}

/* Everything engine_step checks before computing. */
static greta_status check_step(engine *const *sessions, const int32_t *tokens, size_t n, char *err,
                               size_t err_size) {
    if (n == 0 || !sessions || !tokens) {
        format_error(err, err_size, "step of no sessions");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    const engine *lead = sessions[0];
    for (size_t i = 0; i < n; i++) {
        engine *s = sessions[i];
        if (!s || s->bm != lead->bm || s->ops != lead->ops) {
            format_error(err, err_size, "step: session %zu is not a session of the same model and backend", i);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
        if (s->config.q8 != lead->config.q8) {
            format_error(err, err_size, "step: session %zu computes at another precision than session 0", i);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
        if (s->config.kv_type != lead->config.kv_type || s->config.deterministic != lead->config.deterministic) {
            format_error(err, err_size,
                         "step: session %zu has another KV cache type or --deterministic setting than session 0", i);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
        for (size_t j = 0; j < i; j++) {
            if (sessions[j] == s) {
                format_error(err, err_size, "step: session %zu appears twice", i);
                return GRETA_ERR_INVALID_ARGUMENT;
            }
        }
        if (s->n_pos >= s->config.n_ctx) {
            format_error(err, err_size, "step: session %zu has no free position (%d of %d used)", i, s->n_pos,
                         s->config.n_ctx);
            return GRETA_ERR_CONTEXT_FULL;
        }
        if (s->n_pos >= lead->config.n_ctx) {
            format_error(err, err_size, "step: session %zu is at position %d, beyond the %d keys of session 0", i,
                         s->n_pos, lead->config.n_ctx);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
        greta_status st = check_token(s, tokens[i], i, err, err_size);
        if (st != GRETA_OK) return st;
        if (s->config.logits_all && !ensure_logits_all(s, 1)) {
            format_error(err, err_size, "out of memory keeping the logits of session %zu", i);
            return GRETA_ERR_NO_MEMORY;
        }
    }
    return GRETA_OK;
}

greta_status engine_step(engine *const *sessions, const int32_t *tokens, size_t n, char *err, size_t err_size) {
    greta_status st = check_step(sessions, tokens, n, err, err_size);
    if (st != GRETA_OK) return st;
    engine *lead = sessions[0];
    for (size_t done = 0; done < n;) {
        int chunk = (int)((n - done) < (size_t)lead->config.max_rows ? (n - done) : (size_t)lead->config.max_rows);
        for (int i = 0; i < chunk; i++) {
            engine *s = sessions[done + (size_t)i];
            bool is_prefill = s->decode_step < 0;
            trace_row row = {
                .is_prefill = is_prefill,
                .is_last = true,
                .decode_step = is_prefill ? -1 : s->decode_step,
                .pos_id = s->n_pos,
                .token_id = tokens[done + (size_t)i],
                .token_index = 0,
                .seq_len = 1,
                .tokens_total = s->n_pos + 1,
            };
            set_chunk_row(lead, i, s, tokens[done + (size_t)i], s->n_pos, &row);
        }
        st = forward(lead, chunk, false, err, err_size);
        if (st != GRETA_OK) {
            for (size_t i = 0; i < n; i++) sessions[i]->has_logits = false;
            return st;
        }
        done += (size_t)chunk;
    }
    for (size_t i = 0; i < n; i++) {
        engine *s = sessions[i];
        s->tokens[s->n_pos] = tokens[i];
        s->n_pos++;
        s->has_logits = true;
        s->logits_all_rows = s->config.logits_all ? 1 : 0;
        s->decode_step = s->decode_step < 0 ? 0 : s->decode_step + 1;
    }
    return GRETA_OK;
}

greta_status engine_rewind(engine *e, int32_t pos, char *err, size_t err_size) {
    if (pos < 0 || pos > e->n_pos) {
        format_error(err, err_size, "cannot rewind to position %d: the cache holds positions [0, %d)", pos, e->n_pos);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    e->n_pos = pos;
    e->has_logits = false;
    e->logits_all_rows = 0;
    /* The next single-token eval continues a sequence: count it as a decode
     * step only after a new prefill. */
    e->decode_step = -1;
    return GRETA_OK;
}
