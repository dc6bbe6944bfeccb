/* audit.c: the paired experiments of `greta audit` (audit.h). */
#include "tools/audit.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"


static const char *const kind_names[] = {"parity", "backends", "determinism", "neutrality"};

int audit_kind_from_name(const char *name) {
    for (int k = 0; k < 4; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

const char *audit_kind_name(audit_kind kind) {
    return (int)kind >= 0 && (int)kind < 4 ? kind_names[kind] : "?";
}

void audit_options_init(audit_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = GRETA_BACKEND_CPU;
    o->backend_a = GRETA_BACKEND_CPU;
    o->backend_b = GRETA_BACKEND_REF;
    o->n_threads = 2;
    o->n_threads_alt = 1;
    o->n_decode = 4;
    trace_diff_options_init(&o->tolerance);
    strcpy(o->layers, "all");
    strcpy(o->points, "all");
}


/* ------------------------------------------------------------------ */
/* One session                                                          */
/* ------------------------------------------------------------------ */

static int32_t argmax(const float *v, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

const char *audit_precision_label(greta_backend backend, greta_precision precision) {
    if (precision == GRETA_PRECISION_DEFAULT) precision = greta_backend_default_precision(backend);
    if ((backend == GRETA_BACKEND_CPU || backend == GRETA_BACKEND_CUDA) && precision == GRETA_PRECISION_Q8) return "q8";
    greta_backend_info info;
    greta_backend_get_info(backend, &info);
    return info.precision;
}

double audit_q8_bound(trace_point point) {
    switch (point) {
    case TP_Q: case TP_K: case TP_Q_ROPE: case TP_K_ROPE: return 0.1;        /* measured 0.054 */
    case TP_X_IN: case TP_ATTN_NORM: case TP_X_AFTER_ATTN: case TP_FFN_NORM:  /* measured 0.096 */
    case TP_FFN_GATE: case TP_FFN_UP: return 0.15;
    case TP_V: return 0.2;                                                    /* measured 0.12 */
    case TP_FINAL_NORM: case TP_LM_HEAD_IN: return 0.25;                      /* measured 0.152 */
    case TP_ATTN_OUT: case TP_WO_OUT: case TP_FFN_ACT: case TP_X_AFTER_MLP: return 0.3; /* 0.194 */
    case TP_MLP_OUT: case TP_LOGITS: return 0.4;                              /* measured 0.286 */
    case TP_COUNT: break;
    }
    return 0.4;
}

int audit_run_session(greta_model *m, const int32_t *ids, size_t n_ids, const audit_session_spec *spec,
                      float **logits, double **logits64, int32_t *decoded, char *err, size_t err_size) {
    if (logits) *logits = NULL;
    if (logits64) *logits64 = NULL;
    if (n_ids == 0) {
        format_error(err, err_size, "empty prompt");
        return -1;
    }
    greta_model_info info;
    greta_model_get_info(m, &info);
    size_t n_rows = n_ids + (size_t)spec->n_decode;
    size_t n_vocab = (size_t)info.vocab_size;
    greta_session_params params = greta_session_default_params();
    params.n_ctx = (int32_t)(n_rows + 1);
    params.n_threads = spec->n_threads > 0 ? spec->n_threads : 1;
    params.backend = spec->backend;
    if (spec->backend == GRETA_BACKEND_CPU || spec->backend == GRETA_BACKEND_CUDA) params.precision = spec->precision;
    if (spec->backend == GRETA_BACKEND_CUDA) params.kv_type = spec->kv_type;
    params.deterministic = spec->deterministic;
    params.logits_all = logits != NULL || logits64 != NULL;
    greta_session *s = NULL;
    if (greta_session_new(m, &params, &s, err, err_size) != GRETA_OK) return -1;
    greta_session_set_trace(s, spec->tracer);
    float *all32 = NULL;
    double *all64 = NULL;
    if (params.logits_all) {
        all32 = malloc(n_rows * n_vocab * sizeof *all32);
        all64 = malloc(n_rows * n_vocab * sizeof *all64);
        if (!all32 || !all64) {
            format_error(err, err_size, "out of memory keeping %zu rows of logits", n_rows);
            goto fail;
        }
    }
    size_t done = 0, chunk_index = 0;
    while (done < n_ids) {
        size_t size = spec->chunks ? (chunk_index < spec->n_chunks ? spec->chunks[chunk_index] : 0) : n_ids;
        chunk_index++;
        if (size == 0 || done + size > n_ids) {
            format_error(err, err_size, "chunk sizes do not add up to the prompt length %zu", n_ids);
            goto fail;
        }
        if (greta_eval(s, ids + done, size) != GRETA_OK) {
            format_error(err, err_size, "%s", greta_session_error(s));
            goto fail;
        }
        if (all32) {
            size_t got = 0, got64 = 0;
            const float *rows32 = greta_logits_all(s, &got);
            const double *rows64 = greta_logits_all_f64(s, &got64);
            if (!rows32 || !rows64 || got != size || got64 != size) {
                format_error(err, err_size, "the session kept %zu rows of logits, expected %zu", got, size);
                goto fail;
            }
            memcpy(all32 + done * n_vocab, rows32, size * n_vocab * sizeof *all32);
            memcpy(all64 + done * n_vocab, rows64, size * n_vocab * sizeof *all64);
        }
        done += size;
    }
    for (int step = 0; step < spec->n_decode; step++) {
        const float *last = greta_logits(s);
        if (!last) {
            format_error(err, err_size, "%s", greta_session_error(s));
            goto fail;
        }
        int32_t token = argmax(last, (int32_t)n_vocab);
        if (decoded) decoded[step] = token;
        if (greta_eval(s, &token, 1) != GRETA_OK) {
            format_error(err, err_size, "%s", greta_session_error(s));
            goto fail;
        }
        if (all32) {
            memcpy(all32 + (n_ids + (size_t)step) * n_vocab, greta_logits(s), n_vocab * sizeof *all32);
            memcpy(all64 + (n_ids + (size_t)step) * n_vocab, greta_logits_f64(s), n_vocab * sizeof *all64);
        }
    }
    greta_session_free(s);
    if (logits) *logits = all32;
    else free(all32);
    if (logits64) *logits64 = all64;
    else free(all64);
    return 0;
fail:
    greta_session_free(s);
    free(all32);
    free(all64);
    return -1;
}

static int model_layers(greta_model *m) {
    greta_model_info info;
    greta_model_get_info(m, &info);
    return info.n_layer;
}

static size_t model_vocab(greta_model *m) {
    greta_model_info info;
    greta_model_get_info(m, &info);
    return (size_t)info.vocab_size;
}

int audit_prompt_ids(greta_model *m, const char *text, bool chat, const char *system, int32_t **ids,
                     size_t *n_ids, char *err, size_t err_size) {
    *ids = NULL;
    *n_ids = 0;
    greta_status st;
    if (chat) {
        greta_chat_message messages[2];
        size_t n = 0;
        if (system) messages[n++] = (greta_chat_message){"system", system};
        messages[n++] = (greta_chat_message){"user", text};
        char *rendered = NULL;
        char why[400] = "";
        st = greta_chat_apply(m, messages, n, true, NULL, &rendered, why, sizeof why);
        if (st != GRETA_OK) {
            format_error(err, err_size, "%s", why);
            return -1;
        }
        st = greta_tokenize(m, rendered, strlen(rendered), false, true, ids, n_ids, why, sizeof why);
        greta_free(rendered);
        if (st != GRETA_OK) {
            format_error(err, err_size, "tokenize: %s", why);
            return -1;
        }
    } else {
        char why[400] = "";
        st = greta_tokenize(m, text, strlen(text), true, false, ids, n_ids, why, sizeof why);
        if (st != GRETA_OK) {
            format_error(err, err_size, "tokenize: %s", why);
            return -1;
        }
    }
    if (*n_ids == 0) {
        format_error(err, err_size, "the prompt has no tokens");
        greta_free(*ids);
        *ids = NULL;
        return -1;
    }
    return 0;
}

/* An in-memory tracer of the points and layers of o: whole rows, every
 * phase. NULL (err set) on a bad --layers/--points list. */
static trace *open_memory_tracer(greta_model *m, const char *model_path, greta_backend backend,
                                 const audit_options *o, char *err, size_t err_size) {
    trace_config config;
    trace_config_init(&config);
    config.enabled = true;
    config.in_memory = true;
    config.sample = 0;
    if (trace_config_set(&config, "layers", o->layers, err, err_size) != 0 ||
        trace_config_set(&config, "points", o->points, err, err_size) != 0)
        return NULL;
    greta_backend_info backend_info;
    greta_backend_get_info(backend, &backend_info);
    trace_model_info info = {model_layers(m), backend_info.name, audit_precision_label(backend, o->precision),
                             model_path, NULL};
    trace *tracer = NULL;
    trace_open(&config, &info, &tracer, err, err_size);
    return tracer;
}

/* Runs a session with an in-memory tracer of every selected point (whole
 * rows, every phase) and moves the records into *set. */
static int collect(greta_model *m, const char *model_path, const int32_t *ids, size_t n_ids,
                   greta_backend backend, int n_threads, const size_t *chunks, size_t n_chunks,
                   const audit_options *o, trace_set *set, char *err, size_t err_size) {
    trace *tracer = open_memory_tracer(m, model_path, backend, o, err, err_size);
    if (!tracer) return -1;
    audit_session_spec spec = {backend, n_threads, chunks, n_chunks, 0, tracer, o->precision, o->kv_type, o->deterministic};
    int status = audit_run_session(m, ids, n_ids, &spec, NULL, NULL, NULL, err, err_size);
    trace_take_records(tracer, set);
    char close_err[256];
    if (trace_close(tracer, close_err, sizeof close_err) != GRETA_OK && status == 0) {
        format_error(err, err_size, "%s", close_err);
        status = -1;
    }
    if (status != 0) trace_set_free(set);
    return status;
}

/* ------------------------------------------------------------------ */
/* Comparisons                                                          */
/* ------------------------------------------------------------------ */

static void note_failure(audit_result *r, const char *experiment, const trace_diff_result *d) {
    if (!r->pass) return; /* keep the first failing experiment */
    r->pass = false;
    snprintf(r->failed_experiment, sizeof r->failed_experiment, "%s", experiment);
    if (d && d->first_cell >= 0) {
        const trace_diff_cell *c = &d->cells[d->first_cell];
        r->has_divergence = true;
        r->first_layer = c->layer;
        r->first_point = c->point;
        r->first_pos_id = c->bad_pos_id;
    }
    char line[1024];
    if (d) trace_diff_summary(d, line, sizeof line);
    else snprintf(line, sizeof line, "failed");
    snprintf(r->verdict, sizeof r->verdict, "FAIL: %s: %.900s", experiment, line);
}

/* Compares a (tested) with b (reference) and reports. Returns 0 if compared. */
static int compare(const char *experiment, const trace_set *a, const trace_set *b, const trace_diff_options *tol,
                   const audit_options *o, audit_result *r, trace_diff_result *keep) {
    trace_diff_result d;
    if (trace_diff(a, b, tol, &d) != 0) {
        trace_diff_result_free(&d);
        return -1;
    }
    r->experiments++;
    char line[1024];
    trace_diff_summary(&d, line, sizeof line);
    if (o->report) {
        fprintf(o->report, "%-44s %s  %s (%zu rows)\n", experiment,
                d.status == TRACE_DIFF_PASS ? "ok  " : "FAIL", line, d.paired);
        if (o->full_tables) trace_diff_print(o->report, &d, a, b, "A", "B");
    }
    if (d.status != TRACE_DIFF_PASS) note_failure(r, experiment, &d);
    if (keep) *keep = d;
    else trace_diff_result_free(&d);
    return 0;
}

static int audit_parity(greta_model *m, const char *path, const int32_t *ids, size_t n, const audit_options *o,
                        audit_result *r, char *err, size_t err_size) {
    if (n < 2) {
        format_error(err, err_size, "needs a prompt of at least 2 tokens (got %zu)", n);
        return -1;
    }
    trace_diff_options tol;
    trace_diff_options_init(&tol);
    if (o->tolerance_set) tol = o->tolerance;
    trace_set whole, split, single;
    size_t split_chunks[2] = {n - 1, 1};
    size_t *ones = malloc(n * sizeof *ones);
    if (!ones) {
        format_error(err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    int status = -1;
    if (collect(m, path, ids, n, o->backend, o->n_threads, NULL, 0, o, &whole, err, err_size) != 0) goto done_ones;
    if (collect(m, path, ids, n, o->backend, o->n_threads, split_chunks, 2, o, &split, err, err_size) != 0)
        goto done_whole;
    if (collect(m, path, ids, n, o->backend, o->n_threads, ones, n, o, &single, err, err_size) != 0)
        goto done_split;
    char name[128];
    snprintf(name, sizeof name, "parity: prefill %zu + decode 1 vs prefill %zu", n - 1, n);
    if (compare(name, &split, &whole, &tol, o, r, NULL) == 0) {
        snprintf(name, sizeof name, "parity: %zu single-token evals vs prefill %zu", n, n);
        if (compare(name, &single, &whole, &tol, o, r, NULL) == 0) status = 0;
    }
    if (status != 0) format_error(err, err_size, "out of memory comparing traces");
    trace_set_free(&single);
done_split:
    trace_set_free(&split);
done_whole:
    trace_set_free(&whole);
done_ones:
    free(ones);
    return status;
}

static int audit_determinism(greta_model *m, const char *path, const int32_t *ids, size_t n,
                             const audit_options *o, audit_result *r, char *err, size_t err_size) {
    trace_diff_options tol;
    trace_diff_options_init(&tol);
    if (o->tolerance_set) tol = o->tolerance;
    trace_set first, again, other;
    if (collect(m, path, ids, n, o->backend, o->n_threads, NULL, 0, o, &first, err, err_size) != 0) return -1;
    if (collect(m, path, ids, n, o->backend, o->n_threads, NULL, 0, o, &again, err, err_size) != 0) {
        trace_set_free(&first);
        return -1;
    }
    if (collect(m, path, ids, n, o->backend, o->n_threads_alt, NULL, 0, o, &other, err, err_size) != 0) {
        trace_set_free(&first);
        trace_set_free(&again);
        return -1;
    }
    char name[128];
    int status = -1;
    snprintf(name, sizeof name, "determinism: run vs rerun (%d thread%s)", o->n_threads, o->n_threads == 1 ? "" : "s");
    if (compare(name, &again, &first, &tol, o, r, NULL) == 0) {
        snprintf(name, sizeof name, "determinism: %d thread%s vs %d thread%s", o->n_threads_alt,
                 o->n_threads_alt == 1 ? "" : "s", o->n_threads, o->n_threads == 1 ? "" : "s");
        if (compare(name, &other, &first, &tol, o, r, NULL) == 0) status = 0;
    }
    if (status != 0) format_error(err, err_size, "out of memory comparing traces");
    trace_set_free(&first);
    trace_set_free(&again);
    trace_set_free(&other);
    return status;
}

static int audit_backends(greta_model *m, const char *path, const int32_t *ids, size_t n, const audit_options *o,
                          audit_result *r, char *err, size_t err_size) {
    /* the default tolerance is the documented bound of the arithmetic under
     * test: 1e-4 for float32 against float64; when a side is a cpu or cuda
     * session at q8, each point's bound (audit_q8_bound, docs/engine.md "Precision q8") */
    const char *label_a = audit_precision_label(o->backend_a, o->precision);
    const char *label_b = audit_precision_label(o->backend_b, o->precision);
    trace_diff_options tol;
    trace_diff_options_init(&tol);
    if (strcmp(label_a, "q8") == 0 || strcmp(label_b, "q8") == 0) {
        for (int k = 0; k < TP_COUNT; k++) tol.rel_point[k] = audit_q8_bound((trace_point)k);
    } else {
        tol.rel = 1e-4;
    }
    if (o->tolerance_set) tol = o->tolerance;
    trace_set a, b;
    if (collect(m, path, ids, n, o->backend_a, o->n_threads, NULL, 0, o, &a, err, err_size) != 0) return -1;
    if (collect(m, path, ids, n, o->backend_b, o->n_threads, NULL, 0, o, &b, err, err_size) != 0) {
        trace_set_free(&a);
        return -1;
    }
    char name[128];
    snprintf(name, sizeof name, "backends: %s (%s) vs %s (%s)", greta_backend_name(o->backend_a), label_a,
             greta_backend_name(o->backend_b), label_b);
    trace_diff_result d;
    int status = compare(name, &a, &b, &tol, o, r, &d);
    if (status == 0 && o->report) {
        /* error growth: the largest cell relative error of each layer, and
         * the largest row relative error (the metric the tolerance bounds) */
        fprintf(o->report, "error growth per layer (largest rel over its points; x_after_mlp rel, logits rel "
                           "after the last layer; largest row rel):\n");
        int layer = -1;
        double worst = 0, resid = NAN, worst_row = 0, all_row = -1;
        const char *worst_point = "", *resid_point = "x_after_mlp";
        const trace_diff_cell *all_row_cell = NULL;
        for (size_t k = 0; k <= d.n_cells; k++) {
            if (k == d.n_cells || d.cells[k].layer != layer) {
                if (layer >= 0)
                    fprintf(o->report, "  layer %3d  max rel %9.3g (%s)  %s rel %9.3g  row rel %9.3g\n", layer, worst,
                            worst_point, resid_point, resid, worst_row);
                if (k == d.n_cells) break;
                layer = d.cells[k].layer;
                worst = 0;
                worst_row = 0;
                resid = NAN;
                worst_point = "";
                resid_point = "x_after_mlp";
            }
            const trace_diff_cell *c = &d.cells[k];
            if (c->rel >= worst) {
                worst = c->rel;
                worst_point = trace_point_name(c->point);
            }
            if (c->max_row_rel > worst_row) worst_row = c->max_row_rel;
            if (c->max_row_rel > all_row) {
                all_row = c->max_row_rel;
                all_row_cell = c;
            }
            if (c->point == TP_X_AFTER_MLP || c->point == TP_LOGITS) {
                resid = c->rel;
                resid_point = trace_point_name(c->point);
            }
        }
        if (all_row_cell)
            fprintf(o->report, "largest row rel %.3g (layer %d, %s): the metric the tolerance bounds\n", all_row,
                    all_row_cell->layer, trace_point_name(all_row_cell->point));
    }
    if (status == 0) trace_diff_result_free(&d);
    else format_error(err, err_size, "out of memory comparing traces");
    trace_set_free(&a);
    trace_set_free(&b);
    return status;
}

static int audit_neutrality(greta_model *m, const char *path, const int32_t *ids, size_t n,
                            const audit_options *o, audit_result *r, char *err, size_t err_size) {
    trace *tracer = open_memory_tracer(m, path, o->backend, o, err, err_size);
    if (!tracer) return -1;
    size_t rows = n + (size_t)o->n_decode, n_vocab = model_vocab(m);
    float *on32 = NULL, *off32 = NULL;
    double *on64 = NULL, *off64 = NULL;
    int32_t *tok_on = calloc((size_t)o->n_decode + 1, sizeof *tok_on);
    int32_t *tok_off = calloc((size_t)o->n_decode + 1, sizeof *tok_off);
    audit_session_spec on = {o->backend, o->n_threads, NULL, 0, o->n_decode, tracer, o->precision, o->kv_type,
                             o->deterministic};
    audit_session_spec off = {o->backend, o->n_threads, NULL, 0, o->n_decode, NULL, o->precision, o->kv_type,
                              o->deterministic};
    int status = -1;
    if (!tok_on || !tok_off) {
        format_error(err, err_size, "out of memory");
    } else if (audit_run_session(m, ids, n, &on, &on32, &on64, tok_on, err, err_size) == 0 &&
               audit_run_session(m, ids, n, &off, &off32, &off64, tok_off, err, err_size) == 0) {
        status = 0;
        r->experiments++;
        size_t bad_row = rows;
        for (size_t row = 0; row < rows && bad_row == rows; row++) {
            if (memcmp(on32 + row * n_vocab, off32 + row * n_vocab, n_vocab * sizeof *on32) != 0 ||
                memcmp(on64 + row * n_vocab, off64 + row * n_vocab, n_vocab * sizeof *on64) != 0)
                bad_row = row;
        }
        size_t records = trace_records(tracer) ? trace_records(tracer)->count : 0;
        char name[128];
        snprintf(name, sizeof name, "neutrality: tracing on vs off (%s)", greta_backend_name(o->backend));
        if (bad_row == rows) {
            if (o->report)
                fprintf(o->report, "%-44s ok    logits of %zu rows (%zu prompt + %d decode) bitwise equal; %zu "
                                   "records traced\n",
                        name, rows, n, o->n_decode, records);
        } else {
            r->pass = false;
            snprintf(r->failed_experiment, sizeof r->failed_experiment, "%s", name);
            r->has_divergence = true;
            r->first_layer = model_layers(m);
            r->first_point = TP_LOGITS;
            r->first_pos_id = (int64_t)bad_row;
            snprintf(r->verdict, sizeof r->verdict,
                     "FAIL: %s: logits differ at pos_id %zu: tracing changed what it observes", name, bad_row);
            if (o->report) fprintf(o->report, "%-44s FAIL  logits differ at pos_id %zu\n", name, bad_row);
        }
    }
    trace_close(tracer, NULL, 0);
    free(on32), free(off32), free(on64), free(off64), free(tok_on), free(tok_off);
    return status;
}

int audit_run(audit_kind kind, greta_model *m, const char *model_path, const int32_t *ids, size_t n_ids,
              const audit_options *options, audit_result *result, char *err, size_t err_size) {
    memset(result, 0, sizeof *result);
    result->pass = true;
    result->first_layer = -1;
    result->first_point = -1;
    result->first_pos_id = -1;
    audit_options o;
    if (options) o = *options;
    else audit_options_init(&o);
    if (!m || !ids || n_ids == 0) {
        format_error(err, err_size, "audit: no model or empty prompt");
        return -1;
    }
    if (o.n_threads < 1 || o.n_threads_alt < 1 || o.n_decode < 0) {
        format_error(err, err_size, "audit: thread counts must be >= 1 and decode steps >= 0");
        return -1;
    }
    int status;
    switch (kind) {
    case AUDIT_PARITY: status = audit_parity(m, model_path, ids, n_ids, &o, result, err, err_size); break;
    case AUDIT_BACKENDS: status = audit_backends(m, model_path, ids, n_ids, &o, result, err, err_size); break;
    case AUDIT_DETERMINISM: status = audit_determinism(m, model_path, ids, n_ids, &o, result, err, err_size); break;
    case AUDIT_NEUTRALITY: status = audit_neutrality(m, model_path, ids, n_ids, &o, result, err, err_size); break;
    default: format_error(err, err_size, "audit: unknown kind"); return -1;
    }
    if (status != 0) return -1;
    if (result->pass)
        snprintf(result->verdict, sizeof result->verdict, "PASS: %s (%d comparison%s, no divergence)",
                 audit_kind_name(kind), result->experiments, result->experiments == 1 ? "" : "s");
    return 0;
}
