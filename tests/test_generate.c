/* test_generate.c: greta_generate (include/greta.h) on the default model
 * against Hugging Face transformers' greedy generations
 * (tests/fixtures/hf/hf_greedy.json, scripts/fixtures/gen_hf_fixtures.py):
 * the text up to the end-of-generation token, -n limits, stop strings cut
 * where the fixture's text holds them, a full context, UTF-8-safe pieces
 * (checked with a validator written here), reuse of the KV cache, and the
 * abort callback stopping eval and generate within one layer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "greta.h"
#include "support/check.h"

/* Under ASan+UBSan the model runs ~10x slower: the cases that only add
 * prompts (chat_system's EOS, unicode's 16 tokens, math's stop) are left to
 * the normal build. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

/* ---- fixture ---- */

typedef struct {
    const char *name;
    int32_t *prompt;
    size_t n_prompt;
    const char *answer_text;       /* generated text up to the first EOS */
    const char *generated_text_16; /* the first 16 generated tokens */
    int first_eos_step;
    int32_t generated_ids[64];
    size_t n_generated_ids;
} hf_case;

static bool load_case(json_t *doc, const char *name, hf_case *c) {
    json_t *prompts = json_object_get(doc, "prompts");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        json_t *p = json_array_get(prompts, i);
        if (strcmp(json_string_value(json_object_get(p, "name")), name) != 0) continue;
        memset(c, 0, sizeof *c);
        c->name = name;
        json_t *ids = json_object_get(p, "prompt_ids");
        c->n_prompt = json_array_size(ids);
        c->prompt = malloc(c->n_prompt * sizeof *c->prompt);
        for (size_t k = 0; k < c->n_prompt; k++) c->prompt[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        json_t *gen = json_object_get(p, "generated_ids");
        for (size_t k = 0; k < json_array_size(gen) && k < 64; k++)
            c->generated_ids[c->n_generated_ids++] = (int32_t)json_integer_value(json_array_get(gen, k));
        c->answer_text = json_string_value(json_object_get(p, "answer_text"));
        c->generated_text_16 = json_string_value(json_object_get(p, "generated_text_16"));
        c->first_eos_step = (int)json_integer_value(json_object_get(p, "first_eos_step"));
        return c->prompt && c->answer_text && c->generated_text_16;
    }
    return false;
}

/* ---- an independent UTF-8 check (RFC 3629: no overlongs, no surrogates, <= U+10FFFF) ---- */

static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        unsigned min = len == 1 ? 0 : len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

/* ---- what the callbacks saw ---- */

typedef struct {
    char text[8192];
    size_t len;
    int pieces;
    bool all_valid_utf8;
    int32_t tokens[512];
    int n_tokens;
    int quit_after_pieces; /* on_piece returns false at this piece (0 = never) */
    int calls_after_quit;  /* callbacks made after one returned false */
    bool quit;
    /* abort */
    int abort_after_polls; /* the abort callback returns true from this poll on (0 = never) */
    int abort_at_token;    /* on_token sets the abort flag at this token index (-1 = never) */
    bool abort_flag;
    int polls;
    int polls_after_flag;
} sink;

static void sink_init(sink *s) {
    memset(s, 0, sizeof *s);
    s->all_valid_utf8 = true;
    s->abort_at_token = -1;
}

static bool on_piece(const char *text, size_t len, void *user_data) {
    sink *s = user_data;
    if (s->quit) s->calls_after_quit++;
    s->pieces++;
    if (!valid_utf8((const unsigned char *)text, len)) s->all_valid_utf8 = false;
    if (len == 0) s->all_valid_utf8 = false; /* empty pieces are not delivered */
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    if (s->quit_after_pieces && s->pieces == s->quit_after_pieces) {
        s->quit = true;
        return false;
    }
    return true;
}

static bool on_token(greta_session *session, int32_t token, void *user_data) {
    (void)session;
    sink *s = user_data;
    if (s->quit) s->calls_after_quit++;
    if (s->n_tokens < 512) s->tokens[s->n_tokens] = token;
    if (s->n_tokens == s->abort_at_token) s->abort_flag = true;
    s->n_tokens++;
    return true;
}

