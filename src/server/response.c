/* response.c: OpenAI-format JSON bodies (see response.h). */
#include "server/response.h"

#include <jansson.h>

/* Takes the reference to root; NULL if root is NULL (a failed build). */
static char *dump(json_t *root) {
    if (!root) return NULL;
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

char *response_error(const api_error *e) {
    json_t *error = json_pack("{s:s, s:s, s:o, s:o}", "message", e->message, "type", e->type ? e->type : "server_error",
                              "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                              e->code ? json_string(e->code) : json_null());
    return dump(error ? json_pack("{s:o}", "error", error) : NULL);
}

static json_t *usage(int32_t prompt_tokens, int32_t completion_tokens) {
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)prompt_tokens, "completion_tokens",
                     (json_int_t)completion_tokens, "total_tokens", (json_int_t)prompt_tokens + completion_tokens);
}

static json_t *envelope(const response_meta *meta, const char *object, json_t *choices) {
    if (!choices) return NULL;
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "id", meta->id, "object", object, "created",
                     (json_int_t)meta->created, "model", meta->model, "system_fingerprint", "greta-" GRETA_VERSION,
                     "choices", choices);
}

char *response_completion(const response_meta *meta, const char *text, size_t len, const char *finish_reason,
                          int32_t prompt_tokens, int32_t completion_tokens) {
    json_t *content = json_stringn(text, len);
    if (!content) return NULL;
    json_t *choice = meta->kind == REQ_CHAT
        ? json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content", content,
                    "logprobs", "finish_reason", finish_reason)
        : json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "text", content, "logprobs", "finish_reason", finish_reason);
    json_t *root = envelope(meta, meta->kind == REQ_CHAT ? "chat.completion" : "text_completion",
                            choice ? json_pack("[o]", choice) : NULL);
    json_t *u = usage(prompt_tokens, completion_tokens);
    if (root && u && json_object_set_new(root, "usage", u) == 0) return dump(root);
    json_decref(root);
    return NULL;
}

char *response_chunk(const response_meta *meta, const char *text, size_t len, int first_chunk,
                     const char *finish_reason) {
    json_t *finish = finish_reason ? json_string(finish_reason) : json_null();
    json_t *choice = NULL;
    if (meta->kind == REQ_CHAT) {
        json_t *delta = json_object();
        if (delta && first_chunk) json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && (len || !finish_reason)) {
            json_t *content = json_stringn(text, len);
            if (!content) {
                json_decref(delta);
                json_decref(finish);
                return NULL;
            }
            json_object_set_new(delta, "content", content);
        }
        choice = delta ? json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason", finish)
                       : NULL;
    } else {
        json_t *content = json_stringn(text, len);
        choice = content ? json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "text", content, "logprobs", "finish_reason", finish)
                         : NULL;
    }
    return dump(envelope(meta, meta->kind == REQ_CHAT ? "chat.completion.chunk" : "text_completion",
                         choice ? json_pack("[o]", choice) : NULL));
}

char *response_usage_chunk(const response_meta *meta, int32_t prompt_tokens, int32_t completion_tokens) {
    json_t *root = envelope(meta, meta->kind == REQ_CHAT ? "chat.completion.chunk" : "text_completion", json_array());
    json_t *u = usage(prompt_tokens, completion_tokens);
    if (root && u && json_object_set_new(root, "usage", u) == 0) return dump(root);
    json_decref(root);
    return NULL;
}

char *response_models(const char *model_id, int64_t created, int32_t n_ctx) {
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:{s:I}}]}", "object", "list", "data", "id", model_id, "object",
                          "model", "created", (json_int_t)created, "owned_by", "greta", "meta", "n_ctx_slot",
                          (json_int_t)n_ctx));
}
