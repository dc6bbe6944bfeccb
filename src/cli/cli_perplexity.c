/* cli_perplexity.c: greta perplexity -m MODEL -f TEXT: perplexity of a
 * text by llama.cpp's method, and KL divergence against a base model's
 * saved log-probs (src/tools/perplexity.h, docs/perplexity.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "greta.h"
#include "tools/perplexity.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: greta perplexity -m MODEL -f TEXT [options]\n"
            "       greta perplexity -m MODEL -f TEXT --kl-divergence-base FILE     (save log-probs)\n"
            "       greta perplexity -m MODEL --kl-divergence-base FILE --kl-divergence\n"
            "Perplexity of TEXT as llama-perplexity computes it: consecutive chunks of --ctx\n"
            "tokens, each from an empty cache with BOS first, scored on its second half.\n"
            "  -m, --model FILE            GGUF model\n"
            "  -f, --file FILE             the text ('-' = stdin); at least 2 * ctx tokens\n"
            "  -c, --ctx N                 tokens per chunk (default 512)\n"
            "  -b, --batch N               tokens per evaluation, at most ctx (default: ctx)\n"
            "  --chunks N                  score only the first N chunks (default: all)\n"
            "  -t, --threads N             CPU threads (default: all)\n"
            "  --backend cpu|ref           (default cpu; ref = float64, slow)\n"
            "  --precision q8|f32          cpu/cuda arithmetic: 8-bit activations (default) or float32\n"
            "  --kl-divergence-base FILE   without --kl-divergence: write the log-probs of this\n"
            "                              model for the text to FILE (llama.cpp's format);\n"
            "                              with it: read them and compare this model\n"
            "  --kl-divergence             report KL divergence, top-1 agreement and the\n"
            "                              perplexity ratio against FILE (the text comes from\n"
            "                              FILE, and so does the context: --ctx, if given, must\n"
            "                              equal it; -f, if given, must tokenize to the same)\n");
}

typedef struct {
    const char *model_path;
    const char *text_path;
    long n_ctx, n_batch, n_chunks;
    int32_t n_threads;
    greta_backend backend;
    greta_precision precision;
    const char *base_path;
    bool kl;
    bool ctx_given; /* --ctx on the command line (KL mode: must be the file's) */
} ppl_options;

/* Parses argv into o; returns 0 to go on, 1 after --help, 2 after an error. */
static int parse_options(int argc, char **argv, ppl_options *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--kl-divergence") == 0) {
            o->kl = true;
            continue;
        }
        static const char *const valued[] = {"-m", "--model", "-f", "--file", "-c", "--ctx", "-b", "--batch",
                                             "--chunks", "-t", "--threads", "--backend", "--precision", "--kl-divergence-base",
                                             NULL};
        bool known = false;
        for (const char *const *k = valued; *k && !known; k++) known = strcmp(a, *k) == 0;
        if (!known) {
            cli_error("perplexity: unknown argument '%s' (try 'greta perplexity --help')", a);
            return 2;
        }
        const char *v = cli_flag_value(argc, argv, &i);
        long n = 0;
        if (!v) return 2;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) o->model_path = v;
        else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) o->text_path = v;
        else if (strcmp(a, "--kl-divergence-base") == 0) o->base_path = v;
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0) {
            if (!cli_parse_int(a, v, 4, 1 << 20, &o->n_ctx)) return 2;
            o->ctx_given = true;
        } else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) {
            if (!cli_parse_int(a, v, 1, 1 << 20, &o->n_batch)) return 2;
        } else if (strcmp(a, "--chunks") == 0) {
            if (!cli_parse_int(a, v, 1, 1 << 24, &o->n_chunks)) return 2;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(a, v, 1, 1024, &n)) return 2;
            o->n_threads = (int32_t)n;
        } else if (strcmp(a, "--precision") == 0) {
            if (greta_precision_from_name(v, &o->precision) != GRETA_OK) {
                cli_error("--precision: unknown precision '%s' (expected q8 or f32)", v);
                return 2;
            }
        } else if (greta_backend_from_name(v, &o->backend) != GRETA_OK) {
            cli_error("--backend: unknown backend '%s' (expected cpu, ref or cuda)", v);
            return 2;
        }
    }
    if (!o->model_path) {
        cli_error("perplexity: no model (pass -m MODEL.gguf)");
        return 2;
    }
    if (o->kl && !o->base_path) {
        cli_error("perplexity: --kl-divergence needs --kl-divergence-base FILE (the base model's log-probs)");
        return 2;
    }
    if (!o->kl && !o->text_path) {
        cli_error("perplexity: no text (pass -f FILE)");
        return 2;
    }
    if (o->n_batch > o->n_ctx) {
        cli_error("perplexity: --batch %ld is larger than --ctx %ld", o->n_batch, o->n_ctx);
        return 2;
    }
    return 0;
}

