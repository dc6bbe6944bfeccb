/* cpu_repack_avx2.c: the AVX2 kernels on repacked groups (cpu_repack.h):
 * cpu_q8_avx2.c's arithmetic (sign trick, vpmaddubsw + vpmaddwd, one FMA
 * per block) with the values read from the group blocks: 4 rows of a group
 * x 1 activation row (decode), 1 row x 4 activation rows (prefill). */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include "backend/cpu/cpu_q8_x86.h"
#include "backend/cpu/cpu_repack.h"

void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);

/* Row r's 32 values of group block blk: signed (value = u - bias), or for
 * Q4_1 / Q5_1 the unsigned q. */
INLINE __m256i row_values(const uint8_t *blk, int r, const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const uint8_t *qs = blk + (has_m ? 16 : 8);
    if (type == QT_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * r)),
                                _mm256_set1_epi8((char)0x80));
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * (r / 2)));
    if (r % 2 == 1) v = _mm256_srli_epi16(v, 4);
    __m256i u = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
    if (type == QT_Q4_1) return u;
    if (type == QT_Q4_0) return _mm256_sub_epi8(u, _mm256_set1_epi8(8));
    uint32_t qh;
    memcpy(&qh, qs + 64 + 4 * r, 4);
    u = _mm256_or_si256(u, _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
    return type == QT_Q5_1 ? u : _mm256_sub_epi8(u, _mm256_set1_epi8(16));
}

/* Block b of rows r_first .. r_first + NR - 1 of group block blk against NX activation rows. */
INLINE void step(const uint8_t *blk, int r_first, int64_t b, const uint8_t *xq, size_t xq_stride, __m256 acc[4][4],
                 float summ[4][4], const int NR, const int NX, const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const cpu_q8_block *x[4];
    __m256i xv[4];
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
        xv[t] = _mm256_loadu_si256((const __m256i *)(const void *)x[t]->q);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NR; i++) {
        __m256i w = row_values(blk, r_first + i, type);
        float dw = f16_load(blk + 2 * (r_first + i));
        float mw = has_m ? f16_load(blk + 8 + 2 * (r_first + i)) : 0.0f;
        __m256i aw = has_m ? w : _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) {
            __m256i l = has_m ? lanes_us(w, xv[t]) : lanes_us(aw, _mm256_sign_epi8(xv[t], w));
            acc[i][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t]->d), _mm256_cvtepi32_ps(l), acc[i][t]);
            if (has_m) summ[i][t] = fmaf(mw, x[t]->s, summ[i][t]);
        }
    }
}

/* Rows r_first .. r_first + NR - 1 of group g x NX activation rows; results to y[t * ys + i]. */
INLINE void tile(const cpu_repacked *rp, int64_t g, int r_first, const uint8_t *xq, size_t xq_stride, float *y,
                 int64_t ys, const int NR, const int NX, const uint32_t type) {
    const uint8_t *group = rp->data + (size_t)g * rp->group_bytes;
    __m256 even[4][4], odd[4][4];
    float summ[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) even[i][t] = odd[i][t] = _mm256_setzero_ps(), summ[i][t] = 0.0f;
    int64_t b = 0;
    for (; b + 1 < rp->n_blocks; b += 2) {
        const uint8_t *blk = group + (size_t)b * rp->block_bytes;
        _mm_prefetch((const char *)blk + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + 1088, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + 1152, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + 1216, _MM_HINT_T0);
        step(blk, r_first, b, xq, xq_stride, even, summ, NR, NX, type);
        step(blk + rp->block_bytes, r_first, b + 1, xq, xq_stride, odd, summ, NR, NX, type);
    }
    if (b < rp->n_blocks)
        step(group + (size_t)b * rp->block_bytes, r_first, b, xq, xq_stride, even, summ, NR, NX, type);
#pragma GCC unroll 4
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) y[t * ys + i] = hsum_ps(_mm256_add_ps(even[i][t], odd[i][t])) + summ[i][t];
}

typedef void (*tile_fn)(const cpu_repacked *rp, int64_t g, int r_first, const uint8_t *xq, size_t xs, float *y,
                        int64_t ys);

#define TILE_FNS(NAME, TYPE)                                                                                        \
    static void NAME##_4x1(const cpu_repacked *rp, int64_t g, int r_first, const uint8_t *xq, size_t xs,       \
                           float *y, int64_t ys) {                                                                  \
        tile(rp, g, r_first, xq, xs, y, ys, 4, 1, TYPE);                                                               \
    }                                                                                                               \
    static void NAME##_1x4(const cpu_repacked *rp, int64_t g, int r_first, const uint8_t *xq, size_t xs,       \
                           float *y, int64_t ys) {                                                                  \
        tile(rp, g, r_first, xq, xs, y, ys, 1, 4, TYPE);                                                               \
    }                                                                                                               \
    static void NAME##_1x1(const cpu_repacked *rp, int64_t g, int r_first, const uint8_t *xq, size_t xs,       \
                           float *y, int64_t ys) {                                                                  \
        tile(rp, g, r_first, xq, xs, y, ys, 1, 1, TYPE);                                                               \
    }

TILE_FNS(q4_0, QT_Q4_0)
TILE_FNS(q4_1, QT_Q4_1)
TILE_FNS(q5_0, QT_Q5_0)
TILE_FNS(q5_1, QT_Q5_1)
TILE_FNS(q8_0, QT_Q8_0)

void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    if (cpu_repack_is_k(rp->type)) {
        cpu_repack_tile_rebuilt(rp, r0, n_rows, xq, xq_stride, n_x, y, ys, cpu_q8_avx2());
        return;
    }
    tile_fn f4x1, f1x4, f1x1;
    switch (rp->type) {
    case QT_Q4_0: f4x1 = q4_0_4x1, f1x4 = q4_0_1x4, f1x1 = q4_0_1x1; break;
    case QT_Q4_1: f4x1 = q4_1_4x1, f1x4 = q4_1_1x4, f1x1 = q4_1_1x1; break;
    case QT_Q5_0: f4x1 = q5_0_4x1, f1x4 = q5_0_1x4, f1x1 = q5_0_1x1; break;
    case QT_Q5_1: f4x1 = q5_1_4x1, f1x4 = q5_1_1x4, f1x1 = q5_1_1x1; break;
    default: f4x1 = q8_0_4x1, f1x4 = q8_0_1x4, f1x1 = q8_0_1x1; break;
    }
    int t = 0;
    for (; t + 4 <= n_x; t += 4)
        for (int r = 0; r < n_rows; r++) {
            int64_t row = r0 + r;
            int in_group = (int)(row % CPU_REPACK_ROWS);
            f1x4(rp, row / CPU_REPACK_ROWS, in_group, xq + (size_t)t * xq_stride, xq_stride,
                 y + t * ys + r, ys);
        }
    for (; t < n_x; t++) {
        const uint8_t *x = xq + (size_t)t * xq_stride;
        for (int r = 0; r < n_rows;) {
            int64_t row = r0 + r;
            int in_group = (int)(row % CPU_REPACK_ROWS);
            if (in_group == 0 && r + CPU_REPACK_ROWS <= n_rows) {
                f4x1(rp, row / CPU_REPACK_ROWS, 0, x, xq_stride, y + t * ys + r, ys);
                r += CPU_REPACK_ROWS;
            } else {
                f1x1(rp, row / CPU_REPACK_ROWS, in_group, x, xq_stride, y + t * ys + r, ys);
                r++;
            }
        }
    }
}
#endif
