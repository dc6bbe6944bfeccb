/* cli_args.c: see cli_args.h. */
#include "cli/cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

int cli_arg_int(const char *flag, const char *text, int lo, int hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        cli_error("%s: bad value '%s' (expected an integer from %d to %d)", flag, text, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_arg_tolerance(const char *flag, const char *text, double *out) {
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

int cli_arg_backend(const char *flag, const char *text, greta_backend *out) {
    if (greta_backend_from_name(text, out) == GRETA_OK) return 0;
    char names[256] = "";
    size_t used = 0;
    for (int32_t i = 0; i < greta_backend_count(); i++) {
        greta_backend_info info;
        if (greta_backend_get_info((greta_backend)i, &info) != GRETA_OK) continue;
        int wrote = snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", info.name);
        if (wrote < 0 || (size_t)wrote >= sizeof names - used) break;
        used += (size_t)wrote;
    }
    cli_error("%s: unknown backend '%s' (expected one of: %s)", flag, text, names);
    return -1;
}

int cli_arg_kv_type(const char *flag, const char *text, greta_kv_type *out) {
    if (greta_kv_type_from_name(text, out) == GRETA_OK) return 0;
    cli_error("%s: unknown KV cache type '%s' (expected f32, f16 or q8_0)", flag, text);
    return -1;
}

int cli_arg_id_list(const char *flag, const char *text, int32_t **ids, size_t *n) {
    size_t cap = 1;
    for (const char *c = text; *c; c++) cap += *c == ',';
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) {
        cli_error("%s: out of memory", flag);
        return -1;
    }
    for (const char *p = text; *p;) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno != 0 || end == p || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0') ||
            (*end == ',' && end[1] == '\0')) {
            cli_error("%s: bad token id list '%s' (expected comma-separated ids >= 0)", flag, text);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (*n == 0) {
        cli_error("%s: empty list", flag);
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return 0;
}
