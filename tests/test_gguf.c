/* test_gguf.c: the GGUF reader and writer against the `gguf` Python package.
 *
 * 1. A file written by the package's GGUFWriter (scripts/oracles/gguf_pywrite.py) is
 *    read by greta and every key, value, tensor info and tensor byte is
 *    checked against the values spelled out below.
 * 2. A file written by greta's writer (every metadata type, tensors of seven
 *    types) is read back by greta AND dumped by the package
 *    (scripts/oracles/gguf_dump.py); both must equal the values spelled out below.
 * 3. The streaming writer produces the identical file; writer misuse fails
 *    with a message and leaves no file; a vocabulary-only file loads.
 * The package is required: if python3 or gguf is missing, the checks fail. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/check.h"
#include "format/gguf.h"
#include "format/quant.h"

/* ---- helpers ---- */

static void path_in_tmp(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", check_tmp_dir(), name); }

static uint8_t pattern_byte(uint64_t i, unsigned seed) { return (uint8_t)((i * 37 + seed) % 256); }

static void fill_pattern(uint8_t *dst, uint64_t n, unsigned seed) {
    for (uint64_t i = 0; i < n; i++) dst[i] = pattern_byte(i, seed);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static bool run_python(const char *script, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s/scripts/oracles/%s' %s", check_repo_dir(), script, args);
    int rc = system(cmd);
    CHECK(rc == 0, "python3 scripts/oracles/%s ran (exit status %d)", script, rc);
    return rc == 0;
}

/* ---- expected metadata, in the format of scripts/oracles/gguf_dump.py ---- */

typedef struct {
    const char *key;
    const char *types;       /* type names as the package spells them, space separated */
    int n;                   /* values (arrays flattened) */
    const char *values[4];   /* decimal integers, float literals, or raw string text */
} expected_kv;

/* Renders what greta read for entry kv as "types" text and value strings in
 * the same conventions (floats as %a; strings raw). Returns the value count. */
static int greta_types_values(const gguf_file *f, uint64_t kv, char *types, size_t types_size, char values[][128],
                              int max_values);

static bool leaf_is_float(const char *types) { return strstr(types, "FLOAT") != NULL; }
static bool leaf_is_string(const char *types) { return strstr(types, "STRING") != NULL; }

static bool same_value(const char *types, const char *expected, const char *actual) {
    if (leaf_is_float(types)) {
        double e = strtod(expected, NULL), a = strtod(actual, NULL);
        if (strstr(types, "FLOAT32")) e = (float)e;
        return e == a;
    }
    return strcmp(expected, actual) == 0;
}

static void upper_type_name(gguf_type t, char *out, size_t size) {
    const char *name = gguf_type_name(t);
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) out[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    out[i] = 0;
}

/* Walks a nested array's raw bytes (elem type, count, elements) collecting
 * the leaf type names (first element only, as the package does) and values. */
static const uint8_t *walk_array(const uint8_t *p, char *types, size_t types_size, bool record_types,
                                 char values[][128], int *n, int max_values) {
    uint32_t elem;
    uint64_t count;
    memcpy(&elem, p, 4);
    memcpy(&count, p + 4, 8);
    p += 12;
    char name[16];
    upper_type_name((gguf_type)elem, name, sizeof name);
    if (record_types && count > 0) {
        strncat(types, " ", types_size - strlen(types) - 1);
        strncat(types, name, types_size - strlen(types) - 1);
    }
    for (uint64_t i = 0; i < count; i++) {
        if (elem == GGUF_ARRAY) {
            p = walk_array(p, types, types_size, record_types && i == 0, values, n, max_values);
            continue;
        }
        if (elem == GGUF_STRING) {
            uint64_t len;
            memcpy(&len, p, 8);
            if (*n < max_values) snprintf(values[*n], 128, "%.*s", (int)len, (const char *)p + 8);
            (*n)++;
            p += 8 + len;
            continue;
        }
        if (*n < max_values) {
            char *v = values[*n];
            switch (elem) {
            case GGUF_UINT8: case GGUF_BOOL: snprintf(v, 128, "%u", p[0]); break;
            case GGUF_INT8: snprintf(v, 128, "%d", (int8_t)p[0]); break;
            case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); snprintf(v, 128, "%u", x); break; }
            case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); snprintf(v, 128, "%d", x); break; }
            case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); snprintf(v, 128, "%u", x); break; }
            case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); snprintf(v, 128, "%d", x); break; }
            case GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); snprintf(v, 128, "%llu", (unsigned long long)x); break; }
            case GGUF_INT64: { int64_t x; memcpy(&x, p, 8); snprintf(v, 128, "%lld", (long long)x); break; }
            case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); snprintf(v, 128, "%a", (double)x); break; }
            case GGUF_FLOAT64: { double x; memcpy(&x, p, 8); snprintf(v, 128, "%a", x); break; }
            default: snprintf(v, 128, "?"); break;
            }
        }
        (*n)++;
        p += gguf_type_size((gguf_type)elem);
    }
    return p;
}

