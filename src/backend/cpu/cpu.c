/* cpu.c: the float32 CPU backend (backend.h).
 *
 * Weights stay in the file's format (at precision q8 most quantized types
 * are repacked once per model: cpu_repack.h); matmul decodes a few weight rows at a
 * time into a per-thread buffer (backend_cpu_kernels.c) and multiplies them
 * against a panel of activation rows, so decoding is amortized over the
 * panel in prefill. Work is split into units (a block of weight rows x a
 * panel of activation rows; a (row, head) pair in attention; a row in the
 * element-wise ops) handed out to the session's threads. Every output
 * element is computed inside one unit in the fixed order of
 * backend_cpu_kernels.h, so results depend neither on the number of rows
 * in the forward nor on the number of threads. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_common.h"
#include "base/errors.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_pool.h"
#include "backend/cpu/cpu_bf16.h"
#include "backend/cpu/cpu_f16.h"
#include "backend/cpu/cpu_q8.h"
#include "backend/cpu/cpu_repack.h"
#include "format/quant.h"

/* Weight rows per matmul unit (a multiple of CPU_REPACK_ROWS32: units
 * start at group boundaries) and decoded together; activation rows per panel. */
#define UNIT_W_ROWS 16
#define DECODE_ROWS 8
#define PANEL_ROWS 48
/* Units per thread per matrix for a single activation row (decode). */
#define DECODE_UNITS_PER_THREAD 4

/* Below this many rows element-wise ops run on the calling thread. */
#define PARALLEL_MIN_ROWS 8

/* The per-model part is backend_common's host_model (weights in the
 * mapping) plus, once a q8 session asks for them, the repacked matrices
 * (cpu_repack.h), made once and shared by every q8 session of the model;
 * the KV cache is host_kv (float values). */
typedef struct {
    host_model hm; /* first: host_model_of() applies to a cpu_model */
    pthread_mutex_t lock;    /* guards repacked while it is made */
    cpu_repacked **repacked; /* [hm.w.count] NULL where not repacked; NULL if none yet */
} cpu_model;

struct backend_ctx {
    const host_model *hm;
    const model *m;
    const cpu_kernels *k;
    backend_ctx_config config;
    cpu_pool *pool;
    int n_threads;
    void *buf[BUF_COUNT];      /* float [rows][stride] */
    int64_t width[BUF_COUNT];
    int64_t stride[BUF_COUNT]; /* width rounded up to 8, zero padded */
    float *rope_cos;           /* [max_rows][rope_dim / 2] */
    float *rope_sin;
    double *angle_cos;         /* [rope_dim / 2] one row's angles in double */
    double *angle_sin;
    int64_t max_in;            /* longest weight row, rounded up to 8 */
    float **wbuf;              /* per thread: [DECODE_ROWS][max_in] */
    float **scores;            /* per thread: [CPU_ATTEND_GROUP][round16(max_keys)] */
    const cpu_q8_kernels *q8;  /* config.q8: integer kernels, else NULL */
    uint8_t *xq[2];            /* q8: [max_rows] quantized rows, blocks of 32 / of 256 */
    size_t xq_stride[2];       /* their row bytes */
    const cpu_repack_kernels *rpk;  /* q8 with repacked weights, else NULL */
    cpu_repacked *const *repacked;  /* the model's, by weight id */
    const cpu_bf16_kernels *bf16; /* config.q8: BF16 weights' kernels (cpu_bf16.h), else NULL */
    const cpu_f16_kernels *f16; /* config.q8: F16 weights' kernels (cpu_f16.h), else NULL */
    uint8_t *xb;               /* q8: [max_rows] rows rounded to BF16 */
    size_t xb_stride;          /* their row bytes */
};

static int64_t round8(int64_t n) {
    return (n + 7) / 8 * 8;
}

static float *row_of(backend_ctx *be, backend_buf b, int i) {
    return (float *)be->buf[b] + (size_t)i * (size_t)be->stride[b];
}

/* ---- per model and per sequence: cpu_model, host_kv ---- */

static greta_status cpu_model_new(const model *m, backend_model **out, char *err, size_t err_size) {
    *out = NULL;
    cpu_model *cm = calloc(1, sizeof *cm);
    if (!cm) {
        format_error(err, err_size, "out of memory placing the weights");
        return GRETA_ERR_NO_MEMORY;
    }
    greta_status st = host_model_init(&cm->hm, m, err, err_size);
    if (st == GRETA_OK && pthread_mutex_init(&cm->lock, NULL) != 0) {
        host_model_clear(&cm->hm);
        format_error(err, err_size, "cannot create a mutex");
        st = GRETA_ERR_INTERNAL;
    }
    if (st != GRETA_OK) {
        free(cm);
        return st;
    }
    *out = (backend_model *)(void *)cm;
    return GRETA_OK;
}

