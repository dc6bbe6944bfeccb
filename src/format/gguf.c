/* gguf.c: the GGUF reader (versions 2 and 3).
 *
 * gguf_open() maps the file read-only and parses the header in one pass with
 * a bounds-checked cursor: every count, string length, type, dimension,
 * offset and byte size is checked against the bytes the file still holds and
 * against the limits in gguf.h before it is used, so no allocation is ever
 * sized by an unchecked header field and no read leaves the mapping. Only a
 * fully validated file yields a handle. The writer lives in gguf_write.c.
 *
 * Assumes a little-endian host (values are read with memcpy). */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "format/quant.h"

/* One metadata entry. value/value_size span the value bytes in the mapping
 * (after the type field); arrays also keep their element type and count. */
typedef struct {
    gguf_str key;
    gguf_type type;
    const uint8_t *value;
    uint64_t value_size;
    gguf_type arr_type;      /* arrays only */
    uint64_t arr_count;      /* arrays only */
    gguf_str *arr_strs;      /* arrays of strings: each element (arr_count of them) */
} gguf_kv;

struct gguf_file {
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kvs;            /* [n_kv] in file order */
    gguf_kv **kv_by_key;     /* [n_kv] sorted by key, for lookup */
    uint64_t n_tensors;
    gguf_tensor *tensors;    /* [n_tensors] in file order */
    gguf_tensor **tensor_by_name; /* [n_tensors] sorted by name */
};

/* Smallest encodings, used to bound counts by the bytes left in the file. */
#define MIN_KV_BYTES 14      /* key length 8 + key 1 + type 4 + value 1 */
#define MIN_TENSOR_BYTES 33  /* name length 8 + name 1 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define MIN_STRING_BYTES 8   /* length only */
#define MIN_ARRAY_BYTES 12   /* element type 4 + count 8 */

/* ---- error text ---- */

/* Writes s (len bytes, possibly hostile) into buf as printable ASCII:
 * other bytes become \xNN, and long text is cut with "...". */
static const char *printable(const char *s, uint64_t len, char *buf, size_t buf_size) {
    size_t out = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char piece[8];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            piece[0] = (char)c;
            piece[1] = 0;
        } else {
            snprintf(piece, sizeof piece, "\\x%02x", c);
        }
        size_t n = strlen(piece);
        if (out + n + 4 >= buf_size) {
            memcpy(buf + out, "...", 4);
            return buf;
        }
        memcpy(buf + out, piece, n);
        out += n;
    }
    buf[out] = 0;
    return buf;
}

const char *gguf_type_name(gguf_type type) {
    switch (type) {
    case GGUF_UINT8: return "uint8";
    case GGUF_INT8: return "int8";
    case GGUF_UINT16: return "uint16";
    case GGUF_INT16: return "int16";
    case GGUF_UINT32: return "uint32";
    case GGUF_INT32: return "int32";
    case GGUF_FLOAT32: return "float32";
    case GGUF_BOOL: return "bool";
    case GGUF_STRING: return "string";
    case GGUF_ARRAY: return "array";
    case GGUF_UINT64: return "uint64";
    case GGUF_INT64: return "int64";
    case GGUF_FLOAT64: return "float64";
    }
    return "unknown";
}

/* Bytes of one value of a fixed-size type; 0 for string, array, unknown. */
uint64_t gguf_type_size(gguf_type type) {
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    case GGUF_STRING: case GGUF_ARRAY: return 0;
    }
    return 0;
}

static bool type_is_valid(uint32_t type) { return type <= GGUF_FLOAT64; }

/* ---- the cursor ---- */

typedef struct {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    char *err;
    size_t err_size;
    greta_status status; /* of the first failure */
    char what[192]; /* the item being parsed, e.g. "metadata key 'general.name'" */
} parser;

static bool fail_v(parser *p, greta_status status, const char *fmt, va_list args) {
    if (p->status == GRETA_OK) p->status = status;
    format_error_v(p->err, p->err_size, fmt, args);
    return false;
}

/* A malformed file (GRETA_ERR_FORMAT). */
static bool fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parser *p, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fail_v(p, GRETA_ERR_FORMAT, fmt, args);
    va_end(args);
    return false;
}

/* A well-formed file greta cannot read (GRETA_ERR_UNSUPPORTED), or no
 * memory to read it (GRETA_ERR_NO_MEMORY). */
