/* quantize_model.c: `greta quantize` as a library call, and the per-tensor
 * type rule (plain types and llama.cpp's Q2_K / Q3_K_M / Q4_K_M / Q5_K_M mixes).
 * docs/quantize.md explains every decision and where it comes from. */
#include "tools/quantize_model.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "format/gguf.h"
#include "format/quant.h"

/* ---- Targets ---- */

/* llama.cpp's LLAMA_FTYPE values (include/llama.h). */
enum {
    FTYPE_ALL_F32 = 0,
    FTYPE_MOSTLY_F16 = 1,
    FTYPE_MOSTLY_Q4_0 = 2,
    FTYPE_MOSTLY_Q4_1 = 3,
    FTYPE_MOSTLY_Q8_0 = 7,
    FTYPE_MOSTLY_Q2_K = 10,
    FTYPE_MOSTLY_Q3_K_S = 11,
    FTYPE_MOSTLY_Q3_K_M = 12,
    FTYPE_MOSTLY_Q4_K_S = 14,
    FTYPE_MOSTLY_Q4_K_M = 15,
    FTYPE_MOSTLY_Q5_K_S = 16,
    FTYPE_MOSTLY_Q5_K_M = 17,
    FTYPE_MOSTLY_Q6_K = 18,
    FTYPE_MOSTLY_BF16 = 32,
};

static const quantize_target targets[] = {
    {"F32", QT_F32, false, FTYPE_ALL_F32},
    {"F16", QT_F16, false, FTYPE_MOSTLY_F16},
    {"BF16", QT_BF16, false, FTYPE_MOSTLY_BF16},
    {"Q8_0", QT_Q8_0, false, FTYPE_MOSTLY_Q8_0},
    {"Q4_0", QT_Q4_0, false, FTYPE_MOSTLY_Q4_0},
    {"Q4_1", QT_Q4_1, false, FTYPE_MOSTLY_Q4_1},
    /* Pure K types: llama.cpp has no ftype for them; `llama-quantize --pure`
     * with Q4_K_S / Q5_K_S writes these file types. */
    {"Q3_K", QT_Q3_K, false, FTYPE_MOSTLY_Q3_K_S},
    {"Q4_K", QT_Q4_K, false, FTYPE_MOSTLY_Q4_K_S},
    {"Q5_K", QT_Q5_K, false, FTYPE_MOSTLY_Q5_K_S},
    {"Q6_K", QT_Q6_K, false, FTYPE_MOSTLY_Q6_K},
    /* llama.cpp's "Q2_K" is a mix (it has no pure Q2_K ftype); greta keeps the name. */
    {"Q2_K", QT_Q2_K, true, FTYPE_MOSTLY_Q2_K},
    {"Q3_K_M", QT_Q3_K, true, FTYPE_MOSTLY_Q3_K_M},
    {"Q4_K_M", QT_Q4_K, true, FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_M", QT_Q5_K, true, FTYPE_MOSTLY_Q5_K_M},
};
#define N_TARGETS (sizeof targets / sizeof targets[0])

bool quantize_target_find(const char *name, quantize_target *out) {
    for (size_t i = 0; i < N_TARGETS; i++) {
        if (strcasecmp(name, targets[i].name) == 0) {
            *out = targets[i];
            return true;
        }
    }
    return false;
}

const char *quantize_target_list(void) {
    return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q3_K, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M";
}

/* ---- The per-tensor rule ---- */

int quantize_layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    long layer = 0;
    while (*p >= '0' && *p <= '9') {
        layer = layer * 10 + (*p - '0');
        if (layer > 1000000) return -1;
        p++;
    }
    return *p == '.' ? (int)layer : -1;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t ns = strlen(s), nx = strlen(suffix);
    return ns >= nx && strcmp(s + ns - nx, suffix) == 0;
}

bool quantize_tensor_is_weight(const char *name, uint32_t n_dims) {
    if (n_dims < 2) return false;
    if (!ends_with(name, "weight")) return false;
    return strstr(name, "_norm.weight") == NULL;
}

