#!/usr/bin/env python3
"""hf_trace.py: a StageTrace (docs/trace.md) from Hugging Face transformers.

Loads a Llama-family GGUF with transformers (which dequantizes it), runs the
prompt through the model with forward hooks at every trace point of
design.md section 2 and writes the same JSONL schema greta writes, so
`greta trace diff greta.jsonl hf.jsonl` compares the two.

Which HF module gives which point (per decoder layer l):
  x_in          input of model.layers[l]
  attn_norm     output of input_layernorm
  q, k, v       outputs of q_proj, k_proj, v_proj (before RoPE)
  q_rope,k_rope outputs of apply_rotary_pos_emb inside the attention
  attn_out      input of o_proj (heads concatenated)
  wo_out        output of o_proj
  x_after_attn  input of post_attention_layernorm (residual + wo_out)
  ffn_norm      output of post_attention_layernorm
  ffn_gate      output of mlp.gate_proj;  ffn_up: output of mlp.up_proj
  ffn_act       input of mlp.down_proj (silu(gate) * up)
  mlp_out       output of mlp;  x_after_mlp: output of model.layers[l]
and after the last layer (layer = n_layers): final_norm (output of
model.norm), lm_head_in (input of lm_head), logits (output of lm_head).

Q/K element order. The GGUF converter permutes the rows of attn_q/attn_k
so that RoPE rotates adjacent pairs (2i, 2i+1) of each head (llama.cpp's
"normal" mode); transformers undoes that permutation on load and rotates
halves (i, i + head_dim/2). So HF's q, k, q_rope, k_rope hold the same
numbers as greta's in a different order within each head. This script
writes them in GGUF order: element 2i+h of a head (h = 0, 1) is HF element
h*head_dim/2 + i. Every point then compares element by element.

--dtype float64 runs the whole model in float64; transformers keeps
RMSNorm, the rotary angles and the attention softmax in float32 even then,
so this script replaces those three with float64 versions (written here).
Records then have dtype "f64" (values printed with 17 digits; the hash is
over the float32-rounded values, as greta's ref backend does).

Phases: the prompt is one prefill (rows "prefill", its last "prefill_last");
--decode N then feeds N greedy tokens one at a time through the KV cache
(phases decode0 .. decode<N-1>).

Usage:
  python3 scripts/hf_trace.py -m models/SmolLM2-135M-Instruct.Q4_1.gguf \
      -p "Write one short sentence about Buenos Aires." --layers 0,1,29 \
      --phases prefill_last --sample 0 --dtype float64 -o hf.jsonl
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.models.llama import modeling_llama

POINTS = ["x_in", "attn_norm", "q", "k", "v", "q_rope", "k_rope", "attn_out", "wo_out",
          "x_after_attn", "ffn_norm", "ffn_gate", "ffn_up", "ffn_act", "mlp_out", "x_after_mlp",
          "final_norm", "lm_head_in", "logits"]
FINAL_POINTS = {"final_norm", "lm_head_in", "logits"}
PERMUTED_POINTS = {"q", "k", "q_rope", "k_rope"}


# ---- float64 versions of transformers' float32 islands ----

def rmsnorm_f64(self, hidden):
    mean_sq = (hidden * hidden).mean(-1, keepdim=True)
    return self.weight * (hidden / torch.sqrt(mean_sq + self.variance_epsilon))


def rotary_f64(self, x, position_ids):
    cfg = self.config
    params = getattr(cfg, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    inv_freq = 1.0 / (float(theta) ** exponents)
    angles = position_ids[..., None].to(torch.float64) * inv_freq
    both = torch.cat((angles, angles), dim=-1)
    return both.cos().to(x.dtype), both.sin().to(x.dtype)


def attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    groups = module.num_key_value_groups
    key = modeling_llama.repeat_kv(key, groups)
    value = modeling_llama.repeat_kv(value, groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


# ---- the trace writer ----

def fnv1a64(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h


def number(v, is_f64):
    if math.isnan(v):
        return '"NaN"'
    if math.isinf(v):
        return '"Infinity"' if v > 0 else '"-Infinity"'
    return repr(float(v)) if is_f64 else "%.9g" % v


def stat(v):
    return "null" if not math.isfinite(v) else repr(float(v))


class Writer:
    def __init__(self, out, args, backend, precision, n_layers):
        self.out = out
        self.args = args
        self.is_f64 = precision == "f64"
        self.backend = backend
        header = {"event": "stage_trace_header", "version": 1, "model": args.model,
                  "backend": backend, "precision": precision,
                  "build": "scripts/hf_trace.py (transformers)", "n_layers": n_layers,
                  "config": {"layers": args.layers, "points": args.points, "phases": args.phases,
                             "sample": args.sample, "top_k": args.top_k, "prompt_id": args.prompt_id}}
        out.write(json.dumps(header) + "\n")

    def record(self, phase, point, layer, step, pos_id, seq_len, tokens_total, token_index,
               token_id, row):
        row = np.asarray(row, dtype=np.float64 if self.is_f64 else np.float32)
        n = row.size
        as_f32 = row.astype("<f4")
        finite = row[np.isfinite(row)].astype(np.float64)
        if finite.size:
            lo, hi = finite.min(), finite.max()
            mean = finite.sum() / finite.size
            rms = math.sqrt((finite * finite).sum() / finite.size)
        else:
            lo = hi = mean = rms = float("nan")
        keep = n if self.args.sample == 0 else min(self.args.sample, n)
        parts = ['{"event":"stage_trace"', '"prompt_id":' + json.dumps(self.args.prompt_id),
                 '"phase":"%s"' % phase, '"point":"%s"' % point, '"layer":%d' % layer,
                 '"step":%d' % step, '"pos_id":%d' % pos_id, '"seq_len":%d' % seq_len,
                 '"tokens_total":%d' % tokens_total, '"token_index":%d' % token_index,
                 '"token_id":%d' % token_id, '"backend":' + json.dumps(self.backend),
                 '"dtype":"%s"' % ("f64" if self.is_f64 else "f32"), '"n":%d' % n,
                 '"hash":"%016x"' % fnv1a64(as_f32.tobytes()),
                 '"min":' + stat(lo), '"max":' + stat(hi), '"mean":' + stat(mean), '"rms":' + stat(rms),
                 '"nan":%d' % int(np.isnan(row).sum()), '"inf":%d' % int(np.isinf(row).sum()),
                 '"sample":[' + ",".join(number(float(v), self.is_f64) for v in row[:keep]) + "]"]
        if point == "logits":
            order = np.argsort(-np.where(np.isnan(row), -np.inf, row), kind="stable")[: self.args.top_k]
            parts.append('"top_k_ids":[' + ",".join(str(int(i)) for i in order) + "]")
            parts.append('"top_k_values":[' + ",".join(number(float(row[i]), self.is_f64) for i in order) + "]")
        self.out.write(",".join(parts) + "}\n")


def parse_list(text, what, valid=None):
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        sys.exit("hf_trace.py: error: empty item in %s list '%s'" % (what, text))
    if valid is not None:
        for t in items:
            if t != "all" and t not in valid:
                sys.exit("hf_trace.py: error: unknown %s '%s'" % (what, t))
    return items


def layer_set(text, n_layers):
    chosen = set()
    for t in parse_list(text, "layer"):
        if t == "all":
            chosen.update(range(n_layers))
            continue
        lo, _, hi = t.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if lo < 0 or hi >= n_layers or lo > hi:
            sys.exit("hf_trace.py: error: layer '%s' out of range (0-%d)" % (t, n_layers - 1))
        chosen.update(range(lo, hi + 1))
    return chosen


def phase_wanted(phases, phase):
    if "all" in phases or phase in phases:
        return True
    if phase == "prefill_last" and "prefill" in phases:
        return True
    return phase.startswith("decode") and "decode" in phases


def to_gguf_order(rows, head_dim):
    """rows [seq, heads*head_dim] in HF order -> GGUF (interleaved pair) order."""
    seq = rows.shape[0]
    heads = rows.reshape(seq, -1, 2, head_dim // 2)       # [seq, head, h, i]
    return heads.transpose(0, 1, 3, 2).reshape(seq, -1)   # [seq, head, i, h] -> element 2i+h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", "--prompt")
    ap.add_argument("--ids", help="comma-separated token ids instead of a prompt")
    ap.add_argument("--chat", action="store_true", help="apply the chat template (user message = prompt)")
    ap.add_argument("--system", help="system message (with --chat)")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--points", default="all")
    ap.add_argument("--phases", default="all")
    ap.add_argument("--sample", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--prompt-id", default="")
    ap.add_argument("--decode", type=int, default=0, help="greedy decode steps after the prefill")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    if (args.prompt is None) == (args.ids is None):
        sys.exit("hf_trace.py: error: give exactly one of -p/--prompt and --ids")
    if args.sample < 0:
        sys.exit("hf_trace.py: error: --sample must be >= 0")
    points = set(parse_list(args.points, "point", POINTS))
    if "all" in points:
        points = set(POINTS)
    phases = set(parse_list(args.phases, "phase"))
    for ph in phases:
        if ph not in ("all", "prefill", "prefill_last", "decode") and not (
                ph.startswith("decode") and ph[6:].isdigit()):
            sys.exit("hf_trace.py: error: unknown phase '%s'" % ph)

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.dtype == "float64":
        modeling_llama.LlamaRMSNorm.forward = rmsnorm_f64
        modeling_llama.LlamaRotaryEmbedding.forward = rotary_f64
        modeling_llama.eager_attention_forward = attention_f64
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, dtype=torch.float32,
                                                 attn_implementation="eager")
    if args.dtype == "float64":
        model = model.double()
    model.eval()
    if args.ids is not None:
        ids = [int(t) for t in parse_list(args.ids, "id")]
    else:
        tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
        if args.chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
                {"role": "user", "content": args.prompt}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(args.prompt, add_special_tokens=True)["input_ids"]

    cfg = model.config
    n_layers = cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    layers = layer_set(args.layers, n_layers)
    precision = "f64" if args.dtype == "float64" else "f32"

    captured = {}  # (layer, point) -> tensor [seq, width] of the current forward
    current_layer = [None]

    def grab(layer, point, tensor):
        if point not in points or (point not in FINAL_POINTS and layer not in layers):
            return
        t = tensor.detach()
        if t.dim() == 4:  # [batch, heads, seq, head_dim] from apply_rotary_pos_emb
            t = t[0].transpose(0, 1).reshape(t.shape[2], -1)
        else:
            t = t.reshape(-1, t.shape[-1])
        captured[(layer, point)] = t.to(torch.float64 if precision == "f64" else torch.float32).numpy().copy()

    def first_tensor(args_, kwargs):
        return args_[0] if args_ else kwargs["hidden_states"]

    def output_tensor(out):
        return out[0] if isinstance(out, tuple) else out

    hooks = []
    for l, block in enumerate(model.model.layers):
        def on_block_in(mod, a, kw, l=l):
            current_layer[0] = l
            grab(l, "x_in", first_tensor(a, kw))
        hooks.append(block.register_forward_pre_hook(on_block_in, with_kwargs=True))
        hooks.append(block.register_forward_hook(lambda m, a, o, l=l: grab(l, "x_after_mlp", output_tensor(o))))
        att, mlp = block.self_attn, block.mlp
        pairs = [(block.input_layernorm, "attn_norm"), (att.q_proj, "q"), (att.k_proj, "k"), (att.v_proj, "v"),
                 (att.o_proj, "wo_out"), (block.post_attention_layernorm, "ffn_norm"),
                 (mlp.gate_proj, "ffn_gate"), (mlp.up_proj, "ffn_up"), (mlp, "mlp_out")]
        for mod, point in pairs:
            hooks.append(mod.register_forward_hook(lambda m, a, o, l=l, p=point: grab(l, p, output_tensor(o))))
        ins = [(att.o_proj, "attn_out"), (block.post_attention_layernorm, "x_after_attn"),
               (mlp.down_proj, "ffn_act")]
        for mod, point in ins:
            hooks.append(mod.register_forward_pre_hook(lambda m, a, l=l, p=point: grab(l, p, a[0])))
    hooks.append(model.model.norm.register_forward_hook(lambda m, a, o: grab(n_layers, "final_norm", o)))
    hooks.append(model.lm_head.register_forward_pre_hook(lambda m, a: grab(n_layers, "lm_head_in", a[0])))
    hooks.append(model.lm_head.register_forward_hook(lambda m, a, o: grab(n_layers, "logits", o)))

    original_rope = modeling_llama.apply_rotary_pos_emb

    def rope_and_grab(q, k, cos, sin, *rest, **kw):
        q_out, k_out = original_rope(q, k, cos, sin, *rest, **kw)
        grab(current_layer[0], "q_rope", q_out)
        grab(current_layer[0], "k_rope", k_out)
        return q_out, k_out
    modeling_llama.apply_rotary_pos_emb = rope_and_grab

    with open(args.out, "w", encoding="utf-8") as out:
        writer = Writer(out, args, "hf-transformers", precision, n_layers)

        def emit(phase_of, step, start, tokens, total):
            for layer in list(range(n_layers)) + [n_layers]:
                for point in POINTS:
                    if (layer, point) not in captured:
                        continue
                    rows = captured[(layer, point)]
                    if point in PERMUTED_POINTS:
                        rows = to_gguf_order(rows, head_dim)
                    for i, token in enumerate(tokens):
                        phase = phase_of(i)
                        if phase_wanted(phases, phase):
                            writer.record(phase, point, layer, step, start + i, len(tokens), total, i,
                                          token, rows[i])

        with torch.no_grad():
            captured.clear()
            out_p = model(torch.tensor([ids]), use_cache=True)
            emit(lambda i: "prefill_last" if i == len(ids) - 1 else "prefill", -1, 0, ids, len(ids))
            cache = out_p.past_key_values
            logits = out_p.logits[0, -1]
            pos = len(ids)
            for step in range(args.decode):
                token = int(torch.argmax(logits))
                captured.clear()
                out_d = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True,
                              position_ids=torch.tensor([[pos]]))
                emit(lambda i, s=step: "decode%d" % s, step, pos, [token], pos + 1)
                cache = out_d.past_key_values
                logits = out_d.logits[0, -1]
                pos += 1
    for h in hooks:
        h.remove()
    modeling_llama.apply_rotary_pos_emb = original_rope
    print("hf_trace.py: wrote %s (%d prompt tokens, %d decode steps, %s)" % (args.out, len(ids), args.decode,
                                                                          args.dtype), file=sys.stderr)


if __name__ == "__main__":
    main()
