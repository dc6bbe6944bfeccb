/* gguf.h: reading and writing GGUF files (versions 2 and 3).
 *
 * Reader: gguf_open() maps the file, parses and validates the whole header
 * (every count, length, type, dimension, offset and size against the file
 * size and sane limits) and only then returns a handle. Strings point into
 * the mapping (not NUL-terminated, hence gguf_str); tensor names are copied
 * NUL-terminated. A file without tensors (a vocabulary-only file) is valid.
 *
 * Writer: collect key/values and tensors in memory order, then write. */
#ifndef GRETA_GGUF_H
#define GRETA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greta.h"

/* Metadata value types, as stored. */
typedef enum {
    GGUF_UINT8 = 0,
    GGUF_INT8 = 1,
    GGUF_UINT16 = 2,
    GGUF_INT16 = 3,
    GGUF_UINT32 = 4,
    GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_UINT64 = 10,
    GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
} gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
/* Reader limits (docs/gguf.md): keys up to 65535 bytes, tensor names up to
 * 64 bytes (the GGUF spec's limit), arrays nested at most 8 deep. */
#define GGUF_MAX_KEY_LEN 65535
#define GGUF_MAX_NAME_LEN 64
#define GGUF_MAX_ARRAY_DEPTH 8

typedef struct {
    const char *ptr; /* into the mapping; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct {
    char *name;                    /* NUL-terminated copy */
    uint32_t n_dims;               /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS];     /* ne[0] = row length (fastest); unused dims are 1 */
    uint32_t type;                 /* ggml type id (quant.h) */
    uint64_t offset;               /* relative to the start of the data section */
    uint64_t nbytes;               /* bytes of data */
    const void *data;              /* into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates path into *out. On failure *out = NULL, a one-line
 * reason (without the file name) in err, and the status: GRETA_ERR_IO (cannot
 * open, stat or map; a directory or device), GRETA_ERR_FORMAT (not GGUF,
 * malformed, truncated), GRETA_ERR_UNSUPPORTED (GGUF version 1, big-endian,
 * a tensor type greta cannot read) or GRETA_ERR_NO_MEMORY. */
greta_status gguf_open(const char *path, gguf_file **out, char *err, size_t err_size);
void gguf_close(gguf_file *file);

uint32_t gguf_version(const gguf_file *file);
uint64_t gguf_alignment(const gguf_file *file);
uint64_t gguf_file_size(const gguf_file *file);
const void *gguf_map_base(const gguf_file *file); /* the mapping: gguf_file_size bytes */
uint64_t gguf_data_offset(const gguf_file *file); /* absolute offset of tensor data */

/* Metadata. Keys are indexed 0..gguf_kv_count()-1 in file order. */
uint64_t gguf_kv_count(const gguf_file *file);
int64_t gguf_find_key(const gguf_file *file, const char *key); /* -1 if absent */
gguf_str gguf_kv_key(const gguf_file *file, uint64_t kv);
gguf_type gguf_kv_type(const gguf_file *file, uint64_t kv);
/* "uint32", "string", ...; "unknown" for an invalid id. */
const char *gguf_type_name(gguf_type type);
/* Bytes of one value of a fixed-size type; 0 for string and array. */
uint64_t gguf_type_size(gguf_type type);
/* The raw stored bytes of entry kv's value (after its type field; for an
 * array: element type, count, elements), *size set to their length. */
const void *gguf_kv_value_bytes(const gguf_file *file, uint64_t kv, uint64_t *size);
/* The scalar getters below by entry index instead of key. */
bool gguf_kv_get_int(const gguf_file *file, uint64_t kv, int64_t *out);
bool gguf_kv_get_uint(const gguf_file *file, uint64_t kv, uint64_t *out);
bool gguf_kv_get_float(const gguf_file *file, uint64_t kv, double *out);
bool gguf_kv_get_bool(const gguf_file *file, uint64_t kv, bool *out);
bool gguf_kv_get_str(const gguf_file *file, uint64_t kv, gguf_str *out);

/* Scalar getters by key. Each returns false (and leaves *out alone) when
 * the key is absent or its type does not fit: get_int accepts any integer
 * type whose value fits in int64, get_uint any non-negative integer,
 * get_float float32/float64, get_bool bool, get_str string. */
bool gguf_get_int(const gguf_file *file, const char *key, int64_t *out);
bool gguf_get_uint(const gguf_file *file, const char *key, uint64_t *out);
bool gguf_get_float(const gguf_file *file, const char *key, double *out);
bool gguf_get_bool(const gguf_file *file, const char *key, bool *out);
bool gguf_get_str(const gguf_file *file, const char *key, gguf_str *out);

