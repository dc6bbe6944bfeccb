/* cli_common.c: flag parsing, model loading and small helpers shared by
 * greta run, chat and bench (see cli_common.h). */
#include "cli/cli_common.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_args.h"

void cli_gen_options_init(cli_gen_options *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 256;
    o->sampling = greta_sampler_default_params();
    o->seed = greta_session_default_params().seed;
    o->backend = GRETA_BACKEND_CPU;
    if (greta_trace_config_new(&o->trace, o->trace_error, sizeof o->trace_error) != GRETA_OK) o->trace = NULL;
}

void cli_gen_options_free(cli_gen_options *o) {
    free(o->stops);
    free(o->chat_template_text);
    o->stops = NULL;
    o->chat_template_text = NULL;
    greta_trace_config_free(o->trace);
    o->trace = NULL;
}

const char *cli_flag_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_error("%s: missing value", argv[*i]);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

bool cli_parse_int(const char *flag, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0') {
        cli_error("%s: expected an integer, got '%s'", flag, text);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error("%s: %ld is out of range [%ld, %ld]", flag, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_u64(const char *flag, const char *text, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (text[0] == '-') {
        cli_error("%s: expected a non-negative integer, got '%s'", flag, text);
        return false;
    }
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || end == text || *end != '\0') {
        cli_error("%s: expected a non-negative integer, got '%s'", flag, text);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool cli_parse_float(const char *flag, const char *text, double lo, double hi, float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v)) {
        cli_error("%s: expected a number, got '%s'", flag, text);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error("%s: %g is out of range [%g, %g]", flag, v, lo, hi);
        return false;
    }
    *out = (float)v;
    return true;
}

static bool is_flag(const char *arg, const char *a, const char *b) {
    return strcmp(arg, a) == 0 || (b && strcmp(arg, b) == 0);
}

static bool add_stop(cli_gen_options *o, const char *stop) {
    if (!stop[0]) {
        cli_error("--stop: the stop string is empty");
        return false;
    }
    const char **grown = realloc(o->stops, (o->n_stops + 1) * sizeof *grown);
    if (!grown) {
        cli_error("--stop: out of memory");
        return false;
    }
    o->stops = grown;
    o->stops[o->n_stops++] = stop;
    return true;
}

int cli_parse_gen_flag(cli_gen_options *o, int argc, char **argv, int *i) {
    const char *arg = argv[*i];
    const char *v = NULL;
    long n = 0;
    float f = 0.0f;
    if (!o->trace) { /* a bad GRETA_TRACE_STAGE* variable: say so before any flag */
        cli_error("trace: %s", o->trace_error);
        return -1;
    }
    char trace_err[512] = "";
    int traced = greta_trace_config_parse_flag(o->trace, argc, argv, i, trace_err, sizeof trace_err);
    if (traced < 0) {
        cli_error("%s", trace_err);
        return -1;
    }
    if (traced == 1) return 1;
    /* flags without a value */
    if (is_flag(arg, "--force-threads", NULL)) {
        o->force_threads = true;
        return 1;
    }
    if (is_flag(arg, "--greedy", NULL)) {
        o->sampling.greedy = true;
        return 1;
    }
    if (is_flag(arg, "--deterministic", NULL)) {
        o->deterministic = true;
        return 1;
    }
    if (is_flag(arg, "--chat", NULL)) {
        o->chat = true;
        return 1;
    }
    if (is_flag(arg, "--parse-special", NULL)) {
        o->parse_special = true;
        return 1;
    }
    if (is_flag(arg, "--no-parse-special", NULL)) {
        o->parse_special = false;
        return 1;
    }
    if (is_flag(arg, "--special", NULL)) {
        o->render_special = true;
        return 1;
    }
    if (is_flag(arg, "--no-special", NULL)) {
        o->render_special = false;
        return 1;
    }
    if (is_flag(arg, "-h", "--help")) {
        o->show_help = true;
        return 1;
    }
    /* flags with a value */
    static const char *const valued[] = {
        "-m", "--model", "-p", "--prompt", "-f", "--prompt-file", "-n", "--max-tokens", "--temp",
        "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n",
        "--seed", "--ctx", "-c", "-t", "--threads", "--backend", "--precision", "--kv-type", "--system", "--stop",
        "--chat-template", "--dump-logits", "--ids", NULL};
    bool known = false;
    for (const char *const *k = valued; *k && !known; k++) known = strcmp(arg, *k) == 0;
    if (!known) return 0;
    if (!(v = cli_flag_value(argc, argv, i))) return -1;
    if (is_flag(arg, "-m", "--model")) {
        o->model_path = v;
    } else if (is_flag(arg, "-p", "--prompt")) {
        o->prompt = v;
    } else if (is_flag(arg, "-f", "--prompt-file")) {
        o->prompt_file = v;
    } else if (is_flag(arg, "--ids", NULL)) {
        o->prompt_ids = v;
    } else if (is_flag(arg, "-n", "--max-tokens")) {
        if (!cli_parse_int(arg, v, 0, INT32_MAX, &n)) return -1;
        o->n_predict = (int32_t)n;
    } else if (is_flag(arg, "--temp", "--temperature")) {
        if (!cli_parse_float(arg, v, 0.0, 100.0, &f)) return -1;
        o->sampling.temperature = f;
    } else if (is_flag(arg, "--top-k", NULL)) {
        if (!cli_parse_int(arg, v, 0, INT32_MAX, &n)) return -1;
        o->sampling.top_k = (int32_t)n;
    } else if (is_flag(arg, "--top-p", NULL)) {
        if (!cli_parse_float(arg, v, 1e-9, 1.0, &f)) return -1;
        o->sampling.top_p = f;
    } else if (is_flag(arg, "--min-p", NULL)) {
        if (!cli_parse_float(arg, v, 0.0, 1.0, &f)) return -1;
        o->sampling.min_p = f;
    } else if (is_flag(arg, "--repeat-penalty", NULL)) {
        if (!cli_parse_float(arg, v, 1e-6, 1e6, &f)) return -1;
        o->sampling.repeat_penalty = f;
    } else if (is_flag(arg, "--repeat-last-n", NULL)) {
        if (!cli_parse_int(arg, v, -1, INT32_MAX, &n)) return -1;
        o->sampling.repeat_last_n = (int32_t)n;
    } else if (is_flag(arg, "--seed", NULL)) {
        if (!cli_parse_u64(arg, v, &o->seed)) return -1;
    } else if (is_flag(arg, "--ctx", "-c")) {
        if (!cli_parse_int(arg, v, 1, INT32_MAX, &n)) return -1;
        o->n_ctx = (int32_t)n;
    } else if (is_flag(arg, "-t", "--threads")) {
        if (!cli_parse_int(arg, v, 1, GRETA_MAX_THREADS, &n)) return -1; /* the library's limit */
        o->n_threads = (int32_t)n;
    } else if (is_flag(arg, "--backend", NULL)) {
        if (cli_arg_backend(arg, v, &o->backend) != 0) return -1;
    } else if (is_flag(arg, "--precision", NULL)) {
        if (greta_precision_from_name(v, &o->precision) != GRETA_OK) {
            cli_error("--precision: unknown precision '%s' (expected f32 or q8)", v);
            return -1;
        }
    } else if (is_flag(arg, "--kv-type", NULL)) {
        if (cli_arg_kv_type(arg, v, &o->kv_type) != 0) return -1;
    } else if (is_flag(arg, "--system", NULL)) {
        o->system = v;
    } else if (is_flag(arg, "--stop", NULL)) {
        if (!add_stop(o, v)) return -1;
    } else if (is_flag(arg, "--chat-template", NULL)) {
        o->chat_template = v;
        if (access(v, R_OK) == 0) {
            size_t len = 0;
            free(o->chat_template_text);
            o->chat_template_text = cli_read_file("--chat-template", v, CLI_MAX_TEMPLATE_BYTES, &len);
            if (!o->chat_template_text) return -1;
            if (!strstr(o->chat_template_text, "{{") && !strstr(o->chat_template_text, "{%")) {
                cli_error("--chat-template: %s: not a Jinja template (no '{{' or '{%%')", v);
                return -1;
            }
            o->chat_template = o->chat_template_text;
        }
    } else if (is_flag(arg, "--dump-logits", NULL)) {
        o->dump_logits_dir = v;
    }
    return 1;
}

/* ---- model loading with a progress bar ---- */

/* A load that takes longer than this many seconds says where it loads from
 * (GRETA_LOAD_NOTICE_SECONDS overrides it, e.g. 0 in tests). */
static double load_notice_seconds(void) {
    const char *text = getenv("GRETA_LOAD_NOTICE_SECONDS");
    char *end = NULL;
    double v = text ? strtod(text, &end) : 1.0;
    return text && end != text && *end == '\0' && v >= 0.0 ? v : 1.0;
}

typedef struct {
    const char *path;
    double start;
    double notice_after; /* seconds */
    bool tty;
    bool noticed;        /* the line naming the path was printed (non-tty) */
    bool drawn;          /* the bar is on screen (tty) */
} load_progress;

static bool draw_progress(float progress, void *user_data) {
    load_progress *lp = user_data;
    if (cli_now() - lp->start < lp->notice_after) return true;
    if (!lp->tty) {
        if (!lp->noticed) fprintf(stderr, "greta: loading the model from %s\n", lp->path);
        lp->noticed = true;
        return true;
    }
    int width = 30, filled = (int)(progress * (float)width + 0.5f);
    if (filled > width) filled = width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\rloading %s [%s] %3d%%", lp->path, bar, (int)(progress * 100.0f + 0.5f));
    fflush(stderr);
    lp->drawn = true;
    return true;
}

/* SIGBUS guard: the one place the CLI keeps static state, because a signal
 * handler can reach nothing else. The mapping of the last model loaded and
 * its path; a fault inside it means the file changed under us. */
static uintptr_t guard_start, guard_end;
static char guard_message[4200];
static size_t guard_message_len;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    (void)context;
    uintptr_t addr = (uintptr_t)info->si_addr;
    if (addr >= guard_start && addr < guard_end) {
        ssize_t written = write(STDERR_FILENO, guard_message, guard_message_len);
        (void)written;
        _exit(1);
    }
    signal(sig, SIG_DFL); /* not the model file: the default action, on return */
    raise(sig);
}

