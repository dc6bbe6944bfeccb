/* test_faults.c: every planted fault (tests/support/fault_backend.h, a
 * backend wrapping cpu) is caught by the right audit, which names the right
 * first layer and point; the other audit of the pair does not see it (why
 * both exist); the wrapper without a fault passes all four audits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/audit.h"
#include "support/check.h"
#include "support/fault_backend.h"
#include "greta.h"
#include "tools/quantize_model.h"
#include "tools/synth.h"

static const int32_t prompt[] = {72, 101, 108, 108, 111, 32, 119, 111};
#define N_PROMPT (sizeof prompt / sizeof prompt[0])

static audit_result run(greta_model *m, const char *path, audit_kind kind) {
    audit_options o;
    audit_options_init(&o);
    o.n_decode = 2;
    audit_result r;
    char err[512] = "";
    if (audit_run(kind, m, path, prompt, N_PROMPT, &o, &r, err, sizeof err) != 0) {
        CHECK(false, "audit %s ran: %s", audit_kind_name(kind), err);
        memset(&r, 0, sizeof r);
        r.pass = true; /* no verdict to judge */
        r.first_layer = r.first_point = -2;
    }
    return r;
}

typedef struct {
    fault_kind fault;
    audit_kind catches;   /* the audit that must fail */
    audit_kind blind;     /* the audit that cannot see it */
    int layer;
    trace_point point;
    int64_t pos_id;       /* -1: any */
} fault_case;

/* The logits of every prompt row on a 2-thread cpu session (malloc'ed). */
static float *prompt_logits(greta_model *m, size_t *n_values) {
    greta_session_params p = greta_session_default_params();
    p.n_threads = 2;
    p.n_ctx = 64;
    p.logits_all = true;
    greta_session *s = NULL;
    char err[256] = "";
    float *copy = NULL;
    *n_values = 0;
    if (greta_session_new(m, &p, &s, err, sizeof err) == GRETA_OK && greta_eval(s, prompt, N_PROMPT) == GRETA_OK) {
        size_t rows = 0;
        const float *all = greta_logits_all(s, &rows);
        greta_model_info info;
        greta_model_get_info(m, &info);
        *n_values = rows * (size_t)info.vocab_size;
        copy = malloc(*n_values * sizeof *copy);
        if (copy) memcpy(copy, all, *n_values * sizeof *copy);
    }
    CHECK(copy != NULL, "cpu session: %s", s ? greta_session_error(s) : err);
    greta_session_free(s);
    return copy;
}

int main(void) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tiny.gguf", check_tmp_dir());
    synth_options so;
    memset(&so, 0, sizeof so);
    CHECK(synth_preset("tiny", &so.shape), "tiny preset");
    CHECK(quantize_target_find("F32", &so.target), "F32 target");
    so.seed = 7;
    so.n_threads = 1;
    CHECK(synth_write(&so, path, err, sizeof err), "synth tiny model: %s", err);
    greta_model *m = NULL;
    if (greta_model_load(path, NULL, &m, err, sizeof err) != GRETA_OK) {
        CHECK(false, "load tiny model: %s", err);
        return check_finish("test_faults");
    }

    size_t n_plain = 0, n_wrapped = 0;
    float *plain = prompt_logits(m, &n_plain); /* the cpu backend itself (fused layers) */
    fault_backend_install();
    fault_backend_set(FAULT_NONE);
    float *wrapped = prompt_logits(m, &n_wrapped); /* through the wrapper, step by step */
    CHECK(plain && wrapped && n_plain == n_wrapped && n_plain > 0 &&
              memcmp(plain, wrapped, n_plain * sizeof *plain) == 0,
          "the fault backend without a fault computes cpu's logits bit for bit (%zu values)", n_plain);
    free(plain);
    free(wrapped);
    for (int k = 0; k < 4; k++) {
        audit_result r = run(m, path, (audit_kind)k);
        CHECK(r.pass && r.experiments > 0, "no fault planted: audit %s passes (%s)", audit_kind_name((audit_kind)k), r.verdict);
    }

    const int64_t last = (int64_t)N_PROMPT - 1;
    const fault_case cases[] = {
        {FAULT_K_TRANSPOSED, AUDIT_BACKENDS, AUDIT_PARITY, 0, TP_K, -1},
        {FAULT_DECODE_POS, AUDIT_PARITY, AUDIT_BACKENDS, 0, TP_Q_ROPE, last},
        {FAULT_ROPE_POS, AUDIT_PARITY, AUDIT_BACKENDS, 0, TP_Q_ROPE, last},
        {FAULT_STALE_KV, AUDIT_PARITY, AUDIT_BACKENDS, 1, TP_ATTN_OUT, last},
        {FAULT_RMS_EPS, AUDIT_BACKENDS, AUDIT_PARITY, 0, TP_ATTN_NORM, -1},
        {FAULT_EMBED_ROW, AUDIT_BACKENDS, AUDIT_PARITY, 0, TP_X_IN, -1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const fault_case *fc = &cases[c];
        fault_backend_set(fc->fault);
        audit_result r = run(m, path, fc->catches);
        CHECK(!r.pass, "fault %s: audit %s fails (%s)", fault_name(fc->fault), audit_kind_name(fc->catches), r.verdict);
        CHECK(r.has_divergence && r.first_layer == fc->layer && r.first_point == (int)fc->point &&
                  (fc->pos_id < 0 || r.first_pos_id == fc->pos_id),
              "fault %s: first divergence layer %d %s pos %lld (want layer %d %s)", fault_name(fc->fault),
              r.first_layer, r.first_point >= 0 ? trace_point_name((trace_point)r.first_point) : "-",
              (long long)r.first_pos_id, fc->layer, trace_point_name(fc->point));
        audit_result other = run(m, path, fc->blind);
        CHECK(other.pass, "fault %s: audit %s does not see it (%s)", fault_name(fc->fault), audit_kind_name(fc->blind),
              other.verdict);
    }
    fault_backend_set(FAULT_NONE);
    audit_result r = run(m, path, AUDIT_PARITY);
    CHECK(r.pass, "fault switched off: parity passes again");
    CHECK(fault_from_name("stale_kv") == FAULT_STALE_KV && fault_from_name("nope") == -1, "fault names");
    greta_model_free(m);
    return check_finish("test_faults");
}
