/* cuda.c: the cuda backend (backend.h, interface v2) on the GPU functions
 * of cuda_device.h. Built only with `make CUDA=1` (docs/cuda.md).
 *
 * Placement: backend_model uploads every matrix in its file format (a tied
 * output shares token_embd's copy) and every norm vector as float32, into
 * one device allocation, once per model; backend_kv holds one sequence's
 * K and V caches in f16 ([n_layer][n_ctx][kv_dim] each); backend_ctx holds
 * the float32 activation buffers, a small upload area and the stream.
 * Each allocation is checked against the device's free memory first, so
 * running out is one clear error naming the bytes needed and available,
 * before any token is evaluated.
 *
 * Synchronization: the steps only enqueue kernels. begin() copies the
 * rows' token ids and RoPE angles (one host -> device copy); read_rows()
 * waits for the stream and copies the rows out. Nothing else waits, so
 * tracing off adds no synchronization, and tracing on costs one wait per
 * read_rows call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_common.h"
#include "backend/cuda/cuda_device.h"
#include "base/errors.h"

#define DEVICE_ALIGN 256
#define STRIDE_ALIGN 32 /* floats: rows start 128-byte aligned */

struct backend_model {
    const model *m;
    backend_weights w;
    double *rope_freqs;       /* [rope_dim / 2] */
    void *device;             /* one allocation: matrices, then vectors */
    const void **matrix;      /* [w.count] device address, NULL for vector ids */
    const float **vector;     /* [w.count] device address, NULL for matrix ids */
    char device_name[128];
};

struct backend_kv {
    int32_t n_ctx;
    bool f32;    /* GRETA_CUDA_KV=f32: float32 values (diagnostic) */
    uint8_t *k;  /* device [n_layer][n_ctx][kv_dim] values, f16 unless f32 */
    uint8_t *v;
};

struct backend_ctx {
    const backend_model *bm;
    const model *m;
    backend_ctx_config config;
    gpu_stream *stream;
    float *buf[BUF_COUNT];     /* device [rows][stride] */
    int64_t width[BUF_COUNT];
    int64_t stride[BUF_COUNT];
    void *upload;              /* device: tokens [max_rows] int32, cos, sin [max_rows][rope_dim / 2] */
    int32_t *tokens_dev;
    float *cos_dev, *sin_dev;
    uint8_t *staging;          /* host copy of the upload area */
    double *angle_cos, *angle_sin;
};

static size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static greta_status device_error(char *err, size_t err_size, const char *msg) {
    format_error(err, err_size, "%s", msg);
    return GRETA_ERR_INTERNAL;
}

/* One error naming what did not fit: the bytes it needs and what is free. */
static greta_status check_fits(size_t need, const char *what, const char *device, char *err, size_t err_size) {
    size_t free_bytes = 0, total = 0;
    char e[256] = "";
    if (gpu_mem_info(&free_bytes, &total, e, sizeof e) != 0) return device_error(err, err_size, e);
    if (need <= free_bytes) return GRETA_OK;
    format_error(err, err_size, "out of GPU memory: %zu bytes (%.2f GiB) needed for %s, %zu bytes (%.2f GiB) free of %zu on %s",
                 need, (double)need / (1u << 30), what, free_bytes, (double)free_bytes / (1u << 30), total,
                 device[0] ? device : "the GPU");
    return GRETA_ERR_NO_MEMORY;
}

/* ---- per model ---- */

static void cuda_model_free(backend_model *bm) {
    if (!bm) return;
    gpu_free(bm->device);
    free(bm->matrix);
    free(bm->vector);
    free(bm->rope_freqs);
    backend_weights_free(&bm->w);
    free(bm);
}

/* Index of the first id whose matrix has the same bytes (tied output). */
static int32_t shared_with(const backend_weights *w, int32_t id) {
    for (int32_t j = 0; j < id; j++)
        if (w->matrix[j] && w->matrix[j]->data == w->matrix[id]->data) return j;
    return -1;
}

