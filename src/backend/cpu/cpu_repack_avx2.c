/* cpu_repack_avx2.c: the AVX2 kernel on repacked groups (cpu_repack.h): the
 * rows rebuilt in the file's layout and cpu_q8_avx2.c's kernels, so their
 * bits by construction. Only forced (tests) or for rows past the VNNI
 * kernels' buffers: without VNNI the weights are not repacked. */
#if defined(__x86_64__) && defined(__GNUC__)
#include "backend/cpu/cpu_repack.h"

void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);

void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    cpu_repack_tile_rebuilt(rp, r0, n_rows, xq, xq_stride, n_x, y, ys, cpu_q8_avx2());
}
#endif
