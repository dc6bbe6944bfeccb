/* cli_inspect.c: `greta inspect FILE [--dump NAME -o OUT]`.
 *
 * Prints what a GGUF file holds: version, alignment, sizes, every metadata
 * entry (long strings and arrays summarized), the tensor table (name, type,
 * shape with ne[0] first, bytes, offset in the data section and in the
 * file), totals per type, and the llama hyperparameters as the model loader
 * reads them (model_read_hparams). With --dump, writes one tensor
 * dequantized to little-endian float32, row-major in file order (ne[0]
 * fastest), so a weight can be looked at outside greta. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"

#define STRING_SHOWN 60  /* characters of a string value shown */
#define ARRAY_SHOWN 5    /* elements of an array shown */

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: greta inspect FILE [--dump NAME -o OUT]\n"
            "\n"
            "Prints a GGUF file's version, metadata (long values summarized), tensor table\n"
            "(name, type, shape with ne[0] first, bytes, offset), totals and the derived\n"
            "llama hyperparameters.\n"
            "\n"
            "  --dump NAME  write tensor NAME dequantized as little-endian float32,\n"
            "               row-major in file order (ne[0] fastest), to OUT\n"
            "  -o OUT       output path for --dump\n");
}

/* Prints s quoted, escaping non-printable bytes, cut after `limit` bytes. */
static void print_quoted(gguf_str s, uint64_t limit) {
    putchar('"');
    uint64_t n = s.len < limit ? s.len : limit;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (s.len > limit) printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_array_element(const gguf_file *f, uint64_t kv, gguf_type type, uint64_t i) {
    switch (type) {
    case GGUF_STRING: print_quoted(gguf_arr_str(f, kv, i), STRING_SHOWN); break;
    case GGUF_FLOAT32: case GGUF_FLOAT64: printf("%.9g", gguf_arr_float(f, kv, i)); break;
    case GGUF_BOOL: printf("%s", gguf_arr_int(f, kv, i) ? "true" : "false"); break;
    case GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, (const uint8_t *)gguf_arr_data(f, kv) + 8 * i, 8);
        printf("%" PRIu64, v);
        break;
    }
    default: printf("%" PRId64, gguf_arr_int(f, kv, i)); break;
    }
}

static void print_value(const gguf_file *f, uint64_t kv) {
    gguf_type type = gguf_kv_type(f, kv);
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    gguf_str s;
    if (type == GGUF_ARRAY) {
        gguf_type elem = gguf_arr_type(f, kv);
        uint64_t count = gguf_arr_count(f, kv);
        printf("[%s x %" PRIu64 "]", gguf_type_name(elem), count);
        if (elem == GGUF_ARRAY) return; /* nested: count only */
        printf(" ");
        uint64_t shown = count < ARRAY_SHOWN ? count : ARRAY_SHOWN;
        for (uint64_t k = 0; k < shown; k++) {
            if (k) printf(", ");
            print_array_element(f, kv, elem, k);
        }
        if (count > shown) printf(", ...");
        return;
    }
    if (type == GGUF_STRING && gguf_kv_get_str(f, kv, &s)) print_quoted(s, STRING_SHOWN);
    else if (type == GGUF_BOOL && gguf_kv_get_bool(f, kv, &b)) printf("%s", b ? "true" : "false");
    else if ((type == GGUF_FLOAT32 || type == GGUF_FLOAT64) && gguf_kv_get_float(f, kv, &d)) printf("%.9g", d);
    else if (gguf_kv_get_int(f, kv, &i)) printf("%" PRId64, i);
    else if (gguf_kv_get_uint(f, kv, &u)) printf("%" PRIu64, u);
}