static void cpu_model_free(backend_model *bm) {
    cpu_model *cm = (cpu_model *)(void *)bm;
    if (!cm) return;
    cpu_repack_weights_free(cm->repacked, cm->hm.w.count);
    pthread_mutex_destroy(&cm->lock);
    host_model_clear(&cm->hm);
    free(cm);
}

/* The model's repacked matrices, made by the first q8 session that asks
 * (sessions may be created on several threads at once). */
static greta_status cpu_model_repacked(backend_model *bm, cpu_repacked *const **out, char *err, size_t err_size) {
    cpu_model *cm = (cpu_model *)(void *)bm;
    greta_status st = GRETA_OK;
    pthread_mutex_lock(&cm->lock);
    if (!cm->repacked && !cpu_repack_weights(&cm->hm.w, cm->hm.m, &cm->repacked)) {
        format_error(err, err_size, "out of memory repacking the weights for precision q8");
        st = GRETA_ERR_NO_MEMORY;
    }
    *out = cm->repacked;
    pthread_mutex_unlock(&cm->lock);
    return st;
}

/* GRETA_CPU_REPACK=0 keeps q8 on the file's blocks (a diagnostic: the same
 * bits, slower; tests compare the two). */
static bool repack_wanted(void) {
    const char *v = getenv("GRETA_CPU_REPACK");
    return !v || strcmp(v, "0") != 0;
}

static greta_status cpu_kv_new(backend_model *bm, int32_t n_ctx, greta_kv_type kv_type, backend_kv **out, char *err,
                                 size_t err_size) {
    if (kv_type != GRETA_KV_DEFAULT && kv_type != GRETA_KV_F32) {
        *out = NULL;
        format_error(err, err_size, "KV cache type %s is not available on cpu: it keeps float32 (f32)",
                     backend_kv_type_name(kv_type));
        return GRETA_ERR_UNSUPPORTED;
    }
    return host_kv_new(bm, n_ctx, sizeof(float), out, err, err_size);
}

/* ---- per session: activations, scratch, threads ---- */

static void cpu_ctx_free(backend_ctx *be) {
    if (!be) return;
    cpu_pool_free(be->pool);
    host_bufs_free(be->buf);
    free(be->rope_cos);
    free(be->rope_sin);
    free(be->angle_cos);
    free(be->angle_sin);
    for (int t = 0; t < be->n_threads; t++) {
        if (be->wbuf) free(be->wbuf[t]);
        if (be->scores) free(be->scores[t]);
    }
    free(be->wbuf);
    free(be->scores);
    free(be->xq[0]);
    free(be->xq[1]);
    free(be->xb);
    free(be);
}