/* Catches SIGBUS in the model's mapping (the file truncated or rewritten
 * while greta runs) and names the file instead of dying without a word. */
static void guard_model_file(const greta_model *model, const char *path) {
    const void *start;
    size_t len;
    if (!greta_model_mapping(model, &start, &len)) return;
    int n = snprintf(guard_message, sizeof guard_message,
                     "greta: error: %s: the model file changed while in use (truncated or rewritten); it must not "
                     "change while greta runs\n", path);
    guard_message_len = n < 0 ? 0 : (size_t)n < sizeof guard_message ? (size_t)n : sizeof guard_message - 1;
    guard_start = (uintptr_t)start;
    guard_end = guard_start + len;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

greta_model *cli_load_model(const char *path) {
    if (!path) {
        cli_error("no model: pass -m MODEL.gguf");
        return NULL;
    }
    load_progress lp = {path, cli_now(), load_notice_seconds(), isatty(STDERR_FILENO) == 1, false, false};
    greta_model_params params = greta_model_default_params();
    params.progress = draw_progress;
    params.progress_user_data = &lp;
    greta_model *model = NULL;
    char err[512] = "";
    greta_status st = greta_model_load(path, &params, &model, err, sizeof err);
    if (lp.drawn) fputc('\n', stderr); /* the bar stays: it names the file */
    if (st != GRETA_OK) {
        cli_error("%s: %s", path, err[0] ? err : greta_status_string(st));
        return NULL;
    }
    guard_model_file(model, path);
    return model;
}

greta_session *cli_new_session(greta_model *model, const cli_gen_options *o, bool logits_all) {
    greta_session_params sp = greta_session_default_params();
    if (o->n_ctx > 0) sp.n_ctx = o->n_ctx;
    sp.n_threads = o->n_threads;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online > 0 && sp.n_threads > online && !o->force_threads) {
        /* more threads than CPUs only spin (-t 512 on 2 cores ran at 0.3 tok/s) */
        fprintf(stderr, "greta: warning: -t %d is more than the %ld online CPUs; using %ld (--force-threads keeps %d)\n",
                sp.n_threads, online, online, sp.n_threads);
        sp.n_threads = (int32_t)online;
    }
    sp.backend = o->backend;
    sp.precision = o->precision;
    sp.kv_type = o->kv_type;
    sp.deterministic = o->deterministic;
    sp.seed = o->seed;
    sp.logits_all = logits_all;
    greta_session *session = NULL;
    char err[512] = "";
    greta_status st = greta_session_new(model, &sp, &session, err, sizeof err);
    if (st != GRETA_OK) {
        cli_error("session: %s", err[0] ? err : greta_status_string(st));
        return NULL;
    }
    if (!o->trace) {
        cli_error("trace: %s", o->trace_error);
        greta_session_free(session);
        return NULL;
    }
    if (greta_session_open_trace(session, o->trace, o->model_path, err, sizeof err) != GRETA_OK) {
        cli_error("%s", err);
        greta_session_free(session);
        return NULL;
    }
    return session;
}

