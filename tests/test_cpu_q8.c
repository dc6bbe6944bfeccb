/* test_cpu_q8.c: the q8 kernels (src/backend/cpu/cpu_q8.c) on random
 * weight blocks of every supported type (random bytes: every bit pattern of
 * the packed values, scales set to sane halves):
 *   - the activation quantizer against hand-computed blocks;
 *   - each kernel's result against an independent double-precision dot
 *     product of the dequantized weights (quant_dequantize, the float path's
 *     decoder) with the dequantized activations (d * q): the integer products
 *     are exact, so only float32 accumulation separates them;
 *   - against the float32 dot product with the unquantized activations:
 *     within the activation rounding bound sum_i |w_i| * d_x / 2;
 *   - AVX2 and portable builds bit for bit, for every tile shape and row
 *     count (the fixed order of cpu_q8.h), so results do not depend on
 *     batch size either;
 *   - blocks of 32: every build equals cpu_q8.h's order written out here
 *     from the raw bytes (one exact int32 per block, one float chain), and
 *     that order is told apart from the one of before (eight float lanes per
 *     block, even and odd blocks, the 8-lane tree), which gives other floats
 *     on these rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_q8.h"
#include "support/check.h"
#include "support/xorshift.h"
#include "format/quant.h"

static xorshift rng = {0x9e3779b97f4a7c15ull};

static void put_f16(uint8_t *p, float v) {
    uint16_t h = quant_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* Random bytes with each block's f16 scale fields set to values in [0.001, 0.02). */
static void random_row(uint32_t type, uint8_t *row, int64_t n) {
    size_t bytes = quant_row_bytes(type, n);
    for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)xorshift_u32(&rng);
    int64_t bs = quant_type_size(type), nb = n / quant_block_size(type);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = row + b * bs;
        float d = 0.001f + 0.019f * (float)(xorshift_u32(&rng) % 1000) / 1000.0f;
        switch (type) {
        case QT_Q6_K: put_f16(blk + 208, d); break;
        case QT_Q4_1:
        case QT_Q5_1:
        case QT_Q4_K:
        case QT_Q5_K:
            put_f16(blk, d);
            put_f16(blk + 2, d * xorshift_uniform(&rng));
            break;
        default: put_f16(blk, d); break;
        }
    }
}

static void test_quantizer(void) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[0] = 1.27f;
    x[1] = -0.635f; /* -63.5 -> -64 (nearest even) */
    x[2] = 0.005f;  /* 0.5 -> 0 */
    x[3] = 0.015f;  /* 1.5 -> 2 */
    cpu_q8_block b;
    cpu_q8_quantize_row(32, x, 32, &b);
    CHECK(b.d == 1.27f / 127.0f, "d = max|x| / 127");
    CHECK(b.q[0] == 127 && b.q[1] == -64 && b.q[2] == 0 && b.q[3] == 2 && b.q[4] == 0,
          "q = x / d to nearest even: %d %d %d %d", b.q[0], b.q[1], b.q[2], b.q[3]);
    CHECK(b.s == b.d * 65.0f && b.sum == 65, "s = d * sum(q) = d * 65, sum = 65 (exact)");
    float z[256] = {0};
    cpu_q8k_block k;
    z[17] = -2.0f;
    z[18] = 1.0f;
    cpu_q8_quantize_row(256, z, 256, &k);
    CHECK(k.d == 2.0f / 127.0f && k.q[17] == -127 && k.q[18] == 64 && k.bsums[1] == -63 && k.bsums[0] == 0,
          "Q8_K: d, q, bsums (bsum[1] = -127 + 64)");
}

/* cpu_q8_quantize_row (AVX2 where the CPU has it) == the portable quantizer
 * byte for byte: random rows of several magnitudes, a row of exact ties
 * (max 127, so d = 1 and x = k + 0.5), a zero block (d = 0), -0.0. */
