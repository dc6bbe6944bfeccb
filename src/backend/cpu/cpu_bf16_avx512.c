/* cpu_bf16_avx512.c: BF16 weights at precision q8 with AVX-512 BF16:
 * vdpbf16ps takes 32 BF16 products per instruction into 16 float lanes, the
 * order of cpu_bf16.h by definition. Prefill: tiles of 4 weight rows x 4
 * activation rows (16 accumulators, each weight and activation load shared
 * by 4 instructions); decode (one activation row): a call's rows in two
 * halves multiplied side by side (two long streams). */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
#include "backend/cpu/cpu_avx512.h"
#include "backend/cpu/cpu_bf16.h"

#define PREFETCH_ROWS_AHEAD 8

INLINE __m512bh load_bh(const uint8_t *p) {
    return (__m512bh)_mm512_loadu_si512((const void *)p);
}

/* NR weight rows (1..4) x NT activation rows (1..6). */
INLINE void tile(const model_weight *w, int64_t r0, const uint8_t *xb, size_t xs, float *y, int64_t ys, const int NR,
                 const int NT) {
    const uint8_t *rows[4];
    __m512 acc[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    const uint8_t *ahead = rows[0] + (size_t)PREFETCH_ROWS_AHEAD * w->row_bytes;
    for (int64_t c = 0; c < w->n_in; c += 32) {
        if (NT == 1) {
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) _mm_prefetch((const char *)ahead + (size_t)r * w->row_bytes + 2 * c, _MM_HINT_T0);
        }
        __m512bh xv[6];
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) xv[t] = load_bh(xb + (size_t)t * xs + 2 * c);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512bh wv = load_bh(rows[r] + 2 * c);
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) y[t * ys + r] = lanes_sum(acc[r][t]);
}

typedef void (*tile_fn)(const model_weight *, int64_t, const uint8_t *, size_t, float *, int64_t);

#define TILE(NR, NT)                                                                                        \
    static void tile_##NR##x##NT(const model_weight *w, int64_t r0, const uint8_t *xb, size_t xs, float *y, \
                                 int64_t ys) {                                                              \
        tile(w, r0, xb, xs, y, ys, NR, NT);                                                                 \
    }
TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4) TILE(1, 5) TILE(1, 6)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4) TILE(2, 5) TILE(2, 6)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4) TILE(3, 5) TILE(3, 6)
TILE(4, 1) TILE(4, 2) TILE(4, 3) TILE(4, 4) TILE(4, 5) TILE(4, 6)

static const tile_fn tiles[4][6] = {
    {tile_1x1, tile_1x2, tile_1x3, tile_1x4, tile_1x5, tile_1x6},
    {tile_2x1, tile_2x2, tile_2x3, tile_2x4, tile_2x5, tile_2x6},
    {tile_3x1, tile_3x2, tile_3x3, tile_3x4, tile_3x5, tile_3x6},
    {tile_4x1, tile_4x2, tile_4x3, tile_4x4, tile_4x5, tile_4x6},
};

void cpu_bf16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride,
                          int n_x, float *y, int64_t ys);
void cpu_bf16_round_row_avx512(const float *x, int64_t n, uint16_t *dst);

/* cpu_bf16_round_row 16 values at a time, with the same integer steps:
 * to nearest even, zero or subnormal to a signed zero, NaN quieted. */
void cpu_bf16_round_row_avx512(const float *x, int64_t n, uint16_t *dst) {
    const __m512i exp_mask = _mm512_set1_epi32(0x7f800000), abs_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(x + i));
        __m512i high = _mm512_srli_epi32(u, 16);
        __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(high, one))), 16);
        __mmask16 tiny = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, exp_mask), _mm512_setzero_si512());
        __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), exp_mask);
        rounded = _mm512_mask_mov_epi32(rounded, tiny, _mm512_and_si512(high, _mm512_set1_epi32(0x8000)));
        rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x0040)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(rounded));
    }
    if (i < n) cpu_bf16_round_row(x + i, n - i, dst + i);
}

/* Decode: y[0] = row r0 . x and y[gap] = row r0 + gap . x, two independent
 * chains read from two places far apart, each a contiguous stream over its
 * half of the rows (the hardware prefetcher follows two long streams; four
 * adjacent rows at once are four streams that each end after one row). */
INLINE void streams_x1(const model_weight *w, int64_t r0, int64_t gap, const uint8_t *xb, float *y, const int NS) {
    const uint8_t *rows[2];
    __m512 acc[2];
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) {
        rows[s] = w->data + (size_t)(r0 + s * gap) * w->row_bytes;
        acc[s] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < w->n_in; c += 32) {
        __m512bh xv = load_bh(xb + 2 * c);
#pragma GCC unroll 2
        for (int s = 0; s < NS; s++) acc[s] = _mm512_dpbf16_ps(acc[s], load_bh(rows[s] + 2 * c), xv);
    }
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) y[s * gap] = lanes_sum(acc[s]);
}

static void decode(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, float *y) {
    int half = n_rows / 2;
    for (int r = 0; r < half; r++) streams_x1(w, r0 + r, half, xb, y + r, 2);
    if (n_rows % 2) streams_x1(w, r0 + n_rows - 1, 0, xb, y + n_rows - 1, 1);
}

void cpu_bf16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride,
                          int n_x, float *y, int64_t ys) {
    if (n_x == 1) {
        decode(w, r0, n_rows, xb, y);
        return;
    }
    for (int t = 0; t < n_x; t += 6) {
        int nt = n_x - t < 6 ? n_x - t : 6;
        for (int r = 0; r < n_rows; r += 4) {
            int nr = n_rows - r < 4 ? n_rows - r : 4;
            tiles[nr - 1][nt - 1](w, r0 + r, xb + (size_t)t * xb_stride, xb_stride, y + t * ys + r, ys);
        }
    }
}
#endif