bool cli_end_session(greta_session *session) {
    char err[512] = "";
    bool ok = greta_session_close_trace(session, err, sizeof err) == GRETA_OK;
    if (!ok) cli_error("%s", err);
    greta_session_free(session);
    return ok;
}

char *cli_read_file(const char *what, const char *path, size_t max_bytes, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("%s: %s: %s", what, path, strerror(errno));
        return NULL;
    }
    errno = 0;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n > max_bytes) break;
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int read_errno = errno;
    bool failed = !buf || ferror(f);
    if (f != stdin) fclose(f);
    if (failed) {
        /* fread sets errno on a failed read(2), e.g. EISDIR for a directory */
        cli_error("%s: %s: %s", what, path, !buf ? "out of memory" : read_errno ? strerror(read_errno) : "read error");
        free(buf);
        return NULL;
    }
    if (n > max_bytes) {
        cli_error("%s: %s: larger than %zu bytes (docs/cli.md)", what, path, max_bytes);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool cli_write_out(const char *text, size_t len) {
    if ((len && fwrite(text, 1, len, stdout) != len) || fflush(stdout) != 0) {
        cli_error("stdout: %s", strerror(errno));
        return false;
    }
    return true;
}

/* ---- generation ---- */

static bool append_text(cli_gen_result *r, const char *text, size_t len, size_t *cap) {
    if (r->text_len + len + 1 > *cap) {
        size_t new_cap = *cap ? *cap : 256;
        while (new_cap < r->text_len + len + 1) new_cap *= 2;
        char *grown = realloc(r->text, new_cap);
        if (!grown) return false;
        r->text = grown;
        *cap = new_cap;
    }
    memcpy(r->text + r->text_len, text, len);
    r->text_len += len;
    r->text[r->text_len] = '\0';
    return true;
}

/* Longest name written inside the --dump-logits directory ("/step_NNNNN.bin",
 * with room for more digits). */
#define DUMP_NAME_MAX 32

bool cli_dump_logits_open(const char *dir) {
    char path[4096];
    if (strlen(dir) + DUMP_NAME_MAX >= sizeof path) { /* file names inside would be cut short */
        cli_error("--dump-logits: the directory path is too long (%zu bytes; at most %zu)", strlen(dir),
                  sizeof path - DUMP_NAME_MAX - 1);
        return false;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error("--dump-logits: %s: %s", dir, strerror(errno));
        return false;
    }
    snprintf(path, sizeof path, "%s/index.jsonl", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("--dump-logits: %s: %s", path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* Writes DIR/step_NNNNN.bin (n_vocab little-endian float32) and appends a
 * line to DIR/index.jsonl. */
static bool dump_logits_step(const char *dir, int32_t step, int32_t pos, int32_t token,
                             const float *logits, int32_t n_vocab) {
    char path[4096], name[32];
    snprintf(name, sizeof name, "step_%05d.bin", step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    bool ok = f != NULL;
    for (int32_t i = 0; ok && i < n_vocab; i++) {
        uint32_t bits;
        memcpy(&bits, &logits[i], 4);
        unsigned char le[4] = {(unsigned char)bits, (unsigned char)(bits >> 8), (unsigned char)(bits >> 16),
                               (unsigned char)(bits >> 24)};
        ok = fwrite(le, 1, 4, f) == 4;
    }
    if (f && fclose(f) != 0) ok = false;
    if (ok) {
        snprintf(path, sizeof path, "%s/index.jsonl", dir);
        f = fopen(path, "a");
        ok = f && fprintf(f, "{\"step\":%d,\"pos\":%d,\"token_id\":%d,\"n_vocab\":%d,\"file\":\"%s\"}\n", step,
                          pos, token, n_vocab, name) > 0;
        if (f && fclose(f) != 0) ok = false;
    }
    if (!ok) cli_error("--dump-logits: %s: %s", path, strerror(errno));
    return ok;
}

/* The state of cli_generate's callbacks. */
typedef struct {
    greta_session *session;
    cli_gen_result *result;
    size_t text_cap;
    const char *dump_dir;  /* --dump-logits DIR, NULL = off */
    int32_t dump_step;
    int32_t n_vocab;
    bool failed;           /* a callback printed an error */
} gen_sink;

static bool on_piece(const char *text, size_t len, void *user_data) {
    gen_sink *sink = user_data;
    if (!append_text(sink->result, text, len, &sink->text_cap)) {
        cli_error("generation: out of memory");
        sink->failed = true;
        return false;
    }
    if (cli_write_out(text, len)) return true;
    sink->failed = true; /* a failed write (disk full, closed pipe) ends generation; cli_write_out said why */
    return false;
}

static bool on_token(greta_session *session, int32_t token, void *user_data) {
    gen_sink *sink = user_data;
    const float *logits = greta_logits(session);
    if (logits && dump_logits_step(sink->dump_dir, sink->dump_step++, greta_pos(session) - 1, token, logits,
                                   sink->n_vocab))
        return true;
    sink->failed = true;
    return false;
}

bool cli_generate(greta_model *model, greta_session *session, const cli_gen_options *o, const int32_t *ids,
                  size_t n_ids, cli_gen_result *r) {
    memset(r, 0, sizeof *r);
    gen_sink sink = {session, r, 0, o->dump_logits_dir, 0, 0, false};
    if (!append_text(r, "", 0, &sink.text_cap)) {
        cli_error("generation: out of memory");
        return false;
    }
    greta_model_info info;
    greta_model_get_info(model, &info);
    if (!info.has_vocab && o->n_stops > 0) { /* without a vocabulary the generated ids are printed as numbers */
        cli_error("--stop: the model has no vocabulary (stop strings need one)");
        return false;
    }
    greta_generate_params gp = greta_generate_default_params();
    gp.sampling = o->sampling;
    gp.max_tokens = o->n_predict;
    gp.stops = o->stops;
    gp.n_stops = o->n_stops;
    gp.render_special = o->render_special;
    gp.on_piece = on_piece;
    gp.on_token = o->dump_logits_dir ? on_token : NULL;
    gp.user_data = &sink;
    sink.n_vocab = info.vocab_size;
    greta_status st = greta_generate(session, ids, n_ids, &gp, &r->r);
    if (st != GRETA_OK) cli_error("%s", greta_session_error(session));
    return st == GRETA_OK && !sink.failed;
}