static greta_status cpu_ctx_new(backend_model *bm, const backend_ctx_config *config, backend_ctx **out, char *err,
                                size_t err_size) {
    *out = NULL;
    backend_ctx *be = calloc(1, sizeof *be);
    if (!be) goto oom;
    be->hm = host_model_of(bm);
    be->m = be->hm->m;
    be->k = cpu_kernels_best();
    be->config = *config;
    be->n_threads = config->n_threads;
    const model_hparams *hp = &be->m->hp;
    if (!host_bufs_alloc(hp, config, sizeof(float), 8, be->buf, be->width, be->stride)) goto oom;
    size_t half = (size_t)(hp->rope_dim / 2);
    be->rope_cos = calloc((size_t)config->max_rows * half, sizeof(float));
    be->rope_sin = calloc((size_t)config->max_rows * half, sizeof(float));
    be->angle_cos = calloc(half + 1, sizeof(double));
    be->angle_sin = calloc(half + 1, sizeof(double));
    be->max_in = round8(backend_max_in(hp));
    be->wbuf = calloc((size_t)be->n_threads, sizeof(float *));
    be->scores = calloc((size_t)be->n_threads, sizeof(float *));
    if (!be->rope_cos || !be->rope_sin || !be->angle_cos || !be->angle_sin || !be->wbuf || !be->scores) goto oom;
    for (int t = 0; t < be->n_threads; t++) {
        be->wbuf[t] = aligned_alloc(64, (size_t)DECODE_ROWS * (size_t)be->max_in * sizeof(float));
        be->scores[t] = malloc((size_t)CPU_ATTEND_GROUP * (size_t)((config->max_keys + 15) / 16 * 16) * sizeof(float));
        if (!be->wbuf[t] || !be->scores[t]) goto oom;
    }
    if (config->q8) {
        be->q8 = cpu_q8_best();
        for (int f = 0; f < 2; f++) {
            be->xq_stride[f] = cpu_q8_act_row_bytes(f == 0 ? 32 : 256, be->max_in);
            be->xq[f] = malloc((size_t)config->max_rows * be->xq_stride[f] + 64);
            if (!be->xq[f]) goto oom;
        }
        be->bf16 = cpu_bf16_best();
        be->f16 = cpu_f16_best();
        be->xb_stride = (size_t)be->max_in * sizeof(uint16_t);
        be->xb = malloc((size_t)config->max_rows * be->xb_stride + 64);
        if (!be->xb) goto oom;
        if (repack_wanted()) {
            greta_status st = cpu_model_repacked(bm, &be->repacked, err, err_size);
            if (st != GRETA_OK) {
                cpu_ctx_free(be);
                return st;
            }
            be->rpk = cpu_repack_best();
        }
    }
    be->pool = cpu_pool_new(be->n_threads, err, err_size);
    if (!be->pool) {
        cpu_ctx_free(be);
        return GRETA_ERR_INTERNAL;
    }
    *out = be;
    return GRETA_OK;
oom:
    format_error(err, err_size, "out of memory for the activations (%d rows)", config->max_rows);
    cpu_ctx_free(be);
    return GRETA_ERR_NO_MEMORY;
}

/* ---- row-parallel element-wise ops ---- */

typedef void (*row_fn)(backend_ctx *be, const void *arg, int i);

typedef struct {
    backend_ctx *be;
    row_fn fn;
    const void *arg;
    int n;
    atomic_int next;
} rows_job;

static void rows_worker(void *p, int thread) {
    (void)thread;
    rows_job *job = p;
    for (int i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) job->fn(job->be, job->arg, i);
}

static void for_rows(backend_ctx *be, int n, row_fn fn, const void *arg) {
    if (n < PARALLEL_MIN_ROWS || be->n_threads == 1) {
        for (int i = 0; i < n; i++) fn(be, arg, i);
        return;
    }
    rows_job job = {.be = be, .fn = fn, .arg = arg, .n = n};
    atomic_init(&job.next, 0);
    cpu_pool_run(be->pool, rows_worker, &job);
}

/* ---- begin: embeddings and RoPE angles ---- */

static greta_status cpu_begin(backend_ctx *be, const int32_t *tokens, const int32_t *pos, int n, char *err,
                              size_t err_size) {
    (void)err, (void)err_size;
    const model *m = be->m;
    const model_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    for (int i = 0; i < n; i++) {
        quant_dequantize(m->token_embd.type, backend_embedding_row(m, tokens[i]), row_of(be, BUF_X, i), hp->n_embd);
        /* Angles in double, rounded once to float. */
        backend_rope_angles(hp, be->hm->rope_freqs, pos[i], be->angle_cos, be->angle_sin);
        for (int j = 0; j < half; j++) {
            be->rope_cos[(size_t)i * half + j] = (float)be->angle_cos[j];
            be->rope_sin[(size_t)i * half + j] = (float)be->angle_sin[j];
        }
    }
    return GRETA_OK;
}

/* ---- RMSNorm ---- */

typedef struct {
    backend_buf dst, src;
    const float *weight;
} rmsnorm_arg;

static void rmsnorm_row(backend_ctx *be, const void *p, int i) {
    const rmsnorm_arg *a = p;
    int64_t d = be->width[a->src];
    const float *x = row_of(be, a->src, i);
    float *y = row_of(be, a->dst, i);
    float ss = be->k->dot(x, x, d);
    float eps = (float)be->m->hp.rms_eps;
    float scale = 1.0f / sqrtf(ss / (float)d + eps);
    for (int64_t k = 0; k < d; k++) y[k] = (x[k] * scale) * a->weight[k];
}

static greta_status cpu_rmsnorm(backend_ctx *be, backend_buf dst, backend_buf src, backend_weight weight, int n,
                                char *err, size_t err_size) {
    (void)err, (void)err_size;
    rmsnorm_arg a = {dst, src, be->hm->w.vector[weight]};
    for_rows(be, n, rmsnorm_row, &a);
    return GRETA_OK;
}