static void test_quantizer_builds(void) {
    const int64_t n = 768;
    float *x = malloc(sizeof(float) * (size_t)n);
    uint8_t *a = malloc(cpu_q8_act_row_bytes(32, n)), *b = malloc(cpu_q8_act_row_bytes(32, n));
    uint8_t *ka = malloc(cpu_q8_act_row_bytes(256, n)), *kb = malloc(cpu_q8_act_row_bytes(256, n));
    int differ = 0;
    for (int row = 0; row < 40; row++) {
        float scale = row < 20 ? 1.0f + (float)row * 3.0f : 1e-3f * (float)(row - 19);
        for (int64_t i = 0; i < n; i++) x[i] = xorshift_uniform(&rng) * scale;
        if (row == 0) { /* ties: max 127 in every 32 values, others k + 0.5 */
            for (int64_t i = 0; i < n; i++) x[i] = i % 32 == 0 ? 127.0f : (float)(i % 50) - 24.5f;
        }
        if (row == 1) { /* a zero block, a block of -0.0, a block with one value */
            for (int64_t i = 0; i < 32; i++) x[i] = 0.0f, x[32 + i] = -0.0f, x[64 + i] = i == 5 ? -3.0f : 0.0f;
        }
        cpu_q8_quantize_row(32, x, n, a);
        cpu_q8_quantize_row_portable(32, x, n, b);
        cpu_q8_quantize_row(256, x, n, ka);
        cpu_q8_quantize_row_portable(256, x, n, kb);
        if (memcmp(a, b, cpu_q8_act_row_bytes(32, n)) != 0 || memcmp(ka, kb, cpu_q8_act_row_bytes(256, n)) != 0)
            differ++;
        const cpu_q8_block *tie = (const cpu_q8_block *)(const void *)a;
        if (row == 0)
            CHECK(tie[0].d == 1.0f && tie[0].q[1] == -24 && tie[0].q[2] == -22 && tie[0].q[3] == -22,
                  "the tie row rounds half to even: -23.5 -> -24, -22.5 -> -22, -21.5 -> -22 (%d %d %d)",
                  tie[0].q[1], tie[0].q[2], tie[0].q[3]);
    }
    CHECK(differ == 0, "quantizer: dispatched (AVX2 where present) == portable byte for byte, 40 rows (%d differ)",
          differ);
    free(x);
    free(a);
    free(b);
    free(ka);
    free(kb);
}

static const uint32_t types[] = {QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q4_K, QT_Q5_K, QT_Q6_K};

