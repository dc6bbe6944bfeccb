"""batch_invariance.py PORT MODEL_ID N MAX_TOKENS OUT.json: N different
requests (chat and completions, streamed and not, prompts of different
lengths, some longer than the server's 64-token prefill chunk, each its own seed) sent all at once, then each one alone; a
request's text, token count and finish reason must be the same both ways.
Writes the requests and their answers to OUT.json for the caller to
compare with `greta run`. Prints ok/FAIL lines (checks.py)."""
import json
import sys
import threading

from checks import check, finish, request, stream_chat

port, model, n, max_tokens, out_path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing".split()


def make_request(i):
    n_words = 90 if i % 8 in (6, 7) else 1 + (i * 7) % 23  # 90 words: a prompt of several prefill chunks
    text = " ".join(words[(i * 3 + k) % len(words)] for k in range(n_words))
    body = {"model": model, "max_tokens": max_tokens, "seed": 1000 + i}
    if i % 5 == 4:
        body["temperature"] = 0  # greedy rows beside sampled ones
    if i % 2 == 0:
        body["messages"] = [{"role": "user", "content": text}]
        return "/v1/chat/completions", body, i % 4 == 0
    body["prompt"] = text
    return "/v1/completions", body, False


def answer(path, body, stream):
    if stream:
        status, text, finish_reason, done, usage, error = stream_chat(port, dict(body, stream_options={"include_usage": True}))
        if status != 200 or not done or error:
            return {"error": f"{status} done={done} {error}"}
        return {"text": text, "finish": finish_reason, "tokens": usage["completion_tokens"]}
    status, _, raw = request(port, "POST", path, body, timeout=600)
    if status != 200:
        return {"error": f"{status} {raw[:200]!r}"}
    d = json.loads(raw)
    c = d["choices"][0]
    text = c["message"]["content"] if "message" in c else c["text"]
    return {"text": text, "finish": c["finish_reason"], "tokens": d["usage"]["completion_tokens"]}


requests = [make_request(i) for i in range(n)]
together = [None] * n
start = threading.Barrier(n)


def run(i):
    start.wait()
    together[i] = answer(*requests[i])


threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=900)

def decode_counters():
    """(steps, rows) from /metrics: rows / steps is the mean batch of the decode steps."""
    status, _, text = request(port, "GET", "/metrics")
    values = dict(line.split() for line in text.decode().splitlines() if line.startswith("greta_decode_"))
    return int(values["greta_decode_steps_total"]), int(values["greta_decode_rows_total"])


steps, rows = decode_counters()
check(f"the {n} requests ran batched: {rows} tokens in {steps} forward steps (mean batch {rows / max(steps, 1):.1f})",
      steps > 0 and rows / steps >= max(2, n / 4), f"{rows} rows in {steps} steps")
alone = [answer(*requests[i]) for i in range(n)]

errors = [f"#{i}: {a.get('error')} / {b.get('error')}" for i, (a, b) in enumerate(zip(together, alone))
          if a is None or "error" in a or "error" in b]
check(f"{n} requests at once and alone: all answered", not errors, "; ".join(errors[:3]))
same = [i for i in range(n) if together[i] and together[i] == alone[i]]
differ = [i for i in range(n) if i not in same]
check(f"{n} requests: each one's text, token count and finish reason are the same beside {n - 1} others as alone",
      not differ, "; ".join(f"#{i}: {together[i]} vs {alone[i]}" for i in differ[:3]))
lengths = sorted({a["tokens"] for a in alone if a and "tokens" in a})
check("the requests generated tokens (not all empty)", lengths and lengths[-1] > 0, str(lengths))
with open(out_path, "w") as f:
    json.dump([{"path": p, "body": b, "stream": s, "answer": alone[i]} for i, (p, b, s) in enumerate(requests)], f)
finish()
