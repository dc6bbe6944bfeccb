/* gguf_write.c: the GGUF writer (version 3, little-endian).
 *
 * Key/values are kept serialized (type + value bytes, exactly as they go in
 * the file), so copying an entry from an open file is a byte copy. Tensors
 * are laid out in the order added, each at a multiple of the alignment (32,
 * or general.alignment when set), padded with zeros, the last one too.
 * The output goes to a temporary file beside the target that is renamed over
 * it only when complete, so a failed write never leaves a half file at PATH.
 * Setters cannot fail visibly (void); the first problem (bad tensor, out of
 * memory) is remembered and reported by begin/write. */
#include "format/gguf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "format/quant.h"

typedef struct {
    char *key;
    uint8_t *value; /* type (u32) followed by the value bytes */
    size_t value_len;
} writer_kv;

typedef struct {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* relative to the data section */
    uint8_t *data;   /* NULL for a declared (streamed) tensor */
} writer_tensor;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    char error[256]; /* first error of a setter; "" if none */
    /* streaming state */
    FILE *out;
    char *path;
    char *tmp_path;
    uint64_t alignment;
    size_t current;   /* tensor receiving data */
    uint64_t written; /* bytes of it received so far */
};

/* ---- a growable byte buffer ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool failed;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->failed) return;
    if (n > SIZE_MAX - b->len) {
        b->failed = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s, uint64_t len) {
    put_u64(b, len);
    put(b, s, (size_t)len);
}

/* ---- errors ---- */

static void remember(gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void remember(gguf_writer *w, const char *fmt, ...) {
    if (w->error[0]) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(w->error, sizeof w->error, fmt, args);
    va_end(args);
}

static bool set_err(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* format_error that returns false, for "return set_err(...)". */
static bool set_err(char *err, size_t err_size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    format_error_v(err, err_size, fmt, args);
    va_end(args);
    return false;
}

/* ---- life cycle ---- */

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

static void discard_output(gguf_writer *w) {
    if (w->out) fclose(w->out);
    w->out = NULL;
    if (w->tmp_path) unlink(w->tmp_path);
    free(w->tmp_path);
    free(w->path);
    w->tmp_path = w->path = NULL;
}

void gguf_writer_free(gguf_writer *writer) {
    if (!writer) return;
    discard_output(writer);
    for (size_t i = 0; i < writer->n_kv; i++) {
        free(writer->kvs[i].key);
        free(writer->kvs[i].value);
    }
    for (size_t i = 0; i < writer->n_tensors; i++) {
        free(writer->tensors[i].name);
        free(writer->tensors[i].data);
    }
    free(writer->kvs);
    free(writer->tensors);
    free(writer);
}

/* ---- key/values ---- */

/* Stores key -> serialized value (takes ownership of value->data). */
static void store_kv(gguf_writer *w, const char *key, bytes *value) {
    if (value->failed) {
        free(value->data);
        remember(w, "out of memory for metadata key '%s'", key);
        return;
    }
    size_t key_len = strlen(key);
    if (key_len == 0 || key_len > GGUF_MAX_KEY_LEN) {
        free(value->data);
        remember(w, "metadata key of length %zu (must be 1 to %d bytes)", key_len, GGUF_MAX_KEY_LEN);
        return;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].value);
            w->kvs[i].value = value->data;
            w->kvs[i].value_len = value->len;
            return;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        writer_kv *grown = realloc(w->kvs, cap * sizeof *grown);
        if (!grown) {
            free(value->data);
            remember(w, "out of memory for metadata key '%s'", key);
            return;
        }
        w->kvs = grown;
        w->cap_kv = cap;
    }
    char *key_copy = strdup(key);
    if (!key_copy) {
        free(value->data);
        remember(w, "out of memory for metadata key '%s'", key);
        return;
    }
    w->kvs[w->n_kv++] = (writer_kv){key_copy, value->data, value->len};
}

static void set_scalar(gguf_writer *w, const char *key, gguf_type type, const void *value) {
    bytes b = {0};
    put_u32(&b, type);
    put(&b, value, (size_t)gguf_type_size(type));
    store_kv(w, key, &b);
}

void gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v) { set_scalar(w, key, GGUF_UINT8, &v); }
void gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v) { set_scalar(w, key, GGUF_INT8, &v); }
void gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v) { set_scalar(w, key, GGUF_UINT16, &v); }
void gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v) { set_scalar(w, key, GGUF_INT16, &v); }
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { set_scalar(w, key, GGUF_UINT32, &v); }
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { set_scalar(w, key, GGUF_INT32, &v); }
void gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) { set_scalar(w, key, GGUF_UINT64, &v); }
void gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v) { set_scalar(w, key, GGUF_INT64, &v); }
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { set_scalar(w, key, GGUF_FLOAT32, &v); }
void gguf_writer_set_f64(gguf_writer *w, const char *key, double v) { set_scalar(w, key, GGUF_FLOAT64, &v); }

void gguf_writer_set_bool(gguf_writer *w, const char *key, bool value) {
    uint8_t v = value ? 1 : 0;
    set_scalar(w, key, GGUF_BOOL, &v);
}

void gguf_writer_set_str_n(gguf_writer *w, const char *key, const char *value, uint64_t len) {
    bytes b = {0};
    put_u32(&b, GGUF_STRING);
    put_str(&b, value, len);
    store_kv(w, key, &b);
}

void gguf_writer_set_str(gguf_writer *w, const char *key, const char *value) {
    gguf_writer_set_str_n(w, key, value, strlen(value));
}

void gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *values, uint64_t count) {
    bytes b = {0};
    put_u32(&b, GGUF_ARRAY);
    put_u32(&b, GGUF_STRING);
    put_u64(&b, count);
    for (uint64_t i = 0; i < count; i++)
        put_str(&b, values[i].ptr, values[i].len);
    store_kv(w, key, &b);
}

void gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *values, uint64_t count) {
    uint64_t size = gguf_type_size(elem_type);
    if (size == 0) {
        remember(w, "metadata key '%s': gguf_writer_set_arr takes numeric or bool elements, not %s", key,
                 gguf_type_name(elem_type));
        return;
    }
    if (count > SIZE_MAX / size) {
        remember(w, "metadata key '%s': array too large", key);
        return;
    }
    bytes b = {0};
    put_u32(&b, GGUF_ARRAY);
    put_u32(&b, elem_type);
    put_u64(&b, count);
    put(&b, values, (size_t)(count * size));
    store_kv(w, key, &b);
}

void gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *values, uint64_t count) {
    gguf_writer_set_arr(w, key, GGUF_INT32, values, count);
}

void gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *values, uint64_t count) {
    gguf_writer_set_arr(w, key, GGUF_FLOAT32, values, count);
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_file *file, uint64_t kv) {
    uint64_t size;
    const void *value = gguf_kv_value_bytes(file, kv, &size);
    if (!value) {
        remember(w, "gguf_writer_copy_kv: entry %llu out of range", (unsigned long long)kv);
        return;
    }
    char *key = gguf_str_dup(gguf_kv_key(file, kv));
    if (!key) {
        remember(w, "out of memory");
        return;
    }
    bytes b = {0};
    put_u32(&b, gguf_kv_type(file, kv));
    put(&b, value, (size_t)size);
    store_kv(w, key, &b);
    free(key);
}

/* ---- tensors ---- */

