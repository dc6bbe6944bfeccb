/* scheduler.c: slots, the bounded queue and the continuous-batching worker
 * (see scheduler.h).
 *
 * The worker repeats one cycle:
 *   1. under the lock: expire queued jobs past their wait limit, stop the
 *      jobs whose clients left or whose time ran out, move queued jobs into
 *      free slots;
 *   2. without the lock: evaluate the next chunk of every prefilling
 *      slot's prompt (PREFILL_CHUNK tokens), then one step:
 *      sample the next token of every active slot (step_slot), then
 *      evaluate those tokens as the rows of one forward (eval_step);
 *   3. under the lock: publish each slot's new text and counts to its job
 *      and free the slots of finished jobs.
 * A slot's generation follows the loop of `greta run` exactly (sample,
 * end-of-generation check, detokenize, stop strings, evaluate), so a job's
 * text equals greta run's for the same prompt, settings and seed. */
#include "server/scheduler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prompt tokens a slot evaluates per cycle of the worker: a long prompt
 * neither stalls the other slots' decoding nor outlives its client by
 * more than one chunk. */
#define PREFILL_CHUNK 64

/* One slot: a session and what its current job has produced this step. */
typedef struct {
    greta_session *session;
    greta_detok *detok;         /* reused: flushed between jobs */
    greta_stop *stop;           /* the current job's stop strings */
    sched_job *job;             /* NULL = free */
    bool needs_prefill;         /* admitted, prefill not begun */
    bool prefilling;            /* prompt tokens [prefill_at, n_prompt) still to evaluate */
    size_t prefill_at;
    int32_t n_max;              /* tokens the job may generate (max_tokens, context) */
    int32_t n_generated;
    int32_t pending;            /* token to evaluate this step; -1 = none */
    sched_finish finish;        /* set by the step when the job ends */
    char error[256];
    char *out;                  /* text produced this step, not yet published */
    size_t out_len, out_cap;
    bool out_failed;            /* out of memory growing out */
    int32_t new_tokens;         /* tokens sampled this step */
    double t_last;              /* when the previous token was sampled */
    double t_first;             /* first token of the job (0 = none yet) */
} slot;

