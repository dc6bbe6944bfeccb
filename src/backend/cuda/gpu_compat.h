/* gpu_compat.h: the thin layer between greta's GPU kernels and the vendor
 * runtime. The kernels (cuda_device.cu) use only what is named here plus
 * plain CUDA C++ that HIP also compiles (__global__, __shared__, threadIdx,
 * warp shuffles of 32 lanes, templates), so a HIP build for AMD GPUs should
 * need only the second branch below. That build is untested (docs/cuda.md);
 * note that AMD's 64-lane wavefronts would also need GPU_WARP = 64 in the
 * reductions, which run over GPU_WARP lanes. */
#ifndef GRETA_GPU_COMPAT_H
#define GRETA_GPU_COMPAT_H

#ifdef GRETA_HIP
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>
typedef hipStream_t gpuStream_t;
typedef hipError_t gpuError_t;
#define gpuSuccess hipSuccess
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemcpy2DAsync hipMemcpy2DAsync
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemGetInfo hipMemGetInfo
#define gpuStreamCreate hipStreamCreate
#define gpuStreamDestroy hipStreamDestroy
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuSetDevice hipSetDevice
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuDeviceProp hipDeviceProp_t
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuGraph_t hipGraph_t
#define gpuGraphExec_t hipGraphExec_t
#define gpuStreamBeginCapture hipStreamBeginCapture
#define gpuStreamCaptureModeThreadLocal hipStreamCaptureModeThreadLocal
#define gpuStreamEndCapture hipStreamEndCapture
#define gpuGraphInstantiate(exec, graph) hipGraphInstantiate(exec, graph, NULL, NULL, 0)
#define gpuGraphDestroy hipGraphDestroy
#define gpuGraphLaunch hipGraphLaunch
#define gpuGraphExecDestroy hipGraphExecDestroy
#define gpuGetDevice hipGetDevice
#define gpuDeviceGetAttribute hipDeviceGetAttribute
#define gpuDevAttrMultiProcessorCount hipDeviceAttributeMultiprocessorCount
#define GPU_SHFL_XOR(v, m) __shfl_xor((v), (m))
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>
typedef cudaStream_t gpuStream_t;
typedef cudaError_t gpuError_t;
#define gpuSuccess cudaSuccess
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemcpy2DAsync cudaMemcpy2DAsync
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemGetInfo cudaMemGetInfo
#define gpuStreamCreate cudaStreamCreate
#define gpuStreamDestroy cudaStreamDestroy
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuSetDevice cudaSetDevice
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuDeviceProp cudaDeviceProp
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuGraph_t cudaGraph_t
#define gpuGraphExec_t cudaGraphExec_t
#define gpuStreamBeginCapture cudaStreamBeginCapture
#define gpuStreamCaptureModeThreadLocal cudaStreamCaptureModeThreadLocal
#define gpuStreamEndCapture cudaStreamEndCapture
#define gpuGraphInstantiate(exec, graph) cudaGraphInstantiate(exec, graph, 0)
#define gpuGraphDestroy cudaGraphDestroy
#define gpuGraphLaunch cudaGraphLaunch
#define gpuGraphExecDestroy cudaGraphExecDestroy
#define gpuGetDevice cudaGetDevice
#define gpuDeviceGetAttribute cudaDeviceGetAttribute
#define gpuDevAttrMultiProcessorCount cudaDevAttrMultiProcessorCount
#define GPU_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#endif

#define GPU_WARP 32

/* ---- programmatic dependent launch (sm_90; docs/cuda.md "Programmatic
 * dependent launch") ----
 * A kernel launched by gpu_launch(pdl = 1, ...) may start while the kernel
 * before it in the stream is still running. It must call gpu_grid_wait()
 * before its first access to memory that earlier work writes or reads
 * (activations, the KV cache, scratch): only the weights, which nothing
 * writes, may be read before it. gpu_grid_wait() returns when the grids
 * this one depends on have finished and their writes are visible. Every
 * thread that touches memory calls it, so a kernel ends only after the one
 * before it has: the stream's order holds transitively.
 * gpu_grid_release() tells the runtime that the next kernel of the stream
 * may start launching (its blocks then run up to their own gpu_grid_wait).
 * Both are no-ops in a kernel launched without the attribute, and in a HIP
 * build. */
__device__ __forceinline__ void gpu_grid_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(GRETA_HIP)
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void gpu_grid_release(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(GRETA_HIP)
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Activations, written by the kernel before this one: plain (coherent)
 * loads, never __ldg. Under programmatic dependent launch that kernel may
 * still run when this one starts, and ptxas moves non-coherent (.nc)
 * loads above griddepcontrol.wait (seen in the SASS, 2026-12-01); the
 * weights, which nothing writes, keep __ldg (the matrix-vector files'
 * ld16 / ldq16 loaders). */
__device__ __forceinline__ uint4 act16(const void *p) { return *(const uint4 *)p; }
__device__ __forceinline__ float4 act_f4(const void *p) { return *(const float4 *)p; }
__device__ __forceinline__ float2 act_f2(const float2 *p) { return *p; }
__device__ __forceinline__ float act_f(const float *p) { return *p; }

/* Launches kernel<<<grid, block, 0, stream>>>(args...), with programmatic
 * stream serialization when pdl is nonzero. Returns the launch's error and
 * leaves none behind for a later gpuGetLastError(). The arguments convert
 * to the kernel's parameter types implicitly, as in <<<>>> (a const pointer
 * for a non-const parameter does not compile). */
template <typename... Params, typename... Args>
static inline gpuError_t gpu_launch(int pdl, void (*kernel)(Params...), dim3 grid, dim3 block, gpuStream_t stream,
                                    Args... args) {
#ifdef GRETA_HIP
    (void)pdl;
    hipLaunchKernelGGL(kernel, grid, block, 0, stream, static_cast<Params>(args)...);
    return hipGetLastError();
#else
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    config.attrs = &attr;
    config.numAttrs = pdl ? 1 : 0;
    const cudaError_t e = cudaLaunchKernelEx(&config, kernel, args...);
    if (e != cudaSuccess) cudaGetLastError(); /* returned here, not left for the next check */
    return e;
#endif
}

#endif
