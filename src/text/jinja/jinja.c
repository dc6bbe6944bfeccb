/* jinja.c: a Jinja2-subset interpreter for chat templates.
 *
 * Pipeline: normalize newlines -> lex (text, tags and expression tokens,
 * applying whitespace control, trim_blocks and lstrip_blocks as Jinja's own
 * lexer does) -> recursive-descent parse to an AST -> tree-walking
 * evaluation with Python value semantics (str(), repr(), json.dumps(), floor
 * division, code-point string indexing) since transformers renders with
 * Jinja2 on Python. All values live in a per-render arena freed at the end;
 * limits on steps, nesting, memory and output bound any template. */
#include "text/jinja/jinja.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wctype.h>

#define PARSE_MAX_DEPTH 96
#define EVAL_MAX_DEPTH 1000

/* ------------------------------------------------------------------ */
/* Arena                                                               */
/* ------------------------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

typedef struct {
    arena_block *head;
    size_t total; /* bytes obtained from malloc */
    size_t limit;
} arena;

static void arena_free(arena *a) {
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
}

/* NULL when the limit would be exceeded or malloc fails. */
static void *arena_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->total + cap + sizeof(arena_block) > a->limit) return NULL;
        b = malloc(sizeof(arena_block) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap + sizeof(arena_block);
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS, JV_LOOP, JV_MACRO, JV_FUNC,
} jtype;

typedef struct jstr { size_t len; char *p; } jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct jfunc jfunc;
typedef struct node node;

typedef struct {
    jtype type;
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d; /* JV_DICT and JV_NS */
        jloop *loop;
        const node *macro;
        jfunc *fn;
        const char *undef_name; /* JV_UNDEF: what was missing (may be NULL) */
    } u;
} jval;

struct jlist { size_t n; jval *v; bool tuple; };
struct jdict { size_t n, cap; jval *keys; jval *vals; };
struct jloop { jlist *items; int64_t index0; };
struct jfunc { int id; jval self; };

/* ------------------------------------------------------------------ */
/* Lexer                                                               */
/* ------------------------------------------------------------------ */

typedef enum {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF,
} ttype;

typedef struct {
    ttype type;
    size_t pos;      /* byte offset in the normalized source */
    const char *s;   /* TEXT, NAME, OP, STRING (decoded, arena) */
    size_t len;
    int64_t i;
    double f;
} token;

typedef struct {
    const char *src; /* normalized source */
    size_t len;
    arena *a;
    token *toks;
    size_t n, cap;
    char *err;
    size_t err_size;
    bool failed;
} lexer;

