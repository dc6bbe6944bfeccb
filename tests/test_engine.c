/* test_engine.c: the engine, the cpu and ref backends and the session API.
 *
 * References: a numpy float64 forward of tiny models whose weights live in
 * the fixture (scripts/fixtures/gen_tiny_forward_fixture.py), the FP64 backend for
 * the float32 backend, and the engine's own invariants that the design
 * promises bitwise (prefill vs decode at the same position, thread counts,
 * reruns, rewinds, tracing on/off). Models are written at run time with
 * gguf_writer (test_engine_models.h). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_kernels.h"
#include "engine/trace.h"
#include "format/quant.h"
#include "greta.h"
#include "support/check.h"
#include "support/random_model.h"

/* The StageTrace hash written out independently of trace.c (as test_trace.c
 * does): FNV-1a 64 over each float's 4 little-endian bytes, built with shifts. */
static uint64_t independent_hash(const float *v, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        for (int b = 0; b < 4; b++) {
            h ^= (bits >> (8 * b)) & 0xFFu;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

static char path_buf[1024];

static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", check_tmp_dir(), name);
    return path_buf;
}

static greta_model *load(const char *path) {
    char err[512] = "";
    greta_model *m = NULL;
    greta_model_params p = greta_model_default_params();
    greta_status st = greta_model_load(path, &p, &m, err, sizeof err);
    CHECK(st == GRETA_OK, "load %s: %s", path, err);
    return m;
}

static greta_session *session_p(greta_model *m, greta_backend backend, int threads, bool logits_all, int n_ctx,
                                greta_precision precision) {
    greta_session_params p = greta_session_default_params();
    p.backend = backend;
    p.precision = precision;
    p.n_threads = threads;
    p.logits_all = logits_all;
    p.n_ctx = n_ctx;
    char err[512] = "";
    greta_session *s = NULL;
    greta_status st = greta_session_new(m, &p, &s, err, sizeof err);
    CHECK(st == GRETA_OK, "session %s x%d: %s", greta_backend_name(backend), threads, err);
    return s;
}

/* A session at the exact float32 precision (pinned: the default on cpu is
 * q8): the tests of the f32 contract (1e-4 against ref, numpy fixtures). */
static greta_session *session(greta_model *m, greta_backend backend, int threads, bool logits_all, int n_ctx) {
    return session_p(m, backend, threads, logits_all, n_ctx, GRETA_PRECISION_F32);
}

/* Prefills ids and returns a malloc'ed copy of every row's logits (float). */
static float *prefill_all_p(greta_model *m, greta_backend backend, int threads, const int32_t *ids, int n,
                            int n_ctx, greta_precision precision) {
    greta_session *s = session_p(m, backend, threads, true, n_ctx, precision);
    if (!s) return NULL;
    int n_vocab = 0;
    greta_model_info info;
    greta_model_get_info(m, &info);
    n_vocab = info.vocab_size;
    float *out = NULL;
    greta_status st = greta_eval(s, ids, (size_t)n);
    CHECK(st == GRETA_OK, "prefill %d on %s: %s", n, greta_backend_name(backend), greta_session_error(s));
    size_t rows = 0;
    const float *all = greta_logits_all(s, &rows);
    if (st == GRETA_OK && all && rows == (size_t)n) {
        out = malloc((size_t)n * (size_t)n_vocab * sizeof(float));
        memcpy(out, all, (size_t)n * (size_t)n_vocab * sizeof(float));
    }
    greta_session_free(s);
    return out;
}

static double rel_err_f(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / sqrt(den);
}

static void random_ids(int32_t *ids, int n, int n_vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)n_vocab);
    }
}

/* ---- the tiny numpy forward ---- */

static float *prefill_all(greta_model *m, greta_backend backend, int threads, const int32_t *ids, int n,
                          int n_ctx) {
    return prefill_all_p(m, backend, threads, ids, n, n_ctx, GRETA_PRECISION_F32);
}

