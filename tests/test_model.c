/* test_model.c: hyperparameters and tensor binding (src/model/model.c) on small
 * models written with gguf_writer, and on the default model against the
 * gguf Python package's view (tests/fixtures/model/smollm2_hparams.json,
 * scripts/fixtures/gen_model_hparams_fixture.py). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/quant.h"
#include "greta.h"
#include "model/model.h"
#include "support/check.h"
#include "support/random_model.h"

static char path_buf[1024];

static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", check_tmp_dir(), name);
    return path_buf;
}

/* Writes spec, loads it; returns the model (NULL on error, message in err
 * and the status in *status when status is not NULL). */
static model *load_spec(const tm_spec *spec, const char *name, char *err, size_t err_size, greta_status *status) {
    const char *path = tmp_path(name);
    err[0] = 0;
    if (!tm_write(spec, path)) {
        snprintf(err, err_size, "writer failed");
        return NULL;
    }
    gguf_file *f = NULL;
    model *m = NULL;
    greta_status st = gguf_open(path, &f, err, err_size);
    if (st == GRETA_OK) st = model_load(f, &m, err, err_size);
    if (status) *status = st;
    return m;
}

/* Expects loading spec to fail with status want and a message containing needle. */
static void expect_error(const tm_spec *spec, const char *name, greta_status want, const char *needle) {
    char err[512];
    greta_status st = GRETA_OK;
    model *m = load_spec(spec, name, err, sizeof err, &st);
    CHECK(m == NULL && st == want && strstr(err, needle) != NULL,
          "%s: expected %s with an error containing \"%s\", got %s \"%s\"", name, greta_status_string(want), needle,
          greta_status_string(st), m ? "(loaded)" : err);
    model_free(m);
}

static void test_good_model(void) {
    tm_spec s = tm_default();
    s.n_embd = 96;
    s.n_head = 6;
    s.n_head_kv = 2;
    s.n_ff = 160;
    s.n_layer = 3;
    s.n_vocab = 77;
    s.ctx = 333;
    s.rope_base = 500000.0;
    s.eps = 1e-6;
    s.type = QT_Q4_1;
    s.embd_type = QT_Q8_0;
    char err[512];
    model *m = load_spec(&s, "good.gguf", err, sizeof err, NULL);
    CHECK(m != NULL, "good model loads (%s)", err);
    if (!m) return;
    const model_hparams *hp = &m->hp;
    CHECK(hp->n_embd == 96 && hp->n_ff == 160 && hp->n_layer == 3, "dims %d %d %d", hp->n_embd, hp->n_ff,
          hp->n_layer);
    CHECK(hp->n_head == 6 && hp->n_head_kv == 2 && hp->head_dim == 16 && hp->kv_dim == 32, "heads %d/%d hd %d kv %d",
          hp->n_head, hp->n_head_kv, hp->head_dim, hp->kv_dim);
    CHECK(hp->n_vocab == 77, "vocab from token_embd rows: %d", hp->n_vocab);
    CHECK(hp->n_ctx_train == 333, "context length %d", hp->n_ctx_train);
    CHECK(hp->rope_dim == 16, "rope dim defaults to head dim: %d", hp->rope_dim);
    CHECK(hp->rope_freq_base == 500000.0, "rope base %g", hp->rope_freq_base);
    CHECK(fabs(hp->rms_eps - 1e-6) < 1e-12, "eps %g", hp->rms_eps);
    CHECK(hp->rope_scaling == ROPE_SCALING_NONE && hp->rope_scale_factor == 1.0, "no scaling");
    CHECK(!m->tied_embeddings && m->output.data != m->token_embd.data, "separate output");
    CHECK(m->layers[2].wk.n_in == 96 && m->layers[2].wk.n_out == 32 && m->layers[2].wk.type == QT_Q4_1,
          "attn_k bound as 96 -> 32 Q4_1");
    CHECK(m->layers[1].w_down.n_in == 160 && m->layers[1].w_down.n_out == 96, "ffn_down 160 -> 96");
    CHECK(m->token_embd.type == QT_Q8_0 && m->token_embd.row_bytes == 96 / 32 * 34, "token_embd Q8_0 rows");
    CHECK(m->main_type == QT_Q4_1, "main type %s", quant_type_name(m->main_type));
    uint64_t expect_params = 77ull * 96 * 2 + 96 +
                             3ull * (96 * 96 * 2 + 96 * 32 * 2 + 96 * 160 * 3 + 96 * 2);
    CHECK(m->n_params == expect_params, "n_params %llu, expected %llu", (unsigned long long)m->n_params,
          (unsigned long long)expect_params);
    /* Norm weights are converted to float exactly: read them back from the file. */
    const gguf_tensor *t = gguf_find_tensor(m->file, "blk.1.ffn_norm.weight");
    CHECK(t && memcmp(t->data, m->layers[1].ffn_norm, 96 * sizeof(float)) == 0, "ffn_norm values as stored");
    model_free(m);
}

