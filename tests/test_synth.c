/* test_synth.c: the quantize type rule against hand-computed layer lists,
 * the Q5_0/Q5_1 fallback quantizers against hand-computed blocks, the
 * synthesized vocabulary, and synth files: bytes independent of the
 * thread count, seed-dependent, read back by greta's reader and accepted
 * by the model loader. (Files are checked against the gguf package in
 * tests/cli/synth_quantize.sh.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "format/gguf.h"
#include "model/model.h"
#include "format/quant.h"
#include "tools/quantize_model.h"
#include "tools/synth.h"

/* Layers whose attn_v / ffn_down get Q6_K in Q4_K_M, as a bit mask. */
static uint64_t more_bits_mask(int n) {
    uint64_t mask = 0;
    for (int i = 0; i < n; i++) {
        if (quantize_use_more_bits(i, n)) mask |= 1ull << i;
    }
    return mask;
}

static uint64_t mask_of(const int *layers, int count) {
    uint64_t mask = 0;
    for (int i = 0; i < count; i++) mask |= 1ull << layers[i];
    return mask;
}

static void test_use_more_bits(void) {
    /* n = 8: n/8 = 1, 7n/8 = 7: layer 0, layer 7, (i - 1) % 3 == 2 -> 3, 6. */
    const int l8[] = {0, 3, 6, 7};
    CHECK(more_bits_mask(8) == mask_of(l8, 4), "use_more_bits(., 8) = {0,3,6,7}");
    /* n = 30 (SmolLM2): n/8 = 3, 7n/8 = 26: 0-2, 26-29, (i - 3) % 3 == 2. */
    const int l30[] = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
    CHECK(more_bits_mask(30) == mask_of(l30, 14), "use_more_bits(., 30) = {0,1,2,5,...,23,26-29}");
    /* n = 32 (Llama 7B/8B): n/8 = 4, 7n/8 = 28. */
    const int l32[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    CHECK(more_bits_mask(32) == mask_of(l32, 16), "use_more_bits(., 32) = {0-3,6,...,27,28-31}");
    /* n = 2 (tiny): n/8 = 0, 7n/8 = 1: only layer 1. */
    CHECK(more_bits_mask(2) == 2, "use_more_bits(., 2) = {1}");
}

static int type_of(const char *target_name, const quantize_model_info *info, const char *name, int ordinal,
                   int64_t row_len) {
    quantize_target target;
    if (!quantize_target_find(target_name, &target)) return -2;
    return quantize_tensor_type(&target, info, name, ordinal, row_len);
}

static void test_tensor_type(void) {
    quantize_model_info smollm = {30, 30, true, false, 3};  /* dim 576, ffn 1536, tied, 9/3 heads */
    quantize_model_info llama = {32, 32, false, false, 1};  /* dim 4096 */
    quantize_model_info llama3 = {32, 32, false, false, 4}; /* Llama 3 8B: 32/8 heads */
    quantize_model_info llama70 = {80, 80, false, true, 8}; /* 70B GQA */
    /* Q4_K_M on SmolLM2: 576 % 256 != 0 forces fallbacks. */
    CHECK(type_of("Q4_K_M", &smollm, "token_embd.weight", 0, 576) == QT_Q8_0, "tied token_embd, 576 -> Q8_0");
    CHECK(type_of("Q4_K_M", &smollm, "blk.0.attn_v.weight", 0, 576) == QT_Q8_0, "attn_v 0: Q6_K -> Q8_0");
    CHECK(type_of("Q4_K_M", &smollm, "blk.3.attn_v.weight", 3, 576) == QT_Q5_0, "attn_v 3: Q4_K -> Q5_0");
    CHECK(type_of("Q4_K_M", &smollm, "blk.0.ffn_down.weight", 0, 1536) == QT_Q6_K, "ffn_down 0 -> Q6_K");
    CHECK(type_of("Q4_K_M", &smollm, "blk.3.ffn_down.weight", 3, 1536) == QT_Q4_K, "ffn_down 3 -> Q4_K");
    CHECK(type_of("Q4_K_M", &smollm, "blk.5.ffn_down.weight", 5, 1536) == QT_Q6_K, "ffn_down 5 -> Q6_K");
    CHECK(type_of("Q4_K_M", &smollm, "blk.3.attn_q.weight", 3, 576) == QT_Q5_0, "attn_q: Q4_K -> Q5_0");
    CHECK(type_of("Q5_K_M", &smollm, "blk.3.attn_q.weight", 3, 576) == QT_Q5_1, "Q5_K_M attn_q: -> Q5_1");
    /* Q4_K_M on a Llama 7B shape. */
    CHECK(type_of("Q4_K_M", &llama, "token_embd.weight", 0, 4096) == QT_Q4_K, "untied token_embd -> Q4_K");
    CHECK(type_of("Q4_K_M", &llama, "output.weight", 0, 4096) == QT_Q6_K, "output -> Q6_K");
    CHECK(type_of("Q5_K_M", &llama, "output.weight", 0, 4096) == QT_Q6_K, "Q5_K_M output -> Q6_K");
    CHECK(type_of("Q4_K_M", &llama, "blk.4.attn_v.weight", 4, 4096) == QT_Q4_K, "attn_v 4 -> Q4_K");
    CHECK(type_of("Q4_K_M", &llama, "blk.6.attn_v.weight", 6, 4096) == QT_Q6_K, "attn_v 6 -> Q6_K");
    CHECK(type_of("Q5_K_M", &llama, "blk.4.attn_v.weight", 4, 4096) == QT_Q5_K, "Q5_K_M attn_v 4 -> Q5_K");
    CHECK(type_of("Q4_K_M", &llama, "blk.4.ffn_up.weight", 4, 4096) == QT_Q4_K, "ffn_up -> Q4_K");
    CHECK(type_of("Q4_K_M", &llama, "blk.1.attn_output.weight", 1, 4096) == QT_Q4_K, "attn_output -> Q4_K");
    CHECK(type_of("Q4_K_M", &llama70, "blk.11.attn_v.weight", 11, 8192) == QT_Q5_K, "70B attn_v 11 -> Q5_K");
    /* Q3_K_M and Q2_K (llama.cpp's ATTENTION_V / FFN_DOWN / ATTENTION_OUTPUT branches). */
    CHECK(type_of("Q3_K_M", &llama, "blk.1.attn_v.weight", 1, 4096) == QT_Q5_K, "Q3_K_M attn_v 1 -> Q5_K");
    CHECK(type_of("Q3_K_M", &llama, "blk.2.attn_v.weight", 2, 4096) == QT_Q4_K, "Q3_K_M attn_v 2 -> Q4_K");
    CHECK(type_of("Q3_K_M", &llama70, "blk.2.attn_v.weight", 2, 8192) == QT_Q5_K, "Q3_K_M 70B attn_v 2 -> Q5_K");
    CHECK(type_of("Q3_K_M", &llama, "blk.1.ffn_down.weight", 1, 11008) == QT_Q5_K, "Q3_K_M ffn_down 1 (< 32/16) -> Q5_K");
    CHECK(type_of("Q3_K_M", &llama, "blk.2.ffn_down.weight", 2, 11008) == QT_Q4_K, "Q3_K_M ffn_down 2 -> Q4_K");
    CHECK(type_of("Q3_K_M", &llama, "blk.5.attn_output.weight", 5, 4096) == QT_Q4_K, "Q3_K_M attn_output -> Q4_K");
    CHECK(type_of("Q3_K_M", &llama, "blk.5.ffn_gate.weight", 5, 4096) == QT_Q3_K, "Q3_K_M ffn_gate -> Q3_K");
    CHECK(type_of("Q3_K_M", &llama, "output.weight", 0, 4096) == QT_Q6_K, "Q3_K_M output -> Q6_K");
    CHECK(type_of("Q3_K_M", &llama, "token_embd.weight", 0, 4096) == QT_Q3_K, "Q3_K_M untied token_embd -> Q3_K");
    CHECK(type_of("Q3_K_M", &smollm, "blk.5.attn_q.weight", 5, 576) == QT_Q4_0, "Q3_K_M 576: Q3_K -> Q4_0");
    CHECK(type_of("Q3_K_M", &smollm, "blk.0.attn_v.weight", 0, 576) == QT_Q5_1, "Q3_K_M 576 attn_v 0: Q5_K -> Q5_1");
    CHECK(type_of("Q2_K", &llama, "blk.7.attn_v.weight", 7, 4096) == QT_Q3_K, "Q2_K attn_v, n_gqa 1 -> Q3_K");
    CHECK(type_of("Q2_K", &llama3, "blk.7.attn_v.weight", 7, 4096) == QT_Q4_K, "Q2_K attn_v, n_gqa 4 -> Q4_K");
    CHECK(type_of("Q2_K", &llama70, "blk.7.attn_v.weight", 7, 8192) == QT_Q5_K, "Q2_K 70B attn_v -> Q5_K");
    CHECK(type_of("Q2_K", &llama, "blk.7.ffn_down.weight", 7, 11008) == QT_Q3_K, "Q2_K ffn_down -> Q3_K");
    CHECK(type_of("Q2_K", &llama, "blk.7.attn_output.weight", 7, 4096) == QT_Q3_K, "Q2_K attn_output -> Q3_K");
    CHECK(type_of("Q2_K", &llama, "blk.7.ffn_up.weight", 7, 4096) == QT_Q2_K, "Q2_K ffn_up -> Q2_K");
    CHECK(type_of("Q2_K", &llama, "output.weight", 0, 4096) == QT_Q6_K, "Q2_K output -> Q6_K");
    CHECK(type_of("Q2_K", &smollm, "blk.7.ffn_up.weight", 7, 576) == QT_Q4_0, "Q2_K 576: -> Q4_0");
    CHECK(type_of("Q3_K", &llama, "output.weight", 0, 4096) == QT_Q3_K, "pure Q3_K output -> Q3_K");
    /* Plain types are pure: no Q6_K for output, fallbacks only. */
    CHECK(type_of("Q4_K", &llama, "output.weight", 0, 4096) == QT_Q4_K, "plain Q4_K output -> Q4_K");
    CHECK(type_of("Q4_0", &llama, "output.weight", 0, 4096) == QT_Q4_0, "plain Q4_0 output -> Q4_0");
    CHECK(type_of("Q6_K", &smollm, "blk.0.attn_q.weight", 0, 576) == QT_Q8_0, "Q6_K 576 -> Q8_0");
    CHECK(type_of("Q4_K", &smollm, "blk.0.attn_q.weight", 0, 96) == QT_Q5_0, "Q4_K 96 -> Q5_0");
    CHECK(type_of("Q4_K", &smollm, "blk.0.attn_q.weight", 0, 16) == QT_F16, "Q4_K 16 -> F16");
    CHECK(type_of("Q4_0", &smollm, "blk.0.attn_q.weight", 0, 100) == -1, "Q4_0 100: no fallback");
    CHECK(type_of("F16", &smollm, "blk.0.attn_q.weight", 0, 100) == QT_F16, "F16 any row length");
    /* Which tensors are converted at all. */
    CHECK(quantize_tensor_is_weight("blk.0.attn_q.weight", 2), "attn_q is a weight");
    CHECK(!quantize_tensor_is_weight("blk.0.attn_norm.weight", 2), "norms are not converted");
    CHECK(!quantize_tensor_is_weight("output_norm.weight", 1), "1-D tensors are not converted");
    CHECK(!quantize_tensor_is_weight("rope_freqs.weight", 1), "rope_freqs is not converted");
    CHECK(!quantize_tensor_is_weight("blk.0.attn_q.bias", 2), "non-weight names are not converted");
    CHECK(quantize_layer_of("blk.17.ffn_up.weight") == 17 && quantize_layer_of("output.weight") == -1 &&
              quantize_layer_of("blk.x.a") == -1,
          "layer numbers from names");
}

static void test_targets(void) {
    quantize_target t;
    CHECK(quantize_target_find("q4_k_m", &t) && t.base_type == QT_Q4_K && t.mix && t.file_type == 15,
          "q4_k_m: Q4_K base, mix, LLAMA_FTYPE_MOSTLY_Q4_K_M = 15");
    CHECK(quantize_target_find("Q5_K_M", &t) && t.file_type == 17, "Q5_K_M file type 17");
    CHECK(quantize_target_find("BF16", &t) && t.file_type == 32 && !t.mix, "BF16 file type 32");
    CHECK(quantize_target_find("Q8_0", &t) && t.file_type == 7, "Q8_0 file type 7");
    CHECK(quantize_target_find("Q4_K", &t) && !t.mix && t.file_type == 14, "pure Q4_K: file type 14");
    CHECK(quantize_target_find("Q3_K_M", &t) && t.base_type == QT_Q3_K && t.mix && t.file_type == 12,
          "Q3_K_M: Q3_K base, mix, LLAMA_FTYPE_MOSTLY_Q3_K_M = 12");
    CHECK(quantize_target_find("q2_k", &t) && t.base_type == QT_Q2_K && t.mix && t.file_type == 10,
          "Q2_K: llama.cpp's mix, LLAMA_FTYPE_MOSTLY_Q2_K = 10");
    CHECK(quantize_target_find("Q3_K", &t) && !t.mix && t.file_type == 11, "pure Q3_K: file type 11");
    CHECK(!quantize_target_find("Q3_K_L", &t) && !quantize_target_find("Q2_K_S", &t) &&
              !quantize_target_find("", &t),
          "unknown targets refused");
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }

static void test_q5_blocks(void) {
    float x[32], back[32];
    uint8_t block[24];
    /* x_j = j - 16: max |x| is x_0 = -16, d = -16 / -16 = 1, q_j = j. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    CHECK(quantize_row(QT_Q5_0, x, block, 32) == 22, "Q5_0 block is 22 bytes");
    bool nibbles = true;
    for (int j = 0; j < 16; j++) nibbles = nibbles && block[6 + j] == (uint8_t)(j | (j << 4));
    CHECK(le16(block) == 0x3C00 && le32(block + 2) == 0xFFFF0000u && nibbles,
          "Q5_0 of j-16: d = 1.0 (0x3C00), qh = 0xFFFF0000, qs[j] = j | j << 4");
    quant_dequantize(QT_Q5_0, block, back, 32);
    CHECK(memcmp(back, x, sizeof x) == 0, "Q5_0 round trip of j-16 is exact");
    /* x_j = j: min 0, max 31, d = 1, m = 0, q_j = j. */
    for (int j = 0; j < 32; j++) x[j] = (float)j;
    CHECK(quantize_row(QT_Q5_1, x, block, 32) == 24, "Q5_1 block is 24 bytes");
    nibbles = true;
    for (int j = 0; j < 16; j++) nibbles = nibbles && block[8 + j] == (uint8_t)(j | (j << 4));
    CHECK(le16(block) == 0x3C00 && le16(block + 2) == 0 && le32(block + 4) == 0xFFFF0000u && nibbles,
          "Q5_1 of j: d = 1.0, m = 0, qh = 0xFFFF0000, qs[j] = j | j << 4");
    quant_dequantize(QT_Q5_1, block, back, 32);
    CHECK(memcmp(back, x, sizeof x) == 0, "Q5_1 round trip of j is exact");
    CHECK(quantize_row(QT_Q5_0, x, block, 16) == 0, "Q5_0 refuses a row of 16");
}

static void test_vocab(void) {
    synth_vocab v;
    CHECK(synth_vocab_build(320, &v), "vocab of 320 builds");
    CHECK(v.n_tokens == 320 && v.n_merges == 320 - 259, "320 tokens: 3 special + 256 bytes + 61 merges");
    CHECK(strcmp(v.tokens[0], "<|endoftext|>") == 0 && strcmp(v.tokens[2], "<|im_end|>") == 0 && v.types[1] == 3,
          "specials first, control type");
    CHECK(strcmp(v.tokens[3], "!") == 0 && strcmp(v.tokens[3 + 188], "\xc4\x80") == 0,
          "byte tokens: '!' first, byte 0 as U+0100 after the 188 printable bytes");
    CHECK(strcmp(v.tokens[259], "\xc4\xa0t") == 0 && strcmp(v.merges[0], "\xc4\xa0 t") == 0,
          "first merge 'Ġ t' makes token 259 'Ġt'");
    synth_vocab_free(&v);
    CHECK(synth_vocab_build(1000, &v), "vocab of 1000 builds");
    CHECK(v.n_merges == 71 && strcmp(v.tokens[999], "[PAD999]") == 0 && v.types[999] == 5,
          "all 71 merges valid, padding [PADn] unused to the end");
    synth_vocab_free(&v);
    CHECK(!synth_vocab_build(258, &v), "vocab below 259 refused");
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static bool synth_file(const char *type, uint64_t seed, int threads, const char *path) {
    synth_options o;
    memset(&o, 0, sizeof o);
    synth_preset("tiny", &o.shape);
    quantize_target_find(type, &o.target);
    o.seed = seed;
    o.n_threads = threads;
    char err[256];
    bool ok = synth_write(&o, path, err, sizeof err);
    if (!ok) printf("synth_write: %s\n", err);
    return ok;
}

static void test_synth_files(void) {
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "%s/a.gguf", check_tmp_dir());
    snprintf(b, sizeof b, "%s/b.gguf", check_tmp_dir());
    snprintf(c, sizeof c, "%s/c.gguf", check_tmp_dir());
    const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M", "Q5_K_M"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool ok = synth_file(types[i], 7, 1, a) && synth_file(types[i], 7, 3, b) && synth_file(types[i], 8, 2, c);
        CHECK(ok, "%s: synth tiny with seeds 7, 7, 8", types[i]);
        if (!ok) continue;
        size_t na = 0, nb = 0, nc = 0;
        char *da = read_all(a, &na), *db = read_all(b, &nb), *dc = read_all(c, &nc);
        CHECK(da && db && na == nb && memcmp(da, db, na) == 0, "%s: same seed, 1 vs 3 threads: identical bytes",
              types[i]);
        CHECK(da && dc && na == nc && memcmp(da, dc, na) != 0, "%s: seed 8 differs from seed 7", types[i]);
        free(da);
        free(db);
        free(dc);
        char err[256] = "";
        gguf_file *f = NULL;
        gguf_open(a, &f, err, sizeof err);
        CHECK(f != NULL, "%s: greta's reader opens it (%s)", types[i], err);
        if (!f) continue;
        CHECK(gguf_tensor_count(f) == 21, "%s: 21 tensors", types[i]);
        model *m = NULL;
        model_load(f, &m, err, sizeof err);
        CHECK(m != NULL, "%s: the model loader binds every tensor (%s)", types[i], err);
        if (m) {
            CHECK(m->hp.n_embd == 256 && m->hp.n_layer == 2 && m->hp.n_head == 4 && m->hp.n_head_kv == 2 &&
                      m->hp.n_vocab == 320 && m->hp.n_ff == 512 && !m->tied_embeddings,
                  "%s: hyperparameters read back", types[i]);
            model_free(m);
        }
    }
}