static bool fail_as(parser *p, greta_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail_as(parser *p, greta_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fail_v(p, status, fmt, args);
    va_end(args);
    return false;
}

static uint64_t bytes_left(const parser *p) { return p->size - p->pos; }

static bool need(parser *p, uint64_t n, const char *field) {
    if (n <= bytes_left(p)) return true;
    return fail(p, "truncated: %s of %s at offset %llu needs %llu bytes, the file ends at %llu", field, p->what,
                (unsigned long long)p->pos, (unsigned long long)n, (unsigned long long)p->size);
}

static bool read_u32(parser *p, uint32_t *out, const char *field) {
    if (!need(p, 4, field)) return false;
    memcpy(out, p->base + p->pos, 4);
    p->pos += 4;
    return true;
}

static bool read_u64(parser *p, uint64_t *out, const char *field) {
    if (!need(p, 8, field)) return false;
    memcpy(out, p->base + p->pos, 8);
    p->pos += 8;
    return true;
}

static bool read_str(parser *p, gguf_str *out, const char *field) {
    uint64_t len;
    if (!read_u64(p, &len, field)) return false;
    if (len > bytes_left(p))
        return fail(p, "truncated: %s of %s at offset %llu has length %llu, past the end of the file (%llu bytes left)",
                    field, p->what, (unsigned long long)(p->pos - 8), (unsigned long long)len,
                    (unsigned long long)bytes_left(p));
    out->ptr = (const char *)p->base + p->pos;
    out->len = len;
    p->pos += len;
    return true;
}

/* Checks count * element_bytes fits in the rest of the file. */
static bool check_count(parser *p, uint64_t count, uint64_t element_bytes, const char *items) {
    if (count <= bytes_left(p) / element_bytes) return true;
    return fail(p, "%s: %llu %s cannot fit in the %llu bytes left in the file", p->what, (unsigned long long)count,
                items, (unsigned long long)bytes_left(p));
}

/* ---- metadata values ---- */

static bool check_bools(parser *p, const uint8_t *values, uint64_t count) {
    for (uint64_t i = 0; i < count; i++)
        if (values[i] > 1) return fail(p, "%s: bool value %u is neither 0 nor 1", p->what, values[i]);
    return true;
}

static bool parse_array(parser *p, int depth, gguf_kv *kv);

/* Parses one value of the given type at the cursor (kv: the top-level entry
 * to fill for arrays, NULL inside nested arrays). */
static bool parse_value(parser *p, gguf_type type, int depth, gguf_kv *kv) {
    if (type == GGUF_STRING) {
        gguf_str s;
        return read_str(p, &s, "string value");
    }
    if (type == GGUF_ARRAY) return parse_array(p, depth + 1, kv);
    uint64_t n = gguf_type_size(type);
    if (!need(p, n, "value")) return false;
    if (type == GGUF_BOOL && !check_bools(p, p->base + p->pos, 1)) return false;
    p->pos += n;
    return true;
}

static bool parse_array(parser *p, int depth, gguf_kv *kv) {
    if (depth > GGUF_MAX_ARRAY_DEPTH)
        return fail(p, "%s: arrays nested deeper than %d levels", p->what, GGUF_MAX_ARRAY_DEPTH);
    uint32_t elem_type;
    uint64_t count;
    if (!read_u32(p, &elem_type, "array element type")) return false;
    if (!type_is_valid(elem_type)) return fail(p, "%s: invalid array element type %u", p->what, elem_type);
    if (!read_u64(p, &count, "array length")) return false;
    if (kv) {
        kv->arr_type = (gguf_type)elem_type;
        kv->arr_count = count;
    }
    if (elem_type == GGUF_STRING) {
        if (!check_count(p, count, MIN_STRING_BYTES, "array strings")) return false;
        if (kv && count > 0) {
            kv->arr_strs = calloc(count, sizeof *kv->arr_strs);
            if (!kv->arr_strs) return fail_as(p, GRETA_ERR_NO_MEMORY, "%s: out of memory for %llu strings", p->what, (unsigned long long)count);
        }
        for (uint64_t i = 0; i < count; i++) {
            gguf_str s;
            if (!read_str(p, &s, "array string")) return false;
            if (kv) kv->arr_strs[i] = s;
        }
        return true;
    }
    if (elem_type == GGUF_ARRAY) {
        if (!check_count(p, count, MIN_ARRAY_BYTES, "nested arrays")) return false;
        for (uint64_t i = 0; i < count; i++)
            if (!parse_array(p, depth + 1, NULL)) return false;
        return true;
    }
    uint64_t elem_size = gguf_type_size((gguf_type)elem_type);
    if (!check_count(p, count, elem_size, "array elements")) return false;
    if (elem_type == GGUF_BOOL && !check_bools(p, p->base + p->pos, count)) return false;
    p->pos += count * elem_size;
    return true;
}

static bool has_nul(gguf_str s) { return s.len > 0 && memchr(s.ptr, 0, s.len) != NULL; }

static int compare_str(gguf_str a, gguf_str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return (a.len > b.len) - (a.len < b.len);
}

static int compare_kv_ptr(const void *a, const void *b) {
    return compare_str((*(gguf_kv *const *)a)->key, (*(gguf_kv *const *)b)->key);
}

static bool parse_kvs(parser *p, gguf_file *f) {
    char shown[96];
    snprintf(p->what, sizeof p->what, "header");
    if (!check_count(p, f->n_kv, MIN_KV_BYTES, "metadata entries")) return false;
    if (f->n_kv > 0) {
        f->kvs = calloc(f->n_kv, sizeof *f->kvs);
        f->kv_by_key = calloc(f->n_kv, sizeof *f->kv_by_key);
        if (!f->kvs || !f->kv_by_key) return fail_as(p, GRETA_ERR_NO_MEMORY, "out of memory for %llu metadata entries", (unsigned long long)f->n_kv);
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        snprintf(p->what, sizeof p->what, "metadata entry %llu", (unsigned long long)i);
        if (!read_str(p, &kv->key, "key")) return false;
        if (kv->key.len == 0) return fail(p, "metadata entry %llu has an empty key", (unsigned long long)i);
        if (kv->key.len > GGUF_MAX_KEY_LEN)
            return fail(p, "metadata entry %llu: key length %llu exceeds the limit of %d bytes", (unsigned long long)i,
                        (unsigned long long)kv->key.len, GGUF_MAX_KEY_LEN);
        printable(kv->key.ptr, kv->key.len, shown, sizeof shown);
        if (has_nul(kv->key)) return fail(p, "metadata key '%s' contains a NUL byte", shown);
        snprintf(p->what, sizeof p->what, "metadata key '%s'", shown);
        uint32_t type;
        if (!read_u32(p, &type, "value type")) return false;
        if (!type_is_valid(type)) return fail(p, "metadata key '%s' has invalid value type %u", shown, type);
        kv->type = (gguf_type)type;
        kv->value = p->base + p->pos;
        if (!parse_value(p, kv->type, 0, kv)) return false;
        kv->value_size = (uint64_t)(p->base + p->pos - kv->value);
        f->kv_by_key[i] = kv;
    }
    if (f->n_kv > 1) qsort(f->kv_by_key, f->n_kv, sizeof *f->kv_by_key, compare_kv_ptr);
    for (uint64_t i = 1; i < f->n_kv; i++) {
        if (compare_str(f->kv_by_key[i - 1]->key, f->kv_by_key[i]->key) == 0) {
            gguf_str k = f->kv_by_key[i]->key;
            return fail(p, "metadata key '%s' appears more than once", printable(k.ptr, k.len, shown, sizeof shown));
        }
    }
    return true;
}

static bool parse_alignment(parser *p, gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t kv = gguf_find_key(f, "general.alignment");
    if (kv < 0) return true;
    const gguf_kv *e = &f->kvs[kv];
    if (e->type != GGUF_UINT32)
        return fail(p, "general.alignment has type %s, expected uint32", gguf_type_name(e->type));
    uint32_t a;
    memcpy(&a, e->value, 4);
    if (a == 0 || (a & (a - 1)) != 0) return fail(p, "general.alignment %u is not a power of two", a);
    f->alignment = a;
    return true;
}

/* ---- tensor infos ---- */

static bool parse_tensor_info(parser *p, gguf_tensor *t, uint64_t index) {
    char shown[96];
    gguf_str name;
    snprintf(p->what, sizeof p->what, "tensor info %llu", (unsigned long long)index);
    if (!read_str(p, &name, "name")) return false;
    if (name.len == 0) return fail(p, "tensor info %llu has an empty name", (unsigned long long)index);
    printable(name.ptr, name.len, shown, sizeof shown);
    if (name.len > GGUF_MAX_NAME_LEN)
        return fail(p, "tensor name '%s' is %llu bytes long, the limit is %d", shown, (unsigned long long)name.len,
                    GGUF_MAX_NAME_LEN);
    if (has_nul(name)) return fail(p, "tensor name '%s' contains a NUL byte", shown);
    t->name = gguf_str_dup(name);
    if (!t->name) return fail_as(p, GRETA_ERR_NO_MEMORY, "out of memory");
    snprintf(p->what, sizeof p->what, "tensor '%s'", shown);
    if (!read_u32(p, &t->n_dims, "dimension count")) return false;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(p, "tensor '%s' has %u dimensions, expected 1 to %d", shown, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (!read_u64(p, &ne, "dimension")) return false;
        if (ne > (uint64_t)INT64_MAX)
            return fail(p, "tensor '%s' dimension %u is %llu, larger than 2^63-1", shown, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    if (!read_u32(p, &t->type, "type")) return false;
    if (!read_u64(p, &t->offset, "data offset")) return false;
    return true;
}

/* Checks a tensor's type, shape and size, and computes nbytes. */
static bool check_tensor_shape(parser *p, gguf_tensor *t) {
    char shown[96];
    printable(t->name, strlen(t->name), shown, sizeof shown);
    if (t->type >= QT_COUNT_MAX || strcmp(quant_type_name(t->type), "unknown") == 0)
        return fail(p, "tensor '%s' has unknown type id %u", shown, t->type);
    if (!quant_type_supported(t->type))
        return fail_as(p, GRETA_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s", shown, quant_type_name(t->type));
    uint64_t elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne != 0 && elements > (uint64_t)INT64_MAX / ne)
            return fail(p, "tensor '%s' element count overflows (%lld x %lld x %lld x %lld)", shown,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
        elements *= ne;
    }
    uint64_t block = (uint64_t)quant_block_size(t->type);
    uint64_t block_bytes = (uint64_t)quant_type_size(t->type);
    if (block == 0 || block_bytes == 0) return fail(p, "tensor '%s': no block size for type %s", shown, quant_type_name(t->type));
    if ((uint64_t)t->ne[0] % block != 0)
        return fail(p, "tensor '%s' row length %lld is not a multiple of the %s block size %llu", shown,
                    (long long)t->ne[0], quant_type_name(t->type), (unsigned long long)block);
    uint64_t nblocks = elements / block;
    if (nblocks != 0 && block_bytes > UINT64_MAX / nblocks)
        return fail(p, "tensor '%s' byte size overflows", shown);
    t->nbytes = nblocks * block_bytes;
    return true;
}

static int compare_tensor_name(const void *a, const void *b) {
    return strcmp((*(gguf_tensor *const *)a)->name, (*(gguf_tensor *const *)b)->name);
}

static int compare_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(gguf_tensor *const *)a, *y = *(gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Checks that each tensor lies inside the data section, aligned, and that no
 * two overlap; sets the data pointers. */
static bool place_tensors(parser *p, gguf_file *f) {
    char shown[96], other[96];
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        printable(t->name, strlen(t->name), shown, sizeof shown);
        if (t->offset % f->alignment != 0)
            return fail(p, "tensor '%s' data offset %llu is not a multiple of the alignment %llu", shown,
                        (unsigned long long)t->offset, (unsigned long long)f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail(p, "tensor '%s' data (offset %llu, %llu bytes) runs past the end of the file (data section holds %llu bytes)",
                        shown, (unsigned long long)t->offset, (unsigned long long)t->nbytes, (unsigned long long)data_size);
        t->data = f->map + f->data_offset + t->offset;
    }
    if (f->n_tensors < 2) return true;
    gguf_tensor **by_offset = malloc(f->n_tensors * sizeof *by_offset);
    if (!by_offset) return fail_as(p, GRETA_ERR_NO_MEMORY, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++) by_offset[i] = &f->tensors[i];
    qsort(by_offset, f->n_tensors, sizeof *by_offset, compare_tensor_offset);
    /* In offset order, each non-empty tensor must start at or after the end
     * of every non-empty tensor before it (empty tensors occupy nothing and
     * must not hide an overlap between their neighbours). */
    bool ok = true;
    const gguf_tensor *furthest = NULL; /* the non-empty tensor reaching furthest so far */
    for (uint64_t i = 0; i < f->n_tensors && ok; i++) {
        const gguf_tensor *b = by_offset[i];
        if (b->nbytes == 0) continue;
        if (furthest && b->offset < furthest->offset + furthest->nbytes) {
            printable(furthest->name, strlen(furthest->name), shown, sizeof shown);
            printable(b->name, strlen(b->name), other, sizeof other);
            ok = fail(p, "tensors '%s' and '%s' overlap in the data section (offsets %llu and %llu)", shown, other,
                      (unsigned long long)furthest->offset, (unsigned long long)b->offset);
        }
        if (!furthest || b->offset + b->nbytes > furthest->offset + furthest->nbytes) furthest = b;
    }
    free(by_offset);
    return ok;
}

static bool parse_tensors(parser *p, gguf_file *f) {
    char shown[96];
    snprintf(p->what, sizeof p->what, "header");
    if (!check_count(p, f->n_tensors, MIN_TENSOR_BYTES, "tensor infos")) return false;
    if (f->n_tensors > 0) {
        f->tensors = calloc(f->n_tensors, sizeof *f->tensors);
        f->tensor_by_name = calloc(f->n_tensors, sizeof *f->tensor_by_name);
        if (!f->tensors || !f->tensor_by_name)
            return fail_as(p, GRETA_ERR_NO_MEMORY, "out of memory for %llu tensor infos", (unsigned long long)f->n_tensors);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        if (!parse_tensor_info(p, &f->tensors[i], i)) return false;
        f->tensor_by_name[i] = &f->tensors[i];
    }
    if (f->n_tensors > 1) qsort(f->tensor_by_name, f->n_tensors, sizeof *f->tensor_by_name, compare_tensor_name);
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const char *name = f->tensor_by_name[i]->name;
        if (strcmp(f->tensor_by_name[i - 1]->name, name) == 0)
            return fail(p, "tensor name '%s' appears more than once", printable(name, strlen(name), shown, sizeof shown));
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!check_tensor_shape(p, &f->tensors[i])) return false;
    /* The data section starts at the next multiple of the alignment. */
    uint64_t rem = p->pos % f->alignment;
    uint64_t pad = rem ? f->alignment - rem : 0;
    if (f->n_tensors > 0 && pad > bytes_left(p))
        return fail(p, "truncated: the tensor data section (at offset %llu) starts past the end of the file (%llu bytes)",
                    (unsigned long long)(p->pos + pad), (unsigned long long)p->size);
    f->data_offset = pad > bytes_left(p) ? p->size : p->pos + pad;
    return place_tensors(p, f);
}

/* ---- open / close ---- */

static bool parse_header(parser *p, gguf_file *f) {
    snprintf(p->what, sizeof p->what, "header");
    if (p->size < 4) return fail(p, "file too small to be GGUF (%llu bytes)", (unsigned long long)p->size);
    if (memcmp(p->base, "GGUF", 4) != 0) {
        char shown[32];
        return fail(p, "not a GGUF file (magic '%s', expected 'GGUF')", printable((const char *)p->base, 4, shown, sizeof shown));
    }
    p->pos = 4;
    if (!read_u32(p, &f->version, "version")) return false;
    if (f->version == 1) return fail_as(p, GRETA_ERR_UNSUPPORTED, "GGUF version 1 is not supported (greta reads versions 2 and 3)");
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && (f->version == 0x02000000u || f->version == 0x03000000u))
            return fail_as(p, GRETA_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
        return fail_as(p, GRETA_ERR_UNSUPPORTED, "unsupported GGUF version %u (greta reads versions 2 and 3)", f->version);
    }
    if (!read_u64(p, &f->n_tensors, "tensor count")) return false;
    if (!read_u64(p, &f->n_kv, "metadata entry count")) return false;
    /* Bound both counts before anything is allocated. */
    if (!check_count(p, f->n_tensors, MIN_TENSOR_BYTES, "tensor infos")) return false;
    if (!check_count(p, f->n_kv, MIN_KV_BYTES, "metadata entries")) return false;
    return parse_kvs(p, f) && parse_alignment(p, f) && parse_tensors(p, f);
}

greta_status gguf_open(const char *path, gguf_file **out, char *err, size_t err_size) {
    *out = NULL;
    format_error(err, err_size, "%s", "");
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        format_error(err, err_size, "cannot open: %s", strerror(errno));
        return GRETA_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        format_error(err, err_size, "cannot stat: %s", strerror(errno));
        close(fd);
        return GRETA_ERR_IO;
    }
    if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
        format_error(err, err_size, "%s", S_ISDIR(st.st_mode) ? "is a directory, not a GGUF file" : "not a regular file");
        close(fd);
        return GRETA_ERR_IO;
    }
    if (st.st_size == 0) {
        format_error(err, err_size, "empty file (0 bytes), not a GGUF file");
        close(fd);
        return GRETA_ERR_FORMAT;
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        format_error(err, err_size, "out of memory");
        close(fd);
        return GRETA_ERR_NO_MEMORY;
    }
    f->size = (uint64_t)st.st_size;
    void *map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        format_error(err, err_size, "cannot map the file: %s", strerror(map_errno));
        free(f);
        return GRETA_ERR_IO;
    }
    f->map = map;
    parser p = {.base = f->map, .size = f->size, .err = err, .err_size = err_size, .status = GRETA_OK};
    if (!parse_header(&p, f)) {
        gguf_close(f);
        return p.status != GRETA_OK ? p.status : GRETA_ERR_FORMAT;
    }
    *out = f;
    return GRETA_OK;
}

