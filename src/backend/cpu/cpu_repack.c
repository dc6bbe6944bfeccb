/* cpu_repack.c: the repacked layout of cpu_repack.h (repacking, unpacking,
 * the portable kernel, dispatch). */
#include "backend/cpu/cpu_repack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/cpu_q8.h"
#include "format/gguf.h"
#include "format/quant.h"

bool cpu_repack_supported(const model_weight *w) {
    switch (w->type) {
    case QT_Q4_0:
    case QT_Q5_0:
    case QT_Q8_0: return w->n_in > 0 && w->n_in % 32 == 0 && w->n_out > 0;
    default: return false;
    }
}

/* Offsets inside a group block: the 4 scales, then the values. */
#define D_BYTES 8
#define QS_OFF D_BYTES

/* Bytes of one group block: 4 file blocks. */
static size_t block_bytes(uint32_t type) {
    return (size_t)CPU_REPACK_ROWS * (size_t)quant_type_size(type);
}

/* The file block's values as unsigned u = value + bias (cpu_repack.h) and
 * its f16 scale bits. */
static void file_block_u(uint32_t type, const uint8_t *b, uint8_t *u, uint16_t *d) {
    memcpy(d, b, 2);
    switch (type) {
    case QT_Q4_0:
        for (int j = 0; j < 16; j++) {
            u[j] = b[2 + j] & 0x0f;
            u[j + 16] = b[2 + j] >> 4;
        }
        return;
    case QT_Q5_0: {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((b[6 + j] & 0x0f) | (((qh >> j) & 1) << 4));
            u[j + 16] = (uint8_t)((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        return;
    }
    default: /* QT_Q8_0 */
        for (int j = 0; j < 32; j++) u[j] = b[2 + j] ^ 0x80;
        return;
    }
}

/* Group block from the 4 rows' u values [4][32] and scales. */
static void put_group_block(uint32_t type, uint8_t u[CPU_REPACK_ROWS][32], const uint16_t *d, uint8_t *out) {
    memcpy(out, d, D_BYTES);
    uint8_t *qs = out + QS_OFF;
    if (type == QT_Q8_0) {
        for (int r = 0; r < CPU_REPACK_ROWS; r++) memcpy(qs + 32 * r, u[r], 32);
        return;
    }
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 32; i++) qs[32 * p + i] = (uint8_t)((u[2 * p][i] & 0x0f) | (u[2 * p + 1][i] & 0x0f) << 4);
    if (type == QT_Q5_0) {
        uint32_t qh[CPU_REPACK_ROWS] = {0};
        for (int r = 0; r < CPU_REPACK_ROWS; r++)
            for (int i = 0; i < 32; i++) qh[r] |= (uint32_t)((u[r][i] >> 4) & 1) << i;
        memcpy(qs + 64, qh, sizeof qh);
    }
}

/* An empty repacked tensor for w (its data allocated, not filled). */
static cpu_repacked *repacked_alloc(const model_weight *w) {
    cpu_repacked *rp = calloc(1, sizeof *rp);
    if (!rp) return NULL;
    rp->type = w->type;
    rp->n_in = w->n_in;
    rp->n_out = w->n_out;
    rp->n_blocks = w->n_in / 32;
    rp->block_bytes = block_bytes(w->type);
    rp->group_bytes = (size_t)rp->n_blocks * rp->block_bytes;
    rp->n_groups = (w->n_out + CPU_REPACK_ROWS - 1) / CPU_REPACK_ROWS;
    size_t bytes = (size_t)rp->n_groups * rp->group_bytes;
    rp->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!rp->data) {
        free(rp);
        return NULL;
    }
    return rp;
}

/* Groups [g0, g1) of rp from w's rows. */
static void repack_groups(cpu_repacked *rp, const model_weight *w, int64_t g0, int64_t g1) {
    const size_t bs = (size_t)quant_type_size(w->type);
    for (int64_t g = g0; g < g1; g++)
        for (int64_t b = 0; b < rp->n_blocks; b++) {
            uint8_t u[CPU_REPACK_ROWS][32];
            uint16_t d[CPU_REPACK_ROWS];
            for (int r = 0; r < CPU_REPACK_ROWS; r++) {
                int64_t row = g * CPU_REPACK_ROWS + r;
                if (row < w->n_out) {
                    file_block_u(w->type, w->data + (size_t)row * w->row_bytes + (size_t)b * bs, u[r], &d[r]);
                } else { /* padding row: scale 0, values 0 */
                    memset(u[r], 0, 32);
                    d[r] = 0;
                }
            }
            put_group_block(w->type, u, d, rp->data + (size_t)g * rp->group_bytes + (size_t)b * rp->block_bytes);
        }
}

cpu_repacked *cpu_repack_new(const model_weight *w) {
    if (!cpu_repack_supported(w)) return NULL;
    cpu_repacked *rp = repacked_alloc(w);
    if (rp) repack_groups(rp, w, 0, rp->n_groups);
    return rp;
}

void cpu_repack_free(cpu_repacked *rp) {
    if (!rp) return;
    free(rp->data);
    free(rp);
}

/* Gives back the pages of [p, p + n) that lie wholly inside it and inside
 * m's mapping (never anything else: MADV_DONTNEED on other memory would
 * zero it). The mapping is private and read-only, so a later read just
 * faults the file's bytes in again. */
static void release_file_pages(const model *m, const uint8_t *p, size_t n) {
    const uint8_t *base = gguf_map_base(m->file);
    uint64_t size = gguf_file_size(m->file);
    if (!base || p < base || p + n > base + size) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) / page * page, hi = ((uintptr_t)p + n) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Groups repacked between two releases of the file's pages: about 1 MiB of
 * the file, so memory holds at most that much of both. */
