/* cuda_device.cu: the kernels of the cuda backend and the runtime calls
 * around them (cuda_device.h). Plain CUDA C++ behind gpu_compat.h.
 *
 * Build: nvcc --fmad=false (Makefile): a*b+c is never contracted, so the
 * dequantization below rounds exactly as quant.c's C code does, and every
 * fused multiply-add is an explicit fmaf.
 *
 * Launches: every kernel goes through gpu_launch() with the stream's pdl
 * setting, starts with gpu_grid_release() and calls gpu_grid_wait() before
 * its first access to memory that other kernels write (gpu_compat.h:
 * programmatic dependent launch; RMSNorm loads its weights before the
 * wait). launched() turns the launch's error into greta's. */
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/cuda_q8_block.h"

/* ggml type ids (format/quant.h; repeated here so this file includes no C
 * header of the library). */
enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
    T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30
};

static int fail(char *err, size_t err_size, const char *what, gpuError_t e) {
    snprintf(err, err_size, "cuda: %s: %s", what, gpuGetErrorString(e));
    return -1;
}

/* After a launch: its own error (gpu_launch's return value), without
 * waiting for the stream. */
static int launched(gpuError_t e, char *err, size_t err_size, const char *what) {
    return e == gpuSuccess ? 0 : fail(err, err_size, what, e);
}

/* ---- runtime ---- */

extern "C" int gpu_device_open(char *name, size_t name_size, size_t *free_bytes, size_t *total_bytes, char *err,
                               size_t err_size) {
    int count = 0;
    gpuError_t e = gpuGetDeviceCount(&count);
    if (e != gpuSuccess) return fail(err, err_size, "no usable GPU", e);
    if (count < 1) {
        snprintf(err, err_size, "cuda: no GPU found");
        return -1;
    }
    if ((e = gpuSetDevice(0)) != gpuSuccess) return fail(err, err_size, "selecting device 0", e);
    gpuDeviceProp prop;
    if ((e = gpuGetDeviceProperties(&prop, 0)) != gpuSuccess) return fail(err, err_size, "device properties", e);
    snprintf(name, name_size, "%s", prop.name);
    return gpu_mem_info(free_bytes, total_bytes, err, err_size);
}

extern "C" int gpu_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t err_size) {
    gpuError_t e = gpuMemGetInfo(free_bytes, total_bytes);
    return e == gpuSuccess ? 0 : fail(err, err_size, "memory info", e);
}

extern "C" int gpu_alloc(void **ptr, size_t bytes, const char *what, char *err, size_t err_size) {
    *ptr = NULL;
    gpuError_t e = gpuMalloc(ptr, bytes ? bytes : 1);
    if (e != gpuSuccess) {
        *ptr = NULL;
        gpuGetLastError(); /* clear the sticky-free error state */
        snprintf(err, err_size, "cuda: allocating %zu bytes for %s: %s", bytes, what, gpuGetErrorString(e));
        return -1;
    }
    return 0;
}

extern "C" void gpu_free(void *ptr) {
    if (ptr) gpuFree(ptr);
}

extern "C" int gpu_upload(void *dst, const void *src, size_t bytes, char *err, size_t err_size) {
    gpuError_t e = gpuMemcpy(dst, src, bytes, gpuMemcpyHostToDevice);
    return e == gpuSuccess ? 0 : fail(err, err_size, "copying to the GPU", e);
}

extern "C" int gpu_download(void *dst, const void *src, size_t bytes, char *err, size_t err_size) {
    gpuError_t e = gpuMemcpy(dst, src, bytes, gpuMemcpyDeviceToHost);
    return e == gpuSuccess ? 0 : fail(err, err_size, "copying from the GPU", e);
}

extern "C" int gpu_stream_new(gpu_stream **out, int pdl, char *err, size_t err_size) {
    *out = (gpu_stream *)calloc(1, sizeof(gpu_stream));
    if (!*out) {
        snprintf(err, err_size, "cuda: out of host memory");
        return -1;
    }
    (*out)->pdl = pdl;
    gpuError_t e = gpuStreamCreate(&(*out)->stream);
    if (e != gpuSuccess) {
        free(*out);
        *out = NULL;
        return fail(err, err_size, "creating a stream", e);
    }
    return 0;
}

/* tests/test_cuda.c's slow producer (cuda_device.h): one block, so that
 * the next kernel's blocks find room beside it while it spins. */
__global__ void delayed_copy_kernel(float *dst, const float *src, int64_t n, long long cycles) {
    gpu_grid_release();
    gpu_grid_wait();
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) dst[k] = src[k];
}

extern "C" int gpu_test_delayed_copy(gpu_stream *s, float *dst, const float *src, int64_t n, long long cycles,
                                     char *err, size_t err_size) {
    gpuError_t e = gpu_launch(s->pdl, delayed_copy_kernel, 1, 256, s->stream, dst, src, n, cycles);
    return e == gpuSuccess ? 0 : fail(err, err_size, "delayed copy", e);
}

extern "C" void gpu_stream_free(gpu_stream *s) {
    if (!s) return;
    gpuStreamSynchronize(s->stream);
    gpuStreamDestroy(s->stream);
    free(s);
}

extern "C" int gpu_stream_sync(gpu_stream *s, char *err, size_t err_size) {
    gpuError_t e = gpuStreamSynchronize(s->stream);
    return e == gpuSuccess ? 0 : fail(err, err_size, "running the forward", e);
}

extern "C" int gpu_upload_async(gpu_stream *s, void *dst, const void *src, size_t bytes, char *err,
                                size_t err_size) {
    gpuError_t e = gpuMemcpyAsync(dst, src, bytes, gpuMemcpyHostToDevice, s->stream);
    return e == gpuSuccess ? 0 : fail(err, err_size, "copying to the GPU", e);
}

extern "C" int gpu_copy_rows_to_host(gpu_stream *s, float *dst, const float *src, int64_t src_stride, int64_t width,
                                     int n, char *err, size_t err_size) {
    gpuError_t e = gpuMemcpy2DAsync(dst, (size_t)width * sizeof(float), src, (size_t)src_stride * sizeof(float),
                                    (size_t)width * sizeof(float), (size_t)n, gpuMemcpyDeviceToHost, s->stream);
    if (e != gpuSuccess) return fail(err, err_size, "copying rows from the GPU", e);
    return gpu_stream_sync(s, err, err_size);
}

extern "C" int gpu_copy_rows_to_device(gpu_stream *s, float *dst, int64_t dst_stride, const float *src,
                                       int64_t width, int n, char *err, size_t err_size) {
    gpuError_t e = gpuMemcpy2DAsync(dst, (size_t)dst_stride * sizeof(float), src, (size_t)width * sizeof(float),
                                    (size_t)width * sizeof(float), (size_t)n, gpuMemcpyHostToDevice, s->stream);
    return e == gpuSuccess ? 0 : fail(err, err_size, "copying rows to the GPU", e);
}

struct gpu_graph {
    gpuGraphExec_t exec;
};

extern "C" int gpu_capture_begin(gpu_stream *s, char *err, size_t err_size) {
    gpuError_t e = gpuStreamBeginCapture(s->stream, gpuStreamCaptureModeThreadLocal);
    return e == gpuSuccess ? 0 : fail(err, err_size, "beginning a graph capture", e);
}

extern "C" int gpu_capture_end(gpu_stream *s, gpu_graph **out, char *err, size_t err_size) {
    *out = NULL;
    gpuGraph_t graph = NULL;
    gpuError_t e = gpuStreamEndCapture(s->stream, &graph);
    if (e != gpuSuccess) return fail(err, err_size, "ending a graph capture", e);
    gpu_graph *g = (gpu_graph *)calloc(1, sizeof *g);
    if (!g) {
        gpuGraphDestroy(graph);
        snprintf(err, err_size, "cuda: out of host memory");
        return -1;
    }
    e = gpuGraphInstantiate(&g->exec, graph);
    gpuGraphDestroy(graph);
    if (e != gpuSuccess) {
        free(g);
        return fail(err, err_size, "instantiating a graph", e);
    }
    *out = g;
    return 0;
}