/* ---- matmul ---- */

typedef struct {
    backend_ctx *be;
    int n_mats;
    const model_weight *const *w;
    const backend_buf *dst;
    const float *x;      /* first activation row */
    int64_t xs;          /* its stride */
    int n;               /* activation rows */
    int n_panels;
    int64_t unit_rows[4]; /* weight rows per unit, per matrix */
    int64_t unit_end[4];  /* cumulative unit counts per matrix */
    const uint8_t *xq[4]; /* q8: the quantized rows for matrix k, NULL = float32 path */
    size_t xq_stride[4];
    const cpu_repacked *rp[4]; /* q8: matrix k repacked, else NULL */
    bool bf16[4];         /* q8: matrix k is BF16 and xq[k] its BF16 rows (cpu_bf16.h) */
    bool f16[4];          /* q8: matrix k is F16 and xq[k] the float rows (cpu_f16.h) */
    atomic_long next;
} matmul_job;

static void matmul_unit(matmul_job *job, int thread, int mat, int64_t wblock, int panel) {
    backend_ctx *be = job->be;
    const model_weight *w = job->w[mat];
    int64_t n8 = round8(w->n_in);
    int64_t r_begin = wblock * job->unit_rows[mat];
    int64_t r_end = r_begin + job->unit_rows[mat] < w->n_out ? r_begin + job->unit_rows[mat] : w->n_out;
    int t_begin = panel * PANEL_ROWS;
    int t_count = job->n - t_begin < PANEL_ROWS ? job->n - t_begin : PANEL_ROWS;
    float *wbuf = be->wbuf[thread];
    backend_buf dst = job->dst[mat];
    int64_t ys = be->stride[dst];
    if (job->xq[mat] && job->rp[mat]) {
        be->rpk->tile(job->rp[mat], r_begin, (int)(r_end - r_begin), job->xq[mat] + (size_t)t_begin * job->xq_stride[mat],
                      job->xq_stride[mat], t_count, row_of(be, dst, t_begin) + r_begin, ys);
        return;
    }
    if (job->xq[mat] && job->f16[mat]) {
        be->f16->tile(w, r_begin, (int)(r_end - r_begin), job->x + (size_t)t_begin * job->xs, job->xs, t_count,
                      row_of(be, dst, t_begin) + r_begin, ys);
        return;
    }
    if (job->xq[mat]) {
        (job->bf16[mat] ? be->bf16->tile : be->q8->tile)(w, r_begin, (int)(r_end - r_begin), job->xq[mat] + (size_t)t_begin * job->xq_stride[mat],
                     job->xq_stride[mat], t_count, row_of(be, dst, t_begin) + r_begin, ys);
        return;
    }
    /* One activation row (a decode step): decode in registers, no buffer. */
    if (t_count == 1 && be->k->dot_rows &&
        be->k->dot_rows(w, r_begin, (int)(r_end - r_begin), job->x + (size_t)t_begin * job->xs,
                        row_of(be, dst, t_begin) + r_begin))
        return;
    for (int64_t r = r_begin; r < r_end; r += DECODE_ROWS) {
        int rows = (int)(r_end - r < DECODE_ROWS ? r_end - r : DECODE_ROWS);
        be->k->decode_rows(w, r, rows, wbuf, n8);
        be->k->tile(wbuf, n8, rows, job->x + (size_t)t_begin * job->xs, job->xs, t_count,
                    row_of(be, dst, t_begin) + r, ys, n8);
    }
}

static void matmul_worker(void *p, int thread) {
    matmul_job *job = p;
    int64_t total = job->unit_end[job->n_mats - 1];
    for (int64_t u; (u = atomic_fetch_add(&job->next, 1)) < total;) {
        int mat = 0;
        while (u >= job->unit_end[mat]) mat++;
        int64_t local = u - (mat ? job->unit_end[mat - 1] : 0);
        matmul_unit(job, thread, mat, local / job->n_panels, (int)(local % job->n_panels));
    }
}


/* q8: quantizes the n input rows once per activation format the job's
 * matrices need (cpu_q8.h) and points job->xq at them. */
typedef struct {
    backend_buf src;
    int src_row0;
    int act_block;
} quantize_arg;

