/* request.c: parse and check an OpenAI-style request body (see request.h). */
#include "server/request.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOPS 16
#define MAX_MESSAGES 4096

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list args;
    va_start(args, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, args);
    va_end(args);
}

static bool bad_param(api_error *e, const char *param, const char *fmt, const char *detail) {
    api_error_set(e, 400, "invalid_request_error", NULL, param, fmt, param, detail);
    return false;
}

/* A JSON string without NUL characters, copied; NULL after filling e. */
static char *copy_string(const json_t *v, const char *param, api_error *e) {
    if (!json_is_string(v)) {
        bad_param(e, param, "'%s' must be a string%s", "");
        return NULL;
    }
    size_t len = json_string_length(v);
    const char *text = json_string_value(v);
    if (strlen(text) != len) {
        bad_param(e, param, "'%s' contains a NUL character%s", "");
        return NULL;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    memcpy(copy, text, len + 1);
    return copy;
}

/* Optional number field in [lo, hi]; absent or null leaves *out. */
static bool get_number(const json_t *body, const char *name, double lo, double hi, float *out, api_error *e) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return bad_param(e, name, "'%s' must be a number%s", "");
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi) {
        char range[96];
        snprintf(range, sizeof range, " in [%g, %g], got %g", lo, hi, x);
        return bad_param(e, name, "'%s' must be a number%s", range);
    }
    *out = (float)x;
    return true;
}

/* Optional integer field in [lo, hi]; absent or null leaves *out and *given. */
static bool get_int(const json_t *body, const char *name, long long lo, long long hi, long long *out, bool *given,
                    api_error *e) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return bad_param(e, name, "'%s' must be an integer%s", "");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char range[96];
        snprintf(range, sizeof range, " in [%lld, %lld], got %lld", lo, hi, x);
        return bad_param(e, name, "'%s' must be an integer%s", range);
    }
    *out = x;
    if (given) *given = true;
    return true;
}

static bool get_bool(const json_t *body, const char *name, bool *out, api_error *e) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return bad_param(e, name, "'%s' must be a boolean%s", "");
    *out = json_is_true(v);
    return true;
}

/* Fields greta does not implement: present with a value that asks for
 * something, they are an error rather than silently ignored. */
static bool check_unsupported(const json_t *body, api_error *e) {
    static const char *const unsupported[] = {"tools", "tool_choice", "functions", "function_call", "response_format",
                                              "suffix", "best_of", "top_logprobs", "audio", "modalities",
                                              "prediction", NULL};
    for (const char *const *name = unsupported; *name; name++) {
        json_t *v = json_object_get(body, *name);
        if (v && !json_is_null(v)) return bad_param(e, *name, "'%s' is not supported by greta%s", "");
    }
    json_t *bias = json_object_get(body, "logit_bias");
    if (bias && !json_is_null(bias) && !(json_is_object(bias) && json_object_size(bias) == 0))
        return bad_param(e, "logit_bias", "'%s' is not supported by greta%s", "");
    json_t *v = json_object_get(body, "logprobs");
    if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
        return bad_param(e, "logprobs", "'%s' is not supported by greta%s", "");
    v = json_object_get(body, "echo");
    if (v && !json_is_null(v) && !json_is_false(v)) return bad_param(e, "echo", "'%s' is not supported by greta%s", "");
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty", NULL};
    for (const char *const *name = penalties; *name; name++) {
        float x = 0.0f;
        if (!get_number(body, *name, -2.0, 2.0, &x, e)) return false;
        if (x != 0.0f) return bad_param(e, *name, "'%s' is not supported by greta (only 0)%s", "");
    }
    return true;
}

