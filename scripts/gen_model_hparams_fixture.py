#!/usr/bin/env python3
"""Writes tests/fixtures/model/smollm2_hparams.json: the hyperparameters of
the default model as the `gguf` Python package (llama.cpp's reader) sees
them, for tests/test_model.c to compare with greta's model binding.

Usage: python3 scripts/gen_model_hparams_fixture.py [MODEL.gguf] [OUT.json]
"""
import json
import sys

from gguf import GGUFReader


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/model/smollm2_hparams.json"
    r = GGUFReader(path)

    def val(key, default=None):
        f = r.fields.get(key)
        return f.contents() if f is not None else default

    tensors = {t.name: t for t in r.tensors}
    emb = tensors["token_embd.weight"]
    n_embd = int(val("llama.embedding_length"))
    n_head = int(val("llama.attention.head_count"))
    head_dim = n_embd // n_head
    n_elements = sum(int(t.n_elements) for t in r.tensors)
    n_bytes = sum(int(t.n_bytes) for t in r.tensors)
    fixture = {
        "generator": "scripts/gen_model_hparams_fixture.py",
        "model": path.split("/")[-1],
        "architecture": val("general.architecture"),
        "name": val("general.name"),
        "n_vocab": int(emb.shape[1]),
        "n_ctx_train": int(val("llama.context_length")),
        "n_embd": n_embd,
        "n_ff": int(val("llama.feed_forward_length")),
        "n_layer": int(val("llama.block_count")),
        "n_head": n_head,
        "n_head_kv": int(val("llama.attention.head_count_kv", n_head)),
        "rope_dim": int(val("llama.rope.dimension_count", head_dim)),
        "rope_freq_base": float(val("llama.rope.freq_base", 10000.0)),
        "rms_eps": float(val("llama.attention.layer_norm_rms_epsilon")),
        "tied": "output.weight" not in tensors,
        "token_embd_type": emb.tensor_type.name,
        "n_tensors": len(r.tensors),
        "n_params": n_elements,
        "weight_bytes": n_bytes,
        "has_chat_template": "tokenizer.chat_template" in r.fields,
    }
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
