/* trace.c: StageTrace, the per-stage recorder (design.md section 4,
 * docs/trace.md): configuration from the environment and flags, selection
 * of (phase, layer, point), statistics and hash over the whole row, and
 * output as JSONL or as records kept in memory. */
#include "engine/trace.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "greta.h"

static const char *const point_names[TP_COUNT] = {
    "x_in",     "attn_norm",  "q",        "k",         "v",           "q_rope",      "k_rope",
    "attn_out", "wo_out",     "x_after_attn", "ffn_norm", "ffn_gate", "ffn_up",      "ffn_act",
    "mlp_out",  "x_after_mlp", "final_norm", "lm_head_in", "logits",
};

const char *trace_point_name(trace_point point) {
    if ((int)point < 0 || point >= TP_COUNT) return "?";
    return point_names[point];
}

int trace_point_from_name(const char *name) {
    for (int p = 0; p < TP_COUNT; p++)
        if (strcmp(name, point_names[p]) == 0) return p;
    return -1;
}

static bool is_final_point(int point) {
    return point == TP_FINAL_NORM || point == TP_LM_HEAD_IN || point == TP_LOGITS;
}

/* ------------------------------------------------------------------ */
/* List parsing: "a,b,c" split on commas, surrounding spaces ignored     */
/* ------------------------------------------------------------------ */

/* Calls item(token) for each comma-separated token of spec; stops at the
 * first that returns non-zero. Empty tokens are an error. */
typedef int (*item_fn)(const char *token, void *ctx, char *err, size_t err_size);

static int for_each_item(const char *spec, item_fn item, void *ctx, const char *what, char *err,
                         size_t err_size) {
    char token[TRACE_SPEC_MAX];
    const char *p = spec;
    int count = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && isspace((unsigned char)*p)) p++, len--;
        while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
        if (len == 0) {
            format_error(err, err_size, "empty item in %s list '%s'", what, spec);
            return -1;
        }
        if (len >= sizeof token) {
            format_error(err, err_size, "%s list item too long", what);
            return -1;
        }
        memcpy(token, p, len);
        token[len] = '\0';
        if (item(token, ctx, err, err_size) != 0) return -1;
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    return count > 0 ? 0 : -1;
}

static bool parse_int64(const char *text, int64_t *out) {
    if (!*text || !(isdigit((unsigned char)*text) || *text == '-' || *text == '+')) return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') return false;
    *out = v;
    return true;
}

/* Layers: "all", N, or "A-B" (inclusive). ctx: bool mask[n] or NULL (syntax only). */
typedef struct {
    bool *mask;
    int n_layers;
} layer_ctx;

static int layer_item(const char *token, void *ctx_ptr, char *err, size_t err_size) {
    layer_ctx *ctx = ctx_ptr;
    int64_t lo, hi;
    if (strcmp(token, "all") == 0) {
        for (int l = 0; ctx->mask && l < ctx->n_layers; l++) ctx->mask[l] = true;
        return 0;
    }
    const char *dash = strchr(token + 1, '-');
    if (dash) {
        char left[64];
        size_t len = (size_t)(dash - token);
        if (len >= sizeof left) len = sizeof left - 1;
        memcpy(left, token, len);
        left[len] = '\0';
        if (!parse_int64(left, &lo) || !parse_int64(dash + 1, &hi) || lo > hi) {
            format_error(err, err_size, "bad layer range '%s' (expected A-B with A <= B)", token);
            return -1;
        }
    } else if (parse_int64(token, &lo)) {
        hi = lo;
    } else {
        format_error(err, err_size, "bad layer '%s' (expected a number, A-B or all)", token);
        return -1;
    }
    if (lo < 0) {
        format_error(err, err_size, "layer %" PRId64 " out of range (layers start at 0)", lo);
        return -1;
    }
    if (ctx->mask) {
        if (hi >= ctx->n_layers) {
            format_error(err, err_size, "layer %" PRId64 " out of range: the model has %d layers (0-%d)",
                    hi, ctx->n_layers, ctx->n_layers - 1);
            return -1;
        }
        for (int64_t l = lo; l <= hi; l++) ctx->mask[l] = true;
    }
    return 0;
}

