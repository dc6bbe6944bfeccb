/* backend_ref.c: the FP64 reference backend, the oracle.
 *
 * Weights are dequantized exactly (quant_dequantize, bit-exact with ggml)
 * and promoted to double; every activation, accumulation, the KV cache and
 * the logits are double. Single-threaded, plain loops in the textbook order:
 * this backend is meant to be obviously right, not fast. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "format/quant.h"

struct backend {
    const model *m;
    backend_config config;
    double *buf[BUF_COUNT];
    int64_t width[BUF_COUNT];
    double *k_cache;      /* [n_layer][n_ctx][kv_dim] */
    double *v_cache;      /* [n_layer][n_ctx][kv_dim] */
    int32_t *pos;         /* [max_rows] positions of the current forward */
    double *rope_cos;     /* [max_rows][rope_dim / 2] */
    double *rope_sin;
    double *scores;       /* [n_ctx] */
    float *row_f32;       /* [max(n_in of any matrix)] one dequantized weight row */
    double *row_f64;
};

static void ref_destroy(backend *be) {
    if (!be) return;
    for (int b = 0; b < BUF_COUNT; b++) free(be->buf[b]);
    free(be->k_cache);
    free(be->v_cache);
    free(be->pos);
    free(be->rope_cos);
    free(be->rope_sin);
    free(be->scores);
    free(be->row_f32);
    free(be->row_f64);
    free(be);
}

static backend *ref_create(const model *m, const backend_config *config, char *err, size_t err_size) {
    backend *be = calloc(1, sizeof *be);
    if (!be) goto oom;
    be->m = m;
    be->config = *config;
    const model_hparams *hp = &m->hp;
    be->width[BUF_X] = be->width[BUF_XN] = be->width[BUF_Q] = hp->n_embd;
    be->width[BUF_ATT] = be->width[BUF_PROJ] = hp->n_embd;
    be->width[BUF_K] = be->width[BUF_V] = hp->kv_dim;
    be->width[BUF_GATE] = be->width[BUF_UP] = hp->n_ff;
    be->width[BUF_LOGITS] = hp->n_vocab;
    for (int b = 0; b < BUF_COUNT; b++) {
        size_t rows = b == BUF_LOGITS ? (size_t)config->logits_rows : (size_t)config->max_rows;
        be->buf[b] = calloc(rows * (size_t)be->width[b], sizeof(double));
        if (!be->buf[b]) goto oom;
    }
    size_t cache = (size_t)hp->n_layer * (size_t)config->n_ctx * (size_t)hp->kv_dim;
    be->k_cache = calloc(cache, sizeof(double));
    be->v_cache = calloc(cache, sizeof(double));
    be->pos = calloc((size_t)config->max_rows, sizeof(int32_t));
    be->rope_cos = calloc((size_t)config->max_rows * (size_t)(hp->rope_dim / 2), sizeof(double));
    be->rope_sin = calloc((size_t)config->max_rows * (size_t)(hp->rope_dim / 2), sizeof(double));
    be->scores = calloc((size_t)config->n_ctx, sizeof(double));
    int64_t max_in = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
    be->row_f32 = calloc((size_t)max_in, sizeof(float));
    be->row_f64 = calloc((size_t)max_in, sizeof(double));
    if (!be->k_cache || !be->v_cache || !be->pos || !be->rope_cos || !be->rope_sin || !be->scores ||
        !be->row_f32 || !be->row_f64)
        goto oom;
    return be;
oom:
    snprintf(err, err_size, "out of memory for the KV cache and activations (%d positions)", config->n_ctx);
    ref_destroy(be);
    return NULL;
}

static double *row_of(backend *be, backend_buf b, int i) {
    return be->buf[b] + (size_t)i * (size_t)be->width[b];
}

/* theta of pair j at position pos, in double: pos / linear_factor *
 * base^(-2j / rope_dim) / rope_freqs[j]. */
static void ref_begin(backend *be, const int32_t *tokens, const int32_t *pos, int n) {
    const model *m = be->m;
    const model_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    for (int i = 0; i < n; i++) {
        be->pos[i] = pos[i];
        const uint8_t *emb = m->token_embd.data + (size_t)tokens[i] * m->token_embd.row_bytes;
        quant_dequantize(m->token_embd.type, emb, be->row_f32, hp->n_embd);
        double *x = row_of(be, BUF_X, i);
        for (int k = 0; k < hp->n_embd; k++) x[k] = (double)be->row_f32[k];
        double p = (double)pos[i] / hp->rope_scale_factor;
        for (int j = 0; j < half; j++) {
            double freq = pow(hp->rope_freq_base, -2.0 * j / hp->rope_dim);
            if (m->rope_freqs) freq /= (double)m->rope_freqs[j];
            double theta = p * freq;
            be->rope_cos[(size_t)i * half + j] = cos(theta);
            be->rope_sin[(size_t)i * half + j] = sin(theta);
        }
    }
}

