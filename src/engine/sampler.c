/* sampler.c: token sampling (greta_sampler_*) and stop strings
 * (greta_stop_*). The order of the sampler chain is documented in
 * sampler.h. */
#include "engine/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* RNG                                                                  */
/* ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sampler_rng_seed(sampler_rng *rng, uint64_t seed) {
    uint64_t state = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&state);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sampler_rng_next(sampler_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double sampler_rng_uniform(sampler_rng *rng) {
    return (double)(sampler_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------ */
/* Chain steps                                                          */
/* ------------------------------------------------------------------ */

void sampler_apply_repeat_penalty(float *logits, int32_t n_vocab, const int32_t *history,
                                  size_t n_history, float penalty, int32_t last_n) {
    if (penalty == 1.0f || last_n == 0 || n_history == 0) return;
    size_t window = last_n < 0 ? n_history : (size_t)last_n;
    if (window > n_history) window = n_history;
    const int32_t *recent = history + (n_history - window);
    for (size_t i = 0; i < window; i++) {
        int32_t id = recent[i];
        if (id < 0 || id >= n_vocab) continue;
        /* Penalize each distinct id once: skip if it occurred earlier in the window. */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = recent[j] == id;
        if (seen) continue;
        logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;
    }
}

int32_t sampler_argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++) {
        if (logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i]))) best = i;
    }
    return best;
}

/* Descending logit, then ascending id. */
static int candidate_order(const void *a, const void *b) {
    const sampler_candidate *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool candidate_before(const sampler_candidate *x, const sampler_candidate *y) {
    return x->logit > y->logit || (x->logit == y->logit && x->id < y->id);
}

/* Min-heap on candidate_before (root = the worst of the kept k). */
static void heap_sift_down(sampler_candidate *heap, size_t n, size_t i) {
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && candidate_before(&heap[worst], &heap[l])) worst = l;
        if (r < n && candidate_before(&heap[worst], &heap[r])) worst = r;
        if (worst == i) return;
        sampler_candidate t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

/* Keeps the k best of cands[0..n) in cands[0..k), sorted. Returns k. */
static size_t keep_top_k(sampler_candidate *cands, size_t n, size_t k) {
    if (k >= n) {
        qsort(cands, n, sizeof *cands, candidate_order);
        return n;
    }
    for (size_t i = k / 2 + 1; i-- > 0;) heap_sift_down(cands, k, i);
    for (size_t i = k; i < n; i++) {
        if (candidate_before(&cands[i], &cands[0])) {
            cands[0] = cands[i];
            heap_sift_down(cands, k, 0);
        }
    }
    qsort(cands, k, sizeof *cands, candidate_order);
    return k;
}

size_t sampler_filter(const float *logits, int32_t n_vocab, const greta_sampler_params *params,
                      sampler_candidate *cands) {
    /* Finite logits only: -inf can never be drawn. A +inf logit holds all
     * the probability: if there are any, they are the only candidates, at
     * equal weight (as greedy picks the first of them). */
    size_t n = 0;
    float max_logit = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (logits[i] == INFINITY) {
            cands[n].id = i;
            cands[n].logit = 0.0f;
            n++;
        }
    }
    if (n > 0) {
        max_logit = 0.0f;
    } else {
        for (int32_t i = 0; i < n_vocab; i++) {
            if (!isfinite(logits[i])) continue;
            cands[n].id = i;
            cands[n].logit = logits[i];
            if (logits[i] > max_logit) max_logit = logits[i];
            n++;
        }
    }
    if (n == 0) return 0;
    /* 2. top-k: an unsorted set of the k best. */
    bool sorted = false;
    if (params->top_k > 0 && (size_t)params->top_k < n) {
        n = keep_top_k(cands, n, (size_t)params->top_k);
        sorted = true;
    }
    /* Normalizer of the T = 1 softmax over the top-k survivors (top-p needs it). */
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += exp((double)cands[i].logit - (double)max_logit);
    /* 4. min-p keeps a prefix of the sorted order, as does 3. top-p: the
     * result is the shorter prefix, so pre-filter by min-p before sorting. */
    if (params->min_p > 0.0f) {
        double threshold = (double)max_logit + log((double)params->min_p);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            if ((double)cands[i].logit >= threshold) cands[kept++] = cands[i];
        }
        n = kept;
    }
    if (!sorted) qsort(cands, n, sizeof *cands, candidate_order);
    /* 3. top-p on the sorted prefix, with the mass of the top-k set. */
    if (params->top_p < 1.0f) {
        double target = (double)params->top_p * total, mass = 0.0;
        size_t kept = n;
        for (size_t i = 0; i < n; i++) {
            mass += exp((double)cands[i].logit - (double)max_logit);
            if (mass >= target) {
                kept = i + 1;
                break;
            }
        }
        n = kept;
    }
    /* 5. temperature, on logits shifted so the best is 0 (the softmax is
     * unchanged and a tiny T gives -inf, never inf - inf = NaN). */
    if (params->temperature != 1.0f && n > 0) {
        double best = (double)cands[0].logit, t = (double)params->temperature;
        for (size_t i = 0; i < n; i++) cands[i].logit = (float)(((double)cands[i].logit - best) / t);
    }
    return n;
}

