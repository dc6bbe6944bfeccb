#!/usr/bin/env python3
"""Generate the reference fixtures of tests/test_quant.c (tests/fixtures/quant/).

Every expected value comes from the `gguf` Python package (llama.cpp's own
reader, `gguf.quants`), never from greta:

  dequant_<TYPE>.dat   random blocks of each of the 13 supported types and their
                       float32 dequantization by gguf.quants.dequantize.
  quant_<TYPE>.dat     float32 inputs and their quantization by
                       gguf.quants.quantize (F16 BF16 Q8_0 Q4_0 Q4_1), or for
                       Q4_K Q5_K Q6_K (which the package cannot quantize) by
                       the numpy port of llama.cpp's reference quantizers in
                       scripts/kquant_reference.py.
  gaussian.dat         N(0,1) float32 data for the round-trip RMSE test.
  rmse_reference.txt   llama.cpp's reference-quantizer RMSE on gaussian.dat per
                       type (gguf package where it quantizes the type, else the
                       numpy port of llama.cpp's *_ref quantizers in
                       scripts/kquant_reference.py).
  model_hashes.txt     for every tensor of the default model: the hash of its
                       gguf-package dequantization (see model_tensor_hash).

Binary formats (little-endian):
  dequant: "GQD1" u32 type, u32 n_blocks, u32 block_size, then n_blocks blocks
           (type_size bytes each), then n_blocks*block_size float32.
  quant:   "GQQ1" u32 type, u32 n_values, u32 n_bytes, then n_values float32,
           then n_bytes of quantized data.
  gaussian:"GQG1" u32 n_values, then n_values float32.

Usage: python3 scripts/gen_quant_fixtures.py [--model PATH] [--out DIR]
"""
import argparse
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kquant_reference  # noqa: E402

SUPPORTED = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# Byte offsets of the f16 fields (scales) inside one block of each type.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}

# Types the gguf package quantizes that greta also writes (byte-exact tests).
PACKAGE_QUANTIZED = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1"]
# Types greta quantizes; RMSE reference per type.
QUANTIZABLE = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"]

FNV_OFFSET = np.uint64(0xcbf29ce484222325)
FNV_PRIME = np.uint64(0x100000001b3)


def random_finite_f16(rng, count):
    """Random f16 bit patterns over the whole finite range (subnormals, both signs)."""
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    exp_all_ones = (bits & 0x7C00) == 0x7C00
    bits[exp_all_ones] &= np.uint16(0xBFFF)  # clear the top exponent bit: finite
    return bits