static void pos_to_line_col(const char *src, size_t len, size_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') { l++; c = 1; }
        else if (((unsigned char)src[i] & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

static void fmt_error(char *err, size_t err_size, const char *src, size_t len, size_t pos,
                      const char *fmt, va_list ap) {
    if (!err || err_size == 0) return;
    int line, col;
    pos_to_line_col(src, len, pos, &line, &col);
    int k = snprintf(err, err_size, "%d:%d: ", line, col);
    if (k < 0) k = 0;
    if ((size_t)k < err_size) vsnprintf(err + k, err_size - (size_t)k, fmt, ap);
    /* one line: newlines in messages become spaces */
    for (char *p = err; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
}

__attribute__((format(printf, 3, 4)))
static bool lex_fail(lexer *lx, size_t pos, const char *fmt, ...) {
    if (!lx->failed) {
        va_list ap;
        va_start(ap, fmt);
        fmt_error(lx->err, lx->err_size, lx->src, lx->len, pos, fmt, ap);
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

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
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

static size_t utf8_put(char *dst, uint32_t cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) { dst[0] = (char)(0xC0 | (cp >> 6)); dst[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12)); dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18)); dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); dst[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* A quoted string at src[*p] (the quote). Python escapes are decoded. */
static bool lex_string(lexer *lx, size_t *p) {
    size_t start = *p;
    char q = lx->src[start];
    size_t i = start + 1;
    char *buf = arena_alloc(lx->a, (lx->len - start) * 1 + 8);
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
            n += utf8_put(buf + n, cp);
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
        while (i < lx->len && is_ws(lx->src[i])) i++;
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
        while (j < lx->len && is_ws(lx->src[j])) j++;
        if (lx->len - j < 6 || memcmp(lx->src + j, "endraw", 6) != 0) continue;
        j += 6;
        while (j < lx->len && is_ws(lx->src[j])) j++;
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
        while (i < lx->len && is_ws(lx->src[i])) i++;
    } else if (trim_newline && i < lx->len && lx->src[i] == '\n') {
        i++;
    }
    *line_starting = i > 0 && lx->src[i - 1] == '\n';
    return i;
}

static bool lex_all(lexer *lx) {
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
            while (text_start < text_end && is_ws(lx->src[text_start])) text_start++;
            strip_next = false;
        }
        if (t == lx->len) {
            if (!push_text(lx, text_start, lx->src + text_start, text_end - text_start)) return false;
            break;
        }
        char kind = lx->src[t + 1];
        char sign = t + 2 < lx->len ? lx->src[t + 2] : 0;
        if (sign == '-') {
            while (text_end > text_start && is_ws(lx->src[text_end - 1])) text_end--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: whitespace between the last newline and the tag */
            size_t l = text_end;
            while (l > text_start && lx->src[l - 1] != '\n') l--;
            bool after_newline = l > text_start;
            if (after_newline || line_starting) {
                bool only_ws = true;
                for (size_t k = l; k < text_end; k++) if (!is_ws(lx->src[k])) { only_ws = false; break; }
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
            if (sb) while (raw_end > raw_start && is_ws(lx->src[raw_end - 1])) raw_end--;
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

/* ------------------------------------------------------------------ */
/* AST                                                                 */
/* ------------------------------------------------------------------ */

typedef enum {
    /* statements */
    N_BLOCK, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO, N_BREAK, N_CONTINUE,
    /* expressions */
    N_LIT, N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_BIN, N_NEG, N_POS, N_NOT,
    N_AND, N_OR, N_CMP, N_COND, N_LIST, N_TUPLE, N_DICT,
} nkind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
} opkind;

struct node {
    nkind kind;
    size_t pos;
    node *a, *b, *c, *d;
    node **list;  size_t n;   /* items, args, conditions, statements, defaults */
    node **list2; size_t n2;  /* dict values, kwarg values, if bodies */
    const char **names; size_t n_names; /* kwarg names, loop targets, macro params */
    const char *str; size_t len;        /* NAME, ATTR, FILTER, TEST, TEXT, SET target */
    int *ops;                           /* CMP operators */
    jval lit;
    int op;
    bool flag;
};

typedef struct {
    const token *t;
    size_t i, n;
    arena *a;
    const char *src;
    size_t src_len;
    char *err;
    size_t err_size;
    bool failed;
    int depth;
} parser;

__attribute__((format(printf, 3, 4)))
static bool parse_fail(parser *ps, size_t pos, const char *fmt, ...) {
    if (!ps->failed) {
        va_list ap;
        va_start(ap, fmt);
        fmt_error(ps->err, ps->err_size, ps->src, ps->src_len, pos, fmt, ap);
        va_end(ap);
        ps->failed = true;
    }
    return false;
}

static const token *peek(parser *ps) { return &ps->t[ps->i]; }
static const token *peek2(parser *ps) { return &ps->t[ps->i + 1 < ps->n ? ps->i + 1 : ps->i]; }
static const token *next_tok(parser *ps) {
    const token *t = &ps->t[ps->i];
    if (ps->i + 1 < ps->n) ps->i++;
    return t;
}
static bool tok_is_op(const token *t, const char *op) {
    return t->type == T_OP && strlen(op) == t->len && memcmp(t->s, op, t->len) == 0;
}
static bool tok_is_name(const token *t, const char *name) {
    return t->type == T_NAME && strlen(name) == t->len && memcmp(t->s, name, t->len) == 0;
}

static const char *describe(const token *t, char *buf, size_t size) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_VAR_END: return "end of print statement '}}'";
    case T_BLOCK_END: return "end of statement block '%}'";
    case T_VAR_BEGIN: return "'{{'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_TEXT: return "template text";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default:
        snprintf(buf, size, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->s);
        return buf;
    }
}

static bool expect_op(parser *ps, const char *op) {
    const token *t = peek(ps);
    if (!tok_is_op(t, op)) {
        char b[64];
        return parse_fail(ps, t->pos, "expected '%s', got %s", op, describe(t, b, sizeof b));
    }
    next_tok(ps);
    return true;
}

static node *new_node(parser *ps, nkind kind, size_t pos) {
    node *n = arena_alloc(ps->a, sizeof(node));
    if (!n) { parse_fail(ps, pos, "out of memory"); return NULL; }
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static const char *intern(parser *ps, const char *s, size_t len) {
    char *p = arena_alloc(ps->a, len + 1);
    if (!p) { parse_fail(ps, 0, "out of memory"); return NULL; }
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

/* Growable node-pointer vector in the arena. */
typedef struct { node **v; size_t n, cap; } nvec;
static bool nvec_push(parser *ps, nvec *vec, node *x) {
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        node **nv = arena_alloc(ps->a, cap * sizeof(node *));
        if (!nv) return parse_fail(ps, 0, "out of memory");
        if (vec->n) memcpy(nv, vec->v, vec->n * sizeof(node *));
        vec->v = nv;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return true;
}
typedef struct { const char **v; size_t n, cap; } svec;
static bool svec_push(parser *ps, svec *vec, const char *x) {
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        const char **nv = arena_alloc(ps->a, cap * sizeof(char *));
        if (!nv) return parse_fail(ps, 0, "out of memory");
        if (vec->n) memcpy(nv, vec->v, vec->n * sizeof(char *));
        vec->v = nv;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return true;
}

static node *parse_expr(parser *ps);
static node *parse_unary(parser *ps, bool with_filter);
static node *parse_or(parser *ps);

static bool enter(parser *ps, size_t pos) {
    if (++ps->depth > PARSE_MAX_DEPTH) return parse_fail(ps, pos, "template nesting deeper than %d", PARSE_MAX_DEPTH);
    return true;
}
static void leave(parser *ps) { ps->depth--; }

/* Arguments of a call/filter/test: "(" [expr | name=expr] {, ...} ")" */
static bool parse_args(parser *ps, node *call) {
    if (!expect_op(ps, "(")) return false;
    nvec args = {0}, kwvals = {0};
    svec kwnames = {0};
    while (!tok_is_op(peek(ps), ")")) {
        if (args.n + kwvals.n > 0 && !expect_op(ps, ",")) return false;
        if (tok_is_op(peek(ps), ")")) break;
        if (peek(ps)->type == T_NAME && tok_is_op(peek2(ps), "=")) {
            const token *nt = next_tok(ps);
            next_tok(ps);
            const char *name = intern(ps, nt->s, nt->len);
            node *v = parse_expr(ps);
            if (!name || !v || !svec_push(ps, &kwnames, name) || !nvec_push(ps, &kwvals, v)) return false;
        } else {
            if (kwvals.n > 0) return parse_fail(ps, peek(ps)->pos, "positional argument after keyword argument");
            node *v = parse_expr(ps);
            if (!v || !nvec_push(ps, &args, v)) return false;
        }
    }
    next_tok(ps);
    call->list = args.v; call->n = args.n;
    call->list2 = kwvals.v; call->n2 = kwvals.n;
    call->names = kwnames.v; call->n_names = kwnames.n;
    return true;
}

static node *parse_primary(parser *ps) {
    const token *t = peek(ps);
    char b[64];
    node *n;
    switch (t->type) {
    case T_NAME: {
        next_tok(ps);
        if (tok_is_name(t, "true") || tok_is_name(t, "True") || tok_is_name(t, "false") ||
            tok_is_name(t, "False")) {
            if (!(n = new_node(ps, N_LIT, t->pos))) return NULL;
            n->lit.type = JV_BOOL;
            n->lit.u.b = t->s[0] == 't' || t->s[0] == 'T';
            return n;
        }
        if (tok_is_name(t, "none") || tok_is_name(t, "None")) {
            if (!(n = new_node(ps, N_LIT, t->pos))) return NULL;
            n->lit.type = JV_NONE;
            return n;
        }
        if (!(n = new_node(ps, N_NAME, t->pos))) return NULL;
        if (!(n->str = intern(ps, t->s, t->len))) return NULL;
        n->len = t->len;
        return n;
    }
    case T_STRING: {
        /* adjacent string literals concatenate */
        size_t total = 0, j = ps->i;
        while (ps->t[j].type == T_STRING) total += ps->t[j++].len;
        char *buf = arena_alloc(ps->a, total + 1);
        jstr *s = arena_alloc(ps->a, sizeof(jstr));
        if (!buf || !s) { parse_fail(ps, t->pos, "out of memory"); return NULL; }
        size_t k = 0;
        while (peek(ps)->type == T_STRING) {
            const token *st = next_tok(ps);
            memcpy(buf + k, st->s, st->len);
            k += st->len;
        }
        buf[k] = 0;
        s->p = buf;
        s->len = k;
        if (!(n = new_node(ps, N_LIT, t->pos))) return NULL;
        n->lit.type = JV_STR;
        n->lit.u.s = s;
        return n;
    }
    case T_INT:
        next_tok(ps);
        if (!(n = new_node(ps, N_LIT, t->pos))) return NULL;
        n->lit.type = JV_INT;
        n->lit.u.i = t->i;
        return n;
    case T_FLOAT:
        next_tok(ps);
        if (!(n = new_node(ps, N_LIT, t->pos))) return NULL;
        n->lit.type = JV_FLOAT;
        n->lit.u.f = t->f;
        return n;
    case T_OP:
        if (tok_is_op(t, "(")) {
            next_tok(ps);
            if (tok_is_op(peek(ps), ")")) {
                next_tok(ps);
                return new_node(ps, N_TUPLE, t->pos);
            }
            node *first = parse_expr(ps);
            if (!first) return NULL;
            if (!tok_is_op(peek(ps), ",")) {
                if (!expect_op(ps, ")")) return NULL;
                return first;
            }
            nvec items = {0};
            if (!nvec_push(ps, &items, first)) return NULL;
            while (tok_is_op(peek(ps), ",")) {
                next_tok(ps);
                if (tok_is_op(peek(ps), ")")) break;
                node *x = parse_expr(ps);
                if (!x || !nvec_push(ps, &items, x)) return NULL;
            }
            if (!expect_op(ps, ")")) return NULL;
            if (!(n = new_node(ps, N_TUPLE, t->pos))) return NULL;
            n->list = items.v;
            n->n = items.n;
            return n;
        }
        if (tok_is_op(t, "[")) {
            next_tok(ps);
            nvec items = {0};
            while (!tok_is_op(peek(ps), "]")) {
                if (items.n > 0 && !expect_op(ps, ",")) return NULL;
                if (tok_is_op(peek(ps), "]")) break;
                node *x = parse_expr(ps);
                if (!x || !nvec_push(ps, &items, x)) return NULL;
            }
            next_tok(ps);
            if (!(n = new_node(ps, N_LIST, t->pos))) return NULL;
            n->list = items.v;
            n->n = items.n;
            return n;
        }
        if (tok_is_op(t, "{")) {
            next_tok(ps);
            nvec keys = {0}, vals = {0};
            while (!tok_is_op(peek(ps), "}")) {
                if (keys.n > 0 && !expect_op(ps, ",")) return NULL;
                if (tok_is_op(peek(ps), "}")) break;
                node *k = parse_expr(ps);
                if (!k || !expect_op(ps, ":")) return NULL;
                node *v = parse_expr(ps);
                if (!v || !nvec_push(ps, &keys, k) || !nvec_push(ps, &vals, v)) return NULL;
            }
            next_tok(ps);
            if (!(n = new_node(ps, N_DICT, t->pos))) return NULL;
            n->list = keys.v; n->n = keys.n;
            n->list2 = vals.v; n->n2 = vals.n;
            return n;
        }
        break;
    default:
        break;
    }
    parse_fail(ps, t->pos, "expected an expression, got %s", describe(t, b, sizeof b));
    return NULL;
}

/* Subscript after '[': index or slice. */
static node *parse_subscript(parser *ps, node *obj, size_t pos) {
    node *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    bool is_slice = false;
    for (;;) {
        const token *t = peek(ps);
        if (tok_is_op(t, "]")) break;
        if (tok_is_op(t, ":")) {
            if (++k > 2) { parse_fail(ps, t->pos, "too many ':' in slice"); return NULL; }
            is_slice = true;
            next_tok(ps);
            continue;
        }
        if (parts[k]) { char b[64]; parse_fail(ps, t->pos, "expected ']', got %s", describe(t, b, sizeof b)); return NULL; }
        if (!(parts[k] = parse_expr(ps))) return NULL;
    }
    next_tok(ps);
    node *n;
    if (is_slice) {
        if (!(n = new_node(ps, N_SLICE, pos))) return NULL;
        n->a = obj; n->b = parts[0]; n->c = parts[1]; n->d = parts[2];
    } else {
        if (!parts[0]) { parse_fail(ps, pos, "empty subscript"); return NULL; }
        if (!(n = new_node(ps, N_ITEM, pos))) return NULL;
        n->a = obj; n->b = parts[0];
    }
    return n;
}

static node *parse_postfix(parser *ps, node *n) {
    for (;;) {
        const token *t = peek(ps);
        if (tok_is_op(t, ".")) {
            next_tok(ps);
            const token *nt = next_tok(ps);
            if (nt->type == T_NAME) {
                node *x = new_node(ps, N_ATTR, nt->pos);
                if (!x || !(x->str = intern(ps, nt->s, nt->len))) return NULL;
                x->len = nt->len;
                x->a = n;
                n = x;
            } else if (nt->type == T_INT) {
                node *x = new_node(ps, N_ITEM, nt->pos), *idx = new_node(ps, N_LIT, nt->pos);
                if (!x || !idx) return NULL;
                idx->lit.type = JV_INT;
                idx->lit.u.i = nt->i;
                x->a = n; x->b = idx;
                n = x;
            } else {
                char b[64];
                parse_fail(ps, nt->pos, "expected an attribute name after '.', got %s", describe(nt, b, sizeof b));
                return NULL;
            }
        } else if (tok_is_op(t, "[")) {
            next_tok(ps);
            if (!(n = parse_subscript(ps, n, t->pos))) return NULL;
        } else if (tok_is_op(t, "(")) {
            node *x = new_node(ps, N_CALL, t->pos);
            if (!x) return NULL;
            x->a = n;
            if (!parse_args(ps, x)) return NULL;
            n = x;
        } else {
            return n;
        }
    }
}

static node *parse_filters_tests(parser *ps, node *n) {
    for (;;) {
        const token *t = peek(ps);
        if (tok_is_op(t, "|")) {
            next_tok(ps);
            const token *nt = next_tok(ps);
            if (nt->type != T_NAME) { char b[64]; parse_fail(ps, nt->pos, "expected a filter name after '|', got %s", describe(nt, b, sizeof b)); return NULL; }
            node *x = new_node(ps, N_FILTER, nt->pos);
            if (!x || !(x->str = intern(ps, nt->s, nt->len))) return NULL;
            x->a = n;
            if (tok_is_op(peek(ps), "(") && !parse_args(ps, x)) return NULL;
            n = x;
        } else if (tok_is_name(t, "is")) {
            next_tok(ps);
            bool neg = false;
            if (tok_is_name(peek(ps), "not")) { next_tok(ps); neg = true; }
            const token *nt = next_tok(ps);
            if (nt->type != T_NAME) { char b[64]; parse_fail(ps, nt->pos, "expected a test name after 'is', got %s", describe(nt, b, sizeof b)); return NULL; }
            node *x = new_node(ps, N_TEST, nt->pos);
            if (!x || !(x->str = intern(ps, nt->s, nt->len))) return NULL;
            x->a = n;
            x->flag = neg;
            const token *after = peek(ps);
            if (tok_is_op(after, "(")) {
                if (!parse_args(ps, x)) return NULL;
            } else if ((after->type == T_STRING || after->type == T_INT || after->type == T_FLOAT ||
                        after->type == T_NAME || tok_is_op(after, "[") || tok_is_op(after, "{")) &&
                       !tok_is_name(after, "else") && !tok_is_name(after, "or") && !tok_is_name(after, "and")) {
                /* one argument without parentheses: "is divisibleby 3" */
                if (tok_is_name(after, "is")) { parse_fail(ps, after->pos, "tests cannot be chained with 'is'"); return NULL; }
                node *arg = parse_primary(ps);
                if (arg) arg = parse_postfix(ps, arg);
                if (!arg) return NULL;
                node **one = arena_alloc(ps->a, sizeof(node *));
                if (!one) { parse_fail(ps, nt->pos, "out of memory"); return NULL; }
                one[0] = arg;
                x->list = one;
                x->n = 1;
            }
            n = x;
        } else if (tok_is_op(t, "(")) {
            node *x = new_node(ps, N_CALL, t->pos);
            if (!x) return NULL;
            x->a = n;
            if (!parse_args(ps, x)) return NULL;
            n = x;
        } else {
            return n;
        }
    }
}

static node *parse_unary(parser *ps, bool with_filter) {
    const token *t = peek(ps);
    if (!enter(ps, t->pos)) return NULL;
    node *n;
    if (tok_is_op(t, "-") || tok_is_op(t, "+")) {
        next_tok(ps);
        node *x = parse_unary(ps, false);
        if (!x || !(n = new_node(ps, t->s[0] == '-' ? N_NEG : N_POS, t->pos))) { leave(ps); return NULL; }
        n->a = x;
    } else {
        n = parse_primary(ps);
        if (n) n = parse_postfix(ps, n);
    }
    if (n && with_filter) n = parse_filters_tests(ps, n);
    leave(ps);
    return n;
}

static node *make_bin(parser *ps, int op, node *l, node *r, size_t pos) {
    if (!l || !r) return NULL;
    node *n = new_node(ps, N_BIN, pos);
    if (!n) return NULL;
    n->op = op; n->a = l; n->b = r;
    return n;
}

static node *parse_pow(parser *ps) {
    node *l = parse_unary(ps, true);
    while (l && tok_is_op(peek(ps), "**")) {
        size_t pos = next_tok(ps)->pos;
        l = make_bin(ps, OP_POW, l, parse_unary(ps, true), pos);
    }
    return l;
}

static node *parse_math2(parser *ps) {
    node *l = parse_pow(ps);
    for (;;) {
        const token *t = peek(ps);
        int op = tok_is_op(t, "*") ? OP_MUL : tok_is_op(t, "/") ? OP_DIV : tok_is_op(t, "//") ? OP_FLOORDIV
               : tok_is_op(t, "%") ? OP_MOD : -1;
        if (!l || op < 0) return l;
        next_tok(ps);
        l = make_bin(ps, op, l, parse_pow(ps), t->pos);
    }
}

static node *parse_concat(parser *ps) {
    node *l = parse_math2(ps);
    while (l && tok_is_op(peek(ps), "~")) {
        size_t pos = next_tok(ps)->pos;
        l = make_bin(ps, OP_CONCAT, l, parse_math2(ps), pos);
    }
    return l;
}

static node *parse_math1(parser *ps) {
    node *l = parse_concat(ps);
    for (;;) {
        const token *t = peek(ps);
        int op = tok_is_op(t, "+") ? OP_ADD : tok_is_op(t, "-") ? OP_SUB : -1;
        if (!l || op < 0) return l;
        next_tok(ps);
        l = make_bin(ps, op, l, parse_concat(ps), t->pos);
    }
}

static node *parse_compare(parser *ps) {
    node *first = parse_math1(ps);
    if (!first) return NULL;
    nvec operands = {0};
    int ops[64];
    size_t n_ops = 0;
    size_t pos = peek(ps)->pos;
    for (;;) {
        const token *t = peek(ps);
        int op = tok_is_op(t, "==") ? OP_EQ : tok_is_op(t, "!=") ? OP_NE : tok_is_op(t, "<") ? OP_LT
               : tok_is_op(t, "<=") ? OP_LE : tok_is_op(t, ">") ? OP_GT : tok_is_op(t, ">=") ? OP_GE
               : tok_is_name(t, "in") ? OP_IN : -1;
        if (op < 0 && tok_is_name(t, "not") && tok_is_name(peek2(ps), "in")) {
            next_tok(ps);
            op = OP_NOTIN;
        }
        if (op < 0) break;
        next_tok(ps);
        if (n_ops == 64) { parse_fail(ps, t->pos, "comparison chain too long"); return NULL; }
        node *r = parse_math1(ps);
        if (!r || !nvec_push(ps, &operands, r)) return NULL;
        ops[n_ops++] = op;
    }
    if (n_ops == 0) return first;
    node *n = new_node(ps, N_CMP, pos);
    int *o = arena_alloc(ps->a, n_ops * sizeof(int));
    if (!n || !o) { parse_fail(ps, pos, "out of memory"); return NULL; }
    memcpy(o, ops, n_ops * sizeof(int));
    n->a = first;
    n->list = operands.v;
    n->n = operands.n;
    n->ops = o;
    return n;
}

static node *parse_not(parser *ps) {
    const token *t = peek(ps);
    if (tok_is_name(t, "not")) {
        next_tok(ps);
        if (!enter(ps, t->pos)) return NULL;
        node *x = parse_not(ps);
        leave(ps);
        if (!x) return NULL;
        node *n = new_node(ps, N_NOT, t->pos);
        if (n) n->a = x;
        return n;
    }
    return parse_compare(ps);
}

static node *parse_and(parser *ps) {
    node *l = parse_not(ps);
    while (l && tok_is_name(peek(ps), "and")) {
        size_t pos = next_tok(ps)->pos;
        node *r = parse_not(ps);
        node *n = r ? new_node(ps, N_AND, pos) : NULL;
        if (!n) return NULL;
        n->a = l; n->b = r;
        l = n;
    }
    return l;
}

static node *parse_or(parser *ps) {
    node *l = parse_and(ps);
    while (l && tok_is_name(peek(ps), "or")) {
        size_t pos = next_tok(ps)->pos;
        node *r = parse_and(ps);
        node *n = r ? new_node(ps, N_OR, pos) : NULL;
        if (!n) return NULL;
        n->a = l; n->b = r;
        l = n;
    }
    return l;
}

static node *parse_expr(parser *ps) {
    if (!enter(ps, peek(ps)->pos)) return NULL;
    node *n = parse_or(ps);
    while (n && tok_is_name(peek(ps), "if")) {
        size_t pos = next_tok(ps)->pos;
        node *cond = parse_or(ps);
        if (!cond) { n = NULL; break; }
        node *other = NULL;
        if (tok_is_name(peek(ps), "else")) {
            next_tok(ps);
            if (!(other = parse_expr(ps))) { n = NULL; break; }
        }
        node *x = new_node(ps, N_COND, pos);
        if (!x) { n = NULL; break; }
        x->a = cond; x->b = n; x->c = other;
        n = x;
    }
    leave(ps);
    return n;
}

/* An expression, or a tuple of them without parentheses (for loop iterables, set values). */
static node *parse_tuple_expr(parser *ps) {
    size_t pos = peek(ps)->pos;
    node *first = parse_expr(ps);
    if (!first || !tok_is_op(peek(ps), ",")) return first;
    nvec items = {0};
    if (!nvec_push(ps, &items, first)) return NULL;
    while (tok_is_op(peek(ps), ",")) {
        next_tok(ps);
        const token *t = peek(ps);
        if (t->type == T_BLOCK_END || t->type == T_VAR_END) break;
        node *x = parse_expr(ps);
        if (!x || !nvec_push(ps, &items, x)) return NULL;
    }
    node *n = new_node(ps, N_TUPLE, pos);
    if (!n) return NULL;
    n->list = items.v;
    n->n = items.n;
    return n;
}

/* ------------------------------------------------------------------ */
/* Statements                                                          */
/* ------------------------------------------------------------------ */

static node *parse_body(parser *ps, const char *const *end_tags, const char **found, size_t *found_pos);

static bool expect_block_end(parser *ps) {
    const token *t = peek(ps);
    if (t->type != T_BLOCK_END) {
        char b[64];
        return parse_fail(ps, t->pos, "expected end of statement block '%%}', got %s", describe(t, b, sizeof b));
    }
    next_tok(ps);
    return true;
}

static const char *expect_name(parser *ps, const char *what) {
    const token *t = next_tok(ps);
    if (t->type != T_NAME) {
        char b[64];
        parse_fail(ps, t->pos, "expected %s, got %s", what, describe(t, b, sizeof b));
        return NULL;
    }
    return intern(ps, t->s, t->len);
}

static node *parse_if(parser *ps, size_t pos) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    nvec conds = {0}, bodies = {0};
    node *n = new_node(ps, N_IF, pos);
    if (!n) return NULL;
    for (;;) {
        node *cond = parse_tuple_expr(ps);
        if (!cond || !expect_block_end(ps)) return NULL;
        const char *found;
        size_t fpos;
        node *body = parse_body(ps, ends, &found, &fpos);
        if (!body || !nvec_push(ps, &conds, cond) || !nvec_push(ps, &bodies, body)) return NULL;
        if (strcmp(found, "elif") == 0) continue;
        if (strcmp(found, "else") == 0) {
            static const char *const end_only[] = {"endif", NULL};
            if (!expect_block_end(ps)) return NULL;
            if (!(n->a = parse_body(ps, end_only, &found, &fpos))) return NULL;
        }
        break;
    }
    if (!expect_block_end(ps)) return NULL;
    n->list = conds.v; n->n = conds.n;
    n->list2 = bodies.v; n->n2 = bodies.n;
    return n;
}

static node *parse_for(parser *ps, size_t pos) {
    node *n = new_node(ps, N_FOR, pos);
    if (!n) return NULL;
    svec targets = {0};
    for (;;) {
        const char *name = expect_name(ps, "a loop variable name");
        if (!name || !svec_push(ps, &targets, name)) return NULL;
        if (!tok_is_op(peek(ps), ",")) break;
        next_tok(ps);
    }
    const token *t = next_tok(ps);
    if (!tok_is_name(t, "in")) { char b[64]; parse_fail(ps, t->pos, "expected 'in' in for loop, got %s", describe(t, b, sizeof b)); return NULL; }
    /* the iterable may not contain a conditional expression: "if" filters the loop */
    if (!(n->a = parse_or(ps))) return NULL;
    if (tok_is_op(peek(ps), ",")) {
        parse_fail(ps, peek(ps)->pos, "unparenthesized tuple as a loop iterable is not supported");
        return NULL;
    }
    if (tok_is_name(peek(ps), "if")) {
        next_tok(ps);
        if (!(n->b = parse_expr(ps))) return NULL;
    }
    if (tok_is_name(peek(ps), "recursive")) { parse_fail(ps, peek(ps)->pos, "recursive loops are not supported"); return NULL; }
    if (!expect_block_end(ps)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *found;
    size_t fpos;
    if (!(n->c = parse_body(ps, ends, &found, &fpos))) return NULL;
    if (strcmp(found, "else") == 0) {
        static const char *const end_only[] = {"endfor", NULL};
        if (!expect_block_end(ps)) return NULL;
        if (!(n->d = parse_body(ps, end_only, &found, &fpos))) return NULL;
    }
    if (!expect_block_end(ps)) return NULL;
    n->names = targets.v;
    n->n_names = targets.n;
    return n;
}

static node *parse_set(parser *ps, size_t pos) {
    const char *name = expect_name(ps, "a variable name after 'set'");
    if (!name) return NULL;
    node *n;
    if (tok_is_op(peek(ps), ".")) {
        next_tok(ps);
        const char *attr = expect_name(ps, "an attribute name");
        if (!attr || !(n = new_node(ps, N_SET_ATTR, pos))) return NULL;
        n->str = name;
        const char **names = arena_alloc(ps->a, sizeof(char *));
        if (!names) { parse_fail(ps, pos, "out of memory"); return NULL; }
        names[0] = attr;
        n->names = names;
        n->n_names = 1;
    } else if (peek(ps)->type == T_BLOCK_END) {
        /* {% set x %}...{% endset %} */
        next_tok(ps);
        static const char *const ends[] = {"endset", NULL};
        const char *found;
        size_t fpos;
        if (!(n = new_node(ps, N_SET_BLOCK, pos))) return NULL;
        n->str = name;
        if (!(n->a = parse_body(ps, ends, &found, &fpos)) || !expect_block_end(ps)) return NULL;
        return n;
    } else {
        if (tok_is_op(peek(ps), ",")) { parse_fail(ps, peek(ps)->pos, "tuple assignment in 'set' is not supported"); return NULL; }
        if (!(n = new_node(ps, N_SET, pos))) return NULL;
        n->str = name;
    }
    if (!expect_op(ps, "=")) return NULL;
    if (!(n->a = parse_tuple_expr(ps)) || !expect_block_end(ps)) return NULL;
    return n;
}

static node *parse_macro(parser *ps, size_t pos) {
    node *n = new_node(ps, N_MACRO, pos);
    if (!n || !(n->str = expect_name(ps, "a macro name")) || !expect_op(ps, "(")) return NULL;
    svec params = {0};
    nvec defaults = {0};
    while (!tok_is_op(peek(ps), ")")) {
        if (params.n > 0 && !expect_op(ps, ",")) return NULL;
        const char *p = expect_name(ps, "a parameter name");
        if (!p || !svec_push(ps, &params, p)) return NULL;
        node *def = NULL;
        if (tok_is_op(peek(ps), "=")) {
            next_tok(ps);
            if (!(def = parse_expr(ps))) return NULL;
        } else if (defaults.n > 0 && defaults.v[defaults.n - 1]) {
            parse_fail(ps, peek(ps)->pos, "parameter without default after one with a default");
            return NULL;
        }
        if (!nvec_push(ps, &defaults, def)) return NULL;
    }
    next_tok(ps);
    if (!expect_block_end(ps)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    const char *found;
    size_t fpos;
    if (!(n->a = parse_body(ps, ends, &found, &fpos))) return NULL;
    if (peek(ps)->type == T_NAME) next_tok(ps); /* {% endmacro name %} */
    if (!expect_block_end(ps)) return NULL;
    n->names = params.v; n->n_names = params.n;
    n->list = defaults.v; n->n = defaults.n;
    return n;
}

static bool in_list(const char *s, size_t len, const char *const *list) {
    for (int i = 0; list && list[i]; i++)
        if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0) return true;
    return false;
}

/* Parses statements until one of end_tags (consumed up to the tag name) or EOF. */
static node *parse_body(parser *ps, const char *const *end_tags, const char **found, size_t *found_pos) {
    size_t start = peek(ps)->pos;
    if (!enter(ps, start)) return NULL;
    nvec stmts = {0};
    node *result = NULL;
    for (;;) {
        const token *t = peek(ps);
        if (t->type == T_EOF) {
            if (end_tags) {
                parse_fail(ps, start, "unexpected end of template: block is never closed (expected '{%% %s %%}')", end_tags[0]);
                goto out;
            }
            break;
        }
        if (t->type == T_TEXT) {
            next_tok(ps);
            node *x = new_node(ps, N_TEXT, t->pos);
            if (!x) goto out;
            x->str = t->s;
            x->len = t->len;
            if (!nvec_push(ps, &stmts, x)) goto out;
            continue;
        }
        if (t->type == T_VAR_BEGIN) {
            next_tok(ps);
            node *x = new_node(ps, N_OUTPUT, t->pos);
            if (!x || !(x->a = parse_tuple_expr(ps))) goto out;
            const token *e = next_tok(ps);
            if (e->type != T_VAR_END) {
                char b[64];
                parse_fail(ps, e->pos, "expected end of print statement '}}', got %s", describe(e, b, sizeof b));
                goto out;
            }
            if (!nvec_push(ps, &stmts, x)) goto out;
            continue;
        }
        if (t->type != T_BLOCK_BEGIN) {
            char b[64];
            parse_fail(ps, t->pos, "unexpected %s", describe(t, b, sizeof b));
            goto out;
        }
        next_tok(ps);
        const token *name = peek(ps);
        if (name->type != T_NAME) {
            char b[64];
            parse_fail(ps, name->pos, "expected a statement name after '{%%', got %s", describe(name, b, sizeof b));
            goto out;
        }
        if (end_tags && in_list(name->s, name->len, end_tags)) {
            next_tok(ps);
            *found = intern(ps, name->s, name->len);
            *found_pos = name->pos;
            if (!*found) goto out;
            break;
        }
        next_tok(ps);
        node *x = NULL;
        if (tok_is_name(name, "if")) x = parse_if(ps, name->pos);
        else if (tok_is_name(name, "for")) x = parse_for(ps, name->pos);
        else if (tok_is_name(name, "set")) x = parse_set(ps, name->pos);
        else if (tok_is_name(name, "macro")) x = parse_macro(ps, name->pos);
        else if (tok_is_name(name, "break") || tok_is_name(name, "continue")) {
            x = new_node(ps, name->s[0] == 'b' ? N_BREAK : N_CONTINUE, name->pos);
            if (x && !expect_block_end(ps)) x = NULL;
        } else if (tok_is_name(name, "generation")) {
            /* transformers' assistant-mask tag: renders its body unchanged */
            static const char *const ends[] = {"endgeneration", NULL};
            const char *f;
            size_t fp;
            if (expect_block_end(ps) && (x = parse_body(ps, ends, &f, &fp)) && !expect_block_end(ps)) x = NULL;
        } else {
            parse_fail(ps, name->pos, "unknown or unexpected tag '%.*s'", (int)(name->len > 40 ? 40 : name->len), name->s);
        }
        if (!x || !nvec_push(ps, &stmts, x)) goto out;
    }
    result = new_node(ps, N_BLOCK, start);
    if (result) {
        result->list = stmts.v;
        result->n = stmts.n;
    }
out:
    leave(ps);
    return result;
}

struct jinja_template {
    char *src; /* normalized */
    size_t len;
    arena ast;
    node *root;
};

void jinja_free(jinja_template *tmpl) {
    if (!tmpl) return;
    arena_free(&tmpl->ast);
    free(tmpl->src);
    free(tmpl);
}

jinja_template *jinja_parse(const char *text, size_t len, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    jinja_template *t = calloc(1, sizeof *t);
    char *src = malloc(len + 1);
    if (!t || !src) {
        free(t);
        free(src);
        if (err) snprintf(err, err_size, "out of memory");
        return NULL;
    }
    /* newlines: \r\n and \r become \n; one trailing newline is dropped (Jinja's lexer) */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r') {
            src[n++] = '\n';
            if (i + 1 < len && text[i + 1] == '\n') i++;
        } else {
            src[n++] = text[i];
        }
    }
    if (n > 0 && src[n - 1] == '\n') n--;
    src[n] = 0;
    t->src = src;
    t->len = n;
    t->ast.limit = (size_t)64 << 20 < 64 * n + ((size_t)1 << 20) ? 64 * n + ((size_t)1 << 20) : (size_t)64 << 20;
    lexer lx = {.src = src, .len = n, .a = &t->ast, .err = err, .err_size = err_size};
    bool ok = lex_all(&lx);
    if (ok) {
        parser ps = {.t = lx.toks, .n = lx.n, .a = &t->ast, .src = src, .src_len = n, .err = err, .err_size = err_size};
        t->root = parse_body(&ps, NULL, NULL, NULL);
        ok = t->root != NULL && !ps.failed;
    }
    free(lx.toks);
    if (!ok) {
        jinja_free(t);
        return NULL;
    }
    return t;
}

/* ------------------------------------------------------------------ */
/* Render context                                                      */
/* ------------------------------------------------------------------ */

typedef struct frame {
    struct frame *parent;
    size_t n, cap;
    const char **names;
    jval *vals;
} frame;

typedef struct {
    char *p;
    size_t len, cap;
} strbuf;

typedef struct {
    const jinja_template *t;
    arena a;
    jinja_limits lim;
    uint64_t steps;
    int call_depth;
    int eval_depth;
    frame *root;
    frame *frame; /* scope expressions are evaluated in */
    strbuf out;
    char *err;
    size_t err_size;
    bool failed;
    locale_t utf8; /* for towupper_l / towlower_l; 0 if unavailable */
    locale_t c_loc;
} ctx;

typedef enum { EX_OK, EX_ERR, EX_BREAK, EX_CONTINUE } exres;

__attribute__((format(printf, 3, 4)))
static bool fail(ctx *c, size_t pos, const char *fmt, ...) {
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        fmt_error(c->err, c->err_size, c->t->src, c->t->len, pos, fmt, ap);
        va_end(ap);
        c->failed = true;
    }
    return false;
}

static void *alloc(ctx *c, size_t n, size_t pos) {
    void *p = arena_alloc(&c->a, n);
    if (!p) fail(c, pos, "template uses more than %zu bytes of memory", c->lim.max_memory_bytes);
    return p;
}

static bool step(ctx *c, size_t pos) {
    if (++c->steps > c->lim.max_steps)
        return fail(c, pos, "template exceeds the limit of %llu evaluation steps", (unsigned long long)c->lim.max_steps);
    return true;
}

/* strbuf in malloc'ed memory (the output, and scratch for building strings) */
static bool sb_add(ctx *c, strbuf *b, const char *s, size_t n, size_t pos) {
    if (b->len + n > c->lim.max_output_bytes)
        return fail(c, pos, "rendered text exceeds %zu bytes", c->lim.max_output_bytes);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return fail(c, pos, "out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}
static bool sb_str(ctx *c, strbuf *b, const char *s, size_t pos) { return sb_add(c, b, s, strlen(s), pos); }

static jval v_undef(const char *name) { jval v = {.type = JV_UNDEF}; v.u.undef_name = name; return v; }
static jval v_none(void) { jval v = {.type = JV_NONE}; return v; }
static jval v_bool(bool b) { jval v = {.type = JV_BOOL}; v.u.b = b; return v; }
static jval v_int(int64_t i) { jval v = {.type = JV_INT}; v.u.i = i; return v; }
static jval v_float(double f) { jval v = {.type = JV_FLOAT}; v.u.f = f; return v; }

static bool v_str(ctx *c, const char *s, size_t n, size_t pos, jval *out) {
    if (n > c->lim.max_output_bytes) return fail(c, pos, "string longer than %zu bytes", c->lim.max_output_bytes);
    jstr *js = alloc(c, sizeof(jstr), pos);
    char *p = js ? alloc(c, n + 1, pos) : NULL;
    if (!p) return false;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    js->p = p;
    js->len = n;
    out->type = JV_STR;
    out->u.s = js;
    return true;
}
static bool v_cstr(ctx *c, const char *s, size_t pos, jval *out) { return v_str(c, s, strlen(s), pos, out); }

static jlist *new_list(ctx *c, size_t n, size_t pos) {
    jlist *l = alloc(c, sizeof(jlist), pos);
    if (!l) return NULL;
    l->n = n;
    l->tuple = false;
    l->v = NULL;
    if (n && !(l->v = alloc(c, n * sizeof(jval), pos))) return NULL;
    return l;
}
static jval v_list(jlist *l) { jval v = {.type = JV_LIST}; v.u.l = l; return v; }

static jdict *new_dict(ctx *c, size_t pos) {
    jdict *d = alloc(c, sizeof(jdict), pos);
    if (d) memset(d, 0, sizeof *d);
    return d;
}

static bool is_num(const jval *v) { return v->type == JV_INT || v->type == JV_FLOAT || v->type == JV_BOOL; }
static double num_f(const jval *v) {
    return v->type == JV_FLOAT ? v->u.f : v->type == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t num_i(const jval *v) { return v->type == JV_INT ? v->u.i : v->type == JV_BOOL ? v->u.b : (int64_t)v->u.f; }

static const char *type_name(const jval *v) {
    switch (v->type) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_LOOP: return "LoopContext";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    }
    return "?";
}

static bool equal(const jval *a, const jval *b);

static bool dict_find(const jdict *d, const jval *key, size_t *idx) {
    for (size_t i = 0; i < d->n; i++)
        if (equal(&d->keys[i], key)) { *idx = i; return true; }
    return false;
}
static bool dict_find_str(const jdict *d, const char *key, size_t len, size_t *idx) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].type == JV_STR && d->keys[i].u.s->len == len && memcmp(d->keys[i].u.s->p, key, len) == 0) {
            *idx = i;
            return true;
        }
    return false;
}
static bool dict_set(ctx *c, jdict *d, jval key, jval val, size_t pos) {
    size_t i;
    if (dict_find(d, &key, &i)) { d->vals[i] = val; return true; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jval *k = alloc(c, cap * sizeof(jval), pos), *v = k ? alloc(c, cap * sizeof(jval), pos) : NULL;
        if (!v) return false;
        if (d->n) { memcpy(k, d->keys, d->n * sizeof(jval)); memcpy(v, d->vals, d->n * sizeof(jval)); }
        d->keys = k; d->vals = v; d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return true;
}

static bool equal(const jval *a, const jval *b) {
    if (is_num(a) && is_num(b)) {
        if (a->type == JV_FLOAT || b->type == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a->type != b->type) return false;
    switch (a->type) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a->u.s->len == b->u.s->len && memcmp(a->u.s->p, b->u.s->p, a->u.s->len) == 0;
    case JV_LIST:
        if (a->u.l->n != b->u.l->n || a->u.l->tuple != b->u.l->tuple) return false;
        for (size_t i = 0; i < a->u.l->n; i++) if (!equal(&a->u.l->v[i], &b->u.l->v[i])) return false;
        return true;
    case JV_DICT: {
        if (a->u.d->n != b->u.d->n) return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            size_t j;
            if (!dict_find(b->u.d, &a->u.d->keys[i], &j) || !equal(&a->u.d->vals[i], &b->u.d->vals[j])) return false;
        }
        return true;
    }
    case JV_NS: return a->u.d == b->u.d;
    case JV_LOOP: return a->u.loop == b->u.loop;
    case JV_MACRO: return a->u.macro == b->u.macro;
    case JV_FUNC: return a->u.fn == b->u.fn;
    default: return false;
    }
}

