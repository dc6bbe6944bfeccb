/* metrics.c: counters and histograms for GET /metrics (see metrics.h). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Label values of the request counter: the routes, then "other". */
static const char *const endpoints[] = {
    "/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "other",
};
#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])
/* HTTP statuses the server sends; anything else is counted under 0. */
static const int statuses[] = {200, 400, 401, 404, 405, 413, 500, 503, 504, 0};
#define N_STATUSES (sizeof statuses / sizeof statuses[0])

/* Upper bounds in seconds (the +Inf bucket is the count). */
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double token_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
#define MAX_BOUNDS 16

typedef struct {
    const double *bounds;
    size_t n_bounds;
    uint64_t buckets[MAX_BOUNDS]; /* [i]: observations <= bounds[i] (not cumulative) */
    uint64_t count;
    double sum;
} histogram;

struct server_metrics {
    pthread_mutex_t mutex;
    uint64_t requests[N_ENDPOINTS][N_STATUSES];
    uint64_t prompt_tokens, generated_tokens;
    uint64_t steps, step_rows;
    histogram ttft, token;
};

server_metrics *metrics_new(void) {
    server_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mutex, NULL);
    m->ttft.bounds = ttft_bounds;
    m->ttft.n_bounds = sizeof ttft_bounds / sizeof ttft_bounds[0];
    m->token.bounds = token_bounds;
    m->token.n_bounds = sizeof token_bounds / sizeof token_bounds[0];
    return m;
}

void metrics_free(server_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mutex);
    free(m);
}

void metrics_count_request(server_metrics *m, const char *endpoint, int status) {
    size_t e = N_ENDPOINTS - 1, s = N_STATUSES - 1;
    for (size_t i = 0; i + 1 < N_ENDPOINTS; i++)
        if (strcmp(endpoint, endpoints[i]) == 0) e = i;
    for (size_t i = 0; i + 1 < N_STATUSES; i++)
        if (statuses[i] == status) s = i;
    pthread_mutex_lock(&m->mutex);
    m->requests[e][s]++;
    pthread_mutex_unlock(&m->mutex);
}

void metrics_add_tokens(server_metrics *m, int64_t prompt_tokens, int64_t generated_tokens) {
    pthread_mutex_lock(&m->mutex);
    m->prompt_tokens += (uint64_t)prompt_tokens;
    m->generated_tokens += (uint64_t)generated_tokens;
    pthread_mutex_unlock(&m->mutex);
}

void metrics_add_step(server_metrics *m, int64_t rows) {
    pthread_mutex_lock(&m->mutex);
    m->steps++;
    m->step_rows += (uint64_t)rows;
    pthread_mutex_unlock(&m->mutex);
}

static void observe(histogram *h, double seconds) {
    size_t i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i]) i++;
    if (i < h->n_bounds) h->buckets[i]++;
    h->count++;
    h->sum += seconds;
}

void metrics_observe_ttft(server_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mutex);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mutex);
}

void metrics_observe_token(server_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mutex);
    observe(&m->token, seconds);
    pthread_mutex_unlock(&m->mutex);
}

/* A growing text buffer; ok turns false on out of memory. */
typedef struct {
    char *text;
    size_t len, cap;
    bool ok;
} text_buf;

static void put(text_buf *b, const char *fmt, ...) {
    if (!b->ok) return;
    for (;;) {
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf(b->text + b->len, b->cap - b->len, fmt, args);
        va_end(args);
        if (n < 0) {
            b->ok = false;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *grown = realloc(b->text, cap);
        if (!grown) {
            b->ok = false;
            return;
        }
        b->text = grown;
        b->cap = cap;
    }
}

static void put_histogram(text_buf *b, const char *name, const char *help, const histogram *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cumulative += h->buckets[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cumulative);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

char *metrics_render(server_metrics *m, int32_t queued, int32_t busy, int32_t n_slots) {
    text_buf b = {malloc(4096), 0, 4096, true};
    if (!b.text) return NULL;
    b.text[0] = '\0';
    pthread_mutex_lock(&m->mutex);
    put(&b, "# HELP greta_requests_total HTTP requests answered, by endpoint and status.\n"
            "# TYPE greta_requests_total counter\n");
    for (size_t e = 0; e < N_ENDPOINTS; e++)
        for (size_t s = 0; s < N_STATUSES; s++)
            if (m->requests[e][s])
                put(&b, "greta_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", endpoints[e], statuses[s],
                    (unsigned long long)m->requests[e][s]);
    put(&b, "# HELP greta_prompt_tokens_total Prompt tokens evaluated (tokens reused from a slot's cache not counted).\n"
            "# TYPE greta_prompt_tokens_total counter\ngreta_prompt_tokens_total %llu\n",
        (unsigned long long)m->prompt_tokens);
    put(&b, "# HELP greta_generated_tokens_total Tokens generated.\n"
            "# TYPE greta_generated_tokens_total counter\ngreta_generated_tokens_total %llu\n",
        (unsigned long long)m->generated_tokens);
    put(&b, "# HELP greta_decode_steps_total Decode steps (one forward each) of the batching worker.\n"
            "# TYPE greta_decode_steps_total counter\ngreta_decode_steps_total %llu\n",
        (unsigned long long)m->steps);
    put(&b, "# HELP greta_decode_rows_total Tokens those steps evaluated (rows / steps = mean batch).\n"
            "# TYPE greta_decode_rows_total counter\ngreta_decode_rows_total %llu\n",
        (unsigned long long)m->step_rows);
    put(&b, "# HELP greta_queue_length Requests waiting for a slot.\n# TYPE greta_queue_length gauge\n"
            "greta_queue_length %d\n", (int)queued);
    put(&b, "# HELP greta_slots_busy Slots generating now.\n# TYPE greta_slots_busy gauge\ngreta_slots_busy %d\n",
        (int)busy);
    put(&b, "# HELP greta_slots_total Slots (--parallel).\n# TYPE greta_slots_total gauge\ngreta_slots_total %d\n",
        (int)n_slots);
    put_histogram(&b, "greta_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.",
                  &m->ttft);
    put_histogram(&b, "greta_time_per_output_token_seconds", "Seconds between consecutive tokens of a request.",
                  &m->token);
    pthread_mutex_unlock(&m->mutex);
    if (!b.ok) {
        free(b.text);
        return NULL;
    }
    return b.text;
}
