/* cli_chat.c: greta chat -m MODEL: interactive multi-turn chat.
 *
 * Each turn renders the whole conversation with the chat template,
 * tokenizes it, keeps the longest prefix the KV cache already holds
 * (greta_session_tokens) and evaluates only the rest (greta_generate does
 * both). Ctrl-C stops the current answer within one layer of the forward,
 * also while the prompt is evaluated (what was said so far stays in the
 * conversation), not the program; while the conversation is rendered and
 * tokenized (nothing polls then) Ctrl-C ends greta chat. /reset forgets
 * the conversation, /quit or end of input quits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "greta.h"

/* Set by the SIGINT handler, cleared before every answer. */
static volatile sig_atomic_t chat_interrupted = 0;
/* 0 while the conversation is rendered and tokenized: nothing there polls
 * chat_interrupted, so Ctrl-C then ends the program. (The evaluation polls
 * it through the session's abort callback.) */
static volatile sig_atomic_t chat_answer_stoppable = 1;

static void on_sigint(int sig) {
    if (!chat_answer_stoppable) {
        signal(sig, SIG_DFL); /* re-raised: delivered when this handler returns */
        raise(sig);
        return;
    }
    chat_interrupted = 1;
}

/* The session's abort callback: Ctrl-C stops the answer within one layer. */
static bool chat_abort(void *user_data) {
    (void)user_data;
    return chat_interrupted != 0;
}

static void chat_usage(FILE *out) {
    fprintf(out,
            "usage: greta chat -m MODEL [options]\n"
            "  Reads one user message per line from stdin; the answer streams to stdout.\n"
            "  /reset forgets the conversation, /quit or /exit (or end of input) quits, /help lists\n"
            "  the commands, Ctrl-C stops an answer. Blank lines are skipped.\n"
            "  --system TEXT, --chat-template NAME|FILE, -n N (tokens per answer, default 1024),\n"
            "  and the sampling, context, thread, backend and --trace* flags of 'greta run' (docs/cli.md).\n");
}

typedef struct {
    greta_chat_message *messages; /* role and content strings malloc'ed (content) */
    size_t n, cap;
} conversation;

static bool conversation_add(conversation *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        greta_chat_message *grown = realloc(c->messages, cap * sizeof *grown);
        if (!grown) return false;
        c->messages = grown;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return false;
    memcpy(copy, content, len);
    copy[len] = '\0';
    c->messages[c->n].role = role;
    c->messages[c->n].content = copy;
    c->n++;
    return true;
}

static void conversation_truncate(conversation *c, size_t n) {
    while (c->n > n) free((char *)c->messages[--c->n].content);
}

/* Renders and tokenizes the conversation (greta_generate then evaluates
 * only what the cache does not hold). Returns 1 with the ids, 0 for a
 * turn-level problem (printed; the turn is dropped), -1 for a fatal error. */
static int chat_prompt(greta_model *model, greta_session *session, const cli_gen_options *o, const conversation *c,
                       int32_t **ids, size_t *n_ids) {
    char *rendered = NULL;
    char err[512] = "";
    if (greta_chat_apply(model, c->messages, c->n, true, o->chat_template, &rendered, err, sizeof err) != GRETA_OK) {
        cli_error("%s", err);
        return -1;
    }
    greta_status st = greta_tokenize(model, rendered, strlen(rendered), false, true, ids, n_ids, err, sizeof err);
    greta_free(rendered);
    if (st != GRETA_OK) {
        cli_error("tokenize: %s", err);
        return -1;
    }
    if (*n_ids == 0) {
        cli_error("chat template: the conversation renders to no tokens");
        return -1;
    }
    int32_t n_ctx = greta_session_n_ctx(session);
    if (*n_ids >= (size_t)n_ctx) {
        cli_error("chat: the conversation is %zu tokens, the context holds %d; /reset to start over", *n_ids,
                  n_ctx);
        return 0;
    }
    return 1;
}

typedef enum { CHAT_MESSAGE, CHAT_SKIP, CHAT_QUIT, CHAT_RESET, CHAT_HELP } chat_line_kind;

static const char chat_commands_help[] =
    "commands: /reset forgets the conversation, /quit or /exit quits, /help lists the commands";

/* What a line of input is: a message, blank, or a command. A line whose
 * first word (surrounding blanks ignored) is /reset, /quit, /exit or /help
 * is that command; a lone unknown /word is an error line (CHAT_SKIP), not a
 * message; any other line, "/usr/bin is a folder?" included, is a message. */
static chat_line_kind chat_classify(const char *line) {
    static const char *const blanks = " \t\r\n\v\f";
    const char *start = line + strspn(line, blanks);
    if (*start == '\0') return CHAT_SKIP;
    if (*start != '/') return CHAT_MESSAGE;
    size_t word = strcspn(start, blanks);
    const char *rest = start + word + strspn(start + word, blanks);
    static const struct { const char *name; chat_line_kind kind; } commands[] = {
        {"/quit", CHAT_QUIT}, {"/exit", CHAT_QUIT}, {"/reset", CHAT_RESET}, {"/help", CHAT_HELP}};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strlen(commands[i].name) != word || strncmp(start, commands[i].name, word) != 0) continue;
        if (*rest == '\0') return commands[i].kind;
        cli_error("chat: %s takes no argument (the line was not sent)", commands[i].name);
        return CHAT_SKIP;
    }
    if (*rest != '\0') return CHAT_MESSAGE;
    cli_error("chat: unknown command '%.*s' (the line was not sent); %s", (int)word, start, chat_commands_help);
    return CHAT_SKIP;
}