static bool truthy(const jval *v) {
    switch (v->type) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.s->len > 0;
    case JV_LIST: return v->u.l->n > 0;
    case JV_DICT: return v->u.d->n > 0;
    default: return true;
    }
}

/* ---- UTF-8 ---- */

/* Decodes one code point at s[0..n); invalid bytes decode as themselves (one byte). */
static uint32_t utf8_next(const char *s, size_t n, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *adv = 1; return u[0]; }
    int need = (u[0] & 0xE0) == 0xC0 ? 1 : (u[0] & 0xF0) == 0xE0 ? 2 : (u[0] & 0xF8) == 0xF0 ? 3 : -1;
    if (need < 0 || (size_t)need >= n) { *adv = 1; return u[0] | 0x80000000u; }
    uint32_t cp = u[0] & (0x3F >> need);
    for (int k = 1; k <= need; k++) {
        if ((u[k] & 0xC0) != 0x80) { *adv = 1; return u[0] | 0x80000000u; }
        cp = (cp << 6) | (u[k] & 0x3F);
    }
    *adv = (size_t)need + 1;
    return cp;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t count = 0, i = 0, adv;
    while (i < n) { utf8_next(s + i, n - i, &adv); i += adv; count++; }
    return count;
}

/* Byte offsets of each code point (n_cp + 1 entries). */
static size_t *utf8_offsets(ctx *c, const jstr *s, size_t *n_cp, size_t pos) {
    size_t n = utf8_count(s->p, s->len);
    size_t *off = alloc(c, (n + 1) * sizeof(size_t), pos);
    if (!off) return NULL;
    size_t i = 0, k = 0, adv;
    while (i < s->len) { off[k++] = i; utf8_next(s->p + i, s->len - i, &adv); i += adv; }
    off[k] = s->len;
    *n_cp = n;
    return off;
}

static bool py_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static uint32_t case_map(const ctx *c, uint32_t cp, bool upper) {
    if (cp & 0x80000000u) return cp;
    if (cp < 0x80) {
        if (upper && cp >= 'a' && cp <= 'z') return cp - 32;
        if (!upper && cp >= 'A' && cp <= 'Z') return cp + 32;
        return cp;
    }
    if (!c->utf8) return cp;
    return upper ? (uint32_t)towupper_l((wint_t)cp, c->utf8) : (uint32_t)towlower_l((wint_t)cp, c->utf8);
}

static bool is_alpha_cp(const ctx *c, uint32_t cp) {
    if (cp & 0x80000000u) return false;
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    return c->utf8 && iswalpha_l((wint_t)cp, c->utf8);
}

static bool put_cp(ctx *c, strbuf *b, uint32_t cp, size_t pos) {
    char tmp[4];
    if (cp & 0x80000000u) { tmp[0] = (char)(cp & 0xFF); return sb_add(c, b, tmp, 1, pos); }
    return sb_add(c, b, tmp, utf8_put(tmp, cp), pos);
}

/* ---- formatting (Python str/repr, json.dumps) ---- */

static void format_float(double f, char *buf, size_t size) {
    if (isnan(f)) { snprintf(buf, size, "nan"); return; }
    if (isinf(f)) { snprintf(buf, size, f < 0 ? "-inf" : "inf"); return; }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = "[-]d.ddde[+-]XX": split digits and exponent */
    char digits[32];
    int nd = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') { neg = true; p++; }
    for (; *p && *p != 'e'; p++) if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char *o = buf;
    size_t left = size;
#define PUT(...) do { int w = snprintf(o, left, __VA_ARGS__); if (w < 0 || (size_t)w >= left) return; o += w; left -= (size_t)w; } while (0)
    if (neg) PUT("-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            PUT("0.");
            for (int k = 0; k < -exp - 1; k++) PUT("0");
            PUT("%s", digits);
        } else if (nd <= exp + 1) {
            PUT("%s", digits);
            for (int k = nd; k < exp + 1; k++) PUT("0");
            PUT(".0");
        } else {
            PUT("%.*s.%s", exp + 1, digits, digits + exp + 1);
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

static bool write_repr(ctx *c, strbuf *b, const jval *v, size_t pos, int depth);

static bool write_str(ctx *c, strbuf *b, const jval *v, size_t pos, int depth) {
    char tmp[64];
    switch (v->type) {
    case JV_UNDEF: return true;
    case JV_NONE: return sb_str(c, b, "None", pos);
    case JV_BOOL: return sb_str(c, b, v->u.b ? "True" : "False", pos);
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_str(c, b, tmp, pos);
    case JV_FLOAT: format_float(v->u.f, tmp, sizeof tmp); return sb_str(c, b, tmp, pos);
    case JV_STR: return sb_add(c, b, v->u.s->p, v->u.s->len, pos);
    default: return write_repr(c, b, v, pos, depth);
    }
}

static bool write_py_string_repr(ctx *c, strbuf *b, const jstr *s, size_t pos) {
    bool has_sq = memchr(s->p, '\'', s->len) != NULL, has_dq = memchr(s->p, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!sb_add(c, b, &q, 1, pos)) return false;
    size_t i = 0, adv;
    while (i < s->len) {
        uint32_t cp = utf8_next(s->p + i, s->len - i, &adv);
        char tmp[16];
        bool ok;
        if (cp == '\\') ok = sb_str(c, b, "\\\\", pos);
        else if (cp == (uint32_t)q) { tmp[0] = '\\'; tmp[1] = q; ok = sb_add(c, b, tmp, 2, pos); }
        else if (cp == '\n') ok = sb_str(c, b, "\\n", pos);
        else if (cp == '\r') ok = sb_str(c, b, "\\r", pos);
        else if (cp == '\t') ok = sb_str(c, b, "\\t", pos);
        else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) {
            snprintf(tmp, sizeof tmp, "\\x%02x", cp);
            ok = sb_str(c, b, tmp, pos);
        } else if (cp & 0x80000000u) {
            snprintf(tmp, sizeof tmp, "\\udc%02x", cp & 0xFF); /* Python's surrogateescape look */
            ok = sb_str(c, b, tmp, pos);
        } else {
            ok = sb_add(c, b, s->p + i, adv, pos);
        }
        if (!ok) return false;
        i += adv;
    }
    return sb_add(c, b, &q, 1, pos);
}

static bool write_repr(ctx *c, strbuf *b, const jval *v, size_t pos, int depth) {
    if (depth > 64) return fail(c, pos, "value nested too deeply to print");
    switch (v->type) {
    case JV_STR: return write_py_string_repr(c, b, v->u.s, pos);
    case JV_UNDEF: return sb_str(c, b, "Undefined", pos);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (!sb_str(c, b, l->tuple ? "(" : "[", pos)) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_str(c, b, ", ", pos)) return false;
            if (!write_repr(c, b, &l->v[i], pos, depth + 1)) return false;
        }
        if (l->tuple && l->n == 1 && !sb_str(c, b, ",", pos)) return false;
        return sb_str(c, b, l->tuple ? ")" : "]", pos);
    }
    case JV_DICT: case JV_NS: {
        const jdict *d = v->u.d;
        if (v->type == JV_NS && !sb_str(c, b, "<Namespace ", pos)) return false;
        if (!sb_str(c, b, "{", pos)) return false;
        for (size_t i = 0; i < d->n; i++) {
            if (i && !sb_str(c, b, ", ", pos)) return false;
            if (!write_repr(c, b, &d->keys[i], pos, depth + 1) || !sb_str(c, b, ": ", pos) ||
                !write_repr(c, b, &d->vals[i], pos, depth + 1))
                return false;
        }
        if (!sb_str(c, b, "}", pos)) return false;
        return v->type == JV_NS ? sb_str(c, b, ">", pos) : true;
    }
    case JV_LOOP: return sb_str(c, b, "<LoopContext>", pos);
    case JV_MACRO: return sb_str(c, b, "<Macro>", pos);
    case JV_FUNC: return sb_str(c, b, "<built-in function>", pos);
    default: return write_str(c, b, v, pos, depth);
    }
}

