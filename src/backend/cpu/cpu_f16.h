/* cpu_f16.h: F16 weights at precision q8 (the cpu default): float32
 * activations, every dot product in 16 float lanes.
 *
 * The fixed order (the one cpu_q8.h gives F16 rows; this module computes it
 * faster). A dot product of an F16 weight row w and a float row x of n
 * values (n a multiple of 16) keeps 16 float lanes, all zero at first; chunk
 * c of 8 values (in order) feeds lanes 8 (c % 2) .. 8 (c % 2) + 7:
 *   lane[8 (c % 2) + k] = fmaf(float(w[8 c + k]), x[8 c + k], lane[8 (c % 2) + k])
 * (float(w) is exact), then v[k] = lane[k] + lane[k + 8] (k < 8) and
 *   result = ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
 * A 512-bit register holds the 16 lanes: one FMA per 16 values. Every output
 * element is computed so whatever tile, row count, k-block or thread computes
 * it (a k-block stores the lanes and loads them back, which is exact):
 * prefill and decode give the same bits. */
#ifndef GRETA_BACKEND_CPU_F16_H
#define GRETA_BACKEND_CPU_F16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* True for F16 weights whose rows are a multiple of 16 values. */
bool cpu_f16_rows(const model_weight *w);

typedef struct {
    const char *name; /* "avx512", "avx2", "portable" */
    /* y[t * ys + r] = dot(row r0 + r of w, x + t * xs) for r < n_rows, t < n_x
     * (x: float rows of w->n_in values). */
    void (*tile)(const model_weight *w, int64_t r0, int n_rows, const float *x, int64_t xs, int n_x, float *y,
                 int64_t ys);
} cpu_f16_kernels;

/* The best kernels the running CPU has: AVX-512 (avx512f, F16C), else AVX2
 * (+FMA, F16C: cpu_q8's 16-lane kernels), else portable C. All give the same bits. */
const cpu_f16_kernels *cpu_f16_best(void);
const cpu_f16_kernels *cpu_f16_portable(void);
/* The AVX-512 or AVX2 kernels, or NULL if the CPU lacks them (tests). */
const cpu_f16_kernels *cpu_f16_avx512(void);
const cpu_f16_kernels *cpu_f16_avx2(void);

#endif
