/* synth.c: random-weight Llama GGUF files (see synth.h, docs/synth.md). */
#include "tools/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/utf8.h"
#include "format/gguf.h"
#include "format/quant.h"

/* ---- Shapes ---- */

synth_shape synth_shape_defaults(void) {
    synth_shape s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "custom");
    s.ctx = 2048;
    s.rope_base = 10000.0;
    s.rms_eps = 1e-5;
    s.tied = false;
    snprintf(s.pre, sizeof s.pre, "default");
    return s;
}

typedef struct {
    const char *name;
    int64_t dim, ffn, n_layers, n_heads, n_kv_heads, vocab, ctx;
    double rope_base, rms_eps;
    bool tied;
    const char *pre;
    double llama3_rope; /* 0: no rope_freqs.weight */
} preset;

static const preset presets[] = {
    /* Small enough for fast tests; row lengths are multiples of 256 so
     * every type (K quants included) applies without fallback. */
    {"tiny", 256, 512, 2, 4, 2, 320, 512, 10000.0, 1e-5, false, "default", 0.0},
    /* HuggingFaceTB/SmolLM2-135M(-Instruct) config.json. */
    {"smollm2-135m", 576, 1536, 30, 9, 3, 49152, 8192, 100000.0, 1e-5, true, "smollm", 0.0},
    /* meta-llama/Llama-3.2-1B config.json: rope_scaling llama3, factor 32. */
    {"llama3.2-1b", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0, 1e-5, true, "default", 32.0},
    /* meta-llama/Llama-2-7b-hf config.json. */
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, 1e-5, false, "default", 0.0},
    /* meta-llama/Meta-Llama-3-8B config.json. */
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0, 1e-5, false, "default", 0.0},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

bool synth_preset(const char *name, synth_shape *out) {
    for (size_t i = 0; i < N_PRESETS; i++) {
        const preset *p = &presets[i];
        if (strcmp(name, p->name) != 0) continue;
        synth_shape s = synth_shape_defaults();
        snprintf(s.name, sizeof s.name, "%s", p->name);
        s.dim = p->dim;
        s.ffn = p->ffn;
        s.n_layers = p->n_layers;
        s.n_heads = p->n_heads;
        s.n_kv_heads = p->n_kv_heads;
        s.vocab = p->vocab;
        s.ctx = p->ctx;
        s.rope_base = p->rope_base;
        s.rms_eps = p->rms_eps;
        s.tied = p->tied;
        s.llama3_rope = p->llama3_rope;
        snprintf(s.pre, sizeof s.pre, "%s", p->pre);
        *out = s;
        return true;
    }
    return false;
}

const char *synth_preset_list(void) { return "tiny, smollm2-135m, llama3.2-1b, llama2-7b, llama3-8b"; }