/* Validates and appends a tensor info; data may be NULL (declared only). */
static void add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                       const void *data, uint64_t nbytes, bool has_data) {
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > GGUF_MAX_NAME_LEN) {
        remember(w, "tensor name '%.80s' must be 1 to %d bytes long", name, GGUF_MAX_NAME_LEN);
        return;
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) {
            remember(w, "tensor '%s' added twice", name);
            return;
        }
    if (!quant_type_supported(type)) {
        remember(w, "tensor '%s' has unsupported type %s", name, quant_type_name(type));
        return;
    }
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        remember(w, "tensor '%s' has %u dimensions, expected 1 to %d", name, n_dims, GGUF_MAX_DIMS);
        return;
    }
    writer_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0) {
            remember(w, "tensor '%s' dimension %u is negative", name, d);
            return;
        }
        if (ne[d] != 0 && elements > (uint64_t)INT64_MAX / (uint64_t)ne[d]) {
            remember(w, "tensor '%s' element count overflows", name);
            return;
        }
        elements *= (uint64_t)ne[d];
        t.ne[d] = ne[d];
    }
    uint64_t block = (uint64_t)quant_block_size(type);
    if ((uint64_t)t.ne[0] % block != 0) {
        remember(w, "tensor '%s' row length %lld is not a multiple of the %s block size %llu", name, (long long)t.ne[0],
                 quant_type_name(type), (unsigned long long)block);
        return;
    }
    uint64_t block_bytes = (uint64_t)quant_type_size(type);
    if (elements / block != 0 && block_bytes > UINT64_MAX / (elements / block)) {
        remember(w, "tensor '%s' byte size overflows", name);
        return;
    }
    t.nbytes = elements / block * block_bytes;
    if (has_data && nbytes != t.nbytes) {
        remember(w, "tensor '%s' has %llu bytes of data, its shape and type need %llu", name,
                 (unsigned long long)nbytes, (unsigned long long)t.nbytes);
        return;
    }
    if (has_data && t.nbytes > SIZE_MAX) {
        remember(w, "tensor '%s' too large for memory", name);
        return;
    }
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        writer_tensor *grown = realloc(w->tensors, cap * sizeof *grown);
        if (!grown) {
            remember(w, "out of memory for tensor '%s'", name);
            return;
        }
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    t.name = strdup(name);
    if (has_data) {
        t.data = malloc(t.nbytes ? (size_t)t.nbytes : 1);
        if (t.data && t.nbytes) memcpy(t.data, data, (size_t)t.nbytes);
    }
    if (!t.name || (has_data && !t.data)) {
        free(t.name);
        free(t.data);
        {
            remember(w, "out of memory for tensor '%s'", name);
            return;
        }
    }
    w->tensors[w->n_tensors++] = t;
}

void gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                            const void *data, uint64_t nbytes) {
    add_tensor(w, name, type, n_dims, ne, data, nbytes, true);
}

void gguf_writer_declare_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne) {
    add_tensor(w, name, type, n_dims, ne, NULL, 0, false);
}

/* ---- output ---- */

static uint64_t padding(uint64_t pos, uint64_t alignment) {
    uint64_t rem = pos % alignment;
    return rem ? alignment - rem : 0;
}

static bool write_zeros(FILE *out, uint64_t n) {
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, chunk, out) != chunk) return false;
        n -= chunk;
    }
    return true;
}

/* The alignment from general.alignment if set (must be a uint32 power of two). */
static bool writer_alignment(const gguf_writer *w, uint64_t *alignment, char *err, size_t err_size) {
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        uint32_t type, value;
        memcpy(&type, w->kvs[i].value, 4);
        if (type != GGUF_UINT32 || w->kvs[i].value_len != 8)
            return set_err(err, err_size, "general.alignment must be a uint32");
        memcpy(&value, w->kvs[i].value + 4, 4);
        if (value == 0 || (value & (value - 1)) != 0)
            return set_err(err, err_size, "general.alignment %u is not a power of two", value);
        *alignment = value;
    }
    return true;
}

