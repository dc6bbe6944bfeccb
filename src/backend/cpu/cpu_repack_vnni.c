/* cpu_repack_vnni.c: the AVX-512 VNNI kernel on repacked groups
 * (cpu_repack.h): one group of 4 rows x NX activation rows (4, 2 or 1).
 *
 * Registers: a 512-bit register holds a row pair p (rows 2p, 2p+1 of the
 * group): int32 lanes 0..7 are row 2p's eight lanes of cpu_q8.h, 8..15 row
 * 2p+1's. Per block b:
 *   u[p]     the pair's 64 unsigned values (one load: Q8_0; Q4_0 / Q5_0: the
 *            32 packed bytes in both halves, the high half shifted by 4,
 *            masked; Q5_0 ORs bit 4 from the 64-bit mask of the two rows)
 *   x[t]     activation row t's 32 bytes in both halves (one broadcast load)
 *   start[t] -bias * (sum of each lane's 4 bytes of x[t]), computed once per
 *            call for all its groups and read with a broadcast load
 *   dw[p]    the pair's scales (4 f16 converted once, then one permute)
 *   lanes    = vpdpbusd(start[t], u[p], x[t])        the exact int32 lanes
 *   acc[p][t] = fma(dw[p] * dx[t], float(lanes), acc)   (even or odd b's acc)
 * then acc = even + odd lane by lane and the 8-lane tree of each half: the
 * float operations of cpu_q8.h in its order, so the same bits. No per-row
 * unpacking of the file's blocks and no scale loads per row: this is what
 * the repacking buys. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
#include "backend/cpu/cpu_q8_x86.h"
#include "backend/cpu/cpu_repack.h"

void cpu_repack_tile_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);
void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);

/* Row pair p's 64 unsigned values of the group block whose values start at qs. */
INLINE __m512i pair_values(const uint8_t *qs, int p, const uint32_t type) {
    if (type == QT_Q8_0) return _mm512_loadu_si512((const void *)(qs + 64 * p));
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * p)));
    v = _mm512_mask_srli_epi16(v, (__mmask32)0xffff0000u, v, 4); /* high half: the high nibbles */
    __m512i u = _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
    if (type == QT_Q5_0) {
        uint64_t qh;
        memcpy(&qh, qs + 64 + 8 * p, 8); /* qh[2p] | qh[2p + 1] << 32 */
        u = _mm512_or_si512(u, _mm512_maskz_mov_epi8(_cvtu64_mask64(qh), _mm512_set1_epi8(0x10)));
    }
    return u;
}

/* The lanes' starting values of NX activation rows: start[t * n_blocks + b]
 * = -bias * (sum of each lane's 4 bytes of block b of row t), eight int32;
 * computed once per call and shared by all its groups. */
#define MAX_START_BLOCKS 512

INLINE void lane_starts(const uint8_t *xq, size_t xq_stride, int nx, int64_t n_blocks, __m256i *start,
                        const uint32_t type) {
    const __m256i bias = _mm256_set1_epi8((char)(type == QT_Q4_0 ? 8 : type == QT_Q5_0 ? 16 : 0x80));
    for (int t = 0; t < nx; t++) {
        const cpu_q8_block *x = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride);
        for (int64_t b = 0; b < n_blocks; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)x[b].q);
            start[t * n_blocks + b] =
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, q));
        }
    }
}

/* Block blk (index b) of a group x NX activation rows into acc[pair][t]
 * (the even or the odd blocks' accumulators). */
INLINE void group_step(const uint8_t *blk, int64_t b, const uint8_t *xq, size_t xq_stride, const __m256i *start,
                       int64_t n_blocks, __m512 acc[2][4], const int NX, const uint32_t type) {
    const __m512i idx0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i idx1 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    if (NX == 1) {
        _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + 2048 + 64, _MM_HINT_T0);
        if (type == QT_Q8_0) _mm_prefetch((const char *)blk + 2048 + 128, _MM_HINT_T0);
    }
    __m512i xv[4];
    const cpu_q8_block *x[4];
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
        xv[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)x[t]->q));
    }
    __m512 d16 = _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)blk)));
    __m512 dw[2] = {_mm512_permutexvar_ps(idx0, d16), _mm512_permutexvar_ps(idx1, d16)};
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) {
        __m512i u = pair_values(blk + 8, p, type);
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) {
            __m512i l = _mm512_dpbusd_epi32(_mm512_broadcast_i64x4(start[t * n_blocks + b]), u, xv[t]);
            acc[p][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], _mm512_set1_ps(x[t]->d)), _mm512_cvtepi32_ps(l),
                                        acc[p][t]);
        }
    }
}