extern "C" int gpu_graph_launch(gpu_stream *s, gpu_graph *g, char *err, size_t err_size) {
    gpuError_t e = gpuGraphLaunch(g->exec, s->stream);
    return e == gpuSuccess ? 0 : fail(err, err_size, "launching a graph", e);
}

extern "C" void gpu_graph_free(gpu_graph *g) {
    if (!g) return;
    gpuGraphExecDestroy(g->exec);
    free(g);
}

extern "C" int gpu_type_supported(uint32_t type) {
    switch (type) {
    case T_F32: case T_F16: case T_BF16: case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: case T_Q8_0:
    case T_Q2_K: case T_Q3_K: case T_Q4_K: case T_Q5_K: case T_Q6_K: return 1;
    default: return 0;
    }
}

/* ---- dequantization: 32 values ("a unit") at a time ----
 *
 * Unit u of a row is values [32u, 32u + 32): one block of the 32-value
 * types, one sub-block of a 256-value K-quant superblock, or 32 plain
 * values (the last unit of a float row may be shorter: the return value is
 * the count). Each decoder is quant.c's block decoder restricted to the
 * unit, with the same float operations in the same order. */

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

__device__ __forceinline__ uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

template <int TYPE> struct unit;

template <> struct unit<T_F32> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        const float *p = (const float *)row + 32 * u;
        int cnt = n - 32 * u < 32 ? (int)(n - 32 * u) : 32;
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = l < cnt ? p[l] : 0.0f;
        return cnt;
    }
};

template <> struct unit<T_F16> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        const unsigned short *p = (const unsigned short *)row + 32 * u;
        int cnt = n - 32 * u < 32 ? (int)(n - 32 * u) : 32;
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = l < cnt ? __half2float(__ushort_as_half(p[l])) : 0.0f;
        return cnt;
    }
};

template <> struct unit<T_BF16> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        const unsigned short *p = (const unsigned short *)row + 32 * u;
        int cnt = n - 32 * u < 32 ? (int)(n - 32 * u) : 32;
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = l < cnt ? __uint_as_float((uint32_t)p[l] << 16) : 0.0f;
        return cnt;
    }
};

template <> struct unit<T_Q4_0> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 18 * u;
        const float d = f16_at(b);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q = b[2 + j];
            w[j] = __fmul_rn(d, (float)((q & 0x0f) - 8));
            w[j + 16] = __fmul_rn(d, (float)((q >> 4) - 8));
        }
        return 32;
    }
};

template <> struct unit<T_Q4_1> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 20 * u;
        const float d = f16_at(b), m = f16_at(b + 2);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q = b[4 + j];
            w[j] = __fadd_rn(__fmul_rn(d, (float)(q & 0x0f)), m);
            w[j + 16] = __fadd_rn(__fmul_rn(d, (float)(q >> 4)), m);
        }
        return 32;
    }
};

template <> struct unit<T_Q5_0> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 22 * u;
        const float d = f16_at(b);
        const uint32_t qh = u32_at(b + 2);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q = b[6 + j];
            const int lo = (q & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            w[j] = __fmul_rn(d, (float)(lo - 16));
            w[j + 16] = __fmul_rn(d, (float)(hi - 16));
        }
        return 32;
    }
};

template <> struct unit<T_Q5_1> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 24 * u;
        const float d = f16_at(b), m = f16_at(b + 2);
        const uint32_t qh = u32_at(b + 4);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q = b[8 + j];
            const int lo = (q & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            w[j] = __fadd_rn(__fmul_rn(d, (float)lo), m);
            w[j + 16] = __fadd_rn(__fmul_rn(d, (float)hi), m);
        }
        return 32;
    }
};

template <> struct unit<T_Q8_0> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 34 * u;
        const float d = f16_at(b);
#pragma unroll
        for (int j = 0; j < 32; j++) w[j] = __fmul_rn((float)(int8_t)b[2 + j], d);
        return 32;
    }
};

/* Q2_K: unit u = 4h + s of superblock u / 8: values 16k + l are bits 2s..
 * of qs[32h + 16k + l], scale byte 8h + 2s + k. */
template <> struct unit<T_Q2_K> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 84 * (u / 8);
        const int h = (int)(u % 8) / 4, s = (int)(u % 4);
        const float d = f16_at(b + 80), dmin = f16_at(b + 82);
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int sc = b[8 * h + 2 * s + k];
            const float dl = __fmul_rn(d, (float)(sc & 0x0f));
            const float ml = __fmul_rn(dmin, (float)(sc >> 4));
#pragma unroll
            for (int l = 0; l < 16; l++) {
                const int q = (b[16 + 32 * h + 16 * k + l] >> (2 * s)) & 3;
                w[16 * k + l] = __fsub_rn(__fmul_rn(dl, (float)q), ml);
            }
        }
        return 32;
    }
};

/* Q3_K: as Q2_K's positions; high bit = bit 4h + s of hmask[16k + l]. */
template <> struct unit<T_Q3_K> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 110 * (u / 8);
        const int h = (int)(u % 8) / 4, s = (int)(u % 4);
        const float d = f16_at(b + 108);
        const uint8_t *packed = b + 96;
        const int mask = 1 << (4 * h + s);
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int j = 8 * h + 2 * s + k;
            const int low = j < 8 ? (packed[j] & 0x0f) : (packed[j - 8] >> 4);
            const int high = (packed[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            const float dl = __fmul_rn(d, (float)((low | (high << 4)) - 32));
#pragma unroll
            for (int l = 0; l < 16; l++) {
                const int q = (b[32 + 32 * h + 16 * k + l] >> (2 * s)) & 3;
                const int value = q - ((b[16 * k + l] & mask) ? 0 : 4);
                w[16 * k + l] = __fmul_rn(dl, (float)value);
            }
        }
        return 32;
    }
};

/* Q4_K/Q5_K 6-bit scale and min j of the 12 packed bytes q. */
__device__ __forceinline__ void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

template <> struct unit<T_Q4_K> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 144 * (u / 8);
        const int j = (int)(u % 8);
        int sc, m;
        k4_scale_min(j, b + 4, &sc, &m);
        const float d1 = __fmul_rn(f16_at(b), (float)sc), m1 = __fmul_rn(f16_at(b + 2), (float)m);
        const uint8_t *q = b + 16 + 32 * (j / 2);
        const int shift = (j & 1) * 4;
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = __fsub_rn(__fmul_rn(d1, (float)((q[l] >> shift) & 0x0f)), m1);
        return 32;
    }
};

template <> struct unit<T_Q5_K> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 176 * (u / 8);
        const int j = (int)(u % 8);
        int sc, m;
        k4_scale_min(j, b + 4, &sc, &m);
        const float d1 = __fmul_rn(f16_at(b), (float)sc), m1 = __fmul_rn(f16_at(b + 2), (float)m);
        const uint8_t *qh = b + 16;
        const uint8_t *ql = b + 48 + 32 * (j / 2);
        const int shift = (j & 1) * 4;
        const int bit = 1 << j;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const int q = ((ql[l] >> shift) & 0x0f) + ((qh[l] & bit) ? 16 : 0);
            w[l] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
        }
        return 32;
    }
};

/* Q6_K: unit u = 4h + s: low 4 bits from ql[64h + l + 32(s & 1)] (low
 * nibble for s < 2), top 2 bits = bits 2s.. of qh[32h + l], minus 32;
 * scale sc[8h + 2s + l/16]; y = (d * sc) * q. */
template <> struct unit<T_Q6_K> {
    static __device__ __forceinline__ int get(const uint8_t *row, int64_t u, int64_t n, float *w) {
        (void)n;
        const uint8_t *b = row + 210 * (u / 8);
        const int h = (int)(u % 8) / 4, s = (int)(u % 4);
        const float d = f16_at(b + 208);
        const uint8_t *ql = b + 64 * h + 32 * (s & 1);
        const uint8_t *qh = b + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * s;
        const int lshift = s < 2 ? 0 : 4;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const int q = (((ql[l] >> lshift) & 0x0f) | (((qh[l] >> (2 * s)) & 3) << 4)) - 32;
            w[l] = __fmul_rn(__fmul_rn(d, (float)sc[l / 16]), (float)q);
        }
        return 32;
    }
};

