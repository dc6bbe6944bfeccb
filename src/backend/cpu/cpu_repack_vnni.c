/* cpu_repack_vnni.c: the AVX-512 VNNI kernels on repacked groups
 * (cpu_repack.h).
 *
 * Blocks of 32: one group of 16 rows x NX activation rows (8, 4, 2 or 1).
 * Int32 lane r of every register is row r of the group. Per block b:
 *   dw       the 16 rows' scales (one vcvtph2ps)
 *   W[k]     value chunk k (values 4k .. 4k+3) of the 16 rows, k < 8 (Q8_0:
 *            one load each; Q4 / Q5: 4 loads, each giving chunks k and k + 4
 *            by a mask and a shift and mask; Q5 adds 16 where the 64-bit
 *            mask H[k] says)
 *   per activation row t:
 *     isum   = vpdpbusd over k of W[k] against x[t]'s bytes 4k .. 4k+3
 *              broadcast, the lane started at -bias * sum(q): lane r is row
 *              r's exact block sum (two chains of 4, added: integers)
 *     acc[t] = fma(dw * dx[t], float(isum), acc[t])
 *     summ[t] = fma(m, s[t], summ[t])                (Q4_1 / Q5_1)
 * then out = acc (+ summ): cpu_q8.h's order lane by lane, so the same bits
 * as its kernels on the file's blocks. Per block and 16 x NX outputs: 8 NX
 * vpdpbusd and NX conversions and FMAs (the file-layout order of before
 * needed a conversion and an FMA per 2 outputs). */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
#include "backend/cpu/cpu_q8_x86.h"
#include "backend/cpu/cpu_repack.h"

void cpu_repack_tile_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);
void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);

/* The 16 rows' values of group block qs (cpu_repack.h), chunk k in w[k]. */
INLINE void group_values(const uint8_t *qs, __m512i w[8], const uint32_t type) {
    if (type == QT_Q8_0) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) w[k] = _mm512_loadu_si512((const void *)(qs + 64 * k));
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i p = _mm512_loadu_si512((const void *)(qs + 64 * k));
        w[k] = _mm512_and_si512(p, m4);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
    }
    if (type == QT_Q5_0 || type == QT_Q5_1) {
        const __m512i b4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            uint64_t h;
            memcpy(&h, qs + 256 + 8 * k, 8);
            w[k] = _mm512_mask_add_epi8(w[k], _cvtu64_mask64(h), w[k], b4); /* nibble + 16 = bit 4 set */
        }
    }
}

INLINE __m512i x_chunk(const int8_t *q, int k) {
    int32_t v;
    memcpy(&v, q + 4 * k, 4);
    return _mm512_set1_epi32(v);
}

/* out[t][r] = dot(row r of group g, activation row t), t < NX, r < 16. */
INLINE void group16(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xq_stride, float out[8][16],
                    const int NX, const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const int32_t bias = type == QT_Q4_0 ? 8 : type == QT_Q5_0 ? 16 : type == QT_Q8_0 ? 128 : 0;
    const uint8_t *blk = rp->data + (size_t)g * rp->group_bytes;
    const size_t bb = rp->block_bytes;
    const int64_t nb = rp->n_blocks;
    const cpu_q8_block *x[8];
    __m512 acc[8], summ[8];
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride);
        acc[t] = summ[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++, blk += bb) {
        if (NX == 1) /* decode: a stream over the weights */
            for (size_t off = 0; off < bb; off += 64) _mm_prefetch((const char *)blk + 4096 + off, _MM_HINT_T0);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
        __m512 mw = has_m ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 32)))
                          : _mm512_setzero_ps();
        __m512i w[8];
        group_values(blk + (has_m ? 64 : 32), w, type);
