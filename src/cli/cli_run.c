/* cli_run.c: greta run -m MODEL -p TEXT: generate text from a prompt,
 * streamed to stdout; speeds to stderr. Flags: docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_common.h"
#include "greta.h"

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: greta run -m MODEL (-p TEXT | -f FILE | --ids LIST) [options]\n"
            "  -m, --model FILE          GGUF model\n"
            "  -p, --prompt TEXT         prompt text\n"
            "  -f, --prompt-file FILE    prompt from a file ('-' = stdin)\n"
            "  --ids 1,2,3               prompt as token ids, evaluated as given (no BOS added);\n"
            "                            a model without a vocabulary prints the generated ids\n"
            "  -n, --max-tokens N        tokens to generate at most (default 256)\n"
            "  --chat                    apply the model's chat template to the prompt\n"
            "  --system TEXT             system message (with --chat)\n"
            "  --chat-template NAME|FILE built-in template name or a Jinja file (with --chat)\n"
            "  --greedy                  argmax decoding\n"
            "  --temp, --temperature T   temperature (default 0.8; 0 = argmax)\n"
            "  --top-k K                 (default 40; 0 = off)\n"
            "  --top-p P                 (default 0.95; 1 = off)\n"
            "  --min-p P                 (default 0.05; 0 = off)\n"
            "  --repeat-penalty X        (default 1 = off)\n"
            "  --repeat-last-n N         penalty window (default 64; -1 = all)\n"
            "  --seed N                  sampler seed\n"
            "  --stop STR                stop string (repeatable; not printed)\n"
            "  -c, --ctx N               context length (default: the model's, at most 4096)\n"
            "  -t, --threads N           CPU threads (default: all; more than the online CPUs is capped\n"
            "                            to them with a warning unless --force-threads)\n"
            "  --backend cpu|ref|cuda    (default cpu)\n"
            "  --precision q8|f32        cpu/cuda arithmetic: 8-bit activations (default) or float32\n"
            "  --kv-type f32|f16|q8_0    KV cache values (default: the backend's; cpu f32, cuda f16)\n"
            "  --deterministic           batch-invariant kernels only: prefill and decode give the same\n"
            "                            bits, runs repeat bit for bit (cpu and ref always are; cuda's\n"
            "                            fast prefill is not, docs/cuda.md)\n"
            "  --parse-special           control-token texts in the prompt become their ids\n"
            "  --no-parse-special        they stay plain text (the default)\n"
            "  --special                 print control tokens of the output\n"
            "  --no-special              do not print them (default)\n"
            "  --dump-logits DIR         write every step's logits row (docs/cli.md)\n"
            "StageTrace (also GRETA_TRACE_STAGE* environment variables; docs/trace.md):\n");
    fputs(greta_trace_flags_help(), out);
}

/* The prompt's token ids (plain or chat-templated). */
static bool build_prompt(greta_model *model, const cli_gen_options *o, const char *text, int32_t **ids,
                         size_t *n_ids) {
    char err[512] = "";
    if (!o->chat) {
        if (greta_tokenize(model, text, strlen(text), true, o->parse_special, ids, n_ids, err, sizeof err) != GRETA_OK) {
            cli_error("tokenize: %s", err);
            return false;
        }
        return true;
    }
    greta_chat_message messages[2];
    size_t n = 0;
    if (o->system) messages[n++] = (greta_chat_message){"system", o->system};
    messages[n++] = (greta_chat_message){"user", text};
    char *rendered = NULL;
    if (greta_chat_apply(model, messages, n, true, o->chat_template, &rendered, err, sizeof err) != GRETA_OK) {
        cli_error("%s", err);
        return false;
    }
    greta_status st = greta_tokenize(model, rendered, strlen(rendered), false, true, ids, n_ids, err, sizeof err);
    greta_free(rendered);
    if (st != GRETA_OK) {
        cli_error("tokenize: %s", err);
        return false;
    }
    return true;
}

