/* xorshift.c: implementation of tests/support/xorshift.h. */
#include "xorshift.h"

uint32_t xorshift_u32(xorshift *r) {
    r->state ^= r->state << 13;
    r->state ^= r->state >> 7;
    r->state ^= r->state << 17;
    return (uint32_t)(r->state >> 16);
}

float xorshift_uniform(xorshift *r) {
    return (float)(xorshift_u32(r) % 2000001) / 1e6f - 1.0f;
}
