#!/usr/bin/env python3
"""Compare `greta inspect --json FILE` output with the `gguf` package's reading of FILE.

Checks version, alignment, data offset, every metadata key (order, type, element type, count,
every value, arrays in full, floats exactly) and every tensor (name, type, shape, bytes, offset).
Prints each mismatch (at most 20) and exits 1 if any; prints a summary and exits 0 otherwise.
Used by tests/cli/inspect.sh.

usage: gguf_check_inspect_json.py GRETA.json FILE.gguf
"""
import json
import sys

from gguf import GGUFReader, GGUFValueType

V = GGUFValueType


def greta_bytes(value):
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    return value.encode("utf-8")


def same_scalar(vtype, greta, part):
    if vtype == V.STRING:
        return greta_bytes(greta) == bytes(part)
    if vtype in (V.FLOAT32, V.FLOAT64):
        return float(greta) == float(part[0])
    if vtype == V.BOOL:
        return greta is bool(part[0])
    if isinstance(greta, str):  # uint64 above INT64_MAX
        greta = int(greta)
    return greta == int(part[0])


def main():
    greta = json.load(open(sys.argv[1]))
    reader = GGUFReader(sys.argv[2])
    problems = []
    fields = list(reader.fields.values())[3:]
    if greta["version"] != int(list(reader.fields.values())[0].parts[0][0]):
        problems.append("version")
    if greta["alignment"] != int(reader.alignment) or greta["data_offset"] != int(reader.data_offset):
        problems.append("alignment or data offset")
    if len(greta["metadata"]) != len(fields):
        problems.append("metadata count %d vs %d" % (len(greta["metadata"]), len(fields)))
    values_checked = 0
    for g, f in zip(greta["metadata"], fields):
        if greta_bytes(g["key"]).decode("utf-8", "replace") != f.name:
            problems.append("key %r vs %r" % (g["key"], f.name))
            continue
        main_type = f.types[0]
        if g["type"] != main_type.name.lower():
            problems.append("%s: type %s vs %s" % (f.name, g["type"], main_type.name))
            continue
        if main_type == V.ARRAY:
            leaf = f.types[-1] if len(f.types) > 1 else None
            if len(f.types) > 2 or leaf == V.ARRAY:  # nested: greta gives the count only
                if g["element_type"] != "array":
                    problems.append("%s: nested array" % f.name)
                continue
            if g["count"] != len(f.data) or len(g["value"]) != len(f.data):
                problems.append("%s: count %s vs %d" % (f.name, g["count"], len(f.data)))
                continue
            if leaf is not None and g["element_type"] != leaf.name.lower():
                problems.append("%s: element type %s vs %s" % (f.name, g["element_type"], leaf.name))
            for k, idx in enumerate(f.data):
                values_checked += 1
                if not same_scalar(leaf, g["value"][k], f.parts[idx]):
                    problems.append("%s[%d]: %r" % (f.name, k, g["value"][k]))
                    break
        else:
            values_checked += 1
            if not same_scalar(main_type, g["value"], f.parts[f.data[0]]):
                problems.append("%s: value %r" % (f.name, g["value"]))
    if len(greta["tensors"]) != len(reader.tensors):
        problems.append("tensor count %d vs %d" % (len(greta["tensors"]), len(reader.tensors)))
    for g, t in zip(greta["tensors"], reader.tensors):
        want = {"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.field.parts[3]],
                "bytes": int(t.n_bytes), "offset": int(t.field.parts[-1][0]), "file_offset": int(t.data_offset)}
        got = {k: g[k] for k in want}
        if got != want:
            problems.append("tensor %s: %r vs %r" % (t.name, got, want))
    for p in problems[:20]:
        print("mismatch:", p)
    if problems:
        return 1
    print("greta inspect --json equals the gguf package: %d keys, %d values, %d tensors"
          % (len(fields), values_checked, len(reader.tensors)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
