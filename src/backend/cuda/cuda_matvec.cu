/* cuda_matvec.cu: the bandwidth-bound matrix products of the cuda backend
 * (decode and small batches; docs/cuda.md "Decode kernels").
 *
 * One warp per output row r. The row is walked in steps of 256 values;
 * in each step lane l takes a fragment of 8 values (two runs of 4) laid out
 * so that the 32 lanes read the step's weight bytes and its 256 input
 * values contiguously: coalesced loads of whole cache lines, 16 bytes per
 * lane for the 16-bit float types, 4-byte words for the quantized blocks
 * (Q8_0, Q4_0 and Q6_K blocks are only 2-byte aligned: their words come
 * from aligned loads through funnel shifts). Quants become exact floats
 * without the slow integer-to-float conversion (0x4B000000 | q is the float
 * 2^23 + q: one byte permute and one subtraction give q), and each run of 4
 * values sharing a scale is summed, then scaled once:
 *
 *     sum over the run of (d * q - m) * x  =  d * sum(q * x) - m * sum(x)
 *
 * (d, m exactly as quant.c computes them). This is not bit for bit the
 * dequantize-then-multiply of the simple kernel in cuda_device.cu: the
 * error bound is the same summation bound taken over |d q x| + |m x|
 * (tests/test_cuda.c). Lane sums accumulate step by step in order; the 32
 * lane sums are added by a butterfly.
 *
 * Batch invariance: the arithmetic of output (i, r) depends only on n_in,
 * the type and row i's own inputs, never on how many activation rows the
 * launch has (the NR template only says how many rows share one pass over
 * the weights), so a row decoded alone equals the same row in a prefill
 * batch bit for bit: these kernels serve --deterministic as they are.
 *
 * Epilogues fused into the product (cuda.c fuses the engine's steps where
 * they follow each other): MV_ADD writes y and adds it into a residual
 * (matmul then add), MV_SWIGLU takes two matrices (gate, up) in the same
 * warp and writes up and silu(gate) * up (matmul of two then swiglu), with
 * the same float operations as the separate kernels, so the result is the
 * same bits as the unfused steps. */
#include <stdio.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/gpu_compat.h"

enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30
};

#define MV_WARPS 4 /* warps (output rows) per block */

/* ---- loads and exact small-integer floats ---- */

__device__ __forceinline__ uint4 ld16(const uint8_t *p) { return __ldg((const uint4 *)p); }
__device__ __forceinline__ uint32_t ld4(const uint8_t *p) { return __ldg((const unsigned int *)p); }
__device__ __forceinline__ uint32_t ld2(const uint8_t *p) { return __ldg((const unsigned short *)p); }

__device__ __forceinline__ float half_lo(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w & 0xffff))); }
__device__ __forceinline__ float half_hi(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w >> 16))); }

/* Byte i of w (0..255) as 2^23 + byte: an exact float; subtract 2^23 + bias. */
#define MAGIC 8388608.0f
__device__ __forceinline__ float byte_f(uint32_t w, int i, float bias) {
    return __fsub_rn(__uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | (unsigned)i)), MAGIC + bias);
}

/* ---- fragment decoders ----
 *
 * A warp step covers 256 consecutive values of the row (one K-quant
 * superblock, eight 32-value blocks, or 256 plain values). Lane l takes
 * one fragment of 8 of them: two runs of 4 consecutive values ("quads"),
 * so that the lanes of a warp read the weight bytes of the step and the
 * input values of the step contiguously (coalesced: whole 128-byte lines
 * per load instruction, for the weights and for x).
 *
 * Each type splits the fragment's work in two, so that the kernel can issue
 * the loads of PIPE steps before it uses any of them (a loop that loads
 * and then computes waits one memory latency per step; PIPE is larger for
 * the types with fewer bytes per step, within the registers):
 *   load(row, s, lane, raw): the fragment's bytes (aligned loads only);
 *   decode(raw, s, lane, q, sc, mn, xo): its 8 values as exact floats q
 *     (quants, or the plain values), the quads' scales sc[2] and (if MIN)
 *     mins mn[2], and the index in the input row of each quad's first value
 *     xo[2]; element j of quad h is sc[h] * q[4h + j] - mn[h].
 * first(s, lane): the first value the fragment touches, to skip fragments
 * past the end of a row whose length is not a multiple of 256. */

