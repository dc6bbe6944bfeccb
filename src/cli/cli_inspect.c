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
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/gguf.h"
#include "model/model.h"
#include "format/quant.h"

#define STRING_SHOWN 60  /* characters of a string value shown */
#define ARRAY_SHOWN 5    /* elements of an array shown */

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: greta inspect FILE [--json] [--dump NAME -o OUT]\n"
            "\n"
            "Prints a GGUF file's version, metadata (long values summarized), tensor table\n"
            "(name, type, shape with ne[0] first, bytes, offset), totals and the derived\n"
            "llama hyperparameters.\n"
            "\n"
            "  --json       print the same as one JSON object (arrays in full)\n"
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
    if (model_read_hparams(f, &hp, err, sizeof err) != GRETA_OK) {
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

/* ---- --json ---- */

/* A JSON string for s, or {"hex": "..."} when s is not valid UTF-8. */
static json_t *json_bytes(gguf_str s) {
    json_t *text = json_stringn(s.ptr, (size_t)s.len);
    if (text) return text;
    char *hex = malloc((size_t)s.len * 2 + 1);
    if (!hex) return json_null();
    for (uint64_t i = 0; i < s.len; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s.ptr[i]);
    hex[2 * s.len] = 0;
    json_t *obj = json_pack("{s:s}", "hex", hex);
    free(hex);
    return obj;
}

/* Integers as JSON integers; uint64 values above INT64_MAX as decimal strings. */
static json_t *json_u64(uint64_t v) {
    if (v <= (uint64_t)INT64_MAX) return json_integer((json_int_t)v);
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, v);
    return json_string(text);
}

static json_t *json_array_element(const gguf_file *f, uint64_t kv, gguf_type type, uint64_t i) {
    switch (type) {
    case GGUF_STRING: return json_bytes(gguf_arr_str(f, kv, i));
    case GGUF_FLOAT32: case GGUF_FLOAT64: return json_real(gguf_arr_float(f, kv, i));
    case GGUF_BOOL: return json_boolean(gguf_arr_int(f, kv, i));
    case GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, (const uint8_t *)gguf_arr_data(f, kv) + 8 * i, 8);
        return json_u64(v);
    }
    default: return json_integer(gguf_arr_int(f, kv, i));
    }
}

static json_t *json_value(const gguf_file *f, uint64_t kv) {
    gguf_type type = gguf_kv_type(f, kv);
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    gguf_str s;
    if (type == GGUF_ARRAY) {
        gguf_type elem = gguf_arr_type(f, kv);
        json_t *values = json_array();
        if (elem != GGUF_ARRAY)
            for (uint64_t k = 0; k < gguf_arr_count(f, kv); k++)
                json_array_append_new(values, json_array_element(f, kv, elem, k));
        return values; /* nested arrays: element_type "array" and count only */
    }
    if (type == GGUF_STRING && gguf_kv_get_str(f, kv, &s)) return json_bytes(s);
    if (type == GGUF_BOOL && gguf_kv_get_bool(f, kv, &b)) return json_boolean(b);
    if ((type == GGUF_FLOAT32 || type == GGUF_FLOAT64) && gguf_kv_get_float(f, kv, &d)) return json_real(d);
    if (gguf_kv_get_int(f, kv, &i)) return json_integer(i);
    if (gguf_kv_get_uint(f, kv, &u)) return json_u64(u);
    return json_null();
}

static json_t *json_hparams(const gguf_file *f) {
    model_hparams hp;
    char err[256];
    if (model_read_hparams(f, &hp, err, sizeof err) != GRETA_OK) {
        gguf_str reason = {err, strlen(err)};
        return json_pack("{s:o}", "error", json_bytes(reason));
    }
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    const char *scaling = gguf_find_tensor(f, "rope_freqs.weight") ? "llama3" : rope_scaling_name(hp.rope_scaling);
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:f, s:f, s:i}", "embedding_length",
                          hp.n_embd, "feed_forward_length", hp.n_ff, "block_count", hp.n_layer, "head_count",
                          hp.n_head, "head_count_kv", hp.n_head_kv, "head_dim", hp.head_dim, "rope_dim",
                          hp.rope_dim, "rope_freq_base", hp.rope_freq_base, "rope_scaling", scaling,
                          "rope_scale_factor", hp.rope_scale_factor, "rms_eps", hp.rms_eps, "context_length",
                          hp.n_ctx_train);
    if (embd) {
        json_object_set_new(o, "vocab_size", json_integer(embd->ne[1]));
        json_object_set_new(o, "tied_output", json_boolean(gguf_find_tensor(f, "output.weight") == NULL));
    }
    return o;
}

static int print_json(const char *path, const gguf_file *f) {
    json_t *root = json_object();
    gguf_str path_str = {path, strlen(path)};
    json_object_set_new(root, "file", json_bytes(path_str));
    json_object_set_new(root, "version", json_integer(gguf_version(f)));
    json_object_set_new(root, "alignment", json_u64(gguf_alignment(f)));
    json_object_set_new(root, "file_size", json_u64(gguf_file_size(f)));
    json_object_set_new(root, "data_offset", json_u64(gguf_data_offset(f)));
    json_t *metadata = json_array();
    for (uint64_t kv = 0; kv < gguf_kv_count(f); kv++) {
        gguf_type type = gguf_kv_type(f, kv);
        json_t *entry = json_pack("{s:o, s:s}", "key", json_bytes(gguf_kv_key(f, kv)), "type", gguf_type_name(type));
        if (type == GGUF_ARRAY) {
            json_object_set_new(entry, "element_type", json_string(gguf_type_name(gguf_arr_type(f, kv))));
            json_object_set_new(entry, "count", json_u64(gguf_arr_count(f, kv)));
        }
        json_object_set_new(entry, "value", json_value(f, kv));
        json_array_append_new(metadata, entry);
    }
    json_object_set_new(root, "metadata", metadata);
    json_t *tensors = json_array();
    uint64_t params = 0, bytes = 0;
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_get_tensor(f, i);
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        gguf_str name = {t->name, strlen(t->name)};
        json_array_append_new(tensors, json_pack("{s:o, s:s, s:o, s:o, s:o, s:o}", "name", json_bytes(name), "type",
                                                 quant_type_name(t->type), "shape", shape, "bytes",
                                                 json_u64(t->nbytes), "offset", json_u64(t->offset), "file_offset",
                                                 json_u64(gguf_data_offset(f) + t->offset)));
        params += (uint64_t)gguf_tensor_nelements(t);
        bytes += t->nbytes;
    }
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "totals", json_pack("{s:o, s:o, s:o}", "tensors", json_u64(gguf_tensor_count(f)),
                                                  "parameters", json_u64(params), "bytes", json_u64(bytes)));
    json_object_set_new(root, "hyperparameters", json_hparams(f));
    int rc = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) == 0 ? 0 : 1;
    putchar('\n');
    json_decref(root);
    if (rc) cli_error("%s: cannot write JSON output", path);
    return rc;
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
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[i], "--dump") == 0 || strcmp(argv[i], "-o") == 0) {
            if (i + 1 >= argc) {
                cli_error("inspect: %s: missing value", argv[i]);
                return 2;
            }
            if (strcmp(argv[i], "--dump") == 0) dump_name = argv[++i];
            else out_path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            cli_error("inspect: unknown option '%s' (try 'greta inspect --help')", argv[i]);
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
    gguf_file *f = NULL;
    if (gguf_open(path, &f, err, sizeof err) != GRETA_OK) {
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
    } else if (as_json) {
        status = print_json(path, f);
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