static bool parse_stop(const json_t *body, gen_request *r, api_error *e) {
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v)) return true;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_string(v) && !json_is_array(v))
        return bad_param(e, "stop", "'%s' must be a string or an array of strings%s", "");
    if (n > MAX_STOPS) {
        char detail[64];
        snprintf(detail, sizeof detail, " (at most %d)", MAX_STOPS);
        return bad_param(e, "stop", "'%s' has too many strings%s", detail);
    }
    r->stops = calloc(n ? n : 1, sizeof *r->stops);
    if (!r->stops) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(item)) return bad_param(e, "stop", "'%s' must be a string or an array of strings%s", "");
        if (json_string_length(item) == 0) return bad_param(e, "stop", "'%s' contains an empty string%s", "");
        if (!(r->stops[r->n_stops] = copy_string(item, "stop", e))) return false;
        r->n_stops++;
    }
    return true;
}

static bool parse_sampling(const json_t *body, gen_request *r, api_error *e) {
    greta_sampler_params *sp = &r->sampling;
    long long n = 0;
    bool given = false;
    if (!get_number(body, "temperature", 0.0, 100.0, &sp->temperature, e)) return false;
    if (!get_number(body, "top_p", 0.0, 1.0, &sp->top_p, e)) return false;
    if (sp->top_p <= 0.0f) sp->top_p = 1e-9f; /* 0: keep only the most likely token */
    if (!get_number(body, "min_p", 0.0, 1.0, &sp->min_p, e)) return false;
    if (!get_number(body, "repeat_penalty", 1e-6, 1e6, &sp->repeat_penalty, e)) return false;
    n = sp->top_k;
    if (!get_int(body, "top_k", 0, INT32_MAX, &n, NULL, e)) return false;
    sp->top_k = (int32_t)n;
    n = 0;
    if (!get_int(body, "seed", INT64_MIN, INT64_MAX, &n, &r->has_seed, e)) return false;
    r->seed = (uint64_t)n;
    /* max_completion_tokens is the newer name of max_tokens */
    const char *const names[] = {"max_tokens", "max_completion_tokens"};
    for (int i = 0; i < 2; i++) {
        n = 0;
        given = false;
        if (!get_int(body, names[i], 1, INT32_MAX, &n, &given, e)) return false;
        if (given) r->max_tokens = (int32_t)n;
    }
    n = 1;
    if (!get_int(body, "n", 1, INT32_MAX, &n, NULL, e)) return false;
    if (n != 1) return bad_param(e, "n", "'%s' must be 1 (greta returns one choice per request)%s", "");
    return true;
}

static bool parse_content(const json_t *v, const char *role, gen_request *r, size_t i, api_error *e) {
    greta_chat_message *m = &r->messages[i];
    if (json_is_string(v)) {
        m->content = copy_string(v, "messages", e);
        return m->content != NULL;
    }
    if (json_is_null(v) && strcmp(role, "assistant") == 0) {
        m->content = strdup("");
        return m->content != NULL;
    }
    if (!json_is_array(v)) return bad_param(e, "messages", "'%s': content must be a string or an array of text parts%s", "");
    /* content parts: the text parts, joined */
    size_t total = 0, n = json_array_size(v);
    for (size_t k = 0; k < n; k++) {
        json_t *part = json_array_get(v, k);
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text))
            return bad_param(e, "messages", "'%s': only content parts of type 'text' with a string 'text' are supported%s", "");
        total += json_string_length(text);
    }
    char *joined = malloc(total + 1);
    if (!joined) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        json_t *text = json_object_get(json_array_get(v, k), "text");
        size_t len = json_string_length(text);
        memcpy(joined + at, json_string_value(text), len);
        at += len;
    }
    joined[at] = '\0';
    m->content = joined;
    if (strlen(joined) != at) return bad_param(e, "messages", "'%s' contains a NUL character%s", "");
    return true;
}