template <int TYPE> struct mv;

/* Words at a 2-byte aligned address p: the aligned words covering them and
 * the shift that extracts them (funnel shift of neighbours). */
template <int NW> struct words2 {
    uint32_t w[NW + 1];
    unsigned sh;
};
template <int NW>
__device__ __forceinline__ void load_words2(const uint8_t *p, words2<NW> *r) {
    const uint8_t *a = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)3);
    r->sh = (unsigned)((uintptr_t)p & 3) * 8u;
#pragma unroll
    for (int i = 0; i <= NW; i++) r->w[i] = ld4(a + 4 * i);
}
template <int NW>
__device__ __forceinline__ uint32_t word2(const words2<NW> &r, int i) {
    return __funnelshift_r(r.w[i], r.w[i + 1], r.sh);
}

/* Plain values: lane l takes values 256 s + 8 l .. + 7. */
__device__ __forceinline__ void plain_xo(int64_t s, int lane, int64_t *xo) {
    xo[0] = 256 * s + 8 * lane, xo[1] = 256 * s + 8 * lane + 4;
}

template <> struct mv<T_F32> {
    enum { MIN = 0, PIPE = 4 };
    struct raw { uint4 a, b; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s + 8 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *p = row + 4 * first(s, lane);
        r->a = ld16(p), r->b = ld16(p + 16);
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        q[0] = __uint_as_float(r.a.x), q[1] = __uint_as_float(r.a.y), q[2] = __uint_as_float(r.a.z), q[3] = __uint_as_float(r.a.w);
        q[4] = __uint_as_float(r.b.x), q[5] = __uint_as_float(r.b.y), q[6] = __uint_as_float(r.b.z), q[7] = __uint_as_float(r.b.w);
        sc[0] = sc[1] = 1.0f;
        plain_xo(s, lane, xo);
    }
};

template <> struct mv<T_F16> {
    enum { MIN = 0, PIPE = 4 };
    struct raw { uint4 a; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s + 8 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        r->a = ld16(row + 2 * first(s, lane));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        const uint32_t w[4] = {r.a.x, r.a.y, r.a.z, r.a.w};
#pragma unroll
        for (int k = 0; k < 4; k++) q[2 * k] = half_lo(w[k]), q[2 * k + 1] = half_hi(w[k]);
        sc[0] = sc[1] = 1.0f;
        plain_xo(s, lane, xo);
    }
};

template <> struct mv<T_BF16> {
    enum { MIN = 0, PIPE = 4 };
    struct raw { uint4 a; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s + 8 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        r->a = ld16(row + 2 * first(s, lane));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        const uint32_t w[4] = {r.a.x, r.a.y, r.a.z, r.a.w};
#pragma unroll
        for (int k = 0; k < 4; k++) q[2 * k] = __uint_as_float(w[k] << 16), q[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        sc[0] = sc[1] = 1.0f;
        plain_xo(s, lane, xo);
    }
};

/* 32-value blocks: lane l takes block 8 s + l / 4, part p = l % 4. */
__device__ __forceinline__ int64_t block_first(int64_t s, int lane) { return 256 * s + 32 * (lane / 4); }

/* Q8_0 (34 bytes: d, qs[32]): values 8p .. 8p + 7 of the block. */
template <> struct mv<T_Q8_0> {
    enum { MIN = 0, PIPE = 4 };
    struct raw { words2<2> qs; uint32_t d; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return block_first(s, lane); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *blk = row + 34 * (8 * s + lane / 4);
        load_words2<2>(blk + 2 + 8 * (lane % 4), &r->qs);
        r->d = ld2(blk);
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        const int64_t b = 8 * s + lane / 4;
        const int p = lane % 4;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const uint32_t u = word2(r.qs, k) ^ 0x80808080u; /* int8 + 128 */
#pragma unroll
            for (int t = 0; t < 4; t++) q[4 * k + t] = byte_f(u, t, 128.0f);
        }
        sc[0] = sc[1] = __half2float(__ushort_as_half((unsigned short)r.d));
        xo[0] = 32 * b + 8 * p, xo[1] = 32 * b + 8 * p + 4;
    }
};

