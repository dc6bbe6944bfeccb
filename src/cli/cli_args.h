/* cli_args.h: strict parsing of flag values shared by greta audit and
 * greta trace. Each prints one "greta: error: FLAG: ..." line and returns
 * -1 on bad input, 0 on success. */
#ifndef GRETA_CLI_ARGS_H
#define GRETA_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "greta.h"

/* A whole decimal integer in [lo, hi]. */
int cli_arg_int(const char *flag, const char *text, int lo, int hi, int *out);

/* A whole finite number >= 0 (an absolute or relative tolerance). */
int cli_arg_tolerance(const char *flag, const char *text, double *out);

/* "1,2,3": at least one id, each in [0, INT32_MAX]. *ids is malloc'ed
 * (the caller frees it); NULL after an error. */
int cli_arg_id_list(const char *flag, const char *text, int32_t **ids, size_t *n);

/* A backend name of the library's registry ("cpu", "ref", "cuda"); the
 * error names every backend the registry knows. */
int cli_arg_backend(const char *flag, const char *text, greta_backend *out);

/* A KV cache type name ("f32", "f16", "q8_0"); 0, or -1 after an error
 * line naming the flag, the text and the names. */
int cli_arg_kv_type(const char *flag, const char *text, greta_kv_type *out);

#endif