static int greta_types_values(const gguf_file *f, uint64_t kv, char *types, size_t types_size, char values[][128],
                              int max_values) {
    gguf_type t = gguf_kv_type(f, kv);
    upper_type_name(t, types, types_size);
    int n = 0;
    if (t == GGUF_ARRAY) {
        uint64_t size;
        const uint8_t *raw = gguf_kv_value_bytes(f, kv, &size);
        walk_array(raw, types, types_size, true, values, &n, max_values);
        return n;
    }
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    gguf_str s;
    if (t == GGUF_STRING && gguf_kv_get_str(f, kv, &s)) snprintf(values[0], 128, "%.*s", (int)s.len, s.ptr);
    else if (t == GGUF_BOOL && gguf_kv_get_bool(f, kv, &b)) snprintf(values[0], 128, "%d", b);
    else if ((t == GGUF_FLOAT32 || t == GGUF_FLOAT64) && gguf_kv_get_float(f, kv, &d)) snprintf(values[0], 128, "%a", d);
    else if (gguf_kv_get_int(f, kv, &i)) snprintf(values[0], 128, "%lld", (long long)i);
    else if (gguf_kv_get_uint(f, kv, &u)) snprintf(values[0], 128, "%llu", (unsigned long long)u);
    else snprintf(values[0], 128, "(no getter)");
    return 1;
}

/* Checks greta's view of every expected key (and that there are no others). */
static void check_kvs_greta(const char *label, const gguf_file *f, const expected_kv *exp, int n_exp) {
    CHECK(gguf_kv_count(f) == (uint64_t)n_exp, "%s: greta sees %llu keys, expected %d", label,
          (unsigned long long)gguf_kv_count(f), n_exp);
    for (int e = 0; e < n_exp; e++) {
        int64_t kv = gguf_find_key(f, exp[e].key);
        CHECK(kv >= 0, "%s: greta finds key %s", label, exp[e].key);
        if (kv < 0) continue;
        CHECK(gguf_str_eq(gguf_kv_key(f, (uint64_t)kv), exp[e].key), "%s: key %llu is named %s", label,
              (unsigned long long)kv, exp[e].key);
        char types[64], values[8][128];
        int n = greta_types_values(f, (uint64_t)kv, types, sizeof types, values, 8);
        CHECK(strcmp(types, exp[e].types) == 0, "%s: greta type of %s is '%s' (expected '%s')", label, exp[e].key,
              types, exp[e].types);
        bool same = n == exp[e].n;
        for (int i = 0; same && i < n; i++) same = same_value(exp[e].types, exp[e].values[i], values[i]);
        CHECK(same, "%s: greta values of %s match (%d values)", label, exp[e].key, n);
    }
}

static void hex_decode(const char *hex, char *out, size_t size) {
    size_t n = strlen(hex) / 2, i = 0;
    for (; i < n && i + 1 < size; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[i] = 0;
}

/* Checks the package's dump of the keys against the expectations. */
static void check_kvs_python(const char *label, json_t *dump, const expected_kv *exp, int n_exp) {
    json_t *kvs = json_object_get(dump, "kv");
    CHECK(json_array_size(kvs) == (size_t)n_exp, "%s: the gguf package sees %zu keys, expected %d", label,
          json_array_size(kvs), n_exp);
    for (int e = 0; e < n_exp; e++) {
        json_t *found = NULL;
        for (size_t i = 0; i < json_array_size(kvs); i++) {
            json_t *kv = json_array_get(kvs, i);
            if (strcmp(json_string_value(json_object_get(kv, "key")), exp[e].key) == 0) found = kv;
        }
        CHECK(found != NULL, "%s: the gguf package finds key %s", label, exp[e].key);
        if (!found) continue;
        char types[64] = "";
        json_t *jt = json_object_get(found, "types");
        for (size_t i = 0; i < json_array_size(jt); i++) {
            if (i) strcat(types, " ");
            strncat(types, json_string_value(json_array_get(jt, i)), sizeof types - strlen(types) - 1);
        }
        CHECK(strcmp(types, exp[e].types) == 0, "%s: package type of %s is '%s' (expected '%s')", label, exp[e].key,
              types, exp[e].types);
        json_t *jv = json_object_get(found, "values");
        bool same = json_array_size(jv) == (size_t)exp[e].n;
        for (int i = 0; same && i < exp[e].n; i++) {
            const char *text = json_string_value(json_array_get(jv, (size_t)i));
            char decoded[256];
            if (leaf_is_string(exp[e].types)) {
                hex_decode(text, decoded, sizeof decoded);
                text = decoded;
            }
            same = same_value(exp[e].types, exp[e].values[i], text);
        }
        CHECK(same, "%s: package values of %s match", label, exp[e].key);
    }
}

/* ---- expected tensors ---- */

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    uint64_t offset;  /* hand-computed layout */
    unsigned seed;    /* bytes = pattern_byte(i, seed) */
} expected_tensor;