static int point_item(const char *token, void *ctx_ptr, char *err, size_t err_size) {
    bool *mask = ctx_ptr;
    if (strcmp(token, "all") == 0) {
        for (int p = 0; mask && p < TP_COUNT; p++) mask[p] = true;
        return 0;
    }
    int p = trace_point_from_name(token);
    if (p < 0) {
        format_error(err, err_size,
                "unknown trace point '%s' (points: x_in attn_norm q k v q_rope k_rope attn_out "
                "wo_out x_after_attn ffn_norm ffn_gate ffn_up ffn_act mlp_out x_after_mlp "
                "final_norm lm_head_in logits, or all)",
                token);
        return -1;
    }
    if (mask) mask[p] = true;
    return 0;
}

/* Phase selection. */
#define TRACE_MAX_DECODE_STEPS 256
typedef struct {
    bool all, prefill, prefill_last, decode;
    int n_steps;
    int64_t steps[TRACE_MAX_DECODE_STEPS];
} phase_sel;

static bool decode_step_from_name(const char *name, int64_t *step) {
    if (strncmp(name, "decode", 6) != 0 || !name[6]) return false;
    for (const char *c = name + 6; *c; c++)
        if (!isdigit((unsigned char)*c)) return false;
    if (strlen(name + 6) > 15) return false;
    *step = strtoll(name + 6, NULL, 10);
    return true;
}

bool trace_phase_name_valid(const char *name) {
    int64_t step;
    return strcmp(name, "prefill") == 0 || strcmp(name, "prefill_last") == 0 ||
           strcmp(name, "decode") == 0 || strcmp(name, "all") == 0 ||
           decode_step_from_name(name, &step);
}

