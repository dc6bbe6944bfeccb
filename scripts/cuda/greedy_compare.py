#!/usr/bin/env python3
"""Greedy tokens of two greta backends on the committed HF prompts
(tests/fixtures/hf/hf_greedy.json), for scripts/cuda/cuda-check.

For each prompt that `greta run` can express (plain text, or one user
message with an optional system message through --chat), runs
`greta run --greedy -n N --dump-logits DIR` on backend A (cuda) and B
(cpu), and compares the generated token ids step by step. Where they
first differ, B's logits at that step decide: if B's top two logits are
within --tie (absolute, default 0.05) and A chose B's second, the prompt
is a documented near-tie (counted as passed, named as such); any other
difference fails. Also prints the relative L2 difference of the step-0
logits (same context on both backends).

Prints "ok   ..." / "FAIL ..." lines and "greedy_compare: N passed, M failed".
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def run(greta, model, backend, prompt, n, out_dir, ctx):
    args = [greta, "run", "-m", model, "--backend", backend, "--greedy", "-n", str(n), "-c", str(ctx),
            "--dump-logits", out_dir]
    # the float32 path on both sides (cpu: the exact path; cuda: the float32 kernels; the default of
    # both is q8, 8-bit activations)
    args += ["--precision", "f32"]
    msgs = prompt.get("messages")
    if prompt["kind"] == "plain":
        args += ["-p", prompt["text"]]
    else:
        system = [m["content"] for m in msgs if m["role"] == "system"]
        users = [m["content"] for m in msgs if m["role"] == "user"]
        if len(users) != 1 or any(m["role"] not in ("system", "user") for m in msgs):
            return None, "not expressible with greta run (several turns)"
        args += ["--chat", "-p", users[0]]
        if system:
            args += ["--system", system[0]]
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return None, f"greta run --backend {backend} exited {r.returncode}: {r.stderr.strip()[-300:]}"
    steps = [json.loads(line) for line in open(os.path.join(out_dir, "index.jsonl"))]
    return steps, None


def logits(out_dir, step):
    return np.fromfile(os.path.join(out_dir, step["file"]), dtype="<f4")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--greta", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--a", default="cuda")
    p.add_argument("--b", default="cpu")
    p.add_argument("-n", type=int, default=32)
    p.add_argument("--tie", type=float, default=0.05)
    a = p.parse_args()
    fixture = json.load(open(a.fixture))
    os.makedirs(a.work, exist_ok=True)
    passed = failed = 0
    for prompt in fixture["prompts"]:
        name = prompt["name"]
        da = os.path.join(a.work, f"{name}-A-{a.a}")
        db = os.path.join(a.work, f"{name}-B-{a.b}")
        sa, why = run(a.greta, a.model, a.a, prompt, a.n, da, 4096)
        if sa is None and "not expressible" in why:
            print(f"skip {name}: {why}")
            continue
        sb, why_b = run(a.greta, a.model, a.b, prompt, a.n, db, 4096) if sa is not None else (None, why)
        if sa is None or sb is None:
            print(f"FAIL {name}: {why if sa is None else why_b}")
            failed += 1
            continue
        la0, lb0 = logits(da, sa[0]), logits(db, sb[0])
        rel0 = float(np.linalg.norm(la0.astype(np.float64) - lb0) / np.linalg.norm(lb0.astype(np.float64)))
        ta = [s["token_id"] for s in sa]
        tb = [s["token_id"] for s in sb]
        first = next((i for i in range(min(len(ta), len(tb))) if ta[i] != tb[i]), None)
        if first is None and len(ta) == len(tb):
            print(f"ok   {name}: {len(ta)} greedy tokens equal ({a.a} vs {a.b}); step-0 logits rel diff {rel0:.2e}")
            passed += 1
            continue
        if first is None:
            first = min(len(ta), len(tb))
            print(f"FAIL {name}: equal for {first} tokens, then one run stopped ({len(ta)} vs {len(tb)} tokens)")
            failed += 1
            continue
        lb = logits(db, sb[first]).astype(np.float64)
        order = np.argsort(-lb)
        gap = lb[order[0]] - lb[order[1]]
        if gap <= a.tie and ta[first] == int(order[1]):
            print(f"ok   {name}: equal for {first} of {len(tb)} tokens, then a near-tie at step {first}: "
                  f"{a.b} top-2 gap {gap:.4f} <= {a.tie}, {a.a} took {a.b}'s second ({ta[first]} vs {tb[first]}); "
                  f"step-0 logits rel diff {rel0:.2e}")
            passed += 1
        else:
            print(f"FAIL {name}: tokens differ at step {first} ({ta[first]} vs {tb[first]}); {a.b} top-2 gap "
                  f"{gap:.4f} (tie bound {a.tie}); step-0 logits rel diff {rel0:.2e}")
            failed += 1
    print(f"greedy_compare: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
