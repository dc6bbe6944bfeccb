/* perplexity.c: llama.cpp's perplexity and KL-divergence method over a
 * token sequence (see perplexity.h for the method and the file format). */
#include "tools/perplexity.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char base_magic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

/* uint16 per base row: scale and min_log_prob (2 floats), then the codes,
 * padded to an even count. */
static size_t base_row_len(int32_t n_vocab) {
    return 2 * (((size_t)n_vocab + 1) / 2) + 4;
}

/* Scored positions per chunk: first = n_ctx / 2 .. n_ctx - 2. */
static int32_t scored_per_chunk(int32_t n_ctx) {
    return n_ctx - 1 - n_ctx / 2;
}

/* ---- one row of logits ---- */

/* log(sum_i exp(logits_i)), stably; *argmax: the first largest. */
static double log_sum_exp(const double *logits, int32_t n, int32_t *argmax) {
    double max = logits[0];
    int32_t imax = 0;
    for (int32_t i = 1; i < n; i++) {
        if (logits[i] > max) {
            max = logits[i];
            imax = i;
        }
    }
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp(logits[i] - max);
    if (argmax) *argmax = imax;
    return max + log(sum);
}

static void sums_add(perplexity_sums *s, double nll) {
    s->count++;
    s->sum_nll += nll;
    s->sum_nll2 += nll * nll;
}

/* ---- little-endian I/O ---- */

static void put_u32(unsigned char *b, uint32_t v) {
    for (int k = 0; k < 4; k++) b[k] = (unsigned char)(v >> (8 * k));
}

static uint32_t get_u32(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static float f32_of_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint32_t bits_of_f32(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return bits;
}

/* Encodes one row of log-probs as llama.cpp does: codes of (logit - lo) /
 * scale with lo = max(min logit, max logit - 16); out has base_row_len
 * uint16 as little-endian bytes. */
static void encode_base_row(const double *logits, int32_t n_vocab, unsigned char *out) {
    int32_t imax = 0;
    double lse = log_sum_exp(logits, n_vocab, &imax);
    double max = logits[imax], min = max;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] < min) min = logits[i];
    if (min < max - 16.0) min = max - 16.0;
    float scale = (float)((max - min) / 65535.0);
    float min_log_prob = (float)(min - lse);
    put_u32(out, bits_of_f32(scale));
    put_u32(out + 4, bits_of_f32(min_log_prob));
    unsigned char *codes = out + 8;
    memset(codes, 0, 2 * (base_row_len(n_vocab) - 4));
    if (scale == 0.0f) return;
    for (int32_t i = 0; i < n_vocab; i++) {
        long q = logits[i] > min ? lround((logits[i] - min) / (double)scale) : 0;
        if (q > 65535) q = 65535;
        codes[2 * i] = (unsigned char)q;
        codes[2 * i + 1] = (unsigned char)(q >> 8);
    }
}

/* Compares a row of this model's logits with a base row (llama.cpp's
 * kl_divergence log_softmax). */
static void compare_row(const double *logits, int32_t n_vocab, const unsigned char *base_row, int32_t token,
                        perplexity_kl *kl) {
    int32_t imax = 0;
    double lse = log_sum_exp(logits, n_vocab, &imax);
    double scale = f32_of_bits(get_u32(base_row));
    double min_log_prob = f32_of_bits(get_u32(base_row + 4));
    const unsigned char *codes = base_row + 8;
    double nll = lse - logits[token];
    double nll_base = -(scale * (double)(codes[2 * token] | codes[2 * token + 1] << 8) + min_log_prob);
    double kld = 0.0, best = 0.0;
    int32_t imax_base = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        double log_p_base = scale * (double)(codes[2 * i] | codes[2 * i + 1] << 8) + min_log_prob;
        if (i == 0 || log_p_base > best) {
            best = log_p_base;
            imax_base = i;
        }
        if (log_p_base > -16.0) kld += exp(log_p_base) * (log_p_base - (logits[i] - lse));
    }
    double p_diff = exp(-nll) - exp(-nll_base);
    size_t k = kl->q.count;
    kl->kld_values[k] = (float)kld;
    kl->p_diff_values[k] = (float)p_diff;
    sums_add(&kl->q, nll);
    sums_add(&kl->base, nll_base);
    kl->sum_nll_nll_base += nll * nll_base;
    kl->sum_kld += kld;
    kl->sum_kld2 += kld * kld;
    kl->sum_p_diff += p_diff;
    kl->sum_p_diff2 += p_diff * p_diff;
    kl->sum_p_diff4 += p_diff * p_diff * p_diff * p_diff;
    if (fabs(p_diff) > kl->max_abs_p_diff) kl->max_abs_p_diff = fabs(p_diff);
    if (imax == imax_base) kl->n_same_top++;
}

