/* cli_audit.c: `greta audit parity|backends|determinism|neutrality` (docs/trace.md). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/audit.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "greta.h"

int cli_audit(int argc, char **argv);

static void audit_usage(FILE *out) {
    fprintf(out,
            "usage: greta audit KIND -m MODEL (-p TEXT | --ids 1,2,3) [options]\n"
            "\n"
            "kinds:\n"
            "  parity       prompt prefilled whole vs prefilled without its last token + that token\n"
            "               decoded at the same position; and token-by-token vs one prefill (exact)\n"
            "  backends     every point on --a vs --b (default cpu vs ref; rel 0.15 at q8, 1e-4 at f32),\n"
            "               error growth per layer\n"
            "  determinism  the same run twice, and -t N vs --threads-alt M threads (exact)\n"
            "  neutrality   tracing on vs off: logits of every row bitwise equal\n"
            "\n"
            "options:\n"
            "  -m, --model FILE     GGUF model\n"
            "  -p, --prompt TEXT    prompt text (--chat: the user message of the chat template)\n"
            "  --ids LIST           token ids instead of a prompt\n"
            "  --chat, --system T   apply the model's chat template (with a system message)\n"
            "  --backend B          backend of parity/determinism/neutrality (cpu, ref, cuda; default cpu)\n"
            "  --a B, --b B         backends of 'backends' (B is the reference)\n"
            "  --precision P        arithmetic of the cpu and cuda sessions: q8 (default) or f32 (docs/engine.md)\n"
            "  --kv-type T          KV cache of the cuda sessions: f16 (default), q8_0 or f32 (docs/cuda.md)\n"
            "  --deterministic      every session: batch-invariant kernels only (cuda: no fast prefill)\n"
            "  -t, --threads N      threads (default 2); --threads-alt M (default 1)\n"
            "  --decode N           neutrality: greedy decode steps (default 4)\n"
            "  --atol X --rtol Y --rel Z   tolerance (default: exact; backends: the precision's bound)\n"
            "  --layers L --points P       what is traced (default all)\n"
            "  --table              print the layer x point table of every comparison\n"
            "\n"
            "exit status: 0 pass, 1 fail (the first divergence is named), 2 error\n");
}

int cli_audit(int argc, char **argv) {
    if (argc < 2) {
        cli_error("audit: missing KIND (parity, backends, determinism, neutrality); try 'greta audit --help'");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        audit_usage(stdout);
        return 0;
    }
    int kind = audit_kind_from_name(argv[1]);
    if (kind < 0) {
        cli_error("audit: unknown kind '%s' (parity, backends, determinism, neutrality)", argv[1]);
        return 2;
    }
    audit_options o;
    audit_options_init(&o);
    o.report = stdout;
    const char *model_path = NULL, *prompt = NULL, *ids_text = NULL, *system = NULL;
    bool chat = false;
    char err[1024];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            audit_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--chat") == 0) {
            chat = true;
            continue;
        }
        if (strcmp(a, "--table") == 0) {
            o.full_tables = true;
            continue;
        }
        if (strcmp(a, "--deterministic") == 0) {
            o.deterministic = true;
            continue;
        }
        static const char *const with_value[] = {"-m", "--model", "-p", "--prompt", "--ids", "--system", "--backend",
                                                 "--a", "--b", "-t", "--threads", "--threads-alt", "--decode", "--precision", "--kv-type",
                                                 "--atol", "--rtol", "--rel", "--layers", "--points"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known = known || strcmp(a, with_value[k]) == 0;
        if (!known) {
            cli_error("audit: unknown option '%s' (try 'greta audit --help')", a);
            return 2;
        }
        if (i + 1 >= argc) {
            cli_error("%s: missing value", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model_path = v;
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) prompt = v;
        else if (strcmp(a, "--ids") == 0) ids_text = v;
        else if (strcmp(a, "--system") == 0) system = v;
        else if (strcmp(a, "--backend") == 0) rc = cli_arg_backend(a, v, &o.backend);
        else if (strcmp(a, "--a") == 0) rc = cli_arg_backend(a, v, &o.backend_a);
        else if (strcmp(a, "--b") == 0) rc = cli_arg_backend(a, v, &o.backend_b);
        else if (strcmp(a, "--precision") == 0) {
            if (greta_precision_from_name(v, &o.precision) != GRETA_OK) {
                cli_error("--precision: unknown precision '%s' (f32, q8)", v);
                return 2;
            }
        }
        else if (strcmp(a, "--kv-type") == 0) rc = cli_arg_kv_type(a, v, &o.kv_type);
        else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) rc = cli_arg_int(a, v, 1, INT_MAX, &o.n_threads);
        else if (strcmp(a, "--threads-alt") == 0) rc = cli_arg_int(a, v, 1, INT_MAX, &o.n_threads_alt);
        else if (strcmp(a, "--decode") == 0) rc = cli_arg_int(a, v, 0, INT_MAX, &o.n_decode);
        else if (strcmp(a, "--atol") == 0) rc = cli_arg_tolerance(a, v, &o.tolerance.atol), o.tolerance_set = true;
        else if (strcmp(a, "--rtol") == 0) rc = cli_arg_tolerance(a, v, &o.tolerance.rtol), o.tolerance_set = true;
        else if (strcmp(a, "--rel") == 0) rc = cli_arg_tolerance(a, v, &o.tolerance.rel), o.tolerance_set = true;
        else if (strcmp(a, "--layers") == 0 || strcmp(a, "--points") == 0) {
            char *dst = strcmp(a, "--layers") == 0 ? o.layers : o.points;
            if (strlen(v) >= TRACE_SPEC_MAX) {
                cli_error("%s: list too long", a);
                return 2;
            }
            strcpy(dst, v);
        }
        if (rc != 0) return 2;
    }
    if (!model_path) {
        cli_error("audit: no model (-m MODEL)");
        return 2;
    }
    if ((prompt == NULL) == (ids_text == NULL)) {
        cli_error("audit: give exactly one of -p TEXT and --ids LIST");
        return 2;
    }
    if (system && !chat) {
        cli_error("audit: --system needs --chat");
        return 2;
    }
    greta_model *m = NULL;
    if (greta_model_load(model_path, NULL, &m, err, sizeof err) != GRETA_OK) {
        cli_error("%s: %s", model_path, err);
        return 2;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int status = 2;
    if (ids_text ? cli_arg_id_list("--ids", ids_text, &ids, &n_ids) != 0
                 : audit_prompt_ids(m, prompt, chat, system, &ids, &n_ids, err, sizeof err) != 0) {
        if (!ids_text) cli_error("audit: %s", err);
        goto done;
    }
    printf("audit %s: %s, %zu prompt token%s\n", argv[1], model_path, n_ids, n_ids == 1 ? "" : "s");
    audit_result r;
    if (audit_run((audit_kind)kind, m, model_path, ids, n_ids, &o, &r, err, sizeof err) != 0) {
        cli_error("audit %s: %s", argv[1], err);
        goto done;
    }
    printf("verdict: %s\n", r.verdict);
    status = r.pass ? 0 : 1;
done:
    if (ids_text) free(ids);
    else greta_free(ids);
    greta_model_free(m);
    return status;
}
