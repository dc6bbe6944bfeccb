/* cuda_attn.cu: the fast prefill's attention (cuda_device.h "fast
 * prefill"; docs/cuda.md): flash-attention style on tensor cores.
 *
 * The rows of one forward that belong to one sequence at consecutive
 * positions pos0 .. pos0 + n - 1 (a prompt, or a chunk of it), after
 * kv_store wrote their K and V: row i attends to keys 0 .. pos0 + i.
 *
 * One block of FA_WARPS warps per (tile of FA_BR = 64 queries, head); warp
 * w owns queries 16w .. 16w + 15 of the tile. Keys go by in tiles of FA_BC
 * = 64: the K tile (row-major) and the V tile (transposed) are read from
 * the cache into shared memory as f16 (q8_0 blocks are dequantized on the
 * way), S = Q K^T and O += P V are mma.sync m16n8k16 (f16 operands,
 * float32 accumulation), and the softmax is online (FlashAttention-2): each
 * lane keeps the running max and sum of its two query rows, the scores of
 * a tile stay in registers and become P's operand fragments directly.
 * GQA: head h reads KV head h / (n_head / n_head_kv). Causal: tiles past
 * the tile's last query are not visited, keys past a row's own position
 * are masked.
 *
 * Numerics: Q and P are rounded to f16 for the tensor cores (the cache is
 * f16 already); scores, softmax, sums and the output are float32. Not
 * batch-invariant (the key order depends on the tiling), so the backend
 * uses it only without --deterministic. Inline PTX: CUDA only (a HIP build
 * keeps the batch-invariant attention). */
#include <math.h>
#include <stdio.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_internal.h"

#define FA_WARPS 4
#define FA_THREADS (FA_WARPS * 32)
#define FA_BR (16 * FA_WARPS) /* queries per block */
#define FA_BC 64              /* keys per tile */
#define FA_PAD 8              /* f16 values of padding per shared row (conflict-free fragment reads) */

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
    return (uint32_t)__half_as_ushort(__float2half_rn(lo)) | ((uint32_t)__half_as_ushort(__float2half_rn(hi)) << 16);
}

