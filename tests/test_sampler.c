/* test_sampler.c: the sampler chain and stop strings against hand-computed
 * values (src/engine/sampler.h documents the order of operations). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "greta.h"
#include "engine/sampler.h"

static greta_sampler_params plain_params(void) {
    greta_sampler_params p = greta_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

/* Survivor ids of the chain steps 2-5, as a string "3,5,1". */
static const char *filter_ids(const float *logits, int32_t n, const greta_sampler_params *p) {
    static char buf[256];
    sampler_candidate cands[64];
    size_t k = sampler_filter(logits, n, p, cands);
    buf[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        char one[16];
        snprintf(one, sizeof one, "%s%d", i ? "," : "", cands[i].id);
        strcat(buf, one);
    }
    return buf;
}

static void test_rng(void) {
    /* Reference values from a Python transcription of splitmix64 seeding +
     * xoshiro256** (Blackman & Vigna). */
    sampler_rng rng;
    sampler_rng_seed(&rng, 0);
    uint64_t a = sampler_rng_next(&rng), b = sampler_rng_next(&rng), c = sampler_rng_next(&rng);
    CHECK(a == 0x99ec5f36cb75f2b4ULL && b == 0xbf6e1f784956452aULL && c == 0x1a5f849d4933e6e0ULL,
          "xoshiro256** seed 0: first outputs %llx %llx %llx", (unsigned long long)a,
          (unsigned long long)b, (unsigned long long)c);
    sampler_rng_seed(&rng, 42);
    a = sampler_rng_next(&rng);
    CHECK(a == 0x15780b2e0c2ec716ULL, "xoshiro256** seed 42: first output %llx", (unsigned long long)a);
    double lo = 1, hi = 0;
    for (int i = 0; i < 100000; i++) {
        double u = sampler_rng_uniform(&rng);
        if (u < lo) lo = u;
        if (u > hi) hi = u;
    }
    CHECK(lo >= 0.0 && hi < 1.0 && lo < 1e-3 && hi > 0.999, "uniform in [0,1): min %g max %g", lo, hi);
}

static void test_greedy(void) {
    greta_sampler *s = greta_sampler_new(1);
    greta_sampler_params p = greta_sampler_default_params();
    p.greedy = true;
    float logits[5] = {1.0f, 3.0f, 3.0f, 2.0f, -INFINITY};
    int32_t tok = -1;
    CHECK(greta_sampler_sample(s, &p, logits, 5, NULL, 0, &tok) == GRETA_OK && tok == 1,
          "greedy: argmax with the lowest index on a tie (got %d, want 1)", tok);
    float neg[3] = {-5.0f, -2.0f, -2.0f};
    CHECK(greta_sampler_sample(s, &p, neg, 3, NULL, 0, &tok) == GRETA_OK && tok == 1,
          "greedy on negative logits (got %d, want 1)", tok);
    /* greedy ignores the penalty; temperature 0 applies it then takes the argmax */
    float l3[3] = {1.0f, 3.0f, 2.9f};
    int32_t hist[1] = {1};
    p.repeat_penalty = 2.0f;
    greta_sampler_sample(s, &p, l3, 3, hist, 1, &tok);
    CHECK(tok == 1, "greedy = raw argmax even with a repetition penalty (got %d)", tok);
    p.greedy = false;
    p.temperature = 0.0f;
    greta_sampler_sample(s, &p, l3, 3, hist, 1, &tok);
    CHECK(tok == 2, "temperature 0: argmax after the penalty (3/2 < 2.9: got %d, want 2)", tok);
    greta_sampler_free(s);
}

static void test_repeat_penalty(void) {
    float l[5] = {2.0f, -1.0f, 0.5f, 4.0f, -3.0f};
    int32_t hist[4] = {0, 1, 0, 3};
    /* window of the last 3: {1, 0, 3}; positive logits divided, negative multiplied */
    sampler_apply_repeat_penalty(l, 5, hist, 4, 2.0f, 3);
    CHECK(l[0] == 1.0f && l[1] == -2.0f && l[2] == 0.5f && l[3] == 2.0f && l[4] == -3.0f,
          "penalty 2 over last 3: [%g %g %g %g %g], want [1 -2 0.5 2 -3]", l[0], l[1], l[2], l[3], l[4]);
    float m[3] = {2.0f, 1.0f, 1.0f};
    int32_t twice[3] = {0, 0, 0};
    sampler_apply_repeat_penalty(m, 3, twice, 3, 2.0f, 64);
    CHECK(m[0] == 1.0f, "a repeated id is penalized once (llama.cpp): %g, want 1", m[0]);
    float z[2] = {2.0f, 0.0f};
    int32_t h0[1] = {0};
    sampler_apply_repeat_penalty(z, 2, h0, 1, 2.0f, 0);
    CHECK(z[0] == 2.0f, "repeat_last_n 0 disables the penalty");
    int32_t h1[2] = {0, 1};
    sampler_apply_repeat_penalty(z, 2, h1, 2, 1.5f, -1);
    CHECK(fabsf(z[0] - 2.0f / 1.5f) < 1e-7f && z[1] == 0.0f,
          "repeat_last_n -1 = whole history; zero logit stays 0: %g %g", z[0], z[1]);
}

