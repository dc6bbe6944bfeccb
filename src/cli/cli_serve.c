/* cli_serve.c: greta serve -m MODEL: the OpenAI-compatible HTTP server
 * (src/server/, docs/server.md). Loads the model, starts the scheduler and
 * the HTTP front end, then waits for SIGTERM or SIGINT, on which it stops
 * accepting connections, lets the requests in flight finish and exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cli_args.h"
#include "greta.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/server.h"

static void serve_usage(FILE *out) {
    fprintf(out,
            "usage: greta serve -m MODEL [options]\n"
            "  -m, --model FILE          GGUF model\n"
            "  --host ADDR               address to listen on (default 127.0.0.1)\n"
            "  --port N                  port (default 8080; 0 = any free port)\n"
            "  -np, --parallel N         slots: requests generated at once (default 4)\n"
            "  -c, --ctx N               context length of each slot (default: the model's, at most 2048)\n"
            "  -t, --threads N           CPU threads of the forward (default: all)\n"
            "  --backend cpu|ref|cuda    (default cpu)\n"
            "  --precision q8|f32        cpu/cuda arithmetic: 8-bit activations (default) or float32\n"
            "  --kv-type f32|f16|q8_0    KV cache values (default: the backend's; cuda f16)\n"
            "  --deterministic           batch-invariant kernels only (docs/cuda.md)\n"
            "  --api-key KEY             require 'Authorization: Bearer KEY' (also GRETA_API_KEY)\n"
            "  --queue N                 requests that may wait for a slot (default 64; more get 503)\n"
            "  --queue-timeout S         seconds a request may wait for a slot (default 60)\n"
            "  --timeout S               seconds a generation may run (default 600)\n"
            "  --max-tokens N            largest max_tokens a request may ask for (default: the context)\n"
            "  --max-body BYTES          largest request body (default 1048576)\n"
            "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,\n"
            "GET /metrics, and a chat page at /. docs/server.md describes them.\n");
}

typedef struct {
    const char *model_path;
    const char *host;
    long port, parallel, ctx, threads, queue, max_tokens, max_body;
    double queue_timeout, timeout;
    greta_backend backend;
    greta_precision precision;
    greta_kv_type kv_type;
    bool deterministic;
    const char *api_key;
    bool show_help;
} serve_options;

/* Parses one flag at argv[*i]; 0 on success, 2 after printing an error. */
static int parse_flag(serve_options *o, int argc, char **argv, int *i) {
    const char *arg = argv[*i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
        o->show_help = true;
        return 0;
    }
    if (strcmp(arg, "--deterministic") == 0) {
        o->deterministic = true;
        return 0;
    }
    static const char *const valued[] = {"-m", "--model", "--host", "--port", "-np", "--parallel", "-c", "--ctx", "-t",
                                         "--threads", "--backend", "--precision", "--kv-type", "--api-key", "--queue", "--queue-timeout",
                                         "--timeout", "--max-tokens", "--max-body", NULL};
    bool known = false;
    for (const char *const *k = valued; *k && !known; k++) known = strcmp(arg, *k) == 0;
    if (!known) {
        cli_error("serve: unknown argument '%s' (try 'greta serve --help')", arg);
        return 2;
    }
    const char *v = cli_flag_value(argc, argv, i);
    if (!v) return 2;
    float f = 0.0f;
    bool ok = true;
    if (strcmp(arg, "-m") == 0 || strcmp(arg, "--model") == 0) o->model_path = v;
    else if (strcmp(arg, "--host") == 0) o->host = v;
    else if (strcmp(arg, "--port") == 0) ok = cli_parse_int(arg, v, 0, 65535, &o->port);
    else if (strcmp(arg, "-np") == 0 || strcmp(arg, "--parallel") == 0) ok = cli_parse_int(arg, v, 1, 256, &o->parallel);
    else if (strcmp(arg, "-c") == 0 || strcmp(arg, "--ctx") == 0) ok = cli_parse_int(arg, v, 1, INT32_MAX, &o->ctx);
    else if (strcmp(arg, "-t") == 0 || strcmp(arg, "--threads") == 0) ok = cli_parse_int(arg, v, 1, 1024, &o->threads);
    else if (strcmp(arg, "--queue") == 0) ok = cli_parse_int(arg, v, 0, 100000, &o->queue);
    else if (strcmp(arg, "--max-tokens") == 0) ok = cli_parse_int(arg, v, 1, INT32_MAX, &o->max_tokens);
    else if (strcmp(arg, "--max-body") == 0) ok = cli_parse_int(arg, v, 256, 1L << 30, &o->max_body);
    else if (strcmp(arg, "--queue-timeout") == 0) {
        ok = cli_parse_float(arg, v, 0.001, 86400.0, &f);
        o->queue_timeout = f;
    } else if (strcmp(arg, "--timeout") == 0) {
        ok = cli_parse_float(arg, v, 0.001, 864000.0, &f);
        o->timeout = f;
    }
    else if (strcmp(arg, "--api-key") == 0) o->api_key = v;
    else if (strcmp(arg, "--backend") == 0 && cli_arg_backend(arg, v, &o->backend) != 0) {
        ok = false;
    } else if (strcmp(arg, "--precision") == 0 && greta_precision_from_name(v, &o->precision) != GRETA_OK) {
        cli_error("--precision: unknown precision '%s' (expected q8 or f32)", v);
        ok = false;
    } else if (strcmp(arg, "--kv-type") == 0 && cli_arg_kv_type(arg, v, &o->kv_type) != 0) {
        ok = false;
    }
    if (ok && strcmp(arg, "--api-key") == 0 && !v[0]) {
        cli_error("--api-key: the key is empty");
        ok = false;
    }
    return ok ? 0 : 2;
}