/* c += a b: a 16x16 (row-major fragment), b 16x8 (column fragment), c 16x8 float32. */
__device__ __forceinline__ void mma_f16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float f16_bits_at(const uint8_t *p) {
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

/* Keys key0 .. key0 + FA_BC - 1 of KV head kvh into sK[key][dim] and
 * sVt[dim][key] (f16 bits); keys past last_key (never written) become 0. */
template <int HD>
__device__ __forceinline__ void load_tile_f16(unsigned short (*sK)[HD + FA_PAD], unsigned short (*sVt)[FA_BC + FA_PAD],
                                              const uint8_t *kc, const uint8_t *vc, int64_t kv_dim, int kvh, int key0,
                                              int last_key) {
    const int t = threadIdx.x;
    const unsigned short *kb = (const unsigned short *)kc + (int64_t)kvh * HD;
    const unsigned short *vb = (const unsigned short *)vc + (int64_t)kvh * HD;
    constexpr int CH = HD / 8; /* 16-byte chunks of a head's row */
    for (int i = t; i < FA_BC * CH; i += FA_THREADS) {
        const int key = i / CH, c = i % CH;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (key0 + key <= last_key) val = *(const uint4 *)(kb + (int64_t)(key0 + key) * kv_dim + 8 * c);
        *(uint4 *)&sK[key][8 * c] = val;
    }
    /* V transposed: consecutive threads take consecutive keys, so the
     * 16-bit shared stores of a warp fall into distinct words. */
    const int key = t % FA_BC;
    const bool live = key0 + key <= last_key;
    for (int c = t / FA_BC; c < CH; c += FA_THREADS / FA_BC) {
        uint4 val = make_uint4(0, 0, 0, 0);
        if (live) val = *(const uint4 *)(vb + (int64_t)(key0 + key) * kv_dim + 8 * c);
        const uint32_t w[4] = {val.x, val.y, val.z, val.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            sVt[8 * c + 2 * j][key] = (unsigned short)(w[j] & 0xffffu);
            sVt[8 * c + 2 * j + 1][key] = (unsigned short)(w[j] >> 16);
        }
    }
}

/* The same from a q8_0 cache: rows of kv_dim / 32 blocks (f16 d, 32 int8
 * q); value q * d (as quant.c), then rounded to f16. */
template <int HD>
__device__ __forceinline__ void load_tile_q8_0(unsigned short (*sK)[HD + FA_PAD],
                                               unsigned short (*sVt)[FA_BC + FA_PAD], const uint8_t *kc,
                                               const uint8_t *vc, int64_t kv_dim, int kvh, int key0, int last_key) {
    const int t = threadIdx.x;
    const int64_t row_bytes = kv_dim / 32 * 34;
    constexpr int NB = HD / 32; /* blocks of a head's row */
    for (int i = t; i < FA_BC * NB; i += FA_THREADS) {
        const int key = i / NB, bb = i % NB;
        uint32_t *dst = (uint32_t *)&sK[key][32 * bb];
        if (key0 + key <= last_key) {
            const uint8_t *p = kc + (int64_t)(key0 + key) * row_bytes + (int64_t)(kvh * NB + bb) * 34;
            const float d = f16_bits_at(p);
#pragma unroll
            for (int j = 0; j < 16; j++)
                dst[j] = pack_f16x2(__fmul_rn((float)(int8_t)p[2 + 2 * j], d), __fmul_rn((float)(int8_t)p[3 + 2 * j], d));
        } else {
#pragma unroll
            for (int j = 0; j < 16; j++) dst[j] = 0;
        }
    }
    const int key = t % FA_BC;
    const bool live = key0 + key <= last_key;
    for (int bb = t / FA_BC; bb < NB; bb += FA_THREADS / FA_BC) {
        if (live) {
            const uint8_t *p = vc + (int64_t)(key0 + key) * row_bytes + (int64_t)(kvh * NB + bb) * 34;
            const float d = f16_bits_at(p);
#pragma unroll
            for (int j = 0; j < 32; j++)
                sVt[32 * bb + j][key] = __half_as_ushort(__float2half_rn(__fmul_rn((float)(int8_t)p[2 + j], d)));
        } else {
#pragma unroll
            for (int j = 0; j < 32; j++) sVt[32 * bb + j][key] = 0;
        }
    }
}

template <int HD, bool Q8>
__global__ void __launch_bounds__(FA_THREADS) flash_prefill_kernel(const float *q, int64_t qs, float *att, int64_t as,
                                                                   const uint8_t *kc, const uint8_t *vc, int64_t kv_dim,
                                                                   int group, float scale_log2, int32_t pos0, int n) {
    __shared__ __align__(16) unsigned short sK[FA_BC][HD + FA_PAD];
    __shared__ __align__(16) unsigned short sVt[HD][FA_BC + FA_PAD];
    const int tile = (int)(gridDim.x - 1 - blockIdx.x); /* the longest tiles start first */
    const int h = blockIdx.y, kvh = h / group;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane >> 2, tig = lane & 3;
    /* This lane's two query rows (fragment rows g and g + 8 of its warp). */
    const int r0 = tile * FA_BR + warp * 16 + g, r1 = r0 + 8;
    const int last_row = (tile + 1) * FA_BR < n ? (tile + 1) * FA_BR - 1 : n - 1;
    const int last_key = pos0 + last_row;
    const int qpos0 = pos0 + (r0 < n ? r0 : n - 1), qpos1 = pos0 + (r1 < n ? r1 : n - 1);

    uint32_t qa[HD / 16][4];
    {
        const float *q0 = q + (int64_t)(r0 < n ? r0 : n - 1) * qs + (int64_t)h * HD;
        const float *q1 = q + (int64_t)(r1 < n ? r1 : n - 1) * qs + (int64_t)h * HD;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++) {
            const int c = 16 * ks + 2 * tig;
            qa[ks][0] = pack_f16x2(q0[c], q0[c + 1]);
            qa[ks][1] = pack_f16x2(q1[c], q1[c + 1]);
            qa[ks][2] = pack_f16x2(q0[c + 8], q0[c + 9]);
            qa[ks][3] = pack_f16x2(q1[c + 8], q1[c + 9]);
        }
    }
    float o[HD / 8][4];
#pragma unroll
    for (int dt = 0; dt < HD / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    const int n_tiles = last_key / FA_BC + 1;
    for (int kt = 0; kt < n_tiles; kt++) {
        const int key0 = kt * FA_BC;
        __syncthreads(); /* the previous tile is no longer read */
        if (Q8) load_tile_q8_0<HD>(sK, sVt, kc, vc, kv_dim, kvh, key0, last_key);
        else load_tile_f16<HD>(sK, sVt, kc, vc, kv_dim, kvh, key0, last_key);
        __syncthreads();

        float sc[FA_BC / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_BC / 8; nt++) {
            sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < HD / 16; ks++) {
                const uint32_t b0 = *(const uint32_t *)&sK[nt * 8 + g][16 * ks + 2 * tig];
                const uint32_t b1 = *(const uint32_t *)&sK[nt * 8 + g][16 * ks + 8 + 2 * tig];
                mma_f16(sc[nt], qa[ks], b0, b1);
            }
        }
        /* scale (in log2 units), causal mask, the tile's row maxima */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < FA_BC / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int key = key0 + nt * 8 + 2 * tig + e;
                sc[nt][e] = key <= qpos0 ? sc[nt][e] * scale_log2 : -INFINITY;
                sc[nt][2 + e] = key <= qpos1 ? sc[nt][2 + e] * scale_log2 : -INFINITY;
                mx0 = fmaxf(mx0, sc[nt][e]);
                mx1 = fmaxf(mx1, sc[nt][2 + e]);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* Key 0 is in the first tile and every row sees it, so the running
         * maxima are finite from the first tile on (no inf - inf). */
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float corr0 = exp2f(m0 - mn0), corr1 = exp2f(m1 - mn1);
        m0 = mn0;
        m1 = mn1;
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < FA_BC / 8; nt++) {
            sc[nt][0] = exp2f(sc[nt][0] - m0);
            sc[nt][1] = exp2f(sc[nt][1] - m0);
            sc[nt][2] = exp2f(sc[nt][2] - m1);
            sc[nt][3] = exp2f(sc[nt][3] - m1);
            s0 += sc[nt][0] + sc[nt][1];
            s1 += sc[nt][2] + sc[nt][3];
        }
        l0 = l0 * corr0 + s0;
        l1 = l1 * corr1 + s1;
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++) {
            o[dt][0] *= corr0;
            o[dt][1] *= corr0;
            o[dt][2] *= corr1;
            o[dt][3] *= corr1;
        }
        /* O += P V: the score fragments of key tiles 2kk and 2kk + 1 are
         * exactly the A fragment of keys 16kk .. 16kk + 15. */
