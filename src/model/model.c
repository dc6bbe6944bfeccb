/* model.c: Llama-family hyperparameters and tensor binding (see model.h). */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "format/quant.h"

const char *rope_scaling_name(rope_scaling_type type) {
    switch (type) {
    case ROPE_SCALING_NONE: return "none";
    case ROPE_SCALING_LINEAR: return "linear";
    case ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "unknown";
}

/* Sane limits: anything beyond is a corrupt or hostile file, not a model. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_CTX (1 << 24)

/* Reads a required positive integer key "llama.<suffix>". */
/* The GGUF type of key's value ("uint32", "string", ...), for errors. */
static const char *value_type(const gguf_file *file, const char *key) {
    int64_t kv = gguf_find_key(file, key);
    return kv < 0 ? "missing key" : gguf_type_name(gguf_kv_type(file, (uint64_t)kv));
}

static bool get_pos_int(const gguf_file *file, const char *key, bool required, int64_t dflt,
                        int64_t max, int32_t *out, char *err, size_t err_size) {
    int64_t v = dflt;
    if (gguf_find_key(file, key) < 0) {
        if (required) {
            format_error(err, err_size, "missing key %s", key);
            return false;
        }
    } else if (!gguf_get_int(file, key, &v)) {
        uint64_t u;
        if (gguf_get_uint(file, key, &u)) /* an integer too large for int64 */
            format_error(err, err_size, "key %s = %llu is out of range [1, %lld]", key, (unsigned long long)u,
                         (long long)max);
        else
            format_error(err, err_size, "key %s is a %s, not an integer", key, value_type(file, key));
        return false;
    }
    if (v <= 0 || v > max) {
        format_error(err, err_size, "key %s = %lld is out of range [1, %lld]", key, (long long)v, (long long)max);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

static bool get_opt_float(const gguf_file *file, const char *key, double dflt, double *out,
                          char *err, size_t err_size) {
    *out = dflt;
    if (gguf_find_key(file, key) < 0) return true;
    if (!gguf_get_float(file, key, out)) {
        format_error(err, err_size, "key %s is a %s, not a number", key, value_type(file, key));
        return false;
    }
    if (!isfinite(*out)) {
        format_error(err, err_size, "key %s is not finite", key);
        return false;
    }
    return true;
}

static greta_status check_architecture(const gguf_file *file, char *err, size_t err_size) {
    gguf_str arch;
    if (gguf_find_key(file, "general.architecture") < 0) {
        format_error(err, err_size, "missing key general.architecture");
        return GRETA_ERR_FORMAT;
    }
    if (!gguf_get_str(file, "general.architecture", &arch)) {
        format_error(err, err_size, "key general.architecture is a %s, not a string",
                     value_type(file, "general.architecture"));
        return GRETA_ERR_FORMAT;
    }
    if (!gguf_str_eq(arch, "llama")) {
        char shown[80];
        format_error(err, err_size, "unsupported architecture '%s' (greta runs 'llama')",
                     escape_text(arch.ptr, arch.len, shown, sizeof shown));
        return GRETA_ERR_UNSUPPORTED;
    }
    return GRETA_OK;
}

greta_status model_read_hparams(const gguf_file *file, model_hparams *hp, char *err, size_t err_size) {
    memset(hp, 0, sizeof *hp);
    greta_status st = check_architecture(file, err, err_size);
    if (st != GRETA_OK) return st;
    int32_t experts = 0;
    if (gguf_find_key(file, "llama.expert_count") >= 0) {
        int64_t e = 0;
        if (!gguf_get_int(file, "llama.expert_count", &e)) {
            format_error(err, err_size, "key llama.expert_count is a %s, not an integer",
                         value_type(file, "llama.expert_count"));
            return GRETA_ERR_FORMAT;
        }
        if (e > 0) experts = e > INT32_MAX ? INT32_MAX : (int32_t)e;
    }
    if (experts > 0) {
        format_error(err, err_size, "unsupported model: mixture of experts (llama.expert_count = %d)", experts);
        return GRETA_ERR_UNSUPPORTED;
    }
    int64_t vocab_size;
    if (gguf_find_key(file, "llama.vocab_size") >= 0 && !gguf_get_int(file, "llama.vocab_size", &vocab_size)) {
        format_error(err, err_size, "key llama.vocab_size is a %s, not an integer", value_type(file, "llama.vocab_size"));
        return GRETA_ERR_FORMAT;
    }
    if (!get_pos_int(file, "llama.embedding_length", true, 0, MAX_DIM, &hp->n_embd, err, err_size) ||
        !get_pos_int(file, "llama.feed_forward_length", true, 0, MAX_DIM, &hp->n_ff, err, err_size) ||
        !get_pos_int(file, "llama.block_count", true, 0, MAX_LAYERS, &hp->n_layer, err, err_size) ||
        !get_pos_int(file, "llama.attention.head_count", true, 0, MAX_DIM, &hp->n_head, err, err_size) ||
        !get_pos_int(file, "llama.attention.head_count_kv", false, hp->n_head, MAX_DIM, &hp->n_head_kv,
                     err, err_size) ||
        !get_pos_int(file, "llama.context_length", true, 0, MAX_CTX, &hp->n_ctx_train, err, err_size))
        return GRETA_ERR_FORMAT;
    if (hp->n_embd % hp->n_head != 0) {
        format_error(err, err_size, "embedding length %d is not a multiple of head count %d", hp->n_embd, hp->n_head);
        return GRETA_ERR_FORMAT;
    }
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->n_head % hp->n_head_kv != 0) {
        format_error(err, err_size, "head count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
        return GRETA_ERR_FORMAT;
    }
    hp->kv_dim = hp->n_head_kv * hp->head_dim;
    if (!get_pos_int(file, "llama.rope.dimension_count", false, hp->head_dim, MAX_DIM, &hp->rope_dim, err,
                     err_size))
        return GRETA_ERR_FORMAT;
    if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2 != 0) {
        format_error(err, err_size, "rope dimension %d must be even and at most the head dimension %d", hp->rope_dim,
                hp->head_dim);
        return GRETA_ERR_FORMAT;
    }
    if (!get_opt_float(file, "llama.rope.freq_base", 10000.0, &hp->rope_freq_base, err, err_size)) return GRETA_ERR_FORMAT;
    if (hp->rope_freq_base <= 0) {
        format_error(err, err_size, "llama.rope.freq_base = %g must be positive", hp->rope_freq_base);
        return GRETA_ERR_FORMAT;
    }
    if (!get_opt_float(file, "llama.attention.layer_norm_rms_epsilon", 1e-5, &hp->rms_eps, err, err_size))
        return GRETA_ERR_FORMAT;
    if (hp->rms_eps < 0) {
        format_error(err, err_size, "llama.attention.layer_norm_rms_epsilon = %g is negative", hp->rms_eps);
        return GRETA_ERR_FORMAT;
    }
    /* RoPE scaling: llama.rope.scaling.type ("none", "linear"; llama3 is
     * expressed by the rope_freqs tensor, bound by model_load) with
     * llama.rope.scaling.factor, or the older llama.rope.scale_linear. */
    hp->rope_scaling = ROPE_SCALING_NONE;
    hp->rope_scale_factor = 1.0;
    gguf_str type;
    bool has_type = gguf_find_key(file, "llama.rope.scaling.type") >= 0;
    if (has_type && !gguf_get_str(file, "llama.rope.scaling.type", &type)) {
        format_error(err, err_size, "key llama.rope.scaling.type is a %s, not a string",
                     value_type(file, "llama.rope.scaling.type"));
        return GRETA_ERR_FORMAT;
    }
    double factor = 1.0;
    if (has_type && gguf_str_eq(type, "linear")) {
        if (!get_opt_float(file, "llama.rope.scaling.factor", 1.0, &factor, err, err_size)) return GRETA_ERR_FORMAT;
    } else if (has_type && !gguf_str_eq(type, "none")) {
        char shown[48];
        format_error(err, err_size, "unsupported rope scaling type '%s' (greta supports none, linear, llama3)",
                     escape_text(type.ptr, type.len, shown, sizeof shown));
        return GRETA_ERR_UNSUPPORTED;
    } else if (!has_type) {
        if (!get_opt_float(file, "llama.rope.scale_linear", 1.0, &factor, err, err_size)) return GRETA_ERR_FORMAT;
    }
    if (factor <= 0) {
        format_error(err, err_size, "rope scaling factor %g must be positive", factor);
        return GRETA_ERR_FORMAT;
    }
    if (factor != 1.0) {
        hp->rope_scaling = ROPE_SCALING_LINEAR;
        hp->rope_scale_factor = factor;
    }
    return GRETA_OK;
}

/* ---- tensor binding ---- */

typedef struct {
    model *m;
    char *err;
    size_t err_size;
    greta_status status; /* of a failure: GRETA_ERR_FORMAT unless set otherwise */
    uint8_t *bound; /* [tensor count]: 1 once bound */
} binder;

static const gguf_tensor *find(binder *b, const char *name, bool required) {
    const gguf_tensor *t = gguf_find_tensor(b->m->file, name);
    if (!t) {
        if (required) format_error(b->err, b->err_size, "missing tensor '%s'", name);
        return NULL;
    }
    uint64_t n = gguf_tensor_count(b->m->file);
    for (uint64_t i = 0; i < n; i++) {
        if (gguf_get_tensor(b->m->file, i) == t) b->bound[i] = 1;
    }
    return t;
}

static void shape_text(const gguf_tensor *t, char *buf, size_t size) {
    int off = snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->n_dims && off < (int)size; d++)
        off += snprintf(buf + off, size - off, d ? ", %lld" : "%lld", (long long)t->ne[d]);
    if (off < (int)size) snprintf(buf + off, size - off, "]");
}

static bool check_type(binder *b, const gguf_tensor *t) {
    if (!quant_type_supported(t->type)) {
        format_error(b->err, b->err_size, "tensor '%s' has unsupported type %s", t->name, quant_type_name(t->type));
        b->status = GRETA_ERR_UNSUPPORTED;
        return false;
    }
    return true;
}

static bool bind_matrix(binder *b, const char *name, int64_t n_in, int64_t n_out, model_weight *w) {
    const gguf_tensor *t = find(b, name, true);
    if (!t) return false;
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out) {
        char have[96];
        shape_text(t, have, sizeof have);
        format_error(b->err, b->err_size, "tensor '%s' has shape %s, expected [%lld, %lld]", name, have,
                (long long)n_in, (long long)n_out);
        return false;
    }
    if (!check_type(b, t)) return false;
    size_t row = quant_row_bytes(t->type, n_in);
    if (row == 0) {
        format_error(b->err, b->err_size, "tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                name, (long long)n_in, quant_type_name(t->type), (long long)quant_block_size(t->type));
        return false;
    }
    if ((uint64_t)row * (uint64_t)n_out != t->nbytes) {
        format_error(b->err, b->err_size, "tensor '%s' has %llu bytes, expected %llu", name,
                (unsigned long long)t->nbytes, (unsigned long long)row * (unsigned long long)n_out);
        return false;
    }
    w->name = t->name;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = row;
    w->data = t->data;
    b->m->n_params += (uint64_t)n_in * (uint64_t)n_out;
    b->m->weight_bytes += t->nbytes;
    return true;
}

/* Binds a 1-D tensor of n values and converts it into dst (float). */
static bool bind_vector(binder *b, const char *name, bool required, int64_t n, float *dst, bool *found) {
    const gguf_tensor *t = find(b, name, required);
    if (found) *found = t != NULL;
    if (!t) return !required;
    if (t->n_dims != 1 || t->ne[0] != n) {
        char have[96];
        shape_text(t, have, sizeof have);
        format_error(b->err, b->err_size, "tensor '%s' has shape %s, expected [%lld]", name, have, (long long)n);
        return false;
    }
    if (!check_type(b, t)) return false;
    size_t bytes = quant_row_bytes(t->type, n);
    if (bytes == 0 || bytes != t->nbytes) {
        format_error(b->err, b->err_size, "tensor '%s': %llu bytes do not hold %lld %s values", name,
                (unsigned long long)t->nbytes, (long long)n, quant_type_name(t->type));
        return false;
    }
    quant_dequantize(t->type, t->data, dst, n);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(dst[i])) {
            format_error(b->err, b->err_size, "tensor '%s' holds a non-finite value at %lld", name, (long long)i);
            return false;
        }
    }
    b->m->n_params += (uint64_t)n;
    b->m->weight_bytes += t->nbytes;
    return true;
}

