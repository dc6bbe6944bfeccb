/* test_gguf_corrupt.c: the reader refuses corrupt, truncated and hostile
 * GGUF files with a one-line message naming the problem, and never crashes
 * (this suite also runs under ASan+UBSan).
 *
 * A small valid file is built byte by byte (every field position recorded),
 * then: truncated at every byte of its header and at each field; each count,
 * length, type, dimension and offset patched to hostile values (0, limits,
 * 2^32, 2^63, UINT64_MAX); structural variants built directly (nesting,
 * duplicates, alignment, names). Finally every input in
 * tests/fixtures/gguf_crashes/ (inputs the fuzzer found, see
 * docs/fuzzing.md) is opened and walked. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/check.h"
#include "format/gguf.h"
#include "format/quant.h"

/* ---- a byte builder that remembers where each field starts ---- */

#define MAX_MARKS 64

typedef struct {
    uint8_t *data;
    size_t len, cap;
    const char *mark_name[MAX_MARKS];
    size_t mark_at[MAX_MARKS];
    int n_marks;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}
static void mark(buf *b, const char *name) {
    if (b->n_marks < MAX_MARKS) {
        b->mark_name[b->n_marks] = name;
        b->mark_at[b->n_marks++] = b->len;
    }
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static size_t at(const buf *b, const char *name) {
    for (int i = 0; i < b->n_marks; i++)
        if (strcmp(b->mark_name[i], name) == 0) return b->mark_at[i];
    fprintf(stderr, "no mark %s\n", name);
    exit(2);
}
static void patch32(buf *b, const char *name, uint32_t v) { memcpy(b->data + at(b, name), &v, 4); }
static void patch64(buf *b, const char *name, uint64_t v) { memcpy(b->data + at(b, name), &v, 8); }

/* What to build; the defaults give a valid file. */
typedef struct {
    uint32_t version;
    int nest_depth;             /* levels of the "nest" array (1 = a plain array of int32) */
    uint8_t bool_value;
    bool dup_key;
    const char *extra_tensor;   /* a third F32 tensor [extra_ne0] at extra_offset, if set */
    uint64_t extra_ne0, extra_offset;
    uint32_t alignment_type;    /* GGUF_UINT32, or something else */
    uint64_t alignment;
    const char *key2;           /* name of the string-array key */
    size_t key2_len;            /* its length (may hold a NUL) */
    const char *name0;          /* first tensor's name */
    size_t name0_len;
} spec;

static spec default_spec(void) {
    spec s = {.version = 3, .nest_depth = 2, .bool_value = 1, .alignment_type = GGUF_UINT32, .alignment = 32,
              .key2 = "tokenizer.ggml.tokens", .name0 = "blk.0.attn_q.weight"};
    s.key2_len = strlen(s.key2);
    s.name0_len = strlen(s.name0);
    return s;
}

/* Two tensors: blk.0.attn_q.weight Q8_0 [32, 2] (68 bytes) at offset 0 and
 * norm F32 [8] (32 bytes) at offset 96; data section of 128 bytes. */
static void build(const spec *s, buf *b) {
    memset(b, 0, sizeof *b);
    mark(b, "magic");
    put(b, "GGUF", 4);
    mark(b, "version");
    u32(b, s->version);
    mark(b, "n_tensors");
    u64(b, s->extra_tensor ? 3 : 2);
    mark(b, "n_kv");
    u64(b, s->dup_key ? 6 : 5);
    /* kv: general.architecture = "llama" */
    mark(b, "kv0.key");
    str(b, "general.architecture");
    mark(b, "kv0.type");
    u32(b, GGUF_STRING);
    mark(b, "kv0.len");
    str(b, "llama");
    /* kv: general.alignment */
    mark(b, "kv1.key");
    str(b, "general.alignment");
    mark(b, "kv1.type");
    u32(b, s->alignment_type);
    mark(b, "kv1.value");
    if (s->alignment_type == GGUF_UINT64) u64(b, s->alignment);
    else u32(b, (uint32_t)s->alignment);
    /* kv: tokens = ["a", "bc"] */
    mark(b, "kv2.key");
    u64(b, s->key2_len);
    put(b, s->key2, s->key2_len);
    u32(b, GGUF_ARRAY);
    mark(b, "kv2.elem_type");
    u32(b, GGUF_STRING);
    mark(b, "kv2.count");
    u64(b, 2);
    mark(b, "kv2.str0");
    str(b, "a");
    str(b, "bc");
    /* kv: nest = [[...[7, 8]...]] nest_depth levels deep */
    str(b, "test.nest");
    u32(b, GGUF_ARRAY);
    for (int d = 1; d < s->nest_depth; d++) {
        if (d == 1) mark(b, "kv3.outer_type");
        u32(b, GGUF_ARRAY);
        if (d == 1) mark(b, "kv3.outer_count");
        u64(b, 1);
    }
    mark(b, "kv3.elem_type");
    u32(b, GGUF_INT32);
    mark(b, "kv3.count");
    u64(b, 2);
    u32(b, 7);
    u32(b, 8);
    /* kv: a bool */
    str(b, "test.flag");
    u32(b, GGUF_BOOL);
    mark(b, "kv4.value");
    put(b, &s->bool_value, 1);
    if (s->dup_key) {
        str(b, "test.flag");
        u32(b, GGUF_BOOL);
        put(b, &s->bool_value, 1);
    }
    /* tensor infos */
    mark(b, "t0.name");
    u64(b, s->name0_len);
    put(b, s->name0, s->name0_len);
    mark(b, "t0.n_dims");
    u32(b, 2);
    mark(b, "t0.ne0");
    u64(b, 32);
    mark(b, "t0.ne1");
    u64(b, 2);
    mark(b, "t0.type");
    u32(b, QT_Q8_0);
    mark(b, "t0.offset");
    u64(b, 0);
    mark(b, "t1.name");
    str(b, "norm");
    mark(b, "t1.n_dims");
    u32(b, 1);
    mark(b, "t1.ne0");
    u64(b, 8);
    mark(b, "t1.type");
    u32(b, QT_F32);
    mark(b, "t1.offset");
    u64(b, 96);
    if (s->extra_tensor) {
        str(b, s->extra_tensor);
        u32(b, 1);
        u64(b, s->extra_ne0);
        u32(b, QT_F32);
        u64(b, s->extra_offset);
    }
    mark(b, "header_end");
    while (b->len % 32) put(b, "", 1);
    mark(b, "data");
    for (int i = 0; i < 128; i++) {
        uint8_t v = (uint8_t)(i & 0x3f); /* keeps Q8_0 scales and F32 values finite */
        put(b, &v, 1);
    }
}

/* ---- running the reader ---- */

static char path_buf[600];

static const char *tmp_file(void) {
    snprintf(path_buf, sizeof path_buf, "%s/case.gguf", check_tmp_dir());
    return path_buf;
}

static void write_bytes(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Touches everything an opened file exposes (as the fuzzer does). */
static void walk(const gguf_file *f) {
    volatile uint64_t sink = 0;
    for (uint64_t kv = 0; kv < gguf_kv_count(f); kv++) {
        gguf_str key = gguf_kv_key(f, kv);
        sink += key.len ? (uint8_t)key.ptr[key.len - 1] : 0;
        int64_t i;
        uint64_t u, size;
        double d;
        bool b;
        gguf_str s;
        sink += gguf_kv_get_int(f, kv, &i) + gguf_kv_get_uint(f, kv, &u) + gguf_kv_get_float(f, kv, &d) +
                gguf_kv_get_bool(f, kv, &b) + gguf_kv_get_str(f, kv, &s);
        const uint8_t *raw = gguf_kv_value_bytes(f, kv, &size);
        if (size) sink += raw[size - 1];
        uint64_t n = gguf_arr_count(f, kv);
        for (uint64_t e = 0; e < n && e < 100000; e++) {
            gguf_str es = gguf_arr_str(f, kv, e);
            sink += es.len ? (uint8_t)es.ptr[es.len - 1] : 0;
            sink += (uint64_t)gguf_arr_int(f, kv, e) + (uint64_t)gguf_arr_float(f, kv, e);
        }
    }
    for (uint64_t t = 0; t < gguf_tensor_count(f); t++) {
        const gguf_tensor *tensor = gguf_get_tensor(f, t);
        sink += (uint64_t)gguf_tensor_nelements(tensor);
        if (tensor->nbytes) sink += ((const uint8_t *)tensor->data)[tensor->nbytes - 1] + ((const uint8_t *)tensor->data)[0];
        sink += gguf_find_tensor(f, tensor->name) == tensor;
    }
    (void)sink;
}

/* The promises of an accepted file: tensors aligned, inside the data
 * section, pairwise disjoint. */
static bool layout_ok(const gguf_file *f) {
    uint64_t data_size = gguf_file_size(f) - gguf_data_offset(f);
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *a = gguf_get_tensor(f, i);
        if (a->offset % gguf_alignment(f) || a->offset > data_size || a->nbytes > data_size - a->offset) return false;
        for (uint64_t j = i + 1; j < gguf_tensor_count(f); j++) {
            const gguf_tensor *c = gguf_get_tensor(f, j);
            if (a->nbytes && c->nbytes && a->offset < c->offset + c->nbytes && c->offset < a->offset + a->nbytes)
                return false;
        }
    }
    return true;
}

static bool one_line(const char *msg) { return msg[0] != 0 && strchr(msg, '\n') == NULL && strchr(msg, '\r') == NULL; }

/* Expects opening the bytes to fail with a message containing `needle`. */
static void expect_reject(const char *what, const uint8_t *data, size_t n, const char *needle) {
    const char *path = tmp_file();
    write_bytes(path, data, n);
    char err[256] = "";
    gguf_file *f = NULL;
    greta_status st = gguf_open(path, &f, err, sizeof err);
    if (f) {
        walk(f);
        gguf_close(f);
    }
    /* The cases whose expected message names something greta does not
     * support (version 1, big-endian, a tensor type) expect that status;
     * every other rejection is a bad file. */
    bool unsupported = strstr(needle, "not supported") || strstr(needle, "big-endian") || strstr(needle, "unsupported");
    CHECK(!f && one_line(err) && strstr(err, needle) != NULL &&
              st == (unsupported ? GRETA_ERR_UNSUPPORTED : GRETA_ERR_FORMAT),
          "%s: rejected as %s with '%s' (want '%s')", what, greta_status_string(st), err, needle);
}

static void expect_reject_buf(const char *what, buf *b, const char *needle) {
    expect_reject(what, b->data, b->len, needle);
    free(b->data);
}

static gguf_file *open_bytes(const uint8_t *data, size_t n, char *err, size_t err_size) {
    const char *path = tmp_file();
    write_bytes(path, data, n);
    gguf_file *f = NULL;
    gguf_open(path, &f, err, err_size);
    return f;
}

/* ---- the cases ---- */

static void test_valid_base(void) {
    spec s = default_spec();
    buf b;
    build(&s, &b);
    char err[256];
    gguf_file *f = open_bytes(b.data, b.len, err, sizeof err);
    CHECK(f != NULL, "the base file is valid (%s)", f ? "ok" : err);
    if (f) {
        CHECK(gguf_kv_count(f) == 5 && gguf_tensor_count(f) == 2, "base file: 5 keys, 2 tensors");
        CHECK(gguf_data_offset(f) == at(&b, "data"), "base file: data at offset %zu", at(&b, "data"));
        const gguf_tensor *t = gguf_find_tensor(f, "norm");
        CHECK(t && t->offset == 96 && t->nbytes == 32 && (const uint8_t *)t->data - b.data != 0,
              "base file: tensor norm at 96");
        walk(f);
        gguf_close(f);
    }
    /* Nesting exactly at the limit is fine. */
    s.nest_depth = GGUF_MAX_ARRAY_DEPTH;
    free(b.data);
    build(&s, &b);
    f = open_bytes(b.data, b.len, err, sizeof err);
    CHECK(f != NULL, "arrays nested %d deep load (%s)", GGUF_MAX_ARRAY_DEPTH, f ? "ok" : err);
    gguf_close(f);
    free(b.data);
    /* Version 2 reads like version 3. */
    s = default_spec();
    s.version = 2;
    build(&s, &b);
    f = open_bytes(b.data, b.len, err, sizeof err);
    CHECK(f != NULL && gguf_version(f) == 2, "version 2 loads (%s)", f ? "ok" : err);
    gguf_close(f);
    free(b.data);
    /* A zero-element tensor is valid (ggml allows ne = 0). */
    s = default_spec();
    build(&s, &b);
    patch64(&b, "t0.ne1", 0);
    f = open_bytes(b.data, b.len, err, sizeof err);
    CHECK(f != NULL && gguf_find_tensor(f, s.name0)->nbytes == 0, "a tensor with ne[1] = 0 loads (%s)", f ? "ok" : err);
    gguf_close(f);
    free(b.data);
}

/* Truncation at every byte of the header and into the data section. */
static void test_truncation_everywhere(void) {
    spec s = default_spec();
    buf b;
    build(&s, &b);
    int rejected = 0, total = 0, named = 0;
    char first_bad[300] = "";
    for (size_t n = 0; n < b.len; n++) {
        const char *path = tmp_file();
        write_bytes(path, b.data, n);
        char err[256] = "";
        gguf_file *f = NULL;
        gguf_open(path, &f, err, sizeof err);
        total++;
        if (!f && one_line(err)) rejected++;
        else if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "cut at %zu: %s", n, f ? "opened" : err);
        bool names = strstr(err, "truncated") || strstr(err, "cannot fit") || strstr(err, "past the end") ||
                     strstr(err, "empty file") || strstr(err, "too small");
        if (names) named++;
        if (f) gguf_close(f);
    }
    CHECK(rejected == total, "every one of %d truncations rejected with one line (%s)", total,
          first_bad[0] ? first_bad : "all");
    CHECK(named == total, "every truncation message says truncated / cannot fit / past the end (%d of %d)", named,
          total);

    /* Cut one byte into each field: the message names that field. */
    static const struct {
        const char *mark;
        const char *needle;
        int kv;      /* index of the entry being cut, -1 if none */
        int tensor;  /* index of the tensor info being cut, -1 if none */
    } fields[] = {
        {"version", "truncated: version", -1, -1},
        {"n_tensors", "truncated: tensor count", -1, -1},
        {"n_kv", "truncated: metadata entry count", -1, -1},
        {"kv0.key", "1 metadata entries cannot fit", 0, -1},
        {"kv0.type", "value type of metadata key 'general.architecture'", 0, -1},
        {"kv0.len", "string value of metadata key 'general.architecture'", 0, -1},
        {"kv1.value", "value of metadata key 'general.alignment'", 1, -1},
        {"kv2.elem_type", "array element type of metadata key 'tokenizer.ggml.tokens'", 2, -1},
        {"kv2.count", "array length of metadata key 'tokenizer.ggml.tokens'", 2, -1},
        {"kv2.str0", "'tokenizer.ggml.tokens': 2 array strings cannot fit", 2, -1},
        {"kv3.count", "'test.nest': 1 nested arrays cannot fit", 3, -1},
        {"t0.name", "1 tensor infos cannot fit", 5, 0},
        {"t0.n_dims", "1 tensor infos cannot fit", 5, 0},
        {"t0.ne1", "dimension of tensor 'blk.0.attn_q.weight'", 5, 0},
        {"t0.type", "type of tensor 'blk.0.attn_q.weight'", 5, 0},
        {"t1.offset", "data offset of tensor 'norm'", 5, 1},
        {"t1.n_dims", "dimension count of tensor 'norm'", 5, 1},
        {"t1.type", "type of tensor 'norm'", 5, 1},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char what[96];
        size_t cut = at(&b, fields[i].mark) + 1;
        snprintf(what, sizeof what, "cut inside %s (at %zu)", fields[i].mark, cut);
        /* Counts are first bounded by the bytes the whole file holds, so a
         * cut file declares only the entries up to the one being cut. */
        buf c = {0};
        put(&c, b.data, cut);
        if (fields[i].kv >= 0) {
            uint64_t nkv = (uint64_t)(fields[i].kv == 5 ? 5 : fields[i].kv + 1);
            uint64_t ntensor = (uint64_t)(fields[i].tensor + 1);
            memcpy(c.data + at(&b, "n_kv"), &nkv, 8);
            memcpy(c.data + at(&b, "n_tensors"), &ntensor, 8);
        }
        expect_reject(what, c.data, c.len, fields[i].needle);
        free(c.data);
    }
    /* Data section cut short. */
    expect_reject("data section cut by one byte", b.data, b.len - 1, "'norm' data (offset 96, 32 bytes) runs past the end");
    expect_reject("data section missing", b.data, at(&b, "data"), "runs past the end");
    expect_reject("header padding cut", b.data, at(&b, "header_end") + 1, "starts past the end of the file");
    free(b.data);
}