static void test_tiny_fixture(void) {
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/engine/tiny_forward.json", check_repo_dir());
    json_error_t jerr;
    json_t *root = json_load_file(fixture, 0, &jerr);
    CHECK(root != NULL, "fixture %s (%s)", fixture, root ? "" : jerr.text);
    if (!root) return;
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) == 9, "nine fixture cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        const char *name = json_string_value(json_object_get(cs, "name"));
#define GI(k) ((int)json_integer_value(json_object_get(cs, k)))
#define GR(k) json_number_value(json_object_get(cs, k))
        gguf_writer *w = gguf_writer_new();
        gguf_writer_set_str(w, "general.architecture", "llama");
        gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)GI("n_embd"));
        gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)GI("n_ff"));
        gguf_writer_set_u32(w, "llama.block_count", (uint32_t)GI("n_layer"));
        gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)GI("n_head"));
        gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)GI("n_head_kv"));
        gguf_writer_set_u32(w, "llama.context_length", (uint32_t)GI("context_length"));
        gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)GI("rope_dim"));
        gguf_writer_set_f32(w, "llama.rope.freq_base", (float)GR("rope_freq_base"));
        gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)GR("rms_eps"));
        if (GR("rope_linear_factor") != 1.0) {
            gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
            gguf_writer_set_f32(w, "llama.rope.scaling.factor", (float)GR("rope_linear_factor"));
        }
        json_t *tensors = json_object_get(cs, "tensors");
        for (size_t t = 0; t < json_array_size(tensors); t++) {
            json_t *tj = json_array_get(tensors, t);
            json_t *ne = json_object_get(tj, "ne");
            json_t *vals = json_object_get(tj, "values");
            int64_t dims[2] = {json_integer_value(json_array_get(ne, 0)),
                               json_array_size(ne) > 1 ? json_integer_value(json_array_get(ne, 1)) : 1};
            const char *hex = json_string_value(json_object_get(tj, "hex"));
            if (hex) { /* Q4_K blocks, given as bytes (the generator dequantized them with the gguf package) */
                size_t nb = strlen(hex) / 2;
                unsigned char *bytes = malloc(nb);
                for (size_t i = 0; i < nb; i++) {
                    unsigned hi, lo;
                    sscanf(hex + 2 * i, "%1x%1x", &hi, &lo);
                    bytes[i] = (unsigned char)(hi * 16 + lo);
                }
                gguf_writer_add_tensor(w, json_string_value(json_object_get(tj, "name")), QT_Q4_K,
                                       (uint32_t)json_array_size(ne), dims, bytes, nb);
                free(bytes);
                continue;
            }
            size_t n = json_array_size(vals);
            float *v = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) v[i] = (float)json_number_value(json_array_get(vals, i));
            gguf_writer_add_tensor(w, json_string_value(json_object_get(tj, "name")), QT_F32,
                                   (uint32_t)json_array_size(ne), dims, v, n * sizeof(float));
            free(v);
        }
        char err[256] = "", file[64];
        snprintf(file, sizeof file, "tiny_%zu.gguf", c);
        const char *path = tmp_path(file);
        CHECK(gguf_writer_write(w, path, err, sizeof err), "write %s (%s)", name, err);
        gguf_writer_free(w);
        greta_model *m = load(path);
        if (!m) continue;
        json_t *tok = json_object_get(cs, "tokens");
        int n_tok = (int)json_array_size(tok);
        int32_t ids[64];
        for (int i = 0; i < n_tok; i++) ids[i] = (int32_t)json_integer_value(json_array_get(tok, i));
        int n_vocab = GI("n_vocab");
        json_t *expect = json_object_get(cs, "logits");
        /* ref: whole prompt at once, then token by token */
        for (int mode = 0; mode < 2; mode++) {
            greta_session *s = session(m, GRETA_BACKEND_REF, 1, true, 0);
            if (!s) break;
            double worst = 0;
            int rows_checked = 0;
            for (int i = 0; i < n_tok; i++) {
                const double *row = NULL;
                if (mode == 0) {
                    if (i == 0) CHECK(greta_eval(s, ids, (size_t)n_tok) == GRETA_OK, "ref prefill");
                    size_t rows = 0;
                    const double *all = greta_logits_all_f64(s, &rows);
                    row = all && rows == (size_t)n_tok ? all + (size_t)i * n_vocab : NULL;
                } else {
                    CHECK(greta_eval(s, ids + i, 1) == GRETA_OK, "ref decode");
                    row = greta_logits_f64(s);
                }
                if (!row) break;
                rows_checked++;
                json_t *er = json_array_get(expect, (size_t)i);
                double num = 0, den = 0;
                for (int k = 0; k < n_vocab; k++) {
                    double e = json_number_value(json_array_get(er, (size_t)k));
                    num += (row[k] - e) * (row[k] - e);
                    den += e * e;
                }
                double rel = sqrt(num / den);
                if (rel > worst) worst = rel;
            }
            CHECK(rows_checked == n_tok && worst <= 1e-12,
                  "%s: ref (%s) vs numpy float64 on %d of %d rows, worst relative error %.3g <= 1e-12", name,
                  mode ? "decode" : "prefill", rows_checked, n_tok, worst);
            greta_session_free(s);
        }
        /* cpu (float32) against the same numbers */
        greta_session *s = session(m, GRETA_BACKEND_CPU, 2, true, 0);
        bool evaluated = s && greta_eval(s, ids, (size_t)n_tok) == GRETA_OK;
        CHECK(evaluated, "%s: cpu evaluates the fixture tokens", name);
        if (evaluated) {
            size_t rows = 0;
            const double *all = greta_logits_all_f64(s, &rows);
            double worst = 0;
            for (int i = 0; all && i < n_tok; i++) {
                json_t *er = json_array_get(expect, (size_t)i);
                double num = 0, den = 0;
                for (int k = 0; k < n_vocab; k++) {
                    double e = json_number_value(json_array_get(er, (size_t)k));
                    double a = all[(size_t)i * n_vocab + k];
                    num += (a - e) * (a - e);
                    den += e * e;
                }
                if (sqrt(num / den) > worst) worst = sqrt(num / den);
            }
            /* measured 1.4e-7 to 3.8e-7 over the eight cases (AVX2 and scalar paths) */
            CHECK(all && rows == (size_t)n_tok && worst <= 1e-6,
                  "%s: cpu vs numpy float64, worst relative error %.3g <= 1e-6", name, worst);
        }
        greta_session_free(s);
        greta_model_free(m);
#undef GI
#undef GR
    }
    json_decref(root);
}

/* ---- invariants on random models ---- */

typedef struct {
    const char *name;
    tm_spec spec;
    int n_tokens;
} model_case;

/* The invariants at a precision: f32 (pinned) or q8 (the default), whose every
 * promise but the distance to ref (<= 0.15 relative, docs/engine.md) is the
 * same bitwise one. */