void gguf_close(gguf_file *file) {
    if (!file) return;
    /* The arrays exist only once their counts passed validation. */
    if (file->kvs)
        for (uint64_t i = 0; i < file->n_kv; i++) free(file->kvs[i].arr_strs);
    if (file->tensors)
        for (uint64_t i = 0; i < file->n_tensors; i++) free(file->tensors[i].name);
    free(file->kvs);
    free(file->kv_by_key);
    free(file->tensors);
    free(file->tensor_by_name);
    if (file->map) munmap((void *)file->map, (size_t)file->size);
    free(file);
}

/* ---- accessors ---- */

uint32_t gguf_version(const gguf_file *file) { return file->version; }
uint64_t gguf_alignment(const gguf_file *file) { return file->alignment; }
uint64_t gguf_file_size(const gguf_file *file) { return file->size; }
const void *gguf_map_base(const gguf_file *file) { return file->map; }
uint64_t gguf_data_offset(const gguf_file *file) { return file->data_offset; }
uint64_t gguf_kv_count(const gguf_file *file) { return file->n_kv; }

static int compare_key_text(const void *key, const void *elem) {
    const char *text = key;
    gguf_str s = {text, strlen(text)};
    return compare_str(s, (*(gguf_kv *const *)elem)->key);
}

int64_t gguf_find_key(const gguf_file *file, const char *key) {
    if (file->n_kv == 0) return -1;
    gguf_kv *const *hit = bsearch(key, file->kv_by_key, file->n_kv, sizeof *file->kv_by_key, compare_key_text);
    return hit ? (int64_t)(*hit - file->kvs) : -1;
}