/* Arrays by key index. gguf_arr_type() is the element type (GGUF_ARRAY for
 * nested arrays), gguf_arr_count() the element count (0 for a non-array).
 * Element getters return "" / 0 for an index out of range or a wrong type;
 * elements of nested arrays are reachable only through gguf_kv_value_bytes. */
gguf_type gguf_arr_type(const gguf_file *file, uint64_t kv);
uint64_t gguf_arr_count(const gguf_file *file, uint64_t kv);
/* Element i of an array of strings. */
gguf_str gguf_arr_str(const gguf_file *file, uint64_t kv, uint64_t i);
/* Element i of a numeric or bool array, converted. */
int64_t gguf_arr_int(const gguf_file *file, uint64_t kv, uint64_t i);
double gguf_arr_float(const gguf_file *file, uint64_t kv, uint64_t i);
/* The elements of a numeric or bool array as stored (little-endian, packed,
 * possibly unaligned: read with memcpy); NULL for other entries. */
const void *gguf_arr_data(const gguf_file *file, uint64_t kv);

/* Tensors, in file order. */
uint64_t gguf_tensor_count(const gguf_file *file);
const gguf_tensor *gguf_get_tensor(const gguf_file *file, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name); /* NULL if absent */
int64_t gguf_tensor_nelements(const gguf_tensor *tensor);

/* True if s equals the NUL-terminated text. */
bool gguf_str_eq(gguf_str s, const char *text);
/* malloc'ed NUL-terminated copy (caller frees); NULL on allocation failure. */
char *gguf_str_dup(gguf_str s);

/* ---- Writer ---- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *writer);

/* Each setter copies key and value; setting a key twice replaces it. */
void gguf_writer_set_u32(gguf_writer *writer, const char *key, uint32_t value);
void gguf_writer_set_i32(gguf_writer *writer, const char *key, int32_t value);
void gguf_writer_set_u64(gguf_writer *writer, const char *key, uint64_t value);
void gguf_writer_set_f32(gguf_writer *writer, const char *key, float value);
void gguf_writer_set_bool(gguf_writer *writer, const char *key, bool value);
void gguf_writer_set_str(gguf_writer *writer, const char *key, const char *value);
void gguf_writer_set_str_n(gguf_writer *writer, const char *key, const char *value, uint64_t len);
void gguf_writer_set_arr_str(gguf_writer *writer, const char *key, const gguf_str *values, uint64_t count);
void gguf_writer_set_arr_i32(gguf_writer *writer, const char *key, const int32_t *values, uint64_t count);
void gguf_writer_set_arr_f32(gguf_writer *writer, const char *key, const float *values, uint64_t count);
/* The remaining scalar types, and a numeric/bool array of any element type
 * (values: count packed elements of gguf_type_size(elem_type) bytes). */
void gguf_writer_set_u8(gguf_writer *writer, const char *key, uint8_t value);
void gguf_writer_set_i8(gguf_writer *writer, const char *key, int8_t value);
void gguf_writer_set_u16(gguf_writer *writer, const char *key, uint16_t value);
void gguf_writer_set_i16(gguf_writer *writer, const char *key, int16_t value);
void gguf_writer_set_i64(gguf_writer *writer, const char *key, int64_t value);
void gguf_writer_set_f64(gguf_writer *writer, const char *key, double value);
void gguf_writer_set_arr(gguf_writer *writer, const char *key, gguf_type elem_type, const void *values, uint64_t count);
/* Copies key and value of metadata entry kv of an open file (for quantize). */
void gguf_writer_copy_kv(gguf_writer *writer, const gguf_file *file, uint64_t kv);

/* Adds a tensor; data (nbytes, already in `type`'s format) is copied. */
void gguf_writer_add_tensor(gguf_writer *writer, const char *name, uint32_t type,
                            uint32_t n_dims, const int64_t *ne, const void *data, uint64_t nbytes);

/* Streaming alternative for models larger than memory: declare every tensor
 * with gguf_writer_declare_tensor() (no data), then gguf_writer_begin()
 * writes the header, then gguf_writer_append() the data of each declared
 * tensor in declaration order (in as many pieces as wanted), then
 * gguf_writer_end(). Returns false and a reason in err on failure. */
void gguf_writer_declare_tensor(gguf_writer *writer, const char *name, uint32_t type,
                                uint32_t n_dims, const int64_t *ne);
bool gguf_writer_begin(gguf_writer *writer, const char *path, char *err, size_t err_size);
bool gguf_writer_append(gguf_writer *writer, const void *data, uint64_t nbytes, char *err, size_t err_size);
bool gguf_writer_end(gguf_writer *writer, char *err, size_t err_size);

/* Writes everything added with gguf_writer_add_tensor() in one go: version 3,
 * alignment 32 (or general.alignment if set). */
bool gguf_writer_write(gguf_writer *writer, const char *path, char *err, size_t err_size);

#endif
