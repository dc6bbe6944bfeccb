/* utf8.c: UTF-8 validation, decoding, repair and encoding (utf8.h).
 *
 * Invalid input is repaired the way Python's bytes.decode("utf-8",
 * "replace") does it (the Unicode "maximal subpart" practice): each
 * maximal prefix of a would-be sequence that cannot be completed becomes one
 * U+FFFD. */
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

/* Valid second-byte range for a lead byte (Unicode Table 3-7). */
static void second_byte_range(unsigned char lead, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (lead == 0xE0) *lo = 0xA0;
    if (lead == 0xED) *hi = 0x9F;
    if (lead == 0xF0) *lo = 0x90;
    if (lead == 0xF4) *hi = 0x8F;
}

int utf8_valid_len(const unsigned char *s, size_t avail, int *subpart) {
    unsigned char lead = s[0];
    int need;
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) need = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) need = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) need = 4;
    else {
        *subpart = 1;
        return 0;
    }
    unsigned char lo, hi;
    second_byte_range(lead, &lo, &hi);
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= avail) {
            *subpart = -1; /* valid so far, incomplete */
            return 0;
        }
        unsigned char c = s[i];
        bool ok = (i == 1) ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
        if (!ok) {
            *subpart = i;
            return 0;
        }
    }
    return need;
}

int utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp) {
    int subpart = 0;
    int n = utf8_valid_len(s, avail, &subpart);
    *cp = 0;
    if (n == 0) return 0;
    if (n == 1) {
        *cp = s[0];
        return 1;
    }
    uint32_t v = s[0] & (0x7Fu >> n); /* payload bits of the lead byte */
    for (int i = 1; i < n; i++) v = (v << 6) | (s[i] & 0x3Fu);
    *cp = v;
    return n;
}

int utf8_encode(uint32_t cp, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len) {
    /* Each invalid byte grows to at most 3 bytes (U+FFFD). */
    if (len > (SIZE_MAX - 1) / 3) return false;
    char *buf = malloc(len * 3 + 1);
    if (!buf) return false;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, o = 0;
    while (i < len) {
        int subpart = 0;
        int n = utf8_valid_len(s + i, len - i, &subpart);
        if (n > 0) {
            memcpy(buf + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
            continue;
        }
        memcpy(buf + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += (subpart < 0) ? len - i : (size_t)subpart;
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return true;
}
