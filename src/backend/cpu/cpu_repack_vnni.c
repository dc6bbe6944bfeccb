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

/* ---- K quants: a group of 16 rows x NX activation rows (8, 4, 2, 1).
 *
 * Int32 lane r of every register is row r of the group (cpu_repack.h). Per
 * group block b and activation row t:
 *   S_j   = vpdpbusd over the 4-value steps of sub-block j: the 16 rows'
 *           unsigned values (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63; one load
 *           gives a step of 16 rows, a mask or shift and mask unpacks it)
 *           against the activation's 4 bytes broadcast to every lane
 *           (Q6_K: minus 32 x the activation's sum over the sub-block, so
 *           the values count as u - 32)
 *   isum  = sum over j of S_j x scale_j (vpmulld by the 16 rows' scales)
 *   mins  = sum over j of min_j x bsum_j (Q4_K / Q5_K: vpdpwssd of the 16
 *           rows' min pairs against the activation's bsum pairs)
 *   acc  = fma(d * dx, float(isum), acc); summ = fma(dmin * dx, float(mins), summ)
 * then out = acc - summ (Q6_K: acc): cpu_q8.h's K order lane by lane, the
 * exact integers of every other kernel, so the same bits. */

#define MAX_K_BLOCKS 64 /* rows up to 16384 values: the per-call buffers below */

typedef struct {
    int32_t pairs[8][MAX_K_BLOCKS][4]; /* Q4_K / Q5_K: int16 pairs (b[j], b[j + 2]) of b[j] = bsum of
                                        * 32 values, j = 0, 1, 4, 5 (lanes of the min pairs below) */
    int32_t b32[8][MAX_K_BLOCKS][16];   /* Q6_K: -32 x bsum of each 16 values (a lane's start) */
} k_act;

static void k_act_fill(const uint8_t *xq, size_t xq_stride, int nx, int64_t nb, k_act *a, uint32_t type) {
    for (int t = 0; t < nx; t++) {
        const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride);
        for (int64_t b = 0; b < nb; b++) {
            if (type == QT_Q6_K) { /* -32 x bsums, widened */
                __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)x[b].bsums);
                _mm512_storeu_si512((void *)a->b32[t][b], _mm512_sub_epi32(_mm512_setzero_si512(),
                                                                           _mm512_slli_epi32(_mm512_cvtepi16_epi32(bs), 5)));
                continue;
            }
            int32_t s[8];
            for (int j = 0; j < 8; j++) s[j] = (int32_t)x[b].bsums[2 * j] + x[b].bsums[2 * j + 1];
            static const int first[4] = {0, 1, 4, 5};
            for (int p = 0; p < 4; p++) {
                int j = first[p];
                a->pairs[t][b][p] = (int32_t)(uint16_t)(int16_t)s[j] | (int32_t)((uint32_t)(uint16_t)(int16_t)s[j + 2] << 16);
            }
        }
    }
}