/* The text's tokens (BOS first when the model adds one), as llama-perplexity tokenizes. */
static bool tokenize_text(greta_model *model, const char *path, int32_t **ids, size_t *n_ids) {
    size_t len = 0;
    char *text = cli_read_file("-f", path, (size_t)256 << 20, &len); /* at most 256 MiB, as tokenize -f */
    if (!text) return false;
    bool ok = strlen(text) == len;
    if (!ok) cli_error("-f: %s: contains a NUL byte", path);
    char err[512] = "";
    if (ok && greta_tokenize(model, text, len, true, false, ids, n_ids, err, sizeof err) != GRETA_OK) {
        cli_error("perplexity: %s", err);
        ok = false;
    }
    free(text);
    return ok;
}

static void print_running(void *user, int chunk, int n_chunks, const perplexity_sums *sums,
                          const perplexity_kl *kl) {
    (void)user;
    perplexity_estimate e = perplexity_of(sums);
    if (!kl) {
        printf("[%d/%d] PPL %.4f +/- %.5f\n", chunk, n_chunks, e.value, e.error);
    } else {
        double n = (double)kl->q.count;
        printf("[%d/%d] PPL %.4f  ln(PPL(Q)/PPL(base)) %.5f  KLD %.6f  same top %.3f%%\n", chunk, n_chunks, e.value,
               (kl->q.sum_nll - kl->base.sum_nll) / n, kl->sum_kld / n, 100.0 * (double)kl->n_same_top / n);
    }
    fflush(stdout);
}

static void print_kl_summary(const perplexity_kl_summary *s, size_t count) {
    printf("\n====== Perplexity statistics (%zu tokens) ======\n", count);
    printf("Mean PPL(Q)                   : %10.6f +/- %10.6f\n", s->ppl.value, s->ppl.error);
    printf("Mean PPL(base)                : %10.6f +/- %10.6f\n", s->ppl_base.value, s->ppl_base.error);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s->cor_log_ppl);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", s->log_ppl_ratio.value, s->log_ppl_ratio.error);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f\n", s->ppl_ratio.value, s->ppl_ratio.error);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f +/- %10.6f\n", s->ppl_diff.value, s->ppl_diff.error);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6f +/- %10.6f\n", s->kld.value, s->kld.error);
    printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n95.0%%   KLD: %10.6f\n",
           s->kld_max, s->kld_99_9, s->kld_99, s->kld_95);
    printf("90.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\n10.0%%   KLD: %10.6f\n 5.0%%   KLD: %10.6f\n",
           s->kld_90, s->kld_median, s->kld_10, s->kld_5);
    printf(" 1.0%%   KLD: %10.6f\n 0.1%%   KLD: %10.6f\nMinimum KLD: %10.6f\n", s->kld_1, s->kld_0_1, s->kld_min);
    printf("\n====== Token probability statistics ======\n");
    printf("Mean    dp: %7.3f +/- %5.3f %%\n", 100.0 * s->p_diff.value, 100.0 * s->p_diff.error);
    printf("Maximum dp: %7.3f%%\nMedian  dp: %7.3f%%\nMinimum dp: %7.3f%%\n", 100.0 * s->p_diff_max,
           100.0 * s->p_diff_median, 100.0 * s->p_diff_min);
    printf("RMS     dp: %7.3f +/- %5.3f %%\n", 100.0 * s->p_diff_rms.value, 100.0 * s->p_diff_rms.error);
    printf("Same top p: %7.3f +/- %5.3f %%\n", 100.0 * s->same_top.value, 100.0 * s->same_top.error);
}

/* KL mode: the base file's tokens (checked against -f when given). */
static int run_kl(greta_model *model, greta_session *session, const ppl_options *o, perplexity_params *params) {
    char err[512] = "";
    perplexity_base base;
    if (!perplexity_base_open(o->base_path, &base, err, sizeof err)) {
        cli_error("--kl-divergence-base: %s: %s", o->base_path, err);
        return 1;
    }
    int rc = 1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    size_t n_base = (size_t)base.n_chunks * (size_t)base.n_ctx;
    if (o->text_path) {
        if (!tokenize_text(model, o->text_path, &ids, &n_ids)) goto done;
        if (n_ids < n_base || memcmp(ids, base.tokens, n_base * sizeof *ids) != 0) {
            cli_error("perplexity: %s does not tokenize to the tokens of %s (another text or vocabulary)",
                      o->text_path, o->base_path);
            goto done;
        }
    }
    int32_t n_chunks = o->n_chunks > 0 && o->n_chunks < base.n_chunks ? (int32_t)o->n_chunks : base.n_chunks;
    params->n_ctx = base.n_ctx;
    if (params->n_batch > base.n_ctx) params->n_batch = base.n_ctx;
    fprintf(stderr, "perplexity: KL divergence against %s: %d chunks of %d tokens, %d scored per chunk\n",
            o->base_path, n_chunks, base.n_ctx, base.n_ctx - 1 - base.n_ctx / 2);
    perplexity_kl kl;
    if (!perplexity_kl_run(model, session, &base, params, print_running, NULL, &kl, err, sizeof err)) {
        cli_error("perplexity: %s", err);
        perplexity_kl_free(&kl);
        goto done;
    }
    perplexity_kl_summary summary;
    perplexity_kl_summarize(&kl, &summary);
    print_kl_summary(&summary, kl.q.count);
    perplexity_kl_free(&kl);
    rc = 0;
done:
    greta_free(ids);
    perplexity_base_close(&base);
    return rc;
}

