/* trace_diff.c: pairing, comparing and reporting two StageTraces
 * (trace_diff.h, docs/trace.md). */
#include "tools/trace_diff.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"

/* Appends a line to result->reason (keeps what fits). */
static void add_reason(trace_diff_result *r, const char *fmt, ...) {
    size_t used = strlen(r->reason);
    if (used + 2 >= sizeof r->reason) return;
    if (used) r->reason[used++] = '\n', r->reason[used] = '\0';
    va_list args;
    va_start(args, fmt);
    vsnprintf(r->reason + used, sizeof r->reason - used, fmt, args);
    va_end(args);
}

void trace_diff_options_init(trace_diff_options *options) {
    options->atol = -1;
    options->rtol = -1;
    options->rel = -1;
    for (int k = 0; k < TP_COUNT; k++) options->rel_point[k] = -1;
}

static bool has_point_bounds(const trace_diff_options *options) {
    for (int k = 0; k < TP_COUNT; k++)
        if (options->rel_point[k] >= 0) return true;
    return false;
}

bool trace_diff_options_exact(const trace_diff_options *options) {
    return options->atol < 0 && options->rtol < 0 && options->rel < 0 && !has_point_bounds(options);
}

/* ------------------------------------------------------------------ */
/* Reading JSONL                                                        */
/* ------------------------------------------------------------------ */

static bool get_int(json_t *obj, const char *key, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static bool get_string(json_t *obj, const char *key, const char **out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return false;
    *out = json_string_value(v);
    return true;
}

/* A number, or one of the strings "NaN", "Infinity", "-Infinity". */
static bool value_of(json_t *v, double *out) {
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "NaN") == 0) *out = NAN;
        else if (strcmp(s, "Infinity") == 0) *out = INFINITY;
        else if (strcmp(s, "-Infinity") == 0) *out = -INFINITY;
        else return false;
        return true;
    }
    return false;
}

/* A statistic: a number, or null (no finite value in the row). */
static bool get_stat(json_t *obj, const char *key, double *out) {
    json_t *v = json_object_get(obj, key);
    if (json_is_null(v)) {
        *out = NAN;
        return true;
    }
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return true;
}

static int parse_header(json_t *obj, trace_set *set, char *err, size_t err_size) {
    const char *s;
    int64_t v;
    if (get_string(obj, "model", &s)) snprintf(set->model, sizeof set->model, "%s", s);
    if (get_string(obj, "backend", &s)) snprintf(set->backend, sizeof set->backend, "%s", s);
    if (get_string(obj, "precision", &s)) snprintf(set->precision, sizeof set->precision, "%s", s);
    if (get_string(obj, "build", &s)) snprintf(set->build, sizeof set->build, "%s", s);
    if (!get_int(obj, "n_layers", &v) || v <= 0 || v > 100000) {
        format_error(err, err_size, "header: missing or bad \"n_layers\"");
        return -1;
    }
    set->n_layers = (int)v;
    json_t *config = json_object_get(obj, "config");
    if (json_is_object(config)) {
        if (get_int(config, "sample", &v) && v >= 0) set->sample = v;
        if (get_string(config, "prompt_id", &s)) snprintf(set->prompt_id, sizeof set->prompt_id, "%s", s);
    }
    return 0;
}