/* Q4_0 (18 bytes: d, qs[16]; value j low nibble of qs[j], j + 16 high,
 * minus 8): bytes 4p .. 4p + 3, values 4p .. and 16 + 4p ... */
template <> struct mv<T_Q4_0> {
    enum { MIN = 0, PIPE = 8 };
    struct raw { words2<1> qs; uint32_t d; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return block_first(s, lane); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *blk = row + 18 * (8 * s + lane / 4);
        load_words2<1>(blk + 2 + 4 * (lane % 4), &r->qs);
        r->d = ld2(blk);
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        const int64_t b = 8 * s + lane / 4;
        const int p = lane % 4;
        const uint32_t w = word2(r.qs, 0);
#pragma unroll
        for (int t = 0; t < 4; t++) {
            q[t] = byte_f(w & 0x0f0f0f0fu, t, 8.0f);
            q[4 + t] = byte_f((w >> 4) & 0x0f0f0f0fu, t, 8.0f);
        }
        sc[0] = sc[1] = __half2float(__ushort_as_half((unsigned short)r.d));
        xo[0] = 32 * b + 4 * p, xo[1] = 32 * b + 16 + 4 * p;
    }
};

/* Q4_1 (20 bytes: d, m, qs[16]; y = d q + m). */
template <> struct mv<T_Q4_1> {
    enum { MIN = 1, PIPE = 8 };
    struct raw { uint32_t dm, w; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return block_first(s, lane); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *blk = row + 20 * (8 * s + lane / 4);
        r->dm = ld4(blk), r->w = ld4(blk + 4 + 4 * (lane % 4));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        const int64_t b = 8 * s + lane / 4;
        const int p = lane % 4;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            q[t] = byte_f(r.w & 0x0f0f0f0fu, t, 0.0f);
            q[4 + t] = byte_f((r.w >> 4) & 0x0f0f0f0fu, t, 0.0f);
        }
        sc[0] = sc[1] = half_lo(r.dm);
        mn[0] = mn[1] = -half_hi(r.dm);
        xo[0] = 32 * b + 4 * p, xo[1] = 32 * b + 16 + 4 * p;
    }
};

/* Byte j (0..11) of the K-quant scale words s[3]. */
__device__ __forceinline__ int scale_byte(const uint32_t *s, int j) {
    const uint32_t w = j < 4 ? s[0] : (j < 8 ? s[1] : s[2]);
    return (int)((w >> (8 * (j & 3))) & 0xffu);
}

/* Q4_K/Q5_K 6-bit scale and min of sub-block j (quant.c's get_scale_min_k4),
 * without branches (j differs across the lanes of a warp). */
__device__ __forceinline__ void scale_min_k4(int j, const uint32_t *s, int *sc, int *m) {
    const int b_j = scale_byte(s, j), b_j4 = scale_byte(s, j + 4), b_jm4 = scale_byte(s, j >= 4 ? j - 4 : j);
    *sc = j < 4 ? (b_j & 63) : ((b_j4 & 0x0f) | ((b_jm4 >> 6) << 4));
    *m = j < 4 ? (b_j4 & 63) : ((b_j4 >> 4) | ((b_j >> 6) << 4));
}

/* The scales and mins of sub-blocks 2k and 2k + 1 from a K-quant header
 * (d, dmin, scales[12]) as quant.c computes them: d * sc, dmin * m. */
