/* backend_common.c: shapes, weight table, KV layout and RoPE angles shared
 * by the backends (backend_common.h). */
#include "backend/backend_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"

int64_t backend_buf_width(const model_hparams *hp, backend_buf buf) {
    switch (buf) {
    case BUF_K:
    case BUF_V: return hp->kv_dim;
    case BUF_GATE:
    case BUF_UP: return hp->n_ff;
    case BUF_LOGITS: return hp->n_vocab;
    default: return hp->n_embd;
    }
}

const char *backend_kv_type_name(greta_kv_type kv_type) {
    switch (kv_type) {
    case GRETA_KV_DEFAULT: return "default";
    case GRETA_KV_F32: return "f32";
    case GRETA_KV_F16: return "f16";
    case GRETA_KV_Q8_0: return "q8_0";
    }
    return "unknown";
}

size_t backend_buf_rows(const backend_ctx_config *config, backend_buf buf) {
    return (size_t)(buf == BUF_LOGITS ? config->logits_rows : config->max_rows);
}

int64_t backend_max_in(const model_hparams *hp) {
    return hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
}

bool backend_weights_init(backend_weights *w, const model *m) {
    w->count = WEIGHTS_GLOBAL + m->hp.n_layer * WEIGHTS_PER_LAYER;
    w->matrix = calloc((size_t)w->count, sizeof *w->matrix);
    w->vector = calloc((size_t)w->count, sizeof *w->vector);
    if (!w->matrix || !w->vector) {
        backend_weights_free(w);
        return false;
    }
    w->matrix[WEIGHT_TOKEN_EMBD] = &m->token_embd;
    w->vector[WEIGHT_OUTPUT_NORM] = m->output_norm;
    w->matrix[WEIGHT_OUTPUT] = &m->output;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *L = &m->layers[il];
        w->vector[backend_layer_weight(il, WEIGHT_ATTN_NORM)] = L->attn_norm;
        w->matrix[backend_layer_weight(il, WEIGHT_Q)] = &L->wq;
        w->matrix[backend_layer_weight(il, WEIGHT_K)] = &L->wk;
        w->matrix[backend_layer_weight(il, WEIGHT_V)] = &L->wv;
        w->matrix[backend_layer_weight(il, WEIGHT_O)] = &L->wo;
        w->vector[backend_layer_weight(il, WEIGHT_FFN_NORM)] = L->ffn_norm;
        w->matrix[backend_layer_weight(il, WEIGHT_GATE)] = &L->w_gate;
        w->matrix[backend_layer_weight(il, WEIGHT_UP)] = &L->w_up;
        w->matrix[backend_layer_weight(il, WEIGHT_DOWN)] = &L->w_down;
    }
    return true;
}

void backend_weights_free(backend_weights *w) {
    free(w->matrix);
    free(w->vector);
    w->matrix = NULL;
    w->vector = NULL;
    w->count = 0;
}

const uint8_t *backend_embedding_row(const model *m, int32_t token) {
    return m->token_embd.data + (size_t)token * m->token_embd.row_bytes;
}

size_t backend_kv_values(const model_hparams *hp, int32_t n_ctx) {
    return (size_t)hp->n_layer * (size_t)n_ctx * (size_t)hp->kv_dim;
}

size_t backend_kv_offset(const model_hparams *hp, int32_t n_ctx, int layer, int32_t pos) {
    return ((size_t)layer * (size_t)n_ctx + (size_t)pos) * (size_t)hp->kv_dim;
}

size_t backend_kv_head_offset(const model_hparams *hp, int h) {
    return (size_t)(h / (hp->n_head / hp->n_head_kv)) * (size_t)hp->head_dim;
}

double *backend_rope_freqs_new(const model *m) {
    const model_hparams *hp = &m->hp;
    int half = hp->rope_dim / 2;
    double *freqs = malloc((size_t)(half > 0 ? half : 1) * sizeof *freqs);
    if (!freqs) return NULL;
    for (int j = 0; j < half; j++) {
        double freq = pow(hp->rope_freq_base, -2.0 * j / hp->rope_dim);
        if (m->rope_freqs) freq /= (double)m->rope_freqs[j];
        freqs[j] = freq;
    }
    return freqs;
}

void backend_rope_angles(const model_hparams *hp, const double *freqs, int32_t pos, double *cos_out,
                         double *sin_out) {
    double p = (double)pos / hp->rope_scale_factor;
    for (int j = 0; j < hp->rope_dim / 2; j++) {
        double theta = p * freqs[j];
        cos_out[j] = cos(theta);
        sin_out[j] = sin(theta);
    }
}

