/* test_trace.c: StageTrace configuration, selection, the JSONL schema
 * (read back with jansson, hash and statistics recomputed here
 * independently) and the diff rules on hand-made record sets. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/audit.h"
#include "support/check.h"
#include "greta.h"
#include "tools/quantize_model.h"
#include "tools/synth.h"
#include "engine/trace.h"
#include "tools/trace_diff.h"

/* FNV-1a 64 written out independently: serialize each float to 4
 * little-endian bytes with shifts, then hash the byte string. */
static uint64_t fnv1a_bytes(const unsigned char *bytes, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= bytes[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t hash_floats(const float *v, size_t n) {
    unsigned char *bytes = malloc(4 * n + 1);
    for (size_t i = 0; i < n; i++) {
        union {
            float f;
            uint32_t u;
        } cvt = {.f = v[i]};
        bytes[4 * i] = (unsigned char)(cvt.u & 0xff);
        bytes[4 * i + 1] = (unsigned char)((cvt.u >> 8) & 0xff);
        bytes[4 * i + 2] = (unsigned char)((cvt.u >> 16) & 0xff);
        bytes[4 * i + 3] = (unsigned char)(cvt.u >> 24);
    }
    uint64_t h = fnv1a_bytes(bytes, 4 * n);
    free(bytes);
    return h;
}

static trace_row prefill_row(int64_t pos, int32_t token, int64_t index, int64_t seq_len, bool last) {
    trace_row row = {.is_prefill = true, .is_last = last, .decode_step = -1, .pos_id = pos,
                     .token_id = token, .token_index = index, .seq_len = seq_len,
                     .tokens_total = seq_len};
    return row;
}

static trace_row decode_row(int64_t step, int64_t pos, int32_t token) {
    trace_row row = {.is_prefill = false, .is_last = true, .decode_step = step, .pos_id = pos,
                     .token_id = token, .token_index = 0, .seq_len = 1, .tokens_total = pos + 1};
    return row;
}

static trace_model_info info2 = {2, "cpu", "f32", "model \"x\".gguf", "test build"};

static void test_config(void) {
    trace_config c;
    char err[512];
    trace_config_init(&c);
    CHECK(!c.enabled && c.sample == 16 && strcmp(c.layers, "all") == 0, "defaults: off, sample 16, all layers");
    CHECK(trace_config_set(&c, "points", "x_in,bogus", err, sizeof err) != 0 && strstr(err, "'bogus'"),
          "unknown point is an error naming it: %s", err);
    CHECK(trace_config_set(&c, "phases", "prefill_last,decodeX", err, sizeof err) != 0 &&
              strstr(err, "'decodeX'"),
          "unknown phase is an error naming it: %s", err);
    CHECK(trace_config_set(&c, "phases", "prefill,prefill_last,decode0,decode12,decode,all", err, sizeof err) == 0,
          "all phase forms accepted");
    CHECK(trace_config_set(&c, "layers", "0,x", err, sizeof err) != 0 && strstr(err, "'x'"),
          "bad layer is an error naming it: %s", err);
    CHECK(trace_config_set(&c, "layers", "0,,1", err, sizeof err) != 0, "empty layer item rejected");
    CHECK(trace_config_set(&c, "sample", "-1", err, sizeof err) != 0, "negative sample rejected");
    CHECK(trace_config_set(&c, "top_k", "0", err, sizeof err) != 0, "top_k 0 rejected");

    /* layer range checked against the model at open */
    trace_config_init(&c);
    c.enabled = true;
    c.in_memory = true;
    CHECK(trace_config_set(&c, "layers", "0,5", err, sizeof err) == 0, "layer 5 syntax ok before open");
    trace *t = NULL;
    greta_status st = trace_open(&c, &info2, &t, err, sizeof err);
    CHECK(st == GRETA_ERR_INVALID_ARGUMENT && t == NULL && strstr(err, "layer 5 out of range"),
          "out-of-range layer fails at open as an invalid argument: %s", err);

    /* an output that cannot be created is an i/o error */
    trace_config_init(&c);
    CHECK(trace_config_set(&c, "out", "/nonexistent-dir/t.jsonl", err, sizeof err) == 0, "out path set");
    st = trace_open(&c, &info2, &t, err, sizeof err);
    CHECK(st == GRETA_ERR_IO && t == NULL && strstr(err, "cannot create"), "unwritable output: i/o error: %s", err);

    /* disabled config: NULL and no message */
    trace_config_init(&c);
    st = trace_open(&c, &info2, &t, err, sizeof err);
    CHECK(st == GRETA_OK && t == NULL && err[0] == '\0', "disabled config opens no tracer and reports no error");

    /* env then flags: flags win */
    setenv("GRETA_TRACE_STAGE", "1", 1);
    setenv("GRETA_TRACE_STAGE_OUT", "/tmp/env.jsonl", 1);
    setenv("GRETA_TRACE_STAGE_LAYERS", "0", 1);
    setenv("GRETA_TRACE_STAGE_SAMPLE", "4", 1);
    setenv("GRETA_TRACE_PROMPT_ID", "p7", 1);
    trace_config_init(&c);
    CHECK(trace_config_from_env(&c, err, sizeof err) == 0 && c.enabled && c.sample == 4 &&
              strcmp(c.layers, "0") == 0 && strcmp(c.out_path, "/tmp/env.jsonl") == 0 &&
              strcmp(c.prompt_id, "p7") == 0,
          "environment read: %s", err);
    char *argv[] = {"run", "--trace", "/tmp/flag.jsonl", "--trace-layers=1", "--trace-sample", "0", "-n", "--trace-sample"};
    int argc = 8, i = 1, used = 0;
    while (i < argc) {
        int r = trace_parse_flag(&c, argc, argv, &i, err, sizeof err);
        if (r == 1) used++;
        else if (r == 0) i++;
        else break;
    }
    CHECK(used == 3 && strcmp(c.out_path, "/tmp/flag.jsonl") == 0 && strcmp(c.layers, "1") == 0 && c.sample == 0,
          "flags override the environment");
    CHECK(i == 7 && strstr(err, "--trace-sample: missing value"), "a flag without value is an error: %s", err);
    setenv("GRETA_TRACE_STAGE_POINTS", "x_in,nope", 1);
    trace_config_init(&c);
    CHECK(trace_config_from_env(&c, err, sizeof err) != 0 && strstr(err, "GRETA_TRACE_STAGE_POINTS") &&
              strstr(err, "'nope'"),
          "bad env value names the variable and the value: %s", err);
    unsetenv("GRETA_TRACE_STAGE_POINTS");
    unsetenv("GRETA_TRACE_STAGE_OUT");
    trace_config_init(&c);
    CHECK(trace_config_from_env(&c, err, sizeof err) != 0 && strstr(err, "GRETA_TRACE_STAGE_OUT"),
          "GRETA_TRACE_STAGE=1 without an output is an error: %s", err);
    unsetenv("GRETA_TRACE_STAGE");
    unsetenv("GRETA_TRACE_STAGE_LAYERS");
    unsetenv("GRETA_TRACE_STAGE_SAMPLE");
    unsetenv("GRETA_TRACE_PROMPT_ID");
}

static void test_selection(void) {
    trace_config c;
    char err[512];
    trace_config_init(&c);
    c.enabled = true;
    c.in_memory = true;
    trace_config_set(&c, "layers", "1", err, sizeof err);
    trace_config_set(&c, "points", "q_rope,logits", err, sizeof err);
    trace_config_set(&c, "phases", "prefill_last,decode1", err, sizeof err);
    trace *t = NULL;
    trace_open(&c, &info2, &t, err, sizeof err);
    CHECK(t != NULL, "open selective tracer: %s", err);
    trace_row p0 = prefill_row(0, 5, 0, 2, false), p1 = prefill_row(1, 6, 1, 2, true);
    trace_row d0 = decode_row(0, 2, 7), d1 = decode_row(1, 3, 8);
    CHECK(!trace_wants(t, 1, TP_Q_ROPE, &p0), "prefill (not last) row not wanted");
    CHECK(trace_wants(t, 1, TP_Q_ROPE, &p1), "prefill_last row wanted");
    CHECK(!trace_wants(t, 0, TP_Q_ROPE, &p1), "unselected layer not wanted");
    CHECK(!trace_wants(t, 1, TP_K_ROPE, &p1), "unselected point not wanted");
    CHECK(!trace_wants(t, 1, TP_Q_ROPE, &d0) && trace_wants(t, 1, TP_Q_ROPE, &d1), "decode1 only");
    CHECK(trace_wants(t, 2, TP_LOGITS, &d1) && !trace_wants(t, 1, TP_LOGITS, &d1),
          "logits live at layer n_layers");
    CHECK(!trace_wants(NULL, 1, TP_Q_ROPE, &p1), "NULL tracer wants nothing");
    trace_record_f32(NULL, 1, TP_Q_ROPE, &p1, NULL, 0); /* must not crash */
    float v[3] = {1, 2, 3};
    trace_record_f32(t, 0, TP_Q_ROPE, &p1, v, 3); /* unwanted: ignored */
    trace_record_f32(t, 1, TP_Q_ROPE, &p1, v, 3);
    const trace_set *set = trace_records(t);
    CHECK(set && set->count == 1 && strcmp(set->records[0].phase, "prefill_last") == 0,
          "only the wanted row is kept");
    CHECK(trace_close(t, err, sizeof err) == GRETA_OK, "close in-memory tracer");
}

/* Reads a JSONL file into an array of jansson objects. */
static json_t *read_lines(const char *path) {
    FILE *f = fopen(path, "r");
    json_t *lines = json_array();
    if (!f) return lines;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *obj = json_loads(line, 0, &e);
        if (!obj) {
            CHECK(false, "line parses as JSON: %s: %.80s", e.text, line);
            obj = json_null();
        }
        json_array_append_new(lines, obj);
    }
    free(line);
    fclose(f);
    return lines;
}

static double num_or_special(json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strcmp(s, "NaN") == 0 ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
    }
    return json_number_value(v);
}