typedef struct {
    int indent;       /* < 0: none */
    bool sort_keys;
    bool ensure_ascii;
} json_opts;

static bool write_json_string(ctx *c, strbuf *b, const jstr *s, bool ensure_ascii, size_t pos) {
    if (!sb_str(c, b, "\"", pos)) return false;
    size_t i = 0, adv;
    while (i < s->len) {
        uint32_t cp = utf8_next(s->p + i, s->len - i, &adv);
        char tmp[16];
        bool ok;
        switch (cp) {
        case '"': ok = sb_str(c, b, "\\\"", pos); break;
        case '\\': ok = sb_str(c, b, "\\\\", pos); break;
        case '\n': ok = sb_str(c, b, "\\n", pos); break;
        case '\r': ok = sb_str(c, b, "\\r", pos); break;
        case '\t': ok = sb_str(c, b, "\\t", pos); break;
        case '\b': ok = sb_str(c, b, "\\b", pos); break;
        case '\f': ok = sb_str(c, b, "\\f", pos); break;
        default:
            if (cp & 0x80000000u) {
                snprintf(tmp, sizeof tmp, "\\udc%02x", cp & 0xFF);
                ok = sb_str(c, b, tmp, pos);
            } else if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
                if (cp >= 0x10000) {
                    uint32_t x = cp - 0x10000;
                    snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF));
                } else {
                    snprintf(tmp, sizeof tmp, "\\u%04x", cp);
                }
                ok = sb_str(c, b, tmp, pos);
            } else {
                ok = sb_add(c, b, s->p + i, adv, pos);
            }
        }
        if (!ok) return false;
        i += adv;
    }
    return sb_str(c, b, "\"", pos);
}

static bool json_newline(ctx *c, strbuf *b, const json_opts *o, int level, size_t pos) {
    if (!sb_str(c, b, "\n", pos)) return false;
    for (int k = 0; k < o->indent * level; k++) if (!sb_str(c, b, " ", pos)) return false;
    return true;
}

static int compare_for_sort(ctx *c, const jval *a, const jval *b, bool case_sensitive, bool *ok);

static bool write_json(ctx *c, strbuf *b, const jval *v, const json_opts *o, int level, size_t pos) {
    char tmp[64];
    if (level > 64) return fail(c, pos, "value nested too deeply for tojson");
    switch (v->type) {
    case JV_NONE: return sb_str(c, b, "null", pos);
    case JV_BOOL: return sb_str(c, b, v->u.b ? "true" : "false", pos);
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_str(c, b, tmp, pos);
    case JV_FLOAT:
        if (isnan(v->u.f)) return sb_str(c, b, "NaN", pos);
        if (isinf(v->u.f)) return sb_str(c, b, v->u.f < 0 ? "-Infinity" : "Infinity", pos);
        format_float(v->u.f, tmp, sizeof tmp);
        return sb_str(c, b, tmp, pos);
    case JV_STR: return write_json_string(c, b, v->u.s, o->ensure_ascii, pos);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (l->n == 0) return sb_str(c, b, "[]", pos);
        if (!sb_str(c, b, "[", pos)) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_str(c, b, o->indent >= 0 ? "," : ", ", pos)) return false;
            if (o->indent >= 0 && !json_newline(c, b, o, level + 1, pos)) return false;
            if (!write_json(c, b, &l->v[i], o, level + 1, pos)) return false;
        }
        if (o->indent >= 0 && !json_newline(c, b, o, level, pos)) return false;
        return sb_str(c, b, "]", pos);
    }
    case JV_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0) return sb_str(c, b, "{}", pos);
        size_t *order = alloc(c, d->n * sizeof(size_t), pos);
        if (!order) return false;
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable, small n */
                size_t x = order[i], j = i;
                bool ok = true;
                while (j > 0 && compare_for_sort(c, &d->keys[order[j - 1]], &d->keys[x], true, &ok) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                if (!ok) return false;
                order[j] = x;
            }
        }
        if (!sb_str(c, b, "{", pos)) return false;
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k && !sb_str(c, b, o->indent >= 0 ? "," : ", ", pos)) return false;
            if (o->indent >= 0 && !json_newline(c, b, o, level + 1, pos)) return false;
            const jval *key = &d->keys[i];
            if (key->type == JV_STR) {
                if (!write_json_string(c, b, key->u.s, o->ensure_ascii, pos)) return false;
            } else if (key->type == JV_NONE || key->type == JV_BOOL || key->type == JV_INT || key->type == JV_FLOAT) {
                strbuf kb = {0};
                bool ok = key->type == JV_NONE ? sb_str(c, &kb, "null", pos)
                        : key->type == JV_BOOL ? sb_str(c, &kb, key->u.b ? "true" : "false", pos)
                        : write_str(c, &kb, key, pos, 0);
                ok = ok && sb_str(c, b, "\"", pos) && sb_add(c, b, kb.p, kb.len, pos) && sb_str(c, b, "\"", pos);
                free(kb.p);
                if (!ok) return false;
            } else {
                return fail(c, pos, "tojson: keys must be str, int, float, bool or None, not %s", type_name(key));
            }
            if (!sb_str(c, b, ": ", pos) || !write_json(c, b, &d->vals[i], o, level + 1, pos)) return false;
        }
        if (o->indent >= 0 && !json_newline(c, b, o, level, pos)) return false;
        return sb_str(c, b, "}", pos);
    }
    default:
        return fail(c, pos, "tojson: object of type %s is not JSON serializable", type_name(v));
    }
}

/* str(v) as a new string value */
static bool to_string_val(ctx *c, const jval *v, size_t pos, jval *out) {
    if (v->type == JV_STR) { *out = *v; return true; }
    strbuf b = {0};
    bool ok = write_str(c, &b, v, pos, 0) && v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Evaluation                                                          */
/* ------------------------------------------------------------------ */

enum {
    FN_RAISE, FN_STRFTIME, FN_NAMESPACE, FN_RANGE, FN_DICT,
    /* string methods */
    FN_S_STRIP, FN_S_LSTRIP, FN_S_RSTRIP, FN_S_STARTSWITH, FN_S_ENDSWITH, FN_S_SPLIT, FN_S_RSPLIT, FN_S_UPPER,
    FN_S_LOWER, FN_S_TITLE, FN_S_CAPITALIZE, FN_S_REPLACE, FN_S_FIND, FN_S_RFIND, FN_S_COUNT, FN_S_JOIN,
    FN_S_ISDIGIT, FN_S_ISALPHA, FN_S_ISSPACE, FN_S_SPLITLINES,
    /* dict methods */
    FN_D_ITEMS, FN_D_KEYS, FN_D_VALUES, FN_D_GET,
};

static const struct { const char *name; int id; } STR_METHODS[] = {
    {"strip", FN_S_STRIP}, {"lstrip", FN_S_LSTRIP}, {"rstrip", FN_S_RSTRIP}, {"startswith", FN_S_STARTSWITH},
    {"endswith", FN_S_ENDSWITH}, {"split", FN_S_SPLIT}, {"rsplit", FN_S_RSPLIT}, {"upper", FN_S_UPPER},
    {"lower", FN_S_LOWER}, {"title", FN_S_TITLE}, {"capitalize", FN_S_CAPITALIZE}, {"replace", FN_S_REPLACE},
    {"find", FN_S_FIND}, {"rfind", FN_S_RFIND}, {"count", FN_S_COUNT}, {"join", FN_S_JOIN},
    {"isdigit", FN_S_ISDIGIT}, {"isalpha", FN_S_ISALPHA}, {"isspace", FN_S_ISSPACE},
    {"splitlines", FN_S_SPLITLINES}, {NULL, 0},
};
static const struct { const char *name; int id; } DICT_METHODS[] = {
    {"items", FN_D_ITEMS}, {"keys", FN_D_KEYS}, {"values", FN_D_VALUES}, {"get", FN_D_GET}, {NULL, 0},
};

static bool eval(ctx *c, const node *n, jval *out);
static exres exec(ctx *c, const node *n, frame *f);

static jval make_func(ctx *c, int id, jval self, size_t pos) {
    jfunc *fn = alloc(c, sizeof(jfunc), pos);
    if (!fn) return v_undef(NULL);
    fn->id = id;
    fn->self = self;
    jval v = {.type = JV_FUNC};
    v.u.fn = fn;
    return v;
}

static bool frame_lookup(const frame *f, const char *name, jval *out) {
    for (; f; f = f->parent)
        for (size_t i = f->n; i-- > 0;)
            if (strcmp(f->names[i], name) == 0) { *out = f->vals[i]; return true; }
    return false;
}

static bool frame_set(ctx *c, frame *f, const char *name, jval v, size_t pos) {
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0) { f->vals[i] = v; return true; }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **nn = alloc(c, cap * sizeof(char *), pos);
        jval *nv = nn ? alloc(c, cap * sizeof(jval), pos) : NULL;
        if (!nv) return false;
        if (f->n) { memcpy(nn, f->names, f->n * sizeof(char *)); memcpy(nv, f->vals, f->n * sizeof(jval)); }
        f->names = nn; f->vals = nv; f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n] = v;
    f->n++;
    return true;
}


static bool lookup_name(ctx *c, const node *n, jval *out) {
    if (frame_lookup(c->frame, n->str, out)) return true;
    static const struct { const char *name; int id; } globals[] = {
        {"raise_exception", FN_RAISE}, {"strftime_now", FN_STRFTIME}, {"namespace", FN_NAMESPACE},
        {"range", FN_RANGE}, {"dict", FN_DICT}, {NULL, 0},
    };
    for (int i = 0; globals[i].name; i++)
        if (strcmp(globals[i].name, n->str) == 0) {
            *out = make_func(c, globals[i].id, v_none(), n->pos);
            return !c->failed;
        }
    *out = v_undef(n->str);
    return true;
}

static bool undefined_error(ctx *c, const jval *v, size_t pos) {
    if (v->u.undef_name) return fail(c, pos, "'%s' is undefined", v->u.undef_name);
    return fail(c, pos, "undefined value used");
}

/* obj.name (Jinja: attribute first, then item) */
static bool get_attr(ctx *c, const jval *obj, const char *name, size_t pos, jval *out) {
    if (strncmp(name, "__", 2) == 0) { *out = v_undef(name); return true; } /* sandbox: no dunders */
    switch (obj->type) {
    case JV_UNDEF: return undefined_error(c, obj, pos);
    case JV_DICT: {
        for (int i = 0; DICT_METHODS[i].name; i++)
            if (strcmp(DICT_METHODS[i].name, name) == 0) {
                *out = make_func(c, DICT_METHODS[i].id, *obj, pos);
                return !c->failed;
            }
        size_t idx;
        if (dict_find_str(obj->u.d, name, strlen(name), &idx)) *out = obj->u.d->vals[idx];
        else *out = v_undef(NULL);
        return true;
    }
    case JV_NS: {
        size_t idx;
        if (dict_find_str(obj->u.d, name, strlen(name), &idx)) *out = obj->u.d->vals[idx];
        else *out = v_undef(NULL);
        return true;
    }
    case JV_STR:
        for (int i = 0; STR_METHODS[i].name; i++)
            if (strcmp(STR_METHODS[i].name, name) == 0) {
                *out = make_func(c, STR_METHODS[i].id, *obj, pos);
                return !c->failed;
            }
        *out = v_undef(NULL);
        return true;
    case JV_LOOP: {
        const jloop *lp = obj->u.loop;
        int64_t len = (int64_t)lp->items->n, i0 = lp->index0;
        if (!strcmp(name, "index")) *out = v_int(i0 + 1);
        else if (!strcmp(name, "index0")) *out = v_int(i0);
        else if (!strcmp(name, "revindex")) *out = v_int(len - i0);
        else if (!strcmp(name, "revindex0")) *out = v_int(len - i0 - 1);
        else if (!strcmp(name, "first")) *out = v_bool(i0 == 0);
        else if (!strcmp(name, "last")) *out = v_bool(i0 == len - 1);
        else if (!strcmp(name, "length")) *out = v_int(len);
        else if (!strcmp(name, "previtem")) *out = i0 > 0 ? lp->items->v[i0 - 1] : v_undef(NULL);
        else if (!strcmp(name, "nextitem")) *out = i0 + 1 < len ? lp->items->v[i0 + 1] : v_undef(NULL);
        else if (!strcmp(name, "depth")) *out = v_int(1);
        else if (!strcmp(name, "depth0")) *out = v_int(0);
        else *out = v_undef(NULL);
        return true;
    }
    default:
        *out = v_undef(NULL);
        return true;
    }
}

static bool normalize_index(int64_t idx, size_t n, size_t *out) {
    if (idx < 0) idx += (int64_t)n;
    if (idx < 0 || (uint64_t)idx >= n) return false;
    *out = (size_t)idx;
    return true;
}

static bool str_char_at(ctx *c, const jstr *s, int64_t idx, size_t pos, jval *out) {
    size_t n_cp, k;
    size_t *off = utf8_offsets(c, s, &n_cp, pos);
    if (!off) return false;
    if (!normalize_index(idx, n_cp, &k)) { *out = v_undef(NULL); return true; }
    return v_str(c, s->p + off[k], off[k + 1] - off[k], pos, out);
}

/* obj[key] (Jinja: item first, then attribute for string keys) */
static bool get_item(ctx *c, const jval *obj, const jval *key, size_t pos, jval *out) {
    switch (obj->type) {
    case JV_UNDEF: return undefined_error(c, obj, pos);
    case JV_LIST:
        if (key->type == JV_INT || key->type == JV_BOOL) {
            size_t k;
            if (normalize_index(num_i(key), obj->u.l->n, &k)) *out = obj->u.l->v[k];
            else *out = v_undef(NULL);
            return true;
        }
        break;
    case JV_STR:
        if (key->type == JV_INT || key->type == JV_BOOL) return str_char_at(c, obj->u.s, num_i(key), pos, out);
        break;
    case JV_DICT: case JV_NS: {
        size_t idx;
        if (dict_find(obj->u.d, key, &idx)) { *out = obj->u.d->vals[idx]; return true; }
        if (obj->type == JV_NS) { *out = v_undef(NULL); return true; }
        break;
    }
    default: break;
    }
    if (key->type == JV_STR) return get_attr(c, obj, key->u.s->p, pos, out);
    *out = v_undef(NULL);
    return true;
}

/* Python slice indices for length n. */
static bool slice_indices(ctx *c, const jval *lo, const jval *hi, const jval *st, size_t n, size_t pos,
                          int64_t *start, int64_t *stop, int64_t *stepv) {
    int64_t s = 1;
    if (st && st->type != JV_NONE && st->type != JV_UNDEF) {
        if (st->type != JV_INT) return fail(c, pos, "slice step must be an integer");
        s = st->u.i;
        if (s == 0) return fail(c, pos, "slice step cannot be zero");
    }
    int64_t len = (int64_t)n;
    int64_t a = 0, b = 0;
    const jval *vals[2] = {lo, hi};
    int64_t *dst[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        const jval *v = vals[k];
        if (!v || v->type == JV_NONE || v->type == JV_UNDEF) {
            *dst[k] = k == 0 ? (s > 0 ? 0 : len - 1) : (s > 0 ? len : -1);
            continue;
        }
        if (v->type != JV_INT && v->type != JV_BOOL) return fail(c, pos, "slice indices must be integers");
        int64_t x = num_i(v);
        if (x < 0) x += len;
        if (s > 0) x = x < 0 ? 0 : x > len ? len : x;
        else x = x < -1 ? -1 : x > len - 1 ? len - 1 : x;
        *dst[k] = x;
    }
    *start = a; *stop = b; *stepv = s;
    return true;
}