/* ---- matmul: one warp per weight row, up to MM_ROWS activation rows ----
 *
 * Lane l takes units l, l + 32, ... of the weight row; for each activation
 * row it accumulates fmaf(w, x, acc) over the unit's values in order; the
 * 32 lane sums are added by a butterfly (every lane ends with the same
 * bits). The result depends only on n_in: batch-invariant. */

#define MM_WARPS 4
#define MM_ROWS 8

template <int TYPE>
__global__ void matmul_kernel(const uint8_t *W, size_t row_bytes, int64_t n_in, int64_t n_out, const float *x,
                              int64_t xs, float *y, int64_t ys, int n) {
    gpu_grid_release();
    gpu_grid_wait();
    const int lane = threadIdx.x % GPU_WARP;
    const int64_t r = (int64_t)blockIdx.x * MM_WARPS + threadIdx.x / GPU_WARP;
    const int i0 = blockIdx.y * MM_ROWS;
    if (r >= n_out) return; /* the whole warp leaves together */
    const int nr = n - i0 < MM_ROWS ? n - i0 : MM_ROWS;
    const uint8_t *wr = W + (size_t)r * row_bytes;
    const float *x0 = x + (int64_t)i0 * xs;
    float acc[MM_ROWS];
#pragma unroll
    for (int k = 0; k < MM_ROWS; k++) acc[k] = 0.0f;
    const int64_t n_units = (n_in + 31) / 32;
    for (int64_t u = lane; u < n_units; u += GPU_WARP) {
        float w[32];
        const int cnt = unit<TYPE>::get(wr, u, n_in, w);
        const float *xu = x0 + 32 * u;
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) {
            if (k < nr) {
                const float *xk = xu + (int64_t)k * xs;
                float a = acc[k];
#pragma unroll
                for (int l = 0; l < 32; l++)
                    if (l < cnt) a = fmaf(w[l], xk[l], a);
                acc[k] = a;
            }
        }
    }
#pragma unroll
    for (int k = 0; k < MM_ROWS; k++) {
        float v = acc[k];
        for (int off = GPU_WARP / 2; off > 0; off >>= 1) v += GPU_SHFL_XOR(v, off);
        acc[k] = v;
    }
    if (lane == 0) {
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++)
            if (k < nr) y[(int64_t)(i0 + k) * ys + r] = acc[k];
    }
}

template <int TYPE>
__global__ void embed_kernel(const uint8_t *table, size_t row_bytes, int64_t n_embd, const int32_t *tokens,
                             float *x, int64_t xs) {
    gpu_grid_release();
    gpu_grid_wait();
    const int i = blockIdx.x;
    const uint8_t *row = table + (size_t)tokens[i] * row_bytes;
    float *out = x + (int64_t)i * xs;
    const int64_t n_units = (n_embd + 31) / 32;
    for (int64_t u = threadIdx.x; u < n_units; u += blockDim.x) {
        float w[32];
        const int cnt = unit<TYPE>::get(row, u, n_embd, w);
#pragma unroll
        for (int l = 0; l < 32; l++)
            if (l < cnt) out[32 * u + l] = w[l];
    }
}

/* Calls LAUNCH(T) with the type as a compile-time constant. */
#define FOR_TYPE(type, LAUNCH)                    \
    switch (type) {                               \
    case T_F32: LAUNCH(T_F32); break;             \
    case T_F16: LAUNCH(T_F16); break;             \
    case T_BF16: LAUNCH(T_BF16); break;           \
    case T_Q4_0: LAUNCH(T_Q4_0); break;           \
    case T_Q4_1: LAUNCH(T_Q4_1); break;           \
    case T_Q5_0: LAUNCH(T_Q5_0); break;           \
    case T_Q5_1: LAUNCH(T_Q5_1); break;           \
    case T_Q8_0: LAUNCH(T_Q8_0); break;           \
    case T_Q2_K: LAUNCH(T_Q2_K); break;           \
    case T_Q3_K: LAUNCH(T_Q3_K); break;           \
    case T_Q4_K: LAUNCH(T_Q4_K); break;           \
    case T_Q5_K: LAUNCH(T_Q5_K); break;           \
    case T_Q6_K: LAUNCH(T_Q6_K); break;           \
    default: snprintf(err, err_size, "cuda: tensor type %u has no GPU kernel", (unsigned)type); return -1; \
    }

extern "C" int gpu_matmul(gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in,
                          int64_t n_out, const float *x, int64_t xs, float *y, int64_t ys, int n, char *err,
                          size_t err_size) {
    if (n <= 0) return 0;
    if (gpu_matvec_supported(type, n_in)) {
        gpu_mv_args a;
        memset(&a, 0, sizeof a);
        a.w[0] = w, a.row_bytes[0] = row_bytes, a.n_out[0] = n_out, a.y[0] = y, a.ys[0] = ys;
        a.count = 1, a.n = n, a.n_in = n_in, a.x = x, a.xs = xs;
        return matvec_launch(s, type, &a, MV_PLAIN, err, err_size);
    }
    dim3 grid((unsigned)((n_out + MM_WARPS - 1) / MM_WARPS), (unsigned)((n + MM_ROWS - 1) / MM_ROWS));
    gpuError_t e = gpuSuccess;
#define MATMUL(T) \
    e = gpu_launch(s->pdl, matmul_kernel<T>, grid, MM_WARPS * GPU_WARP, s->stream, (const uint8_t *)w, row_bytes, n_in, \
               n_out, x, xs, y, ys, n)
    FOR_TYPE(type, MATMUL)
#undef MATMUL
    return launched(e, err, err_size, "matmul");
}

/* The fast kernels of cuda_matvec.cu with an epilogue (cuda.c's fused steps). */
extern "C" int gpu_matvec(gpu_stream *s, uint32_t type, const gpu_mv_args *a, int epi, char *err, size_t err_size) {
    return matvec_launch(s, type, a, epi, err, err_size);
}

extern "C" int gpu_embed(gpu_stream *s, uint32_t type, const void *table, size_t row_bytes, int64_t n_embd,
                         const int32_t *tokens, int n, float *x, int64_t xs, char *err, size_t err_size) {
    if (n <= 0) return 0;
    gpuError_t e = gpuSuccess;
#define EMBED(T) \
    e = gpu_launch(s->pdl, embed_kernel<T>, n, 128, s->stream, (const uint8_t *)table, row_bytes, n_embd, tokens, x, xs)
    FOR_TYPE(type, EMBED)
#undef EMBED
    return launched(e, err, err_size, "embedding");
}

/* ---- RMSNorm: one block of 1024 threads per row ----
 * Thread t takes values t, t + 1024, ...: the first NORM_HELD of them are
 * held in registers, the weights loaded before gpu_grid_wait() (nothing
 * writes them), so the only memory wait after it is the input's. The sum
 * of squares runs over a thread's values in order, then the warps'
 * butterflies, then the 32 warp sums in order. With Q8 the kernel also
 * writes its output rows quantized as quantize_q8_kernel does
 * (cuda_q8_block.h): warp w of pass j holds values 1024 j + 32 w .. + 31,
 * one whole block (d % 32 == 0, so every pass's bound is the same for a
 * whole warp); the float output is the same bits either way. */

#define NORM_THREADS 1024
#define NORM_HELD 8 /* values per thread in registers: rows up to 8192 wide (wider: the rest read twice) */

