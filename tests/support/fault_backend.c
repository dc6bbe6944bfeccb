/* fault_backend.c: the cpu backend with planted faults (fault_backend.h).
 *
 * Every operation calls the cpu backend's; a fault changes what goes in
 * (tokens, positions, cache rows) or what comes out (K rows, normed rows),
 * through the interface only (read_rows / write_rows). There is no fused
 * layer, so the engine drives every step through the wrapper. */
#include "fault_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_common.h"
#include "backend/backend_registry.h"
#include "base/errors.h"

static const char *const fault_names[FAULT_COUNT] = {
    "none", "k_transposed", "decode_pos", "rope_pos", "stale_kv", "rms_eps", "embed_row",
};

const char *fault_name(fault_kind fault) {
    return (int)fault >= 0 && fault < FAULT_COUNT ? fault_names[fault] : "?";
}

int fault_from_name(const char *name) {
    for (int f = 0; f < FAULT_COUNT; f++)
        if (strcmp(name, fault_names[f]) == 0) return f;
    return -1;
}

/* The planted fault: test configuration, process-wide. */
static fault_kind active_fault = FAULT_NONE;

void fault_backend_set(fault_kind fault) {
    active_fault = fault;
}

static const backend_ops *const inner = &backend_cpu_ops;

struct backend_model {
    backend_model *inner;
    const model *m;
    backend_weights w; /* for the norm vectors of rms_eps */
};

struct backend_ctx {
    backend_ctx *inner;
    const backend_model *bm;
    backend_ctx_config config;
    bool shift;             /* decode_pos: this forward runs at position + 1 */
    int32_t *tokens;        /* [max_rows] perturbed inputs */
    int32_t *pos;
    backend_kv_row *kv_rows;
    float *rows_in;         /* [max_rows][widest of n_embd, kv_dim] */
    float *rows_out;
};

static greta_status fault_model_new(const model *m, backend_model **out, char *err, size_t err_size) {
    *out = NULL;
    backend_model *bm = calloc(1, sizeof *bm);
    if (!bm || !backend_weights_init(&bm->w, m)) {
        free(bm);
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    bm->m = m;
    greta_status st = inner->model_new(m, &bm->inner, err, err_size);
    if (st != GRETA_OK) {
        backend_weights_free(&bm->w);
        free(bm);
        return st;
    }
    *out = bm;
    return GRETA_OK;
}

static void fault_model_free(backend_model *bm) {
    if (!bm) return;
    inner->model_free(bm->inner);
    backend_weights_free(&bm->w);
    free(bm);
}

static void fault_ctx_free(backend_ctx *ctx) {
    if (!ctx) return;
    inner->ctx_free(ctx->inner);
    free(ctx->tokens);
    free(ctx->pos);
    free(ctx->kv_rows);
    free(ctx->rows_in);
    free(ctx->rows_out);
    free(ctx);
}

static greta_status fault_ctx_new(backend_model *bm, const backend_ctx_config *config, backend_ctx **out, char *err,
                                  size_t err_size) {
    *out = NULL;
    backend_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) goto oom;
    ctx->bm = bm;
    ctx->config = *config;
    const model_hparams *hp = &bm->m->hp;
    size_t rows = (size_t)config->max_rows;
    size_t width = (size_t)(hp->n_embd > hp->kv_dim ? hp->n_embd : hp->kv_dim);
    ctx->tokens = calloc(rows, sizeof *ctx->tokens);
    ctx->pos = calloc(rows, sizeof *ctx->pos);
    ctx->kv_rows = calloc(rows, sizeof *ctx->kv_rows);
    ctx->rows_in = calloc(rows * width, sizeof(float));
    ctx->rows_out = calloc(rows * width, sizeof(float));
    if (!ctx->tokens || !ctx->pos || !ctx->kv_rows || !ctx->rows_in || !ctx->rows_out) goto oom;
    greta_status st = inner->ctx_new(bm->inner, config, &ctx->inner, err, err_size);
    if (st != GRETA_OK) {
        fault_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return GRETA_OK;
oom:
    fault_ctx_free(ctx);
    format_error(err, err_size, "out of memory");
    return GRETA_ERR_NO_MEMORY;
}

static greta_status fault_kv_new(backend_model *bm, int32_t n_ctx, greta_kv_type kv_type, backend_kv **out, char *err,
                                 size_t err_size) {
    return inner->kv_new(bm->inner, n_ctx, kv_type, out, err, err_size);
}

static void fault_kv_free(backend_kv *kv) {
    inner->kv_free(kv);
}

/* embed_row, rope_pos and decode_pos change the inputs of a forward. */
static greta_status fault_begin(backend_ctx *ctx, const int32_t *tokens, const int32_t *pos, int n, char *err,
                                size_t err_size) {
    const model_hparams *hp = &ctx->bm->m->hp;
    ctx->shift = active_fault == FAULT_DECODE_POS && n == 1 && pos[0] > 0 && pos[0] + 1 < ctx->config.max_keys;
    for (int i = 0; i < n; i++) {
        ctx->tokens[i] = active_fault == FAULT_EMBED_ROW ? (tokens[i] + 1) % hp->n_vocab : tokens[i];
        ctx->pos[i] = active_fault == FAULT_ROPE_POS ? i : pos[i] + (ctx->shift ? 1 : 0);
    }
    return inner->begin(ctx->inner, ctx->tokens, ctx->pos, n, err, err_size);
}

/* rms_eps: the norm computed here from the source rows with 1000 eps. */
static greta_status fault_rmsnorm(backend_ctx *ctx, backend_buf dst, backend_buf src, backend_weight weight, int n,
                                  char *err, size_t err_size) {
    if (active_fault != FAULT_RMS_EPS) return inner->rmsnorm(ctx->inner, dst, src, weight, n, err, err_size);
    const model_hparams *hp = &ctx->bm->m->hp;
    const float *w = ctx->bm->w.vector[weight];
    int64_t d = hp->n_embd;
    greta_status st = inner->read_rows(ctx->inner, src, 0, n, ctx->rows_in, NULL, err, err_size);
    if (st != GRETA_OK) return st;
    for (int i = 0; i < n; i++) {
        const float *x = ctx->rows_in + (size_t)i * (size_t)d;
        float *y = ctx->rows_out + (size_t)i * (size_t)d;
        float ss = 0.0f;
        for (int64_t k = 0; k < d; k++) ss += x[k] * x[k];
        float scale = 1.0f / sqrtf(ss / (float)d + (float)hp->rms_eps * 1000.0f);
        for (int64_t k = 0; k < d; k++) y[k] = x[k] * scale * w[k];
    }
    return inner->write_rows(ctx->inner, dst, 0, n, ctx->rows_out, NULL, err, err_size);
}

/* k_transposed: each head of the K rows put in HF order (i, i + hd/2)
 * instead of the GGUF pair order (2i, 2i + 1). */
static greta_status permute_k(backend_ctx *ctx, int n, char *err, size_t err_size) {
    const model_hparams *hp = &ctx->bm->m->hp;
    int hd = hp->head_dim;
    greta_status st = inner->read_rows(ctx->inner, BUF_K, 0, n, ctx->rows_in, NULL, err, err_size);
    if (st != GRETA_OK) return st;
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < hp->n_head_kv; h++) {
            size_t head = (size_t)i * (size_t)hp->kv_dim + (size_t)h * (size_t)hd;
            const float *v = ctx->rows_in + head;
            float *o = ctx->rows_out + head;
            for (int j = 0; j < hd / 2; j++) o[2 * j] = v[j], o[2 * j + 1] = v[j + hd / 2];
        }
    }
    return inner->write_rows(ctx->inner, BUF_K, 0, n, ctx->rows_out, NULL, err, err_size);
}

