/* quant_impl.h: helpers shared by the quant_*.c files (not a public API). */
#ifndef GRETA_QUANT_IMPL_H
#define GRETA_QUANT_IMPL_H

#include <stdint.h>

/* Little-endian u16 and f16 fields of a block. */
uint16_t quant_read_u16(const uint8_t *p);
float quant_read_f16(const uint8_t *p);

/* Scale and min j (0..7) of the 12-byte packed Q4_K/Q5_K scales. */
void quant_k4_scale_min(int j, const uint8_t *packed, uint8_t *scale, uint8_t *min);

#endif
