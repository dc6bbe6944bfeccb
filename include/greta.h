/* greta.h: the public C API of greta, an inference engine for Llama-family
 * models stored as GGUF files. This is the only header the CLI, the server
 * and embedding programs use; everything under src/ is internal.
 *
 * Conventions (in the spirit of sqlite3.h / llama.h):
 *   - Opaque handles: greta_model (weights, vocabulary; read-only once
 *     loaded, may be shared by several sessions) and greta_session (KV
 *     cache, position, logits, sampler state, worker threads).
 *   - Every fallible call returns a greta_status, and one line saying what
 *     went wrong, e.g. "tensor 'blk.3.attn_q.weight' has shape [576, 512],
 *     expected [576, 576]", goes where the caller can read it without a
 *     race: calls on a session (used by one thread at a time) set the
 *     session's error string (greta_session_error); calls that create a
 *     handle, and calls on a model (which several threads may share), write
 *     it into a caller buffer `char *err, size_t err_size` (err may be NULL).
 *   - The library never exits, aborts or prints on bad input.
 *   - Memory returned through a `**out` argument is malloc'ed; release it
 *     with greta_free(). Pointers returned directly (logits, strings of the
 *     model info) belong to the handle and stay valid as documented.
 *
 * Typical use:
 *   greta_model *m; greta_session *s; char err[256];
 *   greta_model_load("model.gguf", NULL, &m, err, sizeof err);
 *   greta_session_new(m, NULL, &s, err, sizeof err);
 *   greta_tokenize(m, text, len, true, false, &ids, &n, err, sizeof err);
 *   greta_generate_params gp = greta_generate_default_params();
 *   gp.on_piece = print_piece;                  // called with each piece of text
 *   greta_generate(s, ids, n, &gp, &result);    // prefill, sample, decode, stop
 *   greta_session_free(s); greta_model_free(m);
 * greta_generate is built from the lower-level calls, which stay public:
 *   greta_eval(s, ids, n);                      // prefill
 *   greta_sample(s, &sampling, &tok);           // next token
 *   greta_eval(s, &tok, 1);                     // decode: same call
 * examples/generate.c is a complete program, docs/api.md the guide.
 *
 * Thread safety: one session is used by one thread at a time. A model may
 * be used by several sessions on different threads at once; it holds no
 * per-call state (errors go to the caller's buffer). The abort callback
 * (greta_session_set_abort) may read state other threads or a signal
 * handler write. */
#ifndef GRETA_H
#define GRETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything this header declares is libgreta's exported API, and nothing
 * else is: the library is compiled with -fvisibility=hidden (Makefile), and
 * this pragma makes the declarations below visible. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define GRETA_VERSION "0.1.0"

/* ------------------------------------------------------------------ */
/* Status codes                                                         */
/* ------------------------------------------------------------------ */

typedef enum {
    GRETA_OK = 0,
    GRETA_ERR_INVALID_ARGUMENT = 1, /* NULL handle, bad parameter, token id out of range */
    GRETA_ERR_IO = 2,               /* file cannot be opened or read */
    GRETA_ERR_FORMAT = 3,           /* corrupt or inconsistent GGUF, missing/misshaped tensor */
    GRETA_ERR_UNSUPPORTED = 4,      /* architecture, tensor type or backend greta lacks */
    GRETA_ERR_NO_MEMORY = 5,        /* allocation failed */
    GRETA_ERR_CONTEXT_FULL = 6,     /* tokens do not fit the session's context */
    GRETA_ERR_TOKENIZER = 7,        /* tokenizer missing or cannot encode/decode */
    GRETA_ERR_TEMPLATE = 8,         /* no chat template, or the template failed */
    GRETA_ERR_CANCELLED = 9,        /* the load progress or abort callback asked to stop */
    GRETA_ERR_STATE = 10,           /* call not valid now (e.g. logits before any eval) */
    GRETA_ERR_INTERNAL = 11,        /* thread creation failed, or a bug */
} greta_status;

/* "ok", "invalid argument", ... (never NULL). */
const char *greta_status_string(greta_status status);

/* Version string, GRETA_VERSION. */
const char *greta_version(void);