template <bool Q8>
__global__ void __launch_bounds__(NORM_THREADS) rmsnorm_kernel(float *dst, int64_t ds, const float *src, int64_t ss, const float *w, int64_t d,
                               float eps, int8_t *q, float2 *qds, int64_t qs) {
    gpu_grid_release();
    __shared__ float partial[NORM_THREADS / GPU_WARP];
    float wv[NORM_HELD], xv[NORM_HELD];
#pragma unroll
    for (int j = 0; j < NORM_HELD; j++) {
        const int64_t k = threadIdx.x + (int64_t)j * NORM_THREADS;
        wv[j] = k < d ? w[k] : 0.0f;
    }
    gpu_grid_wait();
    const float *x = src + (int64_t)blockIdx.x * ss;
    float *y = dst + (int64_t)blockIdx.x * ds;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < NORM_HELD; j++) {
        const int64_t k = threadIdx.x + (int64_t)j * NORM_THREADS;
        xv[j] = k < d ? x[k] : 0.0f;
        if (k < d) sum = fmaf(xv[j], xv[j], sum);
    }
    for (int64_t k = threadIdx.x + NORM_HELD * NORM_THREADS; k < d; k += NORM_THREADS) sum = fmaf(x[k], x[k], sum);
    for (int off = GPU_WARP / 2; off > 0; off >>= 1) sum += GPU_SHFL_XOR(sum, off);
    if (threadIdx.x % GPU_WARP == 0) partial[threadIdx.x / GPU_WARP] = sum;
    __syncthreads();
    float total = 0.0f;
    for (int k = 0; k < NORM_THREADS / GPU_WARP; k++) total += partial[k];
    const float scale = 1.0f / sqrtf(total / (float)d + eps);
    const int lane = threadIdx.x % GPU_WARP;
    int8_t *qrow = Q8 ? q + (int64_t)blockIdx.x * qs : NULL;
    float2 *dsrow = Q8 ? qds + (int64_t)blockIdx.x * (qs / 32) : NULL;
#pragma unroll
    for (int j = 0; j < NORM_HELD; j++) {
        const int64_t k = threadIdx.x + (int64_t)j * NORM_THREADS;
        if (k >= d) break; /* with Q8: the same for a whole warp */
        const float v = (xv[j] * scale) * wv[j];
        y[k] = v;
        if (Q8) q8_block(v, lane, qrow + (k - lane), dsrow + (k - lane) / 32);
    }
    for (int64_t k = threadIdx.x + NORM_HELD * NORM_THREADS; k < d; k += NORM_THREADS) {
        const float v = (x[k] * scale) * w[k];
        y[k] = v;
        if (Q8) q8_block(v, lane, qrow + (k - lane), dsrow + (k - lane) / 32);
    }
}

extern "C" int gpu_rmsnorm(gpu_stream *s, float *dst, int64_t ds, const float *src, int64_t ss, const float *w,
                           int64_t d, float eps, int n, char *err, size_t err_size) {
    if (n <= 0) return 0;
    return launched(gpu_launch(s->pdl, rmsnorm_kernel<false>, n, NORM_THREADS, s->stream, dst, ds, src, ss, w, d, eps,
                               (int8_t *)NULL, (float2 *)NULL, (int64_t)0),
                    err, err_size, "rmsnorm");
}

extern "C" int gpu_rmsnorm_q8(gpu_stream *s, float *dst, int64_t dst_s, const float *src, int64_t ss, const float *w,
                              int64_t d, float eps, int n, int8_t *q, float *ds, int64_t qs, char *err,
                              size_t err_size) {
    if (n <= 0) return 0;
    if (d % 32 != 0 || qs % 32 != 0 || qs < d) {
        snprintf(err, err_size, "cuda: rmsnorm_q8: width %lld, stride %lld (multiples of 32 needed)", (long long)d,
                 (long long)qs);
        return -1;
    }
    return launched(gpu_launch(s->pdl, rmsnorm_kernel<true>, n, NORM_THREADS, s->stream, dst, dst_s, src, ss, w, d,
                               eps, q, (float2 *)ds, qs),
                    err, err_size, "rmsnorm_q8");
}

/* ---- RoPE (adjacent pairs), add, SwiGLU ---- */

__global__ void rope_kernel(float *buf, int64_t stride, int64_t width, int head_dim, int rope_dim,
                            const float *cos_table, const float *sin_table) {
    gpu_grid_release();
    gpu_grid_wait();
    const int i = blockIdx.x;
    const int half = rope_dim / 2;
    const int64_t pairs = width / head_dim * half;
    float *row = buf + (int64_t)i * stride;
    for (int64_t p = threadIdx.x; p < pairs; p += blockDim.x) {
        const int64_t h = p / half;
        const int j = (int)(p % half);
        float *v = row + h * head_dim;
        const float c = cos_table[(int64_t)i * half + j], sn = sin_table[(int64_t)i * half + j];
        const float x0 = v[2 * j], x1 = v[2 * j + 1];
        v[2 * j] = x0 * c - x1 * sn;
        v[2 * j + 1] = x0 * sn + x1 * c;
    }
}

extern "C" int gpu_rope(gpu_stream *s, float *buf, int64_t stride, int64_t width, int head_dim, int rope_dim,
                        const float *cos_table, const float *sin_table, int n, char *err, size_t err_size) {
    if (n <= 0 || rope_dim < 2) return 0;
    return launched(gpu_launch(s->pdl, rope_kernel, n, 128, s->stream, buf, stride, width, head_dim, rope_dim,
                               cos_table, sin_table),
                    err, err_size, "rope");
}

__global__ void add_kernel(float *dst, int64_t ds, const float *src, int64_t ss, int64_t width) {
    gpu_grid_release();
    gpu_grid_wait();
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < width) dst[(int64_t)blockIdx.y * ds + k] += src[(int64_t)blockIdx.y * ss + k];
}

extern "C" int gpu_add(gpu_stream *s, float *dst, int64_t ds, const float *src, int64_t ss, int64_t width, int n,
                       char *err, size_t err_size) {
    if (n <= 0) return 0;
    dim3 grid((unsigned)((width + 255) / 256), (unsigned)n);
    return launched(gpu_launch(s->pdl, add_kernel, grid, 256, s->stream, dst, ds, src, ss, width), err, err_size, "add");
}

__global__ void swiglu_kernel(float *g, int64_t gs, const float *u, int64_t us, int64_t width) {
    gpu_grid_release();
    gpu_grid_wait();
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= width) return;
    float *gp = g + (int64_t)blockIdx.y * gs + k;
    const float v = *gp;
    *gp = v / (1.0f + expf(-v)) * u[(int64_t)blockIdx.y * us + k];
}

extern "C" int gpu_swiglu(gpu_stream *s, float *g, int64_t gs, const float *u, int64_t us, int64_t width, int n,
                          char *err, size_t err_size) {
    if (n <= 0) return 0;
    dim3 grid((unsigned)((width + 255) / 256), (unsigned)n);
    return launched(gpu_launch(s->pdl, swiglu_kernel, grid, 256, s->stream, g, gs, u, us, width), err, err_size,
                    "swiglu");
}

/* ---- KV cache and attention ---- */