static bool do_slice(ctx *c, const jval *obj, const jval *lo, const jval *hi, const jval *st, size_t pos, jval *out) {
    if (obj->type == JV_UNDEF) return undefined_error(c, obj, pos);
    size_t n;
    size_t *off = NULL;
    if (obj->type == JV_LIST) n = obj->u.l->n;
    else if (obj->type == JV_STR) { if (!(off = utf8_offsets(c, obj->u.s, &n, pos))) return false; }
    else return fail(c, pos, "cannot slice a value of type %s", type_name(obj));
    int64_t a = 0, b = 0, s = 1;
    if (!slice_indices(c, lo, hi, st, n, pos, &a, &b, &s)) return false;
    size_t count = 0;
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s) count++;
    if (obj->type == JV_LIST) {
        jlist *l = new_list(c, count, pos);
        if (!l) return false;
        l->tuple = obj->u.l->tuple;
        size_t k = 0;
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) l->v[k++] = obj->u.l->v[i];
        *out = v_list(l);
        return true;
    }
    strbuf sb = {0};
    bool ok = true;
    for (int64_t i = a; ok && (s > 0 ? i < b : i > b); i += s)
        ok = sb_add(c, &sb, obj->u.s->p + off[i], off[i + 1] - off[i], pos);
    ok = ok && v_str(c, sb.p ? sb.p : "", sb.len, pos, out);
    free(sb.p);
    return ok;
}

/* Iteration: a list of items for lists, dict keys, string characters. */
static bool iterate(ctx *c, const jval *v, size_t pos, jlist **out) {
    switch (v->type) {
    case JV_UNDEF: *out = new_list(c, 0, pos); return *out != NULL;
    case JV_LIST: *out = v->u.l; return true;
    case JV_DICT: {
        jlist *l = new_list(c, v->u.d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < v->u.d->n; i++) l->v[i] = v->u.d->keys[i];
        *out = l;
        return true;
    }
    case JV_STR: {
        size_t n;
        size_t *off = utf8_offsets(c, v->u.s, &n, pos);
        jlist *l = off ? new_list(c, n, pos) : NULL;
        if (!l) return false;
        for (size_t i = 0; i < n; i++)
            if (!v_str(c, v->u.s->p + off[i], off[i + 1] - off[i], pos, &l->v[i])) return false;
        *out = l;
        return true;
    }
    default:
        return fail(c, pos, "'%s' object is not iterable", type_name(v));
    }
}

static bool ck_add(int64_t a, int64_t b, int64_t *r) { return !__builtin_add_overflow(a, b, r); }
static bool ck_sub(int64_t a, int64_t b, int64_t *r) { return !__builtin_sub_overflow(a, b, r); }
static bool ck_mul(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }

static bool repeat(ctx *c, const jval *seq, int64_t times, size_t pos, jval *out) {
    if (times < 0) times = 0;
    if (seq->type == JV_STR) {
        if (seq->u.s->len && (uint64_t)times > c->lim.max_output_bytes / seq->u.s->len)
            return fail(c, pos, "string repetition longer than %zu bytes", c->lim.max_output_bytes);
        size_t n = seq->u.s->len * (size_t)times;
        char *p = alloc(c, n + 1, pos);
        if (!p) return false;
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * seq->u.s->len, seq->u.s->p, seq->u.s->len);
        return v_str(c, p, n, pos, out);
    }
    const jlist *l = seq->u.l;
    if (l->n && (uint64_t)times > (c->lim.max_output_bytes / sizeof(jval)) / l->n)
        return fail(c, pos, "list repetition too long");
    jlist *r = new_list(c, l->n * (size_t)times, pos);
    if (!r) return false;
    for (int64_t i = 0; i < times; i++) if (l->n) memcpy(r->v + (size_t)i * l->n, l->v, l->n * sizeof(jval));
    *out = v_list(r);
    return true;
}

static bool format_percent(ctx *c, const jval *fmtv, const jval *args, size_t pos, jval *out);

static bool binop(ctx *c, int op, const jval *a, const jval *b, size_t pos, jval *out) {
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    if (op == OP_CONCAT) {
        strbuf sb = {0};
        bool ok = write_str(c, &sb, a, pos, 0) && write_str(c, &sb, b, pos, 0) &&
                  v_str(c, sb.p ? sb.p : "", sb.len, pos, out);
        free(sb.p);
        return ok;
    }
    if (a->type == JV_UNDEF) return undefined_error(c, a, pos);
    if (b->type == JV_UNDEF) return undefined_error(c, b, pos);
    if (is_num(a) && is_num(b)) {
        bool fl = a->type == JV_FLOAT || b->type == JV_FLOAT;
        int64_t x = num_i(a), y = num_i(b), r;
        double fx = num_f(a), fy = num_f(b);
        switch (op) {
        case OP_ADD:
            if (fl) { *out = v_float(fx + fy); return true; }
            if (!ck_add(x, y, &r)) return fail(c, pos, "integer overflow in '+'");
            *out = v_int(r); return true;
        case OP_SUB:
            if (fl) { *out = v_float(fx - fy); return true; }
            if (!ck_sub(x, y, &r)) return fail(c, pos, "integer overflow in '-'");
            *out = v_int(r); return true;
        case OP_MUL:
            if (fl) { *out = v_float(fx * fy); return true; }
            if (!ck_mul(x, y, &r)) return fail(c, pos, "integer overflow in '*'");
            *out = v_int(r); return true;
        case OP_DIV:
            if (fy == 0.0) return fail(c, pos, "division by zero");
            *out = v_float(fx / fy); return true;
        case OP_FLOORDIV:
            if (fl) {
                if (fy == 0.0) return fail(c, pos, "float floor division by zero");
                *out = v_float(floor(fx / fy)); return true;
            }
            if (y == 0) return fail(c, pos, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) return fail(c, pos, "integer overflow in '//'");
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            *out = v_int(r); return true;
        case OP_MOD:
            if (fl) {
                if (fy == 0.0) return fail(c, pos, "float modulo by zero");
                double m = fmod(fx, fy);
                if (m != 0.0 && ((m < 0) != (fy < 0))) m += fy;
                *out = v_float(m); return true;
            }
            if (y == 0) return fail(c, pos, "integer modulo by zero");
            if (y == -1) { *out = v_int(0); return true; }
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            *out = v_int(r); return true;
        case OP_POW:
            if (fl || y < 0) {
                if (fx == 0.0 && fy < 0) return fail(c, pos, "zero to a negative power");
                *out = v_float(pow(fx, fy)); return true;
            }
            if (x == 0 || x == 1) r = (y == 0) ? 1 : x;
            else if (x == -1) r = (y % 2) ? -1 : 1;
            else {
                r = 1;
                for (int64_t k = 0; k < y; k++)
                    if (!ck_mul(r, x, &r)) return fail(c, pos, "integer overflow in '**'");
            }
            *out = v_int(r); return true;
        }
    }
    if (op == OP_ADD && a->type == JV_STR && b->type == JV_STR) {
        if (a->u.s->len + b->u.s->len > c->lim.max_output_bytes) return fail(c, pos, "string longer than %zu bytes", c->lim.max_output_bytes);
        char *p = alloc(c, a->u.s->len + b->u.s->len + 1, pos);
        if (!p) return false;
        memcpy(p, a->u.s->p, a->u.s->len);
        memcpy(p + a->u.s->len, b->u.s->p, b->u.s->len);
        jstr *s = alloc(c, sizeof(jstr), pos);
        if (!s) return false;
        p[a->u.s->len + b->u.s->len] = 0;
        s->p = p;
        s->len = a->u.s->len + b->u.s->len;
        out->type = JV_STR;
        out->u.s = s;
        return true;
    }
    if (op == OP_ADD && a->type == JV_LIST && b->type == JV_LIST && a->u.l->tuple == b->u.l->tuple) {
        jlist *l = new_list(c, a->u.l->n + b->u.l->n, pos);
        if (!l) return false;
        l->tuple = a->u.l->tuple;
        if (a->u.l->n) memcpy(l->v, a->u.l->v, a->u.l->n * sizeof(jval));
        if (b->u.l->n) memcpy(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(jval));
        *out = v_list(l);
        return true;
    }
    if (op == OP_MUL && (a->type == JV_STR || a->type == JV_LIST) && (b->type == JV_INT || b->type == JV_BOOL))
        return repeat(c, a, num_i(b), pos, out);
    if (op == OP_MUL && (b->type == JV_STR || b->type == JV_LIST) && (a->type == JV_INT || a->type == JV_BOOL))
        return repeat(c, b, num_i(a), pos, out);
    if (op == OP_MOD && a->type == JV_STR) return format_percent(c, a, b, pos, out);
    return fail(c, pos, "unsupported operand types for %s: '%s' and '%s'", names[op], type_name(a), type_name(b));
}

/* <0, 0, >0; *ok false (and error set) when the types cannot be ordered. */
static int compare_for_sort(ctx *c, const jval *a, const jval *b, bool case_sensitive, bool *ok) {
    if (is_num(a) && is_num(b)) {
        double x = num_f(a), y = num_f(b);
        if (a->type != JV_FLOAT && b->type != JV_FLOAT) { int64_t p = num_i(a), q = num_i(b); return (p > q) - (p < q); }
        return (x > y) - (x < y);
    }
    if (a->type == JV_STR && b->type == JV_STR) {
        if (!case_sensitive) {
            size_t i = 0, j = 0, adv;
            while (i < a->u.s->len && j < b->u.s->len) {
                uint32_t x = case_map(c, utf8_next(a->u.s->p + i, a->u.s->len - i, &adv), false);
                i += adv;
                uint32_t y = case_map(c, utf8_next(b->u.s->p + j, b->u.s->len - j, &adv), false);
                j += adv;
                if (x != y) return x < y ? -1 : 1;
            }
            return (i < a->u.s->len) - (j < b->u.s->len);
        }
        size_t n = a->u.s->len < b->u.s->len ? a->u.s->len : b->u.s->len;
        int r = memcmp(a->u.s->p, b->u.s->p, n);
        if (r) return r;
        return (a->u.s->len > b->u.s->len) - (a->u.s->len < b->u.s->len);
    }
    if (a->type == JV_LIST && b->type == JV_LIST) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (equal(&a->u.l->v[i], &b->u.l->v[i])) continue;
            return compare_for_sort(c, &a->u.l->v[i], &b->u.l->v[i], case_sensitive, ok);
        }
        return (a->u.l->n > b->u.l->n) - (a->u.l->n < b->u.l->n);
    }
    *ok = false;
    fail(c, 0, "cannot compare '%s' and '%s'", type_name(a), type_name(b));
    return 0;
}

static bool contains(ctx *c, const jval *container, const jval *item, size_t pos, bool *result) {
    switch (container->type) {
    case JV_STR:
        if (item->type != JV_STR) return fail(c, pos, "'in <string>' requires a string as left operand, not %s", type_name(item));
        if (item->u.s->len == 0) { *result = true; return true; }
        *result = memmem(container->u.s->p, container->u.s->len, item->u.s->p, item->u.s->len) != NULL;
        return true;
    case JV_LIST:
        *result = false;
        for (size_t i = 0; i < container->u.l->n; i++) if (equal(&container->u.l->v[i], item)) { *result = true; break; }
        return true;
    case JV_DICT: case JV_NS: {
        size_t idx;
        *result = dict_find(container->u.d, item, &idx);
        return true;
    }
    case JV_UNDEF: return undefined_error(c, container, pos);
    default: return fail(c, pos, "argument of type '%s' is not iterable", type_name(container));
    }
}

static bool compare_op(ctx *c, int op, const jval *a, const jval *b, size_t pos, bool *r) {
    bool ok = true;
    switch (op) {
    case OP_EQ: *r = equal(a, b); return true;
    case OP_NE: *r = !equal(a, b); return true;
    case OP_IN: return contains(c, b, a, pos, r);
    case OP_NOTIN: if (!contains(c, b, a, pos, r)) return false; *r = !*r; return true;
    default: break;
    }
    if (a->type == JV_UNDEF) return undefined_error(c, a, pos);
    if (b->type == JV_UNDEF) return undefined_error(c, b, pos);
    c->failed = c->failed; /* compare_for_sort reports its own error */
    int k = compare_for_sort(c, a, b, true, &ok);
    if (!ok) {
        c->failed = false;
        return fail(c, pos, "'%s' not supported between instances of '%s' and '%s'",
                    op == OP_LT ? "<" : op == OP_LE ? "<=" : op == OP_GT ? ">" : ">=", type_name(a), type_name(b));
    }
    *r = op == OP_LT ? k < 0 : op == OP_LE ? k <= 0 : op == OP_GT ? k > 0 : k >= 0;
    return true;
}

/* ---- arguments ---- */

typedef struct {
    const jval *pos;
    size_t n_pos;
    const char *const *kw_names;
    const jval *kw;
    size_t n_kw;
} args;

/* Argument i (positional) or by keyword name; NULL when absent. */
static const jval *arg(const args *a, size_t i, const char *name) {
    if (i < a->n_pos) return &a->pos[i];
    for (size_t k = 0; name && k < a->n_kw; k++) if (strcmp(a->kw_names[k], name) == 0) return &a->kw[k];
    return NULL;
}

static bool want_str(ctx *c, const jval *v, const char *what, size_t pos) {
    if (v->type == JV_UNDEF) return undefined_error(c, v, pos);
    if (v->type != JV_STR) return fail(c, pos, "%s expects a string, got %s", what, type_name(v));
    return true;
}

/* ---- string helpers ---- */

static bool in_chars(uint32_t cp, const jstr *chars) {
    size_t i = 0, adv;
    while (i < chars->len) {
        if (utf8_next(chars->p + i, chars->len - i, &adv) == cp) return true;
        i += adv;
    }
    return false;
}

static bool str_strip(ctx *c, const jstr *s, const jval *chars, bool left, bool right, size_t pos, jval *out) {
    const jstr *set = chars && chars->type == JV_STR ? chars->u.s : NULL;
    if (chars && chars->type != JV_STR && chars->type != JV_NONE && chars->type != JV_UNDEF)
        return fail(c, pos, "strip arg must be None or str");
    size_t n_cp;
    size_t *off = utf8_offsets(c, s, &n_cp, pos);
    if (!off) return false;
    size_t a = 0, b = n_cp, adv;
    while (left && a < b) {
        uint32_t cp = utf8_next(s->p + off[a], s->len - off[a], &adv);
        if (set ? !in_chars(cp, set) : !py_space(cp)) break;
        a++;
    }
    while (right && b > a) {
        uint32_t cp = utf8_next(s->p + off[b - 1], s->len - off[b - 1], &adv);
        if (set ? !in_chars(cp, set) : !py_space(cp)) break;
        b--;
    }
    return v_str(c, s->p + off[a], off[b] - off[a], pos, out);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_PY_TITLE, CASE_JINJA_TITLE, CASE_CAPITALIZE } casemode;

