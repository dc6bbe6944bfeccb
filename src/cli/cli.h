/* cli.h: the greta command's subcommands, one file each (src/cli/cli_*.c).
 * Each takes argc/argv starting at the subcommand name and returns the
 * process exit status. Errors go to stderr as "greta: error: WHAT: WHY". */
#ifndef GRETA_CLI_H
#define GRETA_CLI_H

typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

/* Prints "greta: error: " + the formatted message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
