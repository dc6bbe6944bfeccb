/* engine.c: session state and the one forward (see engine.h). */
#include "engine/engine.h"
#include "base/errors.h"
#include "base/faults.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ROWS 512

engine *engine_new(const model *m, const engine_config *config, greta_status *status, char *err,
                   size_t err_size) {
    *status = GRETA_OK;
    const backend_ops *ops = NULL;
    switch (config->backend) {
    case GRETA_BACKEND_CPU: ops = &backend_cpu_ops; break;
    case GRETA_BACKEND_REF: ops = &backend_ref_ops; break;
    case GRETA_BACKEND_CUDA:
        *status = GRETA_ERR_UNSUPPORTED;
        format_error(err, err_size, "backend cuda: greta was not built with CUDA");
        return NULL;
    default:
        *status = GRETA_ERR_INVALID_ARGUMENT;
        format_error(err, err_size, "unknown backend id %d", (int)config->backend);
        return NULL;
    }
    if (config->n_ctx <= 0 || config->n_threads <= 0 || config->max_rows < 0) {
        *status = GRETA_ERR_INVALID_ARGUMENT;
        format_error(err, err_size, "invalid session sizes (n_ctx %d, threads %d)", config->n_ctx, config->n_threads);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->m = m;
    e->ops = ops;
    e->config = *config;
    if (e->config.max_rows == 0) e->config.max_rows = DEFAULT_MAX_ROWS;
    if (e->config.max_rows > e->config.n_ctx) e->config.max_rows = e->config.n_ctx;
    e->decode_step = -1;
    size_t n_vocab = (size_t)m->hp.n_vocab;
    e->tokens = calloc((size_t)e->config.n_ctx, sizeof(int32_t));
    e->chunk_pos = calloc((size_t)e->config.max_rows, sizeof(int32_t));
    e->logits = calloc(n_vocab, sizeof(float));
    e->logits64 = calloc(n_vocab, sizeof(double));
    const model_hparams *hp = &m->hp;
    int64_t row_width = hp->n_vocab;
    if (hp->n_embd > row_width) row_width = hp->n_embd;
    if (hp->n_ff > row_width) row_width = hp->n_ff;
    e->row32 = calloc((size_t)row_width, sizeof(float));
    e->row64 = calloc((size_t)row_width, sizeof(double));
    if (!e->tokens || !e->chunk_pos || !e->logits || !e->logits64 || !e->row32 || !e->row64) goto oom;
    backend_config bc = {
        .n_ctx = e->config.n_ctx,
        .max_rows = e->config.max_rows,
        .logits_rows = e->config.logits_all ? e->config.max_rows : 1,
        .n_threads = e->config.n_threads,
    };
    char berr[256] = "";
    e->be = ops->create(m, &bc, berr, sizeof berr);
    if (!e->be) {
        *status = GRETA_ERR_NO_MEMORY;
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

void engine_free(engine *e) {
    if (!e) return;
    if (e->be) e->ops->destroy(e->be);
    free(e->tokens);
    free(e->chunk_pos);
    free(e->logits);
    free(e->logits64);
    free(e->logits_all);
    free(e->logits_all64);
    free(e->row32);
    free(e->row64);
    free(e);
}

/* ---- the forward ---- */

/* Width of one row of buf for this model. */
static int64_t buf_width(const engine *e, backend_buf buf) {
    const model_hparams *hp = &e->m->hp;
    switch (buf) {
    case BUF_K:
    case BUF_V: return hp->kv_dim;
    case BUF_GATE:
    case BUF_UP: return hp->n_ff;
    case BUF_LOGITS: return hp->n_vocab;
    default: return hp->n_embd;
    }
}

/* Records row i of buf at (layer, point) in the backend's precision. */
static void trace_one(engine *e, backend_buf buf, int layer, trace_point point, const trace_row *row, int i) {
    int64_t width = buf_width(e, buf);
    if (e->ops->f64) {
        e->ops->read_rows(e->be, buf, i, 1, NULL, e->row64);
        trace_record_f64(e->tracer, layer, point, row, e->row64, width);
    } else {
        e->ops->read_rows(e->be, buf, i, 1, e->row32, NULL);
        trace_record_f32(e->tracer, layer, point, row, e->row32, width);
    }
}

/* Records buf at (layer, point) for every row the tracer wants. */
static void trace_rows(engine *e, backend_buf buf, int layer, trace_point point, const trace_row *rows, int n) {
    if (!e->tracer) return;
    for (int i = 0; i < n; i++) {
        if (trace_wants(e->tracer, layer, point, &rows[i])) trace_one(e, buf, layer, point, &rows[i], i);
    }
}

static void forward_layer(engine *e, int il, const trace_row *rows, int n) {
    const backend_ops *ops = e->ops;
    backend *be = e->be;
    const model_layer *L = &e->m->layers[il];

    trace_rows(e, BUF_X, il, TP_X_IN, rows, n);
    ops->rmsnorm(be, BUF_XN, BUF_X, L->attn_norm, n);
    trace_rows(e, BUF_XN, il, TP_ATTN_NORM, rows, n);

    const model_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    const backend_buf qkv_dst[3] = {BUF_Q, BUF_K, BUF_V};
    ops->matmul(be, 3, qkv, qkv_dst, BUF_XN, 0, n);
    trace_rows(e, BUF_Q, il, TP_Q, rows, n);
    trace_rows(e, BUF_K, il, TP_K, rows, n);
    trace_rows(e, BUF_V, il, TP_V, rows, n);

    ops->rope(be, BUF_Q, n);
    ops->rope(be, BUF_K, n);
    trace_rows(e, BUF_Q, il, TP_Q_ROPE, rows, n);
    trace_rows(e, BUF_K, il, TP_K_ROPE, rows, n);

    ops->attention(be, il, n);
    trace_rows(e, BUF_ATT, il, TP_ATTN_OUT, rows, n);

    const model_weight *wo[1] = {&L->wo};
    const backend_buf proj[1] = {BUF_PROJ};
    ops->matmul(be, 1, wo, proj, BUF_ATT, 0, n);
    trace_rows(e, BUF_PROJ, il, TP_WO_OUT, rows, n);
    ops->add(be, BUF_X, BUF_PROJ, n);
    trace_rows(e, BUF_X, il, TP_X_AFTER_ATTN, rows, n);

    ops->rmsnorm(be, BUF_XN, BUF_X, L->ffn_norm, n);
    trace_rows(e, BUF_XN, il, TP_FFN_NORM, rows, n);
    const model_weight *gate_up[2] = {&L->w_gate, &L->w_up};
    const backend_buf gate_up_dst[2] = {BUF_GATE, BUF_UP};
    ops->matmul(be, 2, gate_up, gate_up_dst, BUF_XN, 0, n);
    trace_rows(e, BUF_GATE, il, TP_FFN_GATE, rows, n);
    trace_rows(e, BUF_UP, il, TP_FFN_UP, rows, n);
    ops->swiglu(be, n);
    trace_rows(e, BUF_GATE, il, TP_FFN_ACT, rows, n);

    const model_weight *down[1] = {&L->w_down};
    ops->matmul(be, 1, down, proj, BUF_GATE, 0, n);
    trace_rows(e, BUF_PROJ, il, TP_MLP_OUT, rows, n);
    ops->add(be, BUF_X, BUF_PROJ, n);
    trace_rows(e, BUF_X, il, TP_X_AFTER_MLP, rows, n);
}

/* True if row i of this chunk needs its logits computed. */
static bool row_needs_logits(const engine *e, const trace_row *row) {
    if (row->is_last || e->config.logits_all) return true;
    return e->tracer && trace_wants(e->tracer, e->m->hp.n_layer, TP_LOGITS, row);
}

/* Stores logits row `src_row` of BUF_LOGITS for the eval row `row`. */
static void keep_logits(engine *e, int src_row, const trace_row *row) {
    size_t n_vocab = (size_t)e->m->hp.n_vocab;
    if (e->config.logits_all) {
        size_t r = (size_t)row->token_index;
        e->ops->read_rows(e->be, BUF_LOGITS, src_row, 1, e->logits_all + r * n_vocab, e->logits_all64 + r * n_vocab);
    }
    if (row->is_last) e->ops->read_rows(e->be, BUF_LOGITS, src_row, 1, e->logits, e->logits64);
}

static void forward_logits(engine *e, const trace_row *rows, int n) {
    const backend_ops *ops = e->ops;
    int n_layer = e->m->hp.n_layer;
    ops->rmsnorm(e->be, BUF_XN, BUF_X, e->m->output_norm, n);
    trace_rows(e, BUF_XN, n_layer, TP_FINAL_NORM, rows, n);
    trace_rows(e, BUF_XN, n_layer, TP_LM_HEAD_IN, rows, n);
    const model_weight *out[1] = {&e->m->output};
    const backend_buf dst[1] = {BUF_LOGITS};
    if (e->config.logits_all) {
        ops->matmul(e->be, 1, out, dst, BUF_XN, 0, n);
        for (int i = 0; i < n; i++) {
            keep_logits(e, i, &rows[i]);
            if (e->tracer && trace_wants(e->tracer, n_layer, TP_LOGITS, &rows[i]))
                trace_one(e, BUF_LOGITS, n_layer, TP_LOGITS, &rows[i], i);
        }
        return;
    }
    /* One row at a time into the single logits row (batch-invariant
     * kernels make this identical to a batched product). */
    for (int i = 0; i < n; i++) {
        if (!row_needs_logits(e, &rows[i])) continue;
        ops->matmul(e->be, 1, out, dst, BUF_XN, i, 1);
        keep_logits(e, 0, &rows[i]);
        if (e->tracer && trace_wants(e->tracer, n_layer, TP_LOGITS, &rows[i]))
            trace_one(e, BUF_LOGITS, n_layer, TP_LOGITS, &rows[i], 0);
    }
}

/* One forward over rows whose cache positions are all before them. */
static void forward(engine *e, const int32_t *tokens, const trace_row *rows, int n) {
    for (int i = 0; i < n; i++) e->chunk_pos[i] = (int32_t)rows[i].pos_id;
#ifdef GRETA_FAULTS
    if (faults_active() == FAULT_DECODE_POS && n == 1 && !rows[0].is_prefill && rows[0].pos_id + 1 < e->config.n_ctx)
        e->chunk_pos[0] += 1;
#endif
    e->ops->begin(e->be, tokens, e->chunk_pos, n);
    for (int il = 0; il < e->m->hp.n_layer; il++) forward_layer(e, il, rows, n);
    forward_logits(e, rows, n);
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
        if (tokens[i] < 0 || tokens[i] >= e->m->hp.n_vocab) {
            format_error(err, err_size, "token id %d at index %zu is outside the vocabulary [0, %d)", tokens[i], i,
                    e->m->hp.n_vocab);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
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
    int max_rows = e->config.max_rows;
    trace_row *rows = malloc((size_t)max_rows * sizeof *rows);
    if (!rows) {
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    for (size_t done = 0; done < n;) {
        int chunk = (int)((n - done) < (size_t)max_rows ? (n - done) : (size_t)max_rows);
        for (int i = 0; i < chunk; i++) {
            size_t idx = done + (size_t)i;
            rows[i] = (trace_row){
                .is_prefill = is_prefill,
                .is_last = idx == n - 1,
                .decode_step = step,
                .pos_id = start + (int64_t)idx,
                .token_id = tokens[idx],
                .token_index = (int64_t)idx,
                .seq_len = (int64_t)n,
                .tokens_total = start + (int64_t)n,
            };
        }
        forward(e, tokens + done, rows, chunk);
        done += (size_t)chunk;
    }
    free(rows);
    memmove(e->tokens + start, tokens, n * sizeof(int32_t)); /* tokens may point into e->tokens */
    e->n_pos = start + (int32_t)n;
    e->has_logits = true;
    e->logits_all_rows = e->config.logits_all ? n : 0;
    e->decode_step = is_prefill ? 0 : e->decode_step + 1;
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