static int phase_item(const char *token, void *ctx_ptr, char *err, size_t err_size) {
    phase_sel *sel = ctx_ptr;
    int64_t step;
    if (strcmp(token, "all") == 0) sel->all = true;
    else if (strcmp(token, "prefill") == 0) sel->prefill = true;
    else if (strcmp(token, "prefill_last") == 0) sel->prefill_last = true;
    else if (strcmp(token, "decode") == 0) sel->decode = true;
    else if (decode_step_from_name(token, &step)) {
        if (sel->n_steps >= TRACE_MAX_DECODE_STEPS) {
            format_error(err, err_size, "too many decode<N> phases (at most %d)", TRACE_MAX_DECODE_STEPS);
            return -1;
        }
        sel->steps[sel->n_steps++] = step;
    } else {
        format_error(err, err_size,
                "unknown trace phase '%s' (phases: prefill, prefill_last, decode<N>, decode, all)",
                token);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */

void trace_config_init(trace_config *config) {
    memset(config, 0, sizeof *config);
    strcpy(config->layers, "all");
    strcpy(config->points, "all");
    strcpy(config->phases, "all");
    config->sample = TRACE_DEFAULT_SAMPLE;
    config->top_k = TRACE_DEFAULT_TOPK;
}

static int copy_spec(char *dst, size_t cap, const char *value, const char *what, char *err,
                     size_t err_size) {
    if (strlen(value) >= cap) {
        format_error(err, err_size, "%s too long (at most %zu bytes)", what, cap - 1);
        return -1;
    }
    strcpy(dst, value);
    return 0;
}

int trace_config_set(trace_config *config, const char *key, const char *value, char *err,
                     size_t err_size) {
    if (!value) {
        format_error(err, err_size, "trace %s: missing value", key);
        return -1;
    }
    if (strcmp(key, "out") == 0) {
        if (!*value) {
            format_error(err, err_size, "trace output path is empty");
            return -1;
        }
        if (copy_spec(config->out_path, sizeof config->out_path, value, "trace output path", err,
                      err_size) != 0)
            return -1;
        config->enabled = true;
        return 0;
    }
    if (strcmp(key, "layers") == 0) {
        layer_ctx ctx = {NULL, 0};
        if (for_each_item(value, layer_item, &ctx, "layer", err, err_size) != 0) return -1;
        return copy_spec(config->layers, sizeof config->layers, value, "layer list", err, err_size);
    }
    if (strcmp(key, "points") == 0) {
        if (for_each_item(value, point_item, NULL, "point", err, err_size) != 0) return -1;
        return copy_spec(config->points, sizeof config->points, value, "point list", err, err_size);
    }
    if (strcmp(key, "phases") == 0) {
        phase_sel sel;
        memset(&sel, 0, sizeof sel);
        if (for_each_item(value, phase_item, &sel, "phase", err, err_size) != 0) return -1;
        return copy_spec(config->phases, sizeof config->phases, value, "phase list", err, err_size);
    }
    if (strcmp(key, "sample") == 0) {
        int64_t v;
        if (!parse_int64(value, &v) || v < 0) {
            format_error(err, err_size, "bad trace sample '%s' (expected a count >= 0; 0 = whole row)",
                    value);
            return -1;
        }
        config->sample = v;
        return 0;
    }
    if (strcmp(key, "top_k") == 0) {
        int64_t v;
        if (!parse_int64(value, &v) || v < 1 || v > TRACE_TOPK_MAX) {
            format_error(err, err_size, "bad trace top-k '%s' (expected 1..%d)", value, TRACE_TOPK_MAX);
            return -1;
        }
        config->top_k = (int)v;
        return 0;
    }
    if (strcmp(key, "prompt_id") == 0)
        return copy_spec(config->prompt_id, sizeof config->prompt_id, value, "prompt id", err,
                         err_size);
    format_error(err, err_size, "unknown trace setting '%s'", key);
    return -1;
}

int trace_config_from_env(trace_config *config, char *err, size_t err_size) {
    static const struct {
        const char *var, *key;
    } vars[] = {
        {"GRETA_TRACE_STAGE_OUT", "out"},       {"GRETA_TRACE_STAGE_LAYERS", "layers"},
        {"GRETA_TRACE_STAGE_POINTS", "points"}, {"GRETA_TRACE_STAGE_PHASES", "phases"},
        {"GRETA_TRACE_STAGE_SAMPLE", "sample"}, {"GRETA_TRACE_STAGE_TOPK", "top_k"},
        {"GRETA_TRACE_PROMPT_ID", "prompt_id"},
    };
    char inner[512];
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *value = getenv(vars[i].var);
        if (!value) continue;
        if (trace_config_set(config, vars[i].key, value, inner, sizeof inner) != 0) {
            format_error(err, err_size, "%s: %s", vars[i].var, inner);
            return -1;
        }
    }
    const char *stage = getenv("GRETA_TRACE_STAGE");
    if (stage) {
        if (strcmp(stage, "1") == 0) {
            config->enabled = true;
        } else if (strcmp(stage, "0") == 0 || !*stage) {
            config->enabled = false;
        } else {
            format_error(err, err_size, "GRETA_TRACE_STAGE: bad value '%s' (expected 1 or 0)", stage);
            return -1;
        }
    }
    if (config->enabled && !config->in_memory && !config->out_path[0]) {
        format_error(err, err_size,
                "GRETA_TRACE_STAGE=1 needs GRETA_TRACE_STAGE_OUT=path.jsonl (or --trace FILE)");
        return -1;
    }
    return 0;
}

int trace_parse_flag(trace_config *config, int argc, char **argv, int *i, char *err,
                     size_t err_size) {
    static const struct {
        const char *flag, *key;
    } flags[] = {
        {"--trace", "out"},           {"--trace-layers", "layers"}, {"--trace-points", "points"},
        {"--trace-phases", "phases"}, {"--trace-sample", "sample"}, {"--trace-top-k", "top_k"},
        {"--trace-prompt-id", "prompt_id"},
    };
    const char *arg = argv[*i];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        size_t len = strlen(flags[f].flag);
        const char *value;
        int used;
        if (strcmp(arg, flags[f].flag) == 0) {
            if (*i + 1 >= argc) {
                format_error(err, err_size, "%s: missing value", flags[f].flag);
                return -1;
            }
            value = argv[*i + 1];
            used = 2;
        } else if (strncmp(arg, flags[f].flag, len) == 0 && arg[len] == '=') {
            value = arg + len + 1;
            used = 1;
        } else {
            continue;
        }
        char inner[512];
        if (trace_config_set(config, flags[f].key, value, inner, sizeof inner) != 0) {
            format_error(err, err_size, "%s: %s", flags[f].flag, inner);
            return -1;
        }
        *i += used;
        return 1;
    }
    return 0;
}