/* Fills rec from obj; values/top-k are malloc'ed into rec (caller frees). */
static int parse_record(json_t *obj, const trace_set *set, trace_record *rec, char *err,
                        size_t err_size) {
    memset(rec, 0, sizeof *rec);
    const char *s;
    int64_t v;
    if (!get_string(obj, "phase", &s) || strlen(s) >= sizeof rec->phase || !trace_phase_name_valid(s) ||
        strcmp(s, "all") == 0 || strcmp(s, "decode") == 0) {
        format_error(err, err_size, "missing or bad \"phase\" (prefill, prefill_last or decode<N>)");
        return -1;
    }
    strcpy(rec->phase, s);
    if (!get_string(obj, "point", &s) || (rec->point = trace_point_from_name(s)) < 0) {
        format_error(err, err_size, "missing or unknown \"point\"");
        return -1;
    }
    if (!get_string(obj, "prompt_id", &s) || !get_string(obj, "backend", &s)) {
        format_error(err, err_size, "missing \"prompt_id\" or \"backend\"");
        return -1;
    }
    static const char *const ints[] = {"layer", "step", "pos_id", "seq_len", "tokens_total",
                                       "token_index", "token_id", "n", "nan", "inf"};
    int64_t iv[10];
    for (int i = 0; i < 10; i++) {
        if (!get_int(obj, ints[i], &iv[i])) {
            format_error(err, err_size, "missing or non-integer \"%s\"", ints[i]);
            return -1;
        }
    }
    v = iv[0];
    bool final = rec->point == TP_FINAL_NORM || rec->point == TP_LM_HEAD_IN || rec->point == TP_LOGITS;
    if (v < 0 || v > 100000 || (set->n_layers > 0 && (final ? v != set->n_layers : v >= set->n_layers))) {
        format_error(err, err_size, "\"layer\" %" PRId64 " out of range for point %s (n_layers %d)", v,
                trace_point_name(rec->point), set->n_layers);
        return -1;
    }
    rec->layer = (int)v;
    rec->step = iv[1];
    rec->pos_id = iv[2];
    rec->seq_len = iv[3];
    rec->tokens_total = iv[4];
    rec->token_index = iv[5];
    if (iv[6] < INT32_MIN || iv[6] > INT32_MAX || iv[2] < 0 || iv[7] < 0 || iv[8] < 0 || iv[9] < 0) {
        format_error(err, err_size, "negative or out-of-range \"pos_id\", \"token_id\", \"n\", \"nan\" or \"inf\"");
        return -1;
    }
    rec->token_id = (int32_t)iv[6];
    rec->n = iv[7];
    rec->nan = iv[8];
    rec->inf = iv[9];
    rec->is_f64 = false;
    if (get_string(obj, "dtype", &s)) {
        if (strcmp(s, "f64") == 0) rec->is_f64 = true;
        else if (strcmp(s, "f32") != 0) {
            format_error(err, err_size, "bad \"dtype\" '%s' (f32 or f64)", s);
            return -1;
        }
    }
    if (!get_string(obj, "hash", &s) || strlen(s) != 16 || strspn(s, "0123456789abcdefABCDEF") != 16) {
        format_error(err, err_size, "missing or bad \"hash\" (16 hex digits)");
        return -1;
    }
    rec->hash = strtoull(s, NULL, 16);
    if (!get_stat(obj, "min", &rec->min) || !get_stat(obj, "max", &rec->max) ||
        !get_stat(obj, "mean", &rec->mean) || !get_stat(obj, "rms", &rec->rms)) {
        format_error(err, err_size, "missing or bad \"min\"/\"max\"/\"mean\"/\"rms\" (number or null)");
        return -1;
    }
    json_t *sample = json_object_get(obj, "sample");
    if (!json_is_array(sample) || (int64_t)json_array_size(sample) > rec->n) {
        format_error(err, err_size, "missing \"sample\" array, or longer than \"n\"");
        return -1;
    }
    rec->n_values = (int64_t)json_array_size(sample);
    rec->values = malloc((size_t)(rec->n_values ? rec->n_values : 1) * sizeof *rec->values);
    if (!rec->values) {
        format_error(err, err_size, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < rec->n_values; i++) {
        if (!value_of(json_array_get(sample, (size_t)i), &rec->values[i])) {
            format_error(err, err_size, "\"sample\"[%" PRId64 "] is not a number", i);
            return -1;
        }
        /* float32 values are printed with 9 digits: round back to the exact float */
        if (!rec->is_f64) rec->values[i] = (double)(float)rec->values[i];
    }
    json_t *ids = json_object_get(obj, "top_k_ids");
    json_t *vals = json_object_get(obj, "top_k_values");
    if (ids || vals) {
        if (!json_is_array(ids) || !json_is_array(vals) || json_array_size(ids) != json_array_size(vals) ||
            json_array_size(ids) > TRACE_TOPK_MAX) {
            format_error(err, err_size, "\"top_k_ids\" and \"top_k_values\" must be arrays of equal length <= %d",
                    TRACE_TOPK_MAX);
            return -1;
        }
        rec->n_top = (int)json_array_size(ids);
        rec->top_ids = malloc((size_t)(rec->n_top ? rec->n_top : 1) * sizeof *rec->top_ids);
        rec->top_values = malloc((size_t)(rec->n_top ? rec->n_top : 1) * sizeof *rec->top_values);
        if (!rec->top_ids || !rec->top_values) {
            format_error(err, err_size, "out of memory");
            return -1;
        }
        for (int i = 0; i < rec->n_top; i++) {
            json_t *id = json_array_get(ids, (size_t)i);
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= rec->n ||
                !value_of(json_array_get(vals, (size_t)i), &rec->top_values[i])) {
                format_error(err, err_size, "bad top-k entry %d", i);
                return -1;
            }
            rec->top_ids[i] = (int32_t)json_integer_value(id);
            if (!rec->is_f64) rec->top_values[i] = (double)(float)rec->top_values[i];
        }
    }
    return 0;
}

static void free_record_fields(trace_record *rec) {
    free(rec->values);
    free(rec->top_ids);
    free(rec->top_values);
}