static void quantize_row(backend_ctx *be, const void *p, int i) {
    const quantize_arg *a = p;
    int f = a->act_block == 32 ? 0 : 1;
    cpu_q8_quantize_row(a->act_block, row_of(be, a->src, a->src_row0 + i), be->width[a->src],
                        be->xq[f] + (size_t)i * be->xq_stride[f]);
}

static void round_bf16_row(backend_ctx *be, const void *p, int i) {
    const quantize_arg *a = p;
    be->bf16->round_row(row_of(be, a->src, a->src_row0 + i), be->width[a->src],
                       (uint16_t *)(void *)(be->xb + (size_t)i * be->xb_stride));
}

static void cpu_matmul_quantize(backend_ctx *be, matmul_job *job, backend_buf src, int src_row0) {
    bool done[2] = {false, false}, done_bf16 = false;
    for (int k = 0; k < job->n_mats; k++) {
        if (cpu_bf16_rows(job->w[k]) && be->width[src] % 32 == 0) { /* BF16: rows rounded to BF16 */
            if (!done_bf16) {
                quantize_arg a = {src, src_row0, 0};
                for_rows(be, job->n, round_bf16_row, &a);
                done_bf16 = true;
            }
            job->xq[k] = be->xb;
            job->xq_stride[k] = be->xb_stride;
            job->bf16[k] = true;
            continue;
        }
        if (cpu_f16_rows(job->w[k])) { /* F16: float rows, 16 lanes */
            job->xq[k] = (const uint8_t *)(const void *)row_of(be, src, src_row0);
            job->xq_stride[k] = (size_t)be->stride[src] * sizeof(float);
            job->f16[k] = true;
            continue;
        }
        if (cpu_q8_float_rows(job->w[k])) { /* BF16 of other widths: float rows, 16 lanes */
            job->xq[k] = (const uint8_t *)(const void *)row_of(be, src, src_row0);
            job->xq_stride[k] = (size_t)be->stride[src] * sizeof(float);
            continue;
        }
        int act = cpu_q8_act_block(job->w[k]->type);
        if (act == 0 || be->width[src] % act != 0) continue;
        int f = act == 32 ? 0 : 1;
        if (!done[f]) {
            quantize_arg a = {src, src_row0, act};
            for_rows(be, job->n, quantize_row, &a);
            done[f] = true;
        }
        job->xq[k] = be->xq[f];
        job->xq_stride[k] = be->xq_stride[f];
    }
}

static greta_status cpu_matmul(backend_ctx *be, int n_mats, const backend_weight *ids, const backend_buf *dst,
                               backend_buf src, int src_row0, int n, char *err, size_t err_size) {
    if (n_mats < 1 || n_mats > 4) {
        format_error(err, err_size, "matmul of %d matrices (1 to 4)", n_mats);
        return GRETA_ERR_INTERNAL;
    }
    const model_weight *weights[4];
    for (int i = 0; i < n_mats; i++) weights[i] = be->hm->w.matrix[ids[i]];
    matmul_job job = {
        .be = be,
        .n_mats = n_mats,
        .w = weights,
        .dst = dst,
        .x = row_of(be, src, src_row0),
        .xs = be->stride[src],
        .n = n,
        .n_panels = (n + PANEL_ROWS - 1) / PANEL_ROWS,
    };
    int64_t units = 0;
    for (int i = 0; i < n_mats; i++) {
        /* One activation row is a stream over the weights: give each thread
         * a few long contiguous ranges (the prefetcher and the kernel's own
         * prefetch then run ahead of it) rather than many short ones that
         * interleave with the other threads'. */
        int64_t rows = UNIT_W_ROWS;
        /* K quants repacked: 4 groups of 16 rows per unit, so the
         * activation tile's per-call terms (cpu_repack_vnni.c) serve 4 groups */
        if (n > 1 && be->repacked && be->repacked[ids[i]] && cpu_repack_is_k(weights[i]->type))
            rows = 4 * CPU_REPACK_ROWS_K;
        /* (F16 and BF16 at q8 even on one thread: their AVX-512 decode
         * kernels read a unit as two streams, which want to be long) */
        bool streams = be->q8 && (cpu_f16_rows(weights[i]) || cpu_bf16_rows(weights[i]));
        if (n == 1 && (be->n_threads > 1 || streams)) {
            int64_t share = weights[i]->n_out / ((int64_t)be->n_threads * DECODE_UNITS_PER_THREAD);
            /* whole units of 16 rows: a repacked group (every type) */
            share = (share + UNIT_W_ROWS - 1) / UNIT_W_ROWS * UNIT_W_ROWS;
            if (share > rows) rows = share;
        }
        job.unit_rows[i] = rows;
        units += (weights[i]->n_out + rows - 1) / rows * job.n_panels;
        job.unit_end[i] = units;
    }
    if (be->q8) cpu_matmul_quantize(be, &job, src, src_row0);
    for (int i = 0; i < n_mats && be->repacked; i++) job.rp[i] = be->repacked[ids[i]];
    atomic_init(&job.next, 0);
    if (be->n_threads == 1)
        matmul_worker(&job, 0);
    else
        cpu_pool_run(be->pool, matmul_worker, &job);
    return GRETA_OK;
}

