/* test_perplexity.c: src/tools/perplexity against independent computations.
 *
 *  - tiny synth models: perplexity_run (batched prefill, logits of every
 *    row) equals a plain loop written here (one token per eval, each chunk
 *    from an empty cache, the first token BOS when the model adds one,
 *    log-softmax in long double) on the ref backend to 1e-12 relative;
 *    the cpu backend agrees to 1e-4; BOS swapped in when add_bos_token.
 *  - KL divergence: a model against its own base file gives KLD ~ 0, every
 *    top-1 the same and a perplexity ratio of 1; a Q4_0 model against the
 *    F32 base gives the KLD, top-1 agreement and base perplexity computed
 *    here from both models' exact float64 logits (within the base file's
 *    16-bit log-prob resolution).
 *  - the default model on the ref backend against transformers in float64
 *    (tests/fixtures/perplexity/hf_gpl3.json, scripts/fixtures/gen_perplexity_fixture.py):
 *    the same tokens and the perplexity within 1e-4 relative (in fact ~1e-9).
 *  - bad input: text shorter than 2 * ctx, bad sizes, a truncated or foreign
 *    base file, a base file of another vocabulary. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "format/gguf.h"
#include "greta.h"
#include "tools/perplexity.h"
#include "tools/synth.h"

static char *tmp_path(const char *name) {
    static char paths[8][512];
    static int next = 0;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", check_tmp_dir(), name);
    return p;
}

static bool synth_tiny(const char *type, const char *path) {
    synth_options o;
    memset(&o, 0, sizeof o);
    synth_preset("tiny", &o.shape);
    quantize_target_find(type, &o.target);
    o.seed = 11;
    char err[256];
    bool ok = synth_write(&o, path, err, sizeof err);
    if (!ok) printf("synth_write: %s\n", err);
    return ok;
}

/* A copy of in with tokenizer.ggml.add_bos_token = true. */
static bool copy_with_bos(const char *in, const char *out) {
    char err[256] = "";
    gguf_file *f = NULL;
    if (gguf_open(in, &f, err, sizeof err) != GRETA_OK) return false;
    gguf_writer *w = gguf_writer_new();
    for (uint64_t kv = 0; kv < gguf_kv_count(f); kv++) gguf_writer_copy_kv(w, f, kv);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        gguf_writer_declare_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    bool ok = gguf_writer_begin(w, out, err, sizeof err);
    for (uint64_t i = 0; ok && i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        ok = gguf_writer_append(w, t->data, t->nbytes, err, sizeof err);
    }
    ok = ok && gguf_writer_end(w, err, sizeof err);
    if (!ok) printf("copy_with_bos: %s\n", err);
    gguf_writer_free(w);
    gguf_close(f);
    return ok;
}

static greta_model *load(const char *path) {
    greta_model *m = NULL;
    char err[256] = "";
    if (greta_model_load(path, NULL, &m, err, sizeof err) != GRETA_OK) printf("load %s: %s\n", path, err);
    return m;
}

static greta_session *session(greta_model *m, greta_backend backend, int32_t n_ctx, bool logits_all) {
    greta_session_params sp = greta_session_default_params();
    sp.n_ctx = n_ctx;
    sp.backend = backend;
    sp.precision = GRETA_PRECISION_F32; /* the 1e-4 comparisons with ref: the exact path, pinned */
    sp.n_threads = 2;
    sp.logits_all = logits_all;
    greta_session *s = NULL;
    char err[256] = "";
    if (greta_session_new(m, &sp, &s, err, sizeof err) != GRETA_OK) printf("session: %s\n", err);
    return s;
}

/* Deterministic ids in [0, vocab). */
static void fill_ids(int32_t *ids, size_t n, int32_t vocab) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)vocab);
    }
}

/* The exact float64 logits of every scored position, one token per eval
 * from an empty cache per chunk: rows[(chunk * per + j) * vocab + i]. */