void synth_llama3_rope_factors(double factor, double base, int64_t rope_dim, float *out) {
    const double pi = 3.14159265358979323846;
    const double old_ctx = 8192.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
    const double low_freq_wavelen = old_ctx / low_freq_factor, high_freq_wavelen = old_ctx / high_freq_factor;
    for (int64_t i = 0; i < rope_dim / 2; i++) {
        double freq = pow(base, -2.0 * (double)i / (double)rope_dim);
        double wavelen = 2.0 * pi / freq;
        double f;
        if (wavelen < high_freq_wavelen) {
            f = 1.0;
        } else if (wavelen > low_freq_wavelen) {
            f = factor;
        } else {
            double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

#define BASE_VOCAB 259 /* 3 special tokens + 256 byte tokens */

static bool check_range(const char *what, int64_t value, int64_t max, char *err, size_t err_size) {
    if (value >= 1 && value <= max) return true;
    format_error(err, err_size, "%s %lld is out of range (1..%lld)", what, (long long)value, (long long)max);
    return false;
}

bool synth_shape_check(const synth_shape *s, char *err, size_t err_size) {
    if (!check_range("dim", s->dim, 1 << 16, err, err_size)) return false;
    if (!check_range("ffn", s->ffn, 1 << 18, err, err_size)) return false;
    if (!check_range("layers", s->n_layers, 1024, err, err_size)) return false;
    if (!check_range("heads", s->n_heads, 1024, err, err_size)) return false;
    if (!check_range("kv-heads", s->n_kv_heads, 1024, err, err_size)) return false;
    if (!check_range("vocab", s->vocab, 1 << 22, err, err_size)) return false;
    if (!check_range("ctx", s->ctx, 1 << 24, err, err_size)) return false;
    if (s->dim % s->n_heads != 0 || (s->dim / s->n_heads) % 2 != 0) {
        format_error(err, err_size, "dim %lld must be a multiple of heads %lld with an even head size",
                (long long)s->dim, (long long)s->n_heads);
        return false;
    }
    if (s->n_heads % s->n_kv_heads != 0) {
        format_error(err, err_size, "heads %lld must be a multiple of kv-heads %lld", (long long)s->n_heads,
                (long long)s->n_kv_heads);
        return false;
    }
    if (s->vocab < BASE_VOCAB) {
        format_error(err, err_size, "vocab %lld is below the %d tokens of the byte-level vocabulary",
                (long long)s->vocab, BASE_VOCAB);
        return false;
    }
    if (!(s->rope_base > 0.0 && isfinite(s->rope_base))) {
        format_error(err, err_size, "rope-base %g must be a positive number", s->rope_base);
        return false;
    }
    if (!(s->llama3_rope == 0.0 || (s->llama3_rope >= 1.0 && isfinite(s->llama3_rope)))) {
        format_error(err, err_size, "rope-llama3 factor %g must be 0 (none) or at least 1", s->llama3_rope);
        return false;
    }
    if (!(s->rms_eps > 0.0 && s->rms_eps < 1.0)) {
        format_error(err, err_size, "rms-eps %g must be in (0, 1)", s->rms_eps);
        return false;
    }
    return true;
}

/* ---- Vocabulary ---- */

/* Merges in rank order ("left right"); every part is a byte token or the
 * result of an earlier merge (Ġ is the byte-level space). */
static const char *const merge_list[] = {
    "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o",
    "e n", "Ġ c", "i t", "i s", "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p",
    "o u", "Ġa n", "a l", "a r", "Ġt o", "Ġ m", "Ġo f", "Ġ in", "Ġ d", "Ġ h", "Ġan d", "i c",
    "a s", "l e", "Ġt h", "i on", "o m", "l l", "en t", "Ġ n", "Ġ l", "s t", "Ġ re", "v e",
    "Ġ e", "r o", "l y", "Ġb e", "Ġ g", "Ġ T", "c t", "Ġ S", "i d", "o t", "Ġ I", "u t",
    "e t", "Ġ A", "Ġ is", "Ġ on", "i m", "a m", "o w", "a y", "a d", "s e", "Ġth at",
};
#define N_MERGES (sizeof merge_list / sizeof merge_list[0])

/* GPT-2's byte-to-unicode map: printable bytes map to themselves, the
 * others to U+0100 upwards in byte order. */
static bool byte_is_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

static char *utf8_of(uint32_t cp) {
    char *s = malloc(5);
    if (!s) return NULL;
    s[utf8_encode(cp, s)] = 0;
    return s;
}

static int64_t find_token(const synth_vocab *v, const char *text) {
    for (int64_t i = 0; i < v->n_tokens; i++) {
        if (strcmp(v->tokens[i], text) == 0) return i;
    }
    return -1;
}

void synth_vocab_free(synth_vocab *v) {
    if (v->tokens) {
        for (int64_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    }
    if (v->merges) {
        for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    }
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

static bool add_token(synth_vocab *v, char *text, int32_t type) {
    if (!text) return false;
    v->tokens[v->n_tokens] = text;
    v->types[v->n_tokens] = type;
    v->n_tokens++;
    return true;
}

/* Adds merge "left right" if both parts exist and the result is new. */
static bool add_merge(synth_vocab *v, const char *merge) {
    const char *space = strchr(merge, ' ');
    size_t left_len = (size_t)(space - merge);
    char left[32], joined[64];
    snprintf(left, sizeof left, "%.*s", (int)left_len, merge);
    snprintf(joined, sizeof joined, "%s%s", left, space + 1);
    if (find_token(v, left) < 0 || find_token(v, space + 1) < 0 || find_token(v, joined) >= 0) return true;
    char *merge_copy = strdup(merge);
    if (!merge_copy) return false;
    v->merges[v->n_merges++] = merge_copy;
    return add_token(v, strdup(joined), 1 /* NORMAL */);
}

bool synth_vocab_build(int64_t vocab_size, synth_vocab *v) {
    memset(v, 0, sizeof *v);
    if (vocab_size < BASE_VOCAB) return false;
    v->tokens = calloc((size_t)vocab_size, sizeof *v->tokens);
    v->types = calloc((size_t)vocab_size, sizeof *v->types);
    v->merges = calloc(N_MERGES, sizeof *v->merges);
    bool ok = v->tokens && v->types && v->merges;
    const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; ok && i < 3; i++) ok = add_token(v, strdup(specials[i]), 3 /* CONTROL */);
    /* Byte tokens in code-point order, as GPT-2's vocab.json lists them:
     * the printable bytes, then the others as U+0100, U+0101, ... */
    for (int b = 0; ok && b < 256; b++) {
        if (byte_is_printable(b)) ok = add_token(v, utf8_of((uint32_t)b), 1 /* NORMAL */);
    }
    uint32_t next_cp = 256;
    for (int b = 0; ok && b < 256; b++) {
        if (!byte_is_printable(b)) ok = add_token(v, utf8_of(next_cp++), 1 /* NORMAL */);
    }
    for (size_t m = 0; ok && m < N_MERGES && v->n_tokens < vocab_size; m++) ok = add_merge(v, merge_list[m]);
    while (ok && v->n_tokens < vocab_size) {
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%lld]", (long long)v->n_tokens);
        ok = add_token(v, strdup(pad), 5 /* UNUSED */);
    }
    if (!ok) synth_vocab_free(v);
    return ok;
}

static const char *const chatml_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

static bool set_vocab(gguf_writer *w, const synth_shape *s) {
    synth_vocab v;
    if (!synth_vocab_build(s->vocab, &v)) return false;
    gguf_str *strs = calloc((size_t)v.n_tokens, sizeof *strs);
    if (!strs) {
        synth_vocab_free(&v);
        return false;
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", s->pre);
    for (int64_t i = 0; i < v.n_tokens; i++) strs[i] = (gguf_str){v.tokens[i], strlen(v.tokens[i])};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, (uint64_t)v.n_tokens);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v.types, (uint64_t)v.n_tokens);
    for (int64_t i = 0; i < v.n_merges; i++) strs[i] = (gguf_str){v.merges[i], strlen(v.merges[i])};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", strs, (uint64_t)v.n_merges);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    gguf_writer_set_str(w, "tokenizer.chat_template", chatml_template);
    free(strs);
    synth_vocab_free(&v);
    return true;
}

static void set_metadata(gguf_writer *w, const synth_options *o) {
    const synth_shape *s = &o->shape;
    char name[64];
    snprintf(name, sizeof name, "greta-synth-%s", s->name);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.type", "model");
    gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, "general.file_type", o->target.file_type);
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    gguf_writer_set_u64(w, "greta.synth.seed", o->seed);
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->ctx);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->dim);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layers);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->ffn);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(s->dim / s->n_heads));
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_heads);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)s->rms_eps);
    gguf_writer_set_f32(w, "llama.rope.freq_base", (float)s->rope_base);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)s->vocab);
}

