/* backend_cpu_kernels.c: see backend_cpu_kernels.h for the reduction order. */
#include "backend/cpu/cpu_kernels.h"

#include <math.h>
#include <string.h>

#include "format/quant.h"

/* ---- portable ---- */

static void decode_rows_portable(const model_weight *w, int64_t r0, int n_rows, float *dst, int64_t stride) {
    for (int r = 0; r < n_rows; r++) {
        float *d = dst + (int64_t)r * stride;
        quant_dequantize(w->type, w->data + (size_t)(r0 + r) * w->row_bytes, d, w->n_in);
        for (int64_t k = w->n_in; k < stride; k++) d[k] = 0.0f;
    }
}

static float hsum8(const float *l) {
    float s04 = l[0] + l[4], s15 = l[1] + l[5], s26 = l[2] + l[6], s37 = l[3] + l[7];
    return (s04 + s26) + (s15 + s37);
}

static float dot8_portable(const float *a, const float *b, int64_t n8) {
    float acc[8] = {0};
    for (int64_t c = 0; c < n8; c += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(a[c + l], b[c + l], acc[l]);
    return hsum8(acc);
}

static void tile_portable(const float *w, int64_t ws, int n_w, const float *x, int64_t xs, int n_x, float *y,
                          int64_t ys, int64_t n) {
    for (int t = 0; t < n_x; t++)
        for (int r = 0; r < n_w; r++) y[t * ys + r] = dot8_portable(w + r * ws, x + t * xs, n);
}

static float dot_portable(const float *a, const float *b, int64_t n) {
    int64_t n8 = n - n % 8;
    float s = dot8_portable(a, b, n8);
    for (int64_t k = n8; k < n; k++) s = fmaf(a[k], b[k], s);
    return s;
}

static void axpy_portable(float *y, float a, const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] = fmaf(a, x[k], y[k]);
}

/* exp for precision q8 (cpu_kernels.h: cpu_exp_q8). */
static const float EXP_LOG2E = 1.44269504088896341f, EXP_SHIFT = 12582912.0f; /* 1.5 * 2^23 */
static const float EXP_LN2_HI = -0.693145751953125f, EXP_LN2_LO = -1.428606765330187e-06f;
static const float EXP_C[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f,
                               1.6666665459e-1f, 5.0000001201e-1f};
#define EXP_MIN -87.0f
#define EXP_MAX 88.0f

float cpu_exp_q8(float x) {
    if (!(x >= EXP_MIN)) return x != x ? x : 0.0f; /* below: 0; NaN stays */
    if (x > EXP_MAX) x = EXP_MAX;
    float t = fmaf(x, EXP_LOG2E, EXP_SHIFT); /* 1.5 * 2^23 + n, n = x / ln 2 to nearest */
    float n = t - EXP_SHIFT;
    float r = fmaf(n, EXP_LN2_HI, x);
    r = fmaf(n, EXP_LN2_LO, r);
    float p = EXP_C[0];
    for (int i = 1; i < 6; i++) p = fmaf(p, r, EXP_C[i]);
    p = fmaf(p, r * r, r) + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    uint32_t scale_bits = (tb - 0x4b400000u + 127u) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &scale_bits, 4);
    return p * scale;
}

/* Attention for one (row, head): softmax(q . k_t * scale) . v, the
 * exponential expf (precision f32) or cpu_exp_q8 (q8: a constant in each
 * caller, so each gets its own copy). */
static inline __attribute__((always_inline)) void attend_body_portable(const float *q, const float *k, const float *v,
                                                                       size_t kv_stride, int hd, int n_keys, float scale,
                                                                       float *scores, float *out, const bool q8) {
    float max = -INFINITY;
    for (int t = 0; t < n_keys; t++) {
        float s = dot_portable(q, k + (size_t)t * kv_stride, hd) * scale;
        scores[t] = s;
        if (s > max) max = s;
    }
    float sum = 0.0f;
    for (int t = 0; t < n_keys; t++) {
        scores[t] = q8 ? cpu_exp_q8(scores[t] - max) : expf(scores[t] - max);
        sum += scores[t];
    }
    float inv = 1.0f / sum;
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    for (int t = 0; t < n_keys; t++) axpy_portable(out, scores[t] * inv, v + (size_t)t * kv_stride, hd);
}

static void attend_portable(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                            float scale, float *scores, float *out) {
    attend_body_portable(q, k, v, kv_stride, hd, n_keys, scale, scores, out, false);
}

static void attend_q8_portable(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                               float scale, float *scores, float *out) {
    attend_body_portable(q, k, v, kv_stride, hd, n_keys, scale, scores, out, true);
}

static void attend_q8_group_portable(const float *const *q, float *const *out, int n_q, const float *k,
                                     const float *v, size_t kv_stride, int hd, const int *n_keys, float scale,
                                     float *scores) {
    for (int i = 0; i < n_q; i++) attend_q8_portable(q[i], k, v, kv_stride, hd, n_keys[i], scale, scores, out[i]);
}