/* The llama3.2-1b preset (meta-llama/Llama-3.2-1B config.json) and its
 * rope_freqs.weight, loaded by the model as llama3 scaling. */
static void test_llama32_preset(void) {
    synth_shape s;
    CHECK(synth_preset("llama3.2-1b", &s), "llama3.2-1b preset exists");
    CHECK(s.dim == 2048 && s.ffn == 8192 && s.n_layers == 16 && s.n_heads == 32 && s.n_kv_heads == 8 &&
              s.vocab == 128256 && s.tied && s.rope_base == 500000.0 && s.llama3_rope == 32.0,
          "llama3.2-1b: dim 2048 ffn 8192 16 layers 32/8 heads vocab 128256 tied rope 500000 llama3 x32");
    /* Hand-computed factors, head size 64, base 500000: i = 0 -> freq 1, wavelength 2 pi < 2048 -> 1;
     * i = 31 -> wavelength 2 pi * 500000^(62/64) ~ 2.06e6 > 8192 -> 32; i = 12 -> freq =
     * 500000^(-24/64) = 0.007302, wavelength 860.5 < 2048 -> 1; i = 16 -> freq 500000^(-1/2) =
     * 1.41421e-3, wavelength 4442.88 in [2048, 8192]: smooth = (8192 / 4442.88 - 1) / 3 = 0.281281,
     * factor = 1 / ((1 - 0.281281) / 32 + 0.281281) = 1 / 0.303741 = 3.29227. */
    float f[32];
    synth_llama3_rope_factors(32.0, 500000.0, 64, f);
    CHECK(f[0] == 1.0f && f[12] == 1.0f && f[31] == 32.0f, "llama3 factors: 1 at high frequencies, 32 at low");
    CHECK(f[16] > 3.2921f && f[16] < 3.2924f, "llama3 factor in the smooth band: %.6f (hand: 3.29227)", f[16]);
    synth_options o;
    memset(&o, 0, sizeof o);
    synth_preset("tiny", &o.shape);
    o.shape.llama3_rope = 32.0;
    o.shape.rope_base = 500000.0;
    quantize_target_find("Q8_0", &o.target);
    o.seed = 3;
    char path[512], err[256] = "";
    snprintf(path, sizeof path, "%s/l3.gguf", check_tmp_dir());
    bool ok = synth_write(&o, path, err, sizeof err);
    CHECK(ok, "tiny with llama3 RoPE written (%s)", err);
    gguf_file *g = NULL;
    model *m = NULL;
    if (ok && gguf_open(path, &g, err, sizeof err) == GRETA_OK) model_load(g, &m, err, sizeof err);
    CHECK(m && m->rope_freqs && m->hp.rope_scaling == ROPE_SCALING_LLAMA3, "model binds rope_freqs as llama3 (%s)",
          err);
    if (m) {
        float want[128];
        synth_llama3_rope_factors(32.0, 500000.0, m->hp.rope_dim, want);
        CHECK(m->hp.rope_dim == 64 && memcmp(m->rope_freqs, want, 32 * sizeof(float)) == 0,
              "the model's factors are the file's");
        model_free(m);
    }
}

