#!/usr/bin/env python3
"""gen_hf_fixtures.py: Hugging Face transformers reference for tests/test_hf.c.

Loads the default model GGUF with transformers (which dequantizes it to
float), converts it to float64, and for each prompt of PROMPTS runs greedy
generation of 64 tokens (end-of-generation tokens do not stop it: the
fixture continues so every prompt has 64 steps of logits).

transformers' Llama code computes RMSNorm, RoPE and the attention softmax in
float32 even after model.double(); this script replaces those three pieces
with float64 versions so the reference is float64 end to end, and checks the
result against an independent numpy float64 forward written from the GGUF
tensors (llama.cpp's layout and RoPE) on one prompt. The Q4_1/Q8_0
dequantization of gguf-py (float32) was checked to be exact (d*q+m is
representable in float32 for every weight of this file).

Writes into tests/fixtures/hf/ (read by tests/test_hf.c, format in
docs/cli.md "HF fixtures"):
  hf_greedy.json   prompts, HF prompt ids, 64 greedy ids, and per logits
                   position p (the logits after the token at position p,
                   p = 0 .. n_prompt+62): top-9 ids and float64 values,
                   the top-2 gap, the float64 L2 norm of the row
  rows/NAME_pP.f64 full logits rows (little-endian float64) at a few positions
  rows/NAME_pP.f32 full logits rows (little-endian float32) at a few more

Usage: python3 scripts/gen_hf_fixtures.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "hf")
N_GEN = 64
TOP_K = 9  # 8 compared + the 9th to judge ties at the boundary

SYSTEM = "You are a concise assistant. Answer in one or two sentences."


def read_long_prompt():
    with open(os.path.join(OUT_DIR, "long_prompt.txt"), encoding="utf-8") as f:
        return f.read()


# name, kind ("plain" text or "chat" messages), content, full-row positions
# (relative: "last" = the last prompt position, "dN" = decode step N),
# with the storage type of each row.
PROMPTS = [
    ("plain", "plain", "The capital of France is", [("last", "f64"), ("d15", "f64")]),
    ("chat_system", "chat", [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
    ], [("last", "f64")]),
    ("chat_default", "chat", [
        {"role": "user", "content": "Give me three tips for learning to cook."},
    ], [("last", "f32")]),
    ("long", "plain", None, [("last", "f32")]),
    ("spanish", "plain", "La capital de España es Madrid. Es una ciudad", [("last", "f32")]),
    ("code", "plain", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", [("last", "f32")]),
    ("multi_turn", "chat", [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Name a primary color."},
        {"role": "assistant", "content": "Red is a primary color."},
        {"role": "user", "content": "Name another one."},
    ], [("last", "f32")]),
    ("unicode", "plain", "Emoji and accents: café, naïve, 東京 🚀. Translate \"thank you\" into Japanese:", [("last", "f32")]),
    ("math", "plain", "Q: What is 12 times 7?\nA:", [("last", "f32")]),
]


# ---- float64 replacements for transformers' float32 islands ----

def rmsnorm_forward_f64(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def rotary_forward_f64(self, x, position_ids):
    cfg = self.config
    base = cfg.rope_parameters["rope_theta"]
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def eager_attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.softmax(attn_weights, dim=-1)
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def patch_float64():
    modeling_llama.LlamaRMSNorm.forward = rmsnorm_forward_f64
    modeling_llama.LlamaRotaryEmbedding.forward = rotary_forward_f64
    modeling_llama.eager_attention_forward = eager_attention_f64


# ---- an independent numpy float64 forward (llama.cpp layout) ----

def numpy_forward(gguf_path, ids):
    import gguf
    reader = gguf.GGUFReader(gguf_path)

    def field(name):
        f = reader.fields[name]
        return f.parts[f.data[0]][0].item()

    weights = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        weights[t.name] = w.reshape([int(s) for s in reversed(t.shape)])
    n_layer = field("llama.block_count")
    n_head = field("llama.attention.head_count")
    n_kv = field("llama.attention.head_count_kv")
    eps = float(field("llama.attention.layer_norm_rms_epsilon"))
    theta = float(field("llama.rope.freq_base"))
    emb = weights["token_embd.weight"]  # [vocab, dim]
    dim = emb.shape[1]
    hd = dim // n_head
    n = len(ids)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # x [n, heads, hd]; llama.cpp normal mode: adjacent pairs
        i = np.arange(hd // 2, dtype=np.float64)
        ang = np.arange(n, dtype=np.float64)[:, None] * theta ** (-2.0 * i / hd)[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    x = emb[ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(n_layer):
        p = f"blk.{l}."
        h = rms(x, weights[p + "attn_norm.weight"])
        q = rope((h @ weights[p + "attn_q.weight"].T).reshape(n, n_head, hd))
        k = rope((h @ weights[p + "attn_k.weight"].T).reshape(n, n_kv, hd))
        v = (h @ weights[p + "attn_v.weight"].T).reshape(n, n_kv, hd)
        out = np.empty((n, n_head, hd))
        for hh in range(n_head):
            kv = hh // (n_head // n_kv)
            sc = q[:, hh, :] @ k[:, kv, :].T / math.sqrt(hd) + mask
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            out[:, hh, :] = sc @ v[:, kv, :]
        x = x + out.reshape(n, dim) @ weights[p + "attn_output.weight"].T
        h = rms(x, weights[p + "ffn_norm.weight"])
        g = h @ weights[p + "ffn_gate.weight"].T
        u = h @ weights[p + "ffn_up.weight"].T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ weights[p + "ffn_down.weight"].T
    x = rms(x, weights["output_norm.weight"])
    out_w = weights.get("output.weight", emb)
    return x @ out_w.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    patch_float64()
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, dtype=torch.float32,
                                                 attn_implementation="eager")
    model = model.double().eval()
    os.makedirs(os.path.join(OUT_DIR, "rows"), exist_ok=True)

    prompts_out = []
    for name, kind, content, row_specs in PROMPTS:
        if kind == "plain":
            text = read_long_prompt() if name == "long" else content
            messages = None
            prompt_ids = tok(text, add_special_tokens=True)["input_ids"]
        else:
            messages = content
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
        n_prompt = len(prompt_ids)
        with torch.no_grad():
            out = model(torch.tensor([prompt_ids]), use_cache=True)
            rows = [out.logits[0, i].clone() for i in range(n_prompt)]
            past = out.past_key_values
            generated = []
            for step in range(N_GEN):
                nxt = int(torch.argmax(rows[-1]).item())
                generated.append(nxt)
                if step == N_GEN - 1:
                    break
                out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                rows.append(out.logits[0, -1].clone())
        positions = []
        for p, row in enumerate(rows):
            r = row.numpy()
            top = np.argsort(-r, kind="stable")[:TOP_K]
            positions.append({
                "pos": p,
                "top_ids": [int(i) for i in top],
                "top_values": [float(r[i]) for i in top],
                "gap": float(r[top[0]] - r[top[1]]),
                "norm": float(np.sqrt(np.sum(r * r))),
            })
        full_rows = []
        for spec, dtype in row_specs:
            p = n_prompt - 1 if spec == "last" else n_prompt - 1 + int(spec[1:])
            fname = f"{name}_p{p}.{dtype}"
            arr = rows[p].numpy().astype("<f8" if dtype == "f64" else "<f4")
            arr.tofile(os.path.join(OUT_DIR, "rows", fname))
            full_rows.append({"pos": p, "dtype": dtype, "file": "rows/" + fname})
        eog_ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")}
        eog = [i for i, t in enumerate(generated) if t in eog_ids]
        prompts_out.append({
            "name": name,
            "kind": kind,
            "text": text,
            "messages": messages,
            "prompt_ids": prompt_ids,
            "generated_ids": generated,
            "generated_text": tok.decode(generated, skip_special_tokens=False),
            "first_eos_step": eog[0] if eog else -1,
            # what a front end prints: the text of the first 16 ids, and of
            # the ids before the first end-of-generation token
            "generated_text_16": tok.decode(generated[:16], skip_special_tokens=False),
            "answer_text": tok.decode(generated[:eog[0]] if eog else generated, skip_special_tokens=False),
            "positions": positions,
            "full_rows": full_rows,
        })
        print(f"{name}: {n_prompt} prompt ids, min gap {min(q['gap'] for q in positions[n_prompt - 1:]):.3g}, "
              f"text {tok.decode(generated)[:60]!r}", file=sys.stderr)

    # Independent check of the float64 reference on the first prompt.
    first = prompts_out[0]
    seq = first["prompt_ids"] + first["generated_ids"][:-1]
    ref = numpy_forward(args.model, seq)
    worst = 0.0
    with torch.no_grad():
        hf = model(torch.tensor([seq])).logits[0].numpy()
    for p in range(len(seq)):
        worst = max(worst, float(np.linalg.norm(hf[p] - ref[p]) / np.linalg.norm(ref[p])))
    print(f"numpy float64 forward vs patched transformers: max rel error {worst:.3g}", file=sys.stderr)
    if worst > 1e-11:
        sys.exit("error: the transformers reference is not float64-exact; not writing fixtures")

    doc = {
        "generator": "scripts/gen_hf_fixtures.py",
        "model": os.path.basename(args.model),
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "precision": "float64 (RMSNorm, RoPE, softmax patched to float64)",
        "numpy_check_max_rel_error": worst,
        "n_generated": N_GEN,
        "top_k": TOP_K,
        "eos_token_id": tok.eos_token_id,
        "prompts": prompts_out,
    }
    with open(os.path.join(OUT_DIR, "hf_greedy.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
