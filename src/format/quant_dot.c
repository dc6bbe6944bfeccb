/* quant_dot.c: dot products of stored rows with float32 vectors.
 *
 * The order of operations is part of the contract (quant.h): with w[i] the
 * dequantized values (bit-exact with quant_dequantize) and 32 float32 lanes
 * starting at +0,
 *
 *     lane[i % 32] = fmaf(w[i], x[i], lane[i % 32])      for i = 0 .. n-1
 *     v[l] = (lane[l] + lane[l+8]) + (lane[l+16] + lane[l+24])   l < 8
 *     h[l] = v[l] + v[l+4]   l < 4;   g[l] = h[l] + h[l+2]   l < 2
 *     result = g[0] + g[1]
 *
 * The AVX2+FMA path keeps the 32 lanes in four 8-float registers (register j
 * holds lanes 8j..8j+7) and decodes blocks with SIMD integer code to the same
 * w[i]; the portable path decodes with the scalar decoders and uses fmaf().
 * Both therefore give the same bits, which tests/test_quant.c checks. */
#include "format/quant.h"
#include "format/quant_impl.h"

#include <math.h>
#include <string.h>

#define LANES 32
#define CHUNK 256 /* values decoded at a time by the portable path */

/* The fixed reduction tree of the 32 lanes. */
static float reduce_lanes(const float *lane) {
    float v[8], h[4], g[2];
    for (int l = 0; l < 8; l++) v[l] = (lane[l] + lane[l + 8]) + (lane[l + 16] + lane[l + 24]);
    for (int l = 0; l < 4; l++) h[l] = v[l] + v[l + 4];
    for (int l = 0; l < 2; l++) g[l] = h[l] + h[l + 2];
    return g[0] + g[1];
}

/* Accumulates values [first, n) of the row into the lanes, decoding CHUNK
 * values at a time; first must be a multiple of the block size and of 32
 * or a multiple of CHUNK (always true for the callers below). */
static void accumulate_portable(uint32_t type, const uint8_t *row, const float *x, int64_t first, int64_t n,
                                float *lane) {
    float w[CHUNK];
    const int64_t block = quant_block_size(type);
    const int64_t size = quant_type_size(type);
    for (int64_t start = first; start < n; start += CHUNK) {
        int64_t count = n - start < CHUNK ? n - start : CHUNK;
        quant_dequantize(type, row + start / block * size, w, count);
        for (int64_t k = 0; k < count; k++) {
            int64_t i = start + k;
            lane[i % LANES] = fmaf(w[k], x[i], lane[i % LANES]);
        }
    }
}

float quant_dot_portable(uint32_t type, const void *row, const float *x, int64_t n) {
    if (n == 0) return 0.0f;
    if (quant_row_bytes(type, n) == 0) return NAN;
    float lane[LANES] = {0};
    accumulate_portable(type, row, x, 0, n, lane);
    return reduce_lanes(lane);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

bool quant_dot_avx2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

typedef struct {
    __m256 a[4]; /* lanes 0-7, 8-15, 16-23, 24-31 */
} lanes8x4;

AVX2 static inline float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* 8 bytes at p, sign- or zero-extended, as floats. */
AVX2 static inline __m256 i8x8_to_float(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)); }
AVX2 static inline __m256 u8x8_to_float(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }

/* acc.a[j] += w_j * x[8j .. 8j+7] for the four weight vectors of 32 values. */
AVX2 static inline void fma32(lanes8x4 *acc, __m256 w0, __m256 w1, __m256 w2, __m256 w3, const float *x) {
    acc->a[0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc->a[0]);
    acc->a[1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc->a[1]);
    acc->a[2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + 16), acc->a[2]);
    acc->a[3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + 24), acc->a[3]);
}

/* F32: n32 values (a multiple of 32). */
AVX2 static void dot_f32_avx2(const uint8_t *row, const float *x, int64_t n32, lanes8x4 *acc) {
    const float *w = (const float *)(const void *)row;
    for (int64_t i = 0; i < n32; i += 32) {
        fma32(acc, _mm256_loadu_ps(w + i), _mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(w + i + 16),
              _mm256_loadu_ps(w + i + 24), x + i);
    }
}

