"""load.py PORT MODEL_ID CLIENTS SECONDS SERVER_PID [check_rss]: CLIENTS
concurrent streaming chat clients on loopback, each sending requests back
to back for SECONDS (then finishing the one in flight). First every client
sends one request as long as any of the run's (the longest prompt, 32
tokens), so that every slot's KV cache has touched the positions the run
will use: RSS that grows after that is not pages seen for the first time. Every request must
answer 200 with a complete stream (chunks, one finish_reason, usage,
[DONE]) whose token count fits its max_tokens (equal to it when the
finish reason is "length"). With check_rss, the server's resident memory
at the end may exceed what it was after the first third of the run by at
most 5% + 8 MiB (no leak). Prints ok/FAIL lines and the figures."""
import random
import sys
import threading
import time

from checks import check, finish, stream_chat

port, model, clients, seconds, pid = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                                      int(sys.argv[5]))
check_rss = len(sys.argv) > 6 and sys.argv[6] == "check_rss"
words = "tell me a story about a small robot who learns to paint the sea at night".split()
lock = threading.Lock()
results = []  # (seconds, ttft-ish first byte not measured: tokens, ok, why)
deadline = time.monotonic() + seconds


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def warm_up():
    text = " ".join(["robot"] * 30)
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32, "temperature": 1.5,
            "top_k": 0, "min_p": 0, "top_p": 1, "seed": 1}
    stream_chat(port, body, timeout=600)


def client(index):
    rng = random.Random(index)
    while time.monotonic() < deadline:
        max_tokens = rng.randint(4, 32)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                "seed": rng.randint(0, 1 << 30), "stream_options": {"include_usage": True}}
        t0 = time.monotonic()
        try:
            status, _, finish_reason, done, usage, error = stream_chat(port, body, timeout=300)
            tokens = usage["completion_tokens"] if usage else -1
            ok = (status == 200 and done and not error and finish_reason in ("stop", "length") and usage is not None
                  and 0 <= tokens <= max_tokens and (finish_reason != "length" or tokens == max_tokens))
            why = "" if ok else f"status {status} done {done} error {error} finish {finish_reason} usage {usage} max {max_tokens}"
        except Exception as e:  # noqa: BLE001 - any failure of a request is counted and shown
            ok, tokens, why = False, 0, f"{type(e).__name__}: {e}"
        with lock:
            results.append((time.monotonic() - t0, max(tokens, 0), ok, why))


rss_start = rss_kib()
warmers = [threading.Thread(target=warm_up, daemon=True) for _ in range(clients)]
for t in warmers:
    t.start()
for t in warmers:
    t.join(timeout=600)
rss_warmed = rss_kib()
deadline = time.monotonic() + seconds
threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
t_start = time.monotonic()
for t in threads:
    t.start()
time.sleep(seconds / 3)
rss_warm = rss_kib()
samples = [rss_warm]
while time.monotonic() < deadline:
    time.sleep(1)
    samples.append(rss_kib())
for t in threads:
    t.join(timeout=600)
wall = time.monotonic() - t_start
rss_end = rss_kib()

failed = [r for r in results if not r[2]]
tokens = sum(r[1] for r in results)
latencies = sorted(r[0] for r in results)
print(f"     {len(results)} requests by {clients} clients in {wall:.1f} s: {tokens} tokens, "
      f"{tokens / wall:.1f} tok/s aggregate; request time p50 {latencies[len(latencies) // 2]:.2f} s, "
      f"max {latencies[-1]:.2f} s; RSS start {rss_start // 1024} MiB, warmed up {rss_warmed // 1024} MiB, "
      f"after a third {rss_warm // 1024} MiB, "
      f"end {rss_end // 1024} MiB, peak {max(samples) // 1024} MiB", flush=True)
check(f"load: {clients} concurrent streaming clients for {seconds:.0f} s: {len(results)} requests, every one complete",
      len(results) >= clients and not failed, f"{len(failed)} failed: " + "; ".join(r[3] for r in failed[:3]))
check("load: every client thread finished", not any(t.is_alive() for t in threads), "a client hung")
if check_rss:
    limit = rss_warm * 1.05 + 8 * 1024
    check(f"load: RSS stable ({rss_warm // 1024} MiB after a third, {rss_end // 1024} MiB at the end)",
          rss_end <= limit, f"grew past {limit / 1024:.0f} MiB; samples {[s // 1024 for s in samples]}")
finish()