static bool str_case(ctx *c, const jstr *s, casemode mode, size_t pos, jval *out) {
    strbuf b = {0};
    size_t i = 0, adv, k = 0;
    bool prev_cased = false, ok = true;
    bool word_start = true; /* Jinja title: after start or one of - whitespace ( { [ < */
    while (ok && i < s->len) {
        uint32_t cp = utf8_next(s->p + i, s->len - i, &adv), m;
        switch (mode) {
        case CASE_UPPER: m = case_map(c, cp, true); break;
        case CASE_LOWER: m = case_map(c, cp, false); break;
        case CASE_CAPITALIZE: m = case_map(c, cp, k == 0); break;
        case CASE_PY_TITLE: {
            bool alpha = is_alpha_cp(c, cp);
            m = alpha ? case_map(c, cp, !prev_cased) : cp;
            prev_cased = alpha;
            break;
        }
        default: {
            bool sep = cp == '-' || py_space(cp) || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            m = sep ? cp : case_map(c, cp, word_start);
            word_start = sep;
            break;
        }
        }
        ok = put_cp(c, &b, m, pos);
        i += adv;
        k++;
    }
    ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

static bool str_replace(ctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count, size_t pos, jval *out) {
    strbuf b = {0};
    bool ok = true;
    int64_t done = 0;
    if (old->len == 0) {
        size_t i = 0, adv;
        while (ok && i <= s->len) {
            if (count < 0 || done < count) { ok = sb_add(c, &b, rep->p, rep->len, pos); done++; }
            if (i == s->len) break;
            utf8_next(s->p + i, s->len - i, &adv);
            ok = ok && sb_add(c, &b, s->p + i, adv, pos);
            i += adv;
        }
    } else {
        size_t i = 0;
        while (ok && i < s->len) {
            const char *hit = (count < 0 || done < count) ? memmem(s->p + i, s->len - i, old->p, old->len) : NULL;
            if (!hit) { ok = sb_add(c, &b, s->p + i, s->len - i, pos); break; }
            size_t at = (size_t)(hit - s->p);
            ok = sb_add(c, &b, s->p + i, at - i, pos) && sb_add(c, &b, rep->p, rep->len, pos);
            i = at + old->len;
            done++;
        }
    }
    ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

/* Appends a new string piece to a growing value array (for split). */
static bool push_piece(ctx *c, jval **v, size_t *n, size_t *cap, const char *p, size_t len, size_t pos) {
    if (*n == *cap) {
        jval *nv = alloc(c, *cap * 2 * sizeof(jval), pos);
        if (!nv) return false;
        memcpy(nv, *v, *n * sizeof(jval));
        *v = nv;
        *cap *= 2;
    }
    if (!v_str(c, p, len, pos, &(*v)[*n])) return false;
    (*n)++;
    return true;
}

static bool str_split(ctx *c, const jstr *s, const jval *sepv, int64_t maxsplit, size_t pos, jval *out) {
    size_t cap = 8, n = 0;
    jval *v = alloc(c, cap * sizeof(jval), pos);
    if (!v) return false;
    if (!sepv || sepv->type == JV_NONE) {
        size_t i = 0, adv;
        int64_t splits = 0;
        for (;;) {
            while (i < s->len && py_space(utf8_next(s->p + i, s->len - i, &adv))) i += adv;
            if (i >= s->len) break;
            size_t start = i;
            if (maxsplit >= 0 && splits >= maxsplit) {
                size_t e = s->len;
                while (e > start) {
                    size_t k = e - 1;
                    while (k > start && ((unsigned char)s->p[k] & 0xC0) == 0x80) k--;
                    if (!py_space(utf8_next(s->p + k, s->len - k, &adv))) break;
                    e = k;
                }
                if (!push_piece(c, &v, &n, &cap, s->p + start, e - start, pos)) return false;
                break;
            }
            while (i < s->len && !py_space(utf8_next(s->p + i, s->len - i, &adv))) i += adv;
            if (!push_piece(c, &v, &n, &cap, s->p + start, i - start, pos)) return false;
            splits++;
        }
    } else {
        if (sepv->type != JV_STR) return fail(c, pos, "split separator must be a string");
        const jstr *sep = sepv->u.s;
        if (sep->len == 0) return fail(c, pos, "empty separator");
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? memmem(s->p + i, s->len - i, sep->p, sep->len) : NULL;
            if (!hit) { if (!push_piece(c, &v, &n, &cap, s->p + i, s->len - i, pos)) return false; break; }
            if (!push_piece(c, &v, &n, &cap, s->p + i, (size_t)(hit - s->p) - i, pos)) return false;
            i = (size_t)(hit - s->p) + sep->len;
            splits++;
        }
    }
    jlist *l = new_list(c, 0, pos);
    if (!l) return false;
    l->n = n;
    l->v = v;
    *out = v_list(l);
    return true;
}

static bool to_int(ctx *c, const jval *v, int64_t dflt, size_t pos, jval *out) {
    (void)c; (void)pos;
    switch (v->type) {
    case JV_INT: *out = *v; return true;
    case JV_BOOL: *out = v_int(v->u.b); return true;
    case JV_FLOAT:
        if (isnan(v->u.f) || fabs(v->u.f) >= 9.2e18) { *out = v_int(dflt); return true; }
        *out = v_int((int64_t)v->u.f); return true;
    case JV_STR: {
        char buf[128];
        size_t n = v->u.s->len;
        if (n >= sizeof buf) { *out = v_int(dflt); return true; }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) if (v->u.s->p[i] != '_') buf[k++] = v->u.s->p[i];
        buf[k] = 0;
        char *end;
        errno = 0;
        long long x = strtoll(buf, &end, 10);
        while (*end && is_ws(*end)) end++;
        if (end != buf && !*end && errno == 0) { *out = v_int(x); return true; }
        errno = 0;
        double f = strtod(buf, &end);
        while (*end && is_ws(*end)) end++;
        if (end != buf && !*end && errno == 0 && isfinite(f) && fabs(f) < 9.2e18) { *out = v_int((int64_t)f); return true; }
        *out = v_int(dflt);
        return true;
    }
    default: *out = v_int(dflt); return true;
    }
}

static bool to_float(const jval *v, double dflt, jval *out) {
    switch (v->type) {
    case JV_INT: case JV_BOOL: case JV_FLOAT: *out = v_float(num_f(v)); return true;
    case JV_STR: {
        char buf[128];
        if (v->u.s->len >= sizeof buf) { *out = v_float(dflt); return true; }
        memcpy(buf, v->u.s->p, v->u.s->len);
        buf[v->u.s->len] = 0;
        char *end;
        double f = strtod(buf, &end);
        while (*end && is_ws(*end)) end++;
        *out = v_float(end != buf && !*end ? f : dflt);
        return true;
    }
    default: *out = v_float(dflt); return true;
    }
}

static int64_t length_of(const jval *v) {
    switch (v->type) {
    case JV_STR: return (int64_t)utf8_count(v->u.s->p, v->u.s->len);
    case JV_LIST: return (int64_t)v->u.l->n;
    case JV_DICT: case JV_NS: return (int64_t)v->u.d->n;
    default: return -1;
    }
}

/* "%s" % x formatting (only %s %d %i %r %%) */
static bool format_percent(ctx *c, const jval *fmtv, const jval *argsv, size_t pos, jval *out) {
    const jstr *f = fmtv->u.s;
    const jval *items = argsv;
    size_t n_items = 1, used = 0;
    if (argsv->type == JV_LIST && argsv->u.l->tuple) { items = argsv->u.l->v; n_items = argsv->u.l->n; }
    strbuf b = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < f->len; i++) {
        if (f->p[i] != '%') { ok = sb_add(c, &b, f->p + i, 1, pos); continue; }
        if (++i >= f->len) { ok = fail(c, pos, "incomplete format"); break; }
        char k = f->p[i];
        if (k == '%') { ok = sb_add(c, &b, "%", 1, pos); continue; }
        if (used >= n_items) { ok = fail(c, pos, "not enough arguments for format string"); break; }
        const jval *x = &items[used++];
        if (k == 's') ok = write_str(c, &b, x, pos, 0);
        else if (k == 'r') ok = write_repr(c, &b, x, pos, 0);
        else if (k == 'd' || k == 'i') {
            if (!is_num(x)) { ok = fail(c, pos, "%%d format: a number is required, not %s", type_name(x)); break; }
            jval iv = v_int(x->type == JV_FLOAT ? (int64_t)x->u.f : num_i(x));
            ok = write_str(c, &b, &iv, pos, 0);
        } else {
            ok = fail(c, pos, "unsupported format character '%c'", k);
        }
    }
    if (ok && used < n_items) ok = fail(c, pos, "not all arguments converted during string formatting");
    ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

/* ---- tests ---- */

static bool apply_test(ctx *c, const char *name, const jval *v, const args *a, size_t pos, bool *r) {
    const jval *x = arg(a, 0, NULL);
    if (!strcmp(name, "defined")) { *r = v->type != JV_UNDEF; return true; }
    if (!strcmp(name, "undefined")) { *r = v->type == JV_UNDEF; return true; }
    if (!strcmp(name, "none")) { *r = v->type == JV_NONE; return true; }
    if (!strcmp(name, "boolean")) { *r = v->type == JV_BOOL; return true; }
    if (!strcmp(name, "true")) { *r = v->type == JV_BOOL && v->u.b; return true; }
    if (!strcmp(name, "false")) { *r = v->type == JV_BOOL && !v->u.b; return true; }
    if (!strcmp(name, "string")) { *r = v->type == JV_STR; return true; }
    if (!strcmp(name, "number")) { *r = is_num(v); return true; }
    if (!strcmp(name, "integer")) { *r = v->type == JV_INT; return true; }
    if (!strcmp(name, "float")) { *r = v->type == JV_FLOAT; return true; }
    if (!strcmp(name, "mapping")) { *r = v->type == JV_DICT; return true; }
    if (!strcmp(name, "iterable")) { *r = v->type == JV_STR || v->type == JV_LIST || v->type == JV_DICT; return true; }
    if (!strcmp(name, "sequence")) { *r = v->type == JV_STR || v->type == JV_LIST || v->type == JV_DICT; return true; }
    if (!strcmp(name, "callable")) { *r = v->type == JV_MACRO || v->type == JV_FUNC; return true; }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v->type != JV_INT && v->type != JV_BOOL) return fail(c, pos, "test '%s' needs an integer, got %s", name, type_name(v));
        int64_t i = num_i(v);
        if (name[0] == 'o') { *r = i % 2 != 0; return true; }
        if (name[0] == 'e') { *r = i % 2 == 0; return true; }
        if (!x || (x->type != JV_INT && x->type != JV_BOOL)) return fail(c, pos, "divisibleby needs an integer argument");
        if (num_i(x) == 0) return fail(c, pos, "integer modulo by zero");
        *r = num_i(x) == -1 || i % num_i(x) == 0;
        return true;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower")) {
        if (v->type != JV_STR) { *r = false; return true; }
        jval m;
        if (!str_case(c, v->u.s, name[0] == 'u' ? CASE_UPPER : CASE_LOWER, pos, &m)) return false;
        *r = equal(&m, v);
        return true;
    }
    static const struct { const char *name; int op; } cmp[] = {
        {"equalto", OP_EQ}, {"eq", OP_EQ}, {"==", OP_EQ}, {"sameas", OP_EQ}, {"ne", OP_NE}, {"!=", OP_NE},
        {"lt", OP_LT}, {"lessthan", OP_LT}, {"<", OP_LT}, {"le", OP_LE}, {"<=", OP_LE}, {"gt", OP_GT},
        {"greaterthan", OP_GT}, {">", OP_GT}, {"ge", OP_GE}, {">=", OP_GE}, {"in", OP_IN}, {NULL, 0},
    };
    for (int i = 0; cmp[i].name; i++)
        if (!strcmp(cmp[i].name, name)) {
            if (!x) return fail(c, pos, "test '%s' needs an argument", name);
            return compare_op(c, cmp[i].op, v, x, pos, r);
        }
    return fail(c, pos, "no test named '%s'", name);
}

/* ---- filters ---- */

static bool call_value(ctx *c, const jval *fn, const args *a, size_t pos, jval *out);

/* item.attribute for selectattr/map/sort/join/sum (dotted paths allowed) */
static bool attr_path(ctx *c, const jval *item, const jstr *path, size_t pos, jval *out) {
    jval cur = *item;
    size_t i = 0;
    while (i <= path->len) {
        const char *dot = memchr(path->p + i, '.', path->len - i);
        size_t end = dot ? (size_t)(dot - path->p) : path->len;
        jval key;
        bool numeric = end > i;
        for (size_t k = i; k < end; k++) if (path->p[k] < '0' || path->p[k] > '9') numeric = false;
        if (numeric) key = v_int(strtoll(path->p + i, NULL, 10));
        else if (!v_str(c, path->p + i, end - i, pos, &key)) return false;
        if (cur.type == JV_UNDEF) { *out = cur; return true; }
        if (!get_item(c, &cur, &key, pos, &cur)) return false;
        if (!dot) break;
        i = end + 1;
    }
    *out = cur;
    return true;
}

static bool select_common(ctx *c, const jval *v, const args *a, bool by_attr, bool keep, size_t pos, jval *out) {
    jlist *items;
    if (!iterate(c, v, pos, &items)) return false;
    size_t first_extra = by_attr ? 1 : 0;
    const jval *attr = by_attr ? arg(a, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->type != JV_STR)) return fail(c, pos, "selectattr/rejectattr need an attribute name");
    const jval *test = arg(a, first_extra, NULL);
    if (test && test->type != JV_STR) return fail(c, pos, "test name must be a string");
    args targs = {.pos = a->pos + (a->n_pos > first_extra + 1 ? first_extra + 1 : a->n_pos),
                  .n_pos = a->n_pos > first_extra + 1 ? a->n_pos - first_extra - 1 : 0};
    jlist *r = new_list(c, items->n, pos);
    if (!r) return false;
    size_t n = 0;
    for (size_t i = 0; i < items->n; i++) {
        if (!step(c, pos)) return false;
        jval x = items->v[i];
        if (by_attr && !attr_path(c, &items->v[i], attr->u.s, pos, &x)) return false;
        bool t;
        if (test) {
            if (!apply_test(c, test->u.s->p, &x, &targs, pos, &t)) return false;
        } else {
            t = truthy(&x);
        }
        if (t == keep) r->v[n++] = items->v[i];
    }
    r->n = n;
    *out = v_list(r);
    return true;
}

static bool sort_list(ctx *c, jlist *l, bool reverse, bool case_sensitive, const jstr *attr, size_t pos) {
    jval *keys = alloc(c, (l->n ? l->n : 1) * sizeof(jval), pos);
    if (!keys) return false;
    for (size_t i = 0; i < l->n; i++) {
        keys[i] = l->v[i];
        if (attr && !attr_path(c, &l->v[i], attr, pos, &keys[i])) return false;
    }
    for (size_t i = 1; i < l->n; i++) { /* stable insertion sort */
        jval x = l->v[i], kx = keys[i];
        size_t j = i;
        while (j > 0) {
            bool ok = true;
            int k = compare_for_sort(c, &keys[j - 1], &kx, case_sensitive, &ok);
            if (!ok) return false;
            if (!(reverse ? k < 0 : k > 0)) break;
            if (!step(c, pos)) return false;
            l->v[j] = l->v[j - 1];
            keys[j] = keys[j - 1];
            j--;
        }
        l->v[j] = x;
        keys[j] = kx;
    }
    return true;
}

static jlist *copy_list(ctx *c, const jlist *src, size_t pos) {
    jlist *l = new_list(c, src->n, pos);
    if (l && src->n) memcpy(l->v, src->v, src->n * sizeof(jval));
    return l;
}

