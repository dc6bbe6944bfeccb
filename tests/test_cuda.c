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
 * values, again with one row alone equal to the row in a batch.
 *
 * The q8_0 KV cache: kv_store bit-exact with quantize_row(Q8_0), attention
 * over it against float64 over its dequantized values. The fast prefill
 * (test_fast_* below): f16 conversion and dequantization to f16 bit-exact;
 * the cuBLAS GEMM for every type (chunked through a small scratch and
 * through a whole one) and the flash attention (f16 and q8_0 caches, GQA,
 * head_dim 64 and 128, prompts at pos0 > 0 with partial tiles) against
 * float64. 8-bit activations (test_q8, test_rmsnorm_q8): the quantizer
 * bit-exact with its definition computed here, the integer products of
 * Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K against float64 (over the same 8-bit
 * values, and over the exact input within the rounding bound), batch
 * invariance and the fused epilogues bitwise. Outputs are poisoned with
 * NaN before each kernel, inputs are fresh random values. */
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

/* Fills a device buffer of count floats with NaN (unwritten outputs fail). */
static void poison(gpu_stream *s, float *dev, size_t count) {
    float *nan_buf = malloc(count * sizeof(float));
    if (!nan_buf) return;
    for (size_t k = 0; k < count; k++) nan_buf[k] = NAN;
    gpu_upload(dev, nan_buf, count * sizeof(float), err, sizeof err);
    (void)s;
    free(nan_buf);
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

    /* matmul against float64 (output poisoned with NaN first) */
    poison(s, yd, (size_t)(n * n_out));
    CHECK(gpu_matmul(s, type, wd, row_bytes, n_in, n_out, xd, n_in, yd, n_out, n, err, sizeof err) == 0, "matmul: %s",
          err);
    const bool has_min = type == QT_Q4_1 || type == QT_Q5_1 || type == QT_Q2_K || type == QT_Q4_K || type == QT_Q5_K;
    double wmax[37], xabs[13];
    for (int64_t r = 0; r < n_out; r++) {
        wmax[r] = 0;
        for (int64_t k = 0; k < n_in; k++) wmax[r] = fmax(wmax[r], fabs(deq[r * n_in + k]));
    }
    for (int i = 0; i < n; i++) {
        xabs[i] = 0;
        for (int64_t k = 0; k < n_in; k++) xabs[i] += fabs(x[i * n_in + k]);
    }
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
                /* The fast kernels apply a group's scale and min once
                 * (d * sum(q x) - m * sum(x), cuda_matvec.cu): the sums
                 * then run over |d q x| + |m x|, and |m| <= 3 max|w| of
                 * the row (a sub-block's range is at most 2 max|w|). */
                if (has_min) mag += 6.0 * wmax[r] * xabs[i];
                double e = fabs(y[i * n_out + r] - ref) / (mag > 0 ? mag : 1);
                if (e > worst) worst = e;
                if (!(e <= (double)(n_in / 32 + 40) * 0x1p-24)) bad++;
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
 * positions P0 .. P0 + 5 of layer 1 of a two-layer cache whose earlier
 * positions hold random f16; the split-K kernel (with the model's number
 * of ranges and with 3) and the simple one (no scratch). */
enum { A_CTX = 320, A_HD = 64, A_MAX_NH = 8, A_MAX_NKV = 4, A_N = 6, A_P0 = 290 };

static bool same_bits(const float *a, const float *b, size_t count);
static void *poisoned(size_t bytes);

static void attention_case(gpu_stream *s, int A_NH, int A_NKV, int splits, bool use_scratch) {
    const int A_KVD = A_NKV * A_HD, A_QD = A_NH * A_HD;
    static uint16_t kc[2 * A_CTX * A_MAX_NKV * A_HD], vc[2 * A_CTX * A_MAX_NKV * A_HD];
    static float q[A_N * A_MAX_NH * A_HD], k[A_N * A_MAX_NKV * A_HD], v[A_N * A_MAX_NKV * A_HD];
    static float out[A_N * A_MAX_NH * A_HD], out1[A_MAX_NH * A_HD];
    for (int t = 0; t < 2 * A_CTX * A_KVD; t++) kc[t] = to_f16(gaussian()), vc[t] = to_f16(gaussian());
    for (int t = 0; t < A_N * A_QD; t++) q[t] = 2.0f * gaussian();
    for (int t = 0; t < A_N * A_KVD; t++) k[t] = gaussian(), v[t] = gaussian();
    const size_t cache_bytes = (size_t)2 * A_CTX * A_KVD * sizeof(uint16_t);
    uint16_t *kd = to_device(kc, cache_bytes), *vd = to_device(vc, cache_bytes);
    float *qd = to_device(q, (size_t)A_N * A_QD * sizeof(float)), *knew = to_device(k, (size_t)A_N * A_KVD * sizeof(float));
    float *vnew = to_device(v, (size_t)A_N * A_KVD * sizeof(float)), *ad = NULL;
    gpu_kv_row rows[A_N];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < A_N; i++) rows[i].k = kd, rows[i].v = vd, rows[i].layer_values = A_CTX * A_KVD, rows[i].pos = A_P0 + i;
    gpu_kv_row *rd = to_device(rows, sizeof rows);
    float *scratch = NULL;
    gpu_alloc((void **)&ad, (size_t)A_N * A_QD * sizeof(float), "att", err, sizeof err);
    if (use_scratch)
        gpu_alloc((void **)&scratch, gpu_attend_scratch_floats(A_NH, A_HD, splits, A_N) * sizeof(float), "scratch", err,
                  sizeof err);
    if (!kd || !vd || !qd || !knew || !vnew || !ad || !rd || (use_scratch && !scratch)) return;
    const uint16_t *kl = kc + A_CTX * A_KVD, *vl = vc + A_CTX * A_KVD; /* layer 1 */
    for (int i = 0; i < A_N; i++)
        for (int c = 0; c < A_KVD; c++) {
            kc[A_CTX * A_KVD + (A_P0 + i) * A_KVD + c] = to_f16(k[i * A_KVD + c]);
            vc[A_CTX * A_KVD + (A_P0 + i) * A_KVD + c] = to_f16(v[i * A_KVD + c]);
        }
    const float scale = 1.0f / sqrtf((float)A_HD);
    poison(s, ad, A_N * A_QD);
    CHECK(gpu_kv_store(s, knew, vnew, A_KVD, A_KVD, 1, rd, A_N, 0, err, sizeof err) == 0, "kv_store: %s", err);
    CHECK(gpu_attend(s, qd, A_QD, ad, A_QD, A_KVD, A_NH, A_NKV, A_HD, scale, 1, rd, A_N, 0, scratch, splits, err,
                     sizeof err) == 0,
          "attend: %s", err);
    if (!to_host(s, out, ad, A_QD, A_QD, A_N)) return;
    double worst = 0;
    for (int i = 0; i < A_N; i++)
        for (int h = 0; h < A_NH; h++) {
            int kvh = h / (A_NH / A_NKV);
            static double sc[A_CTX];
            double mx = -1e300, sum = 0;
            for (int t = 0; t <= A_P0 + i; t++) {
                double dot = 0;
                for (int c = 0; c < A_HD; c++) dot += (double)q[i * A_QD + h * A_HD + c] * from_f16(kl[t * A_KVD + kvh * A_HD + c]);
                sc[t] = dot * scale;
                mx = fmax(mx, sc[t]);
            }
            for (int t = 0; t <= A_P0 + i; t++) sum += sc[t] = exp(sc[t] - mx);
            for (int c = 0; c < A_HD; c++) {
                double ref = 0;
                for (int t = 0; t <= A_P0 + i; t++) ref += sc[t] / sum * from_f16(vl[t * A_KVD + kvh * A_HD + c]);
                double e = fabs(out[i * A_QD + h * A_HD + c] - ref);
                worst = isnan(e) ? INFINITY : fmax(worst, e);
            }
        }
    const char *kind = use_scratch ? "split-K" : "simple";
    CHECK(worst < 2e-6, "kv_store + %s attend (%d ranges; GQA %d/%d, %d..%d keys, layer 1) within 2e-6 of float64 over the f16 cache (worst %.3g)",
          kind, use_scratch ? splits : 1, A_NH, A_NKV, A_P0 + 1, A_P0 + A_N, worst);
    /* row 4 alone, after the batch stored every row */
    poison(s, ad, A_QD);
    gpu_attend(s, qd + 4 * A_QD, A_QD, ad, A_QD, A_KVD, A_NH, A_NKV, A_HD, scale, 1, rd + 4, 1, 0, scratch, splits, err,
               sizeof err);
    if (to_host(s, out1, ad, A_QD, A_QD, 1)) {
        int eq = 1;
        for (int c = 0; c < A_QD; c++) eq &= bits(out1[c]) == bits(out[4 * A_QD + c]);
        CHECK(eq, "%s attend of one row bitwise equal to that row in a batch of %d", kind, A_N);
    }
    /* gpu_attend_q8: the same att, and (split kernel) its rows quantized as quantize_q8 does */
    enum { QS = A_MAX_NH * A_HD };
    static int8_t q8a[A_N * QS], q8b[A_N * QS];
    static float dsa[A_N * QS / 16], dsb[A_N * QS / 16];
    int8_t *xqd = poisoned(sizeof q8a);
    float *xdsd = poisoned(sizeof dsa);
    int quantized = -1;
    poison(s, ad, A_N * A_QD);
    bool ok = xqd && xdsd &&
              gpu_attend_q8(s, qd, A_QD, ad, A_QD, A_KVD, A_NH, A_NKV, A_HD, scale, 1, rd, A_N, 0, scratch, splits, xqd,
                            xdsd, QS, &quantized, err, sizeof err) == 0 &&
              to_host(s, out1, ad, A_QD, A_QD, 1) && gpu_download(q8a, xqd, sizeof q8a, err, sizeof err) == 0 &&
              gpu_download(dsa, xdsd, sizeof dsa, err, sizeof err) == 0;
    CHECK(ok && quantized == (use_scratch ? 1 : 0), "%s attend_q8 ran (quantized %d): %s", kind, quantized, err);
    if (ok && quantized == 1) {
        float *back = NULL;
        gpu_alloc((void **)&back, (size_t)A_N * A_QD * sizeof(float), "att", err, sizeof err);
        ok = back && gpu_upload(back, out, (size_t)A_N * A_QD * sizeof(float), err, sizeof err) == 0 &&
             gpu_quantize_q8(s, back, A_QD, A_QD, A_N, xqd, xdsd, QS, err, sizeof err) == 0 &&
             gpu_stream_sync(s, err, sizeof err) == 0 && gpu_download(q8b, xqd, sizeof q8b, err, sizeof err) == 0 &&
             gpu_download(dsb, xdsd, sizeof dsb, err, sizeof err) == 0;
        bool same = ok && same_bits(out1, out, A_QD);
        for (int i = 0; same && i < A_N; i++)
            same = memcmp(q8a + i * QS, q8b + i * QS, A_QD) == 0 && same_bits(dsa + i * QS / 16, dsb + i * QS / 16, A_QD / 16);
        CHECK(same, "split-K attend_q8 (%d ranges): att bitwise as attend, its 8-bit rows as quantize_q8's", splits);
        gpu_free(back);
    }
    gpu_free(xqd), gpu_free(xdsd);
    gpu_free(kd), gpu_free(vd), gpu_free(qd), gpu_free(knew), gpu_free(vnew), gpu_free(ad), gpu_free(rd);
    gpu_free(scratch);
}