static void test_jsonl_schema(void) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/schema.jsonl", check_tmp_dir());
    trace_config c;
    trace_config_init(&c);
    trace_config_set(&c, "out", path, err, sizeof err);
    trace_config_set(&c, "sample", "5", err, sizeof err);
    trace_config_set(&c, "top_k", "3", err, sizeof err);
    trace_config_set(&c, "prompt_id", "q\"\\\n\xff", err, sizeof err);
    trace *t = NULL;
    trace_open(&c, &info2, &t, err, sizeof err);
    CHECK(t != NULL, "open file tracer: %s", err);
    enum { N = 37 };
    float row[N];
    for (int i = 0; i < N; i++) row[i] = (float)sin(0.37 * i + 0.1) * (float)(i + 1) / 3.0f;
    row[4] = 1.0f / 3.0f; /* needs 9 digits */
    trace_row p = prefill_row(3, 42, 1, 2, true);
    trace_record_f32(t, 1, TP_FFN_ACT, &p, row, N);
    float bad[4] = {1.0f, NAN, INFINITY, -2.0f};
    trace_record_f32(t, 0, TP_X_IN, &p, bad, 4);
    double drow[6] = {0.1, -0.2, 1.0 / 3.0, 7e-300, 5.5, -1e10};
    trace_row d = decode_row(0, 4, 9);
    trace_record_f64(t, 2, TP_LOGITS, &d, drow, 6);
    CHECK(trace_close(t, err, sizeof err) == GRETA_OK, "close file tracer: %s", err);

    json_t *lines = read_lines(path);
    CHECK(json_array_size(lines) == 4, "header + 3 records (got %zu)", json_array_size(lines));
    if (json_array_size(lines) != 4) {
        json_decref(lines);
        return;
    }
    json_t *h = json_array_get(lines, 0);
    CHECK(strcmp(json_string_value(json_object_get(h, "event")), "stage_trace_header") == 0 &&
              strcmp(json_string_value(json_object_get(h, "model")), "model \"x\".gguf") == 0 &&
              strcmp(json_string_value(json_object_get(h, "backend")), "cpu") == 0 &&
              strcmp(json_string_value(json_object_get(h, "precision")), "f32") == 0 &&
              strcmp(json_string_value(json_object_get(h, "build")), "test build") == 0 &&
              json_is_object(json_object_get(h, "config")),
          "header line: model, backend, precision, build, config");
    json_t *r = json_array_get(lines, 1);
    static const char *const required[] = {"event", "prompt_id", "phase", "point", "layer", "step", "pos_id",
                                           "seq_len", "tokens_total", "token_index", "token_id", "backend",
                                           "n", "hash", "min", "max", "mean", "rms", "nan", "inf", "sample"};
    int missing = 0;
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
        for (size_t line = 1; line < 4; line++)
            if (!json_object_get(json_array_get(lines, line), required[k])) missing++;
    CHECK(missing == 0, "every record has every required field (%d missing)", missing);
    CHECK(strcmp(json_string_value(json_object_get(r, "prompt_id")), "q\"\\\n\xef\xbf\xbd") == 0,
          "prompt_id escaped; invalid UTF-8 replaced by U+FFFD");
    CHECK(strcmp(json_string_value(json_object_get(r, "phase")), "prefill_last") == 0 &&
              strcmp(json_string_value(json_object_get(r, "point")), "ffn_act") == 0 &&
              json_integer_value(json_object_get(r, "layer")) == 1 &&
              json_integer_value(json_object_get(r, "pos_id")) == 3 &&
              json_integer_value(json_object_get(r, "token_id")) == 42 &&
              json_integer_value(json_object_get(r, "n")) == N,
          "record identity fields");
    char expect_hash[17];
    snprintf(expect_hash, sizeof expect_hash, "%016" PRIx64, hash_floats(row, N));
    CHECK(strcmp(json_string_value(json_object_get(r, "hash")), expect_hash) == 0,
          "hash = FNV-1a over the whole row's LE float32 bytes (%s)", expect_hash);
    double lo = row[0], hi = row[0], sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        lo = row[i] < lo ? row[i] : lo;
        hi = row[i] > hi ? row[i] : hi;
        sum += row[i];
        sq += (double)row[i] * row[i];
    }
    CHECK(json_real_value(json_object_get(r, "min")) == lo && json_real_value(json_object_get(r, "max")) == hi,
          "min/max over the whole row, not the sample");
    CHECK(fabs(json_real_value(json_object_get(r, "mean")) - sum / N) < 1e-12 &&
              fabs(json_real_value(json_object_get(r, "rms")) - sqrt(sq / N)) < 1e-12,
          "mean/rms over the whole row");
    json_t *sample = json_object_get(r, "sample");
    bool exact = json_array_size(sample) == 5;
    for (size_t i = 0; exact && i < 5; i++)
        exact = (float)json_number_value(json_array_get(sample, i)) == row[i];
    CHECK(exact, "sample: the first 5 values, read back bitwise exact");
    json_t *x = json_array_get(lines, 2);
    CHECK(json_integer_value(json_object_get(x, "nan")) == 1 && json_integer_value(json_object_get(x, "inf")) == 1 &&
              json_number_value(json_object_get(x, "min")) == -2.0 && json_number_value(json_object_get(x, "max")) == 1.0,
          "nan/inf counted, stats over finite values");
    json_t *xs = json_object_get(x, "sample");
    CHECK(isnan(num_or_special(json_array_get(xs, 1))) && isinf(num_or_special(json_array_get(xs, 2))),
          "non-finite samples written as \"NaN\"/\"Infinity\"");
    json_t *l = json_array_get(lines, 3);
    float rounded[6];
    for (int i = 0; i < 6; i++) rounded[i] = (float)drow[i];
    snprintf(expect_hash, sizeof expect_hash, "%016" PRIx64, hash_floats(rounded, 6));
    CHECK(strcmp(json_string_value(json_object_get(l, "dtype")), "f64") == 0 &&
              strcmp(json_string_value(json_object_get(l, "hash")), expect_hash) == 0,
          "f64 row: dtype f64, hash of the float32-rounded values");
    json_t *ls = json_object_get(l, "sample");
    exact = json_array_size(ls) == 5;
    for (size_t i = 0; exact && i < 5; i++) exact = json_number_value(json_array_get(ls, i)) == drow[i];
    CHECK(exact, "f64 sample values read back at full double precision");
    json_t *ids = json_object_get(l, "top_k_ids"), *vals = json_object_get(l, "top_k_values");
    CHECK(json_array_size(ids) == 3 && json_integer_value(json_array_get(ids, 0)) == 4 &&
              json_integer_value(json_array_get(ids, 1)) == 2 && json_integer_value(json_array_get(ids, 2)) == 0 &&
              json_number_value(json_array_get(vals, 0)) == 5.5,
          "logits record carries top-k ids and values, highest first");
    CHECK(json_integer_value(json_object_get(l, "step")) == 0 &&
              strcmp(json_string_value(json_object_get(l, "phase")), "decode0") == 0,
          "decode record: phase decode0, step 0");
    json_decref(lines);

    /* the diff reader accepts the file and keeps what was written */
    trace_set set;
    CHECK(trace_set_load_jsonl(path, &set, err, sizeof err) == 0 && set.count == 3 && set.n_layers == 2,
          "trace_set_load_jsonl reads our own file: %s", err);
    if (set.count == 3)
        CHECK(set.records[0].hash == hash_floats(row, N) && set.records[0].n_values == 5 &&
                  set.records[0].values[4] == (double)row[4] && set.records[2].is_f64 &&
                  set.records[2].top_ids[0] == 4,
              "parsed records equal the written ones");
    trace_set_free(&set);
}