/* ---- the chunk loop ---- */

/* What is done with each scored row. */
typedef struct {
    int32_t n_vocab;
    perplexity_sums *sums;   /* plain perplexity */
    FILE *base_out;          /* write base rows (may be NULL) */
    FILE *base_in;           /* compare with base rows (KL mode) */
    perplexity_kl *kl;
    unsigned char *row_buf;  /* base_row_len * 2 bytes */
    char *err;
    size_t err_size;
} row_sink;

static bool take_row(row_sink *sink, const double *logits, int32_t token) {
    size_t row_bytes = 2 * base_row_len(sink->n_vocab);
    if (sink->base_in) {
        if (fread(sink->row_buf, 1, row_bytes, sink->base_in) != row_bytes) {
            snprintf(sink->err, sink->err_size, "the base file ends early (truncated?)");
            return false;
        }
        compare_row(logits, sink->n_vocab, sink->row_buf, token, sink->kl);
        return true;
    }
    sums_add(sink->sums, log_sum_exp(logits, sink->n_vocab, NULL) - logits[token]);
    if (sink->base_out) {
        encode_base_row(logits, sink->n_vocab, sink->row_buf);
        if (fwrite(sink->row_buf, 1, row_bytes, sink->base_out) != row_bytes) {
            snprintf(sink->err, sink->err_size, "cannot write the base file: %s", strerror(errno));
            return false;
        }
    }
    return true;
}

/* Evaluates one chunk (chunk[0..n_ctx)) from an empty cache and hands the
 * scored rows to sink. */
static bool run_chunk(greta_model *model, greta_session *session, const int32_t *chunk,
                      const perplexity_params *params, row_sink *sink) {
    int32_t n_ctx = params->n_ctx, first = n_ctx / 2;
    if (greta_rewind(session, 0) != GRETA_OK) {
        snprintf(sink->err, sink->err_size, "%s", greta_session_error(session));
        return false;
    }
    int32_t *ids = malloc((size_t)params->n_batch * sizeof *ids);
    if (!ids) {
        snprintf(sink->err, sink->err_size, "out of memory");
        return false;
    }
    bool ok = true;
    for (int32_t start = 0; ok && start < n_ctx; start += params->n_batch) {
        int32_t n = n_ctx - start < params->n_batch ? n_ctx - start : params->n_batch;
        memcpy(ids, chunk + start, (size_t)n * sizeof *ids);
        if (start == 0 && greta_model_adds_bos(model) && greta_token_bos(model) >= 0)
            ids[0] = greta_token_bos(model);
        if (greta_eval(session, ids, (size_t)n) != GRETA_OK) {
            snprintf(sink->err, sink->err_size, "eval: %s", greta_session_error(session));
            ok = false;
            break;
        }
        size_t n_rows = 0;
        const double *rows = greta_logits_all_f64(session, &n_rows);
        if (!rows || n_rows != (size_t)n) {
            snprintf(sink->err, sink->err_size, "the session keeps no logits of every row");
            ok = false;
            break;
        }
        for (int32_t k = 0; ok && k < n; k++) {
            int32_t pos = start + k;
            if (pos < first || pos > n_ctx - 2) continue;
            ok = take_row(sink, rows + (size_t)k * (size_t)sink->n_vocab, chunk[pos + 1]);
        }
    }
    free(ids);
    return ok;
}

static bool check_params(const perplexity_params *p, char *err, size_t err_size) {
    if (p->n_ctx < 4 || p->n_batch < 1 || p->n_batch > p->n_ctx) {
        snprintf(err, err_size, "bad sizes: ctx %d (at least 4), batch %d (1..ctx)", p->n_ctx, p->n_batch);
        return false;
    }
    return true;
}