static bool abort_cb(void *user_data) {
    sink *s = user_data;
    s->polls++;
    if (s->abort_flag) s->polls_after_flag++;
    return s->abort_flag || (s->abort_after_polls && s->polls >= s->abort_after_polls);
}

static greta_generate_params greedy_params(sink *s, int32_t max_tokens) {
    greta_generate_params gp = greta_generate_default_params();
    gp.sampling.greedy = true;
    gp.max_tokens = max_tokens;
    gp.on_piece = on_piece;
    gp.on_token = on_token;
    gp.user_data = s;
    return gp;
}

static greta_session *new_session(greta_model *model, int32_t n_ctx) {
    greta_session_params sp = greta_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = 2;
    sp.precision = GRETA_PRECISION_F32; /* equal to HF's greedy text: the exact path, pinned */
    greta_session *s = NULL;
    char err[512] = "";
    greta_status st = greta_session_new(model, &sp, &s, err, sizeof err);
    CHECK(st == GRETA_OK, "session of %d positions: %s", n_ctx, st == GRETA_OK ? "ok" : err);
    return s;
}

/* ---- tests ---- */

/* Up to the end-of-generation token: HF's answer text and ids, EOS not delivered. */
static void test_eos(greta_model *model, const hf_case *c) {
    greta_session *session = new_session(model, 512);
    if (!session) return;
    sink s;
    sink_init(&s);
    greta_generate_params gp = greedy_params(&s, 64);
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK, "%s: generate: %s", c->name, st == GRETA_OK ? "ok" : greta_session_error(session));
    CHECK(r.reason == GRETA_FINISH_EOS, "%s: finish reason %s (want eos)", c->name, greta_finish_reason_name(r.reason));
    CHECK(r.n_generated == c->first_eos_step, "%s: %d tokens before EOS (HF: %d)", c->name, r.n_generated,
          c->first_eos_step);
    CHECK(strcmp(s.text, c->answer_text) == 0, "%s: text equals HF's answer: '%s'", c->name, s.text);
    bool ids_equal = s.n_tokens == c->first_eos_step + 1;
    for (int i = 0; ids_equal && i < s.n_tokens; i++) ids_equal = s.tokens[i] == c->generated_ids[i];
    CHECK(ids_equal, "%s: on_token saw HF's %d ids, the EOS id last (saw %d)", c->name, c->first_eos_step + 1,
          s.n_tokens);
    CHECK(greta_token_is_eog(model, s.tokens[s.n_tokens - 1]), "%s: the last token seen is end-of-generation",
          c->name);
    CHECK(r.n_prompt == (int32_t)c->n_prompt && r.n_evaluated == (int32_t)c->n_prompt && r.n_reused == 0,
          "%s: prompt %d, evaluated %d, reused %d", c->name, r.n_prompt, r.n_evaluated, r.n_reused);
    /* every generated token but the EOS was evaluated after the prompt */
    CHECK(greta_pos(session) == (int32_t)c->n_prompt + r.n_generated, "%s: position %d after generation",
          c->name, greta_pos(session));
    CHECK(s.all_valid_utf8, "%s: every piece is non-empty valid UTF-8", c->name);
    greta_session_free(session);
}