gguf_str gguf_kv_key(const gguf_file *file, uint64_t kv) {
    gguf_str none = {"", 0};
    return kv < file->n_kv ? file->kvs[kv].key : none;
}

gguf_type gguf_kv_type(const gguf_file *file, uint64_t kv) {
    return kv < file->n_kv ? file->kvs[kv].type : GGUF_ARRAY;
}

const void *gguf_kv_value_bytes(const gguf_file *file, uint64_t kv, uint64_t *size) {
    if (kv >= file->n_kv) {
        if (size) *size = 0;
        return NULL;
    }
    if (size) *size = file->kvs[kv].value_size;
    return file->kvs[kv].value;
}

/* Reads element i of a numeric/bool array or scalar (data points at the
 * first element) as a signed/unsigned integer or a double. */
typedef struct {
    bool is_int;      /* integer or bool */
    bool negative;    /* is_int and below zero */
    uint64_t u;       /* is_int and !negative */
    int64_t i;        /* is_int and negative */
    double f;         /* the value as a double */
} number;

static bool read_number(gguf_type type, const uint8_t *data, uint64_t i, number *out) {
    number n = {0};
    n.is_int = true;
    switch (type) {
    case GGUF_UINT8: case GGUF_BOOL: { uint8_t v; memcpy(&v, data + i, 1); n.u = v; break; }
    case GGUF_UINT16: { uint16_t v; memcpy(&v, data + 2 * i, 2); n.u = v; break; }
    case GGUF_UINT32: { uint32_t v; memcpy(&v, data + 4 * i, 4); n.u = v; break; }
    case GGUF_UINT64: { uint64_t v; memcpy(&v, data + 8 * i, 8); n.u = v; break; }
    case GGUF_INT8: { int8_t v; memcpy(&v, data + i, 1); n.i = v; break; }
    case GGUF_INT16: { int16_t v; memcpy(&v, data + 2 * i, 2); n.i = v; break; }
    case GGUF_INT32: { int32_t v; memcpy(&v, data + 4 * i, 4); n.i = v; break; }
    case GGUF_INT64: { int64_t v; memcpy(&v, data + 8 * i, 8); n.i = v; break; }
    case GGUF_FLOAT32: { float v; memcpy(&v, data + 4 * i, 4); n.is_int = false; n.f = v; break; }
    case GGUF_FLOAT64: { double v; memcpy(&v, data + 8 * i, 8); n.is_int = false; n.f = v; break; }
    default: return false;
    }
    if (n.is_int) {
        bool is_signed = type == GGUF_INT8 || type == GGUF_INT16 || type == GGUF_INT32 || type == GGUF_INT64;
        if (is_signed && n.i < 0) {
            n.negative = true;
            n.f = (double)n.i;
        } else {
            if (is_signed) n.u = (uint64_t)n.i;
            n.f = (double)n.u;
        }
    }
    *out = n;
    return true;
}