__device__ __forceinline__ void k4_pair(uint4 h, int k, float *sc, float *mn) {
    const uint32_t s[3] = {h.y, h.z, h.w};
    const float d = half_lo(h.x), dmin = half_hi(h.x);
#pragma unroll
    for (int u = 0; u < 2; u++) {
        int s6, m6;
        scale_min_k4(2 * k + u, s, &s6, &m6);
        sc[u] = __fmul_rn(d, (float)s6);
        mn[u] = __fmul_rn(dmin, (float)m6);
    }
}

/* Q4_K (144 bytes: d, dmin, scales[12], qs[128]): lane l takes qs bytes
 * 32k + 4t .. + 3 (k = l / 8, t = l % 8): low nibbles are values
 * 64k + 4t .. of sub-block 2k, high nibbles 64k + 32 + 4t .. of 2k + 1. */
template <> struct mv<T_Q4_K> {
    enum { MIN = 1, PIPE = 8 };
    struct raw { uint4 h; uint32_t w; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 144 * s;
        r->h = ld16(b);
        r->w = ld4(b + 16 + 32 * (lane / 8) + 4 * (lane % 8));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        const int k = lane / 8, t = lane % 8;
        k4_pair(r.h, k, sc, mn);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            q[j] = byte_f(r.w & 0x0f0f0f0fu, j, 0.0f);
            q[4 + j] = byte_f((r.w >> 4) & 0x0f0f0f0fu, j, 0.0f);
        }
        xo[0] = 256 * s + 64 * k + 4 * t, xo[1] = 256 * s + 64 * k + 32 + 4 * t;
    }
};

/* Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]): as Q4_K, with
 * bit 2k (2k + 1) of qh[4t + j] the fifth bit of the low (high) nibble's value. */
template <> struct mv<T_Q5_K> {
    enum { MIN = 1, PIPE = 8 };
    struct raw { uint4 h; uint32_t hb, w; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 176 * s;
        r->h = ld16(b);
        r->hb = ld4(b + 16 + 4 * (lane % 8));
        r->w = ld4(b + 48 + 32 * (lane / 8) + 4 * (lane % 8));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        const int k = lane / 8, t = lane % 8;
        k4_pair(r.h, k, sc, mn);
        const uint32_t lo = (r.w & 0x0f0f0f0fu) | (((r.hb >> (2 * k)) & 0x01010101u) << 4);
        const uint32_t hi = ((r.w >> 4) & 0x0f0f0f0fu) | (((r.hb >> (2 * k + 1)) & 0x01010101u) << 4);
#pragma unroll
        for (int j = 0; j < 4; j++) q[j] = byte_f(lo, j, 0.0f), q[4 + j] = byte_f(hi, j, 0.0f);
        xo[0] = 256 * s + 64 * k + 4 * t, xo[1] = 256 * s + 64 * k + 32 + 4 * t;
    }
};

/* Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d; 2-byte aligned):
 * lane l: half h = l / 16, sl = (l / 8) % 2, t = l % 8: ql bytes
 * 64h + 32 sl + 4t .. + 3 and qh bytes 32h + 4t .. + 3; the low nibbles
 * are values 32 sl + 4t .. of unit 4h + sl (qh bits 2 sl), the high ones
 * values of unit 4h + sl + 2 (qh bits 2 sl + 4); minus 32; scale d * sc[8h
 * + 2u + t / 4] of unit u. */