static void swiglu_q8_portable(float *g, const float *u, int64_t n) {
    for (int64_t k = 0; k < n; k++) g[k] = g[k] / (1.0f + cpu_exp_q8(-g[k])) * u[k];
}

static const cpu_kernels kernels_portable = {
    .name = "portable",
    .decode_rows = decode_rows_portable,
    .tile = tile_portable,
    .dot_rows = NULL,
    .dot = dot_portable,
    .axpy = axpy_portable,
    .attend = attend_portable,
    .attend_q8 = attend_q8_portable,
    .attend_q8_group = attend_q8_group_portable,
    .swiglu_q8 = swiglu_q8_portable,
};

const cpu_kernels *cpu_kernels_portable(void) {
    return &kernels_portable;
}

/* ---- AVX2 + FMA ---- */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

static inline AVX2 float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* The f16 at p, in all 8 lanes. */
static inline AVX2 __m256 f16_splat(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

/* d and m of a Q4_1 block (two f16 at p), each in all 8 lanes. */
static inline AVX2 void f16_pair_splat(const uint8_t *p, __m256 *d, __m256 *m) {
    int32_t dm;
    memcpy(&dm, p, 4);
    __m256 v = _mm256_cvtph_ps(_mm_set1_epi32(dm)); /* d m d m d m d m */
    *d = _mm256_permute_ps(v, 0x00);
    *m = _mm256_permute_ps(v, 0x55);
}

/* Q4_0: d (f16) | qs[16]; value j = low nibble of qs[j], j + 16 the high one; y = d * (q - 8). */
static AVX2 void decode_q4_0_row(const uint8_t *src, int64_t n_blocks, float *dst) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    for (int64_t b = 0; b < n_blocks; b++, src += 18, dst += 32) {
        __m256 d = _mm256_set1_ps(f16_at(src));
        __m128i v = _mm_loadu_si128((const __m128i *)(src + 2));
        __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        _mm256_storeu_ps(dst + 0, _mm256_mul_ps(d, _mm256_sub_ps(q0, eight)));
        _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, _mm256_sub_ps(q1, eight)));
        _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, _mm256_sub_ps(q2, eight)));
        _mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, _mm256_sub_ps(q3, eight)));
    }
}

/* Q4_1: d (f16) | m (f16) | qs[16]; y = d * q + m, a product then a sum.
 * d has 11 significant bits and q < 16, so d * q is exact in float32 and
 * the single rounding of fma(d, q, m) equals the two roundings. */
static AVX2 void decode_q4_1_row(const uint8_t *src, int64_t n_blocks, float *dst) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    for (int64_t b = 0; b < n_blocks; b++, src += 20, dst += 32) {
        __m256 d, m;
        f16_pair_splat(src, &d, &m);
        __m128i v = _mm_loadu_si128((const __m128i *)(src + 4));
        __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        _mm256_storeu_ps(dst + 0, _mm256_fmadd_ps(d, q0, m));
        _mm256_storeu_ps(dst + 8, _mm256_fmadd_ps(d, q1, m));
        _mm256_storeu_ps(dst + 16, _mm256_fmadd_ps(d, q2, m));
        _mm256_storeu_ps(dst + 24, _mm256_fmadd_ps(d, q3, m));
    }
}

/* Q8_0: d (f16) | qs[32] int8; y = d * q. */
static AVX2 void decode_q8_0_row(const uint8_t *src, int64_t n_blocks, float *dst) {
    for (int64_t b = 0; b < n_blocks; b++, src += 34, dst += 32) {
        __m256 d = _mm256_set1_ps(f16_at(src));
        for (int c = 0; c < 4; c++) {
            __m128i v = _mm_loadl_epi64((const __m128i *)(src + 2 + 8 * c));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
            _mm256_storeu_ps(dst + 8 * c, _mm256_mul_ps(d, q));
        }
    }
}

static AVX2 void decode_f16_row(const uint8_t *src, int64_t n, float *dst) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * k))));
    for (; k < n; k++) dst[k] = f16_at(src + 2 * k);
}

/* BF16: the top 16 bits of a float32; y = bits << 16 (exact). */
static inline AVX2 __m256 bf16x8(const uint8_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static AVX2 void decode_bf16_row(const uint8_t *src, int64_t n, float *dst) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, bf16x8(src + 2 * k));
    for (; k < n; k++) {
        uint16_t h;
        memcpy(&h, src + 2 * k, 2);
        dst[k] = quant_bf16_to_f32(h);
    }
}

