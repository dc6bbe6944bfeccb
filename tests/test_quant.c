/* test_quant.c: the block formats (src/format/quant.c) against independent references.
 *
 * References: fixtures in tests/fixtures/quant/ made by
 * scripts/fixtures/gen_quant_fixtures.py with the `gguf` Python package (llama.cpp's
 * reader/quantizer) and hand-computed half/bfloat16 values. (The dot
 * products the forward computes are the cpu backend's, tested in
 * test_engine.c against an independent recipe and a float64 bound.) */
#include "support/check.h"
#include "format/gguf.h"
#include "format/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint32_t SUPPORTED[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                                     QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_SUPPORTED (sizeof(SUPPORTED) / sizeof(SUPPORTED[0]))

/* ---- helpers ---- */

static uint8_t *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long len = ftell(f);
    rewind(f);
    uint8_t *data = malloc(len > 0 ? (size_t)len : 1);
    if (data && len > 0 && fread(data, 1, (size_t)len, f) != (size_t)len) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *size = (size_t)len;
    return data;
}

static uint8_t *read_fixture(const char *name, size_t *size) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/quant/%s", check_repo_dir(), name);
    uint8_t *data = read_whole_file(path, size);
    CHECK(data != NULL, "fixture %s readable", path);
    return data;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t quant_read_u16_test(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- type table ---- */

static void test_type_table(void) {
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        uint32_t t = SUPPORTED[i];
        CHECK(quant_type_supported(t), "%s supported", quant_type_name(t));
        CHECK(quant_type_from_name(quant_type_name(t)) == (int)t, "name round trip %s", quant_type_name(t));
    }
    struct { uint32_t type; const char *name; int64_t block, size; } sizes[] = {
        {QT_F32, "F32", 1, 4},       {QT_F16, "F16", 1, 2},       {QT_BF16, "BF16", 1, 2},
        {QT_Q4_0, "Q4_0", 32, 18},   {QT_Q4_1, "Q4_1", 32, 20},   {QT_Q5_0, "Q5_0", 32, 22},
        {QT_Q5_1, "Q5_1", 32, 24},   {QT_Q8_0, "Q8_0", 32, 34},   {QT_Q2_K, "Q2_K", 256, 84},
        {QT_Q3_K, "Q3_K", 256, 110}, {QT_Q4_K, "Q4_K", 256, 144}, {QT_Q5_K, "Q5_K", 256, 176},
        {QT_Q6_K, "Q6_K", 256, 210},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK(strcmp(quant_type_name(sizes[i].type), sizes[i].name) == 0 &&
                  quant_block_size(sizes[i].type) == sizes[i].block &&
                  quant_type_size(sizes[i].type) == sizes[i].size,
              "%s: block %lld of %lld bytes (ggml's sizes)", sizes[i].name, (long long)sizes[i].block,
              (long long)sizes[i].size);
    }
    CHECK(quant_row_bytes(QT_Q4_1, 576) == 18 * 20, "Q4_1 row of 576 = 360 bytes");
    CHECK(quant_row_bytes(QT_Q6_K, 512) == 420, "Q6_K row of 512 = 420 bytes");
    CHECK(quant_row_bytes(QT_F32, 7) == 28, "F32 row of 7 = 28 bytes");
    CHECK(quant_row_bytes(QT_Q4_0, 33) == 0 && quant_row_bytes(QT_Q4_K, 128) == 0,
          "row length not a multiple of the block: 0 bytes");
    CHECK(quant_row_bytes(QT_Q8_0, -32) == 0, "negative row length: 0 bytes");

    int unsupported_ok = 0, unsupported_total = 0;
    for (uint32_t t = 0; t < 200; t++) {
        bool expected = false;
        for (size_t i = 0; i < N_SUPPORTED; i++) expected |= (SUPPORTED[i] == t);
        if (expected) continue;
        unsupported_total++;
        if (!quant_type_supported(t) && !quant_type_quantizable(t) && quant_row_bytes(t, 256) == 0 &&
            quant_block_size(t) == 0 && quant_type_size(t) == 0)
            unsupported_ok++;
    }
    CHECK(unsupported_ok == unsupported_total, "all %d other ids (4,5,9,15..29,31..199) rejected, row_bytes 0",
          unsupported_total);
    CHECK(!quant_type_supported(0xffffffffu) && quant_row_bytes(0xffffffffu, 32) == 0, "id 2^32-1 rejected");
    struct { uint32_t type; const char *name; } named[] = {
        {QT_Q8_1, "Q8_1"},    {QT_Q8_K, "Q8_K"},   {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"},
        {19, "IQ1_S"},        {20, "IQ4_NL"},      {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"},
        {24, "I8"},           {28, "F64"},         {29, "IQ1_M"},   {34, "TQ1_0"},  {35, "TQ2_0"},
        {39, "MXFP4"},        {40, "NVFP4"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        CHECK(strcmp(quant_type_name(named[i].type), named[i].name) == 0, "unsupported id %u named %s",
              named[i].type, named[i].name);
    CHECK(strcmp(quant_type_name(63), "unknown") == 0 && strcmp(quant_type_name(1000), "unknown") == 0,
          "undefined ids named \"unknown\"");
    CHECK(quant_type_from_name("q4_k") == QT_Q4_K && quant_type_from_name("bf16") == QT_BF16,
          "names are case-insensitive");
    CHECK(quant_type_from_name("IQ2_XXS") == -1 && quant_type_from_name("Q4_K_M") == -1 &&
              quant_type_from_name("") == -1 && quant_type_from_name(NULL) == -1,
          "unsupported or unknown names give -1");
    const uint32_t writable[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    int writable_ok = 0;
    for (size_t i = 0; i < sizeof writable / sizeof writable[0]; i++) writable_ok += quant_type_quantizable(writable[i]);
    CHECK(writable_ok == 11 && !quant_type_quantizable(QT_Q5_0) && !quant_type_quantizable(QT_Q5_1) &&
              !quant_type_quantizable(QT_Q8_K),
          "quantizable: exactly F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q2_K Q3_K Q4_K Q5_K Q6_K");
}

/* ---- half and bfloat16, hand-computed values ---- */

static void test_half_conversions(void) {
    CHECK(quant_f16_to_f32(0x3c00) == 1.0f && quant_f16_to_f32(0xc000) == -2.0f &&
              quant_f16_to_f32(0x7bff) == 65504.0f && quant_f16_to_f32(0x0001) == 0x1p-24f &&
              quant_f16_to_f32(0x0400) == 0x1p-14f && quant_f16_to_f32(0x03ff) == 1023 * 0x1p-24f &&
              quant_f16_to_f32(0x3555) == 0x1.554p-2f,
          "f16 -> f32: 1, -2, max, smallest subnormal, smallest normal, largest subnormal, 1/3");
    CHECK(bits_of(quant_f16_to_f32(0x8000)) == 0x80000000u && isinf(quant_f16_to_f32(0x7c00)) &&
              quant_f16_to_f32(0xfc00) < 0 && isnan(quant_f16_to_f32(0x7e00)),
          "f16 -> f32: -0, +inf, -inf, NaN");
    CHECK(quant_f32_to_f16(1.0f) == 0x3c00 && quant_f32_to_f16(-2.0f) == 0xc000 &&
              quant_f32_to_f16(65504.0f) == 0x7bff && quant_f32_to_f16(0x1p-24f) == 0x0001,
          "f32 -> f16: exact values");
    CHECK(quant_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 && quant_f32_to_f16(1.0f + 0x3p-11f) == 0x3c02 &&
              quant_f32_to_f16(1.0f + 0x1.02p-11f) == 0x3c01,
          "f32 -> f16: ties to even, above a tie rounds up");
    CHECK(quant_f32_to_f16(65519.996f) == 0x7bff && quant_f32_to_f16(65520.0f) == 0x7c00 &&
              quant_f32_to_f16(-1e10f) == 0xfc00,
          "f32 -> f16: 65520 and beyond overflow to infinity");
    CHECK(quant_f32_to_f16(0x1p-25f) == 0x0000 && quant_f32_to_f16(0x1.0001p-25f) == 0x0001 &&
              quant_f32_to_f16(0x3p-25f) == 0x0002 && quant_f32_to_f16(1e-30f) == 0 &&
              quant_f32_to_f16(-0x1p-26f) == 0x8000 && quant_f32_to_f16(0x1.ffcp-15f) == 0x0400 &&
              quant_f32_to_f16(0x1.ff8p-15f) == 0x03ff,
          "f32 -> f16: subnormal rounding (ties to even, carry into the smallest normal)");
    uint16_t nan16 = quant_f32_to_f16(NAN);
    CHECK((nan16 & 0x7c00) == 0x7c00 && (nan16 & 0x3ff) != 0, "f32 -> f16: NaN stays NaN (0x%04x)", nan16);
    int roundtrip_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
        if (quant_f32_to_f16(quant_f16_to_f32((uint16_t)h)) != h) roundtrip_bad++;
    }
    CHECK(roundtrip_bad == 0, "every non-NaN half survives f16 -> f32 -> f16 (%d bad)", roundtrip_bad);

    CHECK(quant_bf16_to_f32(0x3f80) == 1.0f && quant_bf16_to_f32(0xc040) == -3.0f &&
              quant_f32_to_bf16(1.0f) == 0x3f80 && quant_f32_to_bf16(float_of(0x3f808000u)) == 0x3f80 &&
              quant_f32_to_bf16(float_of(0x3f818000u)) == 0x3f82 && quant_f32_to_bf16(float_of(0x3f808001u)) == 0x3f81,
          "bf16: exact values, ties to even, above a tie rounds up");
    CHECK(quant_f32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80 && quant_f32_to_bf16(float_of(0x7f800001u)) == 0x7fc0,
          "bf16: FLT_MAX rounds to inf; signalling NaN made quiet");
}

/* ---- dequantization against the gguf package ---- */

static void test_dequant_fixture(uint32_t type) {
    char name[64];
    snprintf(name, sizeof name, "dequant_%s.dat", quant_type_name(type));
    size_t size = 0;
    uint8_t *data = read_fixture(name, &size);
    if (data == NULL) return;
    uint32_t n_blocks = size >= 16 ? get_u32(data + 8) : 0;
    uint32_t block = size >= 16 ? get_u32(data + 12) : 0;
    size_t type_size = (size_t)quant_type_size(type);
    bool header_ok = size >= 16 && memcmp(data, "GQD1", 4) == 0 && get_u32(data + 4) == type &&
                     block == (uint32_t)quant_block_size(type) &&
                     size == 16 + n_blocks * (type_size + 4 * (size_t)block);
    CHECK(header_ok, "%s: header and size consistent", name);
    if (!header_ok) {
        free(data);
        return;
    }
    const uint8_t *blocks = data + 16;
    int64_t n = (int64_t)n_blocks * block;
    float *expected = malloc((size_t)n * sizeof(float));
    float *got = malloc((size_t)n * sizeof(float));
    float *one = malloc(256 * sizeof(float));
    memcpy(expected, blocks + n_blocks * type_size, (size_t)n * sizeof(float));

    quant_dequantize(type, blocks, got, n);
    int64_t mismatches = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        if (bits_of(got[i]) != bits_of(expected[i])) {
            if (first < 0) first = i;
            mismatches++;
        }
    }
    CHECK(mismatches == 0, "%s: %lld values of %u random blocks bit-exact with gguf.quants.dequantize "
          "(%lld differ, first at %lld: %.9g vs %.9g)", quant_type_name(type), (long long)n, n_blocks,
          (long long)mismatches, (long long)first, first >= 0 ? got[first] : 0.0, first >= 0 ? expected[first] : 0.0);

    int64_t block_mismatches = 0;
    for (uint32_t b = 0; b < n_blocks; b++) {
        quant_dequantize_block(type, blocks + b * type_size, one);
        if (memcmp(one, expected + (size_t)b * block, block * sizeof(float)) != 0) block_mismatches++;
    }
    CHECK(block_mismatches == 0, "%s: quant_dequantize_block bit-exact on every block (%lld differ)",
          quant_type_name(type), (long long)block_mismatches);
    free(one);
    free(got);
    free(expected);
    free(data);
}

static void test_dequant_bad_arguments(void) {
    float out[40];
    for (int i = 0; i < 40; i++) out[i] = 1.0f;
    uint8_t zeros[64] = {0};
    quant_dequantize(QT_Q4_0, zeros, out, 33);
    CHECK(isnan(out[0]) && isnan(out[32]), "dequantize with n not a multiple of the block poisons dst with NaN");
    quant_dequantize(16 /* IQ2_XXS */, zeros, out, 4);
    CHECK(isnan(out[0]) && isnan(out[3]), "dequantize of an unsupported type poisons dst with NaN");
}


/* ---- quantizers ---- */

static const uint32_t QUANTIZABLE[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1,
                                       QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_QUANTIZABLE (sizeof(QUANTIZABLE) / sizeof(QUANTIZABLE[0]))

static void test_quant_fixture(uint32_t type, const char *reference) {
    char name[64];
    snprintf(name, sizeof name, "quant_%s.dat", quant_type_name(type));
    size_t size = 0;
    uint8_t *data = read_fixture(name, &size);
    if (data == NULL) return;
    uint32_t n = size >= 16 ? get_u32(data + 8) : 0, n_bytes = size >= 16 ? get_u32(data + 12) : 0;
    bool header_ok = size >= 16 && memcmp(data, "GQQ1", 4) == 0 && get_u32(data + 4) == type &&
                     n_bytes == quant_row_bytes(type, n) && size == 16 + 4 * (size_t)n + n_bytes;
    CHECK(header_ok, "%s: header and size consistent", name);
    if (header_ok) {
        float *x = malloc((size_t)n * sizeof(float));
        memcpy(x, data + 16, (size_t)n * sizeof(float));
        const uint8_t *expected = data + 16 + 4 * (size_t)n;
        uint8_t *got = malloc(n_bytes);
        size_t written = quant_quantize(type, x, got, n);
        const size_t type_size = (size_t)quant_type_size(type);
        int bad_blocks = 0, first_bad = -1;
        for (size_t b = 0; b < n_bytes / type_size; b++) {
            if (memcmp(got + b * type_size, expected + b * type_size, type_size) != 0) {
                if (first_bad < 0) first_bad = (int)b;
                bad_blocks++;
            }
        }
        CHECK(written == n_bytes && bad_blocks == 0, "%s: quantization of %u values byte-exact with %s "
              "(%d of %zu blocks differ, first %d)", quant_type_name(type), n, reference, bad_blocks,
              n_bytes / type_size, first_bad);
        free(got);
        free(x);
    }
    free(data);
}

static double reference_rmse(const char *type_name) {
    size_t size = 0;
    uint8_t *text = read_fixture("rmse_reference.txt", &size);
    double value = -1.0;
    if (text == NULL) return value;
    char *copy = malloc(size + 1);
    memcpy(copy, text, size);
    copy[size] = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char name[32];
        double v;
        if (line[0] != '#' && sscanf(line, "%31s %lf", name, &v) == 2 && strcmp(name, type_name) == 0) value = v;
    }
    free(copy);
    free(text);
    return value;
}

static void test_roundtrip_rmse(void) {
    size_t size = 0;
    uint8_t *data = read_fixture("gaussian.dat", &size);
    if (data == NULL) return;
    const uint32_t n = size >= 8 ? get_u32(data + 4) : 0;
    bool ok = size >= 8 && memcmp(data, "GQG1", 4) == 0 && size == 8 + 4 * (size_t)n && n % 256 == 0;
    CHECK(ok, "gaussian.dat: header and size consistent");
    if (!ok) {
        free(data);
        return;
    }
    float *x = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)n * sizeof(float));
    memcpy(x, data + 8, (size_t)n * sizeof(float));
    uint8_t *q = malloc((size_t)n * 4);
    printf("# round-trip RMSE on %u N(0,1) values: greta vs llama.cpp reference (limit 1.10 x reference)\n", n);
    for (size_t i = 0; i < N_QUANTIZABLE; i++) {
        uint32_t type = QUANTIZABLE[i];
        size_t written = quant_quantize(type, x, q, n);
        quant_dequantize(type, q, y, n);
        double sum = 0.0;
        for (uint32_t k = 0; k < n; k++) sum += ((double)y[k] - x[k]) * ((double)y[k] - x[k]);
        double rmse = sqrt(sum / n);
        if (type == QT_F32) {
            CHECK(written == (size_t)n * 4 && rmse == 0.0, "F32 round trip is exact");
            continue;
        }
        double ref = reference_rmse(quant_type_name(type));
        printf("# %-5s greta %.6e  reference %.6e  ratio %.4f\n", quant_type_name(type), rmse, ref, rmse / ref);
        CHECK(written == quant_row_bytes(type, n) && ref > 0 && rmse <= 1.10 * ref,
              "%s round-trip RMSE %.6e <= 1.10 x llama.cpp reference %.6e (ratio %.4f)", quant_type_name(type),
              rmse, ref, rmse / ref);
    }
    free(q);
    free(y);
    free(x);
    free(data);
}

static void test_quantize_bad_arguments(void) {
    float x[256];
    uint8_t out[1024];
    for (int i = 0; i < 256; i++) x[i] = (float)i;
    CHECK(quant_quantize(QT_Q5_0, x, out, 32) == 0 && quant_quantize(QT_Q8_K, x, out, 256) == 0 &&
              quant_quantize(16, x, out, 256) == 0,
          "quantize to a type greta does not write returns 0");
    CHECK(quant_quantize(QT_Q4_K, x, out, 128) == 0 && quant_quantize(QT_Q8_0, x, out, 48) == 0,
          "quantize with n not a multiple of the block returns 0");
    x[17] = NAN;
    CHECK(quant_quantize(QT_Q8_0, x, out, 32) == 0 && quant_quantize(QT_Q6_K, x, out, 256) == 0,
          "quantize of NaN into a block format returns 0");
    x[17] = INFINITY;
    CHECK(quant_quantize(QT_F16, x, out, 32) == 64 && quant_read_u16_test(out + 34) == 0x7c00,
          "F16 keeps infinity");
}

/* ---- every tensor of the default model against the gguf package ---- */

static uint64_t fnv1a64(uint64_t hash, const void *data, size_t size) {
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++) hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

/* The hash of scripts/fixtures/gen_quant_fixtures.py (model_tensor_hash): FNV-1a 64
 * over the little-endian u64 FNV-1a 64 hashes of each row's float32 bytes. */
static uint64_t tensor_hash(const gguf_tensor *t, float *row_values) {
    const int64_t ne0 = t->ne[0];
    const int64_t rows = gguf_tensor_nelements(t) / ne0;
    const size_t row_bytes = quant_row_bytes(t->type, ne0);
    uint64_t total = 0xcbf29ce484222325ull;
    for (int64_t r = 0; r < rows; r++) {
        quant_dequantize(t->type, (const uint8_t *)t->data + r * row_bytes, row_values, ne0);
        uint64_t h = fnv1a64(0xcbf29ce484222325ull, row_values, (size_t)ne0 * sizeof(float));
        uint8_t le[8];
        for (int k = 0; k < 8; k++) le[k] = (uint8_t)(h >> (8 * k));
        total = fnv1a64(total, le, 8);
    }
    return total;
}

static void test_model_tensors(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    char err[256] = "";
    gguf_file *file = NULL;
    gguf_open(path, &file, err, sizeof err);
    CHECK(file != NULL, "default model %s opens (%s); run `bash scripts/fetch-model` if it is missing", path,
          file ? "ok" : err);
    size_t size = 0;
    uint8_t *text = read_fixture("model_hashes.txt", &size);
    if (file == NULL || text == NULL) {
        if (file) gguf_close(file);
        free(text);
        return;
    }
    char *copy = malloc(size + 1);
    memcpy(copy, text, size);
    copy[size] = 0;
    float *row = malloc(65536 * sizeof(float));
    int listed = 0, matched = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char name[256], type_name[32], hash_hex[32];
        long long n_elements, rows;
        if (sscanf(line, "%255s %31s %lld %lld %31s", name, type_name, &n_elements, &rows, hash_hex) != 5) {
            CHECK(false, "model_hashes.txt: malformed line '%s'", line);
            continue;
        }
        listed++;
        const gguf_tensor *t = gguf_find_tensor(file, name);
        if (t == NULL || strcmp(quant_type_name(t->type), type_name) != 0 || gguf_tensor_nelements(t) != n_elements ||
            t->ne[0] > 65536 || n_elements / t->ne[0] != rows) {
            CHECK(false, "tensor %s present with type %s, %lld values in %lld rows", name, type_name, n_elements, rows);
            continue;
        }
        uint64_t expected = strtoull(hash_hex, NULL, 16);
        uint64_t got = tensor_hash(t, row);
        if (got == expected) {
            matched++;
        } else {
            CHECK(false, "tensor %s (%s): dequantization hash %016llx, gguf package %016llx", name, type_name,
                  (unsigned long long)got, (unsigned long long)expected);
        }
    }
    CHECK(listed == 272 && (uint64_t)listed == gguf_tensor_count(file), "model_hashes.txt lists all %d tensors "
          "of the model (%llu in the file)", listed, (unsigned long long)gguf_tensor_count(file));
    CHECK(matched == listed, "every tensor of the default model dequantizes bit-exactly as gguf.quants "
          "(%d of %d hashes match)", matched, listed);
    free(row);
    free(copy);
    free(text);
    gguf_close(file);
}

int main(void) {
    test_type_table();
    test_half_conversions();
    for (size_t i = 0; i < N_SUPPORTED; i++) test_dequant_fixture(SUPPORTED[i]);
    test_dequant_bad_arguments();
    for (size_t i = 1; i < N_QUANTIZABLE; i++) {
        uint32_t type = QUANTIZABLE[i];
        bool k_quant = type == QT_Q2_K || type == QT_Q3_K || type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K;
        test_quant_fixture(type, k_quant ? "the numpy port of llama.cpp's reference (scripts/pylib/kquant_reference.py)"
                                         : "gguf.quants.quantize");
    }
    test_roundtrip_rmse();
    test_quantize_bad_arguments();
    test_model_tensors();
    return check_finish("test_quant");
}
