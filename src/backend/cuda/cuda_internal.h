/* cuda_internal.h: what the .cu files of the cuda backend share beyond
 * cuda_device.h (C++ only, never included by C): the stream's definition.
 * Each .cu file keeps its own kernels; this header holds no code. */
#ifndef GRETA_CUDA_INTERNAL_H
#define GRETA_CUDA_INTERNAL_H

#include "backend/cuda/gpu_compat.h"

struct gpu_stream {
    gpuStream_t stream;
    int pdl; /* launch the kernels that take it with programmatic dependent launch (gpu_compat.h) */
};

#endif