static void test_top_k(void) {
    greta_sampler_params p = plain_params();
    float l[6] = {0.1f, 2.0f, 2.0f, 5.0f, -1.0f, 3.0f};
    p.top_k = 3;
    const char *ids = filter_ids(l, 6, &p);
    CHECK(strcmp(ids, "3,5,1") == 0, "top-k 3 keeps {3,5,1} (tie 1 vs 2: lower id): got %s", ids);
    p.top_k = 1;
    ids = filter_ids(l, 6, &p);
    CHECK(strcmp(ids, "3") == 0, "top-k 1 keeps the argmax: got %s", ids);
    p.top_k = 0;
    ids = filter_ids(l, 6, &p);
    CHECK(strcmp(ids, "3,5,1,2,0,4") == 0, "top-k 0 keeps all, sorted: got %s", ids);
    p.top_k = 100;
    ids = filter_ids(l, 6, &p);
    CHECK(strcmp(ids, "3,5,1,2,0,4") == 0, "top-k larger than the vocabulary keeps all: got %s", ids);

    /* Large random row: the heap selection equals a full sort. */
    enum { N = 50000, K = 40 };
    float *big = malloc(N * sizeof *big);
    sampler_candidate *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    sampler_rng rng;
    sampler_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) big[i] = (float)(int)(sampler_rng_uniform(&rng) * 2000.0) / 100.0f;
    p.top_k = K;
    size_t n = sampler_filter(big, N, &p, a);
    /* reference: selection by repeated scans for the best unused id */
    int ok = n == K;
    char *used = calloc(N, 1);
    for (int r = 0; r < K && ok; r++) {
        int best = -1;
        for (int i = 0; i < N; i++) {
            if (!used[i] && (best < 0 || big[i] > big[best])) best = i;
        }
        used[best] = 1;
        b[r].id = best;
        ok = a[r].id == best;
    }
    CHECK(ok, "top-k 40 of 50000 (many ties) equals the scan reference, in order");
    free(used);
    free(big);
    free(a);
    free(b);
}

