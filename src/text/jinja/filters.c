/* filters.c: tests (x is name), filters (x | name) and the methods of
 * strings and dicts, with Jinja2 / Python semantics. */
#include "text/jinja/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Argument i (positional) or by keyword name; NULL when absent. */
const jval *jj_arg(const args *a, size_t i, const char *name) {
    if (i < a->n_pos) return &a->pos[i];
    for (size_t k = 0; name && k < a->n_kw; k++) if (strcmp(a->kw_names[k], name) == 0) return &a->kw[k];
    return NULL;
}

static bool want_str(ctx *c, const jval *v, const char *what, size_t pos) {
    if (v->type == JV_UNDEF) return jj_undefined_error(c, v, pos);
    if (v->type != JV_STR) return jj_fail(c, pos, "%s expects a string, got %s", what, jj_type_name(v));
    return true;
}

/* ---- string helpers ---- */

static bool in_chars(ctx *c, uint32_t cp, const jstr *chars, size_t pos, bool *found) {
    *found = false;
    if (!jj_work(c, (uint64_t)chars->len * JJ_WORK_DECODE, pos)) return false;
    size_t i = 0, adv;
    while (i < chars->len) {
        if (jj_utf8_next(chars->p + i, chars->len - i, &adv) == cp) {
            *found = true;
            return true;
        }
        i += adv;
    }
    return true;
}

static bool str_strip(ctx *c, const jstr *s, const jval *chars, bool left, bool right, size_t pos, jval *out) {
    const jstr *set = chars && chars->type == JV_STR ? chars->u.s : NULL;
    if (chars && chars->type != JV_STR && chars->type != JV_NONE && chars->type != JV_UNDEF)
        return jj_fail(c, pos, "strip arg must be None or str");
    size_t n_cp;
    size_t *off = jj_utf8_offsets(c, s, &n_cp, pos);
    if (!off) return false;
    size_t a = 0, b = n_cp, adv;
    while (left && a < b) {
        uint32_t cp = jj_utf8_next(s->p + off[a], s->len - off[a], &adv);
        bool strip = jj_py_space(cp);
        if (set && !in_chars(c, cp, set, pos, &strip)) return false;
        if (!strip) break;
        a++;
    }
    while (right && b > a) {
        uint32_t cp = jj_utf8_next(s->p + off[b - 1], s->len - off[b - 1], &adv);
        bool strip = jj_py_space(cp);
        if (set && !in_chars(c, cp, set, pos, &strip)) return false;
        if (!strip) break;
        b--;
    }
    return jj_v_str(c, s->p + off[a], off[b] - off[a], pos, out);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_PY_TITLE, CASE_JINJA_TITLE, CASE_CAPITALIZE } casemode;

static bool str_case(ctx *c, const jstr *s, casemode mode, size_t pos, jval *out) {
    if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false;
    strbuf b = {0};
    size_t i = 0, adv, k = 0;
    bool prev_cased = false, ok = true;
    bool word_start = true; /* Jinja title: after start or one of - whitespace ( { [ < */
    while (ok && i < s->len) {
        uint32_t cp = jj_utf8_next(s->p + i, s->len - i, &adv), m;
        switch (mode) {
        case CASE_UPPER: m = jj_case_map(c, cp, true); break;
        case CASE_LOWER: m = jj_case_map(c, cp, false); break;
        case CASE_CAPITALIZE: m = jj_case_map(c, cp, k == 0); break;
        case CASE_PY_TITLE: {
            bool alpha = jj_is_alpha_cp(c, cp);
            m = alpha ? jj_case_map(c, cp, !prev_cased) : cp;
            prev_cased = alpha;
            break;
        }
        default: {
            bool sep = cp == '-' || jj_py_space(cp) || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            m = sep ? cp : jj_case_map(c, cp, word_start);
            word_start = sep;
            break;
        }
        }
        ok = jj_put_cp(c, &b, m, pos);
        i += adv;
        k++;
    }
    ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
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
            if (count < 0 || done < count) { ok = jj_sb_add(c, &b, rep->p, rep->len, pos); done++; }
            if (i == s->len) break;
            jj_utf8_next(s->p + i, s->len - i, &adv);
            ok = ok && jj_sb_add(c, &b, s->p + i, adv, pos);
            i += adv;
        }
    } else {
        size_t i = 0;
        while (ok && i < s->len) {
            const char *hit = (count < 0 || done < count) ? jj_find(c, s->p + i, s->len - i, old->p, old->len, pos, &ok) : NULL;
            if (!ok) break;
            if (!hit) { ok = jj_sb_add(c, &b, s->p + i, s->len - i, pos); break; }
            size_t at = (size_t)(hit - s->p);
            ok = jj_sb_add(c, &b, s->p + i, at - i, pos) && jj_sb_add(c, &b, rep->p, rep->len, pos);
            i = at + old->len;
            done++;
        }
    }
    ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

