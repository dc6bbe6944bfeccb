/* backend_registry.h: the one table of backends (name, precision, whether
 * this build has it). The engine creates sessions from it; the API's
 * greta_backend_* calls answer from it, and through them the CLI and the
 * audits. Nothing else keeps a list of backends. */
#ifndef GRETA_BACKEND_REGISTRY_H
#define GRETA_BACKEND_REGISTRY_H

#include <stdbool.h>

#include "backend/backend.h"
#include "greta.h"

typedef struct {
    greta_backend id;
    const char *name;        /* "cpu", "ref", "cuda" */
    const char *precision;   /* "f32", "f64" */
    int32_t value_bytes;     /* bytes of one activation / KV value */
    bool available;          /* built into this library */
    bool threaded;           /* uses the session's thread count (else 1 thread) */
    const char *unavailable; /* why not, when !available */
    const backend_ops *ops;  /* NULL when !available */
} backend_entry;

/* Entries in id order (entry i has id i): backend_registry_at(0 .. count - 1). */
int backend_registry_count(void);
const backend_entry *backend_registry_at(int index);
/* NULL if no backend has that id / name. */
const backend_entry *backend_registry_find(greta_backend id);
const backend_entry *backend_registry_find_name(const char *name);

/* The operations sessions of backend id use: the entry's, or the ones a
 * test installed with backend_registry_override_for_tests. */
const backend_ops *backend_registry_ops(const backend_entry *entry);

/* Test hook, not public API: every session created afterwards with
 * backend id uses ops (NULL restores the built-in ones). The one piece of
 * process-wide mutable state in the library; tests/support/fault_backend.c
 * uses it to wrap the cpu backend. Not thread-safe: call it before
 * creating sessions. */
void backend_registry_override_for_tests(greta_backend id, const backend_ops *ops);

#endif
