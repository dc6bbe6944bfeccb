#!/usr/bin/env python3
"""server_bench.py: aggregate generation throughput of an OpenAI-compatible
server (greta serve, llama-server) at several numbers of concurrent streams.

    scripts/tools/server_bench.py --port 8080 --model ID [--streams 1,4,16,32]
                            [--tokens 64] [--rounds 2] [--label greta] [--pid PID]

For each count C: C client threads start together, each sends --rounds
streamed completion requests back to back (prompt "Once upon a time", flat
sampling so that an early end-of-text is unlikely, max_tokens --tokens) and
counts the tokens it received (usage when the server sends it, else the
content chunks). Aggregate = all tokens / wall time of the round; also the
median time to the first token. With --pid (the server's process id, same
machine), also the server's CPU seconds (user + system, /proc) for the round
and tokens per CPU-second: on a machine shared with other work, wall time
measures the neighbours too, CPU time much less. Prints one markdown table
row per count.
Loopback only; standard library only."""
import argparse
import http.client
import json
import os
import statistics
import threading
import time


def one_request(port, model, tokens):
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": tokens, "temperature": 1.5, "top_k": 0,
            "top_p": 1, "min_p": 0, "seed": 1, "stream": True, "stream_options": {"include_usage": True}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {resp.read()[:200]!r}")
    first, chunks, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            if choice.get("text"):
                chunks += 1
                if first is None:
                    first = time.monotonic() - t0
    conn.close()
    return (usage if usage is not None else chunks), first or 0.0


def cpu_seconds(pid):
    """User + system CPU seconds of process pid so far (0 without a pid)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_count(port, model, streams, tokens, rounds):
    totals, ttfts, errors = [0] * streams, [], []
    barrier = threading.Barrier(streams)
    lock = threading.Lock()

    def client(i):
        barrier.wait()
        for _ in range(rounds):
            try:
                n, first = one_request(port, model, tokens)
                with lock:
                    totals[i] += n
                    ttfts.append(first)
            except Exception as e:  # noqa: BLE001 - reported in the row
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return sum(totals), wall, statistics.median(ttfts) if ttfts else 0.0, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--streams", default="1,4,16,32")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--label", default="server")
    ap.add_argument("--pid", type=int, default=0)
    args = ap.parse_args()
    print("| server | streams | requests | tokens | wall s | aggregate tok/s | median TTFT s | server CPU s | "
          "tok per CPU-s | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for streams in (int(s) for s in args.streams.split(",")):
        cpu0 = cpu_seconds(args.pid)
        tokens, wall, ttft, errors = run_count(args.port, args.model, streams, args.tokens, args.rounds)
        cpu = cpu_seconds(args.pid) - cpu0
        per_cpu = f"{tokens / cpu:.1f}" if cpu > 0 else "-"
        print(f"| {args.label} | {streams} | {streams * args.rounds} | {tokens} | {wall:.1f} | {tokens / wall:.1f} | "
              f"{ttft:.2f} | {cpu:.1f} | {per_cpu} | {len(errors)}{' ' + errors[0][:60] if errors else ''} |", flush=True)


if __name__ == "__main__":
    main()