/* Frees memory the library returned through an out-pointer. NULL is fine. */
void greta_free(void *ptr);

/* ------------------------------------------------------------------ */
/* Model                                                                */
/* ------------------------------------------------------------------ */

typedef struct greta_model greta_model;

/* Load progress: called with progress in [0, 1] (0 at the start, 1 at the
 * end, non-decreasing). Return false to cancel the load (GRETA_ERR_CANCELLED). */
typedef bool (*greta_progress_fn)(float progress, void *user_data);

typedef struct {
    greta_progress_fn progress;  /* NULL = no callback */
    void *progress_user_data;
    bool vocab_only;             /* tokenizer + chat template only: no weights bound,
                                    no session can be created (for tokenizer tools) */
    bool prefault;               /* read every weight page once at load so the first
                                    token does not pay the disk (default true) */
} greta_model_params;

greta_model_params greta_model_default_params(void);

/* Opens path, reads the hyperparameters, binds and validates every tensor
 * (present, exact shape, supported type, inside the file) and loads the
 * tokenizer (a file without a vocabulary, i.e. without tokenizer.* keys or
 * with tokenizer.ggml.model = "none", loads; greta_tokenize then fails with
 * GRETA_ERR_TOKENIZER and a message saying the model has no vocabulary). params NULL = defaults. On failure
 * returns the status, *out = NULL and one line in err (which may be NULL)
 * saying what is wrong without repeating the path, for the front end to
 * print as "greta: error: PATH: MESSAGE". */
greta_status greta_model_load(const char *path, const greta_model_params *params,
                              greta_model **out, char *err, size_t err_size);
void greta_model_free(greta_model *model);

/* What a front end needs to know about a loaded model. Strings belong to
 * the model. */
typedef struct {
    const char *architecture;    /* general.architecture, e.g. "llama" */
    const char *name;            /* general.name, or the file name without directory */
    const char *file_type;       /* type of most weights, e.g. "Q4_1" */
    int32_t vocab_size;          /* rows of token_embd (logits per row) */
    int32_t context_length;      /* trained context length (llama.context_length) */
    int32_t n_embd;              /* embedding length (dim) */
    int32_t n_ff;                /* feed-forward length */
    int32_t n_layer;             /* block count */
    int32_t n_head;              /* query heads */
    int32_t n_head_kv;           /* key/value heads (GQA when < n_head) */
    int32_t head_dim;            /* n_embd / n_head */
    int32_t rope_dim;            /* rotated dimensions per head */
    double rope_freq_base;
    const char *rope_scaling;    /* "none", "linear" or "llama3" */
    double rope_scaling_factor;  /* 1 when none */
    double rms_norm_eps;
    bool tied_embeddings;        /* output projection is token_embd */
    bool has_chat_template;      /* tokenizer.chat_template present */
    bool vocab_only;             /* loaded with vocab_only */
    bool has_vocab;              /* false for a file without a vocabulary (tokenizer.ggml.model
                                    "none", or no tokenizer.* keys): it runs on token ids, and
                                    greta_tokenize / greta_detokenize fail with GRETA_ERR_TOKENIZER */
    int32_t bos_token;           /* -1 if none */
    int32_t eos_token;           /* -1 if none */
    uint64_t n_params;           /* elements of all bound weight tensors */
    uint64_t weight_bytes;       /* bytes of all bound weight tensors, as stored */
    uint64_t decode_bytes_per_token; /* weight bytes read per decoded token: every
                                        weight once, token_embd one row (all of it
                                        when tied, as it is the output matrix) */
} greta_model_info;

/* Fills *info (all zero/empty strings for a NULL model). */
void greta_model_get_info(const greta_model *model, greta_model_info *info);

/* The model's tokenizer.chat_template text, NULL if it has none. */
const char *greta_model_chat_template(const greta_model *model);

/* Where the model file is mapped in memory: [*start, *start + *len). The
 * weights are read from this mapping while sessions run, so the file must
 * not change while the model is loaded: a truncated file makes those reads
 * fault with SIGBUS. A front end may catch SIGBUS at these addresses and
 * name the file (greta's CLI does). false when nothing stays mapped
 * (a vocab_only model). */