typedef struct {
    const char *what;
    const char *mark;
    int width;      /* 4 or 8 */
    uint64_t value;
    const char *needle;
} patch_case;

static void test_patched_fields(void) {
    static const patch_case cases[] = {
        {"version 1", "version", 4, 1, "GGUF version 1 is not supported"},
        {"version 4", "version", 4, 4, "unsupported GGUF version 4"},
        {"version 0", "version", 4, 0, "unsupported GGUF version 0"},
        {"version UINT32_MAX", "version", 4, UINT32_MAX, "unsupported GGUF version 4294967295"},
        {"big-endian version 3", "version", 4, 0x03000000u, "big-endian"},
        {"tensor count UINT64_MAX", "n_tensors", 8, UINT64_MAX, "18446744073709551615 tensor infos cannot fit"},
        {"tensor count 2^63", "n_tensors", 8, 1ull << 63, "tensor infos cannot fit"},
        {"tensor count 2^32", "n_tensors", 8, 1ull << 32, "tensor infos cannot fit"},
        {"tensor count 2^60", "n_tensors", 8, 1ull << 60, "tensor infos cannot fit"},
        {"tensor count 3 (one more)", "n_tensors", 8, 3, "tensor info 2"},
        {"kv count UINT64_MAX", "n_kv", 8, UINT64_MAX, "metadata entries cannot fit"},
        {"kv count 2^63", "n_kv", 8, 1ull << 63, "metadata entries cannot fit"},
        {"kv count 2^32", "n_kv", 8, 1ull << 32, "metadata entries cannot fit"},
        {"kv count 2^60", "n_kv", 8, 1ull << 60, "metadata entries cannot fit"},
        {"kv count 6 (one more)", "n_kv", 8, 6, "past the end"},
        {"key length UINT64_MAX", "kv0.key", 8, UINT64_MAX, "has length 18446744073709551615, past the end"},
        {"key length 2^63", "kv0.key", 8, 1ull << 63, "past the end"},
        {"key length 2^32", "kv0.key", 8, 1ull << 32, "past the end"},
        {"key length 0", "kv0.key", 8, 0, "empty key"},
        {"value type 13", "kv0.type", 4, 13, "invalid value type 13"},
        {"value type UINT32_MAX", "kv0.type", 4, UINT32_MAX, "invalid value type 4294967295"},
        {"string length UINT64_MAX", "kv0.len", 8, UINT64_MAX, "string value of metadata key 'general.architecture'"},
        {"string length 2^63", "kv0.len", 8, 1ull << 63, "past the end"},
        {"string length 2^32", "kv0.len", 8, 1ull << 32, "past the end"},
        {"alignment 0", "kv1.value", 4, 0, "general.alignment 0 is not a power of two"},
        {"alignment 3", "kv1.value", 4, 3, "general.alignment 3 is not a power of two"},
        {"alignment 48", "kv1.value", 4, 48, "not a power of two"},
        {"alignment UINT32_MAX", "kv1.value", 4, UINT32_MAX, "not a power of two"},
        {"alignment 2^31", "kv1.value", 4, 1u << 31, "starts past the end of the file"},
        {"alignment 64 (tensor offset 96 misaligned)", "kv1.value", 4, 64, "'norm' data offset 96 is not a multiple of the alignment 64"},
        {"array element type 13", "kv2.elem_type", 4, 13, "invalid array element type 13"},
        {"string array count UINT64_MAX", "kv2.count", 8, UINT64_MAX, "array strings cannot fit"},
        {"string array count 2^63", "kv2.count", 8, 1ull << 63, "array strings cannot fit"},
        {"string array count 2^32", "kv2.count", 8, 1ull << 32, "array strings cannot fit"},
        {"array string length UINT64_MAX", "kv2.str0", 8, UINT64_MAX, "past the end"},
        {"int32 array count 2^62 (bytes overflow 64 bits)", "kv3.count", 8, 1ull << 62, "array elements cannot fit"},
        {"int32 array count UINT64_MAX", "kv3.count", 8, UINT64_MAX, "array elements cannot fit"},
        {"nested array count 2^63", "kv3.outer_count", 8, 1ull << 63, "nested arrays cannot fit"},
        {"nested element type 99", "kv3.outer_type", 4, 99, "invalid array element type 99"},
        {"bool value 2", "kv4.value", 1, 2, "bool value 2 is neither 0 nor 1"},
        {"tensor name length 0", "t0.name", 8, 0, "tensor info 0 has an empty name"},
        {"tensor name length UINT64_MAX", "t0.name", 8, UINT64_MAX, "name of tensor info 0"},
        {"tensor name length 2^32", "t0.name", 8, 1ull << 32, "past the end"},
        {"n_dims 0", "t0.n_dims", 4, 0, "has 0 dimensions, expected 1 to 4"},
        {"n_dims 5", "t0.n_dims", 4, 5, "has 5 dimensions"},
        {"n_dims UINT32_MAX", "t0.n_dims", 4, UINT32_MAX, "4294967295 dimensions"},
        {"dimension 2^63", "t0.ne1", 8, 1ull << 63, "dimension 1 is 9223372036854775808, larger than 2^63-1"},
        {"dimension UINT64_MAX", "t0.ne0", 8, UINT64_MAX, "larger than 2^63-1"},
        {"dimension 2^40 (past the file)", "t0.ne1", 8, 1ull << 40, "runs past the end"},
        {"row length 33 (Q8_0 blocks of 32)", "t0.ne0", 8, 33, "row length 33 is not a multiple of the Q8_0 block size 32"},
        {"Q8_0 [32, 2^60] (element count overflows)", "t0.ne1", 8, 1ull << 60, "element count overflows"},
        {"tensor type 16 (IQ2_XXS)", "t0.type", 4, 16, "tensor 'blk.0.attn_q.weight' has unsupported type IQ2_XXS"},
        {"tensor type 99", "t0.type", 4, 99, "tensor 'blk.0.attn_q.weight' has unknown type id 99"},
        {"tensor type UINT32_MAX", "t0.type", 4, UINT32_MAX, "unknown type id 4294967295"},
        {"tensor offset 4 (misaligned)", "t0.offset", 8, 4, "data offset 4 is not a multiple of the alignment 32"},
        {"tensor offset 128 (at the end)", "t1.offset", 8, 128, "'norm' data (offset 128, 32 bytes) runs past the end"},
        {"tensor offset UINT64_MAX-31", "t1.offset", 8, UINT64_MAX - 31, "runs past the end"},
        {"tensor offset 2^63", "t0.offset", 8, 1ull << 63, "runs past the end"},
        {"overlapping tensors", "t1.offset", 8, 32, "tensors 'blk.0.attn_q.weight' and 'norm' overlap"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spec s = default_spec();
        buf b;
        build(&s, &b);
        if (cases[i].width == 8) patch64(&b, cases[i].mark, cases[i].value);
        else if (cases[i].width == 4) patch32(&b, cases[i].mark, (uint32_t)cases[i].value);
        else b.data[at(&b, cases[i].mark)] = (uint8_t)cases[i].value;
        expect_reject_buf(cases[i].what, &b, cases[i].needle);
    }
    /* Product of dimensions past INT64_MAX: [2^32, 2^32] as F32. */
    spec s = default_spec();
    buf b;
    build(&s, &b);
    patch32(&b, "t0.type", QT_F32);
    patch64(&b, "t0.ne0", 1ull << 32);
    patch64(&b, "t0.ne1", 1ull << 32);
    expect_reject_buf("dimensions 2^32 x 2^32 (product overflows int64)", &b, "element count overflows");
    /* Elements fit in int64 but bytes do not: F32 [2^31, 2^31] = 2^62 values, 2^64 bytes. */
    build(&s, &b);
    patch32(&b, "t0.type", QT_F32);
    patch64(&b, "t0.ne0", 1ull << 31);
    patch64(&b, "t0.ne1", 1ull << 31);
    expect_reject_buf("F32 [2^31, 2^31] (byte size overflows 64 bits)", &b, "byte size overflows");
}

static void test_structural_variants(void) {
    buf b;
    spec s = default_spec();
    s.nest_depth = GGUF_MAX_ARRAY_DEPTH + 1;
    build(&s, &b);
    expect_reject_buf("arrays nested one level too deep", &b, "arrays nested deeper than 8 levels");
    s.nest_depth = 5000;
    build(&s, &b);
    expect_reject_buf("arrays nested 5000 deep", &b, "nested deeper");

    s = default_spec();
    s.dup_key = true;
    build(&s, &b);
    expect_reject_buf("duplicate key", &b, "metadata key 'test.flag' appears more than once");
    s = default_spec();
    s.extra_tensor = "norm";
    s.extra_ne0 = 8;
    s.extra_offset = 64;
    build(&s, &b);
    expect_reject_buf("duplicate tensor name", &b, "tensor name 'norm' appears more than once");
    /* An empty tensor sorted between two overlapping ones must not hide the
     * overlap (the fuzzer found this; see tests/fixtures/gguf_crashes/). */
    s = default_spec();
    s.extra_tensor = "empty";
    s.extra_ne0 = 0;
    s.extra_offset = 32;
    build(&s, &b);
    patch64(&b, "t1.offset", 64);
    expect_reject_buf("overlap with an empty tensor in between", &b,
                      "tensors 'blk.0.attn_q.weight' and 'norm' overlap");
    s.extra_offset = 96;
    build(&s, &b);
    {
        char err[256];
        gguf_file *f = open_bytes(b.data, b.len, err, sizeof err);
        CHECK(f != NULL, "an empty tensor at the same offset as another is fine (%s)", f ? "ok" : err);
        gguf_close(f);
        free(b.data);
    }

    s = default_spec();
    s.alignment_type = GGUF_UINT64;
    s.alignment = 32;
    build(&s, &b);
    expect_reject_buf("general.alignment as uint64", &b, "general.alignment has type uint64, expected uint32");
    s.alignment_type = GGUF_INT32;
    build(&s, &b);
    expect_reject_buf("general.alignment as int32", &b, "expected uint32");

    s = default_spec();
    s.key2 = "bad\0key";
    s.key2_len = 7;
    build(&s, &b);
    expect_reject_buf("key with a NUL byte", &b, "contains a NUL byte");
    s = default_spec();
    s.key2 = "line\nbreak";
    s.key2_len = 10;
    s.dup_key = false;
    build(&s, &b);
    {
        char err[256];
        gguf_file *f = open_bytes(b.data, b.len, err, sizeof err);
        CHECK(f != NULL, "a key with a newline is legal data (%s)", f ? "ok" : err);
        gguf_close(f);
        /* ...but a message naming it stays on one line. */
        patch32(&b, "kv2.elem_type", 77);
        expect_reject("message naming a key with a newline", b.data, b.len, "metadata key 'line\\x0abreak'");
        free(b.data);
    }
    char *long_key = malloc(GGUF_MAX_KEY_LEN + 2);
    memset(long_key, 'k', GGUF_MAX_KEY_LEN + 1);
    long_key[GGUF_MAX_KEY_LEN + 1] = 0;
    s = default_spec();
    s.key2 = long_key;
    s.key2_len = GGUF_MAX_KEY_LEN + 1;
    build(&s, &b);
    expect_reject_buf("key of 65536 bytes", &b, "key length 65536 exceeds the limit of 65535 bytes");
    free(long_key);

    static const char name65[] = "blk.0.attn_q.weight.with_a_name_of_sixty_five_bytes_xxxxxxxxxxxxx";
    s = default_spec();
    s.name0 = name65;
    s.name0_len = strlen(name65);
    CHECK(s.name0_len == 65, "name65 is 65 bytes");
    build(&s, &b);
    expect_reject_buf("tensor name of 65 bytes", &b, "is 65 bytes long, the limit is 64");
    s.name0 = "bad\0name";
    s.name0_len = 8;
    build(&s, &b);
    expect_reject_buf("tensor name with a NUL byte", &b, "contains a NUL byte");

    /* Magic, tiny files. */
    expect_reject("empty file", (const uint8_t *)"", 0, "empty file");
    expect_reject("3-byte file", (const uint8_t *)"GGU", 3, "file too small to be GGUF (3 bytes)");
    expect_reject("bad magic", (const uint8_t *)"GGML\3\0\0\0", 8, "not a GGUF file (magic 'GGML'");
    expect_reject("binary magic", (const uint8_t *)"\x7f" "ELF\2\1\1\0", 8, "magic '\\x7fELF'");
}

static void test_paths(void) {
    char err[256] = "";
    gguf_file *f = NULL;
    greta_status st = gguf_open("/nonexistent/greta.gguf", &f, err, sizeof err);
    CHECK(st == GRETA_ERR_IO && !f && strcmp(err, "cannot open: No such file or directory") == 0,
          "nonexistent path: i/o error '%s'", err);
    st = gguf_open(check_tmp_dir(), &f, err, sizeof err);
    CHECK(st == GRETA_ERR_IO && !f && strstr(err, "is a directory"), "directory: i/o error '%s'", err);
    st = gguf_open("/dev/null", &f, err, sizeof err);
    CHECK(st == GRETA_ERR_IO && !f && strstr(err, "not a regular file"), "character device: i/o error '%s'", err);
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/fifo.gguf", check_tmp_dir());
    if (mkfifo(fifo, 0600) == 0) {
        st = gguf_open(fifo, &f, err, sizeof err); /* must not block waiting for a writer */
        CHECK(st == GRETA_ERR_IO && !f && strstr(err, "not a regular file"), "FIFO: i/o error '%s'", err);
    }
    gguf_close(NULL); /* harmless */
    CHECK(gguf_open("/nonexistent", &f, NULL, 0) == GRETA_ERR_IO && f == NULL, "a NULL error buffer is allowed");
}

/* Inputs the fuzzer found (tests/fixtures/gguf_crashes/): each must be
 * handled (refused with one line, or opened and walked) without a crash. */
static void test_crash_regressions(void) {
    char dir_path[600];
    snprintf(dir_path, sizeof dir_path, "%s/tests/fixtures/gguf_crashes", check_repo_dir());
    DIR *dir = opendir(dir_path);
    CHECK(dir != NULL, "crash regression directory %s exists", dir_path);
    if (!dir) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        char err[256] = "";
        gguf_file *f = NULL;
        gguf_open(path, &f, err, sizeof err);
        bool ok = f ? layout_ok(f) : one_line(err);
        if (f) {
            walk(f);
            gguf_close(f);
        }
        CHECK(ok, "regression input %s handled (%s)", e->d_name, f ? "opened, layout checked" : err);
        n++;
    }
    closedir(dir);
    printf("%d crash regression inputs\n", n);
}

int main(void) {
    test_valid_base();
    test_truncation_everywhere();
    test_patched_fields();
    test_structural_variants();
    test_paths();
    test_crash_regressions();
    return check_finish("test_gguf_corrupt");
}