static AVX2 void decode_rows_avx2(const model_weight *w, int64_t r0, int n_rows, float *dst, int64_t stride) {
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *src = w->data + (size_t)(r0 + r) * w->row_bytes;
        float *d = dst + (int64_t)r * stride;
        switch (w->type) {
        case QT_Q4_0: decode_q4_0_row(src, w->n_in / 32, d); break;
        case QT_Q4_1: decode_q4_1_row(src, w->n_in / 32, d); break;
        case QT_Q8_0: decode_q8_0_row(src, w->n_in / 32, d); break;
        case QT_F16: decode_f16_row(src, w->n_in, d); break;
        case QT_BF16: decode_bf16_row(src, w->n_in, d); break;
        case QT_F32: memcpy(d, src, (size_t)w->n_in * sizeof(float)); break;
        default: quant_dequantize(w->type, src, d, w->n_in); break;
        }
        for (int64_t k = w->n_in; k < stride; k++) d[k] = 0.0f;
    }
}

static inline AVX2 float hsum_avx2(__m256 acc) {
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    __m128 s = _mm_add_ps(lo, hi);            /* l0+l4, l1+l5, l2+l6, l3+l7 */
    __m128 t = _mm_movehl_ps(s, s);           /* l2+l6, l3+l7, .. */
    __m128 u = _mm_add_ps(s, t);              /* (l0+l4)+(l2+l6), (l1+l5)+(l3+l7) */
    __m128 v = _mm_shuffle_ps(u, u, 0x55);    /* (l1+l5)+(l3+l7) */
    return _mm_cvtss_f32(_mm_add_ss(u, v));
}

/* An NW x NX tile: NW * NX accumulators, each the fixed dot-product order. */
static inline __attribute__((always_inline)) AVX2 void tile_fixed(const float *w, int64_t ws, const float *x,
                                                                   int64_t xs, float *y, int64_t ys, int64_t n,
                                                                   const int NW, const int NX) {
    __m256 acc[CPU_TILE_MAX_W][CPU_TILE_MAX_X];
#pragma GCC unroll 8
    for (int r = 0; r < NW; r++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < n; c += 8) {
        __m256 xv[CPU_TILE_MAX_X];
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) xv[t] = _mm256_loadu_ps(x + t * xs + c);
#pragma GCC unroll 8
        for (int r = 0; r < NW; r++) {
            __m256 wv = _mm256_loadu_ps(w + r * ws + c);
#pragma GCC unroll 4
            for (int t = 0; t < NX; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NW; r++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) y[t * ys + r] = hsum_avx2(acc[r][t]);
}

static AVX2 void tile_8x1(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 8, 1);
}
static AVX2 void tile_4x3(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 4, 3);
}
static AVX2 void tile_4x2(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 4, 2);
}
static AVX2 void tile_4x1(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 4, 1);
}
static AVX2 void tile_1x1(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 1, 1);
}
static AVX2 void tile_1x3(const float *w, int64_t ws, const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    tile_fixed(w, ws, x, xs, y, ys, n, 1, 3);
}

/* Covers an n_w x n_x block with the fixed tiles above. */
static AVX2 void tile_avx2(const float *w, int64_t ws, int n_w, const float *x, int64_t xs, int n_x, float *y,
                           int64_t ys, int64_t n) {
    if (n_x == 1) {
        int r = 0;
        for (; r + 8 <= n_w; r += 8) tile_8x1(w + r * ws, ws, x, xs, y + r, ys, n);
        for (; r + 4 <= n_w; r += 4) tile_4x1(w + r * ws, ws, x, xs, y + r, ys, n);
        for (; r < n_w; r++) tile_1x1(w + r * ws, ws, x, xs, y + r, ys, n);
        return;
    }
    int t = 0;
    for (; t + 3 <= n_x; t += 3) {
        int r = 0;
        for (; r + 4 <= n_w; r += 4) tile_4x3(w + r * ws, ws, x + t * xs, xs, y + t * ys + r, ys, n);
        for (; r < n_w; r++) tile_1x3(w + r * ws, ws, x + t * xs, xs, y + t * ys + r, ys, n);
    }
    if (n_x - t == 2) {
        int r = 0;
        for (; r + 4 <= n_w; r += 4) tile_4x2(w + r * ws, ws, x + t * xs, xs, y + t * ys + r, ys, n);
        for (; r < n_w; r++) {
            tile_1x1(w + r * ws, ws, x + t * xs, xs, y + t * ys + r, ys, n);
            tile_1x1(w + r * ws, ws, x + (t + 1) * xs, xs, y + (t + 1) * ys + r, ys, n);
        }
    } else if (n_x - t == 1) {
        tile_avx2(w, ws, n_w, x + t * xs, xs, 1, y + t * ys, ys, n);
    }
}

static AVX2 float dot_avx2(const float *a, const float *b, int64_t n) {
    int64_t n8 = n - n % 8;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t c = 0; c < n8; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), acc);
    float s = hsum_avx2(acc);
    for (int64_t k = n8; k < n; k++) s = fmaf(a[k], b[k], s);
    return s;
}

static AVX2 void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(y + k, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
    for (; k < n; k++) y[k] = fmaf(a, x[k], y[k]);
}


