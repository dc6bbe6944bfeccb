"""compare_run.py [--run-args "ARGS"] GRETA MODEL ANSWERS.json CTX INDEX...: for
each chosen request of a batch_invariance.py run, `greta run` with the same
prompt, chat flag, seed, temperature and token limit (and ARGS, the
server's backend flags, e.g. "--backend cuda --deterministic") must print
exactly the text the server answered. Prints ok/FAIL lines (checks.py)."""
import json
import subprocess
import sys

from checks import check, finish

args = sys.argv[1:]
run_args = []
if args[:1] == ["--run-args"]:
    run_args, args = args[1].split(), args[2:]
greta, model, answers_path, ctx = args[0], args[1], args[2], args[3]
answers = json.load(open(answers_path))
for index in (int(a) for a in args[4:]):
    entry = answers[index]
    body = entry["body"]
    chat = entry["path"].endswith("chat/completions")
    prompt = body["messages"][0]["content"] if chat else body["prompt"]
    cmd = [greta, "run", "-m", model, "-p", prompt, "-n", str(body["max_tokens"]), "--seed", str(body["seed"]),
           "--ctx", ctx, "-t", "1"] + run_args
    if chat:
        cmd.append("--chat")
    if body.get("temperature") == 0:
        cmd += ["--temp", "0"]
    run = subprocess.run(cmd, capture_output=True, timeout=600)
    printed = run.stdout[:-1].decode("utf-8", errors="replace") if run.stdout.endswith(b"\n") else None
    what = f"#{index} ({'chat' if chat else 'completion'}, seed {body['seed']}, temp {body.get('temperature', 'default')})"
    check(f"{what}: greta run prints the server's text", run.returncode == 0 and printed == entry["answer"]["text"],
          f"rc {run.returncode}: run {printed!r} vs server {entry['answer']['text']!r}; {run.stderr[-200:]!r}")
finish()