bool greta_model_mapping(const greta_model *model, const void **start, size_t *len);

/* ------------------------------------------------------------------ */
/* Vocabulary                                                           */
/* ------------------------------------------------------------------ */

/* Encodes len bytes of text. add_special: prepend BOS / append EOS as the
 * model's tokenizer metadata says. parse_special: texts of control tokens
 * (e.g. "<|im_start|>") become their ids; otherwise they are plain text.
 * *ids is malloc'ed (greta_free), *n_ids its length. On failure a line in
 * err (may be NULL). */
greta_status greta_tokenize(const greta_model *model, const char *text, size_t len, bool add_special,
                            bool parse_special, int32_t **ids, size_t *n_ids, char *err, size_t err_size);

/* Decodes ids to a malloc'ed NUL-terminated string (*out, *out_len bytes
 * without the NUL); control tokens are rendered only when render_special.
 * On failure a line in err (may be NULL). */
greta_status greta_detokenize(const greta_model *model, const int32_t *ids, size_t n, bool render_special,
                              char **out, size_t *out_len, char *err, size_t err_size);

/* The bytes of one token in isolation (" the" for "Ġthe"). Returns the
 * token's byte count (may exceed cap: only cap bytes written; no NUL), or
 * -1 for an out-of-range id. */
int greta_token_to_piece(const greta_model *model, int32_t id, bool render_special, char *buf,
                         size_t cap);

/* Streaming detokenizer for generated text: holds back incomplete UTF-8
 * sequences, always emits valid UTF-8. */
typedef struct greta_detok greta_detok;
greta_detok *greta_detok_new(const greta_model *model, bool render_special); /* NULL on OOM */
void greta_detok_free(greta_detok *detok);
/* Appends token id; *out, *out_len: the text now printable (valid until the
 * next call on detok). */
greta_status greta_detok_push(greta_detok *detok, int32_t id, const char **out, size_t *out_len);
/* Emits whatever is held back and resets for a new sequence. */
greta_status greta_detok_flush(greta_detok *detok, const char **out, size_t *out_len);

int32_t greta_token_bos(const greta_model *model); /* -1 if none */
int32_t greta_token_eos(const greta_model *model); /* -1 if none */
/* True if id ends generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...). */
bool greta_token_is_eog(const greta_model *model, int32_t id);
/* Whether greta_tokenize(add_special = true) prepends BOS. */
bool greta_model_adds_bos(const greta_model *model);

/* ------------------------------------------------------------------ */
/* Chat template                                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content; /* UTF-8 text */
} greta_chat_message;

/* Renders messages with a chat template, as transformers'
 * apply_chat_template(tokenize=False) does. template_override NULL = the
 * model's tokenizer.chat_template; otherwise a built-in name ("chatml",
 * "llama2", "llama3", "llama3.1", "mistral", "gemma", "phi3", "zephyr")
 * or, if it contains "{{" or "{%", the template text itself. The model's
 * BOS/EOS token texts are passed as bos_token / eos_token. *out is a
 * malloc'ed NUL-terminated string (greta_free). Tokenize the result with
 * add_special = false, parse_special = true. On failure a line in err (may
 * be NULL). */
greta_status greta_chat_apply(const greta_model *model, const greta_chat_message *messages, size_t n,
                              bool add_generation_prompt, const char *template_override,
                              char **out, char *err, size_t err_size);

/* Checks that the template greta_chat_apply would use (same
 * template_override rule) exists and parses, without rendering: a front end
 * calls it before the first message so that a malformed template is
 * reported at start. GRETA_ERR_TEMPLATE with a line in err (may be NULL)
 * if not. */
greta_status greta_chat_check(const greta_model *model, const char *template_override, char *err,
                              size_t err_size);

/* ------------------------------------------------------------------ */
/* Session: KV cache, evaluation, logits                                */
/* ------------------------------------------------------------------ */

typedef struct greta_session greta_session;

typedef enum {
    GRETA_BACKEND_CPU = 0,  /* float32 / 8-bit activations (precision), multi-threaded, the default */
    GRETA_BACKEND_REF = 1,  /* float64 reference (the oracle); threads split its matrix products by output row (no bit changes) */
    GRETA_BACKEND_CUDA = 2, /* reserved: "not built with CUDA" in CPU builds */
} greta_backend;