static bool bind_layer(binder *b, int il, float *attn_norm, float *ffn_norm) {
    const model_hparams *hp = &b->m->hp;
    model_layer *L = &b->m->layers[il];
    char name[96];
#define TNAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    if (!bind_vector(b, TNAME("attn_norm.weight"), true, hp->n_embd, attn_norm, NULL)) return false;
    if (!bind_matrix(b, TNAME("attn_q.weight"), hp->n_embd, hp->n_embd, &L->wq)) return false;
    if (!bind_matrix(b, TNAME("attn_k.weight"), hp->n_embd, hp->kv_dim, &L->wk)) return false;
    if (!bind_matrix(b, TNAME("attn_v.weight"), hp->n_embd, hp->kv_dim, &L->wv)) return false;
    if (!bind_matrix(b, TNAME("attn_output.weight"), hp->n_embd, hp->n_embd, &L->wo)) return false;
    if (!bind_vector(b, TNAME("ffn_norm.weight"), true, hp->n_embd, ffn_norm, NULL)) return false;
    if (!bind_matrix(b, TNAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, &L->w_gate)) return false;
    if (!bind_matrix(b, TNAME("ffn_up.weight"), hp->n_embd, hp->n_ff, &L->w_up)) return false;
    if (!bind_matrix(b, TNAME("ffn_down.weight"), hp->n_ff, hp->n_embd, &L->w_down)) return false;
#undef TNAME
    L->attn_norm = attn_norm;
    L->ffn_norm = ffn_norm;
    return true;
}

