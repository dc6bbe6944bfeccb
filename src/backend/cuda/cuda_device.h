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
 * activations and accumulation are float32, except that the products of
 * quantized weights may take 8-bit activations (gpu_quantize_q8, integer
 * dot products); the KV cache is f16 (round to nearest even). Every output element is computed by one warp or thread in
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
/* Synchronous device -> host copy of bytes (tests). */
int gpu_download(void *dst, const void *src, size_t bytes, char *err, size_t err_size);

/* A stream whose kernels are launched with programmatic dependent launch
 * when pdl is nonzero (gpu_compat.h; docs/cuda.md). */
int gpu_stream_new(gpu_stream **out, int pdl, char *err, size_t err_size);
/* For tests/test_cuda.c only: a slow producer. Copies n floats from src to
 * dst after spinning about `cycles` clock cycles; it lets the next kernel of
 * the stream start at once (gpu_grid_release), so one launched with PDL
 * runs while it spins and must wait for dst's new values. */
int gpu_test_delayed_copy(gpu_stream *s, float *dst, const float *src, int64_t n, long long cycles, char *err,
                          size_t err_size);
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

/* CUDA graphs: the work enqueued on s between capture_begin and
 * capture_end (nothing runs) becomes a graph, replayed by graph_launch. */
typedef struct gpu_graph gpu_graph;
int gpu_capture_begin(gpu_stream *s, char *err, size_t err_size);
int gpu_capture_end(gpu_stream *s, gpu_graph **out, char *err, size_t err_size);
int gpu_graph_launch(gpu_stream *s, gpu_graph *g, char *err, size_t err_size);
void gpu_graph_free(gpu_graph *g);

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

/* ---- fast matrix products (cuda_matvec.cu; docs/cuda.md "Decode kernels") ----
 *
 * Up to GPU_MV_MATS matrices of one type that read the same input x
 * [n][n_in] (row stride xs): y[m][i][r] = W_m[r] . x[i]. Epilogues:
 * MV_PLAIN; MV_ADD (one matrix; also res[i][r] += y[0][i][r], the engine's
 * matmul then add); MV_SWIGLU (two matrices gate, up of equal n_out; y[1]
 * = up, y[0] = silu(gate) * up, the engine's matmul then swiglu). Same bits
 * per row whatever n (batch-invariant). gpu_matvec_supported says whether
 * the type and row length have such a kernel (else gpu_matmul's simple one
 * runs, also batch-invariant). gpu_matmul uses these kernels itself where
 * supported. */
#define GPU_MV_MATS 4
enum { MV_PLAIN = 0, MV_ADD = 1, MV_SWIGLU = 2 };
typedef struct {
    const void *w[GPU_MV_MATS];
    size_t row_bytes[GPU_MV_MATS];
    int64_t n_out[GPU_MV_MATS];
    float *y[GPU_MV_MATS];
    int64_t ys[GPU_MV_MATS];
    int count;   /* matrices */
    int n;       /* activation rows */
    int64_t n_in;
    const float *x;
    int64_t xs;
    float *res;  /* MV_ADD: the residual rows */
    int64_t res_s;
    /* 8-bit activations (cuda_matvec_q8.cu): x's rows as gpu_quantize_q8
     * left them, or NULL for the float kernels. With xq, the type must be
     * one gpu_matvec_q8_supported takes. */
    const int8_t *xq;  /* [n][xqs] */
    const float *xds;  /* [n][xqs / 32] pairs (d, s) */
    int64_t xqs;       /* a multiple of 64 */
} gpu_mv_args;
int gpu_matvec_supported(uint32_t type, int64_t n_in);
int gpu_matvec(gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size);

/* ---- 8-bit activations, integer dot products (docs/cuda.md) ----
 * Row i of x [n][width] (width a multiple of 32) in blocks of 32 values:
 * d = max|x| / 127, q = x / d rounded to nearest even (int8; 0 if d is 0),
 * s = d * sum(q), as float operations in that order: q [n][qs] bytes,
 * ds [n][qs / 32] pairs (d, s) (qs a multiple of 64, at least width). */
int gpu_quantize_q8(gpu_stream *s, const float *x, int64_t xs, int64_t width, int n, int8_t *q, float *ds, int64_t qs,
                    char *err, size_t err_size);
/* gpu_rmsnorm (the same bits into dst) that also writes dst's rows
 * quantized as gpu_quantize_q8 does (d a multiple of 32). */
int gpu_rmsnorm_q8(gpu_stream *s, float *dst, int64_t dst_s, const float *src, int64_t ss, const float *w, int64_t d,
                   float eps, int n, int8_t *q, float *ds, int64_t qs, char *err, size_t err_size);
/* True if the type and row length have an 8-bit kernel (Q8_0, Q4_0, Q4_1:
 * n_in a multiple of 32; Q4_K, Q5_K, Q6_K: of 256). */
int gpu_matvec_q8_supported(uint32_t type, int64_t n_in);

/* ---- KV cache and attention ----
 *
 * Row i of a forward in its sequence's cache: a device table of gpu_kv_row
 * (uploaded with the forward's other per-token values, so that a captured
 * CUDA graph replays with new positions): k, v are the sequence's caches
 * at layer 0 ([n_layer][n_ctx][kv_dim] values, f16 or, with f32, float32),
 * layer_values = n_ctx * kv_dim, pos the row's position. */
typedef struct {
    void *k;
    void *v;
    int64_t layer_values; /* a q8_0 cache: bytes (n_ctx * kv_dim / 32 * 34) */
    int32_t pos;
    int32_t pad;
} gpu_kv_row;