/* Arithmetic of a cpu or cuda session (docs/engine.md, "Precision q8" and "The
 * default precision"; docs/cuda.md, "Decode: 8-bit activations"). */
typedef enum {
    GRETA_PRECISION_DEFAULT = 0, /* the backend's default (greta_backend_default_precision):
                                    q8 on cpu and cuda, f32 on ref (which computes in float64) */
    GRETA_PRECISION_F32 = 1,     /* float32 activations, weights decoded exactly (ref: float64) */
    GRETA_PRECISION_Q8 = 2,      /* cpu and cuda: activations quantized to 8 bits per block, integer
                                    dot products for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K weights
                                    (other types use the f32 kernels; cuda: in its decode products);
                                    faster, not bit-equal to f32 */
} greta_precision;

/* The precision a session of backend gets with GRETA_PRECISION_DEFAULT:
 * GRETA_PRECISION_Q8 for cpu (its error bounds against the float64 ref
 * backend and transformers are tested, docs/engine.md) and cuda (its
 * tolerances are checked on a GPU by scripts/cuda/cuda-check, docs/cuda.md),
 * GRETA_PRECISION_F32 for ref. Never GRETA_PRECISION_DEFAULT. */
greta_precision greta_backend_default_precision(greta_backend backend);

/* "default", "f32", "q8". */
const char *greta_precision_name(greta_precision precision);
/* Parses "f32" / "q8"; GRETA_ERR_INVALID_ARGUMENT otherwise. */
greta_status greta_precision_from_name(const char *name, greta_precision *out);

/* Values of a session's KV cache (greta_session_params.kv_type). */
typedef enum {
    GRETA_KV_DEFAULT = 0, /* the backend's own: cpu float32, ref float64, cuda f16 */
    GRETA_KV_F32 = 1,     /* float32 (cpu; cuda: a diagnostic, twice the f16 cache) */
    GRETA_KV_F16 = 2,     /* cuda: f16, round to nearest even */
    GRETA_KV_Q8_0 = 3,    /* cuda: q8_0 blocks (32 int8 and an f16 scale; 8.5 bits a value) */
} greta_kv_type;

/* "default", "f32", "f16", "q8_0" ("unknown" for another value). */
const char *greta_kv_type_name(greta_kv_type kv_type);
/* Parses "f32" / "f16" / "q8_0"; GRETA_ERR_INVALID_ARGUMENT otherwise. */
greta_status greta_kv_type_from_name(const char *name, greta_kv_type *out);

/* "cpu", "ref", "cuda" ("unknown" for another value). */
const char *greta_backend_name(greta_backend backend);
/* Parses "cpu" / "ref" / "cuda"; GRETA_ERR_INVALID_ARGUMENT otherwise. */
greta_status greta_backend_from_name(const char *name, greta_backend *out);

/* The most worker threads a session takes (greta_session_params.n_threads). */
#define GRETA_MAX_THREADS 512

/* One row of the backend registry: what this build knows about a backend. */
typedef struct {
    greta_backend id;
    const char *name;        /* "cpu", "ref", "cuda" */
    const char *precision;   /* activations, accumulation, KV cache: "f32" or "f64" */
    int32_t value_bytes;     /* bytes of one activation / KV-cache value: 4 or 8 */
    bool available;          /* built into this library (a session can be created) */
    bool threaded;           /* uses the session's thread count (else one thread) */
    const char *unavailable; /* why not, e.g. "greta was not built with CUDA"; "" if available */
} greta_backend_info;

/* Number of backends greta knows, available or not; their ids are
 * 0 .. count - 1. */
int32_t greta_backend_count(void);
/* Fills *info for backend (strings belong to the library). An unknown id
 * is GRETA_ERR_INVALID_ARGUMENT with *info zeroed and its strings "". */
greta_status greta_backend_get_info(greta_backend backend, greta_backend_info *info);

/* The context of a session created with n_ctx = 0: the model's trained
 * context length, at most this many positions (a file may claim 2^20 or
 * more; ask for it explicitly). */
#define GRETA_DEFAULT_N_CTX 4096

