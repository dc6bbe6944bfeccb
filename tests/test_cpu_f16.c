/* test_cpu_f16.c: F16 weights at precision q8 (src/backend/cpu/cpu_f16.c)
 * and the attention of several queries at once (cpu_kernels.h
 * attend_q8_group):
 *   - every F16 build (AVX-512, AVX2, portable) against this file's own
 *     scalar statement of cpu_f16.h's order, bit for bit: decode (one
 *     activation row: odd row counts, row ranges that start anywhere) and
 *     prefill tiles
 *     (1..50 activation rows x 1..17 weight rows), rows of 16 to 2064 values;
 *   - the order on a hand-made row where 8 lanes or a sequential sum give
 *     another float;
 *   - each result against a double dot product within float32 error;
 *   - attend_q8_group of 1..6 queries (the same key count, or counts that
 *     differ as consecutive rows' do) against attend_q8 of each query alone,
 *     bit for bit (head sizes 16..128, 1..305 keys), and against a double
 *     softmax attention within float32 error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_f16.h"
#include "backend/cpu/cpu_kernels.h"
#include "format/quant.h"
#include "support/check.h"
#include "support/xorshift.h"

static xorshift rng = {0x9e3779b97f4a7c15ull};

/* cpu_f16.h's order, written out: 16 lanes, chunk c of 8 values into lanes
 * 8 (c % 2) .., then v[k] = lane[k] + lane[k + 8] and the 8-lane tree. */