void sampler_softmax(const sampler_candidate *cands, size_t n, double *probs) {
    if (n == 0) return;
    double max_logit = (double)cands[0].logit, total = 0.0;
    for (size_t i = 1; i < n; i++) {
        if ((double)cands[i].logit > max_logit) max_logit = (double)cands[i].logit;
    }
    for (size_t i = 0; i < n; i++) {
        probs[i] = exp((double)cands[i].logit - max_logit);
        total += probs[i];
    }
    for (size_t i = 0; i < n; i++) probs[i] /= total;
}

/* ------------------------------------------------------------------ */
/* greta_sampler                                                        */
/* ------------------------------------------------------------------ */

struct greta_sampler {
    sampler_rng rng;
    float *work;               /* [capacity] penalized logits */
    sampler_candidate *cands;  /* [capacity] */
    double *probs;             /* [capacity] */
    int32_t capacity;
};

greta_sampler_params greta_sampler_default_params(void) {
    greta_sampler_params p;
    p.greedy = false;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    return p;
}

greta_sampler *greta_sampler_new(uint64_t seed) {
    greta_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    sampler_rng_seed(&s->rng, seed);
    return s;
}

void greta_sampler_free(greta_sampler *sampler) {
    if (!sampler) return;
    free(sampler->work);
    free(sampler->cands);
    free(sampler->probs);
    free(sampler);
}

void greta_sampler_reseed(greta_sampler *sampler, uint64_t seed) {
    if (sampler) sampler_rng_seed(&sampler->rng, seed);
}

static bool sampler_reserve(greta_sampler *s, int32_t n_vocab) {
    if (s->capacity >= n_vocab) return true;
    float *work = malloc((size_t)n_vocab * sizeof *work);
    sampler_candidate *cands = malloc((size_t)n_vocab * sizeof *cands);
    double *probs = malloc((size_t)n_vocab * sizeof *probs);
    if (!work || !cands || !probs) {
        free(work);
        free(cands);
        free(probs);
        return false;
    }
    free(s->work);
    free(s->cands);
    free(s->probs);
    s->work = work;
    s->cands = cands;
    s->probs = probs;
    s->capacity = n_vocab;
    return true;
}

static bool params_valid(const greta_sampler_params *p) {
    return !isnan(p->temperature) && p->top_k >= 0 && p->top_p > 0.0f && p->top_p <= 1.0f &&
           p->min_p >= 0.0f && p->min_p <= 1.0f && p->repeat_penalty > 0.0f &&
           isfinite(p->repeat_penalty) && p->repeat_last_n >= -1;
}

greta_status greta_sampler_sample(greta_sampler *sampler, const greta_sampler_params *params,
                                  const float *logits, int32_t n_vocab, const int32_t *history,
                                  size_t n_history, int32_t *out_token) {
    if (!sampler || !params || !logits || !out_token || n_vocab <= 0 ||
        (n_history > 0 && !history) || !params_valid(params)) {
        return GRETA_ERR_INVALID_ARGUMENT;
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        if (isnan(logits[i])) return GRETA_ERR_INVALID_ARGUMENT;
    }
    if (params->greedy) {
        int32_t best = sampler_argmax(logits, n_vocab);
        if (logits[best] == -INFINITY) return GRETA_ERR_INVALID_ARGUMENT; /* every logit is -inf */
        *out_token = best;
        return GRETA_OK;
    }
    if (!sampler_reserve(sampler, n_vocab)) return GRETA_ERR_NO_MEMORY;
    memcpy(sampler->work, logits, (size_t)n_vocab * sizeof *logits);
    sampler_apply_repeat_penalty(sampler->work, n_vocab, history, n_history, params->repeat_penalty,
                                 params->repeat_last_n);
    if (params->temperature <= 0.0f) {
        int32_t best = sampler_argmax(sampler->work, n_vocab);
        if (sampler->work[best] == -INFINITY) return GRETA_ERR_INVALID_ARGUMENT;
        *out_token = best;
        return GRETA_OK;
    }
    size_t n = sampler_filter(sampler->work, n_vocab, params, sampler->cands);
    if (n == 0) return GRETA_ERR_INVALID_ARGUMENT; /* every logit is -inf */
    sampler_softmax(sampler->cands, n, sampler->probs);
    double u = sampler_rng_uniform(&sampler->rng), mass = 0.0;
    size_t pick = n - 1;
    for (size_t i = 0; i < n; i++) {
        mass += sampler->probs[i];
        if (u < mass) {
            pick = i;
            break;
        }
    }
    *out_token = sampler->cands[pick].id;
    return GRETA_OK;
}