AVX2 static inline __m256 f16x8_to_float(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

AVX2 static void dot_f16_avx2(const uint8_t *row, const float *x, int64_t n32, lanes8x4 *acc) {
    for (int64_t i = 0; i < n32; i += 32) {
        const uint8_t *p = row + 2 * i;
        fma32(acc, f16x8_to_float(p), f16x8_to_float(p + 16), f16x8_to_float(p + 32), f16x8_to_float(p + 48),
              x + i);
    }
}

AVX2 static inline __m256 bf16x8_to_float(const uint8_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

AVX2 static void dot_bf16_avx2(const uint8_t *row, const float *x, int64_t n32, lanes8x4 *acc) {
    for (int64_t i = 0; i < n32; i += 32) {
        const uint8_t *p = row + 2 * i;
        fma32(acc, bf16x8_to_float(p), bf16x8_to_float(p + 16), bf16x8_to_float(p + 32),
              bf16x8_to_float(p + 48), x + i);
    }
}

/* Q8_0: w = q * d. */
AVX2 static void dot_q8_0_avx2(const uint8_t *row, const float *x, int64_t n, lanes8x4 *acc) {
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *blk = row + 34 * b;
        const __m256 d = _mm256_set1_ps(half_at(blk));
        const uint8_t *qs = blk + 2;
        __m256 w0 = _mm256_mul_ps(i8x8_to_float(_mm_loadl_epi64((const __m128i *)(const void *)qs)), d);
        __m256 w1 = _mm256_mul_ps(i8x8_to_float(_mm_loadl_epi64((const __m128i *)(const void *)(qs + 8))), d);
        __m256 w2 = _mm256_mul_ps(i8x8_to_float(_mm_loadl_epi64((const __m128i *)(const void *)(qs + 16))), d);
        __m256 w3 = _mm256_mul_ps(i8x8_to_float(_mm_loadl_epi64((const __m128i *)(const void *)(qs + 24))), d);
        fma32(acc, w0, w1, w2, w3, x + 32 * b);
    }
}

/* 16 packed bytes -> low nibbles (values 0..15) and high nibbles (16..31). */
AVX2 static inline void split_nibbles(const uint8_t *p, __m128i *low, __m128i *high) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m128i q = _mm_loadu_si128((const __m128i *)(const void *)p);
    *low = _mm_and_si128(q, mask);
    *high = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
}

/* Q4_0: w = d * (q - 8). */
AVX2 static void dot_q4_0_avx2(const uint8_t *row, const float *x, int64_t n, lanes8x4 *acc) {
    const __m128i eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *blk = row + 18 * b;
        const __m256 d = _mm256_set1_ps(half_at(blk));
        __m128i lo, hi;
        split_nibbles(blk + 2, &lo, &hi);
        lo = _mm_sub_epi8(lo, eight);
        hi = _mm_sub_epi8(hi, eight);
        __m256 w0 = _mm256_mul_ps(d, i8x8_to_float(lo));
        __m256 w1 = _mm256_mul_ps(d, i8x8_to_float(_mm_srli_si128(lo, 8)));
        __m256 w2 = _mm256_mul_ps(d, i8x8_to_float(hi));
        __m256 w3 = _mm256_mul_ps(d, i8x8_to_float(_mm_srli_si128(hi, 8)));
        fma32(acc, w0, w1, w2, w3, x + 32 * b);
    }
}

/* Q4_1: w = d * q + m (two roundings, as the dequantizer). */
AVX2 static void dot_q4_1_avx2(const uint8_t *row, const float *x, int64_t n, lanes8x4 *acc) {
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *blk = row + 20 * b;
        const __m256 d = _mm256_set1_ps(half_at(blk));
        const __m256 m = _mm256_set1_ps(half_at(blk + 2));
        __m128i lo, hi;
        split_nibbles(blk + 4, &lo, &hi);
        __m256 w0 = _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_float(lo)), m);
        __m256 w1 = _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_float(_mm_srli_si128(lo, 8))), m);
        __m256 w2 = _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_float(hi)), m);
        __m256 w3 = _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_float(_mm_srli_si128(hi, 8))), m);
        fma32(acc, w0, w1, w2, w3, x + 32 * b);
    }
}