static greta_status cuda_model_new(const model *m, backend_model **out, char *err, size_t err_size) {
    *out = NULL;
    const model_hparams *hp = &m->hp;
    backend_model *bm = calloc(1, sizeof *bm);
    if (!bm || !backend_weights_init(&bm->w, m) || !(bm->rope_freqs = backend_rope_freqs_new(m))) {
        cuda_model_free(bm);
        format_error(err, err_size, "out of memory placing the weights");
        return GRETA_ERR_NO_MEMORY;
    }
    bm->m = m;
    const int32_t count = bm->w.count;
    bm->matrix = calloc((size_t)count, sizeof *bm->matrix);
    bm->vector = calloc((size_t)count, sizeof *bm->vector);
    size_t *offset = calloc((size_t)count, sizeof *offset);
    if (!bm->matrix || !bm->vector || !offset) {
        free(offset);
        cuda_model_free(bm);
        format_error(err, err_size, "out of memory placing the weights");
        return GRETA_ERR_NO_MEMORY;
    }
    size_t total = 0;
    for (int32_t id = 0; id < count; id++) {
        const model_weight *mw = bm->w.matrix[id];
        if (mw && !gpu_type_supported(mw->type)) {
            free(offset);
            cuda_model_free(bm);
            format_error(err, err_size, "tensor '%s': type %u has no GPU kernel", mw->name, (unsigned)mw->type);
            return GRETA_ERR_UNSUPPORTED;
        }
        if (mw && shared_with(&bm->w, id) >= 0) continue;
        offset[id] = total;
        size_t bytes = mw ? (size_t)mw->n_out * mw->row_bytes : (size_t)hp->n_embd * sizeof(float);
        total += align_up(bytes, DEVICE_ALIGN);
    }
    size_t free_bytes = 0, total_bytes = 0;
    greta_status st = GRETA_OK;
    if (gpu_device_open(bm->device_name, sizeof bm->device_name, &free_bytes, &total_bytes, err, err_size) != 0)
        st = GRETA_ERR_UNSUPPORTED;
    if (st == GRETA_OK) st = check_fits(total, "the weights", bm->device_name, err, err_size);
    if (st == GRETA_OK && gpu_alloc(&bm->device, total, "the weights", err, err_size) != 0) st = GRETA_ERR_NO_MEMORY;
    for (int32_t id = 0; st == GRETA_OK && id < count; id++) {
        const model_weight *mw = bm->w.matrix[id];
        int32_t same = mw ? shared_with(&bm->w, id) : -1;
        if (same >= 0) {
            bm->matrix[id] = bm->matrix[same];
            continue;
        }
        uint8_t *dst = (uint8_t *)bm->device + offset[id];
        const void *src = mw ? (const void *)mw->data : (const void *)bm->w.vector[id];
        size_t bytes = mw ? (size_t)mw->n_out * mw->row_bytes : (size_t)hp->n_embd * sizeof(float);
        if (gpu_upload(dst, src, bytes, err, err_size) != 0) st = GRETA_ERR_INTERNAL;
        if (mw) bm->matrix[id] = dst;
        else bm->vector[id] = (const float *)dst;
    }
    free(offset);
    if (st != GRETA_OK) {
        cuda_model_free(bm);
        return st;
    }
    *out = bm;
    return GRETA_OK;
}

/* ---- per sequence: the KV cache ---- */

static void cuda_kv_free(backend_kv *kv) {
    if (!kv) return;
    gpu_free(kv->k);
    gpu_free(kv->v);
    free(kv);
}

/* The cache's value type: f16, or float32 when the environment says
 * GRETA_CUDA_KV=f32 (a diagnostic: it shows how much of the difference to
 * the float64 reference the f16 cache makes; docs/cuda.md). */
static bool kv_f32_requested(void) {
    const char *v = getenv("GRETA_CUDA_KV");
    return v && strcmp(v, "f32") == 0;
}

static greta_status cuda_kv_new(backend_model *bm, int32_t n_ctx, backend_kv **out, char *err, size_t err_size) {
    *out = NULL;
    const bool f32 = kv_f32_requested();
    size_t bytes = backend_kv_values(&bm->m->hp, n_ctx) * (f32 ? sizeof(float) : sizeof(uint16_t));
    char what[96];
    snprintf(what, sizeof what, "the %s KV cache of %d positions", f32 ? "f32" : "f16", n_ctx);
    greta_status st = check_fits(2 * bytes, what, bm->device_name, err, err_size);
    if (st != GRETA_OK) return st;
    backend_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        format_error(err, err_size, "out of memory for the KV cache (%d positions)", n_ctx);
        return GRETA_ERR_NO_MEMORY;
    }
    kv->n_ctx = n_ctx;
    kv->f32 = f32;
    if (gpu_alloc((void **)&kv->k, bytes, "the K cache", err, err_size) != 0 ||
        gpu_alloc((void **)&kv->v, bytes, "the V cache", err, err_size) != 0) {
        cuda_kv_free(kv);
        return GRETA_ERR_NO_MEMORY;
    }
    *out = kv;
    return GRETA_OK;
}

