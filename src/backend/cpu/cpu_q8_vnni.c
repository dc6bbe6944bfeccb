/* cpu_q8_vnni.c: AVX-512 prefill tiles on the file's blocks: 1 weight row x
 * 4 activation rows of the K quants, 4 x 4 of BF16 rows. The 32-value
 * block types take the AVX2 tile here (their fast kernel reads the repacked
 * groups, cpu_repack_vnni.c; the file-layout kernels serve
 * GRETA_CPU_REPACK=0 and the tests). The same lanes and the same float
 * operations as cpu_q8.h describes, so the same bits. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
#include "backend/cpu/cpu_q8_x86.h"

/* Two blocks side by side in one 512-bit register: a (lanes 0..7 / bytes
 * 0..31) and b (lanes 8..15 / bytes 32..63). */
INLINE __m512i pair_i(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
/* ---- K quants: 1 weight row x 4 activation rows, two 32-value chunks per
 * 512-bit vpmaddubsw / vpmaddwd (sub-block scales in the vpmaddwd). The
 * int32 lanes are summed at the end of the block: the block's exact integer
 * sum, then the same float operations as every other kernel (cpu_q8.h's K
 * order), so the same bits. (The file's blocks: only with
 * GRETA_CPU_REPACK=0 or rows the repacked kernel does not take.) */

INLINE __m512i pair_set16(int16_t a, int16_t b) {
    return pair_i(_mm256_set1_epi16(a), _mm256_set1_epi16(b));
}

INLINE void tilek_1x4(const model_weight *w, int64_t row, const uint8_t *xq, size_t xq_stride, float *y, int64_t ys,
                      const uint32_t type) {
    const bool has_m = type != QT_Q6_K;
    const int64_t n_blocks = w->n_in / 256;
    const size_t bs = (size_t)quant_type_size(type);
    const uint8_t *wrow = w->data + (size_t)row * w->row_bytes;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1), m3 = _mm256_set1_epi8(3);
    float acc[4], summ[4];
    for (int t = 0; t < 4; t++) acc[t] = 0.0f, summ[t] = 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *blk = wrow + (size_t)b * bs;
        __m512i wq[4], sc[4]; /* chunk pair c: values 64c..64c+63 and their scales */
        uint8_t s8[16];
        float d, dmin = 0.0f;
        if (has_m) {
            k4_scales(blk + 4, s8);
            d = f16_load(blk);
            dmin = f16_load(blk + 2);
            const uint8_t *qh = blk + 16, *qs = type == QT_Q5_K ? blk + 48 : blk + 16;
            __m256i hbits = type == QT_Q5_K ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (type == QT_Q5_K) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
                    hi = _mm256_or_si256(hi,
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
                }
                wq[c] = pair_i(lo, hi);
                sc[c] = pair_set16(s8[2 * c], s8[2 * c + 1]);
            }
        } else {
            const uint8_t *ql = blk, *qh = blk + 128;
            const int8_t *s = (const int8_t *)(blk + 192);
            d = f16_load(blk + 208);
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 64 * half));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 64 * half + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(qh + 32 * half));
                __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
                __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
                __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
                __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
                const int8_t *sh = s + 8 * half;
                wq[2 * half] = pair_i(q0, q1);
                wq[2 * half + 1] = pair_i(q2, q3);
                sc[2 * half] = pair_i(_mm256_set_m128i(_mm_set1_epi16(sh[1]), _mm_set1_epi16(sh[0])),
                                      _mm256_set_m128i(_mm_set1_epi16(sh[3]), _mm_set1_epi16(sh[2])));
                sc[2 * half + 1] = pair_i(_mm256_set_m128i(_mm_set1_epi16(sh[5]), _mm_set1_epi16(sh[4])),
                                          _mm256_set_m128i(_mm_set1_epi16(sh[7]), _mm_set1_epi16(sh[6])));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)(xq + (size_t)t * xq_stride) + b;
            __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x->q + 64 * c));
                __m512i p = _mm512_maddubs_epi16(wq[c], xv);
                if (!has_m) p = _mm512_sub_epi16(p, _mm512_maddubs_epi16(_mm512_set1_epi8(32), xv));
                sum = _mm512_add_epi32(sum, _mm512_madd_epi16(p, sc[c]));
            }
            acc[t] = fmaf(d * x->d, (float)_mm512_reduce_add_epi32(sum), acc[t]);
            if (has_m) summ[t] = fmaf(dmin * x->d, (float)k4_mins(s8 + 8, x->bsums), summ[t]);
        }
    }
    for (int t = 0; t < 4; t++) y[t * ys] = has_m ? acc[t] - summ[t] : acc[t];
}