static void test_attention(gpu_stream *s) {
    attention_case(s, 4, 2, gpu_attend_splits(2), true);
    attention_case(s, 4, 2, 3, true);
    attention_case(s, 4, 2, 1, false);
    attention_case(s, 4, 4, 5, true); /* one query head per KV head (llama2) */
    attention_case(s, 8, 2, 2, true); /* four (llama3) */
    attention_case(s, 6, 2, 7, true); /* three (smollm2) */
}

/* The fused kernels against the steps they replace, bit for bit: matvec
 * of 3 matrices in one launch, matmul + add, gate/up + swiglu, rope + rope
 * + kv_store. */
static bool same_bits(const float *a, const float *b, size_t count) {
    for (size_t k = 0; k < count; k++)
        if (bits(a[k]) != bits(b[k])) return false;
    return true;
}

static void test_fused(gpu_stream *s, uint32_t type) {
    enum { IN = 512, OUT = 96, N = 3 };
    const size_t rb = quant_row_bytes(type, IN);
    static float src[IN], x[N * IN], r0[N * OUT], y_ref[3][N * OUT], y[3][N * OUT], res[N * OUT], tmp[N * OUT];
    uint8_t *wq[3];
    void *wd[3];
    float *yd[3], *resd = NULL;
    for (int m = 0; m < 3; m++) {
        wq[m] = malloc((size_t)OUT * rb);
        if (!wq[m]) return;
        for (int r = 0; r < OUT; r++) {
            for (int k = 0; k < IN; k++) src[k] = gaussian() * 0.3f;
            quantize_row(type, src, wq[m] + (size_t)r * rb, IN);
        }
        wd[m] = to_device(wq[m], (size_t)OUT * rb);
        yd[m] = NULL;
        gpu_alloc((void **)&yd[m], sizeof y[m], "y", err, sizeof err);
    }
    for (int k = 0; k < N * IN; k++) x[k] = gaussian();
    for (int k = 0; k < N * OUT; k++) r0[k] = gaussian();
    float *xd = to_device(x, sizeof x);
    resd = to_device(r0, sizeof r0);
    const char *name = quant_type_name(type);
    for (int m = 0; m < 3; m++) {
        gpu_matmul(s, type, wd[m], rb, IN, OUT - 16 * m, xd, IN, yd[m], OUT, N, err, sizeof err);
        to_host(s, y_ref[m], yd[m], OUT, OUT - 16 * m, N);
        poison(s, yd[m], N * OUT);
    }
    gpu_mv_args a;
    memset(&a, 0, sizeof a);
    for (int m = 0; m < 3; m++) a.w[m] = wd[m], a.row_bytes[m] = rb, a.n_out[m] = OUT - 16 * m, a.y[m] = yd[m], a.ys[m] = OUT;
    a.count = 3, a.n = N, a.n_in = IN, a.x = xd, a.xs = IN;
    CHECK(gpu_matvec(s, type, &a, MV_PLAIN, err, sizeof err) == 0, "matvec: %s", err);
    bool eq = true;
    for (int m = 0; m < 3; m++) eq = eq && to_host(s, y[m], yd[m], OUT, OUT - 16 * m, N) &&
                                    same_bits(y[m], y_ref[m], (size_t)N * (OUT - 16 * m));
    CHECK(eq, "%s: three matrices in one launch == three products", name);
    /* matmul + add */
    poison(s, yd[0], N * OUT);
    a.count = 1, a.n_out[0] = OUT, a.res = resd, a.res_s = OUT;
    CHECK(gpu_matvec(s, type, &a, MV_ADD, err, sizeof err) == 0, "matvec add: %s", err);
    if (to_host(s, y[0], yd[0], OUT, OUT, N) && to_host(s, res, resd, OUT, OUT, N)) {
        for (int k = 0; k < N * OUT; k++) tmp[k] = r0[k] + y_ref[0][k];
        CHECK(same_bits(y[0], y_ref[0], N * OUT) && same_bits(res, tmp, N * OUT), "%s: matmul + add fused == the steps",
              name);
    }
    /* gate/up + swiglu: the steps on the reference outputs */
    float *gd = to_device(y_ref[0], sizeof y_ref[0]), *ud = NULL;
    gpu_matmul(s, type, wd[1], rb, IN, OUT, xd, IN, yd[1], OUT, N, err, sizeof err);
    to_host(s, tmp, yd[1], OUT, OUT, N);
    ud = to_device(tmp, sizeof tmp);
    gpu_swiglu(s, gd, OUT, ud, OUT, OUT, N, err, sizeof err);
    to_host(s, y_ref[2], gd, OUT, OUT, N);
    poison(s, yd[0], N * OUT), poison(s, yd[1], N * OUT);
    a.count = 2, a.n_out[0] = OUT, a.n_out[1] = OUT;
    CHECK(gpu_matvec(s, type, &a, MV_SWIGLU, err, sizeof err) == 0, "matvec swiglu: %s", err);
    if (to_host(s, y[0], yd[0], OUT, OUT, N) && to_host(s, y[1], yd[1], OUT, OUT, N))
        CHECK(same_bits(y[0], y_ref[2], N * OUT) && same_bits(y[1], tmp, N * OUT),
              "%s: gate/up + swiglu fused == the steps", name);
    gpu_free(gd), gpu_free(ud), gpu_free(xd), gpu_free(resd);
    for (int m = 0; m < 3; m++) gpu_free(wd[m]), gpu_free(yd[m]), free(wq[m]);
}