/* Serializes the header (magic .. tensor infos .. padding to the data section). */
static bool build_header(gguf_writer *w, bytes *h, char *err, size_t err_size) {
    put(h, "GGUF", 4);
    put_u32(h, 3);
    put_u64(h, w->n_tensors);
    put_u64(h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(h, w->kvs[i].key, strlen(w->kvs[i].key));
        put(h, w->kvs[i].value, w->kvs[i].value_len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        t->offset = offset;
        if (t->nbytes > UINT64_MAX - offset - w->alignment) return set_err(err, err_size, "tensor data too large");
        offset += t->nbytes + padding(t->nbytes, w->alignment);
        put_str(h, t->name, strlen(t->name));
        put_u32(h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, t->type);
        put_u64(h, t->offset);
    }
    uint64_t pad = padding(h->len, w->alignment);
    for (uint64_t i = 0; i < pad; i++)
        put(h, "", 1);
    if (h->failed) return set_err(err, err_size, "out of memory for the header");
    return true;
}

bool gguf_writer_begin(gguf_writer *w, const char *path, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (w->out) return set_err(err, err_size, "gguf_writer_begin called twice");
    if (w->error[0]) return set_err(err, err_size, "%s", w->error);
    if (!writer_alignment(w, &w->alignment, err, err_size)) return false;
    bytes header = {0};
    if (!build_header(w, &header, err, err_size)) {
        free(header.data);
        return false;
    }
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(n + 16);
    if (!w->path || !w->tmp_path) {
        free(header.data);
        discard_output(w);
        return set_err(err, err_size, "out of memory");
    }
    snprintf(w->tmp_path, n + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(w->tmp_path);
    if (fd >= 0) fchmod(fd, 0644);
    if (fd < 0) {
        int e = errno;
        free(header.data);
        free(w->tmp_path);
        w->tmp_path = NULL;
        discard_output(w);
        return set_err(err, err_size, "cannot create the output file: %s", strerror(e));
    }
    w->out = fdopen(fd, "wb");
    if (!w->out) {
        int e = errno;
        close(fd);
        free(header.data);
        discard_output(w);
        return set_err(err, err_size, "cannot open the output file: %s", strerror(e));
    }
    bool ok = fwrite(header.data, 1, header.len, w->out) == header.len;
    free(header.data);
    if (!ok) {
        int e = errno;
        discard_output(w);
        return set_err(err, err_size, "write failed: %s", strerror(e));
    }
    w->current = 0;
    w->written = 0;
    /* Zero-byte tensors at the front need no data. */
    while (w->current < w->n_tensors && w->tensors[w->current].nbytes == 0)
        w->current++;
    return true;
}

bool gguf_writer_append(gguf_writer *w, const void *data, uint64_t nbytes, char *err, size_t err_size) {
    const uint8_t *src = data;
    if (!w->out) return set_err(err, err_size, "gguf_writer_append before gguf_writer_begin");
    while (nbytes > 0) {
        if (w->current >= w->n_tensors) {
            discard_output(w);
            return set_err(err, err_size, "more tensor data appended than the declared tensors hold");
        }
        writer_tensor *t = &w->tensors[w->current];
        uint64_t take = t->nbytes - w->written;
        if (take > nbytes) take = nbytes;
        if (fwrite(src, 1, (size_t)take, w->out) != (size_t)take) {
            int e = errno;
            discard_output(w);
            return set_err(err, err_size, "write failed: %s", strerror(e));
        }
        src += take;
        nbytes -= take;
        w->written += take;
        if (w->written == t->nbytes) {
            if (!write_zeros(w->out, padding(t->nbytes, w->alignment))) {
                int e = errno;
                discard_output(w);
                return set_err(err, err_size, "write failed: %s", strerror(e));
            }
            w->current++;
            w->written = 0;
            while (w->current < w->n_tensors && w->tensors[w->current].nbytes == 0)
                w->current++;
        }
    }
    return true;
}

bool gguf_writer_end(gguf_writer *w, char *err, size_t err_size) {
    if (!w->out) return set_err(err, err_size, "gguf_writer_end before gguf_writer_begin");
    if (w->current < w->n_tensors) {
        const writer_tensor *t = &w->tensors[w->current];
        bool ok = set_err(err, err_size, "tensor '%s' incomplete: %llu of %llu bytes appended", t->name,
                          (unsigned long long)w->written, (unsigned long long)t->nbytes);
        discard_output(w);
        return ok;
    }
    bool ok = fflush(w->out) == 0 && fsync(fileno(w->out)) == 0;
    int e = errno;
    ok = (fclose(w->out) == 0) && ok;
    if (!ok && !e) e = errno;
    w->out = NULL;
    if (!ok) {
        discard_output(w);
        return set_err(err, err_size, "write failed: %s", strerror(e));
    }
    if (rename(w->tmp_path, w->path) != 0) {
        e = errno;
        discard_output(w);
        return set_err(err, err_size, "cannot rename the output into place: %s", strerror(e));
    }
    free(w->tmp_path);
    free(w->path);
    w->tmp_path = w->path = NULL;
    return true;
}

bool gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t err_size) {
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].data)
            return set_err(err, err_size, "tensor '%s' was declared without data; use the streaming calls",
                           w->tensors[i].name);
    if (!gguf_writer_begin(w, path, err, err_size)) return false;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!gguf_writer_append(w, w->tensors[i].data, w->tensors[i].nbytes, err, err_size)) return false;
    return gguf_writer_end(w, err, err_size);
}
