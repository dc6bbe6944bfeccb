/* sampler.h: the steps of greta's sampler chain, exposed for tests.
 *
 * The public API is greta_sampler_* and greta_stop_* in include/greta.h
 * (implemented in sampler.c). Order of operations of greta_sampler_sample,
 * as llama.cpp's default sampler chain:
 *
 *   greedy = true        argmax of the raw logits (lowest id on ties), done.
 *   1. repetition penalty  every distinct id among the last repeat_last_n
 *                          history ids: logit > 0 ? logit / penalty : logit * penalty
 *   temperature <= 0     argmax of the penalized logits (lowest id on ties), done.
 *   2. top-k             keep the k largest (ties at the boundary: lower ids first)
 *   3. top-p             softmax (T = 1) over the survivors; keep the shortest
 *                        prefix (by descending logit) whose mass reaches top_p
 *   4. min-p             keep logits >= max + log(min_p) (p >= min_p * p_max)
 *   5. temperature       divide the surviving logits by T (after shifting
 *                        them so the best is 0: same softmax, no overflow)
 *   6. draw              softmax in float64, u = next xoshiro256** double in
 *                        [0, 1), the first candidate (descending logit, then
 *                        ascending id) whose cumulative mass exceeds u * total.
 *
 * Everything is single-threaded and in a fixed order, so the same seed and
 * logits give the same token on every run and machine with the same libm. */
#ifndef GRETA_SAMPLER_H
#define GRETA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "greta.h"

/* One surviving token during the chain. */
typedef struct {
    int32_t id;
    float logit; /* after the steps applied so far */
} sampler_candidate;

/* Step 1 on a full row logits[n_vocab] (modified in place). */
void sampler_apply_repeat_penalty(float *logits, int32_t n_vocab, const int32_t *history,
                                  size_t n_history, float penalty, int32_t last_n);

/* Argmax of logits[0..n) with the lowest index on ties (NaN never wins). */
int32_t sampler_argmax(const float *logits, int32_t n);

/* Steps 2-5: from a full (penalized) row, the survivors sorted by
 * descending logit then ascending id, with temperature applied to their
 * logits (shifted: the best becomes 0 when T != 1). cands must hold n_vocab entries. Returns how many survive (>= 1
 * when some logit is finite). */
size_t sampler_filter(const float *logits, int32_t n_vocab, const greta_sampler_params *params,
                      sampler_candidate *cands);

/* Probabilities of the survivors: softmax of cands[i].logit in float64. */
void sampler_softmax(const sampler_candidate *cands, size_t n, double *probs);

/* The RNG: xoshiro256** seeded through splitmix64. */
typedef struct {
    uint64_t s[4];
} sampler_rng;
void sampler_rng_seed(sampler_rng *rng, uint64_t seed);
uint64_t sampler_rng_next(sampler_rng *rng);
/* Uniform double in [0, 1) from the top 53 bits. */
double sampler_rng_uniform(sampler_rng *rng);

#endif
