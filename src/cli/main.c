/* main.c: the greta command; dispatches to one subcommand per file. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Subcommands (each defined in its own cli_<name>.c). */
int cli_trace(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_synth(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_perplexity(int argc, char **argv);

static const cli_command commands[] = {
    {"trace", cli_trace, "record a StageTrace, or compare two (trace record / trace diff)"},
    {"audit", cli_audit, "run paired experiments: parity, backends, determinism, neutrality"},
    {"tokenize", cli_tokenize, "text to token ids with a GGUF vocabulary (--ids, --pieces, --bench)"},
    {"inspect", cli_inspect, "show a GGUF file: metadata, tensors, hyperparameters (--dump a tensor)"},
    {"synth", cli_synth, "write a Llama GGUF model with seeded random weights (--shape tiny|...)"},
    {"quantize", cli_quantize, "convert a GGUF model's weights to another type (IN OUT TYPE)"},
    {"run", cli_run, "generate text from a prompt (-m MODEL -p TEXT [--chat] [-n N] ...)"},
    {"chat", cli_chat, "interactive multi-turn chat with the model's template (-m MODEL)"},
    {"bench", cli_bench, "prefill and decode speed, bytes per token, memory bandwidth"},
    {"serve", cli_serve, "OpenAI-compatible HTTP server with continuous batching (-m MODEL)"},
    {"perplexity", cli_perplexity, "perplexity of a text, KL divergence against a base model (-m MODEL -f TEXT)"},
    {NULL, NULL, NULL},
};

void cli_error(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fputs("greta: error: ", stderr);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
}

static void print_usage(FILE *out) {
    fprintf(out, "usage: greta COMMAND [ARGS...]\n\ncommands:\n");
    for (const cli_command *c = commands; c->name; c++) fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\n'greta COMMAND --help' describes each command.\n");
}

/* Every command writes its results through stdio: a write that failed
 * (disk full, a closed pipe when SIGPIPE is ignored) left the stream's error
 * flag set, and the last flush or close reports output still pending. A
 * command that succeeded but whose output was lost exits 1 with
 * "greta: error: stdout: WHY"; a command that failed has said why already. */
static int finish_stdout(int rc) {
    errno = 0;
    bool failed = fflush(stdout) != 0;
    int why = errno;
    failed = ferror(stdout) || failed;
    if (fclose(stdout) != 0 && !failed) {
        failed = true;
        why = errno;
    }
    if (failed && rc == 0) {
        cli_error("stdout: %s", why ? strerror(why) : "write error (output lost)");
        return 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return finish_stdout(0);
    }
    for (const cli_command *c = commands; c->name; c++) {
        if (strcmp(argv[1], c->name) == 0) return finish_stdout(c->run(argc - 1, argv + 1));
    }
    cli_error("unknown command '%s' (try 'greta --help')", argv[1]);
    return 2;
}