static bool apply_filter(ctx *c, const char *name, const jval *v, const args *a, size_t pos, jval *out) {
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const jval *d = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        bool use = v->type == JV_UNDEF || (boolean && truthy(boolean) && !truthy(v));
        if (use) { if (d) *out = *d; else return v_cstr(c, "", pos, out); }
        else *out = *v;
        return true;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v->type == JV_UNDEF) { *out = v_int(0); return true; }
        int64_t n = length_of(v);
        if (n < 0) return fail(c, pos, "object of type '%s' has no len()", type_name(v));
        *out = v_int(n);
        return true;
    }
    if (!strcmp(name, "string")) return to_string_val(c, v, pos, out);
    if (!strcmp(name, "safe")) { *out = *v; return true; }
    if (!strcmp(name, "int")) {
        const jval *d = arg(a, 0, "default");
        return to_int(c, v, d && (d->type == JV_INT) ? d->u.i : 0, pos, out);
    }
    if (!strcmp(name, "float")) {
        const jval *d = arg(a, 0, "default");
        return to_float(v, d && is_num(d) ? num_f(d) : 0.0, out);
    }
    if (!strcmp(name, "tojson")) {
        const jval *ind = arg(a, 0, "indent"), *sk = arg(a, 1, "sort_keys"), *ea = arg(a, 2, "ensure_ascii");
        json_opts o = {.indent = -1, .sort_keys = sk && truthy(sk), .ensure_ascii = ea && truthy(ea)};
        if (ind && ind->type != JV_NONE) {
            if (ind->type != JV_INT || ind->u.i < 0 || ind->u.i > 64) return fail(c, pos, "tojson indent must be an integer 0..64");
            o.indent = (int)ind->u.i;
        }
        if (v->type == JV_UNDEF) return fail(c, pos, "tojson: undefined value is not JSON serializable");
        strbuf b = {0};
        bool ok = write_json(c, &b, v, &o, 0, pos) && v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "items")) {
        if (v->type == JV_UNDEF) { jlist *l = new_list(c, 0, pos); if (!l) return false; *out = v_list(l); return true; }
        if (v->type != JV_DICT) return fail(c, pos, "items filter expects a mapping, got %s", type_name(v));
        jlist *l = new_list(c, v->u.d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < v->u.d->n; i++) {
            jlist *pair = new_list(c, 2, pos);
            if (!pair) return false;
            pair->tuple = true;
            pair->v[0] = v->u.d->keys[i];
            pair->v[1] = v->u.d->vals[i];
            l->v[i] = v_list(pair);
        }
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "list")) {
        jlist *items;
        if (v->type == JV_UNDEF) return undefined_error(c, v, pos);
        if (!iterate(c, v, pos, &items)) return false;
        jlist *l = copy_list(c, items, pos);
        if (!l) return false;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *items;
        if (v->type == JV_UNDEF) return undefined_error(c, v, pos);
        if (!iterate(c, v, pos, &items)) return false;
        if (items->n == 0) *out = v_undef(NULL);
        else *out = items->v[name[0] == 'f' ? 0 : items->n - 1];
        return true;
    }
    if (!strcmp(name, "reverse")) {
        if (v->type == JV_STR) {
            jlist *chars;
            if (!iterate(c, v, pos, &chars)) return false;
            strbuf b = {0};
            bool ok = true;
            for (size_t i = chars->n; ok && i-- > 0;) ok = sb_add(c, &b, chars->v[i].u.s->p, chars->v[i].u.s->len, pos);
            ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
            free(b.p);
            return ok;
        }
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        jlist *l = new_list(c, items->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < items->n; i++) l->v[i] = items->v[items->n - 1 - i];
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "join")) {
        const jval *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        strbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (i && sep) ok = write_str(c, &b, sep, pos, 0);
            jval x = items->v[i];
            if (ok && attr && attr->type == JV_STR) ok = attr_path(c, &items->v[i], attr->u.s, pos, &x);
            ok = ok && write_str(c, &b, &x, pos, 0);
        }
        ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "selectattr")) return select_common(c, v, a, true, true, pos, out);
    if (!strcmp(name, "rejectattr")) return select_common(c, v, a, true, false, pos, out);
    if (!strcmp(name, "select")) return select_common(c, v, a, false, true, pos, out);
    if (!strcmp(name, "reject")) return select_common(c, v, a, false, false, pos, out);
    if (!strcmp(name, "map")) {
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        const jval *attr = arg(a, SIZE_MAX, "attribute"), *dflt = arg(a, SIZE_MAX, "default");
        const jval *fname = a->n_pos > 0 ? &a->pos[0] : NULL;
        if (!attr && (!fname || fname->type != JV_STR)) return fail(c, pos, "map needs a filter name or attribute=");
        args fargs = {.pos = a->pos + (a->n_pos > 0 ? 1 : 0), .n_pos = a->n_pos > 0 ? a->n_pos - 1 : 0};
        jlist *l = new_list(c, items->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < items->n; i++) {
            if (!step(c, pos)) return false;
            if (attr) {
                if (attr->type != JV_STR) return fail(c, pos, "map attribute must be a string");
                if (!attr_path(c, &items->v[i], attr->u.s, pos, &l->v[i])) return false;
                if (l->v[i].type == JV_UNDEF && dflt) l->v[i] = *dflt;
            } else if (!apply_filter(c, fname->u.s->p, &items->v[i], &fargs, pos, &l->v[i])) {
                return false;
            }
        }
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "sort")) {
        const jval *rev = arg(a, 0, "reverse"), *cs = arg(a, 1, "case_sensitive"), *attr = arg(a, 2, "attribute");
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        jlist *l = copy_list(c, items, pos);
        if (!l || !sort_list(c, l, rev && truthy(rev), cs && truthy(cs), attr && attr->type == JV_STR ? attr->u.s : NULL, pos))
            return false;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "unique")) {
        const jval *cs = arg(a, 0, "case_sensitive");
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        jlist *l = new_list(c, items->n, pos);
        if (!l) return false;
        size_t n = 0;
        for (size_t i = 0; i < items->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++) {
                if (!step(c, pos)) return false;
                bool ok = true;
                if (!(cs && truthy(cs)) && items->v[i].type == JV_STR && l->v[j].type == JV_STR)
                    seen = compare_for_sort(c, &l->v[j], &items->v[i], false, &ok) == 0;
                else
                    seen = equal(&l->v[j], &items->v[i]);
            }
            if (!seen) l->v[n++] = items->v[i];
        }
        l->n = n;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "sum")) {
        const jval *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        jval acc = start ? *start : v_int(0);
        for (size_t i = 0; i < items->n; i++) {
            jval x = items->v[i];
            if (attr && attr->type == JV_STR && !attr_path(c, &items->v[i], attr->u.s, pos, &x)) return false;
            if (!binop(c, OP_ADD, &acc, &x, pos, &acc)) return false;
        }
        *out = acc;
        return true;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        const jval *cs = arg(a, 0, "case_sensitive");
        jlist *items;
        if (!iterate(c, v, pos, &items)) return false;
        if (items->n == 0) { *out = v_undef(NULL); return true; }
        size_t best = 0;
        for (size_t i = 1; i < items->n; i++) {
            bool ok = true;
            int k = compare_for_sort(c, &items->v[i], &items->v[best], cs && truthy(cs), &ok);
            if (!ok) return false;
            if (name[1] == 'i' ? k < 0 : k > 0) best = i;
        }
        *out = items->v[best];
        return true;
    }
    if (!strcmp(name, "abs")) {
        if (v->type == JV_INT) {
            if (v->u.i == INT64_MIN) return fail(c, pos, "integer overflow in abs");
            *out = v_int(v->u.i < 0 ? -v->u.i : v->u.i);
            return true;
        }
        if (v->type == JV_FLOAT) { *out = v_float(fabs(v->u.f)); return true; }
        if (v->type == JV_BOOL) { *out = v_int(v->u.b); return true; }
        return fail(c, pos, "bad operand type for abs(): '%s'", type_name(v));
    }
    if (!strcmp(name, "round")) {
        const jval *prec = arg(a, 0, "precision"), *method = arg(a, 1, "method");
        if (!is_num(v)) return fail(c, pos, "round expects a number, got %s", type_name(v));
        int p = prec && prec->type == JV_INT ? (int)(prec->u.i < 0 ? 0 : prec->u.i > 15 ? 15 : prec->u.i) : 0;
        double x = num_f(v), scale = pow(10.0, p);
        if (method && method->type == JV_STR && !strcmp(method->u.s->p, "floor")) x = floor(x * scale) / scale;
        else if (method && method->type == JV_STR && !strcmp(method->u.s->p, "ceil")) x = ceil(x * scale) / scale;
        else {
            char buf[512];
            snprintf(buf, sizeof buf, "%.*f", p, x);
            x = strtod(buf, NULL);
        }
        *out = v_float(x);
        return true;
    }
    if (v->type == JV_UNDEF) return undefined_error(c, v, pos);
    if (!strcmp(name, "trim")) {
        if (!want_str(c, v, "trim", pos)) return false;
        return str_strip(c, v->u.s, arg(a, 0, "chars"), true, true, pos, out);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        jval s;
        if (!to_string_val(c, v, pos, &s)) return false;
        casemode m = name[0] == 'u' ? CASE_UPPER : name[0] == 'l' ? CASE_LOWER : name[0] == 't' ? CASE_JINJA_TITLE
                   : CASE_CAPITALIZE;
        if (m == CASE_CAPITALIZE) {
            jval low;
            if (!str_case(c, s.u.s, CASE_LOWER, pos, &low)) return false;
            return str_case(c, low.u.s, CASE_CAPITALIZE, pos, out);
        }
        if (m == CASE_JINJA_TITLE) {
            jval low;
            if (!str_case(c, s.u.s, CASE_LOWER, pos, &low)) return false;
            return str_case(c, low.u.s, CASE_JINJA_TITLE, pos, out);
        }
        return str_case(c, s.u.s, m, pos, out);
    }
    if (!strcmp(name, "replace")) {
        const jval *old = arg(a, 0, "old"), *rep = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        jval s;
        if (!old || !rep) return fail(c, pos, "replace needs two arguments");
        if (!to_string_val(c, v, pos, &s)) return false;
        jval os, rs;
        if (!to_string_val(c, old, pos, &os) || !to_string_val(c, rep, pos, &rs)) return false;
        return str_replace(c, s.u.s, os.u.s, rs.u.s, cnt && cnt->type == JV_INT ? cnt->u.i : -1, pos, out);
    }
    if (!strcmp(name, "center")) {
        const jval *w = arg(a, 0, "width");
        jval s;
        if (!to_string_val(c, v, pos, &s)) return false;
        int64_t width = w && w->type == JV_INT ? w->u.i : 80, len = length_of(&s);
        if (width > (int64_t)c->lim.max_output_bytes) return fail(c, pos, "center width too large");
        if (len >= width) { *out = s; return true; }
        int64_t total = width - len, left = total / 2 + (total & width & 1);
        strbuf b = {0};
        bool ok = true;
        for (int64_t i = 0; ok && i < left; i++) ok = sb_add(c, &b, " ", 1, pos);
        ok = ok && sb_add(c, &b, s.u.s->p, s.u.s->len, pos);
        for (int64_t i = 0; ok && i < total - left; i++) ok = sb_add(c, &b, " ", 1, pos);
        ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "wordcount")) {
        jval s;
        if (!to_string_val(c, v, pos, &s)) return false;
        int64_t words = 0;
        bool in_word = false;
        size_t i = 0, adv;
        while (i < s.u.s->len) {
            uint32_t cp = utf8_next(s.u.s->p + i, s.u.s->len - i, &adv);
            bool w = cp == '_' || (cp >= '0' && cp <= '9') || is_alpha_cp(c, cp);
            if (w && !in_word) words++;
            in_word = w;
            i += adv;
        }
        *out = v_int(words);
        return true;
    }
    return fail(c, pos, "no filter named '%s'", name);
}

/* ---- calls ---- */

static bool call_strftime(ctx *c, const args *a, size_t pos, jval *out) {
    const jval *f = arg(a, 0, "format");
    if (!f || f->type != JV_STR) return fail(c, pos, "strftime_now needs a format string");
    if (f->u.s->len > 256) return fail(c, pos, "strftime_now format too long");
    struct tm tmv;
    time_t t;
    if (c->lim.use_fixed_time) {
        t = (time_t)c->lim.fixed_time;
        if (!gmtime_r(&t, &tmv)) return fail(c, pos, "strftime_now: time out of range");
    } else {
        t = time(NULL);
        if (!localtime_r(&t, &tmv)) return fail(c, pos, "strftime_now: time out of range");
    }
    char buf[1024];
    size_t n = c->c_loc ? strftime_l(buf, sizeof buf, f->u.s->p, &tmv, c->c_loc) : strftime(buf, sizeof buf, f->u.s->p, &tmv);
    if (n == 0 && f->u.s->len > 0) buf[0] = 0;
    return v_str(c, buf, n, pos, out);
}

static bool call_method(ctx *c, const jfunc *fn, const args *a, size_t pos, jval *out) {
    const jval *self = &fn->self;
    if (fn->id >= FN_D_ITEMS) {
        const jdict *d = self->u.d;
        if (fn->id == FN_D_GET) {
            const jval *k = arg(a, 0, NULL), *dflt = arg(a, 1, NULL);
            size_t idx;
            if (!k) return fail(c, pos, "get expected at least 1 argument");
            *out = dict_find(d, k, &idx) ? d->vals[idx] : dflt ? *dflt : v_none();
            return true;
        }
        jval tmp = {.type = JV_DICT};
        tmp.u.d = (jdict *)d;
        if (fn->id == FN_D_ITEMS) return apply_filter(c, "items", &tmp, a, pos, out);
        jlist *l = new_list(c, d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < d->n; i++) l->v[i] = fn->id == FN_D_KEYS ? d->keys[i] : d->vals[i];
        *out = v_list(l);
        return true;
    }
    const jstr *s = self->u.s;
    switch (fn->id) {
    case FN_S_STRIP: return str_strip(c, s, arg(a, 0, NULL), true, true, pos, out);
    case FN_S_LSTRIP: return str_strip(c, s, arg(a, 0, NULL), true, false, pos, out);
    case FN_S_RSTRIP: return str_strip(c, s, arg(a, 0, NULL), false, true, pos, out);
    case FN_S_UPPER: return str_case(c, s, CASE_UPPER, pos, out);
    case FN_S_LOWER: return str_case(c, s, CASE_LOWER, pos, out);
    case FN_S_TITLE: return str_case(c, s, CASE_PY_TITLE, pos, out);
    case FN_S_CAPITALIZE: {
        jval low;
        if (!str_case(c, s, CASE_LOWER, pos, &low)) return false;
        return str_case(c, low.u.s, CASE_CAPITALIZE, pos, out);
    }
    case FN_S_STARTSWITH: case FN_S_ENDSWITH: {
        const jval *p = arg(a, 0, NULL);
        if (!p) return fail(c, pos, "startswith/endswith need an argument");
        const jval *cands = p;
        size_t nc = 1;
        if (p->type == JV_LIST) { cands = p->u.l->v; nc = p->u.l->n; }
        bool r = false;
        for (size_t i = 0; i < nc && !r; i++) {
            if (cands[i].type != JV_STR) return fail(c, pos, "startswith/endswith need strings");
            const jstr *x = cands[i].u.s;
            if (x->len <= s->len)
                r = fn->id == FN_S_STARTSWITH ? memcmp(s->p, x->p, x->len) == 0
                                              : memcmp(s->p + s->len - x->len, x->p, x->len) == 0;
        }
        *out = v_bool(r);
        return true;
    }
    case FN_S_SPLIT: case FN_S_RSPLIT: {
        const jval *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
        int64_t m = mx && mx->type == JV_INT ? mx->u.i : -1;
        if (fn->id == FN_S_RSPLIT && m >= 0) return fail(c, pos, "rsplit with maxsplit is not supported");
        return str_split(c, s, sep, m, pos, out);
    }
    case FN_S_SPLITLINES: {
        jval nl;
        if (!v_cstr(c, "\n", pos, &nl) || !str_split(c, s, &nl, -1, pos, out)) return false;
        if (out->u.l->n > 0 && out->u.l->v[out->u.l->n - 1].u.s->len == 0) out->u.l->n--;
        return true;
    }
    case FN_S_REPLACE: {
        const jval *o = arg(a, 0, NULL), *r = arg(a, 1, NULL), *cnt = arg(a, 2, NULL);
        if (!o || !r || o->type != JV_STR || r->type != JV_STR) return fail(c, pos, "replace needs two strings");
        return str_replace(c, s, o->u.s, r->u.s, cnt && cnt->type == JV_INT ? cnt->u.i : -1, pos, out);
    }
    case FN_S_FIND: case FN_S_RFIND: case FN_S_COUNT: {
        const jval *x = arg(a, 0, NULL);
        if (!x || x->type != JV_STR) return fail(c, pos, "find/count need a string");
        const jstr *sub = x->u.s;
        if (fn->id == FN_S_COUNT) {
            int64_t n = 0;
            if (sub->len == 0) n = (int64_t)utf8_count(s->p, s->len) + 1;
            else for (size_t i = 0; i + sub->len <= s->len;) {
                const char *h = memmem(s->p + i, s->len - i, sub->p, sub->len);
                if (!h) break;
                n++;
                i = (size_t)(h - s->p) + sub->len;
            }
            *out = v_int(n);
            return true;
        }
        int64_t found = -1;
        for (size_t i = 0; i + sub->len <= s->len; i++)
            if (memcmp(s->p + i, sub->p, sub->len) == 0) {
                found = (int64_t)i;
                if (fn->id == FN_S_FIND) break;
            }
        *out = v_int(found < 0 ? -1 : (int64_t)utf8_count(s->p, (size_t)found));
        return true;
    }
    case FN_S_JOIN: {
        const jval *it = arg(a, 0, NULL);
        if (!it) return fail(c, pos, "join needs an iterable");
        jlist *items;
        if (!iterate(c, it, pos, &items)) return false;
        strbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (items->v[i].type != JV_STR) { ok = fail(c, pos, "sequence item %zu: expected str instance, %s found", i, type_name(&items->v[i])); break; }
            if (i) ok = sb_add(c, &b, s->p, s->len, pos);
            ok = ok && sb_add(c, &b, items->v[i].u.s->p, items->v[i].u.s->len, pos);
        }
        ok = ok && v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    case FN_S_ISDIGIT: case FN_S_ISALPHA: case FN_S_ISSPACE: {
        bool r = s->len > 0;
        size_t i = 0, adv;
        while (r && i < s->len) {
            uint32_t cp = utf8_next(s->p + i, s->len - i, &adv);
            r = fn->id == FN_S_ISDIGIT ? (cp >= '0' && cp <= '9') : fn->id == FN_S_ISALPHA ? is_alpha_cp(c, cp) : py_space(cp);
            i += adv;
        }
        *out = v_bool(r);
        return true;
    }
    default:
        return fail(c, pos, "unsupported method");
    }
}

static bool call_macro(ctx *c, const node *m, const args *a, size_t pos, jval *out) {
    if (c->call_depth >= c->lim.max_call_depth)
        return fail(c, pos, "macro calls nested deeper than %d", c->lim.max_call_depth);
    if (a->n_pos > m->n_names) return fail(c, pos, "macro '%s' takes %zu arguments (%zu given)", m->str, m->n_names, a->n_pos);
    frame *f = alloc(c, sizeof(frame), pos);
    if (!f) return false;
    memset(f, 0, sizeof *f);
    f->parent = c->root;
    for (size_t k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (size_t i = 0; i < m->n_names; i++) if (!strcmp(m->names[i], a->kw_names[k])) known = true;
        if (!known) return fail(c, pos, "macro '%s' has no parameter named '%s'", m->str, a->kw_names[k]);
    }
    frame *saved = c->frame;
    for (size_t i = 0; i < m->n_names; i++) {
        const jval *x = arg(a, i, m->names[i]);
        jval v = v_undef(m->names[i]);
        if (x) v = *x;
        else if (m->list[i]) {
            c->frame = f;
            bool ok = eval(c, m->list[i], &v);
            c->frame = saved;
            if (!ok) return false;
        }
        if (!frame_set(c, f, m->names[i], v, pos)) return false;
    }
    strbuf saved_out = c->out;
    c->out = (strbuf){0};
    c->call_depth++;
    exres r = exec(c, m->a, f);
    c->call_depth--;
    strbuf body = c->out;
    c->out = saved_out;
    c->frame = saved;
    bool ok = r != EX_ERR && v_str(c, body.p ? body.p : "", body.len, pos, out);
    free(body.p);
    return ok;
}

