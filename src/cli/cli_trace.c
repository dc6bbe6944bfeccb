/* cli_trace.c: `greta trace diff A.jsonl B.jsonl` (docs/trace.md). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/audit.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "greta.h"
#include "engine/trace.h"
#include "tools/trace_diff.h"

int cli_trace(int argc, char **argv);

static void trace_usage(FILE *out) {
    fprintf(out,
            "usage: greta trace record -m MODEL (-p TEXT | --ids LIST) [--chat] [--system T] [--backend B]\n"
            "                          [--precision q8|f32] [-t N] [--split K] [-n DECODE] --trace FILE [trace flags]\n"
            "       greta trace diff A.jsonl B.jsonl [--atol X] [--rtol Y] [--rel Z] [--json] [--html FILE]\n"
            "\n"
            "record: prefills the prompt (--split K: its first K tokens, then the rest one token per\n"
            "eval), decodes DECODE greedy tokens (default 0) and writes the\n"
            "StageTrace; trace flags (they win over the GRETA_TRACE_STAGE_* environment):\n%s"
            "\n"
            "Compares two StageTraces (B is the reference). Records pair by (layer, point, pos_id,\n"
            "token_id), never by order; unpaired records, duplicate keys and input mismatches (same\n"
            "layer/point/pos_id, different token_id) make the input unusable. Walks the forward order\n"
            "and names the first divergence; prints a table per layer x point.\n"
            "\n"
            "  --atol X    per value: |a-b| <= X + rtol*|b|\n"
            "  --rtol Y    per value, relative part of the bound above\n"
            "  --rel Z     per row: ||a-b|| / ||b|| <= Z\n"
            "              (no tolerance given: exact, every compared value and hash bitwise equal)\n"
            "  --json      print a JSON report instead of the table\n"
            "  --html FILE also write a self-contained HTML heatmap (layer x point relative error)\n"
            "\n"
            "exit status: 0 within tolerance, 1 diverged, 2 unusable input or usage error\n",
            trace_flags_help());
}

static int trace_diff_command(int argc, char **argv) {
    const char *files[2] = {NULL, NULL};
    int n_files = 0;
    const char *html_path = NULL;
    bool json = false;
    trace_diff_options options;
    trace_diff_options_init(&options);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            trace_usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--json") == 0) {
            json = true;
        } else if (strcmp(arg, "--atol") == 0 || strcmp(arg, "--rtol") == 0 || strcmp(arg, "--rel") == 0 ||
                   strcmp(arg, "--html") == 0) {
            if (i + 1 >= argc) {
                cli_error("%s: missing value", arg);
                return 2;
            }
            const char *value = argv[++i];
            if (strcmp(arg, "--html") == 0) html_path = value;
            else if (cli_arg_tolerance(arg, value,
                                     strcmp(arg, "--atol") == 0   ? &options.atol
                                     : strcmp(arg, "--rtol") == 0 ? &options.rtol
                                                                  : &options.rel) != 0)
                return 2;
        } else if (arg[0] == '-' && arg[1]) {
            cli_error("trace diff: unknown option '%s' (try 'greta trace --help')", arg);
            return 2;
        } else if (n_files < 2) {
            files[n_files++] = arg;
        } else {
            cli_error("trace diff: too many files (expected A.jsonl B.jsonl)");
            return 2;
        }
    }
    if (n_files != 2) {
        cli_error("trace diff: expected two trace files A.jsonl B.jsonl");
        return 2;
    }
    trace_set a, b;
    char err[1024];
    if (trace_set_load_jsonl(files[0], &a, err, sizeof err) != 0) {
        cli_error("trace diff: %s", err);
        return 2;
    }
    if (trace_set_load_jsonl(files[1], &b, err, sizeof err) != 0) {
        cli_error("trace diff: %s", err);
        trace_set_free(&a);
        return 2;
    }
    trace_diff_result result;
    int status = 2;
    if (trace_diff(&a, &b, &options, &result) != 0) {
        cli_error("trace diff: %s", result.reason);
    } else {
        int write_status = json ? trace_diff_write_json(stdout, &result, files[0], files[1])
                                : trace_diff_print(stdout, &result, &a, &b, files[0], files[1]);
        status = (int)result.status;
        if (write_status != 0) {
            cli_error("trace diff: writing the report failed");
            status = 2;
        }
        if (html_path) {
            FILE *html = fopen(html_path, "w");
            if (!html) {
                cli_error("trace diff: cannot create '%s': %s", html_path, strerror(errno));
                status = 2;
            } else {
                int hs = trace_diff_write_html(html, &result, files[0], files[1]);
                if (fclose(html) != 0 || hs != 0) {
                    cli_error("trace diff: writing '%s' failed", html_path);
                    status = 2;
                }
            }
        }
        if (result.status == TRACE_DIFF_UNUSABLE) {
            char line[1024];
            trace_diff_summary(&result, line, sizeof line);
            cli_error("trace diff: %s", line);
        }
    }
    trace_diff_result_free(&result);
    trace_set_free(&a);
    trace_set_free(&b);
    return status;
}

/* The flags of trace record that take a value (besides the trace flags). */
static bool record_flag_takes_value(const char *a) {
    static const char *const names[] = {"-m",        "--model",   "-p",      "--prompt", "--ids", "--system",
                                        "--backend", "-t",        "--threads", "--split", "-n",    "--decode",
                                        "--precision"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(a, names[k]) == 0) return true;
    return false;
}

