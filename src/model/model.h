/* model.h: a Llama-family model bound to the tensors of a GGUF file.
 *
 * model_load() reads the hyperparameters from the llama.* keys, binds every
 * expected tensor by name, checks its exact shape and type, and rejects
 * anything it would not run correctly (unknown architecture, tensors it
 * does not know such as biases, MoE, inconsistent head counts). After a
 * successful load nothing in the forward can fail for a reason the file
 * controls. Weights stay in the mapping in their file format; only the
 * small 1-D vectors (norm weights, rope_freqs) are converted to float.
 *
 * Shapes follow GGUF: a matrix has ne[0] = input dimension (row length,
 * contiguous) and ne[1] = output dimension (number of rows). */
#ifndef GRETA_MODEL_H
#define GRETA_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"

typedef enum {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR = 1, /* positions divided by the factor */
    ROPE_SCALING_LLAMA3 = 2, /* per-frequency factors from rope_freqs.weight */
} rope_scaling_type;

typedef struct {
    int32_t n_vocab;       /* token_embd ne[1] */
    int32_t n_ctx_train;   /* llama.context_length */
    int32_t n_embd;        /* llama.embedding_length */
    int32_t n_ff;          /* llama.feed_forward_length */
    int32_t n_layer;       /* llama.block_count */
    int32_t n_head;        /* llama.attention.head_count */
    int32_t n_head_kv;     /* llama.attention.head_count_kv (default n_head) */
    int32_t head_dim;      /* n_embd / n_head */
    int32_t kv_dim;        /* n_head_kv * head_dim */
    int32_t rope_dim;      /* llama.rope.dimension_count (default head_dim) */
    double rope_freq_base; /* llama.rope.freq_base (default 10000) */
    rope_scaling_type rope_scaling;
    double rope_scale_factor; /* linear: positions / factor; 1 otherwise */
    double rms_eps;        /* llama.attention.layer_norm_rms_epsilon */
} model_hparams;

/* A weight matrix in its file format: n_out rows of n_in values. */
typedef struct {
    const char *name;     /* tensor name (owned by the gguf file) */
    uint32_t type;        /* quant.h type id */
    int64_t n_in;         /* ne[0] */
    int64_t n_out;        /* ne[1] */
    size_t row_bytes;     /* bytes of one row */
    const uint8_t *data;  /* n_out * row_bytes bytes in the mapping */
} model_weight;

typedef struct {
    const float *attn_norm; /* [n_embd] */
    model_weight wq;        /* n_embd -> n_embd */
    model_weight wk;        /* n_embd -> kv_dim */
    model_weight wv;        /* n_embd -> kv_dim */
    model_weight wo;        /* n_embd -> n_embd */
    const float *ffn_norm;  /* [n_embd] */
    model_weight w_gate;    /* n_embd -> n_ff */
    model_weight w_up;      /* n_embd -> n_ff */
    model_weight w_down;    /* n_ff -> n_embd */
} model_layer;

typedef struct {
    gguf_file *file;          /* owned */
    char *architecture;       /* "llama" */
    char *name;               /* general.name or "" */
    model_hparams hp;
    model_weight token_embd;  /* n_embd -> n_vocab (row t = embedding of token t) */
    const float *output_norm; /* [n_embd] */
    model_weight output;      /* n_embd -> n_vocab; == token_embd when tied */
    bool tied_embeddings;
    const float *rope_freqs;  /* [rope_dim / 2] llama3 factors, NULL if none */
    model_layer *layers;      /* [n_layer] */
    float *vectors;           /* owned storage behind the float pointers above */
    uint64_t n_params;
    uint64_t weight_bytes;
    uint32_t main_type;       /* most common matrix type */
} model;

/* Binds a model to an open GGUF file into *out and takes ownership of the
 * file (also on failure, where it is closed). On failure *out = NULL, one
 * line in err naming the problem, e.g. "missing tensor
 * 'blk.0.attn_k.weight'", and the status: GRETA_ERR_FORMAT (missing,
 * misshaped or unexpected tensors, bad keys), GRETA_ERR_UNSUPPORTED (an
 * architecture, tensor type, rope scaling or MoE greta does not run),
 * GRETA_ERR_NO_MEMORY. */
greta_status model_load(gguf_file *file, model **out, char *err, size_t err_size);
void model_free(model *m);

/* Reads only the hyperparameters (used by model_load and by tools such as
 * `greta inspect`). On failure a status as model_load's and a reason in err. */
greta_status model_read_hparams(const gguf_file *file, model_hparams *hp, char *err, size_t err_size);

/* Name of a scaling type: "none", "linear", "llama3". */
const char *rope_scaling_name(rope_scaling_type type);

/* Bytes read from weights for one decoded token: every matrix once, one
 * row of token_embd (all of it when tied, being the output matrix too). */
uint64_t model_decode_bytes_per_token(const model *m);

#endif
