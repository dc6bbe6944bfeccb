/* cpu_avx512.h: what the AVX-512 kernels of F16 and BF16 weights at
 * precision q8 (cpu_f16_avx512.c, cpu_bf16_avx512.c) share: the sum of a
 * register's 16 float lanes in the order both modules fix (cpu_f16.h,
 * cpu_bf16.h). Include it after the file's `#pragma GCC target` (it needs
 * avx512f and avx512dq). */
#ifndef GRETA_BACKEND_CPU_AVX512_H
#define GRETA_BACKEND_CPU_AVX512_H

#include <immintrin.h>
#define INLINE static inline __attribute__((always_inline))

INLINE float lanes_sum(__m512 acc) {
    /* v[k] = lane[k] + lane[k + 8], then ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)) */
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t = _mm_movehl_ps(s, s);
    __m128 u = _mm_add_ps(s, t);
    __m128 z = _mm_shuffle_ps(u, u, 0x55);
    return _mm_cvtss_f32(_mm_add_ss(u, z));
}

#endif
