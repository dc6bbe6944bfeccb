#!/usr/bin/env python3
"""check_gguf_readable.py: checks GGUF files written by `greta synth` and
`greta quantize` with llama.cpp's own reader, the `gguf` Python package
(pip install gguf==0.19.0 numpy). Run by tests/cli/synth_quantize.sh.

Everything expected here is computed independently of greta: the tensor
layout llama.cpp's converter writes, the byte-to-unicode table of GPT-2,
llama.cpp's Q4_K_M/Q5_K_M rule re-implemented from llama-quant.cpp, and the
gguf package's own quantizers (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16) and
numpy's float16 for bit-exact comparisons.

Modes (each prints one "ok ..." or "FAIL ..." line per check and exits 1 if
any failed):
  synth FILE --type T --dim D --ffn F --layers L --heads H --kv-heads K
        --vocab V --ctx C --rope-base B [--tied] [--pre P] [--dump-dir DIR]
      metadata, tensor names/shapes/order/types, finite values with the
      documented scales, the vocabulary and chat template; with --dump-dir,
      DIR/NAME.f32 (greta's dequantization, little-endian float32) must equal
      the gguf package's dequantization bit for bit.
  compare SRC OUT --type T [--bounds real|gaussian]
      OUT is SRC converted to T: same metadata but general.file_type, same
      tensors, types by the rule, unchanged tensors byte-identical, each
      converted tensor bit-exact against the gguf package's quantizer where
      it has one, and its relative RMSE against SRC within the bound.
  types FILE NAME=TYPE...
      the named tensors have exactly these types.
  batch JOBS
      runs every line "LABEL<TAB>MODE ARGS..." of JOBS in this one process
      (numpy and gguf load once), each report line prefixed by "LABEL: ".
"""
import argparse
import math
import os
import shlex
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

failures = 0
label = ""


def report(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + label + what)
    if not ok:
        failures += 1
    return ok


# ---- the type rule (llama.cpp src/llama-quant.cpp, llama arch, no experts) ----

BASE = {
    "F32": QT.F32, "F16": QT.F16, "BF16": QT.BF16, "Q8_0": QT.Q8_0, "Q4_0": QT.Q4_0,
    "Q4_1": QT.Q4_1, "Q3_K": QT.Q3_K, "Q4_K": QT.Q4_K, "Q5_K": QT.Q5_K, "Q6_K": QT.Q6_K,
    "Q2_K": QT.Q2_K, "Q3_K_M": QT.Q3_K, "Q4_K_M": QT.Q4_K, "Q5_K_M": QT.Q5_K,
}
MIXES = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M")
FILE_TYPE = {
    "F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
    "BF16": gguf.LlamaFileType.MOSTLY_BF16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    "Q3_K": gguf.LlamaFileType.MOSTLY_Q3_K_S, "Q2_K": gguf.LlamaFileType.MOSTLY_Q2_K,
    "Q3_K_M": gguf.LlamaFileType.MOSTLY_Q3_K_M,
    "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_S, "Q5_K": gguf.LlamaFileType.MOSTLY_Q5_K_S,
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K, "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q5_K_M": gguf.LlamaFileType.MOSTLY_Q5_K_M,
}
# Relative RMSE (||deq(out) - src|| / ||src||) bounds, docs/quantize.md.
BOUNDS = {
    "gaussian": {QT.F32: 0.0, QT.F16: 3e-4, QT.BF16: 2.5e-3, QT.Q8_0: 0.0065, QT.Q6_K: 0.0196,
                 QT.Q5_1: 0.045, QT.Q5_0: 0.05, QT.Q5_K: 0.040, QT.Q4_1: 0.09, QT.Q4_0: 0.1,
                 QT.Q4_K: 0.078, QT.Q3_K: 0.165, QT.Q2_K: 0.32},
    "real": {QT.F32: 0.0, QT.F16: 5e-4, QT.BF16: 4e-3, QT.Q8_0: 0.01, QT.Q6_K: 0.025,
             QT.Q5_1: 0.07, QT.Q5_0: 0.08, QT.Q5_K: 0.06, QT.Q4_1: 0.15, QT.Q4_0: 0.16,
             QT.Q4_K: 0.12, QT.Q3_K: 0.25, QT.Q2_K: 0.45},
}