bool quantize_use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool is_block_quantized(uint32_t type) {
    return type != QT_F32 && type != QT_F16 && type != QT_BF16;
}

/* llama.cpp's tensor_type_fallback: a row length the block does not divide. */
static int fallback_type(uint32_t type, int64_t row_len) {
    if (row_len % quant_block_size(type) == 0) return (int)type;
    uint32_t next;
    switch (type) {
    case QT_Q2_K:
    case QT_Q3_K: next = QT_Q4_0; break;
    case QT_Q4_K: next = QT_Q5_0; break;
    case QT_Q5_K: next = QT_Q5_1; break;
    case QT_Q6_K: next = QT_Q8_0; break;
    default: return -1; /* llama.cpp: "no tensor type fallback is defined" */
    }
    if (row_len % quant_block_size(next) != 0) return QT_F16;
    return (int)next;
}

/* attn_v under each mix (llama.cpp's ATTENTION_V branch). */
static uint32_t mix_attn_v(const quantize_target *target, const quantize_model_info *info, int ordinal) {
    uint32_t type = target->base_type;
    if (target->file_type == FTYPE_MOSTLY_Q2_K) type = info->n_gqa >= 4 ? QT_Q4_K : QT_Q3_K;
    else if (target->file_type == FTYPE_MOSTLY_Q3_K_M) type = ordinal < 2 ? QT_Q5_K : QT_Q4_K;
    else if (quantize_use_more_bits(ordinal, info->n_attn_v)) type = QT_Q6_K; /* Q4_K_M, Q5_K_M */
    if (info->is_70b && (type == QT_Q3_K || type == QT_Q4_K)) type = QT_Q5_K;
    return type;
}

/* ffn_down under each mix (llama.cpp's FFN_DOWN branch, llama architecture). */
static uint32_t mix_ffn_down(const quantize_target *target, const quantize_model_info *info, int ordinal) {
    switch (target->file_type) {
    case FTYPE_MOSTLY_Q2_K: return QT_Q3_K;
    case FTYPE_MOSTLY_Q3_K_M: return ordinal < info->n_layer / 16 ? QT_Q5_K : QT_Q4_K;
    default: return quantize_use_more_bits(ordinal, info->n_layer) ? QT_Q6_K : target->base_type;
    }
}

/* The mix part of llama.cpp's llama_tensor_get_type_impl for the llama
 * architecture and ftypes Q2_K / Q3_K_M / Q4_K_M / Q5_K_M (no experts). */
static uint32_t mix_type(const quantize_target *target, const quantize_model_info *info,
                         const char *name, int ordinal, int64_t row_len) {
    uint32_t type = target->base_type;
    bool is_output = strcmp(name, "output.weight") == 0;
    bool is_embd = strcmp(name, "token_embd.weight") == 0;
    if (is_output || (info->tied && is_embd)) {
        if (row_len % quant_block_size(type) != 0) return QT_Q8_0;
        return QT_Q6_K;
    }
    if (is_embd) return type;
    if (strstr(name, "attn_v.weight")) return mix_attn_v(target, info, ordinal);
    if (strstr(name, "ffn_down")) return mix_ffn_down(target, info, ordinal);
    if (strstr(name, "attn_output.weight")) {
        if (target->file_type == FTYPE_MOSTLY_Q2_K) return QT_Q3_K;
        if (target->file_type == FTYPE_MOSTLY_Q3_K_M) return QT_Q4_K;
    }
    return type;
}

int quantize_tensor_type(const quantize_target *target, const quantize_model_info *info,
                         const char *name, int ordinal, int64_t row_len) {
    uint32_t type = target->base_type;
    if (!is_block_quantized(type)) return (int)type;
    if (target->mix) type = mix_type(target, info, name, ordinal, row_len);
    return fallback_type(type, row_len);
}