static void test_rope_store(gpu_stream *s) {
    enum { N = 3, HD = 64, ROPE = 32, NH = 4, NKV = 2, QD = NH * HD, KVD = NKV * HD, CTX = 16 };
    static float q[N * QD], k[N * KVD], v[N * KVD], cs[N * ROPE / 2], sn[N * ROPE / 2];
    static float q1[N * QD], k1[N * KVD], q2[N * QD], k2[N * KVD];
    static uint16_t c1[2 * 2 * CTX * KVD], c2[2 * 2 * CTX * KVD];
    for (int t = 0; t < N * QD; t++) q[t] = gaussian();
    for (int t = 0; t < N * KVD; t++) k[t] = gaussian(), v[t] = gaussian();
    for (int t = 0; t < N * ROPE / 2; t++) cs[t] = (float)cos(0.3 * t), sn[t] = (float)sin(0.3 * t);
    gpu_kv_row rows[N];
    memset(rows, 0, sizeof rows);
    uint16_t *cache[2];
    float *qd[2], *kd[2];
    for (int c = 0; c < 2; c++) {
        cache[c] = to_device(c1, sizeof c1); /* zeros: K then V, two layers each */
        qd[c] = to_device(q, sizeof q);
        kd[c] = to_device(k, sizeof k);
    }
    float *vd = to_device(v, sizeof v), *cd = to_device(cs, sizeof cs), *sd = to_device(sn, sizeof sn);
    gpu_kv_row *rd[2];
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < N; i++)
            rows[i].k = cache[c], rows[i].v = cache[c] + 2 * CTX * KVD, rows[i].layer_values = CTX * KVD,
            rows[i].pos = 5 + 3 * i;
        rd[c] = to_device(rows, sizeof rows);
    }
    gpu_rope(s, qd[0], QD, QD, HD, ROPE, cd, sd, N, err, sizeof err);
    gpu_rope(s, kd[0], KVD, KVD, HD, ROPE, cd, sd, N, err, sizeof err);
    gpu_kv_store(s, kd[0], vd, KVD, KVD, 1, rd[0], N, 0, err, sizeof err);
    CHECK(gpu_rope_store(s, qd[1], QD, QD, kd[1], vd, KVD, KVD, HD, ROPE, cd, sd, 1, rd[1], N, 0, err, sizeof err) == 0,
          "rope_store: %s", err);
    bool ok = to_host(s, q1, qd[0], QD, QD, N) && to_host(s, q2, qd[1], QD, QD, N) && to_host(s, k1, kd[0], KVD, KVD, N) &&
              to_host(s, k2, kd[1], KVD, KVD, N);
    ok = ok && gpu_copy_rows_to_host(s, (float *)c1, (const float *)cache[0], sizeof c1 / 4, sizeof c1 / 4, 1, err, sizeof err) == 0 &&
         gpu_copy_rows_to_host(s, (float *)c2, (const float *)cache[1], sizeof c2 / 4, sizeof c2 / 4, 1, err, sizeof err) == 0;
    int nonzero = 0;
    for (size_t t = 0; t < sizeof c1 / 2; t++) nonzero += c1[t] != 0;
    CHECK(ok && same_bits(q1, q2, N * QD) && same_bits(k1, k2, N * KVD) && memcmp(c1, c2, sizeof c1) == 0 &&
              nonzero > N * KVD,
          "rope + rope + kv_store fused == the steps (q, k and the cache bitwise; %d cache values written)", nonzero);
    for (int c = 0; c < 2; c++) gpu_free(cache[c]), gpu_free(qd[c]), gpu_free(kd[c]), gpu_free(rd[c]);
    gpu_free(vd), gpu_free(cd), gpu_free(sd);
}

/* ---- the q8_0 KV cache ---- */

/* A device buffer of `bytes` filled with NaN (0xff bytes), so that a value
 * no kernel wrote shows. */
/* Fills `bytes` of device memory with 0xff (NaN as floats). */
static bool poison_bytes(void *dev, size_t bytes) {
    uint8_t *host = malloc(bytes);
    if (!host) return false;
    memset(host, 0xff, bytes);
    bool ok = gpu_upload(dev, host, bytes, err, sizeof err) == 0;
    free(host);
    return ok;
}

/* A new device buffer of `bytes`, poisoned. */
static void *poisoned(size_t bytes) {
    void *d = NULL;
    if (gpu_alloc(&d, bytes, "test data", err, sizeof err) != 0 || !poison_bytes(d, bytes)) {
        CHECK(false, "poisoned device buffer: %s", err);
        gpu_free(d);
        return NULL;
    }
    return d;
}

static int count_nan(const float *v, size_t n) {
    int c = 0;
    for (size_t k = 0; k < n; k++) c += v[k] != v[k];
    return c;
}

/* kv_store into a q8_0 cache == quantize_row(Q8_0) bytes; attend over it
 * within 2e-6 of float64 over the dequantized cache. */