def block_size(t):
    return gguf.GGML_QUANT_SIZES[t][0]


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def layer_of(name):
    if not name.startswith("blk."):
        return -1
    try:
        return int(name.split(".")[1])
    except ValueError:
        return -1


def is_weight(name, n_dims):
    return n_dims >= 2 and name.endswith("weight") and "_norm.weight" not in name


def fallback(t, ne0):
    if ne0 % block_size(t) == 0:
        return t
    nxt = {QT.Q2_K: QT.Q4_0, QT.Q3_K: QT.Q4_0, QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0}.get(t)
    if nxt is None:
        raise ValueError("no fallback")
    return nxt if ne0 % block_size(nxt) == 0 else QT.F16


def expected_types(target, tensors, n_layer, n_head, n_head_kv):
    """tensors: list of (name, n_dims, ne0, current type). Returns {name: type}."""
    base = BASE[target]
    mix = target in MIXES
    names = [t[0] for t in tensors]
    tied = "output.weight" not in names
    # llama.cpp iterates weights sorted by (layer, name) and counts attn_v / ffn_down.
    order = sorted(names, key=lambda n: (layer_of(n), n))
    attn_v = [n for n in order if "attn_v.weight" in n]
    ffn_down = [n for n in order if "ffn_down" in n]
    is_70b = n_layer == 80 and n_head != n_head_kv
    out = {}
    for name, n_dims, ne0, cur in tensors:
        if not is_weight(name, n_dims):
            out[name] = cur
            continue
        if base in (QT.F32, QT.F16, QT.BF16):
            out[name] = base
            continue
        t = base
        if mix:
            if name == "output.weight" or (tied and name == "token_embd.weight"):
                t = QT.Q8_0 if ne0 % block_size(base) else QT.Q6_K
            elif name == "token_embd.weight":
                t = base
            elif "attn_v.weight" in name:
                i = attn_v.index(name)
                if target == "Q2_K":
                    t = QT.Q4_K if n_head // n_head_kv >= 4 else QT.Q3_K
                elif target == "Q3_K_M":
                    t = QT.Q5_K if i < 2 else QT.Q4_K
                elif use_more_bits(i, len(attn_v)):
                    t = QT.Q6_K
                if is_70b and t in (QT.Q3_K, QT.Q4_K):
                    t = QT.Q5_K
            elif "ffn_down" in name:
                i = ffn_down.index(name)
                if target == "Q2_K":
                    t = QT.Q3_K
                elif target == "Q3_K_M":
                    t = QT.Q5_K if i < n_layer // 16 else QT.Q4_K
                elif use_more_bits(i, n_layer):
                    t = QT.Q6_K
            elif "attn_output.weight" in name and target in ("Q2_K", "Q3_K_M"):
                t = QT.Q3_K if target == "Q2_K" else QT.Q4_K
        out[name] = fallback(t, ne0)
    return out


# ---- reading ----

