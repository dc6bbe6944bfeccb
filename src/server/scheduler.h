/* scheduler.h: the server's slots and its continuous-batching worker.
 *
 * A scheduler owns N slots, each a greta_session with its own KV cache, and
 * one worker thread. Requests (jobs) wait in a bounded queue; between two
 * steps the worker moves queued jobs into free slots (prefilling their
 * prompts, reusing the prefix a slot's cache already holds), then every
 * step samples the next token of every active slot and evaluates those
 * tokens in one forward, and finished jobs leave their slots. A job's
 * tokens depend only on its prompt, settings and seed, never on which
 * slot it ran in or what ran beside it (tests/cli/serve_batch.sh): the
 * step's tokens are the rows of one forward (greta_eval_sessions), and a
 * row never depends on the other rows.
 *
 * The connection threads submit jobs and read their text as it grows; all
 * of a job's output fields are guarded by the scheduler's lock
 * (sched_lock / sched_wait). Uses only greta.h. */
#ifndef GRETA_SERVER_SCHEDULER_H
#define GRETA_SERVER_SCHEDULER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"
#include "server/metrics.h"

typedef enum {
    JOB_QUEUED = 0,
    JOB_RUNNING,
    JOB_DONE,
} sched_job_state;

typedef enum {
    FINISH_NONE = 0,
    FINISH_STOP,       /* end-of-generation token or a stop string */
    FINISH_LENGTH,     /* max_tokens, or the end of the context */
    FINISH_CANCELLED,  /* the client went away */
    FINISH_TIMEOUT,    /* ran past the generation time limit */
    FINISH_QUEUE_TIMEOUT, /* waited in the queue past its limit: never started */
    FINISH_ERROR,      /* a library call failed: error says why */
} sched_finish;

/* One generation request. The fields under "input" are set before
 * sched_submit and read-only afterwards; the fields under "output" are
 * written by the worker and read under the scheduler's lock. */
typedef struct sched_job {
    /* input */
    int32_t *prompt;              /* [n_prompt] token ids (owned, freed with the job) */
    size_t n_prompt;
    greta_sampler_params sampling;
    uint64_t seed;
    int32_t max_tokens;           /* > 0 */
    char **stops;                 /* [n_stops] owned strings */
    size_t n_stops;
    /* output */
    sched_job_state state;
    sched_finish finish;
    char *text;                   /* everything generated so far, NUL-terminated */
    size_t text_len, text_cap;
    int32_t n_generated;          /* tokens sampled and accepted (EOG not counted) */
    int32_t n_cached;             /* prompt tokens found in the slot's cache */
    char error[256];              /* FINISH_ERROR: why */
    bool cancelled;               /* set by sched_cancel */
    double t_submit, t_start, t_first, t_done; /* monotonic seconds; 0 = not yet */
    double deadline;              /* generation time limit (monotonic s) */
    int refs;                     /* owners: the submitter and, while queued or running, the worker */
    pthread_cond_t changed;       /* broadcast when any output field changes */
    struct sched_job *next_queued;
} sched_job;

typedef struct {
    int32_t n_slots;              /* --parallel */
    int32_t n_ctx;                /* per slot */
    int32_t n_threads;            /* per slot session; 0 = all CPUs */
    greta_backend backend;
    int32_t queue_max;            /* queued jobs beyond the slots; more gets SCHED_FULL */
    double queue_timeout;         /* seconds a job may wait for a slot */
    double gen_timeout;           /* seconds a job may run */
    greta_precision precision;    /* of every slot's session (DEFAULT: the backend's, q8 on cpu) */
    greta_kv_type kv_type;        /* of every slot's session (default: the backend's) */
    bool deterministic;           /* every slot's session: batch-invariant kernels only */
} sched_config;

typedef struct scheduler scheduler;

/* Creates the slots' sessions and starts the worker. NULL with a line in err. */
scheduler *sched_new(greta_model *model, const sched_config *config, server_metrics *metrics, char *err,
                     size_t err_size);
/* Finishes every queued and running job (drain), stops the worker, frees
 * the sessions. Jobs still referenced by submitters stay valid until they
 * are released. */
void sched_free(scheduler *s);

/* A new job holding copies of prompt and stops, one reference (the
 * caller's). NULL on out of memory. */
sched_job *sched_job_new(const int32_t *prompt, size_t n_prompt, const char *const *stops, size_t n_stops);
/* Drops one reference; the last frees the job. Takes the lock itself. */
void sched_job_release(scheduler *s, sched_job *job);

typedef enum {
    SCHED_OK = 0,
    SCHED_FULL,      /* every slot busy and the queue full */
    SCHED_DRAINING,  /* shutting down: no new work */
} sched_submit_result;

/* Queues the job (the worker takes its own reference). */
sched_submit_result sched_submit(scheduler *s, sched_job *job);
/* Asks the worker to stop the job (the client went away); its slot is free
 * after the current step. Takes the lock itself. */
void sched_cancel(scheduler *s, sched_job *job);
/* Stops accepting jobs; queued and running ones still finish. */
void sched_drain(scheduler *s);

/* The lock that guards every job's output fields, and a wait (lock held)
 * for the next change of job's output or timeout_s, whichever is first. */
void sched_lock(scheduler *s);
void sched_unlock(scheduler *s);
void sched_wait_job(scheduler *s, sched_job *job, double timeout_s);

/* Queue length and busy slots now (for /health and /metrics). */
void sched_counts(scheduler *s, int32_t *queued, int32_t *busy, int32_t *n_slots);

/* The context length of every slot. */
int32_t sched_n_ctx(const scheduler *s);

#endif
