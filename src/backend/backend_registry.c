/* backend_registry.c: the table of backends (backend_registry.h). */
#include "backend/backend_registry.h"

#include <string.h>

static const backend_entry entries[] = {
    {GRETA_BACKEND_CPU, "cpu", "f32", 4, true, true, "", &backend_cpu_ops},
    {GRETA_BACKEND_REF, "ref", "f64", 8, true, true, "", &backend_ref_ops}, /* threads: its matrix products */
#ifdef GRETA_CUDA
    /* activations f32; the KV cache is f16 (docs/cuda.md) */
    {GRETA_BACKEND_CUDA, "cuda", "f32", 4, true, false, "", &backend_cuda_ops},
#else
    {GRETA_BACKEND_CUDA, "cuda", "f32", 4, false, true, "greta was not built with CUDA", NULL},
#endif
};

#define N_ENTRIES ((int)(sizeof entries / sizeof entries[0]))

/* Test overrides by entry index (backend_registry_override_for_tests). */
static const backend_ops *overrides[N_ENTRIES];

int backend_registry_count(void) {
    return N_ENTRIES;
}

const backend_entry *backend_registry_at(int index) {
    return index >= 0 && index < N_ENTRIES ? &entries[index] : NULL;
}

const backend_entry *backend_registry_find(greta_backend id) {
    for (int i = 0; i < N_ENTRIES; i++)
        if (entries[i].id == id) return &entries[i];
    return NULL;
}

const backend_entry *backend_registry_find_name(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_ENTRIES; i++)
        if (strcmp(entries[i].name, name) == 0) return &entries[i];
    return NULL;
}

const backend_ops *backend_registry_ops(const backend_entry *entry) {
    int index = (int)(entry - entries);
    if (index >= 0 && index < N_ENTRIES && overrides[index]) return overrides[index];
    return entry->ops;
}

void backend_registry_override_for_tests(greta_backend id, const backend_ops *ops) {
    const backend_entry *entry = backend_registry_find(id);
    if (entry) overrides[entry - entries] = ops;
}
