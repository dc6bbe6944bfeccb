/* server.c: the HTTP front end (see server.h).
 *
 * libmicrohttpd runs one thread per connection, so a handler may block: a
 * generation request is parsed (request.c), turned into prompt tokens
 * through greta.h (chat template, tokenizer), submitted to the scheduler,
 * and its thread then waits for the job, polling its socket so that a
 * client that leaves cancels its job at once. A streamed answer is a
 * response whose content callback blocks until the job has new text and
 * sends it as server-sent events. */
#include "server/server.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/page.h"
#include "server/request.h"
#include "server/response.h"

/* How often a waiting connection thread looks at its socket (seconds). */
#define POLL_INTERVAL 0.05

struct http_server {
    greta_model *model;
    scheduler *sched;
    server_metrics *metrics;
    server_config config;
    char *api_key;                /* owned copy */
    char *model_id;
    char *model_name;             /* general.name: accepted as a model id too */
    int32_t vocab_size;
    int64_t created;              /* start time (unix seconds) */
    struct MHD_Daemon *daemon;
    int listen_fd;                /* -1 once handed back and closed */
    int port;
    atomic_int in_flight;         /* requests begun and not completed */
    atomic_uint_fast64_t next_id; /* response ids and default seeds */
    atomic_bool draining;
};

/* One HTTP request (MHD's per-request pointer). */
typedef struct {
    http_server *srv;
    const char *endpoint;         /* metrics label */
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    bool answered;                /* a response was queued */
} request_ctx;

/* A streamed answer: owned by the MHD response (freed by its callback). */
typedef struct {
    http_server *srv;
    struct MHD_Connection *conn;
    sched_job *job;
    response_meta meta;
    char id[64];
    char model[256];
    bool include_usage;
    int32_t n_prompt;
    size_t text_sent;             /* bytes of job->text already sent */
    bool role_sent, finished;
    char *out;                    /* SSE bytes built, not yet handed to MHD */
    size_t out_len, out_off, out_cap;
} stream_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- responses ---- */

static enum MHD_Result send_body(request_ctx *ctx, struct MHD_Connection *conn, unsigned status, const char *content_type,
                                 const void *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (atomic_load(&ctx->srv->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    ctx->answered = true;
    metrics_count_request(ctx->srv->metrics, ctx->endpoint, (int)status);
    return r;
}

/* Sends json (taking it; NULL = out of memory: a fixed 500 body). */
static enum MHD_Result send_json(request_ctx *ctx, struct MHD_Connection *conn, unsigned status, char *json) {
    if (!json) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory building the response\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":null}}";
        return send_body(ctx, conn, 500, "application/json", oom, sizeof oom - 1);
    }
    enum MHD_Result r = send_body(ctx, conn, status, "application/json", json, strlen(json));
    free(json);
    return r;
}

static enum MHD_Result send_error(request_ctx *ctx, struct MHD_Connection *conn, const api_error *e) {
    return send_json(ctx, conn, (unsigned)e->status, response_error(e));
}

static enum MHD_Result fail(request_ctx *ctx, struct MHD_Connection *conn, int status, const char *type, const char *code,
                            const char *param, const char *message) {
    api_error e;
    api_error_set(&e, status, type, code, param, "%s", message);
    return send_error(ctx, conn, &e);
}

/* ---- connection checks ---- */

/* True when the client closed its end (or the socket failed). */
static bool client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return true;
    struct pollfd p = {.fd = info->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) < 0) return errno != EINTR;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* Compares in time that depends only on the key's length. */
static bool key_matches(const char *key, const char *given) {
    size_t key_len = strlen(key), given_len = strlen(given);
    unsigned diff = key_len != given_len;
    for (size_t i = 0; i < key_len; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
    return diff == 0;
}

static bool authorized(const http_server *srv, struct MHD_Connection *conn) {
    if (!srv->api_key) return true;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) return false;
    return key_matches(srv->api_key, auth + 7);
}

/* ---- generation requests ---- */

/* The prompt's tokens: the chat template then the tokenizer, or the
 * completion's text or ids. */