static void check_tensors_greta(const char *label, const gguf_file *f, const expected_tensor *exp, int n_exp) {
    CHECK(gguf_tensor_count(f) == (uint64_t)n_exp, "%s: greta sees %llu tensors, expected %d", label,
          (unsigned long long)gguf_tensor_count(f), n_exp);
    for (int e = 0; e < n_exp && (uint64_t)e < gguf_tensor_count(f); e++) {
        const gguf_tensor *t = gguf_get_tensor(f, (uint64_t)e);
        CHECK(strcmp(t->name, exp[e].name) == 0, "%s: tensor %d is %s (got %s)", label, e, exp[e].name, t->name);
        CHECK(gguf_find_tensor(f, exp[e].name) == t, "%s: gguf_find_tensor(%s)", label, exp[e].name);
        bool shape = t->type == exp[e].type && t->n_dims == exp[e].n_dims;
        for (int d = 0; d < 4; d++) shape = shape && t->ne[d] == exp[e].ne[d];
        CHECK(shape, "%s: %s type %s dims %u ne [%lld %lld %lld %lld]", label, t->name, quant_type_name(t->type),
              t->n_dims, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
        CHECK(t->nbytes == exp[e].nbytes && t->offset == exp[e].offset, "%s: %s nbytes %llu offset %llu", label,
              t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset);
        CHECK((const uint8_t *)t->data == (const uint8_t *)gguf_get_tensor(f, 0)->data - gguf_get_tensor(f, 0)->offset +
                                              t->offset,
              "%s: %s data pointer at data section + offset", label, t->name);
        bool bytes_ok = t->nbytes == exp[e].nbytes;
        for (uint64_t i = 0; bytes_ok && i < t->nbytes; i++)
            bytes_ok = ((const uint8_t *)t->data)[i] == pattern_byte(i, exp[e].seed);
        CHECK(bytes_ok, "%s: %s bytes read back exactly", label, t->name);
    }
    CHECK(gguf_find_tensor(f, "no.such.tensor") == NULL, "%s: absent tensor not found", label);
}

static void check_tensors_python(const char *label, json_t *dump, const expected_tensor *exp, int n_exp) {
    json_t *ts = json_object_get(dump, "tensors");
    CHECK(json_array_size(ts) == (size_t)n_exp, "%s: package sees %zu tensors", label, json_array_size(ts));
    for (int e = 0; e < n_exp && (size_t)e < json_array_size(ts); e++) {
        json_t *t = json_array_get(ts, (size_t)e);
        const char *name = json_string_value(json_object_get(t, "name"));
        CHECK(name && strcmp(name, exp[e].name) == 0, "%s: package tensor %d is %s", label, e, exp[e].name);
        json_t *ne = json_object_get(t, "ne");
        bool shape = json_integer_value(json_object_get(t, "type")) == exp[e].type &&
                     json_array_size(ne) == exp[e].n_dims;
        for (uint32_t d = 0; shape && d < exp[e].n_dims; d++)
            shape = json_integer_value(json_array_get(ne, d)) == exp[e].ne[d];
        CHECK(shape, "%s: package type and shape of %s", label, exp[e].name);
        CHECK((uint64_t)json_integer_value(json_object_get(t, "offset")) == exp[e].offset &&
                  (uint64_t)json_integer_value(json_object_get(t, "nbytes")) == exp[e].nbytes,
              "%s: package offset and size of %s", label, exp[e].name);
        const char *hex = json_string_value(json_object_get(t, "hex"));
        bool bytes_ok = hex && strlen(hex) == 2 * exp[e].nbytes;
        for (uint64_t i = 0; bytes_ok && i < exp[e].nbytes; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            bytes_ok = v == pattern_byte(i, exp[e].seed);
        }
        CHECK(bytes_ok, "%s: package reads the bytes of %s exactly", label, exp[e].name);
    }
}

/* ---- 1. a file written by the gguf package ---- */

static const expected_kv python_kvs[] = {
    {"general.architecture", "STRING", 1, {"llama"}},
    {"general.alignment", "UINT32", 1, {"64"}},
    {"test.u8", "UINT8", 1, {"200"}},
    {"test.i8", "INT8", 1, {"-100"}},
    {"test.u16", "UINT16", 1, {"60000"}},
    {"test.i16", "INT16", 1, {"-30000"}},
    {"test.u32", "UINT32", 1, {"4000000000"}},
    {"test.i32", "INT32", 1, {"-2000000000"}},
    {"test.f32", "FLOAT32", 1, {"0.1"}},
    {"test.bool", "BOOL", 1, {"1"}},
    {"test.str", "STRING", 1, {"h\xc3\xa9llo w\xc3\xb6rld"}},
    {"test.u64", "UINT64", 1, {"18446744073709551615"}},
    {"test.i64", "INT64", 1, {"-9223372036854775808"}},
    {"test.f64", "FLOAT64", 1, {"3.141592653589793"}},
    {"test.arr_str", "ARRAY STRING", 3, {"a", "", "\xc3\xbcn\xc3\xaf"}},
    {"test.arr_i32", "ARRAY INT32", 3, {"1", "-2", "3"}},
    {"test.arr_f32", "ARRAY FLOAT32", 2, {"0.5", "-1.25"}},
    {"test.arr_bool", "ARRAY BOOL", 3, {"1", "0", "1"}},
    {"test.arr_u8", "ARRAY UINT8", 2, {"0", "255"}},
    {"test.nested", "ARRAY ARRAY INT32", 3, {"1", "2", "3"}},
};

static void test_python_written(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "python_written.gguf");
    char args[600];
    snprintf(args, sizeof args, "'%s'", path);
    if (!run_python("gguf_pywrite.py", args)) return;
    char err[256];
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "greta opens the GGUFWriter file (%s)", f ? "ok" : err);
    if (!f) return;
    CHECK(gguf_version(f) == 3, "python file: version 3");
    CHECK(gguf_alignment(f) == 64, "python file: general.alignment 64 honoured");
    CHECK(gguf_data_offset(f) % 64 == 0, "python file: data section aligned to 64 (%llu)",
          (unsigned long long)gguf_data_offset(f));
    check_kvs_greta("python file", f, python_kvs, (int)(sizeof python_kvs / sizeof python_kvs[0]));

    /* Typed getters and their refusals. */
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    CHECK(gguf_get_uint(f, "test.u64", &u) && u == UINT64_MAX, "get_uint reads uint64 max");
    CHECK(!gguf_get_int(f, "test.u64", &i), "get_int refuses a uint64 above INT64_MAX");
    CHECK(gguf_get_int(f, "test.i64", &i) && i == INT64_MIN, "get_int reads int64 min");
    CHECK(!gguf_get_uint(f, "test.i8", &u), "get_uint refuses a negative value");
    CHECK(gguf_get_int(f, "test.u32", &i) && i == 4000000000LL, "get_int widens uint32");
    CHECK(gguf_get_float(f, "test.f32", &d) && d == (double)0.1f, "get_float reads float32 exactly");
    CHECK(!gguf_get_float(f, "test.u8", &d), "get_float refuses an integer");
    CHECK(!gguf_get_int(f, "test.bool", &i), "get_int refuses a bool");
    CHECK(gguf_get_bool(f, "test.bool", &b) && b, "get_bool");
    CHECK(!gguf_get_str(f, "test.u8", &s), "get_str refuses a number");
    CHECK(!gguf_get_int(f, "no.such.key", &i) && gguf_find_key(f, "no.such.key") < 0, "absent key");
    CHECK(!gguf_get_int(f, "test.arr_i32", &i), "get_int refuses an array");
    int64_t arr = gguf_find_key(f, "test.arr_i32");
    CHECK(gguf_arr_type(f, (uint64_t)arr) == GGUF_INT32 && gguf_arr_count(f, (uint64_t)arr) == 3 &&
              gguf_arr_int(f, (uint64_t)arr, 1) == -2 && gguf_arr_float(f, (uint64_t)arr, 2) == 3.0,
          "int32 array elements");
    CHECK(gguf_arr_int(f, (uint64_t)arr, 3) == 0, "array index out of range gives 0");
    int64_t strs = gguf_find_key(f, "test.arr_str");
    CHECK(gguf_arr_type(f, (uint64_t)strs) == GGUF_STRING && gguf_str_eq(gguf_arr_str(f, (uint64_t)strs, 0), "a") &&
              gguf_arr_str(f, (uint64_t)strs, 1).len == 0 && gguf_arr_str(f, (uint64_t)strs, 3).len == 0,
          "string array elements");
    int64_t nested = gguf_find_key(f, "test.nested");
    CHECK(gguf_arr_type(f, (uint64_t)nested) == GGUF_ARRAY && gguf_arr_count(f, (uint64_t)nested) == 2,
          "nested array: element type array, 2 elements");
    int64_t bools = gguf_find_key(f, "test.arr_bool");
    CHECK(gguf_arr_int(f, (uint64_t)bools, 0) == 1 && gguf_arr_int(f, (uint64_t)bools, 1) == 0, "bool array");
    CHECK(gguf_arr_count(f, (uint64_t)gguf_find_key(f, "test.u8")) == 0, "arr_count of a scalar is 0");

    /* Tensors: layout computed by hand for alignment 64. */
    const gguf_tensor *t = gguf_find_tensor(f, "t.f32");
    bool f32_ok = t && t->type == QT_F32 && t->n_dims == 2 && t->ne[0] == 5 && t->ne[1] == 3 && t->offset == 0 &&
                  t->nbytes == 60;
    for (int k = 0; f32_ok && k < 15; k++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * k, 4);
        f32_ok = v == 0.5f * (float)k;
    }
    CHECK(f32_ok, "python file: t.f32 [5,3] at offset 0 holds 0.5*i");
    t = gguf_find_tensor(f, "t.f16");
    bool f16_ok = t && t->type == QT_F16 && t->ne[0] == 64 && t->ne[1] == 2 && t->offset == 64 && t->nbytes == 256;
    for (int k = 0; f16_ok && k < 128; k++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * k, 2);
        f16_ok = quant_f16_to_f32(h) == (float)k / 8.0f;
    }
    CHECK(f16_ok, "python file: t.f16 [64,2] at offset 64 holds i/8");
    static const expected_tensor quantized[] = {
        {"t.q8_0", QT_Q8_0, 2, {64, 2, 1, 1}, 136, 320, 11},
        {"t.q4_k", QT_Q4_K, 2, {256, 1, 1, 1}, 144, 512, 5},
    };
    for (int k = 0; k < 2; k++) {
        t = gguf_find_tensor(f, quantized[k].name);
        bool ok = t && t->type == quantized[k].type && t->ne[0] == quantized[k].ne[0] &&
                  t->ne[1] == quantized[k].ne[1] && t->nbytes == quantized[k].nbytes &&
                  t->offset == quantized[k].offset;
        for (uint64_t j = 0; ok && j < t->nbytes; j++) ok = ((const uint8_t *)t->data)[j] == pattern_byte(j, quantized[k].seed);
        CHECK(ok, "python file: %s shape, offset %llu and bytes", quantized[k].name,
              (unsigned long long)quantized[k].offset);
    }
    gguf_close(f);
}