/* Appends a new string piece to a growing value array (for split). */
static bool push_piece(ctx *c, jval **v, size_t *n, size_t *cap, const char *p, size_t len, size_t pos) {
    if (*n == *cap) {
        jval *nv = jj_alloc(c, *cap * 2 * sizeof(jval), pos);
        if (!nv) return false;
        memcpy(nv, *v, *n * sizeof(jval));
        *v = nv;
        *cap *= 2;
    }
    if (!jj_v_str(c, p, len, pos, &(*v)[*n])) return false;
    (*n)++;
    return true;
}

static bool str_split(ctx *c, const jstr *s, const jval *sepv, int64_t maxsplit, size_t pos, jval *out) {
    size_t cap = 8, n = 0;
    jval *v = jj_alloc(c, cap * sizeof(jval), pos);
    if (!v) return false;
    if (!sepv || sepv->type == JV_NONE) {
        if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false;
        size_t i = 0, adv;
        int64_t splits = 0;
        for (;;) {
            while (i < s->len && jj_py_space(jj_utf8_next(s->p + i, s->len - i, &adv))) i += adv;
            if (i >= s->len) break;
            size_t start = i;
            if (maxsplit >= 0 && splits >= maxsplit) {
                size_t e = s->len;
                while (e > start) {
                    size_t k = e - 1;
                    while (k > start && ((unsigned char)s->p[k] & 0xC0) == 0x80) k--;
                    if (!jj_py_space(jj_utf8_next(s->p + k, s->len - k, &adv))) break;
                    e = k;
                }
                if (!push_piece(c, &v, &n, &cap, s->p + start, e - start, pos)) return false;
                break;
            }
            while (i < s->len && !jj_py_space(jj_utf8_next(s->p + i, s->len - i, &adv))) i += adv;
            if (!push_piece(c, &v, &n, &cap, s->p + start, i - start, pos)) return false;
            splits++;
        }
    } else {
        if (sepv->type != JV_STR) return jj_fail(c, pos, "split separator must be a string");
        const jstr *sep = sepv->u.s;
        if (sep->len == 0) return jj_fail(c, pos, "empty separator");
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            bool ok = true;
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? jj_find(c, s->p + i, s->len - i, sep->p, sep->len, pos, &ok) : NULL;
            if (!ok) return false;
            if (!hit) { if (!push_piece(c, &v, &n, &cap, s->p + i, s->len - i, pos)) return false; break; }
            if (!push_piece(c, &v, &n, &cap, s->p + i, (size_t)(hit - s->p) - i, pos)) return false;
            i = (size_t)(hit - s->p) + sep->len;
            splits++;
        }
    }
    jlist *l = jj_new_list(c, 0, pos);
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
        while (*end && jj_is_ws(*end)) end++;
        if (end != buf && !*end && errno == 0) { *out = v_int(x); return true; }
        errno = 0;
        double f = strtod(buf, &end);
        while (*end && jj_is_ws(*end)) end++;
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
        while (*end && jj_is_ws(*end)) end++;
        *out = v_float(end != buf && !*end ? f : dflt);
        return true;
    }
    default: *out = v_float(dflt); return true;
    }
}

/* len(v); -1 when v has no length, -2 when the work budget is spent. */
static int64_t length_of(ctx *c, const jval *v, size_t pos) {
    switch (v->type) {
    case JV_STR:
        if (!jj_work(c, (uint64_t)v->u.s->len * JJ_WORK_DECODE, pos)) return -2;
        return (int64_t)jj_utf8_count(v->u.s->p, v->u.s->len);
    case JV_LIST: return (int64_t)v->u.l->n;
    case JV_DICT: case JV_NS: return (int64_t)v->u.d->n;
    default: return -1;
    }
}