def random_blocks(rng, name, n_blocks):
    qtype = T[name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if name == "F32":
        values = rng.standard_normal(n_blocks).astype(np.float32)
        values *= np.float32(10.0) ** rng.integers(-30, 30, n_blocks).astype(np.float32)
        values[:4] = np.array([0.0, -0.0, 1e-40, -3.4e38], dtype=np.float32)  # zero, subnormal, huge
        return values.view(np.uint8).reshape(n_blocks, 4)
    if name == "F16":
        return random_finite_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if name == "BF16":
        bits = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        exp_all_ones = (bits & 0x7F80) == 0x7F80
        bits[exp_all_ones] &= np.uint16(0xBFFF)
        return bits.view(np.uint8).reshape(n_blocks, 2)
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint32).astype(np.uint8)
    for offset in F16_FIELDS[name]:
        blocks[:, offset:offset + 2] = random_finite_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def write_dequant_fixture(out_dir, rng, name):
    qtype = T[name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = {1: 512, 32: 64}.get(block_size, 12)
    blocks = random_blocks(rng, name, n_blocks)
    values = dequantize(blocks.reshape(-1), qtype).astype(np.float32, copy=False).reshape(-1)
    assert values.size == n_blocks * block_size
    path = os.path.join(out_dir, f"dequant_{name}.dat")
    with open(path, "wb") as f:
        f.write(b"GQD1" + struct.pack("<III", int(qtype), n_blocks, block_size))
        f.write(blocks.tobytes())
        f.write(values.astype("<f4").tobytes())
    return path


def quant_inputs(rng, block_size, n_blocks):
    """Gaussian blocks with a few edge cases in front."""
    x = rng.standard_normal(n_blocks * block_size).astype(np.float32)
    x *= np.repeat(np.float32(2.0) ** rng.integers(-12, 8, n_blocks).astype(np.float32), block_size)
    b = block_size
    x[0:b] = 0.0                                    # all zero
    x[b:2 * b] = 0.75                               # constant
    x[2 * b:3 * b] = np.linspace(-1, 1, b, dtype=np.float32)  # exact ramp
    x[3 * b:4 * b] *= np.float32(1e-6)              # tiny
    x[4 * b] = 70000.0                              # overflows f16
    return x


def write_quant_fixture(out_dir, rng, name):
    qtype = T[name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = 2048
    if name in PACKAGE_QUANTIZED:
        x = quant_inputs(rng, 32, n // 32)
        data = quantize(x, qtype)
    else:  # K-quants: the numpy port of llama.cpp's reference quantizer
        x = quant_inputs(rng, 32, n // 32)
        x[256:512] = rng.standard_normal(256).astype(np.float32) * np.float32(1e-3)  # a small superblock
        x[512:768] = 0.0                                                  # a whole zero superblock
        data = kquant_reference.QUANTIZERS[name](x)
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    assert raw.size == n // block_size * type_size
    path = os.path.join(out_dir, f"quant_{name}.dat")
    with open(path, "wb") as f:
        f.write(b"GQQ1" + struct.pack("<III", int(qtype), n, raw.size))
        f.write(x.astype("<f4").tobytes())
        f.write(raw.tobytes())
    return path


def rmse(a, b):
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.sqrt(np.mean(d * d)))


def write_gaussian_and_rmse(out_dir, rng):
    n = 64 * 256
    x = rng.standard_normal(n).astype(np.float32)
    with open(os.path.join(out_dir, "gaussian.dat"), "wb") as f:
        f.write(b"GQG1" + struct.pack("<I", n))
        f.write(x.astype("<f4").tobytes())
    lines = ["# type rmse source   (llama.cpp reference quantizers on gaussian.dat, N(0,1), "
             f"{n} values; written by scripts/gen_quant_fixtures.py)"]
    for name in QUANTIZABLE:
        qtype = T[name]
        if name in PACKAGE_QUANTIZED:
            y = dequantize(quantize(x, qtype), qtype)
            source = "gguf.quants"
        else:
            y = kquant_reference.roundtrip(name, x)
            source = "scripts/kquant_reference.py"
        lines.append(f"{name} {rmse(x, y):.9e} {source}")
    with open(os.path.join(out_dir, "rmse_reference.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def model_tensor_hash(values_2d):
    """FNV-1a 64 of each row's float32 bytes, then FNV-1a 64 over the row
    hashes' 8 little-endian bytes each, in row order."""
    rows = np.ascontiguousarray(values_2d.astype("<f4")).view(np.uint8)
    rows = rows.reshape(values_2d.shape[0], -1)
    h = np.full(rows.shape[0], FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(rows.shape[1]):
            h = (h ^ rows[:, col].astype(np.uint64)) * FNV_PRIME
        total = FNV_OFFSET
        for byte in h.astype("<u8").view(np.uint8):
            total = (total ^ np.uint64(byte)) * FNV_PRIME
    return int(total)


def write_model_hashes(out_dir, model_path):
    reader = gguf.GGUFReader(model_path)
    lines = [f"# tensor type n_elements rows hash_hex sum   (model {os.path.basename(model_path)}; "
             "gguf.quants.dequantize; hash = FNV-1a 64 over per-row FNV-1a 64 of float32 rows)"]
    for t in reader.tensors:
        ne0 = int(t.shape[0])
        values = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(-1, ne0)
        digest = model_tensor_hash(values)
        total = float(values.astype(np.float64).sum())
        lines.append(f"{t.name} {t.tensor_type.name} {values.size} {values.shape[0]} "
                     f"{digest:016x} {total:.17g}")
    with open(os.path.join(out_dir, "model_hashes.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(repo, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default=os.path.join(repo, "tests", "fixtures", "quant"))
    parser.add_argument("--skip-model", action="store_true", help="do not rewrite model_hashes.txt")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240611)
    for name in SUPPORTED:
        write_dequant_fixture(args.out, rng, name)
    for name in PACKAGE_QUANTIZED + ["Q4_K", "Q5_K", "Q6_K"]:
        write_quant_fixture(args.out, rng, name)
    write_gaussian_and_rmse(args.out, rng)
    if not args.skip_model:
        write_model_hashes(args.out, args.model)
    print("fixtures written to", args.out)


if __name__ == "__main__":
    main()
