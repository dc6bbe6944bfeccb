/* test_cuda.c: the cuda backend's kernels (src/backend/cuda/cuda_device.h)
 * against the CPU's dequantization and float64 references, on a GPU.
 *
 * Built into every test build; without CUDA (the normal build, CI) or
 * without a usable GPU it prints why it skipped and "0 passed, 0 failed"
 * (a skip is never counted as a pass). `test_cuda --require-gpu` (used by
 * scripts/cuda/cuda-check) fails instead of skipping.
 *
 * Checked per tensor type (all 13 greta reads): the embedding kernel's
 * dequantization bit for bit against quant_dequantize(); matmul against a
 * float64 dot of the same dequantized values (bound from the summation
 * length); matmul of one row equal bit for bit to the same row in a batch
 * (batch invariance). Then RMSNorm, RoPE, add, SwiGLU against float64, and
 * attention over an f16 cache against float64 softmax over the same f16
 * values, again with one row alone equal to the row in a batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"

#ifndef GRETA_CUDA
int main(void) {
    printf("skipped: greta was built without CUDA (make CUDA=1); nothing ran\n");
    printf("test_cuda: 0 passed, 0 failed\n");
    return 0;
}
#else

#include "backend/cuda/cuda_device.h"
#include "format/quant.h"
#include "tools/quantize_model.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float gaussian(void) {
    double u = uniform() + 1e-12, v = uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static char err[512];

static void *to_device(const void *src, size_t bytes) {
    void *p = NULL;
    if (gpu_alloc(&p, bytes, "test data", err, sizeof err) != 0 || gpu_upload(p, src, bytes, err, sizeof err) != 0) {
        CHECK(false, "device copy: %s", err);
        return NULL;
    }
    return p;
}

static bool to_host(gpu_stream *s, float *dst, const float *src, int64_t stride, int64_t width, int n) {
    bool ok = gpu_copy_rows_to_host(s, dst, src, stride, width, n, err, sizeof err) == 0;
    CHECK(ok, "copy back: %s", err);
    return ok;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* One weight type: n_out rows of n_in values, n activation rows. */
