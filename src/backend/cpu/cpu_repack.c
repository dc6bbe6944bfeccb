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
    case QT_Q4_1:
    case QT_Q5_0:
    case QT_Q5_1:
    case QT_Q8_0:
    case QT_Q4_K:
    case QT_Q5_K:
    case QT_Q6_K: break;
    default: return false;
    }
    /* a row must fit cpu_repack_tile_rebuilt's buffer */
    return w->n_in > 0 && w->n_out > 0 && w->n_in % quant_block_size(w->type) == 0 &&
           quant_row_bytes(w->type, w->n_in) <= CPU_REPACK_REBUILD_BYTES;
}

static int bias_of(uint32_t type) {
    return type == QT_Q4_0 ? 8 : type == QT_Q5_0 ? 16 : type == QT_Q8_0 ? 128 : 0;
}

bool cpu_repack_has_min(uint32_t type) {
    return type == QT_Q4_1 || type == QT_Q5_1;
}

/* Rows per group of a type (cpu_repack.h). */
static int group_rows(uint32_t type) {
    return cpu_repack_is_k(type) ? CPU_REPACK_ROWS_K : CPU_REPACK_ROWS32;
}

/* Offsets inside a 32-value group block: the 16 scales (and the 16
 * minimums of Q4_1 / Q5_1), then the values. */
#define D_BYTES (2 * CPU_REPACK_ROWS32)
static size_t qs_off(uint32_t type) {
    return cpu_repack_has_min(type) ? 2 * D_BYTES : D_BYTES;
}

/* Bytes of one group block: group_rows file blocks. */
static size_t block_bytes(uint32_t type) {
    return (size_t)group_rows(type) * (size_t)quant_type_size(type);
}

/* The file block's values as unsigned u = value + bias (cpu_repack.h), its
 * f16 scale bits and (Q4_1 / Q5_1) its f16 minimum bits. */
static void file_block_u(uint32_t type, const uint8_t *b, uint8_t *u, uint16_t *d, uint16_t *m) {
    memcpy(d, b, 2);
    *m = 0;
    if (cpu_repack_has_min(type)) { /* d, m, then as Q4_0 / Q5_0 with q unsigned (bias 0) */
        memcpy(m, b + 2, 2);
        b += 2;
        type = type == QT_Q4_1 ? QT_Q4_0 : QT_Q5_0;
    }
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

/* Group block from the 16 rows' u values [16][32] and scales (cpu_repack.h). */
static void put_group_block(uint32_t type, uint8_t u[CPU_REPACK_ROWS32][32], const uint16_t *d, const uint16_t *m,
                            uint8_t *out) {
    memcpy(out, d, D_BYTES);
    if (cpu_repack_has_min(type)) memcpy(out + D_BYTES, m, D_BYTES);
    uint8_t *qs = out + qs_off(type);
    if (type == QT_Q8_0) {
        for (int k = 0; k < 8; k++)
            for (int r = 0; r < CPU_REPACK_ROWS32; r++)
                for (int j = 0; j < 4; j++) qs[64 * k + 4 * r + j] = u[r][4 * k + j];
        return;
    }
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < CPU_REPACK_ROWS32; r++)
            for (int j = 0; j < 4; j++)
                qs[64 * k + 4 * r + j] = (uint8_t)((u[r][4 * k + j] & 0x0f) | (u[r][4 * k + 16 + j] & 0x0f) << 4);
    if (type == QT_Q5_0 || type == QT_Q5_1) {
        for (int k = 0; k < 8; k++) {
            uint64_t h = 0;
            for (int r = 0; r < CPU_REPACK_ROWS32; r++)
                for (int j = 0; j < 4; j++) h |= (uint64_t)((u[r][4 * k + j] >> 4) & 1) << (4 * r + j);
            memcpy(qs + 256 + 8 * k, &h, 8);
        }
    }
}

/* An empty repacked tensor for w (its data allocated, not filled). */
static cpu_repacked *repacked_alloc(const model_weight *w) {
    cpu_repacked *rp = calloc(1, sizeof *rp);
    if (!rp) return NULL;
    rp->type = w->type;
    rp->n_in = w->n_in;
    rp->n_out = w->n_out;
    rp->group_rows = group_rows(w->type);
    rp->n_blocks = w->n_in / quant_block_size(w->type);
    rp->block_bytes = block_bytes(w->type);
    rp->group_bytes = (size_t)rp->n_blocks * rp->block_bytes;
    rp->n_groups = (w->n_out + rp->group_rows - 1) / rp->group_rows;
    size_t bytes = (size_t)rp->n_groups * rp->group_bytes;
    rp->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!rp->data) {
        free(rp);
        return NULL;
    }
    return rp;
}

/* ---- K quants (cpu_repack.h): the group block is the 16 rows' file blocks
 * taken apart and interleaved, field by field. ---- */

bool cpu_repack_is_k(uint32_t type) {
    return type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K;
}