static void test_tied_and_scaling(void) {
    tm_spec s = tm_default();
    s.tied = true;
    s.linear_factor = 4.0;
    char err[512];
    model *m = load_spec(&s, "tied.gguf", err, sizeof err, NULL);
    CHECK(m && m->tied_embeddings && m->output.data == m->token_embd.data, "tied: output is token_embd (%s)", err);
    CHECK(m && m->hp.rope_scaling == ROPE_SCALING_LINEAR && m->hp.rope_scale_factor == 4.0, "linear scaling 4");
    if (m) {
        uint64_t emb = m->token_embd.row_bytes * (uint64_t)m->token_embd.n_out;
        CHECK(model_decode_bytes_per_token(m) == m->weight_bytes, "tied: the whole embedding is read per token");
        CHECK(emb == 50 * 64 * 4, "embedding bytes: 50 rows of 64 float32 = 12800, got %llu", (unsigned long long)emb);
    }
    model_free(m);

    s = tm_default();
    s.rope_freqs = true;
    m = load_spec(&s, "llama3.gguf", err, sizeof err, NULL);
    CHECK(m && m->rope_freqs && m->hp.rope_scaling == ROPE_SCALING_LLAMA3, "rope_freqs bound as llama3 (%s)", err);
    if (m) CHECK(m->rope_freqs[0] == 1.0f && m->rope_freqs[3] == 2.5f, "rope_freqs values");
    if (m) {
        uint64_t emb = m->token_embd.row_bytes * (uint64_t)m->token_embd.n_out;
        CHECK(model_decode_bytes_per_token(m) == m->weight_bytes - emb + m->token_embd.row_bytes,
              "untied: one embedding row per token");
    }
    model_free(m);

    s = tm_default();
    s.rope_dim = 8;
    s.rope_base = 0; /* key absent: default 10000 */
    m = load_spec(&s, "partial.gguf", err, sizeof err, NULL);
    CHECK(m && m->hp.rope_dim == 8 && m->hp.rope_freq_base == 10000.0, "partial rope dim 8, default base (%s)", err);
    model_free(m);
}

static void test_errors(void) {
    tm_spec s = tm_default();
    s.omit = "blk.1.attn_k.weight";
    expect_error(&s, "missing.gguf", GRETA_ERR_FORMAT, "missing tensor 'blk.1.attn_k.weight'");
    s = tm_default();
    s.omit = "output_norm.weight";
    expect_error(&s, "missing_norm.gguf", GRETA_ERR_FORMAT, "missing tensor 'output_norm.weight'");
    s = tm_default();
    s.omit = "token_embd.weight";
    expect_error(&s, "missing_embd.gguf", GRETA_ERR_FORMAT, "missing tensor 'token_embd.weight'");
    s = tm_default();
    s.misshape = "blk.0.ffn_up.weight";
    expect_error(&s, "shape.gguf", GRETA_ERR_FORMAT, "tensor 'blk.0.ffn_up.weight' has shape [64, 97], expected [64, 96]");
    s = tm_default();
    s.misshape = "blk.0.attn_v.weight";
    expect_error(&s, "shape_v.gguf", GRETA_ERR_FORMAT, "'blk.0.attn_v.weight' has shape [64, 33], expected [64, 32]");
    s = tm_default();
    s.misshape = "blk.1.attn_norm.weight";
    expect_error(&s, "shape_norm.gguf", GRETA_ERR_FORMAT, "'blk.1.attn_norm.weight' has shape [64, 2], expected [64]");
    s = tm_default();
    s.misshape = "output.weight";
    expect_error(&s, "shape_out.gguf", GRETA_ERR_FORMAT, "'output.weight' has shape [64, 51], expected [64, 50]");
    s = tm_default();
    s.extra = "blk.0.attn_q.bias";
    expect_error(&s, "extra.gguf", GRETA_ERR_FORMAT, "unexpected tensor 'blk.0.attn_q.bias'");
    s = tm_default();
    s.arch = "gpt2";
    expect_error(&s, "arch.gguf", GRETA_ERR_UNSUPPORTED, "unsupported architecture 'gpt2'");
    s = tm_default();
    s.n_head_kv = 3; /* 4 heads are not a multiple of 3 */
    expect_error(&s, "gqa.gguf", GRETA_ERR_FORMAT, "head count 4 is not a multiple of head_count_kv 3");
    s = tm_default();
    s.rope_dim = 20; /* head dim is 16 */
    expect_error(&s, "ropedim.gguf", GRETA_ERR_FORMAT, "rope dimension 20");
    s = tm_default();
    s.n_head = 5; /* 64 is not a multiple of 5 */
    s.n_head_kv = 5;
    expect_error(&s, "heads.gguf", GRETA_ERR_FORMAT, "not a multiple of head count 5");
}

