/* test_context.c: the session's default context and the KV-cache memory
 * check (issue 9 item 3). A model file may claim a trained context of 2^20
 * or 2^24 positions: a default session must take min(trained, 4096)
 * positions and reserve little memory, and an explicit huge context must be
 * refused before anything is allocated, with one line naming the bytes
 * needed and the bytes available (compared here with /proc/meminfo read by
 * this test). Models come from tests/support/random_model.c. Also the
 * session parameters kv_type and deterministic on the CPU backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/quant.h"
#include "greta.h"
#include "support/check.h"
#include "support/random_model.h"

/* A "Vm...:   N kB" line of /proc/self/status, in bytes (0 if unreadable). */
static double vm_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0 && line[n] == ':') kb = strtod(line + n + 1, NULL);
    }
    fclose(f);
    return kb * 1024.0;
}

static double mem_available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "MemAvailable:", 13) == 0) kb = strtod(line + 13, NULL);
    }
    fclose(f);
    return kb * 1024.0;
}

static greta_model *write_and_load(tm_spec *spec, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", check_tmp_dir(), name);
    if (!tm_write(spec, path)) {
        CHECK(false, "write %s", path);
        return NULL;
    }
    greta_model *m = NULL;
    char err[512] = "";
    greta_status st = greta_model_load(path, NULL, &m, err, sizeof err);
    CHECK(st == GRETA_OK, "load %s: %s", name, st == GRETA_OK ? "ok" : err);
    return m;
}

static greta_session *session_of(greta_model *m, int32_t n_ctx, greta_backend backend, greta_status *st, char *err,
                                 size_t err_size) {
    greta_session_params sp = greta_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = 1;
    sp.backend = backend;
    greta_session *s = NULL;
    *st = greta_session_new(m, &sp, &s, err, err_size);
    return s;
}

/* Default context: min(trained, GRETA_DEFAULT_N_CTX). */
static void test_default_context(void) {
    CHECK(GRETA_DEFAULT_N_CTX == 4096, "GRETA_DEFAULT_N_CTX is 4096 (docs/cli.md, greta.h)");
    const int32_t trained[] = {100, 4096, 8192, 1 << 20, 1 << 24};
    const int32_t want[] = {100, 4096, 4096, 4096, 4096};
    for (size_t i = 0; i < sizeof trained / sizeof trained[0]; i++) {
        tm_spec spec = tm_default();
        spec.ctx = trained[i];
        char name[64];
        snprintf(name, sizeof name, "ctx_%d.gguf", trained[i]);
        greta_model *m = write_and_load(&spec, name);
        if (!m) continue;
        double peak_before = vm_bytes("VmPeak");
        greta_status st;
        char err[512] = "";
        greta_session *s = session_of(m, 0, GRETA_BACKEND_CPU, &st, err, sizeof err);
        double grown = vm_bytes("VmPeak") - peak_before;
        CHECK(st == GRETA_OK && greta_session_n_ctx(s) == want[i], "trained %d: default context %d (want %d) %s",
              trained[i], s ? greta_session_n_ctx(s) : -1, want[i], st == GRETA_OK ? "" : err);
        CHECK(grown < 256.0 * 1048576.0, "trained %d: a default session grows the peak address space by %.1f MiB",
              trained[i], grown / 1048576.0);
        int32_t ids[3] = {1, 2, 3};
        CHECK(s && greta_eval(s, ids, 3) == GRETA_OK && greta_logits(s) != NULL, "trained %d: the session evaluates",
              trained[i]);
        greta_session_free(s);
        /* more than the default, up to the trained length, when asked */
        if (trained[i] > 4096 && trained[i] <= 8192) {
            s = session_of(m, trained[i], GRETA_BACKEND_CPU, &st, err, sizeof err);
            CHECK(st == GRETA_OK && greta_session_n_ctx(s) == trained[i], "trained %d: n_ctx %d when asked",
                  trained[i], s ? greta_session_n_ctx(s) : -1);
            greta_session_free(s);
        }
        s = session_of(m, trained[i] + 1, GRETA_BACKEND_CPU, &st, err, sizeof err);
        CHECK(st == GRETA_ERR_INVALID_ARGUMENT && !s, "trained %d: one more than trained is refused: %s", trained[i],
              err);
        greta_model_free(m);
    }
}