static greta_status fault_matmul(backend_ctx *ctx, int n_mats, const backend_weight *weights, const backend_buf *dst,
                                 backend_buf src, int src_row0, int n, char *err, size_t err_size) {
    greta_status st = inner->matmul(ctx->inner, n_mats, weights, dst, src, src_row0, n, err, err_size);
    if (st != GRETA_OK || active_fault != FAULT_K_TRANSPOSED) return st;
    for (int k = 0; k < n_mats; k++)
        if (dst[k] == BUF_K) return permute_k(ctx, n, err, err_size);
    return GRETA_OK;
}

static greta_status fault_rope(backend_ctx *ctx, backend_buf buf, int n, char *err, size_t err_size) {
    return inner->rope(ctx->inner, buf, n, err, err_size);
}

/* The rows as the forward sees them: one position later under decode_pos. */
static const backend_kv_row *shifted(backend_ctx *ctx, const backend_kv_row *rows, int n) {
    if (!ctx->shift) return rows;
    for (int i = 0; i < n; i++) ctx->kv_rows[i] = (backend_kv_row){rows[i].kv, rows[i].pos + 1};
    return ctx->kv_rows;
}

static greta_status fault_kv_store(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                   size_t err_size) {
    if (active_fault == FAULT_STALE_KV && layer == 1 && n == 1) return GRETA_OK;
    return inner->kv_store(ctx->inner, layer, shifted(ctx, rows, n), n, err, err_size);
}

static greta_status fault_attend(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                 size_t err_size) {
    return inner->attend(ctx->inner, layer, shifted(ctx, rows, n), n, err, err_size);
}

static greta_status fault_add(backend_ctx *ctx, backend_buf dst, backend_buf src, int n, char *err,
                              size_t err_size) {
    return inner->add(ctx->inner, dst, src, n, err, err_size);
}

static greta_status fault_swiglu(backend_ctx *ctx, int n, char *err, size_t err_size) {
    return inner->swiglu(ctx->inner, n, err, err_size);
}

static greta_status fault_read_rows(backend_ctx *ctx, backend_buf buf, int row0, int n, float *out32,
                                    double *out64, char *err, size_t err_size) {
    return inner->read_rows(ctx->inner, buf, row0, n, out32, out64, err, err_size);
}

static greta_status fault_write_rows(backend_ctx *ctx, backend_buf buf, int row0, int n, const float *in32,
                                     const double *in64, char *err, size_t err_size) {
    return inner->write_rows(ctx->inner, buf, row0, n, in32, in64, err, err_size);
}

static const backend_ops fault_backend_ops = {
    .name = "cpu",
    .precision = "f32",
    .f64 = false,
    .model_new = fault_model_new,
    .model_free = fault_model_free,
    .ctx_new = fault_ctx_new,
    .ctx_free = fault_ctx_free,
    .kv_new = fault_kv_new,
    .kv_free = fault_kv_free,
    .begin = fault_begin,
    .rmsnorm = fault_rmsnorm,
    .matmul = fault_matmul,
    .rope = fault_rope,
    .kv_store = fault_kv_store,
    .attend = fault_attend,
    .add = fault_add,
    .swiglu = fault_swiglu,
    .layer = NULL,
    .read_rows = fault_read_rows,
    .write_rows = fault_write_rows,
};

void fault_backend_install(void) {
    backend_registry_override_for_tests(GRETA_BACKEND_CPU, &fault_backend_ops);
}
