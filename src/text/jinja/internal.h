/* internal.h: the types and functions shared by the parts of the jinja
 * interpreter (internal to src/text/jinja/; the public interface is jinja.h).
 *
 *   lexer.c    template text -> tokens (whitespace control, string escapes)
 *   parser.c   tokens -> AST (jinja_parse, jinja_free)
 *   values.c   the per-render arena, values, equality, ordering, str/repr/json printing
 *   filters.c  tests (is ...), filters (| ...), string and dict methods
 *   eval.c     names, attributes, items, operators, calls, statements (jinja_render)
 *
 * Functions shared between these files carry the prefix jj_. */
#ifndef GRETA_JINJA_INTERNAL_H
#define GRETA_JINJA_INTERNAL_H

#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/jinja/jinja.h"

/* The work budget (jinja_limits.max_work) counts units of about 0.5 ns of
 * CPU: a byte compared, copied or allocated costs one unit; these cost more. */
#define JJ_WORK_STEP 32    /* one evaluation step (node evaluated, loop turn) */
#define JJ_WORK_ELEMENT 8  /* one value visited by a comparison */
#define JJ_WORK_CALL 16    /* one append to a string being built (plus its bytes) */
#define JJ_WORK_DECODE 16  /* one byte decoded as UTF-8 (lengths, offsets, case folding) */
/* Deepest nesting of lists/dicts that comparing, printing or tojson follow. */
#define JJ_MAX_VALUE_DEPTH 64

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

struct jinja_template {
    char *src; /* normalized */
    size_t len;
    arena ast;
    node *root;
};

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
    uint64_t work; /* units charged so far (jj_work) */
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

typedef struct {
    int indent;       /* < 0: none */
    bool sort_keys;
    bool ensure_ascii;
} json_opts;

typedef struct {
    const jval *pos;
    size_t n_pos;
    const char *const *kw_names;
    const jval *kw;
    size_t n_kw;
} args;

enum {
    FN_RAISE, FN_STRFTIME, FN_NAMESPACE, FN_RANGE, FN_DICT,
    /* string methods */
    FN_S_STRIP, FN_S_LSTRIP, FN_S_RSTRIP, FN_S_STARTSWITH, FN_S_ENDSWITH, FN_S_SPLIT, FN_S_RSPLIT, FN_S_UPPER,
    FN_S_LOWER, FN_S_TITLE, FN_S_CAPITALIZE, FN_S_REPLACE, FN_S_FIND, FN_S_RFIND, FN_S_COUNT, FN_S_JOIN,
    FN_S_ISDIGIT, FN_S_ISALPHA, FN_S_ISSPACE, FN_S_SPLITLINES,
    /* dict methods */
    FN_D_ITEMS, FN_D_KEYS, FN_D_VALUES, FN_D_GET,
};