static void test_errors(void) {
    synth_shape s;
    char err[256] = "";
    synth_preset("tiny", &s);
    s.n_kv_heads = 3;
    CHECK(!synth_shape_check(&s, err, sizeof err) && strstr(err, "kv-heads"), "heads not a multiple of kv-heads: %s", err);
    synth_preset("tiny", &s);
    s.dim = 250;
    CHECK(!synth_shape_check(&s, err, sizeof err) && strstr(err, "dim"), "dim not a multiple of heads: %s", err);
    synth_preset("tiny", &s);
    s.vocab = 100;
    CHECK(!synth_shape_check(&s, err, sizeof err) && strstr(err, "vocab"), "small vocab: %s", err);
    CHECK(!synth_preset("llama9", &s), "unknown preset refused");
    synth_preset("tiny", &s);
    s.llama3_rope = 0.5;
    CHECK(!synth_shape_check(&s, err, sizeof err) && strstr(err, "rope-llama3"), "llama3 factor < 1: %s", err);
    synth_options o;
    memset(&o, 0, sizeof o);
    synth_preset("tiny", &o.shape);
    o.shape.dim = 200; /* 200 % 32 != 0: Q4_0 has no fallback */
    o.shape.n_heads = 4;
    o.shape.n_kv_heads = 2;
    quantize_target_find("Q4_0", &o.target);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", check_tmp_dir());
    CHECK(!synth_write(&o, path, err, sizeof err) && strstr(err, "block"), "Q4_0 with dim 200: %s", err);
    quantize_target t;
    quantize_target_find("Q8_0", &t);
    CHECK(!quantize_model_file("/nonexistent/in.gguf", path, &t, NULL, err, sizeof err) &&
              strstr(err, "/nonexistent/in.gguf"),
          "missing input named: %s", err);
}

int main(void) {
    test_use_more_bits();
    test_tensor_type();
    test_targets();
    test_q5_blocks();
    test_vocab();
    test_synth_files();
    test_llama32_preset();
    test_errors();
    return check_finish("test_synth");
}