static bool build_prompt(http_server *srv, const gen_request *r, int32_t **ids, size_t *n_ids, api_error *e) {
    char err[512] = "";
    if (r->kind == REQ_CHAT) {
        char *rendered = NULL;
        greta_status st = greta_chat_apply(srv->model, r->messages, r->n_messages, true, NULL, &rendered, err, sizeof err);
        if (st != GRETA_OK) {
            api_error_set(e, 400, "invalid_request_error", NULL, "messages", "%s",
                          st == GRETA_ERR_NO_MEMORY ? "chat template: out of memory" : err);
            return false;
        }
        st = greta_tokenize(srv->model, rendered, strlen(rendered), false, true, ids, n_ids, NULL, 0);
        greta_free(rendered);
        if (st != GRETA_OK) {
            api_error_set(e, 500, "server_error", NULL, NULL, "tokenize: %s", greta_status_string(st));
            return false;
        }
        return true;
    }
    if (r->prompt) {
        greta_status st = greta_tokenize(srv->model, r->prompt, strlen(r->prompt), true, false, ids, n_ids, NULL, 0);
        if (st != GRETA_OK) {
            api_error_set(e, 500, "server_error", NULL, NULL, "tokenize: %s", greta_status_string(st));
            return false;
        }
        return true;
    }
    for (size_t i = 0; i < r->n_prompt_ids; i++) {
        if (r->prompt_ids[i] >= srv->vocab_size) {
            api_error_set(e, 400, "invalid_request_error", NULL, "prompt", "token id %d is outside the vocabulary (%d tokens)",
                          (int)r->prompt_ids[i], (int)srv->vocab_size);
            return false;
        }
    }
    *ids = malloc(r->n_prompt_ids * sizeof **ids);
    if (!*ids) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    memcpy(*ids, r->prompt_ids, r->n_prompt_ids * sizeof **ids);
    *n_ids = r->n_prompt_ids;
    return true;
}

/* A seed for a request that names none: different for every request. */
static uint64_t fresh_seed(http_server *srv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (atomic_fetch_add(&srv->next_id, 1) * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

/* Checks the request and makes its job (NULL after filling e). */
static sched_job *make_job(http_server *srv, const gen_request *r, int32_t *n_prompt, api_error *e) {
    if (strcmp(r->model, srv->model_id) != 0 && strcmp(r->model, srv->model_name) != 0) {
        api_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                      "the model '%.200s' does not exist; this server has '%.200s'", r->model, srv->model_id);
        return NULL;
    }
    int32_t n_ctx = sched_n_ctx(srv->sched);
    if (r->max_tokens > srv->config.max_tokens_limit) {
        api_error_set(e, 400, "invalid_request_error", NULL, "max_tokens", "max_tokens is %d; this server allows at most %d",
                      (int)r->max_tokens, (int)srv->config.max_tokens_limit);
        return NULL;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!build_prompt(srv, r, &ids, &n_ids, e)) return NULL;
    sched_job *job = NULL;
    if (n_ids == 0) {
        api_error_set(e, 400, "invalid_request_error", NULL, r->kind == REQ_CHAT ? "messages" : "prompt",
                      "the prompt is empty (no tokens to evaluate)");
    } else if (n_ids > (size_t)n_ctx) {
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", r->kind == REQ_CHAT ? "messages" : "prompt",
                      "the prompt is %zu tokens; the context holds %d", n_ids, (int)n_ctx);
    } else if (!(job = sched_job_new(ids, n_ids, (const char *const *)r->stops, r->n_stops))) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    } else {
        job->sampling = r->sampling;
        job->seed = r->has_seed ? r->seed : fresh_seed(srv);
        job->max_tokens = r->max_tokens > 0 ? r->max_tokens : srv->config.max_tokens_limit;
        *n_prompt = (int32_t)n_ids;
    }
    greta_free(ids);
    return job;
}

/* Waits until the job leaves the queue (until_done: until it is over).
 * False when the client left first (the job is then cancelled). */
