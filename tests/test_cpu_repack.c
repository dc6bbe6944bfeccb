/* test_cpu_repack.c: the repacked q8 kernels (src/backend/cpu/cpu_repack.c)
 * against the q8 kernels on the file's blocks (cpu_q8.c), bit for bit, for
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 and the K quants Q4_K Q5_K Q6_K:
 *   - every row rebuilt from its group equals the file's bytes, and (blocks
 *     of 32) unpacking a group block gives back every value and scale
 *     (random bytes: every bit pattern);
 *   - groups of 16 rows (every type);
 *   - every repacked kernel the CPU has (AVX-512 VNNI, AVX2, portable, each
 *     forced) equals the portable file-layout kernel bit for bit, for odd row
 *     counts (the last group padded), an odd and an even number of blocks,
 *     every tile shape (all rows x 9 activation rows at once; each element
 *     alone, as decode computes it; row ranges that start inside a group
 *     x 7 activation rows, the tiles of 4, 2 and 1); rows over 64 KiB are
 *     not repacked;
 * Thread counts and prefill vs decode through the engine: test_engine.c
 * (repacked and GRETA_CPU_REPACK=0 compared there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_q8.h"
#include "backend/cpu/cpu_repack.h"
#include "format/quant.h"
#include "support/check.h"
#include "support/xorshift.h"

static xorshift rng = {0x2545f4914f6cdd1dull};

static void put_f16(uint8_t *p, float v) {
    uint16_t h = quant_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* Random bytes (every bit pattern of values, scales and mins), each block's
 * f16 scales set to sane values: d in [0.001, 0.02), dmin within d. */
static void random_rows(uint32_t type, uint8_t *data, int64_t n, int rows) {
    size_t rb = quant_row_bytes(type, n);
    for (size_t i = 0; i < rb * (size_t)rows; i++) data[i] = (uint8_t)xorshift_u32(&rng);
    size_t bs = (size_t)quant_type_size(type);
    for (size_t b = 0; b < rb * (size_t)rows / bs; b++) {
        float d = 0.001f + 0.019f * (float)(xorshift_u32(&rng) % 1000) / 1000.0f;
        uint8_t *blk = data + b * bs;
        if (type == QT_Q6_K) {
            put_f16(blk + 208, d);
        } else {
            put_f16(blk, d);
            if (type == QT_Q4_K || type == QT_Q5_K || type == QT_Q4_1 || type == QT_Q5_1)
                put_f16(blk + 2, d * xorshift_uniform(&rng));
        }
    }
}

static const uint32_t types[] = {QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K};

static void test_unpack(uint32_t type, const model_weight *w, const cpu_repacked *rp) {
    const char *name = quant_type_name(type);
    uint8_t *row = malloc(w->row_bytes);
    int differ = 0;
    for (int64_t r = 0; r < w->n_out; r++) {
        cpu_repack_row(rp, r, row);
        if (memcmp(row, w->data + (size_t)r * w->row_bytes, w->row_bytes) != 0) differ++;
    }
    free(row);
    CHECK(differ == 0, "%s: every row rebuilt from the groups == the file's bytes (%d rows differ)", name, differ);
    if (cpu_repack_is_k(type)) return; /* cpu_repack_unpack: 32-value types */
    int bad = 0;
    float *ref = malloc(sizeof(float) * (size_t)w->n_in);
    for (int64_t r = 0; r < w->n_out; r++) {
        int64_t row = r;
        quant_dequantize(type, w->data + (size_t)row * w->row_bytes, ref, w->n_in);
        const uint8_t *group = rp->data + (size_t)(row / rp->group_rows) * rp->group_bytes;
        for (int64_t b = 0; b < rp->n_blocks; b++) {
            int8_t v[32];
            float d, m;
            cpu_repack_unpack(rp, group + (size_t)b * rp->block_bytes, (int)(row % rp->group_rows), v, &d, &m);
            for (int i = 0; i < 32; i++)
                if (d * (float)v[i] + m != ref[b * 32 + i]) bad++; /* quant.c: d * q (+ m), rounded each */
        }
    }
    CHECK(bad == 0, "%s: %lld x %lld repacked, unpacked == the file's values (d * q, %d differ)", name,
          (long long)w->n_out, (long long)w->n_in, bad);
    free(ref);
}