/* ---- RoPE (llama normal mode: adjacent pairs) ---- */

static void rope_row(backend_ctx *be, const void *p, int i) {
    backend_buf buf = *(const backend_buf *)p;
    const model_hparams *hp = &be->m->hp;
    int half = hp->rope_dim / 2;
    const float *c = be->rope_cos + (size_t)i * half;
    const float *s = be->rope_sin + (size_t)i * half;
    float *row = row_of(be, buf, i);
    int64_t heads = be->width[buf] / hp->head_dim;
    for (int64_t h = 0; h < heads; h++) {
        float *v = row + h * hp->head_dim;
        for (int j = 0; j < half; j++) {
            float x0 = v[2 * j], x1 = v[2 * j + 1];
            v[2 * j] = x0 * c[j] - x1 * s[j];
            v[2 * j + 1] = x0 * s[j] + x1 * c[j];
        }
    }
}

static greta_status cpu_rope(backend_ctx *be, backend_buf buf, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    for_rows(be, n, rope_row, &buf);
    return GRETA_OK;
}

/* ---- attention: KV store, then attend ---- */

static greta_status cpu_kv_store(backend_ctx *be, int layer, const backend_kv_row *rows, int n, char *err,
                                 size_t err_size) {
    (void)err, (void)err_size;
    host_kv_store(&be->m->hp, layer, rows, n, be->buf[BUF_K], be->buf[BUF_V], be->stride[BUF_K], sizeof(float));
    return GRETA_OK;
}

/* A unit is one (row, head), or at precision q8 with many units one (block
 * of rows, KV head): the heads of those rows that read that KV head, up to
 * CPU_ATTEND_GROUP at a time through attend_q8_group (the keys and values
 * read once for all of them; each head's result is attend_q8's, bit for
 * bit, so the split never changes a value). */
typedef struct {
    backend_ctx *be;
    int layer;
    const backend_kv_row *rows;
    int n;
    bool grouped;        /* units are (block of block_rows rows, KV head) */
    int block_rows;
    int units_per_block; /* n_head, or n_head_kv when grouped */
    atomic_int next;
} attention_job;

static void attention_unit(attention_job *job, int thread, int i, int h) {
    backend_ctx *be = job->be;
    const model_hparams *hp = &be->m->hp;
    const host_kv *kv = host_kv_of(job->rows[i].kv);
    int hd = hp->head_dim;
    size_t off = backend_kv_offset(hp, kv->n_ctx, job->layer, 0) + backend_kv_head_offset(hp, h);
    const float *q = row_of(be, BUF_Q, i) + (size_t)h * hd;
    float *out = row_of(be, BUF_ATT, i) + (size_t)h * hd;
    float scale = 1.0f / sqrtf((float)hd);
    (be->q8 ? be->k->attend_q8 : be->k->attend)(q, (const float *)kv->k + off, (const float *)kv->v + off, (size_t)hp->kv_dim, hd, job->rows[i].pos + 1, scale,
                  be->scores[thread], out);
}

/* The queries of one attend_q8_group call: heads of rows that share a KV
 * cache and a KV head. */
typedef struct {
    const float *q[CPU_ATTEND_GROUP];
    float *out[CPU_ATTEND_GROUP];
    int n_keys[CPU_ATTEND_GROUP];
    int n;
    const host_kv *kv;
} query_set;

static void query_set_run(attention_job *job, int thread, int g, query_set *qs) {
    if (qs->n == 0) return;
    backend_ctx *be = job->be;
    const model_hparams *hp = &be->m->hp;
    int group = hp->n_head / hp->n_head_kv;
    size_t off = backend_kv_offset(hp, qs->kv->n_ctx, job->layer, 0) + backend_kv_head_offset(hp, g * group);
    be->k->attend_q8_group(qs->q, qs->out, qs->n, (const float *)qs->kv->k + off, (const float *)qs->kv->v + off,
                           (size_t)hp->kv_dim, hp->head_dim, qs->n_keys, 1.0f / sqrtf((float)hp->head_dim),
                           be->scores[thread]);
    qs->n = 0;
}

