/* cpu_q8_quant_avx2.c: the activation quantizer of cpu_q8.h with AVX2 (the
 * portable one in cpu_q8.c is scalar and called nearbyintf per value: 8% of
 * a Q4_0 prefill). The same bytes: max |x| is exact in any order (and, as
 * the scalar loop, ignores NaN: vmaxps returns its second operand, the
 * running maximum, when the first is NaN); d = max / 127 and 1 / d are the
 * same scalar operations; x * (1 / d) is the same product, rounded to the
 * nearest integer, ties to even (vroundps, as nearbyintf in the default
 * rounding mode); the sums are exact integers. tests/test_cpu_q8.c compares
 * the two bytewise. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "backend/cpu/cpu_q8.h"

void cpu_q8_quantize_row_avx2(int act_block, const float *x, int64_t n, void *dst);

/* q[0..n) = x / d to nearest even, d = max|x| / 127 (n a multiple of 32); returns d. */
static float quantize_values(const float *x, int n, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), amax);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    float d = _mm_cvtss_f32(m) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        __m256i v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), idv),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* packs work per 128-bit lane: dwords come out as v0[0..3] v1[0..3]
         * v2[0..3] v3[0..3] | v0[4..7] ...; the permute puts them in order */
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(void *)(q + i), _mm256_permutevar8x32_epi32(b, order));
    }
    return d;
}

void cpu_q8_quantize_row_avx2(int act_block, const float *x, int64_t n, void *dst) {
    if (act_block == 32) {
        cpu_q8_block *b = dst;
        for (int64_t i = 0; i < n / 32; i++, x += 32) {
            b[i].d = quantize_values(x, 32, b[i].q);
            int sum = 0;
            for (int k = 0; k < 32; k++) sum += b[i].q[k];
            b[i].sum = sum;
            b[i].s = b[i].d * (float)sum;
        }
        return;
    }
    cpu_q8k_block *b = dst;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        b[i].d = quantize_values(x, 256, b[i].q);
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += b[i].q[16 * j + k];
            b[i].bsums[j] = (int16_t)sum;
        }
    }
}
#endif
