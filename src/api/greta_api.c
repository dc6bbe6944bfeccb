/* greta_api.c: include/greta.h on top of model, tokenizer, engine and
 * sampler. Argument checking and error strings live here; the modules
 * below report through their err buffers. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_registry.h"
#include "base/errors.h"
#include "api/api_internal.h"
#include "format/quant.h"

const char *greta_status_string(greta_status status) {
    switch (status) {
    case GRETA_OK: return "ok";
    case GRETA_ERR_INVALID_ARGUMENT: return "invalid argument";
    case GRETA_ERR_IO: return "i/o error";
    case GRETA_ERR_FORMAT: return "bad model file";
    case GRETA_ERR_UNSUPPORTED: return "unsupported";
    case GRETA_ERR_NO_MEMORY: return "out of memory";
    case GRETA_ERR_CONTEXT_FULL: return "context full";
    case GRETA_ERR_TOKENIZER: return "tokenizer error";
    case GRETA_ERR_TEMPLATE: return "chat template error";
    case GRETA_ERR_CANCELLED: return "cancelled";
    case GRETA_ERR_STATE: return "invalid state";
    case GRETA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *greta_version(void) {
    return GRETA_VERSION;
}

void greta_free(void *ptr) {
    free(ptr);
}

greta_status greta_session_fail(greta_session *s, greta_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, args);
    va_end(args);
    return status;
}

/* ------------------------------------------------------------------ */
/* Model                                                                */
/* ------------------------------------------------------------------ */

greta_model_params greta_model_default_params(void) {
    greta_model_params p;
    memset(&p, 0, sizeof p);
    p.prefault = true;
    return p;
}

static bool report(const greta_model_params *p, float progress) {
    return !p->progress || p->progress(progress, p->progress_user_data);
}

/* Reads one byte of every page of the weights so the first forward does
 * not wait for the disk; reports progress every 1/64 of the bytes. */
static bool prefault_weights(const model *m, const greta_model_params *p) {
    const gguf_file *f = m->file;
    uint64_t total = 0, done = 0, next_report = 0;
    uint64_t n = gguf_tensor_count(f);
    for (uint64_t i = 0; i < n; i++) total += gguf_get_tensor(f, i)->nbytes;
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        const uint8_t *data = t->data;
        for (uint64_t off = 0; off < t->nbytes; off += 4096) sink ^= data[off];
        done += t->nbytes;
        if (done >= next_report) {
            if (!report(p, 0.05f + 0.95f * (float)((double)done / (double)(total ? total : 1)))) return false;
            next_report = done + total / 64;
        }
    }
    (void)sink;
    return true;
}

static void fill_file_type(greta_model *gm) {
    snprintf(gm->file_type, sizeof gm->file_type, "%s", gm->m ? quant_type_name(gm->m->main_type) : "none");
}

static char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return strdup(slash ? slash + 1 : path);
}