/* ---- 2. a file written by greta ---- */

static const expected_kv greta_kvs[] = {
    {"general.architecture", "STRING", 1, {"llama"}},
    {"test.u8", "UINT8", 1, {"255"}},
    {"test.i8", "INT8", 1, {"-128"}},
    {"test.u16", "UINT16", 1, {"65535"}},
    {"test.i16", "INT16", 1, {"-32768"}},
    {"test.u32", "UINT32", 1, {"4294967295"}},
    {"test.i32", "INT32", 1, {"-2147483648"}},
    {"test.f32", "FLOAT32", 1, {"-1.5e-7"}},
    {"test.bool", "BOOL", 1, {"0"}},
    {"test.str", "STRING", 1, {"line1\nline2 \xe2\x9c\x93"}},
    {"test.u64", "UINT64", 1, {"18446744073709551615"}},
    {"test.i64", "INT64", 1, {"-9223372036854775807"}},
    {"test.f64", "FLOAT64", 1, {"2.718281828459045"}},
    {"test.arr_str", "ARRAY STRING", 4, {"<s>", "", "\xc4\xa0the", "a b"}},
    {"test.arr_i32", "ARRAY INT32", 3, {"-1", "0", "2147483647"}},
    {"test.arr_f32", "ARRAY FLOAT32", 2, {"1e-5", "10000.0"}},
    {"test.arr_u64", "ARRAY UINT64", 2, {"0", "18446744073709551615"}},
    {"test.arr_bool", "ARRAY BOOL", 2, {"0", "1"}},
    {"test.arr_i16", "ARRAY INT16", 2, {"-7", "7"}},
    {"test.arr_f64", "ARRAY FLOAT64", 1, {"0.1"}},
    {"test.nested", "ARRAY ARRAY INT32", 3, {"1", "2", "3"}}, /* copied from the package's file */
};

