/* test_engine_step.c: engine_step, one forward over rows of several
 * sessions (continuous batching on backend interface v2).
 *
 * Reference: the same sessions evaluated one at a time with engine_eval.
 * The backend contract (backend.h) promises that a row's result depends
 * only on its own inputs and its own sequence's cache, so the logits of
 * every session must be bitwise equal either way, on cpu (any thread count)
 * and on ref. Also: cpu's fused layer and the step sequence agree bit for
 * bit whichever layers are traced; weights are placed once per model per
 * backend; every bad step is refused before anything changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "engine/engine.h"
#include "engine/trace.h"
#include "format/gguf.h"
#include "model/model.h"
#include "format/quant.h"
#include "support/random_model.h"

#define N_SESSIONS 4
#define N_STEPS 5

static engine *open_session(engine_model *em, greta_backend backend, int threads, bool logits_all, int n_ctx,
                            int max_rows) {
    engine_config c = {.n_ctx = n_ctx, .n_threads = threads, .backend = backend, .logits_all = logits_all,
                       .max_rows = max_rows};
    greta_status st = GRETA_OK;
    char err[256] = "";
    engine *e = engine_new(em, &c, &st, err, sizeof err);
    CHECK(e != NULL, "engine_new backend %d x%d: %s", (int)backend, threads, err);
    return e;
}

static int32_t argmax(const float *v, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Prompts of different lengths (the last one empty: its first step is the
 * session's first eval, a one-token prefill at position 0). */
static const int32_t prompts[N_SESSIONS][6] = {{3, 7, 11, 2, 9, 4}, {5, 1}, {8, 8, 8, 8}, {0}};
static const int prompt_len[N_SESSIONS] = {6, 2, 4, 0};

/* Sessions batched[i] step together; alone[i] step one at a time: every
 * step's logits must be bitwise equal. max_rows of the lead session below
 * N_SESSIONS makes the step run in several chunks. */
static void compare_step_with_alone(engine_model *em, greta_backend backend, int threads, int lead_max_rows,
                                    const char *label) {
    engine *batched[N_SESSIONS], *alone[N_SESSIONS];
    char err[256] = "";
    for (int i = 0; i < N_SESSIONS; i++) {
        bool logits_all = i == 2; /* one session keeps all rows: its own bookkeeping must hold too */
        batched[i] = open_session(em, backend, threads, logits_all, 32 + 8 * i, i == 0 ? lead_max_rows : 0);
        alone[i] = open_session(em, backend, threads, logits_all, 32 + 8 * i, 0);
        if (!batched[i] || !alone[i]) return;
        if (prompt_len[i] > 0) {
            CHECK(engine_eval(batched[i], prompts[i], (size_t)prompt_len[i], err, sizeof err) == GRETA_OK, "%s", err);
            CHECK(engine_eval(alone[i], prompts[i], (size_t)prompt_len[i], err, sizeof err) == GRETA_OK, "%s", err);
        }
    }
    const int n_vocab = batched[0]->m->hp.n_vocab;
    int32_t next[N_SESSIONS] = {1, 2, 3, 4};
    int equal32 = 0, equal64 = 0, compared = 0, same_state = 0;
    for (int step = 0; step < N_STEPS; step++) {
        greta_status st = engine_step(batched, next, N_SESSIONS, err, sizeof err);
        CHECK(st == GRETA_OK, "%s: step %d: %s", label, step, err);
        if (st != GRETA_OK) break;
        for (int i = 0; i < N_SESSIONS; i++) {
            st = engine_eval(alone[i], &next[i], 1, err, sizeof err);
            CHECK(st == GRETA_OK, "%s: alone eval: %s", label, err);
            compared++;
            equal32 += memcmp(batched[i]->logits, alone[i]->logits, (size_t)n_vocab * sizeof(float)) == 0;
            equal64 += memcmp(batched[i]->logits64, alone[i]->logits64, (size_t)n_vocab * sizeof(double)) == 0;
            same_state += batched[i]->n_pos == alone[i]->n_pos && batched[i]->decode_step == alone[i]->decode_step &&
                          batched[i]->logits_all_rows == alone[i]->logits_all_rows &&
                          memcmp(batched[i]->tokens, alone[i]->tokens, (size_t)alone[i]->n_pos * 4) == 0;
            next[i] = argmax(alone[i]->logits, n_vocab);
        }
    }
    CHECK(compared == N_SESSIONS * N_STEPS && equal32 == compared && equal64 == compared,
          "%s: %d/%d float32 and %d/%d float64 logits rows of a %d-session step equal the sessions alone, bitwise",
          label, equal32, compared, equal64, compared, N_SESSIONS);
    CHECK(same_state == compared, "%s: positions, tokens and phases as if alone (%d/%d)", label, same_state, compared);
    CHECK(memcmp(batched[2]->logits_all, alone[2]->logits_all, (size_t)n_vocab * sizeof(float)) == 0,
          "%s: a logits_all session keeps its one row", label);
    for (int i = 0; i < N_SESSIONS; i++) {
        engine_free(batched[i]);
        engine_free(alone[i]);
    }
}

