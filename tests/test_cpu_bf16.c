/* test_cpu_bf16.c: BF16 weights at precision q8 (src/backend/cpu/cpu_bf16.c):
 *   - the activation rounding against hand-computed BF16 bit patterns
 *     (nearest even, ties, subnormals to signed zero, NaN, overflow);
 *   - the fixed order of cpu_bf16.h on hand-made rows where another order
 *     or a fused sum gives a different float (each build);
 *   - the AVX-512 BF16, AVX2 and portable builds bit for bit on random rows
 *     (every tile shape: 7 weight rows x 9 activation rows), including
 *     subnormal weights (counted as zero by the instruction);
 *   - each result against an independent double dot product of the BF16
 *     values within float32 summation error. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_bf16.h"
#include "format/quant.h"
#include "support/check.h"
#include "support/xorshift.h"

static xorshift rng = {0x2545f4914f6cdd1dull};

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_rounding(void) {
    struct {
        uint32_t in;
        uint16_t want;
        const char *what;
    } cases[] = {
        {0x3f800000u, 0x3f80, "1.0 exactly"},
        {0x3f808000u, 0x3f80, "1 + 2^-8: a tie, to even (down)"},
        {0x3f818000u, 0x3f82, "1 + 3 * 2^-8: a tie, to even (up)"},
        {0x3f808001u, 0x3f81, "just above the tie: up"},
        {0xbf80ffffu, 0xbf81, "-1.0078...: nearest"},
        {0x00400000u, 0x0000, "a subnormal: +0"},
        {0x80000001u, 0x8000, "a negative subnormal: -0"},
        {0x00800000u, 0x0080, "FLT_MIN stays"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to infinity"},
        {0xff800000u, 0xff80, "-infinity"},
        {0x7fc00000u, 0x7fc0, "a quiet NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float x = bits_f(cases[i].in);
        uint16_t got = 0;
        cpu_bf16_round_row(&x, 1, &got);
        CHECK(got == cases[i].want, "round %08x (%s): %04x, want %04x", cases[i].in, cases[i].what, got, cases[i].want);
    }
    float nan_low = bits_f(0x7f800001u); /* a NaN whose payload is below the BF16 bits */
    uint16_t got = 0;
    cpu_bf16_round_row(&nan_low, 1, &got);
    CHECK((got & 0x7f80) == 0x7f80 && (got & 0x7f) != 0, "a NaN stays a NaN (%04x)", got);
    /* each build's rounding == cpu_bf16_round_row on random bit patterns (every
     * exponent: subnormals, NaNs, infinities) and the cases above, odd length */
    enum { N = 4099 };
    float *x = malloc(N * sizeof(float));
    uint16_t *want = malloc(N * 2), *have = malloc(N * 2);
    for (int i = 0; i < N; i++) {
        uint32_t u = xorshift_u32(&rng) << 16 ^ xorshift_u32(&rng);
        if (i < (int)(sizeof cases / sizeof cases[0])) u = cases[i].in;
        if (i % 7 == 0) u = (u & 0x80000000u) | (0x3f800000u + (u & 0x1ffffu)); /* near 1, ties likely */
        x[i] = bits_f(u);
    }
    cpu_bf16_round_row(x, N, want);
    const cpu_bf16_kernels *k[3] = {cpu_bf16_portable(), cpu_bf16_avx2(), cpu_bf16_best()};
    for (int b = 0; b < 3; b++) {
        if (!k[b]) continue;
        memset(have, 0, N * 2);
        k[b]->round_row(x, N, have);
        CHECK(memcmp(have, want, N * 2) == 0, "%s round_row == cpu_bf16_round_row on %d values", k[b]->name, N);
    }
    free(x);
    free(want);
    free(have);
}

/* One weight row and one activation row of n values from float values
 * (already BF16-exact), through every build. */
