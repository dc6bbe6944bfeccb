/* quantize_model.h: whole-model type conversion (`greta quantize`) and the
 * per-tensor type rule it shares with `greta synth`.
 *
 * A target is either a plain type (every quantizable weight gets that type,
 * like llama.cpp's `llama-quantize --pure`) or one of llama.cpp's mixes
 * Q2_K / Q3_K_M / Q4_K_M / Q5_K_M (output, attn_v, attn_output, ffn_down get
 * other types, as llama_tensor_get_type does for the llama architecture).
 * Rows whose length the chosen block size does not divide fall back as
 * llama.cpp does (Q2_K, Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1,
 * Q6_K -> Q8_0, else F16). docs/quantize.md
 * states the rule and the source of every decision. */
#ifndef GRETA_QUANTIZE_MODEL_H
#define GRETA_QUANTIZE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *name;   /* "Q4_K_M" */
    uint32_t base_type; /* ggml type of most weights (quant.h ids) */
    bool mix;           /* llama.cpp's per-tensor rule (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M) */
    uint32_t file_type; /* general.file_type: llama.cpp's LLAMA_FTYPE value */
} quantize_target;

/* Finds a target by name, case-insensitively: F32 F16 BF16 Q8_0 Q4_0 Q4_1
 * Q3_K Q4_K Q5_K Q6_K (pure) and Q2_K Q3_K_M Q4_K_M Q5_K_M (mixes). Returns
 * false for anything else. */
bool quantize_target_find(const char *name, quantize_target *out);
/* "F32, F16, ..., Q5_K_M" for usage and error messages. */
const char *quantize_target_list(void);

/* What the mix rule needs to know about the whole model. */
typedef struct {
    int n_attn_v;  /* number of attn_v tensors (llama.cpp: n_attention_wv) */
    int n_layer;   /* <arch>.block_count (llama.cpp: n_ffn_down) */
    bool tied;     /* no output.weight: token_embd doubles as the output */
    bool is_70b;   /* llama arch, 80 layers, GQA (llama.cpp's LLM_TYPE_70B) */
    int n_gqa;     /* head_count / head_count_kv (llama.cpp's n_gqa()); 0 if unknown */
} quantize_model_info;

/* The layer number N of a "blk.N." name, -1 for others. */
int quantize_layer_of(const char *name);

/* True if llama.cpp would convert this tensor at all: 2 or more dims, name
 * ends in "weight" and is not a "_norm.weight" (everything else is copied
 * byte for byte). */
bool quantize_tensor_is_weight(const char *name, uint32_t n_dims);

/* The type a weight tensor gets. ordinal: the tensor's index among the
 * tensors of its kind (attn_v or ffn_down) in layer order; unused for
 * other kinds. row_len: ne[0]. Returns the type after the block-size
 * fallback, or -1 if row_len fits no allowed type (llama.cpp aborts too:
 * Q4_0 / Q4_1 / Q8_0 targets with row_len % 32 != 0 have no fallback). */
int quantize_tensor_type(const quantize_target *target, const quantize_model_info *info,
                         const char *name, int ordinal, int64_t row_len);

/* llama.cpp's use_more_bits(i, n): first n/8, last n/8, every third between. */
bool quantize_use_more_bits(int i, int n);

/* True for the types this module writes: quant_type_quantizable() plus
 * Q5_0 and Q5_1 (needed as fallbacks; quantized here, see .c). */
bool quantize_type_writable(uint32_t type);

/* Quantizes n floats of one row into dst (quant_row_bytes(type, n) bytes).
 * Returns the bytes written, 0 if not writable or n does not fit. */
size_t quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Runs fn(ctx, first, end) over [0, n_items) split into n_threads
 * contiguous ranges (n_threads <= 1: in the calling thread) and waits for
 * all. Each item's result must depend only on the item, never on the split.
 * A range whose thread cannot be started runs in the calling thread. */
typedef void (*quantize_range_fn)(void *ctx, int64_t first, int64_t end);
void quantize_parallel(int n_threads, int64_t n_items, quantize_range_fn fn, void *ctx);

/* n_threads <= 0: the number of online CPUs. */
int quantize_thread_count(int n_threads);

typedef struct {
    int n_threads; /* 0 = all online CPUs */
    FILE *log;     /* a progress line per tensor as it is written
                      ("[  3/272] name  F32 -> Q4_K"), NULL = quiet */
} quantize_options;

/* Reads in_path, converts every weight to the target's types and writes
 * out_path, streaming tensor by tensor (bounded memory). Metadata is copied
 * with general.file_type and general.quantization_version updated. A tensor
 * already in its chosen type is copied unchanged. On failure returns false
 * with a one-line reason in err (and removes a partial output). */
bool quantize_model_file(const char *in_path, const char *out_path, const quantize_target *target,
                         const quantize_options *options, char *err, size_t err_size);

#endif
