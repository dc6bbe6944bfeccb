// copy_bandwidth.cu: the GPU's copy bandwidth, for scripts/cuda/bench-cuda's
// bandwidth share (docs/benchmarks.md): device-to-device cudaMemcpy of a
// 2 GiB buffer (far beyond the L2), median of 20 timed copies after 3
// warm-ups, timed with events; prints bytes read + bytes written per second.
//   nvcc -O2 -o copy_bandwidth copy_bandwidth.cu && ./copy_bandwidth
#include <algorithm>
#include <cstdio>
#include <vector>

#include <cuda_runtime.h>

static int check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    std::fprintf(stderr, "copy_bandwidth: %s: %s\n", what, cudaGetErrorString(e));
    return 1;
}

int main() {
    const size_t bytes = (size_t)2 << 30;
    void *a = nullptr, *b = nullptr;
    if (check(cudaMalloc(&a, bytes), "cudaMalloc") || check(cudaMalloc(&b, bytes), "cudaMalloc")) return 1;
    if (check(cudaMemset(a, 0x5a, bytes), "cudaMemset") || check(cudaMemset(b, 0x3c, bytes), "cudaMemset")) return 1;
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    std::vector<float> ms;
    for (int r = 0; r < 23; r++) {
        cudaEventRecord(t0);
        if (check(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy")) return 1;
        cudaEventRecord(t1);
        cudaEventSynchronize(t1);
        float m = 0;
        cudaEventElapsedTime(&m, t0, t1);
        if (r >= 3) ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2] / 1e3;
    std::printf("copy_bandwidth_bytes_per_s %.6e\n", 2.0 * (double)bytes / med);
    std::printf("# %zu bytes copied device to device, median of %zu: %.3f ms (min %.3f, max %.3f); read + write %.1f GB/s\n",
                bytes, ms.size(), med * 1e3, ms.front(), ms.back(), 2.0 * (double)bytes / med / 1e9);
    return 0;
}