static void test_type(gpu_stream *s, uint32_t type, int64_t n_in) {
    const int64_t n_out = 37;
    const int n = 13;
    const size_t row_bytes = quant_row_bytes(type, n_in);
    float *src = malloc((size_t)n_in * sizeof(float));
    float *deq = malloc((size_t)(n_out * n_in) * sizeof(float));
    uint8_t *wq = malloc((size_t)n_out * row_bytes);
    float *x = malloc((size_t)(n * n_in) * sizeof(float));
    float *y = malloc((size_t)(n * n_out) * sizeof(float));
    float *y1 = malloc((size_t)n_out * sizeof(float));
    float *emb = malloc((size_t)(n_out * n_in) * sizeof(float));
    bool made = true;
    for (int64_t r = 0; r < n_out; r++) {
        float scale = (float)(0.01 + uniform());
        for (int64_t k = 0; k < n_in; k++) src[k] = gaussian() * scale;
        made = made && quantize_row(type, src, wq + r * row_bytes, n_in) == row_bytes;
        quant_dequantize(type, wq + r * row_bytes, deq + r * n_in, n_in);
    }
    CHECK(made, "%s: %lld x %lld weights quantized", quant_type_name(type), (long long)n_out, (long long)n_in);
    for (int64_t k = 0; k < n * n_in; k++) x[k] = gaussian();
    int32_t tokens[37];
    for (int i = 0; i < n_out; i++) tokens[i] = (int32_t)((i * 11) % n_out);
    void *wd = to_device(wq, (size_t)n_out * row_bytes);
    float *xd = to_device(x, (size_t)(n * n_in) * sizeof(float));
    int32_t *td = to_device(tokens, sizeof tokens);
    float *yd = NULL, *ed = NULL;
    gpu_alloc((void **)&yd, (size_t)(n * n_out) * sizeof(float), "y", err, sizeof err);
    gpu_alloc((void **)&ed, (size_t)(n_out * n_in) * sizeof(float), "emb", err, sizeof err);
    if (!wd || !xd || !td || !yd || !ed) goto done;

    /* embedding rows: bit-exact dequantization */
    CHECK(gpu_embed(s, type, wd, row_bytes, n_in, td, (int)n_out, ed, n_in, err, sizeof err) == 0, "embed: %s", err);
    if (to_host(s, emb, ed, n_in, n_in, (int)n_out)) {
        int64_t differ = 0;
        for (int i = 0; i < n_out; i++)
            for (int64_t k = 0; k < n_in; k++)
                differ += bits(emb[i * n_in + k]) != bits(deq[(int64_t)tokens[i] * n_in + k]);
        CHECK(differ == 0, "%s: GPU dequantization of %lld rows of %lld bit-exact with quant_dequantize (%lld differ)",
              quant_type_name(type), (long long)n_out, (long long)n_in, (long long)differ);
    }

    /* matmul against float64 */
    CHECK(gpu_matmul(s, type, wd, row_bytes, n_in, n_out, xd, n_in, yd, n_out, n, err, sizeof err) == 0, "matmul: %s",
          err);
    if (to_host(s, y, yd, n_out, n_out, n)) {
        double worst = 0.0;
        int bad = 0;
        for (int i = 0; i < n; i++) {
            for (int64_t r = 0; r < n_out; r++) {
                double ref = 0.0, mag = 0.0;
                for (int64_t k = 0; k < n_in; k++) {
                    ref += (double)deq[r * n_in + k] * x[i * n_in + k];
                    mag += fabs((double)deq[r * n_in + k] * x[i * n_in + k]);
                }
                double e = fabs(y[i * n_out + r] - ref) / (mag > 0 ? mag : 1);
                if (e > worst) worst = e;
                if (e > (double)(n_in / 32 + 40) * 0x1p-24) bad++;
            }
        }
        CHECK(bad == 0, "%s: matmul %d x %lld rows of %lld within summation bound of float64 (worst %.3g of sum|w*x|)",
              quant_type_name(type), n, (long long)n_out, (long long)n_in, worst);
    }
    /* one row alone == the same row in the batch */
    int same = 0;
    const int probe[3] = {0, 6, 12};
    for (int p = 0; p < 3; p++) {
        int i = probe[p];
        gpu_matmul(s, type, wd, row_bytes, n_in, n_out, xd + (int64_t)i * n_in, n_in, yd, n_out, 1, err, sizeof err);
        if (!to_host(s, y1, yd, n_out, n_out, 1)) break;
        int eq = 1;
        for (int64_t r = 0; r < n_out; r++) eq &= bits(y1[r]) == bits(y[i * n_out + r]);
        same += eq;
    }
    CHECK(same == 3, "%s: matmul of one row bitwise equal to that row in a batch of %d (%d of 3 rows)",
          quant_type_name(type), n, same);
done:
    gpu_free(wd);
    gpu_free(xd);
    gpu_free(td);
    gpu_free(yd);
    gpu_free(ed);
    free(src);
    free(deq);
    free(wq);
    free(x);
    free(y);
    free(y1);
    free(emb);
}

static uint16_t to_f16(float f) { return quant_f32_to_f16(f); }
static float from_f16(uint16_t h) { return quant_f16_to_f32(h); }