/* KV cache values: f16 (the default) or float32 (diagnostic). */
__device__ __forceinline__ float kv_load(const unsigned short *p) { return __half2float(__ushort_as_half(*p)); }
__device__ __forceinline__ float kv_load(const float *p) { return *p; }
__device__ __forceinline__ void kv_put(unsigned short *p, float v) { *p = __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ void kv_put(float *p, float v) { *p = v; }

/* This layer's cache of table row i, K or V. */
template <typename KV>
__device__ __forceinline__ KV *kv_layer(void *base, const gpu_kv_row *row, int layer) {
    return (KV *)base + (int64_t)layer * row->layer_values;
}

template <typename KV>
__global__ void kv_store_kernel(const float *k, const float *v, int64_t stride, int64_t kv_dim, int layer,
                                const gpu_kv_row *rows) {
    gpu_grid_release();
    gpu_grid_wait();
    const int i = blockIdx.x;
    const gpu_kv_row *row = rows + i;
    KV *kc = kv_layer<KV>(row->k, row, layer) + (int64_t)row->pos * kv_dim;
    KV *vc = kv_layer<KV>(row->v, row, layer) + (int64_t)row->pos * kv_dim;
    for (int64_t d = threadIdx.x; d < kv_dim; d += blockDim.x) {
        kv_put(kc + d, k[(int64_t)i * stride + d]);
        kv_put(vc + d, v[(int64_t)i * stride + d]);
    }
}

/* A q8_0 cache (--kv-type q8_0): rows of kv_dim / 32 blocks of 34 bytes
 * (f16 scale d, 32 int8 q; value q * d), the table's layer_values counting
 * bytes. One 32-value block of a row, by one warp (lane l holds value l):
 * d = max|x| / 127, q = round(x / d) clamped to +-127, as
 * quant_quantize.c's quantize_block_q8_0 (bit-exact: no contraction). */
__device__ __forceinline__ void q8_0_put_block(uint8_t *b, float x, int lane) {
    float amax = fabsf(x);
    for (int off = GPU_WARP / 2; off > 0; off >>= 1) amax = fmaxf(amax, GPU_SHFL_XOR(amax, off));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float r = roundf(x * id);
    const int q = !(r > -127.0f) ? -127 : (r >= 127.0f ? 127 : (int)r);
    /* One 16-bit store (blocks start at even bytes). Two byte stores of the
     * f16 bits wrote 0 for the low byte on the H200 (seen 2026-12-01, nvcc
     * 13.0; the PTX was right), so the scale is stored whole. */
    if (lane == 0) *(unsigned short *)b = __half_as_ushort(__float2half_rn(d));
    b[2 + lane] = (uint8_t)(int8_t)q;
}

__device__ __forceinline__ float q8_0_get(const uint8_t *row, int64_t col) {
    const uint8_t *b = row + (col / 32) * 34;
    return __fmul_rn((float)(int8_t)b[2 + col % 32], __half2float(__ushort_as_half(*(const unsigned short *)b)));
}

/* One block of 4 warps per row; warp w takes blocks w, w + 4, ... of K, then of V. */
__global__ void kv_store_q8_0_kernel(const float *k, const float *v, int64_t stride, int64_t kv_dim, int layer,
                                     const gpu_kv_row *rows) {
    gpu_grid_release();
    gpu_grid_wait();
    const int i = blockIdx.x;
    const gpu_kv_row *row = rows + i;
    const int lane = threadIdx.x % GPU_WARP, warp = threadIdx.x / GPU_WARP, warps = blockDim.x / GPU_WARP;
    const int64_t row_bytes = kv_dim / 32 * 34;
    uint8_t *kc = (uint8_t *)row->k + (int64_t)layer * row->layer_values + (int64_t)row->pos * row_bytes;
    uint8_t *vc = (uint8_t *)row->v + (int64_t)layer * row->layer_values + (int64_t)row->pos * row_bytes;
    for (int64_t blk = warp; blk < kv_dim / 32; blk += warps) {
        q8_0_put_block(kc + 34 * blk, k[(int64_t)i * stride + 32 * blk + lane], lane);
        q8_0_put_block(vc + 34 * blk, v[(int64_t)i * stride + 32 * blk + lane], lane);
    }
}

extern "C" int gpu_kv_store(gpu_stream *s, const float *k, const float *v, int64_t stride, int64_t kv_dim, int layer,
                            const gpu_kv_row *rows, int n, int f32, char *err, size_t err_size) {
    if (n <= 0) return 0;
    gpuError_t e;
    if (f32 == GPU_KV_Q8_0)
        e = gpu_launch(s->pdl, kv_store_q8_0_kernel, n, 128, s->stream, k, v, stride, kv_dim, layer, rows);
    else if (f32) e = gpu_launch(s->pdl, kv_store_kernel<float>, n, 128, s->stream, k, v, stride, kv_dim, layer, rows);
    else e = gpu_launch(s->pdl, kv_store_kernel<unsigned short>, n, 128, s->stream, k, v, stride, kv_dim, layer, rows);
    return launched(e, err, err_size, "kv_store");
}

/* RoPE of one pair, the same operations as rope_kernel. */
__device__ __forceinline__ void rotate(float *v, int j, float c, float sn, float *o0, float *o1) {
    const float x0 = v[2 * j], x1 = v[2 * j + 1];
    *o0 = x0 * c - x1 * sn;
    *o1 = x0 * sn + x1 * c;
}

/* Row i = blockIdx.x; thread p = blockIdx.y * blockDim.x + threadIdx.x
 * rotates pair p of Q (if there is one) and stores pair p of K and V
 * (likewise): one pair per thread, so that a decode row is spread over
 * many blocks (one block looping over the row waited one memory latency
 * per pass: 24 us per layer on the H200, ncu 2026-12-01). */
#define ROPE_STORE_THREADS 128
template <typename KV>
__global__ void rope_store_kernel(float *q, int64_t qs, int64_t q_width, float *k, const float *v, int64_t kvs,
                                  int64_t kv_dim, int head_dim, int rope_dim, const float *cos_table,
                                  const float *sin_table, int layer, const gpu_kv_row *rows) {
    gpu_grid_release();
    gpu_grid_wait();
    const int i = blockIdx.x;
    const int64_t p = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
    const int half = rope_dim / 2, hpairs = head_dim / 2;
    const float *cs = cos_table + (int64_t)i * half, *sn = sin_table + (int64_t)i * half;
    float *qr = q + (int64_t)i * qs;
    if (p < q_width / head_dim * half) {
        float *h = qr + p / half * head_dim;
        const int j = (int)(p % half);
        float a, b;
        rotate(h, j, cs[j], sn[j], &a, &b);
        h[2 * j] = a, h[2 * j + 1] = b;
    }
    const gpu_kv_row *row = rows + i;
    KV *kc = kv_layer<KV>(row->k, row, layer) + (int64_t)row->pos * kv_dim;
    KV *vc = kv_layer<KV>(row->v, row, layer) + (int64_t)row->pos * kv_dim;
    float *kr = k + (int64_t)i * kvs;
    const float *vr = v + (int64_t)i * kvs;
    if (p < kv_dim / 2) {
        float *h = kr + p / hpairs * head_dim;
        const int j = (int)(p % hpairs);
        float a = h[2 * j], b = h[2 * j + 1];
        if (j < half) {
            rotate(h, j, cs[j], sn[j], &a, &b);
            h[2 * j] = a, h[2 * j + 1] = b;
        }
        kv_put(kc + 2 * p, a);
        kv_put(kc + 2 * p + 1, b);
        kv_put(vc + 2 * p, vr[2 * p]);
        kv_put(vc + 2 * p + 1, vr[2 * p + 1]);
    }
}

extern "C" int gpu_rope_store(gpu_stream *s, float *q, int64_t qs, int64_t q_width, float *k, const float *v,
                              int64_t kvs, int64_t kv_dim, int head_dim, int rope_dim, const float *cos_table,
                              const float *sin_table, int layer, const gpu_kv_row *rows, int n, int f32, char *err,
                              size_t err_size) {
    if (n <= 0) return 0;
    if (f32 == GPU_KV_Q8_0) {
        snprintf(err, err_size, "cuda: rope_store has no q8_0 cache kernel (rope and kv_store run apart)");
        return -1;
    }
    const int64_t q_pairs = q_width / head_dim * (rope_dim / 2), pairs = q_pairs > kv_dim / 2 ? q_pairs : kv_dim / 2;
    const dim3 grid((unsigned)n, (unsigned)((pairs + ROPE_STORE_THREADS - 1) / ROPE_STORE_THREADS));
    gpuError_t e;
    if (f32)
        e = gpu_launch(s->pdl, rope_store_kernel<float>, grid, ROPE_STORE_THREADS, s->stream, q, qs, q_width, k, v,
                       kvs, kv_dim, head_dim, rope_dim, cos_table, sin_table, layer, rows);
    else
        e = gpu_launch(s->pdl, rope_store_kernel<unsigned short>, grid, ROPE_STORE_THREADS, s->stream, q, qs, q_width,
                       k, v, kvs, kv_dim, head_dim, rope_dim, cos_table, sin_table, layer, rows);
    return launched(e, err, err_size, "rope_store");
}

/* The simple attention (fallback for shapes the split kernel does not
 * take): one block of ATT_WARPS warps per (head, row). Warp w takes keys
 * w, w + ATT_WARPS, ... with an online softmax (running max, sum and
 * weighted V in registers, lane l holding dims l, l + 32, ...); the warps
 * are then merged in warp order. The order depends only on pos. */
#define ATT_WARPS 4
#define ATT_MAX_DIMS 8 /* head_dim <= 256 */

template <typename KV>
__global__ void attend_kernel(const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
                              int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows) {
    gpu_grid_release();
    gpu_grid_wait();
    __shared__ float s_max[ATT_WARPS], s_sum[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][ATT_MAX_DIMS * GPU_WARP];
    const int h = blockIdx.x, i = blockIdx.y;
    const int lane = threadIdx.x % GPU_WARP, warp = threadIdx.x / GPU_WARP;
    const int kvh = h / (n_head / n_head_kv);
    const gpu_kv_row *row = rows + i;
    const int pos = row->pos;
    const KV *kc = kv_layer<KV>(row->k, row, layer) + (int64_t)kvh * head_dim;
    const KV *vc = kv_layer<KV>(row->v, row, layer) + (int64_t)kvh * head_dim;
    const float *qh = q + (int64_t)i * qs + (int64_t)h * head_dim;
    float qr[ATT_MAX_DIMS], acc[ATT_MAX_DIMS];
#pragma unroll
    for (int t = 0; t < ATT_MAX_DIMS; t++) {
        const int d = lane + GPU_WARP * t;
        qr[t] = d < head_dim ? qh[d] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int key = warp; key <= pos; key += ATT_WARPS) {
        const KV *kr = kc + (int64_t)key * kv_dim;
        float sc = 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAX_DIMS; t++) {
            const int d = lane + GPU_WARP * t;
            if (d < head_dim) sc = fmaf(qr[t], kv_load(kr + d), sc);
        }
        for (int off = GPU_WARP / 2; off > 0; off >>= 1) sc += GPU_SHFL_XOR(sc, off);
        sc *= scale;
        const float m_new = fmaxf(m, sc);
        const float corr = expf(m - m_new);
        const float p = expf(sc - m_new);
        l = l * corr + p;
        const KV *vr = vc + (int64_t)key * kv_dim;
#pragma unroll
        for (int t = 0; t < ATT_MAX_DIMS; t++) {
            const int d = lane + GPU_WARP * t;
            if (d < head_dim) acc[t] = acc[t] * corr + p * kv_load(vr + d);
        }
        m = m_new;
    }
    if (lane == 0) {
        s_max[warp] = m;
        s_sum[warp] = l;
    }
#pragma unroll
    for (int t = 0; t < ATT_MAX_DIMS; t++) s_acc[warp][lane + GPU_WARP * t] = acc[t];
    __syncthreads();
    float mx = s_max[0];
    for (int w = 1; w < ATT_WARPS; w++) mx = fmaxf(mx, s_max[w]);
    float total = 0.0f, factor[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        factor[w] = s_max[w] == -INFINITY ? 0.0f : expf(s_max[w] - mx);
        total += s_sum[w] * factor[w];
    }
    float *out = att + (int64_t)i * as + (int64_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) v += s_acc[w][d] * factor[w];
        out[d] = v / total;
    }
}