INLINE __m512i bcast4(const int8_t *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* (a & 0x0f) | b, bytewise (b holds only bits 4..5). */
INLINE __m512i low_or(__m512i a, __m512i b) {
    return _mm512_ternarylogic_epi32(a, b, _mm512_set1_epi8(0x0f), 0xec); /* (a & c) | b */
}

/* Q4_K / Q5_K: the 16 rows' scales (sc[j]) and min pairs (mp[p]: int16
 * pairs (m_j, m_{j+2}) for j = 0, 1, 4, 5) from the 3 scale words. */
INLINE void k4_group_scales(const uint8_t *blk, __m512i sc[8], __m512i mp[4]) {
    const __m512i low6 = _mm512_set1_epi8(0x3f), low4 = _mm512_set1_epi8(0x0f), low2 = _mm512_set1_epi8(0x03);
    __m512i u0 = _mm512_loadu_si512((const void *)(blk + 64));
    __m512i u1 = _mm512_loadu_si512((const void *)(blk + 128));
    __m512i u2 = _mm512_loadu_si512((const void *)(blk + 192));
    __m512i sc03 = _mm512_and_si512(u0, low6), mn03 = _mm512_and_si512(u1, low6);
    __m512i sc47 = _mm512_or_si512(_mm512_and_si512(u2, low4),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), low2), 4));
    __m512i mn47 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), low4),
                                   _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), low2), 4));
    const __m512i byte = _mm512_set1_epi32(0xff), word = _mm512_set1_epi32(0x00ff00ff);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        sc[j] = _mm512_and_si512(_mm512_srli_epi32(sc03, 8 * j), byte);
        sc[j + 4] = _mm512_and_si512(_mm512_srli_epi32(sc47, 8 * j), byte);
    }
    mp[0] = _mm512_and_si512(mn03, word);                          /* (m0, m2) */
    mp[1] = _mm512_and_si512(_mm512_srli_epi32(mn03, 8), word);    /* (m1, m3) */
    mp[2] = _mm512_and_si512(mn47, word);                          /* (m4, m6) */
    mp[3] = _mm512_and_si512(_mm512_srli_epi32(mn47, 8), word);    /* (m5, m7) */
}

/* Q4_K / Q5_K block: segment s (values 64s .. 64s + 63: sub-blocks 2s and
 * 2s + 1), half hi (0: the low nibbles, sub-block 2s; 1: the high ones),
 * step g (values 4g .. 4g + 3 of the sub-block) of the 16 rows. */
INLINE __m512i k4_step_values(const uint8_t *blk, int s, int hi, int g, __m512i bit, const uint32_t type) {
    const uint8_t *qs = blk + (type == QT_Q5_K ? 768 : 256);
    __m512i p = _mm512_loadu_si512((const void *)(qs + 64 * (8 * s + g)));
    __m512i v = _mm512_and_si512(hi ? _mm512_srli_epi16(p, 4) : p, _mm512_set1_epi8(0x0f));
    if (type == QT_Q5_K) { /* bit 2s + hi of qh byte 4g + i (set in `bit`): add 16 */
        __m512i h = _mm512_loadu_si512((const void *)(blk + 256 + 64 * g));
        __mmask64 set = _mm512_test_epi8_mask(h, bit);
        v = _mm512_mask_or_epi32(v, 0xffff, v, _mm512_maskz_mov_epi8(set, _mm512_set1_epi8(0x10)));
    }
    return v;
}

INLINE void kgroup16_q45(const cpu_repacked *rp, int64_t g16, const uint8_t *xq, size_t xq_stride, const k_act *a,
                         float out[8][16], const int NX, const uint32_t type) {
    const uint8_t *blk = rp->data + (size_t)g16 * rp->group_bytes;
    const size_t bb = rp->block_bytes;
    const cpu_q8k_block *x[8];
    __m512 acc[8], summ[8];
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride);
        acc[t] = summ[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < rp->n_blocks; b++, blk += bb) {
        if (NX == 1)
            for (size_t off = 0; off < bb; off += 64) _mm_prefetch((const char *)blk + 2 * bb + off, _MM_HINT_T0);
        __m512i sc[8], mp[4], isum[8];
        k4_group_scales(blk, sc, mp);
#pragma GCC unroll 8
        for (int t = 0; t < NX; t++) isum[t] = _mm512_setzero_si512();
        for (int s = 0; s < 4; s++)
#pragma GCC unroll 2
        for (int hi = 0; hi < 2; hi++) { /* sub-block j: segment s, half hi */
            const int j = 2 * s + hi;
            const __m512i bit = _mm512_set1_epi8((char)(1 << j));
            __m512i sj[8];
#pragma GCC unroll 8
            for (int t = 0; t < NX; t++) sj[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m512i v = k4_step_values(blk, s, hi, g, bit, type);
#pragma GCC unroll 8
                for (int t = 0; t < NX; t++) sj[t] = _mm512_dpbusd_epi32(sj[t], v, bcast4(x[t][b].q + 32 * j + 4 * g));
            }
#pragma GCC unroll 8
            for (int t = 0; t < NX; t++) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sj[t], sc[j]));
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
        __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 32)));