/* ---- Tensors ---- */

typedef struct {
    char name[64];
    uint32_t n_dims;
    int64_t ne[2]; /* ne[0] = row length */
    uint32_t type;
    bool is_norm;  /* values 1 + N(0, 0.02^2), else N(0, 1/ne[0]) */
    bool is_rope_freqs; /* llama3 RoPE factors, not random */
} tensor_spec;

static void spec_set(tensor_spec *t, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->is_norm = n_dims == 1;
}

/* Fills specs (room for 4 + 9 * n_layers) in file order; returns the count. */
static int64_t list_tensors(const synth_shape *s, tensor_spec *specs) {
    int64_t kv_dim = s->dim / s->n_heads * s->n_kv_heads;
    int64_t n = 0;
    char name[64];
    spec_set(&specs[n++], "token_embd.weight", 2, s->dim, s->vocab);
    for (int64_t l = 0; l < s->n_layers; l++) {
        struct { const char *suffix; uint32_t n_dims; int64_t ne0, ne1; } layer[] = {
            {"attn_norm.weight", 1, s->dim, 1},     {"attn_q.weight", 2, s->dim, s->dim},
            {"attn_k.weight", 2, s->dim, kv_dim},   {"attn_v.weight", 2, s->dim, kv_dim},
            {"attn_output.weight", 2, s->dim, s->dim}, {"ffn_norm.weight", 1, s->dim, 1},
            {"ffn_gate.weight", 2, s->dim, s->ffn}, {"ffn_up.weight", 2, s->dim, s->ffn},
            {"ffn_down.weight", 2, s->ffn, s->dim},
        };
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            snprintf(name, sizeof name, "blk.%lld.%s", (long long)l, layer[i].suffix);
            spec_set(&specs[n++], name, layer[i].n_dims, layer[i].ne0, layer[i].ne1);
        }
    }
    spec_set(&specs[n++], "output_norm.weight", 1, s->dim, 1);
    if (!s->tied) spec_set(&specs[n++], "output.weight", 2, s->dim, s->vocab);
    if (s->llama3_rope > 0.0) {
        spec_set(&specs[n], "rope_freqs.weight", 1, s->dim / s->n_heads / 2, 1);
        specs[n].is_norm = false;
        specs[n++].is_rope_freqs = true;
    }
    return n;
}