/* Layout: each tensor at the next multiple of 32 after the previous one. */
static const expected_tensor greta_tensors[] = {
    {"t.f32", QT_F32, 2, {5, 3, 1, 1}, 60, 0, 1},
    {"t.f16", QT_F16, 2, {64, 2, 1, 1}, 256, 64, 2},
    {"t.bf16", QT_BF16, 1, {8, 1, 1, 1}, 16, 320, 3},
    {"t.q8_0", QT_Q8_0, 2, {64, 2, 1, 1}, 136, 352, 4},
    {"t.q4_k", QT_Q4_K, 2, {256, 1, 1, 1}, 144, 512, 5},
    {"t.q6_k", QT_Q6_K, 2, {256, 2, 1, 1}, 420, 672, 6},
    {"blk.0.q4_0_with_a_long_name_of_exactly_sixty_four_bytes_abcdefgh", QT_Q4_0, 4, {32, 1, 1, 2}, 36, 1120, 7},
};
#define N_GRETA_TENSORS ((int)(sizeof greta_tensors / sizeof greta_tensors[0]))

static void set_greta_kvs(gguf_writer *w, const gguf_file *python_file) {
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u8(w, "test.u8", 255);
    gguf_writer_set_i8(w, "test.i8", -128);
    gguf_writer_set_u16(w, "test.u16", 65535);
    gguf_writer_set_i16(w, "test.i16", -32768);
    gguf_writer_set_u32(w, "test.u32", 1);          /* replaced below */
    gguf_writer_set_i32(w, "test.i32", INT32_MIN);
    gguf_writer_set_f32(w, "test.f32", -1.5e-7f);
    gguf_writer_set_bool(w, "test.bool", false);
    const char *text = "line1\nline2 \xe2\x9c\x93";
    gguf_writer_set_str_n(w, "test.str", text, strlen(text));
    gguf_writer_set_u64(w, "test.u64", UINT64_MAX);
    gguf_writer_set_i64(w, "test.i64", -INT64_MAX);
    gguf_writer_set_f64(w, "test.f64", 2.718281828459045);
    gguf_str strs[4] = {{"<s>", 3}, {"", 0}, {"\xc4\xa0the", 5}, {"a b", 3}};
    gguf_writer_set_arr_str(w, "test.arr_str", strs, 4);
    int32_t ints[3] = {-1, 0, INT32_MAX};
    gguf_writer_set_arr_i32(w, "test.arr_i32", ints, 3);
    float floats[2] = {1e-5f, 10000.0f};
    gguf_writer_set_arr_f32(w, "test.arr_f32", floats, 2);
    uint64_t u64s[2] = {0, UINT64_MAX};
    gguf_writer_set_arr(w, "test.arr_u64", GGUF_UINT64, u64s, 2);
    uint8_t bools[2] = {0, 1};
    gguf_writer_set_arr(w, "test.arr_bool", GGUF_BOOL, bools, 2);
    int16_t i16s[2] = {-7, 7};
    gguf_writer_set_arr(w, "test.arr_i16", GGUF_INT16, i16s, 2);
    double f64s[1] = {0.1};
    gguf_writer_set_arr(w, "test.arr_f64", GGUF_FLOAT64, f64s, 1);
    gguf_writer_set_u32(w, "test.u32", UINT32_MAX); /* replaces the earlier value in place */
    if (python_file) {
        int64_t kv = gguf_find_key(python_file, "test.nested");
        if (kv >= 0) gguf_writer_copy_kv(w, python_file, (uint64_t)kv);
    }
}

