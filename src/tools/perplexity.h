/* perplexity.h: perplexity and KL divergence of a model over a token
 * sequence, by llama.cpp's method (`greta perplexity`, docs/perplexity.md).
 *
 * The tokens are cut into n_chunks = n_tokens / n_ctx consecutive chunks of
 * n_ctx tokens (the rest is dropped). Each chunk is evaluated from an empty
 * KV cache, its first token replaced by BOS when the model adds one, in
 * evals of n_batch tokens; the logits of positions first = n_ctx / 2 ..
 * n_ctx - 2 score the next token: n_ctx - 1 - first tokens per chunk.
 * Negative log-likelihoods are computed in float64 from the session's
 * float64 logits (exact on the ref backend, promoted floats on cpu).
 *
 * KL divergence (llama.cpp's --kl-divergence-base / --kl-divergence, and
 * its file format, so files are exchangeable with llama-perplexity):
 *   "_logits_"  8 bytes
 *   int32 n_ctx, int32 n_vocab, int32 n_chunks          (little-endian)
 *   int32 tokens[n_chunks * n_ctx]                       (before the BOS swap)
 *   per chunk, per scored position (n_ctx - 1 - n_ctx/2 of them), a row of
 *   nv = 2 * ((n_vocab + 1) / 2) + 4 uint16: float32 scale, float32
 *   min_log_prob (the first 4 uint16), then n_vocab codes q with
 *   log p_i = scale * q_i + min_log_prob (log-probs below max - 16 are
 *   code 0), then padding to nv.
 * The base model's run writes the file; another model's run reads the
 * tokens from it and compares row by row. Uses only include/greta.h. */
#ifndef GRETA_TOOLS_PERPLEXITY_H
#define GRETA_TOOLS_PERPLEXITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "greta.h"

typedef struct {
    int32_t n_ctx;   /* tokens per chunk, >= 4 */
    int32_t n_batch; /* tokens per eval, 1..n_ctx */
    int32_t n_chunks; /* score only the first n_chunks chunks; 0 = all */
} perplexity_params;

/* Running sums over the scored tokens. */
typedef struct {
    size_t count;      /* tokens scored */
    double sum_nll;    /* sum of -log p(token) */
    double sum_nll2;   /* sum of its squares */
} perplexity_sums;

/* Sums of the KL comparison (llama.cpp's kl_divergence_result). */
typedef struct {
    perplexity_sums q;          /* this model */
    perplexity_sums base;       /* the base model, from the file's log-probs */
    double sum_nll_nll_base;    /* sum of nll * nll_base (covariance) */
    double sum_kld, sum_kld2;   /* KL(base || this) per token */
    double sum_p_diff, sum_p_diff2, sum_p_diff4; /* p(token) - p_base(token) */
    double max_abs_p_diff;
    size_t n_same_top;          /* argmax equal */
    float *kld_values;          /* per token, count of them (malloc'ed) */
    float *p_diff_values;
} perplexity_kl;

/* Called after every chunk with the sums so far (kl NULL without a base). */
typedef void (*perplexity_chunk_fn)(void *user, int chunk, int n_chunks, const perplexity_sums *sums,
                                    const perplexity_kl *kl);

/* A value and its standard error. */
typedef struct {
    double value, error;
} perplexity_estimate;

/* exp(mean nll) and its standard error, as llama.cpp prints
 * "Final estimate: PPL = X +/- Y": ppl * sqrt(var(nll) / (count - 1)). */
perplexity_estimate perplexity_of(const perplexity_sums *sums);

/* Perplexity of tokens[0..n_tokens). Needs n_tokens >= 2 * n_ctx. When
 * base_out is not NULL the log-probs are written to it in the file format
 * above. On failure false with one line in err. */
bool perplexity_run(greta_model *model, greta_session *session, const int32_t *tokens, size_t n_tokens,
                    const perplexity_params *params, FILE *base_out, perplexity_chunk_fn on_chunk,
                    void *user, perplexity_sums *out, char *err, size_t err_size);

/* A base file opened for reading: header and tokens read, rows to follow. */
typedef struct {
    FILE *f;
    int32_t n_ctx, n_vocab, n_chunks;
    int32_t *tokens; /* n_chunks * n_ctx */
} perplexity_base;

/* Opens and checks a base file (magic, sizes, file length). path is not
 * repeated in err. */
bool perplexity_base_open(const char *path, perplexity_base *base, char *err, size_t err_size);
void perplexity_base_close(perplexity_base *base);

/* Runs the model over the base file's tokens (params->n_ctx must be the
 * file's) and compares with its log-probs. kl is filled (free with
 * perplexity_kl_free), also after a failure. */
bool perplexity_kl_run(greta_model *model, greta_session *session, perplexity_base *base,
                       const perplexity_params *params,
                       perplexity_chunk_fn on_chunk, void *user, perplexity_kl *kl, char *err,
                       size_t err_size);
void perplexity_kl_free(perplexity_kl *kl);

/* The summary llama-perplexity prints after a KL run. */
typedef struct {
    perplexity_estimate ppl, ppl_base;   /* PPL(Q), PPL(base) */
    double cor_log_ppl;                  /* correlation of ln PPL(Q) and ln PPL(base) */
    perplexity_estimate log_ppl_ratio;   /* ln(PPL(Q) / PPL(base)) */
    perplexity_estimate ppl_ratio;       /* PPL(Q) / PPL(base) */
    perplexity_estimate ppl_diff;        /* PPL(Q) - PPL(base) */
    perplexity_estimate kld;             /* mean KL divergence */
    double kld_max, kld_99_9, kld_99, kld_95, kld_90, kld_median, kld_10, kld_5, kld_1, kld_0_1, kld_min;
    perplexity_estimate p_diff;          /* mean p - p_base */
    perplexity_estimate p_diff_rms;      /* RMS of p - p_base */
    double p_diff_max, p_diff_min, p_diff_median;
    perplexity_estimate same_top;        /* fraction of tokens with the same argmax */
} perplexity_kl_summary;

/* Sorts kl's value arrays and fills the summary. kl->q.count >= 2. */
void perplexity_kl_summarize(perplexity_kl *kl, perplexity_kl_summary *out);

/* llama.cpp's percentile of sorted values: linear between the neighbours
 * of fraction * (n - 1). */
double perplexity_percentile(const float *sorted, size_t n, double fraction);

#endif
