/* values.c: the per-render arena and the values of the interpreter.
 *
 * Python value semantics: equality, ordering, truthiness, str(), repr()
 * and json.dumps() output, code-point string helpers. */
#include "text/jinja/internal.h"

#include "base/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

void jj_arena_free(arena *a) {
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
void *jj_arena_alloc(arena *a, size_t n) {
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

__attribute__((format(printf, 3, 4)))
bool jj_fail(ctx *c, size_t pos, const char *fmt, ...) {
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        jj_fmt_error(c->err, c->err_size, c->t->src, c->t->len, pos, fmt, ap);
        va_end(ap);
        c->failed = true;
    }
    return false;
}

void *jj_alloc(ctx *c, size_t n, size_t pos) {
    if (!jj_work(c, n, pos)) return NULL;
    void *p = jj_arena_alloc(&c->a, n);
    if (!p) jj_fail(c, pos, "template uses more than %zu bytes of memory", c->lim.max_memory_bytes);
    return p;
}

/* Charges units of work (docs/chat.md: one unit per byte compared, copied
 * or allocated, JJ_WORK_STEP per evaluation step); false once the budget
 * is spent. */
bool jj_work(ctx *c, uint64_t units, size_t pos) {
    if (c->failed) return false;
    if (units > c->lim.max_work - c->work) {
        c->work = c->lim.max_work;
        return jj_fail(c, pos, "template exceeds its work budget of %llu units (steps, bytes compared, copied "
                       "and allocated; docs/chat.md)", (unsigned long long)c->lim.max_work);
    }
    c->work += units;
    return true;
}

bool jj_step(ctx *c, size_t pos) { return jj_work(c, JJ_WORK_STEP, pos); }

/* memmem charged with the bytes it scanned; NULL when not found, or with
 * *ok false when the budget is spent. */
const char *jj_find(ctx *c, const char *hay, size_t n, const char *needle, size_t m, size_t pos, bool *ok) {
    const char *hit = memmem(hay, n, needle, m);
    size_t scanned = hit ? (size_t)(hit - hay) + m : n;
    if (!jj_work(c, scanned + m, pos)) {
        *ok = false;
        return NULL;
    }
    return hit;
}

/* strbuf in malloc'ed memory (the output, and scratch for building strings) */
bool jj_sb_add(ctx *c, strbuf *b, const char *s, size_t n, size_t pos) {
    if (!jj_work(c, (uint64_t)n + JJ_WORK_CALL, pos)) return false;
    if (b->len + n > c->lim.max_output_bytes)
        return jj_fail(c, pos, "rendered text exceeds %zu bytes", c->lim.max_output_bytes);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return jj_fail(c, pos, "out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}
static bool sb_str(ctx *c, strbuf *b, const char *s, size_t pos) { return jj_sb_add(c, b, s, strlen(s), pos); }


bool jj_v_str(ctx *c, const char *s, size_t n, size_t pos, jval *out) {
    if (n > c->lim.max_output_bytes) return jj_fail(c, pos, "string longer than %zu bytes", c->lim.max_output_bytes);
    jstr *js = jj_alloc(c, sizeof(jstr), pos);
    char *p = js ? jj_alloc(c, n + 1, pos) : NULL;
    if (!p) return false;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    js->p = p;
    js->len = n;
    out->type = JV_STR;
    out->u.s = js;
    return true;
}
bool jj_v_cstr(ctx *c, const char *s, size_t pos, jval *out) { return jj_v_str(c, s, strlen(s), pos, out); }

jlist *jj_new_list(ctx *c, size_t n, size_t pos) {
    jlist *l = jj_alloc(c, sizeof(jlist), pos);
    if (!l) return NULL;
    l->n = n;
    l->tuple = false;
    l->v = NULL;
    if (n && !(l->v = jj_alloc(c, n * sizeof(jval), pos))) return NULL;
    return l;
}

jdict *jj_new_dict(ctx *c, size_t pos) {
    jdict *d = jj_alloc(c, sizeof(jdict), pos);
    if (d) memset(d, 0, sizeof *d);
    return d;
}


const char *jj_type_name(const jval *v) {
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


bool jj_dict_find(ctx *c, const jdict *d, const jval *key, size_t pos, bool *found, size_t *idx) {
    *found = false;
    for (size_t i = 0; i < d->n; i++) {
        if (!jj_equal(c, &d->keys[i], key, pos, found)) return false;
        if (*found) {
            *idx = i;
            return true;
        }
    }
    return true;
}
bool jj_dict_find_str(const jdict *d, const char *key, size_t len, size_t *idx) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].type == JV_STR && d->keys[i].u.s->len == len && memcmp(d->keys[i].u.s->p, key, len) == 0) {
            *idx = i;
            return true;
        }
    return false;
}
bool jj_dict_set(ctx *c, jdict *d, jval key, jval val, size_t pos) {
    size_t i = 0;
    bool found;
    if (!jj_dict_find(c, d, &key, pos, &found, &i)) return false;
    if (found) { d->vals[i] = val; return true; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jval *k = jj_alloc(c, cap * sizeof(jval), pos), *v = k ? jj_alloc(c, cap * sizeof(jval), pos) : NULL;
        if (!v) return false;
        if (d->n) { memcpy(k, d->keys, d->n * sizeof(jval)); memcpy(v, d->vals, d->n * sizeof(jval)); }
        d->keys = k; d->vals = v; d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return true;
}

/* a == b at nesting depth `depth`: every element visited and byte compared
 * is charged to the work budget, so shared sub-lists ([x, x] doubled 60
 * times) cannot make it run for hours. */
static bool equal_at(ctx *c, const jval *a, const jval *b, size_t pos, int depth, bool *eq) {
    *eq = false;
    if (depth > JJ_MAX_VALUE_DEPTH) return jj_fail(c, pos, "values nested deeper than %d to compare", JJ_MAX_VALUE_DEPTH);
    if (!jj_work(c, JJ_WORK_ELEMENT, pos)) return false;
    if (is_num(a) && is_num(b)) {
        if (a->type == JV_FLOAT || b->type == JV_FLOAT) *eq = num_f(a) == num_f(b);
        else *eq = num_i(a) == num_i(b);
        return true;
    }
    if (a->type != b->type) return true;
    switch (a->type) {
    case JV_UNDEF: case JV_NONE: *eq = true; return true;
    case JV_STR:
        if (a->u.s->len != b->u.s->len) return true;
        if (!jj_work(c, a->u.s->len, pos)) return false;
        *eq = memcmp(a->u.s->p, b->u.s->p, a->u.s->len) == 0;
        return true;
    case JV_LIST:
        if (a->u.l->n != b->u.l->n || a->u.l->tuple != b->u.l->tuple) return true;
        for (size_t i = 0; i < a->u.l->n; i++) {
            if (!equal_at(c, &a->u.l->v[i], &b->u.l->v[i], pos, depth + 1, eq)) return false;
            if (!*eq) return true;
        }
        *eq = true;
        return true;
    case JV_DICT: {
        if (a->u.d->n != b->u.d->n) return true;
        for (size_t i = 0; i < a->u.d->n; i++) {
            size_t j = 0;
            bool found = false;
            for (size_t k = 0; k < b->u.d->n && !found; k++) {
                if (!equal_at(c, &b->u.d->keys[k], &a->u.d->keys[i], pos, depth + 1, &found)) return false;
                j = k;
            }
            if (!found) return true;
            if (!equal_at(c, &a->u.d->vals[i], &b->u.d->vals[j], pos, depth + 1, eq)) return false;
            if (!*eq) return true;
        }
        *eq = true;
        return true;
    }
    case JV_NS: *eq = a->u.d == b->u.d; return true;
    case JV_LOOP: *eq = a->u.loop == b->u.loop; return true;
    case JV_MACRO: *eq = a->u.macro == b->u.macro; return true;
    case JV_FUNC: *eq = a->u.fn == b->u.fn; return true;
    default: return true;
    }
}

bool jj_equal(ctx *c, const jval *a, const jval *b, size_t pos, bool *eq) { return equal_at(c, a, b, pos, 0, eq); }

bool jj_truthy(const jval *v) {
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

/* Decodes one code point at s[0..n) (base/utf8); a byte that does not start a valid
 * sequence decodes as itself with bit 31 set, one byte long. */
uint32_t jj_utf8_next(const char *s, size_t n, size_t *adv) {
    uint32_t cp;
    int len = utf8_decode((const unsigned char *)s, n, &cp);
    if (len == 0) {
        *adv = 1;
        return (unsigned char)s[0] | 0x80000000u;
    }
    *adv = (size_t)len;
    return cp;
}

size_t jj_utf8_count(const char *s, size_t n) {
    size_t count = 0, i = 0, adv;
    while (i < n) { jj_utf8_next(s + i, n - i, &adv); i += adv; count++; }
    return count;
}

/* Byte offsets of each code point (n_cp + 1 entries). */
size_t *jj_utf8_offsets(ctx *c, const jstr *s, size_t *n_cp, size_t pos) {
    if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return NULL;
    size_t n = jj_utf8_count(s->p, s->len);
    size_t *off = jj_alloc(c, (n + 1) * sizeof(size_t), pos);
    if (!off) return NULL;
    size_t i = 0, k = 0, adv;
    while (i < s->len) { off[k++] = i; jj_utf8_next(s->p + i, s->len - i, &adv); i += adv; }
    off[k] = s->len;
    *n_cp = n;
    return off;
}

bool jj_py_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

uint32_t jj_case_map(const ctx *c, uint32_t cp, bool upper) {
    if (cp & 0x80000000u) return cp;
    if (cp < 0x80) {
        if (upper && cp >= 'a' && cp <= 'z') return cp - 32;
        if (!upper && cp >= 'A' && cp <= 'Z') return cp + 32;
        return cp;
    }
    if (!c->utf8) return cp;
    return upper ? (uint32_t)towupper_l((wint_t)cp, c->utf8) : (uint32_t)towlower_l((wint_t)cp, c->utf8);
}

bool jj_is_alpha_cp(const ctx *c, uint32_t cp) {
    if (cp & 0x80000000u) return false;
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    return c->utf8 && iswalpha_l((wint_t)cp, c->utf8);
}

bool jj_put_cp(ctx *c, strbuf *b, uint32_t cp, size_t pos) {
    char tmp[4];
    if (cp & 0x80000000u) { tmp[0] = (char)(cp & 0xFF); return jj_sb_add(c, b, tmp, 1, pos); }
    return jj_sb_add(c, b, tmp, (size_t)utf8_encode(cp, tmp), pos);
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


bool jj_write_str(ctx *c, strbuf *b, const jval *v, size_t pos, int depth) {
    char tmp[64];
    switch (v->type) {
    case JV_UNDEF: return true;
    case JV_NONE: return sb_str(c, b, "None", pos);
    case JV_BOOL: return sb_str(c, b, v->u.b ? "True" : "False", pos);
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_str(c, b, tmp, pos);
    case JV_FLOAT: format_float(v->u.f, tmp, sizeof tmp); return sb_str(c, b, tmp, pos);
    case JV_STR: return jj_sb_add(c, b, v->u.s->p, v->u.s->len, pos);
    default: return jj_write_repr(c, b, v, pos, depth);
    }
}

static bool write_py_string_repr(ctx *c, strbuf *b, const jstr *s, size_t pos) {
    if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false;
    bool has_sq = memchr(s->p, '\'', s->len) != NULL, has_dq = memchr(s->p, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!jj_sb_add(c, b, &q, 1, pos)) return false;
    size_t i = 0, adv;
    while (i < s->len) {
        uint32_t cp = jj_utf8_next(s->p + i, s->len - i, &adv);
        char tmp[16];
        bool ok;
        if (cp == '\\') ok = sb_str(c, b, "\\\\", pos);
        else if (cp == (uint32_t)q) { tmp[0] = '\\'; tmp[1] = q; ok = jj_sb_add(c, b, tmp, 2, pos); }
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
            ok = jj_sb_add(c, b, s->p + i, adv, pos);
        }
        if (!ok) return false;
        i += adv;
    }
    return jj_sb_add(c, b, &q, 1, pos);
}

bool jj_write_repr(ctx *c, strbuf *b, const jval *v, size_t pos, int depth) {
    if (depth > JJ_MAX_VALUE_DEPTH) return jj_fail(c, pos, "value nested deeper than %d to print", JJ_MAX_VALUE_DEPTH);
    switch (v->type) {
    case JV_STR: return write_py_string_repr(c, b, v->u.s, pos);
    case JV_UNDEF: return sb_str(c, b, "Undefined", pos);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (!sb_str(c, b, l->tuple ? "(" : "[", pos)) return false;
        for (size_t i = 0; i < l->n; i++) {
            if (i && !sb_str(c, b, ", ", pos)) return false;
            if (!jj_write_repr(c, b, &l->v[i], pos, depth + 1)) return false;
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
            if (!jj_write_repr(c, b, &d->keys[i], pos, depth + 1) || !sb_str(c, b, ": ", pos) ||
                !jj_write_repr(c, b, &d->vals[i], pos, depth + 1))
                return false;
        }
        if (!sb_str(c, b, "}", pos)) return false;
        return v->type == JV_NS ? sb_str(c, b, ">", pos) : true;
    }
    case JV_LOOP: return sb_str(c, b, "<LoopContext>", pos);
    case JV_MACRO: return sb_str(c, b, "<Macro>", pos);
    case JV_FUNC: return sb_str(c, b, "<built-in function>", pos);
    default: return jj_write_str(c, b, v, pos, depth);
    }
}


static bool write_json_string(ctx *c, strbuf *b, const jstr *s, bool ensure_ascii, size_t pos) {
    if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false;
    if (!sb_str(c, b, "\"", pos)) return false;
    size_t i = 0, adv;
    while (i < s->len) {
        uint32_t cp = jj_utf8_next(s->p + i, s->len - i, &adv);
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
                ok = jj_sb_add(c, b, s->p + i, adv, pos);
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


bool jj_write_json(ctx *c, strbuf *b, const jval *v, const json_opts *o, int level, size_t pos) {
    char tmp[64];
    if (level > JJ_MAX_VALUE_DEPTH) return jj_fail(c, pos, "value nested deeper than %d for tojson", JJ_MAX_VALUE_DEPTH);
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
            if (!jj_write_json(c, b, &l->v[i], o, level + 1, pos)) return false;
        }
        if (o->indent >= 0 && !json_newline(c, b, o, level, pos)) return false;
        return sb_str(c, b, "]", pos);
    }
    case JV_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0) return sb_str(c, b, "{}", pos);
        size_t *order = jj_alloc(c, d->n * sizeof(size_t), pos);
        if (!order) return false;
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable, small n */
                size_t x = order[i], j = i;
                bool ok = true;
                while (j > 0 && jj_compare_for_sort(c, &d->keys[order[j - 1]], &d->keys[x], true, NULL, pos, &ok) > 0) {
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
                        : jj_write_str(c, &kb, key, pos, 0);
                ok = ok && sb_str(c, b, "\"", pos) && jj_sb_add(c, b, kb.p, kb.len, pos) && sb_str(c, b, "\"", pos);
                free(kb.p);
                if (!ok) return false;
            } else {
                return jj_fail(c, pos, "tojson: keys must be str, int, float, bool or None, not %s", jj_type_name(key));
            }
            if (!sb_str(c, b, ": ", pos) || !jj_write_json(c, b, &d->vals[i], o, level + 1, pos)) return false;
        }
        if (o->indent >= 0 && !json_newline(c, b, o, level, pos)) return false;
        return sb_str(c, b, "}", pos);
    }
    default:
        return jj_fail(c, pos, "tojson: object of type %s is not JSON serializable", jj_type_name(v));
    }
}

