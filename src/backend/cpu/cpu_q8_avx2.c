/* cpu_q8_avx2.c: the AVX2 (+FMA, F16C) q8 kernels: 4 weight rows x 1
 * activation row (decode), 1 x 4 (prefill), 1 x 1 (tails), each in the
 * fixed order of cpu_q8.h. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include "backend/cpu/cpu_q8_x86.h"

/* Block b of NR weight rows x NX activation rows (4 x 1, 1 x 4 or 1 x 1)
 * into the float chains of cpu_q8.h: each output's block sum reduced to one
 * exact int32, then acc = fma(dw * dx, (float)isum, acc) (and the minimum
 * chain), one 128-bit lane per output when there are four (lane r for
 * 4 x 1, lane t for 1 x 4): lane by lane the scalar operations. */
INLINE void step32(const uint8_t *const *rows, size_t bs, int64_t b, const uint8_t *xq, size_t xq_stride,
                   __m128 *acc, __m128 *summ, float *acc1, float *summ1, const int NR, const int NX,
                   const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const bool is_signed = !has_m;
    const cpu_q8_block *x[4];
    __m256i xv[4], l[4];
    wblock32 wb[4];
#pragma GCC unroll 4
    for (int t = 0; t < NX; t++) {
        x[t] = (const cpu_q8_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
        xv[t] = _mm256_loadu_si256((const __m256i *)(const void *)x[t]->q);
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        wb[r] = load_block32(rows[r] + (size_t)b * bs, type);
        __m256i aw = is_signed ? _mm256_sign_epi8(wb[r].w, wb[r].w) : wb[r].w;
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++)
            l[r * NX + t] = is_signed ? lanes_us(aw, _mm256_sign_epi8(xv[t], wb[r].w)) : lanes_us(wb[r].w, xv[t]);
    }
    if (NR * NX == 1) {
        *acc1 = fmaf(wb[0].d * x[0]->d, (float)hsum_epi32(l[0]), *acc1);
        if (has_m) *summ1 = fmaf(wb[0].m, x[0]->s, *summ1);
        return;
    }
    __m128i isum = hsum4_epi32(l[0], l[1], l[2], l[3]);
    __m128 dw = NR == 4 ? _mm_setr_ps(wb[0].d, wb[1].d, wb[2].d, wb[3].d) : _mm_set1_ps(wb[0].d);
    __m128 dx = NX == 4 ? _mm_setr_ps(x[0]->d, x[1]->d, x[2]->d, x[3]->d) : _mm_set1_ps(x[0]->d);
    *acc = _mm_fmadd_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(isum), *acc);
    if (has_m) {
        __m128 m = NR == 4 ? _mm_setr_ps(wb[0].m, wb[1].m, wb[2].m, wb[3].m) : _mm_set1_ps(wb[0].m);
        __m128 s = NX == 4 ? _mm_setr_ps(x[0]->s, x[1]->s, x[2]->s, x[3]->s) : _mm_set1_ps(x[0]->s);
        *summ = _mm_fmadd_ps(m, s, *summ);
    }
}

/* NR weight rows x NX activation rows of a 32-value block type (NR * NX is 4 or 1). */
INLINE void tile32(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xq_stride, float *y, int64_t ys,
                   const int NR, const int NX, const uint32_t type) {
    const bool has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const int64_t n_blocks = w->n_in / 32;
    const size_t bs = (size_t)quant_type_size(type);
    const uint8_t *rows[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
    __m128 acc = _mm_setzero_ps(), summ = _mm_setzero_ps();
    float acc1 = 0.0f, summ1 = 0.0f;
    /* The NR rows are contiguous: prefetch the ones PREFETCH_GROUPS groups
     * ahead, a block's share per block, so the next rows stream in while
     * these compute (harmless past the end of the matrix: no fault). */
    const char *ahead = (const char *)rows[0] + (size_t)NR * w->row_bytes * PREFETCH_GROUPS;
    const size_t slice = (size_t)NR * bs;
    for (int64_t b = 0; b < n_blocks; b++) {
        if (b % 2 == 0)
            for (size_t off = 0; off < 2 * slice; off += 64) _mm_prefetch(ahead + (size_t)b * slice + off, _MM_HINT_T0);
        step32(rows, bs, b, xq, xq_stride, &acc, &summ, &acc1, &summ1, NR, NX, type);
    }
    if (NR * NX == 1) {
        y[0] = has_m ? acc1 + summ1 : acc1;
        return;
    }
    float out[4];
    _mm_storeu_ps(out, has_m ? _mm_add_ps(acc, summ) : acc);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) y[NR == 4 ? i : i * ys] = out[i];
}