/* ---- host-memory backends ---- */

greta_status host_model_init(host_model *hm, const model *m, char *err, size_t err_size) {
    memset(hm, 0, sizeof *hm);
    hm->m = m;
    hm->rope_freqs = backend_rope_freqs_new(m);
    if (!hm->rope_freqs || !backend_weights_init(&hm->w, m)) {
        host_model_clear(hm);
        format_error(err, err_size, "out of memory placing the weights");
        return GRETA_ERR_NO_MEMORY;
    }
    return GRETA_OK;
}

void host_model_clear(host_model *hm) {
    backend_weights_free(&hm->w);
    free(hm->rope_freqs);
    hm->rope_freqs = NULL;
}

greta_status host_model_new(const model *m, backend_model **out, char *err, size_t err_size) {
    *out = NULL;
    host_model *hm = malloc(sizeof *hm);
    if (!hm) {
        format_error(err, err_size, "out of memory placing the weights");
        return GRETA_ERR_NO_MEMORY;
    }
    greta_status st = host_model_init(hm, m, err, err_size);
    if (st != GRETA_OK) {
        free(hm);
        return st;
    }
    *out = (backend_model *)(void *)hm;
    return GRETA_OK;
}

void host_model_free(backend_model *bm) {
    host_model *hm = (host_model *)(void *)bm;
    if (!hm) return;
    host_model_clear(hm);
    free(hm);
}

const host_model *host_model_of(const backend_model *bm) {
    return (const host_model *)(const void *)bm;
}

greta_status host_kv_new(const backend_model *bm, int32_t n_ctx, size_t value_size, backend_kv **out, char *err,
                         size_t err_size) {
    *out = NULL;
    host_kv *kv = calloc(1, sizeof *kv);
    size_t values = backend_kv_values(&host_model_of(bm)->m->hp, n_ctx);
    if (kv) {
        kv->n_ctx = n_ctx;
        kv->k = calloc(values, value_size);
        kv->v = calloc(values, value_size);
    }
    if (!kv || !kv->k || !kv->v) {
        host_kv_free((backend_kv *)(void *)kv);
        format_error(err, err_size, "out of memory for the KV cache (%d positions)", n_ctx);
        return GRETA_ERR_NO_MEMORY;
    }
    *out = (backend_kv *)(void *)kv;
    return GRETA_OK;
}

void host_kv_free(backend_kv *bkv) {
    host_kv *kv = (host_kv *)(void *)bkv;
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

const host_kv *host_kv_of(const backend_kv *kv) {
    return (const host_kv *)(const void *)kv;
}

void host_kv_store(const model_hparams *hp, int layer, const backend_kv_row *rows, int n, const void *k_rows,
                   const void *v_rows, int64_t stride, size_t value_size) {
    size_t row_bytes = (size_t)hp->kv_dim * value_size;
    for (int i = 0; i < n; i++) {
        const host_kv *kv = host_kv_of(rows[i].kv);
        size_t to = backend_kv_offset(hp, kv->n_ctx, layer, rows[i].pos) * value_size;
        size_t from = (size_t)i * (size_t)stride * value_size;
        memcpy((char *)kv->k + to, (const char *)k_rows + from, row_bytes);
        memcpy((char *)kv->v + to, (const char *)v_rows + from, row_bytes);
    }
}

bool host_bufs_alloc(const model_hparams *hp, const backend_ctx_config *config, size_t value_size, int64_t align,
                     void *buf[BUF_COUNT], int64_t width[BUF_COUNT], int64_t stride[BUF_COUNT]) {
    for (int b = 0; b < BUF_COUNT; b++) buf[b] = NULL;
    for (int b = 0; b < BUF_COUNT; b++) {
        width[b] = backend_buf_width(hp, (backend_buf)b);
        stride[b] = (width[b] + align - 1) / align * align;
        buf[b] = calloc(backend_buf_rows(config, (backend_buf)b) * (size_t)stride[b], value_size);
        if (!buf[b]) {
            host_bufs_free(buf);
            return false;
        }
    }
    return true;
}

void host_bufs_free(void *buf[BUF_COUNT]) {
    for (int b = 0; b < BUF_COUNT; b++) {
        free(buf[b]);
        buf[b] = NULL;
    }
}
