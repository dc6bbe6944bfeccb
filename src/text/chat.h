/* chat.h: chat templates. Renders a model's tokenizer.chat_template (a
 * Jinja2 template) for a conversation, byte for byte as Hugging Face
 * transformers' apply_chat_template(..., tokenize=False) does, using a small
 * Jinja-subset interpreter (src/jinja.c; docs/chat.md lists what it supports).
 *
 * The template text is untrusted (it comes from a model file): rendering is
 * bounded (nesting depth, loop iterations, evaluation steps, output size)
 * and every problem is a returned one-line error with the line:column of the
 * template where it happened, never a crash. raise_exception(msg) inside a
 * template becomes an error carrying msg. */
#ifndef GRETA_CHAT_H
#define GRETA_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *role;    /* "system", "user", "assistant", ... (NUL-terminated UTF-8) */
    const char *content; /* NUL-terminated UTF-8; NULL renders as Jinja none */
} chat_message;

typedef struct {
    bool add_generation_prompt;
    const char *bos_token;  /* NULL = not passed to the template (undefined) */
    const char *eos_token;  /* NULL = not passed to the template (undefined) */
    /* JSON array of tool schemas passed as `tools` (NULL = none, as
     * transformers passes tools=None). Must parse as a JSON array. */
    const char *tools_json;
    /* strftime_now(fmt) formats this instant (seconds since the epoch,
     * in UTC) when use_fixed_time, else the current local time. */
    bool use_fixed_time;
    int64_t fixed_time;
    /* Limits (0 = the default given in docs/chat.md). */
    size_t max_output_bytes;
    uint64_t max_work; /* work units (text/jinja/jinja.h, docs/chat.md) */
} chat_options;

/* Default options: no generation prompt, no tokens, current time, default limits. */
chat_options chat_default_options(void);

/* Renders template_text for messages[0..n_messages-1]. On success *out is a
 * malloc'ed NUL-terminated string (free() it) and true is returned. On
 * failure returns false, *out = NULL and err holds one line, e.g.
 * "chat template 3:14: unexpected '}}' (expected an expression)". */
bool chat_render_opts(const char *template_text, const chat_message *messages,
                      size_t n_messages, const chat_options *options, char **out,
                      char *err, size_t err_size);

/* Shorthand for chat_render_opts with the usual arguments. */
bool chat_render(const char *template_text, const chat_message *messages, size_t n_messages,
                 bool add_generation_prompt, const char *bos_token, const char *eos_token,
                 char **out, char *err, size_t err_size);

/* Parses template_text only (no rendering): false + err if it is not a
 * template greta can run. Useful to reject a model's template at load. */
bool chat_template_check(const char *template_text, char *err, size_t err_size);

/* Built-in templates for --chat-template NAME: the official template texts
 * of "chatml", "llama2", "llama3", "llama3.1", "mistral", "gemma", "phi3",
 * "zephyr". Returns the template text or NULL for an unknown name. */
const char *chat_builtin_template(const char *name);

/* The built-in names, for listing: index 0..chat_builtin_count()-1. */
size_t chat_builtin_count(void);
const char *chat_builtin_name(size_t index);

#endif