static bool call_value(ctx *c, const jval *fn, const args *a, size_t pos, jval *out) {
    if (fn->type == JV_MACRO) return call_macro(c, fn->u.macro, a, pos, out);
    if (fn->type == JV_UNDEF) {
        if (fn->u.undef_name) return fail(c, pos, "'%s' is undefined", fn->u.undef_name);
        return fail(c, pos, "call of an undefined value");
    }
    if (fn->type != JV_FUNC) return fail(c, pos, "'%s' object is not callable", type_name(fn));
    const jfunc *f = fn->u.fn;
    switch (f->id) {
    case FN_RAISE: {
        const jval *m = arg(a, 0, NULL);
        strbuf b = {0};
        if (m && !write_str(c, &b, m, pos, 0)) { free(b.p); return false; }
        fail(c, pos, "raise_exception: %s", b.p ? b.p : "");
        free(b.p);
        return false;
    }
    case FN_STRFTIME: return call_strftime(c, a, pos, out);
    case FN_NAMESPACE: case FN_DICT: {
        jdict *d = new_dict(c, pos);
        if (!d) return false;
        if (a->n_pos > 1) return fail(c, pos, "%s takes at most one positional argument", f->id == FN_DICT ? "dict" : "namespace");
        if (a->n_pos == 1) {
            const jval *src = &a->pos[0];
            if (src->type != JV_DICT && src->type != JV_NS) return fail(c, pos, "%s argument must be a mapping", f->id == FN_DICT ? "dict" : "namespace");
            for (size_t i = 0; i < src->u.d->n; i++)
                if (!dict_set(c, d, src->u.d->keys[i], src->u.d->vals[i], pos)) return false;
        }
        for (size_t k = 0; k < a->n_kw; k++) {
            if (f->id == FN_NAMESPACE && a->kw_names[k][0] == '_')
                return fail(c, pos, "namespace attributes cannot start with '_' ('%s')", a->kw_names[k]);
            jval key;
            if (!v_cstr(c, a->kw_names[k], pos, &key) || !dict_set(c, d, key, a->kw[k], pos)) return false;
        }
        out->type = f->id == FN_DICT ? JV_DICT : JV_NS;
        out->u.d = d;
        return true;
    }
    case FN_RANGE: {
        int64_t lo = 0, hi, st = 1;
        for (size_t i = 0; i < a->n_pos; i++)
            if (a->pos[i].type != JV_INT && a->pos[i].type != JV_BOOL) return fail(c, pos, "range() arguments must be integers");
        if (a->n_pos == 1) hi = num_i(&a->pos[0]);
        else if (a->n_pos == 2 || a->n_pos == 3) {
            lo = num_i(&a->pos[0]);
            hi = num_i(&a->pos[1]);
            if (a->n_pos == 3) st = num_i(&a->pos[2]);
        } else return fail(c, pos, "range expects 1 to 3 arguments");
        if (st == 0) return fail(c, pos, "range() step must not be zero");
        __int128 count = 0;
        if (st > 0 && hi > lo) count = ((__int128)hi - lo + st - 1) / st;
        if (st < 0 && hi < lo) count = ((__int128)lo - hi - st - 1) / -st;
        if (count > (__int128)(c->lim.max_steps)) return fail(c, pos, "range of %lld items exceeds the step limit", (long long)count);
        if (count * (__int128)sizeof(jval) > (__int128)c->lim.max_memory_bytes) return fail(c, pos, "range too large");
        jlist *l = new_list(c, (size_t)count, pos);
        if (!l) return false;
        for (size_t i = 0; i < (size_t)count; i++) l->v[i] = v_int(lo + (int64_t)i * st);
        *out = v_list(l);
        return true;
    }
    default: return call_method(c, f, a, pos, out);
    }
}

/* Evaluates the argument nodes of a call/filter/test node. */
static bool eval_args(ctx *c, const node *n, args *a) {
    jval *vals = NULL;
    size_t total = n->n + n->n2;
    if (total && !(vals = alloc(c, total * sizeof(jval), n->pos))) return false;
    for (size_t i = 0; i < n->n; i++) if (!eval(c, n->list[i], &vals[i])) return false;
    for (size_t i = 0; i < n->n2; i++) if (!eval(c, n->list2[i], &vals[n->n + i])) return false;
    a->pos = vals;
    a->n_pos = n->n;
    a->kw = vals ? vals + n->n : NULL;
    a->kw_names = n->names;
    a->n_kw = n->n2;
    return true;
}

static bool eval_node(ctx *c, const node *n, jval *out);

/* Evaluation recursion is bounded: long chains like a.b.c... or 1+1+1... nest in the AST. */
static bool eval(ctx *c, const node *n, jval *out) {
    if (c->eval_depth >= EVAL_MAX_DEPTH) return fail(c, n->pos, "expression nested deeper than %d", EVAL_MAX_DEPTH);
    c->eval_depth++;
    bool ok = eval_node(c, n, out);
    c->eval_depth--;
    return ok;
}

static bool eval_node(ctx *c, const node *n, jval *out) {
    if (!step(c, n->pos)) return false;
    switch (n->kind) {
    case N_LIT: *out = n->lit; return true;
    case N_NAME: return lookup_name(c, n, out);
    case N_ATTR: {
        jval obj;
        return eval(c, n->a, &obj) && get_attr(c, &obj, n->str, n->pos, out);
    }
    case N_ITEM: {
        jval obj, key;
        return eval(c, n->a, &obj) && eval(c, n->b, &key) && get_item(c, &obj, &key, n->pos, out);
    }
    case N_SLICE: {
        jval obj, lo = v_none(), hi = v_none(), st = v_none();
        if (!eval(c, n->a, &obj)) return false;
        if (n->b && !eval(c, n->b, &lo)) return false;
        if (n->c && !eval(c, n->c, &hi)) return false;
        if (n->d && !eval(c, n->d, &st)) return false;
        return do_slice(c, &obj, &lo, &hi, &st, n->pos, out);
    }
    case N_CALL: {
        jval fn;
        args a;
        return eval(c, n->a, &fn) && eval_args(c, n, &a) && call_value(c, &fn, &a, n->pos, out);
    }
    case N_FILTER: {
        jval v;
        args a;
        return eval(c, n->a, &v) && eval_args(c, n, &a) && apply_filter(c, n->str, &v, &a, n->pos, out);
    }
    case N_TEST: {
        jval v;
        args a;
        bool r;
        if (!eval(c, n->a, &v) || !eval_args(c, n, &a) || !apply_test(c, n->str, &v, &a, n->pos, &r)) return false;
        *out = v_bool(n->flag ? !r : r);
        return true;
    }
    case N_BIN: {
        jval l, r;
        return eval(c, n->a, &l) && eval(c, n->b, &r) && binop(c, n->op, &l, &r, n->pos, out);
    }
    case N_NEG: case N_POS: {
        jval v;
        if (!eval(c, n->a, &v)) return false;
        if (v.type == JV_UNDEF) return undefined_error(c, &v, n->pos);
        if (!is_num(&v)) return fail(c, n->pos, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', type_name(&v));
        if (n->kind == N_POS) { *out = v.type == JV_BOOL ? v_int(v.u.b) : v; return true; }
        if (v.type == JV_FLOAT) { *out = v_float(-v.u.f); return true; }
        if (num_i(&v) == INT64_MIN) return fail(c, n->pos, "integer overflow in unary -");
        *out = v_int(-num_i(&v));
        return true;
    }
    case N_NOT: {
        jval v;
        if (!eval(c, n->a, &v)) return false;
        *out = v_bool(!truthy(&v));
        return true;
    }
    case N_AND: case N_OR: {
        jval l;
        if (!eval(c, n->a, &l)) return false;
        if ((n->kind == N_AND) != truthy(&l)) { *out = l; return true; }
        return eval(c, n->b, out);
    }
    case N_CMP: {
        jval l, r;
        if (!eval(c, n->a, &l)) return false;
        for (size_t i = 0; i < n->n; i++) {
            bool res;
            if (!eval(c, n->list[i], &r) || !compare_op(c, n->ops[i], &l, &r, n->pos, &res)) return false;
            if (!res) { *out = v_bool(false); return true; }
            l = r;
        }
        *out = v_bool(true);
        return true;
    }
    case N_COND: {
        jval cond;
        if (!eval(c, n->a, &cond)) return false;
        if (truthy(&cond)) return eval(c, n->b, out);
        if (n->c) return eval(c, n->c, out);
        *out = v_undef(NULL);
        return true;
    }
    case N_LIST: case N_TUPLE: {
        jlist *l = new_list(c, n->n, n->pos);
        if (!l) return false;
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->n; i++) if (!eval(c, n->list[i], &l->v[i])) return false;
        *out = v_list(l);
        return true;
    }
    case N_DICT: {
        jdict *d = new_dict(c, n->pos);
        if (!d) return false;
        for (size_t i = 0; i < n->n; i++) {
            jval k, v;
            if (!eval(c, n->list[i], &k) || !eval(c, n->list2[i], &v)) return false;
            if (k.type == JV_LIST && !k.u.l->tuple) return fail(c, n->pos, "unhashable type: 'list'");
            if (k.type == JV_DICT || k.type == JV_UNDEF) return fail(c, n->pos, "unhashable dict key");
            if (!dict_set(c, d, k, v, n->pos)) return false;
        }
        out->type = JV_DICT;
        out->u.d = d;
        return true;
    }
    default:
        return fail(c, n->pos, "internal error: statement used as expression");
    }
}

/* ---- statements ---- */

static bool output_value(ctx *c, const jval *v, size_t pos) { return write_str(c, &c->out, v, pos, 0); }

static bool assign_targets(ctx *c, frame *f, const node *n, const jval *item) {
    if (n->n_names == 1) return frame_set(c, f, n->names[0], *item, n->pos);
    jlist *parts;
    if (!iterate(c, item, n->pos, &parts)) return false;
    if (parts->n != n->n_names)
        return fail(c, n->pos, "cannot unpack %zu values into %zu loop variables", parts->n, n->n_names);
    for (size_t i = 0; i < n->n_names; i++)
        if (!frame_set(c, f, n->names[i], parts->v[i], n->pos)) return false;
    return true;
}

static exres exec_for(ctx *c, const node *n, frame *f) {
    jval seq;
    jlist *all;
    c->frame = f;
    if (!eval(c, n->a, &seq) || !iterate(c, &seq, n->a->pos, &all)) return EX_ERR;
    jlist *items = all;
    if (n->b) { /* {% for x in xs if cond %}: filter first, loop.* counts the kept items */
        items = new_list(c, all->n, n->pos);
        if (!items) return EX_ERR;
        size_t k = 0;
        frame *tf = alloc(c, sizeof(frame), n->pos);
        if (!tf) return EX_ERR;
        memset(tf, 0, sizeof *tf);
        tf->parent = f;
        for (size_t i = 0; i < all->n; i++) {
            if (!step(c, n->pos)) return EX_ERR;
            tf->n = 0;
            if (!assign_targets(c, tf, n, &all->v[i])) return EX_ERR;
            jval cond;
            c->frame = tf;
            if (!eval(c, n->b, &cond)) return EX_ERR;
            if (truthy(&cond)) items->v[k++] = all->v[i];
        }
        items->n = k;
    }
    jloop *lp = alloc(c, sizeof(jloop), n->pos);
    if (!lp) return EX_ERR;
    lp->items = items;
    jval loopv = {.type = JV_LOOP};
    loopv.u.loop = lp;
    /* one scope per iteration (Jinja: assignments in the body do not survive it); the
     * frame's storage is reused, so long loops do not grow memory */
    frame *it = alloc(c, sizeof(frame), n->pos);
    if (!it) return EX_ERR;
    memset(it, 0, sizeof *it);
    it->parent = f;
    for (size_t i = 0; i < items->n; i++) {
        if (!step(c, n->pos)) return EX_ERR;
        it->n = 0;
        lp->index0 = (int64_t)i;
        if (!frame_set(c, it, "loop", loopv, n->pos) || !assign_targets(c, it, n, &items->v[i])) return EX_ERR;
        exres r = exec(c, n->c, it);
        if (r == EX_ERR) return EX_ERR;
        if (r == EX_BREAK) break;
    }
    if (items->n == 0 && n->d) return exec(c, n->d, f);
    return EX_OK;
}

static exres exec(ctx *c, const node *n, frame *f) {
    if (!step(c, n->pos)) return EX_ERR;
    c->frame = f;
    switch (n->kind) {
    case N_BLOCK:
        for (size_t i = 0; i < n->n; i++) {
            exres r = exec(c, n->list[i], f);
            if (r != EX_OK) return r;
        }
        return EX_OK;
    case N_TEXT: return sb_add(c, &c->out, n->str, n->len, n->pos) ? EX_OK : EX_ERR;
    case N_OUTPUT: {
        jval v;
        return eval(c, n->a, &v) && output_value(c, &v, n->pos) ? EX_OK : EX_ERR;
    }
    case N_IF:
        for (size_t i = 0; i < n->n; i++) {
            jval cond;
            c->frame = f;
            if (!eval(c, n->list[i], &cond)) return EX_ERR;
            if (truthy(&cond)) return exec(c, n->list2[i], f);
        }
        return n->a ? exec(c, n->a, f) : EX_OK;
    case N_FOR: return exec_for(c, n, f);
    case N_SET: {
        jval v;
        return eval(c, n->a, &v) && frame_set(c, f, n->str, v, n->pos) ? EX_OK : EX_ERR;
    }
    case N_SET_ATTR: {
        jval ns, v;
        if (!frame_lookup(f, n->str, &ns) || ns.type != JV_NS) {
            fail(c, n->pos, "cannot assign attribute on non-namespace object '%s'", n->str);
            return EX_ERR;
        }
        if (n->names[0][0] == '_') {
            fail(c, n->pos, "namespace attributes cannot start with '_' ('%s')", n->names[0]);
            return EX_ERR;
        }
        jval key;
        if (!eval(c, n->a, &v) || !v_cstr(c, n->names[0], n->pos, &key) || !dict_set(c, ns.u.d, key, v, n->pos))
            return EX_ERR;
        return EX_OK;
    }
    case N_SET_BLOCK: {
        strbuf saved = c->out;
        c->out = (strbuf){0};
        exres r = exec(c, n->a, f);
        strbuf body = c->out;
        c->out = saved;
        jval v;
        bool ok = r == EX_OK && v_str(c, body.p ? body.p : "", body.len, n->pos, &v) && frame_set(c, f, n->str, v, n->pos);
        free(body.p);
        return ok ? EX_OK : EX_ERR;
    }
    case N_MACRO: {
        jval m = {.type = JV_MACRO};
        m.u.macro = n;
        return frame_set(c, f, n->str, m, n->pos) ? EX_OK : EX_ERR;
    }
    case N_BREAK: return EX_BREAK;
    case N_CONTINUE: return EX_CONTINUE;
    default:
        fail(c, n->pos, "internal error: expression used as statement");
        return EX_ERR;
    }
}

/* ---- JSON variables ---- */

static bool from_json(ctx *c, const json_t *j, jval *out, int depth) {
    if (depth > 64) return fail(c, 0, "variables nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = v_none(); return true;
    case JSON_TRUE: *out = v_bool(true); return true;
    case JSON_FALSE: *out = v_bool(false); return true;
    case JSON_INTEGER: *out = v_int((int64_t)json_integer_value(j)); return true;
    case JSON_REAL: *out = v_float(json_real_value(j)); return true;
    case JSON_STRING: return v_str(c, json_string_value(j), json_string_length(j), 0, out);
    case JSON_ARRAY: {
        jlist *l = new_list(c, json_array_size(j), 0);
        if (!l) return false;
        for (size_t i = 0; i < l->n; i++) if (!from_json(c, json_array_get(j, i), &l->v[i], depth + 1)) return false;
        *out = v_list(l);
        return true;
    }
    case JSON_OBJECT: {
        jdict *d = new_dict(c, 0);
        if (!d) return false;
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach((json_t *)j, key, key_len, val) {
            jval k, v;
            if (!v_str(c, key, key_len, 0, &k) || !from_json(c, val, &v, depth + 1) || !dict_set(c, d, k, v, 0)) return false;
        }
        out->type = JV_DICT;
        out->u.d = d;
        return true;
    }
    }
    return fail(c, 0, "unsupported JSON value");
}

jinja_limits jinja_default_limits(void) {
    jinja_limits l = {
        .max_output_bytes = (size_t)16 << 20,
        .max_memory_bytes = (size_t)256 << 20,
        .max_steps = 20000000,
        .max_call_depth = 64,
        .use_fixed_time = false,
        .fixed_time = 0,
    };
    return l;
}

bool jinja_render(const jinja_template *tmpl, const json_t *vars, const jinja_limits *limits,
                  char **out, size_t *out_len, char *err, size_t err_size) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (err && err_size) err[0] = 0;
    ctx c = {.t = tmpl, .lim = limits ? *limits : jinja_default_limits(), .err = err, .err_size = err_size};
    if (c.lim.max_call_depth > 256) c.lim.max_call_depth = 256;
    c.a.limit = c.lim.max_memory_bytes;
    c.utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    c.c_loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    frame *root = alloc(&c, sizeof(frame), 0);
    bool ok = root != NULL;
    if (ok) {
        memset(root, 0, sizeof *root);
        c.root = root;
        c.frame = root;
        if (!json_is_object(vars)) ok = fail(&c, 0, "variables must be a JSON object");
        const char *key;
        size_t key_len;
        json_t *val;
        if (ok) json_object_keylen_foreach((json_t *)vars, key, key_len, val) {
            jval v;
            char *name = alloc(&c, key_len + 1, 0);
            if (!name || !from_json(&c, val, &v, 0)) { ok = false; break; }
            memcpy(name, key, key_len);
            name[key_len] = 0;
            if (!frame_set(&c, root, name, v, 0)) { ok = false; break; }
        }
    }
    if (ok) {
        exres r = exec(&c, tmpl->root, root);
        ok = r != EX_ERR && !c.failed;
    }
    if (c.utf8) freelocale(c.utf8);
    if (c.c_loc) freelocale(c.c_loc);
    arena_free(&c.a);
    if (!ok) {
        free(c.out.p);
        if (err && err_size && !err[0]) snprintf(err, err_size, "rendering failed");
        return false;
    }
    if (!c.out.p) {
        c.out.p = malloc(1);
        if (!c.out.p) { if (err) snprintf(err, err_size, "out of memory"); return false; }
        c.out.p[0] = 0;
    }
    *out = c.out.p;
    if (out_len) *out_len = c.out.len;
    return true;
}