template <> struct mv<T_Q6_K> {
    enum { MIN = 0, PIPE = 4 };
    struct raw { words2<1> ql, qh; uint32_t d, s_lo, s_hi; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 256 * s; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 210 * s;
        const int h = lane / 16, sl = (lane / 8) % 2, t = lane % 8;
        load_words2<1>(b + 64 * h + 32 * sl + 4 * t, &r->ql);
        load_words2<1>(b + 128 + 32 * h + 4 * t, &r->qh);
        r->d = ld2(b + 208);
        const int i_lo = 192 + 8 * h + 2 * sl + t / 4;
        r->s_lo = ld2(b + (i_lo & ~1));
        r->s_hi = ld2(b + ((i_lo + 4) & ~1));
    }
    static __device__ __forceinline__ void decode(const raw &r, int64_t s, int lane, float *q, float *sc, float *mn,
                                                  int64_t *xo) {
        (void)mn;
        const int h = lane / 16, sl = (lane / 8) % 2, t = lane % 8;
        const float d = __half2float(__ushort_as_half((unsigned short)r.d));
        const int odd = (t / 4) & 1; /* i_lo and i_lo + 4 have the same parity */
        sc[0] = __fmul_rn(d, (float)(int8_t)((r.s_lo >> (8 * odd)) & 0xff));
        sc[1] = __fmul_rn(d, (float)(int8_t)((r.s_hi >> (8 * odd)) & 0xff));
        const uint32_t ql = word2(r.ql, 0), qh = word2(r.qh, 0);
        const unsigned sh = 2u * (unsigned)sl;
        const uint32_t lo = (ql & 0x0f0f0f0fu) | (((qh >> sh) & 0x03030303u) << 4);
        const uint32_t hi = ((ql >> 4) & 0x0f0f0f0fu) | (((qh >> (sh + 4u)) & 0x03030303u) << 4);
#pragma unroll
        for (int j = 0; j < 4; j++) q[j] = byte_f(lo, j, 32.0f), q[4 + j] = byte_f(hi, j, 32.0f);
        xo[0] = 256 * s + 128 * h + 32 * sl + 4 * t, xo[1] = 256 * s + 128 * h + 32 * (sl + 2) + 4 * t;
    }
};

/* ---- the kernel ---- */

/* Fragment (q, sc, mn, xo) dotted with input row x, added to acc: per quad,
 * sum q * x in order (and sum x for the mins), then the scale. */
template <int TYPE>
__device__ __forceinline__ float frag_dot(const float *q, const float *sc, const float *mn, const int64_t *xo,
                                          const float *x, float acc) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const float4 xv = act_f4(x + xo[h]);
        float s = __fmul_rn(q[4 * h], xv.x);
        s = fmaf(q[4 * h + 1], xv.y, s);
        s = fmaf(q[4 * h + 2], xv.z, s);
        s = fmaf(q[4 * h + 3], xv.w, s);
        acc = fmaf(sc[h], s, acc);
        if (mv<TYPE>::MIN) {
            const float sx = __fadd_rn(__fadd_rn(__fadd_rn(xv.x, xv.y), xv.z), xv.w);
            acc = fmaf(-mn[h], sx, acc);
        }
    }
    return acc;
}

/* Step s's fragment dotted with the NR activation rows (nr used). */
template <int TYPE, int NR>
__device__ __forceinline__ void step_dots(const typename mv<TYPE>::raw &r, int64_t s, int lane, const float *x0,
                                          int64_t xs, int nr, float *acc) {
    float q[8], sc[2], mn[2];
    int64_t xo[2];
    mv<TYPE>::decode(r, s, lane, q, sc, mn, xo);
#pragma unroll
    for (int k = 0; k < NR; k++)
        if (NR == 1 || k < nr) acc[k] = frag_dot<TYPE>(q, sc, mn, xo, x0 + (int64_t)k * xs, acc[k]);
}

/* The dot products of NM weight rows wr[] with NR activation rows (nr
 * used): lane's share, steps in order (PIPE steps of every row loaded at a
 * time, so that gate and up share one wait), then the butterfly; every
 * lane ends with the sums. Each sum's order is the same whatever NM. */