bool gguf_kv_get_int(const gguf_file *file, uint64_t kv, int64_t *out) {
    number n;
    if (kv >= file->n_kv || file->kvs[kv].type == GGUF_BOOL) return false;
    if (!read_number(file->kvs[kv].type, file->kvs[kv].value, 0, &n) || !n.is_int) return false;
    if (n.negative) {
        *out = n.i;
        return true;
    }
    if (n.u > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)n.u;
    return true;
}

bool gguf_kv_get_uint(const gguf_file *file, uint64_t kv, uint64_t *out) {
    number n;
    if (kv >= file->n_kv || file->kvs[kv].type == GGUF_BOOL) return false;
    if (!read_number(file->kvs[kv].type, file->kvs[kv].value, 0, &n) || !n.is_int || n.negative) return false;
    *out = n.u;
    return true;
}

bool gguf_kv_get_float(const gguf_file *file, uint64_t kv, double *out) {
    number n;
    if (kv >= file->n_kv) return false;
    gguf_type t = file->kvs[kv].type;
    if (t != GGUF_FLOAT32 && t != GGUF_FLOAT64) return false;
    if (!read_number(t, file->kvs[kv].value, 0, &n)) return false;
    *out = n.f;
    return true;
}

bool gguf_kv_get_bool(const gguf_file *file, uint64_t kv, bool *out) {
    if (kv >= file->n_kv || file->kvs[kv].type != GGUF_BOOL) return false;
    *out = file->kvs[kv].value[0] != 0;
    return true;
}