static void test_kernels(void) {
    const int64_t n = 768; /* 24 blocks of 32, 3 of 256 */
    const int rows = 7, nx = 9;
    const cpu_q8_kernels *best = cpu_q8_best(), *port = cpu_q8_portable();
    printf("kernels: %s\n", best->name);
    float *x = malloc(sizeof(float) * (size_t)(nx * n));
    float *wf = malloc(sizeof(float) * (size_t)n);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t];
        const char *name = quant_type_name(type);
        CHECK(cpu_q8_supported(type), "%s supported", name);
        int act = cpu_q8_act_block(type);
        size_t rb = quant_row_bytes(type, n), xs = cpu_q8_act_row_bytes(act, n);
        uint8_t *wdata = malloc(rb * (size_t)rows);
        uint8_t *xq = malloc(xs * (size_t)nx);
        for (int r = 0; r < rows; r++) random_row(type, wdata + (size_t)r * rb, n);
        for (int i = 0; i < nx * n; i++) x[i] = xorshift_uniform(&rng) * (1.0f + (float)(i % 7));
        for (int i = 0; i < nx; i++) cpu_q8_quantize_row(act, x + (size_t)i * n, n, xq + (size_t)i * xs);
        model_weight w = {.type = type, .n_in = n, .n_out = rows, .row_bytes = rb, .data = wdata};
        float yb[9 * 7], yp[9 * 7];
        /* every tile shape: all rows x all activations at once, and one by one */
        best->tile(&w, 0, rows, xq, xs, nx, yb, rows);
        port->tile(&w, 0, rows, xq, xs, nx, yp, rows);
        CHECK(memcmp(yb, yp, sizeof yb) == 0, "%s: %s == portable bit for bit (7 rows x 9 activations)", name,
              best->name);
        const cpu_q8_kernels *avx2 = cpu_q8_avx2();
        if (avx2 && avx2 != best) {
            float ya[9 * 7];
            avx2->tile(&w, 0, rows, xq, xs, nx, ya, rows);
            CHECK(memcmp(ya, yp, sizeof ya) == 0, "%s: avx2 == portable bit for bit (7 rows x 9 activations)", name);
        }
        int mismatch = 0;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < nx; i++) {
                float one;
                best->tile(&w, r, 1, xq + (size_t)i * xs, xs, 1, &one, 1);
                if (memcmp(&one, &yb[i * rows + r], sizeof one) != 0) mismatch++;
            }
        CHECK(mismatch == 0, "%s: each element alone equals it in the 7 x 9 tile (%d differ)", name, mismatch);
        double worst_int = 0.0, worst_act = 0.0;
        for (int r = 0; r < rows; r++) {
            quant_dequantize(type, wdata + (size_t)r * rb, wf, n);
            for (int i = 0; i < nx; i++) {
                const float *xi = x + (size_t)i * n;
                double exact_q = 0.0, exact_f = 0.0, mag = 0.0, bound = 0.0;
                for (int64_t k = 0; k < n; k++) {
                    float dx, qv;
                    if (act == 32) {
                        const cpu_q8_block *b = (const cpu_q8_block *)(const void *)(xq + (size_t)i * xs) + k / 32;
                        dx = b->d, qv = (float)b->q[k % 32];
                    } else {
                        const cpu_q8k_block *b = (const cpu_q8k_block *)(const void *)(xq + (size_t)i * xs) + k / 256;
                        dx = b->d, qv = (float)b->q[k % 256];
                    }
                    exact_q += (double)wf[k] * (double)dx * (double)qv;
                    exact_f += (double)wf[k] * (double)xi[k];
                    mag += fabs((double)wf[k] * (double)dx * (double)qv);
                    bound += fabs((double)wf[k]) * (double)dx * 0.5;
                }
                double y = yb[i * rows + r];
                double e1 = fabs(y - exact_q) / (mag + 1e-30);
                double e2 = fabs(y - exact_f) / (bound + mag * 1e-5 + 1e-30);
                if (e1 > worst_int) worst_int = e1;
                if (e2 > worst_act) worst_act = e2;
            }
        }
        CHECK(worst_int < 1e-5, "%s: = double dot of dequantized weights and activations (rel %.2g of sum|w*x|)",
              name, worst_int);
        CHECK(worst_act <= 1.0, "%s: within the activation rounding bound sum|w| d/2 of the float dot (%.2f of it)",
              name, worst_act);
        free(wdata);
        free(xq);
    }
    free(x);
    free(wf);
}

/* BF16 at precision q8 (widths cpu_bf16 does not take): float activations,
 * 16 lanes (cpu_q8.h). (F16 takes cpu_f16: tests/test_cpu_f16.c.) */