/* ---- fused decode + dot for one activation row (decode steps) ----
 * Each block is decoded into registers exactly as decode_*_row does (same
 * operations, same rounding), then multiplied into the row's accumulator
 * in chunk order: the bits of decode_rows + tile_fixed(., 1). Four weight
 * rows are interleaved to hide the FMA latency. */

#define FUSED_ROWS 4
#define PREFETCH_GROUPS 2

/* Q4_1 block -> 4 chunks of 8 exact values. */
static inline __attribute__((always_inline)) AVX2 void q4_1_chunks(const uint8_t *b, __m256 w[4]) {
    const __m256i mask = _mm256_set1_epi32(0x0f);
    __m256 d, m;
    f16_pair_splat(b, &d, &m);
    __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 4)));  /* bytes 0..7 */
    __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 12))); /* bytes 8..15 */
    __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(v0, mask));
    __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(v1, mask));
    __m256 q2 = _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4));
    __m256 q3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4));
    w[0] = _mm256_fmadd_ps(d, q0, m); /* exact product: see decode_q4_1_row */
    w[1] = _mm256_fmadd_ps(d, q1, m);
    w[2] = _mm256_fmadd_ps(d, q2, m);
    w[3] = _mm256_fmadd_ps(d, q3, m);
}

static inline __attribute__((always_inline)) AVX2 void q4_0_chunks(const uint8_t *b, __m256 w[4]) {
    const __m256i mask = _mm256_set1_epi32(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    __m256 d = f16_splat(b);
    __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2)));
    __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 10)));
    w[0] = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, mask)), eight));
    w[1] = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, mask)), eight));
    w[2] = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), eight));
    w[3] = _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), eight));
}

static inline __attribute__((always_inline)) AVX2 void q8_0_chunks(const uint8_t *b, __m256 w[4]) {
    __m256 d = f16_splat(b);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * c)))));
}

/* NR rows of a 32-value block type: type_size bytes per block. */
static inline __attribute__((always_inline)) AVX2 void fused_block_rows(const model_weight *w, int64_t r0, const float *x,
                                                                         float *y, const int NR, const uint32_t type) {
    const int64_t n_blocks = w->n_in / 32;
    const size_t bs = type == QT_Q4_1 ? 20 : type == QT_Q4_0 ? 18 : 34;
    const uint8_t *rows[FUSED_ROWS];
    __m256 acc[FUSED_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
        acc[r] = _mm256_setzero_ps();
    }
    /* The NR rows are contiguous; prefetch the rows that follow them
     * (PREFETCH_GROUPS groups ahead), a slice per block, so the next group
     * streams in while this one computes. Prefetching past the end of the
     * matrix is harmless (no fault). */
    const char *ahead = (const char *)rows[0] + (size_t)NR * w->row_bytes * PREFETCH_GROUPS;
    const size_t slice = (size_t)NR * bs;
    for (int64_t b = 0; b < n_blocks; b++) {
        for (size_t off = 0; off < slice; off += 64) _mm_prefetch(ahead + (size_t)b * slice + off, _MM_HINT_T0);
        const float *xb = x + b * 32;
        __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m256 wc[4];
            const uint8_t *blk = rows[r] + (size_t)b * bs;
            if (type == QT_Q4_1) q4_1_chunks(blk, wc);
            else if (type == QT_Q4_0) q4_0_chunks(blk, wc);
            else q8_0_chunks(blk, wc);
            acc[r] = _mm256_fmadd_ps(wc[0], x0, acc[r]);
            acc[r] = _mm256_fmadd_ps(wc[1], x1, acc[r]);
            acc[r] = _mm256_fmadd_ps(wc[2], x2, acc[r]);
            acc[r] = _mm256_fmadd_ps(wc[3], x3, acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r] = hsum_avx2(acc[r]);
}

static AVX2 void fused_q4_1_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 4, QT_Q4_1);
}
static AVX2 void fused_q4_1_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 1, QT_Q4_1);
}
static AVX2 void fused_q4_0_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 4, QT_Q4_0);
}
static AVX2 void fused_q4_0_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 1, QT_Q4_0);
}
static AVX2 void fused_q8_0_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 4, QT_Q8_0);
}
static AVX2 void fused_q8_0_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_block_rows(w, r0, x, y, 1, QT_Q8_0);
}

/* NR rows of F16 or BF16 (n_in a multiple of 8): chunk c of 8 values is
 * converted exactly (as decode_f16_row / decode_bf16_row) and multiplied
 * into the row's accumulator in chunk order: the bits of decode_rows +
 * tile_fixed(., 1), with the rows that follow prefetched as above. */