template <int TYPE, int NR, int NM>
__device__ __forceinline__ void row_dots(const uint8_t *const *wr, int64_t n_in, const float *x0, int64_t xs, int nr,
                                         int lane, float (*acc)[NR]) {
    typedef mv<TYPE> M;
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
        for (int k = 0; k < NR; k++) acc[m][k] = 0.0f;
    const int64_t n_full = n_in / 256;
    bool waited = false; /* the first weight loads go out before gpu_grid_wait() (gpu_compat.h) */
    int64_t s = 0;
    for (; s + M::PIPE <= n_full; s += M::PIPE) {
        typename M::raw r[NM][M::PIPE];
#pragma unroll
        for (int m = 0; m < NM; m++)
#pragma unroll
            for (int u = 0; u < M::PIPE; u++) M::load(wr[m], s + u, lane, &r[m][u]);
        if (!waited) {
            gpu_grid_wait();
            waited = true;
        }
#pragma unroll
        for (int m = 0; m < NM; m++)
#pragma unroll
            for (int u = 0; u < M::PIPE; u++) step_dots<TYPE, NR>(r[m][u], s + u, lane, x0, xs, nr, acc[m]);
    }
    for (; s < n_full; s++) {
        typename M::raw r[NM];
#pragma unroll
        for (int m = 0; m < NM; m++) M::load(wr[m], s, lane, &r[m]);
        if (!waited) {
            gpu_grid_wait();
            waited = true;
        }
#pragma unroll
        for (int m = 0; m < NM; m++) step_dots<TYPE, NR>(r[m], s, lane, x0, xs, nr, acc[m]);
    }
    if (M::first(n_full, lane) < n_in) { /* a short last step: the lanes whose part lies inside the row */
        typename M::raw r[NM];
#pragma unroll
        for (int m = 0; m < NM; m++) M::load(wr[m], n_full, lane, &r[m]);
        if (!waited) {
            gpu_grid_wait();
            waited = true;
        }
#pragma unroll
        for (int m = 0; m < NM; m++) step_dots<TYPE, NR>(r[m], n_full, lane, x0, xs, nr, acc[m]);
    }
    if (!waited) gpu_grid_wait();
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
        for (int k = 0; k < NR; k++) {
            float v = acc[m][k];
#pragma unroll
            for (int off = GPU_WARP / 2; off > 0; off >>= 1) v += GPU_SHFL_XOR(v, off);
            acc[m][k] = v;
        }
}

/* Plain and MV_ADD: warp r of the launch is row r - first[m] of matrix m. */
template <int TYPE, int NR, int EPI>
__global__ void __launch_bounds__(MV_WARPS * GPU_WARP) mv_kernel(gpu_mv_args a) {
    gpu_grid_release();
    const int lane = threadIdx.x % GPU_WARP;
    int64_t r = (int64_t)blockIdx.x * MV_WARPS + threadIdx.x / GPU_WARP;
    int m = 0;
    while (m < a.count && r >= a.n_out[m]) r -= a.n_out[m++];
    if (m >= a.count) return; /* the whole warp leaves together */
    const int i0 = blockIdx.y * NR;
    const int nr = a.n - i0 < NR ? a.n - i0 : NR;
    float acc[1][NR];
    const uint8_t *wr[1] = {(const uint8_t *)a.w[m] + (size_t)r * a.row_bytes[m]};
    row_dots<TYPE, NR, 1>(wr, a.n_in, a.x + (int64_t)i0 * a.xs, a.xs, nr, lane, acc);
    if (lane != 0) return;
#pragma unroll
    for (int k = 0; k < NR; k++) {
        if (k >= nr) break;
        a.y[m][(int64_t)(i0 + k) * a.ys[m] + r] = acc[0][k];
        if (EPI == MV_ADD) {
            float *res = a.res + (int64_t)(i0 + k) * a.res_s + r;
            *res = *res + acc[0][k];
        }
    }
}

/* MV_SWIGLU: warp r computes row r of gate (matrix 0) and of up (matrix 1),
 * loading both rows' steps together. */
