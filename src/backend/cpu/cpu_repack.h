/* cpu_repack.h: weights repacked at load for the q8 path (cpu_q8.h) into
 * groups of rows whose blocks are interleaved, so the AVX-512 VNNI kernels
 * read one contiguous stream per group and convert the rows' scales with
 * one instruction.
 *
 * Blocks of 32 (types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; n_in a multiple of 32):
 * groups of G = 16 rows, laid out so that int32 lane r of a 512-bit
 * vpdpbusd is row r: each lane sums 4 products of one row, so the 8
 * vpdpbusd of a block leave each row's exact block sum in its own lane and
 * one conversion and one FMA serve 16 outputs (cpu_q8.h's order: one float
 * lane per output per block).
 *   group g = rows 16g .. 16g+15 (rows past n_out: zero blocks, never read back),
 *   [n_groups][n_blocks] group blocks, block b of the group:
 *     d[16]         f16 x 16, row 16g + r's scale at index r
 *     m[16]         (Q4_1 / Q5_1 only) f16 x 16, the rows' minimums
 *     Q8_0  W[8][64]   W[k] byte 4r + j = u(r, 4k + j)   (value chunk k of the 16 rows)
 *     Q4_0  P[4][64]   P[k] byte 4r + j = u(r, 4k + j) | u(r, 4k + 16 + j) << 4
 *                      (low 4 bits each; chunks k and k + 4 in one register)
 *     Q5_0  P[4][64] as Q4_0, then H[8] (uint64): bit 4r + j of H[k] = bit 4
 *                      of u(r, 4k + j)
 *     Q4_1, Q5_1       as Q4_0, Q5_0 with bias 0 (u = the file's unsigned q)
 *   where u(r, i) = value i of row r's block + bias, unsigned: bias 8 (Q4_0:
 *   the file's nibble), 16 (Q5_0: its 5-bit value), 128 (Q8_0: byte xor 0x80).
 *   A group block is exactly 16 file blocks long (288, 352, 544; 320, 384
 *   bytes): the repacked tensor is the size of the file's (plus the padding
 *   rows). vpdpbusd multiplies unsigned by signed bytes: u against the
 *   activation bytes q (signed, 4 of them broadcast to every lane), the lane
 *   started at -bias * sum(q) (the activation block's exact sum): the lane is
 *   then exactly sum of value * q.
 *
 * K quants (Q4_K, Q5_K, Q6_K; n_in a multiple of 256): groups of G = 16
 * rows (CPU_REPACK_ROWS_K); group block b holds the 16 rows' file blocks b
 * taken apart field by field and interleaved, element i of a field of row r
 * at the field's offset + (16 i + r) x the element's size (so the bytes are
 * exactly the file's, and one 512-bit load gives a field's element i for
 * all 16 rows, int32 lane r = row r):
 *   Q4_K (2304)  d[16] f16 | dmin[16] f16 | scale words [3][16] (the 12
 *                scale bytes as 3 words) | qs words [32][16]
 *   Q5_K (2816)  as Q4_K, then qh words [8][16] before qs words [32][16]
 *   Q6_K (3360)  d[16] f16 | scales [16][16] (int8) | ql words [32][16] |
 *                qh words [16][16]
 * so the VNNI kernel multiplies 4 values of each of the 16 rows by 4
 * activation bytes (broadcast) per vpdpbusd: lane r sums row r's products,
 * a 16- or 32-value sub-block's sum is multiplied by the 16 rows' scales
 * (one vpmulld) and the block's sum stays in the row's own lane: one
 * conversion and one FMA per 16 outputs per block (cpu_q8.h's K order).
 * Their AVX2 and portable kernels rebuild the file's rows and run the
 * file-layout kernels.
 *
 * Every kernel here (VNNI; AVX2 and portable, which rebuild the file's rows
 * and run cpu_q8.h's file-layout kernels) gives the same bits as cpu_q8.h's
 * kernels on the file's blocks (tests/test_cpu_repack.c). */
#ifndef GRETA_BACKEND_CPU_REPACK_H
#define GRETA_BACKEND_CPU_REPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend_common.h"
#include "backend/cpu/cpu_q8.h"
#include "model/model.h"