static uint8_t *pattern_data(const expected_tensor *t) {
    uint8_t *data = malloc(t->nbytes);
    fill_pattern(data, t->nbytes, t->seed);
    return data;
}

static void check_written_file(const char *label, const char *path) {
    char err[256];
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "%s: greta opens it (%s)", label, f ? "ok" : err);
    if (f) {
        CHECK(gguf_version(f) == 3 && gguf_alignment(f) == 32, "%s: version 3, alignment 32", label);
        CHECK(gguf_file_size(f) == gguf_data_offset(f) + 1184, "%s: file ends after the last tensor's padding", label);
        check_kvs_greta(label, f, greta_kvs, (int)(sizeof greta_kvs / sizeof greta_kvs[0]));
        check_tensors_greta(label, f, greta_tensors, N_GRETA_TENSORS);
        /* Keys in insertion order; the replaced key kept its first position. */
        CHECK(gguf_str_eq(gguf_kv_key(f, 5), "test.u32"), "%s: replaced key keeps its position", label);
        gguf_close(f);
    }
    char json_path[600], args[1400];
    snprintf(json_path, sizeof json_path, "%s.json", path);
    snprintf(args, sizeof args, "'%s' > '%s'", path, json_path);
    if (!run_python("gguf_dump.py", args)) return;
    json_error_t jerr;
    json_t *dump = json_load_file(json_path, 0, &jerr);
    CHECK(dump != NULL, "%s: the package's dump parses (%s)", label, dump ? "ok" : jerr.text);
    if (!dump) return;
    CHECK(json_integer_value(json_object_get(dump, "version")) == 3 &&
              json_integer_value(json_object_get(dump, "alignment")) == 32,
          "%s: package sees version 3, alignment 32", label);
    check_kvs_python(label, dump, greta_kvs, (int)(sizeof greta_kvs / sizeof greta_kvs[0]));
    check_tensors_python(label, dump, greta_tensors, N_GRETA_TENSORS);
    json_decref(dump);
}