/* -n 16: HF's first 16 tokens; then the same prompt again reuses the cache. */
static void test_length_and_reuse(greta_model *model, const hf_case *c) {
    greta_session *session = new_session(model, 512);
    if (!session) return;
    sink s;
    sink_init(&s);
    greta_generate_params gp = greedy_params(&s, 16);
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_LENGTH && r.n_generated == 16,
          "%s: -n 16 ends by length after 16 tokens (%s, %d)", c->name, greta_finish_reason_name(r.reason),
          r.n_generated);
    CHECK(strcmp(s.text, c->generated_text_16) == 0, "%s: 16 tokens equal HF's text: '%s'", c->name, s.text);
    CHECK(s.all_valid_utf8, "%s: every piece is non-empty valid UTF-8", c->name);
    CHECK(greta_pos(session) == (int32_t)c->n_prompt + 15, "%s: the 16th token is not evaluated (position %d)",
          c->name, greta_pos(session));

    /* The same prompt again: the cache holds it (and 15 generated tokens);
     * the last prompt token is evaluated again for its logits. */
    sink_init(&s);
    gp = greedy_params(&s, 16);
    st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.n_reused == (int32_t)c->n_prompt - 1 && r.n_evaluated == 1,
          "%s: second run reuses %d of %zu prompt tokens, evaluates %d", c->name, r.n_reused, c->n_prompt,
          r.n_evaluated);
    CHECK(strcmp(s.text, c->generated_text_16) == 0, "%s: and generates the same text: '%s'", c->name, s.text);

    /* max_tokens 0: the prompt is evaluated, nothing generated */
    sink_init(&s);
    gp = greedy_params(&s, 0);
    st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_LENGTH && r.n_generated == 0 && s.pieces == 0 &&
              s.n_tokens == 0,
          "%s: max_tokens 0: length, nothing sampled (%d tokens, %d pieces)", c->name, r.n_generated, s.pieces);
    greta_session_free(session);
}

/* A context with room for 3 more positions: 4 tokens (the last not evaluated), context_full. */
static void test_context_full(greta_model *model, const hf_case *c) {
    greta_session *session = new_session(model, (int32_t)c->n_prompt + 3);
    if (!session) return;
    sink s;
    sink_init(&s);
    greta_generate_params gp = greedy_params(&s, -1);
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_CONTEXT_FULL && r.n_generated == 4,
          "%s: context of prompt + 3: context_full after 4 tokens (%s, %d)", c->name,
          greta_finish_reason_name(r.reason), r.n_generated);
    CHECK(strncmp(s.text, c->answer_text, s.len) == 0 && s.len > 0, "%s: the text '%s' begins HF's answer", c->name,
          s.text);
    CHECK(greta_pos(session) == greta_session_n_ctx(session), "%s: the context is full (%d of %d)", c->name,
          greta_pos(session), greta_session_n_ctx(session));

    /* a prompt longer than the context is an error naming the step */
    greta_session *small = new_session(model, (int32_t)c->n_prompt - 1);
    if (small) {
        st = greta_generate(small, c->prompt, c->n_prompt, &gp, &r);
        CHECK(st == GRETA_ERR_CONTEXT_FULL && strncmp(greta_session_error(small), "prompt: ", 8) == 0,
              "%s: a prompt longer than the context: %s: %s", c->name, greta_status_string(st),
              greta_session_error(small));
        greta_session_free(small);
    }
    greta_session_free(session);
}

/* Stop strings: the text ends just before the first occurrence in HF's text. */
static void test_stop(greta_model *model, const hf_case *c, const char *stop) {
    const char *at = strstr(c->answer_text, stop);
    CHECK(at != NULL, "%s: the fixture's answer holds the stop string '%s'", c->name, stop);
    if (!at) return;
    greta_session *session = new_session(model, 512);
    if (!session) return;
    sink s;
    sink_init(&s);
    greta_generate_params gp = greedy_params(&s, 64);
    const char *stops[2] = {"never appears in the answer", stop};
    gp.stops = stops;
    gp.n_stops = 2;
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    size_t want = (size_t)(at - c->answer_text);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_STOP, "%s: stop '%s': finish reason %s", c->name, stop,
          greta_finish_reason_name(r.reason));
    CHECK(s.len == want && strncmp(s.text, c->answer_text, want) == 0,
          "%s: text is HF's up to the stop string (%zu bytes): '%s'", c->name, want, s.text);
    CHECK(s.all_valid_utf8, "%s: pieces are valid UTF-8", c->name);
    greta_session_free(session);
}

/* A callback returning false stops generation: aborted, no further callbacks. */
static void test_piece_quit(greta_model *model, const hf_case *c) {
    greta_session *session = new_session(model, 512);
    if (!session) return;
    sink s;
    sink_init(&s);
    s.quit_after_pieces = 3;
    greta_generate_params gp = greedy_params(&s, 32);
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_ABORTED, "%s: on_piece false: aborted (%s)", c->name,
          greta_finish_reason_name(r.reason));
    CHECK(s.pieces == 3 && s.calls_after_quit == 0, "%s: 3 pieces, %d callbacks after the refusal", c->name,
          s.calls_after_quit);
    greta_session_free(session);
}

