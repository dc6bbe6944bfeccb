/* cpu_f16.c: F16 weights at precision q8: the portable kernel and the
 * dispatch (cpu_f16.h has the fixed order every build follows). */
#include "backend/cpu/cpu_f16.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_q8.h"
#include "format/quant.h"

bool cpu_f16_rows(const model_weight *w) {
    return w->type == QT_F16 && w->n_in % 16 == 0;
}

/* ---- portable C ---- */

static float dot_portable(const uint8_t *row, const float *x, int64_t n) {
    float lane[16] = {0};
    for (int64_t c = 0; c < n / 8; c++) {
        float *l = lane + 8 * (c % 2);
        for (int k = 0; k < 8; k++) {
            uint16_t h;
            memcpy(&h, row + 2 * (8 * c + k), 2);
            l[k] = fmaf(quant_f16_to_f32(h), x[8 * c + k], l[k]);
        }
    }
    float v[8];
    for (int k = 0; k < 8; k++) v[k] = lane[k] + lane[k + 8];
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

static void tile_portable(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x,
                          float *y, int64_t ys) {
    for (int t = 0; t < n_x; t++)
        for (int r = 0; r < n_rows; r++)
            y[t * ys + r] = dot_portable(w->data + (size_t)(r0 + r) * w->row_bytes, x + t * xs, w->n_in);
}

static const cpu_f16_kernels kernels_portable = {"portable", tile_portable};

const cpu_f16_kernels *cpu_f16_portable(void) {
    return &kernels_portable;
}

/* ---- dispatch ---- */
#if defined(__x86_64__) && defined(__GNUC__)
/* cpu_f16_avx512.c */
void cpu_f16_tile_avx512(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x, float *y,
                         int64_t ys);

/* AVX2: cpu_q8's 16-lane F16 kernels (cpu_q8_avx2.c), which take the float
 * rows as bytes. */
static void tile_avx2(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x, float *y,
                      int64_t ys) {
    cpu_q8_avx2()->tile(w, r0, n_rows, (const uint8_t *)(const void *)x, (size_t)xs * sizeof(float), n_x, y, ys);
}

static const cpu_f16_kernels kernels_avx2 = {"avx2", tile_avx2};
static const cpu_f16_kernels kernels_avx512 = {"avx512", cpu_f16_tile_avx512};

static bool has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

const cpu_f16_kernels *cpu_f16_avx512(void) {
    return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") ? &kernels_avx512
                                                                                                  : NULL;
}

const cpu_f16_kernels *cpu_f16_avx2(void) {
    return has_avx2() ? &kernels_avx2 : NULL;
}

const cpu_f16_kernels *cpu_f16_best(void) {
    if (cpu_f16_avx512()) return &kernels_avx512;
    return has_avx2() ? &kernels_avx2 : &kernels_portable;
}
#else
const cpu_f16_kernels *cpu_f16_best(void) {
    return &kernels_portable;
}

const cpu_f16_kernels *cpu_f16_avx512(void) {
    return NULL;
}

const cpu_f16_kernels *cpu_f16_avx2(void) {
    return NULL;
}
#endif