static void ref_rmsnorm(backend *be, backend_buf dst, backend_buf src, const float *weight, int n) {
    int64_t d = be->width[src];
    for (int i = 0; i < n; i++) {
        const double *x = row_of(be, src, i);
        double *y = row_of(be, dst, i);
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += x[k] * x[k];
        double scale = 1.0 / sqrt(ss / (double)d + be->m->hp.rms_eps);
        for (int64_t k = 0; k < d; k++) y[k] = x[k] * scale * (double)weight[k];
    }
}

static void ref_matmul(backend *be, int n_mats, const model_weight *const *weights, const backend_buf *dst,
                       backend_buf src, int src_row0, int n) {
    for (int w = 0; w < n_mats; w++) {
        const model_weight *W = weights[w];
        for (int64_t r = 0; r < W->n_out; r++) {
            quant_dequantize(W->type, W->data + (size_t)r * W->row_bytes, be->row_f32, W->n_in);
            for (int64_t k = 0; k < W->n_in; k++) be->row_f64[k] = (double)be->row_f32[k];
            for (int i = 0; i < n; i++) {
                const double *x = row_of(be, src, src_row0 + i);
                double acc = 0;
                for (int64_t k = 0; k < W->n_in; k++) acc += be->row_f64[k] * x[k];
                row_of(be, dst[w], i)[r] = acc;
            }
        }
    }
}

/* llama "normal" RoPE: adjacent pairs (x[2j], x[2j+1]) of each head. */
static void ref_rope(backend *be, backend_buf buf, int n) {
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
}

static void ref_attention(backend *be, int layer, int n) {
    const model_hparams *hp = &be->m->hp;
    size_t kv_dim = (size_t)hp->kv_dim;
    double *kc = be->k_cache + (size_t)layer * (size_t)be->config.n_ctx * kv_dim;
    double *vc = be->v_cache + (size_t)layer * (size_t)be->config.n_ctx * kv_dim;
    for (int i = 0; i < n; i++) {
        memcpy(kc + (size_t)be->pos[i] * kv_dim, row_of(be, BUF_K, i), kv_dim * sizeof(double));
        memcpy(vc + (size_t)be->pos[i] * kv_dim, row_of(be, BUF_V, i), kv_dim * sizeof(double));
    }
    int group = hp->n_head / hp->n_head_kv;
    double scale = 1.0 / sqrt((double)hp->head_dim);
    for (int i = 0; i < n; i++) {
        int32_t p = be->pos[i];
        for (int h = 0; h < hp->n_head; h++) {
            const double *q = row_of(be, BUF_Q, i) + (size_t)h * hp->head_dim;
            double *out = row_of(be, BUF_ATT, i) + (size_t)h * hp->head_dim;
            size_t off = (size_t)(h / group) * hp->head_dim;
            double max = -INFINITY;
            for (int32_t t = 0; t <= p; t++) {
                const double *k = kc + (size_t)t * kv_dim + off;
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
                const double *v = vc + (size_t)t * kv_dim + off;
                double w = be->scores[t] / sum;
                for (int d = 0; d < hp->head_dim; d++) out[d] += w * v[d];
            }
        }
    }
}

static void ref_add(backend *be, backend_buf dst, backend_buf src, int n) {
    for (int i = 0; i < n; i++) {
        double *y = row_of(be, dst, i);
        const double *x = row_of(be, src, i);
        for (int64_t k = 0; k < be->width[dst]; k++) y[k] += x[k];
    }
}

static void ref_swiglu(backend *be, int n) {
    for (int i = 0; i < n; i++) {
        double *g = row_of(be, BUF_GATE, i);
        const double *u = row_of(be, BUF_UP, i);
        for (int64_t k = 0; k < be->width[BUF_GATE]; k++) g[k] = g[k] / (1.0 + exp(-g[k])) * u[k];
    }
}

/* Copies rows [row0, row0 + n) of buf, each width wide, into out32
 * [n][width] (rounded to float) and/or out64 [n][width]. */
static void ref_read_rows(backend *be, backend_buf buf, int row0, int n, float *out32, double *out64) {
    int64_t w = be->width[buf];
    for (int r = 0; r < n; r++) {
        const double *src = row_of(be, buf, row0 + r);
        size_t off = (size_t)r * (size_t)w;
        for (int64_t k = 0; k < w; k++) {
            if (out32) out32[off + (size_t)k] = (float)src[k];
            if (out64) out64[off + (size_t)k] = src[k];
        }
    }
}

const backend_ops backend_ref_ops = {
    .name = "ref",
    .precision = "f64",
    .f64 = true,
    .create = ref_create,
    .destroy = ref_destroy,
    .begin = ref_begin,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .rope = ref_rope,
    .attention = ref_attention,
    .add = ref_add,
    .swiglu = ref_swiglu,
    .read_rows = ref_read_rows,
};