static int trace_record_command(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_text = NULL, *system = NULL;
    bool chat = false;
    int n_threads = 2, n_decode = 0, split = 0;
    greta_backend backend = GRETA_BACKEND_CPU;
    greta_precision precision = GRETA_PRECISION_DEFAULT;
    char err[1024];
    trace_config config;
    trace_config_init(&config);
    /* The environment first, flags over it. GRETA_TRACE_STAGE=1 without an
     * output is fine here when --trace supplies one (checked below). */
    int env_rc = trace_config_from_env(&config, err, sizeof err);
    if (env_rc != 0 && !(config.enabled && !config.out_path[0])) {
        cli_error("trace record: %s", err);
        return 2;
    }
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        int r = trace_parse_flag(&config, argc, argv, &i, err, sizeof err);
        if (r < 0) {
            cli_error("trace record: %s", err);
            return 2;
        }
        if (r == 1) continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            trace_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--chat") == 0) {
            chat = true;
            i++;
            continue;
        }
        if (!record_flag_takes_value(a)) {
            if (a[0] == '-') cli_error("trace record: unknown option '%s' (try 'greta trace --help')", a);
            else cli_error("trace record: unexpected argument '%s' (try 'greta trace --help')", a);
            return 2;
        }
        if (i + 1 >= argc) {
            cli_error("%s: missing value", a);
            return 2;
        }
        const char *v = argv[i + 1];
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model_path = v;
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) prompt = v;
        else if (strcmp(a, "--ids") == 0) ids_text = v;
        else if (strcmp(a, "--system") == 0) system = v;
        else if (strcmp(a, "--backend") == 0) {
            if (cli_arg_backend(a, v, &backend) != 0) return 2;
        } else if (strcmp(a, "--precision") == 0) {
            if (greta_precision_from_name(v, &precision) != GRETA_OK) {
                cli_error("--precision: unknown precision '%s' (f32, q8)", v);
                return 2;
            }
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (cli_arg_int(a, v, 1, 1000000, &n_threads) != 0) return 2;
        } else if (strcmp(a, "--split") == 0) {
            if (cli_arg_int(a, v, 1, 1000000, &split) != 0) return 2;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--decode") == 0) {
            if (cli_arg_int(a, v, 0, 1000000, &n_decode) != 0) return 2;
        }
        i += 2;
    }
    if (!model_path || (prompt == NULL) == (ids_text == NULL)) {
        cli_error("trace record: need -m MODEL and exactly one of -p TEXT and --ids LIST");
        return 2;
    }
    if (!config.out_path[0]) {
        cli_error("trace record: no output (--trace FILE or GRETA_TRACE_STAGE_OUT)");
        return 2;
    }
    config.enabled = true;
    greta_model *m = NULL;
    if (greta_model_load(model_path, NULL, &m, err, sizeof err) != GRETA_OK) {
        cli_error("%s: %s", model_path, err);
        return 2;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int status = 2;
    trace *tracer = NULL;
    if (ids_text ? cli_arg_id_list("--ids", ids_text, &ids, &n_ids) != 0
                 : audit_prompt_ids(m, prompt, chat, system, &ids, &n_ids, err, sizeof err) != 0) {
        if (!ids_text) cli_error("trace record: %s", err);
        goto done;
    }
    greta_model_info info;
    greta_model_get_info(m, &info);
    greta_backend_info backend_info;
    greta_backend_get_info(backend, &backend_info);
    trace_model_info tinfo = {info.n_layer, backend_info.name, audit_precision_label(backend, precision), model_path,
                              NULL};
    if (trace_open(&config, &tinfo, &tracer, err, sizeof err) != GRETA_OK) {
        cli_error("trace record: %s", err);
        goto done;
    }
    /* --split K: prefill the first K tokens, then feed the rest one at a time */
    if (split > 0 && (size_t)split >= n_ids) {
        cli_error("trace record: --split %d: the prompt has only %zu tokens", split, n_ids);
        goto done;
    }
    size_t *chunks = NULL, n_chunks = 0;
    if (split > 0) {
        chunks = malloc((n_ids - (size_t)split + 1) * sizeof *chunks);
        if (!chunks) {
            cli_error("trace record: out of memory");
            goto done;
        }
        chunks[n_chunks++] = (size_t)split;
        for (size_t k = (size_t)split; k < n_ids; k++) chunks[n_chunks++] = 1;
    }
    audit_session_spec spec = {backend, n_threads, chunks, n_chunks, n_decode, tracer, precision, GRETA_KV_DEFAULT, false};
    int run = audit_run_session(m, ids, n_ids, &spec, NULL, NULL, NULL, err, sizeof err);
    free(chunks);
    if (run != 0) {
        cli_error("trace record: %s", err);
        goto done;
    }
    status = 0;
    fprintf(stderr, "greta: traced %zu prompt tokens + %d decode steps to %s\n", n_ids, n_decode, config.out_path);
done:
    if (tracer && trace_close(tracer, err, sizeof err) != GRETA_OK) {
        cli_error("trace record: %s", err);
        status = 2;
    }
    if (ids_text) free(ids);
    else greta_free(ids);
    greta_model_free(m);
    return status;
}

int cli_trace(int argc, char **argv) {
    if (argc < 2) {
        cli_error("trace: missing subcommand (diff or record); try 'greta trace --help'");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        trace_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "diff") == 0) return trace_diff_command(argc - 1, argv + 1);
    if (strcmp(argv[1], "record") == 0) return trace_record_command(argc - 1, argv + 1);
    cli_error("trace: unknown subcommand '%s' (expected diff or record)", argv[1]);
    return 2;
}
