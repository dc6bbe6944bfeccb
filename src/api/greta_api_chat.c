/* greta_api_chat.c: greta_chat_apply, the chat-template entry of greta.h
 * (a file of its own so programs that never render templates do not link
 * the template interpreter). */
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "base/errors.h"
#include "text/chat.h"

/* The template text for template_override (see greta.h), or NULL with a
 * line in err. */
static const char *pick_template(const greta_model *model, const char *override, char *err, size_t err_size) {
    if (!override) {
        if (!model->chat_template)
            format_error(err, err_size, "the model has no chat template (tokenizer.chat_template)");
        return model->chat_template;
    }
    if (strstr(override, "{{") || strstr(override, "{%")) return override;
    const char *builtin = chat_builtin_template(override);
    if (!builtin) {
        char names[256] = "";
        for (size_t i = 0; i < chat_builtin_count(); i++) {
            if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, chat_builtin_name(i), sizeof names - strlen(names) - 1);
        }
        format_error(err, err_size, "unknown chat template '%.64s' (built-in: %s)", override, names);
    }
    return builtin;
}

greta_status greta_chat_apply(const greta_model *model, const greta_chat_message *messages, size_t n,
                              bool add_generation_prompt, const char *template_override, char **out, char *err,
                              size_t err_size) {
    if (!model || !out || (!messages && n > 0)) {
        format_error(err, err_size, "greta_chat_apply: NULL argument");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!messages[i].role) {
            format_error(err, err_size, "chat message %zu has no role", i);
            return GRETA_ERR_INVALID_ARGUMENT;
        }
    }
    const char *text = pick_template(model, template_override, err, err_size);
    if (!text) return GRETA_ERR_TEMPLATE;
    chat_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) {
        format_error(err, err_size, "chat template: out of memory");
        return GRETA_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) msgs[i] = (chat_message){messages[i].role, messages[i].content};
    const char *bos = NULL, *eos = NULL;
    if (model->tok) {
        int32_t b = tokenizer_bos(model->tok), e = tokenizer_eos(model->tok);
        if (b >= 0) bos = tokenizer_token_text(model->tok, b);
        if (e >= 0) eos = tokenizer_token_text(model->tok, e);
    }
    char why[400] = "";
    bool ok = chat_render(text, msgs, n, add_generation_prompt, bos, eos, out, why, sizeof why);
    free(msgs);
    if (!ok) {
        format_error(err, err_size, "%s", why);
        return GRETA_ERR_TEMPLATE;
    }
    return GRETA_OK;
}

greta_status greta_chat_check(const greta_model *model, const char *template_override, char *err,
                              size_t err_size) {
    if (!model) {
        format_error(err, err_size, "greta_chat_check: model is NULL");
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    const char *text = pick_template(model, template_override, err, err_size);
    if (!text) return GRETA_ERR_TEMPLATE;
    char why[400] = "";
    if (!chat_template_check(text, why, sizeof why)) {
        format_error(err, err_size, "%s", why);
        return GRETA_ERR_TEMPLATE;
    }
    return GRETA_OK;
}