/* The sum of 8 int32 lanes (exact: any order gives the same integer). */
INLINE int32_t k_isum(__m256i l) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* One 256-value K block against one Q8_K activation block: the int32 lanes
 * (scales applied) and, for Q4_K / Q5_K, the integer minimum term. */
INLINE __m256i kblock_lanes(const uint8_t *b, const cpu_q8k_block *x, const uint8_t *sc, int32_t *mins,
                                 const uint32_t type) {
    __m256i sum = _mm256_setzero_si256();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (type == QT_Q6_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *s = (const int8_t *)(b + 192);
        const __m256i m3 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, s += 8) {
            const int8_t *q8 = x->q + 128 * half;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(q8 + 32 * c));
                /* (q - 32) * x as q * x - 32 * x, pairwise int16 (|.| <= 63 * 127 * 2) */
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[c], xv), _mm256_maddubs_epi16(m32, xv));
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(s[2 * c + 1]), _mm_set1_epi16(s[2 * c]));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scv));
            }
        }
        return sum;
    }
    const uint8_t *qh = b + 16, *qs = type == QT_Q5_K ? b + 48 : b + 16;
    __m256i hbits = type == QT_Q5_K ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi8(1);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (type == QT_Q5_K) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)(x->q + 64 * c));
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(x->q + 64 * c + 32));
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16((short)sc[2 * c]));
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16((short)sc[2 * c + 1]));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
    }
    *mins = k4_mins(sc + 8, x->bsums);
    return sum;
}

INLINE void tilek(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xq_stride, float *y, int64_t ys,
                       const int NR, const int NX, const uint32_t type) {
    const bool has_m = type != QT_Q6_K;
    const int64_t n_blocks = w->n_in / 256;
    const size_t bs = (size_t)quant_type_size(type);
    const uint8_t *rows[4];
    float acc[4][4], summ[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) acc[r][t] = 0.0f, summ[r][t] = 0.0f;
    }
    const char *ahead = (const char *)rows[0] + (size_t)NR * w->row_bytes * PREFETCH_GROUPS;
    const size_t slice = (size_t)NR * bs;
    for (int64_t b = 0; b < n_blocks; b++) {
        for (size_t off = 0; off < slice; off += 64) _mm_prefetch(ahead + (size_t)b * slice + off, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *blk = rows[r] + (size_t)b * bs;
            uint8_t sc[16];
            float d, dmin = 0.0f;
            if (has_m) {
                k4_scales(blk + 4, sc);
                d = f16_load(blk);
                dmin = f16_load(blk + 2);
            } else {
                d = f16_load(blk + 208);
            }
#pragma GCC unroll 4
            for (int t = 0; t < NX; t++) {
                const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
                int32_t mins = 0;
                int32_t isum = k_isum(kblock_lanes(blk, x, sc, &mins, type));
                acc[r][t] = fmaf(d * x->d, (float)isum, acc[r][t]);
                if (has_m) summ[r][t] = fmaf(dmin * x->d, (float)mins, summ[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int t = 0; t < NX; t++) y[t * ys + r] = has_m ? acc[r][t] - summ[r][t] : acc[r][t];
}

/* Fixed-shape instances: 4 x 1 (decode), 1 x 4 (prefill), 1 x 1 (tails). */
#define TILE_FNS(NAME, KERNEL, TYPE)                                                                                 \
    static void NAME##_4x1(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y,          \
                                int64_t ys) {                                                                       \
        KERNEL(w, r0, xq, xs, y, ys, 4, 1, TYPE);                                                                   \
    }                                                                                                                \
    static void NAME##_1x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y,          \
                                int64_t ys) {                                                                       \
        KERNEL(w, r0, xq, xs, y, ys, 1, 4, TYPE);                                                                   \
    }                                                                                                                \
    static void NAME##_1x1(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y,          \
                                int64_t ys) {                                                                       \
        KERNEL(w, r0, xq, xs, y, ys, 1, 1, TYPE);                                                                   \
    }

TILE_FNS(q8_0, tile32, QT_Q8_0)
TILE_FNS(q4_0, tile32, QT_Q4_0)
TILE_FNS(q4_1, tile32, QT_Q4_1)
TILE_FNS(q5_0, tile32, QT_Q5_0)
TILE_FNS(q5_1, tile32, QT_Q5_1)
TILE_FNS(q4_k, tilek, QT_Q4_K)
TILE_FNS(q5_k, tilek, QT_Q5_K)
TILE_FNS(q6_k, tilek, QT_Q6_K)

