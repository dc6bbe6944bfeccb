/* eval.c: tree-walking evaluation and jinja_render.
 *
 * Names, attributes, items, slices, operators, calls and statements. All
 * values live in a per-render arena freed at the end; limits on work,
 * nesting, memory and output bound any template. */
#include "text/jinja/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_MAX_DEPTH 1000

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
    jfunc *fn = jj_alloc(c, sizeof(jfunc), pos);
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
        const char **nn = jj_alloc(c, cap * sizeof(char *), pos);
        jval *nv = nn ? jj_alloc(c, cap * sizeof(jval), pos) : NULL;
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

bool jj_undefined_error(ctx *c, const jval *v, size_t pos) {
    if (v->u.undef_name) return jj_fail(c, pos, "'%s' is undefined", v->u.undef_name);
    return jj_fail(c, pos, "undefined value used");
}

/* obj.name (Jinja: attribute first, then item) */
static bool get_attr(ctx *c, const jval *obj, const char *name, size_t pos, jval *out) {
    if (strncmp(name, "__", 2) == 0) { *out = v_undef(name); return true; } /* sandbox: no dunders */
    switch (obj->type) {
    case JV_UNDEF: return jj_undefined_error(c, obj, pos);
    case JV_DICT: {
        for (int i = 0; DICT_METHODS[i].name; i++)
            if (strcmp(DICT_METHODS[i].name, name) == 0) {
                *out = make_func(c, DICT_METHODS[i].id, *obj, pos);
                return !c->failed;
            }
        size_t idx;
        if (jj_dict_find_str(obj->u.d, name, strlen(name), &idx)) *out = obj->u.d->vals[idx];
        else *out = v_undef(NULL);
        return true;
    }
    case JV_NS: {
        size_t idx;
        if (jj_dict_find_str(obj->u.d, name, strlen(name), &idx)) *out = obj->u.d->vals[idx];
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
    size_t *off = jj_utf8_offsets(c, s, &n_cp, pos);
    if (!off) return false;
    if (!normalize_index(idx, n_cp, &k)) { *out = v_undef(NULL); return true; }
    return jj_v_str(c, s->p + off[k], off[k + 1] - off[k], pos, out);
}

/* obj[key] (Jinja: item first, then attribute for string keys) */
bool jj_get_item(ctx *c, const jval *obj, const jval *key, size_t pos, jval *out) {
    switch (obj->type) {
    case JV_UNDEF: return jj_undefined_error(c, obj, pos);
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
        bool found;
        if (!jj_dict_find(c, obj->u.d, key, pos, &found, &idx)) return false;
        if (found) { *out = obj->u.d->vals[idx]; return true; }
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
        if (st->type != JV_INT) return jj_fail(c, pos, "slice step must be an integer");
        s = st->u.i;
        if (s == 0) return jj_fail(c, pos, "slice step cannot be zero");
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
        if (v->type != JV_INT && v->type != JV_BOOL) return jj_fail(c, pos, "slice indices must be integers");
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
    if (obj->type == JV_UNDEF) return jj_undefined_error(c, obj, pos);
    size_t n;
    size_t *off = NULL;
    if (obj->type == JV_LIST) n = obj->u.l->n;
    else if (obj->type == JV_STR) { if (!(off = jj_utf8_offsets(c, obj->u.s, &n, pos))) return false; }
    else return jj_fail(c, pos, "cannot slice a value of type %s", jj_type_name(obj));
    int64_t a = 0, b = 0, s = 1;
    if (!slice_indices(c, lo, hi, st, n, pos, &a, &b, &s)) return false;
    size_t count = 0;
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s) count++;
    if (obj->type == JV_LIST) {
        jlist *l = jj_new_list(c, count, pos);
        if (!l) return false;
        l->tuple = obj->u.l->tuple;
        size_t k = 0;
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) l->v[k++] = obj->u.l->v[i];
        *out = v_list(l);
        return true;
    }
    if (s == 1) return jj_v_str(c, obj->u.s->p + off[a], a < b ? off[b] - off[a] : 0, pos, out);
    strbuf sb = {0};
    bool ok = true;
    for (int64_t i = a; ok && (s > 0 ? i < b : i > b); i += s)
        ok = jj_sb_add(c, &sb, obj->u.s->p + off[i], off[i + 1] - off[i], pos);
    ok = ok && jj_v_str(c, sb.p ? sb.p : "", sb.len, pos, out);
    free(sb.p);
    return ok;
}

/* Iteration: a list of items for lists, dict keys, string characters. */
bool jj_iterate(ctx *c, const jval *v, size_t pos, jlist **out) {
    switch (v->type) {
    case JV_UNDEF: *out = jj_new_list(c, 0, pos); return *out != NULL;
    case JV_LIST: *out = v->u.l; return true;
    case JV_DICT: {
        jlist *l = jj_new_list(c, v->u.d->n, pos);
        if (!l) return false;
        for (size_t i = 0; i < v->u.d->n; i++) l->v[i] = v->u.d->keys[i];
        *out = l;
        return true;
    }
    case JV_STR: {
        size_t n;
        size_t *off = jj_utf8_offsets(c, v->u.s, &n, pos);
        jlist *l = off ? jj_new_list(c, n, pos) : NULL;
        if (!l) return false;
        for (size_t i = 0; i < n; i++)
            if (!jj_v_str(c, v->u.s->p + off[i], off[i + 1] - off[i], pos, &l->v[i])) return false;
        *out = l;
        return true;
    }
    default:
        return jj_fail(c, pos, "'%s' object is not iterable", jj_type_name(v));
    }
}

static bool ck_add(int64_t a, int64_t b, int64_t *r) { return !__builtin_add_overflow(a, b, r); }
static bool ck_sub(int64_t a, int64_t b, int64_t *r) { return !__builtin_sub_overflow(a, b, r); }
static bool ck_mul(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }

static bool repeat(ctx *c, const jval *seq, int64_t times, size_t pos, jval *out) {
    if (times < 0) times = 0;
    if (seq->type == JV_STR) {
        if (seq->u.s->len && (uint64_t)times > c->lim.max_output_bytes / seq->u.s->len)
            return jj_fail(c, pos, "string repetition longer than %zu bytes", c->lim.max_output_bytes);
        size_t n = seq->u.s->len * (size_t)times;
        char *p = jj_alloc(c, n + 1, pos);
        if (!p) return false;
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * seq->u.s->len, seq->u.s->p, seq->u.s->len);
        return jj_v_str(c, p, n, pos, out);
    }
    const jlist *l = seq->u.l;
    if (l->n && (uint64_t)times > (c->lim.max_output_bytes / sizeof(jval)) / l->n)
        return jj_fail(c, pos, "list repetition too long");
    jlist *r = jj_new_list(c, l->n * (size_t)times, pos);
    if (!r) return false;
    for (int64_t i = 0; i < times; i++) if (l->n) memcpy(r->v + (size_t)i * l->n, l->v, l->n * sizeof(jval));
    *out = v_list(r);
    return true;
}


