#!/usr/bin/env python3
"""Dump a GGUF file as JSON using the `gguf` Python package (llama.cpp's reader).

The independent reference for greta's reader tests (tests/test_gguf.c runs it
at test time on files greta writes). Output, one JSON object:
  {"version": int, "alignment": int, "data_offset": int,
   "kv": [{"key": str, "types": [type names], "values": [str, ...]}],
   "tensors": [{"name", "type" (ggml id), "ne" (list, ne[0] first),
                "offset" (relative to the data section), "nbytes", "hex" or "sha256"}]}
Every value is a string so nothing is lost in JSON: integers in decimal,
floats as float.hex() (exact), strings and tensor bytes as hex. Nested arrays
are flattened (the package does so).

usage: gguf_dump.py FILE [--hex-limit BYTES]  (tensors larger than the limit get sha256)
"""
import hashlib
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType


def scalar_text(part, vtype):
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(part[0]).hex()
    if vtype == GGUFValueType.BOOL:
        return str(int(bool(part[0])))
    return str(int(part[0]))


def field_values(field):
    leaf = field.types[-1]
    out = []
    for idx in field.data:
        part = field.parts[idx]
        if leaf == GGUFValueType.STRING:
            out.append(bytes(part).hex())
        else:
            out.append(scalar_text(part, leaf))
    return out


def main():
    path = sys.argv[1]
    hex_limit = 1 << 20
    if len(sys.argv) > 3 and sys.argv[2] == "--hex-limit":
        hex_limit = int(sys.argv[3])
    reader = GGUFReader(path)
    fields = list(reader.fields.values())
    version = int(fields[0].parts[0][0])
    out = {"version": version, "alignment": int(reader.alignment), "data_offset": int(reader.data_offset),
           "kv": [], "tensors": []}
    # The first three fields are the reader's own (GGUF.version, tensor_count, kv_count).
    for field in fields[3:]:
        out["kv"].append({"key": field.name, "types": [t.name for t in field.types], "values": field_values(field)})
    for t in reader.tensors:
        raw = np.ascontiguousarray(t.data).tobytes()
        entry = {"name": t.name, "type": int(t.tensor_type), "ne": [int(x) for x in t.field.parts[3]],
                 "offset": int(t.field.parts[-1][0]), "nbytes": int(t.n_bytes)}
        if len(raw) <= hex_limit:
            entry["hex"] = raw.hex()
        else:
            entry["sha256"] = hashlib.sha256(raw).hexdigest()
        out["tensors"].append(entry)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
