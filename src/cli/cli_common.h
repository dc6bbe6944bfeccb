/* cli_common.h: what greta run, chat and bench share: strict number
 * parsing, the generation options and their flags, model loading with a
 * progress bar, and a wall clock. Uses only include/greta.h. */
#ifndef GRETA_CLI_COMMON_H
#define GRETA_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"

/* Options of run and chat (bench uses the model/session subset). */
typedef struct {
    const char *model_path;
    const char *prompt;           /* -p */
    const char *prompt_file;      /* -f ("-" = stdin) */
    const char *prompt_ids;       /* --ids 1,2,3: the prompt as token ids (run) */
    int32_t n_predict;            /* -n: tokens to generate at most */
    greta_sampler_params sampling;
    uint64_t seed;
    int32_t n_ctx;                /* 0 = session default */
    int32_t n_threads;            /* 0 = all CPUs */
    bool force_threads;           /* --force-threads: -t above the online CPUs is kept */
    greta_backend backend;
    greta_precision precision;    /* --precision f32|q8 (default: the backend's) */
    greta_kv_type kv_type;        /* --kv-type f32|f16|q8_0 (default: the backend's) */
    bool deterministic;           /* --deterministic: batch-invariant kernels only */
    bool chat;                    /* --chat: apply the chat template */
    const char *system;           /* --system */
    const char *chat_template;    /* --chat-template NAME|FILE (NULL = the model's) */
    char *chat_template_text;     /* FILE contents, owned */
    const char **stops;           /* --stop, repeatable */
    size_t n_stops;
    bool parse_special;           /* control-token texts in a plain prompt become ids */
    bool render_special;          /* print control tokens of the output */
    const char *dump_logits_dir;  /* --dump-logits DIR */
    bool show_help;
    greta_trace_config *trace;    /* GRETA_TRACE_STAGE* + --trace* flags; NULL if the env was bad */
    char trace_error[512];        /* why trace is NULL */
} cli_gen_options;

/* Defaults: n_predict 256, default sampling, seed 0x67726574, cpu. */
void cli_gen_options_init(cli_gen_options *o);
void cli_gen_options_free(cli_gen_options *o);

/* Tries to parse argv[*i] (and its value argv[*i + 1]) as a flag shared by
 * run and chat. Returns 1 if consumed (advancing *i past the value), 0 if
 * the flag is not a shared one, -1 after printing an error. */
int cli_parse_gen_flag(cli_gen_options *o, int argc, char **argv, int *i);

/* The value of the flag at argv[*i] (advancing *i), or NULL after an error
 * "FLAG: missing value". */
const char *cli_flag_value(int argc, char **argv, int *i);

/* Strict numbers: the whole string, in [lo, hi]; else an error line naming
 * flag and false. */
bool cli_parse_int(const char *flag, const char *text, long lo, long hi, long *out);
bool cli_parse_u64(const char *flag, const char *text, uint64_t *out);
bool cli_parse_float(const char *flag, const char *text, double lo, double hi, float *out);

/* Loads the model. A load that takes longer than a second says where it
 * loads from on stderr: a progress bar naming the file on a terminal, else
 * one line "greta: loading the model from PATH" (GRETA_LOAD_NOTICE_SECONDS
 * sets the threshold). Prints the error and returns NULL on failure. */
greta_model *cli_load_model(const char *path);

/* Creates the session of o (context, threads, backend, seed); prints the
 * error and returns NULL on failure. */
greta_session *cli_new_session(greta_model *model, const cli_gen_options *o, bool logits_all);

/* Closes the session's tracer (reporting a failed write) and frees the
 * session. Returns false if the trace could not be written. */
bool cli_end_session(greta_session *session);

/* Reads a whole file ("-" = stdin) into a malloc'ed NUL-terminated buffer;
 * prints "greta: error: WHAT: WHY" and returns NULL on failure. A file
 * larger than max_bytes is an error ("larger than N bytes") read no
 * further, so /dev/zero cannot exhaust memory. */
char *cli_read_file(const char *what, const char *path, size_t max_bytes, size_t *len);

/* Largest --chat-template file (official templates are under 30 KB). */
#define CLI_MAX_TEMPLATE_BYTES ((size_t)1 << 20)
/* Prompt files: at most this many bytes per context position (--ctx, or
 * CLI_MAX_CONTEXT without it); tokenize -f: CLI_MAX_TEXT_BYTES. */
#define CLI_PROMPT_BYTES_PER_POSITION 256
#define CLI_MAX_CONTEXT ((size_t)1 << 20)
#define CLI_MAX_TEXT_BYTES ((size_t)256 << 20)

/* Monotonic seconds. */
double cli_now(void);

/* Writes len bytes to stdout and flushes; false (and "greta: error:
 * stdout: WHY" printed) when the write fails. */
bool cli_write_out(const char *text, size_t len);

/* What one generation did: greta_generate's result and the text printed. */
typedef struct {
    greta_generate_result r;
    char *text;            /* everything printed (malloc'ed, NUL-terminated) */
    size_t text_len;
} cli_gen_result;

/* Runs greta_generate on the prompt ids with o's sampling, stop strings,
 * -n and --special, streaming the text to stdout; --dump-logits writes
 * every step's logits. Returns false after printing an error; r is filled
 * either way (free r->text). */
bool cli_generate(greta_model *model, greta_session *session, const cli_gen_options *o, const int32_t *ids,
                  size_t n_ids, cli_gen_result *r);

/* Creates DIR for --dump-logits (if missing) and truncates DIR/index.jsonl.
 * Prints the error and returns false on failure. */
bool cli_dump_logits_open(const char *dir);

#endif
