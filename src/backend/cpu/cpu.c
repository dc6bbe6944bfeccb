/* backend_cpu.c: the float32 CPU backend.
 *
 * Weights stay in the file's format; matmul decodes a few weight rows at a
 * time into a per-thread buffer (backend_cpu_kernels.c) and multiplies them
 * against a panel of activation rows, so decoding is amortized over the
 * panel in prefill. Work is split into units (a block of weight rows x a
 * panel of activation rows; a (row, head) pair in attention; a row in the
 * element-wise ops) handed out to the session's threads. Every output
 * element is computed inside one unit in the fixed order of
 * backend_cpu_kernels.h, so results depend neither on the number of rows
 * in the forward nor on the number of threads. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_pool.h"
#include "base/faults.h"
#include "format/quant.h"

/* Weight rows per matmul unit and decoded together; activation rows per panel. */
#define UNIT_W_ROWS 16
#define DECODE_ROWS 8
#define PANEL_ROWS 48
/* Units per thread per matrix for a single activation row (decode). */
#define DECODE_UNITS_PER_THREAD 4

/* Below this many rows element-wise ops run on the calling thread. */
#define PARALLEL_MIN_ROWS 8

struct backend {
    const model *m;
    backend_config config;
    const cpu_kernels *k;
    cpu_pool *pool;
    int n_threads;
    float *buf[BUF_COUNT];
    int64_t width[BUF_COUNT];
    int64_t stride[BUF_COUNT]; /* width rounded up to 8, zero padded */
    float *k_cache;            /* [n_layer][n_ctx][kv_dim] */
    float *v_cache;
    int32_t *pos;              /* [max_rows] */
    float *rope_cos;           /* [max_rows][rope_dim / 2] */
    float *rope_sin;
    int64_t max_in;            /* longest weight row, rounded up to 8 */
    float **wbuf;              /* per thread: [DECODE_ROWS][max_in] */
    float **scores;            /* per thread: [n_ctx] */
};

static int64_t round8(int64_t n) {
    return (n + 7) / 8 * 8;
}

static float *row_of(backend *be, backend_buf b, int i) {
    return be->buf[b] + (size_t)i * (size_t)be->stride[b];
}

static void cpu_destroy(backend *be) {
    if (!be) return;
    cpu_pool_free(be->pool);
    for (int b = 0; b < BUF_COUNT; b++) free(be->buf[b]);
    free(be->k_cache);
    free(be->v_cache);
    free(be->pos);
    free(be->rope_cos);
    free(be->rope_sin);
    for (int t = 0; t < be->n_threads; t++) {
        if (be->wbuf) free(be->wbuf[t]);
        if (be->scores) free(be->scores[t]);
    }
    free(be->wbuf);
    free(be->scores);
    free(be);
}

static backend *cpu_create(const model *m, const backend_config *config, char *err, size_t err_size) {
    backend *be = calloc(1, sizeof *be);
    if (!be) goto oom;
    be->m = m;
    be->config = *config;
    be->k = cpu_kernels_best();
    be->n_threads = config->n_threads;
    const model_hparams *hp = &m->hp;
    be->width[BUF_X] = be->width[BUF_XN] = be->width[BUF_Q] = hp->n_embd;
    be->width[BUF_ATT] = be->width[BUF_PROJ] = hp->n_embd;
    be->width[BUF_K] = be->width[BUF_V] = hp->kv_dim;
    be->width[BUF_GATE] = be->width[BUF_UP] = hp->n_ff;
    be->width[BUF_LOGITS] = hp->n_vocab;
    for (int b = 0; b < BUF_COUNT; b++) {
        be->stride[b] = round8(be->width[b]);
        size_t rows = b == BUF_LOGITS ? (size_t)config->logits_rows : (size_t)config->max_rows;
        be->buf[b] = calloc(rows * (size_t)be->stride[b], sizeof(float));
        if (!be->buf[b]) goto oom;
    }
    size_t cache = (size_t)hp->n_layer * (size_t)config->n_ctx * (size_t)hp->kv_dim;
    be->k_cache = calloc(cache, sizeof(float));
    be->v_cache = calloc(cache, sizeof(float));
    be->pos = calloc((size_t)config->max_rows, sizeof(int32_t));
    be->rope_cos = calloc((size_t)config->max_rows * (size_t)(hp->rope_dim / 2), sizeof(float));
    be->rope_sin = calloc((size_t)config->max_rows * (size_t)(hp->rope_dim / 2), sizeof(float));
    be->max_in = round8(hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff);
    be->wbuf = calloc((size_t)be->n_threads, sizeof(float *));
    be->scores = calloc((size_t)be->n_threads, sizeof(float *));
    if (!be->k_cache || !be->v_cache || !be->pos || !be->rope_cos || !be->rope_sin || !be->wbuf || !be->scores)
        goto oom;
    for (int t = 0; t < be->n_threads; t++) {
        be->wbuf[t] = aligned_alloc(64, (size_t)DECODE_ROWS * (size_t)be->max_in * sizeof(float));
        be->scores[t] = malloc((size_t)config->n_ctx * sizeof(float));
        if (!be->wbuf[t] || !be->scores[t]) goto oom;
    }
    char perr[200] = "";
    be->pool = cpu_pool_new(be->n_threads, perr, sizeof perr);
    if (!be->pool) {
        snprintf(err, err_size, "%s", perr);
        cpu_destroy(be);
        return NULL;
    }
    return be;
oom:
    snprintf(err, err_size, "out of memory for the KV cache and activations (%d positions)", config->n_ctx);
    cpu_destroy(be);
    return NULL;
}