static inline __attribute__((always_inline)) AVX2 void fused_half_rows(const model_weight *w, int64_t r0, const float *x,
                                                                        float *y, const int NR, const bool bf16) {
    const int64_t n = w->n_in;
    const uint8_t *rows[FUSED_ROWS];
    __m256 acc[FUSED_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
        acc[r] = _mm256_setzero_ps();
    }
    const char *ahead = (const char *)rows[0] + (size_t)NR * w->row_bytes * PREFETCH_GROUPS;
    for (int64_t c = 0; c < n; c += 8) {
        if (c % 32 == 0)
            for (int off = 0; off < NR * 64; off += 64) _mm_prefetch(ahead + (size_t)(c / 32) * (size_t)NR * 64 + off, _MM_HINT_T0);
        __m256 xv = _mm256_loadu_ps(x + c);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m256 wv = bf16 ? bf16x8(rows[r] + 2 * c)
                             : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rows[r] + 2 * c)));
            acc[r] = _mm256_fmadd_ps(wv, xv, acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r] = hsum_avx2(acc[r]);
}

static AVX2 void fused_f16_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_half_rows(w, r0, x, y, 4, false);
}
static AVX2 void fused_f16_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_half_rows(w, r0, x, y, 1, false);
}
static AVX2 void fused_bf16_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_half_rows(w, r0, x, y, 4, true);
}
static AVX2 void fused_bf16_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    fused_half_rows(w, r0, x, y, 1, true);
}

static AVX2 bool dot_rows_avx2(const model_weight *w, int64_t r0, int n_rows, const float *x, float *y) {
    typedef void (*fused_fn)(const model_weight *, int64_t, const float *, float *);
    fused_fn four, one;
    switch (w->type) {
    case QT_Q4_1: four = fused_q4_1_4; one = fused_q4_1_1; break;
    case QT_Q4_0: four = fused_q4_0_4; one = fused_q4_0_1; break;
    case QT_Q8_0: four = fused_q8_0_4; one = fused_q8_0_1; break;
    case QT_F16:
        if (w->n_in % 8 != 0) return false;
        four = fused_f16_4, one = fused_f16_1;
        break;
    case QT_BF16:
        if (w->n_in % 8 != 0) return false;
        four = fused_bf16_4, one = fused_bf16_1;
        break;
    case QT_F32:
        if (w->n_in % 8 != 0) return false;
        tile_avx2((const float *)(const void *)(w->data + (size_t)r0 * w->row_bytes), w->n_in, n_rows, x, 0, 1, y, 0,
                  w->n_in);
        return true;
    default: return false;
    }
    int r = 0;
    for (; r + FUSED_ROWS <= n_rows; r += FUSED_ROWS) four(w, r0 + r, x, y + r);
    for (; r < n_rows; r++) one(w, r0 + r, x, y + r);
    return true;
}


/* cpu_exp_q8 on 8 lanes: the same operations, so the same bits. */
static inline AVX2 __m256 exp_q8_avx2(__m256 x) {
    __m256 below = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_LT_OQ); /* false for NaN */
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(x, _mm256_set1_ps(EXP_MAX));
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(EXP_LOG2E), _mm256_set1_ps(EXP_SHIFT));
    __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(EXP_SHIFT));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(EXP_C[0]);
    for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C[i]));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b400000)),
                                                   _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_blendv_ps(_mm256_andnot_ps(below, y), x, nan); /* below EXP_MIN: 0; NaN: x */
}

static AVX2 void swiglu_q8_avx2(float *g, const float *u, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 gv = _mm256_loadu_ps(g + k);
        __m256 e = exp_q8_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        __m256 y = _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(u + k));
        _mm256_storeu_ps(g + k, y);
    }
    for (; k < n; k++) g[k] = g[k] / (1.0f + cpu_exp_q8(-g[k])) * u[k];
}

/* Attention for one (row, head): the score dots and the output
 * accumulators stay in registers, 64 output columns at a time; per element
 * the operations are those of attend_body_portable (q8 is a constant in
 * each caller: cpu_exp_q8, 8 keys at a time, in place of expf). A head_dim
 * that is not a multiple of 8 takes the portable code. */
