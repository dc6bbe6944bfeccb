/* cli_trace.c: `greta trace diff A.jsonl B.jsonl` (docs/trace.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trace.h"
#include "trace_diff.h"

int cli_trace(int argc, char **argv);

static void trace_usage(FILE *out) {
    fprintf(out,
            "usage: greta trace diff A.jsonl B.jsonl [--atol X] [--rtol Y] [--rel Z] [--json] [--html FILE]\n"
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
            "exit status: 0 within tolerance, 1 diverged, 2 unusable input or usage error\n");
}

static int parse_tolerance(const char *flag, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < 0) {
        cli_error("%s: bad tolerance '%s' (expected a number >= 0)", flag, text);
        return -1;
    }
    *out = v;
    return 0;
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
            else if (parse_tolerance(arg, value,
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

int cli_trace(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        trace_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "diff") == 0) return trace_diff_command(argc - 1, argv + 1);
    cli_error("trace: unknown subcommand '%s' (expected diff)", argv[1]);
    return 2;
}