int trace_set_load_jsonl(const char *path, trace_set *set, char *err, size_t err_size) {
    trace_set_init(set);
    FILE *in = fopen(path, "r");
    if (!in) {
        format_error(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long line_no = 0;
    bool have_header = false;
    int status = 0;
    char why[512];
    while ((len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        size_t n = (size_t)len;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, n, 0, &jerr);
        if (!obj) {
            format_error(err, err_size, "%s:%ld: malformed JSON: %s (column %d)", path, line_no, jerr.text,
                    jerr.column);
            status = -1;
            break;
        }
        const char *event = NULL;
        if (!json_is_object(obj) || !get_string(obj, "event", &event)) {
            format_error(err, err_size, "%s:%ld: not a StageTrace object (no \"event\" string)", path, line_no);
            json_decref(obj);
            status = -1;
            break;
        }
        if (strcmp(event, "stage_trace_header") == 0) {
            if (have_header) {
                format_error(err, err_size,
                        "%s:%ld: a second header line (concatenated traces? diff one run per file)",
                        path, line_no);
                status = -1;
            } else if (set->count > 0) {
                format_error(err, err_size, "%s:%ld: the header must be the first line", path, line_no);
                status = -1;
            } else if (parse_header(obj, set, why, sizeof why) != 0) {
                format_error(err, err_size, "%s:%ld: %s", path, line_no, why);
                status = -1;
            }
            have_header = true;
        } else if (strcmp(event, "stage_trace") == 0) {
            trace_record rec;
            if (!have_header) {
                format_error(err, err_size, "%s:%ld: record before the header line (event stage_trace_header)",
                        path, line_no);
                status = -1;
            } else if (parse_record(obj, set, &rec, why, sizeof why) != 0) {
                format_error(err, err_size, "%s:%ld: %s", path, line_no, why);
                free_record_fields(&rec);
                status = -1;
            } else {
                if (!set->backend[0]) {
                    const char *b;
                    if (get_string(obj, "backend", &b)) snprintf(set->backend, sizeof set->backend, "%s", b);
                }
                if (trace_set_add(set, &rec) != 0) {
                    format_error(err, err_size, "%s:%ld: out of memory", path, line_no);
                    status = -1;
                }
                free_record_fields(&rec);
            }
        } else {
            format_error(err, err_size, "%s:%ld: unknown event '%s'", path, line_no, event);
            status = -1;
        }
        json_decref(obj);
        if (status != 0) break;
    }
    if (status == 0 && ferror(in)) {
        format_error(err, err_size, "%s: read error: %s", path, strerror(errno));
        status = -1;
    }
    if (status == 0 && !have_header) {
        format_error(err, err_size, "%s: empty trace (no header line)", path);
        status = -1;
    }
    free(line);
    fclose(in);
    if (status != 0) trace_set_free(set);
    return status;
}

/* ------------------------------------------------------------------ */
/* Pairing                                                              */
/* ------------------------------------------------------------------ */

static int cmp_key(const trace_record *x, const trace_record *y) {
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    if (x->point != y->point) return x->point < y->point ? -1 : 1;
    if (x->pos_id != y->pos_id) return x->pos_id < y->pos_id ? -1 : 1;
    if (x->token_id != y->token_id) return x->token_id < y->token_id ? -1 : 1;
    return 0;
}

static int cmp_ptr(const void *p, const void *q) {
    return cmp_key(*(const trace_record *const *)p, *(const trace_record *const *)q);
}

static const trace_record **sorted_index(const trace_set *set) {
    const trace_record **index = malloc((set->count ? set->count : 1) * sizeof *index);
    if (!index) return NULL;
    for (size_t i = 0; i < set->count; i++) index[i] = &set->records[i];
    qsort(index, set->count, sizeof *index, cmp_ptr);
    return index;
}

static bool same_row(const trace_record *x, const trace_record *y) {
    return x->layer == y->layer && x->point == y->point && x->pos_id == y->pos_id;
}

/* Row comparison over the compared values. */
typedef struct {
    int64_t count;
    double max_abs, sum_abs, sum_sq_diff, sum_sq_b;
    bool values_equal;   /* bitwise */
    bool out_of_tol;     /* an element outside atol + rtol*|b| */
} row_cmp;

static void compare_values(const trace_record *a, const trace_record *b, const trace_diff_options *o,
                           row_cmp *c) {
    memset(c, 0, sizeof *c);
    c->values_equal = true;
    c->count = a->n_values < b->n_values ? a->n_values : b->n_values;
    bool elementwise = o->atol >= 0 || o->rtol >= 0;
    double atol = o->atol > 0 ? o->atol : 0, rtol = o->rtol > 0 ? o->rtol : 0;
    for (int64_t i = 0; i < c->count; i++) {
        double x = a->values[i], y = b->values[i];
        double d;
        if (isnan(x) || isnan(y)) d = (isnan(x) && isnan(y)) ? 0 : INFINITY;
        else if (isinf(x) || isinf(y)) d = x == y ? 0 : INFINITY;
        else d = fabs(x - y);
        if (!(x == y) && !(isnan(x) && isnan(y))) c->values_equal = false;
        if (d > c->max_abs) c->max_abs = d;
        c->sum_abs += d;
        c->sum_sq_diff += d * d;
        if (isfinite(y)) c->sum_sq_b += y * y;
        if (elementwise && d > atol + rtol * fabs(y)) c->out_of_tol = true;
    }
}

static double rel_of(double sum_sq_diff, double sum_sq_b) {
    if (sum_sq_diff == 0) return 0;
    if (sum_sq_b == 0) return INFINITY;
    return sqrt(sum_sq_diff) / sqrt(sum_sq_b);
}

/* Top-1 id of a logits record: top_k_ids[0], else the argmax of a whole row; -1 if unknown. */
static int32_t top1_of(const trace_record *r) {
    if (r->n_top > 0) return r->top_ids[0];
    if (r->n_values != r->n || r->n == 0) return -1;
    int32_t best = 0;
    for (int64_t i = 1; i < r->n; i++)
        if (r->values[i] > r->values[best]) best = (int32_t)i;
    return best;
}

static void describe(const trace_record *r, char *out, size_t cap) {
    snprintf(out, cap, "layer %d %s pos_id %" PRId64 " token_id %" PRId32 " (%s)", r->layer,
             trace_point_name(r->point), r->pos_id, r->token_id, r->phase);
}

/* Finds duplicate keys in a sorted index. */
static void check_duplicates(const trace_record **idx, size_t n, const char *which, trace_diff_result *r) {
    for (size_t i = 1; i < n; i++) {
        if (cmp_key(idx[i - 1], idx[i]) == 0) {
            if (r->duplicates++ < 3) {
                char d[160];
                describe(idx[i], d, sizeof d);
                add_reason(r, "%s holds %s twice (phases %s and %s): a trace must hold each "
                              "(layer, point, pos_id, token_id) once; trace one run per file",
                           which, d, idx[i - 1]->phase, idx[i]->phase);
            }
        }
    }
}

/* Summarizes the positions of a set for the "nothing pairs" explanation. */
static void positions_summary(const trace_set *s, char *out, size_t cap) {
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    char phases[128] = "";
    for (size_t i = 0; i < s->count; i++) {
        const trace_record *r = &s->records[i];
        if (r->pos_id < lo) lo = r->pos_id;
        if (r->pos_id > hi) hi = r->pos_id;
        if (!strstr(phases, r->phase) && strlen(phases) + strlen(r->phase) + 2 < sizeof phases) {
            if (phases[0]) strcat(phases, ",");
            strcat(phases, r->phase);
        }
    }
    if (s->count == 0) snprintf(out, cap, "no records");
    else if (lo == hi) snprintf(out, cap, "pos_id %" PRId64 " (phase %s)", lo, phases);
    else snprintf(out, cap, "pos_id %" PRId64 "-%" PRId64 " (phases %s)", lo, hi, phases);
}

static trace_diff_cell *cell_for(trace_diff_result *r, int layer, int point) {
    if (r->n_cells > 0) {
        trace_diff_cell *last = &r->cells[r->n_cells - 1];
        if (last->layer == layer && last->point == point) return last;
    }
    trace_diff_cell *c = &r->cells[r->n_cells++];
    memset(c, 0, sizeof *c);
    c->layer = layer;
    c->point = point;
    c->bad_pos_id = -1;
    return c;
}

int trace_diff(const trace_set *a, const trace_set *b, const trace_diff_options *options,
               trace_diff_result *r) {
    memset(r, 0, sizeof *r);
    r->first_cell = -1;
    r->min_compared = -1;
    trace_diff_options_init(&r->options);
    if (options) r->options = *options;
    const trace_diff_options *o = &r->options;
    bool exact = trace_diff_options_exact(o);
    const trace_record **ia = sorted_index(a), **ib = sorted_index(b);
    /* cell accumulators: at most one cell per paired row */
    size_t max_cells = (a->count < b->count ? a->count : b->count) + 1;
    r->cells = malloc(max_cells * sizeof *r->cells);
    double *cell_sq_diff = calloc(max_cells, sizeof *cell_sq_diff);
    double *cell_sq_b = calloc(max_cells, sizeof *cell_sq_b);
    double *cell_sum_abs = calloc(max_cells, sizeof *cell_sum_abs);
    if (!ia || !ib || !r->cells || !cell_sq_diff || !cell_sq_b || !cell_sum_abs) {
        free(ia), free(ib), free(cell_sq_diff), free(cell_sq_b), free(cell_sum_abs);
        free(r->cells);
        r->cells = NULL;
        r->status = TRACE_DIFF_UNUSABLE;
        snprintf(r->reason, sizeof r->reason, "out of memory");
        return -1;
    }
    check_duplicates(ia, a->count, "A", r);
    check_duplicates(ib, b->count, "B", r);
    size_t i = 0, j = 0;
    size_t length_mismatch = 0;
    while (i < a->count || j < b->count) {
        const trace_record *x = i < a->count ? ia[i] : NULL;
        const trace_record *y = j < b->count ? ib[j] : NULL;
        int c = !x ? 1 : !y ? -1 : cmp_key(x, y);
        if (c != 0) {
            char d[160];
            if (x && y && same_row(x, y)) {
                if (r->mismatched++ < 3) {
                    describe(x, d, sizeof d);
                    add_reason(r, "input mismatch at layer %d %s pos_id %" PRId64 ": A has token_id %" PRId32
                                  ", B has token_id %" PRId32 " (the runs saw different tokens; "
                                  "they are not comparable)",
                               x->layer, trace_point_name(x->point), x->pos_id, x->token_id, y->token_id);
                }
                i++, j++;
            } else if (c < 0) {
                if (r->unpaired_a++ < 3) {
                    describe(x, d, sizeof d);
                    add_reason(r, "unpaired: A has %s, B has no record with that key", d);
                }
                i++;
            } else {
                if (r->unpaired_b++ < 3) {
                    describe(y, d, sizeof d);
                    add_reason(r, "unpaired: B has %s, A has no record with that key", d);
                }
                j++;
            }
            continue;
        }
        i++, j++;
        if (x->n != y->n) {
            if (length_mismatch++ < 3) {
                char d[160];
                describe(x, d, sizeof d);
                add_reason(r, "row length differs at %s: A has %" PRId64 " values, B %" PRId64, d, x->n, y->n);
            }
            continue;
        }
        r->paired++;
        trace_diff_cell *cell = cell_for(r, x->layer, x->point);
        size_t ci = (size_t)(cell - r->cells);
        row_cmp rc;
        compare_values(x, y, o, &rc);
        if (rc.count < x->n) r->samples_only = true;
        if (r->min_compared < 0 || rc.count < r->min_compared) r->min_compared = rc.count;
        bool hash_eq = x->hash == y->hash;
        double row_rel = rel_of(rc.sum_sq_diff, rc.sum_sq_b);
        bool bad;
        if (exact) bad = !hash_eq || !rc.values_equal;
        else {
            double limit = x->point >= 0 && x->point < TP_COUNT && o->rel_point[x->point] >= 0 ? o->rel_point[x->point]
                                                                                              : o->rel;
            bad = rc.out_of_tol || (limit >= 0 && row_rel > limit);
        }
        cell->rows++;
        cell->values += rc.count;
        if (rc.max_abs > cell->max_abs) cell->max_abs = rc.max_abs;
        if (row_rel > cell->max_row_rel) cell->max_row_rel = row_rel;
        cell_sq_diff[ci] += rc.sum_sq_diff;
        cell_sq_b[ci] += rc.sum_sq_b;
        cell_sum_abs[ci] += rc.sum_abs;
        if (hash_eq) cell->hash_equal++;
        if (x->point == TP_LOGITS) {
            int32_t ta = top1_of(x), tb = top1_of(y);
            if (ta >= 0 && tb >= 0) {
                cell->top1_rows++;
                if (ta == tb) cell->top1_agree++;
            }
        }
        if (bad) {
            if (cell->diverged_rows++ == 0) { /* rows arrive in pos_id order within a cell */
                cell->bad_pos_id = x->pos_id;
                cell->bad_token_id = x->token_id;
                snprintf(cell->bad_phase_a, sizeof cell->bad_phase_a, "%s", x->phase);
                snprintf(cell->bad_phase_b, sizeof cell->bad_phase_b, "%s", y->phase);
                cell->bad_max_abs = rc.max_abs;
                cell->bad_rel = row_rel;
                cell->bad_hash_only = rc.values_equal && !hash_eq;
            }
            if (r->first_cell < 0) r->first_cell = (int)ci;
        }
    }
    for (size_t k = 0; k < r->n_cells; k++) {
        trace_diff_cell *cell = &r->cells[k];
        cell->mean_abs = cell->values ? cell_sum_abs[k] / (double)cell->values : 0;
        cell->rel = rel_of(cell_sq_diff[k], cell_sq_b[k]);
    }
    if (r->paired == 0 && r->mismatched == 0 && r->duplicates == 0) {
        char pa[200], pb[200];
        positions_summary(a, pa, sizeof pa);
        positions_summary(b, pb, sizeof pb);
        char rest[sizeof r->reason];
        snprintf(rest, sizeof rest, "%s", r->reason);
        snprintf(r->reason, sizeof r->reason,
                 "no record pairs: records compare only when layer, point, pos_id and token_id are all "
                 "equal; A has %s, B has %s. Rows at different positions are different tokens in "
                 "different contexts (e.g. prefill_last at pos N-1 vs decode0 at pos N): compare the "
                 "same position, e.g. with 'greta audit parity'%s%.1000s",
                 pa, pb, rest[0] ? "\n" : "", rest);
    }
    if (r->unpaired_a > 3 || r->unpaired_b > 3 || r->mismatched > 3)
        add_reason(r, "in all: %zu unpaired in A, %zu unpaired in B, %zu input mismatches", r->unpaired_a,
                   r->unpaired_b, r->mismatched);
    if (r->paired == 0 || r->unpaired_a || r->unpaired_b || r->mismatched || r->duplicates || length_mismatch)
        r->status = TRACE_DIFF_UNUSABLE;
    else if (r->first_cell >= 0)
        r->status = TRACE_DIFF_DIVERGED;
    else
        r->status = TRACE_DIFF_PASS;
    if (r->status == TRACE_DIFF_UNUSABLE && r->paired == 0 && !r->reason[0])
        snprintf(r->reason, sizeof r->reason, "no record pairs");
    free(ia), free(ib), free(cell_sq_diff), free(cell_sq_b), free(cell_sum_abs);
    return 0;
}

void trace_diff_result_free(trace_diff_result *result) {
    if (!result) return;
    free(result->cells);
    result->cells = NULL;
    result->n_cells = 0;
}

/* ------------------------------------------------------------------ */
/* Reports                                                              */
/* ------------------------------------------------------------------ */

static void tolerance_text(const trace_diff_options *o, char *out, size_t cap) {
    if (trace_diff_options_exact(o)) {
        snprintf(out, cap, "exact (values and hashes bitwise equal)");
        return;
    }
    out[0] = '\0';
    size_t used = 0;
    if (o->atol >= 0 || o->rtol >= 0)
        used += (size_t)snprintf(out + used, cap - used, "|a-b| <= %g + %g*|b| per value",
                                 o->atol > 0 ? o->atol : 0, o->rtol > 0 ? o->rtol : 0);
    if (o->rel >= 0 && used < cap)
        used += (size_t)snprintf(out + used, cap - used, "%s||a-b||/||b|| <= %g per row", used ? "; " : "", o->rel);
    for (int k = 0; k < TP_COUNT && used < cap; k++)
        if (o->rel_point[k] >= 0)
            used += (size_t)snprintf(out + used, cap - used, "%s%s %g", used ? (k ? ", " : "; ") : "per-row rel: ",
                                     trace_point_name((trace_point)k), o->rel_point[k]);
}

void trace_diff_summary(const trace_diff_result *r, char *out, size_t cap) {
    if (r->status == TRACE_DIFF_UNUSABLE) {
        const char *nl = strchr(r->reason, '\n');
        int len = nl ? (int)(nl - r->reason) : (int)strlen(r->reason);
        snprintf(out, cap, "unusable: %.*s", len, r->reason);
        return;
    }
    if (r->first_cell < 0) {
        snprintf(out, cap, "no divergence in %zu paired rows", r->paired);
        return;
    }
    const trace_diff_cell *c = &r->cells[r->first_cell];
    if (c->bad_hash_only)
        snprintf(out, cap,
                 "first divergence: layer %d, point %s, pos_id %" PRId64 ", token_id %" PRId32
                 " (A %s, B %s): sampled values equal but the whole-row hashes differ",
                 c->layer, trace_point_name(c->point), c->bad_pos_id, c->bad_token_id, c->bad_phase_a,
                 c->bad_phase_b);
    else
        snprintf(out, cap,
                 "first divergence: layer %d, point %s, pos_id %" PRId64 ", token_id %" PRId32
                 " (A %s, B %s): max_abs %.3g, rel %.3g",
                 c->layer, trace_point_name(c->point), c->bad_pos_id, c->bad_token_id, c->bad_phase_a,
                 c->bad_phase_b, c->bad_max_abs, c->bad_rel);
}

static const char *status_word(trace_diff_status s) {
    return s == TRACE_DIFF_PASS ? "PASS" : s == TRACE_DIFF_DIVERGED ? "DIVERGED" : "UNUSABLE";
}

int trace_diff_print(FILE *out, const trace_diff_result *r, const trace_set *a, const trace_set *b,
                     const char *name_a, const char *name_b) {
    char tol[256], line[1024];
    tolerance_text(&r->options, tol, sizeof tol);
    fprintf(out, "A: %s (backend %s, %s, %zu records)\n", name_a, a->backend[0] ? a->backend : "?",
            a->precision[0] ? a->precision : "?", a->count);
    fprintf(out, "B: %s (backend %s, %s, %zu records) [reference]\n", name_b,
            b->backend[0] ? b->backend : "?", b->precision[0] ? b->precision : "?", b->count);
    fprintf(out, "paired %zu rows by (layer, point, pos_id, token_id); tolerance: %s\n", r->paired, tol);
    if (r->samples_only)
        fprintf(out, "note: only sampled values compared (as few as %" PRId64
                     " per row); the hash column covers whole rows\n",
                r->min_compared);
    else if (r->paired)
        fprintf(out, "whole rows compared\n");
    if (r->n_cells) {
        fprintf(out, "\n%-5s %-13s %5s %10s %10s %10s %10s %9s %9s  %s\n", "layer", "point", "rows", "max_abs",
                "mean_abs", "rel", "max_rowrel", "hash_eq", "top1", "status");
        for (size_t k = 0; k < r->n_cells; k++) {
            const trace_diff_cell *c = &r->cells[k];
            char hash[32], top1[32];
            snprintf(hash, sizeof hash, "%zu/%zu", c->hash_equal, c->rows);
            if (c->top1_rows) snprintf(top1, sizeof top1, "%zu/%zu", c->top1_agree, c->top1_rows);
            else snprintf(top1, sizeof top1, "-");
            fprintf(out, "%-5d %-13s %5zu %10.3g %10.3g %10.3g %10.3g %9s %9s  %s\n", c->layer,
                    trace_point_name(c->point), c->rows, c->max_abs, c->mean_abs, c->rel, c->max_row_rel,
                    hash, top1, c->diverged_rows ? "DIVERGED" : "ok");
        }
        fputc('\n', out);
    }
    if (r->reason[0]) fprintf(out, "%s\n", r->reason);
    trace_diff_summary(r, line, sizeof line);
    if (r->status != TRACE_DIFF_UNUSABLE) fprintf(out, "%s\n", line);
    fprintf(out, "verdict: %s\n", status_word(r->status));
    return ferror(out) ? -1 : 0;
}

/* JSON numbers: non-finite values become null. */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int trace_diff_write_json(FILE *out, const trace_diff_result *r, const char *name_a, const char *name_b) {
    json_t *root = json_object();
    char text[1024];
    json_object_set_new(root, "a", json_string(name_a));
    json_object_set_new(root, "b", json_string(name_b));
    json_object_set_new(root, "verdict", json_string(r->status == TRACE_DIFF_PASS       ? "pass"
                                                     : r->status == TRACE_DIFF_DIVERGED ? "diverged"
                                                                                        : "unusable"));
    json_object_set_new(root, "exit_code", json_integer(r->status));
    tolerance_text(&r->options, text, sizeof text);
    json_object_set_new(root, "tolerance", json_string(text));
    json_object_set_new(root, "paired", json_integer((json_int_t)r->paired));
    json_object_set_new(root, "unpaired_a", json_integer((json_int_t)r->unpaired_a));
    json_object_set_new(root, "unpaired_b", json_integer((json_int_t)r->unpaired_b));
    json_object_set_new(root, "mismatched", json_integer((json_int_t)r->mismatched));
    json_object_set_new(root, "duplicates", json_integer((json_int_t)r->duplicates));
    json_object_set_new(root, "samples_only", json_boolean(r->samples_only));
    json_object_set_new(root, "reason", json_string(r->reason));
    trace_diff_summary(r, text, sizeof text);
    json_object_set_new(root, "summary", json_string(text));
    if (r->first_cell >= 0) {
        const trace_diff_cell *c = &r->cells[r->first_cell];
        json_t *first = json_object();
        json_object_set_new(first, "layer", json_integer(c->layer));
        json_object_set_new(first, "point", json_string(trace_point_name(c->point)));
        json_object_set_new(first, "pos_id", json_integer(c->bad_pos_id));
        json_object_set_new(first, "token_id", json_integer(c->bad_token_id));
        json_object_set_new(first, "phase_a", json_string(c->bad_phase_a));
        json_object_set_new(first, "phase_b", json_string(c->bad_phase_b));
        json_object_set_new(first, "max_abs", num(c->bad_max_abs));
        json_object_set_new(first, "rel", num(c->bad_rel));
        json_object_set_new(root, "first_divergence", first);
    } else {
        json_object_set_new(root, "first_divergence", json_null());
    }
    json_t *cells = json_array();
    for (size_t k = 0; k < r->n_cells; k++) {
        const trace_diff_cell *c = &r->cells[k];
        json_t *o = json_object();
        json_object_set_new(o, "layer", json_integer(c->layer));
        json_object_set_new(o, "point", json_string(trace_point_name(c->point)));
        json_object_set_new(o, "rows", json_integer((json_int_t)c->rows));
        json_object_set_new(o, "values", json_integer(c->values));
        json_object_set_new(o, "max_abs", num(c->max_abs));
        json_object_set_new(o, "mean_abs", num(c->mean_abs));
        json_object_set_new(o, "rel", num(c->rel));
        json_object_set_new(o, "max_row_rel", num(c->max_row_rel));
        json_object_set_new(o, "hash_equal", json_integer((json_int_t)c->hash_equal));
        if (c->top1_rows) {
            json_object_set_new(o, "top1_rows", json_integer((json_int_t)c->top1_rows));
            json_object_set_new(o, "top1_agree", json_integer((json_int_t)c->top1_agree));
        }
        json_object_set_new(o, "diverged_rows", json_integer((json_int_t)c->diverged_rows));
        json_array_append_new(cells, o);
    }
    json_object_set_new(root, "cells", cells);
    int status = json_dumpf(root, out, JSON_INDENT(1) | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII);
    fputc('\n', out);
    json_decref(root);
    return status == 0 && !ferror(out) ? 0 : -1;
}

static void html_escape(FILE *out, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

/* Colour of a relative error: green at 0 through yellow to red at >= 1. */
static void rel_colour(double rel, bool diverged, char *out, size_t cap) {
    if (rel == 0) {
        snprintf(out, cap, "#2e7d32");
        return;
    }
    double t = isfinite(rel) ? (log10(rel) + 12.0) / 12.0 : 1.0; /* 1e-12 .. 1 */
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    int red = (int)(60 + 195 * t), green = (int)(200 - 150 * t);
    if (diverged && red < 200) red = 200;
    snprintf(out, cap, "#%02x%02x40", red, green);
}

int trace_diff_write_html(FILE *out, const trace_diff_result *r, const char *name_a, const char *name_b) {
    char text[1024];
    int max_layer = -1;
    bool point_used[TP_COUNT] = {false};
    for (size_t k = 0; k < r->n_cells; k++) {
        if (r->cells[k].layer > max_layer) max_layer = r->cells[k].layer;
        point_used[r->cells[k].point] = true;
    }
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>greta trace diff</title>\n"
          "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
          "td,th{border:1px solid #999;padding:3px 6px;font-size:12px;text-align:center}"
          "td.v{color:#fff;font-family:monospace}td.none{background:#eee}"
          "th.p{writing-mode:vertical-rl}.first{outline:3px solid #000}</style></head><body>\n",
          out);
    fputs("<h1>greta trace diff</h1>\n<p>A: ", out);
    html_escape(out, name_a);
    fputs("<br>B (reference): ", out);
    html_escape(out, name_b);
    tolerance_text(&r->options, text, sizeof text);
    fputs("<br>tolerance: ", out);
    html_escape(out, text);
    fprintf(out, "<br>paired rows: %zu%s</p>\n<p><b>", r->paired,
            r->samples_only ? " (only sampled values compared; hashes cover whole rows)" : " (whole rows)");
    trace_diff_summary(r, text, sizeof text);
    html_escape(out, text);
    fprintf(out, "</b> &mdash; verdict: %s</p>\n", status_word(r->status));
    if (r->reason[0]) {
        fputs("<pre>", out);
        html_escape(out, r->reason);
        fputs("</pre>\n", out);
    }
    fputs("<p>Cells: relative error ||a-b||/||b|| of each layer x point (log colour scale, green = 0, "
          "red = 1 or more); hover for details.</p>\n<table><tr><th>layer</th>",
          out);
    for (int p = 0; p < TP_COUNT; p++)
        if (point_used[p]) fprintf(out, "<th class=\"p\">%s</th>", trace_point_name((trace_point)p));
    fputs("</tr>\n", out);
    for (int layer = 0; layer <= max_layer; layer++) {
        bool any = false;
        for (size_t k = 0; k < r->n_cells; k++) any = any || r->cells[k].layer == layer;
        if (!any) continue;
        fprintf(out, "<tr><th>%d</th>", layer);
        for (int p = 0; p < TP_COUNT; p++) {
            if (!point_used[p]) continue;
            const trace_diff_cell *c = NULL;
            for (size_t k = 0; k < r->n_cells && !c; k++)
                if (r->cells[k].layer == layer && r->cells[k].point == p) c = &r->cells[k];
            if (!c) {
                fputs("<td class=\"none\"></td>", out);
                continue;
            }
            char colour[16];
            rel_colour(c->rel, c->diverged_rows > 0, colour, sizeof colour);
            bool first = r->first_cell >= 0 && c == &r->cells[r->first_cell];
            fprintf(out,
                    "<td class=\"v%s\" style=\"background:%s\" title=\"layer %d %s: rows %zu, max_abs %.3g, "
                    "mean_abs %.3g, rel %.3g, hash equal %zu/%zu%s\">%.1e</td>",
                    first ? " first" : "", colour, c->layer, trace_point_name(c->point), c->rows, c->max_abs,
                    c->mean_abs, c->rel, c->hash_equal, c->rows, c->diverged_rows ? ", DIVERGED" : "", c->rel);
        }
        fputs("</tr>\n", out);
    }
    fputs("</table>\n</body></html>\n", out);
    return ferror(out) ? -1 : 0;
}
