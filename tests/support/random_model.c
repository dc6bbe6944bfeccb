/* random_model.c: implementation of tests/support/random_model.h. */
#include "random_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/quant.h"


tm_spec tm_default(void) {
    tm_spec s;
    memset(&s, 0, sizeof s);
    s.n_embd = 64;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_ff = 96;
    s.n_layer = 2;
    s.n_vocab = 50;
    s.ctx = 128;
    s.rope_base = 10000.0;
    s.eps = 1e-5;
    s.linear_factor = 1.0;
    s.type = QT_F32;
    s.embd_type = QT_F32;
    s.seed = 1;
    return s;
}

/* xorshift64* -> roughly normal values (sum of 4 uniforms, centered). */
double tm_normal(uint64_t *state) {
    double sum = 0;
    for (int i = 0; i < 4; i++) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        uint64_t r = *state * 2685821657736338717ull;
        sum += (double)(r >> 11) / 9007199254740992.0;
    }
    return (sum - 2.0) * sqrt(3.0);
}

static void tm_add(gguf_writer *w, const tm_spec *s, uint64_t *rng, const char *name, uint32_t type, int64_t n_in,
                   int64_t n_out, double scale, double offset) {
    if (s->omit && strcmp(s->omit, name) == 0) return;
    if (s->misshape && strcmp(s->misshape, name) == 0) n_out += 1;
    int64_t n = n_in * n_out;
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = (float)(offset + scale * tm_normal(rng));
    size_t row = quant_row_bytes(type, n_in);
    uint8_t *data = malloc(row * (size_t)n_out);
    for (int64_t r = 0; r < n_out; r++) quant_quantize(type, v + r * n_in, data + (size_t)r * row, n_in);
    int64_t ne[2] = {n_in, n_out};
    gguf_writer_add_tensor(w, name, type, n_out == 1 && offset != 0 ? 1 : 2, ne, data, row * (size_t)n_out);
    free(v);
    free(data);
}

bool tm_write(const tm_spec *s, const char *path) {
    gguf_writer *w = gguf_writer_new();
    uint64_t rng = s->seed * 0x9E3779B97F4A7C15ull + 12345;
    int head_dim = s->n_embd / s->n_head;
    int kv_dim = s->n_head_kv * head_dim;
    gguf_writer_set_str(w, "general.architecture", s->arch ? s->arch : "llama");
    gguf_writer_set_str(w, "general.name", "test model");
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_head_kv);
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->ctx);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)s->eps);
    if (s->rope_base > 0) gguf_writer_set_f32(w, "llama.rope.freq_base", (float)s->rope_base);
    if (s->rope_dim > 0) gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)s->rope_dim);
    if (s->vocab_tokens > 0) {
        gguf_str *tokens = calloc((size_t)s->vocab_tokens, sizeof *tokens);
        char *texts = calloc((size_t)s->vocab_tokens, 16);
        for (int i = 0; tokens && texts && i < s->vocab_tokens; i++) {
            char *t = texts + (size_t)i * 16;
            snprintf(t, 16, "t%d", i);
            tokens[i] = (gguf_str){t, strlen(t)};
        }
        gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
        if (tokens && texts) gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (uint64_t)s->vocab_tokens);
        free(tokens);
        free(texts);
    }
    if (s->linear_factor != 1.0) {
        gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
        gguf_writer_set_f32(w, "llama.rope.scaling.factor", (float)s->linear_factor);
    }
    char name[64];
    tm_add(w, s, &rng, "token_embd.weight", s->embd_type, s->n_embd, s->n_vocab, 1.0, 0.0);
    for (int il = 0; il < s->n_layer; il++) {
        double si = 1.0 / sqrt((double)s->n_embd), sf = 1.0 / sqrt((double)s->n_ff);
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", il);
        tm_add(w, s, &rng, name, QT_F32, s->n_embd, 1, 0.1, 1.0);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, s->n_embd, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, kv_dim, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, kv_dim, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, s->n_embd, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", il);
        tm_add(w, s, &rng, name, QT_F32, s->n_embd, 1, 0.1, 1.0);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, s->n_ff, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_embd, s->n_ff, si, 0.0);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        tm_add(w, s, &rng, name, s->type, s->n_ff, s->n_embd, sf, 0.0);
    }
    tm_add(w, s, &rng, "output_norm.weight", QT_F32, s->n_embd, 1, 0.1, 1.0);
    if (!s->tied) tm_add(w, s, &rng, "output.weight", s->type, s->n_embd, s->n_vocab, 1.0 / sqrt((double)s->n_embd), 0.0);
    if (s->rope_freqs) {
        int rd = s->rope_dim ? s->rope_dim : head_dim;
        float *f = malloc((size_t)rd / 2 * sizeof(float));
        for (int i = 0; i < rd / 2; i++) f[i] = 1.0f + (float)i * 0.5f;
        int64_t ne[1] = {rd / 2};
        gguf_writer_add_tensor(w, "rope_freqs.weight", QT_F32, 1, ne, f, (uint64_t)rd / 2 * sizeof(float));
        free(f);
    }
    if (s->extra) {
        float zero[4] = {0};
        int64_t ne[1] = {4};
        gguf_writer_add_tensor(w, s->extra, QT_F32, 1, ne, zero, sizeof zero);
    }
    char err[256] = "";
    bool ok = gguf_writer_write(w, path, err, sizeof err);
    if (!ok) fprintf(stderr, "tm_write %s: %s\n", path, err);
    gguf_writer_free(w);
    return ok;
}