static void dot_all(const float *wv, const float *xv, int64_t n, float *out, int *n_out) {
    uint8_t *w = malloc((size_t)n * 2);
    uint16_t *x = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = quant_f32_to_bf16(wv[i]);
        memcpy(w + 2 * i, &h, 2);
    }
    cpu_bf16_round_row(xv, n, x);
    model_weight mw = {.type = QT_BF16, .n_in = n, .n_out = 1, .row_bytes = (size_t)n * 2, .data = w};
    const cpu_bf16_kernels *k[3] = {cpu_bf16_portable(), cpu_bf16_avx2(), cpu_bf16_best()};
    *n_out = 0;
    for (int i = 0; i < 3; i++)
        if (k[i]) k[i]->tile(&mw, 0, 1, (const uint8_t *)x, (size_t)n * 2, 1, &out[(*n_out)++], 1);
    free(w);
    free(x);
}

static void test_order(void) {
    /* lane 0 over two chunks: chunk 0 gives 1.0; chunk 1 adds its odd
     * product 2^-24 then its even product 2^-24: each addition to 1.0 is a
     * tie that rounds back to 1.0, so the fixed order gives exactly 1.0 (a
     * fused sum or the pair added first would give 1 + 2^-23). */
    float w[64] = {0}, x[64] = {0};
    w[1] = 1.0f, x[1] = 1.0f;
    w[32] = 0x1p-12f, x[32] = 0x1p-12f;
    w[33] = 0x1p-12f, x[33] = 0x1p-12f;
    float out[3];
    int n = 0;
    dot_all(w, x, 64, out, &n);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == 1.0f, "order, build %d: lane sums (1 + 2^-24) + 2^-24 one rounding at a time = 1 (got %a)", i,
              (double)out[i]);
    /* the odd product first: 2^25 (odd) + 1 (even) on top of -2^25 in the
     * lane: (-2^25 + 2^25) + 1 = 1; even first would be (-2^25 + 1) + 2^25 = 0
     * (-2^25 + 1 rounds to -2^25) */
    memset(w, 0, sizeof w);
    memset(x, 0, sizeof x);
    w[0] = -0x1p13f, x[0] = 0x1p12f;   /* chunk 0 even: lane 0 = -2^25 */
    w[33] = 0x1p13f, x[33] = 0x1p12f;  /* chunk 1 odd: +2^25 */
    w[32] = 1.0f, x[32] = 1.0f;        /* chunk 1 even: +1 */
    dot_all(w, x, 64, out, &n);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == 1.0f, "order, build %d: the odd product is added before the even one (got %a)", i,
              (double)out[i]);
    /* lanes: v[k] = lane[k] + lane[k + 8] first: lane 0 = 2^24, lane 8 = 1,
     * lane 4 = 1: (2^24 + 1) rounds to 2^24, + 1 again 2^24; adding lane 4
     * first would keep both ones */
    memset(w, 0, sizeof w);
    memset(x, 0, sizeof x);
    w[0] = 0x1p12f, x[0] = 0x1p12f; /* lane 0 */
    w[16] = 1.0f, x[16] = 1.0f;     /* lane 8 */
    w[8] = 1.0f, x[8] = 1.0f;       /* lane 4 */
    dot_all(w, x, 32, out, &n);
    for (int i = 0; i < n; i++)
        CHECK(out[i] == 0x1p24f, "order, build %d: lane k + lane k+8, then the 8-lane tree (got %a)", i, (double)out[i]);
    CHECK(n >= 1, "%d builds compared", n);
}