/* The cache kind the kv functions take as their `f32` argument: f16 (0),
 * float32 (1, --kv-type f32), or q8_0 blocks (2, --kv-type q8_0: rows of
 * kv_dim / 32 blocks of an f16 scale and 32 int8, stored bit-exactly as
 * quant_quantize.c's Q8_0; gpu_rope_store does not take it, and
 * gpu_attend reads it with the simple kernel). */
enum { GPU_KV_F16 = 0, GPU_KV_F32 = 1, GPU_KV_Q8_0 = 2 };

/* Cache[pos] = K row, V row (rounded to f16 unless f32) for rows [0, n) of
 * the table (activation rows [0, n) of k and v). */
int gpu_kv_store(gpu_stream *s, const float *k, const float *v, int64_t stride, int64_t kv_dim, int layer,
                 const gpu_kv_row *rows, int n, int f32, char *err, size_t err_size);
/* rope(q), rope(k) (as gpu_rope) and gpu_kv_store in one kernel: the same
 * bits as the three steps (q and k rotated in place, as the steps leave them). */
int gpu_rope_store(gpu_stream *s, float *q, int64_t qs, int64_t q_width, float *k, const float *v, int64_t kvs,
                   int64_t kv_dim, int head_dim, int rope_dim, const float *cos_table, const float *sin_table,
                   int layer, const gpu_kv_row *rows, int n, int f32, char *err, size_t err_size);
/* Split-K attention ("flash-decoding"): the number of key ranges each row's
 * keys 0 .. pos are cut into (a constant of the model and the device, so
 * the result depends on nothing but the row), and the scratch floats
 * gpu_attend needs for n rows. */
int gpu_attend_splits(int n_head_kv);
size_t gpu_attend_scratch_floats(int n_head, int head_dim, int splits, int n);
/* att[i] = softmax over t <= pos[i] of (q[i].k_t * scale), times v_t, per
 * head (GQA: head h reads KV head h / (n_head / n_head_kv)), for table
 * rows [0, n). scratch: gpu_attend_scratch_floats(..., n) floats. */
int gpu_attend(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
               int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows, int n, int f32,
               float *scratch, int splits, char *err, size_t err_size);
/* gpu_attend that also writes att's rows quantized as gpu_quantize_q8 does
 * (xq [n][xqs] bytes, xds [n][xqs / 32] pairs; att's columns) where the
 * split kernel runs and head_dim is a multiple of 32: *quantized says
 * whether it did (if not, only att was written). */
int gpu_attend_q8(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
                  int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows, int n, int f32,
                  float *scratch, int splits, int8_t *xq, float *xds, int64_t xqs, int *quantized, char *err,
                  size_t err_size);
/* dst[i] += src[i]. */
int gpu_add(gpu_stream *s, float *dst, int64_t ds, const float *src, int64_t ss, int64_t width, int n, char *err,
            size_t err_size);
/* g[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u. */
int gpu_swiglu(gpu_stream *s, float *g, int64_t gs, const float *u, int64_t us, int64_t width, int n, char *err,
               size_t err_size);

/* ---- the fast prefill (used without --deterministic; docs/cuda.md) ----
 * Tensor cores with f16 operands and float32 accumulation; not
 * batch-invariant (the result of a row depends on how many rows a forward
 * has), deterministic run to run. cuda_gemm.cu, cuda_attn.cu. */

/* A cuBLAS handle bound to a stream. */
typedef struct gpu_blas gpu_blas;
int gpu_blas_new(gpu_stream *s, gpu_blas **out, char *err, size_t err_size);
void gpu_blas_free(gpu_blas *b);
/* x16[i][k] = f16(x[i][k]) (nearest even) for k < width, i < n (x16: f16 bits). */
int gpu_to_f16(gpu_stream *s, const float *x, int64_t xs, uint16_t *x16, int64_t x16s, int64_t width, int n,
               char *err, size_t err_size);
/* out [n_rows][n_in] (f16 bits) = rows 0 .. n_rows - 1 of W dequantized
 * bit-exactly (quant_dequantize), then rounded to f16. */
int gpu_dequant_f16(gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in, int64_t n_rows,
                    uint16_t *out, char *err, size_t err_size);
/* y[i][r] = W[r] . x16[i] for r < n_out, i < n, on tensor cores: F16
 * weights directly, other types dequantized into scratch (f16, at most
 * scratch_values values: a chunk of rows at a time). b is bound to s. */
int gpu_gemm(gpu_blas *b, gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in,
             int64_t n_out, const uint16_t *x16, int64_t x16s, float *y, int64_t ys, int n, uint16_t *scratch,
             size_t scratch_values, char *err, size_t err_size);
/* True if gpu_attend_prefill has a kernel for these sizes and cache type
 * (head_dim 64 or 128, kv_dim a multiple of 32, an f16 or q8_0 cache). */
int gpu_attend_prefill_supported(int head_dim, int64_t kv_dim, int kv_f32);
/* Causal attention of n rows of ONE sequence at positions pos0 .. pos0 +
 * n - 1, whose K and V are already in the cache (k_cache, v_cache: this
 * layer's [n_ctx] rows, f16, or q8_0 with kv_q8_0): att[i] = softmax over
 * t <= pos0 + i of (q[i].k_t * scale), times v_t, per head (GQA as
 * gpu_attend). Flash-attention tiles on tensor cores. */
int gpu_attend_prefill(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, const void *k_cache,
                       const void *v_cache, int kv_q8_0, int64_t kv_dim, int n_head, int n_head_kv, int head_dim,
                       float scale, int32_t pos0, int n, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