static void test_greta_written(void) {
    char py_path[512], path[512], stream_path[512], err[256];
    path_in_tmp(py_path, sizeof py_path, "python_written.gguf");
    path_in_tmp(path, sizeof path, "greta_written.gguf");
    path_in_tmp(stream_path, sizeof stream_path, "greta_streamed.gguf");
    gguf_file *py = NULL;
    gguf_open(py_path, &py, err, sizeof err);
    CHECK(py != NULL, "the package's file is there to copy a nested array from");

    gguf_writer *w = gguf_writer_new();
    set_greta_kvs(w, py);
    for (int i = 0; i < N_GRETA_TENSORS; i++) {
        uint8_t *data = pattern_data(&greta_tensors[i]);
        gguf_writer_add_tensor(w, greta_tensors[i].name, greta_tensors[i].type, greta_tensors[i].n_dims,
                               greta_tensors[i].ne, data, greta_tensors[i].nbytes);
        free(data);
    }
    bool ok = gguf_writer_write(w, path, err, sizeof err);
    CHECK(ok, "in-memory writer writes (%s)", ok ? "ok" : err);
    gguf_writer_free(w);
    if (ok) check_written_file("greta file", path);

    /* The streaming writer: same tensors, data in awkward 7-byte pieces. */
    w = gguf_writer_new();
    set_greta_kvs(w, py);
    uint64_t total = 0;
    for (int i = 0; i < N_GRETA_TENSORS; i++) {
        gguf_writer_declare_tensor(w, greta_tensors[i].name, greta_tensors[i].type, greta_tensors[i].n_dims,
                                   greta_tensors[i].ne);
        total += greta_tensors[i].nbytes;
    }
    uint8_t *all = malloc(total), *p = all;
    for (int i = 0; i < N_GRETA_TENSORS; i++) {
        fill_pattern(p, greta_tensors[i].nbytes, greta_tensors[i].seed);
        p += greta_tensors[i].nbytes;
    }
    ok = gguf_writer_begin(w, stream_path, err, sizeof err);
    CHECK(ok, "streaming begin (%s)", ok ? "ok" : err);
    CHECK(!file_exists(stream_path), "nothing at the target path before end");
    for (uint64_t off = 0; ok && off < total; off += 7)
        ok = gguf_writer_append(w, all + off, total - off < 7 ? total - off : 7, err, sizeof err);
    CHECK(ok, "streaming appends (%s)", ok ? "ok" : err);
    ok = ok && gguf_writer_end(w, err, sizeof err);
    CHECK(ok, "streaming end (%s)", ok ? "ok" : err);
    gguf_writer_free(w);
    free(all);
    if (ok) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", path, stream_path);
        CHECK(system(cmd) == 0, "streamed file is byte-identical to the in-memory one");
    }
    gguf_close(py);
}

/* ---- 3. writer errors, alignment, vocabulary-only files ---- */

static void expect_write_error(const char *label, gguf_writer *w, const char *path, const char *needle) {
    char err[256] = "";
    bool ok = gguf_writer_write(w, path, err, sizeof err);
    CHECK(!ok && strstr(err, needle) != NULL, "writer refuses %s: '%s'", label, err);
    CHECK(!file_exists(path), "writer leaves no file after refusing %s", label);
    gguf_writer_free(w);
}