static void q4_k_1x4(const model_weight *w, int64_t row, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tilek_1x4(w, row, xq, xs, y, ys, QT_Q4_K);
}
static void q5_k_1x4(const model_weight *w, int64_t row, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tilek_1x4(w, row, xq, xs, y, ys, QT_Q5_K);
}
static void q6_k_1x4(const model_weight *w, int64_t row, const uint8_t *xq, size_t xs, float *y, int64_t ys) {
    tilek_1x4(w, row, xq, xs, y, ys, QT_Q6_K);
}

/* ---- BF16 (cpu_q8_float_rows): 4 weight rows x 4 activation rows, 16
 * values per 512-bit FMA (lanes 0..7 the even chunk, 8..15 the odd). */
INLINE __m512 bf16_16(const uint8_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static void bf16_4x4(const model_weight *w, int64_t r0, const uint8_t *xq, size_t xq_stride, float *y, int64_t ys) {
    const uint8_t *rows[4];
    const float *x[4];
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        rows[r] = w->data + (size_t)(r0 + r) * w->row_bytes;
        x[r] = (const float *)(const void *)(xq + (size_t)r * xq_stride);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < w->n_in; c += 16) {
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) xv[t] = _mm512_loadu_ps(x[t] + c);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 wv = bf16_16(rows[r] + 2 * c);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256 even = _mm512_castps512_ps256(acc[r][t]), odd = _mm512_extractf32x8_ps(acc[r][t], 1);
            y[t * ys + r] = hsum_ps(_mm256_add_ps(even, odd));
        }
}

void cpu_q8_tile_vnni(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys) {
    switch (w->type) {
    case QT_BF16: break;
    case QT_Q4_K:
    case QT_Q5_K:
    case QT_Q6_K: {
        void (*k)(const model_weight *, int64_t, const uint8_t *, size_t, float *, int64_t) =
            w->type == QT_Q4_K ? q4_k_1x4 : w->type == QT_Q5_K ? q5_k_1x4 : q6_k_1x4;
        int t4 = n_x / 4 * 4;
        for (int t = 0; t < t4; t += 4)
            for (int r = 0; r < n_rows; r++) k(w, r0 + r, xq + (size_t)t * xq_stride, xq_stride, y + t * ys + r, ys);
        if (t4 < n_x)
            cpu_q8_tile_avx2(w, r0, n_rows, xq + (size_t)t4 * xq_stride, xq_stride, n_x - t4, y + t4 * ys, ys);
        return;
    }
    default: cpu_q8_tile_avx2(w, r0, n_rows, xq, xq_stride, n_x, y, ys); return;
    }
    int t4 = n_x / 4 * 4, r4 = n_rows / 4 * 4;
    for (int t = 0; t < t4; t += 4)
        for (int r = 0; r < r4; r += 4) bf16_4x4(w, r0 + r, xq + (size_t)t * xq_stride, xq_stride, y + t * ys + r, ys);
    if (r4 < n_rows && t4 > 0) cpu_q8_tile_avx2(w, r0 + r4, n_rows - r4, xq, xq_stride, t4, y + r4, ys);
    if (t4 < n_x)
        cpu_q8_tile_avx2(w, r0, n_rows, xq + (size_t)t4 * xq_stride, xq_stride, n_x - t4, y + t4 * ys, ys);
}
#endif