#pragma GCC unroll 8
        for (int t = 0; t < NX; t++) {
            const int32_t *pr = a->pairs[t][b];
            __m512i mins = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp[0], _mm512_set1_epi32(pr[0]));
            mins = _mm512_dpwssd_epi32(mins, mp[1], _mm512_set1_epi32(pr[1]));
            mins = _mm512_dpwssd_epi32(mins, mp[2], _mm512_set1_epi32(pr[2]));
            mins = _mm512_dpwssd_epi32(mins, mp[3], _mm512_set1_epi32(pr[3]));
            __m512 dx = _mm512_set1_ps(x[t][b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[t]), acc[t]);
            summ[t] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(mins), summ[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) _mm512_storeu_ps(out[t], _mm512_sub_ps(acc[t], summ[t]));
}

/* Q6_K: the 16 rows' values (unsigned 0..63) of sub-block j (values
 * 16j .. 16j + 15), step gg (4 of them: 16j + 4gg ..). Value 128h + 32m + l
 * (l < 32) is the low (m < 2) or high nibble of ql byte 64h + 32 (m % 2) + l
 * with bits 2m, 2m + 1 of qh byte 32h + l on top. */
INLINE __m512i k6_step_values(const uint8_t *blk, int h, int m, int gq, int gg) {
    const int l4 = 4 * gq + gg; /* l = 4 l4 .. (j = 8h + 2m + gq) */
    const __m512i m30 = _mm512_set1_epi8(0x30);
    __m512i q = _mm512_loadu_si512((const void *)(blk + 288 + 64 * (16 * h + 8 * (m % 2) + l4)));
    __m512i qh = _mm512_loadu_si512((const void *)(blk + 2336 + 64 * (8 * h + l4)));
    /* 16-bit shifts by a count in a register: the bits each byte needs
     * come from the same byte (what enters from its neighbour is masked off) */
    q = _mm512_srl_epi16(q, _mm_cvtsi32_si128(m >= 2 ? 4 : 0)); /* high nibble down */
    if (m < 2)
        qh = _mm512_sll_epi16(qh, _mm_cvtsi32_si128(4 - 2 * m)); /* bits 2m, 2m + 1 to 4, 5 */
    else
        qh = _mm512_srl_epi16(qh, _mm_cvtsi32_si128(2 * m - 4));
    return low_or(q, _mm512_and_si512(qh, m30));
}

INLINE void kgroup16_q6(const cpu_repacked *rp, int64_t g16, const uint8_t *xq, size_t xq_stride, const k_act *a,
                        float out[8][16], const int NX) {
    const uint8_t *blk = rp->data + (size_t)g16 * rp->group_bytes;
    const size_t bb = rp->block_bytes;
    const cpu_q8k_block *x[8];
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < rp->n_blocks; b++, blk += bb) {
        if (NX == 1)
            for (size_t off = 0; off < bb; off += 64) _mm_prefetch((const char *)blk + 2 * bb + off, _MM_HINT_T0);
        __m512i isum[8];
#pragma GCC unroll 8
        for (int t = 0; t < NX; t++) isum[t] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++)
            for (int gq = 0; gq < 2; gq++)
#pragma GCC unroll 1
        for (int m = 0; m < 4; m++) { /* sub-block j: values 16j .. 16j + 15 */
            const int j = 8 * h + 2 * m + gq;
            __m512i v[4];
#pragma GCC unroll 4
            for (int gg = 0; gg < 4; gg++) v[gg] = k6_step_values(blk, h, m, gq, gg);
            __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 32 + 16 * j)));