greta_status greta_model_load(const char *path, const greta_model_params *params, greta_model **out, char *err,
                              size_t err_size) {
    if (out) *out = NULL;
    if (!path || !out) {
        format_error(err, err_size, "greta_model_load: path and out must not be NULL");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    greta_model_params defaults = greta_model_default_params();
    const greta_model_params *p = params ? params : &defaults;
    if (!report(p, 0.0f)) {
        format_error(err, err_size, "load cancelled");
        return GRETA_ERR_CANCELLED;
    }
    char why[400] = "";
    gguf_file *file = NULL;
    greta_status opened = gguf_open(path, &file, why, sizeof why);
    if (opened != GRETA_OK) {
        format_error(err, err_size, "%s", why);
        return opened;
    }
    greta_model *gm = calloc(1, sizeof *gm);
    if (!gm) {
        gguf_close(file);
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    gm->vocab_only = p->vocab_only;
    greta_status status = GRETA_OK;
    gguf_str s;
    if (gguf_find_key(file, "tokenizer.chat_template") >= 0) {
        if (!gguf_get_str(file, "tokenizer.chat_template", &s)) { /* it was ignored: "the model has no template" */
            status = GRETA_ERR_FORMAT;
            format_error(err, err_size, "key tokenizer.chat_template is a %s, not a string",
                         gguf_type_name(gguf_kv_type(file, (uint64_t)gguf_find_key(file, "tokenizer.chat_template"))));
            goto fail_file;
        }
        gm->chat_template = gguf_str_dup(s);
    }
    gm->name = gguf_get_str(file, "general.name", &s) && s.len > 0 ? gguf_str_dup(s) : base_name(path);
    if (!gm->name) {
        status = GRETA_ERR_NO_MEMORY;
        format_error(err, err_size, "out of memory");
        goto fail_file;
    }
    if (!p->vocab_only) { /* hyperparameters first: a bad file is refused before its vocabulary is built */
        model_hparams hp;
        status = model_read_hparams(file, &hp, why, sizeof why);
        if (status != GRETA_OK) {
            format_error(err, err_size, "%s", why);
            goto fail_file;
        }
    }
    /* tokenizer.ggml.model = "none": no vocabulary (llama.cpp's LLAMA_VOCAB_TYPE_NONE,
     * common in benchmark files); the model runs on token ids alone. */
    gm->vocab_none = gguf_get_str(file, "tokenizer.ggml.model", &s) && gguf_str_eq(s, "none");
    if (gm->vocab_none && p->vocab_only) {
        status = GRETA_ERR_TOKENIZER;
        format_error(err, err_size, "the model has no vocabulary (tokenizer.ggml.model is 'none')");
        goto fail_file;
    }
    if (!gm->vocab_none && gguf_find_key(file, "tokenizer.ggml.model") >= 0) {
        gm->tok = tokenizer_load(file, why, sizeof why);
        if (!gm->tok) {
            status = GRETA_ERR_TOKENIZER;
            format_error(err, err_size, "tokenizer: %s", why);
            goto fail_file;
        }
    } else if (p->vocab_only) {
        status = GRETA_ERR_TOKENIZER;
        format_error(err, err_size, "the model has no vocabulary (missing key tokenizer.ggml.model)");
        goto fail_file;
    }
    if (p->vocab_only) {
        gguf_close(file);
    } else {
        status = model_load(file, &gm->m, why, sizeof why); /* owns (or closes) file */
        if (status != GRETA_OK) {
            format_error(err, err_size, "%s", why);
            goto fail;
        }
        gm->em = engine_model_new(gm->m);
        if (!gm->em) {
            status = GRETA_ERR_NO_MEMORY;
            format_error(err, err_size, "out of memory");
            goto fail;
        }
        if (gm->tok && tokenizer_vocab_size(gm->tok) != gm->m->hp.n_vocab) {
            /* fewer tokens than rows: the model could sample an id with no text (it failed mid-generation) */
            status = GRETA_ERR_FORMAT;
            format_error(err, err_size, "the tokenizer has %d tokens but token_embd.weight has %d rows",
                      tokenizer_vocab_size(gm->tok), gm->m->hp.n_vocab);
            goto fail;
        }
        if (!report(p, 0.05f) || (p->prefault && !prefault_weights(gm->m, p))) {
            status = GRETA_ERR_CANCELLED;
            format_error(err, err_size, "load cancelled");
            goto fail;
        }
    }
    fill_file_type(gm);
    if (!report(p, 1.0f)) {
        status = GRETA_ERR_CANCELLED;
        format_error(err, err_size, "load cancelled");
        goto fail;
    }
    *out = gm;
    return GRETA_OK;
fail_file:
    gguf_close(file);
fail:
    greta_model_free(gm);
    return status;
}

void greta_model_free(greta_model *model) {
    if (!model) return;
    engine_model_free(model->em); /* every session of the model is gone */
    model_free(model->m);
    tokenizer_free(model->tok);
    free(model->chat_template);
    free(model->name);
    free(model);
}

void greta_model_get_info(const greta_model *gm, greta_model_info *info) {
    memset(info, 0, sizeof *info);
    info->architecture = info->name = info->file_type = info->rope_scaling = "";
    info->bos_token = info->eos_token = -1;
    if (!gm) return;
    info->architecture = "llama";
    info->name = gm->name;
    info->file_type = gm->file_type;
    info->has_chat_template = gm->chat_template != NULL;
    info->vocab_only = gm->vocab_only;
    info->has_vocab = gm->tok != NULL;
    if (gm->tok) {
        info->bos_token = tokenizer_bos(gm->tok);
        info->eos_token = tokenizer_eos(gm->tok);
        info->vocab_size = tokenizer_vocab_size(gm->tok);
    }
    const model *m = gm->m;
    if (!m) return;
    const model_hparams *hp = &m->hp;
    info->vocab_size = hp->n_vocab;
    info->context_length = hp->n_ctx_train;
    info->n_embd = hp->n_embd;
    info->n_ff = hp->n_ff;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->rope_dim = hp->rope_dim;
    info->rope_freq_base = hp->rope_freq_base;
    info->rope_scaling = rope_scaling_name(hp->rope_scaling);
    info->rope_scaling_factor = hp->rope_scale_factor;
    info->rms_norm_eps = hp->rms_eps;
    info->tied_embeddings = m->tied_embeddings;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
    info->decode_bytes_per_token = model_decode_bytes_per_token(m);
}

const char *greta_model_chat_template(const greta_model *model) {
    return model ? model->chat_template : NULL;
}

bool greta_model_mapping(const greta_model *model, const void **start, size_t *len) {
    if (!model || !model->m || !model->m->file || !start || !len) return false;
    *start = gguf_map_base(model->m->file);
    *len = (size_t)gguf_file_size(model->m->file);
    return true;
}

/* ------------------------------------------------------------------ */
/* Vocabulary                                                           */
/* ------------------------------------------------------------------ */

static greta_status need_tokenizer(const greta_model *model, const char *call, char *err, size_t err_size) {
    if (!model) {
        format_error(err, err_size, "%s: model is NULL", call);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (!model->tok) {
        format_error(err, err_size, "%s",
                     model->vocab_none ? "the model has no vocabulary (tokenizer.ggml.model is 'none')"
                                       : "the model has no vocabulary (no tokenizer.* keys in the file)");
        return GRETA_ERR_TOKENIZER;
    }
    return GRETA_OK;
}

greta_status greta_tokenize(const greta_model *model, const char *text, size_t len, bool add_special,
                            bool parse_special, int32_t **ids, size_t *n_ids, char *err, size_t err_size) {
    greta_status st = need_tokenizer(model, "greta_tokenize", err, err_size);
    if (st != GRETA_OK) return st;
    if (!ids || !n_ids || (!text && len > 0)) {
        format_error(err, err_size, "greta_tokenize: NULL argument");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    *ids = NULL;
    *n_ids = 0;
    char why[300] = "";
    if (!tokenizer_encode(model->tok, text ? text : "", len, add_special, parse_special, ids, n_ids, why,
                          sizeof why)) {
        format_error(err, err_size, "tokenize: %s", why);
        return GRETA_ERR_TOKENIZER;
    }
    return GRETA_OK;
}

greta_status greta_detokenize(const greta_model *model, const int32_t *ids, size_t n, bool render_special,
                              char **out, size_t *out_len, char *err, size_t err_size) {
    greta_status st = need_tokenizer(model, "greta_detokenize", err, err_size);
    if (st != GRETA_OK) return st;
    if (!out || !out_len || (!ids && n > 0)) {
        format_error(err, err_size, "greta_detokenize: NULL argument");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    *out_len = 0;
    char why[300] = "";
    if (!tokenizer_decode(model->tok, ids, n, render_special, out, out_len, why, sizeof why)) {
        format_error(err, err_size, "detokenize: %s", why);
        return GRETA_ERR_TOKENIZER;
    }
    return GRETA_OK;
}

int greta_token_to_piece(const greta_model *model, int32_t id, bool render_special, char *buf, size_t cap) {
    if (!model || !model->tok || (!buf && cap > 0)) return -1;
    return tokenizer_token_bytes(model->tok, id, render_special, buf, cap);
}

struct greta_detok {
    detok_stream *stream;
};

greta_detok *greta_detok_new(const greta_model *model, bool render_special) {
    if (!model || !model->tok) return NULL;
    greta_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->stream = detok_stream_new(model->tok, render_special);
    if (!d->stream) {
        free(d);
        return NULL;
    }
    return d;
}

void greta_detok_free(greta_detok *detok) {
    if (!detok) return;
    detok_stream_free(detok->stream);
    free(detok);
}

greta_status greta_detok_push(greta_detok *detok, int32_t id, const char **out, size_t *out_len) {
    if (!detok || !out || !out_len) return GRETA_ERR_INVALID_ARGUMENT;
    *out = "";
    *out_len = 0;
    return detok_stream_push(detok->stream, id, out, out_len) ? GRETA_OK : GRETA_ERR_INVALID_ARGUMENT;
}

greta_status greta_detok_flush(greta_detok *detok, const char **out, size_t *out_len) {
    if (!detok || !out || !out_len) return GRETA_ERR_INVALID_ARGUMENT;
    *out = "";
    *out_len = 0;
    return detok_stream_flush(detok->stream, out, out_len) ? GRETA_OK : GRETA_ERR_NO_MEMORY;
}

int32_t greta_token_bos(const greta_model *model) {
    return model && model->tok ? tokenizer_bos(model->tok) : -1;
}

int32_t greta_token_eos(const greta_model *model) {
    return model && model->tok ? tokenizer_eos(model->tok) : -1;
}

bool greta_token_is_eog(const greta_model *model, int32_t id) {
    return model && model->tok && tokenizer_is_end_of_generation(model->tok, id);
}

bool greta_model_adds_bos(const greta_model *model) {
    return model && model->tok && tokenizer_adds_bos(model->tok);
}

/* ------------------------------------------------------------------ */
/* Session                                                              */
/* ------------------------------------------------------------------ */

const char *greta_backend_name(greta_backend backend) {
    const backend_entry *entry = backend_registry_find(backend);
    return entry ? entry->name : "unknown";
}

greta_status greta_backend_from_name(const char *name, greta_backend *out) {
    const backend_entry *entry = backend_registry_find_name(name);
    if (!entry || !out) return GRETA_ERR_INVALID_ARGUMENT;
    *out = entry->id;
    return GRETA_OK;
}

int32_t greta_backend_count(void) {
    return backend_registry_count();
}

greta_status greta_backend_get_info(greta_backend backend, greta_backend_info *info) {
    if (!info) return GRETA_ERR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    info->name = info->precision = info->unavailable = "";
    const backend_entry *entry = backend_registry_find(backend);
    if (!entry) return GRETA_ERR_INVALID_ARGUMENT;
    info->id = entry->id;
    info->name = entry->name;
    info->precision = entry->precision;
    info->value_bytes = entry->value_bytes;
    info->available = entry->available;
    info->threaded = entry->threaded;
    info->unavailable = entry->unavailable;
    return GRETA_OK;
}

const char *greta_precision_name(greta_precision precision) {
    switch (precision) {
    case GRETA_PRECISION_DEFAULT: return "default";
    case GRETA_PRECISION_F32: return "f32";
    case GRETA_PRECISION_Q8: return "q8";
    }
    return "unknown";
}

greta_precision greta_backend_default_precision(greta_backend backend) {
    /* q8 on cpu: its error at every trace point against the float64 ref
     * backend and its greedy ids against transformers are within the bounds
     * tests/cli/precision.sh and tests/test_hf.c check (docs/engine.md, "The
     * default precision"); q8 on cuda: 8-bit activations in the decode
     * products of quantized weights, within the tolerances scripts/cuda/cuda-check
     * checks on the GPU (docs/cuda.md); ref computes in float64 whatever the
     * session says */
    return backend == GRETA_BACKEND_CPU || backend == GRETA_BACKEND_CUDA ? GRETA_PRECISION_Q8 : GRETA_PRECISION_F32;
}

greta_status greta_precision_from_name(const char *name, greta_precision *out) {
    if (!name || !out) return GRETA_ERR_INVALID_ARGUMENT;
    if (strcmp(name, "f32") == 0) *out = GRETA_PRECISION_F32;
    else if (strcmp(name, "q8") == 0) *out = GRETA_PRECISION_Q8;
    else return GRETA_ERR_INVALID_ARGUMENT;
    return GRETA_OK;
}

const char *greta_kv_type_name(greta_kv_type kv_type) {
    switch (kv_type) {
    case GRETA_KV_DEFAULT: return "default";
    case GRETA_KV_F32: return "f32";
    case GRETA_KV_F16: return "f16";
    case GRETA_KV_Q8_0: return "q8_0";
    }
    return "unknown";
}

greta_status greta_kv_type_from_name(const char *name, greta_kv_type *out) {
    if (!name || !out) return GRETA_ERR_INVALID_ARGUMENT;
    if (strcmp(name, "f32") == 0) *out = GRETA_KV_F32;
    else if (strcmp(name, "f16") == 0) *out = GRETA_KV_F16;
    else if (strcmp(name, "q8_0") == 0) *out = GRETA_KV_Q8_0;
    else return GRETA_ERR_INVALID_ARGUMENT;
    return GRETA_OK;
}

greta_session_params greta_session_default_params(void) {
    greta_session_params p;
    memset(&p, 0, sizeof p);
    p.backend = GRETA_BACKEND_CPU;
    p.seed = 0x67726574u;
    return p;
}

greta_status greta_session_new(greta_model *model, const greta_session_params *params, greta_session **out,
                               char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!model || !out) {
        format_error(err, err_size, "greta_session_new: model and out must not be NULL");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (!model->m) {
        format_error(err, err_size, "the model was loaded vocab_only: it has no weights to run");
        return GRETA_ERR_STATE;
    }
    greta_session_params defaults = greta_session_default_params();
    const greta_session_params *p = params ? params : &defaults;
    const model_hparams *hp = &model->m->hp;
    if (p->n_ctx < 0 || p->n_ctx > hp->n_ctx_train) {
        format_error(err, err_size, "context length %d is outside [1, %d] (the model's trained context length)", p->n_ctx,
                  hp->n_ctx_train);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (p->n_threads < 0 || p->n_threads > GRETA_MAX_THREADS) {
        format_error(err, err_size, "thread count %d is outside [1, %d]", p->n_threads, GRETA_MAX_THREADS);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    const backend_entry *backend = backend_registry_find(p->backend);
    if (!backend) {
        format_error(err, err_size, "unknown backend id %d", (int)p->backend);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (p->precision != GRETA_PRECISION_DEFAULT && p->precision != GRETA_PRECISION_F32 &&
        p->precision != GRETA_PRECISION_Q8) {
        format_error(err, err_size, "unknown precision id %d", (int)p->precision);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (p->precision == GRETA_PRECISION_Q8 && p->backend != GRETA_BACKEND_CPU && p->backend != GRETA_BACKEND_CUDA) {
        format_error(err, err_size, "precision q8 is only available on the cpu and cuda backends (not %s)",
                     greta_backend_name(p->backend));
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    greta_precision precision =
        p->precision == GRETA_PRECISION_DEFAULT ? greta_backend_default_precision(p->backend) : p->precision;
    if (p->kv_type != GRETA_KV_DEFAULT && p->kv_type != GRETA_KV_F32 && p->kv_type != GRETA_KV_F16 &&
        p->kv_type != GRETA_KV_Q8_0) {
        format_error(err, err_size, "unknown KV cache type id %d", (int)p->kv_type);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    int threads = p->n_threads;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (online > GRETA_MAX_THREADS ? GRETA_MAX_THREADS : (int)online) : 1;
    }
    if (!backend->threaded) threads = 1;
    engine_config cfg = {
        .n_ctx = p->n_ctx ? p->n_ctx : (hp->n_ctx_train < GRETA_DEFAULT_N_CTX ? hp->n_ctx_train : GRETA_DEFAULT_N_CTX),
        .n_threads = threads,
        .backend = p->backend,
        .q8 = precision == GRETA_PRECISION_Q8,
        .kv_type = p->kv_type,
        .deterministic = p->deterministic,
        .logits_all = p->logits_all,
    };
    greta_session *s = calloc(1, sizeof *s);
    if (!s) {
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    s->model = model;
    s->backend = p->backend;
    s->precision = precision;
    greta_status status = GRETA_OK;
    s->e = engine_new(model->em, &cfg, &status, err, err_size);
    if (!s->e) {
        free(s);
        return status;
    }
    s->sampler = greta_sampler_new(p->seed);
    if (!s->sampler) {
        greta_session_free(s);
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    *out = s;
    return GRETA_OK;
}

void greta_session_free(greta_session *session) {
    if (!session) return;
    greta_session_close_trace(session, NULL, 0);
    engine_free(session->e);
    greta_sampler_free(session->sampler);
    free(session);
}

const char *greta_session_error(const greta_session *session) {
    return session ? session->err : "no session";
}

greta_precision greta_session_precision(const greta_session *session) {
    return session ? session->precision : GRETA_PRECISION_F32;
}

greta_kv_type greta_session_kv_type(const greta_session *session) {
    return session ? session->e->config.kv_type : GRETA_KV_DEFAULT;
}

bool greta_session_deterministic(const greta_session *session) {
    return session && (session->e->config.deterministic || session->backend != GRETA_BACKEND_CUDA);
}

greta_status greta_session_backend_memory(const greta_session *session, greta_backend_memory *out) {
    if (!out) return GRETA_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    backend_memory bm;
    char err[256] = "";
    greta_status st = engine_backend_memory(session->e, &bm, err, sizeof err);
    if (st != GRETA_OK) return st;
    out->weights = bm.weights;
    out->kv = bm.kv;
    out->activations = bm.activations;
    out->device_used = bm.device_used;
    out->device_total = bm.device_total;
    return GRETA_OK;
}

greta_backend greta_session_backend(const greta_session *session) {
    return session ? session->backend : GRETA_BACKEND_CPU;
}

int32_t greta_session_n_ctx(const greta_session *session) {
    return session ? session->e->config.n_ctx : 0;
}

int32_t greta_session_n_threads(const greta_session *session) {
    return session ? session->e->config.n_threads : 0;
}

greta_status greta_eval(greta_session *session, const int32_t *ids, size_t n) {
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    if (!ids && n > 0) return greta_session_fail(session, GRETA_ERR_INVALID_ARGUMENT, "greta_eval: ids is NULL");
    return engine_eval(session->e, ids, n, session->err, sizeof session->err);
}

#define EVAL_SESSIONS_INLINE 64

greta_status greta_eval_sessions(greta_session *const *sessions, const int32_t *ids, size_t n) {
    if (!sessions || !ids || n == 0) return GRETA_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (!sessions[i]) return GRETA_ERR_INVALID_ARGUMENT;
    engine *inline_engines[EVAL_SESSIONS_INLINE];
    engine **engines = n <= EVAL_SESSIONS_INLINE ? inline_engines : malloc(n * sizeof *engines);
    char err[GRETA_ERR_MAX] = "";
    greta_status st;
    if (!engines) {
        st = GRETA_ERR_NO_MEMORY;
        format_error(err, sizeof err, "out of memory stepping %zu sessions", n);
    } else {
        for (size_t i = 0; i < n; i++) engines[i] = sessions[i]->e;
        st = engine_step(engines, ids, n, err, sizeof err);
    }
    if (engines != inline_engines) free(engines);
    if (st != GRETA_OK)
        for (size_t i = 0; i < n; i++) greta_session_fail(sessions[i], st, "%s", err);
    return st;
}

static bool have_logits(greta_session *s) {
    if (s->e->has_logits) return true;
    greta_session_fail(s, GRETA_ERR_STATE, "no logits: nothing evaluated since the session began or was rewound");
    return false;
}

const float *greta_logits(greta_session *session) {
    if (!session || !have_logits(session)) return NULL;
    return session->e->logits;
}

const double *greta_logits_f64(greta_session *session) {
    if (!session || !have_logits(session)) return NULL;
    return session->e->logits64;
}

static bool have_all_logits(greta_session *s, size_t *n_rows) {
    if (n_rows) *n_rows = 0;
    if (!s->e->config.logits_all) {
        greta_session_fail(s, GRETA_ERR_STATE, "all-row logits need the session parameter logits_all");
        return false;
    }
    if (!have_logits(s)) return false;
    if (n_rows) *n_rows = s->e->logits_all_rows;
    return true;
}

const float *greta_logits_all(greta_session *session, size_t *n_rows) {
    if (!session || !have_all_logits(session, n_rows)) return NULL;
    return session->e->logits_all;
}

const double *greta_logits_all_f64(greta_session *session, size_t *n_rows) {
    if (!session || !have_all_logits(session, n_rows)) return NULL;
    return session->e->logits_all64;
}

int32_t greta_pos(const greta_session *session) {
    return session ? session->e->n_pos : 0;
}

const int32_t *greta_session_tokens(const greta_session *session) {
    return session ? session->e->tokens : NULL;
}

greta_status greta_rewind(greta_session *session, int32_t pos) {
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    return engine_rewind(session->e, pos, session->err, sizeof session->err);
}

greta_status greta_sample(greta_session *session, const greta_sampler_params *params, int32_t *out_token) {
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    if (!params || !out_token) return greta_session_fail(session, GRETA_ERR_INVALID_ARGUMENT, "greta_sample: NULL argument");
    const float *logits = greta_logits(session);
    if (!logits) return GRETA_ERR_STATE;
    greta_status st = greta_sampler_sample(session->sampler, params, logits, session->model->m->hp.n_vocab,
                                           session->e->tokens, (size_t)session->e->n_pos, out_token);
    if (st == GRETA_OK) return st;
    /* non-finite logits are the forward pass's fault, not the parameters' */
    int32_t n_vocab = session->model->m->hp.n_vocab, n_nan = 0, n_inf = 0, first = -1;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (isfinite(logits[i])) continue;
        if (isnan(logits[i])) n_nan++;
        else n_inf++;
        if (first < 0) first = i;
    }
    if (first >= 0)
        return greta_session_fail(session, st,
                                  "the logits are not finite (%d NaN, %d infinite of %d; first at token id %d): the "
                                  "forward pass produced them; record a StageTrace (--trace, docs/trace.md) to find "
                                  "the first layer that did",
                                  n_nan, n_inf, n_vocab, first);
    greta_session_fail(session, st, "the sampler rejected its parameters: %s (check temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n)", greta_status_string(st));
    return st;
}

void greta_session_reseed(greta_session *session, uint64_t seed) {
    if (session) greta_sampler_reseed(session->sampler, seed);
}

void greta_session_set_abort(greta_session *session, greta_abort_fn fn, void *user_data) {
    if (!session) return;
    session->e->abort_fn = fn;
    session->e->abort_data = fn ? user_data : NULL;
}

greta_status greta_session_set_trace(greta_session *session, struct trace *tracer) {
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    session->e->tracer = tracer;
    return GRETA_OK;
}