static inline __attribute__((always_inline)) AVX2 void attend_body_avx2(const float *q, const float *k, const float *v,
                                                                        size_t kv_stride, int hd, int n_keys,
                                                                        float scale, float *scores, float *out,
                                                                        const bool q8) {
    if (hd % 8 != 0) {
        if (q8) attend_q8_portable(q, k, v, kv_stride, hd, n_keys, scale, scores, out);
        else attend_portable(q, k, v, kv_stride, hd, n_keys, scale, scores, out);
        return;
    }
    float max = -INFINITY;
    int t = 0;
    /* four keys at a time: four independent chains (each key's own sequence of
     * operations is the one-key loop's below, so the same bits) */
    for (; t + 4 <= n_keys; t += 4) {
        const float *k0 = k + (size_t)t * kv_stride;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int c = 0; c < hd; c += 8) {
            __m256 qc = _mm256_loadu_ps(q + c);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[j] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + (size_t)j * kv_stride + c), acc[j]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            float s = hsum_avx2(acc[j]) * scale;
            scores[t + j] = s;
            if (s > max) max = s;
        }
    }
    for (; t < n_keys; t++) {
        const float *kt = k + (size_t)t * kv_stride;
        __m256 acc = _mm256_setzero_ps();
        for (int c = 0; c < hd; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(kt + c), acc);
        float s = hsum_avx2(acc) * scale;
        scores[t] = s;
        if (s > max) max = s;
    }
    float sum = 0.0f;
    if (q8) {
        __m256 mx = _mm256_set1_ps(max);
        for (t = 0; t + 8 <= n_keys; t += 8)
            _mm256_storeu_ps(scores + t, exp_q8_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + t), mx)));
        for (; t < n_keys; t++) scores[t] = cpu_exp_q8(scores[t] - max);
        for (t = 0; t < n_keys; t++) sum += scores[t];
    } else {
        for (t = 0; t < n_keys; t++) {
            scores[t] = expf(scores[t] - max);
            sum += scores[t];
        }
    }
    float inv = 1.0f / sum;
    for (int c0 = 0; c0 < hd; c0 += 64) {
        int width = hd - c0 < 64 ? hd - c0 : 64;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        if (width == 64) {
            for (int t = 0; t < n_keys; t++) {
                const float *vt = v + (size_t)t * kv_stride + c0;
                __m256 p = _mm256_set1_ps(scores[t] * inv);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vt + 8 * j), acc[j]);
            }
        } else {
            for (int t = 0; t < n_keys; t++) {
                const float *vt = v + (size_t)t * kv_stride + c0;
                __m256 p = _mm256_set1_ps(scores[t] * inv);
                for (int j = 0; j < width / 8; j++) acc[j] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vt + 8 * j), acc[j]);
            }
        }
        for (int j = 0; j < width / 8; j++) _mm256_storeu_ps(out + c0 + 8 * j, acc[j]);
    }
}

static AVX2 void attend_avx2(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                             float scale, float *scores, float *out) {
    attend_body_avx2(q, k, v, kv_stride, hd, n_keys, scale, scores, out, false);
}

static AVX2 void attend_q8_avx2(const float *q, const float *k, const float *v, size_t kv_stride, int hd, int n_keys,
                                float scale, float *scores, float *out) {
    attend_body_avx2(q, k, v, kv_stride, hd, n_keys, scale, scores, out, true);
}

static AVX2 void attend_q8_group_avx2(const float *const *q, float *const *out, int n_q, const float *k,
                                      const float *v, size_t kv_stride, int hd, const int *n_keys, float scale,
                                      float *scores) {
    for (int i = 0; i < n_q; i++) attend_q8_avx2(q[i], k, v, kv_stride, hd, n_keys[i], scale, scores, out[i]);
}

/* ---- AVX-512: attention of several queries over the same keys ---- */
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512dq,avx512bw")))

static int64_t round16(int64_t n) {
    return (n + 15) / 16 * 16;
}

/* cpu_exp_q8 on 16 lanes: exp_q8_avx2's operations, so the same bits. */
static inline AVX512 __m512 exp_q8_avx512(__m512 x) {
    __mmask16 below = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MIN), _CMP_LT_OQ); /* false for NaN */
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(x, _mm512_set1_ps(EXP_MAX));
    __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(EXP_LOG2E), _mm512_set1_ps(EXP_SHIFT));
    __m512 n = _mm512_sub_ps(t, _mm512_set1_ps(EXP_SHIFT));
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(EXP_C[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C[i]));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4b400000)), _mm512_set1_epi32(127)),
        23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    y = _mm512_maskz_mov_ps((__mmask16)~below, y); /* below EXP_MIN: 0 */
    return _mm512_mask_mov_ps(y, nan, x);          /* NaN: x */
}

/* Two 8-lane dot-product accumulators in one register (lanes 0..7 one
 * key's, 8..15 the next key's), each summed by hsum_avx2's tree:
 * s_i = l_i + l_(i+4), then (s0 + s2) + (s1 + s3). The sums land in lanes
 * 0 and 8. */
static inline AVX512 __m512 hsum_pairs(__m512 a) {
    __m512 s = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, 0xb1)); /* swap 128-bit halves of each 256 */
    __m512 u = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4e));       /* lane 0: s0+s2, lane 1: s1+s3 */
    return _mm512_add_ps(u, _mm512_permute_ps(u, 0xb1));           /* lane 0: (s0+s2)+(s1+s3) */
}

/* The score of one key for one query (attend_q8_avx2's one-key loop). */
static inline AVX512 float score1(const float *q, const float *kt, int hd) {
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(kt + c), acc);
    return hsum_avx2(acc);
}

/* Scores of n_q (<= CPU_ATTEND_GROUP) queries, query i against keys
 * 0..n_keys[i]-1: the keys all queries read (0..common-1) eight at a time,
 * two per register, each query's 8 values broadcast to both halves; the
 * rest one by one. Every key's chain of FMAs and its sum are
 * attend_q8_avx2's. Each query's maximum goes to max[]. */
