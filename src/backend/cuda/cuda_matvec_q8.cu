/* cuda_matvec_q8.cu: the matrix-vector products of quantized weights
 * against 8-bit activations, with integer dot products (dp4a)
 * (docs/cuda.md "Decode: 8-bit activations").
 *
 * The input rows are quantized once per matrix product (gpu_quantize_q8,
 * shared by the matrices that read the same input) into blocks of 32
 * values: q = x / d rounded to nearest even (int8), d = max|x| / 127, and
 * s = d * sum(q) for the types with a minimum. A weight block's quants
 * then meet the activation bytes four at a time in __dp4a (exact int32
 * sums), and the float scales are applied once per 32 values (16 for
 * Q6_K and the half blocks of Q8_0):
 *
 *     sum over a block of (dw q_w - m) * dx q_x = (dw dx) * sumi - m * s
 *
 * Layout: one warp per output row, as cuda_matvec.cu; each lane takes a
 * run of whole 16-byte pieces of the weight blocks (Q4_K, Q5_K: 32 qs
 * bytes, two sub-blocks of 32 values; Q6_K: 16 ql and 16 qh bytes; Q8_0:
 * half a block; Q4_0, Q4_1: a block), the lanes of a warp covering a
 * contiguous span of the row (a "step"), so every load instruction reads
 * whole cache lines; the loads of PIPE steps are issued before any is used.
 *
 * Order (batch invariance, --deterministic): each lane adds its pieces'
 * terms into one float in step order, in a fixed order inside a piece; the
 * 32 lanes are added by a butterfly. Nothing depends on how many
 * activation rows the launch has, so a row alone equals the same row in a
 * batch bit for bit, and reruns repeat bit for bit (no atomics).
 *
 * Epilogues as cuda_matvec.cu (MV_PLAIN, MV_ADD, MV_SWIGLU), with the same
 * float operations. */
#include <stdio.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/cuda_q8_block.h"
#include "backend/cuda/gpu_compat.h"

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };

#define MVQ_WARPS 4 /* warps (output rows) per block */

__device__ __forceinline__ uint4 ldq16(const void *p) { return __ldg((const uint4 *)p); }
__device__ __forceinline__ uint32_t ldq4(const uint8_t *p) { return __ldg((const unsigned int *)p); }
__device__ __forceinline__ uint32_t ldq2(const uint8_t *p) { return __ldg((const unsigned short *)p); }
__device__ __forceinline__ float f16_lo(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w & 0xffff))); }
__device__ __forceinline__ float f16_hi(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w >> 16))); }

/* NW words at the 2-byte aligned address p: from NW + 1 aligned words. */
template <int NW> struct qwords {
    uint32_t w[NW + 1];
    unsigned sh;
};
template <int NW>
__device__ __forceinline__ void load_qwords(const uint8_t *p, qwords<NW> *r) {
    const uint8_t *a = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)3);
    r->sh = (unsigned)((uintptr_t)p & 3) * 8u;
#pragma unroll
    for (int i = 0; i <= NW; i++) r->w[i] = ldq4(a + 4 * i);
}
template <int NW>
__device__ __forceinline__ uint32_t qword(const qwords<NW> &r, int i) {
    return __funnelshift_r(r.w[i], r.w[i + 1], r.sh);
}

