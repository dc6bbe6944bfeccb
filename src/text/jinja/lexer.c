/* lexer.c: template text to tokens.
 *
 * Applies whitespace control, trim_blocks and lstrip_blocks as Jinja's own
 * lexer does, decodes string escapes, and handles {% raw %} blocks. */
#include "text/jinja/internal.h"

#include "base/errors.h"
#include "base/utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pos_to_line_col(const char *src, size_t len, size_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') { l++; c = 1; }
        else if (((unsigned char)src[i] & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

void jj_fmt_error(char *err, size_t err_size, const char *src, size_t len, size_t pos,
                      const char *fmt, va_list ap) {
    if (!err || err_size == 0) return;
    int line, col;
    pos_to_line_col(src, len, pos, &line, &col);
    int k = snprintf(err, err_size, "%d:%d: ", line, col);
    if (k < 0 || (size_t)k >= err_size) return;
    /* one line, and nothing from the template that a terminal obeys:
     * newlines become spaces, other control bytes \xNN (escape_text) */
    char message[1024];
    vsnprintf(message, sizeof message, fmt, ap);
    for (char *p = message; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    escape_text(message, strlen(message), err + k, err_size - (size_t)k);
}

__attribute__((format(printf, 3, 4)))
static bool lex_fail(lexer *lx, size_t pos, const char *fmt, ...) {
    if (!lx->failed) {
        va_list ap;
        va_start(ap, fmt);
        jj_fmt_error(lx->err, lx->err_size, lx->src, lx->len, pos, fmt, ap);
        va_end(ap);
        lx->failed = true;
    }
    return false;
}

static bool lex_push(lexer *lx, token t) {
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        token *nt = realloc(lx->toks, cap * sizeof(token));
        if (!nt) return lex_fail(lx, t.pos, "out of memory");
        lx->toks = nt;
        lx->cap = cap;
    }
    lx->toks[lx->n++] = t;
    return true;
}

bool jj_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

static bool push_text(lexer *lx, size_t pos, const char *s, size_t len) {
    if (len == 0) return true;
    token t = {.type = T_TEXT, .pos = pos, .s = s, .len = len};
    return lex_push(lx, t);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A quoted string at src[*p] (the quote). Python escapes are decoded. */
static bool lex_string(lexer *lx, size_t *p) {
    size_t start = *p;
    char q = lx->src[start];
    size_t i = start + 1;
    /* the literal's extent first: its decoded text is never longer than its
     * source (an escape decodes to at most as many bytes as it is written
     * with), so the buffer is sized by the literal, not by the rest of the
     * template */
    size_t end = i;
    while (end < lx->len && lx->src[end] != q) end += lx->src[end] == '\\' ? 2 : 1;
    if (end > lx->len) end = lx->len;
    char *buf = jj_arena_alloc(lx->a, end - start + 8);
    if (!buf) return lex_fail(lx, start, "out of memory");
    size_t n = 0;
    while (i < lx->len && lx->src[i] != q) {
        char c = lx->src[i];
        if (c != '\\') { buf[n++] = c; i++; continue; }
        if (i + 1 >= lx->len) break;
        char e = lx->src[i + 1];
        i += 2;
        switch (e) {
        case 'n': buf[n++] = '\n'; break;
        case 't': buf[n++] = '\t'; break;
        case 'r': buf[n++] = '\r'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'v': buf[n++] = '\v'; break;
        case 'a': buf[n++] = '\a'; break;
        case '0': buf[n++] = '\0'; break;
        case '\\': buf[n++] = '\\'; break;
        case '\'': buf[n++] = '\''; break;
        case '"': buf[n++] = '"'; break;
        case '\n': break; /* line continuation */
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + (size_t)k < lx->len ? hexval(lx->src[i + (size_t)k]) : -1;
                if (h < 0) return lex_fail(lx, i - 2, "invalid \\%c escape in string", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return lex_fail(lx, i - 2, "invalid code point U+%X in string escape", cp);
            i += (size_t)digits;
            n += (size_t)utf8_encode(cp, buf + n);
            break;
        }
        default: buf[n++] = '\\'; buf[n++] = e; break;
        }
    }
    if (i >= lx->len) return lex_fail(lx, start, "unterminated string");
    token t = {.type = T_STRING, .pos = start, .s = buf, .len = n};
    *p = i + 1;
    return lex_push(lx, t);
}

static bool lex_number(lexer *lx, size_t *p) {
    size_t start = *p, i = start;
    char buf[128];
    size_t n = 0;
    bool is_float = false;
    while (i < lx->len && ((lx->src[i] >= '0' && lx->src[i] <= '9') || lx->src[i] == '_')) {
        if (lx->src[i] != '_' && n < sizeof(buf) - 1) buf[n++] = lx->src[i];
        i++;
    }
    if (i + 1 < lx->len && lx->src[i] == '.' && lx->src[i + 1] >= '0' && lx->src[i + 1] <= '9') {
        is_float = true;
        if (n < sizeof(buf) - 1) buf[n++] = '.';
        i++;
        while (i < lx->len && ((lx->src[i] >= '0' && lx->src[i] <= '9') || lx->src[i] == '_')) {
            if (lx->src[i] != '_' && n < sizeof(buf) - 1) buf[n++] = lx->src[i];
            i++;
        }
    }
    if (i < lx->len && (lx->src[i] == 'e' || lx->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < lx->len && (lx->src[j] == '+' || lx->src[j] == '-')) j++;
        if (j < lx->len && lx->src[j] >= '0' && lx->src[j] <= '9') {
            is_float = true;
            while (i < j && n < sizeof(buf) - 1) buf[n++] = lx->src[i++];
            while (i < lx->len && lx->src[i] >= '0' && lx->src[i] <= '9') {
                if (n < sizeof(buf) - 1) buf[n++] = lx->src[i];
                i++;
            }
        }
    }
    if (n >= sizeof(buf) - 1) return lex_fail(lx, start, "number literal too long");
    buf[n] = 0;
    token t = {.pos = start};
    errno = 0;
    if (is_float) {
        t.type = T_FLOAT;
        t.f = strtod(buf, NULL);
    } else {
        t.type = T_INT;
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE) return lex_fail(lx, start, "integer literal %s does not fit in 64 bits", buf);
        t.i = v;
    }
    *p = i;
    return lex_push(lx, t);
}

static const char *const OPS[] = {
    "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
    "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", NULL,
};

/* Lexes the inside of a {{ }} or {% %} tag starting at *p. Stops after the
 * closing delimiter; sets *strip_after when it was "-}}" / "-%}". */
static bool lex_tag(lexer *lx, size_t *p, bool block, size_t tag_pos, bool *strip_after) {
    size_t i = *p;
    int depth = 0;
    char close = block ? '%' : '}';
    for (;;) {
        while (i < lx->len && jj_is_ws(lx->src[i])) i++;
        if (i >= lx->len)
            return lex_fail(lx, tag_pos, "unexpected end of template: tag opened here is never closed (expected '%s')",
                            block ? "%}" : "}}");
        const char *s = lx->src + i;
        size_t rest = lx->len - i;
        if (depth == 0) {
            if (rest >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
                *strip_after = true;
                *p = i + 3;
                token t = {.type = block ? T_BLOCK_END : T_VAR_END, .pos = i};
                return lex_push(lx, t);
            }
            if (rest >= 2 && s[0] == close && s[1] == '}') {
                *strip_after = false;
                *p = i + 2;
                token t = {.type = block ? T_BLOCK_END : T_VAR_END, .pos = i};
                return lex_push(lx, t);
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') {
            if (!lex_string(lx, &i)) return false;
            continue;
        }
        if (c >= '0' && c <= '9') {
            if (!lex_number(lx, &i)) return false;
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < lx->len && is_name_char(lx->src[j])) j++;
            token t = {.type = T_NAME, .pos = i, .s = s, .len = j - i};
            if (!lex_push(lx, t)) return false;
            i = j;
            continue;
        }
        const char *op = NULL;
        for (int k = 0; OPS[k]; k++) {
            size_t ol = strlen(OPS[k]);
            if (rest >= ol && memcmp(s, OPS[k], ol) == 0) { op = OPS[k]; break; }
        }
        if (!op) {
            unsigned char uc = (unsigned char)c;
            if (uc >= 0x20 && uc < 0x7f) return lex_fail(lx, i, "unexpected character '%c'", c);
            return lex_fail(lx, i, "unexpected byte 0x%02X", uc);
        }
        if (op[0] == '(' || op[0] == '[' || op[0] == '{') depth++;
        if ((op[0] == ')' || op[0] == ']' || op[0] == '}') && depth > 0) depth--;
        token t = {.type = T_OP, .pos = i, .s = op, .len = strlen(op)};
        if (!lex_push(lx, t)) return false;
        i += strlen(op);
    }
}

/* Finds "{% endraw %}" (with optional -/+) from i; returns its start and end. */
static bool find_endraw(const lexer *lx, size_t i, size_t *tag_start, size_t *tag_end, bool *strip_before,
                        bool *strip_after) {
    for (; i + 1 < lx->len; i++) {
        if (lx->src[i] != '{' || lx->src[i + 1] != '%') continue;
        size_t j = i + 2;
        bool sb = false;
        if (j < lx->len && (lx->src[j] == '-' || lx->src[j] == '+')) { sb = lx->src[j] == '-'; j++; }
        while (j < lx->len && jj_is_ws(lx->src[j])) j++;
        if (lx->len - j < 6 || memcmp(lx->src + j, "endraw", 6) != 0) continue;
        j += 6;
        while (j < lx->len && jj_is_ws(lx->src[j])) j++;
        bool sa = false;
        if (j < lx->len && lx->src[j] == '-') { sa = true; j++; }
        if (j + 1 < lx->len && lx->src[j] == '%' && lx->src[j + 1] == '}') {
            *tag_start = i;
            *tag_end = j + 2;
            *strip_before = sb;
            *strip_after = sa;
            return true;
        }
    }
    return false;
}

/* After a block/comment end: trim_blocks removes one newline, "-" all whitespace. */
static size_t after_tag_end(const lexer *lx, size_t i, bool strip, bool trim_newline, bool *line_starting) {
    if (strip) {
        while (i < lx->len && jj_is_ws(lx->src[i])) i++;
    } else if (trim_newline && i < lx->len && lx->src[i] == '\n') {
        i++;
    }
    *line_starting = i > 0 && lx->src[i - 1] == '\n';
    return i;
}

bool jj_lex_all(lexer *lx) {
    size_t i = 0;
    bool strip_next = false;    /* previous tag ended with '-' */
    bool line_starting = true;  /* previous tag's match ended with '\n' (or template start) */
    while (i <= lx->len) {
        /* find the next tag opening */
        size_t t = i;
        while (t + 1 < lx->len && !(lx->src[t] == '{' && (lx->src[t + 1] == '{' || lx->src[t + 1] == '%' ||
                                                          lx->src[t + 1] == '#')))
            t++;
        if (t + 1 >= lx->len) t = lx->len;
        size_t text_start = i, text_end = t;
        if (strip_next) {
            while (text_start < text_end && jj_is_ws(lx->src[text_start])) text_start++;
            strip_next = false;
        }
        if (t == lx->len) {
            if (!push_text(lx, text_start, lx->src + text_start, text_end - text_start)) return false;
            break;
        }
        char kind = lx->src[t + 1];
        char sign = t + 2 < lx->len ? lx->src[t + 2] : 0;
        if (sign == '-') {
            while (text_end > text_start && jj_is_ws(lx->src[text_end - 1])) text_end--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: whitespace between the last newline and the tag */
            size_t l = text_end;
            while (l > text_start && lx->src[l - 1] != '\n') l--;
            bool after_newline = l > text_start;
            if (after_newline || line_starting) {
                bool only_ws = true;
                for (size_t k = l; k < text_end; k++) if (!jj_is_ws(lx->src[k])) { only_ws = false; break; }
                if (only_ws) text_end = l;
            }
        }
        if (!push_text(lx, text_start, lx->src + text_start, text_end - text_start)) return false;
        size_t body = t + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
        if (kind == '#') {
            size_t j = body;
            while (j + 1 < lx->len && !(lx->src[j] == '#' && lx->src[j + 1] == '}')) j++;
            if (j + 1 >= lx->len) return lex_fail(lx, t, "comment opened here is never closed (missing '#}')");
            bool strip = j > body && lx->src[j - 1] == '-';
            i = after_tag_end(lx, j + 2, strip, true, &line_starting);
            continue;
        }
        bool block = kind == '%';
        token open = {.type = block ? T_BLOCK_BEGIN : T_VAR_BEGIN, .pos = t};
        if (!lex_push(lx, open)) return false;
        size_t first_tok = lx->n;
        bool strip_after = false;
        size_t j = body;
        if (!lex_tag(lx, &j, block, t, &strip_after)) return false;
        if (block && lx->n - first_tok == 2 && lx->toks[first_tok].type == T_NAME &&
            lx->toks[first_tok].len == 3 && memcmp(lx->toks[first_tok].s, "raw", 3) == 0) {
            /* {% raw %}: everything up to {% endraw %} is text */
            lx->n = first_tok - 1; /* drop the raw tag tokens */
            size_t raw_start = after_tag_end(lx, j, strip_after, true, &line_starting);
            size_t es, ee;
            bool sb, sa;
            if (!find_endraw(lx, raw_start, &es, &ee, &sb, &sa))
                return lex_fail(lx, t, "raw block opened here is never closed (missing '{%% endraw %%}')");
            size_t raw_end = es;
            if (sb) while (raw_end > raw_start && jj_is_ws(lx->src[raw_end - 1])) raw_end--;
            if (!push_text(lx, raw_start, lx->src + raw_start, raw_end - raw_start)) return false;
            i = after_tag_end(lx, ee, sa, true, &line_starting);
            continue;
        }
        if (block) {
            i = after_tag_end(lx, j, strip_after, true, &line_starting);
        } else {
            i = j;
            strip_next = strip_after;
            line_starting = false;
        }
    }
    token eof = {.type = T_EOF, .pos = lx->len};
    return lex_push(lx, eof);
}