/* An in-memory tracer of layers / points (whole rows). */
static trace *memory_tracer(const char *layers, const char *points) {
    trace_config cfg;
    trace_config_init(&cfg);
    cfg.enabled = true;
    cfg.in_memory = true;
    cfg.sample = 0;
    char err[256] = "";
    CHECK(trace_config_set(&cfg, "layers", layers, err, sizeof err) == 0 &&
              trace_config_set(&cfg, "points", points, err, sizeof err) == 0,
          "trace config %s / %s: %s", layers, points, err);
    trace_model_info ti = {.n_layers = 2, .backend = "cpu", .precision = "f32", .model_path = "step.gguf"};
    trace *t = NULL;
    trace_open(&cfg, &ti, &t, err, sizeof err);
    CHECK(t != NULL, "in-memory tracer: %s", err);
    return t;
}

/* The hash of the record (layer, point, pos) in set, 0 if absent. */
static uint64_t record_hash(const trace_set *set, int layer, trace_point point, int64_t pos) {
    for (size_t i = 0; set && i < set->count; i++) {
        const trace_record *r = &set->records[i];
        if (r->layer == layer && r->point == (int)point && r->pos_id == pos) return r->hash;
    }
    return 0;
}

/* cpu has a fused layer: the engine takes it for every layer with no
 * traced point inside, the steps otherwise. Untraced (fused everywhere),
 * fully traced (steps everywhere), layer 1 traced inside (layer 0 fused,
 * layer 1 steps) and only the layer boundaries traced (fused, recorded
 * around) must give the same logits and boundary rows, bit for bit. */
static void fused_and_steps_agree(engine_model *em) {
    const char *layers[4] = {NULL, "all", "1", "all"};
    const char *points[4] = {NULL, "all", "attn_out", "x_in,x_after_mlp"};
    const char *names[4] = {"untraced", "every point", "layer 1 attn_out", "layer boundaries"};
    engine *s[4];
    trace *t[4] = {NULL};
    char err[256] = "";
    const int32_t prompt[5] = {4, 9, 1, 7, 3}, next = 5;
    for (int k = 0; k < 4; k++) {
        s[k] = open_session(em, GRETA_BACKEND_CPU, 2, false, 16, 0);
        if (!s[k]) return;
        if (layers[k]) t[k] = memory_tracer(layers[k], points[k]);
        s[k]->tracer = t[k];
        CHECK(engine_eval(s[k], prompt, 5, err, sizeof err) == GRETA_OK &&
                  engine_eval(s[k], &next, 1, err, sizeof err) == GRETA_OK,
              "%s: prefill and decode: %s", names[k], err);
    }
    const size_t bytes = (size_t)s[0]->m->hp.n_vocab * sizeof(float);
    for (int k = 1; k < 4; k++)
        CHECK(memcmp(s[0]->logits, s[k]->logits, bytes) == 0, "logits untraced == %s, bitwise", names[k]);
    const trace_set *all = trace_records(t[1]), *edges = trace_records(t[3]);
    int same = 0, compared = 0;
    for (int layer = 0; layer < 2; layer++)
        for (int64_t pos = 0; pos < 6; pos++) {
            uint64_t a = record_hash(all, layer, TP_X_AFTER_MLP, pos), b = record_hash(edges, layer, TP_X_AFTER_MLP, pos);
            compared++;
            same += a != 0 && a == b;
        }
    CHECK(same == compared, "x_after_mlp of a fused layer == of the steps, %d/%d rows bitwise", same, compared);
    for (int k = 0; k < 4; k++) {
        engine_free(s[k]);
        trace_close(t[k], NULL, 0);
    }
}