/* Missing required key: write the model without llama.block_count. */
static void test_missing_key(void) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.embedding_length", 64);
    const char *path = tmp_path("nokey.gguf");
    char err[256] = "";
    CHECK(gguf_writer_write(w, path, err, sizeof err), "write keyless file (%s)", err);
    gguf_writer_free(w);
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    model *m = NULL;
    greta_status st = f ? model_load(f, &m, err, sizeof err) : GRETA_ERR_IO;
    CHECK(!m && st == GRETA_ERR_FORMAT && strstr(err, "missing key llama.feed_forward_length"),
          "missing key named, bad model file: %s", err);
    model_free(m);
}

static void test_default_model(void) {
    char path[1024], fixture[1024];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/model/smollm2_hparams.json", check_repo_dir());
    json_error_t jerr;
    json_t *fx = json_load_file(fixture, 0, &jerr);
    CHECK(fx != NULL, "fixture %s readable (%s)", fixture, fx ? "" : jerr.text);
    char err[512] = "";
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "default model opens (%s) - run scripts/fetch-model", err);
    model *m = NULL;
    if (f) model_load(f, &m, err, sizeof err);
    CHECK(m != NULL, "default model binds (%s)", err);
    if (!m || !fx) {
        model_free(m);
        json_decref(fx);
        return;
    }
    const model_hparams *hp = &m->hp;
#define FX_INT(key) json_integer_value(json_object_get(fx, key))
    CHECK(hp->n_vocab == FX_INT("n_vocab"), "n_vocab %d vs gguf %lld", hp->n_vocab, FX_INT("n_vocab"));
    CHECK(hp->n_ctx_train == FX_INT("n_ctx_train"), "context %d", hp->n_ctx_train);
    CHECK(hp->n_embd == FX_INT("n_embd"), "n_embd %d", hp->n_embd);
    CHECK(hp->n_ff == FX_INT("n_ff"), "n_ff %d", hp->n_ff);
    CHECK(hp->n_layer == FX_INT("n_layer"), "n_layer %d", hp->n_layer);
    CHECK(hp->n_head == FX_INT("n_head"), "n_head %d", hp->n_head);
    CHECK(hp->n_head_kv == FX_INT("n_head_kv"), "n_head_kv %d", hp->n_head_kv);
    CHECK(hp->rope_dim == FX_INT("rope_dim"), "rope_dim %d", hp->rope_dim);
    CHECK(hp->rope_freq_base == json_real_value(json_object_get(fx, "rope_freq_base")), "rope base %g",
          hp->rope_freq_base);
    CHECK(hp->rms_eps == json_real_value(json_object_get(fx, "rms_eps")), "rms eps %.17g", hp->rms_eps);
    CHECK(m->tied_embeddings == json_is_true(json_object_get(fx, "tied")), "tied embeddings");
    CHECK(strcmp(quant_type_name(m->token_embd.type), json_string_value(json_object_get(fx, "token_embd_type"))) == 0,
          "token_embd type %s", quant_type_name(m->token_embd.type));
    CHECK(m->n_params == (uint64_t)FX_INT("n_params"), "n_params %llu", (unsigned long long)m->n_params);
    CHECK(m->weight_bytes == (uint64_t)FX_INT("weight_bytes"), "weight bytes %llu",
          (unsigned long long)m->weight_bytes);
    CHECK(strcmp(m->name, json_string_value(json_object_get(fx, "name"))) == 0, "name '%s'", m->name);