/* F16 / BF16 rows against float rows, 16 lanes as two 8-lane accumulators
 * (even and odd chunks): NR rows x 1 activation row, prefetched ahead.
 * (F16: cpu_f16's AVX2 build, cpu_f16.c; BF16: cpu_q8_float_rows.) */
INLINE __m256 half8(const uint8_t *p, const bool bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

INLINE void tile_half(const model_weight *w, int64_t r0, const float *x, float *y, const int NR, const bool bf16) {
    const uint8_t *rows[4];
    __m256 even[4], odd[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
        even[r] = odd[r] = _mm256_setzero_ps();
    }
    const char *ahead = (const char *)rows[0] + (size_t)NR * w->row_bytes * PREFETCH_GROUPS;
    for (int64_t c = 0; c < w->n_in; c += 16) {
        for (int off = 0; off < NR * 32; off += 64) _mm_prefetch(ahead + (size_t)(c / 16) * (size_t)NR * 32 + off, _MM_HINT_T0);
        __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            even[r] = _mm256_fmadd_ps(half8(rows[r] + 2 * c, bf16), x0, even[r]);
            odd[r] = _mm256_fmadd_ps(half8(rows[r] + 2 * c + 16, bf16), x1, odd[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r] = hsum_ps(_mm256_add_ps(even[r], odd[r]));
}

static void f16_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    tile_half(w, r0, x, y, 4, false);
}
static void f16_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    tile_half(w, r0, x, y, 1, false);
}
static void bf16_4(const model_weight *w, int64_t r0, const float *x, float *y) {
    tile_half(w, r0, x, y, 4, true);
}
static void bf16_1(const model_weight *w, int64_t r0, const float *x, float *y) {
    tile_half(w, r0, x, y, 1, true);
}

static void tile_half_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                           int n_x, float *y, int64_t ys) {
    bool bf16 = w->type == QT_BF16;
    for (int t = 0; t < n_x; t++) {
        const float *x = (const float *)(const void *)(xq + (size_t)t * xq_stride);
        int r = 0;
        for (; r + 4 <= n_rows; r += 4) (bf16 ? bf16_4 : f16_4)(w, r0 + r, x, y + t * ys + r);
        for (; r < n_rows; r++) (bf16 ? bf16_1 : f16_1)(w, r0 + r, x, y + t * ys + r);
    }
}

typedef void (*tile_fn)(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xs, float *y, int64_t ys);

void cpu_q8_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                           int n_x, float *y, int64_t ys) {
    tile_fn f4x1, f1x4, f1x1;
    switch (w->type) {
    case QT_Q8_0: f4x1 = q8_0_4x1, f1x4 = q8_0_1x4, f1x1 = q8_0_1x1; break;
    case QT_Q4_0: f4x1 = q4_0_4x1, f1x4 = q4_0_1x4, f1x1 = q4_0_1x1; break;
    case QT_Q4_1: f4x1 = q4_1_4x1, f1x4 = q4_1_1x4, f1x1 = q4_1_1x1; break;
    case QT_Q5_0: f4x1 = q5_0_4x1, f1x4 = q5_0_1x4, f1x1 = q5_0_1x1; break;
    case QT_Q5_1: f4x1 = q5_1_4x1, f1x4 = q5_1_1x4, f1x1 = q5_1_1x1; break;
    case QT_Q4_K: f4x1 = q4_k_4x1, f1x4 = q4_k_1x4, f1x1 = q4_k_1x1; break;
    case QT_Q5_K: f4x1 = q5_k_4x1, f1x4 = q5_k_1x4, f1x1 = q5_k_1x1; break;
    case QT_Q6_K: f4x1 = q6_k_4x1, f1x4 = q6_k_1x4, f1x1 = q6_k_1x1; break;
    case QT_F16:
    case QT_BF16: tile_half_avx2(w, r0, n_rows, xq, xq_stride, n_x, y, ys); return;
    default: return;
    }
    int t = 0;
    for (; t + 4 <= n_x; t += 4)
        for (int r = 0; r < n_rows; r++)
            f1x4(w, r0 + r, xq + (size_t)t * xq_stride, xq_stride, y + t * ys + r, ys);
    for (; t < n_x; t++) {
        const uint8_t *x = xq + (size_t)t * xq_stride;
        int r = 0;
        for (; r + 4 <= n_rows; r += 4) f4x1(w, r0 + r, x, xq_stride, y + t * ys + r, ys);
        for (; r < n_rows; r++) f1x1(w, r0 + r, x, xq_stride, y + t * ys + r, ys);
    }
}
#endif
