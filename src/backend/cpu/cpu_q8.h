/* cpu_q8.h: the CPU backend's fast precision ("q8"): activations quantized
 * to 8 bits, integer dot products per weight block.
 *
 * Layout. An activation row of n values (n a multiple of the weight's block)
 * is quantized once per matmul into one of two formats:
 *   - blocks of 32 (for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 weights): cpu_q8_block =
 *     d (float) | s = d * sum(q) (float) | sum(q) (int32) | q[32] (int8);
 *   - blocks of 256 (for Q4_K Q5_K Q6_K): cpu_q8k_block = d (float) |
 *     bsums[16] (int16, sums of q over 16 values) | q[256] (int8),
 * with d = max|x| / 127 and q = x / d rounded to nearest even (so |q| <= 127).
 * A weight block's values stay in their packed form until the kernel
 * unpacks them to bytes in registers; the products are integer (exact).
 *
 * The fixed order (every build, AVX-512 VNNI, AVX2 and portable C, on the
 * file's blocks or repacked, gives the same bits). Blocks of 32 (Q4_0 Q4_1
 * Q5_0 Q5_1 Q8_0): for each weight block b in order, the block's exact
 * integer sum isum_b = sum_{i<32} w_i * q_i (any integer reduction tree
 * gives the same int32), then one float chain per output:
 *   acc = fmaf(dw * dx, (float)isum_b, acc)                  (dw * dx in float)
 * and, for Q4_1 / Q5_1, a second chain summ = fmaf(m_w, s_x, summ) in block
 * order; result = acc + summ (acc for the types without a minimum). One
 * float lane per output per block: the VNNI kernel puts 16 rows in the
 * lanes of one register (cpu_repack.h).
 * Blocks of 256 (Q4_K Q5_K Q6_K): the same form. For each weight block b in
 * order, the block's exact integer sum isum_b = sum_j scale_j * sum_{e in
 * sub-block j} w_e * q_e (Q6_K: w = the 6-bit value - 32; Q4_K / Q5_K: w =
 * the unsigned value, the minimum apart; any integer reduction order gives
 * the same int32), then one float chain per output
 *   acc = fmaf(dw * dx, (float)isum_b, acc)
 * and for Q4_K / Q5_K a second chain
 *   summ = fmaf(dmin * dx, (float)sum_j(m_j * bsum_j), summ);
 *   result = acc - summ        (Q6_K: acc)
 * (the VNNI kernel keeps 16 rows' block sums in the lanes of one register,
 * cpu_repack.h). Each output element
 * is computed so whatever tile, row count or thread computes it: results do
 * not depend on batch size or thread count. They differ from the float32
 * path (the activation rounding); docs/engine.md gives the bounds. */
#ifndef GRETA_BACKEND_CPU_Q8_H
#define GRETA_BACKEND_CPU_Q8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    float d;
    float s;     /* d * (float)sum */
    int32_t sum; /* sum of q, exact */
    int8_t q[32];
} cpu_q8_block;

typedef struct {
    float d;
    int16_t bsums[16];
    int8_t q[256];
} cpu_q8k_block;

/* True for weight types with an integer kernel (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K). */
bool cpu_q8_supported(uint32_t type);

/* BF16 weights at precision q8 (n_in a multiple of 16) that cpu_bf16 does
 * not take (rows not a multiple of 32 values, cpu.c): the activations stay
 * float32 rows (xq = the float rows, xq_stride their byte stride) and each
 * dot product keeps 16 float lanes instead of 8: chunk c of 8 values feeds
 * lanes 8 (c % 2) .. 8 (c % 2) + 7 with fmaf(w, x, lane) in chunk order;
 * then v[k] = lane[k] + lane[k + 8] and the fixed 8-lane tree. Two chunks
 * per 512-bit FMA; the weights are converted exactly (a shift). F16 rows
 * take cpu_f16 (cpu_f16.h), whose AVX2 build is this module's AVX2 tile
 * (cpu_q8_avx2()->tile takes F16 rows too, in the same order; the portable
 * and AVX-512 tiles do not). */
bool cpu_q8_float_rows(const model_weight *w);

/* Values per activation block a weight type needs (32 or 256; 0 if unsupported),
 * and the bytes of one quantized activation row of n values in that format. */
int cpu_q8_act_block(uint32_t type);
size_t cpu_q8_act_row_bytes(int act_block, int64_t n);

/* dst = x[0..n) quantized as act_block (32 or 256) blocks; n a multiple of it
 * (AVX2 where the CPU has it, cpu_q8_quant_avx2.c: the same bytes as the
 * portable quantizer, which tests call directly). */
void cpu_q8_quantize_row(int act_block, const float *x, int64_t n, void *dst);
void cpu_q8_quantize_row_portable(int act_block, const float *x, int64_t n, void *dst);

typedef struct {
    const char *name; /* "avx2", "portable" */
    /* y[t * ys + r] = dot(row r0 + r of w, activation row t) for r < n_rows,
     * t < n_x; activation row t at xq + t * xq_stride bytes, quantized in
     * w's activation format. */
    void (*tile)(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                 float *y, int64_t ys);
} cpu_q8_kernels;

/* The best kernels the running CPU has: AVX-512 VNNI (avx512f, vl, bw,
 * vnni; 256-bit vectors, 32 registers) for prefill tiles of 32-value block
 * types, else AVX2 (+FMA, F16C), else portable C. All give the same bits. */
const cpu_q8_kernels *cpu_q8_best(void);
const cpu_q8_kernels *cpu_q8_portable(void);
/* The AVX2 kernels, or NULL if the CPU lacks AVX2 (tests). */
const cpu_q8_kernels *cpu_q8_avx2(void);

#endif
