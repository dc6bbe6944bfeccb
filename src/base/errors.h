/* errors.h: the one helper that writes a library error message into a
 * caller's buffer. Library functions report failure as a status plus a
 * message in (err, err_size); this is how they fill it. */
#ifndef GRETA_ERRORS_H
#define GRETA_ERRORS_H

#include <stdarg.h>
#include <stddef.h>

/* Writes the printf-formatted message into err: at most err_size bytes,
 * always NUL-terminated (a longer message is cut). Does nothing when err
 * is NULL or err_size is 0, so callers may pass "no buffer". */
void format_error(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same with a va_list, for helpers that add their own context. */
void format_error_v(char *err, size_t err_size, const char *fmt, va_list args)
    __attribute__((format(printf, 3, 0)));

/* Copies len bytes of text into buf (at most size bytes, NUL-terminated,
 * cut with "..." when longer) with control bytes (below 0x20, 0x7F), NUL
 * and backslash written as \xNN, so a string taken from a file cannot move
 * the terminal's cursor, ring its bell, fake a new line or hide what
 * follows a NUL. Returns buf. */
const char *escape_text(const char *text, size_t len, char *buf, size_t size);

#endif
