/* ref.c: the FP64 reference backend, the oracle (backend.h).
 *
 * Weights are dequantized exactly (quant_dequantize, bit-exact with ggml)
 * and promoted to double; every activation, accumulation, the KV cache and
 * the logits are double. Plain loops in the textbook order: this backend is
 * meant to be obviously right, not fast. The one concession to speed: the
 * matrix products split their output rows over the session's threads (each
 * output is still one thread's loop over k in order, so the thread count
 * changes no bit); everything else runs on the calling thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_common.h"
#include "backend/cpu/cpu_pool.h"
#include "base/errors.h"
#include "format/quant.h"

/* The per-model part and the KV cache are backend_common's host_model
 * (weights in the mapping) and host_kv (double values). */

struct backend_ctx {
    const host_model *hm;
    const model *m;
    backend_ctx_config config;
    void *buf[BUF_COUNT]; /* double [rows][width] */
    int64_t width[BUF_COUNT];
    int64_t stride[BUF_COUNT]; /* = width */
    double *rope_cos;     /* [max_rows][rope_dim / 2] */
    double *rope_sin;
    double *scores;       /* [max_keys] */
    cpu_pool *pool;       /* config.n_threads threads, for ref_matmul */
    float *row_f32;       /* [n_threads][max(n_in of any matrix)] each thread's dequantized weight row */
    double *row_f64;      /* [n_threads][max n_in] the same in double */
};

static greta_status ref_kv_new(backend_model *bm, int32_t n_ctx, greta_kv_type kv_type, backend_kv **out, char *err,
                                 size_t err_size) {
    if (kv_type != GRETA_KV_DEFAULT) {
        *out = NULL;
        format_error(err, err_size, "KV cache type %s is not available on ref: it keeps float64 (its precision)",
                     backend_kv_type_name(kv_type));
        return GRETA_ERR_UNSUPPORTED;
    }
    return host_kv_new(bm, n_ctx, sizeof(double), out, err, err_size);
}

static void ref_ctx_free(backend_ctx *be) {
    if (!be) return;
    host_bufs_free(be->buf);
    free(be->rope_cos);
    free(be->rope_sin);
    free(be->scores);
    cpu_pool_free(be->pool);
    free(be->row_f32);
    free(be->row_f64);
    free(be);
}

static greta_status ref_ctx_new(backend_model *bm, const backend_ctx_config *config, backend_ctx **out, char *err,
                                size_t err_size) {
    *out = NULL;
    backend_ctx *be = calloc(1, sizeof *be);
    if (!be) goto oom;
    be->hm = host_model_of(bm);
    be->m = be->hm->m;
    be->config = *config;
    const model_hparams *hp = &be->m->hp;
    if (!host_bufs_alloc(hp, config, sizeof(double), 1, be->buf, be->width, be->stride)) goto oom;
    size_t half = (size_t)(hp->rope_dim / 2);
    be->rope_cos = calloc((size_t)config->max_rows * half + 1, sizeof(double));
    be->rope_sin = calloc((size_t)config->max_rows * half + 1, sizeof(double));
    be->scores = calloc((size_t)config->max_keys, sizeof(double));
    size_t scratch = (size_t)config->n_threads * (size_t)backend_max_in(hp);
    be->row_f32 = calloc(scratch, sizeof(float));
    be->row_f64 = calloc(scratch, sizeof(double));
    if (!be->rope_cos || !be->rope_sin || !be->scores || !be->row_f32 || !be->row_f64) goto oom;
    be->pool = cpu_pool_new(config->n_threads, err, err_size);
    if (!be->pool) {
        ref_ctx_free(be);
        return GRETA_ERR_INTERNAL;
    }
    *out = be;
    return GRETA_OK;
oom:
    format_error(err, err_size, "out of memory for the activations (%d rows)", config->max_rows);
    ref_ctx_free(be);
    return GRETA_ERR_NO_MEMORY;
}

static double *row_of(backend_ctx *be, backend_buf b, int i) {
    return (double *)be->buf[b] + (size_t)i * (size_t)be->stride[b];
}