static void test_kernels_shape(uint32_t type, int64_t n, int rows) {
    const char *name = quant_type_name(type);
    const int nx = 9;
    const int act = cpu_q8_act_block(type);
    size_t rb = quant_row_bytes(type, n), xs = cpu_q8_act_row_bytes(act, n);
    uint8_t *wdata = malloc(rb * (size_t)rows), *xq = malloc(xs * (size_t)nx);
    float *x = malloc(sizeof(float) * (size_t)n);
    random_rows(type, wdata, n, rows);
    for (int t = 0; t < nx; t++) {
        for (int64_t i = 0; i < n; i++) x[i] = xorshift_uniform(&rng) * (1.0f + (float)(i % 5));
        cpu_q8_quantize_row(act, x, n, xq + (size_t)t * xs);
    }
    model_weight w = {.name = "w", .type = type, .n_in = n, .n_out = rows, .row_bytes = rb, .data = wdata};
    CHECK(cpu_repack_supported(&w), "%s supported", name);
    cpu_repacked *rp = cpu_repack_new(&w);
    CHECK(rp != NULL, "%s: repacked", name);
    if (!rp) return;
    const int group_rows = 16; /* every type (cpu_repack.h) */
    CHECK(rp->group_rows == group_rows && rp->group_bytes == (size_t)rp->n_blocks * rp->block_bytes &&
              rp->block_bytes == (size_t)group_rows * (size_t)quant_type_size(type) &&
              rp->n_groups == (rows + group_rows - 1) / group_rows,
          "%s: groups of %d rows, a group block is %d file blocks (%zu bytes)", name, group_rows, group_rows,
          rp->block_bytes);
    test_unpack(type, &w, rp);

    float *want = malloc(sizeof(float) * (size_t)(nx * rows)), *got = malloc(sizeof(float) * (size_t)(nx * rows));
    cpu_q8_portable()->tile(&w, 0, rows, xq, xs, nx, want, rows);
    const cpu_repack_kernels *ks[3] = {cpu_repack_portable(), cpu_repack_avx2(), cpu_repack_vnni()};
    for (int k = 0; k < 3; k++) {
        if (!ks[k]) {
            printf("  (%s: the CPU has no %s kernel to force)\n", name, k == 1 ? "avx2" : "avx512vnni");
            continue;
        }
        const char *kn = ks[k]->name;
        memset(got, 0xff, sizeof(float) * (size_t)(nx * rows));
        ks[k]->tile(rp, 0, rows, xq, xs, nx, got, rows);
        CHECK(memcmp(got, want, sizeof(float) * (size_t)(nx * rows)) == 0,
              "%s n=%lld: repacked %s == file-layout q8 bit for bit (%d rows x %d activations)", name, (long long)n,
              kn, rows, nx);
        int mismatch = 0;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < nx; t++) {
                float one;
                ks[k]->tile(rp, r, 1, xq + (size_t)t * xs, xs, 1, &one, 1);
                if (memcmp(&one, &want[t * rows + r], sizeof one) != 0) mismatch++;
            }
        CHECK(mismatch == 0, "%s n=%lld: %s, each element alone (decode) == the tile (%d differ)", name, (long long)n,
              kn, mismatch);
        /* rows 1 .. rows-2 (a range starting and ending inside groups), activation rows 2..8
         * (7 = the kernels' tiles of 4, 2 and 1; all 9 at once above: 8 and 1) */
        int sub = rows - 2;
        float *part = malloc(sizeof(float) * 7 * (size_t)sub);
        ks[k]->tile(rp, 1, sub, xq + 2 * xs, xs, 7, part, sub);
        mismatch = 0;
        for (int t = 0; t < 7; t++)
            for (int r = 0; r < sub; r++)
                if (memcmp(&part[t * sub + r], &want[(t + 2) * rows + r + 1], sizeof(float)) != 0) mismatch++;
        CHECK(mismatch == 0, "%s n=%lld: %s, rows 1..%d x activations 2..8 == the tile (%d differ)", name,
              (long long)n, kn, rows - 2, mismatch);
        free(part);
    }
    cpu_repack_free(rp);
    free(want);
    free(got);
    free(wdata);
    free(xq);
    free(x);
}

int main(void) {
    printf("best repacked kernels: %s\n", cpu_repack_best()->name);
    for (size_t t = 0; t < 5; t++) { /* blocks of 32 */
        test_kernels_shape(types[t], 768, 7);  /* 24 blocks, 2 groups (1 padding row) */
        test_kernels_shape(types[t], 800, 13); /* 25 blocks (odd), 4 groups (3 padding rows) */
        test_kernels_shape(types[t], 64, 4);   /* 2 blocks, 1 full group */
    }
    test_kernels_shape(QT_Q4_0, 513 * 32, 5); /* long rows (16416 values), a partial group */
    test_kernels_shape(QT_Q5_1, 513 * 32, 5);
    test_kernels_shape(QT_Q8_0, 64, 33); /* 3 groups of 16, the last with 1 row: row ranges across groups */
    for (size_t t = 5; t < 8; t++) { /* K quants, blocks of 256 */
        test_kernels_shape(types[t], 768, 7);  /* 3 blocks (odd), 2 groups (1 padding row) */
        test_kernels_shape(types[t], 1024, 13); /* 4 blocks, 4 groups (3 padding rows) */
        test_kernels_shape(types[t], 256, 4);  /* 1 block, 1 full group */
    }
    test_kernels_shape(QT_Q6_K, 65 * 256, 5); /* longer than the VNNI K kernel's buffers */
    model_weight f16 = {.type = QT_F16, .n_in = 64, .n_out = 4};
    model_weight odd = {.type = QT_Q4_0, .n_in = 48, .n_out = 4};
    model_weight q4_1 = {.type = QT_Q2_K, .n_in = 256, .n_out = 4};
    model_weight k_long = {.type = QT_Q6_K, .n_in = 256 * 400, .n_out = 4}; /* a row over the rebuild buffer */
    model_weight q8_long = {.type = QT_Q8_0, .n_in = 32 * 2000, .n_out = 4}; /* 68000 bytes a row */
    CHECK(!cpu_repack_supported(&f16) && !cpu_repack_supported(&odd) && !cpu_repack_supported(&q4_1) &&
              !cpu_repack_supported(&k_long) && !cpu_repack_supported(&q8_long),
          "F16, Q2_K (no layout), n_in %% 32 != 0 and rows over 64 KiB (K quants, Q8_0) not repacked");
    return check_finish("test_cpu_repack");
}