/* Abort: eval stops before the next layer; the session stays usable. */
static void test_abort_eval(greta_model *model, const hf_case *c) {
    greta_model_info info;
    greta_model_get_info(model, &info);
    greta_session *session = new_session(model, 512);
    greta_session *fresh = new_session(model, 512);
    if (!session || !fresh) {
        greta_session_free(session);
        greta_session_free(fresh);
        return;
    }
    sink s;
    sink_init(&s);
    s.abort_after_polls = 3;
    greta_session_set_abort(session, abort_cb, &s);
    greta_status st = greta_eval(session, c->prompt, c->n_prompt);
    CHECK(st == GRETA_ERR_CANCELLED, "eval with an abort at the 3rd poll: %s", greta_status_string(st));
    CHECK(s.polls == 3, "the forward stopped at the poll that asked (%d polls; one per layer, %d layers)", s.polls,
          info.n_layer);
    CHECK(greta_pos(session) == 0 && greta_logits(session) == NULL, "aborted eval: position %d, no logits",
          greta_pos(session));
    /* no abort: every layer polls once */
    sink_init(&s);
    st = greta_eval(session, c->prompt, c->n_prompt);
    CHECK(st == GRETA_OK && s.polls == info.n_layer, "eval again: %s, %d polls for %d layers",
          greta_status_string(st), s.polls, info.n_layer);
    greta_session_set_abort(session, NULL, NULL);
    CHECK(greta_eval(fresh, c->prompt, c->n_prompt) == GRETA_OK, "fresh session eval");
    const float *a = greta_logits(session), *b = greta_logits(fresh);
    CHECK(a && b && memcmp(a, b, (size_t)info.vocab_size * sizeof(float)) == 0,
          "logits after an aborted eval equal a fresh session's, bit for bit");
    greta_session_free(session);
    greta_session_free(fresh);
}

/* Abort during generation: set while token k is handled, honoured at the
 * very next poll (the first layer of its decode step). */
static void test_abort_generate(greta_model *model, const hf_case *c) {
    greta_session *session = new_session(model, 512);
    if (!session) return;
    sink s;
    sink_init(&s);
    s.abort_at_token = 5;
    greta_session_set_abort(session, abort_cb, &s);
    greta_generate_params gp = greedy_params(&s, 32);
    greta_generate_result r;
    greta_status st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_ABORTED, "generate: abort -> %s (%s)",
          greta_finish_reason_name(r.reason), greta_status_string(st));
    CHECK(r.n_generated == 6 && s.n_tokens == 6, "stopped within the step: %d generated, %d sampled (want 6)",
          r.n_generated, s.n_tokens);
    CHECK(s.polls_after_flag == 1, "one poll after the request (%d)", s.polls_after_flag);
    CHECK(strncmp(s.text, c->answer_text, s.len) == 0, "the text so far begins HF's answer: '%s'", s.text);
    /* an abort already requested: the prompt is not evaluated */
    sink_init(&s);
    s.abort_after_polls = 1;
    st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_OK && r.reason == GRETA_FINISH_ABORTED && r.n_evaluated == 0 && r.n_generated == 0,
          "abort during the prompt: %s, %d evaluated, %d generated", greta_finish_reason_name(r.reason),
          r.n_evaluated, r.n_generated);
    greta_session_free(session);
}