/* Strips a trailing newline (and CR). */
static size_t chomp(char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    return len;
}

int cli_chat(int argc, char **argv) {
    cli_gen_options o;
    cli_gen_options_init(&o);
    o.n_predict = 1024;
    for (int i = 1; i < argc; i++) {
        int flag = i;
        int r = cli_parse_gen_flag(&o, argc, argv, &i);
        if (r <= 0 || o.prompt || o.prompt_file || o.prompt_ids || o.dump_logits_dir || o.chat) {
            if (r == 0) cli_error("chat: unknown argument '%s' (try 'greta chat --help')", argv[flag]);
            else if (r > 0) cli_error("chat: %s is a 'greta run' flag", argv[flag]);
            cli_gen_options_free(&o);
            return 2;
        }
    }
    if (o.show_help) {
        chat_usage(stdout);
        cli_gen_options_free(&o);
        return 0;
    }
    if (!o.model_path) {
        cli_error("chat: no model (pass -m MODEL.gguf)");
        cli_gen_options_free(&o);
        return 2;
    }
    int rc = 1;
    conversation conv = {0};
    char *line = NULL;
    size_t line_cap = 0;
    greta_session *session = NULL;
    greta_model *model = cli_load_model(o.model_path);
    if (!model) goto done;
    greta_model_info info;
    greta_model_get_info(model, &info);
    if (!info.has_vocab) {
        cli_error("chat: the model has no vocabulary (chat needs text; 'greta run --ids' runs on token ids)");
        goto done;
    }
    if (!greta_model_chat_template(model) && !o.chat_template) {
        cli_error("chat: the model has no chat template (pass --chat-template NAME|FILE)");
        goto done;
    }
    char check_err[512] = "";
    if (greta_chat_check(model, o.chat_template, check_err, sizeof check_err) != GRETA_OK) {
        cli_error("%s", check_err); /* at start, not after the first message */
        goto done;
    }
    if (!(session = cli_new_session(model, &o, false))) goto done;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: Ctrl-C at the prompt interrupts getline */
    greta_session_set_abort(session, chat_abort, NULL);
    size_t base = 0;
    if (o.system && !conversation_add(&conv, "system", o.system, strlen(o.system))) goto oom;
    base = conv.n;
    bool interactive = isatty(STDIN_FILENO) == 1;
    for (;;) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        chat_interrupted = 0;
        errno = 0;
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) {
            if (errno == EINTR) {
                clearerr(stdin);
                fputc('\n', stdout);
                continue;
            }
            if (ferror(stdin)) { /* a directory, a closed descriptor: not an end of input */
                cli_error("chat: stdin: %s", strerror(errno ? errno : EIO));
                goto done;
            }
            break; /* end of input */
        }
        size_t len = chomp(line, (size_t)got);
        if (memchr(line, '\0', len)) {
            cli_error("chat: the line contains a NUL byte (not sent)");
            continue;
        }
        /* a message that cannot fit the context is refused for this turn (a 20 MB line
         * used to end the session with a template error) */
        size_t max_message = (size_t)greta_session_n_ctx(session) * CLI_PROMPT_BYTES_PER_POSITION;
        if (len > max_message) {
            cli_error("chat: the message is %zu bytes, more than a context of %d can hold (%zu); not sent", len,
                      greta_session_n_ctx(session), max_message);
            continue;
        }
        chat_line_kind kind = chat_classify(line);
        if (kind == CHAT_SKIP) continue;
        if (kind == CHAT_QUIT) break;
        if (kind == CHAT_HELP) {
            fprintf(stderr, "[%s]\n", chat_commands_help);
            continue;
        }
        if (kind == CHAT_RESET) {
            conversation_truncate(&conv, base);
            greta_rewind(session, 0);
            fprintf(stderr, "[conversation reset]\n");
            continue;
        }
        if (!conversation_add(&conv, "user", line, len)) goto oom;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        chat_answer_stoppable = 0;
        int pre = chat_prompt(model, session, &o, &conv, &ids, &n_ids);
        chat_answer_stoppable = 1;
        if (pre < 0) {
            greta_free(ids);
            goto done;
        }
        if (pre == 0) {
            greta_free(ids);
            conversation_truncate(&conv, conv.n - 1);
            continue;
        }
        cli_gen_result result;
        bool ok = cli_generate(model, session, &o, ids, n_ids, &result);
        greta_free(ids);
        fputc('\n', stdout);
        fflush(stdout);
        if (ok && !conversation_add(&conv, "assistant", result.text, result.text_len)) ok = false;
        if (ok) {
            const greta_generate_result *g = &result.r;
            fprintf(stderr, "[%d prompt tokens, %d evaluated (%d reused from the cache); %d generated at %.1f tok/s%s]\n",
                    g->n_prompt, g->n_evaluated, g->n_reused, g->n_generated,
                    g->generate_seconds > 0 ? g->n_generated / g->generate_seconds : 0.0,
                    g->reason == GRETA_FINISH_ABORTED ? "; interrupted"
                    : g->reason == GRETA_FINISH_CONTEXT_FULL ? "; context full" : "");
        }
        free(result.text);
        if (!ok) goto done;
    }
    rc = 0;
    goto done;
oom:
    cli_error("chat: out of memory");
done:
    free(line);
    conversation_truncate(&conv, 0);
    free(conv.messages);
    if (session && !cli_end_session(session) && rc == 0) rc = 1;
    greta_model_free(model);
    cli_gen_options_free(&o);
    return rc;
}
