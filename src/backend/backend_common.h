/* backend_common.h: what the cpu and ref backends (and any other) share
 * beyond their arithmetic: buffer widths and allocation sizes, the weight
 * table behind the weight ids, the KV cache layout, the RoPE frequency
 * table and angles (in double: cpu rounds them once to float, ref keeps
 * them). Each backend keeps only its own precision's math. */
#ifndef GRETA_BACKEND_COMMON_H
#define GRETA_BACKEND_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

/* Width of one row of buf for this model (n_embd, kv_dim, n_ff, n_vocab). */
int64_t backend_buf_width(const model_hparams *hp, backend_buf buf);
/* Rows of buf in a ctx: logits_rows for BUF_LOGITS, max_rows otherwise. */
size_t backend_buf_rows(const backend_ctx_config *config, backend_buf buf);
/* Longest weight row (input dimension) of any matrix the steps multiply:
 * max(n_embd, n_ff). */
int64_t backend_max_in(const model_hparams *hp);

/* The weights of a model by id: pointers into the model (and so into the
 * file mapping); nothing is copied. */
typedef struct {
    int32_t count;                /* WEIGHTS_GLOBAL + n_layer * WEIGHTS_PER_LAYER */
    const model_weight **matrix;  /* [count] NULL for a vector id */
    const float **vector;         /* [count] NULL for a matrix id */
} backend_weights;

/* Fills w for m; false on out of memory. */
bool backend_weights_init(backend_weights *w, const model *m);
void backend_weights_free(backend_weights *w);

/* Bytes of token t's embedding row (in the file's format). */
const uint8_t *backend_embedding_row(const model *m, int32_t token);

/* KV cache layout of cpu and ref: [n_layer][n_ctx][kv_dim] values for K and
 * again for V. Values per cache, and the offset of (layer, pos). */
size_t backend_kv_values(const model_hparams *hp, int32_t n_ctx);
size_t backend_kv_offset(const model_hparams *hp, int32_t n_ctx, int layer, int32_t pos);
/* Offset of query head h's KV head inside a kv_dim row (GQA: KV head
 * h / (n_head / n_head_kv)). */
size_t backend_kv_head_offset(const model_hparams *hp, int h);

/* RoPE: freq[j] = base^(-2j / rope_dim) / rope_freqs[j] for j < rope_dim/2
 * (rope_freqs only with llama3 scaling), computed once per model. */
double *backend_rope_freqs_new(const model *m);
/* Angles of position pos: theta_j = pos / linear_factor * freq[j];
 * cos_out[j], sin_out[j] in double for j < rope_dim / 2. */
void backend_rope_angles(const model_hparams *hp, const double *freqs, int32_t pos, double *cos_out,
                         double *sin_out);

/* ---- backends whose data live in host memory (cpu, ref) ---- */

/* Their per-model part: the weight table and the RoPE frequencies; no
 * weight is copied. cpu and ref hand it out as their backend_model
 * (host_model_of() converts back). */
typedef struct {
    const model *m;
    backend_weights w;
    double *rope_freqs; /* backend_rope_freqs_new */
} host_model;

greta_status host_model_new(const model *m, backend_model **out, char *err, size_t err_size);
void host_model_free(backend_model *bm);
/* The same in place, for a backend whose per-model struct begins with a
 * host_model (cpu: cpu.c), so host_model_of() still applies to it. */
greta_status host_model_init(host_model *hm, const model *m, char *err, size_t err_size);
void host_model_clear(host_model *hm);
const host_model *host_model_of(const backend_model *bm);

/* "default", "f32", "f16", "q8_0" (the names greta.h's greta_kv_type_name
 * gives, kept here so that backends need not call the API layer). */
const char *backend_kv_type_name(greta_kv_type kv_type);

/* Their KV cache: K and V of value_size-byte values (float, double) laid
 * out as backend_kv_offset says, zeroed. Handed out as a backend_kv. */
typedef struct {
    int32_t n_ctx;
    void *k;
    void *v;
} host_kv;

greta_status host_kv_new(const backend_model *bm, int32_t n_ctx, size_t value_size, backend_kv **out, char *err,
                         size_t err_size);
/* kv_store of a host backend: row i of k_rows / v_rows (activation
 * buffers, rows stride values apart) into layer's cache of rows[i].kv at
 * rows[i].pos. */
void host_kv_store(const model_hparams *hp, int layer, const backend_kv_row *rows, int n, const void *k_rows,
                   const void *v_rows, int64_t stride, size_t value_size);
void host_kv_free(backend_kv *kv);
const host_kv *host_kv_of(const backend_kv *kv);

/* Their activation buffers: buf[b] = backend_buf_rows x stride[b] zeroed
 * values of value_size bytes, stride[b] = width[b] rounded up to a multiple
 * of align values (the padding stays zero). False on out of memory (what
 * was allocated is freed). */
bool host_bufs_alloc(const model_hparams *hp, const backend_ctx_config *config, size_t value_size, int64_t align,
                     void *buf[BUF_COUNT], int64_t width[BUF_COUNT], int64_t stride[BUF_COUNT]);
void host_bufs_free(void *buf[BUF_COUNT]);

#endif
