/* cpu_q8.c: quantized activations and integer dot products (see cpu_q8.h
 * for the layout and the fixed order that both builds follow). */
#include "backend/cpu/cpu_q8.h"

#include <math.h>
#include <string.h>

#include "format/quant.h"

bool cpu_q8_supported(uint32_t type) {
    return cpu_q8_act_block(type) != 0;
}

bool cpu_q8_float_rows(const model_weight *w) {
    return w->type == QT_BF16 && w->n_in % 16 == 0;
}

int cpu_q8_act_block(uint32_t type) {
    switch (type) {
    case QT_Q4_0:
    case QT_Q4_1:
    case QT_Q5_0:
    case QT_Q5_1:
    case QT_Q8_0: return 32;
    case QT_Q4_K:
    case QT_Q5_K:
    case QT_Q6_K: return 256;
    default: return 0;
    }
}

size_t cpu_q8_act_row_bytes(int act_block, int64_t n) {
    if (act_block == 32) return (size_t)(n / 32) * sizeof(cpu_q8_block);
    return (size_t)(n / 256) * sizeof(cpu_q8k_block);
}

/* q[0..n) = x / d rounded to nearest even, d = max|x| / 127; returns d. */
static float quantize_values(const float *x, int n, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = (int8_t)nearbyintf(x[i] * id);
    return d;
}

#if defined(__x86_64__) && defined(__GNUC__)
void cpu_q8_quantize_row_avx2(int act_block, const float *x, int64_t n, void *dst); /* cpu_q8_quant_avx2.c */
#endif

void cpu_q8_quantize_row(int act_block, const float *x, int64_t n, void *dst) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        cpu_q8_quantize_row_avx2(act_block, x, n, dst);
        return;
    }
#endif
    cpu_q8_quantize_row_portable(act_block, x, n, dst);
}

void cpu_q8_quantize_row_portable(int act_block, const float *x, int64_t n, void *dst) {
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

static float read_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return quant_f16_to_f32(h);
}

static float hsum8(const float *l) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* ---- portable ---- */

/* A weight block unpacked: integer values (true value for Q4_0 Q5_0 Q8_0
 * Q6_K, q without the minimum for Q4_1 Q5_1 Q4_K Q5_K), the integer scale
 * of each 16 values (1 for 32-value blocks), d, and the minimum (m for
 * Q4_1 / Q5_1; dmin and the 8 sub-block mins for Q4_K / Q5_K). */
typedef struct {
    int8_t w[256];
    int32_t sc16[16];
    int32_t mins[8];
    float d, m;
    bool has_m;
} unpacked;

