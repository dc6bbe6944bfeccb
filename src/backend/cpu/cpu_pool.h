/* backend_cpu_pool.h: the CPU backend's worker threads.
 *
 * A pool of n_threads - 1 workers is created once per session; the caller
 * of cpu_pool_run() is thread 0. cpu_pool_run(fn) runs fn(ctx, t) on every
 * thread t in [0, n_threads) and returns when all have finished. Workers
 * spin briefly between jobs (a decode step dispatches a few hundred jobs)
 * and then sleep on a condition variable. Which thread computes what must
 * never change a result: jobs split work so that every output element is
 * produced by exactly one thread in a fixed order. */
#ifndef GRETA_BACKEND_CPU_POOL_H
#define GRETA_BACKEND_CPU_POOL_H

#include <stddef.h>

typedef struct cpu_pool cpu_pool;
typedef void (*cpu_pool_fn)(void *ctx, int thread);

/* NULL with a reason in err if threads cannot be started. */
cpu_pool *cpu_pool_new(int n_threads, char *err, size_t err_size);
void cpu_pool_free(cpu_pool *pool);
int cpu_pool_threads(const cpu_pool *pool);
void cpu_pool_run(cpu_pool *pool, cpu_pool_fn fn, void *ctx);

#endif