bool gguf_kv_get_str(const gguf_file *file, uint64_t kv, gguf_str *out) {
    if (kv >= file->n_kv || file->kvs[kv].type != GGUF_STRING) return false;
    const gguf_kv *e = &file->kvs[kv];
    out->ptr = (const char *)e->value + 8;
    out->len = e->value_size - 8;
    return true;
}

static int64_t key_index(const gguf_file *file, const char *key) { return gguf_find_key(file, key); }

bool gguf_get_int(const gguf_file *file, const char *key, int64_t *out) {
    int64_t kv = key_index(file, key);
    return kv >= 0 && gguf_kv_get_int(file, (uint64_t)kv, out);
}

bool gguf_get_uint(const gguf_file *file, const char *key, uint64_t *out) {
    int64_t kv = key_index(file, key);
    return kv >= 0 && gguf_kv_get_uint(file, (uint64_t)kv, out);
}

bool gguf_get_float(const gguf_file *file, const char *key, double *out) {
    int64_t kv = key_index(file, key);
    return kv >= 0 && gguf_kv_get_float(file, (uint64_t)kv, out);
}

bool gguf_get_bool(const gguf_file *file, const char *key, bool *out) {
    int64_t kv = key_index(file, key);
    return kv >= 0 && gguf_kv_get_bool(file, (uint64_t)kv, out);
}