/* ---- per session ---- */

static void cuda_ctx_free(backend_ctx *ctx) {
    if (!ctx) return;
    gpu_stream_free(ctx->stream);
    for (int b = 0; b < BUF_COUNT; b++) gpu_free(ctx->buf[b]);
    gpu_free(ctx->upload);
    free(ctx->staging);
    free(ctx->angle_cos);
    free(ctx->angle_sin);
    free(ctx);
}

static size_t upload_bytes(const model_hparams *hp, int rows) {
    return (size_t)rows * sizeof(int32_t) + 2 * (size_t)rows * (size_t)(hp->rope_dim / 2) * sizeof(float);
}

static greta_status cuda_ctx_new(backend_model *bm, const backend_ctx_config *config, backend_ctx **out, char *err,
                                 size_t err_size) {
    *out = NULL;
    const model_hparams *hp = &bm->m->hp;
    backend_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) goto oom;
    ctx->bm = bm;
    ctx->m = bm->m;
    ctx->config = *config;
    size_t need = align_up(upload_bytes(hp, config->max_rows), DEVICE_ALIGN);
    for (int b = 0; b < BUF_COUNT; b++) {
        ctx->width[b] = backend_buf_width(hp, (backend_buf)b);
        ctx->stride[b] = (int64_t)align_up((size_t)ctx->width[b], STRIDE_ALIGN);
        need += align_up(backend_buf_rows(config, (backend_buf)b) * (size_t)ctx->stride[b] * sizeof(float), DEVICE_ALIGN);
    }
    char what[96];
    snprintf(what, sizeof what, "the activations of %d rows", config->max_rows);
    greta_status st = check_fits(need, what, bm->device_name, err, err_size);
    if (st != GRETA_OK) {
        cuda_ctx_free(ctx);
        return st;
    }
    for (int b = 0; b < BUF_COUNT; b++) {
        size_t bytes = backend_buf_rows(config, (backend_buf)b) * (size_t)ctx->stride[b] * sizeof(float);
        if (gpu_alloc((void **)&ctx->buf[b], bytes, "activations", err, err_size) != 0) goto device_oom;
    }
    size_t half = (size_t)(hp->rope_dim / 2);
    if (gpu_alloc(&ctx->upload, upload_bytes(hp, config->max_rows), "the upload area", err, err_size) != 0)
        goto device_oom;
    ctx->tokens_dev = ctx->upload;
    ctx->cos_dev = (float *)(ctx->tokens_dev + config->max_rows);
    ctx->sin_dev = ctx->cos_dev + (size_t)config->max_rows * half;
    ctx->staging = malloc(upload_bytes(hp, config->max_rows));
    ctx->angle_cos = calloc(half + 1, sizeof(double));
    ctx->angle_sin = calloc(half + 1, sizeof(double));
    if (!ctx->staging || !ctx->angle_cos || !ctx->angle_sin) goto oom;
    if (gpu_stream_new(&ctx->stream, err, err_size) != 0) {
        cuda_ctx_free(ctx);
        return GRETA_ERR_INTERNAL;
    }
    *out = ctx;
    return GRETA_OK;
device_oom:
    cuda_ctx_free(ctx);
    return GRETA_ERR_NO_MEMORY;
oom:
    cuda_ctx_free(ctx);
    format_error(err, err_size, "out of memory for a session of %d rows", config->max_rows);
    return GRETA_ERR_NO_MEMORY;
}

/* A cuda_device.h result as a status (its message is already in err). */
static greta_status step(int rc) { return rc == 0 ? GRETA_OK : GRETA_ERR_INTERNAL; }

/* ---- one forward ---- */

