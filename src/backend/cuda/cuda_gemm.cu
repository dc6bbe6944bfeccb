/* cuda_gemm.cu: the fast prefill's matrix products on tensor cores
 * (cuda_device.h "fast prefill"; docs/cuda.md).
 *
 * y[i][r] = W[r] . x[i] for many rows i as one cuBLAS GEMM with f16
 * operands and float32 accumulation and output:
 *   - the activations x (float32) are rounded to f16 once per matmul call
 *     (gpu_to_f16; every matrix that reads the same input shares them);
 *   - F16 weights are used as they are in the file (no copy);
 *   - every other type is dequantized (bit-exactly, then rounded to f16)
 *     into a scratch of at most scratch_values values, a chunk of rows at
 *     a time, each chunk followed by its GEMM on the same stream.
 * The result depends on how cuBLAS tiles the product for n rows, so it is
 * not batch-invariant: the backend uses it only without --deterministic.
 * cuBLAS is deterministic run to run for the same sizes on the same GPU
 * (one handle per stream, its default workspace). HIP: untested (hipBLAS
 * has the same call, hipblasGemmEx). */
#include <stdio.h>

#include <cublas_v2.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_internal.h"

enum { T_F16 = 1 }; /* format/quant.h's id */

struct gpu_blas {
    cublasHandle_t handle; /* bound to the session's stream */
};

static int blas_fail(char *err, size_t err_size, const char *what, cublasStatus_t st) {
    snprintf(err, err_size, "cuda: %s: %s", what, cublasGetStatusString(st));
    return -1;
}

extern "C" int gpu_blas_new(gpu_stream *s, gpu_blas **out, char *err, size_t err_size) {
    *out = (gpu_blas *)calloc(1, sizeof(gpu_blas));
    if (!*out) {
        snprintf(err, err_size, "cuda: out of host memory");
        return -1;
    }
    cublasStatus_t st = cublasCreate(&(*out)->handle);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream((*out)->handle, s->stream);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if ((*out)->handle) cublasDestroy((*out)->handle);
        free(*out);
        *out = NULL;
        return blas_fail(err, err_size, "creating the cuBLAS handle", st);
    }
    return 0;
}

extern "C" void gpu_blas_free(gpu_blas *b) {
    if (!b) return;
    cublasDestroy(b->handle);
    free(b);
}

/* x16[i][k] = f16(x[i][k]) (nearest even), k < width; one block row per i. */
__global__ void to_f16_kernel(const float *x, int64_t xs, unsigned short *x16, int64_t x16s, int64_t width) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < width) x16[(int64_t)blockIdx.y * x16s + k] = __half_as_ushort(__float2half_rn(x[(int64_t)blockIdx.y * xs + k]));
}

extern "C" int gpu_to_f16(gpu_stream *s, const float *x, int64_t xs, uint16_t *x16, int64_t x16s, int64_t width,
                          int n, char *err, size_t err_size) {
    if (n <= 0) return 0;
    dim3 grid((unsigned)((width + 255) / 256), (unsigned)n);
    to_f16_kernel<<<grid, 256, 0, s->stream>>>(x, xs, (unsigned short *)x16, x16s, width);
    gpuError_t e = gpuGetLastError();
    if (e != gpuSuccess) {
        snprintf(err, err_size, "cuda: f16 conversion: %s", gpuGetErrorString(e));
        return -1;
    }
    return 0;
}

/* C (m x n, column-major, ldc) = A^T B: A is k x m (column-major, lda: the
 * weight rows), B is k x n (ldb: the activation rows). */
static int gemm_f16(gpu_blas *b, const void *a, int64_t lda, const uint16_t *x16, int64_t ldb, float *c, int64_t ldc,
                    int64_t m, int64_t n, int64_t k, char *err, size_t err_size) {
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasGemmEx(b->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)k, &one, a, CUDA_R_16F,
                                     (int)lda, x16, CUDA_R_16F, (int)ldb, &zero, c, CUDA_R_32F, (int)ldc,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(err, err_size, "matrix product (cublasGemmEx)", st);
}

extern "C" int gpu_gemm(gpu_blas *b, gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in,
                        int64_t n_out, const uint16_t *x16, int64_t x16s, float *y, int64_t ys, int n, uint16_t *scratch,
                        size_t scratch_values, char *err, size_t err_size) {
    if (n <= 0) return 0;
    if (type == T_F16) return gemm_f16(b, w, (int64_t)(row_bytes / 2), x16, x16s, y, ys, n_out, n, n_in, err, err_size);
    /* Rows per chunk: what the scratch holds, a multiple of 64 when it can
     * be (aligned output columns for the tensor cores). */
    int64_t rows = (int64_t)(scratch_values / (size_t)n_in);
    if (rows >= 128) rows -= rows % 64;
    if (rows < 1) {
        snprintf(err, err_size, "cuda: the GEMM scratch of %zu values holds no row of %lld", scratch_values,
                 (long long)n_in);
        return -1;
    }
    for (int64_t r0 = 0; r0 < n_out; r0 += rows) {
        const int64_t nr = n_out - r0 < rows ? n_out - r0 : rows;
        if (gpu_dequant_f16(s, type, (const uint8_t *)w + (size_t)r0 * row_bytes, row_bytes, n_in, nr, scratch, err,
                            err_size) != 0 ||
            gemm_f16(b, scratch, n_in, x16, x16s, y + r0, ys, nr, n, n_in, err, err_size) != 0)
            return -1;
    }
    return 0;
}
