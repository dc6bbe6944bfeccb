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
 * Deferred steps and CUDA graphs (docs/cuda.md "Decode: one graph per
 * token"): the steps of a forward are not launched when the engine calls
 * them but recorded in a list (cuda_op); the list runs when its results are
 * needed: at read_rows(), write_rows(), the next begin() and ctx_free().
 * Running a list first uploads the forward's per-token values (token ids,
 * RoPE cos/sin, each row's cache and position: gpu_kv_row) in one copy to
 * device addresses that depend only on the row count, so the kernels take
 * no per-token argument. Then, for a forward of at most GRAPH_MAX_ROWS rows
 * whose list equals the previous list of that row count (a decode token
 * after the first), the list is captured once into a CUDA graph and that
 * graph is replayed from then on: one launch per token instead of ~10 per
 * layer. Neighbouring steps are fused as they run (matmul + add, gate/up
 * matmul + swiglu, rope + rope + kv_store), each fused kernel computing the
 * same bits as the steps it replaces. A launch error therefore surfaces at
 * the call that runs the list (read_rows, begin, write_rows).
 *
 * 8-bit activations (docs/cuda.md "Decode: 8-bit activations"): the
 * products of quantized weights outside the fast prefill take their input
 * rounded to 8 bits per 32 values (gpu_quantize_q8, or written by the
 * rmsnorm or attention before them) and integer dot products, in both
 * modes, at precision q8 (the cuda default); --precision f32 keeps the
 * float32 kernels (config->q8 false).
 *
 * The fast prefill (docs/cuda.md): without --deterministic, the matrix
 * products and the attention of forwards of at least GEMM_MIN_ROWS rows run
 * on tensor cores: cuBLAS GEMMs (cuda_gemm.cu) and flash attention
 * (cuda_attn.cu), decided when the list runs (such forwards are never
 * captured: graphs are for GRAPH_MAX_ROWS rows at most). With
 * --deterministic every forward takes the batch-invariant kernels.
 *
 * Synchronization: running a list only enqueues work on the session's
 * stream; read_rows() waits for the stream and copies the rows out. Nothing
 * else waits, so tracing off adds no synchronization, and tracing on costs
 * one wait per read_rows call (and, since a traced forward's list differs
 * from the untraced one, no graph for it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_common.h"
#include "backend/cuda/cuda_device.h"
#include "base/errors.h"
#include "format/quant.h"

#define DEVICE_ALIGN 256
#define STRIDE_ALIGN 32 /* floats: rows start 128-byte aligned */
/* The fast prefill: forwards of at least this many rows use the GEMM and
 * the flash attention (fewer rows: the decode kernels). */
#define GEMM_MIN_ROWS 16
/* Values of the f16 scratch a quantized matrix is dequantized into, a
 * chunk of rows at a time (32 MiB; a matrix smaller than that takes its
 * own size). */
#define GEMM_SCRATCH_VALUES ((size_t)16 << 20)

struct backend_model {
    const model *m;
    backend_weights w;
    double *rope_freqs;       /* [rope_dim / 2] */
    void *device;             /* one allocation: matrices, then vectors */
    const void **matrix;      /* [w.count] device address, NULL for vector ids */
    const float **vector;     /* [w.count] device address, NULL for matrix ids */
    size_t bytes;             /* of the device allocation */
    char device_name[128];
};

struct backend_kv {
    int32_t n_ctx;
    int32_t kind;     /* GPU_KV_F16; GPU_KV_F32 (--kv-type f32 or GRETA_CUDA_KV=f32, diagnostic); GPU_KV_Q8_0 */
    size_t row_bytes; /* one position's K (or V) row of one layer */
    uint8_t *k;       /* device [n_layer][n_ctx] rows */
    uint8_t *v;
    size_t bytes;     /* K and V together */
};

/* One recorded step (zeroed before filling: lists are compared bytewise). */
typedef enum { OP_EMBED, OP_RMSNORM, OP_MATMUL, OP_ROPE, OP_KV_STORE, OP_ATTEND, OP_ADD, OP_SWIGLU } op_kind;
typedef struct {
    int32_t kind;
    int32_t n;         /* rows */
    int32_t layer;     /* kv_store, attend */
    int32_t n_mats;    /* matmul */
    int32_t src_row0;  /* matmul */
    int32_t src;       /* backend_buf: rmsnorm, matmul, add */
    int32_t f32;       /* kv_store, attend: the cache kind (GPU_KV_F16, GPU_KV_F32, GPU_KV_Q8_0) */
    backend_weight w[4];
    int32_t dst[4];    /* backend_buf */
} cuda_op;

#define GRAPH_MAX_ROWS 8 /* forwards of at most this many rows replay graphs */
#define ATT_GROUP 32     /* rows per attention launch (bounds the split scratch) */

/* The last list run for one row count, and its graph once captured. */
typedef struct {
    cuda_op *ops;
    int n_ops, kv_n;
    gpu_graph *graph;
} graph_slot;

struct backend_ctx {
    const backend_model *bm;
    const model *m;
    backend_ctx_config config;
    gpu_stream *stream;
    float *buf[BUF_COUNT];     /* device [rows][stride] */
    int64_t width[BUF_COUNT];
    int64_t stride[BUF_COUNT];
    /* Per-forward values: host staging and device area, laid out for the
     * forward's row count n as kv rows [n] | tokens [n] | cos [n][half] | sin [n][half]. */
    void *upload;
    uint8_t *staging;
    double *angle_cos, *angle_sin;
    int32_t fwd_n;             /* rows of the pending forward (0: none) */
    int32_t kv_n;              /* rows of the kv table staged (0: none yet) */
    /* the pending list */
    cuda_op *ops;
    int n_ops, cap_ops;
    bool graphs;               /* GRETA_CUDA_GRAPH=0 turns graphs off (diagnostic) */
    /* 8-bit activations for the matrix-vector products of quantized weights
     * (cuda_matvec_q8.cu), at precision q8 (config->q8; --precision f32
     * keeps the float kernels, docs/cuda.md). */
    bool q8;
    int8_t *xq;                /* device [max_rows][xqs] */
    float *xds;                /* device [max_rows][xqs / 32] pairs (d, s) */
    int64_t xqs;
    bool xq_ready;             /* xq holds the next matmul's input (a fused rmsnorm or attention wrote it) */
    graph_slot slot[GRAPH_MAX_ROWS + 1];
    int splits;                /* attention key ranges (gpu_attend_splits) */
    float *att_scratch;        /* device: gpu_attend_scratch_floats(ATT_GROUP rows) */
    size_t bytes;              /* device bytes of the buffers, the upload area and the scratch */
    /* The fast prefill (NULL / 0 with --deterministic or max_rows < GEMM_MIN_ROWS). */
    bool fast;
    gpu_blas *blas;
    uint16_t *x16;             /* device [max_rows][x16_stride] f16: a matmul's input */
    int64_t x16_stride;
    uint16_t *w16;             /* device [w16_values] f16: dequantized weight rows */
    size_t w16_values;
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
    total += DEVICE_ALIGN; /* the matrix kernels' aligned word loads may touch a few bytes past a row's end */
    size_t free_bytes = 0, total_bytes = 0;
    greta_status st = GRETA_OK;
    if (gpu_device_open(bm->device_name, sizeof bm->device_name, &free_bytes, &total_bytes, err, err_size) != 0)
        st = GRETA_ERR_UNSUPPORTED;
    if (st == GRETA_OK) st = check_fits(total, "the weights", bm->device_name, err, err_size);
    if (st == GRETA_OK && gpu_alloc(&bm->device, total, "the weights", err, err_size) != 0) st = GRETA_ERR_NO_MEMORY;
    bm->bytes = total;
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

/* The cache's value type: kv_type, where GRETA_KV_DEFAULT is f16 unless
 * the environment says GRETA_CUDA_KV=f32 (the older spelling of the
 * diagnostic --kv-type f32: it shows how much of the difference to the
 * float64 reference the f16 cache makes; docs/cuda.md). */
static greta_kv_type kv_type_of(greta_kv_type asked) {
    if (asked != GRETA_KV_DEFAULT) return asked;
    const char *v = getenv("GRETA_CUDA_KV");
    return v && strcmp(v, "f32") == 0 ? GRETA_KV_F32 : GRETA_KV_F16;
}

static greta_status cuda_kv_new(backend_model *bm, int32_t n_ctx, greta_kv_type kv_type, backend_kv **out, char *err,
                                size_t err_size) {
    *out = NULL;
    const model_hparams *hp = &bm->m->hp;
    const greta_kv_type type = kv_type_of(kv_type);
    if (type != GRETA_KV_F16 && type != GRETA_KV_F32 && type != GRETA_KV_Q8_0) {
        format_error(err, err_size, "KV cache type %s is not available on cuda (f16, q8_0, f32)",
                     backend_kv_type_name(kv_type));
        return GRETA_ERR_UNSUPPORTED;
    }
    if (type == GRETA_KV_Q8_0 && (hp->kv_dim % 32 != 0 || hp->head_dim % 32 != 0)) {
        format_error(err, err_size, "KV cache type q8_0 needs head_dim and kv_dim multiples of 32 (the model has %d and %d)",
                     hp->head_dim, hp->kv_dim);
        return GRETA_ERR_UNSUPPORTED;
    }
    size_t row_bytes = type == GRETA_KV_Q8_0 ? (size_t)hp->kv_dim / 32 * 34
                                              : (size_t)hp->kv_dim * (type == GRETA_KV_F32 ? sizeof(float) : sizeof(uint16_t));
    size_t bytes = (size_t)hp->n_layer * (size_t)n_ctx * row_bytes;
    char what[96];
    snprintf(what, sizeof what, "the %s KV cache of %d positions", backend_kv_type_name(type), n_ctx);
    greta_status st = check_fits(2 * bytes, what, bm->device_name, err, err_size);
    if (st != GRETA_OK) return st;
    backend_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        format_error(err, err_size, "out of memory for the KV cache (%d positions)", n_ctx);
        return GRETA_ERR_NO_MEMORY;
    }
    kv->n_ctx = n_ctx;
    kv->kind = type == GRETA_KV_Q8_0 ? GPU_KV_Q8_0 : type == GRETA_KV_F32 ? GPU_KV_F32 : GPU_KV_F16;
    kv->row_bytes = row_bytes;
    kv->bytes = 2 * bytes;
    if (gpu_alloc((void **)&kv->k, bytes, "the K cache", err, err_size) != 0 ||
        gpu_alloc((void **)&kv->v, bytes, "the V cache", err, err_size) != 0) {
        cuda_kv_free(kv);
        return GRETA_ERR_NO_MEMORY;
    }
    *out = kv;
    return GRETA_OK;
}

/* ---- per session ---- */

static void slot_clear(graph_slot *slot) {
    gpu_graph_free(slot->graph);
    free(slot->ops);
    memset(slot, 0, sizeof *slot);
}

static greta_status run_pending(backend_ctx *ctx, char *err, size_t err_size);

static void cuda_ctx_free(backend_ctx *ctx) {
    if (!ctx) return;
    char ignored[256];
    if (ctx->stream && ctx->n_ops > 0) (void)run_pending(ctx, ignored, sizeof ignored);
    for (int n = 0; n <= GRAPH_MAX_ROWS; n++) slot_clear(&ctx->slot[n]);
    gpu_blas_free(ctx->blas);
    gpu_free(ctx->x16);
    gpu_free(ctx->w16);
    gpu_free(ctx->xq);
    gpu_free(ctx->xds);
    gpu_stream_free(ctx->stream);
    for (int b = 0; b < BUF_COUNT; b++) gpu_free(ctx->buf[b]);
    gpu_free(ctx->upload);
    gpu_free(ctx->att_scratch);
    free(ctx->ops);
    free(ctx->staging);
    free(ctx->angle_cos);
    free(ctx->angle_sin);
    free(ctx);
}

/* The per-forward area for n rows (offsets of its parts, bytes in all). */
typedef struct {
    size_t kv, tokens, cos, sin, bytes;
} upload_layout;

static upload_layout layout_for(const model_hparams *hp, int n) {
    const size_t half = (size_t)(hp->rope_dim / 2);
    upload_layout l;
    l.kv = 0;
    l.tokens = (size_t)n * sizeof(gpu_kv_row);
    l.cos = l.tokens + (size_t)n * sizeof(int32_t);
    l.sin = l.cos + (size_t)n * half * sizeof(float);
    l.bytes = l.sin + (size_t)n * half * sizeof(float);
    return l;
}

static bool graphs_requested(void) {
    const char *v = getenv("GRETA_CUDA_GRAPH");
    return !(v && strcmp(v, "0") == 0);
}

/* Programmatic dependent launch (gpu_compat.h): on unless the environment
 * says GRETA_CUDA_PDL=0 (a diagnostic, as GRETA_CUDA_GRAPH=0). It changes
 * when kernels start, never what they compute: scripts/cuda/cuda-check
 * found the bits the same with and without on every model it ran, and it
 * is 4-8% faster decode on a 7B (docs/cuda.md "Programmatic dependent
 * launch"). */
static bool pdl_requested(void) {
    const char *v = getenv("GRETA_CUDA_PDL");
    return !(v && strcmp(v, "0") == 0);
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
    ctx->graphs = graphs_requested();
    ctx->q8 = config->q8;
    ctx->splits = gpu_attend_splits(hp->n_head_kv);
    const int att_rows = config->max_rows < ATT_GROUP ? config->max_rows : ATT_GROUP;
    const size_t scratch = gpu_attend_scratch_floats(hp->n_head, hp->head_dim, ctx->splits, att_rows) * sizeof(float);
    const size_t up_bytes = layout_for(hp, config->max_rows).bytes;
    size_t need = align_up(up_bytes, DEVICE_ALIGN) + align_up(scratch, DEVICE_ALIGN);
    for (int b = 0; b < BUF_COUNT; b++) {
        ctx->width[b] = backend_buf_width(hp, (backend_buf)b);
        ctx->stride[b] = (int64_t)align_up((size_t)ctx->width[b], STRIDE_ALIGN);
        need += align_up(backend_buf_rows(config, (backend_buf)b) * (size_t)ctx->stride[b] * sizeof(float), DEVICE_ALIGN);
    }
    /* The 8-bit copy of a matrix product's input rows. */
    if (ctx->q8) {
        ctx->xqs = (int64_t)align_up((size_t)backend_max_in(hp), 256);
        need += align_up((size_t)config->max_rows * (size_t)ctx->xqs, DEVICE_ALIGN) +
                align_up((size_t)config->max_rows * (size_t)(ctx->xqs / 32) * 2 * sizeof(float), DEVICE_ALIGN);
    }
    /* The fast prefill's scratch: the f16 copy of a matmul's input, and the
     * f16 rows of a dequantized matrix (none when every matrix is F16). */
    ctx->fast = !config->deterministic && config->max_rows >= GEMM_MIN_ROWS;
    if (ctx->fast) {
        ctx->x16_stride = (int64_t)align_up((size_t)backend_max_in(hp), 64);
        size_t largest = 0;
        for (int32_t id = 0; id < bm->w.count; id++) {
            const model_weight *mw = bm->w.matrix[id];
            size_t values = mw && mw->type != QT_F16 ? (size_t)mw->n_out * (size_t)mw->n_in : 0;
            if (values > largest) largest = values;
        }
        ctx->w16_values = largest < GEMM_SCRATCH_VALUES ? largest : GEMM_SCRATCH_VALUES;
        need += align_up((size_t)config->max_rows * (size_t)ctx->x16_stride * sizeof(uint16_t), DEVICE_ALIGN) +
                align_up(ctx->w16_values * sizeof(uint16_t), DEVICE_ALIGN);
    }
    ctx->bytes = need;
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
    if (ctx->q8 && (gpu_alloc((void **)&ctx->xq, (size_t)config->max_rows * (size_t)ctx->xqs, "the 8-bit activations",
                              err, err_size) != 0 ||
                    gpu_alloc((void **)&ctx->xds, (size_t)config->max_rows * (size_t)(ctx->xqs / 32) * 2 * sizeof(float),
                              "the 8-bit activations' scales", err, err_size) != 0))
        goto device_oom;
    if (gpu_alloc(&ctx->upload, up_bytes, "the upload area", err, err_size) != 0 ||
        gpu_alloc((void **)&ctx->att_scratch, scratch, "the attention scratch", err, err_size) != 0)
        goto device_oom;
    size_t half = (size_t)(hp->rope_dim / 2);
    ctx->staging = malloc(up_bytes);
    ctx->angle_cos = calloc(half + 1, sizeof(double));
    ctx->angle_sin = calloc(half + 1, sizeof(double));
    if (!ctx->staging || !ctx->angle_cos || !ctx->angle_sin) goto oom;
    if (gpu_stream_new(&ctx->stream, pdl_requested(), err, err_size) != 0) {
        cuda_ctx_free(ctx);
        return GRETA_ERR_INTERNAL;
    }
    if (ctx->fast) {
        if (gpu_alloc((void **)&ctx->x16, (size_t)config->max_rows * (size_t)ctx->x16_stride * sizeof(uint16_t),
                      "the f16 activations", err, err_size) != 0 ||
            (ctx->w16_values > 0 &&
             gpu_alloc((void **)&ctx->w16, ctx->w16_values * sizeof(uint16_t), "the f16 weight scratch", err, err_size) != 0))
            goto device_oom;
        if (gpu_blas_new(ctx->stream, &ctx->blas, err, err_size) != 0) {
            cuda_ctx_free(ctx);
            return GRETA_ERR_INTERNAL;
        }
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

/* ---- running a list: the kernels of each step, fused where they meet ---- */

static uint8_t *dev_at(const backend_ctx *ctx, size_t offset) { return (uint8_t *)ctx->upload + offset; }

static const gpu_kv_row *kv_table(const backend_ctx *ctx) {
    return (const gpu_kv_row *)dev_at(ctx, layout_for(&ctx->m->hp, ctx->fwd_n).kv);
}

static int run_rmsnorm(backend_ctx *ctx, const cuda_op *op, char *err, size_t err_size) {
    const int dst = op->dst[0], src = op->src;
    return gpu_rmsnorm(ctx->stream, ctx->buf[dst], ctx->stride[dst], ctx->buf[src], ctx->stride[src],
                       ctx->bm->vector[op->w[0]], ctx->width[src], (float)ctx->m->hp.rms_eps, op->n, err, err_size);
}

/* The matrices of a matmul: those of one type with a fast kernel share a
 * launch; the others run the simple kernel one by one. */
static bool use_gemm(const backend_ctx *ctx, int n) { return ctx->fast && n >= GEMM_MIN_ROWS; }

/* The fast prefill's products: the input rounded to f16 once, one
 * tensor-core GEMM per matrix. */
static int run_gemm(backend_ctx *ctx, const cuda_op *op, const float *x, char *err, size_t err_size) {
    if (gpu_to_f16(ctx->stream, x, ctx->stride[op->src], ctx->x16, ctx->x16_stride, ctx->width[op->src], op->n, err,
                   err_size) != 0)
        return -1;
    for (int k = 0; k < op->n_mats; k++) {
        const model_weight *mw = ctx->bm->w.matrix[op->w[k]];
        if (gpu_gemm(ctx->blas, ctx->stream, mw->type, ctx->bm->matrix[op->w[k]], mw->row_bytes, mw->n_in, mw->n_out,
                     ctx->x16, ctx->x16_stride, ctx->buf[op->dst[k]], ctx->stride[op->dst[k]], op->n, ctx->w16,
                     ctx->w16_values, err, err_size) != 0)
            return -1;
    }
    return 0;
}

/* The 8-bit input of a product of weights of type on x (n rows of n_in
 * values), where the session computes so and the type has such a kernel:
 * x quantized into ctx->xq once per step (*quantized: start it with
 * take_xq_ready()), a's fields set. */
static int q8_input(backend_ctx *ctx, uint32_t type, const float *x, int64_t xs, int64_t n_in, int n, bool *quantized,
                    gpu_mv_args *a, char *err, size_t err_size) {
    if (!ctx->q8 || !gpu_matvec_q8_supported(type, n_in)) return 0;
    if (!*quantized && gpu_quantize_q8(ctx->stream, x, xs, n_in, n, ctx->xq, ctx->xds, ctx->xqs, err, err_size) != 0)
        return -1;
    *quantized = true;
    a->xq = ctx->xq, a->xds = ctx->xds, a->xqs = ctx->xqs;
    return 0;
}

/* Whether the step just run (a fused rmsnorm or attention) left this
 * matmul's input quantized in xq (then no longer: the flag is for the one
 * matmul that follows). */
static bool take_xq_ready(backend_ctx *ctx) {
    const bool ready = ctx->xq_ready;
    ctx->xq_ready = false;
    return ready;
}

/* Whether matmul mm reads rows 0 .. n - 1 of buffer src and has a
 * product with 8-bit input (then the step that writes src can quantize). */
static bool reads_q8(const backend_ctx *ctx, const cuda_op *mm, int src, int n) {
    if (!ctx->q8 || mm->kind != OP_MATMUL || mm->src != src || mm->src_row0 != 0 || mm->n != n ||
        use_gemm(ctx, mm->n) || ctx->width[src] % 32 != 0)
        return false;
    for (int k = 0; k < mm->n_mats; k++) {
        const model_weight *mw = ctx->bm->w.matrix[mm->w[k]];
        if (gpu_matvec_q8_supported(mw->type, mw->n_in)) return true;
    }
    return false;
}

/* rmsnorm into B, then a matmul reading B whose products take 8-bit
 * input: the rmsnorm kernel quantizes its output too (the same bits as
 * the two steps), and the matmul skips its own quantization. */
static bool fuses_norm_q8(const backend_ctx *ctx, const cuda_op *norm, const cuda_op *mm) {
    return norm->kind == OP_RMSNORM && reads_q8(ctx, mm, norm->dst[0], norm->n);
}

/* attend, then the output projection reading ATT with 8-bit input: the
 * attention's merge writes the 8-bit rows too (where its split kernel
 * runs; gpu_attend_q8 says whether it did). */
static bool fuses_attend_q8(const backend_ctx *ctx, const cuda_op *att, const cuda_op *mm) {
    return att->kind == OP_ATTEND && reads_q8(ctx, mm, BUF_ATT, att->n);
}

static int run_rmsnorm_q8(backend_ctx *ctx, const cuda_op *op, char *err, size_t err_size) {
    const int dst = op->dst[0], src = op->src;
    if (gpu_rmsnorm_q8(ctx->stream, ctx->buf[dst], ctx->stride[dst], ctx->buf[src], ctx->stride[src],
                       ctx->bm->vector[op->w[0]], ctx->width[src], (float)ctx->m->hp.rms_eps, op->n, ctx->xq, ctx->xds,
                       ctx->xqs, err, err_size) != 0)
        return -1;
    ctx->xq_ready = true;
    return 0;
}

static int run_matmul(backend_ctx *ctx, const cuda_op *op, char *err, size_t err_size) {
    const float *x = ctx->buf[op->src] + (size_t)op->src_row0 * (size_t)ctx->stride[op->src];
    bool quantized = take_xq_ready(ctx);
    if (use_gemm(ctx, op->n)) return run_gemm(ctx, op, x, err, err_size);
    bool done[4] = {false, false, false, false};
    for (int k = 0; k < op->n_mats; k++) {
        if (done[k]) continue;
        const model_weight *mw = ctx->bm->w.matrix[op->w[k]];
        if (!gpu_matvec_supported(mw->type, mw->n_in)) {
            if (gpu_matmul(ctx->stream, mw->type, ctx->bm->matrix[op->w[k]], mw->row_bytes, mw->n_in, mw->n_out, x,
                           ctx->stride[op->src], ctx->buf[op->dst[k]], ctx->stride[op->dst[k]], op->n, err,
                           err_size) != 0)
                return -1;
            done[k] = true;
            continue;
        }
        gpu_mv_args a;
        memset(&a, 0, sizeof a);
        a.n = op->n, a.n_in = mw->n_in, a.x = x, a.xs = ctx->stride[op->src];
        for (int j = k; j < op->n_mats; j++) {
            const model_weight *wj = ctx->bm->w.matrix[op->w[j]];
            if (done[j] || wj->type != mw->type || wj->n_in != mw->n_in) continue;
            a.w[a.count] = ctx->bm->matrix[op->w[j]];
            a.row_bytes[a.count] = wj->row_bytes;
            a.n_out[a.count] = wj->n_out;
            a.y[a.count] = ctx->buf[op->dst[j]];
            a.ys[a.count] = ctx->stride[op->dst[j]];
            a.count++;
            done[j] = true;
        }
        if (q8_input(ctx, mw->type, x, a.xs, a.n_in, a.n, &quantized, &a, err, err_size) != 0 ||
            gpu_matvec(ctx->stream, mw->type, &a, MV_PLAIN, err, err_size) != 0)
            return -1;
    }
    return 0;
}

/* matmul of one matrix into P, then add(X, P): one kernel. */
static bool fuses_add(const backend_ctx *ctx, const cuda_op *mm, const cuda_op *add) {
    if (mm->kind != OP_MATMUL || add->kind != OP_ADD || mm->n_mats != 1 || add->n != mm->n || use_gemm(ctx, mm->n))
        return false;
    const model_weight *mw = ctx->bm->w.matrix[mm->w[0]];
    return add->src == mm->dst[0] && add->dst[0] != mm->src && add->dst[0] != mm->dst[0] &&
           ctx->width[add->dst[0]] == mw->n_out && gpu_matvec_supported(mw->type, mw->n_in);
}

static int run_matmul_add(backend_ctx *ctx, const cuda_op *mm, const cuda_op *add, char *err, size_t err_size) {
    const model_weight *mw = ctx->bm->w.matrix[mm->w[0]];
    gpu_mv_args a;
    memset(&a, 0, sizeof a);
    a.w[0] = ctx->bm->matrix[mm->w[0]], a.row_bytes[0] = mw->row_bytes, a.n_out[0] = mw->n_out;
    a.y[0] = ctx->buf[mm->dst[0]], a.ys[0] = ctx->stride[mm->dst[0]];
    a.count = 1, a.n = mm->n, a.n_in = mw->n_in;
    a.x = ctx->buf[mm->src] + (size_t)mm->src_row0 * (size_t)ctx->stride[mm->src], a.xs = ctx->stride[mm->src];
    a.res = ctx->buf[add->dst[0]], a.res_s = ctx->stride[add->dst[0]];
    bool quantized = take_xq_ready(ctx);
    if (q8_input(ctx, mw->type, a.x, a.xs, a.n_in, a.n, &quantized, &a, err, err_size) != 0) return -1;
    return gpu_matvec(ctx->stream, mw->type, &a, MV_ADD, err, err_size);
}

/* matmul of gate and up into GATE, UP, then swiglu: one kernel. */
static bool fuses_swiglu(const backend_ctx *ctx, const cuda_op *mm, const cuda_op *sw) {
    if (mm->kind != OP_MATMUL || sw->kind != OP_SWIGLU || mm->n_mats != 2 || sw->n != mm->n || use_gemm(ctx, mm->n))
        return false;
    if (mm->dst[0] != BUF_GATE || mm->dst[1] != BUF_UP || mm->src == BUF_GATE || mm->src == BUF_UP) return false;
    const model_weight *g = ctx->bm->w.matrix[mm->w[0]], *u = ctx->bm->w.matrix[mm->w[1]];
    return g->type == u->type && g->n_in == u->n_in && g->n_out == u->n_out && g->n_out == ctx->width[BUF_GATE] &&
           gpu_matvec_supported(g->type, g->n_in);
}

static int run_matmul_swiglu(backend_ctx *ctx, const cuda_op *mm, char *err, size_t err_size) {
    gpu_mv_args a;
    memset(&a, 0, sizeof a);
    for (int k = 0; k < 2; k++) {
        const model_weight *mw = ctx->bm->w.matrix[mm->w[k]];
        a.w[k] = ctx->bm->matrix[mm->w[k]], a.row_bytes[k] = mw->row_bytes, a.n_out[k] = mw->n_out;
        a.y[k] = ctx->buf[mm->dst[k]], a.ys[k] = ctx->stride[mm->dst[k]];
    }
    const model_weight *g = ctx->bm->w.matrix[mm->w[0]];
    a.count = 2, a.n = mm->n, a.n_in = g->n_in;
    a.x = ctx->buf[mm->src] + (size_t)mm->src_row0 * (size_t)ctx->stride[mm->src], a.xs = ctx->stride[mm->src];
    bool quantized = take_xq_ready(ctx);
    if (q8_input(ctx, g->type, a.x, a.xs, a.n_in, a.n, &quantized, &a, err, err_size) != 0) return -1;
    return gpu_matvec(ctx->stream, g->type, &a, MV_SWIGLU, err, err_size);
}

/* rope(Q), rope(K), kv_store: one kernel. */
static bool fuses_rope_store(const cuda_op *a, const cuda_op *b, const cuda_op *c) {
    return a->kind == OP_ROPE && b->kind == OP_ROPE && c->kind == OP_KV_STORE && a->dst[0] == BUF_Q &&
           b->dst[0] == BUF_K && a->n == b->n && b->n == c->n && c->f32 != GPU_KV_Q8_0;
}

static int run_rope_store(backend_ctx *ctx, const cuda_op *store, char *err, size_t err_size) {
    const model_hparams *hp = &ctx->m->hp;
    const upload_layout l = layout_for(hp, ctx->fwd_n);
    return gpu_rope_store(ctx->stream, ctx->buf[BUF_Q], ctx->stride[BUF_Q], ctx->width[BUF_Q], ctx->buf[BUF_K],
                          ctx->buf[BUF_V], ctx->stride[BUF_K], hp->kv_dim, hp->head_dim, hp->rope_dim,
                          (const float *)dev_at(ctx, l.cos), (const float *)dev_at(ctx, l.sin), store->layer,
                          kv_table(ctx), store->n, store->f32, err, err_size);
}

/* The staged kv table's rows as one sequence at consecutive positions (a
 * prompt or a chunk of one), as the flash attention needs: its first row,
 * or NULL. */
static const gpu_kv_row *one_run(const backend_ctx *ctx, int n) {
    const gpu_kv_row *t = (const gpu_kv_row *)(ctx->staging + layout_for(&ctx->m->hp, ctx->fwd_n).kv);
    for (int i = 1; i < n; i++)
        if (t[i].k != t[0].k || t[i].pos != t[0].pos + i) return NULL;
    return t;
}

static int run_attend(backend_ctx *ctx, const cuda_op *op, bool q8_out, char *err, size_t err_size) {
    const model_hparams *hp = &ctx->m->hp;
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    const gpu_kv_row *run = NULL;
    if (use_gemm(ctx, op->n) && op->f32 != GPU_KV_F32 && gpu_attend_prefill_supported(hp->head_dim, hp->kv_dim, 0) &&
        (run = one_run(ctx, op->n)) != NULL) {
        /* flash attention; layer_values counts f16 values, or bytes of q8_0 */
        const size_t at = (size_t)op->layer * (size_t)run->layer_values * (op->f32 == GPU_KV_Q8_0 ? 1 : sizeof(uint16_t));
        return gpu_attend_prefill(ctx->stream, ctx->buf[BUF_Q], ctx->stride[BUF_Q], ctx->buf[BUF_ATT],
                                  ctx->stride[BUF_ATT], (const uint8_t *)run->k + at, (const uint8_t *)run->v + at,
                                  op->f32 == GPU_KV_Q8_0, hp->kv_dim, hp->n_head, hp->n_head_kv, hp->head_dim, scale,
                                  run->pos, op->n, err, err_size);
    }
    bool all_quantized = q8_out;
    for (int row0 = 0; row0 < op->n; row0 += ATT_GROUP) {
        const int count = op->n - row0 < ATT_GROUP ? op->n - row0 : ATT_GROUP;
        int quantized = 0;
        if (gpu_attend_q8(ctx->stream, ctx->buf[BUF_Q] + (size_t)row0 * (size_t)ctx->stride[BUF_Q], ctx->stride[BUF_Q],
                          ctx->buf[BUF_ATT] + (size_t)row0 * (size_t)ctx->stride[BUF_ATT], ctx->stride[BUF_ATT],
                          hp->kv_dim, hp->n_head, hp->n_head_kv, hp->head_dim, scale, op->layer, kv_table(ctx) + row0,
                          count, op->f32, ctx->att_scratch, ctx->splits,
                          q8_out ? ctx->xq + (size_t)row0 * (size_t)ctx->xqs : NULL,
                          q8_out ? ctx->xds + (size_t)row0 * (size_t)(ctx->xqs / 32) * 2 : NULL, ctx->xqs, &quantized,
                          err, err_size) != 0)
            return -1;
        all_quantized = all_quantized && quantized;
    }
    ctx->xq_ready = all_quantized; /* for the output projection next */
    return 0;
}

/* One step alone. */
static int run_op(backend_ctx *ctx, const cuda_op *op, char *err, size_t err_size) {
    const model_hparams *hp = &ctx->m->hp;
    const upload_layout l = layout_for(hp, ctx->fwd_n);
    const backend_model *bm = ctx->bm;
    switch ((op_kind)op->kind) {
    case OP_EMBED: {
        const model_weight *emb = bm->w.matrix[WEIGHT_TOKEN_EMBD];
        return gpu_embed(ctx->stream, emb->type, bm->matrix[WEIGHT_TOKEN_EMBD], emb->row_bytes, hp->n_embd,
                         (const int32_t *)dev_at(ctx, l.tokens), op->n, ctx->buf[BUF_X], ctx->stride[BUF_X], err,
                         err_size);
    }
    case OP_RMSNORM: return run_rmsnorm(ctx, op, err, err_size);
    case OP_MATMUL: return run_matmul(ctx, op, err, err_size);
    case OP_ROPE:
        return gpu_rope(ctx->stream, ctx->buf[op->dst[0]], ctx->stride[op->dst[0]], ctx->width[op->dst[0]], hp->head_dim,
                        hp->rope_dim, (const float *)dev_at(ctx, l.cos), (const float *)dev_at(ctx, l.sin), op->n, err,
                        err_size);
    case OP_KV_STORE:
        return gpu_kv_store(ctx->stream, ctx->buf[BUF_K], ctx->buf[BUF_V], ctx->stride[BUF_K], hp->kv_dim, op->layer,
                            kv_table(ctx), op->n, op->f32, err, err_size);
    case OP_ATTEND: return run_attend(ctx, op, false, err, err_size);
    case OP_ADD:
        return gpu_add(ctx->stream, ctx->buf[op->dst[0]], ctx->stride[op->dst[0]], ctx->buf[op->src],
                       ctx->stride[op->src], ctx->width[op->dst[0]], op->n, err, err_size);
    case OP_SWIGLU:
        return gpu_swiglu(ctx->stream, ctx->buf[BUF_GATE], ctx->stride[BUF_GATE], ctx->buf[BUF_UP],
                          ctx->stride[BUF_UP], ctx->width[BUF_GATE], op->n, err, err_size);
    }
    return 0;
}

/* Launches the list's kernels, fusing neighbours. */
static int launch_list(backend_ctx *ctx, char *err, size_t err_size) {
    const cuda_op *ops = ctx->ops;
    ctx->xq_ready = false;
    for (int i = 0; i < ctx->n_ops;) {
        int rc;
        if (i + 1 < ctx->n_ops && fuses_norm_q8(ctx, &ops[i], &ops[i + 1])) {
            rc = run_rmsnorm_q8(ctx, &ops[i], err, err_size); /* the matmul is next, with xq_ready */
            i += 1;
        } else if (i + 1 < ctx->n_ops && fuses_attend_q8(ctx, &ops[i], &ops[i + 1])) {
            rc = run_attend(ctx, &ops[i], true, err, err_size); /* likewise, where it quantized */
            i += 1;
        } else if (i + 1 < ctx->n_ops && fuses_add(ctx, &ops[i], &ops[i + 1])) {
            rc = run_matmul_add(ctx, &ops[i], &ops[i + 1], err, err_size);
            i += 2;
        } else if (i + 1 < ctx->n_ops && fuses_swiglu(ctx, &ops[i], &ops[i + 1])) {
            rc = run_matmul_swiglu(ctx, &ops[i], err, err_size);
            i += 2;
        } else if (i + 2 < ctx->n_ops && fuses_rope_store(&ops[i], &ops[i + 1], &ops[i + 2])) {
            rc = run_rope_store(ctx, &ops[i + 2], err, err_size);
            i += 3;
        } else {
            rc = run_op(ctx, &ops[i], err, err_size);
            i += 1;
        }
        if (rc != 0) return -1;
    }
    return 0;
}

static bool same_list(const graph_slot *slot, const backend_ctx *ctx) {
    return slot->ops && slot->n_ops == ctx->n_ops && slot->kv_n == ctx->kv_n &&
           memcmp(slot->ops, ctx->ops, (size_t)ctx->n_ops * sizeof *ctx->ops) == 0;
}

/* Runs the pending list: uploads the forward's values, then replays the
 * graph of an equal earlier list, captures one (the second time a list
 * is seen), or launches the kernels directly. */
static greta_status run_pending(backend_ctx *ctx, char *err, size_t err_size) {
    if (ctx->n_ops == 0) return GRETA_OK;
    const upload_layout l = layout_for(&ctx->m->hp, ctx->fwd_n);
    if (gpu_upload_async(ctx->stream, ctx->upload, ctx->staging, l.bytes, err, err_size) != 0) {
        ctx->n_ops = 0;
        return GRETA_ERR_INTERNAL;
    }
    int rc = 0;
    if (ctx->graphs && ctx->fwd_n <= GRAPH_MAX_ROWS) {
        graph_slot *slot = &ctx->slot[ctx->fwd_n];
        if (same_list(slot, ctx)) {
            if (!slot->graph) {
                rc = gpu_capture_begin(ctx->stream, err, err_size);
                if (rc == 0) {
                    int launch_rc = launch_list(ctx, err, err_size);
                    rc = gpu_capture_end(ctx->stream, &slot->graph, err, err_size);
                    if (launch_rc != 0) {
                        slot_clear(slot); /* a capture cut short is no graph */
                        rc = -1;
                    }
                }
            }
            if (rc == 0) rc = gpu_graph_launch(ctx->stream, slot->graph, err, err_size);
        } else {
            slot_clear(slot);
            slot->ops = malloc((size_t)ctx->n_ops * sizeof *ctx->ops);
            if (slot->ops) {
                memcpy(slot->ops, ctx->ops, (size_t)ctx->n_ops * sizeof *ctx->ops);
                slot->n_ops = ctx->n_ops;
                slot->kv_n = ctx->kv_n;
            }
            rc = launch_list(ctx, err, err_size);
        }
    } else {
        rc = launch_list(ctx, err, err_size);
    }
    ctx->n_ops = 0;
    return rc == 0 ? GRETA_OK : GRETA_ERR_INTERNAL;
}

/* ---- recording the steps ---- */

static greta_status record(backend_ctx *ctx, const cuda_op *op, char *err, size_t err_size) {
    if (ctx->n_ops == ctx->cap_ops) {
        int cap = ctx->cap_ops ? 2 * ctx->cap_ops : 64;
        cuda_op *grown = realloc(ctx->ops, (size_t)cap * sizeof *grown);
        if (!grown) {
            format_error(err, err_size, "out of memory recording the forward");
            return GRETA_ERR_NO_MEMORY;
        }
        ctx->ops = grown;
        ctx->cap_ops = cap;
    }
    ctx->ops[ctx->n_ops++] = *op;
    return GRETA_OK;
}

static cuda_op new_op(op_kind kind, int n) {
    cuda_op op;
    memset(&op, 0, sizeof op);
    op.kind = (int32_t)kind;
    op.n = n;
    return op;
}

static greta_status cuda_begin(backend_ctx *ctx, const int32_t *tokens, const int32_t *pos, int n, char *err,
                               size_t err_size) {
    greta_status st = run_pending(ctx, err, err_size);
    if (st != GRETA_OK) return st;
    const model_hparams *hp = &ctx->m->hp;
    const int half = hp->rope_dim / 2;
    const upload_layout l = layout_for(hp, n);
    int32_t *tok = (int32_t *)(ctx->staging + l.tokens);
    float *cs = (float *)(ctx->staging + l.cos);
    float *sn = (float *)(ctx->staging + l.sin);
    for (int i = 0; i < n; i++) {
        tok[i] = tokens[i];
        backend_rope_angles(hp, ctx->bm->rope_freqs, pos[i], ctx->angle_cos, ctx->angle_sin);
        for (int j = 0; j < half; j++) {
            cs[(size_t)i * half + j] = (float)ctx->angle_cos[j];
            sn[(size_t)i * half + j] = (float)ctx->angle_sin[j];
        }
    }
    memset(ctx->staging + l.kv, 0, (size_t)n * sizeof(gpu_kv_row));
    ctx->fwd_n = n;
    ctx->kv_n = 0;
    cuda_op op = new_op(OP_EMBED, n);
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_rmsnorm(backend_ctx *ctx, backend_buf dst, backend_buf src, backend_weight weight, int n,
                                 char *err, size_t err_size) {
    cuda_op op = new_op(OP_RMSNORM, n);
    op.dst[0] = dst;
    op.src = src;
    op.w[0] = weight;
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_matmul(backend_ctx *ctx, int n_mats, const backend_weight *weights, const backend_buf *dst,
                                backend_buf src, int src_row0, int n, char *err, size_t err_size) {
    cuda_op op = new_op(OP_MATMUL, n);
    op.n_mats = n_mats;
    op.src = src;
    op.src_row0 = src_row0;
    for (int k = 0; k < n_mats; k++) {
        op.w[k] = weights[k];
        op.dst[k] = dst[k];
    }
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_rope(backend_ctx *ctx, backend_buf buf, int n, char *err, size_t err_size) {
    if (ctx->m->hp.rope_dim < 2) return GRETA_OK;
    cuda_op op = new_op(OP_ROPE, n);
    op.dst[0] = buf;
    return record(ctx, &op, err, err_size);
}

static gpu_kv_row kv_entry(const backend_ctx *ctx, const backend_kv_row *row) {
    gpu_kv_row r;
    memset(&r, 0, sizeof r);
    r.k = row->kv->k;
    r.v = row->kv->v;
    /* in values of the cache (f16, float32), or bytes of a q8_0 cache */
    r.layer_values = row->kv->kind == GPU_KV_Q8_0 ? (int64_t)row->kv->n_ctx * (int64_t)row->kv->row_bytes
                                                  : (int64_t)row->kv->n_ctx * (int64_t)ctx->m->hp.kv_dim;
    r.pos = row->pos;
    return r;
}

/* Stages rows' caches and positions as the forward's kv table. Every kv
 * step of a forward names the same rows; if one does not, the list so far
 * runs with the old table first. */
static greta_status stage_kv(backend_ctx *ctx, const backend_kv_row *rows, int n, int32_t *kind, char *err,
                             size_t err_size) {
    if (n > ctx->fwd_n) {
        format_error(err, err_size, "cuda: %d kv rows in a forward of %d rows", n, ctx->fwd_n);
        return GRETA_ERR_INTERNAL;
    }
    gpu_kv_row *staged = (gpu_kv_row *)(ctx->staging + layout_for(&ctx->m->hp, ctx->fwd_n).kv);
    *kind = rows[0].kv->kind; /* the rows of one forward share the session's setting (engine_step) */
    bool same = ctx->kv_n == n;
    for (int i = 0; same && i < n; i++) {
        gpu_kv_row r = kv_entry(ctx, &rows[i]);
        same = memcmp(&staged[i], &r, sizeof r) == 0;
    }
    if (same) return GRETA_OK;
    if (ctx->kv_n > 0) {
        greta_status st = run_pending(ctx, err, err_size);
        if (st != GRETA_OK) return st;
    }
    for (int i = 0; i < n; i++) staged[i] = kv_entry(ctx, &rows[i]);
    ctx->kv_n = n;
    return GRETA_OK;
}

static greta_status cuda_kv_store(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                  size_t err_size) {
    if (n <= 0) return GRETA_OK;
    int32_t kind = GPU_KV_F16;
    greta_status st = stage_kv(ctx, rows, n, &kind, err, err_size);
    if (st != GRETA_OK) return st;
    cuda_op op = new_op(OP_KV_STORE, n);
    op.layer = layer;
    op.f32 = kind;
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_attend(backend_ctx *ctx, int layer, const backend_kv_row *rows, int n, char *err,
                                size_t err_size) {
    if (n <= 0) return GRETA_OK;
    int32_t kind = GPU_KV_F16;
    greta_status st = stage_kv(ctx, rows, n, &kind, err, err_size);
    if (st != GRETA_OK) return st;
    cuda_op op = new_op(OP_ATTEND, n);
    op.layer = layer;
    op.f32 = kind;
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_add(backend_ctx *ctx, backend_buf dst, backend_buf src, int n, char *err, size_t err_size) {
    cuda_op op = new_op(OP_ADD, n);
    op.dst[0] = dst;
    op.src = src;
    return record(ctx, &op, err, err_size);
}

static greta_status cuda_swiglu(backend_ctx *ctx, int n, char *err, size_t err_size) {
    cuda_op op = new_op(OP_SWIGLU, n);
    return record(ctx, &op, err, err_size);
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
    greta_status st = run_pending(ctx, err, err_size);
    if (st == GRETA_OK && gpu_copy_rows_to_host(ctx->stream, dst, src, ctx->stride[buf], w, n, err, err_size) != 0) st = GRETA_ERR_INTERNAL;
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
    greta_status st = run_pending(ctx, err, err_size);
    if (st == GRETA_OK && (gpu_copy_rows_to_device(ctx->stream, dst, ctx->stride[buf], src, w, n, err, err_size) != 0 ||
                           gpu_stream_sync(ctx->stream, err, err_size) != 0))
        st = GRETA_ERR_INTERNAL;
    free(tmp);
    return st;
}

static greta_status cuda_memory(const backend_model *bm, const backend_ctx *ctx, const backend_kv *kv,
                                backend_memory *out, char *err, size_t err_size) {
    size_t free_bytes = 0, total = 0;
    char e[256] = "";
    if (gpu_mem_info(&free_bytes, &total, e, sizeof e) != 0) return device_error(err, err_size, e);
    out->weights = (int64_t)bm->bytes;
    out->kv = kv ? (int64_t)kv->bytes : 0;
    out->activations = ctx ? (int64_t)ctx->bytes : 0;
    out->device_used = (int64_t)(total - free_bytes);
    out->device_total = (int64_t)total;
    return GRETA_OK;
}

const backend_ops backend_cuda_ops = {
    .name = "cuda",
    .precision = "f32",
    .f64 = false,
    .kv_on_device = true,
    /* 128 MiB of activation rows: 512 rows of a 7B/8B model in one forward,
     * so a pp512 prompt dequantizes each matrix once for the GEMMs */
    .activation_budget = (size_t)128 << 20,
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
    .memory = cuda_memory,
};