static greta_status cuda_begin(backend_ctx *ctx, const int32_t *tokens, const int32_t *pos, int n, char *err,
                               size_t err_size) {
    const model *m = ctx->m;
    const model_hparams *hp = &m->hp;
    const int half = hp->rope_dim / 2;
    /* Packed like the device area but for n rows: tokens[n], cos[n][half], sin[n][half]. */
    int32_t *tok = (int32_t *)ctx->staging;
    float *cs = (float *)(tok + n);
    float *sn = cs + (size_t)n * (size_t)half;
    for (int i = 0; i < n; i++) {
        tok[i] = tokens[i];
        backend_rope_angles(hp, ctx->bm->rope_freqs, pos[i], ctx->angle_cos, ctx->angle_sin);
        for (int j = 0; j < half; j++) {
            cs[(size_t)i * half + j] = (float)ctx->angle_cos[j];
            sn[(size_t)i * half + j] = (float)ctx->angle_sin[j];
        }
    }
    /* Three copies into the device area's fixed places (ordered on the stream). */
    if (gpu_upload_async(ctx->stream, ctx->tokens_dev, tok, (size_t)n * sizeof(int32_t), err, err_size) != 0 ||
        (half > 0 && (gpu_upload_async(ctx->stream, ctx->cos_dev, cs, (size_t)n * half * sizeof(float), err, err_size) != 0 ||
                      gpu_upload_async(ctx->stream, ctx->sin_dev, sn, (size_t)n * half * sizeof(float), err, err_size) != 0)))
        return GRETA_ERR_INTERNAL;
    const backend_model *bm = ctx->bm;
    const model_weight *emb = bm->w.matrix[WEIGHT_TOKEN_EMBD];
    return step(gpu_embed(ctx->stream, emb->type, bm->matrix[WEIGHT_TOKEN_EMBD], emb->row_bytes, hp->n_embd,
                          ctx->tokens_dev, n, ctx->buf[BUF_X], ctx->stride[BUF_X], err, err_size));
}

static greta_status cuda_rmsnorm(backend_ctx *ctx, backend_buf dst, backend_buf src, backend_weight weight, int n,
                                 char *err, size_t err_size) {
    return step(gpu_rmsnorm(ctx->stream, ctx->buf[dst], ctx->stride[dst], ctx->buf[src], ctx->stride[src],
                            ctx->bm->vector[weight], ctx->width[src], (float)ctx->m->hp.rms_eps, n, err, err_size));
}

static greta_status cuda_matmul(backend_ctx *ctx, int n_mats, const backend_weight *weights, const backend_buf *dst,
                                backend_buf src, int src_row0, int n, char *err, size_t err_size) {
    const float *x = ctx->buf[src] + (size_t)src_row0 * (size_t)ctx->stride[src];
    for (int k = 0; k < n_mats; k++) {
        const model_weight *mw = ctx->bm->w.matrix[weights[k]];
        if (gpu_matmul(ctx->stream, mw->type, ctx->bm->matrix[weights[k]], mw->row_bytes, mw->n_in, mw->n_out, x,
                       ctx->stride[src], ctx->buf[dst[k]], ctx->stride[dst[k]], n, err, err_size) != 0)
            return GRETA_ERR_INTERNAL;
    }
    return GRETA_OK;
}

static greta_status cuda_rope(backend_ctx *ctx, backend_buf buf, int n, char *err, size_t err_size) {
    const model_hparams *hp = &ctx->m->hp;
    return step(gpu_rope(ctx->stream, ctx->buf[buf], ctx->stride[buf], ctx->width[buf], hp->head_dim, hp->rope_dim,
                         ctx->cos_dev, ctx->sin_dev, n, err, err_size));
}

/* Rows [row0, row0 + count) as a kernel argument: this layer's cache of
 * each row's sequence and its position. */
static void kv_group(const backend_ctx *ctx, int layer, const backend_kv_row *rows, int row0, int count,
                     gpu_kv_group *g) {
    const size_t kv_dim = (size_t)ctx->m->hp.kv_dim;
    memset(g, 0, sizeof *g);
    g->row0 = row0;
    g->n = count;
    g->f32 = rows[row0].kv->f32; /* one process, one setting: every kv agrees */
    for (int j = 0; j < count; j++) {
        const backend_kv *kv = rows[row0 + j].kv;
        size_t at = (size_t)layer * (size_t)kv->n_ctx * kv_dim * (kv->f32 ? sizeof(float) : sizeof(uint16_t));
        g->k[j] = kv->k + at;
        g->v[j] = kv->v + at;
        g->pos[j] = rows[row0 + j].pos;
    }
}

static greta_status cuda_kv_store(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                  size_t err_size) {
    for (int row0 = 0; row0 < n; row0 += GPU_KV_GROUP) {
        gpu_kv_group g;
        kv_group(ctx, layer, rows, row0, n - row0 < GPU_KV_GROUP ? n - row0 : GPU_KV_GROUP, &g);
        if (gpu_kv_store(ctx->stream, ctx->buf[BUF_K], ctx->buf[BUF_V], ctx->stride[BUF_K], ctx->m->hp.kv_dim, &g,
                         err, err_size) != 0)
            return GRETA_ERR_INTERNAL;
    }
    return GRETA_OK;
}

