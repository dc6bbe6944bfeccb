#!/usr/bin/env bash
# serve.sh: greta serve on a tiny synth model, on loopback: flags, every
# route, OpenAI error objects for bad requests (curl), the official openai
# client (tests/server/openai_client.py), the API key, and a bounded fuzz
# pass over request handling (tests/server/fuzz.py).
source "$(dirname "$0")/lib.sh"
source "$GRETA_REPO/tests/server/serve_lib.sh"
MODEL=$TMP/tiny.gguf

# ---- flags (no server) ----
expect_error "no model" "greta: error: serve: no model" "$GRETA" serve
expect_error "unknown flag" "greta: error: serve: unknown argument '--frob'" "$GRETA" serve -m x.gguf --frob
expect_error "bad port" "greta: error: --port: 70000 is out of range" "$GRETA" serve -m x.gguf --port 70000
expect_error "bad parallel" "greta: error: --parallel: expected an integer, got 'many'" "$GRETA" serve -m x.gguf --parallel many
expect_error "empty api key" "greta: error: --api-key: the key is empty" "$GRETA" serve -m x.gguf --api-key ""
expect_error "missing model file" "greta: error: $TMP/none.gguf: " "$GRETA" serve -m "$TMP/none.gguf"
expect_ok "serve --help" "$GRETA" serve --help
grep -q -- "--api-key" "$TMP/out" && pass "help lists --api-key" || fail "help lists --api-key"

expect_ok "synth a tiny model" "$GRETA" synth --shape tiny -o "$MODEL"
if ! start_server "$TMP/server.log" -m "$MODEL" -np 2 --max-body 4096 --max-tokens 64 -t 1; then
    fail "server did not start: $(cat "$TMP/server.log")"
    finish; exit
fi
pass "server listens on 127.0.0.1:$PORT"
grep -q "serving tiny on http://127.0.0.1:$PORT (2 slots of 512 positions, cpu backend)" "$TMP/server.log" \
    && pass "start line names model, address, slots" || fail "start line: $(cat "$TMP/server.log")"

# a second server on the same port: one clear error
expect_error "port in use" "greta: error: serve: cannot listen on 127.0.0.1:$PORT: Address already in use" \
    "$GRETA" serve -m "$MODEL" --port "$PORT"

# ---- routes ----
http GET /health
[[ $STATUS == 200 && $(jfield 'd["status"], d["slots_idle"]') == "('ok', 2)" ]] && pass "GET /health" \
    || fail "GET /health: $STATUS $(cat "$TMP/body")"
http GET /v1/models
[[ $STATUS == 200 && $(jfield 'd["data"][0]["id"], d["object"]') == "('tiny', 'list')" ]] && pass "GET /v1/models" \
    || fail "GET /v1/models: $STATUS $(cat "$TMP/body")"
http GET /
[[ $STATUS == 200 ]] && grep -q "<title>greta</title>" "$TMP/body" && cmp -s "$TMP/body" "$GRETA_REPO/src/server/page.html" \
    && pass "GET / is the chat page, byte for byte" || fail "GET /: $STATUS"

chat='{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"seed":1}'
http POST /v1/chat/completions -d "$chat"
[[ $STATUS == 200 && $(jfield 'd["object"], d["choices"][0]["message"]["role"], d["usage"]["completion_tokens"] <= 8') \
    == "('chat.completion', 'assistant', True)" ]] && pass "POST /v1/chat/completions" \
    || fail "chat: $STATUS $(cat "$TMP/body")"
first=$(jfield 'd["choices"][0]["message"]["content"]')
http POST /v1/chat/completions -d "$chat"
[[ $(jfield 'd["choices"][0]["message"]["content"]') == "$first" ]] && pass "same seed, same text" || fail "seeded text differs"

