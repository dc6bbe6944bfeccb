/* faults.h: planted faults for testing the audits (docs/trace.md "Planted
 * faults"). The hooks exist only in the test build of the library
 * (build/faults/, compiled with -DGRETA_FAULTS, linked into
 * tests/test_faults); the normal library has no fault code at all.
 *
 * Each fault imitates a classic inference-engine bug in the cpu backend or
 * the engine, and names the audit that must catch it and where:
 *   k_transposed  K projection rows in the wrong (HF) order inside each head,
 *                 as if the converter's Q/K permutation were missed: backends,
 *                 layer 0, point k
 *   decode_pos    single-token evals after a prefill run at pos_id + 1
 *                 (RoPE and KV write): parity, layer 0, q_rope
 *   rope_pos      RoPE angles from the row index within the forward call
 *                 instead of pos_id (right only for a prefill from 0): parity,
 *                 layer 0, q_rope
 *   stale_kv      single-token evals do not write their K/V row into the
 *                 layer-1 cache, so attention reads a stale row: parity,
 *                 layer 1, attn_out
 *   rms_eps       RMSNorm epsilon 1000x the model's: backends, layer 0,
 *                 attn_norm
 *   embed_row     the embedding of token t read from row t + 1: backends,
 *                 layer 0, x_in */
#ifndef GRETA_FAULTS_H
#define GRETA_FAULTS_H

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

#ifdef GRETA_FAULTS
/* The planted fault (test configuration, process-wide; FAULT_NONE at start). */
void faults_set(fault_kind fault);
fault_kind faults_active(void);
#endif

#endif