def field_value(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def dequant(t):
    data = np.asarray(t.data)
    if t.tensor_type == QT.F32:
        return data.astype(np.float32).reshape(-1)
    if t.tensor_type == QT.F16:
        return data.view(np.float16).astype(np.float32).reshape(-1)
    return quants.dequantize(data, t.tensor_type).astype(np.float32).reshape(-1)


def quantize_reference(values, qtype, ne0):
    """The gguf package's quantization of values (rows of ne0), or None."""
    rows = values.reshape(-1, ne0)
    if qtype == QT.F32:
        return rows.astype(np.float32).view(np.uint8).reshape(-1)
    if qtype == QT.F16:
        return rows.astype(np.float16).view(np.uint8).reshape(-1)
    if qtype in (QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
        return np.asarray(quants.quantize(rows, qtype)).view(np.uint8).reshape(-1)
    return None


def raw_bytes(t):
    return np.asarray(t.data).view(np.uint8).reshape(-1)


# ---- synth ----

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]  # in GPT-2 vocab order


def expected_layout(a):
    kv = a.dim // a.heads * a.kv_heads
    names = [("token_embd.weight", [a.dim, a.vocab])]
    for i in range(a.layers):
        p = f"blk.{i}."
        names += [(p + "attn_norm.weight", [a.dim]), (p + "attn_q.weight", [a.dim, a.dim]),
                  (p + "attn_k.weight", [a.dim, kv]), (p + "attn_v.weight", [a.dim, kv]),
                  (p + "attn_output.weight", [a.dim, a.dim]), (p + "ffn_norm.weight", [a.dim]),
                  (p + "ffn_gate.weight", [a.dim, a.ffn]), (p + "ffn_up.weight", [a.dim, a.ffn]),
                  (p + "ffn_down.weight", [a.ffn, a.dim])]
    names.append(("output_norm.weight", [a.dim]))
    if not a.tied:
        names.append(("output.weight", [a.dim, a.vocab]))
    return names


def check_synth(a):
    r = gguf.GGUFReader(a.file)
    report(True, f"gguf package reads {os.path.basename(a.file)}")
    head = a.dim // a.heads
    want = {
        "general.architecture": "llama", "general.file_type": int(FILE_TYPE[a.type]),
        "llama.context_length": a.ctx, "llama.embedding_length": a.dim, "llama.block_count": a.layers,
        "llama.feed_forward_length": a.ffn, "llama.rope.dimension_count": head,
        "llama.attention.head_count": a.heads, "llama.attention.head_count_kv": a.kv_heads,
        "llama.vocab_size": a.vocab, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": a.pre,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    }
    bad = [f"{k}={field_value(r, k)!r} (want {v!r})" for k, v in want.items() if field_value(r, k) != v]
    for key, v in (("llama.rope.freq_base", a.rope_base), ("llama.attention.layer_norm_rms_epsilon", a.rms_eps)):
        got = field_value(r, key)
        if got is None or abs(got - np.float32(v)) > 1e-6 * abs(v):
            bad.append(f"{key}={got!r} (want {v})")
    report(not bad, "metadata: " + ("all llama.* and tokenizer keys as expected" if not bad else "; ".join(bad)))

    layout = expected_layout(a)
    got = [(t.name, [int(x) for x in t.shape]) for t in r.tensors]
    report(got == layout, f"tensor names, order and shapes ({len(layout)} tensors)"
           + ("" if got == layout else f": got {got[:4]}..."))
    types = expected_types(a.type, [(t.name, len(t.shape), int(t.shape[0]), QT.F32) for t in r.tensors],
                           a.layers, a.heads, a.kv_heads)
    wrong = [f"{t.name}={t.tensor_type.name} (want {types[t.name].name})" for t in r.tensors
             if t.tensor_type != types.get(t.name)]
    report(not wrong, f"tensor types for {a.type}" + ("" if not wrong else ": " + ", ".join(wrong[:6])))

    problems = []
    for t in r.tensors:
        x = dequant(t)
        if not np.all(np.isfinite(x)):
            problems.append(f"{t.name} has non-finite values")
            continue
        if len(t.shape) == 1:
            if abs(x.mean() - 1) > 0.01 or not 0.005 < x.std() < 0.04:
                problems.append(f"{t.name} mean {x.mean():.4f} std {x.std():.4f} (want ~1, ~0.02)")
        else:
            want_std = 1 / math.sqrt(int(t.shape[0]))
            if abs(x.std() / want_std - 1) > 0.1 or abs(x.mean()) > 0.1 * want_std:
                problems.append(f"{t.name} mean {x.mean():.5f} std {x.std():.5f} (want 0, {want_std:.5f})")
        if a.dump_dir:
            path = os.path.join(a.dump_dir, t.name + ".f32")
            if not os.path.exists(path):
                problems.append(f"no greta dump {path}")
            else:
                g = np.fromfile(path, dtype="<f4")
                if g.shape != x.shape or not np.array_equal(g.view(np.uint32), x.view(np.uint32)):
                    problems.append(f"{t.name}: greta's dequantization differs from the gguf package's")
    report(not problems, "values finite, scales as documented"
           + (", greta's dequantization bit-exact with the gguf package's" if a.dump_dir else "")
           + ("" if not problems else ": " + "; ".join(problems[:4])))
    check_vocab(r, a.vocab)


def check_vocab(r, vocab):
    tokens = [str(x) for x in field_value(r, "tokenizer.ggml.tokens")]
    types = [int(x) for x in field_value(r, "tokenizer.ggml.token_type")]
    merges = [str(x) for x in field_value(r, "tokenizer.ggml.merges")]
    problems = []
    if len(tokens) != vocab or len(types) != vocab:
        problems.append(f"{len(tokens)} tokens, {len(types)} types (want {vocab})")
    if tokens[:3] != ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] or types[:3] != [3, 3, 3]:
        problems.append(f"special tokens {tokens[:3]} types {types[:3]}")
    if tokens[3:259] != bytes_to_unicode() or set(types[3:259]) != {1}:
        problems.append("the 256 byte tokens are not GPT-2's byte-to-unicode table in order")
    index = {t: i for i, t in enumerate(tokens)}
    for rank, m in enumerate(merges):
        left, right = m.split(" ")
        joined = index.get(left + right)
        if joined != 259 + rank or index.get(left, 1 << 30) >= joined or index.get(right, 1 << 30) >= joined:
            problems.append(f"merge {rank} '{m}' does not build token {259 + rank}")
            break
    for i in range(259 + len(merges), len(tokens)):
        if tokens[i] != f"[PAD{i}]" or types[i] != 5:
            problems.append(f"token {i} is {tokens[i]!r} type {types[i]} (want [PAD{i}] unused)")
            break
    if vocab >= 259 + 20 and len(merges) < 20:
        problems.append(f"only {len(merges)} merges")
    report(not problems, f"vocabulary: 3 specials, 256 byte tokens, {len(merges)} merges, padding"
           + ("" if not problems else ": " + "; ".join(problems)))
    import jinja2
    template = str(field_value(r, "tokenizer.chat_template"))
    text = jinja2.Environment().from_string(template).render(
        messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    want = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    report(text == want, f"ChatML chat template renders {text!r}")


# ---- compare ----

def check_compare(a):
    src = gguf.GGUFReader(a.src)
    out = gguf.GGUFReader(a.out)
    report(True, f"gguf package reads {os.path.basename(a.src)} and {os.path.basename(a.out)}")
    skip = {"general.file_type", "general.quantization_version", "greta.synth.seed"}
    skip |= {k for k in src.fields if k.startswith("GGUF.")}
    diff = []
    for k, f in src.fields.items():
        if k in skip:
            continue
        g = out.fields.get(k)
        if g is None or g.types != f.types or g.contents() != f.contents():
            diff.append(k)
    extra = [k for k in out.fields if k not in src.fields and k not in skip]
    ft = field_value(out, "general.file_type")
    report(not diff and not extra and ft == int(FILE_TYPE[a.type]),
           f"metadata copied, general.file_type = {ft} (want {int(FILE_TYPE[a.type])})"
           + ("" if not diff and not extra else f": differs {diff[:5]} extra {extra[:5]}"))
    same = [(t.name, [int(x) for x in t.shape]) for t in src.tensors] == \
        [(t.name, [int(x) for x in t.shape]) for t in out.tensors]
    report(same, f"same {len(src.tensors)} tensors, names, order and shapes")
    if not same:
        return
    n_layer = field_value(src, "llama.block_count")
    types = expected_types(a.type, [(t.name, len(t.shape), int(t.shape[0]), t.tensor_type) for t in src.tensors],
                           n_layer, field_value(src, "llama.attention.head_count"),
                           field_value(src, "llama.attention.head_count_kv"))
    wrong = [f"{t.name}={t.tensor_type.name} (want {types[t.name].name})" for t in out.tensors
             if t.tensor_type != types[t.name]]
    report(not wrong, f"tensor types for {a.type}" + ("" if not wrong else ": " + ", ".join(wrong[:6])))
    bounds = BOUNDS[a.bounds]
    copied, exact, worst, problems = 0, 0, {}, []
    for s, o in zip(src.tensors, out.tensors):
        if s.tensor_type == o.tensor_type:
            copied += 1
            if not np.array_equal(raw_bytes(s), raw_bytes(o)):
                problems.append(f"{s.name} kept its type but its bytes changed")
            continue
        ref = dequant(s)
        got = dequant(o)
        if not np.all(np.isfinite(got)):
            problems.append(f"{o.name} has non-finite values")
            continue
        rms = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
        rel = float(np.sqrt(np.mean((got.astype(np.float64) - ref) ** 2))) / (rms if rms > 0 else 1)
        worst[o.tensor_type] = max(worst.get(o.tensor_type, 0.0), rel)
        if rel > bounds[o.tensor_type]:
            problems.append(f"{o.name} {o.tensor_type.name} relative RMSE {rel:.5f} > {bounds[o.tensor_type]}")
        want = quantize_reference(ref, o.tensor_type, int(s.shape[0]))
        if want is not None:
            have = raw_bytes(o)
            if want.shape != have.shape or not np.array_equal(want, have):
                n_bad = int(np.sum(want != have)) if want.shape == have.shape else -1
                problems.append(f"{o.name} {o.tensor_type.name}: {n_bad} bytes differ from the gguf package's quantizer")
            else:
                exact += 1
    summary = ", ".join(f"{t.name} {v:.5f}" for t, v in sorted(worst.items(), key=lambda kv: kv[0].name))
    report(not problems, f"{copied} tensors copied byte for byte, {exact} bit-exact with the gguf package's "
           f"quantizer; worst relative RMSE per type: {summary}" + ("" if not problems else ": " + "; ".join(problems[:5])))


def check_types(a):
    r = gguf.GGUFReader(a.file)
    have = {t.name: t.tensor_type.name for t in r.tensors}
    for spec in a.specs:
        name, want = spec.split("=")
        report(have.get(name) == want, f"{name} is {have.get(name)} (want {want})")


def parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("synth")
    s.add_argument("file")
    s.add_argument("--type", required=True)
    for flag in ("dim", "ffn", "layers", "heads", "kv-heads", "vocab", "ctx"):
        s.add_argument("--" + flag, type=int, required=True)
    s.add_argument("--rope-base", type=float, default=10000.0)
    s.add_argument("--rms-eps", type=float, default=1e-5)
    s.add_argument("--tied", action="store_true")
    s.add_argument("--pre", default="default")
    s.add_argument("--dump-dir")
    c = sub.add_parser("compare")
    c.add_argument("src")
    c.add_argument("out")
    c.add_argument("--type", required=True)
    c.add_argument("--bounds", choices=("gaussian", "real"), default="gaussian")
    t = sub.add_parser("types")
    t.add_argument("file")
    t.add_argument("specs", nargs="+")
    b = sub.add_parser("batch")
    b.add_argument("jobs")
    return p


def run(a):
    try:
        {"synth": check_synth, "compare": check_compare, "types": check_types}[a.mode](a)
    except Exception as e:  # a file the reader refuses is a failure, not a crash
        report(False, f"{a.mode}: {type(e).__name__}: {e}")


def main():
    global label
    a = parser().parse_args()
    if a.mode != "batch":
        run(a)
        return 1 if failures else 0
    with open(a.jobs, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            name, _, args = line.rstrip("\n").partition("\t")
            label = name + ": "
            try:
                run(parser().parse_args(shlex.split(args)))
            except SystemExit:
                report(False, f"bad job line: {args}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
