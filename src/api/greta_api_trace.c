/* greta_api_trace.c: the public tracing calls of greta.h over src/trace.h.
 * A session opens its tracer from a configuration, owns it and closes it. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend_registry.h"
#include "base/errors.h"
#include "greta.h"
#include "api/api_internal.h"
#include "engine/trace.h"

struct greta_trace_config {
    trace_config config;
};

greta_status greta_trace_config_new(greta_trace_config **out, char *err, size_t err_size) {
    *out = NULL;
    greta_trace_config *c = calloc(1, sizeof *c);
    if (!c) {
        format_error(err, err_size, "out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    trace_config_init(&c->config);
    /* GRETA_TRACE_STAGE=1 without GRETA_TRACE_STAGE_OUT is completed by
     * --trace FILE; greta_session_open_trace refuses it if nothing does. */
    int rc = trace_config_from_env(&c->config, err, err_size);
    if (rc != 0 && !(c->config.enabled && !c->config.out_path[0])) {
        free(c);
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    *out = c;
    return GRETA_OK;
}

void greta_trace_config_free(greta_trace_config *config) { free(config); }

int greta_trace_config_parse_flag(greta_trace_config *config, int argc, char **argv, int *i,
                                  char *err, size_t err_size) {
    int next = *i;
    int r = trace_parse_flag(&config->config, argc, argv, &next, err, err_size);
    if (r == 1) *i = next - 1; /* trace_parse_flag leaves next past the flag */
    return r;
}

bool greta_trace_config_enabled(const greta_trace_config *config) {
    return config && config->config.enabled;
}

const char *greta_trace_flags_help(void) { return trace_flags_help(); }

greta_status greta_session_open_trace(greta_session *session, const greta_trace_config *config,
                                      const char *model_path, char *err, size_t err_size) {
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    if (!greta_trace_config_enabled(config)) return GRETA_OK;
    if (session->owned_tracer) {
        format_error(err, err_size, "trace: the session already has a tracer");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (!config->config.out_path[0] && !config->config.in_memory) {
        format_error(err, err_size, "trace: tracing is on but has no output (--trace FILE or GRETA_TRACE_STAGE_OUT)");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    greta_model_info info;
    greta_model_get_info(session->model, &info);
    trace_model_info tinfo = {
        .n_layers = info.n_layer,
        .backend = greta_backend_name(session->backend),
        .precision = session->precision == GRETA_PRECISION_Q8 ? "q8" : backend_registry_find(session->backend)->precision,
        .model_path = model_path,
        .build = NULL,
    };
    trace *tracer = NULL;
    greta_status st = trace_open(&config->config, &tinfo, &tracer, err, err_size);
    if (st != GRETA_OK) return st;
    session->owned_tracer = tracer;
    return greta_session_set_trace(session, tracer);
}

greta_status greta_session_close_trace(greta_session *session, char *err, size_t err_size) {
    if (!session || !session->owned_tracer) return GRETA_OK;
    greta_session_set_trace(session, NULL);
    greta_status st = trace_close(session->owned_tracer, err, err_size);
    session->owned_tracer = NULL;
    return st;
}