const char *trace_flags_help(void) {
    return "  --trace FILE          write a StageTrace (JSONL) to FILE (env GRETA_TRACE_STAGE_OUT)\n"
           "  --trace-layers L      layers: 0,1,2,15 / 0-3 / all (default all)\n"
           "  --trace-points P      points: x_in,attn_out,...,logits / all (default all)\n"
           "  --trace-phases P      prefill,prefill_last,decode0,decode / all (default all)\n"
           "  --trace-sample N      values kept per row; 0 = the whole row (default 16)\n"
           "  --trace-top-k K       top-k ids/values of logits records (default 10)\n"
           "  --trace-prompt-id ID  copied into every record (env GRETA_TRACE_PROMPT_ID)\n";
}

const char *trace_build_string(void) {
    return "greta " GRETA_VERSION " (gcc " __VERSION__ ")";
}

/* ------------------------------------------------------------------ */
/* Record sets                                                          */
/* ------------------------------------------------------------------ */

void trace_set_init(trace_set *set) {
    memset(set, 0, sizeof *set);
    set->n_layers = -1;
    set->sample = -1;
}

void trace_set_free(trace_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->count; i++) {
        free(set->records[i].values);
        free(set->records[i].top_ids);
        free(set->records[i].top_values);
    }
    free(set->records);
    set->records = NULL;
    set->count = set->capacity = 0;
}

int trace_set_add(trace_set *set, const trace_record *record) {
    if (set->count == set->capacity) {
        size_t cap = set->capacity ? set->capacity * 2 : 256;
        trace_record *grown = realloc(set->records, cap * sizeof *grown);
        if (!grown) return -1;
        set->records = grown;
        set->capacity = cap;
    }
    trace_record copy = *record;
    copy.values = NULL;
    copy.top_ids = NULL;
    copy.top_values = NULL;
    if (record->n_values > 0) {
        copy.values = malloc((size_t)record->n_values * sizeof *copy.values);
        if (!copy.values) return -1;
        memcpy(copy.values, record->values, (size_t)record->n_values * sizeof *copy.values);
    }
    if (record->n_top > 0) {
        copy.top_ids = malloc((size_t)record->n_top * sizeof *copy.top_ids);
        copy.top_values = malloc((size_t)record->n_top * sizeof *copy.top_values);
        if (!copy.top_ids || !copy.top_values) {
            free(copy.values);
            free(copy.top_ids);
            free(copy.top_values);
            return -1;
        }
        memcpy(copy.top_ids, record->top_ids, (size_t)record->n_top * sizeof *copy.top_ids);
        memcpy(copy.top_values, record->top_values, (size_t)record->n_top * sizeof *copy.top_values);
    }
    set->records[set->count++] = copy;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The tracer                                                           */
/* ------------------------------------------------------------------ */

struct trace {
    trace_config config;
    int n_layers;
    char backend[32];
    bool *layer_on;             /* [n_layers] */
    bool point_on[TP_COUNT];
    phase_sel phases;
    FILE *out;                  /* file mode */
    bool owns_out;              /* not stdout */
    trace_set set;              /* memory mode */
    pthread_mutex_t lock;
    bool failed;                /* a write or allocation failed */
    char error[256];
};

uint64_t trace_hash_f32(const float *values, int64_t n) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        for (int b = 0; b < 4; b++) { /* little-endian byte order, whatever the host */
            hash ^= (bits >> (8 * b)) & 0xffu;
            hash *= 0x100000001b3ULL;
        }
    }
    return hash;
}

