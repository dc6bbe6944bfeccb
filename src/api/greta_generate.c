/* greta_generate.c: greta_generate, the generation loop of include/greta.h
 * that the CLI (run, chat) and the server share: the prompt with KV-cache
 * reuse, sampling, end-of-generation tokens, streaming detokenization, stop
 * strings, max tokens, a full context and abort. Built only on the public
 * calls of greta_api.c (eval, sample, detok, stop), so its behaviour is the
 * sum of theirs. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *greta_finish_reason_name(greta_finish_reason reason) {
    switch (reason) {
    case GRETA_FINISH_EOS: return "eos";
    case GRETA_FINISH_STOP: return "stop";
    case GRETA_FINISH_LENGTH: return "length";
    case GRETA_FINISH_CONTEXT_FULL: return "context_full";
    case GRETA_FINISH_ABORTED: return "aborted";
    }
    return "unknown";
}

greta_generate_params greta_generate_default_params(void) {
    greta_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampling = greta_sampler_default_params();
    p.max_tokens = 256;
    return p;
}

/* Puts "STEP: " before the session's message (copied first: the message
 * is formatted into the same buffer). Returns status. */
static greta_status fail_at(greta_session *s, greta_status status, const char *step) {
    char message[GRETA_ERR_MAX];
    snprintf(message, sizeof message, "%s", greta_session_error(s));
    return greta_session_fail(s, status, "%s: %s", step, message);
}

static bool abort_requested(const greta_session *s) {
    return s->e->abort_fn && s->e->abort_fn(s->e->abort_data);
}

/* Keeps the longest prefix of prompt that the cache holds, rewinds to it
 * and evaluates the rest (at least the last token, for its logits). */
static greta_status eval_prompt(greta_session *s, const int32_t *prompt, size_t n, greta_generate_result *r) {
    int32_t n_ctx = greta_session_n_ctx(s);
    if (n > (size_t)n_ctx)
        return greta_session_fail(s, GRETA_ERR_CONTEXT_FULL, "prompt: the prompt is %zu tokens, longer than the context of %d",
                                  n, n_ctx);
    const int32_t *cached = greta_session_tokens(s);
    size_t n_cached = (size_t)greta_pos(s), common = 0;
    while (common < n_cached && common < n && cached[common] == prompt[common]) common++;
    if (common == n) common--;
    greta_status st = greta_rewind(s, (int32_t)common);
    if (st != GRETA_OK) return fail_at(s, st, "prompt");
    r->n_reused = (int32_t)common;
    double start = now_seconds();
    st = greta_eval(s, prompt + common, n - common);
    r->prompt_seconds = now_seconds() - start;
    if (st == GRETA_OK) r->n_evaluated = (int32_t)(n - common);
    else if (st != GRETA_ERR_CANCELLED) fail_at(s, st, "prompt");
    return st;
}

/* Where one generation stands: the streaming detokenizer and stop-string
 * matcher, and whether the caller still wants callbacks. */
typedef struct {
    greta_session *session;
    const greta_generate_params *params;
    greta_detok *detok;
    greta_stop *stop;
    bool stopped;       /* a stop string completed */
    bool caller_quit;   /* a callback returned false */
} generation;

/* Pushes text through the stop matcher and delivers what comes out. False
 * if the matcher failed (out of memory). */
static bool deliver(generation *g, const char *text, size_t len) {
    const char *out = NULL;
    size_t out_len = 0;
    if (greta_stop_push(g->stop, text, len, &out, &out_len, &g->stopped) != GRETA_OK) return false;
    if (out_len > 0 && g->params->on_piece && !g->caller_quit &&
        !g->params->on_piece(out, out_len, g->params->user_data))
        g->caller_quit = true;
    return true;
}

/* At the end: the detokenizer's held-back bytes, then the stop matcher's. */
static void deliver_rest(generation *g) {
    const char *tail = NULL, *out = NULL;
    size_t tail_len = 0, out_len = 0;
    if (g->detok && greta_detok_flush(g->detok, &tail, &tail_len) == GRETA_OK) deliver(g, tail, tail_len);
    if (g->stopped || g->caller_quit) return;
    if (greta_stop_flush(g->stop, &out, &out_len) == GRETA_OK && out_len > 0 && g->params->on_piece)
        g->params->on_piece(out, out_len, g->params->user_data);
}

/* One token: sample, check, deliver, evaluate. Sets *finished and
 * r->reason when generation ends here. */
