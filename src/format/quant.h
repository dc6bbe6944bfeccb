/* quant.h: llama.cpp's tensor block formats on the CPU.
 *
 * Every format stores a row of n values (n a multiple of the block size) as
 * n / block_size blocks of type_size bytes, little-endian, exactly as ggml
 * lays them out. This module dequantizes and quantizes; it knows nothing of
 * files or models. (Dot products belong to the backends: the cpu backend's
 * kernels decode blocks themselves, bit-exact with quant_dequantize.)
 *
 * Numerics: dequantization is bit-exact with ggml / the `gguf` Python
 * package. */
#ifndef GRETA_QUANT_H
#define GRETA_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos. */
enum {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_BF16 = 30,
    QT_COUNT_MAX = 64 /* ids at or above this are unknown */
};

/* Name of a type id ("Q4_K"); "unknown" for an id ggml does not define.
 * Known-but-unsupported ids (IQ2_XXS, TQ1_0, MXFP4, ...) get their real name. */
const char *quant_type_name(uint32_t type);

/* Type id for a name ("q4_k" or "Q4_K"); -1 if not a supported type name. */
int quant_type_from_name(const char *name);

/* True for the 13 types greta reads: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
 * Q2_K Q3_K Q4_K Q5_K Q6_K. */
bool quant_type_supported(uint32_t type);

/* True for the types greta can write: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q2_K Q3_K Q4_K Q5_K Q6_K. */
bool quant_type_quantizable(uint32_t type);

/* Values per block (1 for F32/F16/BF16, 32 or 256) and bytes per block;
 * 0 for an unsupported type. */
int64_t quant_block_size(uint32_t type);
int64_t quant_type_size(uint32_t type);

/* Bytes of a row of n values; 0 if the type is unsupported or n is not a
 * multiple of the block size. */
size_t quant_row_bytes(uint32_t type, int64_t n);

/* dst[0..n) = the n values stored at src. The type must be supported and n
 * a multiple of its block size (check quant_row_bytes() first); otherwise
 * dst[0..n) is filled with NaN so the mistake cannot pass unnoticed. */
void quant_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* dst[0..quant_block_size(type)) = the values of the one block at `block`,
 * bit-exact with quant_dequantize(). For matmul kernels that decode a block
 * once and use it against several vectors. */
void quant_dequantize_block(uint32_t type, const void *block, float *dst);

/* Quantizes n floats into dst (quant_row_bytes(type, n) bytes) the way
 * llama.cpp's reference quantizer does (no importance matrix). Returns the
 * bytes written, 0 if the type is not quantizable or n is not a multiple of
 * the block size. */
size_t quant_quantize(uint32_t type, const float *src, void *dst, int64_t n);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

#endif