#undef FX_INT
    model_free(m);
    json_decref(fx);
}

/* A NaN weight makes the logits NaN: the sampler's error names them and
 * points at the trace (it said "invalid argument (check the sampler
 * parameters)"). */
static void test_nan_logits(void) {
    /* tm_default: n_embd 64, vocab 50 */
    tm_spec s = tm_default();
    const char *path = tmp_path("nan.gguf");
    CHECK(tm_write(&s, path), "write nan.gguf");
    char err[512] = "";
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    const gguf_tensor *t = f ? gguf_find_tensor(f, "output_norm.weight") : NULL;
    long at = t ? (long)(gguf_data_offset(f) + t->offset) : -1;
    gguf_close(f);
    /* finite (the loader refuses non-finite norms) but so large that the
     * output projection overflows: +inf and -inf terms sum to NaN */
    FILE *w = at >= 0 ? fopen(path, "r+b") : NULL;
    float huge[64];
    for (int i = 0; i < 64; i++) huge[i] = 3e38f;
    bool patched = w && fseek(w, at, SEEK_SET) == 0 && fwrite(huge, sizeof huge, 1, w) == 1;
    if (w) fclose(w);
    CHECK(patched, "3e38 written into output_norm.weight");
    greta_model *model = NULL;
    greta_session *session = NULL;
    if (greta_model_load(path, NULL, &model, err, sizeof err) != GRETA_OK ||
        greta_session_new(model, NULL, &session, err, sizeof err) != GRETA_OK) {
        CHECK(false, "load the NaN model: %s", err);
        greta_model_free(model);
        return;
    }
    int32_t ids[2] = {1, 2}, tok = -1;
    greta_sampler_params sp = greta_sampler_default_params();
    sp.greedy = true;
    greta_status st = greta_eval(session, ids, 2);
    st = st == GRETA_OK ? greta_sample(session, &sp, &tok) : st;
    const char *msg = greta_session_error(session);
    CHECK(st != GRETA_OK && strstr(msg, "the logits are not finite (") && strstr(msg, " of 50; first at token id ") &&
              strstr(msg, "StageTrace") && !strstr(msg, "sampler parameters"),
          "NaN logits are named with the trace hint: %s", msg);
    greta_session_free(session);
    greta_model_free(model);
}

/* The vocabulary and the embedding rows must agree: 10 tokens with a
 * 50-row embedding loaded and failed mid-generation (an id without text). */
static void test_vocab_rows(void) {
    tm_spec s = tm_default();
    s.vocab_tokens = 10;
    const char *path = tmp_path("vocab10.gguf");
    CHECK(tm_write(&s, path), "write vocab10.gguf");
    greta_model *model = NULL;
    char err[512] = "";
    greta_status st = greta_model_load(path, NULL, &model, err, sizeof err);
    CHECK(st == GRETA_ERR_FORMAT && strstr(err, "the tokenizer has 10 tokens but token_embd.weight has 50 rows"),
          "10 tokens, 50 rows: refused at load: %s", err);
    greta_model_free(model);
    s.vocab_tokens = 50;
    err[0] = 0;
    CHECK(tm_write(&s, tmp_path("vocab50.gguf")), "write vocab50.gguf");
    st = greta_model_load(tmp_path("vocab50.gguf"), NULL, &model, err, sizeof err);
    CHECK(st == GRETA_OK, "50 tokens, 50 rows: loads (%s)", err);
    greta_model_free(model);
}

int main(void) {
    test_vocab_rows();
    test_nan_logits();
    test_good_model();
    test_tied_and_scaling();
    test_errors();
    test_missing_key();
    test_default_model();
    return check_finish("test_model");
}