/* "%s" % x formatting (only %s %d %i %r %%) */
bool jj_format_percent(ctx *c, const jval *fmtv, const jval *argsv, size_t pos, jval *out) {
    const jstr *f = fmtv->u.s;
    const jval *items = argsv;
    size_t n_items = 1, used = 0;
    if (argsv->type == JV_LIST && argsv->u.l->tuple) { items = argsv->u.l->v; n_items = argsv->u.l->n; }
    strbuf b = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < f->len; i++) {
        if (f->p[i] != '%') { ok = jj_sb_add(c, &b, f->p + i, 1, pos); continue; }
        if (++i >= f->len) { ok = jj_fail(c, pos, "incomplete format"); break; }
        char k = f->p[i];
        if (k == '%') { ok = jj_sb_add(c, &b, "%", 1, pos); continue; }
        if (used >= n_items) { ok = jj_fail(c, pos, "not enough arguments for format string"); break; }
        const jval *x = &items[used++];
        if (k == 's') ok = jj_write_str(c, &b, x, pos, 0);
        else if (k == 'r') ok = jj_write_repr(c, &b, x, pos, 0);
        else if (k == 'd' || k == 'i') {
            if (!is_num(x)) { ok = jj_fail(c, pos, "%%d format: a number is required, not %s", jj_type_name(x)); break; }
            jval iv = v_int(x->type == JV_FLOAT ? (int64_t)x->u.f : num_i(x));
            ok = jj_write_str(c, &b, &iv, pos, 0);
        } else {
            ok = jj_fail(c, pos, "unsupported format character '%c'", k);
        }
    }
    if (ok && used < n_items) ok = jj_fail(c, pos, "not all arguments converted during string formatting");
    ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
    free(b.p);
    return ok;
}

/* ---- tests ---- */

bool jj_apply_test(ctx *c, const char *name, const jval *v, const args *a, size_t pos, bool *r) {
    const jval *x = jj_arg(a, 0, NULL);
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
        if (v->type != JV_INT && v->type != JV_BOOL) return jj_fail(c, pos, "test '%s' needs an integer, got %s", name, jj_type_name(v));
        int64_t i = num_i(v);
        if (name[0] == 'o') { *r = i % 2 != 0; return true; }
        if (name[0] == 'e') { *r = i % 2 == 0; return true; }
        if (!x || (x->type != JV_INT && x->type != JV_BOOL)) return jj_fail(c, pos, "divisibleby needs an integer argument");
        if (num_i(x) == 0) return jj_fail(c, pos, "integer modulo by zero");
        *r = num_i(x) == -1 || i % num_i(x) == 0;
        return true;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower")) {
        if (v->type != JV_STR) { *r = false; return true; }
        jval m;
        if (!str_case(c, v->u.s, name[0] == 'u' ? CASE_UPPER : CASE_LOWER, pos, &m)) return false;
        return jj_equal(c, &m, v, pos, r);
        return true;
    }
    static const struct { const char *name; int op; } cmp[] = {
        {"equalto", OP_EQ}, {"eq", OP_EQ}, {"==", OP_EQ}, {"sameas", OP_EQ}, {"ne", OP_NE}, {"!=", OP_NE},
        {"lt", OP_LT}, {"lessthan", OP_LT}, {"<", OP_LT}, {"le", OP_LE}, {"<=", OP_LE}, {"gt", OP_GT},
        {"greaterthan", OP_GT}, {">", OP_GT}, {"ge", OP_GE}, {">=", OP_GE}, {"in", OP_IN}, {NULL, 0},
    };
    for (int i = 0; cmp[i].name; i++)
        if (!strcmp(cmp[i].name, name)) {
            if (!x) return jj_fail(c, pos, "test '%s' needs an argument", name);
            return jj_compare_op(c, cmp[i].op, v, x, pos, r);
        }
    return jj_fail(c, pos, "no test named '%s'", name);
}

/* ---- filters ---- */


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
        else if (!jj_v_str(c, path->p + i, end - i, pos, &key)) return false;
        if (cur.type == JV_UNDEF) { *out = cur; return true; }
        if (!jj_get_item(c, &cur, &key, pos, &cur)) return false;
        if (!dot) break;
        i = end + 1;
    }
    *out = cur;
    return true;
}

static bool select_common(ctx *c, const jval *v, const args *a, bool by_attr, bool keep, size_t pos, jval *out) {
    jlist *items;
    if (!jj_iterate(c, v, pos, &items)) return false;
    size_t first_extra = by_attr ? 1 : 0;
    const jval *attr = by_attr ? jj_arg(a, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->type != JV_STR)) return jj_fail(c, pos, "selectattr/rejectattr need an attribute name");
    const jval *test = jj_arg(a, first_extra, NULL);
    if (test && test->type != JV_STR) return jj_fail(c, pos, "test name must be a string");
    args targs = {.pos = a->pos + (a->n_pos > first_extra + 1 ? first_extra + 1 : a->n_pos),
                  .n_pos = a->n_pos > first_extra + 1 ? a->n_pos - first_extra - 1 : 0};
    jlist *r = jj_new_list(c, items->n, pos);
    if (!r) return false;
    size_t n = 0;
    for (size_t i = 0; i < items->n; i++) {
        if (!jj_step(c, pos)) return false;
        jval x = items->v[i];
        if (by_attr && !attr_path(c, &items->v[i], attr->u.s, pos, &x)) return false;
        bool t;
        if (test) {
            if (!jj_apply_test(c, test->u.s->p, &x, &targs, pos, &t)) return false;
        } else {
            t = jj_truthy(&x);
        }
        if (t == keep) r->v[n++] = items->v[i];
    }
    r->n = n;
    *out = v_list(r);
    return true;
}