typedef struct {
    int32_t n_ctx;        /* positions in the KV cache; 0 = min(trained context
                             length, GRETA_DEFAULT_N_CTX) (default 0); more than
                             the trained length is GRETA_ERR_INVALID_ARGUMENT */
    int32_t n_threads;    /* worker threads for cpu; 0 = online CPUs (default 0);
                             at most GRETA_MAX_THREADS */
    greta_backend backend;/* default GRETA_BACKEND_CPU */
    greta_precision precision; /* default GRETA_PRECISION_DEFAULT (cpu: q8); f32 pins the
                                  exact float32 path; q8 only on cpu */
    greta_kv_type kv_type;     /* default GRETA_KV_DEFAULT; a type the backend does not keep
                                  is GRETA_ERR_UNSUPPORTED (cpu: f32; ref: its float64 only;
                                  cuda: f16, q8_0, f32) */
    bool deterministic;   /* only batch-invariant kernels: prefill and decode give the same
                             bits and runs repeat bit for bit (default false). cpu and ref
                             always are; cuda is only with it (its fast prefill is not,
                             docs/cuda.md) */
    uint64_t seed;        /* sampler RNG seed (default 0x67726574 "gret") */
    bool logits_all;      /* keep the logits of every row of the last eval
                             (greta_logits_all), not only the last (default false) */
} greta_session_params;

greta_session_params greta_session_default_params(void);

/* Creates a session (allocates the KV cache, starts the thread pool).
 * params NULL = defaults. Before allocating, the KV cache's size is checked
 * against the memory available (MemAvailable in /proc/meminfo):
 * GRETA_ERR_NO_MEMORY with both numbers in err if it does not fit. On
 * failure *out = NULL and a line in err. */
greta_status greta_session_new(greta_model *model, const greta_session_params *params,
                               greta_session **out, char *err, size_t err_size);
void greta_session_free(greta_session *session);

/* Message of the last failing call on this session ("" if none). */
const char *greta_session_error(const greta_session *session);

greta_backend greta_session_backend(const greta_session *session);
int32_t greta_session_n_ctx(const greta_session *session);
int32_t greta_session_n_threads(const greta_session *session);
/* The precision the session computes in (q8 or f32 for cpu, f32 for ref and
 * cuda); never GRETA_PRECISION_DEFAULT. */
greta_precision greta_session_precision(const greta_session *session);
/* The session's KV cache type (GRETA_KV_DEFAULT: the backend's own). */
greta_kv_type greta_session_kv_type(const greta_session *session);
/* True if the session's results are batch-invariant and repeat bit for
 * bit: always on cpu and ref, on cuda only when asked for. */
bool greta_session_deterministic(const greta_session *session);

/* What a session's backend holds in memory, in bytes. */
typedef struct {
    int64_t weights;      /* the model's weights as the backend placed them (shared by the
                             model's sessions on that backend) */
    int64_t kv;           /* this session's KV cache */
    int64_t activations;  /* this session's activation buffers and scratch */
    int64_t device_used;  /* the whole device's memory in use, by anyone (cuda; 0 on the host) */
    int64_t device_total; /* the device's memory (cuda; 0 on the host) */
} greta_backend_memory;

/* Fills *out for the session's backend; GRETA_ERR_UNSUPPORTED (zeroed) for
 * a backend that does not report it (cpu and ref: the weights are the
 * file's mapping). */
greta_status greta_session_backend_memory(const greta_session *session, greta_backend_memory *out);

/* Evaluates n tokens appended at the current position: row i has token
 * ids[i] at position greta_pos() + i and attends to everything before it.
 * Prefill (n > 1) and decode (n == 1) are the same call and the same
 * forward; on cpu the logits of a row are bitwise the same whichever way
 * the tokens were batched. On success the position advances by n and the
 * logits of the last row are available. Errors leave the session as it was:
 * GRETA_ERR_CONTEXT_FULL if position + n > n_ctx, GRETA_ERR_INVALID_ARGUMENT
 * for n == 0 or an id outside [0, vocab_size). GRETA_ERR_CANCELLED when the
 * abort callback (greta_session_set_abort) returned true: the forward stops
 * before its next layer, the position stays, the logits are cleared. */