static void test_top_p_min_p(void) {
    greta_sampler_params p = plain_params();
    /* probabilities 0.5 0.2 0.15 0.1 0.05 at ids 2 0 4 1 3 */
    float l[5] = {logf(0.2f), logf(0.1f), logf(0.5f), logf(0.05f), logf(0.15f)};
    p.top_p = 0.69f;
    const char *ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0") == 0, "top-p 0.69: cumulative 0.5, 0.7 -> {2,0}: got %s", ids);
    p.top_p = 0.71f;
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0,4") == 0, "top-p 0.71 -> {2,0,4}: got %s", ids);
    p.top_p = 0.3f;
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2") == 0, "top-p 0.3 keeps at least the best: got %s", ids);
    p.top_p = 1.0f;
    p.min_p = 0.25f; /* threshold 0.125 */
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0,4") == 0, "min-p 0.25 (p >= 0.125) -> {2,0,4}: got %s", ids);
    p.min_p = 0.35f; /* threshold 0.175 */
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0") == 0, "min-p 0.35 (p >= 0.175) -> {2,0}: got %s", ids);
    /* top-p keeps the shortest prefix whose mass reaches p (>=): four equal
     * logits and p = 0.5 reach exactly 0.5 after two (the mutation pass's
     * '>' kept three and went unnoticed) */
    float equal4[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    p.top_p = 0.5f;
    ids = filter_ids(equal4, 4, &p);
    CHECK(strcmp(ids, "0,1") == 0, "top-p 0.5 over four equal logits keeps two (mass >= p): got %s", ids);
    p.top_p = 1.0f;
    /* min-p keeps p >= min_p * p_max (llama.cpp, HF): at min_p = 1 exactly the
     * argmax, and every token tied with it (with '>' nothing survived) */
    p.min_p = 1.0f;
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2") == 0, "min-p 1.0 keeps the argmax (p >= p_max): got %s", ids);
    float tied[4] = {1.0f, 3.0f, -2.0f, 3.0f};
    ids = filter_ids(tied, 4, &p);
    CHECK(strcmp(ids, "1,3") == 0, "min-p 1.0 keeps both tied maxima: got %s", ids);
    /* top-k 4 then top-p over the renormalized four: 0.5/0.95 = 0.526, 0.737, 0.895, 1 */
    p.min_p = 0.0f;
    p.top_k = 4;
    p.top_p = 0.9f;
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0,4,1") == 0, "top-k 4 + top-p 0.9 (renormalized) -> 4 kept: got %s", ids);
    p.top_p = 0.88f;
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0,4") == 0, "top-k 4 + top-p 0.88 -> 3 kept: got %s", ids);
    /* top-p then min-p: intersection */
    p.top_k = 0;
    p.top_p = 0.9f;  /* {2,0,4,1} */
    p.min_p = 0.35f; /* {2,0} */
    ids = filter_ids(l, 5, &p);
    CHECK(strcmp(ids, "2,0") == 0, "top-p 0.9 and min-p 0.35 -> {2,0}: got %s", ids);
}

static void test_temperature(void) {
    greta_sampler_params p = plain_params();
    float l[3] = {0.0f, logf(2.0f), logf(4.0f)};
    p.temperature = 0.5f; /* scaled: 0, 2 ln2, 4 ln2 -> 1 : 4 : 16 */
    sampler_candidate c[3];
    double probs[3];
    size_t n = sampler_filter(l, 3, &p, c);
    sampler_softmax(c, n, probs);
    CHECK(n == 3 && c[0].id == 2 && fabs(probs[0] - 16.0 / 21) < 1e-6 && fabs(probs[1] - 4.0 / 21) < 1e-6 &&
              fabs(probs[2] - 1.0 / 21) < 1e-6,
          "T 0.5: probs %.7f %.7f %.7f, want 16/21 4/21 1/21", probs[0], probs[1], probs[2]);
    p.temperature = 2.0f; /* 1 : sqrt2 : 2 */
    n = sampler_filter(l, 3, &p, c);
    sampler_softmax(c, n, probs);
    double z = 1 + sqrt(2.0) + 2;
    CHECK(fabs(probs[0] - 2 / z) < 1e-6 && fabs(probs[2] - 1 / z) < 1e-6,
          "T 2: probs %.7f .. %.7f, want %.7f .. %.7f", probs[0], probs[2], 2 / z, 1 / z);
    /* a tiny temperature is argmax-like, never NaN */
    p.temperature = 1e-30f;
    n = sampler_filter(l, 3, &p, c);
    sampler_softmax(c, n, probs);
    CHECK(n == 3 && c[0].id == 2 && probs[0] == 1.0 && probs[1] == 0.0, "T 1e-30: p(best) = %g, p(2nd) = %g",
          probs[0], probs[1]);
    greta_sampler *s = greta_sampler_new(3);
    int32_t tok = -1;
    CHECK(greta_sampler_sample(s, &p, l, 3, NULL, 0, &tok) == GRETA_OK && tok == 2, "T 1e-30 samples the argmax");
    greta_sampler_free(s);
    p.temperature = 1.0f;
    /* min-p is applied before temperature (T changes nothing about the set) */
    float m[3] = {logf(0.6f), logf(0.3f), logf(0.1f)};
    p.min_p = 0.2f; /* threshold 0.12 at T = 1 -> {0,1} */
    p.temperature = 5.0f;
    const char *ids = filter_ids(m, 3, &p);
    CHECK(strcmp(ids, "0,1") == 0, "min-p before temperature: got %s", ids);
}

static void test_draw_frequencies(void) {
    greta_sampler *s = greta_sampler_new(12345);
    greta_sampler_params p = plain_params();
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.2f), -INFINITY};
    enum { N = 200000 };
    int count[4] = {0, 0, 0, 0};
    for (int i = 0; i < N; i++) {
        int32_t tok = -1;
        greta_sampler_sample(s, &p, l, 4, NULL, 0, &tok);
        if (tok >= 0 && tok < 4) count[tok]++;
    }
    double want[4] = {0.5, 0.3, 0.2, 0.0};
    int ok = count[3] == 0;
    for (int i = 0; i < 3; i++) {
        double f = (double)count[i] / N, sigma = sqrt(want[i] * (1 - want[i]) / N);
        ok = ok && fabs(f - want[i]) < 5 * sigma;
    }
    CHECK(ok, "200000 draws from {0.5,0.3,0.2,0}: %d %d %d %d (5 sigma)", count[0], count[1], count[2],
          count[3]);
    /* with temperature 0.5: 0.25 : 0.09 : 0.04 */
    p.temperature = 0.5f;
    memset(count, 0, sizeof count);
    for (int i = 0; i < N; i++) {
        int32_t tok = -1;
        greta_sampler_sample(s, &p, l, 4, NULL, 0, &tok);
        if (tok >= 0 && tok < 4) count[tok]++;
    }
    double w0 = 0.25 / 0.38, f0 = (double)count[0] / N;
    CHECK(fabs(f0 - w0) < 5 * sqrt(w0 * (1 - w0) / N), "T 0.5 draws: p(0) %.4f, want %.4f", f0, w0);
    greta_sampler_free(s);
}

