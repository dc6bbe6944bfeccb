/* cli_bench.c: greta bench -m MODEL [-p 512] [-n 128] [-r 5] [-t N]
 * [--depth D] [--backend B] [--json]: prefill (pp) and decode (tg) speed, bytes read
 * per decoded token, and that as a fraction of the memory bandwidth of this
 * machine measured in the same run (design.md section 7). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "greta.h"

/* ---- memory bandwidth ---- */

#define BW_BYTES_PER_THREAD ((size_t)128 << 20) /* well beyond the caches */

typedef struct {
    uint64_t *src, *dst;
    size_t n;       /* uint64 per thread */
    bool copy;      /* copy src -> dst, else read (sum) src */
    uint64_t sum;   /* keeps the read loop alive */
    double seconds; /* this thread's time from the start barrier to its last byte */
    pthread_barrier_t *barrier;
} bw_worker;

static void *bw_run(void *arg) {
    bw_worker *w = arg;
    pthread_barrier_wait(w->barrier);
    double t0 = cli_now();
    if (w->copy) {
        memcpy(w->dst, w->src, w->n * sizeof *w->src);
    } else {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= w->n; i += 4) {
            s0 += w->src[i];
            s1 += w->src[i + 1];
            s2 += w->src[i + 2];
            s3 += w->src[i + 3];
        }
        w->sum = s0 ^ s1 ^ s2 ^ s3;
    }
    w->seconds = cli_now() - t0;
    pthread_barrier_wait(w->barrier);
    return NULL;
}

/* Best of reps: bytes moved per second by n_threads threads (read: bytes
 * read; copy: bytes read + bytes written). Returns 0 on failure. */
static double measure_bandwidth(int n_threads, bool copy, int reps) {
    size_t n = BW_BYTES_PER_THREAD / sizeof(uint64_t);
    bw_worker *w = calloc((size_t)n_threads, sizeof *w);
    pthread_t *tid = calloc((size_t)n_threads, sizeof *tid);
    pthread_barrier_t barrier;
    double best = 0.0;
    bool ok = w && tid && pthread_barrier_init(&barrier, NULL, (unsigned)n_threads + 1) == 0;
    for (int t = 0; ok && t < n_threads; t++) {
        w[t].src = malloc(n * sizeof(uint64_t));
        w[t].dst = copy ? malloc(n * sizeof(uint64_t)) : NULL;
        ok = w[t].src && (!copy || w[t].dst);
        if (!ok) break;
        for (size_t i = 0; i < n; i++) w[t].src[i] = i * 0x9e3779b97f4a7c15ULL;
        if (copy) memset(w[t].dst, 0, n * sizeof(uint64_t));
        w[t].n = n;
        w[t].copy = copy;
        w[t].barrier = &barrier;
    }
    uint64_t sink = 0;
    for (int r = 0; ok && r < reps; r++) {
        int started = 0;
        for (; started < n_threads; started++) {
            if (pthread_create(&tid[started], NULL, bw_run, &w[started]) != 0) break;
        }
        if (started < n_threads) { /* cannot run the barrier: give up */
            ok = false;
            for (int t = 0; t < started; t++) pthread_cancel(tid[t]);
            break;
        }
        /* Each worker times itself: a main thread descheduled between the
         * barriers (a loaded machine) made its own clock read microseconds
         * and the bandwidth terabytes per second. */
        pthread_barrier_wait(&barrier);
        pthread_barrier_wait(&barrier);
        double dt = 0.0;
        for (int t = 0; t < n_threads; t++) {
            pthread_join(tid[t], NULL);
            sink ^= w[t].sum;
            if (w[t].seconds > dt) dt = w[t].seconds;
        }
        double bytes = (double)n_threads * (double)(n * sizeof(uint64_t)) * (copy ? 2.0 : 1.0);
        if (dt > 0 && bytes / dt > best) best = bytes / dt;
    }
    if (w && tid) pthread_barrier_destroy(&barrier);
    for (int t = 0; w && t < n_threads; t++) {
        free(w[t].src);
        free(w[t].dst);
    }
    free(w);
    free(tid);
    if (sink == 1) fprintf(stderr, " "); /* uses the sums */
    return ok ? best : 0.0;
}

/* ---- statistics ---- */

static void mean_stddev(const double *x, int n, double *mean, double *sd) {
    double s = 0.0, ss = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

/* Deterministic token ids for the benchmark (llama-bench uses random ones). */
static void fill_tokens(int32_t *ids, int32_t n, int32_t vocab, uint64_t seed) {
    uint64_t x = seed;
    for (int32_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)vocab);
    }
}