/* out[t][r] = dot(row r of group g, activation row t), t < NX, r < 4. */
INLINE void group_tile(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xq_stride, const __m256i *start,
                       float out[4][4], const int NX, const uint32_t type) {
    const uint8_t *group = rp->data + (size_t)g * rp->group_bytes;
    const size_t bb = rp->block_bytes;
    const int64_t nb = rp->n_blocks;
    __m512 even[2][4], odd[2][4]; /* [pair][t] */
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) even[0][t] = even[1][t] = odd[0][t] = odd[1][t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        group_step(group + (size_t)b * bb, b, xq, xq_stride, start, nb, even, NX, type);
        group_step(group + (size_t)(b + 1) * bb, b + 1, xq, xq_stride, start, nb, odd, NX, type);
    }
    if (b < nb) group_step(group + (size_t)b * bb, b, xq, xq_stride, start, nb, even, NX, type);
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) {
            __m512 s = _mm512_add_ps(even[p][t], odd[p][t]);
            out[t][2 * p] = hsum_ps(_mm512_castps512_ps256(s));
            out[t][2 * p + 1] = hsum_ps(_mm512_extractf32x8_ps(s, 1));
        }
}

typedef void (*group_fn)(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const __m256i *start,
                         float out[4][4]);

#define GROUP_FNS(NAME, TYPE)                                                                                       \
    static void NAME##_x4(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const __m256i *start,   \
                          float out[4][4]) {                                                                        \
        group_tile(rp, g, xq, xs, start, out, 4, TYPE);                                                             \
    }                                                                                                               \
    static void NAME##_x2(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const __m256i *start,   \
                          float out[4][4]) {                                                                        \
        group_tile(rp, g, xq, xs, start, out, 2, TYPE);                                                             \
    }                                                                                                               \
    static void NAME##_x1(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const __m256i *start,   \
                          float out[4][4]) {                                                                        \
        group_tile(rp, g, xq, xs, start, out, 1, TYPE);                                                             \
    }

GROUP_FNS(q4_0, QT_Q4_0)
GROUP_FNS(q5_0, QT_Q5_0)
GROUP_FNS(q8_0, QT_Q8_0)

/* Activation rows [t, t + nt) x the groups of rows [r0, r0 + n_rows). */
static void tile_rows(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *x, size_t xq_stride, int nt,
                      float *y, int64_t ys, __m256i *start) {
    group_fn f;
    switch (rp->type) {
    case QT_Q4_0: f = nt == 4 ? q4_0_x4 : nt == 2 ? q4_0_x2 : q4_0_x1; break;
    case QT_Q5_0: f = nt == 4 ? q5_0_x4 : nt == 2 ? q5_0_x2 : q5_0_x1; break;
    default: f = nt == 4 ? q8_0_x4 : nt == 2 ? q8_0_x2 : q8_0_x1; break;
    }
    lane_starts(x, xq_stride, nt, rp->n_blocks, start, rp->type);
    const int64_t r_end = r0 + n_rows;
    for (int64_t g = r0 / CPU_REPACK_ROWS; g * CPU_REPACK_ROWS < r_end; g++) {
        float out[4][4];
        f(rp, g, x, xq_stride, start, out);
        int64_t lo = g * CPU_REPACK_ROWS > r0 ? g * CPU_REPACK_ROWS : r0;
        int64_t hi = g * CPU_REPACK_ROWS + CPU_REPACK_ROWS < r_end ? g * CPU_REPACK_ROWS + CPU_REPACK_ROWS : r_end;
        for (int i = 0; i < nt; i++)
            for (int64_t row = lo; row < hi; row++) y[i * ys + (row - r0)] = out[i][row - g * CPU_REPACK_ROWS];
    }
}

void cpu_repack_tile_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    if (rp->n_blocks > MAX_START_BLOCKS) { /* rows longer than 16384: the AVX2 kernel (same bits) */
        cpu_repack_tile_avx2(rp, r0, n_rows, xq, xq_stride, n_x, y, ys);
        return;
    }
    __m256i start[4 * MAX_START_BLOCKS]; /* 64 KiB */
    for (int t = 0; t < n_x;) {
        int nt = n_x - t >= 4 ? 4 : n_x - t >= 2 ? 2 : 1;
        tile_rows(rp, r0, n_rows, xq + (size_t)t * xq_stride, xq_stride, nt, y + t * ys, ys, start);
        t += nt;
    }
}
#endif