/* ---- row-parallel element-wise ops ---- */

typedef void (*row_fn)(backend *be, const void *arg, int i);

typedef struct {
    backend *be;
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

static void for_rows(backend *be, int n, row_fn fn, const void *arg) {
    if (n < PARALLEL_MIN_ROWS || be->n_threads == 1) {
        for (int i = 0; i < n; i++) fn(be, arg, i);
        return;
    }
    rows_job job = {.be = be, .fn = fn, .arg = arg, .n = n};
    atomic_init(&job.next, 0);
    cpu_pool_run(be->pool, rows_worker, &job);
}

/* ---- begin: embeddings and RoPE angles ---- */

static void cpu_begin(backend *be, const int32_t *tokens, const int32_t *pos, int n) {
    const model *m = be->m;
    const model_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    for (int i = 0; i < n; i++) {
        be->pos[i] = pos[i];
        size_t emb_row = (size_t)tokens[i];
#ifdef GRETA_FAULTS
        if (faults_active() == FAULT_EMBED_ROW) emb_row = (emb_row + 1) % (size_t)hp->n_vocab;
#endif
        const uint8_t *emb = m->token_embd.data + emb_row * m->token_embd.row_bytes;
        quant_dequantize(m->token_embd.type, emb, row_of(be, BUF_X, i), hp->n_embd);
        /* Angles in double, rounded once to float: theta_j = pos / factor *
         * base^(-2j / rope_dim) / rope_freqs[j]. */
        double p = (double)pos[i] / hp->rope_scale_factor;
#ifdef GRETA_FAULTS
        if (faults_active() == FAULT_ROPE_POS) p = (double)i / hp->rope_scale_factor;
#endif
        for (int j = 0; j < half; j++) {
            double freq = pow(hp->rope_freq_base, -2.0 * j / hp->rope_dim);
            if (m->rope_freqs) freq /= (double)m->rope_freqs[j];
            double theta = p * freq;
            be->rope_cos[(size_t)i * half + j] = (float)cos(theta);
            be->rope_sin[(size_t)i * half + j] = (float)sin(theta);
        }
    }
}

/* ---- RMSNorm ---- */

typedef struct {
    backend_buf dst, src;
    const float *weight;
} rmsnorm_arg;

static void rmsnorm_row(backend *be, const void *p, int i) {
    const rmsnorm_arg *a = p;
    int64_t d = be->width[a->src];
    const float *x = row_of(be, a->src, i);
    float *y = row_of(be, a->dst, i);
    float ss = be->k->dot(x, x, d);
    float eps = (float)be->m->hp.rms_eps;
#ifdef GRETA_FAULTS
    if (faults_active() == FAULT_RMS_EPS) eps *= 1000.0f;
#endif
    float scale = 1.0f / sqrtf(ss / (float)d + eps);
    for (int64_t k = 0; k < d; k++) y[k] = (x[k] * scale) * a->weight[k];
}

static void cpu_rmsnorm(backend *be, backend_buf dst, backend_buf src, const float *weight, int n) {
    rmsnorm_arg a = {dst, src, weight};
    for_rows(be, n, rmsnorm_row, &a);
}

/* ---- matmul ---- */

typedef struct {
    backend *be;
    int n_mats;
    const model_weight *const *w;
    const backend_buf *dst;
    const float *x;      /* first activation row */
    int64_t xs;          /* its stride */
    int n;               /* activation rows */
    int n_panels;
    int64_t unit_rows[4]; /* weight rows per unit, per matrix */
    int64_t unit_end[4];  /* cumulative unit counts per matrix */
    atomic_long next;
} matmul_job;

static void matmul_unit(matmul_job *job, int thread, int mat, int64_t wblock, int panel) {
    backend *be = job->be;
    const model_weight *w = job->w[mat];
    int64_t n8 = round8(w->n_in);
    int64_t r_begin = wblock * job->unit_rows[mat];
    int64_t r_end = r_begin + job->unit_rows[mat] < w->n_out ? r_begin + job->unit_rows[mat] : w->n_out;
    int t_begin = panel * PANEL_ROWS;
    int t_count = job->n - t_begin < PANEL_ROWS ? job->n - t_begin : PANEL_ROWS;
    float *wbuf = be->wbuf[thread];
    backend_buf dst = job->dst[mat];
    int64_t ys = be->stride[dst];
    /* One activation row (a decode step): decode in registers, no buffer. */
    if (t_count == 1 && be->k->dot_rows &&
        be->k->dot_rows(w, r_begin, (int)(r_end - r_begin), job->x + (size_t)t_begin * job->xs,
                        be->buf[dst] + (size_t)t_begin * ys + r_begin))
        return;
    for (int64_t r = r_begin; r < r_end; r += DECODE_ROWS) {
        int rows = (int)(r_end - r < DECODE_ROWS ? r_end - r : DECODE_ROWS);
        be->k->decode_rows(w, r, rows, wbuf, n8);
        be->k->tile(wbuf, n8, rows, job->x + (size_t)t_begin * job->xs, job->xs, t_count,
                    be->buf[dst] + (size_t)t_begin * ys + r, ys, n8);
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

#ifdef GRETA_FAULTS
/* Planted fault k_transposed: each head of K in HF order (i, i + hd/2)
 * instead of the GGUF pair order (2i, 2i+1), as if the converter's Q/K
 * row permutation had been missed. */
static void fault_permute_k(backend *be, int n_mats, const backend_buf *dst, int n) {
    int hd = be->m->hp.head_dim;
    float tmp[1024];
    if (hd > 1024) return;
    for (int k = 0; k < n_mats; k++) {
        if (dst[k] != BUF_K) continue;
        for (int i = 0; i < n; i++) {
            float *row = row_of(be, BUF_K, i);
            for (int64_t h = 0; h < be->width[BUF_K] / hd; h++) {
                float *v = row + h * hd;
                for (int j = 0; j < hd / 2; j++) tmp[2 * j] = v[j], tmp[2 * j + 1] = v[j + hd / 2];
                memcpy(v, tmp, (size_t)hd * sizeof *v);
            }
        }
    }
}
#endif

static void cpu_matmul(backend *be, int n_mats, const model_weight *const *weights, const backend_buf *dst,
                       backend_buf src, int src_row0, int n) {
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
        if (n == 1 && be->n_threads > 1) {
            int64_t share = weights[i]->n_out / ((int64_t)be->n_threads * DECODE_UNITS_PER_THREAD);
            share = (share + DECODE_ROWS - 1) / DECODE_ROWS * DECODE_ROWS;
            if (share > rows) rows = share;
        }
        job.unit_rows[i] = rows;
        units += (weights[i]->n_out + rows - 1) / rows * job.n_panels;
        job.unit_end[i] = units;
    }
    atomic_init(&job.next, 0);
    if (be->n_threads == 1)
        matmul_worker(&job, 0);
    else
        cpu_pool_run(be->pool, matmul_worker, &job);
#ifdef GRETA_FAULTS
    if (faults_active() == FAULT_K_TRANSPOSED) fault_permute_k(be, n_mats, dst, n);
#endif
}

/* ---- RoPE (llama normal mode: adjacent pairs) ---- */

static void rope_row(backend *be, const void *p, int i) {
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

static void cpu_rope(backend *be, backend_buf buf, int n) {
    for_rows(be, n, rope_row, &buf);
}

/* ---- attention ---- */

typedef struct {
    backend *be;
    const float *kc, *vc; /* this layer's cache */
    int n;
    atomic_int next;
} attention_job;

static void attention_unit(attention_job *job, int thread, int i, int h) {
    backend *be = job->be;
    const model_hparams *hp = &be->m->hp;
    int hd = hp->head_dim;
    size_t off = (size_t)(h / (hp->n_head / hp->n_head_kv)) * (size_t)hd;
    const float *q = row_of(be, BUF_Q, i) + (size_t)h * hd;
    float *out = row_of(be, BUF_ATT, i) + (size_t)h * hd;
    float scale = 1.0f / sqrtf((float)hd);
    be->k->attend(q, job->kc + off, job->vc + off, (size_t)hp->kv_dim, hd, be->pos[i] + 1, scale, be->scores[thread],
                  out);
}

static void attention_worker(void *p, int thread) {
    attention_job *job = p;
    int n_head = job->be->m->hp.n_head;
    int total = job->n * n_head;
    for (int u; (u = atomic_fetch_add(&job->next, 1)) < total;) attention_unit(job, thread, u / n_head, u % n_head);
}

static void cpu_attention(backend *be, int layer, int n) {
    const model_hparams *hp = &be->m->hp;
    size_t kv_dim = (size_t)hp->kv_dim;
    float *kc = be->k_cache + (size_t)layer * (size_t)be->config.n_ctx * kv_dim;
    float *vc = be->v_cache + (size_t)layer * (size_t)be->config.n_ctx * kv_dim;
    for (int i = 0; i < n; i++) {
#ifdef GRETA_FAULTS
        if (faults_active() == FAULT_STALE_KV && layer == 1 && n == 1) continue;
#endif
        memcpy(kc + (size_t)be->pos[i] * kv_dim, row_of(be, BUF_K, i), kv_dim * sizeof(float));
        memcpy(vc + (size_t)be->pos[i] * kv_dim, row_of(be, BUF_V, i), kv_dim * sizeof(float));
    }
    attention_job job = {.be = be, .kc = kc, .vc = vc, .n = n};
    atomic_init(&job.next, 0);
    if (be->n_threads == 1)
        attention_worker(&job, 0);
    else
        cpu_pool_run(be->pool, attention_worker, &job);
}

/* ---- residual add, SwiGLU ---- */

typedef struct {
    backend_buf dst, src;
} add_arg;

static void add_row(backend *be, const void *p, int i) {
    const add_arg *a = p;
    float *y = row_of(be, a->dst, i);
    const float *x = row_of(be, a->src, i);
    for (int64_t k = 0; k < be->width[a->dst]; k++) y[k] += x[k];
}

static void cpu_add(backend *be, backend_buf dst, backend_buf src, int n) {
    add_arg a = {dst, src};
    for_rows(be, n, add_row, &a);
}

static void swiglu_row(backend *be, const void *p, int i) {
    (void)p;
    float *g = row_of(be, BUF_GATE, i);
    const float *u = row_of(be, BUF_UP, i);
    for (int64_t k = 0; k < be->width[BUF_GATE]; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
}

static void cpu_swiglu(backend *be, int n) {
    for_rows(be, n, swiglu_row, NULL);
}

/* ---- tracing, logits ---- */

/* Copies rows [row0, row0 + n) of buf, each width wide, into out32
 * [n][width] and/or out64 [n][width] (either may be NULL). */
static void cpu_read_rows(backend *be, backend_buf buf, int row0, int n, float *out32, double *out64) {
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        const float *src = row_of(be, buf, row0 + r);
        if (out32) memcpy(out32 + (size_t)r * (size_t)w, src, (size_t)w * sizeof(float));
        if (out64)
            for (int64_t k = 0; k < w; k++) out64[(size_t)r * (size_t)w + (size_t)k] = (double)src[k];
    }
}

const backend_ops backend_cpu_ops = {
    .name = "cpu",
    .precision = "f32",
    .f64 = false,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .begin = cpu_begin,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
    .read_rows = cpu_read_rows,
};