static uint32_t most_common_type(const model *m) {
    uint64_t bytes_by_type[QT_COUNT_MAX] = {0};
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *L = &m->layers[il];
        const model_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            bytes_by_type[ws[i]->type] += ws[i]->row_bytes * (uint64_t)ws[i]->n_out;
    }
    uint32_t best = m->token_embd.type;
    for (uint32_t t = 0; t < QT_COUNT_MAX; t++)
        if (bytes_by_type[t] > bytes_by_type[best]) best = t;
    return best;
}

static bool bind_all(binder *b) {
    model *m = b->m;
    model_hparams *hp = &m->hp;
    /* token_embd fixes the vocabulary size. */
    const gguf_tensor *emb = gguf_find_tensor(m->file, "token_embd.weight");
    if (!emb) {
        format_error(b->err, b->err_size, "missing tensor 'token_embd.weight'");
        return false;
    }
    if (emb->n_dims != 2 || emb->ne[1] <= 0 || emb->ne[1] > (1 << 24)) {
        char have[96];
        shape_text(emb, have, sizeof have);
        format_error(b->err, b->err_size, "tensor 'token_embd.weight' has shape %s, expected [%d, n_vocab]", have,
                hp->n_embd);
        return false;
    }
    hp->n_vocab = (int32_t)emb->ne[1];
    if (gguf_find_key(m->file, "llama.vocab_size") >= 0) {
        int64_t v = 0;
        if (!gguf_get_int(m->file, "llama.vocab_size", &v)) {
            format_error(b->err, b->err_size, "key llama.vocab_size is a %s, not an integer",
                         value_type(m->file, "llama.vocab_size"));
            return false;
        }
        if (v != hp->n_vocab) {
            format_error(b->err, b->err_size, "llama.vocab_size = %lld disagrees with token_embd.weight rows %d",
                    (long long)v, hp->n_vocab);
            return false;
        }
    }
    if (!bind_matrix(b, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->token_embd)) return false;

    /* Storage for every float vector: 2 norms per layer, output_norm, rope_freqs. */
    size_t n_vec = (size_t)hp->n_embd * (2 * (size_t)hp->n_layer + 1) + (size_t)hp->rope_dim / 2;
    m->vectors = calloc(n_vec, sizeof(float));
    m->layers = calloc((size_t)hp->n_layer, sizeof(model_layer));
    if (!m->vectors || !m->layers) {
        format_error(b->err, b->err_size, "out of memory binding tensors");
        b->status = GRETA_ERR_NO_MEMORY;
        return false;
    }
    float *vec = m->vectors;
    for (int il = 0; il < hp->n_layer; il++) {
        if (!bind_layer(b, il, vec, vec + hp->n_embd)) return false;
        vec += 2 * (size_t)hp->n_embd;
    }
    if (!bind_vector(b, "output_norm.weight", true, hp->n_embd, vec, NULL)) return false;
    m->output_norm = vec;
    vec += hp->n_embd;
    if (gguf_find_tensor(m->file, "output.weight")) {
        if (!bind_matrix(b, "output.weight", hp->n_embd, hp->n_vocab, &m->output)) return false;
        m->tied_embeddings = false;
    } else {
        m->output = m->token_embd;
        m->tied_embeddings = true;
    }
    bool has_freqs = false;
    if (!bind_vector(b, "rope_freqs.weight", false, hp->rope_dim / 2, vec, &has_freqs)) return false;
    if (has_freqs) {
        for (int i = 0; i < hp->rope_dim / 2; i++) {
            if (!(vec[i] > 0)) {
                format_error(b->err, b->err_size, "tensor 'rope_freqs.weight' holds a non-positive factor at %d", i);
                return false;
            }
        }
        m->rope_freqs = vec;
        hp->rope_scaling = ROPE_SCALING_LLAMA3;
    }
    /* Anything not bound is a tensor greta would silently ignore (a bias,
     * an extra norm): refuse rather than compute something else. */
    uint64_t n = gguf_tensor_count(m->file);
    for (uint64_t i = 0; i < n; i++) {
        if (!b->bound[i]) {
            format_error(b->err, b->err_size, "unexpected tensor '%s' (not part of the llama architecture greta runs)",
                    gguf_get_tensor(m->file, i)->name);
            return false;
        }
    }
    m->main_type = most_common_type(m);
    return true;
}

