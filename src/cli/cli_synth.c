/* cli_synth.c: `greta synth` - write a Llama GGUF model with random weights. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tools/synth.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: greta synth (--shape NAME | --dim D --ffn F --layers L --heads H --vocab V)\n"
            "                   [--kv-heads K] [--ctx C] [--rope-base B] [--rms-eps E] [--tied | --untied]\n"
            "                   [--rope-llama3 F] [--pre NAME] [--no-vocab] [--type TYPE] [--seed S] [--threads N] [--quiet]\n"
            "                   -o FILE\n"
            "\n"
            "Writes a Llama-architecture GGUF model with seeded random weights and a small\n"
            "byte-level BPE vocabulary with a ChatML template (docs/synth.md).\n"
            "  --shape NAME   preset: %s (flags after it override its values)\n"
            "  --type TYPE    %s (default F16)\n"
            "  --rope-llama3 F  llama3 RoPE scaling with factor F (writes rope_freqs.weight; 0 = none)\n"
            "  --seed S       generator seed (default 1); same options, same file bytes\n"
            "  --threads N    worker threads (default: all CPUs; the output does not depend on it)\n"
            "  --no-vocab     no vocabulary: tokenizer.ggml.model = \"none\" (runs on token ids only)\n"
            "  --quiet, -q    no progress line per tensor (printed to stderr only on a terminal)\n",
            synth_preset_list(), quantize_target_list());
}

static bool parse_i64(const char *flag, const char *text, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        cli_error("synth: %s: '%s' is not an integer", flag, text);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_f64(const char *flag, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0') {
        cli_error("synth: %s: '%s' is not a number", flag, text);
        return false;
    }
    *out = v;
    return true;
}

/* Which required dimensions were given, for custom shapes. */
typedef struct {
    bool shape, dim, ffn, layers, heads, kv_heads, vocab;
} given_flags;

static int64_t *dim_flag(synth_shape *s, given_flags *g, const char *flag) {
    if (strcmp(flag, "--dim") == 0) return g->dim = true, &s->dim;
    if (strcmp(flag, "--ffn") == 0) return g->ffn = true, &s->ffn;
    if (strcmp(flag, "--layers") == 0) return g->layers = true, &s->n_layers;
    if (strcmp(flag, "--heads") == 0) return g->heads = true, &s->n_heads;
    if (strcmp(flag, "--kv-heads") == 0) return g->kv_heads = true, &s->n_kv_heads;
    if (strcmp(flag, "--vocab") == 0) return g->vocab = true, &s->vocab;
    if (strcmp(flag, "--ctx") == 0) return &s->ctx;
    return NULL;
}

/* The flags besides the dimensions that take a value. */
static bool takes_value(const char *flag) {
    static const char *const names[] = {"--shape",   "--type", "--seed", "--threads", "--rope-base",
                                        "--rms-eps", "--pre",  "-o",     "--output", "--rope-llama3"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(flag, names[k]) == 0) return true;
    return false;
}

int cli_synth(int argc, char **argv) {
    synth_options o;
    memset(&o, 0, sizeof o);
    o.shape = synth_shape_defaults();
    o.seed = 1;
    quantize_target_find("F16", &o.target);
    o.log = isatty(STDERR_FILENO) ? stderr : NULL; /* progress only for a person watching */
    given_flags g = {0};
    const char *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(flag, "--quiet") == 0 || strcmp(flag, "-q") == 0) {
            o.log = NULL;
            continue;
        }
        if (strcmp(flag, "--no-vocab") == 0) {
            o.no_vocab = true;
            continue;
        }
        if (strcmp(flag, "--tied") == 0 || strcmp(flag, "--untied") == 0) {
            o.shape.tied = strcmp(flag, "--tied") == 0;
            continue;
        }
        if (flag[0] != '-') {
            cli_error("synth: unexpected argument '%s' (try 'greta synth --help')", flag);
            return 2;
        }
        int64_t *dim = dim_flag(&o.shape, &g, flag);
        if (!dim && !takes_value(flag)) {
            cli_error("synth: unknown option '%s' (try 'greta synth --help')", flag);
            return 2;
        }
        if (i + 1 >= argc) {
            cli_error("synth: %s needs a value", flag);
            return 2;
        }
        const char *value = argv[++i];
        int64_t n = 0;
        if (dim) {
            if (!parse_i64(flag, value, dim)) return 2;
        } else if (strcmp(flag, "--shape") == 0) {
            if (!synth_preset(value, &o.shape)) {
                cli_error("synth: unknown shape '%s' (known: %s)", value, synth_preset_list());
                return 2;
            }
            g.shape = true;
        } else if (strcmp(flag, "--type") == 0) {
            if (!quantize_target_find(value, &o.target)) {
                cli_error("synth: unknown type '%s' (known: %s)", value, quantize_target_list());
                return 2;
            }
        } else if (strcmp(flag, "--seed") == 0) {
            if (!parse_i64(flag, value, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (strcmp(flag, "--threads") == 0) {
            if (!parse_i64(flag, value, &n)) return 2;
            if (n < 1 || n > 1024) {
                cli_error("synth: --threads %lld is out of range (1..1024)", (long long)n);
                return 2;
            }
            o.n_threads = (int)n;
        } else if (strcmp(flag, "--rope-base") == 0) {
            if (!parse_f64(flag, value, &o.shape.rope_base)) return 2;
        } else if (strcmp(flag, "--rope-llama3") == 0) {
            if (!parse_f64(flag, value, &o.shape.llama3_rope)) return 2;
        } else if (strcmp(flag, "--rms-eps") == 0) {
            if (!parse_f64(flag, value, &o.shape.rms_eps)) return 2;
        } else if (strcmp(flag, "--pre") == 0) {
            if (strlen(value) >= sizeof o.shape.pre || value[0] == '\0') {
                cli_error("synth: --pre '%s' is empty or too long", value);
                return 2;
            }
            snprintf(o.shape.pre, sizeof o.shape.pre, "%s", value);
        } else if (strcmp(flag, "-o") == 0 || strcmp(flag, "--output") == 0) {
            out_path = value;
        } else {
            cli_error("synth: unknown option '%s' (try 'greta synth --help')", flag);
            return 2;
        }
    }
    if (!out_path) {
        cli_error("synth: no output file (-o FILE)");
        return 2;
    }
    if (!g.shape) {
        const char *missing = !g.dim ? "--dim" : !g.ffn ? "--ffn" : !g.layers ? "--layers"
                            : !g.heads ? "--heads" : !g.vocab ? "--vocab" : NULL;
        if (missing) {
            cli_error("synth: no --shape and no %s (give a preset or every dimension)", missing);
            return 2;
        }
        if (!g.kv_heads) o.shape.n_kv_heads = o.shape.n_heads;
    }
    char err[512];
    if (!synth_shape_check(&o.shape, err, sizeof err)) {
        cli_error("synth: %s", err);
        return 2;
    }
    if (!synth_write(&o, out_path, err, sizeof err)) {
        cli_error("synth: %s: %s", out_path, err);
        return 1;
    }
    return 0;
}
