#!/usr/bin/env python3
"""Reference fixtures for `greta inspect` of the default model, from the `gguf` package.

Writes into tests/fixtures/gguf/:
  smollm2_tensors.tsv  index, name, type, shape (ne[0] first, " x "-joined),
                       bytes, offset in the data section: every tensor, from GGUFReader
  smollm2_dumps.tsv    name, value count, sha256 of gguf.quants.dequantize() of the
                       tensor as little-endian float32 in file order (row-major, ne[0] fastest)
tests/cli/inspect.sh compares greta's table and `--dump` output with them.

usage: scripts/gguf_model_fixture.py [MODEL.gguf]   (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""
import hashlib
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

DUMPED = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight", "blk.29.ffn_down.weight",
          "blk.13.attn_k.weight", "output_norm.weight"]


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    out_dir = os.path.join(repo, "tests", "fixtures", "gguf")
    reader = GGUFReader(model)
    with open(os.path.join(out_dir, "smollm2_tensors.tsv"), "w") as out:
        out.write("# from scripts/gguf_model_fixture.py (gguf package %s): index name type shape bytes offset\n"
                  % "0.19.0")
        for i, t in enumerate(reader.tensors):
            shape = " x ".join(str(int(x)) for x in t.field.parts[3])
            offset = int(t.field.parts[-1][0])
            out.write("%d\t%s\t%s\t%s\t%d\t%d\n" % (i, t.name, t.tensor_type.name, shape, int(t.n_bytes), offset))
    by_name = {t.name: t for t in reader.tensors}
    with open(os.path.join(out_dir, "smollm2_dumps.tsv"), "w") as out:
        out.write("# from scripts/gguf_model_fixture.py: name values sha256(dequantized float32 LE, file order)\n")
        for name in DUMPED:
            t = by_name[name]
            values = dequantize(t.data, t.tensor_type).astype("<f4")
            out.write("%s\t%d\t%s\n" % (name, values.size, hashlib.sha256(values.tobytes()).hexdigest()))


if __name__ == "__main__":
    main()