/* rmsnorm, rope, add, swiglu against float64 */
static void test_elementwise(gpu_stream *s) {
    const int n = 5, d = 192, hd = 64, rope_dim = 64;
    float x[5 * 192], w[192], cs[5 * 32], sn[5 * 32], out[5 * 192], u[5 * 192];
    for (int k = 0; k < n * d; k++) x[k] = gaussian(), u[k] = gaussian();
    for (int k = 0; k < d; k++) w[k] = 1.0f + 0.1f * gaussian();
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rope_dim / 2; j++) {
            double th = (i + 3) * pow(10000.0, -2.0 * j / rope_dim);
            cs[i * 32 + j] = (float)cos(th);
            sn[i * 32 + j] = (float)sin(th);
        }
    float *xd = to_device(x, sizeof x), *wd = to_device(w, sizeof w), *ud = to_device(u, sizeof u);
    float *cd = to_device(cs, sizeof cs), *sd = to_device(sn, sizeof sn), *yd = NULL;
    gpu_alloc((void **)&yd, sizeof x, "y", err, sizeof err);
    if (!xd || !wd || !ud || !cd || !sd || !yd) return;
    double worst = 0;
    gpu_rmsnorm(s, yd, d, xd, d, wd, d, 1e-5f, n, err, sizeof err);
    if (to_host(s, out, yd, d, d, n)) {
        for (int i = 0; i < n; i++) {
            double ss = 0;
            for (int k = 0; k < d; k++) ss += (double)x[i * d + k] * x[i * d + k];
            double sc = 1.0 / sqrt(ss / d + 1e-5);
            for (int k = 0; k < d; k++) worst = fmax(worst, fabs(out[i * d + k] - x[i * d + k] * sc * w[k]));
        }
        CHECK(worst < 1e-5, "rmsnorm within 1e-5 of float64 (worst %.3g)", worst);
    }
    worst = 0;
    gpu_rope(s, xd, d, d, hd, rope_dim, cd, sd, n, err, sizeof err);
    if (to_host(s, out, xd, d, d, n)) {
        for (int i = 0; i < n; i++)
            for (int h = 0; h < d / hd; h++)
                for (int j = 0; j < rope_dim / 2; j++) {
                    const float *v = x + i * d + h * hd;
                    double c = cs[i * 32 + j], sv = sn[i * 32 + j];
                    worst = fmax(worst, fabs(out[i * d + h * hd + 2 * j] - (v[2 * j] * c - v[2 * j + 1] * sv)));
                    worst = fmax(worst, fabs(out[i * d + h * hd + 2 * j + 1] - (v[2 * j] * sv + v[2 * j + 1] * c)));
                }
        CHECK(worst < 1e-6, "rope within 1e-6 of float64 (worst %.3g)", worst);
    }
    gpu_upload(xd, x, sizeof x, err, sizeof err);
    gpu_upload(yd, u, sizeof u, err, sizeof err);
    gpu_add(s, yd, d, xd, d, d, n, err, sizeof err);
    if (to_host(s, out, yd, d, d, n)) {
        int eq = 1;
        for (int k = 0; k < n * d; k++) eq &= bits(out[k]) == bits(x[k] + u[k]);
        CHECK(eq, "add bit-exact");
    }
    worst = 0;
    gpu_swiglu(s, xd, d, ud, d, d, n, err, sizeof err);
    if (to_host(s, out, xd, d, d, n)) {
        for (int k = 0; k < n * d; k++) {
            double g = x[k], ref = g / (1.0 + exp(-g)) * u[k];
            worst = fmax(worst, fabs(out[k] - ref) / (fabs(ref) + 1e-3));
        }
        CHECK(worst < 1e-6, "swiglu within 1e-6 (relative) of float64 (worst %.3g)", worst);
    }
    gpu_free(xd), gpu_free(wd), gpu_free(ud), gpu_free(cd), gpu_free(sd), gpu_free(yd);
}

/* kv_store + attend: GQA 4 heads over 2 KV heads, head_dim 64, rows at
 * positions 30..35 of a cache whose earlier positions hold random f16. */