static void test_kv_q8_0(gpu_stream *s) {
    enum { N_CTX = 48, HD = 64, NH = 4, NKV = 2, KVD = NKV * HD, QD = NH * HD, N = 5, P0 = 40 };
    const size_t row_bytes = quant_row_bytes(QT_Q8_0, KVD);
    uint8_t *kc = malloc(N_CTX * row_bytes), *vc = malloc(N_CTX * row_bytes), *back = malloc(N_CTX * row_bytes);
    float *kf = malloc(N_CTX * KVD * sizeof(float)), *vf = malloc(N_CTX * KVD * sizeof(float));
    float *q = malloc(N * QD * sizeof(float)), *out = malloc(N * QD * sizeof(float));
    float row[KVD];
    for (int t = 0; t < N_CTX; t++) {
        for (int c = 0; c < KVD; c++) row[c] = gaussian() * (c % 7 == 0 ? 3.0f : 1.0f);
        quantize_row(QT_Q8_0, row, kc + t * row_bytes, KVD);
        for (int c = 0; c < KVD; c++) row[c] = gaussian();
        quantize_row(QT_Q8_0, row, vc + t * row_bytes, KVD);
    }
    /* the new rows: float32 K and V that kv_store quantizes */
    float knew[N * KVD], vnew[N * KVD];
    for (int k = 0; k < N * KVD; k++) knew[k] = gaussian() * 2.0f, vnew[k] = gaussian();
    knew[3] = 0.0f; /* a block with a zero still quantizes like the CPU */
    for (int i = 0; i < N; i++) {
        quantize_row(QT_Q8_0, knew + i * KVD, kc + (P0 + i) * row_bytes, KVD);
        quantize_row(QT_Q8_0, vnew + i * KVD, vc + (P0 + i) * row_bytes, KVD);
    }
    for (int t = 0; t < N_CTX; t++) {
        quant_dequantize(QT_Q8_0, kc + t * row_bytes, kf + t * KVD, KVD);
        quant_dequantize(QT_Q8_0, vc + t * row_bytes, vf + t * KVD, KVD);
    }
    for (int k = 0; k < N * QD; k++) q[k] = gaussian();
    /* the device cache: the old positions as the CPU made them, the new ones poisoned */
    uint8_t *kd = to_device(kc, N_CTX * row_bytes), *vd = to_device(vc, N_CTX * row_bytes);
    float *knd = to_device(knew, sizeof knew), *vnd = to_device(vnew, sizeof vnew), *qd = to_device(q, N * QD * sizeof(float));
    float *ad = poisoned(N * QD * sizeof(float));
    if (!kd || !vd || !knd || !vnd || !qd || !ad) goto done;
    {
        uint8_t *poison = malloc(N * row_bytes);
        memset(poison, 0xff, N * row_bytes);
        gpu_upload(kd + P0 * row_bytes, poison, N * row_bytes, err, sizeof err);
        gpu_upload(vd + P0 * row_bytes, poison, N * row_bytes, err, sizeof err);
        free(poison);
    }
    gpu_kv_row rows[N];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < N; i++)
        rows[i].k = kd, rows[i].v = vd, rows[i].layer_values = (int64_t)(N_CTX * row_bytes), rows[i].pos = P0 + i;
    gpu_kv_row *rd = to_device(rows, sizeof rows);
    if (!rd) goto done;
    CHECK(gpu_kv_store(s, knd, vnd, KVD, KVD, 0, rd, N, GPU_KV_Q8_0, err, sizeof err) == 0, "kv_store q8_0: %s", err);
    CHECK(gpu_stream_sync(s, err, sizeof err) == 0, "kv_store q8_0 ran: %s", err);
    {
        bool ok = gpu_download(back, kd, N_CTX * row_bytes, err, sizeof err) == 0;
        size_t differ = 0;
        for (size_t b = (size_t)P0 * row_bytes; ok && b < N_CTX * row_bytes; b++) {
            if (back[b] != kc[b] && differ < 6) {
                size_t r = b / row_bytes, blk = b % row_bytes / 34, at = b % row_bytes % 34;
                printf("# K row %zu block %zu byte %zu: want 0x%02x got 0x%02x (x = %.9g)\n", r, blk, at, kc[b], back[b],
                       r >= P0 && r < P0 + N && at >= 2 ? knew[(r - P0) * KVD + blk * 32 + at - 2] : 0.0);
            }
            differ += back[b] != kc[b];
        }
        CHECK(ok && differ == 0, "kv_store q8_0: the new K rows are bit-exact with quantize_row(Q8_0) (%zu bytes differ)",
              differ);
        ok = gpu_download(back, vd, N_CTX * row_bytes, err, sizeof err) == 0;
        differ = 0;
        for (size_t b = (size_t)P0 * row_bytes; ok && b < N_CTX * row_bytes; b++) differ += back[b] != vc[b];
        CHECK(ok && differ == 0, "kv_store q8_0: the new V rows are bit-exact with quantize_row(Q8_0) (%zu bytes differ)",
              differ);
    }
    CHECK(gpu_attend(s, qd, QD, ad, QD, KVD, NH, NKV, HD, 1.0f / sqrtf((float)HD), 0, rd, N, GPU_KV_Q8_0, NULL, 1, err,
                     sizeof err) == 0,
          "attend q8_0: %s", err);
    if (to_host(s, out, ad, QD, QD, N)) {
        double worst = 0;
        for (int i = 0; i < N; i++)
            for (int h = 0; h < NH; h++) {
                int kvh = h / (NH / NKV);
                double sc[N_CTX], mx = -1e300, sum = 0;
                for (int t = 0; t <= P0 + i; t++) {
                    double dot = 0;
                    for (int c = 0; c < HD; c++) dot += (double)q[i * QD + h * HD + c] * kf[t * KVD + kvh * HD + c];
                    sc[t] = dot / sqrt((double)HD);
                    mx = fmax(mx, sc[t]);
                }
                for (int t = 0; t <= P0 + i; t++) sum += sc[t] = exp(sc[t] - mx);
                for (int c = 0; c < HD; c++) {
                    double ref = 0;
                    for (int t = 0; t <= P0 + i; t++) ref += sc[t] / sum * vf[t * KVD + kvh * HD + c];
                    worst = fmax(worst, fabs(out[i * QD + h * HD + c] - ref));
                }
            }
        CHECK(worst < 2e-6 && count_nan(out, N * QD) == 0,
              "attend over the q8_0 cache (kv_store'd rows, GQA 4/2) within 2e-6 of float64 over its dequantized values "
              "(worst %.3g)", worst);
    }
    gpu_free(rd);
done:
    gpu_free(kd), gpu_free(vd), gpu_free(knd), gpu_free(vnd), gpu_free(qd), gpu_free(ad);
    free(kc), free(vc), free(back), free(kf), free(vf), free(q), free(out);
}

/* ---- the fast prefill ---- */

/* ---- 8-bit activations (cuda_matvec_q8.cu) ----
 * The CPU's own quantization of an input row, written from the definition
 * in cuda_device.h (not from the kernel): per 32 values d = max|x| / 127,
 * q = x / d to nearest even, s = d * sum(q). */
static void q8_quantize_cpu(const float *x, int64_t n_in, int8_t *q, float *ds) {
    for (int64_t b = 0; b < n_in / 32; b++) {
        float amax = 0.0f;
        for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[32 * b + k]));
        const float d = amax / 127.0f;
        int sum = 0;
        for (int k = 0; k < 32; k++) {
            const int v = d == 0.0f ? 0 : (int)nearbyintf(x[32 * b + k] / d);
            q[32 * b + k] = (int8_t)v;
            sum += v;
        }
        ds[2 * b] = d, ds[2 * b + 1] = d * (float)sum;
    }
}

/* Weights of type (n_out rows of n_in) against n rows quantized to 8 bits:
 * the quantizer bit-exact with the CPU's; the integer kernel within the
 * summation bound of float64 over the same dequantized weights and 8-bit
 * values, and within the 8-bit rounding bound of float64 over the exact
 * input; one row alone == the row in the batch; fused epilogues == steps. */
