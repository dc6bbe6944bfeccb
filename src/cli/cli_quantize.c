/* cli_quantize.c: `greta quantize IN.gguf OUT.gguf TYPE`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tools/quantize_model.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: greta quantize [--threads N] [--quiet] IN.gguf OUT.gguf TYPE\n"
            "\n"
            "Converts every weight of IN to TYPE and writes OUT (metadata copied, 1-D\n"
            "tensors and norms unchanged). TYPE: %s.\n"
            "On a terminal a progress line per tensor goes to stderr (--quiet: none).\n"
            "Plain types apply to every weight (rows the block does not divide fall back\n"
            "as llama.cpp does); Q2_K, Q3_K_M, Q4_K_M and Q5_K_M follow llama.cpp's\nmix rule.\n"
            "See docs/quantize.md.\n",
            quantize_target_list());
}

int cli_quantize(int argc, char **argv) {
    const char *paths[3];
    int n_paths = 0;
    /* progress lines only for a person watching: stderr is a terminal */
    quantize_options options = {0, isatty(STDERR_FILENO) ? stderr : NULL};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) {
            options.log = NULL;
        } else if (strcmp(arg, "--threads") == 0) {
            if (i + 1 >= argc) {
                cli_error("quantize: --threads needs a value");
                return 2;
            }
            char *end = NULL;
            errno = 0;
            long n = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 1024) {
                cli_error("quantize: --threads '%s' is not a number in 1..1024", argv[i]);
                return 2;
            }
            options.n_threads = (int)n;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            cli_error("quantize: unknown option '%s' (try 'greta quantize --help')", arg);
            return 2;
        } else if (n_paths < 3) {
            paths[n_paths++] = arg;
        } else {
            cli_error("quantize: too many arguments (expected IN.gguf OUT.gguf TYPE)");
            return 2;
        }
    }
    if (n_paths != 3) {
        cli_error("quantize: expected IN.gguf OUT.gguf TYPE (try 'greta quantize --help')");
        return 2;
    }
    quantize_target target;
    if (!quantize_target_find(paths[2], &target)) {
        cli_error("quantize: unknown type '%s' (known: %s)", paths[2], quantize_target_list());
        return 2;
    }
    char err[768];
    if (!quantize_model_file(paths[0], paths[1], &target, &options, err, sizeof err)) {
        cli_error("quantize: %s", err);
        return 1;
    }
    return 0;
}
