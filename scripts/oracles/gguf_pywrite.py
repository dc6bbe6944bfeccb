#!/usr/bin/env python3
"""Write a GGUF file with the `gguf` package's GGUFWriter (llama.cpp's writer).

tests/test_gguf.c runs this at test time and checks that greta reads back
exactly these values; keep the two in sync (the C test spells out each value
independently). Contents: one key of every scalar type, arrays of strings,
int32, float32, bool, uint8, a nested array, general.alignment = 64, and
four tensors (F32, F16, Q8_0, Q4_K) whose bytes follow byte_pattern().

usage: gguf_pywrite.py OUT.gguf
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter


def byte_pattern(n, seed):
    """Byte i of a tensor: (i * 37 + seed) mod 256 (tests/test_gguf.c uses the same)."""
    return ((np.arange(n, dtype=np.uint64) * 37 + seed) % 256).astype(np.uint8)


def main():
    w = GGUFWriter(sys.argv[1], arch="llama")  # adds general.architecture = "llama"
    w.add_custom_alignment(64)
    V = GGUFValueType
    w.add_key_value("test.u8", 200, V.UINT8)
    w.add_key_value("test.i8", -100, V.INT8)
    w.add_key_value("test.u16", 60000, V.UINT16)
    w.add_key_value("test.i16", -30000, V.INT16)
    w.add_key_value("test.u32", 4000000000, V.UINT32)
    w.add_key_value("test.i32", -2000000000, V.INT32)
    w.add_key_value("test.f32", 0.1, V.FLOAT32)
    w.add_key_value("test.bool", True, V.BOOL)
    w.add_key_value("test.str", "h\u00e9llo w\u00f6rld", V.STRING)
    w.add_key_value("test.u64", 18446744073709551615, V.UINT64)
    w.add_key_value("test.i64", -9223372036854775808, V.INT64)
    w.add_key_value("test.f64", 3.141592653589793, V.FLOAT64)
    w.add_key_value("test.arr_str", ["a", "", "\u00fcn\u00ef"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("test.arr_i32", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.arr_f32", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.arr_u8", [0, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.nested", [[1, 2], [3]], V.ARRAY)  # int32 elements
    f32 = (np.arange(15, dtype=np.float32) * 0.5).reshape(3, 5)
    w.add_tensor("t.f32", f32)
    f16 = (np.arange(128, dtype=np.float32) / 8).astype(np.float16).reshape(2, 64)
    w.add_tensor("t.f16", f16)
    q8 = byte_pattern(2 * 34 * 2, 11).reshape(2, 68)  # ne = [64, 2]
    w.add_tensor("t.q8_0", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q4k = byte_pattern(144, 5).reshape(1, 144)  # ne = [256, 1]
    w.add_tensor("t.q4_k", q4k, raw_dtype=GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