#define CPU_REPACK_ROWS32 16 /* rows per group of the 32-value types */
#define CPU_REPACK_ROWS_K 16 /* rows per group of the K quants */
/* Stack bytes of rows rebuilt in the file's layout (K quants' AVX2 and
 * portable kernels); K rows longer than this are not repacked. */
#define CPU_REPACK_REBUILD_BYTES 65536

typedef struct {
    uint32_t type;         /* the file's type */
    int64_t n_in, n_out;   /* as the model_weight */
    int group_rows;        /* rows per group: CPU_REPACK_ROWS32 (blocks of 32), CPU_REPACK_ROWS_K (K) */
    int64_t n_blocks;      /* n_in / block size */
    size_t block_bytes;    /* bytes of one group block (group_rows file blocks) */
    size_t group_bytes;    /* n_blocks * block_bytes */
    int64_t n_groups;      /* ceil(n_out / group_rows) */
    uint8_t *data;         /* [n_groups][group_bytes], 64-byte aligned, owned */
} cpu_repacked;

/* True if w (type and shape) has a repacked layout. */
bool cpu_repack_supported(const model_weight *w);

/* w repacked (reads all of w->data); NULL on out of memory. */
cpu_repacked *cpu_repack_new(const model_weight *w);
void cpu_repack_free(cpu_repacked *rp);

/* Every matrix of w that the q8 path multiplies and that has a repacked
 * layout (not token_embd: only its rows are read, by begin; only where
 * the CPU has the VNNI kernels, NULLs elsewhere), repacked one
 * at a time: out[id] for id < w->count, NULL where not repacked; false on
 * out of memory (nothing kept). After each matrix the file's pages under it
 * are given back (madvise MADV_DONTNEED on the page-aligned inside of its
 * range in m's read-only mapping), so memory holds the copy instead of the
 * file's bytes, not both; a later reader of those bytes (the f32 path, the
 * ref backend, an embedding row of a tied output) faults them in again. */
bool cpu_repack_weights(const backend_weights *w, const model *m, cpu_repacked ***out);
void cpu_repack_weights_free(cpu_repacked **by_id, int32_t count);

/* Row `row` of rp in the file's layout again (n_blocks file blocks into out):
 * the exact bytes it was repacked from. */
void cpu_repack_row(const cpu_repacked *rp, int64_t row, uint8_t *out);

/* True for the K quants (blocks of 256). */
bool cpu_repack_is_k(uint32_t type);

/* Rows [r0, r0 + n_rows) rebuilt in the file's layout (a few at a time, on
 * the stack) and multiplied by the file-layout kernel k: k's bits by
 * construction. The AVX2 and portable kernels. */
void cpu_repack_tile_rebuilt(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                             int n_x, float *y, int64_t ys, const cpu_q8_kernels *k);

/* The values of row r (< group_rows) of group block blk, as the file's block holds
 * them (signed: value = u - bias; Q4_1 / Q5_1: q, unsigned), its scale d and
 * (Q4_1 / Q5_1, else 0) its minimum m as float. For the
 * portable kernel and the tests. */
void cpu_repack_unpack(const cpu_repacked *rp, const uint8_t *blk, int r, int8_t *values, float *d, float *m);

/* True for Q4_1 / Q5_1 (a minimum m per block). */
bool cpu_repack_has_min(uint32_t type);

typedef struct {
    const char *name; /* "avx512vnni", "avx2", "portable" */
    /* y[t * ys + r] = dot(row r0 + r of rp, activation row t) for r < n_rows,
     * t < n_x: cpu_q8_kernels.tile's contract (activations quantized in
     * blocks of 32, cpu_q8_block, row t at xq + t * xq_stride). */
    void (*tile)(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride, int n_x,
                 float *y, int64_t ys);
} cpu_repack_kernels;

/* The best the running CPU has (AVX-512 VNNI, AVX2, portable), chosen as
 * cpu_q8_best chooses; the others for tests (NULL when the CPU lacks it). */
const cpu_repack_kernels *cpu_repack_best(void);
const cpu_repack_kernels *cpu_repack_portable(void);
const cpu_repack_kernels *cpu_repack_avx2(void);
const cpu_repack_kernels *cpu_repack_vnni(void);

#endif
