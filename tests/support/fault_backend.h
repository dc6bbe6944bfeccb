/* fault_backend.h: planted faults for testing the audits (docs/trace.md
 * "Planted faults"), as a backend that wraps the cpu backend's operations
 * and perturbs their inputs or outputs. The library has no fault code.
 *
 * fault_backend_install() makes every cpu session created afterwards use
 * the wrapper (backend_registry_override_for_tests); fault_backend_set()
 * picks the fault. With FAULT_NONE the wrapper computes exactly what cpu
 * does. Each fault imitates a classic inference-engine bug and names the
 * audit that must catch it and where:
 *   k_transposed  K projection rows in the wrong (HF) order inside each head,
 *                 as if the converter's Q/K permutation were missed: backends,
 *                 layer 0, point k
 *   decode_pos    single-token forwards after a prefill (position > 0) run at
 *                 position + 1 (RoPE and KV): parity, layer 0, q_rope
 *   rope_pos      RoPE angles from the row index within the forward instead
 *                 of the position (right only for a prefill from 0): parity,
 *                 layer 0, q_rope
 *   stale_kv      single-row forwards do not store their K/V row into the
 *                 layer-1 cache, so attention reads a stale row: parity,
 *                 layer 1, attn_out
 *   rms_eps       RMSNorm epsilon 1000x the model's: backends, layer 0,
 *                 attn_norm
 *   embed_row     the embedding of token t read from row t + 1: backends,
 *                 layer 0, x_in */
#ifndef GRETA_TESTS_FAULT_BACKEND_H
#define GRETA_TESTS_FAULT_BACKEND_H

typedef enum {
    FAULT_NONE = 0,
    FAULT_K_TRANSPOSED,
    FAULT_DECODE_POS,
    FAULT_ROPE_POS,
    FAULT_STALE_KV,
    FAULT_RMS_EPS,
    FAULT_EMBED_ROW,
    FAULT_COUNT
} fault_kind;

/* "none", "k_transposed", ...; and back (-1 if unknown). */
const char *fault_name(fault_kind fault);
int fault_from_name(const char *name);

/* Routes cpu sessions created from now on through the fault backend. */
void fault_backend_install(void);
/* The planted fault (FAULT_NONE at start). */
void fault_backend_set(fault_kind fault);

#endif
