/* server.h: greta's HTTP front end (libmicrohttpd): routes, API key,
 * limits, OpenAI-style responses and server-sent event streams, on top of
 * a scheduler. docs/server.md describes the API. Uses only greta.h and
 * the server's own modules. */
#ifndef GRETA_SERVER_SERVER_H
#define GRETA_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"
#include "server/metrics.h"
#include "server/scheduler.h"

typedef struct {
    const char *host;            /* address to bind (numeric or a name), e.g. "127.0.0.1" */
    int port;                    /* 0 = any free port (server_port says which) */
    const char *api_key;         /* NULL = no key needed */
    const char *model_id;        /* the id /v1/models lists and requests name */
    size_t max_body;             /* bytes of a request body */
    int32_t max_tokens_limit;    /* largest max_tokens a request may ask for */
    int32_t max_connections;     /* open connections at once */
    unsigned idle_timeout;       /* seconds an idle connection stays open */
} server_config;

typedef struct http_server http_server;

/* Binds and starts serving. NULL with a line in err. */
http_server *server_start(greta_model *model, scheduler *sched, server_metrics *metrics,
                          const server_config *config, char *err, size_t err_size);
/* The port it listens on. */
int server_port(const http_server *srv);
/* Stops accepting connections, lets the requests in flight finish (at
 * most max_wait_s seconds). The scheduler should be draining too. */
void server_drain(http_server *srv, double max_wait_s);
/* Stops the daemon (closing what is left open) and frees the server. */
void server_free(http_server *srv);

#endif