static greta_status cuda_attend(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                size_t err_size) {
    const model_hparams *hp = &ctx->m->hp;
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    for (int row0 = 0; row0 < n; row0 += GPU_KV_GROUP) {
        gpu_kv_group g;
        kv_group(ctx, layer, rows, row0, n - row0 < GPU_KV_GROUP ? n - row0 : GPU_KV_GROUP, &g);
        if (gpu_attend(ctx->stream, ctx->buf[BUF_Q], ctx->stride[BUF_Q], ctx->buf[BUF_ATT], ctx->stride[BUF_ATT],
                       hp->kv_dim, hp->n_head, hp->n_head_kv, hp->head_dim, scale, &g, err, err_size) != 0)
            return GRETA_ERR_INTERNAL;
    }
    return GRETA_OK;
}

static greta_status cuda_add(backend_ctx *ctx, backend_buf dst, backend_buf src, int n, char *err, size_t err_size) {
    return step(gpu_add(ctx->stream, ctx->buf[dst], ctx->stride[dst], ctx->buf[src], ctx->stride[src], ctx->width[dst],
                        n, err, err_size));
}

static greta_status cuda_swiglu(backend_ctx *ctx, int n, char *err, size_t err_size) {
    return step(gpu_swiglu(ctx->stream, ctx->buf[BUF_GATE], ctx->stride[BUF_GATE], ctx->buf[BUF_UP],
                           ctx->stride[BUF_UP], ctx->width[BUF_GATE], n, err, err_size));
}

/* ---- reading and writing rows ---- */

static greta_status cuda_read_rows(backend_ctx *ctx, backend_buf buf, int row0, int n, float *out32, double *out64,
                                   char *err, size_t err_size) {
    const int64_t w = ctx->width[buf];
    float *dst = out32;
    if (!dst) {
        dst = malloc((size_t)n * (size_t)w * sizeof(float));
        if (!dst) {
            format_error(err, err_size, "out of memory reading %d rows", n);
            return GRETA_ERR_NO_MEMORY;
        }
    }
    const float *src = ctx->buf[buf] + (size_t)row0 * (size_t)ctx->stride[buf];
    greta_status st = GRETA_OK;
    if (gpu_copy_rows_to_host(ctx->stream, dst, src, ctx->stride[buf], w, n, err, err_size) != 0) st = GRETA_ERR_INTERNAL;
    if (st == GRETA_OK && out64)
        for (size_t k = 0; k < (size_t)n * (size_t)w; k++) out64[k] = (double)dst[k];
    if (dst != out32) free(dst);
    return st;
}

static greta_status cuda_write_rows(backend_ctx *ctx, backend_buf buf, int row0, int n, const float *in32,
                                    const double *in64, char *err, size_t err_size) {
    const int64_t w = ctx->width[buf];
    const float *src = in32;
    float *tmp = NULL;
    if (!src) {
        tmp = malloc((size_t)n * (size_t)w * sizeof(float));
        if (!tmp) {
            format_error(err, err_size, "out of memory writing %d rows", n);
            return GRETA_ERR_NO_MEMORY;
        }
        for (size_t k = 0; k < (size_t)n * (size_t)w; k++) tmp[k] = (float)in64[k];
        src = tmp;
    }
    float *dst = ctx->buf[buf] + (size_t)row0 * (size_t)ctx->stride[buf];
    greta_status st = GRETA_OK;
    if (gpu_copy_rows_to_device(ctx->stream, dst, ctx->stride[buf], src, w, n, err, err_size) != 0 ||
        gpu_stream_sync(ctx->stream, err, err_size) != 0)
        st = GRETA_ERR_INTERNAL;
    free(tmp);
    return st;
}

const backend_ops backend_cuda_ops = {
    .name = "cuda",
    .precision = "f32",
    .f64 = false,
    .model_new = cuda_model_new,
    .model_free = cuda_model_free,
    .ctx_new = cuda_ctx_new,
    .ctx_free = cuda_ctx_free,
    .kv_new = cuda_kv_new,
    .kv_free = cuda_kv_free,
    .begin = cuda_begin,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .rope = cuda_rope,
    .kv_store = cuda_kv_store,
    .attend = cuda_attend,
    .add = cuda_add,
    .swiglu = cuda_swiglu,
    .layer = NULL,
    .read_rows = cuda_read_rows,
    .write_rows = cuda_write_rows,
};
