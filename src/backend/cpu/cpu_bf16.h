/* cpu_bf16.h: BF16 weights at precision q8 (the cpu default): activations
 * rounded to BF16, products summed in the order of the AVX-512 BF16
 * instruction vdpbf16ps, which the AVX2 and portable builds reproduce bit
 * for bit.
 *
 * Layout. Before a matrix product each activation row of n values (n a
 * multiple of 32) is rounded once to BF16 (cpu_bf16_round_row: to nearest
 * even, values below float's normal range to a signed zero, NaN kept).
 *
 * The fixed order. A dot product of a weight row w and an activation row x
 * keeps 16 float lanes, all zero at first. Chunk c of 32 values (in order)
 * gives lane i its pair j = 32 c + 2 i (even) and j + 1 (odd):
 *   lane[i] = F(F(lane[i] + P(w[j+1], x[j+1])) + P(w[j], x[j]))
 * where P(a, b) = F(float(a) * float(b)) is exact (two 8-bit significands
 * fit float's 24 bits) and F(v) is float rounding to nearest even with a
 * result below float's normal range flushed to a signed zero (vdpbf16ps's
 * DAZ/FTZ: a subnormal BF16 input counts as zero). Then
 *   v[k] = lane[k] + lane[k + 8]   (k < 8, ordinary float addition)
 *   result = ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
 * That is Intel's definition of vdpbf16ps (two roundings per lane and
 * instruction, the odd product first; the development machine's AMD Zen 5
 * agrees on 3.2 million random cases); the AVX2 build computes the same
 * exact products and additions with the MXCSR's flush-to-zero and
 * denormals-are-zero set for the kernel; portable C flushes explicitly.
 * Every output element is computed so whatever tile, row count or thread
 * computes it: prefill and decode give the same bits. */
#ifndef GRETA_BACKEND_CPU_BF16_H
#define GRETA_BACKEND_CPU_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* True for BF16 weights whose rows are a multiple of 32 values. */
bool cpu_bf16_rows(const model_weight *w);

/* dst[0..n) = x[0..n) rounded to BF16 (see above). */
void cpu_bf16_round_row(const float *x, int64_t n, uint16_t *dst);

typedef struct {
    const char *name; /* "avx512bf16", "avx2", "portable" */
    /* y[t * ys + r] = dot(row r0 + r of w, activation row t) for r < n_rows,
     * t < n_x; activation row t (BF16, cpu_bf16_round_row) at
     * xb + t * xb_stride bytes. */
    void (*tile)(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xb, size_t xb_stride, int n_x,
                 float *y, int64_t ys);
    /* cpu_bf16_round_row, the same bits */
    void (*round_row)(const float *x, int64_t n, uint16_t *dst);
} cpu_bf16_kernels;

/* The best kernels the running CPU has: AVX-512 BF16 (avx512f, bw, vl,
 * bf16), else AVX2, else portable C. All give the same bits. */
const cpu_bf16_kernels *cpu_bf16_best(void);
const cpu_bf16_kernels *cpu_bf16_portable(void);
/* The AVX2 kernels, or NULL if the CPU lacks AVX2 (tests). */
const cpu_bf16_kernels *cpu_bf16_avx2(void);

#endif
