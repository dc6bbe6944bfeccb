/* jinja.h: a small Jinja2-subset interpreter for chat templates (internal).
 *
 * jinja_parse() lexes and parses a template into an AST with the settings
 * transformers uses (trim_blocks, lstrip_blocks, loop controls); any syntax
 * problem is an error with line:column. jinja_render() evaluates it against
 * variables given as a JSON object (jansson), with hard limits on work
 * (steps, bytes compared, copied and allocated), nesting, output and
 * memory, so hostile templates end in an error, never a crash or hang. docs/chat.md lists the supported language. */
#ifndef GRETA_JINJA_H
#define GRETA_JINJA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jinja_template jinja_template;

typedef struct {
    size_t max_output_bytes; /* rendered text and any single string */
    size_t max_memory_bytes; /* all values created while rendering */
    uint64_t max_work;       /* work units: 1 per byte compared, copied or allocated,
                              * 8 per value compared, 32 per evaluation step */
    int max_call_depth;      /* macro calls nested */
    bool use_fixed_time;     /* strftime_now: fixed_time (UTC) or now (local) */
    int64_t fixed_time;
} jinja_limits;

/* Default limits: 16 MiB output, 256 MiB memory, 2^28 work units (well under a
 * second of CPU), macro depth 64, current time. */
jinja_limits jinja_default_limits(void);

/* Parses text[0..len). NULL + err ("LINE:COL: WHY") on failure. */
jinja_template *jinja_parse(const char *text, size_t len, char *err, size_t err_size);
void jinja_free(jinja_template *tmpl);

/* Renders with the members of vars (a JSON object) as variables. On success
 * *out is malloc'ed and NUL-terminated, *out_len its length (may contain
 * NUL bytes from values). On failure false, err = "LINE:COL: WHY". */
bool jinja_render(const jinja_template *tmpl, const json_t *vars, const jinja_limits *limits,
                  char **out, size_t *out_len, char *err, size_t err_size);

#endif