static double *scored_logits(greta_model *m, const int32_t *ids, int32_t n_ctx, int n_chunks, int32_t vocab) {
    int32_t first = n_ctx / 2, per = n_ctx - 1 - first;
    double *rows = malloc((size_t)n_chunks * (size_t)per * (size_t)vocab * sizeof *rows);
    greta_session *s = session(m, GRETA_BACKEND_REF, n_ctx, false);
    bool ok = rows && s;
    for (int c = 0; ok && c < n_chunks; c++) {
        ok = greta_rewind(s, 0) == GRETA_OK;
        for (int32_t pos = 0; ok && pos < n_ctx - 1; pos++) {
            int32_t tok = ids[c * n_ctx + pos];
            if (pos == 0 && greta_model_adds_bos(m)) tok = greta_token_bos(m);
            ok = greta_eval(s, &tok, 1) == GRETA_OK;
            if (ok && pos >= first)
                memcpy(rows + ((size_t)c * (size_t)per + (size_t)(pos - first)) * (size_t)vocab, greta_logits_f64(s),
                       (size_t)vocab * sizeof *rows);
        }
    }
    greta_session_free(s);
    if (!ok) {
        free(rows);
        return NULL;
    }
    return rows;
}

/* log-softmax of row at index i, long double. */
static long double log_prob(const double *row, int32_t vocab, int32_t i) {
    long double max = row[0], sum = 0.0L;
    for (int32_t k = 1; k < vocab; k++)
        if (row[k] > max) max = row[k];
    for (int32_t k = 0; k < vocab; k++) sum += expl((long double)row[k] - max);
    return (long double)row[i] - max - logl(sum);
}

static int32_t argmax(const double *row, int32_t vocab) {
    int32_t best = 0;
    for (int32_t k = 1; k < vocab; k++)
        if (row[k] > row[best]) best = k;
    return best;
}

static bool rel_close(double a, double b, double rel) {
    return fabs(a - b) <= rel * fabs(b);
}

/* perplexity_run on one backend and batch size; returns the sums. */
static bool run_ppl(greta_model *m, greta_backend backend, const int32_t *ids, size_t n, int32_t n_ctx,
                    int32_t n_batch, FILE *base_out, perplexity_sums *sums) {
    greta_session *s = session(m, backend, n_ctx, true);
    perplexity_params p = {n_ctx, n_batch, 0};
    char err[256] = "";
    bool ok = s && perplexity_run(m, s, ids, n, &p, base_out, NULL, NULL, sums, err, sizeof err);
    if (!ok) printf("perplexity_run: %s\n", err);
    greta_session_free(s);
    return ok;
}