/* Builds a set of rows: layers 0..1 x points x_in,q for pos 0..2, plus logits. */
static void make_set(trace_set *s, double bump, int bump_layer, int bump_point, int64_t bump_pos, int64_t sample) {
    trace_set_init(s);
    s->n_layers = 2;
    double values[8];
    float f[8];
    for (int layer = 0; layer <= 2; layer++) {
        for (int point = 0; point < TP_COUNT; point++) {
            bool final = point == TP_LOGITS;
            if (final != (layer == 2)) continue;
            if (!final && point != TP_X_IN && point != TP_Q) continue;
            for (int64_t pos = 0; pos < 3; pos++) {
                trace_record r;
                memset(&r, 0, sizeof r);
                snprintf(r.phase, sizeof r.phase, "prefill");
                r.layer = layer;
                r.point = point;
                r.pos_id = pos;
                r.token_id = (int32_t)(10 + pos);
                r.n = 8;
                for (int i = 0; i < 8; i++) {
                    values[i] = (double)(float)(0.25 * (i + 1) + layer + 0.125 * pos + (final ? i * 0.5 : 0));
                    if (layer == bump_layer && point == bump_point && pos == bump_pos && i == 7) values[i] += bump;
                    f[i] = (float)values[i];
                }
                r.hash = trace_hash_f32(f, 8);
                r.n_values = sample;
                r.values = values;
                trace_set_add(s, &r);
            }
        }
    }
}

