/* quant.c: type table, half/bfloat16 conversions and dequantization of
 * llama.cpp's block formats (see quant.h and docs/quant.md).
 *
 * Every decoder below performs exactly the float32 operations of ggml's
 * dequantize_row_* (and of the `gguf` Python package), in the same order,
 * one rounding per operation: this file must be compiled without FP
 * contraction (-std=c11 implies -ffp-contract=off with gcc), which the
 * bit-exact fixture test checks. */
#include "format/quant.h"
#include "format/quant_impl.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- type table ---- */

typedef struct {
    const char *name;  /* NULL: id not defined by ggml */
    int64_t block_size;
    int64_t type_size;
    bool supported;    /* greta reads it */
    bool quantizable;  /* greta writes it */
} type_traits;

/* Indexed by ggml type id. Sizes are given for every id ggml defines so the
 * table documents the layout, but only supported types report them. */
static const type_traits TYPE_TABLE[] = {
    [QT_F32] = {"F32", 1, 4, true, true},
    [QT_F16] = {"F16", 1, 2, true, true},
    [QT_Q4_0] = {"Q4_0", 32, 18, true, true},
    [QT_Q4_1] = {"Q4_1", 32, 20, true, true},
    [4] = {"Q4_2", 0, 0, false, false}, /* removed from ggml in 2023 */
    [5] = {"Q4_3", 0, 0, false, false}, /* removed from ggml in 2023 */
    [QT_Q5_0] = {"Q5_0", 32, 22, true, false},
    [QT_Q5_1] = {"Q5_1", 32, 24, true, false},
    [QT_Q8_0] = {"Q8_0", 32, 34, true, true},
    [QT_Q8_1] = {"Q8_1", 32, 40, false, false},
    [QT_Q2_K] = {"Q2_K", 256, 84, true, true},
    [QT_Q3_K] = {"Q3_K", 256, 110, true, true},
    [QT_Q4_K] = {"Q4_K", 256, 144, true, true},
    [QT_Q5_K] = {"Q5_K", 256, 176, true, true},
    [QT_Q6_K] = {"Q6_K", 256, 210, true, true},
    [QT_Q8_K] = {"Q8_K", 256, 292, false, false},
    [16] = {"IQ2_XXS", 256, 66, false, false},
    [17] = {"IQ2_XS", 256, 74, false, false},
    [18] = {"IQ3_XXS", 256, 98, false, false},
    [19] = {"IQ1_S", 256, 50, false, false},
    [20] = {"IQ4_NL", 32, 18, false, false},
    [21] = {"IQ3_S", 256, 110, false, false},
    [22] = {"IQ2_S", 256, 82, false, false},
    [23] = {"IQ4_XS", 256, 136, false, false},
    [24] = {"I8", 1, 1, false, false},
    [25] = {"I16", 1, 2, false, false},
    [26] = {"I32", 1, 4, false, false},
    [27] = {"I64", 1, 8, false, false},
    [28] = {"F64", 1, 8, false, false},
    [29] = {"IQ1_M", 256, 56, false, false},
    [QT_BF16] = {"BF16", 1, 2, true, true},
    [31] = {"Q4_0_4_4", 0, 0, false, false}, /* removed (repacked Q4_0) */
    [32] = {"Q4_0_4_8", 0, 0, false, false},
    [33] = {"Q4_0_8_8", 0, 0, false, false},
    [34] = {"TQ1_0", 256, 54, false, false},
    [35] = {"TQ2_0", 256, 66, false, false},
    [36] = {"IQ4_NL_4_4", 0, 0, false, false}, /* removed (repacked IQ4_NL) */
    [37] = {"IQ4_NL_4_8", 0, 0, false, false},
    [38] = {"IQ4_NL_8_8", 0, 0, false, false},
    [39] = {"MXFP4", 32, 17, false, false},
    [40] = {"NVFP4", 64, 36, false, false},
    [41] = {"Q1_0", 128, 18, false, false},
};

#define TYPE_TABLE_LEN (sizeof(TYPE_TABLE) / sizeof(TYPE_TABLE[0]))

static const type_traits *traits_of(uint32_t type) {
    if (type >= TYPE_TABLE_LEN || TYPE_TABLE[type].name == NULL) return NULL;
    return &TYPE_TABLE[type];
}

const char *quant_type_name(uint32_t type) {
    const type_traits *t = traits_of(type);
    return t ? t->name : "unknown";
}

int quant_type_from_name(const char *name) {
    if (name == NULL) return -1;
    for (uint32_t type = 0; type < TYPE_TABLE_LEN; type++) {
        const type_traits *t = traits_of(type);
        if (t && t->supported && strcasecmp(t->name, name) == 0) return (int)type;
    }
    return -1;
}