bool gguf_get_str(const gguf_file *file, const char *key, gguf_str *out) {
    int64_t kv = key_index(file, key);
    return kv >= 0 && gguf_kv_get_str(file, (uint64_t)kv, out);
}

gguf_type gguf_arr_type(const gguf_file *file, uint64_t kv) {
    if (kv >= file->n_kv) return GGUF_ARRAY;
    return file->kvs[kv].type == GGUF_ARRAY ? file->kvs[kv].arr_type : file->kvs[kv].type;
}

uint64_t gguf_arr_count(const gguf_file *file, uint64_t kv) {
    if (kv >= file->n_kv || file->kvs[kv].type != GGUF_ARRAY) return 0;
    return file->kvs[kv].arr_count;
}

gguf_str gguf_arr_str(const gguf_file *file, uint64_t kv, uint64_t i) {
    gguf_str none = {"", 0};
    if (kv >= file->n_kv) return none;
    const gguf_kv *e = &file->kvs[kv];
    if (e->type != GGUF_ARRAY || e->arr_type != GGUF_STRING || i >= e->arr_count) return none;
    return e->arr_strs[i];
}

/* Element i of a numeric array, or NULL-number if out of range / not numeric. */
static bool array_number(const gguf_file *file, uint64_t kv, uint64_t i, number *out) {
    if (kv >= file->n_kv) return false;
    const gguf_kv *e = &file->kvs[kv];
    if (e->type != GGUF_ARRAY || i >= e->arr_count) return false;
    /* value bytes: element type (4), count (8), elements */
    return read_number(e->arr_type, e->value + 12, i, out);
}