/* Copies field by field between row r's file block fb and group block gb
 * (to_group: file -> group, else group -> file): element i (of `size`
 * bytes) of a field of row r at group_off + (16 i + r) size. */
static void k_fields(uint32_t type, uint8_t *fb, uint8_t *gb, int r, bool to_group) {
    typedef struct {
        size_t file_off, group_off, size, count;
    } field;
    field f[5];
    int n = 0;
    if (type == QT_Q6_K) {
        f[n++] = (field){208, 0, 2, 1};     /* d */
        f[n++] = (field){192, 32, 1, 16};   /* scales */
        f[n++] = (field){0, 288, 4, 32};    /* ql */
        f[n++] = (field){128, 2336, 4, 16}; /* qh */
    } else {
        f[n++] = (field){0, 0, 2, 1};   /* d */
        f[n++] = (field){2, 32, 2, 1};  /* dmin */
        f[n++] = (field){4, 64, 4, 3};  /* the 12 scale bytes */
        if (type == QT_Q5_K) f[n++] = (field){16, 256, 4, 8}; /* qh */
        f[n++] = (field){type == QT_Q5_K ? 48 : 16, type == QT_Q5_K ? 768 : 256, 4, 32}; /* qs */
    }
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < f[k].count; i++) {
            uint8_t *file = fb + f[k].file_off + i * f[k].size;
            uint8_t *group = gb + f[k].group_off + (CPU_REPACK_ROWS_K * i + (size_t)r) * f[k].size;
            uint8_t *dst = to_group ? group : file;
            const uint8_t *src = to_group ? file : group;
            switch (f[k].size) { /* constant sizes: inline moves */
            case 1: *dst = *src; break;
            case 2: memcpy(dst, src, 2); break;
            default: memcpy(dst, src, 4); break;
            }
        }
}

void cpu_repack_row(const cpu_repacked *rp, int64_t row, uint8_t *out) {
    const size_t bs = (size_t)quant_type_size(rp->type);
    const uint8_t *group = rp->data + (size_t)(row / rp->group_rows) * rp->group_bytes;
    const int r = (int)(row % rp->group_rows);
    for (int64_t b = 0; b < rp->n_blocks; b++) {
        uint8_t *fb = out + (size_t)b * bs;
        uint8_t *gb = (uint8_t *)(uintptr_t)(group + (size_t)b * rp->block_bytes);
        if (cpu_repack_is_k(rp->type)) {
            k_fields(rp->type, fb, gb, r, false);
            continue;
        }
        /* 32-value types: scale (and minimum), then the values re-encoded */
        int8_t v[32];
        float d, m;
        cpu_repack_unpack(rp, gb, r, v, &d, &m);
        memcpy(fb, gb + 2 * r, 2);
        uint8_t *q = fb + 2;
        if (cpu_repack_has_min(rp->type)) {
            memcpy(fb + 2, gb + D_BYTES + 2 * r, 2);
            q += 2;
        }
        const int bias = bias_of(rp->type);
        if (rp->type == QT_Q8_0) {
            memcpy(q, v, 32);
        } else if (rp->type == QT_Q4_0 || rp->type == QT_Q4_1) {
            for (int j = 0; j < 16; j++) q[j] = (uint8_t)((v[j] + bias) | (v[j + 16] + bias) << 4);
        } else { /* Q5_0 / Q5_1 */
            uint32_t qh = 0;
            for (int j = 0; j < 32; j++) qh |= (uint32_t)(((v[j] + bias) >> 4) & 1) << j;
            memcpy(q, &qh, 4);
            for (int j = 0; j < 16; j++)
                q[4 + j] = (uint8_t)(((v[j] + bias) & 0x0f) | ((v[j + 16] + bias) & 0x0f) << 4);
        }
    }
}