bool quant_type_supported(uint32_t type) {
    const type_traits *t = traits_of(type);
    return t != NULL && t->supported;
}

bool quant_type_quantizable(uint32_t type) {
    const type_traits *t = traits_of(type);
    return t != NULL && t->quantizable;
}

int64_t quant_block_size(uint32_t type) {
    return quant_type_supported(type) ? TYPE_TABLE[type].block_size : 0;
}

int64_t quant_type_size(uint32_t type) {
    return quant_type_supported(type) ? TYPE_TABLE[type].type_size : 0;
}

size_t quant_row_bytes(uint32_t type, int64_t n) {
    int64_t block = quant_block_size(type);
    if (block == 0 || n < 0 || n % block != 0) return 0;
    return (size_t)(n / block) * (size_t)quant_type_size(type);
}

/* ---- half and bfloat16 ---- */

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float quant_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in float32 */
        float magnitude = (float)mantissa * 0x1p-24f;
        return bits_float(float_bits(magnitude) | sign);
    }
    if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/* Round to nearest, ties to even; overflow to infinity; NaN stays NaN
 * (made quiet, top payload bits kept), as F16C's vcvtps2ph does. */
uint16_t quant_f32_to_f16(float f) {
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u) return sign | 0x7c00u;
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    }
    if (x >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to inf */
    uint32_t exponent = x >> 23;
    if (exponent < 113) {
        /* half subnormal (or zero): m = f * 2^24 rounded to an integer */
        uint32_t shift = 126 - exponent; /* >= 14 */
        if (shift > 24) return sign;     /* below 2^-25: rounds to zero */
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((exponent - 112) << 10) | ((x >> 13) & 0x3ffu);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float quant_bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

/* Round to nearest even; NaN made quiet (as ggml_compute_fp32_to_bf16). */
uint16_t quant_f32_to_bf16(float f) {
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64u);
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/* ---- little-endian field readers ---- */

uint16_t quant_read_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

float quant_read_f16(const uint8_t *p) { return quant_f16_to_f32(quant_read_u16(p)); }

/* ---- one-block decoders: b = one block, y = block_size floats ---- */

static void dequant_block_f32(const uint8_t *b, float *y) { memcpy(y, b, sizeof(float)); }

static void dequant_block_f16(const uint8_t *b, float *y) { y[0] = quant_read_f16(b); }

static void dequant_block_bf16(const uint8_t *b, float *y) {
    y[0] = quant_bf16_to_f32(quant_read_u16(b));
}

/* Q4_0: d (f16) | qs[16]; value j: low nibble of qs[j], value j+16: high
 * nibble; y = d * (q - 8). */
static void dequant_block_q4_0(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0x0f) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1: d (f16) | m (f16) | qs[16]; y = d * q + m (two roundings). */
static void dequant_block_q4_1(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const float m = quant_read_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0x0f) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q5_0: d (f16) | qh (u32 LE, bit j = 5th bit of value j) | qs[16];
 * y = d * (q - 16). */
static void dequant_block_q5_0(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) |
                        ((uint32_t)b[5] << 24);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

/* Q5_1: d (f16) | m (f16) | qh (u32) | qs[16]; y = d * q + m. */
static void dequant_block_q5_1(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const float m = quant_read_f16(b + 2);
    const uint32_t qh = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) |
                        ((uint32_t)b[7] << 24);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

/* Q8_0: d (f16) | qs[32] (int8); y = q * d. */
static void dequant_block_q8_0(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin.
 * Value 128*h + 32*s + 16*k + l (h<2, s<4 shift pairs, k<2, l<16) is bits
 * 2s..2s+1 of qs[32h + 16k + l] with scale index 8h + 2s + k;
 * y = (d * sc) * q - (dmin * m). */
static void dequant_block_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b;
    const uint8_t *qs = b + 16;
    const float d = quant_read_f16(b + 80);
    const float dmin = quant_read_f16(b + 82);
    int is = 0;
    for (int half = 0; half < 2; half++) {
        const uint8_t *q = qs + 32 * half;
        for (int shift = 0; shift < 8; shift += 2) {
            for (int k = 0; k < 2; k++) {
                uint8_t sc = scales[is++];
                const float dl = d * (float)(sc & 0x0f);
                const float ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
            }
        }
    }
}

/* Q3_K scales: 16 six-bit values packed in 12 bytes, minus 32. */
static void q3_k_unpack_scales(const uint8_t *packed, int8_t *scales) {
    for (int j = 0; j < 16; j++) {
        int low = (j < 8) ? (packed[j] & 0x0f) : (packed[j - 8] >> 4);
        int high = (packed[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        scales[j] = (int8_t)((low | (high << 4)) - 32);
    }
}

/* Q3_K: hmask[32] | qs[64] | scales[12] | d. Value 128*h + 32*s + 16*k + l:
 * low bits 2s.. of qs[32h + 16k + l], high bit (bit 4h+s of hmask[16k + l])
 * set means +0, clear means -4; y = (d * scale) * q. */
static void dequant_block_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b;
    const uint8_t *qs = b + 32;
    const float d = quant_read_f16(b + 108);
    int8_t scales[16];
    q3_k_unpack_scales(b + 96, scales);
    int is = 0;
    uint8_t m = 1;
    for (int half = 0; half < 2; half++) {
        const uint8_t *q = qs + 32 * half;
        for (int shift = 0; shift < 8; shift += 2) {
            for (int k = 0; k < 2; k++) {
                const float dl = d * (float)scales[is++];
                for (int l = 0; l < 16; l++) {
                    int low = (q[16 * k + l] >> shift) & 3;
                    int value = low - ((hmask[16 * k + l] & m) ? 0 : 4);
                    *y++ = dl * (float)value;
                }
            }
            m = (uint8_t)(m << 1);
        }
    }
}

/* Q4_K/Q5_K scales: 8 six-bit scales and 8 six-bit mins in 12 bytes. */
void quant_k4_scale_min(int j, const uint8_t *q, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *min = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d | dmin | scales[12] | qs[128]. Sub-block 2c (values 64c..64c+31)
 * is the low nibbles of qs[32c..32c+31], sub-block 2c+1 the high nibbles;
 * y = (d * sc) * q - (dmin * m). */
static void dequant_block_q4_k(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const float dmin = quant_read_f16(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *q = b + 16;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        quant_k4_scale_min(2 * c, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        quant_k4_scale_min(2 * c + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
    }
}

/* Q5_K: d | dmin | scales[12] | qh[32] | qs[128]. As Q4_K, with the 5th bit
 * of value 32*s + l (s = sub-block) in bit s of qh[l]. */
static void dequant_block_q5_k(const uint8_t *b, float *y) {
    const float d = quant_read_f16(b);
    const float dmin = quant_read_f16(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *qh = b + 16;
    const uint8_t *ql = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        quant_k4_scale_min(2 * c, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        quant_k4_scale_min(2 * c + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

/* Q6_K: ql[128] | qh[64] | scales[16] (int8) | d. In each half h (128
 * values), value 32*s + l (s<4, l<32): low 4 bits from ql[64h + l + 32*(s&1)]
 * (low nibble for s<2, high for s>=2), top 2 bits = bits 2s..2s+1 of
 * qh[32h + l], minus 32; scale index 8h + 2s + l/16; y = (d * sc) * q. */
static void dequant_block_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b;
    const uint8_t *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = quant_read_f16(b + 208);
    for (int half = 0; half < 2; half++) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

typedef void (*block_decoder)(const uint8_t *block, float *dst);

static block_decoder decoder_of(uint32_t type) {
    switch (type) {
    case QT_F32: return dequant_block_f32;
    case QT_F16: return dequant_block_f16;
    case QT_BF16: return dequant_block_bf16;
    case QT_Q4_0: return dequant_block_q4_0;
    case QT_Q4_1: return dequant_block_q4_1;
    case QT_Q5_0: return dequant_block_q5_0;
    case QT_Q5_1: return dequant_block_q5_1;
    case QT_Q8_0: return dequant_block_q8_0;
    case QT_Q2_K: return dequant_block_q2_k;
    case QT_Q3_K: return dequant_block_q3_k;
    case QT_Q4_K: return dequant_block_q4_k;
    case QT_Q5_K: return dequant_block_q5_k;
    case QT_Q6_K: return dequant_block_q6_k;
    default: return NULL;
    }
}

void quant_dequantize_block(uint32_t type, const void *block, float *dst) {
    block_decoder decode = decoder_of(type);
    if (decode == NULL) {
        dst[0] = NAN; /* unsupported type: poison rather than leave garbage */
        return;
    }
    decode(block, dst);
}

void quant_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    if (n <= 0) return;
    block_decoder decode = decoder_of(type);
    if (decode == NULL || quant_row_bytes(type, n) == 0) {
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    const uint8_t *b = src;
    if (type == QT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    if (type == QT_F16) {
        for (int64_t i = 0; i < n; i++) dst[i] = quant_read_f16(b + 2 * i);
        return;
    }
    const int64_t block = quant_block_size(type);
    const int64_t size = quant_type_size(type);
    for (int64_t i = 0; i < n / block; i++) decode(b + i * size, dst + i * block);
}
