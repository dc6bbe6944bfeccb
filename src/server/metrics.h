/* metrics.h: the server's counters and histograms, rendered as Prometheus
 * text for GET /metrics (docs/server.md lists every series). Thread-safe:
 * every call takes the metrics' own lock. Uses only the C library. */
#ifndef GRETA_SERVER_METRICS_H
#define GRETA_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct server_metrics server_metrics;

server_metrics *metrics_new(void); /* NULL on out of memory */
void metrics_free(server_metrics *m);

/* One HTTP request answered: endpoint is the path of a known route (other
 * paths are counted as "other"), status the HTTP status sent. */
void metrics_count_request(server_metrics *m, const char *endpoint, int status);
/* Prompt tokens evaluated, tokens generated. */
void metrics_add_tokens(server_metrics *m, int64_t prompt_tokens, int64_t generated_tokens);
/* One decode step of the worker: rows = slots whose tokens it evaluated
 * in one forward. */
void metrics_add_step(server_metrics *m, int64_t rows);
/* Seconds from a request's arrival to its first generated token. */
void metrics_observe_ttft(server_metrics *m, double seconds);
/* Seconds between two consecutive tokens of one request. */
void metrics_observe_token(server_metrics *m, double seconds);

/* The Prometheus text exposition (malloc'ed, NUL-terminated; NULL on out
 * of memory), with the gauges passed in. */
char *metrics_render(server_metrics *m, int32_t queued, int32_t busy, int32_t n_slots);

#endif
