/* quant_quantize.c: float32 -> F16, BF16, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * The algorithms are llama.cpp's reference quantizers without importance
 * matrix (quantize_row_*_ref in ggml-quants.c), re-implemented here with the
 * same float32 operations in the same order, so that Q8_0/Q4_0/Q4_1/F16/BF16
 * output is byte-identical to llama.cpp and the `gguf` Python package (tested
 * with fixtures), and the K-quants reach the same round-trip error
 * (docs/quant.md has the RMSE table). */
#include "format/quant.h"
#include "format/quant_impl.h"

#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

#define QK 32
#define QK_K 256

/* Round half to even, as ggml's nearest_int (valid for |v| < 2^22; larger
 * magnitudes and NaN, which only degenerate scales can produce, are
 * clamped so the conversion is always defined). */
static int nearest_int(float v) {
    if (!(v > -4194303.0f)) return v != v ? 0 : -4194303;
    if (v > 4194303.0f) return 4194303;
    return (int)rintf(v);
}

/* ggml's nearest_int exactly, also outside |v| < 2^22 where its
 * magic-number rounding wraps (the Q3_K refinement step can divide by a
 * tiny sum; the wrapped level is then clamped as in the reference). */
static int nearest_int_wrapping(float v) {
    float biased = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* (int)v clamped to [lo, hi]: C's truncating conversion for in-range v, and
 * defined (NaN -> lo) where a degenerate block makes the reference's own
 * conversion undefined. */
static int trunc_clamped(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

static void write_f16(uint8_t *p, float v) {
    uint16_t h = quant_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* ---- 32-value blocks ---- */

/* Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero). */
static void quantize_block_q8_0(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(out, d);
    for (int j = 0; j < QK; j++) out[2 + j] = (uint8_t)(int8_t)trunc_clamped(roundf(x[j] * id), -127, 127);
}

/* Q4_0: d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)). */
static void quantize_block_q4_0(const float *x, uint8_t *out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(out, d);
    for (int j = 0; j < QK / 2; j++) {
        int q0 = trunc_clamped(x[j] * id + 8.5f, 0, 15);
        int q1 = trunc_clamped(x[j + QK / 2] * id + 8.5f, 0, 15);
        out[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min)/d + 0.5)). */
static void quantize_block_q4_1(const float *x, uint8_t *out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    write_f16(out, d);
    write_f16(out + 2, min);
    for (int j = 0; j < QK / 2; j++) {
        int q0 = trunc_clamped((x[j] - min) * id + 0.5f, 0, 15);
        int q1 = trunc_clamped((x[j + QK / 2] - min) * id + 0.5f, 0, 15);
        out[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* ---- K-quant helpers ---- */

/* Weighted error term of one value: |diff| (use_mad) or diff^2. */
static float error_term(float diff, bool use_mad) { return use_mad ? fabsf(diff) : diff * diff; }

/* Best (scale, min) for n values at levels 0..nmax, minimizing the weighted
 * squared (or, use_mad, absolute) error over a few candidate scales
 * (llama.cpp's make_qkx2_quants). Returns the scale, *neg_min = -min >= 0. */
static float fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                           float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        best_error += weights[i] * error_term(diff, use_mad);
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * (float)step + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                error += weights[i] * error_term(diff, use_mad);
            }
            if (error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric scale for n values at levels -nmax..nmax-1, weights x^2, 19
 * candidate scales (llama.cpp's make_qx_quants, rmse_type 1, no weights).
 * L[i] = level + nmax. */
static float fit_scale_symmetric(int n, int nmax, const float *x, uint8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (uint8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)step) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (uint8_t)(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q4_K / Q5_K common part: 8 sub-blocks of 32 with 6-bit scales and mins.
 * Writes d, dmin and the 12 packed scale bytes (out[0..16)) and the final
 * levels L[256] in 0..nmax. */
static void quantize_k4_scales(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *out,
                               uint8_t *L) {
    float scales[8], mins[8], weights[32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
        scales[j] = fit_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *packed = out + 4;
    memset(packed, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    write_f16(out, max_scale / 63.0f);
    write_f16(out + 2, max_min / 63.0f);
    const float d_all = quant_read_f16(out), dmin_all = quant_read_f16(out + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        quant_k4_scale_min(j, packed, &sc, &m);
        const float d = d_all * (float)sc;
        if (d == 0.0f) continue;
        const float dm = dmin_all * (float)m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clamp_int(nearest_int((x[32 * j + i] + dm) / d), 0, nmax);
    }
}

/* Packs 256 two-bit levels: byte 32*h + l holds L[128h + l + 32k] at bits 2k
 * (Q2_K and Q3_K share this layout). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++)
            qs[32 * h + l] = (uint8_t)(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
    }
}

/* Q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin.
 * llama.cpp's quantize_row_q2_K_ref: 16 sub-blocks of 16 values at levels
 * 0..3, fitted with absolute-error weights |x|; 4-bit scales and mins. */
static void quantize_block_q2_k(const float *x, uint8_t *out) {
    uint8_t L[QK_K];
    float scales[16], mins[16], weights[16];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t *sc = out;
    uint8_t *qs = out + 16;
    memset(sc, 0, 16);
    if (max_scale > 0) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; j++) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
        write_f16(out + 80, max_scale / 15.0f);
    } else {
        write_f16(out + 80, 0.0f);
    }
    if (max_min > 0) {
        const float iscale = 15.0f / max_min;
        for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
        write_f16(out + 82, max_min / 15.0f);
    } else {
        write_f16(out + 82, 0.0f);
    }
    const float d_all = quant_read_f16(out + 80), dmin_all = quant_read_f16(out + 82);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * (float)(sc[j] & 0x0f);
        if (d == 0.0f) continue;
        const float dm = dmin_all * (float)(sc[j] >> 4);
        for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clamp_int(nearest_int((x[16 * j + i] + dm) / d), 0, 3);
    }
    pack_2bit(L, qs);
}

/* Symmetric scale for n values at levels -nmax..nmax-1 with weights x^2,
 * refined by moving single values to a better level (llama.cpp's
 * make_q3_quants with do_rmse). L[i] = level + nmax; an all-(near-)zero
 * group gets L = 0 and scale 0, as in the reference. */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = clamp_int(nearest_int_wrapping(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Q3_K: hmask[32] | qs[64] | scales[12] | d (llama.cpp's
 * quantize_row_q3_K_ref): 16 sub-blocks of 16 at levels -4..3, 6-bit signed
 * scales (stored +32: low nibbles in bytes 0..7, top two bits in 8..11). */
static void quantize_block_q3_k(const float *x, uint8_t *out) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; j++) {
        scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) {
            amax = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    uint8_t *hmask = out, *qs = out + 32, *sc = out + 96;
    memset(sc, 0, 12);
    if (max_scale != 0.0f) {
        const float iscale = -32.0f / max_scale;
        for (int j = 0; j < 16; j++) {
            int l = clamp_int(nearest_int(iscale * scales[j]), -32, 31) + 32;
            if (j < 8) sc[j] = (uint8_t)(l & 0x0f);
            else sc[j - 8] |= (uint8_t)((l & 0x0f) << 4);
            sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        write_f16(out + 108, 1.0f / iscale);
    } else {
        write_f16(out + 108, 0.0f);
    }
    const float d_all = quant_read_f16(out + 108);
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? (sc[j] & 0x0f) : (sc[j - 8] >> 4);
        int s = (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const float d = d_all * (float)s;
        if (d == 0.0f) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clamp_int(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
    }
    memset(hmask, 0, 32);
    uint8_t low[QK_K];
    for (int j = 0; j < QK_K; j++) {
        int level = L[j];
        if (level > 3) {
            hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            level -= 4;
        }
        low[j] = (uint8_t)level;
    }
    pack_2bit(low, qs);
}

/* Q4_K: d | dmin | scales[12] | qs[128]. */
static void quantize_block_q4_k(const float *x, uint8_t *out) {
    uint8_t L[QK_K];
    quantize_k4_scales(x, 15, -1.0f, 0.1f, 20, out, L);
    uint8_t *q = out + 16;
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) q[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

/* Q5_K: d | dmin | scales[12] | qh[32] | qs[128]. */
static void quantize_block_q5_k(const float *x, uint8_t *out) {
    uint8_t L[QK_K];
    quantize_k4_scales(x, 31, -0.5f, 0.1f, 15, out, L);
    uint8_t *qh = out + 16;
    uint8_t *ql = out + 48;
    memset(qh, 0, 32);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
            if (l1 > 15) {
                l1 -= 16;
                qh[l] |= (uint8_t)(1u << (2 * c));
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[l] |= (uint8_t)(1u << (2 * c + 1));
            }
            ql[32 * c + l] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

/* Q6_K: ql[128] | qh[64] | scales[16] (int8) | d. */
static void quantize_block_q6_k(const float *x, uint8_t *out) {
    uint8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = fit_scale_symmetric(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    memset(out, 0, 210);
    if (max_abs_scale < 1e-15f) return; /* all (near) zero: an all-zero block */
    const float iscale = -128.0f / max_scale;
    write_f16(out + 208, 1.0f / iscale);
    int8_t *sc = (int8_t *)(out + 192);
    for (int ib = 0; ib < 16; ib++) {
        int s = nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(s > 127 ? 127 : s);
    }
    const float d_all = quant_read_f16(out + 208);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * (float)sc[j];
        if (d == 0.0f) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)(clamp_int(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
    }
    uint8_t *ql = out, *qh = out + 128;
    for (int h = 0; h < 2; h++) {
        const uint8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
            ql[64 * h + l] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
            ql[64 * h + l + 32] = (uint8_t)((q2 & 0x0f) | ((q4 & 0x0f) << 4));
            qh[32 * h + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

typedef void (*block_encoder)(const float *x, uint8_t *out);

static block_encoder encoder_of(uint32_t type) {
    switch (type) {
    case QT_Q8_0: return quantize_block_q8_0;
    case QT_Q4_0: return quantize_block_q4_0;
    case QT_Q4_1: return quantize_block_q4_1;
    case QT_Q2_K: return quantize_block_q2_k;
    case QT_Q3_K: return quantize_block_q3_k;
    case QT_Q4_K: return quantize_block_q4_k;
    case QT_Q5_K: return quantize_block_q5_k;
    case QT_Q6_K: return quantize_block_q6_k;
    default: return NULL;
    }
}

size_t quant_quantize(uint32_t type, const float *src, void *dst, int64_t n) {
    if (!quant_type_quantizable(type)) return 0;
    const size_t bytes = quant_row_bytes(type, n);
    if (bytes == 0) return 0;
    uint8_t *out = dst;
    switch (type) {
    case QT_F32: memcpy(dst, src, bytes); return bytes;
    case QT_F16:
        for (int64_t i = 0; i < n; i++) write_f16(out + 2 * i, src[i]);
        return bytes;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = quant_f32_to_bf16(src[i]);
            out[2 * i] = (uint8_t)(h & 0xff);
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return bytes;
    default: break;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(src[i])) return 0; /* a block format cannot represent inf/NaN */
    }
    block_encoder encode = encoder_of(type);
    const int64_t block = quant_block_size(type);
    const int64_t size = quant_type_size(type);
    for (int64_t b = 0; b < n / block; b++) encode(src + b * block, out + b * size);
    return bytes;
}