static void test_diff_rules(void) {
    trace_set a, b;
    trace_diff_result r;
    trace_diff_options o;
    trace_diff_options_init(&o);
    make_set(&a, 0, -1, -1, -1, 8);
    make_set(&b, 0, -1, -1, -1, 8);
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_PASS && r.paired == 15 && !r.samples_only, "identical traces pass (%zu paired)", r.paired);
    CHECK(r.n_cells == 5 && r.cells[4].point == TP_LOGITS && r.cells[4].top1_agree == 3, "cells in forward order, top-1 on logits");
    trace_diff_result_free(&r);
    trace_set_free(&b);

    /* reversed order in B: pairing ignores order */
    make_set(&b, 0, -1, -1, -1, 8);
    for (size_t i = 0; i < b.count / 2; i++) {
        trace_record t = b.records[i];
        b.records[i] = b.records[b.count - 1 - i];
        b.records[b.count - 1 - i] = t;
    }
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_PASS, "record order does not matter");
    trace_diff_result_free(&r);
    trace_set_free(&b);

    /* a bump at layer 1 q pos 2 and a later one at layer 2: first divergence is layer 1 q */
    make_set(&b, 1e-3, 1, TP_Q, 2, 8);
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_DIVERGED && r.first_cell >= 0 && r.cells[r.first_cell].layer == 1 &&
              r.cells[r.first_cell].point == TP_Q && r.cells[r.first_cell].bad_pos_id == 2,
          "exact mode: first divergence layer 1 q pos 2");
    trace_diff_result_free(&r);
    o.rel = 1e-2;
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_PASS, "within --rel 1e-2");
    trace_diff_result_free(&r);
    trace_diff_options_init(&o);
    o.atol = 1e-4;
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_DIVERGED, "outside --atol 1e-4");
    trace_diff_result_free(&r);
    trace_set_free(&b);

    /* samples only: values equal in the sample but whole-row hash differs */
    trace_diff_options_init(&o);
    trace_set_free(&a);
    make_set(&a, 0, -1, -1, -1, 4);
    make_set(&b, 1e-3, 0, TP_X_IN, 1, 4);
    trace_diff(&a, &b, &o, &r);
    CHECK(r.samples_only && r.status == TRACE_DIFF_DIVERGED && r.cells[r.first_cell].bad_hash_only &&
              r.cells[r.first_cell].layer == 0 && r.cells[r.first_cell].point == TP_X_IN,
          "exact mode catches a difference outside the sample through the hash");
    trace_diff_result_free(&r);
    trace_set_free(&b);
    trace_set_free(&a);

    /* token mismatch and unpaired */
    make_set(&a, 0, -1, -1, -1, 8);
    make_set(&b, 0, -1, -1, -1, 8);
    b.records[4].token_id = 99;
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_UNUSABLE && r.mismatched == 1 && strstr(r.reason, "input mismatch"),
          "same layer/point/pos, different token: unusable");
    trace_diff_result_free(&r);
    b.records[4].token_id = a.records[4].token_id;
    b.count--; /* drop B's last record */
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_UNUSABLE && r.unpaired_a == 1 && strstr(r.reason, "unpaired"),
          "an unpaired record is an error, not a pass");
    trace_diff_result_free(&r);
    b.count++;
    b.records[1].pos_id = 0; /* duplicate key in B */
    b.records[1].token_id = b.records[0].token_id;
    trace_diff(&a, &b, &o, &r);
    CHECK(r.status == TRACE_DIFF_UNUSABLE && r.duplicates >= 1, "duplicate keys: unusable");
    trace_diff_result_free(&r);
    trace_set_free(&b);

    /* B3.27: prefill_last at pos N-1 vs decode0 at pos N never pairs */
    trace_set pl, d0;
    trace_set_init(&pl);
    trace_set_init(&d0);
    double v[4] = {1, 2, 3, 4};
    float fv[4] = {1, 2, 3, 4};
    trace_record rec;
    memset(&rec, 0, sizeof rec);
    rec.layer = 0, rec.point = TP_X_IN, rec.n = 4, rec.n_values = 4, rec.values = v;
    rec.hash = trace_hash_f32(fv, 4);
    snprintf(rec.phase, sizeof rec.phase, "prefill_last");
    rec.pos_id = 5, rec.token_id = 100;
    trace_set_add(&pl, &rec);
    snprintf(rec.phase, sizeof rec.phase, "decode0");
    rec.pos_id = 6, rec.token_id = 200;
    trace_set_add(&d0, &rec);
    trace_diff(&pl, &d0, &o, &r);
    CHECK(r.status == TRACE_DIFF_UNUSABLE && r.paired == 0 && strstr(r.reason, "no record pairs") &&
              strstr(r.reason, "pos_id 5") && strstr(r.reason, "pos_id 6"),
          "prefill_last@N-1 vs decode0@N refused: %.120s", r.reason);
    trace_diff_result_free(&r);
    trace_set_free(&pl);
    trace_set_free(&d0);
    trace_set_free(&a);
}

