/* errors.c: see errors.h. */
#include "base/errors.h"

#include <stdio.h>

void format_error_v(char *err, size_t err_size, const char *fmt, va_list args) {
    if (!err || err_size == 0) return;
    vsnprintf(err, err_size, fmt, args);
}

void format_error(char *err, size_t err_size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    format_error_v(err, err_size, fmt, args);
    va_end(args);
}