greta_status greta_eval(greta_session *session, const int32_t *ids, size_t n);

/* Continuous batching: evaluates ids[i] at the current position of
 * sessions[i], for n distinct sessions of the same model and backend, as
 * the rows of ONE forward (on sessions[0]'s buffers and threads). Each
 * session then stands exactly as if greta_eval(sessions[i], &ids[i], 1)
 * had run alone: the same position, phase and logits, bit for bit (a row
 * never depends on the other rows). Every session's position must be
 * below sessions[0]'s n_ctx. Everything is checked before anything is
 * computed: on GRETA_ERR_INVALID_ARGUMENT (sessions of different models or
 * backends, a session twice, a bad id), GRETA_ERR_CONTEXT_FULL or
 * GRETA_ERR_NO_MEMORY no session changes, and the message is in the error
 * string of every session given. */
greta_status greta_eval_sessions(greta_session *const *sessions, const int32_t *ids, size_t n);

/* Logits (vocab_size floats) of the last row of the last successful eval;
 * NULL (and GRETA_ERR_STATE in the error string) before any eval or after a
 * rewind. Valid until the next eval/rewind/free. */
const float *greta_logits(greta_session *session);
/* Same row in float64: exact on the ref backend, the float32 values
 * promoted on cpu. */
const double *greta_logits_f64(greta_session *session);

/* All rows of the last eval, row-major [n_rows][vocab_size]; needs
 * params.logits_all, else NULL. */
const float *greta_logits_all(greta_session *session, size_t *n_rows);
const double *greta_logits_all_f64(greta_session *session, size_t *n_rows);

/* Current position = tokens in the KV cache. */
int32_t greta_pos(const greta_session *session);

/* The tokens in the KV cache (greta_pos() of them), e.g. to find the prefix
 * a new prompt shares with the cache. Valid until the next eval/rewind. */
const int32_t *greta_session_tokens(const greta_session *session);

/* Forgets every position >= pos (0 <= pos <= greta_pos()); the next eval
 * continues at pos. Logits are cleared (eval again to get some). */
greta_status greta_rewind(greta_session *session, int32_t pos);

/* ------------------------------------------------------------------ */
/* Sampling                                                             */
/* ------------------------------------------------------------------ */
/* greta_sampler_* are implemented in src/engine/sampler.c;
 * greta_sample / greta_session_reseed in the engine. */

typedef struct {
    bool greedy;            /* argmax, ignores everything else (lowest id on ties) */
    float temperature;      /* <= 0 means greedy; default 0.8 */
    int32_t top_k;          /* keep the k most likely; 0 = off; default 40 */
    float top_p;            /* nucleus; 1 = off; default 0.95 */
    float min_p;            /* drop below min_p * p(max); 0 = off; default 0.05 */
    float repeat_penalty;   /* llama.cpp-style on the last repeat_last_n tokens; 1 = off */
    int32_t repeat_last_n;  /* window of the penalty; default 64 */
} greta_sampler_params;

greta_sampler_params greta_sampler_default_params(void);

/* A sampler: the seeded RNG state plus scratch space; the same seed and
 * the same logits give the same tokens on every run and thread count. */
typedef struct greta_sampler greta_sampler;
greta_sampler *greta_sampler_new(uint64_t seed); /* NULL on OOM */
void greta_sampler_free(greta_sampler *sampler);
void greta_sampler_reseed(greta_sampler *sampler, uint64_t seed);
/* Picks a token from logits[0..n_vocab) under params; history (n_history
 * ids, oldest first) feeds the repetition penalty. NaN logits, or every
 * logit -inf, are GRETA_ERR_INVALID_ARGUMENT in every mode (greedy too). */
greta_status greta_sampler_sample(greta_sampler *sampler, const greta_sampler_params *params,
                                  const float *logits, int32_t n_vocab, const int32_t *history,
                                  size_t n_history, int32_t *out_token);

/* Samples from the session's current logits with the session's own sampler
 * (seeded with params.seed at creation), using the cached tokens as the
 * repetition history. Does not evaluate the token. */
greta_status greta_sample(greta_session *session, const greta_sampler_params *params,
                          int32_t *out_token);