static void check_invariants(const model_case *mc, greta_precision precision) {
    const char *pname = precision == GRETA_PRECISION_Q8 ? "q8" : "f32";
    const char *path = tmp_path(mc->name);
    if (!tm_write(&mc->spec, path)) {
        CHECK(false, "%s: write model", mc->name);
        return;
    }
    greta_model *m = load(path);
    if (!m) return;
    int n = mc->n_tokens;
    int n_vocab = mc->spec.n_vocab;
    size_t row_bytes = (size_t)n_vocab * sizeof(float);
    int32_t *ids = malloc((size_t)n * sizeof(int32_t));
    random_ids(ids, n, n_vocab, mc->spec.seed + 99);

    float *base = prefill_all_p(m, GRETA_BACKEND_CPU, 1, ids, n, 0, precision);
    if (!base) {
        free(ids);
        greta_model_free(m);
        return;
    }
    /* Thread counts and reruns: bitwise. */
    for (int threads = 1; threads <= 3; threads++) {
        float *other = prefill_all_p(m, GRETA_BACKEND_CPU, threads, ids, n, 0, precision);
        CHECK(other && memcmp(other, base, (size_t)n * row_bytes) == 0,
              "%s %s: prefill logits with %d thread(s) bitwise equal to 1 thread (rerun)", mc->name, pname, threads);
        free(other);
    }
    /* q8 on the file's blocks (GRETA_CPU_REPACK=0, cpu_repack.h) against
     * the repacked weights the sessions above used: bitwise, 1 and 3 threads,
     * prefill and the last position decoded alone. */
    if (precision == GRETA_PRECISION_Q8) {
        setenv("GRETA_CPU_REPACK", "0", 1);
        for (int threads = 1; threads <= 3; threads += 2) {
            float *file = prefill_all_p(m, GRETA_BACKEND_CPU, threads, ids, n, 0, precision);
            CHECK(file && memcmp(file, base, (size_t)n * row_bytes) == 0,
                  "%s q8: prefill on the file's blocks (GRETA_CPU_REPACK=0) == repacked, bitwise, %d thread(s)",
                  mc->name, threads);
            free(file);
        }
        greta_session *f = session_p(m, GRETA_BACKEND_CPU, 2, false, 0, precision);
        bool same = f && greta_eval(f, ids, (size_t)n - 1) == GRETA_OK && greta_eval(f, ids + n - 1, 1) == GRETA_OK &&
                    greta_logits(f) && memcmp(greta_logits(f), base + (size_t)(n - 1) * n_vocab, row_bytes) == 0;
        CHECK(same, "%s q8: decode on the file's blocks == repacked prefill's last row, bitwise", mc->name);
        greta_session_free(f);
        unsetenv("GRETA_CPU_REPACK");
    }
    /* Token by token: every position bitwise equal to the prefill row. */
    greta_session *s = session_p(m, GRETA_BACKEND_CPU, 2, false, 0, precision);
    int mismatch = -1;
    for (int i = 0; s && i < n; i++) {
        if (greta_eval(s, ids + i, 1) != GRETA_OK) {
            mismatch = i;
            break;
        }
        const float *l = greta_logits(s);
        if (!l || memcmp(l, base + (size_t)i * n_vocab, row_bytes) != 0) {
            mismatch = i;
            break;
        }
    }
    CHECK(mismatch < 0, "%s %s: decode token by token == prefill at every position bitwise (first mismatch %d)",
          mc->name, pname, mismatch);
    greta_session_free(s);
    /* prefill_last vs decode0 at the same position: prefill n-1 then eval 1. */
    s = session_p(m, GRETA_BACKEND_CPU, 3, false, 0, precision);
    if (s) {
        CHECK(greta_eval(s, ids, (size_t)n - 1) == GRETA_OK, "prefill n-1");
        CHECK(greta_eval(s, ids + n - 1, 1) == GRETA_OK, "decode0");
        const float *l = greta_logits(s);
        CHECK(l && memcmp(l, base + (size_t)(n - 1) * n_vocab, row_bytes) == 0,
              "%s %s: decode0 after prefill of %d == prefill_last of %d, bitwise", mc->name, pname, n - 1, n);
        /* Rewind and re-evaluate: same logits; a different continuation in
         * between must not leak into them. */
        int back = n / 2;
        CHECK(greta_rewind(s, back) == GRETA_OK && greta_pos(s) == back, "rewind to %d", back);
        CHECK(greta_logits(s) == NULL, "no logits right after a rewind");
        int32_t other[3] = {(ids[back] + 1) % n_vocab, 0, 1};
        CHECK(greta_eval(s, other, 3) == GRETA_OK, "eval a different continuation");
        CHECK(greta_rewind(s, back) == GRETA_OK, "rewind again");
        CHECK(greta_eval(s, ids + back, (size_t)(n - back)) == GRETA_OK, "re-eval the tail");
        l = greta_logits(s);
        CHECK(l && memcmp(l, base + (size_t)(n - 1) * n_vocab, row_bytes) == 0,
              "%s: rewind + re-eval reproduces the last logits bitwise", mc->name);
        const int32_t *cached = greta_session_tokens(s);
        CHECK(greta_pos(s) == n && memcmp(cached, ids, (size_t)n * sizeof(int32_t)) == 0, "cached tokens");
    }
    greta_session_free(s);
    /* cpu vs the FP64 reference, every position. */
    greta_session *r = session(m, GRETA_BACKEND_REF, 1, true, 0);
    bool ref_ok = r && greta_eval(r, ids, (size_t)n) == GRETA_OK;
    CHECK(ref_ok, "%s: ref evaluates the prompt", mc->name);
    if (ref_ok) {
        size_t rows = 0;
        const double *ref = greta_logits_all_f64(r, &rows);
        double worst = 0;
        float *reff = malloc(row_bytes);
        for (int i = 0; ref && i < n; i++) {
            for (int k = 0; k < n_vocab; k++) reff[k] = (float)ref[(size_t)i * n_vocab + k];
            double e = rel_err_f(base + (size_t)i * n_vocab, reff, n_vocab);
            if (e > worst) worst = e;
        }
        free(reff);
        double bound = precision == GRETA_PRECISION_Q8 ? 0.15 : 2e-6;
        CHECK(ref && rows == (size_t)n && worst <= bound, "%s %s: cpu vs ref worst relative error %.3g <= %g",
              mc->name, pname, worst, bound);
        CHECK(worst > 0, "%s: cpu and ref differ at all (float32 vs float64), %.3g", mc->name, worst);
    }
    greta_session_free(r);
    free(base);
    free(ids);
    greta_model_free(m);
}

static void test_random_models(void) {
    model_case cases[8];
    int nc = 0;
    tm_spec s = tm_default();
    s.n_embd = 36; /* odd sizes: 3 heads of 12, one KV head, F32 weights */
    s.n_head = 3;
    s.n_head_kv = 1;
    s.n_ff = 50;
    s.n_layer = 3;
    s.n_vocab = 101;
    cases[nc++] = (model_case){"odd_f32.gguf", s, 11};
    s = tm_default();
    s.n_embd = 128;
    s.n_head = 8;
    s.n_head_kv = 2;
    s.n_ff = 352;
    s.n_layer = 3;
    s.n_vocab = 300;
    s.type = QT_Q4_1;
    s.embd_type = QT_Q8_0;
    s.tied = true;
    s.seed = 2;
    cases[nc++] = (model_case){"q4_1_tied.gguf", s, 19};
    s.type = QT_Q4_0;
    s.embd_type = QT_Q4_0;
    s.tied = false;
    s.rope_freqs = true;
    s.seed = 3;
    cases[nc++] = (model_case){"q4_0_llama3.gguf", s, 9};
    s.type = QT_Q8_0;
    s.embd_type = QT_F16;
    s.rope_freqs = false;
    s.linear_factor = 2.0;
    s.seed = 4;
    cases[nc++] = (model_case){"q8_0_linear.gguf", s, 10};
    s = tm_default();
    s.n_embd = 256;
    s.n_head = 4;
    s.n_head_kv = 4;
    s.n_ff = 512;
    s.n_layer = 2;
    s.n_vocab = 64;
    s.type = QT_Q4_K;
    s.embd_type = QT_Q6_K;
    s.seed = 5;
    cases[nc++] = (model_case){"q4_k.gguf", s, 7};
    s.type = QT_F16;
    s.embd_type = QT_BF16;
    s.rope_dim = 32; /* partial rotary */
    s.seed = 6;
    cases[nc++] = (model_case){"f16_partial.gguf", s, 6};
    s.type = QT_BF16; /* BF16 matrices: BF16 activations at q8 (cpu_bf16.h) */
    s.embd_type = QT_BF16;
    s.rope_dim = 0;
    s.seed = 7;
    cases[nc++] = (model_case){"bf16.gguf", s, 9};
    for (int i = 0; i < nc; i++) check_invariants(&cases[i], GRETA_PRECISION_F32);
    /* q8, the default: the quantized-block cases (Q4_1 + Q8_0, Q4_0, Q8_0 + F16, Q4_K + Q6_K),
     * F16 + BF16 and BF16 */
    for (int i = 1; i < nc; i++) check_invariants(&cases[i], GRETA_PRECISION_Q8);
}