/* 32 unsigned bytes q (two halves) -> w = dl * q - ml for 32 values. */
AVX2 static inline void fma32_scaled_min(lanes8x4 *acc, __m128i q_first, __m128i q_second, float dl, float ml,
                                         const float *x) {
    const __m256 d = _mm256_set1_ps(dl);
    const __m256 m = _mm256_set1_ps(ml);
    __m256 w0 = _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_float(q_first)), m);
    __m256 w1 = _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_float(_mm_srli_si128(q_first, 8))), m);
    __m256 w2 = _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_float(q_second)), m);
    __m256 w3 = _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_float(_mm_srli_si128(q_second, 8))), m);
    fma32(acc, w0, w1, w2, w3, x);
}

/* Q4_K and Q5_K (qh != NULL): per 64 values c, sub-block 2c = low nibbles
 * of qs[32c..], 2c+1 = high nibbles; 5th bit s of qh[l] for sub-block s. */
AVX2 static void dot_q45_k_avx2(const uint8_t *row, const float *x, int64_t n, bool five_bit, lanes8x4 *acc) {
    const size_t size = five_bit ? 176 : 144;
    const __m128i one = _mm_set1_epi8(1);
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *blk = row + size * b;
        const float d = half_at(blk), dmin = half_at(blk + 2);
        const uint8_t *scales = blk + 4;
        const uint8_t *qh = blk + 16;
        const uint8_t *qs = five_bit ? blk + 48 : blk + 16;
        __m128i qh_a = _mm_setzero_si128(), qh_b = _mm_setzero_si128();
        if (five_bit) {
            qh_a = _mm_loadu_si128((const __m128i *)(const void *)qh);
            qh_b = _mm_loadu_si128((const __m128i *)(const void *)(qh + 16));
        }
        for (int c = 0; c < 4; c++) {
            const float *xc = x + 256 * b + 64 * c;
            __m128i lo_a, hi_a, lo_b, hi_b;
            split_nibbles(qs + 32 * c, &lo_a, &hi_a);
            split_nibbles(qs + 32 * c + 16, &lo_b, &hi_b);
            if (five_bit) {
                __m128i shift_lo = _mm_cvtsi32_si128(2 * c), shift_hi = _mm_cvtsi32_si128(2 * c + 1);
                lo_a = _mm_or_si128(lo_a, _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_a, shift_lo), one), 4));
                lo_b = _mm_or_si128(lo_b, _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_b, shift_lo), one), 4));
                hi_a = _mm_or_si128(hi_a, _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_a, shift_hi), one), 4));
                hi_b = _mm_or_si128(hi_b, _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_b, shift_hi), one), 4));
            }
            uint8_t sc, m;
            quant_k4_scale_min(2 * c, scales, &sc, &m);
            fma32_scaled_min(acc, lo_a, lo_b, d * (float)sc, dmin * (float)m, xc);
            quant_k4_scale_min(2 * c + 1, scales, &sc, &m);
            fma32_scaled_min(acc, hi_a, hi_b, d * (float)sc, dmin * (float)m, xc + 32);
        }
    }
}