static bool write_base_header(FILE *f, const perplexity_params *p, int32_t n_vocab, int32_t n_chunks,
                              const int32_t *tokens, char *err, size_t err_size) {
    unsigned char head[20];
    memcpy(head, base_magic, 8);
    put_u32(head + 8, (uint32_t)p->n_ctx);
    put_u32(head + 12, (uint32_t)n_vocab);
    put_u32(head + 16, (uint32_t)n_chunks);
    bool ok = fwrite(head, 1, sizeof head, f) == sizeof head;
    for (size_t i = 0; ok && i < (size_t)n_chunks * (size_t)p->n_ctx; i++) {
        unsigned char b[4];
        put_u32(b, (uint32_t)tokens[i]);
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (!ok) snprintf(err, err_size, "cannot write the base file: %s", strerror(errno));
    return ok;
}

bool perplexity_run(greta_model *model, greta_session *session, const int32_t *tokens, size_t n_tokens,
                    const perplexity_params *params, FILE *base_out, perplexity_chunk_fn on_chunk,
                    void *user, perplexity_sums *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (!check_params(params, err, err_size)) return false;
    if (n_tokens < 2 * (size_t)params->n_ctx) {
        snprintf(err, err_size, "the text is %zu tokens; a context of %d needs at least %d", n_tokens,
                 params->n_ctx, 2 * params->n_ctx);
        return false;
    }
    greta_model_info info;
    greta_model_get_info(model, &info);
    int32_t n_chunks = (int32_t)(n_tokens / (size_t)params->n_ctx);
    if (params->n_chunks > 0 && params->n_chunks < n_chunks) n_chunks = params->n_chunks;
    row_sink sink = {info.vocab_size, out, base_out, NULL, NULL, NULL, err, err_size};
    if (base_out) {
        if (!(sink.row_buf = malloc(2 * base_row_len(info.vocab_size)))) {
            snprintf(err, err_size, "out of memory");
            return false;
        }
        if (!write_base_header(base_out, params, info.vocab_size, n_chunks, tokens, err, err_size)) {
            free(sink.row_buf);
            return false;
        }
    }
    bool ok = true;
    for (int32_t c = 0; ok && c < n_chunks; c++) {
        ok = run_chunk(model, session, tokens + (size_t)c * (size_t)params->n_ctx, params, &sink);
        if (ok && on_chunk) on_chunk(user, c + 1, n_chunks, out, NULL);
    }
    free(sink.row_buf);
    return ok;
}

perplexity_estimate perplexity_of(const perplexity_sums *s) {
    perplexity_estimate e = {0.0, 0.0};
    if (s->count == 0) return e;
    double mean = s->sum_nll / (double)s->count;
    double var = s->sum_nll2 / (double)s->count - mean * mean;
    e.value = exp(mean);
    e.error = var > 0.0 && s->count > 1 ? e.value * sqrt(var / (double)(s->count - 1)) : 0.0;
    return e;
}

/* ---- base files ---- */

bool perplexity_base_open(const char *path, perplexity_base *base, char *err, size_t err_size) {
    memset(base, 0, sizeof *base);
    base->f = fopen(path, "rb");
    if (!base->f) {
        snprintf(err, err_size, "cannot open: %s", strerror(errno));
        return false;
    }
    unsigned char head[20];
    struct stat st;
    if (fread(head, 1, sizeof head, base->f) != sizeof head || memcmp(head, base_magic, 8) != 0 ||
        fstat(fileno(base->f), &st) != 0) {
        snprintf(err, err_size, "not a logits file (no '_logits_' header; made by --kl-divergence-base?)");
        perplexity_base_close(base);
        return false;
    }
    base->n_ctx = (int32_t)get_u32(head + 8);
    base->n_vocab = (int32_t)get_u32(head + 12);
    base->n_chunks = (int32_t)get_u32(head + 16);
    if (base->n_ctx < 4 || base->n_ctx > (1 << 24) || base->n_vocab < 1 || base->n_vocab > (1 << 24) ||
        base->n_chunks < 1 || base->n_chunks > (1 << 24)) {
        snprintf(err, err_size, "bad header: ctx %d, vocab %d, chunks %d", base->n_ctx, base->n_vocab,
                 base->n_chunks);
        perplexity_base_close(base);
        return false;
    }
    uint64_t n_tok = (uint64_t)base->n_chunks * (uint64_t)base->n_ctx;
    uint64_t expect = 20 + 4 * n_tok + (uint64_t)base->n_chunks * (uint64_t)scored_per_chunk(base->n_ctx) *
                                           2 * base_row_len(base->n_vocab);
    if ((uint64_t)st.st_size != expect) {
        snprintf(err, err_size, "%lld bytes, expected %llu for ctx %d, vocab %d, %d chunks (truncated?)",
                 (long long)st.st_size, (unsigned long long)expect, base->n_ctx, base->n_vocab, base->n_chunks);
        perplexity_base_close(base);
        return false;
    }
    unsigned char *raw = malloc(4 * n_tok);
    base->tokens = malloc(n_tok * sizeof *base->tokens);
    bool ok = raw && base->tokens && fread(raw, 4, n_tok, base->f) == n_tok;
    for (uint64_t i = 0; ok && i < n_tok; i++) base->tokens[i] = (int32_t)get_u32(raw + 4 * i);
    free(raw);
    if (!ok) {
        snprintf(err, err_size, "cannot read the tokens");
        perplexity_base_close(base);
    }
    return ok;
}

void perplexity_base_close(perplexity_base *base) {
    if (base->f) fclose(base->f);
    free(base->tokens);
    memset(base, 0, sizeof *base);
}

bool perplexity_kl_run(greta_model *model, greta_session *session, perplexity_base *base,
                       const perplexity_params *params, perplexity_chunk_fn on_chunk, void *user,
                       perplexity_kl *kl, char *err, size_t err_size) {
    memset(kl, 0, sizeof *kl);
    if (!check_params(params, err, err_size)) return false;
    greta_model_info info;
    greta_model_get_info(model, &info);
    if (params->n_ctx != base->n_ctx || info.vocab_size != base->n_vocab) {
        snprintf(err, err_size, "the base file has ctx %d and vocab %d; this run ctx %d and vocab %d",
                 base->n_ctx, base->n_vocab, params->n_ctx, info.vocab_size);
        return false;
    }
    for (size_t i = 0; i < (size_t)base->n_chunks * (size_t)base->n_ctx; i++) {
        if (base->tokens[i] < 0 || base->tokens[i] >= info.vocab_size) {
            snprintf(err, err_size, "the base file has token %d, outside the vocabulary of %d", base->tokens[i],
                     info.vocab_size);
            return false;
        }
    }
    size_t n_scored = (size_t)base->n_chunks * (size_t)scored_per_chunk(base->n_ctx);
    kl->kld_values = malloc(n_scored * sizeof *kl->kld_values);
    kl->p_diff_values = malloc(n_scored * sizeof *kl->p_diff_values);
    row_sink sink = {info.vocab_size, NULL, NULL, base->f, kl, malloc(2 * base_row_len(info.vocab_size)), err,
                     err_size};
    bool ok = kl->kld_values && kl->p_diff_values && sink.row_buf;
    if (!ok) snprintf(err, err_size, "out of memory");
    int32_t n_chunks = base->n_chunks;
    if (params->n_chunks > 0 && params->n_chunks < n_chunks) n_chunks = params->n_chunks;
    for (int32_t c = 0; ok && c < n_chunks; c++) {
        ok = run_chunk(model, session, base->tokens + (size_t)c * (size_t)base->n_ctx, params, &sink);
        if (ok && on_chunk) on_chunk(user, c + 1, n_chunks, &kl->q, kl);
    }
    free(sink.row_buf);
    return ok;
}

void perplexity_kl_free(perplexity_kl *kl) {
    free(kl->kld_values);
    free(kl->p_diff_values);
    kl->kld_values = kl->p_diff_values = NULL;
}

/* ---- summary ---- */

static int compare_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double perplexity_percentile(const float *sorted, size_t n, double fraction) {
    if (fraction <= 0.0) return sorted[0];
    if (fraction >= 1.0) return sorted[n - 1];
    double p = fraction * (double)(n - 1);
    size_t i = (size_t)p;
    p -= (double)i;
    size_t j = i + 1 < n ? i + 1 : n - 1;
    return (1.0 - p) * sorted[i] + p * sorted[j];
}

/* Mean of values whose sum and sum of squares are given, and its standard
 * error (0 for 10 values or fewer, as llama.cpp). */
static perplexity_estimate mean_and_error(double sum, double sum2, size_t count) {
    perplexity_estimate e = {0.0, 0.0};
    if (count < 1) return e;
    e.value = sum / (double)count;
    double var = sum2 / (double)count - e.value * e.value;
    e.error = var > 0.0 && count > 10 ? sqrt(var / (double)(count - 1)) : 0.0;
    return e;
}

static double median(const float *sorted, size_t n) {
    return n % 2 == 0 ? 0.5 * ((double)sorted[n / 2] + (double)sorted[n / 2 - 1]) : sorted[n / 2];
}

void perplexity_kl_summarize(perplexity_kl *kl, perplexity_kl_summary *o) {
    memset(o, 0, sizeof *o);
    size_t n = kl->q.count;
    if (n < 2) return;
    perplexity_estimate log_ppl = mean_and_error(kl->q.sum_nll, kl->q.sum_nll2, n);
    perplexity_estimate log_base = mean_and_error(kl->base.sum_nll, kl->base.sum_nll2, n);
    o->ppl = (perplexity_estimate){exp(log_ppl.value), exp(log_ppl.value) * log_ppl.error};
    o->ppl_base = (perplexity_estimate){exp(log_base.value), exp(log_base.value) * log_base.error};
    double cov = 0.0;
    if (n >= 10) {
        cov = kl->sum_nll_nll_base / (double)n - (kl->q.sum_nll / (double)n) * (kl->base.sum_nll / (double)n);
        cov /= (double)(n - 1);
    }
    o->cor_log_ppl = log_ppl.error > 0.0 && log_base.error > 0.0 ? cov / (log_ppl.error * log_base.error) : 0.0;
    double ratio_var = log_ppl.error * log_ppl.error + log_base.error * log_base.error - 2.0 * cov;
    o->log_ppl_ratio = (perplexity_estimate){log_ppl.value - log_base.value, ratio_var > 0 ? sqrt(ratio_var) : 0.0};
    double ratio = exp(o->log_ppl_ratio.value);
    o->ppl_ratio = (perplexity_estimate){ratio, ratio * o->log_ppl_ratio.error};
    double ppl_cov = o->ppl.value * o->ppl_base.value * cov;
    double diff_var = o->ppl.error * o->ppl.error + o->ppl_base.error * o->ppl_base.error - 2.0 * ppl_cov;
    o->ppl_diff = (perplexity_estimate){o->ppl.value - o->ppl_base.value, diff_var > 0 ? sqrt(diff_var) : 0.0};

    qsort(kl->kld_values, n, sizeof *kl->kld_values, compare_float);
    qsort(kl->p_diff_values, n, sizeof *kl->p_diff_values, compare_float);
    const float *k = kl->kld_values;
    o->kld = mean_and_error(kl->sum_kld, kl->sum_kld2, n);
    o->kld_max = k[n - 1];
    o->kld_99_9 = perplexity_percentile(k, n, 0.999);
    o->kld_99 = perplexity_percentile(k, n, 0.99);
    o->kld_95 = perplexity_percentile(k, n, 0.95);
    o->kld_90 = perplexity_percentile(k, n, 0.90);
    o->kld_median = median(k, n);
    o->kld_10 = perplexity_percentile(k, n, 0.10);
    o->kld_5 = perplexity_percentile(k, n, 0.05);
    o->kld_1 = perplexity_percentile(k, n, 0.01);
    o->kld_0_1 = perplexity_percentile(k, n, 0.001);
    o->kld_min = k[0];
    o->p_diff = mean_and_error(kl->sum_p_diff, kl->sum_p_diff2, n);
    perplexity_estimate mse = mean_and_error(kl->sum_p_diff2, kl->sum_p_diff4, n);
    double rms = sqrt(mse.value);
    o->p_diff_rms = (perplexity_estimate){rms, rms > 0 ? 0.5 / rms * mse.error : 0.0};
    o->p_diff_max = kl->p_diff_values[n - 1];
    o->p_diff_min = kl->p_diff_values[0];
    o->p_diff_median = median(kl->p_diff_values, n);
    double top = (double)kl->n_same_top / (double)n;
    o->same_top = (perplexity_estimate){top, sqrt(top * (1.0 - top) / (double)(n - 1))};
}