static bool phase_matches(const phase_sel *sel, const trace_row *row) {
    if (sel->all) return true;
    if (row->is_prefill) return sel->prefill || (sel->prefill_last && row->is_last);
    if (sel->decode) return true;
    for (int i = 0; i < sel->n_steps; i++)
        if (sel->steps[i] == row->decode_step) return true;
    return false;
}

bool trace_wants(const trace *tracer, int layer, trace_point point, const trace_row *row) {
    if (!tracer || !row || (int)point < 0 || point >= TP_COUNT) return false;
    if (!tracer->point_on[point]) return false;
    if (is_final_point(point)) {
        if (layer != tracer->n_layers) return false;
    } else if (layer < 0 || layer >= tracer->n_layers || !tracer->layer_on[layer]) {
        return false;
    }
    return phase_matches(&tracer->phases, row);
}

/* JSON string: escapes quotes, backslashes and control bytes; invalid
 * UTF-8 bytes become U+FFFD so the line always parses. */
static void put_json_string(FILE *out, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc((int)c, out);
            p++;
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, out);
            p++;
        } else {
            int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            uint32_t cp = len == 4 ? (c & 0x07u) : len == 3 ? (c & 0x0fu) : (c & 0x1fu);
            bool ok = len > 0 && c < 0xf5;
            for (int k = 1; ok && k < len; k++) {
                if ((p[k] & 0xc0) != 0x80) ok = false;
                else cp = (cp << 6) | (p[k] & 0x3fu);
            }
            if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                       (len == 4 && (cp < 0x10000 || cp > 0x10ffff))))
                ok = false;
            if (ok) {
                fwrite(p, 1, (size_t)len, out);
                p += len;
            } else {
                fputs("\\ufffd", out);
                p++;
            }
        }
    }
    fputc('"', out);
}

/* A number that reads back exactly: float32 with 9 significant digits,
 * doubles with 17; non-finite values as the strings "NaN", "Infinity",
 * "-Infinity" (JSON has no such numbers). */
static void put_number(FILE *out, double v, bool is_f64) {
    if (isnan(v)) fputs("\"NaN\"", out);
    else if (isinf(v)) fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", out);
    else fprintf(out, is_f64 ? "%.17g" : "%.9g", v);
}

/* Statistics as doubles; NaN (printed null) when the row has no finite value. */
static void put_stat(FILE *out, const char *name, double v) {
    fprintf(out, ",\"%s\":", name);
    if (isfinite(v)) fprintf(out, "%.17g", v);
    else fputs("null", out);
}

static void write_header(trace *t, const trace_model_info *info) {
    FILE *out = t->out;
    fputs("{\"event\":\"stage_trace_header\",\"version\":1,\"model\":", out);
    put_json_string(out, info->model_path ? info->model_path : "");
    fputs(",\"backend\":", out);
    put_json_string(out, t->backend);
    fputs(",\"precision\":", out);
    put_json_string(out, info->precision ? info->precision : "");
    fputs(",\"build\":", out);
    put_json_string(out, info->build ? info->build : trace_build_string());
    fprintf(out, ",\"n_layers\":%d,\"config\":{\"layers\":", t->n_layers);
    put_json_string(out, t->config.layers);
    fputs(",\"points\":", out);
    put_json_string(out, t->config.points);
    fputs(",\"phases\":", out);
    put_json_string(out, t->config.phases);
    fprintf(out, ",\"sample\":%" PRId64 ",\"top_k\":%d,\"prompt_id\":", t->config.sample,
            t->config.top_k);
    put_json_string(out, t->config.prompt_id);
    fputs("}}\n", out);
}