# streamed: every event is JSON, the text equals the plain answer, [DONE] last
curl -sN --max-time 60 "http://127.0.0.1:$PORT/v1/chat/completions" \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"seed":1,"stream":true}' >"$TMP/sse"
got=$(python3 - "$TMP/sse" <<'EOF'
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", "last event is not [DONE]"
chunks = [json.loads(e) for e in events[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
assert [c["choices"][0]["finish_reason"] for c in chunks].count(None) == len(chunks) - 1
print("".join(c["choices"][0]["delta"].get("content", "") for c in chunks))
EOF
)
[[ $? -eq 0 && $got == "$first" ]] && pass "streamed chat: SSE chunks, [DONE], same text" || fail "streamed chat: $got"
grep -q "^Content-Type: text/event-stream" <(curl -sN -D - -o /dev/null --max-time 60 "http://127.0.0.1:$PORT/v1/completions" \
    -d '{"model":"tiny","prompt":"a","max_tokens":2,"stream":true}' | tr -d '\r') \
    && pass "stream content type text/event-stream" || fail "stream content type"

http POST /v1/completions -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":4}'
[[ $STATUS == 200 && $(jfield 'd["usage"]["prompt_tokens"], d["object"]') == "(3, 'text_completion')" ]] \
    && pass "completion from token ids" || fail "completion from ids: $STATUS $(cat "$TMP/body")"

# ---- bad requests: status, error type, param, code ----
# bad_request NAME STATUS 'PY TUPLE of (type, param, code)' METHOD PATH CURL_ARGS...
bad_request() {
    local name=$1 want_status=$2 want=$3; shift 3
    http "$@"
    local got
    got=$(jfield '(d["error"]["type"], d["error"]["param"], d["error"]["code"], isinstance(d["error"]["message"], str))')
    if [[ $STATUS == "$want_status" && $got == "$want" ]]; then pass "$name: $STATUS $got"
    else fail "$name: got $STATUS $got, want $want_status $want; body $(head -c 300 "$TMP/body")"; fi
}
C=/v1/chat/completions
I="('invalid_request_error', None, None, True)"
bad_request "malformed JSON" 400 "$I" POST $C -d '{"model":"tiny","messages":['
bad_request "not an object" 400 "$I" POST $C -d '[1,2]'
bad_request "empty body" 400 "$I" POST $C
bad_request "duplicate key" 400 "$I" POST $C -d '{"model":"tiny","model":"tiny","messages":[]}'
bad_request "missing model" 400 "('invalid_request_error', 'model', None, True)" POST $C -d '{"messages":[{"role":"user","content":"x"}]}'
bad_request "missing messages" 400 "('invalid_request_error', 'messages', None, True)" POST $C -d '{"model":"tiny"}'
bad_request "missing prompt" 400 "('invalid_request_error', 'prompt', None, True)" POST /v1/completions -d '{"model":"tiny"}'
bad_request "messages not an array" 400 "('invalid_request_error', 'messages', None, True)" POST $C -d '{"model":"tiny","messages":"hi"}'
bad_request "message without role" 400 "('invalid_request_error', 'messages', None, True)" POST $C -d '{"model":"tiny","messages":[{"content":"x"}]}'
bad_request "unknown role" 400 "('invalid_request_error', 'messages', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"wizard","content":"x"}]}'
bad_request "content a number" 400 "('invalid_request_error', 'messages', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":5}]}'
bad_request "NUL in content (jansson refuses \\u0000)" 400 "$I" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"a\u0000b"}]}'
bad_request "temperature a string" 400 "('invalid_request_error', 'temperature', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":"hot"}'
bad_request "temperature negative" 400 "('invalid_request_error', 'temperature', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":-1}'
bad_request "top_p above 1" 400 "('invalid_request_error', 'top_p', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":1.5}'
bad_request "top_k a float" 400 "('invalid_request_error', 'top_k', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_k":2.5}'
bad_request "max_tokens 0" 400 "('invalid_request_error', 'max_tokens', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0}'
bad_request "max_tokens over the limit" 400 "('invalid_request_error', 'max_tokens', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":65}'
bad_request "stream not a boolean" 400 "('invalid_request_error', 'stream', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"stream":"yes"}'
bad_request "stop a number" 400 "('invalid_request_error', 'stop', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":7}'
bad_request "empty stop string" 400 "('invalid_request_error', 'stop', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":[""]}'
bad_request "n=3" 400 "('invalid_request_error', 'n', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"n":3}'
bad_request "tools unsupported" 400 "('invalid_request_error', 'tools', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[]}'
bad_request "frequency_penalty unsupported" 400 "('invalid_request_error', 'frequency_penalty', None, True)" POST $C -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"frequency_penalty":0.5}'
bad_request "token id outside the vocabulary" 400 "('invalid_request_error', 'prompt', None, True)" POST /v1/completions -d '{"model":"tiny","prompt":[1,99999]}'
bad_request "two prompts" 400 "('invalid_request_error', 'prompt', None, True)" POST /v1/completions -d '{"model":"tiny","prompt":["a","b"]}'
bad_request "unknown model" 404 "('invalid_request_error', 'model', 'model_not_found', True)" POST $C -d '{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}'
long=$(printf 'ab %.0s' $(seq 1 400))
bad_request "prompt longer than the context" 400 "('invalid_request_error', 'prompt', 'context_length_exceeded', True)" \
    POST /v1/completions -d "{\"model\":\"tiny\",\"prompt\":\"$long\"}"
head -c 5000 /dev/zero | tr '\0' 'a' >"$TMP/big"
bad_request "body over --max-body" 413 "('invalid_request_error', None, 'body_too_large', True)" POST $C --data-binary @"$TMP/big"
bad_request "chunked body over --max-body" 413 "('invalid_request_error', None, 'body_too_large', True)" \
    POST $C -H "Transfer-Encoding: chunked" --data-binary @"$TMP/big"
bad_request "unknown path" 404 "('invalid_request_error', None, 'not_found', True)" GET /v2/nothing
bad_request "wrong method" 405 "('invalid_request_error', None, 'method_not_allowed', True)" GET $C
bad_request "POST to /v1/models" 405 "('invalid_request_error', None, 'method_not_allowed', True)" POST /v1/models -d '{}'
http GET /health
[[ $STATUS == 200 ]] && pass "still healthy after the bad requests" || fail "health after bad requests: $STATUS"