static void test_q8(gpu_stream *s, uint32_t type, int64_t n_in) {
    const int64_t n_out = 37, qs = (n_in + 63) / 64 * 64;
    const int n = 11;
    const char *name = quant_type_name(type);
    const size_t row_bytes = quant_row_bytes(type, n_in);
    float *src = malloc((size_t)n_in * sizeof(float));
    float *deq = malloc((size_t)(n_out * n_in) * sizeof(float));
    uint8_t *wq = malloc((size_t)n_out * row_bytes);
    float *x = malloc((size_t)(n * n_in) * sizeof(float));
    int8_t *q = malloc((size_t)(n * qs)), *q_gpu = malloc((size_t)(n * qs));
    float *ds = malloc((size_t)(n * qs / 16) * sizeof(float)), *ds_gpu = malloc((size_t)(n * qs / 16) * sizeof(float));
    float *y = malloc((size_t)(n * n_out) * sizeof(float)), *y1 = malloc((size_t)n_out * sizeof(float));
    float *yr = malloc((size_t)(n * n_out) * sizeof(float)), *res = malloc((size_t)(n * n_out) * sizeof(float));
    float *res0 = malloc((size_t)(n * n_out) * sizeof(float));
    void *wd = NULL, *wd2 = NULL;
    float *xd = NULL, *yd = NULL, *yd2 = NULL, *dsd = NULL, *resd = NULL;
    int8_t *qd = NULL;
    if (!src || !deq || !wq || !x || !q || !q_gpu || !ds || !ds_gpu || !y || !y1 || !yr || !res || !res0) goto done;
    for (int64_t r = 0; r < n_out; r++) {
        const float scale = (float)(0.01 + uniform());
        for (int64_t k = 0; k < n_in; k++) src[k] = gaussian() * scale + (type == QT_Q4_1 ? 0.3f * scale : 0.0f);
        quantize_row(type, src, wq + r * row_bytes, n_in);
        quant_dequantize(type, wq + r * row_bytes, deq + r * n_in, n_in);
    }
    for (int64_t k = 0; k < n * n_in; k++) x[k] = gaussian() * (k % 97 == 0 ? 8.0f : 1.0f);
    for (int k = 0; k < 32; k++) x[n_in + k] = 0.0f; /* row 1 starts with a zero block (d = 0) */
    for (int i = 0; i < n; i++) q8_quantize_cpu(x + i * n_in, n_in, q + i * qs, ds + i * qs / 16);
    wd = to_device(wq, (size_t)n_out * row_bytes);
    xd = to_device(x, (size_t)(n * n_in) * sizeof(float));
    qd = poisoned((size_t)(n * qs));
    dsd = poisoned((size_t)(n * qs / 16) * sizeof(float));
    gpu_alloc((void **)&yd, (size_t)(n * n_out) * sizeof(float), "y", err, sizeof err);
    if (!wd || !xd || !qd || !dsd || !yd) goto done;

    CHECK(gpu_quantize_q8(s, xd, n_in, n_in, n, qd, dsd, qs, err, sizeof err) == 0, "quantize_q8: %s", err);
    CHECK(gpu_stream_sync(s, err, sizeof err) == 0 && gpu_download(q_gpu, qd, (size_t)(n * qs), err, sizeof err) == 0 &&
              gpu_download(ds_gpu, dsd, (size_t)(n * qs / 16) * sizeof(float), err, sizeof err) == 0,
          "download: %s", err);
    int64_t differ = 0;
    for (int i = 0; i < n; i++) {
        for (int64_t k = 0; k < n_in; k++) differ += q_gpu[i * qs + k] != q[i * qs + k];
        for (int64_t b = 0; b < n_in / 32; b++)
            differ += bits(ds_gpu[i * qs / 16 + 2 * b]) != bits(ds[i * qs / 16 + 2 * b]) ||
                      bits(ds_gpu[i * qs / 16 + 2 * b + 1]) != bits(ds[i * qs / 16 + 2 * b + 1]);
    }
    CHECK(differ == 0, "%s: quantize_q8 of %d rows of %lld bit-exact with the CPU's (%lld differ)", name, n,
          (long long)n_in, (long long)differ);

    gpu_mv_args a;
    memset(&a, 0, sizeof a);
    a.w[0] = wd, a.row_bytes[0] = row_bytes, a.n_out[0] = n_out, a.y[0] = yd, a.ys[0] = n_out;
    a.count = 1, a.n = n, a.n_in = n_in, a.x = xd, a.xs = n_in;
    a.xq = qd, a.xds = dsd, a.xqs = qs;
    poison(s, yd, (size_t)(n * n_out));
    CHECK(gpu_matvec(s, type, &a, MV_PLAIN, err, sizeof err) == 0, "matvec q8: %s", err);
    const bool has_min = type == QT_Q4_1 || type == QT_Q4_K || type == QT_Q5_K;
    if (to_host(s, y, yd, n_out, n_out, n)) {
        double worst_q = 0, worst_x = 0;
        int bad_q = 0, bad_x = 0;
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < n_out; r++) {
                const float *w = deq + r * n_in;
                double ref_q = 0, mag = 0, ref_x = 0, round = 0, wmax = 0, xabs = 0;
                for (int64_t k = 0; k < n_in; k++) wmax = fmax(wmax, fabs(w[k]));
                for (int64_t b = 0; b < n_in / 32; b++) {
                    const double d = ds[i * qs / 16 + 2 * b];
                    double wabs = 0;
                    for (int64_t k = 32 * b; k < 32 * b + 32; k++) {
                        const double xq = d * q[i * qs + k];
                        ref_q += (double)w[k] * xq;
                        mag += fabs((double)w[k] * xq);
                        xabs += fabs(xq);
                        ref_x += (double)w[k] * x[i * n_in + k];
                        wabs += fabs(w[k]);
                    }
                    round += 0.5 * d * (1 + 1e-4) * wabs; /* |x - d q| <= d / 2 (1 + 128 * 2^-23) per value */
                }
                /* scales and mins applied once per block: the sums run over
                 * |d q x| + |m x|, |m| <= 3 max|w| (as test_type) */
                if (has_min) mag += 6.0 * wmax * xabs;
                const double bound = (double)(n_in / 32 + 40) * 0x1p-24 * mag;
                const double e_q = fabs(y[i * n_out + r] - ref_q), e_x = fabs(y[i * n_out + r] - ref_x);
                worst_q = fmax(worst_q, e_q / (mag > 0 ? mag : 1));
                worst_x = fmax(worst_x, e_x / (round + bound > 0 ? round + bound : 1));
                bad_q += !(e_q <= bound);
                bad_x += !(e_x <= round + bound);
            }
        CHECK(bad_q == 0, "%s: q8 matvec %d x %lld rows of %lld within summation bound of float64 over the 8-bit input "
              "(worst %.3g of sum|w*x|)", name, n, (long long)n_out, (long long)n_in, worst_q);
        CHECK(bad_x == 0, "%s: q8 matvec within the 8-bit rounding bound of float64 over the exact input (worst %.3g "
              "of the bound)", name, worst_x);
    }
    int same = 0;
    const int probe[3] = {0, 1, 10};
    for (int p = 0; p < 3; p++) {
        const int i = probe[p];
        gpu_mv_args one = a;
        one.n = 1, one.x = xd + (int64_t)i * n_in, one.xq = qd + (int64_t)i * qs, one.xds = dsd + (int64_t)i * qs / 16;
        if (gpu_matvec(s, type, &one, MV_PLAIN, err, sizeof err) != 0 || !to_host(s, y1, yd, n_out, n_out, 1)) break;
        same += same_bits(y1, y + (int64_t)i * n_out, (size_t)n_out);
    }
    CHECK(same == 3, "%s: q8 matvec of one row bitwise equal to that row in a batch of %d (%d of 3 rows)", name, n, same);

    /* fused epilogues == the plain product then the step */
    for (int64_t k = 0; k < n * n_out; k++) res0[k] = gaussian();
    resd = to_device(res0, (size_t)(n * n_out) * sizeof(float));
    wd2 = to_device(wq, (size_t)n_out * row_bytes); /* up = the same weights at another address */
    gpu_alloc((void **)&yd2, (size_t)(n * n_out) * sizeof(float), "y2", err, sizeof err);
    if (!resd || !wd2 || !yd2) goto done;
    a.res = resd, a.res_s = n_out;
    poison(s, yd, (size_t)(n * n_out));
    CHECK(gpu_matvec(s, type, &a, MV_ADD, err, sizeof err) == 0, "matvec q8 add: %s", err);
    if (to_host(s, yr, yd, n_out, n_out, n) && to_host(s, res, resd, n_out, n_out, n)) {
        bool ok = same_bits(yr, y, (size_t)(n * n_out));
        for (int64_t k = 0; k < n * n_out; k++) ok = ok && bits(res[k]) == bits(res0[k] + y[k]);
        CHECK(ok, "%s: q8 matmul + add fused == the steps", name);
    }
    a.count = 2, a.w[1] = wd2, a.row_bytes[1] = row_bytes, a.n_out[1] = n_out, a.y[1] = yd2, a.ys[1] = n_out;
    poison(s, yd, (size_t)(n * n_out)), poison(s, yd2, (size_t)(n * n_out));
    CHECK(gpu_matvec(s, type, &a, MV_SWIGLU, err, sizeof err) == 0, "matvec q8 swiglu: %s", err);
    float *gd = to_device(y, (size_t)(n * n_out) * sizeof(float)), *ud = to_device(y, (size_t)(n * n_out) * sizeof(float));
    if (gd && ud && gpu_swiglu(s, gd, n_out, ud, n_out, n_out, n, err, sizeof err) == 0 &&
        to_host(s, res, gd, n_out, n_out, n) && to_host(s, yr, yd, n_out, n_out, n) &&
        to_host(s, res0, yd2, n_out, n_out, n))
        CHECK(same_bits(yr, res, (size_t)(n * n_out)) && same_bits(res0, y, (size_t)(n * n_out)),
              "%s: q8 gate/up + swiglu fused == the steps", name);
    gpu_free(gd), gpu_free(ud);
done:
    gpu_free(wd), gpu_free(wd2), gpu_free(xd), gpu_free(qd), gpu_free(dsd), gpu_free(yd), gpu_free(yd2), gpu_free(resd);
    free(src), free(deq), free(wq), free(x), free(q), free(q_gpu), free(ds), free(ds_gpu), free(y), free(y1), free(yr);
    free(res), free(res0);
}