/* ------------------------------------------------------------------ */
/* Stop strings                                                         */
/* ------------------------------------------------------------------ */

struct greta_stop {
    char **stops;     /* [n_stops] non-empty stop strings */
    size_t *lens;
    size_t n_stops;
    char *pending;    /* text held back: may be the start of a stop string */
    size_t n_pending;
    size_t cap_pending;
    char *out;        /* text handed out by the last call */
    size_t cap_out;
    bool stopped;
};

greta_stop *greta_stop_new(const char *const *stops, size_t n_stops) {
    greta_stop *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->stops = calloc(n_stops ? n_stops : 1, sizeof *st->stops);
    st->lens = calloc(n_stops ? n_stops : 1, sizeof *st->lens);
    if (!st->stops || !st->lens) {
        greta_stop_free(st);
        return NULL;
    }
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        st->stops[st->n_stops] = strdup(stops[i]);
        if (!st->stops[st->n_stops]) {
            greta_stop_free(st);
            return NULL;
        }
        st->lens[st->n_stops] = strlen(stops[i]);
        st->n_stops++;
    }
    return st;
}

void greta_stop_free(greta_stop *stop) {
    if (!stop) return;
    if (stop->stops) {
        for (size_t i = 0; i < stop->n_stops; i++) free(stop->stops[i]);
    }
    free(stop->stops);
    free(stop->lens);
    free(stop->pending);
    free(stop->out);
    free(stop);
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t new_cap = *cap ? *cap : 64;
    while (new_cap < need) new_cap *= 2;
    char *p = realloc(*buf, new_cap);
    if (!p) return false;
    *buf = p;
    *cap = new_cap;
    return true;
}

/* Length of the longest suffix of text[0..n) that is a proper prefix of a stop string. */
static size_t held_suffix(const greta_stop *st, const char *text, size_t n) {
    size_t best = 0;
    for (size_t s = 0; s < st->n_stops; s++) {
        size_t max = st->lens[s] - 1 < n ? st->lens[s] - 1 : n;
        for (size_t len = max; len > best; len--) {
            if (memcmp(text + n - len, st->stops[s], len) == 0) {
                best = len;
                break;
            }
        }
    }
    return best;
}

/* Hands out text[0..n) through st->out. */
static greta_status emit(greta_stop *st, const char *text, size_t n, const char **out, size_t *out_len) {
    if (!grow(&st->out, &st->cap_out, n + 1)) return GRETA_ERR_NO_MEMORY;
    if (n) memcpy(st->out, text, n); /* text is NULL when nothing was ever pushed */
    st->out[n] = '\0';
    *out = st->out;
    *out_len = n;
    return GRETA_OK;
}

greta_status greta_stop_push(greta_stop *stop, const char *text, size_t len, const char **out,
                             size_t *out_len, bool *stopped) {
    if (!stop || (!text && len) || !out || !out_len || !stopped) return GRETA_ERR_INVALID_ARGUMENT;
    *stopped = stop->stopped;
    if (stop->stopped) return emit(stop, "", 0, out, out_len);
    if (!grow(&stop->pending, &stop->cap_pending, stop->n_pending + len + 1)) return GRETA_ERR_NO_MEMORY;
    if (len) memcpy(stop->pending + stop->n_pending, text, len);
    stop->n_pending += len;
    /* The earliest complete stop string ends generation. */
    size_t first = stop->n_pending;
    for (size_t s = 0; s < stop->n_stops; s++) {
        const char *hit = memmem(stop->pending, stop->n_pending, stop->stops[s], stop->lens[s]);
        if (hit && (size_t)(hit - stop->pending) < first) first = (size_t)(hit - stop->pending);
    }
    if (first < stop->n_pending) {
        stop->stopped = true;
        *stopped = true;
        greta_status st = emit(stop, stop->pending, first, out, out_len);
        stop->n_pending = 0;
        return st;
    }
    size_t hold = held_suffix(stop, stop->pending, stop->n_pending);
    size_t ready = stop->n_pending - hold;
    greta_status st = emit(stop, stop->pending, ready, out, out_len);
    if (st != GRETA_OK) return st;
    memmove(stop->pending, stop->pending + ready, hold);
    stop->n_pending = hold;
    return GRETA_OK;
}

greta_status greta_stop_flush(greta_stop *stop, const char **out, size_t *out_len) {
    if (!stop || !out || !out_len) return GRETA_ERR_INVALID_ARGUMENT;
    greta_status st = emit(stop, stop->pending, stop->stopped ? 0 : stop->n_pending, out, out_len);
    stop->n_pending = 0;
    stop->stopped = false;
    return st;
}