struct scheduler {
    greta_model *model;
    sched_config config;
    server_metrics *metrics;
    slot *slots;                /* [n_slots] */
    /* One decode step's rows, [n_slots] each: the sessions, their tokens, their slots. */
    greta_session **step_sessions;
    int32_t *step_ids;
    slot **step_slots;
    pthread_mutex_t mutex;
    pthread_cond_t work;        /* a job was queued or cancelled, or draining began */
    sched_job *queue_head, *queue_tail;
    int32_t n_queued;
    int32_t n_busy;
    bool draining;              /* no new jobs; the worker exits once idle */
    pthread_t worker;
    bool worker_started;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void cond_init_monotonic(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void cond_wait_for(pthread_cond_t *cond, pthread_mutex_t *mutex, double timeout_s) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = floor(timeout_s);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((timeout_s - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, mutex, &ts);
}

/* ---- jobs ---- */

sched_job *sched_job_new(const int32_t *prompt, size_t n_prompt, const char *const *stops, size_t n_stops) {
    sched_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    job->refs = 1;
    cond_init_monotonic(&job->changed);
    job->prompt = malloc((n_prompt ? n_prompt : 1) * sizeof *job->prompt);
    job->stops = calloc(n_stops ? n_stops : 1, sizeof *job->stops);
    job->text_cap = 256;
    job->text = malloc(job->text_cap);
    bool ok = job->prompt && job->stops && job->text;
    if (ok) {
        memcpy(job->prompt, prompt, n_prompt * sizeof *prompt);
        job->n_prompt = n_prompt;
        job->text[0] = '\0';
    }
    for (size_t i = 0; ok && i < n_stops; i++) {
        job->stops[i] = strdup(stops[i]);
        job->n_stops = i + 1;
        ok = job->stops[i] != NULL;
    }
    job->sampling = greta_sampler_default_params();
    job->max_tokens = 1;
    if (!ok) {
        job->refs = 0;
        for (size_t i = 0; i < job->n_stops; i++) free(job->stops[i]);
        free(job->stops);
        free(job->prompt);
        free(job->text);
        pthread_cond_destroy(&job->changed);
        free(job);
        return NULL;
    }
    return job;
}

static void job_free(sched_job *job) {
    for (size_t i = 0; i < job->n_stops; i++) free(job->stops[i]);
    free(job->stops);
    free(job->prompt);
    free(job->text);
    pthread_cond_destroy(&job->changed);
    free(job);
}

/* Lock held. */
static void job_unref(sched_job *job) {
    if (--job->refs == 0) job_free(job);
}

void sched_job_release(scheduler *s, sched_job *job) {
    if (!job) return;
    pthread_mutex_lock(&s->mutex);
    job_unref(job);
    pthread_mutex_unlock(&s->mutex);
}

/* Lock held: the job is over; wakes its reader and drops the worker's reference. */
static void job_finish(scheduler *s, sched_job *job, sched_finish finish, const char *error) {
    job->state = JOB_DONE;
    job->finish = finish;
    job->t_done = now_s();
    if (error) snprintf(job->error, sizeof job->error, "%s", error);
    pthread_cond_broadcast(&job->changed);
    job_unref(job);
    (void)s;
}

/* Lock held: appends text to the job's output. */
static bool job_append(sched_job *job, const char *text, size_t len) {
    if (job->text_len + len + 1 > job->text_cap) {
        size_t cap = job->text_cap;
        while (cap < job->text_len + len + 1) cap *= 2;
        char *grown = realloc(job->text, cap);
        if (!grown) return false;
        job->text = grown;
        job->text_cap = cap;
    }
    memcpy(job->text + job->text_len, text, len);
    job->text_len += len;
    job->text[job->text_len] = '\0';
    return true;
}

/* ---- one slot's generation (no lock: only the worker touches slots) ---- */

static void slot_emit(slot *sl, const char *text, size_t len) {
    if (sl->out_len + len + 1 > sl->out_cap) {
        size_t cap = sl->out_cap ? sl->out_cap : 256;
        while (cap < sl->out_len + len + 1) cap *= 2;
        char *grown = realloc(sl->out, cap);
        if (!grown) {
            sl->out_failed = true;
            return;
        }
        sl->out = grown;
        sl->out_cap = cap;
    }
    memcpy(sl->out + sl->out_len, text, len);
    sl->out_len += len;
}

static void slot_fail(slot *sl, const char *what, const char *why) {
    sl->finish = FINISH_ERROR;
    sl->pending = -1;
    snprintf(sl->error, sizeof sl->error, "%s: %s", what, why && why[0] ? why : "failed");
}

/* Pushes generated text through the stop matcher; true when a stop string completed. */
static bool slot_push_text(slot *sl, const char *text, size_t len) {
    if (len == 0) return false; /* a token with no text (e.g. a control token): nothing to match */
    const char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;
    if (greta_stop_push(sl->stop, text, len, &out, &out_len, &stopped) != GRETA_OK) {
        slot_fail(sl, "stop strings", "out of memory");
        return false;
    }
    slot_emit(sl, out, out_len);
    return stopped;
}

/* The end of a generation that did not stop at a stop string: whatever
 * the detokenizer and the stop matcher hold back is text too. */
static void slot_flush_text(slot *sl) {
    const char *tail = NULL;
    size_t tail_len = 0;
    bool stopped = false;
    if (greta_detok_flush(sl->detok, &tail, &tail_len) == GRETA_OK && tail_len) stopped = slot_push_text(sl, tail, tail_len);
    if (!stopped && sl->finish != FINISH_ERROR && greta_stop_flush(sl->stop, &tail, &tail_len) == GRETA_OK)
        slot_emit(sl, tail, tail_len);
}

/* Starts the slot's job: keeps the prefix its cache already holds; the
 * rest of the prompt is evaluated by slot_prefill_chunk. */
static void slot_prefill_begin(slot *sl) {
    sched_job *job = sl->job;
    sl->needs_prefill = false;
    sl->n_generated = 0;
    sl->pending = -1;
    sl->finish = FINISH_NONE;
    sl->t_first = 0;
    const char *ignored = NULL;
    size_t ignored_len = 0;
    greta_detok_flush(sl->detok, &ignored, &ignored_len); /* reset for a new sequence */
    greta_stop_free(sl->stop);
    sl->stop = greta_stop_new((const char *const *)job->stops, job->n_stops);
    if (!sl->stop) {
        slot_fail(sl, "stop strings", "out of memory");
        return;
    }
    const int32_t *cached = greta_session_tokens(sl->session);
    size_t n_cached = (size_t)greta_pos(sl->session), common = 0;
    while (common < n_cached && common < job->n_prompt && cached[common] == job->prompt[common]) common++;
    if (common == job->n_prompt) common--; /* evaluate at least one token to get logits */
    if (greta_rewind(sl->session, (int32_t)common) != GRETA_OK) {
        slot_fail(sl, "prompt", greta_session_error(sl->session));
        return;
    }
    job->n_cached = (int32_t)common; /* written without the lock: readers look only after JOB_DONE */
    sl->prefill_at = common;
    sl->prefilling = true;
}

/* Evaluates the next PREFILL_CHUNK tokens of the slot's prompt. A prompt
 * in chunks gives the same logits, bit for bit, as in one call (greta.h's
 * greta_eval contract), and between two chunks the worker runs a decode
 * step for the other slots and notices a client that left. After the last
 * chunk: reseeds the sampler and the slot starts generating. */
static void slot_prefill_chunk(scheduler *s, slot *sl) {
    sched_job *job = sl->job;
    size_t n = job->n_prompt - sl->prefill_at;
    if (n > PREFILL_CHUNK) n = PREFILL_CHUNK;
    if (greta_eval(sl->session, job->prompt + sl->prefill_at, n) != GRETA_OK) {
        slot_fail(sl, "prompt", greta_session_error(sl->session));
        sl->prefilling = false;
        greta_rewind(sl->session, 0);
        return;
    }
    metrics_add_tokens(s->metrics, (int64_t)n, 0);
    sl->prefill_at += n;
    if (sl->prefill_at < job->n_prompt) return;
    sl->prefilling = false;
    greta_session_reseed(sl->session, job->seed);
    int32_t room = s->config.n_ctx - (int32_t)job->n_prompt + 1; /* the last token is not evaluated */
    sl->n_max = job->max_tokens < room ? job->max_tokens : room;
    sl->t_last = now_s();
}

/* Samples the slot's next token, as greta run does; leaves it in pending
 * unless the job ends here. */
static void step_slot(scheduler *s, slot *sl) {
    int32_t tok = -1;
    if (greta_sample(sl->session, &sl->job->sampling, &tok) != GRETA_OK) {
        slot_fail(sl, "sampling", greta_session_error(sl->session));
        return;
    }
    double t = now_s();
    if (sl->t_first == 0) sl->t_first = t;
    else metrics_observe_token(s->metrics, t - sl->t_last);
    sl->t_last = t;
    if (greta_token_is_eog(s->model, tok)) {
        sl->finish = FINISH_STOP;
        slot_flush_text(sl);
        return;
    }
    sl->n_generated++;
    sl->new_tokens++;
    const char *piece = NULL;
    size_t piece_len = 0;
    if (greta_detok_push(sl->detok, tok, &piece, &piece_len) != GRETA_OK) {
        slot_fail(sl, "detokenizing", "failed");
        return;
    }
    if (slot_push_text(sl, piece, piece_len)) {
        sl->finish = FINISH_STOP;
        return;
    }
    if (sl->finish == FINISH_ERROR) return;
    if (sl->n_generated >= sl->n_max || greta_pos(sl->session) >= s->config.n_ctx) {
        sl->finish = FINISH_LENGTH;
        slot_flush_text(sl);
        return;
    }
    sl->pending = tok;
}

/* Evaluates the pending token of every slot that has one as the rows of ONE
 * forward (greta_eval_sessions): each slot's session ends exactly as if it
 * had evaluated its token alone, so batching changes no token. */
static void eval_step(scheduler *s) {
    size_t n = 0;
    for (int32_t i = 0; i < s->config.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->pending < 0) continue;
        s->step_sessions[n] = sl->session;
        s->step_ids[n] = sl->pending;
        s->step_slots[n] = sl;
        n++;
    }
    if (n == 0) return;
    greta_status st = greta_eval_sessions(s->step_sessions, s->step_ids, n);
    metrics_add_step(s->metrics, (int64_t)n);
    for (size_t k = 0; k < n; k++) {
        slot *sl = s->step_slots[k];
        if (st != GRETA_OK) slot_fail(sl, "decode", greta_session_error(sl->session));
        sl->pending = -1;
    }
}

/* ---- the worker ---- */

/* Lock held: ends queued jobs that were cancelled or waited too long. */
static void expire_queue(scheduler *s, double t) {
    sched_job **link = &s->queue_head, *prev = NULL;
    while (*link) {
        sched_job *job = *link;
        bool cancelled = job->cancelled, late = t - job->t_submit > s->config.queue_timeout;
        if (!cancelled && !late) {
            prev = job;
            link = &job->next_queued;
            continue;
        }
        *link = job->next_queued;
        if (s->queue_tail == job) s->queue_tail = prev;
        job->next_queued = NULL;
        s->n_queued--;
        job_finish(s, job, cancelled ? FINISH_CANCELLED : FINISH_QUEUE_TIMEOUT, NULL);
    }
}

/* Lock held: stops running jobs whose client left or whose time ran out. */
static void stop_abandoned(scheduler *s, double t) {
    for (int32_t i = 0; i < s->config.n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job) continue;
        bool late = t > sl->job->deadline;
        if (!sl->job->cancelled && !late) continue;
        job_finish(s, sl->job, sl->job->cancelled ? FINISH_CANCELLED : FINISH_TIMEOUT, NULL);
        sl->job = NULL;
        sl->pending = -1;
        sl->prefilling = false;
        sl->out_len = 0;
        sl->out_failed = false;
        s->n_busy--; /* the cache keeps what was evaluated: a later prompt may share its prefix */
    }
}

