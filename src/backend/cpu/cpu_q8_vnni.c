/* cpu_q8_vnni.c: prefill tiles of 4 weight rows x 4 activation rows for the
 * 32-value block types with AVX-512 VNNI on 256-bit vectors (vpdpbusd: four
 * u8 x s8 products summed into each int32 lane in one instruction; 32
 * vector registers hold the 16 accumulators). Other shapes and types go to
 * the AVX2 tile. The same lanes and the same float operations as cpu_q8.h
 * describes, so the same bits.
 *
 * vpdpbusd multiplies unsigned by signed bytes. Signed weights (Q4_0 Q5_0
 * Q8_0) are multiplied by the activations made unsigned, q + 128 (q xor
 * 0x80), and the lane starts at -128 * (sum of the lane's 4 weights): the
 * integer sum is then exactly sum w * q. Unsigned weights (Q4_1 Q5_1) take
 * the activations as they are. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#include "backend/cpu/cpu_q8_x86.h"

INLINE void tile32_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xq_stride, float *y, int64_t ys,
                       const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const int64_t n_blocks = w->n_in / 32;
    const size_t bs = (size_t)quant_type_size(type);
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    const uint8_t *rows[4];
    __m256 acc[4][4];
    float summ[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) acc[r][t] = _mm256_setzero_ps(), summ[r][t] = 0.0f;
    }
    for (int64_t b = 0; b < n_blocks; b++) {
        const cpu_q8_block *x[4];
        __m256i xv[4];
        __m256 dx[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            x[t] = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
            xv[t] = _mm256_loadu_si256((const __m256i *)(const void *)x[t]->q);
            if (!has_m) xv[t] = _mm256_xor_si256(xv[t], bias); /* q + 128, unsigned */
            dx[t] = _mm256_set1_ps(x[t]->d);
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            wblock32 wb = load_block32(rows[r] + (size_t)b * bs, type);
            __m256 dw = _mm256_set1_ps(wb.d);
            __m256i start = _mm256_setzero_si256();
            if (!has_m) start = _mm256_sub_epi32(start, _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, wb.w));
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                __m256i l = has_m ? _mm256_dpbusd_epi32(start, wb.w, xv[t]) : _mm256_dpbusd_epi32(start, xv[t], wb.w);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[t]), _mm256_cvtepi32_ps(l), acc[r][t]);
                if (has_m) summ[r][t] = fmaf(wb.m, x[t]->s, summ[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) y[t * ys + r] = hsum_ps(acc[r][t]) + summ[r][t];
}

static void q8_0_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tile32_4x4(w, r0, xq, xs, y, ys, QT_Q8_0);
}
static void q4_0_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tile32_4x4(w, r0, xq, xs, y, ys, QT_Q4_0);
}
static void q4_1_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tile32_4x4(w, r0, xq, xs, y, ys, QT_Q4_1);
}
static void q5_0_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tile32_4x4(w, r0, xq, xs, y, ys, QT_Q5_0);
}
static void q5_1_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tile32_4x4(w, r0, xq, xs, y, ys, QT_Q5_1);
}

void cpu_q8_tile_vnni(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys) {
    void (*f)(const model_weight *, int64_t, const uint8_t *, size_t, float *, int64_t);
    switch (w->type) {
    case QT_Q8_0: f = q8_0_4x4; break;
    case QT_Q4_0: f = q4_0_4x4; break;
    case QT_Q4_1: f = q4_1_4x4; break;
    case QT_Q5_0: f = q5_0_4x4; break;
    case QT_Q5_1: f = q5_1_4x4; break;
    default: cpu_q8_tile_avx2(w, r0, n_rows, xq, xq_stride, n_x, y, ys); return;
    }
    int t4 = n_x / 4 * 4, r4 = n_rows / 4 * 4;
    for (int t = 0; t < t4; t += 4)
        for (int r = 0; r < r4; r += 4) f(w, r0 + r, xq + (size_t)t * xq_stride, xq_stride, y + t * ys + r, ys);
    if (r4 < n_rows && t4 > 0) cpu_q8_tile_avx2(w, r0 + r4, n_rows - r4, xq, xq_stride, t4, y + r4, ys);
    if (t4 < n_x)
        cpu_q8_tile_avx2(w, r0, n_rows, xq + (size_t)t4 * xq_stride, xq_stride, n_x - t4, y + t4 * ys, ys);
}
#endif