static void test_bf16_kernels(void) {
    const int64_t n = 560; /* a multiple of 16, not of 32 */
    const int rows = 7, nx = 9;
    const cpu_q8_kernels *best = cpu_q8_best(), *port = cpu_q8_portable(), *avx2 = cpu_q8_avx2();
    float *x = malloc(sizeof(float) * (size_t)(nx * n)), *wf = malloc(sizeof(float) * (size_t)(rows * n));
    for (int i = 0; i < nx * n; i++) x[i] = xorshift_uniform(&rng);
    for (int i = 0; i < rows * n; i++) wf[i] = xorshift_uniform(&rng) * 0.1f;
    const uint32_t type = QT_BF16;
    const char *name = quant_type_name(type);
    size_t rb = quant_row_bytes(type, n);
    uint8_t *wdata = malloc(rb * (size_t)rows);
    for (int r = 0; r < rows; r++) quant_quantize(type, wf + (size_t)r * n, wdata + (size_t)r * rb, n);
    model_weight w = {.type = type, .n_in = n, .n_out = rows, .row_bytes = rb, .data = wdata};
    CHECK(cpu_q8_float_rows(&w) && !cpu_q8_supported(type), "%s: float rows at q8", name);
    const uint8_t *xq = (const uint8_t *)(const void *)x;
    size_t xs = (size_t)n * sizeof(float);
    float yb[9 * 7], yp[9 * 7], ya[9 * 7];
    best->tile(&w, 0, rows, xq, xs, nx, yb, rows);
    port->tile(&w, 0, rows, xq, xs, nx, yp, rows);
    CHECK(memcmp(yb, yp, sizeof yb) == 0, "%s: %s == portable bit for bit (7 x 9)", name, best->name);
    if (avx2) {
        avx2->tile(&w, 0, rows, xq, xs, nx, ya, rows);
        CHECK(memcmp(ya, yp, sizeof ya) == 0, "%s: avx2 == portable bit for bit (7 x 9)", name);
    }
    double worst = 0.0;
    float *wd = malloc(sizeof(float) * (size_t)n);
    for (int r = 0; r < rows; r++) {
        quant_dequantize(type, wdata + (size_t)r * rb, wd, n);
        for (int i = 0; i < nx; i++) {
            double e = 0.0, mag = 0.0;
            for (int64_t k = 0; k < n; k++) {
                e += (double)wd[k] * x[(size_t)i * n + k];
                mag += fabs((double)wd[k] * x[(size_t)i * n + k]);
            }
            double rel = fabs(yb[i * rows + r] - e) / mag;
            if (rel > worst) worst = rel;
        }
    }
    CHECK(worst < 1e-5, "%s: = double dot of the exact weights (rel %.2g of sum|w*x|)", name, worst);
    free(wd);
    free(wdata);
    free(x);
    free(wf);
}

/* Row `row`'s block b as integers (the value the kernels multiply: q - 8
 * for Q4_0, the unsigned q for Q4_1, the byte for Q8_0), d and m. */
static void raw_block(uint32_t type, const uint8_t *blk, int32_t *v, float *d, float *m) {
    uint16_t h;
    memcpy(&h, blk, 2);
    *d = quant_f16_to_f32(h);
    *m = 0.0f;
    if (type == QT_Q8_0) {
        for (int i = 0; i < 32; i++) v[i] = (int8_t)blk[2 + i];
        return;
    }
    const uint8_t *qs = blk + 2;
    if (type == QT_Q4_1) {
        memcpy(&h, blk + 2, 2);
        *m = quant_f16_to_f32(h);
        qs = blk + 4;
    }
    int bias = type == QT_Q4_0 ? 8 : 0;
    for (int i = 0; i < 16; i++) {
        v[i] = (qs[i] & 0x0f) - bias;
        v[i + 16] = (qs[i] >> 4) - bias;
    }
}

/* cpu_q8.h's order (new = true): acc = fmaf(dw * dx, (float)isum_b, acc)
 * per block, summ = fmaf(m, s, summ), acc + summ (Q4_1). The order of
 * before (new = false): lane k of block b, fmaf(dw * dx, (float)lane, acc)
 * into even or odd 8-lane accumulators, then the 8-lane tree, + summ. */
