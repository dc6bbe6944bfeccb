/* request.h: an OpenAI-style request body parsed (jansson) and checked
 * into a gen_request, or an api_error saying what is wrong with it
 * (HTTP status, OpenAI error type, the parameter, a message). The body is
 * untrusted: every field's type and range is checked here. */
#ifndef GRETA_SERVER_REQUEST_H
#define GRETA_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"

/* What goes wrong with a request, as an OpenAI error object tells it. */
typedef struct {
    int status;            /* HTTP status */
    const char *type;      /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code;      /* NULL, or e.g. "context_length_exceeded", "model_not_found" */
    char param[64];        /* the offending parameter; "" = none */
    char message[512];
} api_error;

/* Fills e (printf-style message). */
void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

typedef enum {
    REQ_CHAT = 0,          /* POST /v1/chat/completions */
    REQ_COMPLETION,        /* POST /v1/completions */
} request_kind;

typedef struct {
    request_kind kind;
    char *model;                     /* the "model" field */
    bool stream;
    bool include_usage;              /* stream_options.include_usage */
    greta_sampler_params sampling;   /* greta's defaults for what the body leaves out */
    bool has_seed;
    uint64_t seed;
    int32_t max_tokens;              /* 0 = not given */
    char **stops;                    /* [n_stops] */
    size_t n_stops;
    /* REQ_CHAT */
    greta_chat_message *messages;    /* [n_messages]; role and content strings owned */
    size_t n_messages;
    /* REQ_COMPLETION: a text, or token ids */
    char *prompt;                    /* NULL when ids were given */
    int32_t *prompt_ids;             /* [n_prompt_ids] */
    size_t n_prompt_ids;
} gen_request;

/* Parses len bytes of body. On failure fills e (status 400) and leaves r
 * empty (request_free is still safe). */
bool request_parse(const char *body, size_t len, request_kind kind, gen_request *r, api_error *e);
void request_free(gen_request *r);

#endif