#pragma GCC unroll 8
        for (int t = 0; t < NX; t++) {
            const cpu_q8_block *xb = x[t] + b;
            __m512i i0 = has_m ? _mm512_setzero_si512() : _mm512_set1_epi32(-bias * xb->sum);
            __m512i i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                i0 = _mm512_dpbusd_epi32(i0, w[k], x_chunk(xb->q, k));
                i1 = _mm512_dpbusd_epi32(i1, w[k + 4], x_chunk(xb->q, k + 4));
            }
            __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), f, acc[t]);
            if (has_m) summ[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb->s), summ[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) _mm512_storeu_ps(out[t], has_m ? _mm512_add_ps(acc[t], summ[t]) : acc[t]);
}

typedef void (*group16_fn)(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, float out[8][16]);

#define GROUP16_FNS(NAME, TYPE)                                                                                     \
    static void NAME##_x8(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, float out[8][16]) {    \
        group16(rp, g, xq, xs, out, 8, TYPE);                                                                       \
    }                                                                                                               \
    static void NAME##_x4(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, float out[8][16]) {    \
        group16(rp, g, xq, xs, out, 4, TYPE);                                                                       \
    }                                                                                                               \
    static void NAME##_x2(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, float out[8][16]) {    \
        group16(rp, g, xq, xs, out, 2, TYPE);                                                                       \
    }                                                                                                               \
    static void NAME##_x1(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, float out[8][16]) {    \
        group16(rp, g, xq, xs, out, 1, TYPE);                                                                       \
    }

GROUP16_FNS(q4_0, QT_Q4_0)
GROUP16_FNS(q4_1, QT_Q4_1)
GROUP16_FNS(q5_0, QT_Q5_0)
GROUP16_FNS(q5_1, QT_Q5_1)
GROUP16_FNS(q8_0, QT_Q8_0)

static group16_fn group16_for(uint32_t type, int nt) {
    switch (type) {
    case QT_Q4_0: return nt == 8 ? q4_0_x8 : nt == 4 ? q4_0_x4 : nt == 2 ? q4_0_x2 : q4_0_x1;
    case QT_Q4_1: return nt == 8 ? q4_1_x8 : nt == 4 ? q4_1_x4 : nt == 2 ? q4_1_x2 : q4_1_x1;
    case QT_Q5_0: return nt == 8 ? q5_0_x8 : nt == 4 ? q5_0_x4 : nt == 2 ? q5_0_x2 : q5_0_x1;
    case QT_Q5_1: return nt == 8 ? q5_1_x8 : nt == 4 ? q5_1_x4 : nt == 2 ? q5_1_x2 : q5_1_x1;
    default: return nt == 8 ? q8_0_x8 : nt == 4 ? q8_0_x4 : nt == 2 ? q8_0_x2 : q8_0_x1;
    }
}

/* Activation rows in tiles of 8, 4, 2, 1 x the groups of rows [r0, r0 + n_rows). */
static void tile32_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                        int n_x, float *y, int64_t ys) {
    const int64_t r_end = r0 + n_rows;
    const int64_t G = CPU_REPACK_ROWS32;
    for (int t = 0; t < n_x;) {
        int nt = n_x - t >= 8 ? 8 : n_x - t >= 4 ? 4 : n_x - t >= 2 ? 2 : 1;
        group16_fn f = group16_for(rp->type, nt);
        const uint8_t *x = xq + (size_t)t * xq_stride;
        for (int64_t g = r0 / G; g * G < r_end; g++) {
            float out[8][16];
            f(rp, g, x, xq_stride, out);
            int64_t first = g * G, lo = first > r0 ? first : r0, hi = first + G < r_end ? first + G : r_end;
            for (int i = 0; i < nt; i++) memcpy(y + (t + i) * ys + (lo - r0), out[i] + (lo - first), sizeof(float) * (size_t)(hi - lo));
        }
        t += nt;
    }
}

/* y[i * ys + (row - r0)] = out[i][row - 4g] for the group's rows inside
 * [r0, r_end), i < nt (a whole group: one 128-bit store per row of out). */