static float order_dot(uint32_t type, const uint8_t *row, const uint8_t *xq, int64_t nb, bool new) {
    const cpu_q8_block *x = (const cpu_q8_block *)(const void *)xq;
    float acc = 0.0f, summ = 0.0f, lanes[16] = {0};
    for (int64_t b = 0; b < nb; b++) {
        int32_t v[32];
        float dw, m;
        raw_block(type, row + (size_t)b * (size_t)quant_type_size(type), v, &dw, &m);
        float d = dw * x[b].d;
        int32_t isum = 0;
        for (int k = 0; k < 8; k++) {
            int32_t lane = 0;
            for (int j = 0; j < 4; j++) lane += v[4 * k + j] * x[b].q[4 * k + j];
            isum += lane;
            float *l = lanes + 8 * (b % 2) + k;
            *l = fmaf(d, (float)lane, *l);
        }
        acc = fmaf(d, (float)isum, acc);
        if (type == QT_Q4_1) summ = fmaf(m, x[b].s, summ);
    }
    if (!new) {
        for (int k = 0; k < 8; k++) lanes[k] = lanes[k] + lanes[k + 8];
        acc = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        return acc + summ;
    }
    return type == QT_Q4_1 ? acc + summ : acc;
}

/* A reference order: one dot product of a weight row against a quantized
 * activation row of nb blocks, in cpu_q8.h's order (new) or the one before. */
typedef float (*order_ref)(uint32_t type, const uint8_t *row, const uint8_t *xq, int64_t nb, bool new);

/* Every build's tile (7 weight rows x 9 activation rows of n values, blocks
 * of act values) equals the reference order bit for bit, on inputs where the
 * order of before gives other floats. */
static void check_order(const uint32_t types[3], int64_t n, int act, order_ref ref, const char *order) {
    const int rows = 7, nx = 9;
    const cpu_q8_kernels *ks[3] = {cpu_q8_best(), cpu_q8_avx2(), cpu_q8_portable()};
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int ti = 0; ti < 3; ti++) {
        uint32_t type = types[ti];
        const char *name = quant_type_name(type);
        size_t rb = quant_row_bytes(type, n), xs = cpu_q8_act_row_bytes(act, n);
        uint8_t *wdata = malloc(rb * (size_t)rows), *xq = malloc(xs * (size_t)nx);
        for (int r = 0; r < rows; r++) random_row(type, wdata + (size_t)r * rb, n);
        for (int t = 0; t < nx; t++) {
            for (int64_t i = 0; i < n; i++) x[i] = xorshift_uniform(&rng) * (1.0f + (float)(i % 3));
            cpu_q8_quantize_row(act, x, n, xq + (size_t)t * xs);
        }
        float want[9 * 7];
        int old_differs = 0;
        for (int t = 0; t < nx; t++)
            for (int r = 0; r < rows; r++) {
                const uint8_t *xt = xq + (size_t)t * xs, *wr = wdata + (size_t)r * rb;
                want[t * rows + r] = ref(type, wr, xt, n / act, true);
                float old = ref(type, wr, xt, n / act, false);
                if (memcmp(&old, &want[t * rows + r], sizeof old) != 0) old_differs++;
            }
        CHECK(old_differs > 0, "%s: the order of before gives other floats on %d of these 63 dot products", name,
              old_differs);
        model_weight w = {.type = type, .n_in = n, .n_out = rows, .row_bytes = rb, .data = wdata};
        for (int k = 0; k < 3; k++) {
            if (!ks[k]) continue;
            float got[9 * 7];
            ks[k]->tile(&w, 0, rows, xq, xs, nx, got, rows);
            CHECK(memcmp(got, want, sizeof got) == 0,
                  "%s: %s computes cpu_q8.h's %s (one int32 per block, one float chain), bit for bit", name,
                  ks[k]->name, order);
        }
        free(wdata);
        free(xq);
    }
    free(x);
}

static void test_order32(void) {
    const uint32_t types[] = {QT_Q8_0, QT_Q4_0, QT_Q4_1};
    check_order(types, 768, 32, order_dot, "order");
}

/* A K block's integer values (Q6_K: the 6-bit value - 32; Q4_K / Q5_K:
 * unsigned, the minimum apart), the scale of each value, the 8 sub-block
 * minimums (Q4_K / Q5_K), d and dmin, read from the raw bytes (ggml's
 * block_q4_K / q5_K / q6_K layouts). */
