/* generate.c: the smallest complete program on libgreta: load a model,
 * tokenize a prompt, generate greedily with a callback that prints each
 * piece of text as it is final.
 *
 *   cc generate.c $(pkg-config --cflags --libs greta) -o generate
 *   ./generate MODEL.gguf "The capital of France is" 32
 *
 * The text goes to stdout (then a newline), why generation stopped to
 * stderr. docs/api.md explains the calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <greta.h>

/* greta_piece_fn: one piece of generated text (valid UTF-8, never part of
 * a stop string). Returning false would stop generation. */
static bool print_piece(const char *text, size_t len, void *user_data) {
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !ferror(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    int max_tokens = argc == 4 ? atoi(argv[3]) : 64;
    char err[512] = "";
    greta_model *model = NULL;
    greta_session *session = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    if (greta_model_load(argv[1], NULL, &model, err, sizeof err) != GRETA_OK) {
        fprintf(stderr, "generate: %s: %s\n", argv[1], err);
        goto done;
    }
    if (greta_session_new(model, NULL, &session, err, sizeof err) != GRETA_OK) {
        fprintf(stderr, "generate: session: %s\n", err);
        goto done;
    }
    if (greta_tokenize(model, argv[2], strlen(argv[2]), true, false, &ids, &n_ids, err, sizeof err) != GRETA_OK) {
        fprintf(stderr, "generate: %s\n", err);
        goto done;
    }
    greta_generate_params params = greta_generate_default_params();
    params.sampling.greedy = true;
    params.max_tokens = max_tokens;
    params.on_piece = print_piece;
    greta_generate_result result;
    greta_status status = greta_generate(session, ids, n_ids, &params, &result);
    putchar('\n');
    if (status != GRETA_OK) {
        fprintf(stderr, "generate: %s\n", greta_session_error(session));
        goto done;
    }
    fprintf(stderr, "generate: %d prompt tokens, %d generated; finished: %s\n", result.n_prompt,
            result.n_generated, greta_finish_reason_name(result.reason));
    rc = 0;
done:
    greta_free(ids);
    greta_session_free(session);
    greta_model_free(model);
    return rc;
}