#pragma unroll
        for (int kk = 0; kk < FA_BC / 16; kk++) {
            const uint32_t pa[4] = {pack_f16x2(sc[2 * kk][0], sc[2 * kk][1]), pack_f16x2(sc[2 * kk][2], sc[2 * kk][3]),
                                    pack_f16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                    pack_f16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
            for (int dt = 0; dt < HD / 8; dt++) {
                const uint32_t b0 = *(const uint32_t *)&sVt[dt * 8 + g][16 * kk + 2 * tig];
                const uint32_t b1 = *(const uint32_t *)&sVt[dt * 8 + g][16 * kk + 8 + 2 * tig];
                mma_f16(o[dt], pa, b0, b1);
            }
        }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
    for (int dt = 0; dt < HD / 8; dt++) {
        const int c = h * HD + dt * 8 + 2 * tig;
        if (r0 < n) *(float2 *)(att + (int64_t)r0 * as + c) = make_float2(o[dt][0] * inv0, o[dt][1] * inv0);
        if (r1 < n) *(float2 *)(att + (int64_t)r1 * as + c) = make_float2(o[dt][2] * inv1, o[dt][3] * inv1);
    }
}

extern "C" int gpu_attend_prefill_supported(int head_dim, int64_t kv_dim, int kv_f32) {
    return !kv_f32 && (head_dim == 64 || head_dim == 128) && kv_dim % 32 == 0;
}

extern "C" int gpu_attend_prefill(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as,
                                  const void *k_cache, const void *v_cache, int kv_q8_0, int64_t kv_dim, int n_head,
                                  int n_head_kv, int head_dim, float scale, int32_t pos0, int n, char *err,
                                  size_t err_size) {
    if (n <= 0) return 0;
    if (!gpu_attend_prefill_supported(head_dim, kv_dim, 0) || n_head % n_head_kv != 0) {
        snprintf(err, err_size, "cuda: the prefill attention has no kernel for head_dim %d (kv_dim %lld)", head_dim,
                 (long long)kv_dim);
        return -1;
    }
    dim3 grid((unsigned)((n + FA_BR - 1) / FA_BR), (unsigned)n_head);
    const float scale_log2 = scale * 1.4426950408889634f;
    const int group = n_head / n_head_kv;
    const uint8_t *kc = (const uint8_t *)k_cache, *vc = (const uint8_t *)v_cache;
#define FLASH(HD, Q8) \
    flash_prefill_kernel<HD, Q8><<<grid, FA_THREADS, 0, s->stream>>>(q, qs, att, as, kc, vc, kv_dim, group, scale_log2, pos0, n)
    if (head_dim == 64) {
        if (kv_q8_0) FLASH(64, true);
        else FLASH(64, false);
    } else {
        if (kv_q8_0) FLASH(128, true);
        else FLASH(128, false);
    }
#undef FLASH
    gpuError_t e = gpuGetLastError();
    if (e != gpuSuccess) {
        snprintf(err, err_size, "cuda: prefill attention: %s", gpuGetErrorString(e));
        return -1;
    }
    return 0;
}
