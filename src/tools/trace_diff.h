/* trace_diff.h: comparing two StageTraces (design.md section 3-4,
 * docs/trace.md "Diff rules").
 *
 * Records pair by (layer, point, pos_id, token_id), never by order or
 * token_index. A record without a partner, two records with the same layer,
 * point and pos_id but different token_id (the runs saw different inputs),
 * a key present twice in one trace, or rows of different lengths make the
 * comparison unusable (status 2), never a pass. Paired rows are compared
 * value by value (whole rows when both traces kept them whole, else the
 * common sampled prefix, said in the output) and by hash; the first
 * divergence is the first (layer, point) in forward order with a row
 * outside tolerance, and in it the row with the lowest pos_id. */
#ifndef GRETA_TRACE_DIFF_H
#define GRETA_TRACE_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/trace.h"

/* Tolerances. With none set (the default) the comparison is exact: every
 * compared value bitwise equal and every hash equal. */
typedef struct {
    double atol;     /* per element: |a-b| <= atol + rtol*|b| (negative = unset) */
    double rtol;
    double rel;      /* per row: ||a-b|| / ||b|| <= rel (negative = unset) */
    double rel_point[TP_COUNT]; /* per row of one point: replaces rel where >= 0 (negative = unset) */
} trace_diff_options;

void trace_diff_options_init(trace_diff_options *options); /* all unset: exact */
bool trace_diff_options_exact(const trace_diff_options *options);

/* The comparison of one (layer, point) over all its paired rows. */
typedef struct {
    int layer;
    int point;
    size_t rows;            /* paired rows */
    int64_t values;         /* compared values over all rows */
    double max_abs;         /* max |a-b| */
    double mean_abs;        /* mean |a-b| */
    double rel;             /* ||a-b|| / ||b|| over all compared values of the cell */
    double max_row_rel;     /* the largest per-row relative error */
    size_t hash_equal;      /* rows with equal hashes */
    size_t top1_rows;       /* logits rows where both top-1 ids are known */
    size_t top1_agree;
    size_t diverged_rows;   /* rows outside tolerance */
    /* the first (lowest pos_id) row outside tolerance */
    int64_t bad_pos_id;
    int32_t bad_token_id;
    char bad_phase_a[24], bad_phase_b[24];
    double bad_max_abs, bad_rel;
    bool bad_hash_only;     /* values equal, hashes differ (exact mode, samples) */
} trace_diff_cell;

typedef enum { TRACE_DIFF_PASS = 0, TRACE_DIFF_DIVERGED = 1, TRACE_DIFF_UNUSABLE = 2 } trace_diff_status;

typedef struct {
    trace_diff_status status;
    char reason[2048];        /* why unusable (several lines), or "" */
    trace_diff_cell *cells;   /* forward order: layer, then point */
    size_t n_cells;
    size_t paired;
    size_t unpaired_a, unpaired_b, mismatched, duplicates;
    bool samples_only;        /* some rows compared only by their sampled prefix */
    int64_t min_compared;     /* fewest values compared in a row */
    int first_cell;           /* index of the first diverging cell, -1 if none */
    trace_diff_options options;
} trace_diff_result;

/* Compares a with b (b is the reference: relative errors divide by ||b||).
 * Returns 0, or -1 on out of memory (result->reason says so). */
int trace_diff(const trace_set *a, const trace_set *b, const trace_diff_options *options,
               trace_diff_result *result);
void trace_diff_result_free(trace_diff_result *result);

/* Reads a JSONL StageTrace (untrusted input, parsed with jansson). Returns 0,
 * or -1 with "FILE:LINE: what is wrong" in err; *set is then empty. */
int trace_set_load_jsonl(const char *path, trace_set *set, char *err, size_t err_size);

/* Reports: the text table with the first divergence and verdict, a JSON
 * object, a self-contained HTML heatmap of layer x point relative error.
 * name_a/name_b label the two traces. Return 0 or -1 on write error. */
int trace_diff_print(FILE *out, const trace_diff_result *result, const trace_set *a,
                     const trace_set *b, const char *name_a, const char *name_b);
int trace_diff_write_json(FILE *out, const trace_diff_result *result, const char *name_a,
                          const char *name_b);
int trace_diff_write_html(FILE *out, const trace_diff_result *result, const char *name_a,
                          const char *name_b);

/* One line: "first divergence: layer 3, point q_rope, pos_id 5, ..." or
 * "no divergence" / the first line of the unusable reason. */
void trace_diff_summary(const trace_diff_result *result, char *out, size_t out_size);

#endif