/* rmsnorm_q8 == rmsnorm, then quantize_q8, bit for bit (floats and bytes). */
static void test_rmsnorm_q8(gpu_stream *s, int64_t d) {
    const int n = 3;
    const int64_t qs = (d + 63) / 64 * 64;
    float *x = malloc((size_t)(n * d) * sizeof(float)), *w = malloc((size_t)d * sizeof(float));
    float *y = malloc((size_t)(n * d) * sizeof(float)), *y2 = malloc((size_t)(n * d) * sizeof(float));
    int8_t *q = malloc((size_t)(n * qs)), *q2 = malloc((size_t)(n * qs));
    float *ds = malloc((size_t)(n * qs / 16) * sizeof(float)), *ds2 = malloc((size_t)(n * qs / 16) * sizeof(float));
    float *xd = NULL, *wd = NULL, *yd = NULL, *dsd = NULL;
    int8_t *qd = NULL;
    if (!x || !w || !y || !y2 || !q || !q2 || !ds || !ds2) goto done;
    for (int64_t k = 0; k < n * d; k++) x[k] = gaussian() * (k % 61 == 0 ? 10.0f : 1.0f);
    for (int64_t k = 0; k < d; k++) w[k] = 1.0f + 0.1f * gaussian();
    xd = to_device(x, (size_t)(n * d) * sizeof(float)), wd = to_device(w, (size_t)d * sizeof(float));
    yd = to_device(x, (size_t)(n * d) * sizeof(float));
    qd = poisoned((size_t)(n * qs)), dsd = poisoned((size_t)(n * qs / 16) * sizeof(float));
    if (!xd || !wd || !yd || !qd || !dsd) goto done;
    bool ok = gpu_rmsnorm(s, yd, d, xd, d, wd, d, 1e-5f, n, err, sizeof err) == 0 &&
              gpu_quantize_q8(s, yd, d, d, n, qd, dsd, qs, err, sizeof err) == 0 && to_host(s, y, yd, d, d, n) &&
              gpu_download(q, qd, (size_t)(n * qs), err, sizeof err) == 0 &&
              gpu_download(ds, dsd, (size_t)(n * qs / 16) * sizeof(float), err, sizeof err) == 0;
    poison(s, yd, (size_t)(n * d));
    ok = ok && gpu_rmsnorm_q8(s, yd, d, xd, d, wd, d, 1e-5f, n, qd, dsd, qs, err, sizeof err) == 0 &&
         to_host(s, y2, yd, d, d, n) && gpu_download(q2, qd, (size_t)(n * qs), err, sizeof err) == 0 &&
         gpu_download(ds2, dsd, (size_t)(n * qs / 16) * sizeof(float), err, sizeof err) == 0;
    CHECK(ok, "rmsnorm_q8 (width %lld): %s", (long long)d, err);
    if (ok) {
        bool same = same_bits(y, y2, (size_t)(n * d));
        for (int i = 0; i < n; i++) {
            same = same && memcmp(q + i * qs, q2 + i * qs, (size_t)d) == 0;
            same = same && same_bits(ds + i * qs / 16, ds2 + i * qs / 16, (size_t)(d / 16));
        }
        CHECK(same, "rmsnorm_q8 (width %lld) == rmsnorm then quantize_q8, bit for bit", (long long)d);
    }
done:
    gpu_free(xd), gpu_free(wd), gpu_free(yd), gpu_free(qd), gpu_free(dsd);
    free(x), free(w), free(y), free(y2), free(q), free(q2), free(ds), free(ds2);
}

/* Programmatic dependent launch (docs/cuda.md): a chain of kernels on the
 * PDL stream right after a slow producer (gpu_test_delayed_copy: it lets
 * them start at once and writes their input about 1 ms later) gives the
 * bits of the same chain run on an input already in place; a kernel that
 * read its input before gpu_grid_wait() would see the NaN the buffers held.
 * Chains: the float product (copy, matvec), the 8-bit one (copy,
 * quantize_q8, matvec) and RMSNorm's (copy, rmsnorm_q8, matvec). */
enum { PDL_FLOAT, PDL_QUANTIZE, PDL_RMSNORM };

static bool pdl_chain(gpu_stream *s, uint32_t type, int chain, gpu_mv_args *a, float *xd, float *normd,
                      const float *wn, int64_t n_in, int8_t *qd, float *dsd) {
    if (chain == PDL_QUANTIZE && gpu_quantize_q8(s, xd, n_in, n_in, 1, qd, dsd, n_in, err, sizeof err) != 0) return false;
    if (chain == PDL_RMSNORM &&
        gpu_rmsnorm_q8(s, normd, n_in, xd, n_in, wn, n_in, 1e-5f, 1, qd, dsd, n_in, err, sizeof err) != 0)
        return false;
    return gpu_matvec(s, type, a, MV_PLAIN, err, sizeof err) == 0;
}

static void test_pdl_order(gpu_stream *s, uint32_t type, int chain) {
    static const char *const chain_names[] = {"copy, matvec", "copy, quantize_q8, matvec (8-bit)",
                                              "copy, rmsnorm_q8, matvec (8-bit)"};
    const int64_t n_in = 4096, n_out = 256;
    const size_t rb = quant_row_bytes(type, n_in);
    float *src = malloc((size_t)n_in * sizeof(float)), *w = malloc((size_t)n_in * sizeof(float));
    float *y_ref = malloc((size_t)n_out * sizeof(float)), *y = malloc((size_t)n_out * sizeof(float));
    uint8_t *wq = malloc((size_t)n_out * rb);
    void *wd = NULL;
    float *x_src = NULL, *xd = NULL, *normd = NULL, *wn = NULL, *yd = NULL, *dsd = NULL;
    int8_t *qd = NULL;
    if (!src || !w || !y_ref || !y || !wq) goto done;
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t k = 0; k < n_in; k++) src[k] = gaussian() * 0.1f;
        quantize_row(type, src, wq + r * rb, n_in);
    }
    for (int64_t k = 0; k < n_in; k++) src[k] = gaussian(), w[k] = 1.0f + 0.1f * gaussian();
    wd = to_device(wq, (size_t)n_out * rb), x_src = to_device(src, (size_t)n_in * sizeof(float));
    wn = to_device(w, (size_t)n_in * sizeof(float));
    xd = poisoned((size_t)n_in * sizeof(float)), normd = poisoned((size_t)n_in * sizeof(float));
    yd = poisoned((size_t)n_out * sizeof(float));
    qd = poisoned((size_t)n_in), dsd = poisoned((size_t)n_in / 16 * sizeof(float));
    if (!wd || !x_src || !wn || !xd || !normd || !yd || !qd || !dsd) goto done;
    gpu_mv_args a;
    memset(&a, 0, sizeof a);
    a.w[0] = wd, a.row_bytes[0] = rb, a.n_out[0] = n_out, a.y[0] = yd, a.ys[0] = n_out;
    a.count = 1, a.n = 1, a.n_in = n_in, a.x = chain == PDL_RMSNORM ? normd : xd, a.xs = n_in;
    if (chain != PDL_FLOAT) a.xq = qd, a.xds = dsd, a.xqs = n_in;
    /* the reference: the input in place before the chain starts */
    bool ok = gpu_upload(xd, src, (size_t)n_in * sizeof(float), err, sizeof err) == 0 &&
              pdl_chain(s, type, chain, &a, xd, normd, wn, n_in, qd, dsd) && to_host(s, y_ref, yd, n_out, n_out, 1);
    /* the same chain behind the slow producer, every buffer poisoned again */
    ok = ok && poison_bytes(xd, (size_t)n_in * sizeof(float)) && poison_bytes(normd, (size_t)n_in * sizeof(float)) &&
         poison_bytes(yd, (size_t)n_out * sizeof(float)) && poison_bytes(qd, (size_t)n_in) &&
         poison_bytes(dsd, (size_t)n_in / 16 * sizeof(float));
    ok = ok && gpu_test_delayed_copy(s, xd, x_src, n_in, 2000000, err, sizeof err) == 0 &&
         pdl_chain(s, type, chain, &a, xd, normd, wn, n_in, qd, dsd) && to_host(s, y, yd, n_out, n_out, 1);
    CHECK(ok, "PDL chain %s, %s: %s", chain_names[chain], quant_type_name(type), err);
    if (ok)
        CHECK(count_nan(y_ref, (size_t)n_out) == 0 && same_bits(y, y_ref, (size_t)n_out),
              "PDL: %s of %s behind a slow producer == the same with its input in place, bit for bit (%d NaN)",
              chain_names[chain], quant_type_name(type), count_nan(y, (size_t)n_out));