/* Groups [g0, g1) of rp from w's rows. */
static void repack_groups(cpu_repacked *rp, const model_weight *w, int64_t g0, int64_t g1) {
    const size_t bs = (size_t)quant_type_size(w->type);
    if (cpu_repack_is_k(w->type)) {
        for (int64_t g = g0; g < g1; g++)
            for (int64_t b = 0; b < rp->n_blocks; b++) {
                uint8_t *gb = rp->data + (size_t)g * rp->group_bytes + (size_t)b * rp->block_bytes;
                memset(gb, 0, rp->block_bytes); /* padding rows: zero scales and values */
                for (int r = 0; r < CPU_REPACK_ROWS_K && g * CPU_REPACK_ROWS_K + r < w->n_out; r++) {
                    const uint8_t *fb = w->data + (size_t)(g * CPU_REPACK_ROWS_K + r) * w->row_bytes + (size_t)b * bs;
                    k_fields(w->type, (uint8_t *)(uintptr_t)fb, gb, r, true);
                }
            }
        return;
    }
    for (int64_t g = g0; g < g1; g++)
        for (int64_t b = 0; b < rp->n_blocks; b++) {
            uint8_t u[CPU_REPACK_ROWS32][32];
            uint16_t d[CPU_REPACK_ROWS32], m[CPU_REPACK_ROWS32];
            for (int r = 0; r < CPU_REPACK_ROWS32; r++) {
                int64_t row = g * CPU_REPACK_ROWS32 + r;
                if (row < w->n_out) {
                    file_block_u(w->type, w->data + (size_t)row * w->row_bytes + (size_t)b * bs, u[r], &d[r], &m[r]);
                } else { /* padding row: scale 0, minimum 0, values 0 */
                    memset(u[r], 0, 32);
                    d[r] = m[r] = 0;
                }
            }
            put_group_block(w->type, u, d, m, rp->data + (size_t)g * rp->group_bytes + (size_t)b * rp->block_bytes);
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

/* Only where the VNNI kernels run: elsewhere the kernels rebuild the
 * file's rows and would be slower than reading the file. */
static bool worth_repacking(const model_weight *w) {
    return cpu_repack_supported(w) && cpu_repack_vnni() != NULL;
}

bool cpu_repack_weights(const backend_weights *w, const model *m, cpu_repacked ***out) {
    *out = calloc((size_t)w->count, sizeof **out);
    if (!*out) return false;
    for (int32_t id = 0; id < w->count; id++) {
        const model_weight *mw = w->matrix[id];
        if (id == WEIGHT_TOKEN_EMBD || !mw || !worth_repacking(mw)) continue;
        cpu_repacked *rp = repacked_alloc(mw);
        if (!rp) {
            cpu_repack_weights_free(*out, w->count);
            *out = NULL;
            return false;
        }
        size_t group_file_bytes = (size_t)rp->group_rows * mw->row_bytes;
        int64_t step = (int64_t)(RELEASE_BYTES / group_file_bytes) + 1;
        for (int64_t g = 0; g < rp->n_groups; g += step) {
            int64_t g1 = g + step < rp->n_groups ? g + step : rp->n_groups;
            repack_groups(rp, mw, g, g1);
            /* every row before group g1 is copied: its pages can go */
            int64_t rows_done = g1 * rp->group_rows < mw->n_out ? g1 * rp->group_rows : mw->n_out;
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

void cpu_repack_unpack(const cpu_repacked *rp, const uint8_t *blk, int r, int8_t *values, float *d, float *m) {
    uint16_t h;
    memcpy(&h, blk + 2 * r, 2);
    *d = quant_f16_to_f32(h);
    *m = 0.0f;
    if (cpu_repack_has_min(rp->type)) {
        memcpy(&h, blk + D_BYTES + 2 * r, 2);
        *m = quant_f16_to_f32(h);
    }
    const uint8_t *qs = blk + qs_off(rp->type);
    const int bias = bias_of(rp->type);
    for (int i = 0; i < 32; i++) {
        int k = i / 4, j = i % 4, u;
        if (rp->type == QT_Q8_0) {
            u = qs[64 * k + 4 * r + j];
        } else {
            uint8_t byte = qs[64 * (k % 4) + 4 * r + j];
            u = k < 4 ? byte & 0x0f : byte >> 4;
            if (rp->type == QT_Q5_0 || rp->type == QT_Q5_1) {
                uint64_t qh;
                memcpy(&qh, qs + 256 + 8 * k, 8);
                u |= (int)((qh >> (4 * r + j)) & 1) << 4;
            }
        }
        values[i] = (int8_t)(u - bias);
    }
}

/* ---- portable ---- */

/* Rows [r0, r0 + n_rows) rebuilt in the file's layout, then the file-layout
 * kernel k (its bits by construction): the portable and AVX2 paths. */
void cpu_repack_tile_rebuilt(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                             int n_x, float *y, int64_t ys, const cpu_q8_kernels *k) {
    _Alignas(64) uint8_t rows[CPU_REPACK_REBUILD_BYTES]; /* holds one row at least (cpu_repack_supported) */
    const size_t row_bytes = (size_t)rp->n_blocks * (size_t)quant_type_size(rp->type);
    int per_step = (int)(sizeof rows / row_bytes) < rp->group_rows ? (int)(sizeof rows / row_bytes) : rp->group_rows;
    for (int r = 0; r < n_rows;) {
        int n = n_rows - r < per_step ? n_rows - r : per_step;
        for (int i = 0; i < n; i++) cpu_repack_row(rp, r0 + r + i, rows + (size_t)i * row_bytes);
        model_weight w = {.type = rp->type, .n_in = rp->n_in, .n_out = n, .row_bytes = row_bytes, .data = rows};
        k->tile(&w, 0, n, xq, xq_stride, n_x, y + r, ys);
        r += n;
    }
}

static void tile_portable(const cpu_repacked *rp, int64_t r0, int n_rows, const uint8_t *xq, size_t xq_stride,
                          int n_x, float *y, int64_t ys) {
    cpu_repack_tile_rebuilt(rp, r0, n_rows, xq, xq_stride, n_x, y, ys, cpu_q8_portable());
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