static void print_metadata(const gguf_file *f) {
    printf("\nmetadata: %" PRIu64 " keys\n", gguf_kv_count(f));
    for (uint64_t kv = 0; kv < gguf_kv_count(f); kv++) {
        gguf_str key = gguf_kv_key(f, kv);
        char shown[256];
        size_t used = 0;
        for (uint64_t i = 0; i < key.len && used + 5 < sizeof shown; i++) {
            unsigned char c = (unsigned char)key.ptr[i];
            if (c >= 0x20 && c < 0x7f) shown[used++] = (char)c;
            else used += (size_t)snprintf(shown + used, sizeof shown - used, "\\x%02x", c);
        }
        shown[used] = 0;
        printf("  %-44s %-8s ", shown, gguf_type_name(gguf_kv_type(f, kv)));
        print_value(f, kv);
        putchar('\n');
    }
}

static void format_shape(const gguf_tensor *t, char *out, size_t size) {
    size_t used = 0;
    out[0] = 0;
    for (uint32_t d = 0; d < t->n_dims && used < size; d++)
        used += (size_t)snprintf(out + used, size - used, d ? " x %" PRId64 : "%" PRId64, t->ne[d]);
}

static void print_tensors(const gguf_file *f) {
    uint64_t n = gguf_tensor_count(f);
    printf("\ntensors: %" PRIu64 " (shape: ne[0] = row length first; offset: in the data section)\n", n);
    if (n == 0) return;
    printf("  %5s  %-40s %-6s %-22s %12s %12s %12s\n", "#", "name", "type", "shape", "bytes", "offset",
           "file offset");
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        char shape[96];
        format_shape(t, shape, sizeof shape);
        printf("  %5" PRIu64 "  %-40s %-6s %-22s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", i, t->name,
               quant_type_name(t->type), shape, t->nbytes, t->offset, gguf_data_offset(f) + t->offset);
    }
}

static void print_totals(const gguf_file *f) {
    uint64_t params = 0, bytes = 0;
    uint64_t per_type[QT_COUNT_MAX] = {0}, per_type_bytes[QT_COUNT_MAX] = {0};
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        params += (uint64_t)gguf_tensor_nelements(t);
        bytes += t->nbytes;
        per_type[t->type]++; /* the reader only admits supported types (< QT_COUNT_MAX) */
        per_type_bytes[t->type] += t->nbytes;
    }
    printf("\ntotals: %" PRIu64 " tensors, %" PRIu64 " parameters, %" PRIu64 " bytes of tensor data", gguf_tensor_count(f),
           params, bytes);
    if (params) printf(" (%.3f bits per parameter)", 8.0 * (double)bytes / (double)params);
    printf("\n");
    for (uint32_t type = 0; type < QT_COUNT_MAX; type++)
        if (per_type[type])
            printf("  %-6s %6" PRIu64 " tensors %14" PRIu64 " bytes\n", quant_type_name(type), per_type[type],
                   per_type_bytes[type]);
}

static void print_hparams(const gguf_file *f) {
    model_hparams hp;
    char err[256];
    printf("\nhyperparameters:\n");
    if (!model_read_hparams(f, &hp, err, sizeof err)) {
        printf("  not available: %s\n", err);
        return;
    }
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    int64_t kv = gguf_find_key(f, "tokenizer.ggml.tokens");
    printf("  %-22s %d\n", "embedding length", hp.n_embd);
    printf("  %-22s %d\n", "feed-forward length", hp.n_ff);
    printf("  %-22s %d\n", "blocks", hp.n_layer);
    printf("  %-22s %d\n", "heads", hp.n_head);
    printf("  %-22s %d (%s)\n", "kv heads", hp.n_head_kv, hp.n_head_kv == hp.n_head ? "MHA" : "GQA");
    printf("  %-22s %d\n", "head dimension", hp.head_dim);
    printf("  %-22s %d\n", "rope dimension", hp.rope_dim);
    printf("  %-22s %.9g\n", "rope base", hp.rope_freq_base);
    const char *scaling = rope_scaling_name(hp.rope_scaling);
    if (gguf_find_tensor(f, "rope_freqs.weight")) scaling = "llama3 (rope_freqs.weight)";
    printf("  %-22s %s", "rope scaling", scaling);
    if (hp.rope_scaling == ROPE_SCALING_LINEAR) printf(", factor %.9g", hp.rope_scale_factor);
    printf("\n");
    printf("  %-22s %.9g\n", "rms epsilon", hp.rms_eps);
    printf("  %-22s %d\n", "context length", hp.n_ctx_train);
    if (embd) printf("  %-22s %" PRId64 " (token_embd.weight rows)\n", "vocabulary", embd->ne[1]);
    else if (kv >= 0) printf("  %-22s %" PRIu64 " (tokenizer.ggml.tokens)\n", "vocabulary", gguf_arr_count(f, (uint64_t)kv));
    else printf("  %-22s unknown\n", "vocabulary");
    if (embd)
        printf("  %-22s %s\n", "output", gguf_find_tensor(f, "output.weight") ? "separate (output.weight)"
                                                                            : "tied to token_embd.weight");
}