done:
    gpu_free(wd), gpu_free(x_src), gpu_free(xd), gpu_free(normd), gpu_free(wn), gpu_free(yd), gpu_free(qd),
        gpu_free(dsd);
    free(src), free(w), free(y_ref), free(y), free(wq);
}

static float f16_round(float f) { return from_f16(to_f16(f)); }

/* gpu_to_f16 and gpu_dequant_f16 bit-exact; gpu_gemm against float64 over
 * the same f16-rounded operands, chunked through a small scratch (rows not
 * a multiple of anything) and through one that holds the whole matrix. */
static void test_fast_gemm(gpu_stream *s, gpu_blas *blas, uint32_t type, int64_t n_in, int64_t n_out, int n) {
    const size_t row_bytes = quant_row_bytes(type, n_in);
    float *src = malloc((size_t)n_in * sizeof(float));
    float *deq = malloc((size_t)(n_out * n_in) * sizeof(float));
    uint8_t *wq = malloc((size_t)n_out * row_bytes);
    float *x = malloc((size_t)n * (size_t)n_in * sizeof(float));
    float *y = malloc((size_t)n * (size_t)n_out * sizeof(float));
    uint16_t *w16 = malloc((size_t)(n_out * n_in) * sizeof(uint16_t));
    for (int64_t r = 0; r < n_out; r++) {
        float scale = (float)(0.01 + uniform());
        for (int64_t k = 0; k < n_in; k++) src[k] = gaussian() * scale;
        quantize_row(type, src, wq + r * row_bytes, n_in);
        quant_dequantize(type, wq + r * row_bytes, deq + r * n_in, n_in);
    }
    for (int64_t k = 0; k < (int64_t)n * n_in; k++) x[k] = gaussian() * 3.0f;
    const int64_t xs = n_in + 8; /* a row stride wider than the row */
    float *xpad = calloc((size_t)n * (size_t)xs, sizeof(float));
    for (int i = 0; i < n; i++) memcpy(xpad + i * xs, x + i * n_in, (size_t)n_in * sizeof(float));
    const int64_t x16s = (n_in + 63) / 64 * 64, ys = n_out + 5;
    void *wd = to_device(wq, (size_t)n_out * row_bytes);
    float *xd = to_device(xpad, (size_t)n * (size_t)xs * sizeof(float));
    uint16_t *x16d = poisoned((size_t)n * (size_t)x16s * sizeof(uint16_t));
    uint16_t *w16d = poisoned((size_t)(n_out * n_in) * sizeof(uint16_t));
    float *yd = poisoned((size_t)n * (size_t)ys * sizeof(float));
    if (!wd || !xd || !x16d || !w16d || !yd) goto done;

    /* f16 conversion of the activations: bit-exact with quant_f32_to_f16 */
    CHECK(gpu_to_f16(s, xd, xs, x16d, x16s, n_in, n, err, sizeof err) == 0, "to_f16: %s", err);
    CHECK(gpu_stream_sync(s, err, sizeof err) == 0, "to_f16 ran: %s", err);
    {
        uint16_t *back = malloc((size_t)n * (size_t)x16s * sizeof(uint16_t));
        bool ok = back && gpu_download(back, x16d, (size_t)n * (size_t)x16s * sizeof(uint16_t), err, sizeof err) == 0;
        int64_t differ = 0;
        for (int i = 0; ok && i < n; i++)
            for (int64_t k = 0; k < n_in; k++) differ += back[i * x16s + k] != to_f16(x[i * n_in + k]);
        CHECK(ok && differ == 0, "%s: f16 conversion of %d x %lld activations bit-exact (%lld differ)", quant_type_name(type), n,
              (long long)n_in, (long long)differ);
        free(back);
    }
    /* dequantization to f16: bit-exact with f16(quant_dequantize) */
    CHECK(gpu_dequant_f16(s, type, wd, row_bytes, n_in, n_out, w16d, err, sizeof err) == 0, "dequant_f16: %s", err);
    CHECK(gpu_stream_sync(s, err, sizeof err) == 0, "dequant_f16 ran: %s", err);
    {
        bool ok = gpu_download(w16, w16d, (size_t)(n_out * n_in) * sizeof(uint16_t), err, sizeof err) == 0;
        int64_t differ = 0;
        for (int64_t k = 0; ok && k < n_out * n_in; k++) differ += w16[k] != to_f16(deq[k]);
        CHECK(ok && differ == 0, "%s: dequantization of %lld x %lld to f16 bit-exact with f16(quant_dequantize) (%lld differ)",
              quant_type_name(type), (long long)n_out, (long long)n_in, (long long)differ);
    }
    /* the GEMM: a small scratch (37 rows a chunk), then a whole one */
    const size_t scratch_small = (size_t)(37 * n_in), scratch_whole = (size_t)(n_out * n_in);
    for (int pass = 0; pass < 2; pass++) {
        const size_t scratch = pass == 0 ? scratch_small : scratch_whole;
        {
            float *nan_rows = malloc((size_t)n * (size_t)ys * sizeof(float));
            memset(nan_rows, 0xff, (size_t)n * (size_t)ys * sizeof(float));
            gpu_upload(yd, nan_rows, (size_t)n * (size_t)ys * sizeof(float), err, sizeof err);
            free(nan_rows);
        }
        CHECK(gpu_gemm(blas, s, type, wd, row_bytes, n_in, n_out, x16d, x16s, yd, ys, n, w16d, scratch, err, sizeof err) == 0,
              "gemm: %s", err);
        if (!to_host(s, y, yd, ys, n_out, n)) break;
        double worst = 0.0, worst_exact = 0.0;
        int bad = 0, bad_exact = 0;
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < n_out; r++) {
                /* against the f16-rounded operands (what the tensor cores multiply) */
                double ref = 0.0, mag = 0.0, ref_exact = 0.0;
                for (int64_t k = 0; k < n_in; k++) {
                    const double w = f16_round(deq[r * n_in + k]), xv = f16_round(x[i * n_in + k]);
                    ref += w * xv;
                    mag += fabs(w * xv);
                    ref_exact += (double)deq[r * n_in + k] * x[i * n_in + k];
                }
                const double got = y[i * n_out + r];
                const double e = fabs(got - ref) / (mag > 0 ? mag : 1), ee = fabs(got - ref_exact) / (mag > 0 ? mag : 1);
                if (!(e <= worst)) worst = e;
                if (!(ee <= worst_exact)) worst_exact = ee;
                if (!(e <= (double)n_in * 0x1p-23)) bad++;
                if (!(ee <= 0x1p-10)) bad_exact++; /* two f16 roundings (2^-11 each) of every product, at most */
            }
        CHECK(bad == 0, "%s: GEMM %d x %lld x %lld (%s scratch) within fp32 accumulation (n_in * 2^-23) of float64 over the f16 "
              "operands (worst %.3g of sum|w*x|)",
              quant_type_name(type), n, (long long)n_out, (long long)n_in, pass == 0 ? "37-row" : "whole", worst);
        CHECK(bad_exact == 0, "%s: GEMM within 2^-10 of sum|w*x| of float64 over the exact weights and activations "
              "(worst %.3g)", quant_type_name(type), worst_exact);
        if (type == QT_F16) break; /* F16 uses no scratch */
    }
done:
    gpu_free(wd), gpu_free(xd), gpu_free(x16d), gpu_free(w16d), gpu_free(yd);
    free(src), free(deq), free(wq), free(x), free(y), free(w16), free(xpad);
}

/* Flash attention of n rows at pos0 .. pos0 + n - 1 against float64 over
 * the same cache values (f16, or q8_0 dequantized), per (row, head):
 * ||out - ref|| / ||ref|| within 2e-3 (Q and P are rounded to f16 for the
 * tensor cores: ~2^-11 each). */