/* Reseeds the session's sampler. */
void greta_session_reseed(greta_session *session, uint64_t seed);

/* Stop strings (src/engine/sampler.c): feed the generated text as it is printed;
 * text that may be the start of a stop string is held back, and a stop
 * string itself (even split across tokens) is never emitted. */
typedef struct greta_stop greta_stop;
/* Copies the n_stops strings (empty ones are ignored). NULL on OOM. */
greta_stop *greta_stop_new(const char *const *stops, size_t n_stops);
void greta_stop_free(greta_stop *stop);
/* Appends len bytes of text. *out, *out_len: the text now safe to print
 * (valid until the next call). *stopped becomes true when a stop string is
 * complete: *out then ends just before it and later pushes emit nothing. */
greta_status greta_stop_push(greta_stop *stop, const char *text, size_t len, const char **out,
                             size_t *out_len, bool *stopped);
/* End of generation: emits what is held back (nothing after a stop) and
 * resets for a new generation. */
greta_status greta_stop_flush(greta_stop *stop, const char **out, size_t *out_len);

/* ------------------------------------------------------------------ */
/* Generation                                                           */
/* ------------------------------------------------------------------ */

/* Abort callback: return true to stop. Polled before every layer of every
 * forward (greta_eval, and so greta_generate's prefill and decode steps)
 * and before every token greta_generate samples, so an abort takes effect
 * within one layer. It may read a flag set by a signal handler or another
 * thread (e.g. a volatile sig_atomic_t or an atomic). */
typedef bool (*greta_abort_fn)(void *user_data);

/* Installs the session's abort callback (fn NULL removes it). */
void greta_session_set_abort(greta_session *session, greta_abort_fn fn, void *user_data);

/* Why greta_generate stopped. */
typedef enum {
    GRETA_FINISH_EOS = 0,      /* an end-of-generation token was sampled (EOS, EOT,
                                  <|im_end|>, ...; greta_token_is_eog): not emitted */
    GRETA_FINISH_STOP = 1,     /* a stop string completed: not emitted */
    GRETA_FINISH_LENGTH = 2,   /* max_tokens tokens were generated */
    GRETA_FINISH_CONTEXT_FULL = 3, /* the context has no room for the next token */
    GRETA_FINISH_ABORTED = 4,  /* the abort callback returned true, or a piece or
                                  token callback returned false */
} greta_finish_reason;

/* "eos", "stop", "length", "context_full", "aborted". */
const char *greta_finish_reason_name(greta_finish_reason reason);

/* Receives each piece of generated text as soon as it is final: valid
 * UTF-8 (a character split across tokens waits for its last byte), never
 * part of a stop string. text is not NUL-terminated and is valid only
 * during the call. Return false to stop (GRETA_FINISH_ABORTED, no further
 * callbacks). */
typedef bool (*greta_piece_fn)(const char *text, size_t len, void *user_data);

/* Receives each sampled token before it is checked for end of generation
 * or detokenized; greta_logits(session) still holds the row it was sampled
 * from, at position greta_pos(session) - 1. Return false to stop
 * (GRETA_FINISH_ABORTED, no further callbacks). */
typedef bool (*greta_token_fn)(greta_session *session, int32_t token, void *user_data);

typedef struct {
    greta_sampler_params sampling; /* default greta_sampler_default_params() */
    int32_t max_tokens;        /* tokens to generate at most; < 0 = until EOS, a stop
                                  string or a full context (default 256) */
    const char *const *stops;  /* n_stops stop strings (copied; empty ones ignored) */
    size_t n_stops;
    bool render_special;       /* control tokens become text (default false) */
    greta_piece_fn on_piece;   /* NULL = text not delivered */
    greta_token_fn on_token;   /* NULL = none */
    void *user_data;           /* passed to on_piece and on_token */
} greta_generate_params;

greta_generate_params greta_generate_default_params(void);

/* What one greta_generate call did. */
typedef struct {
    greta_finish_reason reason;
    int32_t n_prompt;          /* prompt tokens passed */
    int32_t n_reused;          /* of them, found in the KV cache and not evaluated */
    int32_t n_evaluated;       /* of them, evaluated (0 when aborted during the prompt) */
    int32_t n_generated;       /* tokens sampled and delivered (the EOS token not counted) */
    double prompt_seconds;     /* evaluating the prompt */
    double generate_seconds;   /* sampling, detokenizing and decoding */
} greta_generate_result;

