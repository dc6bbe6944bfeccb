"""fuzz.py PORT MODEL_ID N SEED: a bounded fuzz pass over greta serve's
request handling on loopback. N rounds, each one of:
  - a valid request mutated at the JSON level (a field dropped, retyped,
    set to an extreme, unknown fields added, deep nesting);
  - a valid body mutated at the byte level (bytes flipped, cut, repeated,
    random bytes inserted, invalid UTF-8);
  - odd methods, paths and headers;
  - raw bytes on a socket (not HTTP at all, or HTTP cut short).
Every HTTP answer must be a known status (never a 5xx), every error a
JSON error object, every 200 a complete answer; the server must stay up
(/health) and answer a normal request afterwards. Prints ok/FAIL lines."""
import http.client
import json
import random
import socket
import sys

from checks import check, finish, request

port, model, rounds, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
ALLOWED = {200, 400, 401, 404, 405, 413, 415, 431, 503}
problems = []


def valid_chat():
    return {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": rng.choice(["hi", "héllo ✓", "a\nb", ""])}],
            "max_tokens": rng.randint(1, 6), "temperature": rng.random(), "seed": rng.randint(0, 2**31),
            "stream": rng.random() < 0.3}


def valid_completion():
    return {"model": model, "prompt": rng.choice(["x", "Once", [1, 2, 3]]), "max_tokens": rng.randint(1, 6),
            "stop": rng.choice([None, "a", ["b", "c"]]), "stream": rng.random() < 0.3}


def random_value(depth=0):
    kinds = ["int", "bigint", "neg", "float", "str", "null", "bool", "list", "dict", "nan-like", "unicode"]
    k = rng.choice(kinds if depth < 3 else kinds[:7])
    return {"int": lambda: rng.randint(-5, 100), "bigint": lambda: rng.choice([2**31, 2**63 - 1, -2**63]),
            "neg": lambda: -rng.random() * 1e6, "float": lambda: rng.choice([0.0, 1e308, -0.0, 1e-320, 2.5]),
            "str": lambda: rng.choice(["", "x" * rng.randint(0, 300), "\u0000", "\\", "%s%n"]),
            "null": lambda: None, "bool": lambda: rng.random() < 0.5,
            "list": lambda: [random_value(depth + 1) for _ in range(rng.randint(0, 3))],
            "dict": lambda: {rng.choice(["role", "content", "type", "text", "x"]): random_value(depth + 1)
                             for _ in range(rng.randint(0, 3))},
            "nan-like": lambda: rng.choice(["NaN", "Infinity", "-1e999"]),
            "unicode": lambda: rng.choice(["\ud7ff", "é" * 50, "\U0001F600"])}[k]()


def mutate_json(body):
    fields = list(body.keys()) + ["temperature", "top_p", "top_k", "min_p", "n", "stop", "seed", "stream",
                                  "stream_options", "max_tokens", "messages", "prompt", "model", "logprobs",
                                  "repeat_penalty", "max_completion_tokens", "presence_penalty", "unknown_field"]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        name = rng.choice(fields)
        if op < 0.3:
            body.pop(name, None)
        elif op < 0.8:
            body[name] = random_value()
        elif op < 0.9 and isinstance(body.get("messages"), list) and body["messages"]:
            m = rng.choice(body["messages"])
            if isinstance(m, dict):
                m[rng.choice(["role", "content", "name"])] = random_value()
        else:
            body[name] = json.loads("[" * 50 + "]" * 50)
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 8:
        body["max_tokens"] = 8  # keep generations short: the point is the parsing
    return json.dumps(body)