/* Stable merge sort of l by keys (bottom-up, n log n comparisons). */
static bool sort_list(ctx *c, jlist *l, bool reverse, bool case_sensitive, const jstr *attr, size_t pos) {
    size_t n = l->n;
    if (n < 2) return true;
    jval *keys = jj_alloc(c, n * sizeof(jval), pos), *tmp_keys = jj_alloc(c, n * sizeof(jval), pos);
    jval *tmp_vals = jj_alloc(c, n * sizeof(jval), pos);
    if (!keys || !tmp_keys || !tmp_vals) return false;
    for (size_t i = 0; i < n; i++) {
        keys[i] = l->v[i];
        if (attr && !attr_path(c, &l->v[i], attr, pos, &keys[i])) return false;
    }
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                bool ok = true;
                int k = jj_compare_for_sort(c, &keys[i], &keys[j], case_sensitive, NULL, pos, &ok);
                if (!ok) return false;
                bool take_right = reverse ? k < 0 : k > 0; /* ties keep the left (earlier) item */
                size_t from = take_right ? j++ : i++;
                tmp_keys[o] = keys[from];
                tmp_vals[o++] = l->v[from];
            }
            for (; i < mid; i++, o++) { tmp_keys[o] = keys[i]; tmp_vals[o] = l->v[i]; }
            for (; j < hi; j++, o++) { tmp_keys[o] = keys[j]; tmp_vals[o] = l->v[j]; }
        }
        memcpy(keys, tmp_keys, n * sizeof(jval));
        memcpy(l->v, tmp_vals, n * sizeof(jval));
        if (!jj_work(c, 2 * n * sizeof(jval), pos)) return false;
    }
    return true;
}

static jlist *copy_list(ctx *c, const jlist *src, size_t pos) {
    jlist *l = jj_new_list(c, src->n, pos);
    if (l && src->n) memcpy(l->v, src->v, src->n * sizeof(jval));
    return l;
}