/* Generates text after a prompt, delivering it piece by piece.
 *
 * Prompt: the longest prefix of prompt[0..n_prompt) that the KV cache
 * already holds (greta_session_tokens) is kept, the cache is rewound to it
 * and the rest is evaluated (at least the last token, for its logits); a
 * fresh session or greta_rewind(session, 0) first evaluates it all.
 * n_prompt = 0 continues from the session's current logits.
 *
 * Then, until a finish reason: sample a token (params->sampling, the
 * session's sampler and cache as the repetition history), stop at an
 * end-of-generation token, detokenize it (streaming, UTF-8 safe), hold back
 * text that may start a stop string, deliver the rest to on_piece, stop
 * after max_tokens tokens or when the context has no position left for
 * the token (the last token is delivered but not evaluated), else
 * evaluate it. At the end, text held back (not part of a stop string) is
 * delivered, unless a callback asked to stop.
 *
 * A model without a vocabulary (greta_model_info.has_vocab false) delivers
 * each token as its id in decimal, separated by single spaces, and takes no
 * stop strings (GRETA_ERR_TOKENIZER).
 *
 * Returns GRETA_OK when generation ended for one of the reasons in
 * result->reason (GRETA_FINISH_ABORTED included). An error (the prompt is
 * longer than the context: GRETA_ERR_CONTEXT_FULL; sampling or decoding
 * failed) returns its status with the session's error string
 * saying which step failed ("prompt: ...", "sampling: ...", "decode: ...");
 * result (may be NULL) holds the counts so far either way. */
greta_status greta_generate(greta_session *session, const int32_t *prompt, size_t n_prompt,
                            const greta_generate_params *params, greta_generate_result *result);

/* ------------------------------------------------------------------ */
/* Tracing (src/trace.h, design.md section 4)                           */
/* ------------------------------------------------------------------ */

struct trace; /* created and configured by the trace module */

/* Attaches a tracer to the session (NULL detaches). The session does not
 * own it: free it after the session or after detaching. The engine calls
 * it at every trace point of every forward; tracing never changes a bit of
 * what is computed. */
greta_status greta_session_set_trace(greta_session *session, struct trace *tracer);

/* What to trace, from the original's environment variables (GRETA_TRACE_STAGE,
 * _OUT, _LAYERS, _POINTS, _PHASES, _SAMPLE, GRETA_TRACE_PROMPT_ID) and the
 * equal command-line flags (--trace FILE, --trace-layers, --trace-points,
 * --trace-phases, --trace-sample, ...; flags win). docs/trace.md. */
typedef struct greta_trace_config greta_trace_config;

/* A configuration read from the environment. An unknown point or phase or
 * a malformed list is an error with a message naming it. */
greta_status greta_trace_config_new(greta_trace_config **out, char *err, size_t err_size);
void greta_trace_config_free(greta_trace_config *config);

/* If argv[*i] is a trace flag, consumes it and its value, leaves *i on the
 * last argument consumed and returns 1; returns 0 if it is not a trace flag;
 * -1 with a message in err on a bad or missing value. */
int greta_trace_config_parse_flag(greta_trace_config *config, int argc, char **argv, int *i,
                                  char *err, size_t err_size);
bool greta_trace_config_enabled(const greta_trace_config *config);
/* One line per flag, for --help texts. */
const char *greta_trace_flags_help(void);

/* Opens the tracer config describes for the session (checks the layer range
 * against the model, writes the header line) and attaches it. Does nothing
 * and returns GRETA_OK when tracing is not enabled. */
greta_status greta_session_open_trace(greta_session *session, const greta_trace_config *config,
                                      const char *model_path, char *err, size_t err_size);
/* Detaches and closes the tracer opened by greta_session_open_trace (if
 * any); reports a failed write. greta_session_free closes it too, but
 * cannot report errors. */
greta_status greta_session_close_trace(greta_session *session, char *err, size_t err_size);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