template <int TYPE, int NR>
__global__ void __launch_bounds__(MV_WARPS * GPU_WARP) mv_swiglu_kernel(gpu_mv_args a) {
    gpu_grid_release();
    const int lane = threadIdx.x % GPU_WARP;
    const int64_t r = (int64_t)blockIdx.x * MV_WARPS + threadIdx.x / GPU_WARP;
    if (r >= a.n_out[0]) return;
    const int i0 = blockIdx.y * NR;
    const int nr = a.n - i0 < NR ? a.n - i0 : NR;
    const float *x0 = a.x + (int64_t)i0 * a.xs;
    float gu[2][NR]; /* gate, up */
    const uint8_t *wr[2] = {(const uint8_t *)a.w[0] + (size_t)r * a.row_bytes[0],
                            (const uint8_t *)a.w[1] + (size_t)r * a.row_bytes[1]};
    row_dots<TYPE, NR, 2>(wr, a.n_in, x0, a.xs, nr, lane, gu);
    if (lane != 0) return;
#pragma unroll
    for (int k = 0; k < NR; k++) {
        if (k >= nr) break;
        a.y[1][(int64_t)(i0 + k) * a.ys[1] + r] = gu[1][k];
        const float v = gu[0][k];
        a.y[0][(int64_t)(i0 + k) * a.ys[0] + r] = v / (1.0f + expf(-v)) * gu[1][k];
    }
}

/* ---- launch ---- */

extern "C" int gpu_matvec_supported(uint32_t type, int64_t n_in) {
    switch (type) {
    case T_F32: case T_F16: case T_BF16: case T_Q8_0: case T_Q4_0: case T_Q4_1: return n_in % 32 == 0;
    case T_Q4_K: case T_Q5_K: case T_Q6_K: return n_in % 256 == 0;
    default: return 0;
    }
}

dim3 matvec_grid(const gpu_mv_args *a, int epi, int warps, int nr) {
    int64_t rows = 0;
    if (epi == MV_SWIGLU) rows = a->n_out[0];
    else
        for (int m = 0; m < a->count; m++) rows += a->n_out[m];
    return dim3((unsigned)((rows + warps - 1) / warps), (unsigned)((a->n + nr - 1) / nr));
}

template <int TYPE, int NR>
static gpuError_t launch_nr(const gpu_stream *s, const gpu_mv_args *a, int epi) {
    const dim3 grid = matvec_grid(a, epi, MV_WARPS, NR), block(MV_WARPS * GPU_WARP);
    if (epi == MV_SWIGLU) return gpu_launch(s->pdl, mv_swiglu_kernel<TYPE, NR>, grid, block, s->stream, *a);
    if (epi == MV_ADD) return gpu_launch(s->pdl, mv_kernel<TYPE, NR, MV_ADD>, grid, block, s->stream, *a);
    return gpu_launch(s->pdl, mv_kernel<TYPE, NR, MV_PLAIN>, grid, block, s->stream, *a);
}

/* One activation row: NR = 1 (decode); more: NR = 8 rows per pass. Both
 * give the same bits per row (see the top of the file). */
template <int TYPE>
static gpuError_t launch_type(const gpu_stream *s, const gpu_mv_args *a, int epi) {
    if (a->n == 1) return launch_nr<TYPE, 1>(s, a, epi);
    return launch_nr<TYPE, 8>(s, a, epi);
}

int matvec_launch(const gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size) {
    if (a->n <= 0) return 0;
    if (a->xq) return matvec_q8_launch(s, type, a, epi, err, err_size);
    gpuError_t e;
    switch (type) {
    case T_F32: e = launch_type<T_F32>(s, a, epi); break;
    case T_F16: e = launch_type<T_F16>(s, a, epi); break;
    case T_BF16: e = launch_type<T_BF16>(s, a, epi); break;
    case T_Q8_0: e = launch_type<T_Q8_0>(s, a, epi); break;
    case T_Q4_0: e = launch_type<T_Q4_0>(s, a, epi); break;
    case T_Q4_1: e = launch_type<T_Q4_1>(s, a, epi); break;
    case T_Q4_K: e = launch_type<T_Q4_K>(s, a, epi); break;
    case T_Q5_K: e = launch_type<T_Q5_K>(s, a, epi); break;
    case T_Q6_K: e = launch_type<T_Q6_K>(s, a, epi); break;
    default: snprintf(err, err_size, "cuda: no matrix-vector kernel for type %u", (unsigned)type); return -1;
    }
    if (e != gpuSuccess) {
        snprintf(err, err_size, "cuda: matvec: %s", gpuGetErrorString(e));
        return -1;
    }
    return 0;
}