static bool parse_messages(const json_t *body, gen_request *r, api_error *e) {
    json_t *v = json_object_get(body, "messages");
    if (!v) {
        api_error_set(e, 400, "invalid_request_error", NULL, "messages", "missing required parameter 'messages'");
        return false;
    }
    if (!json_is_array(v)) return bad_param(e, "messages", "'%s' must be an array of messages%s", "");
    size_t n = json_array_size(v);
    if (n == 0) return bad_param(e, "messages", "'%s' must not be empty%s", "");
    if (n > MAX_MESSAGES) return bad_param(e, "messages", "'%s' has too many messages%s", "");
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", NULL};
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m)) return bad_param(e, "messages", "'%s' must be an array of objects%s", "");
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role)) return bad_param(e, "messages", "'%s': every message needs a string 'role'%s", "");
        bool known = false;
        for (const char *const *k = roles; *k && !known; k++) known = strcmp(json_string_value(role), *k) == 0;
        if (!known) return bad_param(e, "messages", "'%s': unknown role (expected system, developer, user, assistant or tool)%s", "");
        if (!content) return bad_param(e, "messages", "'%s': every message needs a 'content'%s", "");
        char *role_copy = copy_string(role, "messages", e);
        if (!role_copy) return false;
        r->messages[i].role = role_copy;
        r->n_messages = i + 1;
        if (!parse_content(content, role_copy, r, i, e)) return false;
    }
    return true;
}

/* prompt: a string, an array of one string, token ids, or an array of one array of ids. */
static bool parse_prompt(const json_t *body, gen_request *r, api_error *e) {
    json_t *v = json_object_get(body, "prompt");
    if (!v) {
        api_error_set(e, 400, "invalid_request_error", NULL, "prompt", "missing required parameter 'prompt'");
        return false;
    }
    if (json_is_array(v) && json_array_size(v) == 1 &&
        (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0))))
        v = json_array_get(v, 0);
    if (json_is_string(v)) {
        r->prompt = copy_string(v, "prompt", e);
        return r->prompt != NULL;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad_param(e, "prompt", "'%s' must be a string or an array of token ids (one prompt per request)%s", "");
    size_t n = json_array_size(v);
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *id = json_array_get(v, i);
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
            return bad_param(e, "prompt", "'%s' must be a string or an array of token ids (one prompt per request)%s", "");
        r->prompt_ids[i] = (int32_t)json_integer_value(id);
    }
    r->n_prompt_ids = n;
    return true;
}

bool request_parse(const char *body, size_t len, request_kind kind, gen_request *r, api_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sampling = greta_sampler_default_params();
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        api_error_set(e, 400, "invalid_request_error", NULL, NULL, "the body is not valid JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
        return false;
    }
    bool ok = false;
    json_t *stream_options = NULL;
    if (!json_is_object(root)) {
        api_error_set(e, 400, "invalid_request_error", NULL, NULL, "the body must be a JSON object");
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        api_error_set(e, 400, "invalid_request_error", NULL, "model", "missing required parameter 'model'");
        goto done;
    }
    if (!(r->model = copy_string(model, "model", e))) goto done;
    if (!check_unsupported(root, e) || !parse_sampling(root, r, e) || !parse_stop(root, r, e)) goto done;
    if (!get_bool(root, "stream", &r->stream, e)) goto done;
    stream_options = json_object_get(root, "stream_options");
    if (stream_options && !json_is_null(stream_options)) {
        if (!json_is_object(stream_options)) {
            bad_param(e, "stream_options", "'%s' must be an object%s", "");
            goto done;
        }
        if (!get_bool(stream_options, "include_usage", &r->include_usage, e)) goto done;
    }
    ok = kind == REQ_CHAT ? parse_messages(root, r, e) : parse_prompt(root, r, e);
done:
    json_decref(root);
    if (!ok) request_free(r);
    return ok;
}

void request_free(gen_request *r) {
    free(r->model);
    for (size_t i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->stops);
    for (size_t i = 0; r->messages && i < r->n_messages; i++) {
        free((char *)r->messages[i].role);
        free((char *)r->messages[i].content);
    }
    free(r->messages);
    free(r->prompt);
    free(r->prompt_ids);
    request_kind kind = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = kind;
}