/* Lock held: moves queued jobs into free slots. */
static void admit(scheduler *s, double t) {
    for (int32_t i = 0; i < s->config.n_slots && s->queue_head; i++) {
        slot *sl = &s->slots[i];
        if (sl->job) continue;
        sched_job *job = s->queue_head;
        s->queue_head = job->next_queued;
        if (!s->queue_head) s->queue_tail = NULL;
        job->next_queued = NULL;
        s->n_queued--;
        job->state = JOB_RUNNING;
        job->t_start = t;
        job->deadline = t + s->config.gen_timeout;
        pthread_cond_broadcast(&job->changed);
        sl->job = job;
        sl->needs_prefill = true;
        s->n_busy++;
    }
}

/* Lock held: hands each slot's step output to its job; frees finished slots. */
static void publish(scheduler *s) {
    for (int32_t i = 0; i < s->config.n_slots; i++) {
        slot *sl = &s->slots[i];
        sched_job *job = sl->job;
        if (!job) continue;
        if (sl->out_failed || (sl->out_len && !job_append(job, sl->out, sl->out_len)))
            slot_fail(sl, "generation", "out of memory");
        sl->out_len = 0;
        sl->out_failed = false;
        if (sl->t_first && !job->t_first) {
            job->t_first = sl->t_first;
            metrics_observe_ttft(s->metrics, job->t_first - job->t_submit);
        }
        job->n_generated = sl->n_generated;
        if (sl->new_tokens) metrics_add_tokens(s->metrics, 0, sl->new_tokens);
        sl->new_tokens = 0;
        if (sl->finish == FINISH_NONE) {
            pthread_cond_broadcast(&job->changed);
            continue;
        }
        if (sl->finish == FINISH_ERROR) greta_rewind(sl->session, 0);
        job_finish(s, job, sl->finish, sl->finish == FINISH_ERROR ? sl->error : NULL);
        sl->job = NULL;
        sl->pending = -1;
        sl->prefilling = false;
        s->n_busy--;
    }
}

