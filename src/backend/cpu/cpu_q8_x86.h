/* cpu_q8_x86.h: helpers of the x86 q8 kernels (cpu_q8_avx2.c, cpu_q8_vnni.c);
 * not a public API. Each of those files selects its instruction set with
 * #pragma GCC target before including this, so the static inline helpers
 * below are compiled for it. */
#ifndef GRETA_BACKEND_CPU_Q8_X86_H
#define GRETA_BACKEND_CPU_Q8_X86_H

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu_q8.h"
#include "format/quant.h"

#define INLINE static inline __attribute__((always_inline))

/* Weight row groups prefetched ahead of the one being multiplied. */
#define PREFETCH_GROUPS 2

/* The AVX2 tile (cpu_q8_avx2.c), for the shapes the VNNI tile leaves. */
void cpu_q8_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys);
/* The AVX-512 VNNI tile (cpu_q8_vnni.c): same arguments, same bits. */
void cpu_q8_tile_vnni(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys);

INLINE float f16_load(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE float hsum_ps(__m256 acc) {
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    __m128 s = _mm_add_ps(lo, hi);         /* l0+l4, l1+l5, l2+l6, l3+l7 */
    __m128 t = _mm_movehl_ps(s, s);        /* l2+l6, l3+l7 */
    __m128 u = _mm_add_ps(s, t);           /* (l0+l4)+(l2+l6), (l1+l5)+(l3+l7) */
    __m128 v = _mm_shuffle_ps(u, u, 0x55);
    return _mm_cvtss_f32(_mm_add_ss(u, v));
}

/* Lane i = the sum of the eight int32 lanes of a_i (exact: integers). */
INLINE __m128i hsum4_epi32(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

INLINE int32_t hsum_epi32(__m256i a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Byte j = 0xff where bit j of x is set (j < 32). */
INLINE __m256i bits_to_bytes(uint32_t x) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* 16 packed bytes -> 32 nibbles in value order (low nibbles 0..15, high 16..31). */
INLINE __m256i nibbles(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
    return _mm256_set_m128i(hi, lo);
}

/* Eight int32 lanes, lane k = sum of bytes 4k..4k+3 of u (unsigned, < 128) times s (signed). */
INLINE __m256i lanes_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The same for a signed w: |w| times s * sign(w). */
INLINE __m256i lanes_ss(__m256i w, __m256i s) {
    return lanes_us(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w));
}

/* A 32-value weight block in registers: its bytes (signed value, or
 * unsigned q for Q4_1 / Q5_1), d and m. */
typedef struct {
    __m256i w;
    float d, m;
} wblock32;

INLINE wblock32 load_block32(const uint8_t *b, const uint32_t type) {
    wblock32 o;
    o.d = f16_load(b);
    o.m = 0.0f;
    uint32_t qh;
    switch (type) {
    case QT_Q8_0: o.w = _mm256_loadu_si256((const __m256i *)(const void *)(b + 2)); break;
    case QT_Q4_0: o.w = _mm256_sub_epi8(nibbles(b + 2), _mm256_set1_epi8(8)); break;
    case QT_Q4_1:
        o.m = f16_load(b + 2);
        o.w = nibbles(b + 4);
        break;
    case QT_Q5_0:
        memcpy(&qh, b + 2, 4);
        /* q - 16: the nibble where bit 4 is set, else the nibble with 0xf0 (minus 16) */
        o.w = _mm256_or_si256(nibbles(b + 6), _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8((char)0xf0)));
        break;
    default: /* QT_Q5_1 */
        o.m = f16_load(b + 2);
        memcpy(&qh, b + 4, 4);
        o.w = _mm256_or_si256(nibbles(b + 8), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
        break;
    }
    return o;
}


/* Q4_K / Q5_K scales and mins of a block, unpacked from their 12 bytes
 * with 32-bit operations: out[j] = scale j, out[8 + j] = min j (j < 8),
 * the values of k4_scale_min. */
INLINE void k4_scales(const uint8_t *scales, uint8_t *out) {
    uint32_t u[4];
    memcpy(u, scales, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    u[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4); /* mins 4..7 */
    uint32_t mins_lo = u[1] & low6;                            /* mins 0..3 */
    u[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);        /* scales 4..7 */
    u[2] = mins_lo;
    u[0] &= low6;                                              /* scales 0..3 */
    memcpy(out, u, 16);
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j+1]), exact. */
INLINE int32_t k4_mins(const uint8_t *mins, const int16_t *bsums) {
    __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)bsums);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)mins));
    __m128i p = _mm_madd_epi16(m, pairs);
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
    return _mm_cvtsi128_si32(p);
}

#endif