static void store_group(float out[4][4], int64_t g, int64_t r0, int64_t r_end, int nt, float *y, int64_t ys) {
    int64_t first = g * CPU_REPACK_ROWS;
    if (first >= r0 && first + CPU_REPACK_ROWS <= r_end) {
        for (int i = 0; i < nt; i++) _mm_storeu_ps(y + i * ys + (first - r0), _mm_loadu_ps(out[i]));
        return;
    }
    int64_t lo = first > r0 ? first : r0, hi = first + CPU_REPACK_ROWS < r_end ? first + CPU_REPACK_ROWS : r_end;
    for (int i = 0; i < nt; i++)
        for (int64_t row = lo; row < hi; row++) y[i * ys + (row - r0)] = out[i][row - first];
}

/* ---- K quants: a group of 4 rows x NX activation rows (4, 2, 1).
 *
 * Per group block: the 4 rows' d (and dmin) by one vcvtph2ps; Q4_K / Q5_K
 * scales and mins of the 4 rows unpacked from their 6-bit fields with
 * 128-bit operations at once, widened to int16 words (word 8r + j = scale j
 * of row r). Per row r and chunk pair c (values 64c .. 64c + 63, a 512-bit
 * register: chunk 2c in the low half, 2c + 1 in the high half): the values
 * unpacked once, the scale vector by one vpermw; per activation row t:
 *   p   = vpmaddubsw(values, x)       (Q6_K: vpmaddubsw(x + 128, values - 32), the
 *                                      row's 128 x (values - 32) term taken off once)
 *   sum = vpdpwssd(sum, p, scales)    (= sum + vpmaddwd(p, scales), exact)
 * then the two halves' int32 lanes added: the same lanes as the file-layout
 * kernels (cpu_q8.h), and acc = fma(d * dx, float(lanes), acc). The minimum
 * term of the 4 rows at once: vpmaddwd of their mins with the activation's
 * bsum pairs (kept per call), reduced per 128-bit lane, then per row the
 * scalar chain's fma lane by lane: summ = fma(dmin * dx, float(mins), summ).
 * Result hsum(acc) - summ: cpu_q8_vnni.c's bits. */

#define MAX_K_BLOCKS 64 /* rows up to 16384 values: the per-call buffers below */

typedef struct {
    __m512i xu[4][MAX_K_BLOCKS][4]; /* Q6_K: x + 128 (unsigned) of act row t, block b, chunk pair c */
    int16_t pairs[4][MAX_K_BLOCKS][8]; /* Q4_K / Q5_K: bsums[2j] + bsums[2j + 1] */
} k_act;

static void k_act_fill(const uint8_t *xq, size_t xq_stride, int nx, int64_t nb, k_act *a, uint32_t type) {
    for (int t = 0; t < nx; t++) {
        const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride);
        for (int64_t b = 0; b < nb; b++) {
            if (type == QT_Q6_K) {
                for (int c = 0; c < 4; c++)
                    a->xu[t][b][c] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(x[b].q + 64 * c)),
                                                      _mm512_set1_epi8((char)0x80));
            } else {
                for (int j = 0; j < 8; j++) a->pairs[t][b][j] = (int16_t)(x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
            }
        }
    }
}

/* Row r's values of chunk pair c of group block blk. */
INLINE __m512i k_values(const uint8_t *blk, int r, int c, const uint32_t type) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    if (type == QT_Q6_K) {
        const int h = c / 2;
        __m512i l = _mm512_loadu_si512((const void *)(blk + 72 + 128 * r + 64 * h));
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 584 + 64 * r + 32 * h)));
        hb = _mm512_mask_srli_epi16(hb, (__mmask32)0xffff0000u, hb, 2); /* high half: qh >> 2 */
        if (c % 2 == 1) {
            l = _mm512_srli_epi16(l, 4);
            hb = _mm512_srli_epi16(hb, 4);
        }
        return _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(hb, _mm512_set1_epi8(3)), 4));
    }
    const uint8_t *qs = blk + (type == QT_Q5_K ? 192 : 64) + 128 * r + 32 * c;
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)qs));
    v = _mm512_and_si512(_mm512_mask_srli_epi16(v, (__mmask32)0xffff0000u, v, 4), m4);
    if (type == QT_Q5_K) {
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 + 32 * r)));
        hb = _mm512_mask_srli_epi16(hb, (__mmask32)0xffff0000u, hb, 1); /* high half: bit 2c + 1 */
        hb = _mm512_and_si512(_mm512_srli_epi16(hb, 2 * c), _mm512_set1_epi8(1));
        v = _mm512_or_si512(v, _mm512_slli_epi16(hb, 4));
    }
    return v;
}

