/* cpu_f16_avx512.c: F16 weights at precision q8 with AVX-512: the 16 lanes
 * of cpu_f16.h's order are one 512-bit register, so each FMA takes 16
 * values (F16C's vcvtph2ps converts 16 weights exactly).
 *
 * Decode (one activation row): 4 weight rows at a time, the rows ahead
 * prefetched. Prefill: the weight rows of a call (up to 16) are converted to
 * float once per k-block of KBLOCK values, into a buffer that stays in L1,
 * and multiplied by tiles of 4 weight rows x 6 activation rows (24
 * accumulators); between k-blocks a tile's lanes wait in a buffer (stored
 * and loaded back exactly), so an element's sequence of FMAs is the one of
 * the order whatever the blocking. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512dq")
#include "backend/cpu/cpu_avx512.h"
#include "backend/cpu/cpu_f16.h"

#define TILE_X 6              /* prefill: activation rows per tile */
#define NT_MAX 6

INLINE __m512 load_f16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

/* ---- decode: one activation row, two streams ---- */

/* y[0] = row r0 . x and y[gap] = row r0 + gap . x: two independent chains
 * read from two places far apart, each a contiguous stream over its half of
 * the rows (the hardware prefetcher follows two long streams; four adjacent
 * rows at once are four streams that each end after one row). */
INLINE void rows_x1(const model_weight *w, int64_t r0, int64_t gap, const float *x, float *y, const int NS) {
    const uint8_t *rows[2];
    __m512 acc[2];
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) {
        rows[s] = w->data + (size_t)(r0 + s * gap) * w->row_bytes;
        acc[s] = _mm512_setzero_ps();
    }
    int64_t c = 0;
    for (; c + 32 <= w->n_in; c += 32) {
        __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
#pragma GCC unroll 2
        for (int s = 0; s < NS; s++) acc[s] = _mm512_fmadd_ps(load_f16(rows[s] + 2 * c), x0, acc[s]);
#pragma GCC unroll 2
        for (int s = 0; s < NS; s++) acc[s] = _mm512_fmadd_ps(load_f16(rows[s] + 2 * c + 32), x1, acc[s]);
    }
    if (c < w->n_in) {
        __m512 x0 = _mm512_loadu_ps(x + c);
#pragma GCC unroll 2
        for (int s = 0; s < NS; s++) acc[s] = _mm512_fmadd_ps(load_f16(rows[s] + 2 * c), x0, acc[s]);
    }
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) y[s * gap] = lanes_sum(acc[s]);
}

static void decode(const model_weight *w, int64_t r0, int n_rows, const float *x, float *y) {
    int half = n_rows / 2;
    for (int r = 0; r < half; r++) rows_x1(w, r0 + r, half, x, y + r, 2);
    if (n_rows % 2) rows_x1(w, r0 + n_rows - 1, 0, x, y + n_rows - 1, 1);
}

/* ---- prefill: NR weight rows x NT activation rows ---- */

INLINE void tile(const model_weight *w, int64_t r0, const float *x, int64_t xs, float *y, int64_t ys, const int NR,
                 const int NT) {
    const uint8_t *rows[4];
    __m512 acc[4][NT_MAX];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < w->n_in; c += 16) {
        __m512 xv[NT_MAX];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) xv[t] = _mm512_loadu_ps(x + t * xs + c);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512 wv = load_f16(rows[r] + 2 * c);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) y[t * ys + r] = lanes_sum(acc[r][t]);
}

typedef void (*tile_fn)(const model_weight *, int64_t, const float *, int64_t, float *, int64_t);

#define TILE(NR, NT)                                                                                              \
    static void tile_##NR##x##NT(const model_weight *w, int64_t r0, const float *x, int64_t xs, float *y, int64_t ys) { \
        tile(w, r0, x, xs, y, ys, NR, NT);                                                                        \
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

void cpu_f16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x, float *y,
                         int64_t ys);

void cpu_f16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x, float *y,
                         int64_t ys) {
    if (n_x == 1) {
        decode(w, r0, n_rows, x, y);
        return;
    }
    for (int t = 0; t < n_x; t += TILE_X) {
        int nt = n_x - t < TILE_X ? n_x - t : TILE_X;
        for (int r = 0; r < n_rows; r += 4) {
            int nr = n_rows - r < 4 ? n_rows - r : 4;
            tiles[nr - 1][nt - 1](w, r0 + r, x + t * xs, xs, y + t * ys + r, ys);
        }
    }
}
#endif