static bool choose_types(const synth_options *o, tensor_spec *specs, int64_t n, char *err, size_t err_size) {
    const synth_shape *s = &o->shape;
    quantize_model_info info = {(int)s->n_layers, (int)s->n_layers, s->tied,
                                s->n_layers == 80 && s->n_heads != s->n_kv_heads,
                                s->n_kv_heads > 0 ? (int)(s->n_heads / s->n_kv_heads) : 0};
    for (int64_t i = 0; i < n; i++) {
        tensor_spec *t = &specs[i];
        if (!quantize_tensor_is_weight(t->name, t->n_dims)) {
            t->type = QT_F32;
            continue;
        }
        int layer = quantize_layer_of(t->name);
        int type = quantize_tensor_type(&o->target, &info, t->name, layer < 0 ? 0 : layer, t->ne[0]);
        if (type < 0) {
            format_error(err, err_size, "%s: row length %lld of %s is not a multiple of the block size %lld",
                    o->target.name, (long long)t->ne[0], t->name,
                    (long long)quant_block_size(o->target.base_type));
            return false;
        }
        t->type = (uint32_t)type;
    }
    return true;
}

/* splitmix64: the generator behind every row. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Uniform in (0, 1), 24 bits. */
static float uniform_open(uint64_t *state) {
    return ((float)(splitmix64(state) >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

/* x[0..n) = mean + std * N(0, 1) by Box-Muller. */
static void fill_normal(float *x, int64_t n, uint64_t state, float mean, float std) {
    for (int64_t i = 0; i < n; i += 2) {
        float r = sqrtf(-2.0f * logf(uniform_open(&state)));
        float theta = 6.2831853f * uniform_open(&state);
        x[i] = mean + std * r * cosf(theta);
        if (i + 1 < n) x[i + 1] = mean + std * r * sinf(theta);
    }
}

typedef struct {
    const tensor_spec *spec;
    uint64_t tensor_seed;
    int64_t first_row;
    uint8_t *dst;
    size_t row_bytes;
    bool failed;
} gen_job;

static void generate_rows(void *arg, int64_t first, int64_t end) {
    gen_job *job = arg;
    const tensor_spec *t = job->spec;
    float *row = malloc((size_t)t->ne[0] * sizeof(float));
    if (!row) {
        job->failed = true;
        return;
    }
    float mean = t->is_norm ? 1.0f : 0.0f;
    float std = t->is_norm ? 0.02f : 1.0f / sqrtf((float)t->ne[0]);
    for (int64_t r = first; r < end; r++) {
        uint64_t state = job->tensor_seed ^ ((uint64_t)(job->first_row + r) * 0xD1B54A32D192ED03ull);
        splitmix64(&state);
        fill_normal(row, t->ne[0], state, mean, std);
        quantize_row(t->type, row, job->dst + (size_t)r * job->row_bytes, t->ne[0]);
    }
    free(row);
}

static bool write_rope_freqs(gguf_writer *w, const synth_shape *s, const tensor_spec *t, char *err, size_t err_size) {
    float *f = malloc((size_t)t->ne[0] * sizeof(float));
    if (!f) {
        format_error(err, err_size, "out of memory generating %s", t->name);
        return false;
    }
    synth_llama3_rope_factors(s->llama3_rope, s->rope_base, s->dim / s->n_heads, f);
    bool ok = gguf_writer_append(w, f, (uint64_t)t->ne[0] * sizeof(float), err, err_size);
    free(f);
    return ok;
}

static bool write_tensor(gguf_writer *w, const tensor_spec *t, uint64_t seed, int n_threads, char *err,
                         size_t err_size) {
    size_t row_bytes = quant_row_bytes(t->type, t->ne[0]);
    int64_t n_rows = t->ne[1];
    int64_t step = (int64_t)((64u << 20) / row_bytes);
    if (step < 1) step = 1;
    if (step > n_rows) step = n_rows;
    uint8_t *buffer = malloc((size_t)step * row_bytes);
    if (!buffer) {
        format_error(err, err_size, "out of memory generating %s", t->name);
        return false;
    }
    uint64_t tensor_seed = seed;
    splitmix64(&tensor_seed);
    tensor_seed ^= fnv1a64(t->name);
    bool ok = true;
    for (int64_t first = 0; ok && first < n_rows; first += step) {
        int64_t rows = n_rows - first < step ? n_rows - first : step;
        gen_job job = {t, tensor_seed, first, buffer, row_bytes, false};
        quantize_parallel(n_threads, rows, generate_rows, &job);
        if (job.failed) {
            format_error(err, err_size, "out of memory generating %s", t->name);
            ok = false;
        } else {
            ok = gguf_writer_append(w, buffer, (uint64_t)rows * row_bytes, err, err_size);
        }
    }
    free(buffer);
    return ok;
}

bool synth_write(const synth_options *o, const char *path, char *err, size_t err_size) {
    if (!synth_shape_check(&o->shape, err, err_size)) return false;
    if (!quantize_type_writable(o->target.base_type)) {
        format_error(err, err_size, "type %s cannot be written", o->target.name);
        return false;
    }
    tensor_spec *specs = calloc((size_t)(4 + 9 * o->shape.n_layers), sizeof *specs);
    gguf_writer *w = gguf_writer_new();
    if (!specs || !w) {
        free(specs);
        gguf_writer_free(w);
        format_error(err, err_size, "out of memory");
        return false;
    }
    int64_t n = list_tensors(&o->shape, specs);
    bool ok = choose_types(o, specs, n, err, err_size);
    if (ok) {
        set_metadata(w, o);
        if (o->no_vocab) gguf_writer_set_str(w, "tokenizer.ggml.model", "none");
        else ok = set_vocab(w, &o->shape);
        if (!ok) format_error(err, err_size, "out of memory building the vocabulary");
    }
    for (int64_t i = 0; ok && i < n; i++) {
        gguf_writer_declare_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].ne);
    }
    char reason[512] = "";
    if (ok) {
        ok = gguf_writer_begin(w, path, reason, sizeof reason);
        if (!ok) format_error(err, err_size, "%s", reason);
    }
    int n_threads = quantize_thread_count(o->n_threads);
    for (int64_t i = 0; ok && i < n; i++) {
        if (specs[i].is_rope_freqs)
            ok = write_rope_freqs(w, &o->shape, &specs[i], reason, sizeof reason);
        else
            ok = write_tensor(w, &specs[i], o->seed, n_threads, reason, sizeof reason);
        if (!ok) format_error(err, err_size, "%s", reason);
        else if (o->log) {
            fprintf(o->log, "[%4lld/%lld] %-32s %s\n", (long long)(i + 1), (long long)n, specs[i].name,
                    quant_type_name(specs[i].type));
            fflush(o->log);
        }
    }
    if (ok && !gguf_writer_end(w, reason, sizeof reason)) {
        format_error(err, err_size, "%s", reason);
        ok = false;
    }
    gguf_writer_free(w);
    free(specs);
    /* On failure the writer has removed its temporary file: no partial output. */
    return ok;
}
