/* backend_cpu_pool.c: worker threads of the CPU backend (see backend_cpu_pool.h). */
#include "backend/cpu/cpu_pool.h"
#include "base/errors.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations before a worker goes to sleep (tens of microseconds),
 * and how often a spinning thread yields its core: on a machine with more
 * runnable threads than cores, pure spinning would keep the thread we wait
 * for off the CPU. */
#define SPIN_LIMIT 200000
#define SPINS_PER_YIELD 1024

typedef struct {
    cpu_pool *pool;
    int index;
} worker_arg;

struct cpu_pool {
    int n_threads;
    pthread_t *threads;     /* [n_threads - 1] */
    worker_arg *args;
    int started;            /* workers successfully created */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped for every job */
    atomic_int finished;    /* workers done with the current job */
    atomic_bool quit;
    cpu_pool_fn fn;         /* current job (written before generation is bumped) */
    void *ctx;
};

static void *worker_main(void *p) {
    worker_arg *arg = p;
    cpu_pool *pool = arg->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int spin = 1; gen == seen && spin < SPIN_LIMIT; spin++) {
            if (spin % SPINS_PER_YIELD == 0)
                sched_yield();
            else
                CPU_RELAX();
            gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->quit)) break;
        seen = gen;
        pool->fn(pool->ctx, arg->index);
        atomic_fetch_add_explicit(&pool->finished, 1, memory_order_release);
    }
    return NULL;
}

cpu_pool *cpu_pool_new(int n_threads, char *err, size_t err_size) {
    if (n_threads < 1) n_threads = 1;
    cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool) {
        format_error(err, err_size, "out of memory");
        return NULL;
    }
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->finished, 0);
    atomic_init(&pool->quit, false);
    if (n_threads == 1) return pool;
    pool->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
    pool->args = calloc((size_t)n_threads - 1, sizeof(worker_arg));
    if (!pool->threads || !pool->args) {
        format_error(err, err_size, "out of memory");
        cpu_pool_free(pool);
        return NULL;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        pool->args[i] = (worker_arg){pool, i + 1};
        int rc = pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]);
        if (rc != 0) {
            format_error(err, err_size, "cannot start worker thread %d of %d: %s", i + 1, n_threads, strerror(rc));
            cpu_pool_free(pool);
            return NULL;
        }
        pool->started++;
    }
    return pool;
}

void cpu_pool_free(cpu_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->quit, true);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->started; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool->args);
    free(pool);
}

int cpu_pool_threads(const cpu_pool *pool) {
    return pool->n_threads;
}

void cpu_pool_run(cpu_pool *pool, cpu_pool_fn fn, void *ctx) {
    if (pool->n_threads == 1) {
        fn(ctx, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->finished, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    fn(ctx, 0);
    int others = pool->n_threads - 1;
    for (int spin = 1; atomic_load_explicit(&pool->finished, memory_order_acquire) < others; spin++) {
        if (spin % SPINS_PER_YIELD == 0)
            sched_yield();
        else
            CPU_RELAX();
    }
}