/* An explicit context whose KV cache cannot fit: refused before allocating. */
static void test_kv_memory_check(void) {
    tm_spec spec = tm_default();
    spec.n_embd = 256;
    spec.n_head = 4;
    spec.n_head_kv = 4; /* kv_dim 256 */
    spec.n_layer = 4;
    spec.ctx = 1 << 24;
    greta_model *m = write_and_load(&spec, "ctx_2p24.gguf");
    if (!m) return;
    const struct {
        greta_backend backend;
        double elem;
    } cases[] = {{GRETA_BACKEND_CPU, 4.0}, {GRETA_BACKEND_REF, 8.0}};
    for (size_t i = 0; i < 2; i++) {
        /* K and V, 4 layers, 2^24 positions, 256 values each: 128 GiB in float32, 256 in float64 */
        double need = 2.0 * 4 * 16777216.0 * 256 * cases[i].elem;
        double available = mem_available_bytes();
        CHECK(available > 0, "MemAvailable read from /proc/meminfo: %.2f GiB", available / 1073741824.0);
        if (need <= available) {
            CHECK(false, "this machine has %.0f GiB available: the case needs more than %.0f GiB to be refused",
                  available / 1073741824.0, need / 1073741824.0);
            continue;
        }
        double peak_before = vm_bytes("VmPeak");
        greta_status st;
        char err[512] = "";
        greta_session *s = session_of(m, 1 << 24, cases[i].backend, &st, err, sizeof err);
        double grown = vm_bytes("VmPeak") - peak_before;
        const char *name = greta_backend_name(cases[i].backend);
        CHECK(st == GRETA_ERR_NO_MEMORY && !s, "%s: a 2^24 context is refused: %s", name, greta_status_string(st));
        char want_need[64];
        snprintf(want_need, sizeof want_need, "needs %.2f GiB", need / 1073741824.0);
        CHECK(strstr(err, "KV cache of 16777216 positions") && strstr(err, want_need), "%s: error names %s: %s",
              name, want_need, err);
        const char *avail = strstr(err, "only ");
        double said = avail ? strtod(avail + 5, NULL) * 1073741824.0 : -1;
        CHECK(avail && said > 0.8 * available && said < 1.25 * available && strstr(err, "(MemAvailable)"),
              "%s: error names the available memory (%.2f GiB; /proc/meminfo says %.2f GiB)", name,
              said / 1073741824.0, available / 1073741824.0);
        CHECK(!strchr(err, '\n'), "%s: one line", name);
        CHECK(grown < 64.0 * 1048576.0, "%s: nothing was reserved (peak address space grew %.1f MiB)", name,
              grown / 1048576.0);
        greta_session_free(s);
    }
    greta_model_free(m);
}

/* greta_session_params.kv_type and .deterministic (issue 12): cpu keeps
 * float32 (f32 accepted, f16/q8_0 refused as unsupported), ref refuses any
 * explicit type; an unknown id is an invalid argument; cpu and ref report
 * deterministic whether asked or not; the names parse both ways; cpu does
 * not report backend memory (its weights are the file's mapping). */
static void test_kv_type_and_deterministic(void) {
    tm_spec spec = tm_default();
    greta_model *m = write_and_load(&spec, "kv_type.gguf");
    if (!m) return;
    const struct {
        greta_backend backend;
        greta_kv_type kv;
        greta_status want;
    } cases[] = {
        {GRETA_BACKEND_CPU, GRETA_KV_DEFAULT, GRETA_OK},          {GRETA_BACKEND_CPU, GRETA_KV_F32, GRETA_OK},
        {GRETA_BACKEND_CPU, GRETA_KV_F16, GRETA_ERR_UNSUPPORTED}, {GRETA_BACKEND_CPU, GRETA_KV_Q8_0, GRETA_ERR_UNSUPPORTED},
        {GRETA_BACKEND_REF, GRETA_KV_DEFAULT, GRETA_OK},          {GRETA_BACKEND_REF, GRETA_KV_F32, GRETA_ERR_UNSUPPORTED},
        {GRETA_BACKEND_CPU, (greta_kv_type)9, GRETA_ERR_INVALID_ARGUMENT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int det = 0; det < 2; det++) {
            greta_session_params sp = greta_session_default_params();
            CHECK(sp.kv_type == GRETA_KV_DEFAULT && !sp.deterministic, "defaults: kv_type default, not deterministic");
            sp.n_ctx = 64;
            sp.n_threads = 1;
            sp.backend = cases[i].backend;
            sp.kv_type = cases[i].kv;
            sp.deterministic = det;
            greta_session *s = NULL;
            char err[512] = "";
            greta_status st = greta_session_new(m, &sp, &s, err, sizeof err);
            CHECK(st == cases[i].want && (st == GRETA_OK) == (s != NULL),
                  "%s, kv_type %s, deterministic %d: %s (%s)", greta_backend_name(cases[i].backend),
                  greta_kv_type_name(cases[i].kv), det, greta_status_string(st), err);
            if (st == GRETA_ERR_UNSUPPORTED)
                CHECK(strstr(err, "is not available on") && strstr(err, greta_kv_type_name(cases[i].kv)),
                      "the error names the type and the backend: %s", err);
            if (s) {
                CHECK(greta_session_deterministic(s), "%s reports deterministic (asked: %d)",
                      greta_backend_name(cases[i].backend), det);
                CHECK(greta_session_kv_type(s) == cases[i].kv, "the session keeps its kv_type");
                int32_t ids[3] = {1, 2, 3};
                CHECK(greta_eval(s, ids, 3) == GRETA_OK, "eval: %s", greta_session_error(s));
                greta_backend_memory mem;
                CHECK(greta_session_backend_memory(s, &mem) == GRETA_ERR_UNSUPPORTED && mem.weights == 0 && mem.kv == 0,
                      "%s: backend memory not reported (host mapping)", greta_backend_name(cases[i].backend));
            }
            greta_session_free(s);
        }
    }
    const char *names[] = {"f32", "f16", "q8_0"};
    for (int i = 0; i < 3; i++) {
        greta_kv_type t;
        CHECK(greta_kv_type_from_name(names[i], &t) == GRETA_OK && strcmp(greta_kv_type_name(t), names[i]) == 0,
              "kv type name %s round-trips", names[i]);
    }
    greta_kv_type t = GRETA_KV_F16;
    CHECK(greta_kv_type_from_name("q8", &t) == GRETA_ERR_INVALID_ARGUMENT && greta_kv_type_from_name(NULL, &t) != GRETA_OK,
          "unknown kv type names are invalid");
    CHECK(strcmp(greta_kv_type_name((greta_kv_type)77), "unknown") == 0, "an unknown id is named 'unknown'");
    greta_model_free(m);
}

int main(void) {
    test_default_context();
    test_kv_memory_check();
    test_kv_type_and_deterministic();
    return check_finish("test_context");
}