static void test_builds(void) {
    const int64_t n = 576;
    const int rows = 7, nx = 9;
    const cpu_bf16_kernels *best = cpu_bf16_best(), *port = cpu_bf16_portable(), *avx2 = cpu_bf16_avx2();
    printf("# bf16 kernels in use: %s\n", best->name);
    float *x = malloc(sizeof(float) * (size_t)(nx * n)), *wf = malloc(sizeof(float) * (size_t)(rows * n));
    for (int i = 0; i < nx * n; i++) x[i] = xorshift_uniform(&rng) * (i % 97 == 0 ? 300.0f : 1.0f);
    for (int i = 0; i < rows * n; i++) wf[i] = xorshift_uniform(&rng) * 0.1f;
    size_t rb = (size_t)n * 2;
    uint8_t *w = malloc(rb * (size_t)rows);
    for (int r = 0; r < rows; r++) quant_quantize(QT_BF16, wf + (size_t)r * n, w + (size_t)r * rb, n);
    /* a few subnormal weights (the instruction counts them as zero) */
    uint16_t sub = 0x0012;
    memcpy(w + 2 * 5, &sub, 2);
    memcpy(w + rb + 2 * 100, &sub, 2);
    model_weight mw = {.type = QT_BF16, .n_in = n, .n_out = rows, .row_bytes = rb, .data = w};
    CHECK(cpu_bf16_rows(&mw), "BF16 rows of 576 take the BF16 kernels");
    model_weight odd = mw;
    odd.n_in = 48;
    CHECK(!cpu_bf16_rows(&odd), "rows of 48 (not a multiple of 32) do not");
    size_t xs = rb;
    uint8_t *xb = malloc(xs * (size_t)nx);
    for (int t = 0; t < nx; t++) cpu_bf16_round_row(x + (size_t)t * n, n, (uint16_t *)(void *)(xb + (size_t)t * xs));
    float yb[9 * 7], yp[9 * 7], ya[9 * 7];
    best->tile(&mw, 0, rows, xb, xs, nx, yb, rows);
    port->tile(&mw, 0, rows, xb, xs, nx, yp, rows);
    CHECK(memcmp(yb, yp, sizeof yb) == 0, "%s == portable bit for bit (7 x 9)", best->name);
    if (avx2) {
        avx2->tile(&mw, 0, rows, xb, xs, nx, ya, rows);
        CHECK(memcmp(ya, yp, sizeof ya) == 0, "avx2 == portable bit for bit (7 x 9)");
    }
    /* every row count and activation count gives the same element */
    int same = 0, total = 0;
    for (int nr = 1; nr <= rows; nr++)
        for (int t0 = 0; t0 < nx; t0 += 2) {
            int nt = nx - t0 < 5 ? nx - t0 : 5;
            float part[5 * 7];
            best->tile(&mw, 0, nr, xb + (size_t)t0 * xs, xs, nt, part, nr);
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < nr; r++, total++) same += memcmp(&part[t * nr + r], &yb[(t0 + t) * rows + r], 4) == 0;
        }
    CHECK(same == total, "%s: every tile shape gives the same bits (%d/%d elements)", best->name, same, total);
    /* against a double dot product of the same BF16 values */
    double worst = 0.0;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < nx; t++) {
            double e = 0.0, mag = 0.0;
            for (int64_t k = 0; k < n; k++) {
                uint16_t wh, xh;
                memcpy(&wh, w + (size_t)r * rb + 2 * k, 2);
                memcpy(&xh, xb + (size_t)t * xs + 2 * k, 2);
                double wv = (wh & 0x7f80) == 0 ? 0.0 : quant_bf16_to_f32(wh);
                double p = wv * quant_bf16_to_f32(xh);
                e += p;
                mag += fabs(p);
            }
            double rel = fabs(yb[t * rows + r] - e) / mag;
            if (rel > worst) worst = rel;
        }
    CHECK(worst < 1e-5, "= double dot of the BF16 values within float summation (rel %.2g of sum|w*x|)", worst);
    /* the activation rounding against the float dot of the unrounded row: within 2^-8 of sum|w*x| */
    double worst_act = 0.0;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < nx; t++) {
            double e = 0.0, mag = 0.0;
            for (int64_t k = 0; k < n; k++) {
                uint16_t wh;
                memcpy(&wh, w + (size_t)r * rb + 2 * k, 2);
                double wv = (wh & 0x7f80) == 0 ? 0.0 : quant_bf16_to_f32(wh);
                e += wv * x[(size_t)t * n + k];
                mag += fabs(wv * x[(size_t)t * n + k]);
            }
            double rel = fabs(yb[t * rows + r] - e) / mag;
            if (rel > worst_act) worst_act = rel;
        }
    CHECK(worst_act < 1.0 / 256, "activations rounded to BF16: within 2^-8 of sum|w*x| (%.2g)", worst_act);
    free(x);
    free(wf);
    free(w);
    free(xb);
}

int main(void) {
    test_rounding();
    test_order();
    test_builds();
    return check_finish("test_cpu_bf16");
}