static void test_fast_attention(gpu_stream *s, int hd, int nh, int nkv, int pos0, int n, bool q8) {
    const int kvd = nkv * hd, qd = nh * hd, n_ctx = pos0 + n + 3;
    const size_t row_bytes = q8 ? quant_row_bytes(QT_Q8_0, kvd) : (size_t)kvd * 2;
    uint8_t *kc = malloc((size_t)n_ctx * row_bytes), *vc = malloc((size_t)n_ctx * row_bytes);
    float *kf = malloc((size_t)n_ctx * kvd * sizeof(float)), *vf = malloc((size_t)n_ctx * kvd * sizeof(float));
    float *q = malloc((size_t)n * qd * sizeof(float)), *out = malloc((size_t)n * qd * sizeof(float));
    float *row = malloc((size_t)kvd * sizeof(float));
    double *sc = malloc((size_t)n_ctx * sizeof(double));
    for (int t = 0; t < n_ctx; t++) {
        for (int pass = 0; pass < 2; pass++) {
            uint8_t *dst = (pass == 0 ? kc : vc) + (size_t)t * row_bytes;
            float *deq = (pass == 0 ? kf : vf) + (size_t)t * kvd;
            for (int c = 0; c < kvd; c++) row[c] = gaussian() * (pass == 0 ? 1.5f : 1.0f);
            if (q8) {
                quantize_row(QT_Q8_0, row, dst, kvd);
                quant_dequantize(QT_Q8_0, dst, deq, kvd);
            } else {
                for (int c = 0; c < kvd; c++) {
                    uint16_t h = to_f16(row[c]);
                    memcpy(dst + 2 * c, &h, 2);
                    deq[c] = from_f16(h);
                }
            }
        }
    }
    for (int k = 0; k < n * qd; k++) q[k] = gaussian();
    const int64_t qs = qd + 32;
    float *qpad = calloc((size_t)n * qs, sizeof(float));
    for (int i = 0; i < n; i++) memcpy(qpad + (size_t)i * qs, q + (size_t)i * qd, (size_t)qd * sizeof(float));
    uint8_t *kd = to_device(kc, (size_t)n_ctx * row_bytes), *vd = to_device(vc, (size_t)n_ctx * row_bytes);
    float *qdev = to_device(qpad, (size_t)n * qs * sizeof(float)), *ad = poisoned((size_t)n * qs * sizeof(float));
    const float scale = 1.0f / sqrtf((float)hd);
    if (!kd || !vd || !qdev || !ad) goto done;
    CHECK(gpu_attend_prefill_supported(hd, kvd, 0), "prefill attention supports head_dim %d", hd);
    CHECK(gpu_attend_prefill(s, qdev, qs, ad, qs, kd, vd, q8, kvd, nh, nkv, hd, scale, pos0, n, err, sizeof err) == 0,
          "attend_prefill: %s", err);
    if (to_host(s, out, ad, qs, qd, n)) {
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < nh; h++) {
                const int kvh = h / (nh / nkv);
                double mx = -1e300, sum = 0, err2 = 0, ref2 = 0;
                for (int t = 0; t <= pos0 + i; t++) {
                    double dot = 0;
                    for (int c = 0; c < hd; c++) dot += (double)q[i * qd + h * hd + c] * kf[(size_t)t * kvd + kvh * hd + c];
                    sc[t] = dot * scale;
                    mx = fmax(mx, sc[t]);
                }
                for (int t = 0; t <= pos0 + i; t++) sum += sc[t] = exp(sc[t] - mx);
                for (int c = 0; c < hd; c++) {
                    double ref = 0;
                    for (int t = 0; t <= pos0 + i; t++) ref += sc[t] / sum * vf[(size_t)t * kvd + kvh * hd + c];
                    const double d = out[i * qd + h * hd + c] - ref;
                    err2 += d * d;
                    ref2 += ref * ref;
                }
                const double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1));
                if (!(rel <= worst)) worst = rel;
            }
        CHECK(worst < 2e-3 && count_nan(out, (size_t)n * qd) == 0,
              "flash attention (%s cache, head_dim %d, %d/%d heads, %d rows at %d..%d) within 2e-3 of float64 per row "
              "and head (worst %.3g)",
              q8 ? "q8_0" : "f16", hd, nh, nkv, n, pos0, pos0 + n - 1, worst);
    }
done:
    gpu_free(kd), gpu_free(vd), gpu_free(qdev), gpu_free(ad);
    free(kc), free(vc), free(kf), free(vf), free(q), free(out), free(row), free(sc), free(qpad);
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
    CHECK(gpu_stream_new(&s, 1, err, sizeof err) == 0, "stream: %s", err);
    if (!s) return check_finish("test_cuda");
    const uint32_t types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                              QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) test_type(s, types[i], 512);
    test_type(s, QT_F16, 100); /* a row that ends inside a 32-value unit */
    test_type(s, QT_F32, 72);
    /* the fast kernels at 7B-like row lengths (several chunks per lane) */
    test_type(s, QT_Q4_K, 4096);
    test_type(s, QT_Q6_K, 11008);
    test_type(s, QT_Q8_0, 4096);
    test_type(s, QT_F16, 4096);
    /* rows that end inside a 256-value step (the fast kernels' short last step) */
    test_type(s, QT_Q8_0, 576);
    test_type(s, QT_Q4_1, 800);
    test_type(s, QT_BF16, 288);
    test_elementwise(s);
    test_attention(s);
    const uint32_t fused_types[] = {QT_F16, QT_Q8_0, QT_Q4_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof fused_types / sizeof fused_types[0]; i++) test_fused(s, fused_types[i]);
    test_rope_store(s);
    test_kv_q8_0(s);
    /* 8-bit activations: every type with such a kernel, short rows and
     * 7B-like ones (several steps per lane, and short last steps) */
    const uint32_t q8_types[] = {QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof q8_types / sizeof q8_types[0]; i++) {
        test_q8(s, q8_types[i], 512);
        test_q8(s, q8_types[i], 4096);
        test_q8(s, q8_types[i], 11008);
    }
    test_q8(s, QT_Q8_0, 800);  /* a short last step of Q8_0 (512 values per step) */
    test_q8(s, QT_Q4_0, 1056); /* of Q4_0 (1024) */
    test_q8(s, QT_Q4_K, 2304); /* of Q4_K (2048) */
    test_q8(s, QT_Q6_K, 1280); /* of Q6_K (1024) */
    test_rmsnorm_q8(s, 4096);
    test_rmsnorm_q8(s, 576); /* not a multiple of the 1024 threads */
    /* programmatic dependent launch: every chain's input is read after its wait */
    test_pdl_order(s, QT_F16, PDL_FLOAT);
    test_pdl_order(s, QT_Q6_K, PDL_FLOAT);
    test_pdl_order(s, QT_Q6_K, PDL_QUANTIZE);
    test_pdl_order(s, QT_Q8_0, PDL_QUANTIZE);
    test_pdl_order(s, QT_Q4_K, PDL_RMSNORM);
    test_pdl_order(s, QT_Q4_0, PDL_RMSNORM);
    gpu_blas *blas = NULL;
    CHECK(gpu_blas_new(s, &blas, err, sizeof err) == 0, "cuBLAS handle: %s", err);
    if (blas) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) test_fast_gemm(s, blas, types[i], 512, 300, 40);
        test_fast_gemm(s, blas, QT_F16, 136, 70, 17); /* odd sizes */
        test_fast_gemm(s, blas, QT_Q4_0, 4096, 256, 64);  /* a long row */
        gpu_blas_free(blas);
    }
    test_fast_attention(s, 128, 8, 2, 37, 100, false); /* GQA 4, partial tiles, a cached prefix */
    test_fast_attention(s, 128, 8, 2, 37, 100, true);
    test_fast_attention(s, 64, 4, 4, 0, 70, false);
    test_fast_attention(s, 64, 9, 3, 0, 16, true);
    test_fast_attention(s, 128, 4, 1, 200, 130, false);
    gpu_stream_free(s);
    return check_finish("test_cuda");
}
#endif