static greta_status ref_begin(backend_ctx *be, const int32_t *tokens, const int32_t *pos, int n, char *err,
                              size_t err_size) {
    (void)err, (void)err_size;
    const model *m = be->m;
    const model_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    for (int i = 0; i < n; i++) {
        quant_dequantize(m->token_embd.type, backend_embedding_row(m, tokens[i]), be->row_f32, hp->n_embd);
        double *x = row_of(be, BUF_X, i);
        for (int k = 0; k < hp->n_embd; k++) x[k] = (double)be->row_f32[k];
        backend_rope_angles(hp, be->hm->rope_freqs, pos[i], be->rope_cos + (size_t)i * half,
                            be->rope_sin + (size_t)i * half);
    }
    return GRETA_OK;
}

static greta_status ref_rmsnorm(backend_ctx *be, backend_buf dst, backend_buf src, backend_weight weight_id, int n,
                                char *err, size_t err_size) {
    (void)err, (void)err_size;
    const float *weight = be->hm->w.vector[weight_id];
    int64_t d = be->width[src];
    for (int i = 0; i < n; i++) {
        const double *x = row_of(be, src, i);
        double *y = row_of(be, dst, i);
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += x[k] * x[k];
        double scale = 1.0 / sqrt(ss / (double)d + be->m->hp.rms_eps);
        for (int64_t k = 0; k < d; k++) y[k] = x[k] * scale * (double)weight[k];
    }
    return GRETA_OK;
}

/* One matrix product: dst[i][r] = sum over k in order of W[r][k] * src[src_row0 + i][k]. */
typedef struct {
    backend_ctx *be;
    const model_weight *W;
    backend_buf dst, src;
    int src_row0, n;
} matmul_job;

/* Thread t of T computes the output rows [t * n_out / T, (t + 1) * n_out / T). */
static void matmul_rows(void *arg, int t) {
    const matmul_job *job = arg;
    backend_ctx *be = job->be;
    const model_weight *W = job->W;
    int64_t n_threads = cpu_pool_threads(be->pool);
    int64_t r0 = W->n_out * t / n_threads, r1 = W->n_out * (t + 1) / n_threads;
    size_t max_in = (size_t)backend_max_in(&be->m->hp);
    float *row_f32 = be->row_f32 + (size_t)t * max_in;
    double *row_f64 = be->row_f64 + (size_t)t * max_in;
    for (int64_t r = r0; r < r1; r++) {
        quant_dequantize(W->type, W->data + (size_t)r * W->row_bytes, row_f32, W->n_in);
        for (int64_t k = 0; k < W->n_in; k++) row_f64[k] = (double)row_f32[k];
        for (int i = 0; i < job->n; i++) {
            const double *x = row_of(be, job->src, job->src_row0 + i);
            double acc = 0;
            for (int64_t k = 0; k < W->n_in; k++) acc += row_f64[k] * x[k];
            row_of(be, job->dst, i)[r] = acc;
        }
    }
}

static greta_status ref_matmul(backend_ctx *be, int n_mats, const backend_weight *ids, const backend_buf *dst,
                               backend_buf src, int src_row0, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    for (int w = 0; w < n_mats; w++) {
        matmul_job job = {be, be->hm->w.matrix[ids[w]], dst[w], src, src_row0, n};
        cpu_pool_run(be->pool, matmul_rows, &job);
    }
    return GRETA_OK;
}

/* llama "normal" RoPE: adjacent pairs (x[2j], x[2j+1]) of each head. */
static greta_status ref_rope(backend_ctx *be, backend_buf buf, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    const model_hparams *hp = &be->m->hp;
    int half = hp->rope_dim / 2;
    int64_t heads = be->width[buf] / hp->head_dim;
    for (int i = 0; i < n; i++) {
        double *row = row_of(be, buf, i);
        const double *c = be->rope_cos + (size_t)i * half;
        const double *s = be->rope_sin + (size_t)i * half;
        for (int64_t h = 0; h < heads; h++) {
            double *v = row + h * hp->head_dim;
            for (int j = 0; j < half; j++) {
                double x0 = v[2 * j], x1 = v[2 * j + 1];
                v[2 * j] = x0 * c[j] - x1 * s[j];
                v[2 * j + 1] = x0 * s[j] + x1 * c[j];
            }
        }
    }
    return GRETA_OK;
}

static greta_status ref_kv_store(backend_ctx *be, int layer, const backend_kv_row *rows, int n, char *err,
                                 size_t err_size) {
    (void)err, (void)err_size;
    host_kv_store(&be->m->hp, layer, rows, n, be->buf[BUF_K], be->buf[BUF_V], be->stride[BUF_K], sizeof(double));
    return GRETA_OK;
}

