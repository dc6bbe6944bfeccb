/* utf8.h: the one UTF-8 module of greta (base layer).
 *
 * Validation and decoding with the Unicode "maximal subpart" rule, repair as Python's
 * bytes.decode("utf-8", "replace"), and encoding of one code point. Every
 * layer above that reads or writes UTF-8 uses these functions. */
#ifndef GRETA_BASE_UTF8_H
#define GRETA_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s (1..4), 0 if the bytes at s do
 * not start a complete valid sequence. *subpart receives the length of the
 * maximal prefix of a valid sequence (>= 1) when 0 is returned; -1 in
 * *subpart means the bytes so far are a valid but incomplete prefix. */
int utf8_valid_len(const unsigned char *s, size_t avail, int *subpart);
/* Decodes the valid UTF-8 sequence at s (avail >= 1 bytes): returns its
 * length (1..4) and stores the code point in *cp. Returns 0 (and *cp = 0)
 * when the bytes at s do not start a complete valid sequence, by the same
 * rule as utf8_valid_len. */
int utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);
/* Copies text replacing every maximal invalid subpart by U+FFFD (as
 * Python's bytes.decode("utf-8", "replace")). *out is malloc'ed. */
bool utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len);
/* Writes the UTF-8 encoding of cp into buf (>= 4 bytes); returns length. */
int utf8_encode(uint32_t cp, char *buf);

#endif