#pragma GCC unroll 8
            for (int t = 0; t < NX; t++) {
                __m512i sj = _mm512_set1_epi32(a->b32[t][b][j]);
#pragma GCC unroll 4
                for (int gg = 0; gg < 4; gg++) sj = _mm512_dpbusd_epi32(sj, v[gg], bcast4(x[t][b].q + 16 * j + 4 * gg));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sj, sc));
            }
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
#pragma GCC unroll 8
        for (int t = 0; t < NX; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(x[t][b].d)), _mm512_cvtepi32_ps(isum[t]), acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NX; t++) _mm512_storeu_ps(out[t], acc[t]);
}

typedef void (*kgroup_fn)(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,
                          float out[8][16]);

#define KGROUP_FNS(NAME, CALL)                                                                                      \
    static void NAME##_x8(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[8][16]) {                                                                       \
        CALL(8);                                                                                                    \
    }                                                                                                               \
    static void NAME##_x4(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[8][16]) {                                                                       \
        CALL(4);                                                                                                    \
    }                                                                                                               \
    static void NAME##_x2(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[8][16]) {                                                                       \
        CALL(2);                                                                                                    \
    }                                                                                                               \
    static void NAME##_x1(const cpu_repacked *rp, int64_t g, const uint8_t *xq, size_t xs, const k_act *a,         \
                          float out[8][16]) {                                                                       \
        CALL(1);                                                                                                    \
    }

#define CALL_Q4K(NX) kgroup16_q45(rp, g, xq, xs, a, out, NX, QT_Q4_K)
#define CALL_Q5K(NX) kgroup16_q45(rp, g, xq, xs, a, out, NX, QT_Q5_K)
#define CALL_Q6K(NX) kgroup16_q6(rp, g, xq, xs, a, out, NX)
KGROUP_FNS(q4_k, CALL_Q4K)
KGROUP_FNS(q5_k, CALL_Q5K)
KGROUP_FNS(q6_k, CALL_Q6K)

static kgroup_fn kgroup_for(uint32_t type, int nt) {
    switch (type) {
    case QT_Q4_K: return nt == 8 ? q4_k_x8 : nt == 4 ? q4_k_x4 : nt == 2 ? q4_k_x2 : q4_k_x1;
    case QT_Q5_K: return nt == 8 ? q5_k_x8 : nt == 4 ? q5_k_x4 : nt == 2 ? q5_k_x2 : q5_k_x1;
    default: return nt == 8 ? q6_k_x8 : nt == 4 ? q6_k_x4 : nt == 2 ? q6_k_x2 : q6_k_x1;
    }
}

static void tilek_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                       float *y, int64_t ys) {
    if (rp->n_blocks > MAX_K_BLOCKS) { /* rows longer than 16384: the rebuilt rows' AVX2 kernel (same bits) */
        cpu_repack_tile_avx2(rp, r0, n_rows, xq, xq_stride, n_x, y, ys);
        return;
    }
    k_act a; /* 40 KiB */
    const int64_t r_end = r0 + n_rows, G = CPU_REPACK_ROWS_K;
    for (int t = 0; t < n_x;) {
        int nt = n_x - t >= 8 ? 8 : n_x - t >= 4 ? 4 : n_x - t >= 2 ? 2 : 1;
        kgroup_fn f = kgroup_for(rp->type, nt);
        const uint8_t *x = xq + (size_t)t * xq_stride;
        k_act_fill(x, xq_stride, nt, rp->n_blocks, &a, rp->type);
        for (int64_t g = r0 / G; g * G < r_end; g++) {
            float out[8][16];
            f(rp, g, x, xq_stride, &a, out);
            int64_t first = g * G, lo = first > r0 ? first : r0, hi = first + G < r_end ? first + G : r_end;
            for (int i = 0; i < nt; i++)
                memcpy(y + (t + i) * ys + (lo - r0), out[i] + (lo - first), sizeof(float) * (size_t)(hi - lo));
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