static greta_status ref_attend(backend_ctx *be, int layer, const backend_kv_row *rows, int n, char *err,
                               size_t err_size) {
    (void)err, (void)err_size;
    const model_hparams *hp = &be->m->hp;
    size_t kv_dim = (size_t)hp->kv_dim;
    double scale = 1.0 / sqrt((double)hp->head_dim);
    for (int i = 0; i < n; i++) {
        const host_kv *kv = host_kv_of(rows[i].kv);
        const double *kc = kv->k, *vc = kv->v;
        int32_t p = rows[i].pos;
        for (int h = 0; h < hp->n_head; h++) {
            const double *q = row_of(be, BUF_Q, i) + (size_t)h * hp->head_dim;
            double *out = row_of(be, BUF_ATT, i) + (size_t)h * hp->head_dim;
            size_t off = backend_kv_offset(hp, kv->n_ctx, layer, 0) + backend_kv_head_offset(hp, h);
            double max = -INFINITY;
            for (int32_t t = 0; t <= p; t++) {
                const double *k = kc + off + (size_t)t * kv_dim;
                double s = 0;
                for (int d = 0; d < hp->head_dim; d++) s += q[d] * k[d];
                s *= scale;
                be->scores[t] = s;
                if (s > max) max = s;
            }
            double sum = 0;
            for (int32_t t = 0; t <= p; t++) {
                be->scores[t] = exp(be->scores[t] - max);
                sum += be->scores[t];
            }
            for (int d = 0; d < hp->head_dim; d++) out[d] = 0;
            for (int32_t t = 0; t <= p; t++) {
                const double *v = vc + off + (size_t)t * kv_dim;
                double w = be->scores[t] / sum;
                for (int d = 0; d < hp->head_dim; d++) out[d] += w * v[d];
            }
        }
    }
    return GRETA_OK;
}

static greta_status ref_add(backend_ctx *be, backend_buf dst, backend_buf src, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    for (int i = 0; i < n; i++) {
        double *y = row_of(be, dst, i);
        const double *x = row_of(be, src, i);
        for (int64_t k = 0; k < be->width[dst]; k++) y[k] += x[k];
    }
    return GRETA_OK;
}

static greta_status ref_swiglu(backend_ctx *be, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    for (int i = 0; i < n; i++) {
        double *g = row_of(be, BUF_GATE, i);
        const double *u = row_of(be, BUF_UP, i);
        for (int64_t k = 0; k < be->width[BUF_GATE]; k++) g[k] = g[k] / (1.0 + exp(-g[k])) * u[k];
    }
    return GRETA_OK;
}

/* Copies rows [row0, row0 + n) of buf, each width wide, into out32
 * [n][width] (rounded to float) and/or out64 [n][width]. */
static greta_status ref_read_rows(backend_ctx *be, backend_buf buf, int row0, int n, float *out32, double *out64,
                                  char *err, size_t err_size) {
    (void)err, (void)err_size;
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        const double *src = row_of(be, buf, row0 + r);
        size_t off = (size_t)r * (size_t)w;
        for (int64_t k = 0; k < w; k++) {
            if (out32) out32[off + (size_t)k] = (float)src[k];
            if (out64) out64[off + (size_t)k] = src[k];
        }
    }
    return GRETA_OK;
}

static greta_status ref_write_rows(backend_ctx *be, backend_buf buf, int row0, int n, const float *in32,
                                   const double *in64, char *err, size_t err_size) {
    (void)err, (void)err_size;
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        double *dst = row_of(be, buf, row0 + r);
        size_t off = (size_t)r * (size_t)w;
        for (int64_t k = 0; k < w; k++) dst[k] = in64 ? in64[off + (size_t)k] : (double)in32[off + (size_t)k];
    }
    return GRETA_OK;
}

const backend_ops backend_ref_ops = {
    .name = "ref",
    .precision = "f64",
    .f64 = true,
    .model_new = host_model_new,
    .model_free = host_model_free,
    .ctx_new = ref_ctx_new,
    .ctx_free = ref_ctx_free,
    .kv_new = ref_kv_new,
    .kv_free = host_kv_free,
    .begin = ref_begin,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .rope = ref_rope,
    .kv_store = ref_kv_store,
    .attend = ref_attend,
    .add = ref_add,
    .swiglu = ref_swiglu,
    .layer = NULL, /* the engine runs the steps one by one */
    .read_rows = ref_read_rows,
    .write_rows = ref_write_rows,
};