static float order_dot(const uint16_t *w, const float *x, int64_t n) {
    float lane[16] = {0};
    for (int64_t c = 0; c < n / 8; c++)
        for (int k = 0; k < 8; k++) {
            float *l = &lane[8 * (c % 2) + k];
            *l = fmaf(quant_f16_to_f32(w[8 * c + k]), x[8 * c + k], *l);
        }
    float v[8];
    for (int k = 0; k < 8; k++) v[k] = lane[k] + lane[k + 8];
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

static model_weight weight_of(uint16_t *data, int64_t n_in, int64_t n_out) {
    model_weight w;
    memset(&w, 0, sizeof w);
    w.type = QT_F16;
    w.n_in = n_in;
    w.n_out = n_out;
    w.row_bytes = (size_t)n_in * 2;
    w.data = (const uint8_t *)data;
    return w;
}

/* One hand-made row of 32 values whose sum depends on the lane split:
 * 1 in value 0 (lane 0), 2^-24 in value 8 (lane 8, the odd chunk) and in
 * values 16 and 24: the 16-lane order adds lane 0's 1 + 2^-24 (two
 * products: rounds to 1), lane 8's 2^-24 + 2^-24 = 2^-23, then
 * 1 + 2^-23 is exact; 8 lanes (the f32 path: all four in lane 0) or a
 * sequential sum give ((1 + e) + e) + e = 1. */
static void test_order(void) {
    uint16_t w[32];
    float x[32];
    for (int i = 0; i < 32; i++) {
        w[i] = quant_f32_to_f16(0.0f);
        x[i] = 0.0f;
    }
    w[0] = quant_f32_to_f16(1.0f);
    x[0] = 1.0f;
    int at[3] = {8, 16, 24};
    for (int j = 0; j < 3; j++) {
        w[at[j]] = quant_f32_to_f16(1.0f);
        x[at[j]] = ldexpf(1.0f, -24);
    }
    model_weight mw = weight_of(w, 32, 1);
    float want = order_dot(w, x, 32);
    float sequential = 0.0f;
    for (int i = 0; i < 32; i++) sequential = fmaf(quant_f16_to_f32(w[i]), x[i], sequential);
    CHECK(want == 1.0f + ldexpf(1.0f, -23) && sequential == 1.0f,
          "hand-made row: the 16-lane order gives 1 + 2^-23 (%.9g), a sequential sum 1 (%.9g)", want, sequential);
    const cpu_f16_kernels *ks[4] = {cpu_f16_portable(), cpu_f16_best(), cpu_f16_avx512(), cpu_f16_avx2()};
    for (int b = 0; b < 4; b++) {
        if (!ks[b]) continue;
        float y = -1.0f;
        ks[b]->tile(&mw, 0, 1, x, 32, 1, &y, 1);
        CHECK(y == want, "%s: hand-made row gives the order's float (%.9g)", ks[b]->name, y);
    }
}

static void test_builds(void) {
    const int64_t widths[] = {16, 48, 576, 2064};
    const cpu_f16_kernels *ks[4] = {cpu_f16_portable(), cpu_f16_best(), cpu_f16_avx512(), cpu_f16_avx2()};
    printf("# f16 kernels in use: %s\n", cpu_f16_best()->name);
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t n = widths[wi];
        const int rows = 21, acts = 50;
        uint16_t *w = malloc((size_t)rows * (size_t)n * 2);
        float *x = malloc((size_t)acts * (size_t)n * sizeof(float));
        for (int64_t i = 0; i < rows * n; i++) w[i] = quant_f32_to_f16(xorshift_uniform(&rng));
        w[3] = 0x0001; /* a subnormal F16 weight: exact in float */
        for (int64_t i = 0; i < acts * n; i++) x[i] = xorshift_uniform(&rng);
        model_weight mw = weight_of(w, n, rows);
        float *want = malloc((size_t)rows * acts * sizeof(float));
        double worst = 0.0;
        for (int t = 0; t < acts; t++)
            for (int r = 0; r < rows; r++) {
                want[t * rows + r] = order_dot(w + (size_t)r * (size_t)n, x + (size_t)t * (size_t)n, n);
                double e = 0.0, mag = 0.0;
                for (int64_t k = 0; k < n; k++) {
                    double p = (double)quant_f16_to_f32(w[(size_t)r * (size_t)n + (size_t)k]) * x[(size_t)t * (size_t)n + (size_t)k];
                    e += p;
                    mag += fabs(p);
                }
                double rel = fabs(want[t * rows + r] - e) / mag;
                if (rel > worst) worst = rel;
            }
        CHECK(worst < 1e-6, "n=%lld: the order within float32 error of a double dot product (%.2g of sum|w*x|)",
              (long long)n, worst);
        float *y = malloc((size_t)rows * acts * sizeof(float));
        for (int b = 0; b < 4; b++) {
            if (!ks[b]) continue;
            /* every (first row, row count, activation count) tile, and decode */
            int bad = 0, total = 0;
            const int row_counts[] = {1, 2, 3, 4, 5, 7, 9, 16, 17};
            const int act_counts[] = {1, 2, 5, 6, 7, 13, 48, 50};
            for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++)
                for (size_t ai = 0; ai < sizeof act_counts / sizeof act_counts[0]; ai++) {
                    int nr = row_counts[ri], na = act_counts[ai];
                    int r0 = (int)(xorshift_u32(&rng) % (unsigned)(rows - nr + 1));
                    for (int i = 0; i < rows * acts; i++) y[i] = NAN;
                    ks[b]->tile(&mw, r0, nr, x, n, na, y + r0, rows);
                    for (int t = 0; t < na; t++)
                        for (int r = r0; r < r0 + nr; r++) {
                            total++;
                            if (memcmp(&y[t * rows + r], &want[t * rows + r], sizeof(float)) != 0) bad++;
                        }
                }
            CHECK(bad == 0, "%s n=%lld: every tile shape (decode included) == the order bit for bit (%d of %d differ)",
                  ks[b]->name, (long long)n, bad, total);
        }
        free(y);
        free(want);
        free(w);
        free(x);
    }
}

/* attention of one query in double: softmax(q . k_t * scale) . v */
static void attend_double(const float *q, const float *k, const float *v, size_t stride, int hd, int n_keys,
                          float scale, double *out) {
    double *s = malloc((size_t)n_keys * sizeof(double));
    double max = -INFINITY, sum = 0.0;
    for (int t = 0; t < n_keys; t++) {
        double d = 0.0;
        for (int c = 0; c < hd; c++) d += (double)q[c] * k[(size_t)t * stride + (size_t)c];
        s[t] = d * scale;
        if (s[t] > max) max = s[t];
    }
    for (int t = 0; t < n_keys; t++) sum += s[t] = exp(s[t] - max);
    for (int c = 0; c < hd; c++) {
        double o = 0.0;
        for (int t = 0; t < n_keys; t++) o += s[t] / sum * v[(size_t)t * stride + (size_t)c];
        out[c] = o;
    }
    free(s);
}

