/* fuzz_gguf.c: libFuzzer harness for the GGUF reader.
 *
 * Each input is written to an in-memory file (memfd), opened with
 * gguf_open() through /proc/self/fd, and, when it opens, every key, value,
 * array element and tensor is touched (first and last data byte included),
 * so a reader that lets a bad offset through shows up under ASan. A refusal
 * must leave a one-line message. Build and run: make fuzz, fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/gguf.h"

static uint64_t walk(const gguf_file *f) {
    uint64_t sink = 0;
    for (uint64_t kv = 0; kv < gguf_kv_count(f); kv++) {
        gguf_str key = gguf_kv_key(f, kv);
        if (key.len) sink += (uint8_t)key.ptr[key.len - 1];
        int64_t i;
        uint64_t u, size;
        double d;
        bool b;
        gguf_str s;
        sink += gguf_kv_get_int(f, kv, &i) + gguf_kv_get_uint(f, kv, &u) + gguf_kv_get_float(f, kv, &d) +
                gguf_kv_get_bool(f, kv, &b) + gguf_kv_get_str(f, kv, &s);
        const uint8_t *raw = gguf_kv_value_bytes(f, kv, &size);
        if (size) sink += raw[0] + raw[size - 1];
        uint64_t n = gguf_arr_count(f, kv);
        for (uint64_t e = 0; e < n; e++) {
            gguf_str es = gguf_arr_str(f, kv, e);
            if (es.len) sink += (uint8_t)es.ptr[0] + (uint8_t)es.ptr[es.len - 1];
            sink += (uint64_t)gguf_arr_int(f, kv, e);
            sink += gguf_arr_float(f, kv, e) != 0.0;
        }
        sink += gguf_arr_type(f, kv) + strlen(gguf_type_name(gguf_kv_type(f, kv)));
        const uint8_t *elems = gguf_arr_data(f, kv);
        uint64_t elem_size = gguf_type_size(gguf_arr_type(f, kv));
        if (elems && n) sink += elems[0] + elems[n * elem_size - 1];
        char *copy = gguf_str_dup(key);
        if (copy) {
            /* Keys are unique and free of NUL bytes: lookup must find this one. */
            if (gguf_find_key(f, copy) != (int64_t)kv) abort();
            sink += gguf_get_int(f, copy, &i) + gguf_get_uint(f, copy, &u) + gguf_get_float(f, copy, &d) +
                    gguf_get_bool(f, copy, &b) + gguf_get_str(f, copy, &s);
            free(copy);
        }
    }
    /* Properties of an accepted file: every tensor aligned, inside the data
     * section, and no two overlapping. */
    uint64_t data_size = gguf_file_size(f) - gguf_data_offset(f);
    if (gguf_data_offset(f) > gguf_file_size(f) && gguf_tensor_count(f) > 0) abort();
    for (uint64_t t = 0; t < gguf_tensor_count(f); t++) {
        const gguf_tensor *a = gguf_get_tensor(f, t);
        if (a->offset % gguf_alignment(f) != 0 || a->offset > data_size || a->nbytes > data_size - a->offset) abort();
        if (a->n_dims < 1 || a->n_dims > GGUF_MAX_DIMS) abort();
        for (uint64_t o = t + 1; o < gguf_tensor_count(f) && o < 1000; o++) {
            const gguf_tensor *c = gguf_get_tensor(f, o);
            if (a->nbytes && c->nbytes && a->offset < c->offset + c->nbytes && c->offset < a->offset + a->nbytes)
                abort();
        }
    }
    sink += gguf_version(f);
    for (uint64_t t = 0; t < gguf_tensor_count(f); t++) {
        const gguf_tensor *tensor = gguf_get_tensor(f, t);
        sink += (uint64_t)gguf_tensor_nelements(tensor);
        if (tensor->nbytes)
            sink += ((const uint8_t *)tensor->data)[0] + ((const uint8_t *)tensor->data)[tensor->nbytes - 1];
        if (gguf_find_tensor(f, tensor->name) != tensor) abort();
    }
    return sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    char path[64], err[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    if (f) {
        volatile uint64_t sink = walk(f);
        (void)sink;
        gguf_close(f);
    } else if (err[0] == 0 || strchr(err, '\n')) {
        abort(); /* a refusal must say why, on one line */
    }
    close(fd);
    return 0;
}