def mutate_bytes(data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        i = rng.randrange(len(data))
        op = rng.random()
        if op < 0.3:
            data[i] = rng.randrange(256)
        elif op < 0.5:
            del data[i:i + rng.randint(1, 20)]
        elif op < 0.7:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
        elif op < 0.85:
            data = data[:i]
        else:
            data[i:i] = data[i:i + rng.randint(1, 40)] * rng.randint(1, 5)
    return bytes(data)


def check_answer(what, status, headers, body):
    if status not in ALLOWED:
        problems.append(f"{what}: status {status}: {body[:200]!r}")
        return
    ctype = headers.get("Content-Type", "")
    if status >= 400 and ctype.startswith("application/json"):
        try:
            err = json.loads(body)["error"]
            assert isinstance(err["message"], str) and err["message"] and "type" in err
        except Exception as e:  # noqa: BLE001 - any malformed error object is the finding
            problems.append(f"{what}: bad error object ({e}): {body[:200]!r}")
    if status == 200 and ctype.startswith("text/event-stream"):
        if not body.rstrip().endswith(b"data: [DONE]"):
            problems.append(f"{what}: stream without [DONE]: {body[-200:]!r}")
    elif status == 200 and ctype.startswith("application/json") and "completions" in what:
        try:
            assert json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{what}: bad 200 body ({e})")


def http_round(method, path, body, headers):
    try:
        status, hdrs, data = request(port, method, path, body, headers, timeout=30)
        check_answer(f"{method} {path[:40]}", status, hdrs, data)
    except (http.client.HTTPException, OSError) as e:
        problems.append(f"{method} {path[:40]}: no answer ({type(e).__name__}: {e}); body {body[:120]!r}")


def raw_round():
    payload = rng.choice([
        bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":",  # cut short
        b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"\r\n\r\n\r\n",
    ])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 1 << 20:
            part = s.recv(65536)
            if not part:
                break
            reply += part
        if reply and not reply.startswith(b"HTTP/1."):
            problems.append(f"raw: reply is not HTTP: {reply[:80]!r}")
        if reply.startswith(b"HTTP/1."):
            code = int(reply.split(b" ", 2)[1])
            if code >= 500 and code != 505:
                problems.append(f"raw: status {code}")
    except socket.timeout:
        problems.append(f"raw: no answer in 5 s to {payload[:60]!r}")
    except OSError:
        pass  # the server may reset a connection that is not HTTP
    finally:
        s.close()


counts = {"json": 0, "bytes": 0, "headers": 0, "raw": 0}
for i in range(rounds):
    kind = rng.choice(["json", "json", "bytes", "bytes", "headers", "raw"])
    counts[kind] += 1
    path = rng.choice(["/v1/chat/completions", "/v1/completions"])
    base = valid_chat() if path.endswith("chat/completions") else valid_completion()
    if kind == "json":
        http_round("POST", path, mutate_json(base).encode(), None)
    elif kind == "bytes":
        http_round("POST", path, mutate_bytes(json.dumps(base).encode()), None)
    elif kind == "headers":
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
        p = rng.choice([path, "/", "/health", "/metrics", "/v1/models", "/v1//models", "/%00", "/" + "a" * 3000,
                        "/v1/chat/completions?x=1", "/../etc/passwd"])
        hdrs = rng.choice([{}, {"Content-Type": "text/plain"}, {"Authorization": "Bearer " + "k" * 500},
                           {"Authorization": "Basic Zm9vOmJhcg=="}, {"Expect": "100-continue"},
                           {"Accept-Encoding": "gzip"}, {"X-Weird": "\t v"}])
        body = json.dumps(base).encode() if method in ("POST", "PUT", "PATCH") else None
        if method == "HEAD":
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("HEAD", p, headers=hdrs)
                status = conn.getresponse().status
                conn.close()
                if status not in ALLOWED:
                    problems.append(f"HEAD {p[:40]}: {status}")
            except (http.client.HTTPException, OSError) as e:
                problems.append(f"HEAD {p[:40]}: {e}")
        else:
            http_round(method, p, body, hdrs)
    else:
        raw_round()

check(f"fuzz: {rounds} rounds ({counts}), every answer well-formed and no 5xx",
      not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
status, _, body = request(port, "GET", "/health")
check("fuzz: the server is healthy afterwards", status == 200, f"{status} {body!r}")
status, _, body = request(port, "POST", "/v1/completions", {"model": model, "prompt": "x", "max_tokens": 3})
check("fuzz: a normal request still works", status == 200 and json.loads(body)["usage"]["completion_tokens"] >= 1,
      f"{status} {body[:200]!r}")
finish()
