/* synth.h: Llama-architecture GGUF files with random weights (`greta synth`).
 *
 * The file is laid out as llama.cpp's converter writes a llama model
 * (general.architecture = "llama", every llama.* key, tensors token_embd,
 * blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
 * ffn_gate, ffn_up, ffn_down}, output_norm, output unless tied) and carries
 * a small byte-level BPE vocabulary (gpt2 model: the 256 byte tokens, a few
 * merges, <|endoftext|> <|im_start|> <|im_end|>, [PADn] up to the vocab
 * size) and a ChatML chat template, so the model runs end to end.
 *
 * Weights: row r of tensor NAME comes from its own generator seeded by
 * (seed, NAME, r), so the file bytes depend only on the options, never on
 * the thread count. Matrices ~ N(0, 1/fan_in) (fan_in = row length), norm
 * weights 1 + N(0, 0.02^2). Written tensor by tensor, row chunk by row
 * chunk through the streaming writer: memory stays bounded (~64 MiB plus a
 * row per thread) whatever the model size. See docs/synth.md. */
#ifndef GRETA_SYNTH_H
#define GRETA_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/quantize_model.h"

typedef struct {
    char name[32];      /* preset name, or "custom" */
    int64_t dim;        /* llama.embedding_length */
    int64_t ffn;        /* llama.feed_forward_length */
    int64_t n_layers;   /* llama.block_count */
    int64_t n_heads;    /* llama.attention.head_count */
    int64_t n_kv_heads; /* llama.attention.head_count_kv */
    int64_t vocab;      /* llama.vocab_size */
    int64_t ctx;        /* llama.context_length */
    double rope_base;   /* llama.rope.freq_base */
    double rms_eps;     /* llama.attention.layer_norm_rms_epsilon */
    bool tied;          /* no output.weight: token_embd is the output */
    char pre[32];       /* tokenizer.ggml.pre */
    double llama3_rope; /* llama3 RoPE scaling factor (rope_freqs.weight), 0 = none */
} synth_shape;

/* The rope_freqs.weight values of llama3 RoPE scaling, as llama.cpp's
 * converter computes them from a config.json rope_scaling of rope_type
 * "llama3" with the given factor, low_freq_factor 1, high_freq_factor 4,
 * original_max_position_embeddings 8192 (Llama 3.1 and 3.2): for
 * i < rope_dim / 2, freq = base^(-2i / rope_dim), wavelen = 2 pi / freq;
 * 1 if wavelen < 8192 / 4, factor if wavelen > 8192 / 1, else
 * 1 / ((1 - s) / factor + s) with s = (8192 / wavelen - 1) / (4 - 1). */
void synth_llama3_rope_factors(double factor, double base, int64_t rope_dim, float *out);

/* Presets: tiny, smollm2-135m, llama3.2-1b, llama2-7b, llama3-8b (docs/synth.md). */
bool synth_preset(const char *name, synth_shape *out);
const char *synth_preset_list(void);

/* Shape with no dimensions set (0) and the defaults for the rest: ctx 2048,
 * rope base 10000, rms eps 1e-5, untied, pre "default". */
synth_shape synth_shape_defaults(void);

/* Checks a shape (every size positive and within limits, dim a multiple of
 * the head count with an even head size, heads a multiple of kv heads,
 * vocab at least the 259 tokens of the base vocabulary). */
bool synth_shape_check(const synth_shape *shape, char *err, size_t err_size);

typedef struct {
    synth_shape shape;
    quantize_target target;
    uint64_t seed;
    int n_threads; /* 0 = all online CPUs */
    bool no_vocab; /* tokenizer.ggml.model = "none" and no other tokenizer key or template
                      (a file without a vocabulary: runs on token ids only) */
    FILE *log;     /* a progress line per tensor as it is written
                      ("[  3/30] blk.0.attn_q.weight  Q4_K"), NULL = quiet */
} synth_options;

/* Writes the model to path. On failure returns false with a one-line
 * reason in err and leaves no partial file. */
bool synth_write(const synth_options *options, const char *path, char *err, size_t err_size);

/* The vocabulary alone (for tests): token texts and types as written.
 * *tokens[i] are malloc'ed; free with synth_vocab_free. */
typedef struct {
    int64_t n_tokens;
    char **tokens;
    int32_t *types;
    int64_t n_merges;
    char **merges;
} synth_vocab;

bool synth_vocab_build(int64_t vocab_size, synth_vocab *out);
void synth_vocab_free(synth_vocab *vocab);

#endif