greta_status model_load(gguf_file *file, model **out, char *err, size_t err_size) {
    *out = NULL;
    if (!file) {
        format_error(err, err_size, "no file");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(file);
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    m->file = file;
    greta_status st = model_read_hparams(file, &m->hp, err, err_size);
    if (st != GRETA_OK) {
        model_free(m);
        return st;
    }
    gguf_str s;
    m->architecture = strdup("llama");
    m->name = gguf_get_str(file, "general.name", &s) ? gguf_str_dup(s) : strdup("");
    binder b = {m, err, err_size, GRETA_ERR_FORMAT, calloc(gguf_tensor_count(file) + 1, 1)};
    if (!m->architecture || !m->name || !b.bound) {
        format_error(err, err_size, "out of memory");
        st = GRETA_ERR_NO_MEMORY;
    } else if (!bind_all(&b)) {
        st = b.status;
    }
    free(b.bound);
    if (st != GRETA_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return GRETA_OK;
}

void model_free(model *m) {
    if (!m) return;
    gguf_close(m->file);
    free(m->architecture);
    free(m->name);
    free(m->layers);
    free(m->vectors);
    free(m);
}

uint64_t model_decode_bytes_per_token(const model *m) {
    uint64_t bytes = m->weight_bytes;
    if (!m->tied_embeddings) {
        /* token_embd counted in full by weight_bytes; only one row is read. */
        bytes -= m->token_embd.row_bytes * (uint64_t)m->token_embd.n_out;
        bytes += m->token_embd.row_bytes;
    }
    return bytes;
}