static void test_tiny(const char *path, const char *label) {
    greta_model *m = load(path);
    CHECK(m != NULL, "%s: load", label);
    if (!m) return;
    greta_model_info info;
    greta_model_get_info(m, &info);
    const int32_t n_ctx = 16;
    const int n_chunks = 3;
    size_t n = (size_t)n_ctx * n_chunks + 5; /* 5 left over: dropped */
    int32_t *ids = malloc(n * sizeof *ids);
    fill_ids(ids, n, info.vocab_size);
    double *rows = scored_logits(m, ids, n_ctx, n_chunks, info.vocab_size);
    CHECK(rows != NULL, "%s: reference logits, one token per eval", label);
    if (rows) {
        int32_t first = n_ctx / 2, per = n_ctx - 1 - first;
        long double sum = 0.0L, sum2 = 0.0L;
        for (int c = 0; c < n_chunks; c++) {
            for (int32_t j = 0; j < per; j++) {
                const double *row = rows + ((size_t)c * (size_t)per + (size_t)j) * (size_t)info.vocab_size;
                long double nll = -log_prob(row, info.vocab_size, ids[c * n_ctx + first + j + 1]);
                sum += nll;
                sum2 += nll * nll;
            }
        }
        size_t count = (size_t)n_chunks * (size_t)per;
        long double mean = sum / (long double)count;
        double ppl = (double)expl(mean);
        double err = ppl * (double)sqrtl((sum2 / (long double)count - mean * mean) / (long double)(count - 1));
        int32_t batches[] = {16, 5, 1};
        for (size_t b = 0; b < 3; b++) {
            perplexity_sums sums;
            bool ok = run_ppl(m, GRETA_BACKEND_REF, ids, n, n_ctx, batches[b], NULL, &sums);
            perplexity_estimate e = perplexity_of(&sums);
            CHECK(ok && sums.count == count && rel_close(e.value, ppl, 1e-12) && rel_close(e.error, err, 1e-9),
                  "%s: ref, batch %d: %zu tokens, PPL %.12f +/- %.12f (reference %.12f +/- %.12f)", label,
                  batches[b], sums.count, e.value, e.error, ppl, err);
        }
        perplexity_sums sums;
        bool ok = run_ppl(m, GRETA_BACKEND_CPU, ids, n, n_ctx, 8, NULL, &sums);
        perplexity_estimate e = perplexity_of(&sums);
        CHECK(ok && rel_close(e.value, ppl, 1e-4), "%s: cpu, batch 8: PPL %.8f vs ref %.8f (1e-4)", label, e.value,
              ppl);
        /* --chunks: the first chunk alone */
        greta_session *s = session(m, GRETA_BACKEND_REF, n_ctx, true);
        perplexity_params p = {n_ctx, n_ctx, 1};
        char msg[256] = "";
        ok = s && perplexity_run(m, s, ids, n, &p, NULL, NULL, NULL, &sums, msg, sizeof msg);
        CHECK(ok && sums.count == (size_t)per, "%s: n_chunks 1 scores %d tokens (got %zu)", label, per, sums.count);
        greta_session_free(s);
    }
    free(rows);
    free(ids);
    greta_model_free(m);
}

/* Expected KL numbers from exact logits of base (a) and the other model (b). */
typedef struct {
    double mean_kld, ppl_base, ppl_q;
    size_t same_top, count;
} kl_expect;

static kl_expect expected_kl(const double *a, const double *b, const int32_t *ids, int32_t n_ctx, int n_chunks,
                             int32_t vocab) {
    kl_expect e = {0};
    int32_t first = n_ctx / 2, per = n_ctx - 1 - first;
    long double kld = 0.0L, nll_a = 0.0L, nll_b = 0.0L;
    for (int c = 0; c < n_chunks; c++) {
        for (int32_t j = 0; j < per; j++) {
            size_t r = ((size_t)c * (size_t)per + (size_t)j) * (size_t)vocab;
            int32_t tok = ids[c * n_ctx + first + j + 1];
            for (int32_t i = 0; i < vocab; i++) {
                long double la = log_prob(a + r, vocab, i), lb = log_prob(b + r, vocab, i);
                kld += expl(la) * (la - lb);
            }
            nll_a -= log_prob(a + r, vocab, tok);
            nll_b -= log_prob(b + r, vocab, tok);
            e.same_top += argmax(a + r, vocab) == argmax(b + r, vocab);
            e.count++;
        }
    }
    e.mean_kld = (double)(kld / (long double)e.count);
    e.ppl_base = (double)expl(nll_a / (long double)e.count);
    e.ppl_q = (double)expl(nll_b / (long double)e.count);
    return e;
}

static bool kl_against(greta_model *m, const char *base_path, int32_t n_batch, perplexity_kl *kl,
                       perplexity_kl_summary *summary, char *err, size_t err_size) {
    perplexity_base base;
    if (!perplexity_base_open(base_path, &base, err, err_size)) return false;
    greta_session *s = session(m, GRETA_BACKEND_REF, base.n_ctx, true);
    perplexity_params p = {base.n_ctx, n_batch, 0};
    bool ok = s && perplexity_kl_run(m, s, &base, &p, NULL, NULL, kl, err, err_size);
    if (ok) perplexity_kl_summarize(kl, summary);
    greta_session_free(s);
    perplexity_base_close(&base);
    return ok;
}