/* ---- Q5_0 / Q5_1 (fallback types; quant.c does not write them) ----
 * ggml's reference quantizers quantize_row_q5_0_ref / quantize_row_q5_1_ref:
 * block of 32, values j and j+16 share a byte of low nibbles, the fifth
 * bits go into a 32-bit mask. Bit-exact against the gguf package's
 * quantizer (scripts/oracles/check_gguf_readable.py --check-q5). */

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Block: f16 d, u32 qh, 16 bytes qs (22 bytes). Values: d * (q - 16). */
static void quantize_block_q5_0(const float *x, uint8_t *out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        float x0 = x[j] * id, x1 = x[16 + j] * id;
        float f0 = x0 + 16.5f, f1 = x1 + 16.5f;
        uint8_t q0 = (uint8_t)(int8_t)(f0 < 31.0f ? f0 : 31.0f);
        uint8_t q1 = (uint8_t)(int8_t)(f1 < 31.0f ? f1 : 31.0f);
        out[6 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
        qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
    }
    put_u16(out, quant_f32_to_f16(d));
    put_u32(out + 2, qh);
}

/* Block: f16 d, f16 m, u32 qh, 16 bytes qs (24 bytes). Values: d * q + m. */
static void quantize_block_q5_1(const float *x, uint8_t *out) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        uint8_t q0 = (uint8_t)((x[j] - min) * id + 0.5f);
        uint8_t q1 = (uint8_t)((x[16 + j] - min) * id + 0.5f);
        out[8 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
        qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
    }
    put_u16(out, quant_f32_to_f16(d));
    put_u16(out + 2, quant_f32_to_f16(min));
    put_u32(out + 4, qh);
}

bool quantize_type_writable(uint32_t type) {
    return type == QT_Q5_0 || type == QT_Q5_1 || quant_type_quantizable(type);
}

size_t quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    if (type == QT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return (size_t)n * sizeof(float);
    }
    if (type == QT_Q5_0 || type == QT_Q5_1) {
        if (n % 32 != 0) return 0;
        size_t block_bytes = type == QT_Q5_0 ? 22 : 24;
        uint8_t *out = dst;
        for (int64_t b = 0; b < n / 32; b++) {
            if (type == QT_Q5_0) quantize_block_q5_0(src + b * 32, out + b * block_bytes);
            else quantize_block_q5_1(src + b * 32, out + b * block_bytes);
        }
        return (size_t)(n / 32) * block_bytes;
    }
    return quant_quantize(type, src, dst, n);
}

/* ---- Threads ---- */

int quantize_thread_count(int n_threads) {
    if (n_threads > 0) return n_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > 256 ? 256 : (int)n;
}

typedef struct {
    quantize_range_fn fn;
    void *ctx;
    int64_t first, end;
} range_job;

static void *run_range(void *arg) {
    range_job *job = arg;
    job->fn(job->ctx, job->first, job->end);
    return NULL;
}

void quantize_parallel(int n_threads, int64_t n_items, quantize_range_fn fn, void *ctx) {
    if (n_items <= 0) return;
    if (n_threads > n_items) n_threads = (int)n_items;
    if (n_threads <= 1) {
        fn(ctx, 0, n_items);
        return;
    }
    range_job *jobs = calloc((size_t)n_threads, sizeof *jobs);
    pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
    bool *started = calloc((size_t)n_threads, sizeof *started);
    if (!jobs || !threads || !started) {
        free(jobs);
        free(threads);
        free(started);
        fn(ctx, 0, n_items);
        return;
    }
    for (int t = 0; t < n_threads; t++) {
        jobs[t] = (range_job){fn, ctx, n_items * t / n_threads, n_items * (t + 1) / n_threads};
        if (t > 0) started[t] = pthread_create(&threads[t], NULL, run_range, &jobs[t]) == 0;
    }
    run_range(&jobs[0]);
    for (int t = 1; t < n_threads; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else run_range(&jobs[t]); /* could not start: do it here */
    }
    free(jobs);
    free(threads);
    free(started);
}