/* The same over a q8_0 cache (values read one at a time, q * d as quant.c). */
__global__ void attend_q8_0_kernel(const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
                                   int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows) {
    gpu_grid_release();
    gpu_grid_wait();
    __shared__ float s_max[ATT_WARPS], s_sum[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][ATT_MAX_DIMS * GPU_WARP];
    const int h = blockIdx.x, i = blockIdx.y;
    const int lane = threadIdx.x % GPU_WARP, warp = threadIdx.x / GPU_WARP;
    const int kvh = h / (n_head / n_head_kv);
    const gpu_kv_row *row = rows + i;
    const int pos = row->pos;
    const int64_t row_bytes = kv_dim / 32 * 34, c0 = (int64_t)kvh * head_dim;
    const uint8_t *kc = (const uint8_t *)row->k + (int64_t)layer * row->layer_values;
    const uint8_t *vc = (const uint8_t *)row->v + (int64_t)layer * row->layer_values;
    const float *qh = q + (int64_t)i * qs + (int64_t)h * head_dim;
    float qr[ATT_MAX_DIMS], acc[ATT_MAX_DIMS];
#pragma unroll
    for (int t = 0; t < ATT_MAX_DIMS; t++) {
        const int d = lane + GPU_WARP * t;
        qr[t] = d < head_dim ? qh[d] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int key = warp; key <= pos; key += ATT_WARPS) {
        const uint8_t *kr = kc + (int64_t)key * row_bytes;
        float sc = 0.0f;
#pragma unroll
        for (int t = 0; t < ATT_MAX_DIMS; t++) {
            const int d = lane + GPU_WARP * t;
            if (d < head_dim) sc = fmaf(qr[t], q8_0_get(kr, c0 + d), sc);
        }
        for (int off = GPU_WARP / 2; off > 0; off >>= 1) sc += GPU_SHFL_XOR(sc, off);
        sc *= scale;
        const float m_new = fmaxf(m, sc);
        const float corr = expf(m - m_new);
        const float p = expf(sc - m_new);
        l = l * corr + p;
        const uint8_t *vr = vc + (int64_t)key * row_bytes;
#pragma unroll
        for (int t = 0; t < ATT_MAX_DIMS; t++) {
            const int d = lane + GPU_WARP * t;
            if (d < head_dim) acc[t] = acc[t] * corr + p * q8_0_get(vr, c0 + d);
        }
        m = m_new;
    }
    if (lane == 0) {
        s_max[warp] = m;
        s_sum[warp] = l;
    }
#pragma unroll
    for (int t = 0; t < ATT_MAX_DIMS; t++) s_acc[warp][lane + GPU_WARP * t] = acc[t];
    __syncthreads();
    float mx = s_max[0];
    for (int w = 1; w < ATT_WARPS; w++) mx = fmaxf(mx, s_max[w]);
    float total = 0.0f, factor[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        factor[w] = s_max[w] == -INFINITY ? 0.0f : expf(s_max[w] - mx);
        total += s_sum[w] * factor[w];
    }
    float *out = att + (int64_t)i * as + (int64_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) v += s_acc[w][d] * factor[w];
        out[d] = v / total;
    }
}

/* Split-K attention ("flash-decoding"), for head_dim = 32 DL (DL = 1, 2,
 * 4, 8) and at most SPLIT_GMAX query heads per KV head.
 *
 * attend_split_kernel: block (KV head hk, split s, row i) of SPLIT_WARPS
 * warps. Row i's keys 0 .. pos are cut into `splits` ranges of
 * ceil((pos + 1) / splits) keys; the block takes range s, its warp w the
 * keys w, w + SPLIT_WARPS, ... of it, for all the G query heads of hk at
 * once (each K and V row is read once for the G heads). Lane l holds dims
 * DL l .. DL l + DL - 1 (one 2 DL-byte load of an f16 row). Online softmax
 * per head; the warps are merged in warp order into the partial (max, sum,
 * weighted V) of the range, in scratch. attend_merge_kernel merges the
 * ranges in order. Every order depends only on pos and the constants, so
 * a row's result does not depend on the other rows (batch-invariant). */
#define SPLIT_WARPS 4
#define SPLIT_GMAX 8
#define SPLIT_MAX 64
#define SPLIT_PIPE 4 /* keys per warp whose K and V rows are loaded together */

extern "C" int gpu_attend_splits(int n_head_kv) {
    int sms = 132;
    int dev = 0;
    if (gpuGetDevice(&dev) == gpuSuccess) gpuDeviceGetAttribute(&sms, gpuDevAttrMultiProcessorCount, dev);
    int splits = (8 * sms + n_head_kv - 1) / (n_head_kv > 0 ? n_head_kv : 1);
    return splits < 1 ? 1 : splits > SPLIT_MAX ? SPLIT_MAX : splits;
}

extern "C" size_t gpu_attend_scratch_floats(int n_head, int head_dim, int splits, int n) {
    return (size_t)n * (size_t)n_head * (size_t)splits * (size_t)(head_dim + 2);
}

template <int DL> struct kv_vec;
template <> struct kv_vec<1> {
    static __device__ __forceinline__ void get(const unsigned short *p, float *o) { o[0] = kv_load(p); }
    static __device__ __forceinline__ void get(const float *p, float *o) { o[0] = *p; }
};
template <> struct kv_vec<2> {
    static __device__ __forceinline__ void get(const unsigned short *p, float *o) {
        const float2 f = __half22float2(*(const __half2 *)p);
        o[0] = f.x, o[1] = f.y;
    }
    static __device__ __forceinline__ void get(const float *p, float *o) {
        const float2 f = *(const float2 *)p;
        o[0] = f.x, o[1] = f.y;
    }
};
template <> struct kv_vec<4> {
    static __device__ __forceinline__ void get(const unsigned short *p, float *o) {
        const uint2 u = *(const uint2 *)p;
        const float2 a = __half22float2(*(const __half2 *)&u.x), b = __half22float2(*(const __half2 *)&u.y);
        o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
    }
    static __device__ __forceinline__ void get(const float *p, float *o) {
        const float4 f = *(const float4 *)p;
        o[0] = f.x, o[1] = f.y, o[2] = f.z, o[3] = f.w;
    }
};
template <> struct kv_vec<8> {
    static __device__ __forceinline__ void get(const unsigned short *p, float *o) {
        const uint4 u = *(const uint4 *)p;
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __half22float2(*(const __half2 *)&w[k]);
            o[2 * k] = f.x, o[2 * k + 1] = f.y;
        }
    }
    static __device__ __forceinline__ void get(const float *p, float *o) {
        const float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    }
};