bool jj_binop(ctx *c, int op, const jval *a, const jval *b, size_t pos, jval *out) {
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    if (op == OP_CONCAT) {
        strbuf sb = {0};
        bool ok = jj_write_str(c, &sb, a, pos, 0) && jj_write_str(c, &sb, b, pos, 0) &&
                  jj_v_str(c, sb.p ? sb.p : "", sb.len, pos, out);
        free(sb.p);
        return ok;
    }
    if (a->type == JV_UNDEF) return jj_undefined_error(c, a, pos);
    if (b->type == JV_UNDEF) return jj_undefined_error(c, b, pos);
    if (is_num(a) && is_num(b)) {
        bool fl = a->type == JV_FLOAT || b->type == JV_FLOAT;
        int64_t x = num_i(a), y = num_i(b), r;
        double fx = num_f(a), fy = num_f(b);
        switch (op) {
        case OP_ADD:
            if (fl) { *out = v_float(fx + fy); return true; }
            if (!ck_add(x, y, &r)) return jj_fail(c, pos, "integer overflow in '+'");
            *out = v_int(r); return true;
        case OP_SUB:
            if (fl) { *out = v_float(fx - fy); return true; }
            if (!ck_sub(x, y, &r)) return jj_fail(c, pos, "integer overflow in '-'");
            *out = v_int(r); return true;
        case OP_MUL:
            if (fl) { *out = v_float(fx * fy); return true; }
            if (!ck_mul(x, y, &r)) return jj_fail(c, pos, "integer overflow in '*'");
            *out = v_int(r); return true;
        case OP_DIV:
            if (fy == 0.0) return jj_fail(c, pos, "division by zero");
            *out = v_float(fx / fy); return true;
        case OP_FLOORDIV:
            if (fl) {
                if (fy == 0.0) return jj_fail(c, pos, "float floor division by zero");
                *out = v_float(floor(fx / fy)); return true;
            }
            if (y == 0) return jj_fail(c, pos, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) return jj_fail(c, pos, "integer overflow in '//'");
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            *out = v_int(r); return true;
        case OP_MOD:
            if (fl) {
                if (fy == 0.0) return jj_fail(c, pos, "float modulo by zero");
                double m = fmod(fx, fy);
                if (m != 0.0 && ((m < 0) != (fy < 0))) m += fy;
                *out = v_float(m); return true;
            }
            if (y == 0) return jj_fail(c, pos, "integer modulo by zero");
            if (y == -1) { *out = v_int(0); return true; }
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            *out = v_int(r); return true;
        case OP_POW:
            if (fl || y < 0) {
                if (fx == 0.0 && fy < 0) return jj_fail(c, pos, "zero to a negative power");
                *out = v_float(pow(fx, fy)); return true;
            }
            if (x == 0 || x == 1) r = (y == 0) ? 1 : x;
            else if (x == -1) r = (y % 2) ? -1 : 1;
            else {
                r = 1;
                for (int64_t k = 0; k < y; k++)
                    if (!ck_mul(r, x, &r)) return jj_fail(c, pos, "integer overflow in '**'");
            }
            *out = v_int(r); return true;
        }
    }
    if (op == OP_ADD && a->type == JV_STR && b->type == JV_STR) {
        if (a->u.s->len + b->u.s->len > c->lim.max_output_bytes) return jj_fail(c, pos, "string longer than %zu bytes", c->lim.max_output_bytes);
        char *p = jj_alloc(c, a->u.s->len + b->u.s->len + 1, pos);
        if (!p) return false;
        memcpy(p, a->u.s->p, a->u.s->len);
        memcpy(p + a->u.s->len, b->u.s->p, b->u.s->len);
        jstr *s = jj_alloc(c, sizeof(jstr), pos);
        if (!s) return false;
        p[a->u.s->len + b->u.s->len] = 0;
        s->p = p;
        s->len = a->u.s->len + b->u.s->len;
        out->type = JV_STR;
        out->u.s = s;
        return true;
    }
    if (op == OP_ADD && a->type == JV_LIST && b->type == JV_LIST && a->u.l->tuple == b->u.l->tuple) {
        jlist *l = jj_new_list(c, a->u.l->n + b->u.l->n, pos);
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
    if (op == OP_MOD && a->type == JV_STR) return jj_format_percent(c, a, b, pos, out);
    return jj_fail(c, pos, "unsupported operand types for %s: '%s' and '%s'", names[op], jj_type_name(a), jj_type_name(b));
}


static bool contains(ctx *c, const jval *container, const jval *item, size_t pos, bool *result) {
    switch (container->type) {
    case JV_STR:
        if (item->type != JV_STR) return jj_fail(c, pos, "'in <string>' requires a string as left operand, not %s", jj_type_name(item));
        if (item->u.s->len == 0) { *result = true; return true; }
        bool ok = true;
        *result = jj_find(c, container->u.s->p, container->u.s->len, item->u.s->p, item->u.s->len, pos, &ok) != NULL;
        return ok;
    case JV_LIST:
        *result = false;
        for (size_t i = 0; i < container->u.l->n && !*result; i++)
            if (!jj_equal(c, &container->u.l->v[i], item, pos, result)) return false;
        return true;
    case JV_DICT: case JV_NS: {
        size_t idx;
        return jj_dict_find(c, container->u.d, item, pos, result, &idx);
    }
    case JV_UNDEF: return jj_undefined_error(c, container, pos);
    default: return jj_fail(c, pos, "argument of type '%s' is not iterable", jj_type_name(container));
    }
}

bool jj_compare_op(ctx *c, int op, const jval *a, const jval *b, size_t pos, bool *r) {
    bool ok = true;
    switch (op) {
    case OP_EQ: return jj_equal(c, a, b, pos, r);
    case OP_NE: if (!jj_equal(c, a, b, pos, r)) return false; *r = !*r; return true;
    case OP_IN: return contains(c, b, a, pos, r);
    case OP_NOTIN: if (!contains(c, b, a, pos, r)) return false; *r = !*r; return true;
    default: break;
    }
    if (a->type == JV_UNDEF) return jj_undefined_error(c, a, pos);
    if (b->type == JV_UNDEF) return jj_undefined_error(c, b, pos);
    const char *name = op == OP_LT ? "<" : op == OP_LE ? "<=" : op == OP_GT ? ">" : ">=";
    int k = jj_compare_for_sort(c, a, b, true, name, pos, &ok);
    if (!ok) return false;
    *r = op == OP_LT ? k < 0 : op == OP_LE ? k <= 0 : op == OP_GT ? k > 0 : k >= 0;
    return true;
}

static bool call_macro(ctx *c, const node *m, const args *a, size_t pos, jval *out) {
    if (c->call_depth >= c->lim.max_call_depth)
        return jj_fail(c, pos, "macro calls nested deeper than %d", c->lim.max_call_depth);
    if (a->n_pos > m->n_names) return jj_fail(c, pos, "macro '%s' takes %zu arguments (%zu given)", m->str, m->n_names, a->n_pos);
    frame *f = jj_alloc(c, sizeof(frame), pos);
    if (!f) return false;
    memset(f, 0, sizeof *f);
    f->parent = c->root;
    for (size_t k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (size_t i = 0; i < m->n_names; i++) if (!strcmp(m->names[i], a->kw_names[k])) known = true;
        if (!known) return jj_fail(c, pos, "macro '%s' has no parameter named '%s'", m->str, a->kw_names[k]);
    }
    frame *saved = c->frame;
    for (size_t i = 0; i < m->n_names; i++) {
        const jval *x = jj_arg(a, i, m->names[i]);
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
    bool ok = r != EX_ERR && jj_v_str(c, body.p ? body.p : "", body.len, pos, out);
    free(body.p);
    return ok;
}

bool jj_call_value(ctx *c, const jval *fn, const args *a, size_t pos, jval *out) {
    if (fn->type == JV_MACRO) return call_macro(c, fn->u.macro, a, pos, out);
    if (fn->type == JV_UNDEF) {
        if (fn->u.undef_name) return jj_fail(c, pos, "'%s' is undefined", fn->u.undef_name);
        return jj_fail(c, pos, "call of an undefined value");
    }
    if (fn->type != JV_FUNC) return jj_fail(c, pos, "'%s' object is not callable", jj_type_name(fn));
    const jfunc *f = fn->u.fn;
    switch (f->id) {
    case FN_RAISE: {
        const jval *m = jj_arg(a, 0, NULL);
        strbuf b = {0};
        if (m && !jj_write_str(c, &b, m, pos, 0)) { free(b.p); return false; }
        jj_fail(c, pos, "raise_exception: %s", b.p ? b.p : "");
        free(b.p);
        return false;
    }
    case FN_STRFTIME: return jj_call_strftime(c, a, pos, out);
    case FN_NAMESPACE: case FN_DICT: {
        jdict *d = jj_new_dict(c, pos);
        if (!d) return false;
        if (a->n_pos > 1) return jj_fail(c, pos, "%s takes at most one positional argument", f->id == FN_DICT ? "dict" : "namespace");
        if (a->n_pos == 1) {
            const jval *src = &a->pos[0];
            if (src->type != JV_DICT && src->type != JV_NS) return jj_fail(c, pos, "%s argument must be a mapping", f->id == FN_DICT ? "dict" : "namespace");
            for (size_t i = 0; i < src->u.d->n; i++)
                if (!jj_dict_set(c, d, src->u.d->keys[i], src->u.d->vals[i], pos)) return false;
        }
        for (size_t k = 0; k < a->n_kw; k++) {
            if (f->id == FN_NAMESPACE && a->kw_names[k][0] == '_')
                return jj_fail(c, pos, "namespace attributes cannot start with '_' ('%s')", a->kw_names[k]);
            jval key;
            if (!jj_v_cstr(c, a->kw_names[k], pos, &key) || !jj_dict_set(c, d, key, a->kw[k], pos)) return false;
        }
        out->type = f->id == FN_DICT ? JV_DICT : JV_NS;
        out->u.d = d;
        return true;
    }
    case FN_RANGE: {
        int64_t lo = 0, hi, st = 1;
        for (size_t i = 0; i < a->n_pos; i++)
            if (a->pos[i].type != JV_INT && a->pos[i].type != JV_BOOL) return jj_fail(c, pos, "range() arguments must be integers");
        if (a->n_pos == 1) hi = num_i(&a->pos[0]);
        else if (a->n_pos == 2 || a->n_pos == 3) {
            lo = num_i(&a->pos[0]);
            hi = num_i(&a->pos[1]);
            if (a->n_pos == 3) st = num_i(&a->pos[2]);
        } else return jj_fail(c, pos, "range expects 1 to 3 arguments");
        if (st == 0) return jj_fail(c, pos, "range() step must not be zero");
        __int128 count = 0;
        if (st > 0 && hi > lo) count = ((__int128)hi - lo + st - 1) / st;
        if (st < 0 && hi < lo) count = ((__int128)lo - hi - st - 1) / -st;
        if (count > (__int128)(c->lim.max_work / JJ_WORK_STEP))
            return jj_fail(c, pos, "range of %lld items exceeds the work budget", (long long)count);
        if (count * (__int128)sizeof(jval) > (__int128)c->lim.max_memory_bytes) return jj_fail(c, pos, "range too large");
        jlist *l = jj_new_list(c, (size_t)count, pos);
        if (!l) return false;
        for (size_t i = 0; i < (size_t)count; i++) l->v[i] = v_int(lo + (int64_t)i * st);
        *out = v_list(l);
        return true;
    }
    default: return jj_call_method(c, f, a, pos, out);
    }
}

/* Evaluates the argument nodes of a call/filter/test node. */
static bool eval_args(ctx *c, const node *n, args *a) {
    jval *vals = NULL;
    size_t total = n->n + n->n2;
    if (total && !(vals = jj_alloc(c, total * sizeof(jval), n->pos))) return false;
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
    if (c->eval_depth >= EVAL_MAX_DEPTH) return jj_fail(c, n->pos, "expression nested deeper than %d", EVAL_MAX_DEPTH);
    c->eval_depth++;
    bool ok = eval_node(c, n, out);
    c->eval_depth--;
    return ok;
}

static bool eval_node(ctx *c, const node *n, jval *out) {
    if (!jj_step(c, n->pos)) return false;
    switch (n->kind) {
    case N_LIT: *out = n->lit; return true;
    case N_NAME: return lookup_name(c, n, out);
    case N_ATTR: {
        jval obj;
        return eval(c, n->a, &obj) && get_attr(c, &obj, n->str, n->pos, out);
    }
    case N_ITEM: {
        jval obj, key;
        return eval(c, n->a, &obj) && eval(c, n->b, &key) && jj_get_item(c, &obj, &key, n->pos, out);
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
        return eval(c, n->a, &fn) && eval_args(c, n, &a) && jj_call_value(c, &fn, &a, n->pos, out);
    }
    case N_FILTER: {
        jval v;
        args a;
        return eval(c, n->a, &v) && eval_args(c, n, &a) && jj_apply_filter(c, n->str, &v, &a, n->pos, out);
    }
    case N_TEST: {
        jval v;
        args a;
        bool r;
        if (!eval(c, n->a, &v) || !eval_args(c, n, &a) || !jj_apply_test(c, n->str, &v, &a, n->pos, &r)) return false;
        *out = v_bool(n->flag ? !r : r);
        return true;
    }
    case N_BIN: {
        jval l, r;
        return eval(c, n->a, &l) && eval(c, n->b, &r) && jj_binop(c, n->op, &l, &r, n->pos, out);
    }
    case N_NEG: case N_POS: {
        jval v;
        if (!eval(c, n->a, &v)) return false;
        if (v.type == JV_UNDEF) return jj_undefined_error(c, &v, n->pos);
        if (!is_num(&v)) return jj_fail(c, n->pos, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', jj_type_name(&v));
        if (n->kind == N_POS) { *out = v.type == JV_BOOL ? v_int(v.u.b) : v; return true; }
        if (v.type == JV_FLOAT) { *out = v_float(-v.u.f); return true; }
        if (num_i(&v) == INT64_MIN) return jj_fail(c, n->pos, "integer overflow in unary -");
        *out = v_int(-num_i(&v));
        return true;
    }
    case N_NOT: {
        jval v;
        if (!eval(c, n->a, &v)) return false;
        *out = v_bool(!jj_truthy(&v));
        return true;
    }
    case N_AND: case N_OR: {
        jval l;
        if (!eval(c, n->a, &l)) return false;
        if ((n->kind == N_AND) != jj_truthy(&l)) { *out = l; return true; }
        return eval(c, n->b, out);
    }
    case N_CMP: {
        jval l, r;
        if (!eval(c, n->a, &l)) return false;
        for (size_t i = 0; i < n->n; i++) {
            bool res;
            if (!eval(c, n->list[i], &r) || !jj_compare_op(c, n->ops[i], &l, &r, n->pos, &res)) return false;
            if (!res) { *out = v_bool(false); return true; }
            l = r;
        }
        *out = v_bool(true);
        return true;
    }
    case N_COND: {
        jval cond;
        if (!eval(c, n->a, &cond)) return false;
        if (jj_truthy(&cond)) return eval(c, n->b, out);
        if (n->c) return eval(c, n->c, out);
        *out = v_undef(NULL);
        return true;
    }
    case N_LIST: case N_TUPLE: {
        jlist *l = jj_new_list(c, n->n, n->pos);
        if (!l) return false;
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->n; i++) if (!eval(c, n->list[i], &l->v[i])) return false;
        *out = v_list(l);
        return true;
    }
    case N_DICT: {
        jdict *d = jj_new_dict(c, n->pos);
        if (!d) return false;
        for (size_t i = 0; i < n->n; i++) {
            jval k, v;
            if (!eval(c, n->list[i], &k) || !eval(c, n->list2[i], &v)) return false;
            if (k.type == JV_LIST && !k.u.l->tuple) return jj_fail(c, n->pos, "unhashable type: 'list'");
            if (k.type == JV_DICT || k.type == JV_UNDEF) return jj_fail(c, n->pos, "unhashable dict key");
            if (!jj_dict_set(c, d, k, v, n->pos)) return false;
        }
        out->type = JV_DICT;
        out->u.d = d;
        return true;
    }
    default:
        return jj_fail(c, n->pos, "internal error: statement used as expression");
    }
}

/* ---- statements ---- */

static bool output_value(ctx *c, const jval *v, size_t pos) { return jj_write_str(c, &c->out, v, pos, 0); }

static bool assign_targets(ctx *c, frame *f, const node *n, const jval *item) {
    if (n->n_names == 1) return frame_set(c, f, n->names[0], *item, n->pos);
    jlist *parts;
    if (!jj_iterate(c, item, n->pos, &parts)) return false;
    if (parts->n != n->n_names)
        return jj_fail(c, n->pos, "cannot unpack %zu values into %zu loop variables", parts->n, n->n_names);
    for (size_t i = 0; i < n->n_names; i++)
        if (!frame_set(c, f, n->names[i], parts->v[i], n->pos)) return false;
    return true;
}

static exres exec_for(ctx *c, const node *n, frame *f) {
    jval seq;
    jlist *all;
    c->frame = f;
    if (!eval(c, n->a, &seq) || !jj_iterate(c, &seq, n->a->pos, &all)) return EX_ERR;
    jlist *items = all;
    if (n->b) { /* {% for x in xs if cond %}: filter first, loop.* counts the kept items */
        items = jj_new_list(c, all->n, n->pos);
        if (!items) return EX_ERR;
        size_t k = 0;
        frame *tf = jj_alloc(c, sizeof(frame), n->pos);
        if (!tf) return EX_ERR;
        memset(tf, 0, sizeof *tf);
        tf->parent = f;
        for (size_t i = 0; i < all->n; i++) {
            if (!jj_step(c, n->pos)) return EX_ERR;
            tf->n = 0;
            if (!assign_targets(c, tf, n, &all->v[i])) return EX_ERR;
            jval cond;
            c->frame = tf;
            if (!eval(c, n->b, &cond)) return EX_ERR;
            if (jj_truthy(&cond)) items->v[k++] = all->v[i];
        }
        items->n = k;
    }
    jloop *lp = jj_alloc(c, sizeof(jloop), n->pos);
    if (!lp) return EX_ERR;
    lp->items = items;
    jval loopv = {.type = JV_LOOP};
    loopv.u.loop = lp;
    /* one scope per iteration (Jinja: assignments in the body do not survive it); the
     * frame's storage is reused, so long loops do not grow memory */
    frame *it = jj_alloc(c, sizeof(frame), n->pos);
    if (!it) return EX_ERR;
    memset(it, 0, sizeof *it);
    it->parent = f;
    for (size_t i = 0; i < items->n; i++) {
        if (!jj_step(c, n->pos)) return EX_ERR;
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
    if (!jj_step(c, n->pos)) return EX_ERR;
    c->frame = f;
    switch (n->kind) {
    case N_BLOCK:
        for (size_t i = 0; i < n->n; i++) {
            exres r = exec(c, n->list[i], f);
            if (r != EX_OK) return r;
        }
        return EX_OK;
    case N_TEXT: return jj_sb_add(c, &c->out, n->str, n->len, n->pos) ? EX_OK : EX_ERR;
    case N_OUTPUT: {
        jval v;
        return eval(c, n->a, &v) && output_value(c, &v, n->pos) ? EX_OK : EX_ERR;
    }
    case N_IF:
        for (size_t i = 0; i < n->n; i++) {
            jval cond;
            c->frame = f;
            if (!eval(c, n->list[i], &cond)) return EX_ERR;
            if (jj_truthy(&cond)) return exec(c, n->list2[i], f);
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
            jj_fail(c, n->pos, "cannot assign attribute on non-namespace object '%s'", n->str);
            return EX_ERR;
        }
        if (n->names[0][0] == '_') {
            jj_fail(c, n->pos, "namespace attributes cannot start with '_' ('%s')", n->names[0]);
            return EX_ERR;
        }
        jval key;
        if (!eval(c, n->a, &v) || !jj_v_cstr(c, n->names[0], n->pos, &key) || !jj_dict_set(c, ns.u.d, key, v, n->pos))
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
        bool ok = r == EX_OK && jj_v_str(c, body.p ? body.p : "", body.len, n->pos, &v) && frame_set(c, f, n->str, v, n->pos);
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
        jj_fail(c, n->pos, "internal error: expression used as statement");
        return EX_ERR;
    }
}

/* ---- JSON variables ---- */

static bool from_json(ctx *c, const json_t *j, jval *out, int depth) {
    if (depth > 64) return jj_fail(c, 0, "variables nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = v_none(); return true;
    case JSON_TRUE: *out = v_bool(true); return true;
    case JSON_FALSE: *out = v_bool(false); return true;
    case JSON_INTEGER: *out = v_int((int64_t)json_integer_value(j)); return true;
    case JSON_REAL: *out = v_float(json_real_value(j)); return true;
    case JSON_STRING: return jj_v_str(c, json_string_value(j), json_string_length(j), 0, out);
    case JSON_ARRAY: {
        jlist *l = jj_new_list(c, json_array_size(j), 0);
        if (!l) return false;
        for (size_t i = 0; i < l->n; i++) if (!from_json(c, json_array_get(j, i), &l->v[i], depth + 1)) return false;
        *out = v_list(l);
        return true;
    }
    case JSON_OBJECT: {
        jdict *d = jj_new_dict(c, 0);
        if (!d) return false;
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach((json_t *)j, key, key_len, val) {
            jval k, v;
            if (!jj_v_str(c, key, key_len, 0, &k) || !from_json(c, val, &v, depth + 1) || !jj_dict_set(c, d, k, v, 0)) return false;
        }
        out->type = JV_DICT;
        out->u.d = d;
        return true;
    }
    }
    return jj_fail(c, 0, "unsupported JSON value");
}

jinja_limits jinja_default_limits(void) {
    jinja_limits l = {
        .max_output_bytes = (size_t)16 << 20,
        .max_memory_bytes = (size_t)256 << 20,
        .max_work = (uint64_t)1 << 28,
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
    frame *root = jj_alloc(&c, sizeof(frame), 0);
    bool ok = root != NULL;
    if (ok) {
        memset(root, 0, sizeof *root);
        c.root = root;
        c.frame = root;
        if (!json_is_object(vars)) ok = jj_fail(&c, 0, "variables must be a JSON object");
        const char *key;
        size_t key_len;
        json_t *val;
        if (ok) json_object_keylen_foreach((json_t *)vars, key, key_len, val) {
            jval v;
            char *name = jj_alloc(&c, key_len + 1, 0);
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
    jj_arena_free(&c.a);
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