greta_status trace_open(const trace_config *config, const trace_model_info *info, trace **out, char *err,
                        size_t err_size) {
    *out = NULL;
    if (err && err_size) err[0] = '\0';
    if (!config || !config->enabled) return GRETA_OK;
    if (!info || info->n_layers <= 0) {
        format_error(err, err_size, "trace: the model's layer count is unknown");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    trace *t = calloc(1, sizeof *t);
    if (!t) {
        format_error(err, err_size, "trace: out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    t->config = *config;
    t->n_layers = info->n_layers;
    snprintf(t->backend, sizeof t->backend, "%s", info->backend ? info->backend : "");
    trace_set_init(&t->set);
    pthread_mutex_init(&t->lock, NULL);
    t->layer_on = calloc((size_t)t->n_layers, sizeof *t->layer_on);
    if (!t->layer_on) {
        format_error(err, err_size, "trace: out of memory");
        trace_close(t, NULL, 0);
        return GRETA_ERR_NO_MEMORY;
    }
    char inner[512];
    layer_ctx lctx = {t->layer_on, t->n_layers};
    if (for_each_item(config->layers, layer_item, &lctx, "layer", inner, sizeof inner) != 0) {
        format_error(err, err_size, "trace: layers '%s': %s", config->layers, inner);
        trace_close(t, NULL, 0);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (for_each_item(config->points, point_item, t->point_on, "point", inner, sizeof inner) != 0 ||
        for_each_item(config->phases, phase_item, &t->phases, "phase", inner, sizeof inner) != 0) {
        format_error(err, err_size, "trace: %s", inner);
        trace_close(t, NULL, 0);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (config->in_memory) {
        snprintf(t->set.model, sizeof t->set.model, "%s", info->model_path ? info->model_path : "");
        snprintf(t->set.backend, sizeof t->set.backend, "%s", t->backend);
        snprintf(t->set.precision, sizeof t->set.precision, "%s",
                 info->precision ? info->precision : "");
        snprintf(t->set.build, sizeof t->set.build, "%s",
                 info->build ? info->build : trace_build_string());
        snprintf(t->set.prompt_id, sizeof t->set.prompt_id, "%s", config->prompt_id);
        t->set.n_layers = t->n_layers;
        t->set.sample = config->sample;
        *out = t;
        return GRETA_OK;
    }
    if (!config->out_path[0]) {
        format_error(err, err_size, "trace: no output file (GRETA_TRACE_STAGE_OUT or --trace FILE)");
        trace_close(t, NULL, 0);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(config->out_path, "-") == 0) {
        t->out = stdout;
    } else {
        t->out = fopen(config->out_path, "w");
        if (!t->out) {
            format_error(err, err_size, "trace: cannot create '%s': %s", config->out_path,
                    strerror(errno));
            trace_close(t, NULL, 0);
            return GRETA_ERR_IO;
        }
        t->owns_out = true;
    }
    write_header(t, info);
    *out = t;
    return GRETA_OK;
}

greta_status trace_close(trace *tracer, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!tracer) return GRETA_OK;
    greta_status status = GRETA_OK;
    if (tracer->out) {
        if (fflush(tracer->out) != 0 || ferror(tracer->out)) {
            if (!tracer->failed) snprintf(tracer->error, sizeof tracer->error, "%s", strerror(errno));
            tracer->failed = true;
        }
        if (tracer->owns_out && fclose(tracer->out) != 0 && !tracer->failed) {
            snprintf(tracer->error, sizeof tracer->error, "%s", strerror(errno));
            tracer->failed = true;
        }
    }
    if (tracer->failed) {
        if (tracer->config.in_memory) {
            format_error(err, err_size, "trace: collecting records failed: %s", tracer->error);
            status = GRETA_ERR_NO_MEMORY;
        } else {
            format_error(err, err_size, "trace: writing '%s' failed: %s", tracer->config.out_path,
                    tracer->error);
            status = GRETA_ERR_IO;
        }
    }
    trace_set_free(&tracer->set);
    free(tracer->layer_on);
    pthread_mutex_destroy(&tracer->lock);
    free(tracer);
    return status;
}

const trace_set *trace_records(const trace *tracer) {
    if (!tracer || !tracer->config.in_memory) return NULL;
    return &tracer->set;
}

int trace_take_records(trace *tracer, trace_set *out) {
    if (!tracer || !tracer->config.in_memory) return -1;
    pthread_mutex_lock(&tracer->lock);
    *out = tracer->set;
    tracer->set.records = NULL;
    tracer->set.count = tracer->set.capacity = 0;
    pthread_mutex_unlock(&tracer->lock);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Recording one row                                                    */
/* ------------------------------------------------------------------ */

static void phase_name(const trace_row *row, char *out, size_t cap) {
    if (row->is_prefill) snprintf(out, cap, "%s", row->is_last ? "prefill_last" : "prefill");
    else snprintf(out, cap, "decode%" PRId64, row->decode_step);
}

/* Value i of the row as a double (exact for both float32 and float64). */
static double row_value(const float *f32, const double *f64, int64_t i) {
    return f32 ? (double)f32[i] : f64[i];
}

/* Keeps the k largest values, highest first, ties to the lower id. NaNs are skipped. */
static int top_k(const float *f32, const double *f64, int64_t n, int k, int32_t *ids, double *vals) {
    int count = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = row_value(f32, f64, i);
        if (isnan(v)) continue;
        if (count == k && v <= vals[count - 1]) continue;
        int at = count < k ? count++ : k - 1;
        while (at > 0 && vals[at - 1] < v) {
            vals[at] = vals[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        vals[at] = v;
        ids[at] = (int32_t)i;
    }
    return count;
}

static void fill_record(const trace *t, int layer, trace_point point, const trace_row *row,
                        const float *f32, const double *f64, int64_t n, trace_record *rec) {
    memset(rec, 0, sizeof *rec);
    phase_name(row, rec->phase, sizeof rec->phase);
    rec->point = point;
    rec->layer = layer;
    rec->step = row->is_prefill ? -1 : row->decode_step;
    rec->pos_id = row->pos_id;
    rec->token_id = row->token_id;
    rec->token_index = row->token_index;
    rec->seq_len = row->seq_len;
    rec->tokens_total = row->tokens_total;
    rec->is_f64 = f64 != NULL;
    rec->n = n;
    double lo = INFINITY, hi = -INFINITY, sum = 0, sum_sq = 0;
    int64_t finite = 0;
    if (f32) {
        rec->hash = trace_hash_f32(f32, n);
    } else {
        uint64_t hash = 0xcbf29ce484222325ULL;
        for (int64_t i = 0; i < n; i++) { /* hash of the float32-rounded values */
            float r = (float)f64[i];
            uint32_t bits;
            memcpy(&bits, &r, sizeof bits);
            for (int b = 0; b < 4; b++) {
                hash ^= (bits >> (8 * b)) & 0xffu;
                hash *= 0x100000001b3ULL;
            }
        }
        rec->hash = hash;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = row_value(f32, f64, i);
        if (isnan(v)) {
            rec->nan++;
        } else if (isinf(v)) {
            rec->inf++;
        } else {
            finite++;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
            sum += v;
            sum_sq += v * v;
        }
    }
    rec->min = finite ? lo : NAN;
    rec->max = finite ? hi : NAN;
    rec->mean = finite ? sum / (double)finite : NAN;
    rec->rms = finite ? sqrt(sum_sq / (double)finite) : NAN;
    int64_t keep = t->config.sample == 0 || t->config.sample > n ? n : t->config.sample;
    rec->n_values = keep;
}

static void write_record(trace *t, const trace_record *rec, const float *f32, const double *f64) {
    FILE *out = t->out;
    fputs("{\"event\":\"stage_trace\",\"prompt_id\":", out);
    put_json_string(out, t->config.prompt_id);
    fprintf(out,
            ",\"phase\":\"%s\",\"point\":\"%s\",\"layer\":%d,\"step\":%" PRId64 ",\"pos_id\":%" PRId64
            ",\"seq_len\":%" PRId64 ",\"tokens_total\":%" PRId64 ",\"token_index\":%" PRId64
            ",\"token_id\":%" PRId32 ",\"backend\":",
            rec->phase, trace_point_name(rec->point), rec->layer, rec->step, rec->pos_id, rec->seq_len,
            rec->tokens_total, rec->token_index, rec->token_id);
    put_json_string(out, t->backend);
    fprintf(out, ",\"dtype\":\"%s\",\"n\":%" PRId64 ",\"hash\":\"%016" PRIx64 "\"",
            rec->is_f64 ? "f64" : "f32", rec->n, rec->hash);
    put_stat(out, "min", rec->min);
    put_stat(out, "max", rec->max);
    put_stat(out, "mean", rec->mean);
    put_stat(out, "rms", rec->rms);
    fprintf(out, ",\"nan\":%" PRId64 ",\"inf\":%" PRId64 ",\"sample\":[", rec->nan, rec->inf);
    for (int64_t i = 0; i < rec->n_values; i++) {
        if (i) fputc(',', out);
        put_number(out, row_value(f32, f64, i), rec->is_f64);
    }
    fputc(']', out);
    if (rec->n_top > 0) {
        fputs(",\"top_k_ids\":[", out);
        for (int i = 0; i < rec->n_top; i++) fprintf(out, "%s%" PRId32, i ? "," : "", rec->top_ids[i]);
        fputs("],\"top_k_values\":[", out);
        for (int i = 0; i < rec->n_top; i++) {
            if (i) fputc(',', out);
            put_number(out, rec->top_values[i], rec->is_f64);
        }
        fputc(']', out);
    }
    fputs("}\n", out);
    if (ferror(out) && !t->failed) {
        t->failed = true;
        snprintf(t->error, sizeof t->error, "%s", strerror(errno));
    }
}

static void record_row(trace *t, int layer, trace_point point, const trace_row *row,
                       const float *f32, const double *f64, int64_t n) {
    if (!trace_wants(t, layer, point, row) || n < 0 || (n > 0 && !f32 && !f64)) return;
    trace_record rec;
    int32_t top_ids[TRACE_TOPK_MAX];
    double top_values[TRACE_TOPK_MAX];
    fill_record(t, layer, point, row, f32, f64, n, &rec);
    if (point == TP_LOGITS) {
        rec.n_top = top_k(f32, f64, n, t->config.top_k, top_ids, top_values);
        rec.top_ids = top_ids;
        rec.top_values = top_values;
    }
    pthread_mutex_lock(&t->lock);
    if (t->config.in_memory) {
        double *values = malloc((size_t)(rec.n_values > 0 ? rec.n_values : 1) * sizeof *values);
        if (values) {
            for (int64_t i = 0; i < rec.n_values; i++) values[i] = row_value(f32, f64, i);
            rec.values = values;
            if (trace_set_add(&t->set, &rec) != 0 && !t->failed) {
                t->failed = true;
                snprintf(t->error, sizeof t->error, "out of memory");
            }
            free(values);
        } else if (!t->failed) {
            t->failed = true;
            snprintf(t->error, sizeof t->error, "out of memory");
        }
    } else {
        write_record(t, &rec, f32, f64);
    }
    pthread_mutex_unlock(&t->lock);
}

void trace_record_f32(trace *tracer, int layer, trace_point point, const trace_row *row,
                      const float *values, int64_t n) {
    record_row(tracer, layer, point, row, values, NULL, n);
}

void trace_record_f64(trace *tracer, int layer, trace_point point, const trace_row *row,
                      const double *values, int64_t n) {
    record_row(tracer, layer, point, row, NULL, values, n);
}