static inline __attribute__((always_inline)) AVX512 void scores_group(const float *const *q, const int n_q,
                                                                     const float *k, size_t kv_stride, int hd,
                                                                     const int *n_keys, int common, float scale,
                                                                     float *scores, size_t ss, float *max) {
    const __m512i lo_idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0);
    const __m512i hi_idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0, 0, 0, 0, 0);
    __m256 mx[CPU_ATTEND_GROUP];
    for (int i = 0; i < n_q; i++) mx[i] = _mm256_set1_ps(-INFINITY);
    int t = 0;
    for (; t + 8 <= common; t += 8) {
        const float *k0 = k + (size_t)t * kv_stride;
        __m512 acc[CPU_ATTEND_GROUP][4];
#pragma GCC unroll 6
        for (int i = 0; i < n_q; i++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
        for (int c = 0; c < hd; c += 8) {
            __m512 kp[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                kp[j] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(k0 + (size_t)(2 * j) * kv_stride + c)),
                                           _mm256_loadu_ps(k0 + (size_t)(2 * j + 1) * kv_stride + c), 1);
#pragma GCC unroll 6
            for (int i = 0; i < n_q; i++) {
                __m512 qb = _mm512_broadcast_f32x8(_mm256_loadu_ps(q[i] + c));
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(qb, kp[j], acc[i][j]);
            }
        }
#pragma GCC unroll 6
        for (int i = 0; i < n_q; i++) {
            __m512 f01 = _mm512_permutex2var_ps(hsum_pairs(acc[i][0]), lo_idx, hsum_pairs(acc[i][1]));
            __m512 f23 = _mm512_permutex2var_ps(hsum_pairs(acc[i][2]), hi_idx, hsum_pairs(acc[i][3]));
            __m256 s = _mm256_mul_ps(_mm512_castps512_ps256(_mm512_mask_mov_ps(f01, 0xf0, f23)), _mm256_set1_ps(scale));
            _mm256_storeu_ps(scores + (size_t)i * ss + t, s);
            mx[i] = _mm256_max_ps(mx[i], s);
        }
    }
    for (int i = 0; i < n_q; i++) {
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx[i]), _mm256_extractf128_ps(mx[i], 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 0x55)));
        for (int u = t; u < n_keys[i]; u++) {
            float s = score1(q[i], k + (size_t)u * kv_stride, hd) * scale;
            scores[(size_t)i * ss + u] = s;
            if (s > m) m = s;
        }
        max[i] = m;
    }
}

/* attend_q8_group for n_q queries (a constant in each copy), hd a multiple of 16. */
static inline __attribute__((always_inline)) AVX512 void group(const float *const *q, float *const *out,
                                                              const int n_q, const float *k, const float *v,
                                                              size_t kv_stride, int hd, const int *n_keys,
                                                              float scale, float *scores) {
    int common = n_keys[0], longest = n_keys[0];
    for (int i = 1; i < n_q; i++) {
        if (n_keys[i] < common) common = n_keys[i];
        if (n_keys[i] > longest) longest = n_keys[i];
    }
    size_t ss = (size_t)round16(longest);
    float max[CPU_ATTEND_GROUP];
    scores_group(q, n_q, k, kv_stride, hd, n_keys, common, scale, scores, ss, max);
    /* e_t = exp(s_t - max) */
    for (int i = 0; i < n_q; i++) {
        float *s = scores + (size_t)i * ss;
        __m512 m = _mm512_set1_ps(max[i]);
        int t = 0;
        for (; t + 16 <= n_keys[i]; t += 16) _mm512_storeu_ps(s + t, exp_q8_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + t), m)));
        __mmask16 tail = (__mmask16)((1u << (n_keys[i] % 16)) - 1);
        if (t < n_keys[i])
            _mm512_mask_storeu_ps(s + t, tail, exp_q8_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + t), m)));
    }
    /* sum e_t in t order, the queries' chains side by side over the common
     * keys; then p_t = e_t * (1 / sum) */
    float sum[CPU_ATTEND_GROUP];
#pragma GCC unroll 6
    for (int i = 0; i < n_q; i++) sum[i] = 0.0f;
    for (int t = 0; t < common; t++)