/* Longer than one forward chunk (512 rows): chunked prefill == decode. */
static void test_long_prompt(void) {
    tm_spec s = tm_default();
    s.n_embd = 32;
    s.n_head = 2;
    s.n_head_kv = 1;
    s.n_ff = 40;
    s.n_layer = 1;
    s.n_vocab = 40;
    s.ctx = 1200;
    const char *path = tmp_path("long.gguf");
    if (!tm_write(&s, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    int n = 1100;
    int32_t *ids = malloc((size_t)n * sizeof(int32_t));
    random_ids(ids, n, s.n_vocab, 7);
    float *all = prefill_all(m, GRETA_BACKEND_CPU, 2, ids, n, 0);
    greta_session *d = session(m, GRETA_BACKEND_CPU, 1, false, 0);
    int mismatch = -1;
    for (int i = 0; all && d && i < n; i++) {
        if (greta_eval(d, ids + i, 1) != GRETA_OK ||
            memcmp(greta_logits(d), all + (size_t)i * s.n_vocab, (size_t)s.n_vocab * sizeof(float)) != 0) {
            mismatch = i;
            break;
        }
    }
    CHECK(all && mismatch < 0, "1100-token prefill (3 chunks) == token-by-token decode bitwise (first mismatch %d)",
          mismatch);
    greta_session_free(d);
    free(all);
    free(ids);
    greta_model_free(m);
}

/* At q8 a prefill's attention takes the heads that share a KV head together
 * (attend_q8_group: 3 heads of 64, one KV head, up to 600 keys); a decode
 * step takes them one by one. Bitwise: 600-token prefill at 2 threads ==
 * token by token at 1 thread == the prefill at 1 and 3 threads. F16
 * matrices (cpu_f16.h) at the same time. */
static void test_long_prompt_q8_group(void) {
    tm_spec s = tm_default();
    s.n_embd = 192;
    s.n_head = 3;
    s.n_head_kv = 1;
    s.n_ff = 64;
    s.n_layer = 1;
    s.n_vocab = 40;
    s.ctx = 700;
    s.type = QT_F16;
    s.seed = 11;
    const char *path = tmp_path("long_q8_group.gguf");
    if (!tm_write(&s, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    int n = 600;
    size_t row_bytes = (size_t)s.n_vocab * sizeof(float);
    int32_t *ids = malloc((size_t)n * sizeof(int32_t));
    random_ids(ids, n, s.n_vocab, 8);
    float *all = prefill_all_p(m, GRETA_BACKEND_CPU, 2, ids, n, 0, GRETA_PRECISION_Q8);
    for (int threads = 1; threads <= 3; threads += 2) {
        float *other = prefill_all_p(m, GRETA_BACKEND_CPU, threads, ids, n, 0, GRETA_PRECISION_Q8);
        CHECK(all && other && memcmp(other, all, (size_t)n * row_bytes) == 0,
              "q8 grouped attention: 600-token prefill at %d thread(s) == 2 threads bitwise", threads);
        free(other);
    }
    greta_session *d = session_p(m, GRETA_BACKEND_CPU, 1, false, 0, GRETA_PRECISION_Q8);
    int mismatch = -1;
    for (int i = 0; all && d && i < n; i++) {
        if (greta_eval(d, ids + i, 1) != GRETA_OK || memcmp(greta_logits(d), all + (size_t)i * s.n_vocab, row_bytes) != 0) {
            mismatch = i;
            break;
        }
    }
    CHECK(all && d && mismatch < 0,
          "q8 grouped attention: 600-token prefill == token-by-token decode bitwise (first mismatch %d)", mismatch);
    greta_session_free(d);
    free(all);
    free(ids);
    greta_model_free(m);
}

/* ---- errors ---- */

static void test_errors(void) {
    tm_spec s = tm_default();
    s.ctx = 64;
    const char *path = tmp_path("errors.gguf");
    if (!tm_write(&s, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    char err[512] = "";
    greta_session *x = NULL;
    greta_session_params p = greta_session_default_params();
    p.n_ctx = 65;
    CHECK(greta_session_new(m, &p, &x, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT && !x &&
              strstr(err, "trained context length"),
          "context beyond the trained length refused: %s", err);
    p = greta_session_default_params();
    p.backend = GRETA_BACKEND_CUDA;
    CHECK(greta_session_new(m, &p, &x, err, sizeof err) == GRETA_ERR_UNSUPPORTED && !x &&
              strstr(err, "not built with CUDA"),
          "cuda backend: %s", err);
    p = greta_session_default_params();
    p.n_threads = -2;
    CHECK(greta_session_new(m, &p, &x, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT, "negative threads: %s", err);
    greta_backend b;
    CHECK(greta_backend_from_name("ref", &b) == GRETA_OK && b == GRETA_BACKEND_REF, "backend name ref");
    CHECK(greta_backend_from_name("gpu", &b) == GRETA_ERR_INVALID_ARGUMENT, "backend name gpu refused");
    /* The registry, as the CLI and the audits read it. */
    greta_backend_info bi;
    CHECK(greta_backend_count() == 3, "three backends known (%d)", (int)greta_backend_count());
    CHECK(greta_backend_get_info(GRETA_BACKEND_CPU, &bi) == GRETA_OK && strcmp(bi.name, "cpu") == 0 &&
              strcmp(bi.precision, "f32") == 0 && bi.value_bytes == 4 && bi.available && bi.threaded &&
              bi.unavailable[0] == 0,
          "registry: cpu is f32, 4-byte values, available, threaded");
    CHECK(greta_backend_get_info(GRETA_BACKEND_REF, &bi) == GRETA_OK && strcmp(bi.name, "ref") == 0 &&
              strcmp(bi.precision, "f64") == 0 && bi.value_bytes == 8 && bi.available && bi.threaded,
          "registry: ref is f64, 8-byte values, available, threaded (its matrix products)");
    CHECK(greta_backend_get_info(GRETA_BACKEND_CUDA, &bi) == GRETA_OK && strcmp(bi.name, "cuda") == 0 &&
              !bi.available && strstr(bi.unavailable, "not built with CUDA"),
          "registry: cuda is not available in this build, and says why");
    CHECK(greta_backend_get_info((greta_backend)7, &bi) == GRETA_ERR_INVALID_ARGUMENT && bi.name[0] == 0 &&
              strcmp(greta_backend_name((greta_backend)7), "unknown") == 0,
          "registry: an unknown id is refused");
    for (int32_t i = 0; i < greta_backend_count(); i++) {
        greta_backend back = GRETA_BACKEND_CPU;
        greta_status got = greta_backend_get_info((greta_backend)i, &bi);
        CHECK(got == GRETA_OK && bi.id == (greta_backend)i && greta_backend_from_name(bi.name, &back) == GRETA_OK &&
                  back == (greta_backend)i,
              "registry: id %d and its name '%s' agree", (int)i, bi.name);
    }
    p = greta_session_default_params();
    p.backend = GRETA_BACKEND_REF;
    p.n_threads = 4;
    greta_status made = greta_session_new(m, &p, &x, err, sizeof err);
    CHECK(made == GRETA_OK && greta_session_n_threads(x) == 4,
          "ref runs the session's thread count (%d)", x ? greta_session_n_threads(x) : -1);
    greta_session_free(x);
    x = NULL;

    greta_session *s16 = session(m, GRETA_BACKEND_CPU, 2, false, 16);
    if (s16) {
        int32_t ids[20] = {0};
        CHECK(greta_logits(s16) == NULL && strstr(greta_session_error(s16), "no logits"), "logits before eval: %s",
              greta_session_error(s16));
        CHECK(greta_eval(s16, ids, 17) == GRETA_ERR_CONTEXT_FULL && greta_pos(s16) == 0,
              "17 tokens into 16 positions: context full, nothing evaluated");
        CHECK(strstr(greta_session_error(s16), "do not fit the context") != NULL, "message: %s",
              greta_session_error(s16));
        CHECK(greta_eval(s16, ids, 10) == GRETA_OK && greta_pos(s16) == 10, "10 tokens fit");
        CHECK(greta_eval(s16, ids, 7) == GRETA_ERR_CONTEXT_FULL && greta_pos(s16) == 10, "7 more do not");
        CHECK(greta_logits(s16) != NULL, "logits survive a refused eval");
        CHECK(greta_eval(s16, ids, 6) == GRETA_OK && greta_pos(s16) == 16, "6 more fill it");
        CHECK(greta_eval(s16, ids, 1) == GRETA_ERR_CONTEXT_FULL, "full");
        ids[0] = s.n_vocab;
        CHECK(greta_rewind(s16, 3) == GRETA_OK, "rewind to 3");
        CHECK(greta_eval(s16, ids, 1) == GRETA_ERR_INVALID_ARGUMENT && strstr(greta_session_error(s16), "outside"),
              "token id = vocab size refused: %s", greta_session_error(s16));
        ids[0] = -1;
        CHECK(greta_eval(s16, ids, 1) == GRETA_ERR_INVALID_ARGUMENT, "negative token id refused");
        CHECK(greta_eval(s16, ids, 0) == GRETA_ERR_INVALID_ARGUMENT, "empty eval refused");
        CHECK(greta_eval(s16, NULL, 2) == GRETA_ERR_INVALID_ARGUMENT, "NULL ids refused");
        CHECK(greta_rewind(s16, 4) == GRETA_ERR_INVALID_ARGUMENT && greta_pos(s16) == 3, "rewind forward refused");
        CHECK(greta_rewind(s16, -1) == GRETA_ERR_INVALID_ARGUMENT, "negative rewind refused");
        size_t rows = 5;
        CHECK(greta_logits_all(s16, &rows) == NULL && rows == 0, "all-row logits need logits_all");
        int32_t tok = -1;
        greta_sampler_params sp = greta_sampler_default_params();
        CHECK(greta_sample(s16, &sp, &tok) == GRETA_ERR_STATE, "sample without logits refused");
    }
    greta_session_free(s16);
    CHECK(greta_eval(NULL, NULL, 0) == GRETA_ERR_INVALID_ARGUMENT, "NULL session");
    int32_t *toks = NULL;
    size_t nt = 0;
    char terr[256] = "";
    CHECK(greta_tokenize(m, "hi", 2, true, false, &toks, &nt, terr, sizeof terr) == GRETA_ERR_TOKENIZER &&
              strstr(terr, "no tokenizer"),
          "tokenize without a tokenizer: %s", terr);
    greta_model_free(m);

    greta_model *none = NULL;
    CHECK(greta_model_load(tmp_path("does-not-exist.gguf"), NULL, &none, err, sizeof err) == GRETA_ERR_IO && !none &&
              strstr(err, "No such file"),
          "missing file: %s", err);
    FILE *f = fopen(tmp_path("garbage.gguf"), "wb");
    if (f) {
        fputs("this is not a gguf file at all, just text", f);
        fclose(f);
    }
    CHECK(greta_model_load(tmp_path("garbage.gguf"), NULL, &none, err, sizeof err) == GRETA_ERR_FORMAT && !none,
          "garbage file: %s", err);
    s = tm_default();
    s.omit = "blk.1.ffn_gate.weight";
    tm_write(&s, tmp_path("broken.gguf"));
    CHECK(greta_model_load(tmp_path("broken.gguf"), NULL, &none, err, sizeof err) == GRETA_ERR_FORMAT &&
              strstr(err, "missing tensor 'blk.1.ffn_gate.weight'"),
          "missing tensor through the API: %s", err);
}

static bool cancel_at_half(float progress, void *user) {
    int *calls = user;
    (*calls)++;
    return progress < 0.5f;
}

static bool count_progress(float progress, void *user) {
    float *last = user;
    bool ok = progress >= *last;
    *last = ok ? progress : 2.0f;
    return true;
}

static void test_load_progress(void) {
    tm_spec s = tm_default();
    const char *path = tmp_path("progress.gguf");
    if (!tm_write(&s, path)) return;
    greta_model_params p = greta_model_default_params();
    float last = -1;
    p.progress = count_progress;
    p.progress_user_data = &last;
    greta_model *m = NULL;
    char err[256];
    CHECK(greta_model_load(path, &p, &m, err, sizeof err) == GRETA_OK && last == 1.0f,
          "progress non-decreasing, ends at 1 (%g)", last);
    greta_model_info info;
    greta_model_get_info(m, &info);
    CHECK(info.n_layer == 2 && info.n_embd == 64 && info.vocab_size == 50 && info.n_head_kv == 2 &&
              strcmp(info.rope_scaling, "none") == 0 && !info.has_chat_template && strcmp(info.file_type, "F32") == 0,
          "model info");
    greta_model_free(m);
    int calls = 0;
    p.progress = cancel_at_half;
    p.progress_user_data = &calls;
    m = NULL;
    CHECK(greta_model_load(path, &p, &m, err, sizeof err) == GRETA_ERR_CANCELLED && !m && calls >= 2,
          "cancelled load: %s", err);
}

/* ---- tracing observes without changing a bit ---- */

static void test_trace(void) {
    tm_spec s = tm_default();
    s.type = QT_Q4_1;
    s.embd_type = QT_Q8_0;
    s.n_layer = 2;
    const char *path = tmp_path("trace.gguf");
    if (!tm_write(&s, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    int32_t ids[6] = {1, 7, 3, 9, 4, 2};
    greta_session *plain = session(m, GRETA_BACKEND_CPU, 2, false, 0);
    greta_session *traced = session(m, GRETA_BACKEND_CPU, 2, false, 0);
    trace_config cfg;
    trace_config_init(&cfg);
    cfg.enabled = true;
    cfg.in_memory = true;
    cfg.sample = 0;
    trace_model_info ti = {.n_layers = 2, .backend = "cpu", .precision = "f32", .model_path = path};
    char err[256] = "";
    trace *tr = NULL;
    trace_open(&cfg, &ti, &tr, err, sizeof err);
    CHECK(tr != NULL, "in-memory tracer (%s)", err);
    if (!plain || !traced || !tr) goto done;
    greta_session_set_trace(traced, tr);
    CHECK(greta_eval(plain, ids, 5) == GRETA_OK && greta_eval(traced, ids, 5) == GRETA_OK, "prefill 5");
    CHECK(memcmp(greta_logits(plain), greta_logits(traced), (size_t)s.n_vocab * sizeof(float)) == 0,
          "prefill logits with tracing on == off, bitwise");
    CHECK(greta_eval(plain, ids + 5, 1) == GRETA_OK && greta_eval(traced, ids + 5, 1) == GRETA_OK, "decode");
    CHECK(memcmp(greta_logits(plain), greta_logits(traced), (size_t)s.n_vocab * sizeof(float)) == 0,
          "decode logits with tracing on == off, bitwise");
    const trace_set *set = trace_records(tr);
    /* 16 points per layer and final_norm + lm_head_in + logits, for 6 rows. */
    size_t expect = 6 * (2 * 16 + 3);
    CHECK(set && set->count == expect, "record count %zu, expected %zu", set ? set->count : 0, expect);
    if (!set) goto done;
    int seen_last = 0, seen_decode0 = 0, logits_ok = 0, x_in_ok = 0;
    for (size_t i = 0; i < set->count; i++) {
        const trace_record *r = &set->records[i];
        if (r->point == TP_LOGITS && strcmp(r->phase, "prefill_last") == 0) {
            seen_last++;
            CHECK(r->pos_id == 4 && r->token_id == 4 && r->token_index == 4 && r->seq_len == 5 &&
                      r->tokens_total == 5 && r->step == -1,
                  "prefill_last row fields");
        }
        if (r->point == TP_LOGITS && strcmp(r->phase, "decode0") == 0) {
            seen_decode0++;
            CHECK(r->pos_id == 5 && r->token_id == 2 && r->seq_len == 1 && r->tokens_total == 6 && r->step == 0,
                  "decode0 row fields");
            logits_ok = r->hash == independent_hash(greta_logits(traced), s.n_vocab) && r->n == s.n_vocab;
        }
        if (r->point == TP_X_IN && r->layer == 0 && r->pos_id == 1) {
            /* x_in of layer 0 is the embedding row of token 7, dequantized. */
            gguf_file *f = NULL;
            gguf_open(path, &f, err, sizeof err);
            const gguf_tensor *t = f ? gguf_find_tensor(f, "token_embd.weight") : NULL;
            float row[64];
            if (t) {
                quant_dequantize(t->type, (const uint8_t *)t->data + quant_row_bytes(t->type, 64) * 7, row, 64);
                x_in_ok = r->n == 64 && r->n_values == 64 && r->hash == independent_hash(row, 64);
            }
            gguf_close(f);
        }
    }
    CHECK(seen_last == 1 && seen_decode0 == 1, "one prefill_last and one decode0 logits record");
    CHECK(logits_ok, "decode0 logits record hashes the logits the API returns");
    CHECK(x_in_ok, "x_in of layer 0 = embedding row of the token");
done:
    greta_session_free(plain);
    greta_session_free(traced);
    trace_close(tr, NULL, 0);
    greta_model_free(m);
}

/* ---- kernels: AVX2 == portable, decode == quant_dequantize ---- */

/* The reduction order cpu_kernels.h documents, written independently: one
 * 8-lane accumulator fed chunk by chunk with fmaf, the lanes summed as
 * ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), then the tail in order. */
static float dot_recipe(const float *a, const float *b, int64_t n) {
    float lane[8] = {0};
    int64_t n8 = n - n % 8;
    for (int64_t i = 0; i < n8; i++) lane[i % 8] = fmaf(a[i], b[i], lane[i % 8]);
    float s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (int64_t i = n8; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

/* |dot - exact| <= (n/8 + n%8 + 4) * 2^-24 * sum|a*b|: a lane is a chain of
 * n/8 fmas, three additions join the lanes, each tail value one fma. */
static bool dot_within_bound(float got, const float *a, const float *b, int64_t n, double *worst) {
    double exact = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)a[i] * (double)b[i];
        magnitude += fabs((double)a[i] * (double)b[i]);
    }
    double bound = (double)(n / 8 + n % 8 + 4) * 0x1p-24 * magnitude + 1e-38;
    double share = fabs((double)got - exact) / bound;
    if (share > *worst) *worst = share;
    return share <= 1.0;
}

/* The forward's dot products (the portable and the best kernels, and the
 * fused decode + dot on quantized rows) follow the documented order bit
 * for bit and stay within the float32 error bound of the exact value. */
static void test_kernel_dot_order(void) {
    const cpu_kernels *best = cpu_kernels_best(), *port = cpu_kernels_portable();
    uint64_t rng = 99;
    const int64_t max_n = 2304;
    float *a = malloc((size_t)max_n * sizeof(float)), *b = malloc((size_t)max_n * sizeof(float));
    for (int64_t i = 0; i < max_n; i++) a[i] = (float)tm_normal(&rng), b[i] = (float)tm_normal(&rng);
    int lengths = 0, as_recipe = 0, bounded = 0;
    double worst = 0.0;
    for (int64_t n = 1; n <= max_n; n = n < 64 ? n + 1 : n * 3 / 2) {
        float r = dot_recipe(a, b, n), p = port->dot(a, b, n), k = best->dot(a, b, n);
        lengths++;
        as_recipe += memcmp(&r, &p, sizeof r) == 0 && memcmp(&r, &k, sizeof r) == 0;
        bounded += dot_within_bound(p, a, b, n, &worst);
    }
    CHECK(as_recipe == lengths, "portable and %s dot follow the documented order bitwise on %d lengths (%d)",
          best->name, lengths, as_recipe);
    CHECK(bounded == lengths, "dot within the float32 error bound on %d lengths (worst %.3g of the bound)", lengths,
          worst);
    /* Quantized N(0,1) rows of every type the kernels decode themselves:
     * the fused decode+dot of a decode step, against the recipe on the
     * exactly dequantized row and against float64. */
    const uint32_t types[] = {QT_F32, QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q6_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const int64_t n = max_n; /* 72 blocks of 32, 9 of 256 */
        size_t rb = quant_row_bytes(types[t], n);
        uint8_t *q = malloc(rb);
        float *w = malloc((size_t)n * sizeof(float));
        quant_quantize(types[t], a, q, n);
        quant_dequantize(types[t], q, w, n);
        model_weight mw = {"w", types[t], n, 1, rb, q};
        /* What a decode step computes: the fused kernel where the type has
         * one, else decode_rows + a 1 x 1 tile (as prefill does). */
        float got = 0.0f, recipe = dot_recipe(w, b, n);
        bool fused = best->dot_rows && best->dot_rows(&mw, 0, 1, b, &got);
        if (!fused) {
            float *decoded = malloc((size_t)n * sizeof(float));
            best->decode_rows(&mw, 0, 1, decoded, n);
            best->tile(decoded, n, 1, b, n, 1, &got, 1, n);
            free(decoded);
        }
        double share = 0.0;
        bool in_bound = dot_within_bound(got, w, b, n, &share);
        CHECK(memcmp(&got, &recipe, sizeof got) == 0 && in_bound,
              "%s row of %lld: %s == the recipe on the dequantized row, error %.3g of the float32 bound",
              quant_type_name(types[t]), (long long)n, fused ? "fused decode+dot" : "decode_rows + tile", share);
        free(q);
        free(w);
    }
    free(a);
    free(b);
}

static void test_kernels(void) {
    const cpu_kernels *best = cpu_kernels_best(), *port = cpu_kernels_portable();
    printf("# cpu kernels in use: %s\n", best->name);
    const uint32_t types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_Q5_K};
    const int64_t n_in = 512;
    const int rows = 8;
    uint64_t rng = 77;
    float *src = malloc((size_t)(n_in * rows) * sizeof(float));
    for (int64_t i = 0; i < n_in * rows; i++) src[i] = (float)tm_normal(&rng);
    float *a = malloc((size_t)(n_in * rows) * sizeof(float)), *b = malloc((size_t)(n_in * rows) * sizeof(float));
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t rb = quant_row_bytes(types[t], n_in);
        uint8_t *q = malloc(rb * rows);
        for (int r = 0; r < rows; r++) quant_quantize(types[t], src + r * n_in, q + r * rb, n_in);
        model_weight w = {"w", types[t], n_in, rows, rb, q};
        best->decode_rows(&w, 0, rows, a, n_in);
        for (int r = 0; r < rows; r++) quant_dequantize(types[t], q + r * rb, b + r * n_in, n_in);
        CHECK(memcmp(a, b, (size_t)(n_in * rows) * sizeof(float)) == 0, "%s decode_rows == quant_dequantize",
              quant_type_name(types[t]));
        free(q);
    }
    /* Tiles of every shape against the portable reference, and against the
     * single-element dot: the same bits whatever the tile. */
    float *x = malloc(4 * (size_t)n_in * sizeof(float));
    for (int64_t i = 0; i < 4 * n_in; i++) x[i] = (float)tm_normal(&rng);
    bool all_same = true;
    for (int nw = 1; nw <= 8; nw++) {
        for (int nx = 1; nx <= 4; nx++) {
            float y1[32], y2[32];
            best->tile(b, n_in, nw, x, n_in, nx, y1, 8, n_in);
            port->tile(b, n_in, nw, x, n_in, nx, y2, 8, n_in);
            for (int t = 0; t < nx; t++)
                for (int r = 0; r < nw; r++) {
                    float d = port->dot(b + r * n_in, x + t * n_in, n_in);
                    if (y1[t * 8 + r] != y2[t * 8 + r] || y1[t * 8 + r] != d) all_same = false;
                }
        }
    }
    CHECK(all_same, "every tile shape 1..8 x 1..4 gives the portable dot's bits");
    /* Fused decode + dot (decode steps) == decode + portable dot. */
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t rb = quant_row_bytes(types[t], n_in);
        uint8_t *q = malloc(rb * rows);
        for (int r = 0; r < rows; r++) quant_quantize(types[t], src + r * n_in, q + r * rb, n_in);
        model_weight w = {"w", types[t], n_in, rows, rb, q};
        float y[8];
        if (best->dot_rows && best->dot_rows(&w, 1, 7, x, y)) {
            port->decode_rows(&w, 0, rows, a, n_in);
            bool same = true;
            for (int r = 0; r < 7; r++) same = same && y[r] == port->dot(a + (r + 1) * n_in, x, n_in);
            CHECK(same, "%s fused dot_rows == decode + dot, bitwise", quant_type_name(types[t]));
        }
        free(q);
    }
    for (int64_t n = 1; n < 40; n += 3) {
        float d1 = best->dot(x, x + n_in, n), d2 = port->dot(x, x + n_in, n);
        CHECK(d1 == d2, "dot n=%lld: best == portable", (long long)n);
    }
    /* Attention: several head sizes (register path, 64-column blocks, a
     * narrow tail block, the non-multiple-of-8 fallback) and key counts. */
    const int hds[] = {64, 128, 72, 12};
    float *kv = malloc(50 * 160 * sizeof(float));
    for (int i = 0; i < 50 * 160; i++) kv[i] = (float)tm_normal(&rng);
    bool attend_same = true;
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        for (int nk = 1; nk <= 50; nk += 7) {
            float sc[64], o1[160], o2[160];
            best->attend(x, kv, kv + 3, 160, hds[h], nk, 0.125f, sc, o1);
            port->attend(x, kv, kv + 3, 160, hds[h], nk, 0.125f, sc, o2);
            if (memcmp(o1, o2, (size_t)hds[h] * sizeof(float)) != 0) attend_same = false;
        }
    }
    free(kv);
    CHECK(attend_same, "attention kernel best == portable, bitwise (head dims 64, 128, 72, 12)");
    float y1[37], y2[37];
    for (int i = 0; i < 37; i++) y1[i] = y2[i] = (float)i;
    best->axpy(y1, 0.37f, x, 37);
    port->axpy(y2, 0.37f, x, 37);
    CHECK(memcmp(y1, y2, sizeof y1) == 0, "axpy best == portable");
    free(x);
    free(src);
    free(a);
    free(b);
}

/* ---- the default model, where cheap ---- */

static void test_default_model(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    greta_model *m = load(path);
    if (!m) return;
    greta_model_info info;
    greta_model_get_info(m, &info);
    CHECK(info.vocab_size == 49152 && info.n_layer == 30 && info.tied_embeddings && info.has_chat_template &&
              strcmp(info.file_type, "Q4_1") == 0,
          "default model info (vocab %d, %d layers, %s)", info.vocab_size, info.n_layer, info.file_type);
    const char *text = "The quick brown fox jumps over the lazy dog. Paris is";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(greta_tokenize(m, text, strlen(text), true, false, &ids, &n, NULL, 0) == GRETA_OK && n > 5, "tokenize (%zu)", n);
    size_t row_bytes = (size_t)info.vocab_size * sizeof(float);
    float *last = malloc(row_bytes);
    greta_session *a = session(m, GRETA_BACKEND_CPU, 2, false, 256);
    greta_session *b = session(m, GRETA_BACKEND_CPU, 1, false, 256);
    if (a && b && ids) {
        CHECK(greta_eval(a, ids, n) == GRETA_OK, "prefill %zu", n);
        memcpy(last, greta_logits(a), row_bytes);
        CHECK(greta_eval(b, ids, n - 1) == GRETA_OK && greta_eval(b, ids + n - 1, 1) == GRETA_OK, "prefill + decode");
        CHECK(memcmp(last, greta_logits(b), row_bytes) == 0,
              "default model: prefill_last (2 threads) == decode0 (1 thread) bitwise");
        greta_session *r = session(m, GRETA_BACKEND_REF, 1, false, 256);
        bool ref_ok = r && greta_eval(r, ids, n) == GRETA_OK;
        CHECK(ref_ok, "default model: ref evaluates the prompt");
        if (ref_ok) {
            const double *ref = greta_logits_f64(r);
            float *reff = malloc(row_bytes);
            for (int k = 0; k < info.vocab_size; k++) reff[k] = (float)ref[k];
            double e = rel_err_f(last, reff, info.vocab_size);
            CHECK(e <= 5e-6, "default model: cpu vs ref relative error %.3g <= 5e-6 (measured 8.5e-7)", e);
            free(reff);
        }
        greta_session_free(r);
    }
    free(last);
    greta_free(ids);
    greta_session_free(a);
    greta_session_free(b);
    greta_model_free(m);
}

/* greta_eval_sessions: one forward over the next token of three sessions
 * (one fresh) == each greta_eval alone, bitwise; refusals leave sessions
 * alone and name the problem in every session's error string. */
static void test_eval_sessions(greta_precision precision) {
    tm_spec spec = tm_default();
    spec.type = QT_Q4_1;
    const char *path = tmp_path("eval_sessions.gguf");
    if (!tm_write(&spec, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    greta_session *batched[3], *alone[3];
    const int32_t prompt[4] = {5, 9, 2, 7};
    const int lengths[3] = {4, 2, 0};
    for (int i = 0; i < 3; i++) {
        batched[i] = session_p(m, GRETA_BACKEND_CPU, 2, false, 32, precision);
        alone[i] = session_p(m, GRETA_BACKEND_CPU, 2, false, 32, precision);
        if (!batched[i] || !alone[i]) goto done;
        if (lengths[i]) {
            greta_eval(batched[i], prompt, (size_t)lengths[i]);
            greta_eval(alone[i], prompt, (size_t)lengths[i]);
        }
    }
    int32_t next[3] = {1, 2, 3};
    int equal = 0;
    for (int step = 0; step < 3; step++) {
        greta_status st = greta_eval_sessions(batched, next, 3);
        CHECK(st == GRETA_OK, "greta_eval_sessions step %d: %s", step, greta_session_error(batched[0]));
        for (int i = 0; i < 3; i++) {
            greta_eval(alone[i], &next[i], 1);
            const float *a = greta_logits(batched[i]), *b = greta_logits(alone[i]);
            equal += a && b && memcmp(a, b, (size_t)spec.n_vocab * sizeof(float)) == 0 &&
                     greta_pos(batched[i]) == greta_pos(alone[i]);
            next[i] = (next[i] * 7 + step + i) % spec.n_vocab;
        }
    }
    CHECK(equal == 9, "%s: 3 steps of 3 sessions: %d/9 logits rows equal to greta_eval alone, bitwise",
          greta_precision_name(precision), equal);
    /* sessions at two precisions cannot share a forward */
    greta_session *other = session_p(m, GRETA_BACKEND_CPU, 2, false, 32,
                                     precision == GRETA_PRECISION_F32 ? GRETA_PRECISION_Q8 : GRETA_PRECISION_F32);
    greta_session *two[2] = {batched[1], other};
    CHECK(other && greta_eval_sessions(two, next, 2) == GRETA_ERR_INVALID_ARGUMENT &&
              strstr(greta_session_error(other), "another precision"),
          "sessions at two precisions are refused: %s", other ? greta_session_error(other) : "");
    greta_session_free(other);
    greta_session *twice[2] = {batched[0], batched[0]};
    CHECK(greta_eval_sessions(twice, next, 2) == GRETA_ERR_INVALID_ARGUMENT &&
              strstr(greta_session_error(batched[0]), "twice"),
          "a session twice is refused: %s", greta_session_error(batched[0]));
    greta_session *r = session(m, GRETA_BACKEND_REF, 1, false, 32);
    greta_session *mixed[2] = {batched[1], r};
    int32_t before = greta_pos(batched[1]);
    CHECK(r && greta_eval_sessions(mixed, next, 2) == GRETA_ERR_INVALID_ARGUMENT &&
              strstr(greta_session_error(r), "same model and backend") && greta_pos(batched[1]) == before,
          "sessions of two backends are refused, nothing changes, both sessions say why: %s",
          r ? greta_session_error(r) : "");
    greta_session_free(r);
done:
    for (int i = 0; i < 3; i++) {
        greta_session_free(batched[i]);
        greta_session_free(alone[i]);
    }
    greta_model_free(m);
}

/* The default precision (docs/engine.md, "The default precision"): q8 on cpu
 * and cuda, f32 on ref (float64 arithmetic); a default cpu session is an
 * explicit q8 session bit for bit, and f32 stays one parameter away. */
static void test_default_precision(void) {
    CHECK(greta_backend_default_precision(GRETA_BACKEND_CPU) == GRETA_PRECISION_Q8 &&
              greta_backend_default_precision(GRETA_BACKEND_REF) == GRETA_PRECISION_F32 &&
              greta_backend_default_precision(GRETA_BACKEND_CUDA) == GRETA_PRECISION_Q8,
          "default precision: cpu q8, ref f32 (float64 arithmetic), cuda q8");
    greta_session_params defaults = greta_session_default_params();
    CHECK(defaults.precision == GRETA_PRECISION_DEFAULT && defaults.backend == GRETA_BACKEND_CPU,
          "default params: cpu backend, the backend's precision");
    tm_spec spec = tm_default();
    spec.type = QT_Q4_0;
    spec.embd_type = QT_Q8_0;
    const char *path = tmp_path("default_precision.gguf");
    if (!tm_write(&spec, path)) return;
    greta_model *m = load(path);
    if (!m) return;
    int32_t ids[6];
    random_ids(ids, 6, spec.n_vocab, 77);
    size_t bytes = 6 * (size_t)spec.n_vocab * sizeof(float);
    float *def = prefill_all_p(m, GRETA_BACKEND_CPU, 2, ids, 6, 0, GRETA_PRECISION_DEFAULT);
    float *q8 = prefill_all_p(m, GRETA_BACKEND_CPU, 1, ids, 6, 0, GRETA_PRECISION_Q8);
    float *f32 = prefill_all_p(m, GRETA_BACKEND_CPU, 2, ids, 6, 0, GRETA_PRECISION_F32);
    CHECK(def && q8 && memcmp(def, q8, bytes) == 0, "a default cpu session computes q8, bit for bit");
    CHECK(def && f32 && memcmp(def, f32, bytes) != 0, "and not f32 (the f32 pin changes the arithmetic)");
    greta_session *s = session_p(m, GRETA_BACKEND_CPU, 1, false, 0, GRETA_PRECISION_DEFAULT);
    CHECK(s && greta_session_precision(s) == GRETA_PRECISION_Q8, "greta_session_precision of a default cpu session: q8");
    greta_session_free(s);
    s = session_p(m, GRETA_BACKEND_REF, 1, false, 0, GRETA_PRECISION_DEFAULT);
    CHECK(s && greta_session_precision(s) == GRETA_PRECISION_F32, "a default ref session reports f32 (never q8)");
    greta_session_free(s);
    free(def);
    free(q8);
    free(f32);
    greta_model_free(m);
}

int main(void) {
    test_kernels();
    test_kernel_dot_order();
    test_tiny_fixture();
    test_random_models();
    test_long_prompt();
    test_long_prompt_q8_group();
    test_errors();
    test_load_progress();
    test_trace();
    test_eval_sessions(GRETA_PRECISION_F32);
    test_eval_sessions(GRETA_PRECISION_DEFAULT);
    test_default_precision();
    test_default_model();
    return check_finish("test_engine");
}
