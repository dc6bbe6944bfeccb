/* backend_cpu_kernels.h: the CPU backend's inner loops, in two builds:
 * AVX2+FMA (chosen at run time when the CPU has both) and portable C.
 *
 * The fixed reduction order that makes results independent of batch size
 * and thread count: a dot product of length n keeps ONE 8-lane float
 * accumulator; for each chunk c of 8 values in order, acc = fma(w_c, x_c,
 * acc) lane by lane; then the lanes are summed as
 * ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)); then the n % 8 tail values
 * are added in order with fmaf. A matrix product computes every output
 * element exactly so, whatever tile it belongs to. Both builds use fused
 * multiply-adds (fmaf in C), so they agree bit for bit. */
#ifndef GRETA_BACKEND_CPU_KERNELS_H
#define GRETA_BACKEND_CPU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    const char *name; /* "avx2", "portable" */
    /* dst[r][0..stride) = row r0 + r of w (r < n_rows), dequantized exactly
     * (bit-exact with quant_dequantize), zero beyond n_in. */
    void (*decode_rows)(const model_weight *w, int64_t r0, int n_rows, float *dst, int64_t stride);
    /* y[t * ys + r] = dot(w + r * ws, x + t * xs, n) for r < n_w, t < n_x;
     * n a multiple of 8 (inputs zero padded). */
    void (*tile)(const float *w, int64_t ws, int n_w, const float *x, int64_t xs, int n_x, float *y, int64_t ys,
                 int64_t n);
    /* y[r] = dot(row r0 + r of w, x) for r < n_rows, decoding each block in
     * registers (no buffer): the same bits as decode_rows + tile with one
     * activation row. x has round8(n_in) values, zero padded. Returns false
     * (nothing written) for types without a fused kernel; NULL in builds
     * without any. */
    bool (*dot_rows)(const model_weight *w, int64_t r0, int n_rows, const float *x, float *y);
    /* The dot product above for any n. */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y[k] = fmaf(a, x[k], y[k]). */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    /* One attention head of one row over keys/values t = 0..n_keys-1 (row t
     * of k / v at t * kv_stride floats): s_t = dot(q, k_t, hd) * scale;
     * e_t = expf(s_t - max s); out = sum_t fmaf(e_t * (1 / sum e), v_t, .)
     * in t order (sum e in t order too). scores: n_keys floats of scratch. */
    void (*attend)(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                   float scale, float *scores, float *out);
    /* attend at precision q8: e_t = cpu_exp_q8(s_t - max s) (8 lanes at a
     * time where the build can), everything else as attend. */
    void (*attend_q8)(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                      float scale, float *scores, float *out);
    /* attend_q8 for n_q <= CPU_ATTEND_GROUP queries q[i] -> out[i] over the
     * same keys and values (heads that share a KV head, of one row or of
     * consecutive rows), query i reading keys 0..n_keys[i]-1: each out[i] is,
     * bit for bit, attend_q8(q[i], ..., n_keys[i], ...); the keys and values
     * all of them read are loaded once. scores: n_q * round16(max n_keys)
     * floats. */
    void (*attend_q8_group)(const float *const *q, float *const *out, int n_q, const float *k, const float *v,
                            size_t kv_stride, int hd, const int *n_keys, float scale, float *scores);
    /* SwiGLU at precision q8: g[k] = g[k] / (1 + cpu_exp_q8(-g[k])) * u[k]. */
    void (*swiglu_q8)(float *g, const float *u, int64_t n);
} cpu_kernels;

/* exp(x) for precision q8 (the f32 path keeps libm's expf): 0 below -87,
 * exp(88) above 88; n = x / ln 2 rounded to nearest through fmaf(x, log2 e,
 * 1.5 * 2^23), r = x - n ln 2 in two fmaf steps, Cephes' degree-7 polynomial
 * in fmaf steps, times 2^n. Only fmaf, float add/sub/mul and integer steps:
 * the AVX2 build computes the same bits 8 lanes at a time. Within 2 ulp of
 * exp on [-87, 88] (tested). */
float cpu_exp_q8(float x);

/* AVX2+FMA kernels when the running CPU supports them, else portable. */
const cpu_kernels *cpu_kernels_best(void);
const cpu_kernels *cpu_kernels_portable(void);

/* Queries per attend_q8_group call. */
#define CPU_ATTEND_GROUP 6

/* Largest n_w and n_x one tile call handles. */
#define CPU_TILE_MAX_W 8
#define CPU_TILE_MAX_X 4

#endif