#define RELEASE_BYTES ((size_t)1 << 20)

bool cpu_repack_weights(const backend_weights *w, const model *m, cpu_repacked ***out) {
    *out = calloc((size_t)w->count, sizeof **out);
    if (!*out) return false;
    for (int32_t id = 0; id < w->count; id++) {
        const model_weight *mw = w->matrix[id];
        if (id == WEIGHT_TOKEN_EMBD || !mw || !cpu_repack_supported(mw)) continue;
        cpu_repacked *rp = repacked_alloc(mw);
        if (!rp) {
            cpu_repack_weights_free(*out, w->count);
            *out = NULL;
            return false;
        }
        size_t group_file_bytes = CPU_REPACK_ROWS * mw->row_bytes;
        int64_t step = (int64_t)(RELEASE_BYTES / group_file_bytes) + 1;
        for (int64_t g = 0; g < rp->n_groups; g += step) {
            int64_t g1 = g + step < rp->n_groups ? g + step : rp->n_groups;
            repack_groups(rp, mw, g, g1);
            /* every row before group g1 is copied: its pages can go */
            int64_t rows_done = g1 * CPU_REPACK_ROWS < mw->n_out ? g1 * CPU_REPACK_ROWS : mw->n_out;
            release_file_pages(m, mw->data, (size_t)rows_done * mw->row_bytes);
        }
        (*out)[id] = rp;
    }
    return true;
}

void cpu_repack_weights_free(cpu_repacked **by_id, int32_t count) {
    if (!by_id) return;
    for (int32_t id = 0; id < count; id++) cpu_repack_free(by_id[id]);
    free(by_id);
}

static int bias_of(uint32_t type) {
    return type == QT_Q4_0 ? 8 : type == QT_Q5_0 ? 16 : 128;
}

void cpu_repack_unpack(const cpu_repacked *rp, const uint8_t *blk, int r, int8_t *values, float *d) {
    uint16_t h;
    memcpy(&h, blk + 2 * r, 2);
    *d = quant_f16_to_f32(h);
    const uint8_t *qs = blk + QS_OFF;
    const int bias = bias_of(rp->type);
    for (int i = 0; i < 32; i++) {
        int u;
        if (rp->type == QT_Q8_0) {
            u = qs[32 * r + i];
        } else {
            u = r % 2 == 0 ? qs[32 * (r / 2) + i] & 0x0f : qs[32 * (r / 2) + i] >> 4;
            if (rp->type == QT_Q5_0) {
                uint32_t qh;
                memcpy(&qh, qs + 64 + 4 * r, 4);
                u |= (int)((qh >> i) & 1) << 4;
            }
        }
        values[i] = (int8_t)(u - bias);
    }
}

/* ---- portable: cpu_q8.h's fixed order on the unpacked values ---- */

static float hsum8(const float *l) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* Row r of group g against activation row xq (blocks of 32). */
static float dot_portable(const cpu_repacked *rp, int64_t g, int r, const uint8_t *xq) {
    const uint8_t *group = rp->data + (size_t)g * rp->group_bytes;
    const cpu_q8_block *x = (const cpu_q8_block *)(const void *)xq;
    float acc[16] = {0}; /* even blocks in 0..7, odd in 8..15 */
    int8_t v[32];
    for (int64_t b = 0; b < rp->n_blocks; b++) {
        float dw;
        cpu_repack_unpack(rp, group + (size_t)b * rp->block_bytes, r, v, &dw);
        float d = dw * x[b].d;
        float *a = b % 2 == 1 ? acc + 8 : acc;
        for (int k = 0; k < 8; k++) {
            int32_t s = 0;
            for (int e = 4 * k; e < 4 * k + 4; e++) s += (int32_t)v[e] * (int32_t)x[b].q[e];
            a[k] = fmaf(d, (float)s, a[k]);
        }
    }
    for (int k = 0; k < 8; k++) acc[k] = acc[k] + acc[k + 8];
    return hsum8(acc);
}

static void tile_portable(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    for (int t = 0; t < n_x; t++)
        for (int r = 0; r < n_rows; r++) {
            int64_t row = r0 + r;
            y[t * ys + r] = dot_portable(rp, row / CPU_REPACK_ROWS, (int)(row % CPU_REPACK_ROWS),
                                         xq + (size_t)t * xq_stride);
        }
}

static const cpu_repack_kernels kernels_portable = {"portable", tile_portable};

const cpu_repack_kernels *cpu_repack_portable(void) {
    return &kernels_portable;
}

/* ---- dispatch ---- */
#if defined(__x86_64__) && defined(__GNUC__)
/* cpu_repack_avx2.c, cpu_repack_vnni.c */
void cpu_repack_tile_avx2(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);
void cpu_repack_tile_vnni(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys);

static const cpu_repack_kernels kernels_avx2 = {"avx2", cpu_repack_tile_avx2};
static const cpu_repack_kernels kernels_vnni = {"avx512vnni", cpu_repack_tile_vnni};

static bool has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

static bool has_vnni(void) {
    return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}

const cpu_repack_kernels *cpu_repack_best(void) {
    return has_vnni() ? &kernels_vnni : has_avx2() ? &kernels_avx2 : &kernels_portable;
}

const cpu_repack_kernels *cpu_repack_avx2(void) {
    return has_avx2() ? &kernels_avx2 : NULL;
}

const cpu_repack_kernels *cpu_repack_vnni(void) {
    return has_vnni() ? &kernels_vnni : NULL;
}
#else
const cpu_repack_kernels *cpu_repack_best(void) {
    return &kernels_portable;
}

const cpu_repack_kernels *cpu_repack_avx2(void) {
    return NULL;
}

const cpu_repack_kernels *cpu_repack_vnni(void) {
    return NULL;
}
#endif