#pragma GCC unroll 6
        for (int i = 0; i < n_q; i++) sum[i] += scores[(size_t)i * ss + t];
    for (int i = 0; i < n_q; i++) {
        float *s = scores + (size_t)i * ss;
        float total = sum[i];
        for (int t = common; t < n_keys[i]; t++) total += s[t];
        __m512 inv = _mm512_set1_ps(1.0f / total);
        for (int t = 0; t < n_keys[i]; t += 16) _mm512_storeu_ps(s + t, _mm512_mul_ps(_mm512_loadu_ps(s + t), inv));
    }
    /* out = sum_t p_t v_t in t order, 64 columns at a time: over the common
     * keys each value row is loaded once for all queries, then each query's
     * own keys */
    for (int c0 = 0; c0 < hd; c0 += 64) {
        int nz = (hd - c0 < 64 ? hd - c0 : 64) / 16;
        __m512 acc[CPU_ATTEND_GROUP][4];
#pragma GCC unroll 6
        for (int i = 0; i < n_q; i++)
#pragma GCC unroll 4
            for (int z = 0; z < 4; z++) acc[i][z] = _mm512_setzero_ps();
        if (nz == 4) {
            for (int t = 0; t < common; t++) {
                const float *vt = v + (size_t)t * kv_stride + c0;
                __m512 vz[4];
#pragma GCC unroll 4
                for (int z = 0; z < 4; z++) vz[z] = _mm512_loadu_ps(vt + 16 * z);
#pragma GCC unroll 6
                for (int i = 0; i < n_q; i++) {
                    __m512 p = _mm512_set1_ps(scores[(size_t)i * ss + t]);
#pragma GCC unroll 4
                    for (int z = 0; z < 4; z++) acc[i][z] = _mm512_fmadd_ps(p, vz[z], acc[i][z]);
                }
            }
        } else {
            for (int t = 0; t < common; t++) {
                const float *vt = v + (size_t)t * kv_stride + c0;
#pragma GCC unroll 6
                for (int i = 0; i < n_q; i++) {
                    __m512 p = _mm512_set1_ps(scores[(size_t)i * ss + t]);
                    for (int z = 0; z < nz; z++) acc[i][z] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vt + 16 * z), acc[i][z]);
                }
            }
        }
#pragma GCC unroll 6
        for (int i = 0; i < n_q; i++) {
            for (int t = common; t < n_keys[i]; t++) {
                const float *vt = v + (size_t)t * kv_stride + c0;
                __m512 p = _mm512_set1_ps(scores[(size_t)i * ss + t]);
                for (int z = 0; z < nz; z++) acc[i][z] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vt + 16 * z), acc[i][z]);
            }
            for (int z = 0; z < nz; z++) _mm512_storeu_ps(out[i] + c0 + 16 * z, acc[i][z]);
        }
    }
}

typedef void (*group_fn)(const float *const *, float *const *, const float *, const float *, size_t, int, const int *,
                         float, float *);

#define GROUP(N)                                                                                                  \
    static AVX512 void group##N(const float *const *q, float *const *out, const float *k, const float *v,        \
                                size_t kv_stride, int hd, const int *n_keys, float scale, float *scores) {        \
        group(q, out, N, k, v, kv_stride, hd, n_keys, scale, scores);                                             \
    }
GROUP(1) GROUP(2) GROUP(3) GROUP(4) GROUP(5) GROUP(6)

/* attend_q8_group (cpu_kernels.h) */
static AVX512 void attend_q8_group_avx512(const float *const *q, float *const *out, int n_q, const float *k,
                                          const float *v, size_t kv_stride, int hd, const int *n_keys, float scale,
                                          float *scores) {
    if (hd % 16 != 0 || n_q < 1 || n_q > CPU_ATTEND_GROUP) {
        attend_q8_group_avx2(q, out, n_q, k, v, kv_stride, hd, n_keys, scale, scores);
        return;
    }
    static const group_fn copies[CPU_ATTEND_GROUP] = {group1, group2, group3, group4, group5, group6};
    copies[n_q - 1](q, out, k, v, kv_stride, hd, n_keys, scale, scores);
}

static const cpu_kernels kernels_avx2 = {
    .name = "avx2",
    .decode_rows = decode_rows_avx2,
    .tile = tile_avx2,
    .dot_rows = dot_rows_avx2,
    .dot = dot_avx2,
    .axpy = axpy_avx2,
    .attend = attend_avx2,
    .attend_q8 = attend_q8_avx2,
    .attend_q8_group = attend_q8_group_avx2,
    .swiglu_q8 = swiglu_q8_avx2,
};

/* AVX2 + the AVX-512 attention of several queries (cpu_attend_avx512.h). */
static const cpu_kernels kernels_avx512 = {
    .name = "avx512",
    .decode_rows = decode_rows_avx2,
    .tile = tile_avx2,
    .dot_rows = dot_rows_avx2,
    .dot = dot_avx2,
    .axpy = axpy_avx2,
    .attend = attend_avx2,
    .attend_q8 = attend_q8_avx2,
    .attend_q8_group = attend_q8_group_avx512,
    .swiglu_q8 = swiglu_q8_avx2,
};

const cpu_kernels *cpu_kernels_best(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
            return &kernels_avx512;
        return &kernels_avx2;
    }
    return &kernels_portable;
}
#else
const cpu_kernels *cpu_kernels_best(void) {
    return &kernels_portable;
}
#endif