__device__ __forceinline__ uint32_t word_of(uint4 v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

/* sum of 16 products: weight bytes w[0..3] against activation bytes x. */
__device__ __forceinline__ int dot16(const uint32_t *w, uint4 x) {
    int s = __dp4a((int)w[0], (int)x.x, 0);
    s = __dp4a((int)w[1], (int)x.y, s);
    s = __dp4a((int)w[2], (int)x.z, s);
    return __dp4a((int)w[3], (int)x.w, s);
}

/* The quantized input: xq [n][xqs] int8 and xds [n][xqs / 32] float2
 * (d, s) of its 32-value blocks. */
struct q8_in {
    const int8_t *q;
    const float2 *ds;
};

/* ---- per type: a lane's piece of a step ----
 *   STEP: values of the row per warp step; PIPE: steps loaded ahead;
 *   first(s, lane): the first value of the lane's piece (a piece past the
 *   row's end is skipped); load: the weight bytes; dot: the piece's terms
 *   added to acc in a fixed order. */
template <int TYPE> struct mq;

/* Q4_K / Q5_K scales and mins of sub-blocks 2k and 2k + 1 (quant.c's
 * get_scale_min_k4, k the same for all pieces of a lane). */
__device__ __forceinline__ void k4_scales(uint4 h, int k, float *dsc, float *dmn) {
    const uint32_t s[3] = {h.y, h.z, h.w};
    const float d = f16_lo(h.x), dmin = f16_hi(h.x);
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const int j = 2 * k + u;
        int sc, m;
        /* byte b of the 12 scale bytes */
        const int bj = (int)((s[j / 4] >> (8 * (j % 4))) & 0xff);
        const int bj4 = (int)((s[(j + 4) / 4] >> (8 * ((j + 4) % 4))) & 0xff);
        const int jm4 = j >= 4 ? j - 4 : j;
        const int bjm4 = (int)((s[jm4 / 4] >> (8 * (jm4 % 4))) & 0xff);
        if (j < 4) sc = bj & 63, m = bj4 & 63;
        else sc = (bj4 & 0x0f) | ((bjm4 >> 6) << 4), m = (bj4 >> 4) | ((bj >> 6) << 4);
        dsc[u] = __fmul_rn(d, (float)sc);
        dmn[u] = __fmul_rn(dmin, (float)m);
    }
}

/* The K-quant pair piece (Q4_K, Q5_K): 64 values, 32 of sub-block 2k (lo)
 * and 32 of 2k + 1 (hi), at x offset o (a multiple of 64). */
__device__ __forceinline__ float k_pair_dot(const uint32_t *lo, const uint32_t *hi, const float *dsc, const float *dmn,
                                            const int8_t *xq, const float2 *xds, int64_t o, float acc) {
    const uint4 *xv = (const uint4 *)(xq + o);
    const uint4 x0 = act16(xv), x1 = act16(xv + 1), x2 = act16(xv + 2), x3 = act16(xv + 3);
    const float4 ds = act_f4(xds + o / 32); /* d, s of the two 32-value blocks */
    const int si_lo = dot16(lo + 4, x1) + dot16(lo, x0);
    const int si_hi = dot16(hi + 4, x3) + dot16(hi, x2);
    acc = fmaf(__fmul_rn(dsc[0], ds.x), (float)si_lo, acc);
    acc = fmaf(-dmn[0], ds.y, acc);
    acc = fmaf(__fmul_rn(dsc[1], ds.z), (float)si_hi, acc);
    acc = fmaf(-dmn[1], ds.w, acc);
    return acc;
}

/* Q4_K (144 bytes: d, dmin, scales[12], qs[128]): lane l takes superblock
 * 8 s + l / 4, qs bytes 32k .. 32k + 31 (k = l % 4): low nibbles are
 * values 64k .. + 31 (sub-block 2k), high nibbles 64k + 32 .. (2k + 1). */
template <> struct mq<T_Q4_K> {
    enum { STEP = 2048, PIPE = 2 };
    struct raw { uint4 h, a, b; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 2048 * s + 256 * (lane / 4); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 144 * (8 * s + lane / 4);
        r->h = ldq16(b);
        r->a = ldq16(b + 16 + 32 * (lane % 4));
        r->b = ldq16(b + 32 + 32 * (lane % 4));
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int k = lane % 4;
        float dsc[2], dmn[2];
        k4_scales(r.h, k, dsc, dmn);
        uint32_t lo[8], hi[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            lo[i] = word_of(r.a, i) & 0x0f0f0f0fu, hi[i] = (word_of(r.a, i) >> 4) & 0x0f0f0f0fu;
            lo[4 + i] = word_of(r.b, i) & 0x0f0f0f0fu, hi[4 + i] = (word_of(r.b, i) >> 4) & 0x0f0f0f0fu;
        }
        return k_pair_dot(lo, hi, dsc, dmn, x.q, x.ds, first(s, lane) + 64 * k, acc);
    }
};

/* Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]): as Q4_K; bit 2k
 * (2k + 1) of qh[j] is the fifth bit of value 64k + j (64k + 32 + j). */
