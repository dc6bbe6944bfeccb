#!/usr/bin/env python3
"""Writes tests/fixtures/engine/tiny_forward.json: tiny Llama-family models
(weights included) and the logits of their forward pass at every position,
computed here in numpy float64, independently of greta.

The C test (tests/test_engine.c) writes the same weights into a GGUF file
with greta's gguf_writer (F32 tensors: every weight below is a float32
value, so it is stored exactly), runs greta's FP64 reference backend and
compares its logits with these to ~1e-12.

The forward is written from the Llama definition, not from greta's code:
  x = embed[token]
  per layer: h = rmsnorm(x) * attn_norm
             q, k, v = Wq h, Wk h, Wv h          (W stored [n_out][n_in])
             rotate adjacent pairs (2i, 2i+1) of the first rope_dim dims of
             every head by theta_i = (pos / linear_factor) *
             base^(-2i/rope_dim) / rope_freqs[i]  (GGUF "normal" RoPE)
             causal softmax(q k^T / sqrt(head_dim)) v per head, GQA
             x = x + Wo attn
             h = rmsnorm(x) * ffn_norm
             x = x + Wdown (silu(Wgate h) * Wup h)
  logits = Wout (rmsnorm(x) * output_norm), Wout = embed when tied.

Usage: python3 scripts/gen_tiny_forward_fixture.py [OUT.json]
"""
import json
import sys

import numpy as np


def f32(a):
    """Rounds to float32 values (kept as float64 arrays)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def make_case(name, rng, n_embd, n_head, n_head_kv, n_ff, n_layer, n_vocab, rope_dim, base, eps, tied,
              linear_factor, rope_freqs, tokens):
    head_dim = n_embd // n_head
    kv_dim = n_head_kv * head_dim
    # GGUF stores these keys as float32: use the values the file will hold.
    eps = float(np.float32(eps))
    base = float(np.float32(base))
    linear_factor = float(np.float32(linear_factor))

    def mat(n_out, n_in):
        return f32(rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_out, n_in)))

    def norm_w(n):
        return f32(1.0 + rng.normal(0.0, 0.1, size=n))

    w = {"token_embd.weight": f32(rng.normal(0.0, 1.0, size=(n_vocab, n_embd)))}
    for il in range(n_layer):
        p = f"blk.{il}."
        w[p + "attn_norm.weight"] = norm_w(n_embd)
        w[p + "attn_q.weight"] = mat(n_embd, n_embd)
        w[p + "attn_k.weight"] = mat(kv_dim, n_embd)
        w[p + "attn_v.weight"] = mat(kv_dim, n_embd)
        w[p + "attn_output.weight"] = mat(n_embd, n_embd)
        w[p + "ffn_norm.weight"] = norm_w(n_embd)
        w[p + "ffn_gate.weight"] = mat(n_ff, n_embd)
        w[p + "ffn_up.weight"] = mat(n_ff, n_embd)
        w[p + "ffn_down.weight"] = mat(n_embd, n_ff)
    w["output_norm.weight"] = norm_w(n_embd)
    if not tied:
        w["output.weight"] = mat(n_vocab, n_embd)
    if rope_freqs is not None:
        w["rope_freqs.weight"] = f32(rope_freqs)

    def rmsnorm(x, g):
        return x / np.sqrt(np.mean(x * x) + eps) * g

    def rope(v, pos):
        out = v.copy()
        for h in range(v.shape[0] // head_dim):
            for i in range(rope_dim // 2):
                theta = (pos / linear_factor) * base ** (-2.0 * i / rope_dim)
                if rope_freqs is not None:
                    theta /= w["rope_freqs.weight"][i]
                c, s = np.cos(theta), np.sin(theta)
                a, b = v[h * head_dim + 2 * i], v[h * head_dim + 2 * i + 1]
                out[h * head_dim + 2 * i] = a * c - b * s
                out[h * head_dim + 2 * i + 1] = a * s + b * c
        return out

    k_cache = [[] for _ in range(n_layer)]
    v_cache = [[] for _ in range(n_layer)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = w["token_embd.weight"][tok].copy()
        for il in range(n_layer):
            p = f"blk.{il}."
            h = rmsnorm(x, w[p + "attn_norm.weight"])
            q = rope(w[p + "attn_q.weight"] @ h, pos)
            k = rope(w[p + "attn_k.weight"] @ h, pos)
            v = w[p + "attn_v.weight"] @ h
            k_cache[il].append(k)
            v_cache[il].append(v)
            K = np.stack(k_cache[il])
            V = np.stack(v_cache[il])
            att = np.zeros(n_embd)
            group = n_head // n_head_kv
            for hh in range(n_head):
                g = hh // group
                qh = q[hh * head_dim:(hh + 1) * head_dim]
                Kh = K[:, g * head_dim:(g + 1) * head_dim]
                Vh = V[:, g * head_dim:(g + 1) * head_dim]
                s = Kh @ qh / np.sqrt(head_dim)
                s = np.exp(s - s.max())
                att[hh * head_dim:(hh + 1) * head_dim] = (s / s.sum()) @ Vh
            x = x + w[p + "attn_output.weight"] @ att
            h = rmsnorm(x, w[p + "ffn_norm.weight"])
            gate = w[p + "ffn_gate.weight"] @ h
            up = w[p + "ffn_up.weight"] @ h
            act = gate / (1.0 + np.exp(-gate)) * up
            x = x + w[p + "ffn_down.weight"] @ act
        h = rmsnorm(x, w["output_norm.weight"])
        out_w = w["token_embd.weight"] if tied else w["output.weight"]
        logits.append(out_w @ h)

    return {
        "name": name,
        "n_embd": n_embd, "n_head": n_head, "n_head_kv": n_head_kv, "n_ff": n_ff,
        "n_layer": n_layer, "n_vocab": n_vocab, "rope_dim": rope_dim, "rope_freq_base": base,
        "rms_eps": eps, "tied": tied, "rope_linear_factor": linear_factor,
        "context_length": 64,
        "tokens": tokens,
        # Each tensor: GGUF shape ne = [n_in, n_out] (or [n]) and its values
        # row-major [n_out][n_in], as float32-exact decimal numbers.
        "tensors": [{"name": k, "ne": list(reversed(v.shape)), "values": [float(x) for x in v.ravel()]}
                    for k, v in w.items()],
        "logits": [[float(x) for x in row] for row in logits],
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/engine/tiny_forward.json"
    rng = np.random.default_rng(20261125)
    cases = [
        make_case("gqa_tied", rng, n_embd=16, n_head=4, n_head_kv=2, n_ff=24, n_layer=2, n_vocab=20,
                  rope_dim=4, base=10000.0, eps=1e-5, tied=True, linear_factor=1.0, rope_freqs=None,
                  tokens=[3, 17, 0, 5, 5, 11, 19, 2]),
        make_case("scaled_partial_rope", rng, n_embd=12, n_head=2, n_head_kv=1, n_ff=20, n_layer=3,
                  n_vocab=15, rope_dim=4, base=500000.0, eps=1e-6, tied=False, linear_factor=2.0,
                  rope_freqs=[1.0, 4.0], tokens=[1, 14, 7, 7, 0, 9]),
    ]
    with open(out, "w") as f:
        json.dump({"generator": "scripts/gen_tiny_forward_fixture.py", "cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