/* Rows b * block_rows .. of the job, their heads g * group .. (g + 1) * group - 1,
 * which read KV head g. */
static void attention_group_unit(attention_job *job, int thread, int b, int g) {
    backend_ctx *be = job->be;
    const model_hparams *hp = &be->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    int i_end = (b + 1) * job->block_rows < job->n ? (b + 1) * job->block_rows : job->n;
    query_set qs = {.n = 0};
    for (int i = b * job->block_rows; i < i_end; i++) {
        const host_kv *kv = host_kv_of(job->rows[i].kv);
        if (qs.n > 0 && kv != qs.kv) query_set_run(job, thread, g, &qs);
        qs.kv = kv;
        for (int h = g * group; h < (g + 1) * group; h++) {
            qs.q[qs.n] = row_of(be, BUF_Q, i) + (size_t)h * hd;
            qs.out[qs.n] = row_of(be, BUF_ATT, i) + (size_t)h * hd;
            qs.n_keys[qs.n] = job->rows[i].pos + 1;
            if (++qs.n == CPU_ATTEND_GROUP) query_set_run(job, thread, g, &qs);
        }
    }
    query_set_run(job, thread, g, &qs);
}

static void attention_worker(void *p, int thread) {
    attention_job *job = p;
    int per_block = job->units_per_block;
    int total = (job->n + job->block_rows - 1) / job->block_rows * per_block;
    for (int u; (u = atomic_fetch_add(&job->next, 1)) < total;) {
        if (job->grouped)
            attention_group_unit(job, thread, u / per_block, u % per_block);
        else
            attention_unit(job, thread, u / per_block, u % per_block);
    }
}

static greta_status cpu_attend(backend_ctx *be, int layer, const backend_kv_row *rows, int n, char *err,
                               size_t err_size) {
    (void)err, (void)err_size;
    const model_hparams *hp = &be->m->hp;
    attention_job job = {.be = be, .layer = layer, .rows = rows, .n = n, .block_rows = 1, .units_per_block = hp->n_head};
    /* grouped at q8 when there are enough units to keep every thread busy:
     * blocks of rows whose heads of one KV head fill a call (2 rows of 3
     * heads, 1 row of 4, 6 rows of 1) */
    int group = hp->n_head / hp->n_head_kv;
    int block_rows = group >= CPU_ATTEND_GROUP ? 1 : CPU_ATTEND_GROUP / group;
    if (be->q8 && (n + block_rows - 1) / block_rows * hp->n_head_kv >= 4 * be->n_threads) {
        job.grouped = true;
        job.block_rows = block_rows;
        job.units_per_block = hp->n_head_kv;
    }
    atomic_init(&job.next, 0);
    if (be->n_threads == 1)
        attention_worker(&job, 0);
    else
        cpu_pool_run(be->pool, attention_worker, &job);
    return GRETA_OK;
}

/* ---- residual add, SwiGLU ---- */

typedef struct {
    backend_buf dst, src;
} add_arg;

static void add_row(backend_ctx *be, const void *p, int i) {
    const add_arg *a = p;
    float *y = row_of(be, a->dst, i);
    const float *x = row_of(be, a->src, i);
    for (int64_t k = 0; k < be->width[a->dst]; k++) y[k] += x[k];
}

static greta_status cpu_add(backend_ctx *be, backend_buf dst, backend_buf src, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    add_arg a = {dst, src};
    for_rows(be, n, add_row, &a);
    return GRETA_OK;
}