template <> struct mq<T_Q5_K> {
    enum { STEP = 2048, PIPE = 2 };
    struct raw { uint4 h, a, b, ha, hb; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 2048 * s + 256 * (lane / 4); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 176 * (8 * s + lane / 4);
        r->h = ldq16(b);
        r->ha = ldq16(b + 16), r->hb = ldq16(b + 32);
        r->a = ldq16(b + 48 + 32 * (lane % 4));
        r->b = ldq16(b + 64 + 32 * (lane % 4));
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int k = lane % 4;
        float dsc[2], dmn[2];
        k4_scales(r.h, k, dsc, dmn);
        uint32_t lo[8], hi[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t qa = word_of(r.a, i), qb = word_of(r.b, i);
            const uint32_t ha = word_of(r.ha, i) >> (2 * k), hb = word_of(r.hb, i) >> (2 * k);
            lo[i] = (qa & 0x0f0f0f0fu) | ((ha & 0x01010101u) << 4);
            hi[i] = ((qa >> 4) & 0x0f0f0f0fu) | (((ha >> 1) & 0x01010101u) << 4);
            lo[4 + i] = (qb & 0x0f0f0f0fu) | ((hb & 0x01010101u) << 4);
            hi[4 + i] = ((qb >> 4) & 0x0f0f0f0fu) | (((hb >> 1) & 0x01010101u) << 4);
        }
        return k_pair_dot(lo, hi, dsc, dmn, x.q, x.ds, first(s, lane) + 64 * k, acc);
    }
};

/* Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d; 2-byte aligned):
 * lane l takes superblock 4 s + l / 8; t = l % 8, half h = t / 4, part
 * p = t % 4: ql bytes 64h + 16p .. + 15 and qh bytes 32h + 16 (p % 2) ..;
 * with L = 16 (p % 2) + i, ql byte i's low nibble is value 128h + 32 (p / 2)
 * + L (qh bits 2 (p / 2)), its high nibble value 128h + 64 + 32 (p / 2) + L
 * (qh bits 4 + 2 (p / 2)); scales sc[8h + p] and sc[8h + p + 4]; minus 32. */
template <> struct mq<T_Q6_K> {
    enum { STEP = 1024, PIPE = 4 };
    struct raw { qwords<4> ql, qh; uint32_t d, s_lo, s_hi; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 1024 * s + 256 * (lane / 8); }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 210 * (4 * s + lane / 8);
        const int t = lane % 8, h = t / 4, p = t % 4;
        load_qwords<4>(b + 64 * h + 16 * p, &r->ql);
        load_qwords<4>(b + 128 + 32 * h + 16 * (p % 2), &r->qh);
        r->d = ldq2(b + 208);
        const int i_lo = 192 + 8 * h + p; /* i_lo and i_lo + 4 have the same parity */
        r->s_lo = ldq2(b + (i_lo & ~1));
        r->s_hi = ldq2(b + ((i_lo + 4) & ~1));
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int t = lane % 8, h = t / 4, p = t % 4;
        const unsigned sh = 2u * (unsigned)(p / 2), odd = 8u * (unsigned)(p & 1);
        const float d = f16_lo(r.d);
        const float dsc_lo = __fmul_rn(d, (float)(int8_t)((r.s_lo >> odd) & 0xff));
        const float dsc_hi = __fmul_rn(d, (float)(int8_t)((r.s_hi >> odd) & 0xff));
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t ql = qword(r.ql, i), qh = qword(r.qh, i);
            lo[i] = __vsub4((ql & 0x0f0f0f0fu) | (((qh >> sh) & 0x03030303u) << 4), 0x20202020u);
            hi[i] = __vsub4(((ql >> 4) & 0x0f0f0f0fu) | (((qh >> (sh + 4u)) & 0x03030303u) << 4), 0x20202020u);
        }
        const int64_t o = first(s, lane) + 128 * h + 32 * (p / 2) + 16 * (p % 2);
        const uint4 xl = act16(x.q + o), xh = act16(x.q + o + 64);
        const float dx_lo = act_f(&x.ds[o / 32].x), dx_hi = act_f(&x.ds[o / 32 + 2].x);
        acc = fmaf(__fmul_rn(dsc_lo, dx_lo), (float)dot16(lo, xl), acc);
        acc = fmaf(__fmul_rn(dsc_hi, dx_hi), (float)dot16(hi, xh), acc);
        return acc;
    }
};

