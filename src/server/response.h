/* response.h: the JSON bodies the server sends, built with jansson in the
 * OpenAI formats: error objects, completions, streamed chunks, the model
 * list. Every function returns a malloc'ed NUL-terminated compact JSON
 * text (free()), or NULL on out of memory or text that is not UTF-8. */
#ifndef GRETA_SERVER_RESPONSE_H
#define GRETA_SERVER_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "server/request.h"

/* What identifies one response: "chatcmpl-..." / "cmpl-...", its creation
 * time, the model id. */
typedef struct {
    request_kind kind;
    const char *id;
    int64_t created;
    const char *model;
} response_meta;

/* {"error": {"message", "type", "param", "code"}} */
char *response_error(const api_error *e);

/* A whole completion: chat.completion (message) or text_completion (text),
 * finish_reason "stop" or "length", usage counts. */
char *response_completion(const response_meta *meta, const char *text, size_t len, const char *finish_reason,
                          int32_t prompt_tokens, int32_t completion_tokens);

/* One streamed chunk. Chat: the first chunk carries role "assistant"
 * (first_chunk), later ones delta.content; a final chunk has an empty
 * delta and finish_reason. Completion: choices[0].text. finish_reason
 * NULL = null. */
char *response_chunk(const response_meta *meta, const char *text, size_t len, int first_chunk,
                     const char *finish_reason);

/* The last chunk when stream_options.include_usage: empty choices, usage. */
char *response_usage_chunk(const response_meta *meta, int32_t prompt_tokens, int32_t completion_tokens);

/* {"object":"list","data":[{"id","object":"model","created","owned_by"}]} */
char *response_models(const char *model_id, int64_t created, int32_t n_ctx);

#endif