static void *worker_main(void *arg) {
    scheduler *s = arg;
    pthread_mutex_lock(&s->mutex);
    for (;;) {
        double t = now_s();
        expire_queue(s, t);
        stop_abandoned(s, t);
        admit(s, t);
        if (s->n_busy == 0) {
            if (s->draining && !s->queue_head) break;
            cond_wait_for(&s->work, &s->mutex, 0.25); /* wakes for queue timeouts too */
            continue;
        }
        pthread_mutex_unlock(&s->mutex);
        for (int32_t i = 0; i < s->config.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->job && sl->needs_prefill) slot_prefill_begin(sl);
            if (sl->job && sl->prefilling && sl->finish == FINISH_NONE) slot_prefill_chunk(s, sl);
        }
        for (int32_t i = 0; i < s->config.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->job && !sl->prefilling && sl->finish == FINISH_NONE) step_slot(s, sl);
        }
        eval_step(s);
        pthread_mutex_lock(&s->mutex);
        publish(s);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

/* ---- lifetime and the submitters' side ---- */

static void free_slots(scheduler *s) {
    for (int32_t i = 0; s->slots && i < s->config.n_slots; i++) {
        greta_session_free(s->slots[i].session);
        greta_detok_free(s->slots[i].detok);
        greta_stop_free(s->slots[i].stop);
        free(s->slots[i].out);
    }
    free(s->slots);
    free(s->step_sessions);
    free(s->step_ids);
    free(s->step_slots);
}

