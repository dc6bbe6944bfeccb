/* cuda_device.h: the GPU side of the cuda backend as plain C functions
 * (implemented in cuda_device.cu, compiled by nvcc; this header includes no
 * CUDA header, so cuda.c is ordinary C11).
 *
 * Memory: device pointers are void * / float * / uint16_t * that only the
 * functions here dereference. Every function that can fail returns 0 on
 * success or -1 with one line in (err, err_size). Kernel launches are
 * asynchronous on the stream; a launch error is reported by the launch's
 * return value (cudaGetLastError, no synchronization). Only
 * gpu_copy_rows_to_host() and gpu_stream_sync() wait for the stream.
 *
 * Numerics (docs/cuda.md): weights are dequantized inside the kernels
 * bit-exactly as quant_dequantize() does (the file is built with
 * --fmad=false: no contraction of a*b+c anywhere except explicit fmaf);
 * activations and accumulation are float32; the KV cache is f16 (round to
 * nearest even). Every output element is computed by one warp or thread in
 * an order that depends only on the model's sizes and the row's own
 * position, never on how many rows a forward has: prefill and decode give
 * the same bits. */
#ifndef GRETA_CUDA_DEVICE_H
#define GRETA_CUDA_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpu_stream gpu_stream;

/* Selects device 0 and reports its name and memory. */
int gpu_device_open(char *name, size_t name_size, size_t *free_bytes, size_t *total_bytes, char *err,
                    size_t err_size);
int gpu_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t err_size);
int gpu_alloc(void **ptr, size_t bytes, const char *what, char *err, size_t err_size);
void gpu_free(void *ptr);
/* Synchronous host -> device copy (used once per model for the weights). */
int gpu_upload(void *dst, const void *src, size_t bytes, char *err, size_t err_size);

int gpu_stream_new(gpu_stream **out, char *err, size_t err_size);
void gpu_stream_free(gpu_stream *s);
int gpu_stream_sync(gpu_stream *s, char *err, size_t err_size);
/* Host -> device copy ordered on the stream (from pageable memory: the
 * runtime copies src before returning, so src may be reused at once). */
int gpu_upload_async(gpu_stream *s, void *dst, const void *src, size_t bytes, char *err, size_t err_size);
/* Waits for the stream, then copies n rows of width floats, src_stride
 * apart on the device, into dst [n][width]. */
int gpu_copy_rows_to_host(gpu_stream *s, float *dst, const float *src, int64_t src_stride, int64_t width, int n,
                          char *err, size_t err_size);
/* The reverse (ordered on the stream; src copied before return). */
int gpu_copy_rows_to_device(gpu_stream *s, float *dst, int64_t dst_stride, const float *src, int64_t width, int n,
                            char *err, size_t err_size);

/* True if the kernels know this quant.h type id. */
int gpu_type_supported(uint32_t type);

/* ---- kernels (each returns 0 or -1 with the launch error) ---- */

/* x[i] = dequantized row tokens[i] of table (row_bytes per row, n_embd values). tokens: device [n]. */
int gpu_embed(gpu_stream *s, uint32_t type, const void *table, size_t row_bytes, int64_t n_embd,
              const int32_t *tokens, int n, float *x, int64_t xs, char *err, size_t err_size);
/* dst[i] = src[i] / sqrt(mean(src[i]^2) + eps) * w. */
int gpu_rmsnorm(gpu_stream *s, float *dst, int64_t ds, const float *src, int64_t ss, const float *w, int64_t d,
                float eps, int n, char *err, size_t err_size);
/* y[i][r] = W[r] . x[i] for r < n_out, i < n (W: n_out rows of n_in values of type). */
int gpu_matmul(gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in, int64_t n_out,
               const float *x, int64_t xs, float *y, int64_t ys, int n, char *err, size_t err_size);
/* Rotates pairs (2j, 2j+1), j < rope_dim/2, of each head_dim-wide head of
 * buf row i by cos/sin [n][rope_dim/2] (device). */
int gpu_rope(gpu_stream *s, float *buf, int64_t stride, int64_t width, int head_dim, int rope_dim,
             const float *cos_table, const float *sin_table, int n, char *err, size_t err_size);

/* Rows of a forward in their sequences' caches: for row i, k[i] and v[i]
 * are the first value of this layer's cache ([n_ctx][kv_dim] values, f16
 * or, with f32 set, float32) and pos[i] its position. Passed by value; at
 * most GPU_KV_GROUP rows. */
#define GPU_KV_GROUP 32
typedef struct {
    void *k[GPU_KV_GROUP];
    void *v[GPU_KV_GROUP];
    int32_t pos[GPU_KV_GROUP];
    int32_t row0; /* first activation row of the group */
    int32_t n;    /* rows in the group */
    int32_t f32;  /* 1: the caches hold float32 (diagnostic option), 0: f16 */
} gpu_kv_group;

/* Cache[pos] = K row, V row (rounded to f16 unless f32) for each row of the group. */
int gpu_kv_store(gpu_stream *s, const float *k, const float *v, int64_t stride, int64_t kv_dim,
                 const gpu_kv_group *group, char *err, size_t err_size);
/* att[i] = softmax over t <= pos[i] of (q[i].k_t * scale), times v_t, per
 * head (GQA: head h reads KV head h / (n_head / n_head_kv)). */
int gpu_attend(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
               int n_head_kv, int head_dim, float scale, const gpu_kv_group *group, char *err, size_t err_size);
/* dst[i] += src[i]. */
int gpu_add(gpu_stream *s, float *dst, int64_t ds, const float *src, int64_t ss, int64_t width, int n, char *err,
            size_t err_size);
/* g[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u. */
int gpu_swiglu(gpu_stream *s, float *g, int64_t gs, const float *u, int64_t us, int64_t width, int n, char *err,
               size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