/* ---- Whole-file conversion ---- */

/* Tells the kernel the mapped input pages [data, data + nbytes) already
 * converted are not needed any more, so resident memory stays bounded on
 * big models (the mapping is read-only: pages are re-read if touched again;
 * only pages wholly inside the range are dropped). */
static void release_input(const void *data, uint64_t nbytes) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || nbytes == 0) return;
    uintptr_t start = (uintptr_t)data, end = start + (uintptr_t)nbytes;
    uintptr_t first = (start + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t last = end / (uintptr_t)page * (uintptr_t)page;
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
}

/* One input tensor and what becomes of it. */
typedef struct {
    const gguf_tensor *in;
    uint32_t out_type;
    bool convert; /* false: bytes copied unchanged */
} tensor_plan;

static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Ordinal of tensor i among tensors of the same kind (suffix), layer order. */
static int kind_ordinal(const gguf_file *file, const char *name, const char *kind) {
    int layer = quantize_layer_of(name);
    int ordinal = 0;
    for (uint64_t j = 0; j < gguf_tensor_count(file); j++) {
        const char *other = gguf_get_tensor(file, j)->name;
        if (!strstr(other, kind)) continue;
        int other_layer = quantize_layer_of(other);
        if (other_layer < layer || (other_layer == layer && strcmp(other, name) < 0)) ordinal++;
    }
    return ordinal;
}

static bool model_info_of(const gguf_file *file, const quantize_target *target, quantize_model_info *info,
                          char *err, size_t err_size) {
    memset(info, 0, sizeof *info);
    info->tied = gguf_find_tensor(file, "output.weight") == NULL;
    int n_ffn_down = 0;
    for (uint64_t i = 0; i < gguf_tensor_count(file); i++) {
        const char *name = gguf_get_tensor(file, i)->name;
        if (strstr(name, "attn_v.weight")) info->n_attn_v++;
        if (strstr(name, "ffn_down")) n_ffn_down++;
    }
    info->n_layer = n_ffn_down;
    gguf_str arch = {0};
    if (!gguf_get_str(file, "general.architecture", &arch)) return true;
    char key[160];
    uint64_t value = 0;
    int n = snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 100 ? arch.len : 100), arch.ptr);
    if (n > 0 && gguf_get_uint(file, key, &value) && value < 100000) info->n_layer = (int)value;
    uint64_t n_head = 0, n_head_kv = 0;
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)(arch.len < 100 ? arch.len : 100), arch.ptr);
    bool has_head = gguf_get_uint(file, key, &n_head);
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)(arch.len < 100 ? arch.len : 100), arch.ptr);
    bool has_head_kv = gguf_get_uint(file, key, &n_head_kv);
    info->is_70b = gguf_str_eq(arch, "llama") && info->n_layer == 80 && has_head && has_head_kv &&
                   n_head != n_head_kv;
    if (has_head && has_head_kv && n_head_kv > 0 && n_head / n_head_kv < 1000) info->n_gqa = (int)(n_head / n_head_kv);
    snprintf(key, sizeof key, "%.*s.expert_count", (int)(arch.len < 100 ? arch.len : 100), arch.ptr);
    if (target->mix && gguf_get_uint(file, key, &value) && value > 1) {
        format_error(err, err_size, "%s: mixture-of-experts models (%s = %llu) are not supported",
                target->name, key, (unsigned long long)value);
        return false;
    }
    return true;
}

