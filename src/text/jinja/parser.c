/* parser.c: recursive-descent parser from tokens to the AST.
 *
 * Nesting is bounded (PARSE_MAX_DEPTH); every syntax error names its
 * line:column. jinja_parse normalizes newlines, lexes and parses. */
#include "text/jinja/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARSE_MAX_DEPTH 96

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
        jj_fmt_error(ps->err, ps->err_size, ps->src, ps->src_len, pos, fmt, ap);
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
    node *n = jj_arena_alloc(ps->a, sizeof(node));
    if (!n) { parse_fail(ps, pos, "out of memory"); return NULL; }
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static const char *intern(parser *ps, const char *s, size_t len) {
    char *p = jj_arena_alloc(ps->a, len + 1);
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
        node **nv = jj_arena_alloc(ps->a, cap * sizeof(node *));
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
        const char **nv = jj_arena_alloc(ps->a, cap * sizeof(char *));
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
        char *buf = jj_arena_alloc(ps->a, total + 1);
        jstr *s = jj_arena_alloc(ps->a, sizeof(jstr));
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
                node **one = jj_arena_alloc(ps->a, sizeof(node *));
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
    int *o = jj_arena_alloc(ps->a, n_ops * sizeof(int));
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
        const char **names = jj_arena_alloc(ps->a, sizeof(char *));
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

void jinja_free(jinja_template *tmpl) {
    if (!tmpl) return;
    jj_arena_free(&tmpl->ast);
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
    bool ok = jj_lex_all(&lx);
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