static void test_attend_group(void) {
    const cpu_kernels *ks[2] = {cpu_kernels_portable(), cpu_kernels_best()};
    printf("# attention kernels in use: %s\n", cpu_kernels_best()->name);
    const int head_dims[] = {16, 48, 64, 80, 128};
    const int key_counts[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 100, 300};
    enum { MAX_KEYS = 320 };
    for (size_t hi = 0; hi < sizeof head_dims / sizeof head_dims[0]; hi++) {
        int hd = head_dims[hi];
        size_t stride = (size_t)hd * 3; /* three KV heads per row; the middle one is read */
        float *k = malloc((size_t)MAX_KEYS * stride * sizeof(float));
        float *v = malloc((size_t)MAX_KEYS * stride * sizeof(float));
        float *q = malloc((size_t)CPU_ATTEND_GROUP * (size_t)hd * sizeof(float));
        for (size_t i = 0; i < (size_t)MAX_KEYS * stride; i++) {
            k[i] = 2.0f * xorshift_uniform(&rng);
            v[i] = xorshift_uniform(&rng);
        }
        for (int i = 0; i < CPU_ATTEND_GROUP * hd; i++) q[i] = 2.0f * xorshift_uniform(&rng);
        float *scores = malloc((size_t)CPU_ATTEND_GROUP * MAX_KEYS * sizeof(float));
        float *single = malloc((size_t)hd * sizeof(float));
        float *outs = malloc((size_t)CPU_ATTEND_GROUP * (size_t)hd * sizeof(float));
        double *ref = malloc((size_t)hd * sizeof(double));
        float scale = 1.0f / sqrtf((float)hd);
        for (int b = 0; b < 2; b++) {
            int bad = 0, total = 0;
            double worst = 0.0;
            for (size_t ni = 0; ni < sizeof key_counts / sizeof key_counts[0]; ni++)
                for (int n_q = 1; n_q <= CPU_ATTEND_GROUP; n_q++)
                    for (int spread = 0; spread < 2; spread++) {
                        const float *qs[CPU_ATTEND_GROUP];
                        float *os[CPU_ATTEND_GROUP];
                        int n_keys[CPU_ATTEND_GROUP];
                        for (int i = 0; i < n_q; i++) {
                            qs[i] = q + (size_t)i * (size_t)hd;
                            os[i] = outs + (size_t)i * (size_t)hd;
                            /* spread: key counts that differ by 0..2, the shortest not first */
                            n_keys[i] = key_counts[ni] + (spread ? (i + 1) % 3 : 0);
                        }
                        ks[b]->attend_q8_group(qs, os, n_q, k + hd, v + hd, stride, hd, n_keys, scale, scores);
                        for (int i = 0; i < n_q; i++) {
                            ks[b]->attend_q8(qs[i], k + hd, v + hd, stride, hd, n_keys[i], scale, scores, single);
                            total++;
                            if (memcmp(single, os[i], (size_t)hd * sizeof(float)) != 0) bad++;
                            attend_double(qs[i], k + hd, v + hd, stride, hd, n_keys[i], scale, ref);
                            for (int c = 0; c < hd; c++) {
                                double e = fabs(os[i][c] - ref[c]);
                                if (e > worst) worst = e;
                            }
                        }
                    }
            CHECK(bad == 0,
                  "%s hd=%d: attend_q8_group of 1..%d queries (equal and differing key counts) == attend_q8 of each, "
                  "bit for bit (%d of %d differ)",
                  ks[b]->name, hd, CPU_ATTEND_GROUP, bad, total);
            CHECK(worst < 1e-5, "%s hd=%d: attend_q8_group within 1e-5 of a double softmax attention (%.2g)", ks[b]->name,
                  hd, worst);
        }
        free(k);
        free(v);
        free(q);
        free(scores);
        free(single);
        free(outs);
        free(ref);
    }
}

int main(void) {
    test_order();
    test_builds();
    test_attend_group();
    return check_finish("test_cpu_f16");
}
