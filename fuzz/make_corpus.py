#!/usr/bin/env python3
"""Seed corpus for fuzz/fuzz_gguf.c: small valid GGUF files written with the
`gguf` package (every metadata type, nested arrays, several tensor types,
a vocabulary-only file, alignment 64, version 2). Written to fuzz/corpus/
(git-ignored; fuzz/run.sh runs this first) as .bin files; total well under 100 KB.

usage: fuzz/make_corpus.py
"""
import os
import struct
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
V = GGUFValueType
Q = GGMLQuantizationType


def write(name, build):
    path = os.path.join(OUT, name + ".gguf.tmp")
    w = GGUFWriter(path, arch="llama")
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path, os.path.join(OUT, name + ".bin"))


def tiny_model(w):
    w.add_uint32("llama.embedding_length", 32)
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0, -3.0])
    w.add_tensor("token_embd.weight", np.ones((4, 32), dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(32, dtype=np.float16))
    rows = np.arange(2 * 34, dtype=np.uint8).reshape(2, 34)
    w.add_tensor("blk.0.attn_q.weight", rows, raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.attn_k.weight", np.zeros((1, 144), dtype=np.uint8), raw_dtype=Q.Q4_K)
    w.add_tensor("blk.0.attn_v.weight", np.zeros((1, 20), dtype=np.uint8), raw_dtype=Q.Q4_1)


def every_type(w):
    for vtype, value in [(V.UINT8, 1), (V.INT8, -1), (V.UINT16, 2), (V.INT16, -2), (V.UINT32, 3), (V.INT32, -3),
                         (V.FLOAT32, 0.5), (V.BOOL, True), (V.STRING, "s"), (V.UINT64, 4), (V.INT64, -4),
                         (V.FLOAT64, 0.25)]:
        w.add_key_value("t." + vtype.name.lower(), value, vtype)
    w.add_key_value("t.nested", [[1, 2], [3]], V.ARRAY)
    w.add_key_value("t.strs", ["x", "", "yz"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("t.bools", [True, False], V.ARRAY, sub_type=V.BOOL)


def aligned(w):
    w.add_custom_alignment(64)
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.zeros((2, 18), dtype=np.uint8), raw_dtype=Q.Q4_0)
    w.add_tensor("c", np.zeros((1, 210), dtype=np.uint8), raw_dtype=Q.Q6_K)
    w.add_tensor("d", np.zeros((1, 8), dtype=np.uint16), raw_dtype=Q.BF16)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("tiny-model", tiny_model)
    write("every-type", every_type)
    write("vocab-only", lambda w: w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"]))
    write("aligned-64", aligned)
    # Version 2: same layout, version field 2.
    data = bytearray(open(os.path.join(OUT, "tiny-model.bin"), "rb").read())
    data[4:8] = struct.pack("<I", 2)
    open(os.path.join(OUT, "tiny-model-v2.bin"), "wb").write(bytes(data))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("corpus: %d files, %d bytes" % (len(os.listdir(OUT)), total))


if __name__ == "__main__":
    main()