static greta_status step(generation *g, int32_t i, greta_generate_result *r, bool *finished) {
    greta_session *s = g->session;
    const greta_generate_params *p = g->params;
    *finished = true;
    if (p->max_tokens >= 0 && i >= p->max_tokens) {
        r->reason = GRETA_FINISH_LENGTH;
        return GRETA_OK;
    }
    if (abort_requested(s)) {
        r->reason = GRETA_FINISH_ABORTED;
        return GRETA_OK;
    }
    int32_t tok = -1;
    greta_status st = greta_sample(s, &p->sampling, &tok);
    if (st != GRETA_OK) return fail_at(s, st, "sampling");
    if (p->on_token && !p->on_token(s, tok, p->user_data)) {
        g->caller_quit = true;
        r->reason = GRETA_FINISH_ABORTED;
        return GRETA_OK;
    }
    if (greta_token_is_eog(s->model, tok)) {
        r->reason = GRETA_FINISH_EOS;
        return GRETA_OK;
    }
    r->n_generated++;
    const char *piece = NULL;
    size_t piece_len = 0;
    char number[16]; /* without a vocabulary: the id in decimal, after a space from the second on */
    if (!g->detok) {
        piece_len = (size_t)snprintf(number, sizeof number, "%s%d", r->n_generated > 1 ? " " : "", tok);
        piece = number;
    } else if (greta_detok_push(g->detok, tok, &piece, &piece_len) != GRETA_OK) {
        return greta_session_fail(s, GRETA_ERR_TOKENIZER, "detokenizing token %d: failed", tok);
    }
    if (!deliver(g, piece, piece_len))
        return greta_session_fail(s, GRETA_ERR_NO_MEMORY, "generation: out of memory");
    if (g->caller_quit) {
        r->reason = GRETA_FINISH_ABORTED;
        return GRETA_OK;
    }
    if (g->stopped) {
        r->reason = GRETA_FINISH_STOP;
        return GRETA_OK;
    }
    if (p->max_tokens >= 0 && i + 1 == p->max_tokens) { /* the last token need not be evaluated */
        r->reason = GRETA_FINISH_LENGTH;
        return GRETA_OK;
    }
    if (greta_pos(s) >= greta_session_n_ctx(s)) {
        r->reason = GRETA_FINISH_CONTEXT_FULL;
        return GRETA_OK;
    }
    st = greta_eval(s, &tok, 1);
    if (st == GRETA_ERR_CANCELLED) {
        r->reason = GRETA_FINISH_ABORTED;
        return GRETA_OK;
    }
    if (st != GRETA_OK) return fail_at(s, st, "decode");
    *finished = false;
    return GRETA_OK;
}

greta_status greta_generate(greta_session *session, const int32_t *prompt, size_t n_prompt,
                            const greta_generate_params *params, greta_generate_result *result) {
    greta_generate_result local;
    greta_generate_result *r = result ? result : &local;
    memset(r, 0, sizeof *r);
    r->reason = GRETA_FINISH_ABORTED;
    if (!session) return GRETA_ERR_INVALID_ARGUMENT;
    greta_generate_params defaults = greta_generate_default_params();
    const greta_generate_params *p = params ? params : &defaults;
    if ((!prompt && n_prompt > 0) || (!p->stops && p->n_stops > 0))
        return greta_session_fail(session, GRETA_ERR_INVALID_ARGUMENT, "greta_generate: NULL argument");
    bool has_vocab = session->model->tok != NULL;
    if (!has_vocab && p->n_stops > 0)
        return greta_session_fail(session, GRETA_ERR_TOKENIZER, "stop strings need a vocabulary (the model has none)");
    r->n_prompt = (int32_t)n_prompt;
    if (n_prompt > 0) {
        greta_status st = eval_prompt(session, prompt, n_prompt, r);
        if (st == GRETA_ERR_CANCELLED) return GRETA_OK; /* reason: aborted */
        if (st != GRETA_OK) return st;
    }
    generation g = {session, p, has_vocab ? greta_detok_new(session->model, p->render_special) : NULL,
                    greta_stop_new(p->stops, p->n_stops), false, false};
    greta_status st = GRETA_OK;
    if ((has_vocab && !g.detok) || !g.stop) {
        st = greta_session_fail(session, GRETA_ERR_NO_MEMORY, "generation: out of memory");
    } else {
        double start = now_seconds();
        bool finished = false;
        for (int32_t i = 0; st == GRETA_OK && !finished; i++) st = step(&g, i, r, &finished);
        if (st == GRETA_OK && !g.stopped && !g.caller_quit) deliver_rest(&g);
        r->generate_seconds = now_seconds() - start;
    }
    greta_detok_free(g.detok);
    greta_stop_free(g.stop);
    return st;
}