static void test_writer_errors(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "refused.gguf");
    uint8_t data[1024] = {0};
    int64_t ne[4] = {32, 2, 1, 1};

    gguf_writer *w = gguf_writer_new();
    gguf_writer_add_tensor(w, "x", 16 /* IQ2_XXS */, 2, ne, data, 66);
    expect_write_error("an unsupported type", w, path, "unsupported type IQ2_XXS");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "x", QT_Q8_0, 2, ne, data, 67);
    expect_write_error("a data size that does not match the shape", w, path, "need 68");

    w = gguf_writer_new();
    int64_t odd[1] = {33};
    gguf_writer_add_tensor(w, "x", QT_Q4_0, 1, odd, data, 18);
    expect_write_error("a row length off the block size", w, path, "not a multiple");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "x", QT_F32, 1, ne, data, 128);
    gguf_writer_add_tensor(w, "x", QT_F32, 1, ne, data, 128);
    expect_write_error("a duplicate tensor", w, path, "added twice");

    w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 48);
    expect_write_error("alignment 48", w, path, "not a power of two");

    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "x", QT_F32, 5, ne, data, 128);
    expect_write_error("5 dimensions", w, path, "dimensions");

    w = gguf_writer_new();
    gguf_writer_declare_tensor(w, "x", QT_F32, 1, ne);
    expect_write_error("a declared tensor in gguf_writer_write", w, path, "declared without data");

    char err[256];
    w = gguf_writer_new();
    gguf_writer_declare_tensor(w, "x", QT_F32, 1, ne);
    CHECK(gguf_writer_begin(w, path, err, sizeof err), "begin for a short stream");
    CHECK(gguf_writer_append(w, data, 100, err, sizeof err), "append 100 of 128 bytes");
    CHECK(!gguf_writer_end(w, err, sizeof err) && strstr(err, "incomplete"), "end refuses a short stream: '%s'", err);
    CHECK(!file_exists(path), "no file after a short stream");
    gguf_writer_free(w);

    w = gguf_writer_new();
    gguf_writer_declare_tensor(w, "x", QT_F32, 1, ne);
    CHECK(gguf_writer_begin(w, path, err, sizeof err), "begin for a long stream");
    CHECK(!gguf_writer_append(w, data, 129, err, sizeof err) && strstr(err, "more tensor data"),
          "append refuses more data than declared: '%s'", err);
    gguf_writer_free(w);
    CHECK(!file_exists(path), "no file after a long stream");

    w = gguf_writer_new();
    CHECK(!gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err) && strstr(err, "cannot create"),
          "unwritable path: '%s'", err);
    gguf_writer_free(w);
}

static void test_alignment_and_vocab_only(void) {
    char path[512], err[256];
    path_in_tmp(path, sizeof path, "aligned.gguf");
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 256);
    uint8_t data[256] = {0};
    int64_t ne[1] = {4};
    gguf_writer_add_tensor(w, "a", QT_F32, 1, ne, data, 16);
    gguf_writer_add_tensor(w, "b", QT_F32, 1, ne, data, 16);
    int64_t empty[1] = {0};
    gguf_writer_add_tensor(w, "empty", QT_F32, 1, empty, data, 0);
    CHECK(gguf_writer_write(w, path, err, sizeof err), "write with alignment 256");
    gguf_writer_free(w);
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "read alignment-256 file (%s)", f ? "ok" : err);
    if (f) {
        CHECK(gguf_alignment(f) == 256 && gguf_data_offset(f) % 256 == 0, "alignment 256 and data offset %llu",
              (unsigned long long)gguf_data_offset(f));
        CHECK(gguf_get_tensor(f, 1)->offset == 256, "second tensor at offset 256");
        const gguf_tensor *e = gguf_find_tensor(f, "empty");
        CHECK(e && e->nbytes == 0 && gguf_tensor_nelements(e) == 0, "zero-element tensor loads");
        gguf_close(f);
    }

    path_in_tmp(path, sizeof path, "vocab_only.gguf");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_str toks[3] = {{"a", 1}, {"b", 1}, {"ab", 2}};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    CHECK(gguf_writer_write(w, path, err, sizeof err), "write a vocabulary-only file");
    gguf_writer_free(w);
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL && gguf_tensor_count(f) == 0, "vocabulary-only file loads with 0 tensors (%s)", f ? "ok" : err);
    if (f) {
        int64_t kv = gguf_find_key(f, "tokenizer.ggml.tokens");
        CHECK(kv >= 0 && gguf_arr_count(f, (uint64_t)kv) == 3 && gguf_str_eq(gguf_arr_str(f, (uint64_t)kv, 2), "ab"),
              "vocabulary-only file: tokens read");
        CHECK(gguf_get_tensor(f, 0) == NULL && gguf_find_tensor(f, "a") == NULL, "no tensors to get");
        gguf_close(f);
    }
}

int main(void) {
    test_python_written();
    test_greta_written();
    test_writer_errors();
    test_alignment_and_vocab_only();
    return check_finish("test_gguf");
}