static void bench_usage(FILE *out) {
    fprintf(out,
            "usage: greta bench -m MODEL [-p 512] [-n 128] [-r 5] [-t N] [--ctx N] [--depth D] [--backend cpu|ref|cuda]\n"
            "                   [--precision q8|f32] [--kv-type f32|f16|q8_0] [--deterministic] [--json]\n"
            "  -p N       prompt tokens of the prefill test (pp; 0 = skip)\n"
            "  -n N       tokens of the decode test (tg; 0 = skip)\n"
            "  -r N       repetitions (after one warm-up run that is not counted)\n"
            "  -t N       threads (default: all CPUs)\n"
            "  --precision q8|f32  cpu/cuda arithmetic: 8-bit activations (default) or float32 (docs/engine.md)\n"
            "  --kv-type T  KV cache values (default: the backend's; cuda: f16 or q8_0)\n"
            "  --deterministic  batch-invariant kernels only (cuda: not the fast prefill; docs/cuda.md)\n"
            "  -c, --ctx N  context length (default: --depth plus the larger of -p and -n)\n"
            "  -d, --depth D  tokens of context evaluated (untimed) before each test, as llama-bench -d (default 0)\n"
            "  --json     one JSON object on stdout instead of the table\n");
}

int cli_bench(int argc, char **argv) {
    cli_gen_options o;
    cli_gen_options_init(&o);
    long n_prompt = 512, n_gen = 128, reps = 5, depth = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        if (strcmp(arg, "--json") == 0) {
            json = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            bench_usage(stdout);
            cli_gen_options_free(&o);
            return 0;
        } else if (strcmp(arg, "-d") == 0 || strcmp(arg, "--depth") == 0) {
            if (!(v = cli_flag_value(argc, argv, &i)) || !cli_parse_int(arg, v, 0, 1 << 24, &depth)) {
                cli_gen_options_free(&o);
                return 2;
            }
        } else if (strcmp(arg, "-p") == 0 || strcmp(arg, "-n") == 0 || strcmp(arg, "-r") == 0) {
            long *dst = arg[1] == 'p' ? &n_prompt : arg[1] == 'n' ? &n_gen : &reps;
            if (!(v = cli_flag_value(argc, argv, &i)) ||
                !cli_parse_int(arg, v, arg[1] == 'r' ? 1 : 0, 1 << 20, dst)) {
                cli_gen_options_free(&o);
                return 2;
            }
        } else if (strcmp(arg, "-m") == 0 || strcmp(arg, "--model") == 0 || strcmp(arg, "-t") == 0 ||
                   strcmp(arg, "--threads") == 0 || strcmp(arg, "--backend") == 0 || strcmp(arg, "--precision") == 0 ||
                   strcmp(arg, "--kv-type") == 0 || strcmp(arg, "--deterministic") == 0 || strcmp(arg, "--ctx") == 0 ||
                   strcmp(arg, "-c") == 0) {
            if (cli_parse_gen_flag(&o, argc, argv, &i) < 0) {
                cli_gen_options_free(&o);
                return 2;
            }
        } else {
            cli_error("bench: unknown argument '%s' (try 'greta bench --help')", arg);
            cli_gen_options_free(&o);
            return 2;
        }
    }
    if (!o.model_path) {
        cli_error("bench: no model (pass -m MODEL.gguf)");
        cli_gen_options_free(&o);
        return 2;
    }
    if (n_prompt == 0 && n_gen == 0) {
        cli_error("bench: nothing to measure (-p 0 and -n 0)");
        cli_gen_options_free(&o);
        return 2;
    }
    long n_need = depth + (n_prompt > n_gen ? n_prompt : n_gen);
    if (o.n_ctx != 0 && o.n_ctx < n_need) {
        cli_error("bench: --ctx %d is smaller than the %ld positions --depth and -p/-n need", o.n_ctx, n_need);
        cli_gen_options_free(&o);
        return 2;
    }
    int rc = 1;
    greta_session *session = NULL;
    int32_t *ids = NULL;
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    greta_model *model = cli_load_model(o.model_path);
    if (!model || !pp || !tg) goto done;
    greta_model_info info;
    greta_model_get_info(model, &info);
    if (o.n_ctx == 0) o.n_ctx = (int32_t)n_need;
    if (!(session = cli_new_session(model, &o, false))) goto done;
    int32_t n_threads = greta_session_n_threads(session);
    long n_ids = n_need;
    if (!(ids = malloc((size_t)n_ids * sizeof *ids))) goto done;
    fill_tokens(ids, (int32_t)n_ids, info.vocab_size, 42);
    bool show_progress = !json && isatty(STDERR_FILENO) == 1;
    for (long r = -1; r < reps; r++) { /* r = -1: warm-up */
        if (n_prompt > 0) {
            if (greta_rewind(session, 0) != GRETA_OK || (depth > 0 && greta_eval(session, ids, (size_t)depth) != GRETA_OK)) {
                cli_error("bench: context of --depth %ld: %s", depth, greta_session_error(session));
                goto done;
            }
            double t0 = cli_now();
            if (greta_eval(session, ids + depth, (size_t)n_prompt) != GRETA_OK) {
                cli_error("bench: prefill: %s", greta_session_error(session));
                goto done;
            }
            if (r >= 0) pp[r] = (double)n_prompt / (cli_now() - t0);
        }
        if (n_gen > 0) {
            if (greta_rewind(session, 0) != GRETA_OK) goto eval_error;
            if (depth > 0 && greta_eval(session, ids, (size_t)depth) != GRETA_OK) goto eval_error;
            double t0 = cli_now();
            for (long i = 0; i < n_gen; i++) {
                if (greta_eval(session, &ids[depth + i], 1) != GRETA_OK) goto eval_error;
            }
            if (r >= 0) tg[r] = (double)n_gen / (cli_now() - t0);
        }
        if (show_progress) fprintf(stderr, "%s %ld/%ld\r", r < 0 ? "warm-up" : "run", r + 1, reps);
    }
    if (show_progress) fprintf(stderr, "%30s\r", "");
    double pp_mean = 0, pp_sd = 0, tg_mean = 0, tg_sd = 0;
    if (n_prompt > 0) mean_stddev(pp, (int)reps, &pp_mean, &pp_sd);
    if (n_gen > 0) mean_stddev(tg, (int)reps, &tg_mean, &tg_sd);
    /* Bytes per decoded token: the weights (token_embd one row, or all of it
     * when tied) plus the K and V rows of every layer at every earlier
     * position and itself, values of the backend's precision (cpu float32,
     * ref float64). Averaged over the tg run: depth d = 0 .. n-1 reads d + 1 rows. */
    greta_backend_info backend_info;
    greta_backend_get_info(greta_session_backend(session), &backend_info);
    /* The cuda backend keeps its KV cache in f16 and its weights on the GPU:
     * the host's memory bandwidth says nothing about it, so it is not
     * measured (docs/cuda.md, docs/benchmarks.md). */
    const bool on_gpu = strcmp(backend_info.name, "cuda") == 0;
    double kv_elem = on_gpu ? 2.0 : (double)backend_info.value_bytes;
    double kv_row = 2.0 * info.n_layer * info.n_head_kv * info.head_dim * kv_elem;
    double kv_mean = kv_row * ((double)depth + ((double)n_gen + 1.0) / 2.0);
    double bytes_per_token = (double)info.decode_bytes_per_token + kv_mean;
    double achieved = bytes_per_token * tg_mean;
    double bw_read = on_gpu ? 0.0 : measure_bandwidth(n_threads, false, 5);
    double bw_copy = on_gpu ? 0.0 : measure_bandwidth(n_threads, true, 5);
    double fraction = bw_read > 0 ? achieved / bw_read : 0.0;
    const char *backend = backend_info.name;
    /* What the backend holds (cuda: device memory) against the issue's
     * budget: the file's weights + the KV cache + 5%. */
    greta_backend_memory mem;
    const bool has_mem = greta_session_backend_memory(session, &mem) == GRETA_OK;
    const double mem_total = (double)(mem.weights + mem.kv + mem.activations);
    const double mem_limit = ((double)info.weight_bytes + (double)mem.kv) * 1.05;
    const char *kv_name = greta_kv_type_name(greta_session_kv_type(session));
    const bool deterministic = greta_session_deterministic(session);
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:i, s:i, s:i, s:i}", "model", o.model_path, "name",
                              info.name, "file_type", info.file_type, "file_weight_bytes",
                              (json_int_t)info.weight_bytes, "backend", backend, "threads", n_threads,
                              "n_prompt", (int)n_prompt, "n_gen", (int)n_gen, "repetitions", (int)reps);
        if (j) {
            json_object_set_new(j, "depth", json_integer((json_int_t)depth));
            json_object_set_new(j, "precision", json_string(greta_precision_name(greta_session_precision(session))));
            json_object_set_new(j, "pp_tok_s", json_real(pp_mean));
            json_object_set_new(j, "pp_tok_s_stddev", json_real(pp_sd));
            json_object_set_new(j, "tg_tok_s", json_real(tg_mean));
            json_object_set_new(j, "tg_tok_s_stddev", json_real(tg_sd));
            json_object_set_new(j, "decode_weight_bytes_per_token", json_integer((json_int_t)info.decode_bytes_per_token));
            json_object_set_new(j, "kv_bytes_per_token_mean", json_real(kv_mean));
            json_object_set_new(j, "bytes_per_token", json_real(bytes_per_token));
            json_object_set_new(j, "achieved_bytes_per_s", json_real(achieved));
            json_object_set_new(j, "memory_read_bytes_per_s", json_real(bw_read));
            json_object_set_new(j, "memory_copy_bytes_per_s", json_real(bw_copy));
            json_object_set_new(j, "fraction_of_read_bandwidth", json_real(fraction));
            json_object_set_new(j, "kv_type", json_string(kv_name));
            json_object_set_new(j, "deterministic", json_boolean(deterministic));
            if (has_mem) {
                json_object_set_new(j, "backend_weight_bytes", json_integer((json_int_t)mem.weights));
                json_object_set_new(j, "backend_kv_bytes", json_integer((json_int_t)mem.kv));
                json_object_set_new(j, "backend_activation_bytes", json_integer((json_int_t)mem.activations));
                json_object_set_new(j, "backend_memory_limit_bytes", json_real(mem_limit));
                json_object_set_new(j, "device_used_bytes", json_integer((json_int_t)mem.device_used));
                json_object_set_new(j, "device_total_bytes", json_integer((json_int_t)mem.device_total));
            }
            char *text = json_dumps(j, JSON_COMPACT);
            if (text) printf("%s\n", text);
            free(text);
            json_decref(j);
        }
    } else {
        printf("model    %s (%s, %.1f MiB of weights)\n", info.name, info.file_type,
               (double)info.weight_bytes / (1024.0 * 1024.0));
        printf("backend  %s (%s), %d threads, %ld repetitions after 1 warm-up\n", backend,
               greta_precision_name(greta_session_precision(session)), n_threads, reps);
        if (depth > 0) printf("depth    %ld tokens of context before each test (untimed)\n", depth);
        printf("kv cache %s, %s\n", kv_name,
               deterministic ? "deterministic (batch-invariant kernels)" : "not deterministic (fast prefill)");
        if (has_mem) {
            const double mib = 1024.0 * 1024.0;
            printf("memory   %.1f MiB = weights %.1f + KV cache %.1f + activations and scratch %.1f; "
                   "limit file + KV + 5%% = %.1f MiB: %s\n",
                   mem_total / mib, (double)mem.weights / mib, (double)mem.kv / mib, (double)mem.activations / mib,
                   mem_limit / mib, mem_total <= mem_limit ? "within" : "OVER");
            if (mem.device_total > 0)
                printf("device   %.1f MiB of %.1f MiB in use (all processes, the CUDA context included)\n",
                       (double)mem.device_used / mib, (double)mem.device_total / mib);
        }
        if (n_prompt > 0) printf("pp%-5ld  %10.1f tok/s  +- %.1f\n", n_prompt, pp_mean, pp_sd);
        if (n_gen > 0) {
            printf("tg%-5ld  %10.1f tok/s  +- %.1f\n", n_gen, tg_mean, tg_sd);
            printf("bytes per decoded token  %.2f MB (weights %.2f MB + KV cache %.2f MB mean)\n",
                   bytes_per_token / 1e6, (double)info.decode_bytes_per_token / 1e6, kv_mean / 1e6);
            if (on_gpu)
                printf("achieved  %.2f GB/s of GPU memory reads (the host's bandwidth is not measured for cuda)\n",
                       achieved / 1e9);
            else
                printf("achieved  %.2f GB/s = %.0f%% of the measured read bandwidth\n", achieved / 1e9,
                       100.0 * fraction);
        }
        if (!on_gpu)
            printf("memory bandwidth (%d threads): read %.2f GB/s, copy %.2f GB/s (read + write)\n", n_threads,
                   bw_read / 1e9, bw_copy / 1e9);
    }
    rc = 0;
    goto done;
eval_error:
    cli_error("bench: decode: %s", greta_session_error(session));
done:
    free(ids);
    free(pp);
    free(tg);
    if (session && !cli_end_session(session) && rc == 0) rc = 1;
    greta_model_free(model);
    cli_gen_options_free(&o);
    return rc;
}