bool jj_apply_filter(ctx *c, const char *name, const jval *v, const args *a, size_t pos, jval *out) {
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const jval *d = jj_arg(a, 0, "default_value"), *boolean = jj_arg(a, 1, "boolean");
        bool use = v->type == JV_UNDEF || (boolean && jj_truthy(boolean) && !jj_truthy(v));
        if (use) { if (d) *out = *d; else return jj_v_cstr(c, "", pos, out); }
        else *out = *v;
        return true;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v->type == JV_UNDEF) { *out = v_int(0); return true; }
        int64_t n = length_of(c, v, pos);
        if (n == -2) return false;
        if (n < 0) return jj_fail(c, pos, "object of type '%s' has no len()", jj_type_name(v));
        *out = v_int(n);
        return true;
    }
    if (!strcmp(name, "string")) return jj_to_string_val(c, v, pos, out);
    if (!strcmp(name, "safe")) { *out = *v; return true; }
    if (!strcmp(name, "int")) {
        const jval *d = jj_arg(a, 0, "default");
        return to_int(c, v, d && (d->type == JV_INT) ? d->u.i : 0, pos, out);
    }
    if (!strcmp(name, "float")) {
        const jval *d = jj_arg(a, 0, "default");
        return to_float(v, d && is_num(d) ? num_f(d) : 0.0, out);
    }
    if (!strcmp(name, "tojson")) {
        const jval *ind = jj_arg(a, 0, "indent"), *sk = jj_arg(a, 1, "sort_keys"), *ea = jj_arg(a, 2, "ensure_ascii");
        json_opts o = {.indent = -1, .sort_keys = sk && jj_truthy(sk), .ensure_ascii = ea && jj_truthy(ea)};
        if (ind && ind->type != JV_NONE) {
            if (ind->type != JV_INT || ind->u.i < 0 || ind->u.i > 64) return jj_fail(c, pos, "tojson indent must be an integer 0..64");
            o.indent = (int)ind->u.i;
        }
        if (v->type == JV_UNDEF) return jj_fail(c, pos, "tojson: undefined value is not JSON serializable");
        strbuf b = {0};
        bool ok = jj_write_json(c, &b, v, &o, 0, pos) && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "items")) {
        if (v->type == JV_UNDEF) { jlist *l = jj_new_list(c, 0, pos); if (!l) return false; *out = v_list(l); return true; }
        if (v->type != JV_DICT) return jj_fail(c, pos, "items filter expects a mapping, got %s", jj_type_name(v));
        jlist *l = jj_new_list(c, v->u.d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < v->u.d->n; i++) {
            jlist *pair = jj_new_list(c, 2, pos);
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
        if (v->type == JV_UNDEF) return jj_undefined_error(c, v, pos);
        if (!jj_iterate(c, v, pos, &items)) return false;
        jlist *l = copy_list(c, items, pos);
        if (!l) return false;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *items;
        if (v->type == JV_UNDEF) return jj_undefined_error(c, v, pos);
        if (!jj_iterate(c, v, pos, &items)) return false;
        if (items->n == 0) *out = v_undef(NULL);
        else *out = items->v[name[0] == 'f' ? 0 : items->n - 1];
        return true;
    }
    if (!strcmp(name, "reverse")) {
        if (v->type == JV_STR) {
            jlist *chars;
            if (!jj_iterate(c, v, pos, &chars)) return false;
            strbuf b = {0};
            bool ok = true;
            for (size_t i = chars->n; ok && i-- > 0;) ok = jj_sb_add(c, &b, chars->v[i].u.s->p, chars->v[i].u.s->len, pos);
            ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
            free(b.p);
            return ok;
        }
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        jlist *l = jj_new_list(c, items->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < items->n; i++) l->v[i] = items->v[items->n - 1 - i];
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "join")) {
        const jval *sep = jj_arg(a, 0, "d"), *attr = jj_arg(a, 1, "attribute");
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        strbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (i && sep) ok = jj_write_str(c, &b, sep, pos, 0);
            jval x = items->v[i];
            if (ok && attr && attr->type == JV_STR) ok = attr_path(c, &items->v[i], attr->u.s, pos, &x);
            ok = ok && jj_write_str(c, &b, &x, pos, 0);
        }
        ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "selectattr")) return select_common(c, v, a, true, true, pos, out);
    if (!strcmp(name, "rejectattr")) return select_common(c, v, a, true, false, pos, out);
    if (!strcmp(name, "select")) return select_common(c, v, a, false, true, pos, out);
    if (!strcmp(name, "reject")) return select_common(c, v, a, false, false, pos, out);
    if (!strcmp(name, "map")) {
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        const jval *attr = jj_arg(a, SIZE_MAX, "attribute"), *dflt = jj_arg(a, SIZE_MAX, "default");
        const jval *fname = a->n_pos > 0 ? &a->pos[0] : NULL;
        if (!attr && (!fname || fname->type != JV_STR)) return jj_fail(c, pos, "map needs a filter name or attribute=");
        args fargs = {.pos = a->pos + (a->n_pos > 0 ? 1 : 0), .n_pos = a->n_pos > 0 ? a->n_pos - 1 : 0};
        jlist *l = jj_new_list(c, items->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < items->n; i++) {
            if (!jj_step(c, pos)) return false;
            if (attr) {
                if (attr->type != JV_STR) return jj_fail(c, pos, "map attribute must be a string");
                if (!attr_path(c, &items->v[i], attr->u.s, pos, &l->v[i])) return false;
                if (l->v[i].type == JV_UNDEF && dflt) l->v[i] = *dflt;
            } else if (!jj_apply_filter(c, fname->u.s->p, &items->v[i], &fargs, pos, &l->v[i])) {
                return false;
            }
        }
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "sort")) {
        const jval *rev = jj_arg(a, 0, "reverse"), *cs = jj_arg(a, 1, "case_sensitive"), *attr = jj_arg(a, 2, "attribute");
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        jlist *l = copy_list(c, items, pos);
        if (!l || !sort_list(c, l, rev && jj_truthy(rev), cs && jj_truthy(cs), attr && attr->type == JV_STR ? attr->u.s : NULL, pos))
            return false;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "unique")) {
        const jval *cs = jj_arg(a, 0, "case_sensitive");
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        jlist *l = jj_new_list(c, items->n, pos);
        if (!l) return false;
        size_t n = 0;
        for (size_t i = 0; i < items->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++) {
                if (!jj_step(c, pos)) return false;
                bool ok = true;
                if (!(cs && jj_truthy(cs)) && items->v[i].type == JV_STR && l->v[j].type == JV_STR)
                    seen = jj_compare_for_sort(c, &l->v[j], &items->v[i], false, NULL, pos, &ok) == 0;
                else
                    ok = jj_equal(c, &l->v[j], &items->v[i], pos, &seen);
                if (!ok) return false;
            }
            if (!seen) l->v[n++] = items->v[i];
        }
        l->n = n;
        *out = v_list(l);
        return true;
    }
    if (!strcmp(name, "sum")) {
        const jval *attr = jj_arg(a, 0, "attribute"), *start = jj_arg(a, 1, "start");
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        jval acc = start ? *start : v_int(0);
        for (size_t i = 0; i < items->n; i++) {
            jval x = items->v[i];
            if (attr && attr->type == JV_STR && !attr_path(c, &items->v[i], attr->u.s, pos, &x)) return false;
            if (!jj_binop(c, OP_ADD, &acc, &x, pos, &acc)) return false;
        }
        *out = acc;
        return true;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        const jval *cs = jj_arg(a, 0, "case_sensitive");
        jlist *items;
        if (!jj_iterate(c, v, pos, &items)) return false;
        if (items->n == 0) { *out = v_undef(NULL); return true; }
        size_t best = 0;
        for (size_t i = 1; i < items->n; i++) {
            bool ok = true;
            int k = jj_compare_for_sort(c, &items->v[i], &items->v[best], cs && jj_truthy(cs), NULL, pos, &ok);
            if (!ok) return false;
            if (name[1] == 'i' ? k < 0 : k > 0) best = i;
        }
        *out = items->v[best];
        return true;
    }
    if (!strcmp(name, "abs")) {
        if (v->type == JV_INT) {
            if (v->u.i == INT64_MIN) return jj_fail(c, pos, "integer overflow in abs");
            *out = v_int(v->u.i < 0 ? -v->u.i : v->u.i);
            return true;
        }
        if (v->type == JV_FLOAT) { *out = v_float(fabs(v->u.f)); return true; }
        if (v->type == JV_BOOL) { *out = v_int(v->u.b); return true; }
        return jj_fail(c, pos, "bad operand type for abs(): '%s'", jj_type_name(v));
    }
    if (!strcmp(name, "round")) {
        const jval *prec = jj_arg(a, 0, "precision"), *method = jj_arg(a, 1, "method");
        if (!is_num(v)) return jj_fail(c, pos, "round expects a number, got %s", jj_type_name(v));
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
    if (v->type == JV_UNDEF) return jj_undefined_error(c, v, pos);
    if (!strcmp(name, "trim")) {
        if (!want_str(c, v, "trim", pos)) return false;
        return str_strip(c, v->u.s, jj_arg(a, 0, "chars"), true, true, pos, out);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        jval s;
        if (!jj_to_string_val(c, v, pos, &s)) return false;
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
        const jval *old = jj_arg(a, 0, "old"), *rep = jj_arg(a, 1, "new"), *cnt = jj_arg(a, 2, "count");
        jval s;
        if (!old || !rep) return jj_fail(c, pos, "replace needs two arguments");
        if (!jj_to_string_val(c, v, pos, &s)) return false;
        jval os, rs;
        if (!jj_to_string_val(c, old, pos, &os) || !jj_to_string_val(c, rep, pos, &rs)) return false;
        return str_replace(c, s.u.s, os.u.s, rs.u.s, cnt && cnt->type == JV_INT ? cnt->u.i : -1, pos, out);
    }
    if (!strcmp(name, "center")) {
        const jval *w = jj_arg(a, 0, "width");
        jval s;
        if (!jj_to_string_val(c, v, pos, &s)) return false;
        int64_t width = w && w->type == JV_INT ? w->u.i : 80, len = length_of(c, &s, pos);
        if (len == -2) return false;
        if (width > (int64_t)c->lim.max_output_bytes) return jj_fail(c, pos, "center width too large");
        if (len >= width) { *out = s; return true; }
        int64_t total = width - len, left = total / 2 + (total & width & 1);
        strbuf b = {0};
        bool ok = true;
        for (int64_t i = 0; ok && i < left; i++) ok = jj_sb_add(c, &b, " ", 1, pos);
        ok = ok && jj_sb_add(c, &b, s.u.s->p, s.u.s->len, pos);
        for (int64_t i = 0; ok && i < total - left; i++) ok = jj_sb_add(c, &b, " ", 1, pos);
        ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    if (!strcmp(name, "wordcount")) {
        jval s;
        if (!jj_to_string_val(c, v, pos, &s)) return false;
        if (!jj_work(c, (uint64_t)s.u.s->len * JJ_WORK_DECODE, pos)) return false;
        int64_t words = 0;
        bool in_word = false;
        size_t i = 0, adv;
        while (i < s.u.s->len) {
            uint32_t cp = jj_utf8_next(s.u.s->p + i, s.u.s->len - i, &adv);
            bool w = cp == '_' || (cp >= '0' && cp <= '9') || jj_is_alpha_cp(c, cp);
            if (w && !in_word) words++;
            in_word = w;
            i += adv;
        }
        *out = v_int(words);
        return true;
    }
    return jj_fail(c, pos, "no filter named '%s'", name);
}

/* ---- calls ---- */

bool jj_call_strftime(ctx *c, const args *a, size_t pos, jval *out) {
    const jval *f = jj_arg(a, 0, "format");
    if (!f || f->type != JV_STR) return jj_fail(c, pos, "strftime_now needs a format string");
    if (f->u.s->len > 256) return jj_fail(c, pos, "strftime_now format too long");
    struct tm tmv;
    time_t t;
    if (c->lim.use_fixed_time) {
        t = (time_t)c->lim.fixed_time;
        if (!gmtime_r(&t, &tmv)) return jj_fail(c, pos, "strftime_now: time out of range");
    } else {
        t = time(NULL);
        if (!localtime_r(&t, &tmv)) return jj_fail(c, pos, "strftime_now: time out of range");
    }
    char buf[1024];
    size_t n = c->c_loc ? strftime_l(buf, sizeof buf, f->u.s->p, &tmv, c->c_loc) : strftime(buf, sizeof buf, f->u.s->p, &tmv);
    if (n == 0 && f->u.s->len > 0) buf[0] = 0;
    return jj_v_str(c, buf, n, pos, out);
}

bool jj_call_method(ctx *c, const jfunc *fn, const args *a, size_t pos, jval *out) {
    const jval *self = &fn->self;
    if (fn->id >= FN_D_ITEMS) {
        const jdict *d = self->u.d;
        if (fn->id == FN_D_GET) {
            const jval *k = jj_arg(a, 0, NULL), *dflt = jj_arg(a, 1, NULL);
            size_t idx;
            bool found;
            if (!k) return jj_fail(c, pos, "get expected at least 1 argument");
            if (!jj_dict_find(c, d, k, pos, &found, &idx)) return false;
            *out = found ? d->vals[idx] : dflt ? *dflt : v_none();
            return true;
        }
        jval tmp = {.type = JV_DICT};
        tmp.u.d = (jdict *)d;
        if (fn->id == FN_D_ITEMS) return jj_apply_filter(c, "items", &tmp, a, pos, out);
        jlist *l = jj_new_list(c, d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < d->n; i++) l->v[i] = fn->id == FN_D_KEYS ? d->keys[i] : d->vals[i];
        *out = v_list(l);
        return true;
    }
    const jstr *s = self->u.s;
    switch (fn->id) {
    case FN_S_STRIP: return str_strip(c, s, jj_arg(a, 0, NULL), true, true, pos, out);
    case FN_S_LSTRIP: return str_strip(c, s, jj_arg(a, 0, NULL), true, false, pos, out);
    case FN_S_RSTRIP: return str_strip(c, s, jj_arg(a, 0, NULL), false, true, pos, out);
    case FN_S_UPPER: return str_case(c, s, CASE_UPPER, pos, out);
    case FN_S_LOWER: return str_case(c, s, CASE_LOWER, pos, out);
    case FN_S_TITLE: return str_case(c, s, CASE_PY_TITLE, pos, out);
    case FN_S_CAPITALIZE: {
        jval low;
        if (!str_case(c, s, CASE_LOWER, pos, &low)) return false;
        return str_case(c, low.u.s, CASE_CAPITALIZE, pos, out);
    }
    case FN_S_STARTSWITH: case FN_S_ENDSWITH: {
        const jval *p = jj_arg(a, 0, NULL);
        if (!p) return jj_fail(c, pos, "startswith/endswith need an argument");
        const jval *cands = p;
        size_t nc = 1;
        if (p->type == JV_LIST) { cands = p->u.l->v; nc = p->u.l->n; }
        bool r = false;
        for (size_t i = 0; i < nc && !r; i++) {
            if (cands[i].type != JV_STR) return jj_fail(c, pos, "startswith/endswith need strings");
            const jstr *x = cands[i].u.s;
            if (!jj_work(c, x->len, pos)) return false;
            if (x->len <= s->len)
                r = fn->id == FN_S_STARTSWITH ? memcmp(s->p, x->p, x->len) == 0
                                              : memcmp(s->p + s->len - x->len, x->p, x->len) == 0;
        }
        *out = v_bool(r);
        return true;
    }
    case FN_S_SPLIT: case FN_S_RSPLIT: {
        const jval *sep = jj_arg(a, 0, "sep"), *mx = jj_arg(a, 1, "maxsplit");
        int64_t m = mx && mx->type == JV_INT ? mx->u.i : -1;
        if (fn->id == FN_S_RSPLIT && m >= 0) return jj_fail(c, pos, "rsplit with maxsplit is not supported");
        return str_split(c, s, sep, m, pos, out);
    }
    case FN_S_SPLITLINES: {
        jval nl;
        if (!jj_v_cstr(c, "\n", pos, &nl) || !str_split(c, s, &nl, -1, pos, out)) return false;
        if (out->u.l->n > 0 && out->u.l->v[out->u.l->n - 1].u.s->len == 0) out->u.l->n--;
        return true;
    }
    case FN_S_REPLACE: {
        const jval *o = jj_arg(a, 0, NULL), *r = jj_arg(a, 1, NULL), *cnt = jj_arg(a, 2, NULL);
        if (!o || !r || o->type != JV_STR || r->type != JV_STR) return jj_fail(c, pos, "replace needs two strings");
        return str_replace(c, s, o->u.s, r->u.s, cnt && cnt->type == JV_INT ? cnt->u.i : -1, pos, out);
    }
    case FN_S_FIND: case FN_S_RFIND: case FN_S_COUNT: {
        const jval *x = jj_arg(a, 0, NULL);
        if (!x || x->type != JV_STR) return jj_fail(c, pos, "find/count need a string");
        const jstr *sub = x->u.s;
        bool ok = true;
        if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false; /* the code point counts below */
        if (fn->id == FN_S_COUNT) {
            int64_t n = 0;
            if (sub->len == 0) n = (int64_t)jj_utf8_count(s->p, s->len) + 1;
            else for (size_t i = 0; i + sub->len <= s->len;) {
                const char *h = jj_find(c, s->p + i, s->len - i, sub->p, sub->len, pos, &ok);
                if (!ok) return false;
                if (!h) break;
                n++;
                i = (size_t)(h - s->p) + sub->len;
            }
            *out = v_int(n);
            return true;
        }
        int64_t found = -1;
        if (sub->len == 0) found = fn->id == FN_S_FIND ? 0 : (int64_t)s->len;
        else for (size_t i = 0; i + sub->len <= s->len;) {
            const char *h = jj_find(c, s->p + i, s->len - i, sub->p, sub->len, pos, &ok);
            if (!ok) return false;
            if (!h) break;
            found = (int64_t)(h - s->p);
            if (fn->id == FN_S_FIND) break;
            i = (size_t)found + 1;
        }
        *out = v_int(found < 0 ? -1 : (int64_t)jj_utf8_count(s->p, (size_t)found));
        return true;
    }
    case FN_S_JOIN: {
        const jval *it = jj_arg(a, 0, NULL);
        if (!it) return jj_fail(c, pos, "join needs an iterable");
        jlist *items;
        if (!jj_iterate(c, it, pos, &items)) return false;
        strbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (items->v[i].type != JV_STR) { ok = jj_fail(c, pos, "sequence item %zu: expected str instance, %s found", i, jj_type_name(&items->v[i])); break; }
            if (i) ok = jj_sb_add(c, &b, s->p, s->len, pos);
            ok = ok && jj_sb_add(c, &b, items->v[i].u.s->p, items->v[i].u.s->len, pos);
        }
        ok = ok && jj_v_str(c, b.p ? b.p : "", b.len, pos, out);
        free(b.p);
        return ok;
    }
    case FN_S_ISDIGIT: case FN_S_ISALPHA: case FN_S_ISSPACE: {
        bool r = s->len > 0;
        size_t i = 0, adv;
        if (!jj_work(c, (uint64_t)s->len * JJ_WORK_DECODE, pos)) return false;
        while (r && i < s->len) {
            uint32_t cp = jj_utf8_next(s->p + i, s->len - i, &adv);
            r = fn->id == FN_S_ISDIGIT ? (cp >= '0' && cp <= '9') : fn->id == FN_S_ISALPHA ? jj_is_alpha_cp(c, cp) : jj_py_space(cp);
            i += adv;
        }
        *out = v_bool(r);
        return true;
    }
    default:
        return jj_fail(c, pos, "unsupported method");
    }
}