/* Writes tensor t dequantized to out_path; returns 0 or prints an error. */
static int dump_tensor(const char *file_path, const gguf_tensor *t, const char *out_path) {
    FILE *out = fopen(out_path, "wb");
    if (!out) {
        cli_error("%s: cannot create: %m", out_path);
        return 1;
    }
    int64_t row_len = t->ne[0];
    int64_t rows = row_len ? gguf_tensor_nelements(t) / row_len : 0;
    size_t row_bytes = quant_row_bytes(t->type, row_len);
    float *row = malloc((size_t)(row_len ? row_len : 1) * sizeof *row);
    if (!row) {
        fclose(out);
        cli_error("%s: out of memory for a row of %" PRId64 " values", file_path, row_len);
        return 1;
    }
    bool ok = true;
    for (int64_t r = 0; r < rows && ok; r++) {
        quant_dequantize(t->type, (const uint8_t *)t->data + (size_t)r * row_bytes, row, row_len);
        ok = fwrite(row, sizeof *row, (size_t)row_len, out) == (size_t)row_len;
    }
    free(row);
    if (fclose(out) != 0) ok = false;
    if (!ok) {
        cli_error("%s: write failed: %m", out_path);
        return 1;
    }
    fprintf(stderr, "wrote %s: %" PRId64 " float32 values (%" PRId64 " rows of %" PRId64 ")\n", out_path, rows * row_len,
            rows, row_len);
    return 0;
}

int cli_inspect(int argc, char **argv) {
    const char *path = NULL, *dump_name = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            dump_name = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out_path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            cli_error("inspect: unknown or incomplete option '%s' (try 'greta inspect --help')", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            cli_error("inspect: more than one FILE ('%s' and '%s')", path, argv[i]);
            return 2;
        }
    }
    if (!path) {
        cli_error("inspect: missing FILE (usage: greta inspect FILE [--dump NAME -o OUT])");
        return 2;
    }
    if ((dump_name != NULL) != (out_path != NULL)) {
        cli_error("inspect: --dump NAME and -o OUT go together");
        return 2;
    }
    char err[512];
    gguf_file *f = gguf_open(path, err, sizeof err);
    if (!f) {
        cli_error("%s: %s", path, err);
        return 1;
    }
    int status = 0;
    if (dump_name) {
        const gguf_tensor *t = gguf_find_tensor(f, dump_name);
        if (!t) {
            cli_error("%s: no tensor named '%s'", path, dump_name);
            status = 1;
        } else {
            status = dump_tensor(path, t, out_path);
        }
    } else {
        printf("file: %s\n", path);
        printf("GGUF version %u, alignment %" PRIu64 ", %" PRIu64 " bytes, tensor data at offset %" PRIu64 "\n",
               gguf_version(f), gguf_alignment(f), gguf_file_size(f), gguf_data_offset(f));
        print_metadata(f);
        print_tensors(f);
        print_totals(f);
        print_hparams(f);
    }
    gguf_close(f);
    return status;
}
