"""checks.py: what the server test clients share (imported, not run).

Each client prints one line per assertion, "ok   WHAT" or "FAIL WHAT: why",
which tests/cli/serve*.sh count like their own; a client exits 1 if any
assertion failed. Everything talks to 127.0.0.1 only, with timeouts."""
import http.client
import json
import sys

failures = 0


def check(what, cond, why=""):
    global failures
    if cond:
        print(f"ok   {what}", flush=True)
    else:
        failures += 1
        print(f"FAIL {what}: {why}", flush=True)
    return cond


def finish():
    sys.exit(1 if failures else 0)


def request(port, method, path, body=None, headers=None, timeout=60):
    """One HTTP request on loopback; returns (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def stream_chat(port, body, timeout=120, headers=None):
    """A streamed chat completion read as server-sent events. Returns
    (status, text, finish_reason, saw_done, usage, error)."""
    body = dict(body, stream=True)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=hdrs)
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, "", None, False, None, resp.read().decode(errors="replace")
        text, finish, done, usage, error = [], None, False, None, None
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                error = chunk["error"]
                continue
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        return 200, "".join(text), finish, done, usage, error
    finally:
        conn.close()
