/* xorshift.h: the fixed-seed pseudo-random numbers of the cpu kernel tests
 * (test_cpu_f16, test_cpu_bf16, test_cpu_q8, test_cpu_repack): xorshift64
 * (shifts 13, 7, 17), so a seed gives the same values on every run and
 * every machine. Each test program holds its own state. */
#ifndef GRETA_TESTS_XORSHIFT_H
#define GRETA_TESTS_XORSHIFT_H

#include <stdint.h>

typedef struct {
    uint64_t state; /* the seed at first; never 0 */
} xorshift;

/* The next 32 bits: bits 16..47 of the advanced state. */
uint32_t xorshift_u32(xorshift *r);

/* A float in [-1, 1] on a grid of 1e-6: (xorshift_u32 % 2000001) / 1e6 - 1. */
float xorshift_uniform(xorshift *r);

#endif