static bool wait_job(http_server *srv, struct MHD_Connection *conn, sched_job *job, bool until_done) {
    for (;;) {
        sched_lock(srv->sched);
        bool ready = until_done ? job->state == JOB_DONE : job->state != JOB_QUEUED;
        if (!ready) {
            sched_wait_job(srv->sched, job, POLL_INTERVAL);
            ready = until_done ? job->state == JOB_DONE : job->state != JOB_QUEUED;
        }
        sched_unlock(srv->sched);
        if (ready) return true;
        if (client_gone(conn)) {
            sched_cancel(srv->sched, job);
            return false;
        }
    }
}

static const char *finish_reason(sched_finish finish) {
    return finish == FINISH_LENGTH ? "length" : "stop";
}

/* An ended job that did not finish normally, as an error (false if it did). */
static bool job_failure(const http_server *srv, const sched_job *job, api_error *e) {
    switch (job->finish) {
    case FINISH_QUEUE_TIMEOUT:
        api_error_set(e, 503, "server_error", "server_busy", NULL, "every slot stayed busy for too long; try again later");
        return true;
    case FINISH_TIMEOUT:
        api_error_set(e, 504, "server_error", "timeout", NULL, "the generation ran past the server's time limit");
        return true;
    case FINISH_ERROR:
        api_error_set(e, 500, "server_error", NULL, NULL, "%s", job->error);
        return true;
    case FINISH_CANCELLED:
        api_error_set(e, 500, "server_error", NULL, NULL, "the request was cancelled");
        return true;
    default:
        (void)srv;
        return false;
    }
}

static void make_id(http_server *srv, request_kind kind, char *id, size_t size) {
    uint64_t n = atomic_fetch_add(&srv->next_id, 1);
    snprintf(id, size, "%s-%llx%06llx", kind == REQ_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)srv->created,
             (unsigned long long)(n & 0xffffff));
}

/* ---- streaming ---- */

static bool stream_put(stream_ctx *st, const char *a, size_t a_len, const char *b, size_t b_len) {
    size_t need = st->out_len + a_len + b_len;
    if (need > st->out_cap) {
        size_t cap = st->out_cap ? st->out_cap : 1024;
        while (cap < need) cap *= 2;
        char *grown = realloc(st->out, cap);
        if (!grown) return false;
        st->out = grown;
        st->out_cap = cap;
    }
    memcpy(st->out + st->out_len, a, a_len);
    memcpy(st->out + st->out_len + a_len, b, b_len);
    st->out_len = need;
    return true;
}

/* Appends "data: JSON\n\n" (taking json; NULL is out of memory). */
static bool stream_event(stream_ctx *st, char *json) {
    if (!json) return false;
    bool ok = stream_put(st, "data: ", 6, json, strlen(json)) && stream_put(st, "\n\n", 2, "", 0);
    free(json);
    return ok;
}