# ---- metrics ----
http GET /metrics
grep -q '^greta_requests_total{endpoint="/v1/chat/completions",status="400"} [1-9]' "$TMP/body" \
    && grep -q '^greta_requests_total{endpoint="/v1/chat/completions",status="200"} [1-9]' "$TMP/body" \
    && grep -q '^greta_requests_total{endpoint="other",status="404"} 1$' "$TMP/body" \
    && pass "metrics: requests by endpoint and status" || fail "metrics requests: $(grep requests_total "$TMP/body")"
for series in greta_prompt_tokens_total greta_generated_tokens_total greta_queue_length greta_slots_busy \
    'greta_time_to_first_token_seconds_bucket{le="+Inf"}' greta_time_to_first_token_seconds_count \
    'greta_time_per_output_token_seconds_bucket{le="+Inf"}' greta_time_per_output_token_seconds_sum; do
    grep -qF "$series " "$TMP/body" && pass "metrics: $series" || fail "metrics: no $series"
done
python3 - "$TMP/body" <<'EOF' && pass "metrics: histogram buckets cumulative, +Inf = count; token counters > 0" || fail "metrics: inconsistent"
import re, sys
text = open(sys.argv[1]).read()
for name in ("greta_time_to_first_token_seconds", "greta_time_per_output_token_seconds"):
    buckets = [int(v) for v in re.findall(r"^%s_bucket\{le=\"[^\"]+\"\} (\d+)$" % name, text, re.M)]
    count = int(re.search(r"^%s_count (\d+)$" % name, text, re.M).group(1))
    assert buckets == sorted(buckets) and buckets[-1] == count and count > 0, name
for name in ("greta_prompt_tokens_total", "greta_generated_tokens_total"):
    assert int(re.search(r"^%s (\d+)$" % name, text, re.M).group(1)) > 0, name
EOF

# ---- the openai package ----
py_checks "openai client" openai_client.py "$PORT" tiny

# ---- fuzz: mutated bodies, headers, methods, raw bytes (bounded) ----
py_checks "fuzz" fuzz.py "$PORT" tiny 400 1

stop_server; rc=$?
[[ $rc -eq 0 ]] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $rc: $(tail -5 "$TMP/server.log")"
grep -q "greta: server stopped" "$TMP/server.log" && pass "stop line" || fail "no stop line"
! grep -q "AddressSanitizer\|LeakSanitizer\|runtime error" "$TMP/server.log" && pass "no sanitizer report" \
    || fail "sanitizer: $(grep -m3 -A5 "Sanitizer\|runtime error" "$TMP/server.log")"

# ---- API key ----
if start_server "$TMP/key.log" -m "$MODEL" -np 1 --api-key s3cret -t 1; then
    body='{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":2}'
    bad_request "no key" 401 "('authentication_error', None, 'invalid_api_key', True)" POST $C -d "$body"
    bad_request "wrong key" 401 "('authentication_error', None, 'invalid_api_key', True)" POST $C -d "$body" -H "Authorization: Bearer s3creT"
    bad_request "key prefix" 401 "('authentication_error', None, 'invalid_api_key', True)" POST $C -d "$body" -H "Authorization: Bearer s3cre"
    bad_request "key longer" 401 "('authentication_error', None, 'invalid_api_key', True)" POST $C -d "$body" -H "Authorization: Bearer s3cret1"
    bad_request "metrics need the key" 401 "('authentication_error', None, 'invalid_api_key', True)" GET /metrics
    http POST $C -d "$body" -H "Authorization: Bearer s3cret"
    [[ $STATUS == 200 ]] && pass "right key: 200" || fail "right key: $STATUS $(cat "$TMP/body")"
    http GET /health
    [[ $STATUS == 200 ]] && pass "/health needs no key" || fail "/health with a key set: $STATUS"
    grep -q "API key required" "$TMP/key.log" && pass "start line says a key is required" || fail "key start line"
    stop_server || fail "key server exit"
else
    fail "key server did not start: $(cat "$TMP/key.log")"
fi
GRETA_API_KEY=envkey expect_ok "--help with GRETA_API_KEY set" "$GRETA" serve --help

# ---- binds loopback by default ----
if start_server "$TMP/default.log" -m "$MODEL" -np 1 -t 1; then
    grep -q "on http://127.0.0.1:" "$TMP/default.log" && pass "default host 127.0.0.1" || fail "default host"
    addr=$(ss -ltnp 2>/dev/null | grep "pid=$SRV_PID," | awk '{print $4}' | head -1)
    if [[ -n $addr ]]; then
        [[ $addr == "127.0.0.1:$PORT" ]] && pass "listening socket is $addr" || fail "listening on $addr"
    fi
    stop_server || fail "default server exit"
fi
finish