static void test_attention(gpu_stream *s) {
    enum { N_CTX = 64, HD = 64, NH = 4, NKV = 2, KVD = NKV * HD, QD = NH * HD, N = 6, P0 = 30 };
    static uint16_t kc[N_CTX * KVD], vc[N_CTX * KVD];
    static float q[N * QD], k[N * KVD], v[N * KVD], out[N * QD], out1[QD];
    for (int t = 0; t < N_CTX * KVD; t++) kc[t] = to_f16(gaussian()), vc[t] = to_f16(gaussian());
    for (int t = 0; t < N * QD; t++) q[t] = gaussian();
    for (int t = 0; t < N * KVD; t++) k[t] = gaussian(), v[t] = gaussian();
    uint16_t *kd = to_device(kc, sizeof kc), *vd = to_device(vc, sizeof vc);
    float *qd = to_device(q, sizeof q), *knew = to_device(k, sizeof k), *vnew = to_device(v, sizeof v), *ad = NULL;
    gpu_alloc((void **)&ad, sizeof out, "att", err, sizeof err);
    if (!kd || !vd || !qd || !knew || !vnew || !ad) return;
    gpu_kv_group g;
    memset(&g, 0, sizeof g);
    g.n = N;
    for (int i = 0; i < N; i++) g.k[i] = kd, g.v[i] = vd, g.pos[i] = P0 + i;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < KVD; c++) {
            kc[(P0 + i) * KVD + c] = to_f16(k[i * KVD + c]);
            vc[(P0 + i) * KVD + c] = to_f16(v[i * KVD + c]);
        }
    const float scale = 1.0f / sqrtf((float)HD);
    CHECK(gpu_kv_store(s, knew, vnew, KVD, KVD, &g, err, sizeof err) == 0, "kv_store: %s", err);
    CHECK(gpu_attend(s, qd, QD, ad, QD, KVD, NH, NKV, HD, scale, &g, err, sizeof err) == 0, "attend: %s", err);
    if (!to_host(s, out, ad, QD, QD, N)) return;
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) {
            int kvh = h / (NH / NKV);
            double sc[N_CTX], mx = -1e300, sum = 0;
            for (int t = 0; t <= P0 + i; t++) {
                double dot = 0;
                for (int c = 0; c < HD; c++) dot += (double)q[i * QD + h * HD + c] * from_f16(kc[t * KVD + kvh * HD + c]);
                sc[t] = dot * scale;
                mx = fmax(mx, sc[t]);
            }
            for (int t = 0; t <= P0 + i; t++) sum += sc[t] = exp(sc[t] - mx);
            for (int c = 0; c < HD; c++) {
                double ref = 0;
                for (int t = 0; t <= P0 + i; t++) ref += sc[t] / sum * from_f16(vc[t * KVD + kvh * HD + c]);
                worst = fmax(worst, fabs(out[i * QD + h * HD + c] - ref));
            }
        }
    CHECK(worst < 2e-6, "kv_store + attend (GQA 4/2, 31..36 keys) within 2e-6 of float64 over the f16 cache (worst %.3g)",
          worst);
    /* row 4 alone, after the batch stored every row */
    gpu_kv_group one;
    memset(&one, 0, sizeof one);
    one.n = 1;
    one.row0 = 0;
    one.k[0] = kd, one.v[0] = vd, one.pos[0] = P0 + 4;
    gpu_attend(s, qd + 4 * QD, QD, ad, QD, KVD, NH, NKV, HD, scale, &one, err, sizeof err);
    if (to_host(s, out1, ad, QD, QD, 1)) {
        int eq = 1;
        for (int c = 0; c < QD; c++) eq &= bits(out1[c]) == bits(out[4 * QD + c]);
        CHECK(eq, "attend of one row bitwise equal to that row in a batch of %d", N);
    }
    gpu_free(kd), gpu_free(vd), gpu_free(qd), gpu_free(knew), gpu_free(vnew), gpu_free(ad);
}

int main(int argc, char **argv) {
    bool require = argc > 1 && strcmp(argv[1], "--require-gpu") == 0;
    char name[128];
    size_t free_b = 0, total_b = 0;
    if (gpu_device_open(name, sizeof name, &free_b, &total_b, err, sizeof err) != 0) {
        if (require) {
            CHECK(false, "a GPU is required: %s", err);
            return check_finish("test_cuda");
        }
        printf("skipped: no usable GPU (%s); nothing ran\n", err);
        printf("test_cuda: 0 passed, 0 failed\n");
        return 0;
    }
    printf("# device %s, %zu of %zu bytes free\n", name, free_b, total_b);
    gpu_stream *s = NULL;
    CHECK(gpu_stream_new(&s, err, sizeof err) == 0, "stream: %s", err);
    if (!s) return check_finish("test_cuda");
    const uint32_t types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                              QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) test_type(s, types[i], 512);
    test_type(s, QT_F16, 100); /* a row that ends inside a 32-value unit */
    test_type(s, QT_F32, 72);
    test_elementwise(s);
    test_attention(s);
    gpu_stream_free(s);
    return check_finish("test_cuda");
}
#endif
