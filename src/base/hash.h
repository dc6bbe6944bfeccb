/* hash.h: a keyed hash for tables whose keys come from files (base layer).
 *
 * SipHash-2-4 (Aumasson and Bernstein): with a key the file's author cannot
 * know, they cannot craft keys that all land in one bucket (hash flooding).
 * Every table built from untrusted input draws its own random key. */
#ifndef GRETA_BASE_HASH_H
#define GRETA_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t k0, k1;
} hash_key;

/* A fresh random key (getrandom; the clock and addresses if that fails). */
hash_key hash_random_key(void);
/* SipHash-2-4 of data[0..len) under key. */
uint64_t hash_bytes(hash_key key, const void *data, size_t len);
/* SipHash-2-4 of the 8 little-endian bytes of x. */
uint64_t hash_u64(hash_key key, uint64_t x);

#endif