/* Plain mode, writing the base file when asked. */
static int run_plain(greta_model *model, greta_session *session, const ppl_options *o,
                     const perplexity_params *params) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!tokenize_text(model, o->text_path, &ids, &n_ids)) return 1;
    int rc = 1;
    FILE *base = NULL;
    char err[512] = "";
    if (n_ids < 2 * (size_t)params->n_ctx) {
        cli_error("perplexity: %s is %zu tokens; a context of %d needs at least %d (lower --ctx)", o->text_path,
                  n_ids, params->n_ctx, 2 * params->n_ctx);
        goto done;
    }
    if (o->base_path && !(base = fopen(o->base_path, "wb"))) {
        cli_error("--kl-divergence-base: %s: cannot create: %s", o->base_path, strerror(errno));
        goto done;
    }
    size_t n_chunks = n_ids / (size_t)params->n_ctx;
    if (params->n_chunks > 0 && (size_t)params->n_chunks < n_chunks) n_chunks = (size_t)params->n_chunks;
    fprintf(stderr, "perplexity: %zu tokens, %zu chunks of %d, %d scored per chunk, %s backend\n", n_ids,
            n_chunks, params->n_ctx, params->n_ctx - 1 - params->n_ctx / 2,
            greta_backend_name(greta_session_backend(session)));
    perplexity_sums sums;
    bool ok = perplexity_run(model, session, ids, n_ids, params, base, print_running, NULL, &sums, err, sizeof err);
    if (base && fclose(base) != 0 && ok) {
        snprintf(err, sizeof err, "cannot write the base file: %s", strerror(errno));
        ok = false;
    }
    base = NULL;
    if (!ok) {
        cli_error("perplexity: %s", err);
        if (o->base_path) remove(o->base_path);
        goto done;
    }
    perplexity_estimate e = perplexity_of(&sums);
    printf("Final estimate: PPL = %.4f +/- %.5f (%zu tokens scored)\n", e.value, e.error, sums.count);
    rc = 0;
done:
    if (base) fclose(base);
    greta_free(ids);
    return rc;
}

int cli_perplexity(int argc, char **argv) {
    ppl_options o;
    int r = parse_options(argc, argv, &o);
    if (r != 0) return r == 1 ? 0 : 2;
    greta_model *model = cli_load_model(o.model_path);
    if (!model) return 1;
    greta_session_params sp = greta_session_default_params();
    sp.n_ctx = (int32_t)o.n_ctx;
    sp.n_threads = o.n_threads;
    sp.backend = o.backend;
    sp.precision = o.precision;
    sp.logits_all = true;
    int rc = 1;
    greta_session *session = NULL;
    char err[512] = "";
    if (o.kl && o.base_path) {
        /* the context comes from the base file */
        perplexity_base probe;
        if (!perplexity_base_open(o.base_path, &probe, err, sizeof err)) {
            cli_error("--kl-divergence-base: %s: %s", o.base_path, err);
            goto done;
        }
        sp.n_ctx = probe.n_ctx;
        perplexity_base_close(&probe);
        if (o.ctx_given && o.n_ctx != sp.n_ctx) {
            cli_error("perplexity: --ctx %ld differs from the context of %s (%d); with --kl-divergence the "
                      "context comes from the file",
                      o.n_ctx, o.base_path, sp.n_ctx);
            rc = 2;
            goto done;
        }
    }
    if (greta_session_new(model, &sp, &session, err, sizeof err) != GRETA_OK) {
        cli_error("session: %s", err);
        goto done;
    }
    perplexity_params params = {sp.n_ctx, o.n_batch > 0 ? (int32_t)o.n_batch : sp.n_ctx, (int32_t)o.n_chunks};
    if (params.n_batch > sp.n_ctx) params.n_batch = sp.n_ctx;
    rc = o.kl ? run_kl(model, session, &o, &params) : run_plain(model, session, &o, &params);
done:
    greta_session_free(session);
    greta_model_free(model);
    return rc;
}