/* str(v) as a new string value */
bool jj_to_string_val(ctx *c, const jval *v, size_t pos, jval *out) {
    if (v->type == JV_STR) { *out = *v; return true; }
    strbuf b = {0};
    bool ok = jj_write_str(c, &b, v, pos, 0) && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}


/* Orders two values as Python's < does at nesting depth `depth`; work is
 * charged as in equal_at. */
static int compare_at(ctx *c, const jval *a, const jval *b, bool case_sensitive, const char *op, size_t pos,
                      int depth, bool *ok) {
    if (depth > JJ_MAX_VALUE_DEPTH) {
        *ok = false;
        jj_fail(c, pos, "values nested deeper than %d to compare", JJ_MAX_VALUE_DEPTH);
        return 0;
    }
    if (!jj_work(c, JJ_WORK_ELEMENT, pos)) {
        *ok = false;
        return 0;
    }
    if (is_num(a) && is_num(b)) {
        double x = num_f(a), y = num_f(b);
        if (a->type != JV_FLOAT && b->type != JV_FLOAT) { int64_t p = num_i(a), q = num_i(b); return (p > q) - (p < q); }
        return (x > y) - (x < y);
    }
    if (a->type == JV_STR && b->type == JV_STR) {
        size_t n = a->u.s->len < b->u.s->len ? a->u.s->len : b->u.s->len;
        if (!jj_work(c, case_sensitive ? n : (uint64_t)n * JJ_WORK_DECODE, pos)) {
            *ok = false;
            return 0;
        }
        if (!case_sensitive) {
            size_t i = 0, j = 0, adv;
            while (i < a->u.s->len && j < b->u.s->len) {
                uint32_t x = jj_case_map(c, jj_utf8_next(a->u.s->p + i, a->u.s->len - i, &adv), false);
                i += adv;
                uint32_t y = jj_case_map(c, jj_utf8_next(b->u.s->p + j, b->u.s->len - j, &adv), false);
                j += adv;
                if (x != y) return x < y ? -1 : 1;
            }
            return (i < a->u.s->len) - (j < b->u.s->len);
        }
        int r = memcmp(a->u.s->p, b->u.s->p, n);
        if (r) return r;
        return (a->u.s->len > b->u.s->len) - (a->u.s->len < b->u.s->len);
    }
    if (a->type == JV_LIST && b->type == JV_LIST) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            bool eq;
            if (!equal_at(c, &a->u.l->v[i], &b->u.l->v[i], pos, depth + 1, &eq)) {
                *ok = false;
                return 0;
            }
            if (eq) continue;
            return compare_at(c, &a->u.l->v[i], &b->u.l->v[i], case_sensitive, op, pos, depth + 1, ok);
        }
        return (a->u.l->n > b->u.l->n) - (a->u.l->n < b->u.l->n);
    }
    *ok = false;
    if (op) jj_fail(c, pos, "'%s' not supported between instances of '%s' and '%s'", op, jj_type_name(a), jj_type_name(b));
    else jj_fail(c, pos, "cannot compare '%s' and '%s'", jj_type_name(a), jj_type_name(b));
    return 0;
}

/* <0, 0, >0; *ok false (and error set) when the types cannot be ordered
 * (the message names op, e.g. "<", or says "cannot compare" when op is
 * NULL), the values nest too deeply or the work budget is spent. */
int jj_compare_for_sort(ctx *c, const jval *a, const jval *b, bool case_sensitive, const char *op, size_t pos,
                        bool *ok) {
    return compare_at(c, a, b, case_sensitive, op, pos, 0, ok);
}