int64_t gguf_arr_int(const gguf_file *file, uint64_t kv, uint64_t i) {
    number n;
    if (!array_number(file, kv, i, &n)) return 0;
    if (!n.is_int) {
        if (!(n.f == n.f)) return 0;
        if (n.f >= 9223372036854775807.0) return INT64_MAX;
        if (n.f <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)n.f;
    }
    if (n.negative) return n.i;
    return n.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)n.u;
}

double gguf_arr_float(const gguf_file *file, uint64_t kv, uint64_t i) {
    number n;
    return array_number(file, kv, i, &n) ? n.f : 0.0;
}

const void *gguf_arr_data(const gguf_file *file, uint64_t kv) {
    if (kv >= file->n_kv) return NULL;
    const gguf_kv *e = &file->kvs[kv];
    if (e->type != GGUF_ARRAY || gguf_type_size(e->arr_type) == 0) return NULL;
    return e->value + 12;
}

uint64_t gguf_tensor_count(const gguf_file *file) { return file->n_tensors; }

const gguf_tensor *gguf_get_tensor(const gguf_file *file, uint64_t i) {
    return i < file->n_tensors ? &file->tensors[i] : NULL;
}

static int compare_name_text(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(gguf_tensor *const *)elem)->name);
}

const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name) {
    if (file->n_tensors == 0) return NULL;
    gguf_tensor *const *hit =
        bsearch(name, file->tensor_by_name, file->n_tensors, sizeof *file->tensor_by_name, compare_name_text);
    return hit ? *hit : NULL;
}

int64_t gguf_tensor_nelements(const gguf_tensor *tensor) {
    int64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= tensor->ne[d];
    return n;
}

bool gguf_str_eq(gguf_str s, const char *text) {
    size_t n = strlen(text);
    return s.len == n && (n == 0 || memcmp(s.ptr, text, n) == 0);
}

char *gguf_str_dup(gguf_str s) {
    if (s.len >= SIZE_MAX) return NULL;
    char *copy = malloc((size_t)s.len + 1);
    if (!copy) return NULL;
    if (s.len) memcpy(copy, s.ptr, (size_t)s.len);
    copy[s.len] = 0;
    return copy;
}