/* The model's id for the API: the file name without directory and ".gguf". */
static char *model_id_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".gguf") == 0) len -= 5;
    char *id = malloc(len + 1);
    if (id) {
        memcpy(id, base, len);
        id[len] = '\0';
    }
    return id;
}

int cli_serve(int argc, char **argv) {
    serve_options o = {.host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64, .max_body = 1 << 20,
                       .queue_timeout = 60.0, .timeout = 600.0, .backend = GRETA_BACKEND_CPU};
    for (int i = 1; i < argc; i++)
        if (parse_flag(&o, argc, argv, &i) != 0) return 2;
    if (o.show_help) {
        serve_usage(stdout);
        return 0;
    }
    if (!o.model_path) {
        cli_error("serve: no model (pass -m MODEL.gguf)");
        return 2;
    }
    if (!o.api_key) {
        const char *env = getenv("GRETA_API_KEY");
        if (env && env[0]) o.api_key = env;
    }
    /* Signals go to the main thread's sigwait: block them before any thread starts. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char err[512] = "";
    char *model_id = model_id_of(o.model_path);
    server_metrics *metrics = metrics_new();
    scheduler *sched = NULL;
    http_server *srv = NULL;
    greta_model *model = NULL;
    if (!model_id || !metrics) {
        cli_error("serve: out of memory");
        goto done;
    }
    if (!(model = cli_load_model(o.model_path))) goto done;
    greta_model_info info;
    greta_model_get_info(model, &info);
    int32_t n_ctx = (int32_t)o.ctx;
    if (n_ctx == 0) n_ctx = info.context_length > 0 && info.context_length < 2048 ? info.context_length : 2048;
    sched_config sc = {(int32_t)o.parallel, n_ctx, (int32_t)o.threads, o.backend, (int32_t)o.queue, o.queue_timeout,
                       o.timeout, o.precision, o.kv_type, o.deterministic};
    if (!(sched = sched_new(model, &sc, metrics, err, sizeof err))) {
        cli_error("serve: %s", err);
        goto done;
    }
    n_ctx = sched_n_ctx(sched);
    server_config cfg = {o.host, (int)o.port, o.api_key, model_id, (size_t)o.max_body,
                         o.max_tokens > 0 ? (int32_t)o.max_tokens : n_ctx, (int32_t)(o.parallel + o.queue + 64), 60};
    if (!(srv = server_start(model, sched, metrics, &cfg, err, sizeof err))) {
        cli_error("serve: %s", err);
        goto done;
    }
    fprintf(stderr, "greta: serving %s on http://%s:%d (%ld slot%s of %d positions, %s backend%s); SIGTERM stops\n",
            model_id, o.host, server_port(srv), o.parallel, o.parallel == 1 ? "" : "s", (int)n_ctx,
            greta_backend_name(o.backend), o.api_key ? ", API key required" : "");
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "greta: %s: finishing the requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sched_drain(sched);
    server_drain(srv, o.timeout + o.queue_timeout + 5.0);
    rc = 0;
done:
    server_free(srv);
    sched_free(sched);
    greta_model_free(model);
    metrics_free(metrics);
    free(model_id);
    if (rc == 0) fprintf(stderr, "greta: server stopped\n");
    return rc;
}