/* Builds the events for what the job produced since the last call. */
static bool stream_collect(stream_ctx *st) {
    http_server *srv = st->srv;
    sched_job *job = st->job;
    sched_lock(srv->sched);
    if (job->text_len == st->text_sent && job->state != JOB_DONE && st->role_sent) {
        sched_wait_job(srv->sched, job, POLL_INTERVAL);
    }
    size_t len = job->text_len - st->text_sent;
    char *text = malloc(len + 1);
    if (text) memcpy(text, job->text + st->text_sent, len);
    st->text_sent += text ? len : 0;
    bool done = job->state == JOB_DONE;
    sched_finish finish = job->finish;
    int32_t n_generated = job->n_generated;
    api_error e;
    bool failed = done && job_failure(srv, job, &e);
    sched_unlock(srv->sched);
    if (!text) return false;
    bool ok = true;
    bool chat = st->meta.kind == REQ_CHAT;
    if (!st->role_sent && chat) ok = stream_event(st, response_chunk(&st->meta, "", 0, 1, NULL));
    st->role_sent = true;
    if (ok && len) ok = stream_event(st, response_chunk(&st->meta, text, len, 0, NULL));
    free(text);
    if (ok && done) {
        if (failed) ok = stream_event(st, response_error(&e));
        else ok = stream_event(st, response_chunk(&st->meta, "", 0, 0, finish_reason(finish)));
        if (ok && !failed && st->include_usage) ok = stream_event(st, response_usage_chunk(&st->meta, st->n_prompt, n_generated));
        if (ok) ok = stream_put(st, "data: [DONE]\n\n", 14, "", 0);
        st->finished = true;
    }
    return ok;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *st = cls;
    for (;;) {
        if (st->out_off < st->out_len) {
            size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
            memcpy(buf, st->out + st->out_off, n);
            st->out_off += n;
            if (st->out_off == st->out_len) st->out_off = st->out_len = 0;
            return (ssize_t)n;
        }
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_collect(st)) {
            sched_cancel(st->srv->sched, st->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->out_len == 0 && client_gone(st->conn)) {
            sched_cancel(st->srv->sched, st->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream_ctx *st = cls;
    sched_cancel(st->srv->sched, st->job); /* no-op when it finished */
    sched_job_release(st->srv->sched, st->job);
    free(st->out);
    free(st);
}

static enum MHD_Result start_stream(request_ctx *ctx, struct MHD_Connection *conn, sched_job *job, const gen_request *r,
                                    int32_t n_prompt) {
    http_server *srv = ctx->srv;
    stream_ctx *st = calloc(1, sizeof *st);
    if (!st) {
        sched_cancel(srv->sched, job);
        sched_job_release(srv->sched, job);
        return send_json(ctx, conn, 500, NULL);
    }
    st->srv = srv;
    st->conn = conn;
    st->job = job;
    st->include_usage = r->include_usage;
    st->n_prompt = n_prompt;
    make_id(srv, r->kind, st->id, sizeof st->id);
    snprintf(st->model, sizeof st->model, "%s", srv->model_id);
    st->meta = (response_meta){r->kind, st->id, srv->created, st->model};
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result result = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    ctx->answered = true;
    metrics_count_request(srv->metrics, ctx->endpoint, 200);
    return result;
}

static enum MHD_Result handle_generate(request_ctx *ctx, struct MHD_Connection *conn, request_kind kind) {
    http_server *srv = ctx->srv;
    gen_request r;
    api_error e;
    if (!request_parse(ctx->body ? ctx->body : "", ctx->body_len, kind, &r, &e)) return send_error(ctx, conn, &e);
    int32_t n_prompt = 0;
    sched_job *job = make_job(srv, &r, &n_prompt, &e);
    if (!job) {
        request_free(&r);
        return send_error(ctx, conn, &e);
    }
    sched_submit_result sub = sched_submit(srv->sched, job);
    if (sub != SCHED_OK) {
        sched_job_release(srv->sched, job);
        request_free(&r);
        return fail(ctx, conn, 503, "server_error", sub == SCHED_FULL ? "server_busy" : "shutting_down", NULL,
                    sub == SCHED_FULL ? "every slot is busy and the queue is full; try again later"
                                      : "the server is shutting down");
    }
    enum MHD_Result result = MHD_NO;
    if (!wait_job(srv, conn, job, false)) goto gone; /* queued until a slot takes it */
    sched_lock(srv->sched);
    bool failed = job->state == JOB_DONE && job_failure(srv, job, &e);
    sched_unlock(srv->sched);
    if (failed) {
        result = send_error(ctx, conn, &e);
        sched_job_release(srv->sched, job);
    } else if (r.stream) {
        result = start_stream(ctx, conn, job, &r, n_prompt); /* the stream owns job now */
    } else {
        if (!wait_job(srv, conn, job, true)) goto gone;
        if (job_failure(srv, job, &e)) {
            result = send_error(ctx, conn, &e);
        } else {
            char id[64];
            make_id(srv, kind, id, sizeof id);
            response_meta meta = {kind, id, srv->created, srv->model_id};
            result = send_json(ctx, conn, 200, response_completion(&meta, job->text, job->text_len,
                                                                   finish_reason(job->finish), n_prompt, job->n_generated));
        }
        sched_job_release(srv->sched, job);
    }
    request_free(&r);
    return result;
gone: /* the client left: no answer, the connection closes */
    sched_job_release(srv->sched, job);
    request_free(&r);
    return MHD_NO;
}

/* ---- other routes ---- */

static enum MHD_Result handle_health(request_ctx *ctx, struct MHD_Connection *conn) {
    int32_t queued = 0, busy = 0, n_slots = 0;
    sched_counts(ctx->srv->sched, &queued, &busy, &n_slots);
    bool draining = atomic_load(&ctx->srv->draining);
    char body[256];
    snprintf(body, sizeof body, "{\"status\":\"%s\",\"slots_idle\":%d,\"slots_processing\":%d,\"queue\":%d}",
             draining ? "draining" : "ok", (int)(n_slots - busy), (int)busy, (int)queued);
    return send_body(ctx, conn, draining ? 503 : 200, "application/json", body, strlen(body));
}

static enum MHD_Result handle_metrics(request_ctx *ctx, struct MHD_Connection *conn) {
    int32_t queued = 0, busy = 0, n_slots = 0;
    sched_counts(ctx->srv->sched, &queued, &busy, &n_slots);
    char *text = metrics_render(ctx->srv->metrics, queued, busy, n_slots);
    if (!text) return send_json(ctx, conn, 500, NULL);
    enum MHD_Result r = send_body(ctx, conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
    return r;
}

typedef enum { ROUTE_PAGE, ROUTE_HEALTH, ROUTE_METRICS, ROUTE_MODELS, ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_NONE } route_id;

static const struct {
    const char *path;
    const char *method;
    route_id id;
    bool needs_key;
} routes[] = {
    {"/", "GET", ROUTE_PAGE, false},
    {"/health", "GET", ROUTE_HEALTH, false},
    {"/metrics", "GET", ROUTE_METRICS, true},
    {"/v1/models", "GET", ROUTE_MODELS, true},
    {"/v1/chat/completions", "POST", ROUTE_CHAT, true},
    {"/v1/completions", "POST", ROUTE_COMPLETIONS, true},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static int find_route(const char *url) {
    for (size_t i = 0; i < N_ROUTES; i++)
        if (strcmp(url, routes[i].path) == 0) return (int)i;
    return -1;
}

static enum MHD_Result dispatch(request_ctx *ctx, struct MHD_Connection *conn, const char *url, const char *method) {
    http_server *srv = ctx->srv;
    int i = find_route(url);
    if (i < 0) return fail(ctx, conn, 404, "invalid_request_error", "not_found", NULL, "no such endpoint");
    if (strcmp(method, routes[i].method) != 0) {
        char message[96];
        snprintf(message, sizeof message, "%s takes %s requests", routes[i].path, routes[i].method);
        return fail(ctx, conn, 405, "invalid_request_error", "method_not_allowed", NULL, message);
    }
    if (routes[i].needs_key && !authorized(srv, conn))
        return fail(ctx, conn, 401, "authentication_error", "invalid_api_key", NULL,
                    "missing or wrong API key (send 'Authorization: Bearer KEY')");
    if (ctx->body_too_large) {
        char message[96];
        snprintf(message, sizeof message, "the request body is larger than %zu bytes", srv->config.max_body);
        return fail(ctx, conn, 413, "invalid_request_error", "body_too_large", NULL, message);
    }
    switch (routes[i].id) {
    case ROUTE_PAGE:
        return send_body(ctx, conn, 200, "text/html; charset=utf-8", server_page_html, server_page_html_len);
    case ROUTE_HEALTH:
        return handle_health(ctx, conn);
    case ROUTE_METRICS:
        return handle_metrics(ctx, conn);
    case ROUTE_MODELS:
        return send_json(ctx, conn, 200, response_models(srv->model_id, srv->created, sched_n_ctx(srv->sched)));
    case ROUTE_CHAT:
        return handle_generate(ctx, conn, REQ_CHAT);
    case ROUTE_COMPLETIONS:
        return handle_generate(ctx, conn, REQ_COMPLETION);
    default:
        return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls) {
    (void)version;
    http_server *srv = cls;
    request_ctx *ctx = *req_cls;
    if (!ctx) { /* first call: headers only */
        if (!(ctx = calloc(1, sizeof *ctx))) return MHD_NO;
        ctx->srv = srv;
        int route = find_route(url);
        ctx->endpoint = route < 0 ? "other" : routes[route].path;
        *req_cls = ctx;
        atomic_fetch_add(&srv->in_flight, 1);
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > srv->config.max_body) {
            ctx->body_too_large = true; /* answer now: the body is never read */
            return dispatch(ctx, conn, url, method);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->body_too_large || ctx->answered) return MHD_YES;
        if (ctx->body_len + n > srv->config.max_body) {
            ctx->body_too_large = true;
            free(ctx->body);
            ctx->body = NULL;
            ctx->body_len = ctx->body_cap = 0;
            return MHD_YES;
        }
        if (ctx->body_len + n + 1 > ctx->body_cap) {
            size_t cap = ctx->body_cap ? ctx->body_cap : 4096;
            while (cap < ctx->body_len + n + 1) cap *= 2;
            char *grown = realloc(ctx->body, cap);
            if (!grown) return MHD_NO;
            ctx->body = grown;
            ctx->body_cap = cap;
        }
        memcpy(ctx->body + ctx->body_len, upload_data, n);
        ctx->body_len += n;
        ctx->body[ctx->body_len] = '\0';
        return MHD_YES;
    }
    if (ctx->answered) return MHD_YES;
    return dispatch(ctx, conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode code) {
    (void)conn;
    (void)code;
    http_server *srv = cls;
    request_ctx *ctx = *req_cls;
    if (!ctx) return;
    free(ctx->body);
    free(ctx);
    *req_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
}

/* ---- lifetime ---- */

/* A listening socket on host:port; -1 with a line in err. */
static int open_listener(const char *host, int port, int *bound_port, bool *ipv6, char *err, size_t err_size) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0) {
        snprintf(err, err_size, "--host %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, why = 0;
    for (struct addrinfo *a = found; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            why = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            why = errno;
            close(fd);
            fd = -1;
            continue;
        }
        *ipv6 = a->ai_family == AF_INET6;
    }
    freeaddrinfo(found);
    if (fd < 0) {
        snprintf(err, err_size, "cannot listen on %s:%d: %s", host, port, strerror(why));
        return -1;
    }
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &addr_len);
    *bound_port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    return fd;
}

http_server *server_start(greta_model *model, scheduler *sched, server_metrics *metrics, const server_config *config,
                          char *err, size_t err_size) {
    http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    greta_model_info info;
    greta_model_get_info(model, &info);
    srv->model = model;
    srv->sched = sched;
    srv->metrics = metrics;
    srv->config = *config;
    srv->vocab_size = info.vocab_size;
    srv->created = (int64_t)time(NULL);
    srv->listen_fd = -1;
    srv->api_key = config->api_key ? strdup(config->api_key) : NULL;
    srv->model_id = strdup(config->model_id);
    srv->model_name = strdup(info.name ? info.name : "");
    if ((config->api_key && !srv->api_key) || !srv->model_id || !srv->model_name) {
        snprintf(err, err_size, "out of memory");
        server_free(srv);
        return NULL;
    }
    bool ipv6 = false;
    srv->listen_fd = open_listener(config->host, config->port, &srv->port, &ipv6, err, err_size);
    if (srv->listen_fd < 0) {
        server_free(srv);
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    if (ipv6) flags |= MHD_USE_IPv6;
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
                                   MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_LIMIT,
                                   (unsigned)config->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, config->idle_timeout,
                                   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, err_size, "cannot start the HTTP server (libmicrohttpd)");
        server_free(srv);
        return NULL;
    }
    return srv;
}

int server_port(const http_server *srv) {
    return srv->port;
}

void server_drain(http_server *srv, double max_wait_s) {
    atomic_store(&srv->draining, true);
    if (srv->daemon && srv->listen_fd >= 0) {
        MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
        srv->listen_fd = -1;
    }
    double deadline = now_s() + max_wait_s;
    while (atomic_load(&srv->in_flight) > 0 && now_s() < deadline) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

void server_free(http_server *srv) {
    if (!srv) return;
    if (srv->daemon) MHD_stop_daemon(srv->daemon); /* closes the listening socket unless quiesced */
    else if (srv->listen_fd >= 0) close(srv->listen_fd);
    free(srv->api_key);
    free(srv->model_id);
    free(srv->model_name);
    free(srv);
}