static void raw_kblock(uint32_t type, const uint8_t *b, int32_t *v, int32_t *sc, int32_t *mins, float *d,
                       float *dmin) {
    uint16_t h;
    if (type == QT_Q6_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *scales = (const int8_t *)(b + 192);
        memcpy(&h, b + 208, 2);
        *d = quant_f16_to_f32(h);
        *dmin = 0.0f;
        for (int half = 0; half < 2; half++)
            for (int l = 0; l < 32; l++) {
                int hb = qh[32 * half + l];
                v[128 * half + l] = ((ql[64 * half + l] & 0x0f) | ((hb & 3) << 4)) - 32;
                v[128 * half + 32 + l] = ((ql[64 * half + 32 + l] & 0x0f) | (((hb >> 2) & 3) << 4)) - 32;
                v[128 * half + 64 + l] = ((ql[64 * half + l] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
                v[128 * half + 96 + l] = ((ql[64 * half + 32 + l] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
            }
        for (int i = 0; i < 256; i++) sc[i] = scales[i / 16];
        return;
    }
    memcpy(&h, b, 2);
    *d = quant_f16_to_f32(h);
    memcpy(&h, b + 2, 2);
    *dmin = quant_f16_to_f32(h);
    const uint8_t *s = b + 4, *qh = b + 16, *qs = type == QT_Q5_K ? b + 48 : b + 16;
    for (int j = 0; j < 8; j++) {
        int scale = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        mins[j] = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        for (int i = 0; i < 32; i++) sc[32 * j + i] = scale;
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0x0f, hi = qs[32 * c + l] >> 4;
            if (type == QT_Q5_K) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            v[64 * c + l] = lo;
            v[64 * c + 32 + l] = hi;
        }
}

/* cpu_q8.h's K order (new = true): acc = fmaf(dw * dx, (float)isum_b, acc),
 * summ = fmaf(dmin * dx, (float)mins_b, summ), acc - summ (Q6_K: acc). The
 * order of before (new = false): lane k = values 4k..4k+3 of every 32-value
 * chunk, fmaf(dw * dx, (float)lane, acc[k]), the 8-lane tree, - summ. */
static float order_kdot(uint32_t type, const uint8_t *row, const uint8_t *xq, int64_t nb, bool new) {
    const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)xq;
    float acc = 0.0f, summ = 0.0f, lanes[8] = {0};
    for (int64_t b = 0; b < nb; b++) {
        int32_t v[256], sc[256], mins[8] = {0};
        float dw, dmin;
        raw_kblock(type, row + (size_t)b * (size_t)quant_type_size(type), v, sc, mins, &dw, &dmin);
        float d = dw * x[b].d;
        int32_t isum = 0;
        for (int k = 0; k < 8; k++) {
            int32_t lane = 0;
            for (int c = 0; c < 8; c++)
                for (int j = 0; j < 4; j++) {
                    int i = 32 * c + 4 * k + j;
                    lane += sc[i] * v[i] * x[b].q[i];
                }
            isum += lane;
            lanes[k] = fmaf(d, (float)lane, lanes[k]);
        }
        acc = fmaf(d, (float)isum, acc);
        if (type != QT_Q6_K) {
            int32_t m = 0;
            for (int j = 0; j < 8; j++) m += mins[j] * ((int32_t)x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
            summ = fmaf(dmin * x[b].d, (float)m, summ);
        }
    }
    if (!new) acc = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
    return type == QT_Q6_K ? acc : acc - summ;
}

static void test_orderk(void) {
    const uint32_t types[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K};
    check_order(types, 1024, 256, order_kdot, "K order");
}

int main(void) {
    test_quantizer();
    test_quantizer_builds();
    test_kernels();
    test_order32();
    test_orderk();
    test_bf16_kernels();
    return check_finish("test_cpu_q8");
}