static bool plan_tensors(const gguf_file *file, const quantize_target *target, tensor_plan *plans,
                         char *err, size_t err_size) {
    quantize_model_info info;
    if (!model_info_of(file, target, &info, err, err_size)) return false;
    for (uint64_t i = 0; i < gguf_tensor_count(file); i++) {
        const gguf_tensor *t = gguf_get_tensor(file, i);
        plans[i] = (tensor_plan){t, t->type, false};
        if (!quantize_tensor_is_weight(t->name, t->n_dims)) continue;
        int ordinal = 0;
        if (strstr(t->name, "attn_v.weight")) ordinal = kind_ordinal(file, t->name, "attn_v.weight");
        else if (strstr(t->name, "ffn_down")) ordinal = kind_ordinal(file, t->name, "ffn_down");
        int type = quantize_tensor_type(target, &info, t->name, ordinal, t->ne[0]);
        if (type < 0) {
            format_error(err, err_size, "tensor '%s': row length %lld is not a multiple of %s's block of %lld",
                    t->name, (long long)t->ne[0], quant_type_name(target->base_type),
                    (long long)quant_block_size(target->base_type));
            return false;
        }
        plans[i].out_type = (uint32_t)type;
        if (plans[i].out_type == t->type) continue; /* llama.cpp: nothing to do */
        if (!quant_type_supported(t->type)) {
            format_error(err, err_size, "tensor '%s' has type %s, which greta cannot convert", t->name,
                    quant_type_name(t->type));
            return false;
        }
        plans[i].convert = true;
    }
    return true;
}

/* Rows converted per step: about 64 MiB of output or input, whichever is
 * larger, at least one row. */
static int64_t chunk_rows(size_t in_row_bytes, size_t out_row_bytes, int64_t n_rows) {
    size_t row = in_row_bytes > out_row_bytes ? in_row_bytes : out_row_bytes;
    int64_t rows = (int64_t)((64u << 20) / (row ? row : 1));
    if (rows < 1) rows = 1;
    return rows < n_rows ? rows : n_rows;
}

typedef struct {
    const uint8_t *src; /* first row of the chunk */
    uint8_t *dst;
    uint32_t in_type, out_type;
    int64_t row_len;
    size_t in_row_bytes, out_row_bytes;
    bool failed;
} convert_job;

static void convert_rows(void *arg, int64_t first, int64_t end) {
    convert_job *job = arg;
    float *row = malloc((size_t)job->row_len * sizeof(float));
    if (!row) {
        job->failed = true;
        return;
    }
    for (int64_t r = first; r < end; r++) {
        quant_dequantize(job->in_type, job->src + (size_t)r * job->in_row_bytes, row, job->row_len);
        quantize_row(job->out_type, row, job->dst + (size_t)r * job->out_row_bytes, job->row_len);
    }
    free(row);
}

static bool write_converted(gguf_writer *writer, const tensor_plan *plan, int n_threads, char *err,
                            size_t err_size) {
    const gguf_tensor *t = plan->in;
    int64_t row_len = t->ne[0];
    int64_t n_rows = gguf_tensor_nelements(t) / (row_len ? row_len : 1);
    size_t in_row_bytes = quant_row_bytes(t->type, row_len);
    size_t out_row_bytes = quant_row_bytes(plan->out_type, row_len);
    if (in_row_bytes == 0 || out_row_bytes == 0) {
        format_error(err, err_size, "tensor '%s': cannot convert rows of %lld from %s to %s", t->name,
                (long long)row_len, quant_type_name(t->type), quant_type_name(plan->out_type));
        return false;
    }
    int64_t step = chunk_rows(in_row_bytes, out_row_bytes, n_rows);
    uint8_t *buffer = malloc((size_t)step * out_row_bytes);
    if (!buffer) {
        format_error(err, err_size, "out of memory converting tensor '%s'", t->name);
        return false;
    }
    bool ok = true;
    for (int64_t first = 0; ok && first < n_rows; first += step) {
        int64_t rows = n_rows - first < step ? n_rows - first : step;
        convert_job job = {(const uint8_t *)t->data + (size_t)first * in_row_bytes, buffer, t->type,
                           plan->out_type, row_len, in_row_bytes, out_row_bytes, false};
        quantize_parallel(n_threads, rows, convert_rows, &job);
        if (job.failed) {
            format_error(err, err_size, "out of memory converting tensor '%s'", t->name);
            ok = false;
        } else {
            ok = gguf_writer_append(writer, buffer, (uint64_t)rows * out_row_bytes, err, err_size);
        }
        release_input(job.src, (uint64_t)rows * in_row_bytes);
    }
    free(buffer);
    return ok;
}