/* One key of a warp's online softmax, for the G query heads of its KV head. */
template <int DL, int GM>
__device__ __forceinline__ void split_key(const float (*qr)[DL], const float *kv, const float *vv, int G, float scale,
                                          float *m, float *l, float (*acc)[DL]) {
#pragma unroll
    for (int g = 0; g < GM; g++) {
        if (g >= G) break;
        float sc = 0.0f;
#pragma unroll
        for (int t = 0; t < DL; t++) sc = fmaf(qr[g][t], kv[t], sc);
#pragma unroll
        for (int off = GPU_WARP / 2; off > 0; off >>= 1) sc += GPU_SHFL_XOR(sc, off);
        sc *= scale;
        const float m_new = fmaxf(m[g], sc);
        const float corr = expf(m[g] - m_new);
        const float p = expf(sc - m_new);
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int t = 0; t < DL; t++) acc[g][t] = acc[g][t] * corr + p * vv[t];
        m[g] = m_new;
    }
}

template <typename KV, int DL, int GM>
__global__ void __launch_bounds__(SPLIT_WARPS * GPU_WARP)
    attend_split_kernel(const float *q, int64_t qs, int64_t kv_dim, int n_head, int n_head_kv, int head_dim,
                        float scale, int layer, const gpu_kv_row *rows, int splits, float *part) {
    gpu_grid_release();
    gpu_grid_wait();
    __shared__ float s_m[SPLIT_WARPS][GM], s_l[SPLIT_WARPS][GM];
    __shared__ float s_acc[SPLIT_WARPS][GM][DL * GPU_WARP];
    const int hk = blockIdx.x, s = blockIdx.y, i = blockIdx.z;
    const int lane = threadIdx.x % GPU_WARP, warp = threadIdx.x / GPU_WARP;
    const int G = n_head / n_head_kv;
    const gpu_kv_row *row = rows + i;
    const int total = row->pos + 1;
    const int chunk = (total + splits - 1) / splits;
    const int lo = s * chunk, hi = lo + chunk < total ? lo + chunk : total;
    const KV *kc = kv_layer<KV>(row->k, row, layer) + (int64_t)hk * head_dim + DL * lane;
    const KV *vc = kv_layer<KV>(row->v, row, layer) + (int64_t)hk * head_dim + DL * lane;
    float qr[GM][DL], acc[GM][DL], m[GM], l[GM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int t = 0; t < DL; t++) {
            qr[g][t] = g < G ? q[(int64_t)i * qs + (int64_t)(hk * G + g) * head_dim + DL * lane + t] : 0.0f;
            acc[g][t] = 0.0f;
        }
    }
    /* keys lo + warp, + SPLIT_WARPS, ... in order; their K and V rows are
     * loaded SPLIT_PIPE at a time before any is used */
    int key = lo + warp;
    for (; key + (SPLIT_PIPE - 1) * SPLIT_WARPS < hi; key += SPLIT_PIPE * SPLIT_WARPS) {
        float kv[SPLIT_PIPE][DL], vv[SPLIT_PIPE][DL];
#pragma unroll
        for (int u = 0; u < SPLIT_PIPE; u++) {
            kv_vec<DL>::get(kc + (int64_t)(key + u * SPLIT_WARPS) * kv_dim, kv[u]);
            kv_vec<DL>::get(vc + (int64_t)(key + u * SPLIT_WARPS) * kv_dim, vv[u]);
        }
#pragma unroll
        for (int u = 0; u < SPLIT_PIPE; u++) split_key<DL, GM>(qr, kv[u], vv[u], G, scale, m, l, acc);
    }
    for (; key < hi; key += SPLIT_WARPS) {
        float kv[DL], vv[DL];
        kv_vec<DL>::get(kc + (int64_t)key * kv_dim, kv);
        kv_vec<DL>::get(vc + (int64_t)key * kv_dim, vv);
        split_key<DL, GM>(qr, kv, vv, G, scale, m, l, acc);
    }
#pragma unroll
    for (int g = 0; g < GM; g++) {
        if (g >= G) break;
        if (lane == 0) s_m[warp][g] = m[g], s_l[warp][g] = l[g];
#pragma unroll
        for (int t = 0; t < DL; t++) s_acc[warp][g][DL * lane + t] = acc[g][t];
    }
    __syncthreads();
    /* part[i][h][s]: m, l, then head_dim weighted values */
    for (int g = warp; g < G; g += SPLIT_WARPS) {
        float mx = s_m[0][g];
        for (int w = 1; w < SPLIT_WARPS; w++) mx = fmaxf(mx, s_m[w][g]);
        float f[SPLIT_WARPS], sum = 0.0f;
        for (int w = 0; w < SPLIT_WARPS; w++) {
            f[w] = s_m[w][g] == -INFINITY ? 0.0f : expf(s_m[w][g] - mx);
            sum += s_l[w][g] * f[w];
        }
        float *out = part + (((int64_t)i * n_head + hk * G + g) * splits + s) * (head_dim + 2);
        if (lane == 0) out[0] = mx, out[1] = sum;
        for (int d = lane; d < head_dim; d += GPU_WARP) {
            float v = 0.0f;
            for (int w = 0; w < SPLIT_WARPS; w++) v += s_acc[w][g][d] * f[w];
            out[2 + d] = v;
        }
    }
}

/* Ranges merged in range order: total = sum of sum_s * e_s, out = sum of
 * acc_s * e_s / total with e_s = exp(max_s - max), over the ranges that
 * saw keys. Each e_s is computed once, by one thread, into shared memory
 * (every thread recomputing every e_s made this kernel wait on its loads
 * and exponentials: 8.7 us per layer on the H200, ncu 2026-12-01); the
 * sums keep their order. */
__global__ void attend_merge_kernel(const float *part, float *att, int64_t as, int n_head, int head_dim, int splits,
                                    int8_t *xq, float2 *xds, int64_t xqs) {
    gpu_grid_release();
    gpu_grid_wait();
    __shared__ float weight[SPLIT_MAX], range_sum[SPLIT_MAX], total_all;
    __shared__ bool has_keys[SPLIT_MAX];
    const int h = blockIdx.x, i = blockIdx.y;
    const float *p = part + ((int64_t)i * n_head + h) * splits * (head_dim + 2);
    float mx = -INFINITY; /* max is exact in any order: each warp reduces all ranges */
    for (int s = threadIdx.x % GPU_WARP; s < splits; s += GPU_WARP) mx = fmaxf(mx, p[(int64_t)s * (head_dim + 2)]);
    for (int off = GPU_WARP / 2; off > 0; off >>= 1) mx = fmaxf(mx, GPU_SHFL_XOR(mx, off));
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        const float ms = p[(int64_t)s * (head_dim + 2)];
        has_keys[s] = ms != -INFINITY;
        weight[s] = has_keys[s] ? expf(ms - mx) : 0.0f;
        range_sum[s] = p[(int64_t)s * (head_dim + 2) + 1];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int s = 0; s < splits; s++)
            if (has_keys[s]) total += range_sum[s] * weight[s];
        total_all = total;
    }
    __syncthreads();
    float *out = att + (int64_t)i * as + (int64_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < splits; s++)
            if (has_keys[s]) v += p[(int64_t)s * (head_dim + 2) + 2 + d] * weight[s];
        out[d] = v / total_all;
        if (xq) { /* head_dim % 32 == 0: a warp holds one whole block */
            const int lane = threadIdx.x % GPU_WARP;
            const int64_t c = (int64_t)h * head_dim + d - lane; /* the block's first column */
            q8_block(out[d], lane, xq + (int64_t)i * xqs + c, xds + (int64_t)i * (xqs / 32) + c / 32);
        }
    }
}