scheduler *sched_new(greta_model *model, const sched_config *config, server_metrics *metrics, char *err,
                     size_t err_size) {
    scheduler *s = calloc(1, sizeof *s);
    size_t n = (size_t)config->n_slots;
    if (s) {
        s->slots = calloc(n, sizeof *s->slots);
        s->step_sessions = calloc(n, sizeof *s->step_sessions);
        s->step_ids = calloc(n, sizeof *s->step_ids);
        s->step_slots = calloc(n, sizeof *s->step_slots);
    }
    if (!s || !s->slots || !s->step_sessions || !s->step_ids || !s->step_slots) {
        snprintf(err, err_size, "out of memory");
        if (s) free_slots(s);
        free(s);
        return NULL;
    }
    s->model = model;
    s->config = *config;
    s->metrics = metrics;
    greta_session_params sp = greta_session_default_params();
    sp.n_ctx = config->n_ctx;
    sp.n_threads = config->n_threads;
    sp.backend = config->backend;
    sp.precision = config->precision;
    sp.kv_type = config->kv_type;
    sp.deterministic = config->deterministic;
    for (int32_t i = 0; i < config->n_slots; i++) {
        slot *sl = &s->slots[i];
        char why[256] = "";
        greta_status st = greta_session_new(model, &sp, &sl->session, why, sizeof why);
        if (st != GRETA_OK) {
            snprintf(err, err_size, "slot %d: %s", (int)i, why[0] ? why : greta_status_string(st));
            free_slots(s);
            free(s);
            return NULL;
        }
        sl->detok = greta_detok_new(model, false);
        sl->pending = -1;
        if (!sl->detok) {
            snprintf(err, err_size, "out of memory");
            free_slots(s);
            free(s);
            return NULL;
        }
    }
    s->config.n_ctx = greta_session_n_ctx(s->slots[0].session);
    pthread_mutex_init(&s->mutex, NULL);
    cond_init_monotonic(&s->work);
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0) {
        snprintf(err, err_size, "cannot start the worker thread: %s", strerror(errno));
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->mutex);
        free_slots(s);
        free(s);
        return NULL;
    }
    s->worker_started = true;
    return s;
}

void sched_drain(scheduler *s) {
    pthread_mutex_lock(&s->mutex);
    s->draining = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mutex);
}

void sched_free(scheduler *s) {
    if (!s) return;
    sched_drain(s);
    if (s->worker_started) pthread_join(s->worker, NULL);
    free_slots(s);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mutex);
    free(s);
}

sched_submit_result sched_submit(scheduler *s, sched_job *job) {
    pthread_mutex_lock(&s->mutex);
    sched_submit_result r = SCHED_OK;
    int32_t free_slots_now = s->config.n_slots - s->n_busy;
    if (s->draining) r = SCHED_DRAINING;
    else if (s->n_queued - free_slots_now >= s->config.queue_max) r = SCHED_FULL;
    if (r == SCHED_OK) {
        job->refs++;
        job->state = JOB_QUEUED;
        job->t_submit = now_s();
        if (s->queue_tail) s->queue_tail->next_queued = job;
        else s->queue_head = job;
        s->queue_tail = job;
        s->n_queued++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mutex);
    return r;
}

void sched_cancel(scheduler *s, sched_job *job) {
    pthread_mutex_lock(&s->mutex);
    if (job->state != JOB_DONE && !job->cancelled) {
        job->cancelled = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mutex);
}

void sched_lock(scheduler *s) {
    pthread_mutex_lock(&s->mutex);
}

void sched_unlock(scheduler *s) {
    pthread_mutex_unlock(&s->mutex);
}

void sched_wait_job(scheduler *s, sched_job *job, double timeout_s) {
    cond_wait_for(&job->changed, &s->mutex, timeout_s);
}

void sched_counts(scheduler *s, int32_t *queued, int32_t *busy, int32_t *n_slots) {
    pthread_mutex_lock(&s->mutex);
    *queued = s->n_queued;
    *busy = s->n_busy;
    *n_slots = s->config.n_slots;
    pthread_mutex_unlock(&s->mutex);
}

int32_t sched_n_ctx(const scheduler *s) {
    return s->config.n_ctx;
}