static void test_seed_determinism(void) {
    enum { V = 1000, STEPS = 500 };
    float *l = malloc(V * sizeof *l);
    sampler_rng rng;
    sampler_rng_seed(&rng, 99);
    for (int i = 0; i < V; i++) l[i] = (float)(sampler_rng_uniform(&rng) * 6.0);
    greta_sampler_params p = greta_sampler_default_params();
    p.top_k = 0;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.3f;
    int32_t a[STEPS], b[STEPS], c[STEPS];
    greta_sampler *s1 = greta_sampler_new(7), *s2 = greta_sampler_new(7), *s3 = greta_sampler_new(8);
    int ok = 1;
    for (int i = 0; i < STEPS; i++) {
        ok &= greta_sampler_sample(s1, &p, l, V, a, (size_t)i, &a[i]) == GRETA_OK;
        ok &= greta_sampler_sample(s2, &p, l, V, b, (size_t)i, &b[i]) == GRETA_OK;
        ok &= greta_sampler_sample(s3, &p, l, V, c, (size_t)i, &c[i]) == GRETA_OK;
    }
    CHECK(ok && memcmp(a, b, sizeof a) == 0, "same seed, same 500 tokens");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed gives another sequence");
    greta_sampler_reseed(s3, 7);
    for (int i = 0; i < STEPS; i++) greta_sampler_sample(s3, &p, l, V, c, (size_t)i, &c[i]);
    CHECK(memcmp(a, c, sizeof a) == 0, "reseed restarts the sequence");
    greta_sampler_free(s1);
    greta_sampler_free(s2);
    greta_sampler_free(s3);
    free(l);
}