/* Q8_0 (34 bytes: d, qs[32]; 2-byte aligned): lane l takes block
 * 16 s + l / 2, half p = l % 2: values 16p .. 16p + 15. */
template <> struct mq<T_Q8_0> {
    enum { STEP = 512, PIPE = 4 };
    struct raw { qwords<4> qs; uint32_t d; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 512 * s + 16 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 34 * (16 * s + lane / 2);
        load_qwords<4>(b + 2 + 16 * (lane % 2), &r->qs);
        r->d = ldq2(b);
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int64_t o = first(s, lane);
        uint32_t w[4];
#pragma unroll
        for (int i = 0; i < 4; i++) w[i] = qword(r.qs, i);
        const uint4 xv = act16(x.q + o);
        const float dx = act_f(&x.ds[o / 32].x);
        return fmaf(__fmul_rn(f16_lo(r.d), dx), (float)dot16(w, xv), acc);
    }
};

/* Q4_0 (18 bytes: d, qs[16]; value j the low nibble of qs[j], j + 16 the
 * high one, minus 8; 2-byte aligned): lane l takes block 32 s + l. */
template <> struct mq<T_Q4_0> {
    enum { STEP = 1024, PIPE = 4 };
    struct raw { qwords<4> qs; uint32_t d; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 1024 * s + 32 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 18 * (32 * s + lane);
        load_qwords<4>(b + 2, &r->qs);
        r->d = ldq2(b);
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int64_t o = first(s, lane);
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t q = qword(r.qs, i);
            lo[i] = __vsub4(q & 0x0f0f0f0fu, 0x08080808u), hi[i] = __vsub4((q >> 4) & 0x0f0f0f0fu, 0x08080808u);
        }
        const uint4 *xv = (const uint4 *)(x.q + o);
        const int si = dot16(hi, act16(xv + 1)) + dot16(lo, act16(xv));
        const float dx = act_f(&x.ds[o / 32].x);
        return fmaf(__fmul_rn(f16_lo(r.d), dx), (float)si, acc);
    }
};

/* Q4_1 (20 bytes: d, m, qs[16]; y = d q + m): lane l takes block 32 s + l. */
template <> struct mq<T_Q4_1> {
    enum { STEP = 1024, PIPE = 4 };
    struct raw { uint32_t dm, q[4]; };
    static __device__ __forceinline__ int64_t first(int64_t s, int lane) { return 1024 * s + 32 * lane; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t s, int lane, raw *r) {
        const uint8_t *b = row + 20 * (32 * s + lane);
        r->dm = ldq4(b);
#pragma unroll
        for (int i = 0; i < 4; i++) r->q[i] = ldq4(b + 4 + 4 * i);
    }
    static __device__ __forceinline__ float dot(const raw &r, int64_t s, int lane, q8_in x, float acc) {
        const int64_t o = first(s, lane);
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; i++) lo[i] = r.q[i] & 0x0f0f0f0fu, hi[i] = (r.q[i] >> 4) & 0x0f0f0f0fu;
        const uint4 *xv = (const uint4 *)(x.q + o);
        const int si = dot16(hi, act16(xv + 1)) + dot16(lo, act16(xv));
        const float2 ds = act_f2(&x.ds[o / 32]);
        acc = fmaf(__fmul_rn(f16_lo(r.dm), ds.x), (float)si, acc);
        return fmaf(f16_hi(r.dm), ds.y, acc);
    }
};

/* ---- the kernels ---- */

/* The dot products of NM weight rows wr[] with NR quantized rows (nr
 * used): the lane's pieces in step order (PIPE steps of every row loaded
 * at a time, so that gate and up share one wait), then the butterfly;
 * every lane ends with the sums. Each sum's order is the same whatever NM. */