static void test_errors(greta_model *model, const hf_case *c) {
    greta_generate_result r;
    CHECK(greta_generate(NULL, c->prompt, c->n_prompt, NULL, &r) == GRETA_ERR_INVALID_ARGUMENT, "NULL session");
    greta_session *session = new_session(model, 512);
    if (!session) return;
    CHECK(greta_generate(session, NULL, 3, NULL, &r) == GRETA_ERR_INVALID_ARGUMENT, "NULL prompt with a length");
    greta_status st = greta_generate(session, NULL, 0, NULL, &r);
    CHECK(st == GRETA_ERR_STATE && strcmp(greta_session_error(session),
                                          "sampling: no logits: nothing evaluated since the session began or was "
                                          "rewound") == 0,
          "no prompt and no logits: %s: %s", greta_status_string(st), greta_session_error(session));
    greta_generate_params gp = greta_generate_default_params();
    gp.sampling.top_p = 0.0f; /* invalid */
    st = greta_generate(session, c->prompt, c->n_prompt, &gp, &r);
    CHECK(st == GRETA_ERR_INVALID_ARGUMENT && strncmp(greta_session_error(session), "sampling: the sampler rejected its parameters: ", 47) == 0,
          "bad sampler parameters: %s: %s", greta_status_string(st), greta_session_error(session));
    int32_t bad_prompt[2] = {1, 999999};
    st = greta_generate(session, bad_prompt, 2, NULL, &r);
    CHECK(st == GRETA_ERR_INVALID_ARGUMENT &&
              strcmp(greta_session_error(session),
                     "prompt: token id 999999 at index 1 is outside the vocabulary [0, 49152)") == 0,
          "a bad prompt token: %s: %s", greta_status_string(st), greta_session_error(session));
    CHECK(strcmp(greta_finish_reason_name(GRETA_FINISH_CONTEXT_FULL), "context_full") == 0 &&
              strcmp(greta_finish_reason_name(GRETA_FINISH_EOS), "eos") == 0,
          "finish reason names");
    /* model calls report into the caller's buffer */
    char err[256] = "";
    char *out = NULL;
    greta_chat_message msg = {"user", "hi"};
    st = greta_chat_apply(model, &msg, 1, true, "no-such-template", &out, err, sizeof err);
    CHECK(st == GRETA_ERR_TEMPLATE && strstr(err, "unknown chat template 'no-such-template'"),
          "chat_apply error in the caller's buffer: %s", err);
    int32_t bad = 1 << 30;
    char *text = NULL;
    size_t len = 0;
    err[0] = '\0';
    st = greta_detokenize(model, &bad, 1, false, &text, &len, err, sizeof err);
    CHECK(st == GRETA_ERR_TOKENIZER && err[0], "detokenize of a bad id: error in the caller's buffer: %s", err);
    greta_free(text);
    greta_session_free(session);
}

int main(void) {
    char path[4096], model_path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/hf/hf_greedy.json", check_repo_dir());
    snprintf(model_path, sizeof model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    CHECK(doc != NULL, "fixture %s loads (%s)", path, doc ? "ok" : jerr.text);
    if (access(model_path, R_OK) != 0) {
        CHECK(false, "MODEL MISSING: %s (run 'make fetch-model')", model_path);
        json_decref(doc);
        return check_finish("test_generate");
    }
    greta_model *model = NULL;
    char err[512] = "";
    greta_status st = greta_model_load(model_path, NULL, &model, err, sizeof err);
    CHECK(st == GRETA_OK, "load %s: %s", model_path, st == GRETA_OK ? "ok" : err);
    hf_case plain, chat, math, unicode;
    bool have = doc && model && load_case(doc, "plain", &plain) && load_case(doc, "chat_system", &chat) &&
                load_case(doc, "math", &math) && load_case(doc, "unicode", &unicode);
    CHECK(have, "fixture cases plain, chat_system, math, unicode");
    if (have) {
        test_eos(model, &plain);
        if (!SANITIZER_BUILD) test_eos(model, &chat);
        test_length_and_reuse(model, &plain);
        if (!SANITIZER_BUILD) /* 16 tokens end inside a character: HF repairs it as greta does */
            test_length_and_reuse(model, &unicode);
        test_context_full(model, &plain);
        if (!SANITIZER_BUILD) test_stop(model, &math, "= 72");
        test_stop(model, &plain, "12:");
        test_piece_quit(model, &plain);
        test_abort_eval(model, &plain);
        test_abort_generate(model, &plain);
        test_errors(model, &plain);
        free(plain.prompt);
        free(chat.prompt);
        free(math.prompt);
        free(unicode.prompt);
    }
    greta_model_free(model);
    json_decref(doc);
    return check_finish("test_generate");
}