static void unpack_32(uint32_t type, const uint8_t *b, unpacked *u) {
    u->has_m = false;
    u->sc16[0] = u->sc16[1] = 1;
    uint32_t qh = 0;
    switch (type) {
    case QT_Q8_0:
        u->d = read_f16(b);
        memcpy(u->w, b + 2, 32);
        return;
    case QT_Q4_0:
        u->d = read_f16(b);
        for (int j = 0; j < 16; j++) {
            u->w[j] = (int8_t)((b[2 + j] & 0x0f) - 8);
            u->w[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
        }
        return;
    case QT_Q4_1:
        u->d = read_f16(b);
        u->m = read_f16(b + 2);
        u->has_m = true;
        for (int j = 0; j < 16; j++) {
            u->w[j] = (int8_t)(b[4 + j] & 0x0f);
            u->w[j + 16] = (int8_t)(b[4 + j] >> 4);
        }
        return;
    case QT_Q5_0:
        u->d = read_f16(b);
        memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; j++) {
            u->w[j] = (int8_t)(((b[6 + j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16);
            u->w[j + 16] = (int8_t)(((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        return;
    case QT_Q5_1:
        u->d = read_f16(b);
        u->m = read_f16(b + 2);
        u->has_m = true;
        memcpy(&qh, b + 4, 4);
        for (int j = 0; j < 16; j++) {
            u->w[j] = (int8_t)((b[8 + j] & 0x0f) | (((qh >> j) & 1) << 4));
            u->w[j + 16] = (int8_t)((b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        return;
    default: return;
    }
}

static inline void k4_scale_min(int j, const uint8_t *q, int32_t *scale, int32_t *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void unpack_256(uint32_t type, const uint8_t *b, unpacked *u) {
    if (type == QT_Q6_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        u->d = read_f16(b + 208);
        u->has_m = false;
        for (int j = 0; j < 16; j++) u->sc16[j] = sc[j];
        for (int half = 0; half < 2; half++, ql += 64, qh += 32) {
            int8_t *w = u->w + 128 * half;
            for (int l = 0; l < 32; l++) {
                w[l] = (int8_t)(((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32);
                w[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
                w[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                w[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        return;
    }
    /* Q4_K / Q5_K */
    u->d = read_f16(b);
    u->m = read_f16(b + 2);
    u->has_m = true;
    const uint8_t *scales = b + 4;
    for (int j = 0; j < 8; j++) {
        int32_t sc, mn;
        k4_scale_min(j, scales, &sc, &mn);
        u->sc16[2 * j] = u->sc16[2 * j + 1] = sc;
        u->mins[j] = mn;
    }
    const uint8_t *qh = b + 16, *q = type == QT_Q5_K ? b + 48 : b + 16;
    for (int c = 0; c < 4; c++, q += 32) {
        for (int l = 0; l < 32; l++) {
            int lo = q[l] & 0x0f, hi = q[l] >> 4;
            if (type == QT_Q5_K) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            u->w[64 * c + l] = (int8_t)lo;
            u->w[64 * c + 32 + l] = (int8_t)hi;
        }
    }
}

/* The lanes of one block: L[k] = sum over 32-value chunks c of
 * sum_{e = 4k..4k+3} sc16[(32c + e) / 16] * w[32c + e] * q[32c + e]. */
static void block_lanes(const unpacked *u, const int8_t *q, int n, int32_t *lanes) {
    for (int k = 0; k < 8; k++) lanes[k] = 0;
    for (int c = 0; c < n / 32; c++)
        for (int k = 0; k < 8; k++) {
            int32_t s = 0;
            for (int e = 4 * k; e < 4 * k + 4; e++) s += (int32_t)u->w[32 * c + e] * (int32_t)q[32 * c + e];
            lanes[k] += u->sc16[(32 * c + 4 * k) / 16] * s;
        }
}

/* Blocks of 32 (cpu_q8.h): per block the exact integer sum, one float chain. */
static float dot32_portable(const model_weight *w, const uint8_t *row, const uint8_t *xq) {
    const int64_t n_blocks = w->n_in / 32;
    const size_t bs = (size_t)quant_type_size(w->type);
    const cpu_q8_block *x = (const cpu_q8_block *)(const void *)xq;
    float acc = 0.0f, summ = 0.0f;
    unpacked u;
    for (int64_t b = 0; b < n_blocks; b++) {
        unpack_32(w->type, row + (size_t)b * bs, &u);
        int32_t isum = 0;
        for (int i = 0; i < 32; i++) isum += (int32_t)u.w[i] * (int32_t)x[b].q[i];
        acc = fmaf(u.d * x[b].d, (float)isum, acc);
        if (u.has_m) summ = fmaf(u.m, x[b].s, summ);
    }
    return w->type == QT_Q4_1 || w->type == QT_Q5_1 ? acc + summ : acc;
}

/* Blocks of 256 (cpu_q8.h): the block's exact integer sum, one float chain
 * (and the minimum's chain for Q4_K / Q5_K). */
static float dot_portable(const model_weight *w, const uint8_t *row, const uint8_t *xq) {
    if (cpu_q8_act_block(w->type) == 32) return dot32_portable(w, row, xq);
    const int64_t n_blocks = w->n_in / 256;
    const size_t bs = (size_t)quant_type_size(w->type);
    float acc = 0.0f, summ = 0.0f;
    unpacked u;
    int32_t lanes[8];
    for (int64_t b = 0; b < n_blocks; b++) {
        const cpu_q8k_block *x = (const cpu_q8k_block *)(const void *)xq + b;
        unpack_256(w->type, row + (size_t)b * bs, &u);
        block_lanes(&u, x->q, 256, lanes);
        int32_t isum = 0;
        for (int k = 0; k < 8; k++) isum += lanes[k];
        acc = fmaf(u.d * x->d, (float)isum, acc);
        if (u.has_m) {
            int32_t mins = 0;
            for (int j = 0; j < 8; j++) mins += u.mins[j] * ((int32_t)x->bsums[2 * j] + x->bsums[2 * j + 1]);
            summ = fmaf(u.m * x->d, (float)mins, summ);
        }
    }
    return w->type == QT_Q6_K ? acc : acc - summ;
}

/* BF16 row r against float row x: 16 lanes (cpu_q8_float_rows). */
static float dot_bf16_portable(const model_weight *w, const uint8_t *row, const float *x) {
    float lane[16] = {0};
    for (int64_t c = 0; c < w->n_in / 8; c++) {
        float *l = lane + 8 * (c % 2);
        for (int k = 0; k < 8; k++) {
            uint16_t h;
            memcpy(&h, row + 2 * (8 * c + k), 2);
            l[k] = fmaf(quant_bf16_to_f32(h), x[8 * c + k], l[k]);
        }
    }
    for (int k = 0; k < 8; k++) lane[k] = lane[k] + lane[k + 8];
    return hsum8(lane);
}

static void tile_portable(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    if (w->type == QT_BF16) {
        for (int t = 0; t < n_x; t++)
            for (int r = 0; r < n_rows; r++)
                y[t * ys + r] = dot_bf16_portable(w, w->data + (size_t)(r0 + r) * w->row_bytes,
                                                  (const float *)(const void *)(xq + (size_t)t * xq_stride));
        return;
    }
    for (int t = 0; t < n_x; t++)
        for (int r = 0; r < n_rows; r++)
            y[t * ys + r] = dot_portable(w, w->data + (size_t)(r0 + r) * w->row_bytes, xq + (size_t)t * xq_stride);
}

static const cpu_q8_kernels kernels_portable = {"portable", tile_portable};

const cpu_q8_kernels *cpu_q8_portable(void) {
    return &kernels_portable;
}
/* ---- dispatch ---- */
#if defined(__x86_64__) && defined(__GNUC__)
/* cpu_q8_avx2.c, cpu_q8_vnni.c */
void cpu_q8_tile_avx2(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys);
void cpu_q8_tile_vnni(const model_weight *w, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                      float *y, int64_t ys);

static const cpu_q8_kernels kernels_avx2 = {"avx2", cpu_q8_tile_avx2};
static const cpu_q8_kernels kernels_vnni = {"avx512vnni", cpu_q8_tile_vnni};

const cpu_q8_kernels *cpu_q8_best(void) {
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni"))
        return &kernels_vnni;
    return avx2 ? &kernels_avx2 : &kernels_portable;
}

const cpu_q8_kernels *cpu_q8_avx2(void) {
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return avx2 ? &kernels_avx2 : NULL;
}
#else
const cpu_q8_kernels *cpu_q8_best(void) {
    return &kernels_portable;
}

const cpu_q8_kernels *cpu_q8_avx2(void) {
    return NULL;
}
#endif