int cli_run(int argc, char **argv) {
    cli_gen_options o;
    cli_gen_options_init(&o);
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_gen_flag(&o, argc, argv, &i);
        if (r < 0) {
            cli_gen_options_free(&o);
            return 2;
        }
        if (r == 0) {
            cli_error("run: unknown argument '%s' (try 'greta run --help')", argv[i]);
            cli_gen_options_free(&o);
            return 2;
        }
    }
    if (o.show_help) {
        run_usage(stdout);
        cli_gen_options_free(&o);
        return 0;
    }
    int rc = 1;
    char *file_text = NULL;
    greta_model *model = NULL;
    greta_session *session = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    cli_gen_result result = {0};
    if (!o.model_path) {
        cli_error("run: no model (pass -m MODEL.gguf)");
        rc = 2;
        goto done;
    }
    int n_prompts = (o.prompt != NULL) + (o.prompt_file != NULL) + (o.prompt_ids != NULL);
    if (n_prompts != 1) {
        cli_error("run: %s", n_prompts ? "pass one of -p, -f and --ids" : "no prompt (pass -p TEXT, -f FILE or --ids LIST)");
        rc = 2;
        goto done;
    }
    if (o.prompt_ids && o.chat) {
        cli_error("run: --ids and --chat exclude each other (--chat renders text)");
        rc = 2;
        goto done;
    }
    if (o.system && !o.chat) {
        cli_error("run: --system needs --chat");
        rc = 2;
        goto done;
    }
    if (o.chat_template && !o.chat) {
        cli_error("run: --chat-template needs --chat");
        rc = 2;
        goto done;
    }
    const char *text = o.prompt;
    if (o.prompt_file) {
        size_t len = 0;
        size_t positions = o.n_ctx > 0 ? (size_t)o.n_ctx : CLI_MAX_CONTEXT;
        if (!(file_text = cli_read_file("--prompt-file", o.prompt_file, positions * CLI_PROMPT_BYTES_PER_POSITION, &len)))
            goto done;
        if (strlen(file_text) != len) {
            cli_error("--prompt-file: %s: contains a NUL byte", o.prompt_file);
            goto done;
        }
        text = file_text;
    }
    if (o.dump_logits_dir && !cli_dump_logits_open(o.dump_logits_dir)) goto done;
    if (o.prompt_ids) {
        if (cli_arg_id_list("--ids", o.prompt_ids, &ids, &n_ids) != 0) goto done;
    }
    if (!(model = cli_load_model(o.model_path))) goto done;
    if (!o.prompt_ids && !build_prompt(model, &o, text, &ids, &n_ids)) goto done;
    if (n_ids == 0) {
        cli_error("run: the prompt is empty (no tokens to evaluate)");
        goto done;
    }
    if (!(session = cli_new_session(model, &o, false))) goto done;
    int32_t n_ctx = greta_session_n_ctx(session);
    if (n_ids > (size_t)n_ctx) {
        cli_error("run: the prompt is %zu tokens, longer than the context of %d (--ctx)", n_ids, n_ctx);
        goto done;
    }
    if (!cli_generate(model, session, &o, ids, n_ids, &result)) goto done;
    fputc('\n', stdout);
    fflush(stdout);
    const greta_generate_result *g = &result.r;
    const char *why = g->reason == GRETA_FINISH_EOS ? "end of generation"
                      : g->reason == GRETA_FINISH_STOP ? "stop string"
                      : g->reason == GRETA_FINISH_CONTEXT_FULL ? "context full"
                      : g->reason == GRETA_FINISH_LENGTH ? "token limit" : "aborted";
    double prompt_s = g->prompt_seconds, gen_s = g->generate_seconds;
    int n_threads = greta_session_n_threads(session);
    fprintf(stderr, "greta: prompt %zu token%s in %.3f s (%.1f tok/s); generated %d token%s in %.3f s (%.1f tok/s); %s; %s backend, %d thread%s\n",
            n_ids, n_ids == 1 ? "" : "s", prompt_s, prompt_s > 0 ? (double)n_ids / prompt_s : 0.0, g->n_generated,
            g->n_generated == 1 ? "" : "s", gen_s, gen_s > 0 ? (double)g->n_generated / gen_s : 0.0, why,
            greta_backend_name(greta_session_backend(session)), n_threads, n_threads == 1 ? "" : "s");
    rc = 0;
done:
    free(result.text);
    greta_free(ids);
    if (session && !cli_end_session(session) && rc == 0) rc = 1;
    greta_model_free(model);
    free(file_text);
    cli_gen_options_free(&o);
    return rc;
}
