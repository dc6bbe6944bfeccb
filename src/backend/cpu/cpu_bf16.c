/* cpu_bf16.c: BF16 weights at precision q8: the activation rounding, the
 * portable kernels and the dispatch (cpu_bf16.h has the fixed order that
 * every build follows). */
#include "backend/cpu/cpu_bf16.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "format/quant.h"

bool cpu_bf16_rows(const model_weight *w) {
    return w->type == QT_BF16 && w->n_in % 32 == 0;
}

static uint16_t round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return (uint16_t)((u >> 16) | 0x0040u); /* NaN */
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero or subnormal: signed zero */
    u += 0x7fffu + ((u >> 16) & 1u); /* to nearest even (past the largest finite: infinity) */
    return (uint16_t)(u >> 16);
}

void cpu_bf16_round_row(const float *x, int64_t n, uint16_t *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = round_bf16(x[i]);
}

/* ---- portable C ---- */

/* F(v): a result below float's normal range becomes a zero of its sign. */
static float flush(float v) {
    return fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v;
}

/* A BF16 value as float, a subnormal as a zero of its sign (DAZ). */
static float bf16_in(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return flush(quant_bf16_to_f32(h));
}

static float hsum8(const float *v) {
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

static float dot_portable(const uint8_t *w, const uint8_t *x, int64_t n) {
    float lane[16] = {0};
    for (int64_t c = 0; c < n / 32; c++) {
        for (int i = 0; i < 16; i++) {
            size_t j = (size_t)(32 * c + 2 * i) * 2; /* byte offset of the even value */
            float odd = flush(bf16_in(w + j + 2) * bf16_in(x + j + 2));
            float even = flush(bf16_in(w + j) * bf16_in(x + j));
            lane[i] = flush(flush(lane[i] + odd) + even);
        }
    }
    for (int k = 0; k < 8; k++) lane[k] = lane[k] + lane[k + 8];
    return hsum8(lane);
}

static void tile_portable(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride,
                          int n_x, float *y, int64_t ys) {
    for (int t = 0; t < n_x; t++)
        for (int r = 0; r < n_rows; r++)
            y[t * ys + r] = dot_portable(w->data + (size_t)(r0 + r) * w->row_bytes, xb + (size_t)t * xb_stride, w->n_in);
}

static const cpu_bf16_kernels kernels_portable = {"portable", tile_portable, cpu_bf16_round_row};

const cpu_bf16_kernels *cpu_bf16_portable(void) {
    return &kernels_portable;
}

/* ---- dispatch ---- */
#if defined(__x86_64__) && defined(__GNUC__)
/* cpu_bf16_avx2.c, cpu_bf16_avx512.c */
void cpu_bf16_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride, int n_x,
                        float *y, int64_t ys);
void cpu_bf16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride,
                          int n_x, float *y, int64_t ys);
void cpu_bf16_round_row_avx512(const float *x, int64_t n, uint16_t *dst);

static const cpu_bf16_kernels kernels_avx2 = {"avx2", cpu_bf16_tile_avx2, cpu_bf16_round_row};
static const cpu_bf16_kernels kernels_avx512 = {"avx512bf16", cpu_bf16_tile_avx512, cpu_bf16_round_row_avx512};

const cpu_bf16_kernels *cpu_bf16_best(void) {
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16"))
        return &kernels_avx512;
    return avx2 ? &kernels_avx2 : &kernels_portable;
}

const cpu_bf16_kernels *cpu_bf16_avx2(void) {
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return avx2 ? &kernels_avx2 : NULL;
}
#else
const cpu_bf16_kernels *cpu_bf16_best(void) {
    return &kernels_portable;
}

const cpu_bf16_kernels *cpu_bf16_avx2(void) {
    return NULL;
}
#endif
