/* cuda_q8_block.h: the rounding of 32 activation values to 8 bits (docs/cuda.md
 * "Decode: 8-bit activations"), shared by the kernels that write 8-bit rows
 * (cuda_matvec_q8.cu's quantizer and fused rmsnorm, cuda_device.cu's
 * attention merge), so that each writes the same bytes. C++ (CUDA) only. */
#ifndef GRETA_CUDA_Q8_BLOCK_H
#define GRETA_CUDA_Q8_BLOCK_H

#include "backend/cuda/gpu_compat.h"

/* One block of 32 values, lane j holding value j (a whole warp): d =
 * max|x| / 127, q = x / d rounded to nearest even (0 where d is 0), s =
 * d * sum(q); q[j] and (lane 0) ds written. */
__device__ __forceinline__ void q8_block(float v, int lane, int8_t *q, float2 *ds) {
    float amax = fabsf(v);
#pragma unroll
    for (int off = GPU_WARP / 2; off > 0; off >>= 1) amax = fmaxf(amax, GPU_SHFL_XOR(amax, off));
    const float d = __fdiv_rn(amax, 127.0f);
    const int qv = d == 0.0f ? 0 : __float2int_rn(__fdiv_rn(v, d));
    int sum = qv;
#pragma unroll
    for (int off = GPU_WARP / 2; off > 0; off >>= 1) sum += GPU_SHFL_XOR(sum, off);
    q[lane] = (int8_t)qv;
    if (lane == 0) *ds = make_float2(d, __fmul_rn(d, (float)sum));
}

#endif