/* Q6_K: see dequant_block_q6_k in quant.c for the layout. */
AVX2 static void dot_q6_k_avx2(const uint8_t *row, const float *x, int64_t n, lanes8x4 *acc) {
    const __m128i mask4 = _mm_set1_epi8(0x0f), mask2 = _mm_set1_epi8(3), bias = _mm_set1_epi8(32);
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *blk = row + 210 * b;
        const float d = half_at(blk + 208);
        const int8_t *sc = (const int8_t *)(blk + 192);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk + 64 * h;
            const uint8_t *qh = blk + 128 + 32 * h;
            __m128i qh_a = _mm_loadu_si128((const __m128i *)(const void *)qh);
            __m128i qh_b = _mm_loadu_si128((const __m128i *)(const void *)(qh + 16));
            for (int s = 0; s < 4; s++) {
                const uint8_t *src = ql + 32 * (s & 1);
                __m128i la = _mm_loadu_si128((const __m128i *)(const void *)src);
                __m128i lb = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
                __m128i nibble_shift = _mm_cvtsi32_si128(4 * (s >> 1)), high_shift = _mm_cvtsi32_si128(2 * s);
                la = _mm_and_si128(_mm_srl_epi16(la, nibble_shift), mask4);
                lb = _mm_and_si128(_mm_srl_epi16(lb, nibble_shift), mask4);
                __m128i ha = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_a, high_shift), mask2), 4);
                __m128i hb = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh_b, high_shift), mask2), 4);
                __m128i qa = _mm_sub_epi8(_mm_or_si128(la, ha), bias);
                __m128i qb = _mm_sub_epi8(_mm_or_si128(lb, hb), bias);
                const __m256 d_first = _mm256_set1_ps(d * (float)sc[8 * h + 2 * s]);
                const __m256 d_second = _mm256_set1_ps(d * (float)sc[8 * h + 2 * s + 1]);
                __m256 w0 = _mm256_mul_ps(d_first, i8x8_to_float(qa));
                __m256 w1 = _mm256_mul_ps(d_first, i8x8_to_float(_mm_srli_si128(qa, 8)));
                __m256 w2 = _mm256_mul_ps(d_second, i8x8_to_float(qb));
                __m256 w3 = _mm256_mul_ps(d_second, i8x8_to_float(_mm_srli_si128(qb, 8)));
                fma32(acc, w0, w1, w2, w3, x + 256 * b + 128 * h + 32 * s);
            }
        }
    }
}

/* Other block types: decode with the scalar decoder, then vector FMAs. */
AVX2 static void dot_decoded_avx2(uint32_t type, const uint8_t *row, const float *x, int64_t n, lanes8x4 *acc) {
    float w[CHUNK] __attribute__((aligned(32)));
    const int64_t block = quant_block_size(type);
    const int64_t size = quant_type_size(type);
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t count = n - start < CHUNK ? n - start : CHUNK;
        quant_dequantize(type, row + start / block * size, w, count);
        for (int64_t k = 0; k < count; k += 32)
            fma32(acc, _mm256_load_ps(w + k), _mm256_load_ps(w + k + 8), _mm256_load_ps(w + k + 16),
                  _mm256_load_ps(w + k + 24), x + start + k);
    }
}

AVX2 float quant_dot_avx2(uint32_t type, const void *row_bytes, const float *x, int64_t n) {
    if (n == 0) return 0.0f;
    if (quant_row_bytes(type, n) == 0) return NAN;
    const uint8_t *row = row_bytes;
    lanes8x4 acc;
    for (int j = 0; j < 4; j++) acc.a[j] = _mm256_setzero_ps();
    const int64_t n32 = n - n % 32; /* only F32/F16/BF16 can have a tail */
    switch (type) {
    case QT_F32: dot_f32_avx2(row, x, n32, &acc); break;
    case QT_F16: dot_f16_avx2(row, x, n32, &acc); break;
    case QT_BF16: dot_bf16_avx2(row, x, n32, &acc); break;
    case QT_Q8_0: dot_q8_0_avx2(row, x, n, &acc); break;
    case QT_Q4_0: dot_q4_0_avx2(row, x, n, &acc); break;
    case QT_Q4_1: dot_q4_1_avx2(row, x, n, &acc); break;
    case QT_Q4_K: dot_q45_k_avx2(row, x, n, false, &acc); break;
    case QT_Q5_K: dot_q45_k_avx2(row, x, n, true, &acc); break;
    case QT_Q6_K: dot_q6_k_avx2(row, x, n, &acc); break;
    default: dot_decoded_avx2(type, row, x, n, &acc); break;
    }
    float lane[LANES];
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(lane + 8 * j, acc.a[j]);
    if (n32 < n) accumulate_portable(type, row, x, n32, n, lane); /* tail of < 32 values */
    return reduce_lanes(lane);
}

#else /* not x86: the portable path only */

bool quant_dot_avx2_available(void) { return false; }

float quant_dot_avx2(uint32_t type, const void *row, const float *x, int64_t n) {
    return quant_dot_portable(type, row, x, n);
}

#endif

float quant_dot(uint32_t type, const void *row, const float *x, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (quant_dot_avx2_available()) return quant_dot_avx2(type, row, x, n);
#endif
    return quant_dot_portable(type, row, x, n);
}