template <typename KV, int GM>
static gpuError_t launch_split_g(const gpu_stream *s, int dl, dim3 grid, const float *q, int64_t qs, int64_t kv_dim, int n_head,
                                 int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows,
                                 int splits, float *part) {
    const int threads = SPLIT_WARPS * GPU_WARP;
    switch (dl) {
    case 1:
        return gpu_launch(s->pdl, attend_split_kernel<KV, 1, GM>, grid, threads, s->stream, q, qs, kv_dim, n_head,
                          n_head_kv, head_dim, scale, layer, rows, splits, part);
    case 2:
        return gpu_launch(s->pdl, attend_split_kernel<KV, 2, GM>, grid, threads, s->stream, q, qs, kv_dim, n_head,
                          n_head_kv, head_dim, scale, layer, rows, splits, part);
    case 4:
        return gpu_launch(s->pdl, attend_split_kernel<KV, 4, GM>, grid, threads, s->stream, q, qs, kv_dim, n_head,
                          n_head_kv, head_dim, scale, layer, rows, splits, part);
    default:
        return gpu_launch(s->pdl, attend_split_kernel<KV, 8, GM>, grid, threads, s->stream, q, qs, kv_dim, n_head,
                          n_head_kv, head_dim, scale, layer, rows, splits, part);
    }
}

/* GM: the smallest compiled bound on the query heads per KV head (registers
 * hold GM heads' queries and sums). */
template <typename KV>
static gpuError_t launch_split(const gpu_stream *s, int dl, dim3 grid, const float *q, int64_t qs, int64_t kv_dim,
                               int n_head, int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows,
                               int splits, float *part) {
    const int g = n_head / n_head_kv;
    if (g <= 1)
        return launch_split_g<KV, 1>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, splits,
                                     part);
    if (g <= 2)
        return launch_split_g<KV, 2>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, splits,
                                     part);
    if (g <= 4)
        return launch_split_g<KV, 4>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, splits,
                                     part);
    return launch_split_g<KV, 8>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, splits,
                                 part);
}

static int attend(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim, int n_head,
                  int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows, int n, int f32,
                  float *scratch, int splits, int8_t *xq, float *xds, int64_t xqs, int *quantized, char *err,
                  size_t err_size) {
    *quantized = 0;
    if (n <= 0) return 0;
    if (head_dim > ATT_MAX_DIMS * GPU_WARP) {
        snprintf(err, err_size, "cuda: head_dim %d is above the attention kernel's %d", head_dim,
                 ATT_MAX_DIMS * GPU_WARP);
        return -1;
    }
    if (f32 == GPU_KV_Q8_0) {
        return launched(gpu_launch(s->pdl, attend_q8_0_kernel, dim3((unsigned)n_head, (unsigned)n), ATT_WARPS * GPU_WARP,
                                   s->stream, q, qs, att, as, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows),
                        err, err_size, "attention (q8_0 cache)");
    }
    const int dl = head_dim / GPU_WARP;
    const bool split = head_dim % GPU_WARP == 0 && (dl == 1 || dl == 2 || dl == 4 || dl == 8) &&
                       n_head / n_head_kv <= SPLIT_GMAX && scratch != NULL && splits >= 1 && splits <= SPLIT_MAX;
    if (split) {
        dim3 grid((unsigned)n_head_kv, (unsigned)splits, (unsigned)n);
        const gpuError_t e = f32 ? launch_split<float>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim, scale,
                                                       layer, rows, splits, scratch)
                                 : launch_split<unsigned short>(s, dl, grid, q, qs, kv_dim, n_head, n_head_kv, head_dim,
                                                                scale, layer, rows, splits, scratch);
        if (launched(e, err, err_size, "attention") != 0) return -1;
        const bool q8 = xq != NULL && head_dim % 32 == 0;
        *quantized = q8;
        return launched(gpu_launch(s->pdl, attend_merge_kernel, dim3((unsigned)n_head, (unsigned)n), 128, s->stream,
                                   scratch, att, as, n_head, head_dim, splits, q8 ? xq : NULL, (float2 *)xds, xqs),
                        err, err_size, "attention merge");
    }
    dim3 grid((unsigned)n_head, (unsigned)n);
    gpuError_t e;
    if (f32)
        e = gpu_launch(s->pdl, attend_kernel<float>, grid, ATT_WARPS * GPU_WARP, s->stream, q, qs, att, as, kv_dim,
                       n_head, n_head_kv, head_dim, scale, layer, rows);
    else
        e = gpu_launch(s->pdl, attend_kernel<unsigned short>, grid, ATT_WARPS * GPU_WARP, s->stream, q, qs, att, as,
                       kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows);
    return launched(e, err, err_size, "attention");
}

extern "C" int gpu_attend(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim,
                          int n_head, int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows,
                          int n, int f32, float *scratch, int splits, char *err, size_t err_size) {
    int quantized = 0;
    return attend(s, q, qs, att, as, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, n, f32, scratch, splits,
                  NULL, NULL, 0, &quantized, err, err_size);
}

extern "C" int gpu_attend_q8(gpu_stream *s, const float *q, int64_t qs, float *att, int64_t as, int64_t kv_dim,
                             int n_head, int n_head_kv, int head_dim, float scale, int layer, const gpu_kv_row *rows,
                             int n, int f32, float *scratch, int splits, int8_t *xq, float *xds, int64_t xqs,
                             int *quantized, char *err, size_t err_size) {
    return attend(s, q, qs, att, as, kv_dim, n_head, n_head_kv, head_dim, scale, layer, rows, n, f32, scratch, splits,
                  xq, xds, xqs, quantized, err, err_size);
}

/* ---- dequantization to f16 rows (the fast prefill's GEMM, cuda_gemm.cu) ----
 *
 * One thread per 32-value unit: the unit decoders above (bit-exact with
 * quant_dequantize), then each value rounded to f16 (nearest even). */

template <int TYPE>
__global__ void dequant_f16_kernel(const uint8_t *W, size_t row_bytes, int64_t n_in, int64_t n_rows,
                                   unsigned short *out) {
    gpu_grid_release();
    gpu_grid_wait();
    const int64_t n_units = (n_in + 31) / 32;
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_rows * n_units) return;
    const int64_t r = t / n_units, u = t % n_units;
    float w[32];
    const int cnt = unit<TYPE>::get(W + (size_t)r * row_bytes, u, n_in, w);
    unsigned short *o = out + r * n_in + 32 * u;
    if (cnt == 32 && n_in % 8 == 0) { /* 16-byte aligned: four 16-byte stores */
#pragma unroll
        for (int c = 0; c < 4; c++) {
            uint4 v;
            v.x = (uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 0])) |
                  ((uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 1])) << 16);
            v.y = (uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 2])) |
                  ((uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 3])) << 16);
            v.z = (uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 4])) |
                  ((uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 5])) << 16);
            v.w = (uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 6])) |
                  ((uint32_t)__half_as_ushort(__float2half_rn(w[8 * c + 7])) << 16);
            ((uint4 *)o)[c] = v;
        }
    } else {
#pragma unroll
        for (int l = 0; l < 32; l++)
            if (l < cnt) o[l] = __half_as_ushort(__float2half_rn(w[l]));
    }
}

extern "C" int gpu_dequant_f16(gpu_stream *s, uint32_t type, const void *w, size_t row_bytes, int64_t n_in,
                               int64_t n_rows, uint16_t *out, char *err, size_t err_size) {
    if (n_rows <= 0) return 0;
    const int64_t units = n_rows * ((n_in + 31) / 32);
    const unsigned blocks = (unsigned)((units + 255) / 256);
    gpuError_t e = gpuSuccess;
#define DEQUANT(T) \
    e = gpu_launch(s->pdl, dequant_f16_kernel<T>, blocks, 256, s->stream, (const uint8_t *)w, row_bytes, n_in, n_rows, \
               (unsigned short *)out)
    FOR_TYPE(type, DEQUANT)
#undef DEQUANT
    return launched(e, err, err_size, "dequantization to f16");
}