static inline bool is_num(const jval *v) { return v->type == JV_INT || v->type == JV_FLOAT || v->type == JV_BOOL; }
static inline double num_f(const jval *v) {
    return v->type == JV_FLOAT ? v->u.f : v->type == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static inline int64_t num_i(const jval *v) { return v->type == JV_INT ? v->u.i : v->type == JV_BOOL ? v->u.b : (int64_t)v->u.f; }
static inline jval v_bool(bool b) { jval v = {.type = JV_BOOL}; v.u.b = b; return v; }
static inline jval v_float(double f) { jval v = {.type = JV_FLOAT}; v.u.f = f; return v; }
static inline jval v_int(int64_t i) { jval v = {.type = JV_INT}; v.u.i = i; return v; }
static inline jval v_list(jlist *l) { jval v = {.type = JV_LIST}; v.u.l = l; return v; }
static inline jval v_none(void) { jval v = {.type = JV_NONE}; return v; }
static inline jval v_undef(const char *name) { jval v = {.type = JV_UNDEF}; v.u.undef_name = name; return v; }

/* lexer.c: tokens from template text */
void jj_fmt_error(char *err, size_t err_size, const char *src, size_t len, size_t pos, const char *fmt, va_list ap);
bool jj_is_ws(char c);
bool jj_lex_all(lexer *lx);

/* values.c: arena, values, equality, ordering, printing */
void *jj_alloc(ctx *c, size_t n, size_t pos);
void *jj_arena_alloc(arena *a, size_t n);
void jj_arena_free(arena *a);
uint32_t jj_case_map(const ctx *c, uint32_t cp, bool upper);
int jj_compare_for_sort(ctx *c, const jval *a, const jval *b, bool case_sensitive, const char *op, size_t pos,
                        bool *ok);
bool jj_dict_find(ctx *c, const jdict *d, const jval *key, size_t pos, bool *found, size_t *idx);
bool jj_dict_find_str(const jdict *d, const char *key, size_t len, size_t *idx);
bool jj_dict_set(ctx *c, jdict *d, jval key, jval val, size_t pos);
bool jj_equal(ctx *c, const jval *a, const jval *b, size_t pos, bool *eq);
__attribute__((format(printf, 3, 4)))
bool jj_fail(ctx *c, size_t pos, const char *fmt, ...);
bool jj_is_alpha_cp(const ctx *c, uint32_t cp);
jdict *jj_new_dict(ctx *c, size_t pos);
jlist *jj_new_list(ctx *c, size_t n, size_t pos);
bool jj_put_cp(ctx *c, strbuf *b, uint32_t cp, size_t pos);
bool jj_py_space(uint32_t cp);
bool jj_sb_add(ctx *c, strbuf *b, const char *s, size_t n, size_t pos);
bool jj_step(ctx *c, size_t pos);
bool jj_work(ctx *c, uint64_t units, size_t pos);
const char *jj_find(ctx *c, const char *hay, size_t n, const char *needle, size_t m, size_t pos, bool *ok);
bool jj_to_string_val(ctx *c, const jval *v, size_t pos, jval *out);
bool jj_truthy(const jval *v);
const char *jj_type_name(const jval *v);
size_t jj_utf8_count(const char *s, size_t n);
uint32_t jj_utf8_next(const char *s, size_t n, size_t *adv);
size_t *jj_utf8_offsets(ctx *c, const jstr *s, size_t *n_cp, size_t pos);
bool jj_v_cstr(ctx *c, const char *s, size_t pos, jval *out);
bool jj_v_str(ctx *c, const char *s, size_t n, size_t pos, jval *out);
bool jj_write_json(ctx *c, strbuf *b, const jval *v, const json_opts *o, int level, size_t pos);
bool jj_write_repr(ctx *c, strbuf *b, const jval *v, size_t pos, int depth);
bool jj_write_str(ctx *c, strbuf *b, const jval *v, size_t pos, int depth);

/* filters.c: tests, filters, string and dict methods */
bool jj_apply_filter(ctx *c, const char *name, const jval *v, const args *a, size_t pos, jval *out);
bool jj_apply_test(ctx *c, const char *name, const jval *v, const args *a, size_t pos, bool *r);
const jval *jj_arg(const args *a, size_t i, const char *name);
bool jj_call_method(ctx *c, const jfunc *fn, const args *a, size_t pos, jval *out);
bool jj_call_strftime(ctx *c, const args *a, size_t pos, jval *out);
bool jj_format_percent(ctx *c, const jval *fmtv, const jval *argsv, size_t pos, jval *out);

/* eval.c: names, items, operators, calls */
bool jj_binop(ctx *c, int op, const jval *a, const jval *b, size_t pos, jval *out);
bool jj_call_value(ctx *c, const jval *fn, const args *a, size_t pos, jval *out);
bool jj_compare_op(ctx *c, int op, const jval *a, const jval *b, size_t pos, bool *r);
bool jj_get_item(ctx *c, const jval *obj, const jval *key, size_t pos, jval *out);
bool jj_iterate(ctx *c, const jval *v, size_t pos, jlist **out);
bool jj_undefined_error(ctx *c, const jval *v, size_t pos);

#endif
