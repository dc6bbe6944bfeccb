/* errors.c: see errors.h. */
#include "base/errors.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

const char *escape_text(const char *text, size_t len, char *buf, size_t size) {
    if (!buf || size == 0) return buf;
    buf[0] = '\0';
    if (size < 4) return buf;
    size_t o = 0; /* invariant: o + 4 <= size (room for "..." and the NUL) */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        bool plain = c >= 0x20 && c != 0x7F && c != '\\';
        if (o + (plain ? 1 : 4) + 4 > size) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (plain) buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, size - o, "\\x%02X", c);
    }
    buf[o] = '\0';
    return buf;
}