/* Scale words of row r, chunk pair c: low half the scale of chunk 2c, high
 * half of 2c + 1 (Q4_K / Q5_K, from words 8r + j); Q6_K: 128-bit lane L the
 * scale of 16 values 4c + L (from words 16 (r % 2) + j of the pair's source). */
INLINE __m512i k_scales(__m512i src, int r, int c, const uint32_t type) {
    __m512i lane = _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                      15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     type == QT_Q6_K ? 3 : 4); /* word i -> i / 8 (Q6_K) or i / 16 */
    __m512i base = _mm512_set1_epi16((short)(type == QT_Q6_K ? 16 * (r % 2) + 4 * c : 8 * r + 2 * c));
    return _mm512_permutexvar_epi16(_mm512_add_epi16(base, lane), src);
}

INLINE void kgroup_tile(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xq_stride, const k_act *a,
                        float out[4][4], const int NX, const uint32_t type) {
    const bool has_m = type != QT_Q6_K;
    const uint8_t *group = rp->data + (size_t)g * rp->group_bytes;
    const size_t bb = rp->block_bytes;
    __m256 acc[4][4];
    __m128 summ[4];
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) {
        summ[t] = _mm_setzero_ps();
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < rp->n_blocks; b++) {
        const uint8_t *blk = group + (size_t)b * bb;
        if (NX == 1) {
            for (size_t off = 0; off < bb; off += 64) _mm_prefetch((const char *)blk + 4 * bb + off, _MM_HINT_T0);
        }
        float d[4];
        _mm_storeu_ps(d, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)blk)));
        __m512i scw[2], minw = _mm512_setzero_si512();
        __m128 dmin4 = _mm_setzero_ps();
        if (has_m) {
            dmin4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)(blk + 8)));
            const __m128i low6 = _mm_set1_epi8(0x3f), low4 = _mm_set1_epi8(0x0f), low2 = _mm_set1_epi8(0x03);
            __m128i u0 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16));
            __m128i u1 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 32));
            __m128i u2 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 48));
            __m128i sc03 = _mm_and_si128(u0, low6), mn03 = _mm_and_si128(u1, low6);
            __m128i sc47 = _mm_or_si128(_mm_and_si128(u2, low4),
                                        _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(u0, 6), low2), 4));
            __m128i mn47 = _mm_or_si128(_mm_and_si128(_mm_srli_epi32(u2, 4), low4),
                                        _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(u1, 6), low2), 4));
            scw[0] = _mm512_cvtepu8_epi16(
                _mm256_set_m128i(_mm_unpackhi_epi32(sc03, sc47), _mm_unpacklo_epi32(sc03, sc47)));
            scw[1] = scw[0];
            minw = _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_unpackhi_epi32(mn03, mn47), _mm_unpacklo_epi32(mn03, mn47)));
        } else {
            scw[0] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 8)));
            scw[1] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 40)));
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512i wq[4], sc[4];
            /* Q6_K: signed values w = u - 32 against the activations made
             * unsigned (x + 128, per call): sum over c of scales x pairs of
             * (x + 128) w, minus the row's own 128 x scales x pairs of w,
             * once per row (corr): exactly sum of scale x w x x, as the
             * file-layout kernel's (u x - 32 x) pairs give it. */
            __m512i corr = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                wq[c] = k_values(blk, r, c, type);
                sc[c] = k_scales(scw[r / 2], r, c, type);
                if (!has_m) {
                    wq[c] = _mm512_sub_epi8(wq[c], _mm512_set1_epi8(32));
                    corr = _mm512_dpwssd_epi32(corr, _mm512_maddubs_epi16(_mm512_set1_epi8((char)0x80), wq[c]), sc[c]);
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < NX; t++) {
                const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
                __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m512i p = has_m ? _mm512_maddubs_epi16(wq[c], _mm512_loadu_si512((const void *)(x->q + 64 * c)))
                                      : _mm512_maddubs_epi16(a->xu[t][b][c], wq[c]);
                    sum = _mm512_dpwssd_epi32(sum, p, sc[c]);
                }
                if (!has_m) sum = _mm512_sub_epi32(sum, corr);
                __m256i l = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(d[r] * x->d), _mm256_cvtepi32_ps(l), acc[r][t]);
            }
        }
        if (has_m) {
#pragma GCC unroll 4
            for (int t = 0; t < NX; t++) {
                const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
                __m512i pv = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)a->pairs[t][b]));
                __m512i mm = _mm512_madd_epi16(minw, pv); /* lanes 4r .. 4r + 3: row r */
                mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, _MM_PERM_BADC));
                mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, _MM_PERM_CDAB));
                __m128i mins4 = _mm512_castsi512_si128(
                    _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), mm));
                summ[t] = _mm_fmadd_ps(_mm_mul_ps(dmin4, _mm_set1_ps(x->d)), _mm_cvtepi32_ps(mins4), summ[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) {
        float sm[4];
        _mm_storeu_ps(sm, summ[t]);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) out[t][r] = hsum_ps(acc[r][t]) - sm[r];
    }
}