template <int TYPE, int NR, int NM>
__device__ __forceinline__ void rowq_dots(const uint8_t *const *wr, int64_t n_in, q8_in x0, int64_t xqs, int nr,
                                          int lane, float (*acc)[NR]) {
    typedef mq<TYPE> M;
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
        for (int k = 0; k < NR; k++) acc[m][k] = 0.0f;
    const int64_t n_full = n_in / M::STEP;
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
            for (int u = 0; u < M::PIPE; u++)
#pragma unroll
                for (int k = 0; k < NR; k++)
                    if (NR == 1 || k < nr) {
                        const q8_in xk = {x0.q + (int64_t)k * xqs, x0.ds + (int64_t)k * (xqs / 32)};
                        acc[m][k] = M::dot(r[m][u], s + u, lane, xk, acc[m][k]);
                    }
    }
    for (; s * M::STEP < n_in; s++) {
        if (M::first(s, lane) >= n_in) break; /* a short last step: the lanes inside the row */
        typename M::raw r[NM];
#pragma unroll
        for (int m = 0; m < NM; m++) M::load(wr[m], s, lane, &r[m]);
        if (!waited) {
            gpu_grid_wait();
            waited = true;
        }
#pragma unroll
        for (int m = 0; m < NM; m++)
#pragma unroll
            for (int k = 0; k < NR; k++)
                if (NR == 1 || k < nr) {
                    const q8_in xk = {x0.q + (int64_t)k * xqs, x0.ds + (int64_t)k * (xqs / 32)};
                    acc[m][k] = M::dot(r[m], s, lane, xk, acc[m][k]);
                }
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

__device__ __forceinline__ q8_in q8_rows(const gpu_mv_args &a, int i0) {
    const q8_in x = {a.xq + (int64_t)i0 * a.xqs, (const float2 *)a.xds + (int64_t)i0 * (a.xqs / 32)};
    return x;
}

/* Plain and MV_ADD: warp r of the launch is row r - first[m] of matrix m. */
template <int TYPE, int NR, int EPI>
__global__ void __launch_bounds__(MVQ_WARPS * GPU_WARP) mvq_kernel(gpu_mv_args a) {
    gpu_grid_release();
    const int lane = threadIdx.x % GPU_WARP;
    int64_t r = (int64_t)blockIdx.x * MVQ_WARPS + threadIdx.x / GPU_WARP;
    int m = 0;
    while (m < a.count && r >= a.n_out[m]) r -= a.n_out[m++];
    if (m >= a.count) return; /* the whole warp leaves together */
    const int i0 = blockIdx.y * NR;
    const int nr = a.n - i0 < NR ? a.n - i0 : NR;
    float acc[1][NR];
    const uint8_t *wr[1] = {(const uint8_t *)a.w[m] + (size_t)r * a.row_bytes[m]};
    rowq_dots<TYPE, NR, 1>(wr, a.n_in, q8_rows(a, i0), a.xqs, nr, lane, acc);
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
 * loading both rows' pieces together. */
template <int TYPE, int NR>
__global__ void __launch_bounds__(MVQ_WARPS * GPU_WARP) mvq_swiglu_kernel(gpu_mv_args a) {
    gpu_grid_release();
    const int lane = threadIdx.x % GPU_WARP;
    const int64_t r = (int64_t)blockIdx.x * MVQ_WARPS + threadIdx.x / GPU_WARP;
    if (r >= a.n_out[0]) return;
    const int i0 = blockIdx.y * NR;
    const int nr = a.n - i0 < NR ? a.n - i0 : NR;
    float gu[2][NR]; /* gate, up */
    const uint8_t *wr[2] = {(const uint8_t *)a.w[0] + (size_t)r * a.row_bytes[0],
                            (const uint8_t *)a.w[1] + (size_t)r * a.row_bytes[1]};
    rowq_dots<TYPE, NR, 2>(wr, a.n_in, q8_rows(a, i0), a.xqs, nr, lane, gu);
    if (lane != 0) return;
#pragma unroll
    for (int k = 0; k < NR; k++) {
        if (k >= nr) break;
        a.y[1][(int64_t)(i0 + k) * a.ys[1] + r] = gu[1][k];
        const float v = gu[0][k];
        a.y[0][(int64_t)(i0 + k) * a.ys[0] + r] = v / (1.0f + expf(-v)) * gu[1][k];
    }
}

/* Block c (32 values) of row i: one warp. */
__global__ void quantize_q8_kernel(const float *x, int64_t xs, int64_t width, int n, int8_t *q, float2 *ds,
                                   int64_t qs) {
    gpu_grid_release();
    gpu_grid_wait();
    const int64_t blocks = width / 32;
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / GPU_WARP;
    const int lane = threadIdx.x % GPU_WARP;
    if (b >= blocks * n) return; /* whole warps */
    const int64_t i = b / blocks, c = b % blocks;
    q8_block(x[i * xs + 32 * c + lane], lane, q + i * qs + 32 * c, ds + i * (qs / 32) + c);
}

/* ---- launch ---- */

extern "C" int gpu_matvec_q8_supported(uint32_t type, int64_t n_in) {
    switch (type) {
    case T_Q8_0: case T_Q4_0: case T_Q4_1: return n_in % 32 == 0;
    case T_Q4_K: case T_Q5_K: case T_Q6_K: return n_in % 256 == 0;
    default: return 0;
    }
}

extern "C" int gpu_quantize_q8(gpu_stream *s, const float *x, int64_t xs, int64_t width, int n, int8_t *q, float *ds,
                               int64_t qs, char *err, size_t err_size) {
    if (n <= 0) return 0;
    if (width % 32 != 0 || qs % 32 != 0 || qs < width) {
        snprintf(err, err_size, "cuda: quantize_q8: width %lld, stride %lld (multiples of 32 needed)", (long long)width,
                 (long long)qs);
        return -1;
    }
    const int64_t threads = width / 32 * n * GPU_WARP;
    gpuError_t e = gpu_launch(s->pdl, quantize_q8_kernel, (unsigned)((threads + 255) / 256), 256, s->stream, x, xs,
                              width, n, q, (float2 *)ds, qs);
    if (e != gpuSuccess) {
        snprintf(err, err_size, "cuda: quantize_q8: %s", gpuGetErrorString(e));
        return -1;
    }
    return 0;
}

template <int TYPE, int NR>
static gpuError_t launch_q8_nr(const gpu_stream *s, const gpu_mv_args *a, int epi) {
    const dim3 grid = matvec_grid(a, epi, MVQ_WARPS, NR), block(MVQ_WARPS * GPU_WARP);
    if (epi == MV_SWIGLU) return gpu_launch(s->pdl, mvq_swiglu_kernel<TYPE, NR>, grid, block, s->stream, *a);
    if (epi == MV_ADD) return gpu_launch(s->pdl, mvq_kernel<TYPE, NR, MV_ADD>, grid, block, s->stream, *a);
    return gpu_launch(s->pdl, mvq_kernel<TYPE, NR, MV_PLAIN>, grid, block, s->stream, *a);
}

/* One activation row: NR = 1 (decode); more: NR = 8 rows per pass. Both
 * give the same bits per row (see the top of the file). */
template <int TYPE>
static gpuError_t launch_q8_type(const gpu_stream *s, const gpu_mv_args *a, int epi) {
    if (a->n == 1) return launch_q8_nr<TYPE, 1>(s, a, epi);
    return launch_q8_nr<TYPE, 8>(s, a, epi);
}

int matvec_q8_launch(const gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size) {
    if (a->n <= 0) return 0;
    gpuError_t e;
    switch (type) {
    case T_Q8_0: e = launch_q8_type<T_Q8_0>(s, a, epi); break;
    case T_Q4_0: e = launch_q8_type<T_Q4_0>(s, a, epi); break;
    case T_Q4_1: e = launch_q8_type<T_Q4_1>(s, a, epi); break;
    case T_Q4_K: e = launch_q8_type<T_Q4_K>(s, a, epi); break;
    case T_Q5_K: e = launch_q8_type<T_Q5_K>(s, a, epi); break;
    case T_Q6_K: e = launch_q8_type<T_Q6_K>(s, a, epi); break;
    default: snprintf(err, err_size, "cuda: no 8-bit matrix-vector kernel for type %u", (unsigned)type); return -1;
    }
    if (e != gpuSuccess) {
        snprintf(err, err_size, "cuda: matvec q8: %s", gpuGetErrorString(e));
        return -1;
    }
    return 0;
}