static void test_loader_errors(void) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", check_tmp_dir());
    static const char *const cases[][2] = {
        {"{\"event\":\"stage_trace_header\",\"n_layers\":2}\n{\"event\":\"stage_trace\",", ":2: malformed JSON"},
        {"{\"event\":\"stage_trace\"}\n", ":1: record before the header"},
        {"{\"event\":\"stage_trace_header\",\"n_layers\":2}\n[1,2]\n", ":2: not a StageTrace object"},
        {"{\"event\":\"stage_trace_header\",\"n_layers\":2}\n{\"event\":\"stage_trace\",\"phase\":\"prefill\"}\n",
         ":2: missing or unknown \"point\""},
        {"", "empty trace"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(cases[i][0], f);
        fclose(f);
        trace_set s;
        int rc = trace_set_load_jsonl(path, &s, err, sizeof err);
        CHECK(rc != 0 && strstr(err, cases[i][1]) && strstr(err, path), "loader error %zu: %s", i, err);
    }
}

/* Tracing on (file, every point, whole rows) vs off on a random model:
 * the logits of every row bitwise equal; and the records the engine wrote
 * carry the right hash and statistics for their own sample. */
static void test_neutrality_engine(void) {
    char model_path[1024], trace_path[1024], err[512];
    snprintf(model_path, sizeof model_path, "%s/tiny.gguf", check_tmp_dir());
    snprintf(trace_path, sizeof trace_path, "%s/neutral.jsonl", check_tmp_dir());
    synth_options so;
    memset(&so, 0, sizeof so);
    synth_preset("tiny", &so.shape);
    quantize_target_find("Q8_0", &so.target);
    so.seed = 3;
    so.n_threads = 1;
    CHECK(synth_write(&so, model_path, err, sizeof err), "synth model: %s", err);
    greta_model *m = NULL;
    if (greta_model_load(model_path, NULL, &m, err, sizeof err) != GRETA_OK) {
        CHECK(false, "load: %s", err);
        return;
    }
    greta_model_info info;
    greta_model_get_info(m, &info);
    const int32_t ids[6] = {72, 101, 108, 108, 111, 33};
    float *logits[2] = {NULL, NULL};
    for (int traced = 0; traced < 2; traced++) {
        trace *t = NULL;
        if (traced) {
            trace_config c;
            trace_config_init(&c);
            trace_config_set(&c, "out", trace_path, err, sizeof err);
            trace_config_set(&c, "sample", "0", err, sizeof err);
            trace_model_info ti = {info.n_layer, "cpu", "f32", model_path, NULL};
            trace_open(&c, &ti, &t, err, sizeof err);
            CHECK(t != NULL, "open tracer: %s", err);
        }
        audit_session_spec spec = {GRETA_BACKEND_CPU, 2, NULL, 0, 3, t, GRETA_PRECISION_DEFAULT, GRETA_KV_DEFAULT, false};
        CHECK(audit_run_session(m, ids, 6, &spec, &logits[traced], NULL, NULL, err, sizeof err) == 0,
              "session (traced %d): %s", traced, err);
        if (t) CHECK(trace_close(t, err, sizeof err) == GRETA_OK, "close: %s", err);
    }
    size_t bytes = (size_t)(6 + 3) * (size_t)info.vocab_size * sizeof(float);
    CHECK(logits[0] && logits[1] && memcmp(logits[0], logits[1], bytes) == 0,
          "logits of 6 prompt rows + 3 decode steps bitwise equal with tracing on and off");
    trace_set set;
    CHECK(trace_set_load_jsonl(trace_path, &set, err, sizeof err) == 0, "engine trace parses: %s", err);
    size_t expect = (size_t)(6 + 3) * (size_t)(info.n_layer * 16 + 3);
    CHECK(set.count == expect, "every point of every row traced (%zu of %zu)", set.count, expect);
    int bad = 0;
    for (size_t i = 0; i < set.count; i++) {
        trace_record *r = &set.records[i];
        float *f = malloc((size_t)r->n * sizeof *f);
        double sum = 0;
        for (int64_t k = 0; k < r->n; k++) f[k] = (float)r->values[k], sum += r->values[k];
        if (r->n_values != r->n || hash_floats(f, (size_t)r->n) != r->hash || fabs(sum / (double)r->n - r->mean) > 1e-9 * (1 + fabs(r->mean)))
            bad++;
        if (r->point == TP_LOGITS) {
            /* every row: the trace's logits are the session's logits */
            const float *row = logits[0] + (size_t)r->pos_id * (size_t)info.vocab_size;
            if (memcmp(row, f, (size_t)r->n * sizeof *f) != 0) bad++;
        }
        free(f);
    }
    CHECK(bad == 0, "engine records: hash and mean recomputed from the whole row, logits equal the session's (%d bad)", bad);
    trace_set_free(&set);
    free(logits[0]);
    free(logits[1]);
    greta_model_free(m);
}

int main(void) {
    test_neutrality_engine();
    test_config();
    test_selection();
    test_jsonl_schema();
    test_diff_rules();
    test_loader_errors();
    return check_finish("test_trace");
}