static void test_bad_input(void) {
    greta_sampler *s = greta_sampler_new(1);
    greta_sampler_params p = greta_sampler_default_params();
    float l[3] = {0.0f, NAN, 1.0f};
    int32_t tok;
    CHECK(greta_sampler_sample(s, &p, l, 3, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT,
          "NaN logits are an error, not a token");
    float inf[2] = {-INFINITY, -INFINITY};
    CHECK(greta_sampler_sample(s, &p, inf, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT,
          "all logits -inf is an error");
    greta_sampler_params greedy = p;
    greedy.greedy = true;
    CHECK(greta_sampler_sample(s, &greedy, inf, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT,
          "all logits -inf is an error for greedy too (not a silent token 0)");
    greta_sampler_params cold = p;
    cold.temperature = 0.0f;
    CHECK(greta_sampler_sample(s, &cold, inf, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT,
          "all logits -inf is an error at temperature 0 too");
    /* A +inf logit holds all the probability: sampling picks it as greedy
     * does (it used to be dropped with the -inf ones, so a finite token won). */
    float pos_inf[4] = {5.0f, INFINITY, 7.0f, -INFINITY};
    int other = -1;
    for (int i = 0; i < 20; i++) {
        tok = -1;
        greta_status st = greta_sampler_sample(s, &p, pos_inf, 4, NULL, 0, &tok);
        if ((st != GRETA_OK || tok != 1) && other < 0) other = tok;
    }
    CHECK(other < 0, "a +inf logit is the sampled token every time (once got %d)", other);
    float two_inf[4] = {INFINITY, 3.0f, INFINITY, 9.0f};
    bool seen[4] = {false, false, false, false};
    greta_sampler_params flat = greta_sampler_default_params();
    flat.top_k = 0;
    flat.top_p = 1.0f;
    flat.min_p = 0.0f;
    for (int i = 0; i < 200; i++) {
        tok = -1;
        if (greta_sampler_sample(s, &flat, two_inf, 4, NULL, 0, &tok) == GRETA_OK && tok >= 0 && tok < 4) seen[tok] = true;
    }
    CHECK(seen[0] && seen[2] && !seen[1] && !seen[3], "two +inf logits share the probability, the finite get none");
    float ok[2] = {0.0f, 1.0f};
    p.top_p = 0.0f;
    CHECK(greta_sampler_sample(s, &p, ok, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT, "top_p 0 rejected");
    p = greta_sampler_default_params();
    p.top_k = -1;
    CHECK(greta_sampler_sample(s, &p, ok, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT, "top_k -1 rejected");
    p = greta_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(greta_sampler_sample(s, &p, ok, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT,
          "repeat_penalty 0 rejected");
    CHECK(greta_sampler_sample(NULL, &p, ok, 2, NULL, 0, &tok) == GRETA_ERR_INVALID_ARGUMENT, "NULL sampler");
    greta_sampler_free(s);
}

/* Pushes pieces through a stop matcher and concatenates what comes out. */
static void run_stop(const char *const *stops, size_t n_stops, const char *const *pieces, size_t n_pieces,
                     char *out, bool *stopped, int *stop_piece) {
    greta_stop *st = greta_stop_new(stops, n_stops);
    out[0] = '\0';
    *stopped = false;
    *stop_piece = -1;
    for (size_t i = 0; i < n_pieces; i++) {
        const char *o;
        size_t n;
        bool s;
        greta_stop_push(st, pieces[i], strlen(pieces[i]), &o, &n, &s);
        strncat(out, o, n);
        if (s && !*stopped) *stop_piece = (int)i;
        *stopped = s;
    }
    if (!*stopped) {
        const char *o;
        size_t n;
        greta_stop_flush(st, &o, &n);
        strncat(out, o, n);
    }
    greta_stop_free(st);
}

static void test_stop_strings(void) {
    {   /* a flush before any push (a generation with no text) emits nothing; UBSan
           caught a memcpy from the NULL pending buffer here (greta serve) */
        const char *stops[] = {"x"};
        greta_stop *st = greta_stop_new(stops, 1);
        const char *o = NULL;
        size_t n = 99;
        CHECK(st && greta_stop_flush(st, &o, &n) == GRETA_OK && n == 0 && o && o[0] == '\0',
              "flush before any push emits the empty string (got %zu bytes)", n);
        greta_stop_free(st);
    }
    char out[256];
    bool stopped;
    int at;
    const char *s1[] = {"</s>"};
    const char *p1[] = {"Hello", " wor", "ld<", "/", "s>", " more"};
    run_stop(s1, 1, p1, 6, out, &stopped, &at);
    CHECK(stopped && at == 4 && strcmp(out, "Hello world") == 0,
          "stop string split over 3 pieces: stopped at piece %d, printed '%s'", at, out);
    const char *p2[] = {"a<", "b", "</", "x"};
    run_stop(s1, 1, p2, 4, out, &stopped, &at);
    CHECK(!stopped && strcmp(out, "a<b</x") == 0, "a false start is printed in full: '%s'", out);
    /* what is held back is printed once it cannot start a stop string */
    greta_stop *st = greta_stop_new(s1, 1);
    const char *o;
    size_t n;
    bool s;
    greta_stop_push(st, "ab</", 4, &o, &n, &s);
    CHECK(n == 2 && memcmp(o, "ab", 2) == 0 && !s, "'</' is held back (printed %zu bytes)", n);
    greta_stop_flush(st, &o, &n);
    CHECK(n == 2 && memcmp(o, "</", 2) == 0, "flush prints what was held");
    greta_stop_free(st);
    const char *s3[] = {"User:", "\n\n"};
    const char *p3[] = {"Sure.\n", "\nUser:"};
    run_stop(s3, 2, p3, 2, out, &stopped, &at);
    CHECK(stopped && strcmp(out, "Sure.") == 0, "the earliest of two stop strings wins: '%s'", out);
    const char *s4[] = {"東京"};
    const char *p4[] = {"in \xe6\x9d\xb1", "\xe4\xba\xac is"};
    run_stop(s4, 1, p4, 2, out, &stopped, &at);
    CHECK(stopped && strcmp(out, "in ") == 0, "a UTF-8 stop string split mid-word: '%s'", out);
    const char *p5[] = {"no stops here"};
    run_stop(NULL, 0, p5, 1, out, &stopped, &at);
    CHECK(!stopped && strcmp(out, "no stops here") == 0, "no stop strings: text passes through");
    const char *s6[] = {"", "xyz"};
    const char *p6[] = {"abc"};
    run_stop(s6, 2, p6, 1, out, &stopped, &at);
    CHECK(!stopped && strcmp(out, "abc") == 0, "an empty stop string is ignored");
}

int main(void) {
    test_rng();
    test_greedy();
    test_repeat_penalty();
    test_top_k();
    test_top_p_min_p();
    test_temperature();
    test_draw_frequencies();
    test_seed_determinism();
    test_bad_input();
    test_stop_strings();
    return check_finish("test_sampler");
}