static void copy_metadata(gguf_writer *writer, const gguf_file *file, const quantize_target *target) {
    for (uint64_t kv = 0; kv < gguf_kv_count(file); kv++) gguf_writer_copy_kv(writer, file, kv);
    gguf_writer_set_u32(writer, "general.file_type", target->file_type);
    gguf_writer_set_u32(writer, "general.quantization_version", 2);
}

static bool write_output(const gguf_file *file, const char *out_path, const quantize_target *target,
                         const tensor_plan *plans, const quantize_options *options, char *err,
                         size_t err_size) {
    gguf_writer *writer = gguf_writer_new();
    if (!writer) {
        format_error(err, err_size, "out of memory");
        return false;
    }
    copy_metadata(writer, file, target);
    uint64_t n_tensors = gguf_tensor_count(file);
    for (uint64_t i = 0; i < n_tensors; i++) {
        const gguf_tensor *t = plans[i].in;
        gguf_writer_declare_tensor(writer, t->name, plans[i].out_type, t->n_dims, t->ne);
    }
    char reason[512] = "";
    bool ok = gguf_writer_begin(writer, out_path, reason, sizeof reason);
    if (!ok) format_error(err, err_size, "%s: %s", out_path, reason);
    int n_threads = quantize_thread_count(options ? options->n_threads : 0);
    FILE *log = options ? options->log : NULL;
    for (uint64_t i = 0; ok && i < n_tensors; i++) {
        const tensor_plan *plan = &plans[i];
        if (plan->convert) {
            ok = write_converted(writer, plan, n_threads, reason, sizeof reason);
        } else {
            ok = gguf_writer_append(writer, plan->in->data, plan->in->nbytes, reason, sizeof reason);
        }
        release_input(plan->in->data, plan->in->nbytes);
        if (!ok) format_error(err, err_size, "%s: %s", out_path, reason);
        else if (log) {
            fprintf(log, "[%4llu/%llu] %-32s %-5s -> %s%s\n", (unsigned long long)(i + 1),
                    (unsigned long long)n_tensors, plan->in->name, quant_type_name(plan->in->type),
                    quant_type_name(plan->out_type), plan->convert ? "" : " (copied)");
            fflush(log);
        }
    }
    if (ok && !gguf_writer_end(writer, reason, sizeof reason)) {
        format_error(err, err_size, "%s: %s", out_path, reason);
        ok = false;
    }
    gguf_writer_free(writer);
    /* On failure the writer removes its temporary file: no partial output. */
    return ok;
}

bool quantize_model_file(const char *in_path, const char *out_path, const quantize_target *target,
                         const quantize_options *options, char *err, size_t err_size) {
    char reason[512] = "";
    gguf_file *file = NULL;
    if (gguf_open(in_path, &file, reason, sizeof reason) != GRETA_OK) {
        format_error(err, err_size, "%s: %s", in_path, reason);
        return false;
    }
    if (same_file(in_path, out_path)) {
        format_error(err, err_size, "%s: the output would overwrite the input", out_path);
        gguf_close(file);
        return false;
    }
    uint64_t n_tensors = gguf_tensor_count(file);
    tensor_plan *plans = calloc(n_tensors ? n_tensors : 1, sizeof *plans);
    bool ok = plans != NULL;
    if (!ok) format_error(err, err_size, "out of memory");
    if (ok) {
        ok = plan_tensors(file, target, plans, reason, sizeof reason);
        if (!ok) format_error(err, err_size, "%s: %s", in_path, reason);
    }
    if (ok) {
        ok = write_output(file, out_path, target, plans, options, err, err_size);
    }
    free(plans);
    gguf_close(file);
    return ok;
}