typedef void (*kgroup_fn)(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,
                          float out[4][4]);

#define KGROUP_FNS(NAME, TYPE)                                                                                      \
    static void NAME##_x4(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[4][4]) {                                                                        \
        kgroup_tile(rp, g, xq, xs, a, out, 4, TYPE);                                                                \
    }                                                                                                               \
    static void NAME##_x2(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[4][4]) {                                                                        \
        kgroup_tile(rp, g, xq, xs, a, out, 2, TYPE);                                                                \
    }                                                                                                               \
    static void NAME##_x1(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[4][4]) {                                                                        \
        kgroup_tile(rp, g, xq, xs, a, out, 1, TYPE);                                                                \
    }

KGROUP_FNS(q4_k, QT_Q4_K)
KGROUP_FNS(q5_k, QT_Q5_K)
KGROUP_FNS(q6_k, QT_Q6_K)

static void tilek_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                       float *y, int64_t ys) {
    if (rp->n_blocks > MAX_K_BLOCKS) { /* rows longer than 16384: the rebuilt rows' AVX2 kernel (same bits) */
        cpu_repack_tile_avx2(rp, r0, n_rows, xq, xq_stride, n_x, y, ys);
        return;
    }
    k_act a; /* 68 KiB */
    const int64_t r_end = r0 + n_rows;
    for (int t = 0; t < n_x;) {
        int nt = n_x - t >= 4 ? 4 : n_x - t >= 2 ? 2 : 1;
        kgroup_fn f;
        switch (rp->type) {
        case QT_Q4_K: f = nt == 4 ? q4_k_x4 : nt == 2 ? q4_k_x2 : q4_k_x1; break;
        case QT_Q5_K: f = nt == 4 ? q5_k_x4 : nt == 2 ? q5_k_x2 : q5_k_x1; break;
        default: f = nt == 4 ? q6_k_x4 : nt == 2 ? q6_k_x2 : q6_k_x1; break;
        }
        const uint8_t *x = xq + (size_t)t * xq_stride;
        k_act_fill(x, xq_stride, nt, rp->n_blocks, &a, rp->type);
        for (int64_t g = r0 / CPU_REPACK_ROWS; g * CPU_REPACK_ROWS < r_end; g++) {
            float out[4][4];
            f(rp, g, x, xq_stride, &a, out);
            store_group(out, g, r0, r_end, nt, y + t * ys, ys);
        }
        t += nt;
    }
}

void cpu_repack_tile_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    if (cpu_repack_is_k(rp->type))
        tilek_vnni(rp, r0, n_rows, xq, xq_stride, n_x, y, ys);
    else
        tile32_vnni(rp, r0, n_rows, xq, xq_stride, n_x, y, ys);
}
#endif
