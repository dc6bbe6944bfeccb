/* cpu_bf16_avx2.c: BF16 weights at precision q8 on AVX2: vdpbf16ps's order
 * (cpu_bf16.h) with exact float products and two additions per lane and
 * chunk, the MXCSR's flush-to-zero and denormals-are-zero set for the kernel
 * (the instruction's DAZ/FTZ), restored before the final lane sums. The 16
 * lanes of a dot product are two 8-lane registers: lanes 0..7 hold the
 * value pairs (32-bit words) 0..7 of each 32-value chunk, lanes 8..15 the
 * words 8..15; in a word the even value is the low half (word << 16 is its
 * float) and the odd value the high half (word & 0xffff0000). */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <stdint.h>

#include "backend/cpu/cpu_bf16.h"

#define INLINE static inline __attribute__((always_inline))
#define MXCSR_FTZ_DAZ 0x8040u
#define PREFETCH_ROWS_AHEAD 8 /* weight rows prefetched ahead of the group being multiplied */

INLINE float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);  /* v0+v4, v1+v5, v2+v6, v3+v7 */
    __m128 t = _mm_movehl_ps(s, s); /* v2+v6, v3+v7 */
    __m128 u = _mm_add_ps(s, t);    /* (v0+v4)+(v2+v6), (v1+v5)+(v3+v7) */
    __m128 z = _mm_shuffle_ps(u, u, 0x55);
    return _mm_cvtss_f32(_mm_add_ss(u, z));
}

/* lane = F(F(lane + odd products) + even products) for 8 word pairs. */
INLINE __m256 step(__m256 lane, __m256i w, __m256i x, __m256i high) {
    __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(w, high)), xo = _mm256_castsi256_ps(_mm256_and_si256(x, high));
    __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), xe = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    lane = _mm256_add_ps(lane, _mm256_mul_ps(wo, xo));
    return _mm256_add_ps(lane, _mm256_mul_ps(we, xe));
}

/* NR weight rows (1..4) x one activation row. */
INLINE void rows_x1(const model_weight *w, int64_t r0, const uint8_t *x, float *y, int64_t ys, const int NR) {
    const uint8_t *rows[4];
    __m256 lo[4], hi[4];
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
        lo[r] = hi[r] = _mm256_setzero_ps();
    }
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    const uint8_t *ahead = rows[0] + (size_t)PREFETCH_ROWS_AHEAD * w->row_bytes;
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | MXCSR_FTZ_DAZ);
    for (int64_t c = 0; c < w->n_in; c += 32) {
        for (int r = 0; r < NR; r++) _mm_prefetch((const char *)ahead + (size_t)r * w->row_bytes + 2 * c, _MM_HINT_T0);
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)(x + 2 * c));
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(x + 2 * c + 32));
        for (int r = 0; r < NR; r++) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(rows[r] + 2 * c));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(rows[r] + 2 * c + 32));
            lo[r] = step(lo[r], w0, x0, high);
            hi[r] = step(hi[r], w1, x1, high);
        }
    }
    _mm_setcsr(saved);
    for (int r = 0; r < NR; r++) y[r * ys] = hsum8(_mm256_add_ps(lo[r], hi[r]));
}

void cpu_bf16_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride, int n_x,
                        float *y, int64_t ys);

void cpu_bf16_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride, int n_x,
                        float *y, int64_t ys) {
    for (int t = 0; t < n_x; t++) {
        const uint8_t *x = xb + (size_t)t * xb_stride;
        int r = 0;
        for (; r + 4 <= n_rows; r += 4) rows_x1(w, r0 + r, x, y + t * ys + r, 1, 4);
        for (; r < n_rows; r++) rows_x1(w, r0 + r, x, y + t * ys + r, 1, 1);
    }
}
#endif