static void test_kl(void) {
    const char *f32 = tmp_path("kl-f32.gguf"), *q4 = tmp_path("kl-q4_0.gguf"), *base_path = tmp_path("base.logits");
    bool ok = synth_tiny("F32", f32) && synth_tiny("Q4_0", q4);
    CHECK(ok, "kl: synth tiny F32 and Q4_0");
    if (!ok) return;
    greta_model *a = load(f32), *b = load(q4);
    greta_model_info info;
    greta_model_get_info(a, &info);
    const int32_t n_ctx = 24;
    const int n_chunks = 5;
    size_t n = (size_t)n_ctx * n_chunks + 3;
    int32_t *ids = malloc(n * sizeof *ids);
    fill_ids(ids, n, info.vocab_size);
    FILE *out = fopen(base_path, "wb");
    perplexity_sums sums;
    ok = out && run_ppl(a, GRETA_BACKEND_REF, ids, n, n_ctx, n_ctx, out, &sums);
    if (out) fclose(out);
    CHECK(ok, "kl: base file written");
    /* the file: header, the chunks' tokens, rows of nv uint16 */
    size_t nv = 2 * (((size_t)info.vocab_size + 1) / 2) + 4;
    size_t expect = 20 + 4 * (size_t)n_chunks * (size_t)n_ctx + (size_t)n_chunks * (size_t)(n_ctx - 1 - n_ctx / 2) * nv * 2;
    FILE *f = fopen(base_path, "rb");
    long size = -1;
    unsigned char head[20] = {0};
    if (f && fread(head, 1, 20, f) == 20 && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (f) fclose(f);
    int32_t h_ctx, h_vocab, h_chunks;
    memcpy(&h_ctx, head + 8, 4);
    memcpy(&h_vocab, head + 12, 4);
    memcpy(&h_chunks, head + 16, 4);
    CHECK(memcmp(head, "_logits_", 8) == 0 && h_ctx == n_ctx && h_vocab == info.vocab_size && h_chunks == n_chunks &&
              size == (long)expect,
          "kl: base file header (ctx %d, vocab %d, chunks %d) and size %ld (expected %zu)", h_ctx, h_vocab, h_chunks,
          size, expect);

    perplexity_kl kl;
    perplexity_kl_summary s;
    char err[256] = "";
    ok = kl_against(a, base_path, 7, &kl, &s, err, sizeof err);
    CHECK(ok && fabs(s.kld.value) < 1e-6 && kl.n_same_top == kl.q.count && rel_close(s.ppl_ratio.value, 1.0, 1e-4) &&
              rel_close(s.ppl.value, perplexity_of(&sums).value, 1e-12),
          "kl: the base model against itself: KLD %.3g, same top %zu/%zu, PPL ratio %.8f %s", s.kld.value,
          kl.n_same_top, kl.q.count, s.ppl_ratio.value, err);
    perplexity_kl_free(&kl);

    double *ra = scored_logits(a, ids, n_ctx, n_chunks, info.vocab_size);
    double *rb = scored_logits(b, ids, n_ctx, n_chunks, info.vocab_size);
    kl_expect e = ra && rb ? expected_kl(ra, rb, ids, n_ctx, n_chunks, info.vocab_size) : (kl_expect){0};
    ok = ra && rb && kl_against(b, base_path, n_ctx, &kl, &s, err, sizeof err);
    CHECK(ok && e.count == kl.q.count && fabs(s.kld.value - e.mean_kld) < 2e-4 && e.mean_kld > 1e-3,
          "kl: Q4_0 against the F32 base: mean KLD %.6f, computed here %.6f (16-bit log-probs: within 2e-4) %s",
          s.kld.value, e.mean_kld, err);
    CHECK(ok && (kl.n_same_top == e.same_top || kl.n_same_top + 1 == e.same_top || kl.n_same_top == e.same_top + 1),
          "kl: same top %zu of %zu, computed here %zu", kl.n_same_top, kl.q.count, e.same_top);
    CHECK(ok && rel_close(s.ppl.value, e.ppl_q, 1e-12) && rel_close(s.ppl_base.value, e.ppl_base, 3e-4) &&
              rel_close(s.ppl_ratio.value, e.ppl_q / e.ppl_base, 3e-4),
          "kl: PPL(Q) %.8f (here %.8f), PPL(base) %.6f (here %.6f), ratio %.6f", s.ppl.value, e.ppl_q,
          s.ppl_base.value, e.ppl_base, s.ppl_ratio.value);
    CHECK(ok && s.kld_min <= s.kld_median && s.kld_median <= s.kld_99 && s.kld_99 <= s.kld_max &&
              s.kld_max >= s.kld.value,
          "kl: percentiles ordered (min %.3g <= median %.3g <= 99%% %.3g <= max %.3g)", s.kld_min, s.kld_median,
          s.kld_99, s.kld_max);
    perplexity_kl_free(&kl);
    free(ra);
    free(rb);

    /* bad base files */
    const char *bad = tmp_path("bad.logits");
    FILE *t = fopen(bad, "wb");
    if (t) {
        fputs("not a logits file at all", t);
        fclose(t);
    }
    perplexity_base base;
    ok = perplexity_base_open(bad, &base, err, sizeof err);
    CHECK(!ok && strstr(err, "not a logits file"), "kl: a foreign file: %s", err);
    /* truncated: the real file less its last byte */
    size_t len = 0;
    FILE *src = fopen(base_path, "rb");
    unsigned char *all = malloc(expect);
    if (src && all) len = fread(all, 1, expect, src);
    if (src) fclose(src);
    t = fopen(bad, "wb");
    if (t && all) {
        fwrite(all, 1, len - 1, t);
        fclose(t);
    }
    free(all);
    ok = perplexity_base_open(bad, &base, err, sizeof err);
    CHECK(!ok && strstr(err, "truncated"), "kl: a truncated base file: %s", err);
    ok = perplexity_base_open(tmp_path("none.logits"), &base, err, sizeof err);
    CHECK(!ok && strstr(err, "cannot open"), "kl: a missing base file: %s", err);
    /* a model of another vocabulary */
    synth_options o;
    memset(&o, 0, sizeof o);
    synth_preset("tiny", &o.shape);
    o.shape.vocab = 400;
    quantize_target_find("F32", &o.target);
    const char *other = tmp_path("v400.gguf");
    ok = synth_write(&o, other, err, sizeof err);
    greta_model *c = ok ? load(other) : NULL;
    ok = c && kl_against(c, base_path, n_ctx, &kl, &s, err, sizeof err);
    CHECK(!ok && strstr(err, "vocab 320"), "kl: a model of another vocabulary: %s", err);
    perplexity_kl_free(&kl);
    greta_model_free(c);
    free(ids);
    greta_model_free(a);
    greta_model_free(b);
}

static void test_bad_input(void) {
    const char *path = tmp_path("bad-f32.gguf");
    if (!synth_tiny("F32", path)) return;
    greta_model *m = load(path);
    greta_session *s = session(m, GRETA_BACKEND_CPU, 16, true);
    int32_t ids[40];
    fill_ids(ids, 40, 320);
    perplexity_sums sums;
    char err[256] = "";
    perplexity_params p = {16, 16, 0};
    bool ok = perplexity_run(m, s, ids, 31, &p, NULL, NULL, NULL, &sums, err, sizeof err);
    CHECK(!ok && strstr(err, "31 tokens; a context of 16 needs at least 32"), "31 tokens, ctx 16: %s", err);
    ok = perplexity_run(m, s, ids, 32, &p, NULL, NULL, NULL, &sums, err, sizeof err);
    CHECK(ok && sums.count == 14, "32 tokens, ctx 16: 2 chunks, 14 scored (got %zu)", sums.count);
    perplexity_params bad = {16, 17, 0};
    ok = perplexity_run(m, s, ids, 40, &bad, NULL, NULL, NULL, &sums, err, sizeof err);
    CHECK(!ok && strstr(err, "bad sizes"), "batch > ctx: %s", err);
    greta_session_free(s);
    /* a session without logits of every row */
    s = session(m, GRETA_BACKEND_CPU, 16, false);
    ok = perplexity_run(m, s, ids, 40, &p, NULL, NULL, NULL, &sums, err, sizeof err);
    CHECK(!ok && strstr(err, "logits"), "session without logits_all: %s", err);
    greta_session_free(s);
    greta_model_free(m);
}

/* The default model on the ref backend against the transformers float64 fixture. */
static void test_hf_fixture(void) {
    char path[1024], model_path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/perplexity/hf_gpl3.json", check_repo_dir());
    snprintf(model_path, sizeof model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    json_error_t jerr;
    json_t *fx = json_load_file(path, 0, &jerr);
    CHECK(fx != NULL, "fixture %s: %s", path, fx ? "read" : jerr.text);
    if (!fx) return;
    const char *text_path = json_string_value(json_object_get(fx, "text"));
    int32_t n_ctx = (int32_t)json_integer_value(json_object_get(fx, "ctx"));
    int32_t n_chunks = (int32_t)json_integer_value(json_object_get(fx, "chunks"));
    json_t *tokens = json_object_get(fx, "tokens");
    double want_ppl = json_real_value(json_object_get(fx, "ppl"));
    double want_err = json_real_value(json_object_get(fx, "ppl_stderr"));
    greta_model *m = load(model_path);
    CHECK(m != NULL, "default model %s", model_path);
    FILE *f = text_path ? fopen(text_path, "rb") : NULL;
    CHECK(f != NULL, "the fixture's text %s (Debian package base-files)", text_path ? text_path : "(none)");
    char *text = NULL;
    size_t len = 0;
    if (f) {
        text = malloc(1 << 20);
        len = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bool ok = m && text && greta_tokenize(m, text, len, true, false, &ids, &n_ids, NULL, 0) == GRETA_OK;
    size_t n_want = json_array_size(tokens);
    bool same = ok && n_ids >= n_want && n_want == (size_t)n_ctx * (size_t)n_chunks;
    for (size_t i = 0; same && i < n_want; i++) same = ids[i] == json_integer_value(json_array_get(tokens, i));
    CHECK(same, "greta's first %zu tokens of the text equal the fixture's (HF tokenizer)", n_want);
    if (same) {
        greta_session *s = session(m, GRETA_BACKEND_REF, n_ctx, true);
        perplexity_params p = {n_ctx, n_ctx, n_chunks};
        perplexity_sums sums;
        char err[256] = "";
        ok = s && perplexity_run(m, s, ids, n_ids, &p, NULL, NULL, NULL, &sums, err, sizeof err);
        perplexity_estimate e = perplexity_of(&sums);
        CHECK(ok && sums.count == json_array_size(json_object_get(fx, "nll")) && rel_close(e.value, want_ppl, 1e-4) &&
                  rel_close(e.error, want_err, 1e-3),
              "ref backend vs transformers float64: PPL %.10f +/- %.8f, fixture %.10f +/- %.8f (relative %.2g) %s",
              e.value, e.error, want_ppl, want_err, fabs(e.value - want_ppl) / want_ppl, err);
        greta_session_free(s);
    }
    greta_free(ids);
    free(text);
    greta_model_free(m);
    json_decref(fx);
}

int main(void) {
    const char *f32 = tmp_path("tiny-f32.gguf"), *q8 = tmp_path("tiny-q8.gguf"), *bos = tmp_path("tiny-bos.gguf");
    bool ok = synth_tiny("F32", f32) && synth_tiny("Q8_0", q8) && copy_with_bos(f32, bos);
    CHECK(ok, "synth tiny F32, Q8_0 and an F32 copy with add_bos_token");
    if (ok) {
        test_tiny(f32, "tiny F32");
        test_tiny(q8, "tiny Q8_0");
        test_tiny(bos, "tiny F32 with BOS");
        greta_model *m = load(bos);
        CHECK(m && greta_model_adds_bos(m) && greta_token_bos(m) == 1, "the BOS copy adds BOS 1");
        greta_model_free(m);
    }
    test_kl();
    test_bad_input();
    test_hf_fixture();
    return check_finish("test_perplexity");
}
