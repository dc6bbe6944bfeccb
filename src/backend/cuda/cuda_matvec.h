/* cuda_matvec.h: the matrix-vector kernels of cuda_matvec.cu as seen from
 * cuda_device.cu (C++ only; cuda.c reaches them through cuda_device.h's
 * gpu_matvec). */
#ifndef GRETA_CUDA_MATVEC_H
#define GRETA_CUDA_MATVEC_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/gpu_compat.h"

/* The grid of a's product: one warp per output row (of all a's matrices;
 * of gate alone for MV_SWIGLU), `warps` rows per block, NR activation rows
 * per block row (cuda_matvec.cu). */
dim3 matvec_grid(const gpu_mv_args *a, int epi, int warps, int nr);

/* Launches the product of a's matrices (all of type) with a's rows and the
 * epilogue epi (MV_PLAIN, MV_ADD, MV_SWIGLU); 0 or -1 with the launch error. */
int matvec_launch(const gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size);

/* The same with a's 8-bit input (a->xq; cuda_matvec_q8.cu). */
int matvec_q8_launch(const gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size);

#endif