static void refusals(engine_model *em) {
    char err[256] = "";
    engine *a = open_session(em, GRETA_BACKEND_CPU, 1, false, 8, 0);
    engine *b = open_session(em, GRETA_BACKEND_CPU, 1, false, 4, 0);
    engine *r = open_session(em, GRETA_BACKEND_REF, 1, false, 8, 0);
    if (!a || !b || !r) return;
    const int32_t two[2] = {1, 2};
    engine *pair[2] = {a, r};
    CHECK(engine_step(pair, two, 2, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT && strstr(err, "same model"),
          "a step mixing backends is refused: %s", err);
    engine *twice[2] = {a, a};
    CHECK(engine_step(twice, two, 2, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT && strstr(err, "twice"),
          "a session twice in one step is refused: %s", err);
    const int32_t bad[2] = {1, 50};
    engine *ab[2] = {a, b};
    CHECK(engine_step(ab, bad, 2, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT && strstr(err, "vocabulary"),
          "a token outside the vocabulary is refused: %s", err);
    CHECK(a->n_pos == 0 && b->n_pos == 0 && !a->has_logits, "a refused step changes no session");
    const int32_t four[4] = {1, 2, 3, 4};
    CHECK(engine_eval(b, four, 4, err, sizeof err) == GRETA_OK, "fill b: %s", err);
    CHECK(engine_step(ab, two, 2, err, sizeof err) == GRETA_ERR_CONTEXT_FULL && strstr(err, "session 1"),
          "a full session is refused and named: %s", err);
    CHECK(engine_eval(a, four, 4, err, sizeof err) == GRETA_OK && engine_eval(a, four, 1, err, sizeof err) == GRETA_OK,
          "a at position 5");
    engine *small = open_session(em, GRETA_BACKEND_CPU, 1, false, 2, 0);
    engine *sa[2] = {small, a};
    CHECK(engine_step(sa, two, 2, err, sizeof err) == GRETA_ERR_INVALID_ARGUMENT && strstr(err, "keys of session 0"),
          "a row beyond the lead session's keys is refused: %s", err);
    CHECK(a->n_pos == 5 && b->n_pos == 4 && small->n_pos == 0, "refused steps leave positions alone");
    CHECK(a->bm == b->bm && a->bm != r->bm, "weights are placed once per backend and shared by its sessions");
    engine_free(small);
    engine_free(a);
    engine_free(b);
    engine_free(r);
}

int main(void) {
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/step.gguf", check_tmp_dir());
    tm_spec spec = tm_default();
    spec.type = QT_Q8_0;
    spec.n_embd = 64;
    CHECK(tm_write(&spec, path), "write a tiny Q8_0 model");
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "open: %s", err);
    model *m = NULL;
    if (f) model_load(f, &m, err, sizeof err);
    CHECK(m != NULL, "load: %s", err);
    engine_model *em = m ? engine_model_new(m) : NULL;
    if (!em) return check_finish("test_engine_step");

    compare_step_with_alone(em, GRETA_BACKEND_CPU, 1, 0, "cpu x1");
    compare_step_with_alone(em, GRETA_BACKEND_CPU, 3, 0, "cpu x3");
    compare_step_with_alone(em, GRETA_BACKEND_CPU, 2, 3, "cpu x2, lead max_rows 3 (two chunks)");
    compare_step_with_alone(em, GRETA_BACKEND_REF, 1, 0, "ref");
    fused_and_steps_agree(em);
    refusals(em);

    engine_model_free(em);
    model_free(m);
    return check_finish("test_engine_step");
}