static void swiglu_row(backend_ctx *be, const void *p, int i) {
    (void)p;
    float *g = row_of(be, BUF_GATE, i);
    const float *u = row_of(be, BUF_UP, i);
    if (be->q8) {
        be->k->swiglu_q8(g, u, be->width[BUF_GATE]);
        return;
    }
    for (int64_t k = 0; k < be->width[BUF_GATE]; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
}

static greta_status cpu_swiglu(backend_ctx *be, int n, char *err, size_t err_size) {
    (void)err, (void)err_size;
    for_rows(be, n, swiglu_row, NULL);
    return GRETA_OK;
}

/* ---- the fused layer: the engine's step sequence, without trace points ---- */

static greta_status cpu_layer(backend_ctx *be, int il, const backend_kv_row *rows, int n, char *err,
                              size_t err_size) {
    const backend_weight qkv[3] = {backend_layer_weight(il, WEIGHT_Q), backend_layer_weight(il, WEIGHT_K),
                                   backend_layer_weight(il, WEIGHT_V)};
    const backend_buf qkv_dst[3] = {BUF_Q, BUF_K, BUF_V};
    const backend_weight wo[1] = {backend_layer_weight(il, WEIGHT_O)};
    const backend_weight gate_up[2] = {backend_layer_weight(il, WEIGHT_GATE), backend_layer_weight(il, WEIGHT_UP)};
    const backend_buf gate_up_dst[2] = {BUF_GATE, BUF_UP};
    const backend_weight down[1] = {backend_layer_weight(il, WEIGHT_DOWN)};
    const backend_buf proj[1] = {BUF_PROJ};
    greta_status st;
    if ((st = cpu_rmsnorm(be, BUF_XN, BUF_X, backend_layer_weight(il, WEIGHT_ATTN_NORM), n, err, err_size)) ||
        (st = cpu_matmul(be, 3, qkv, qkv_dst, BUF_XN, 0, n, err, err_size)) ||
        (st = cpu_rope(be, BUF_Q, n, err, err_size)) || (st = cpu_rope(be, BUF_K, n, err, err_size)) ||
        (st = cpu_kv_store(be, il, rows, n, err, err_size)) || (st = cpu_attend(be, il, rows, n, err, err_size)) ||
        (st = cpu_matmul(be, 1, wo, proj, BUF_ATT, 0, n, err, err_size)) ||
        (st = cpu_add(be, BUF_X, BUF_PROJ, n, err, err_size)) ||
        (st = cpu_rmsnorm(be, BUF_XN, BUF_X, backend_layer_weight(il, WEIGHT_FFN_NORM), n, err, err_size)) ||
        (st = cpu_matmul(be, 2, gate_up, gate_up_dst, BUF_XN, 0, n, err, err_size)) ||
        (st = cpu_swiglu(be, n, err, err_size)) || (st = cpu_matmul(be, 1, down, proj, BUF_GATE, 0, n, err, err_size)) ||
        (st = cpu_add(be, BUF_X, BUF_PROJ, n, err, err_size)))
        return st;
    return GRETA_OK;
}

/* ---- reading and writing rows ---- */

static greta_status cpu_read_rows(backend_ctx *be, backend_buf buf, int row0, int n, float *out32, double *out64,
                                  char *err, size_t err_size) {
    (void)err, (void)err_size;
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        const float *src = row_of(be, buf, row0 + r);
        if (out32) memcpy(out32 + (size_t)r * (size_t)w, src, (size_t)w * sizeof(float));
        if (out64)
            for (int64_t k = 0; k < w; k++) out64[(size_t)r * (size_t)w + (size_t)k] = (double)src[k];
    }
    return GRETA_OK;
}

static greta_status cpu_write_rows(backend_ctx *be, backend_buf buf, int row0, int n, const float *in32,
                                   const double *in64, char *err, size_t err_size) {
    (void)err, (void)err_size;
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        float *dst = row_of(be, buf, row0 + r);
        for (int64_t k = 0; k < w; k++) {
            size_t at = (size_t)r * (size_t)w + (size_t)k;
            dst[k] = in32 ? in32[at] : (float)in64[at];
        }
    }
    return GRETA_OK;
}

const backend_ops backend_cpu_ops = {
    .name = "cpu",
    .precision = "f32",
    .f64 = false,
    /* 32 MiB of activation rows per forward: with the q8 buffers, attention
     * scratch and the logits row, a 512-token prompt of the llama3.2-1b shape
     * stays within file + KV cache + 64 MB of RSS (issue 11); at 64 MiB it was
     * ~9 MiB over. Smaller models still get 512-row forwards. */
    .activation_budget = (size_t)32 << 20,
    .model_new = cpu_model_new,
    .model_free = cpu_model_free,
    .ctx_new = cpu_ctx_new,
    .ctx_free = cpu_ctx_free,
    .kv_new = cpu_kv_new,
    .kv_free = host_kv_free,
    .begin = cpu_begin,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attend = cpu_attend,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
    .layer = cpu_layer,
    .read_rows = cpu_read_rows,
    .write_rows = cpu_write_rows,
};
