#!/usr/bin/env bash
# serve_slots.sh: greta serve's capacity and safety on the default model
# (long generations are needed to catch a server mid-request): a client
# that disconnects frees its slot at once (streamed and plain), a full
# queue answers 503 at once, a request that waits too long answers 503, a
# generation past --timeout answers 504, and SIGTERM lets the request in
# flight finish, refuses new connections and exits 0. Loopback only.
source "$(dirname "$0")/lib.sh"
source "$GRETA_REPO/tests/server/serve_lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
M=SmolLM2-135M-Instruct.Q4_1
if [[ ! -f $MODEL ]]; then
    fail "MODEL MISSING: $MODEL (run 'make fetch-model')"
    finish; exit
fi
# A long generation: flat sampling makes an early end-of-generation token unlikely.
long() { echo "{\"model\":\"$M\",\"prompt\":\"x\",\"temperature\":1.5,\"top_k\":0,\"min_p\":0,\"top_p\":1,\"max_tokens\":$1,\"seed\":1$2}"; }

# health_field EXPR: EXPR over /health's JSON
health_field() { http GET /health; jfield "$1"; }
# wait_busy N: until N slots are busy (at most 30 s)
wait_busy() { for _ in $(seq 1 300); do [[ $(health_field 'd["slots_processing"]') == "$1" ]] && return 0; sleep 0.1; done; return 1; }
# wait_file_has FILE TEXT: until FILE contains TEXT (at most 60 s)
wait_file_has() { for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
generated() { http GET /metrics; sed -n 's/^greta_generated_tokens_total //p' "$TMP/body"; }

if ! start_server "$TMP/s1.log" -m "$MODEL" -np 1 --queue 1 --queue-timeout 3 --ctx 2048 -t 2; then
    fail "server did not start: $(cat "$TMP/s1.log")"; finish; exit
fi

# ---- a streamed client that leaves frees its slot at once ----
curl -sN --max-time 120 "http://127.0.0.1:$PORT/v1/completions" -d "$(long 1800 ',"stream":true')" >"$TMP/a.sse" &
CURL=$!
if wait_file_has "$TMP/a.sse" '"text"'; then
    kill "$CURL"; wait "$CURL" 2>/dev/null
    start=$SECONDS
    wait_busy 0 && pass "streamed client left: slot free after $((SECONDS - start)) s" || fail "slot still busy after the client left"
    g1=$(generated); sleep 0.5; g2=$(generated)
    [[ $g1 == "$g2" ]] && pass "no tokens generated for the departed client ($g1 total)" || fail "tokens still generated: $g1 -> $g2"
else
    fail "no streamed text: $(head -c 300 "$TMP/a.sse")"; kill "$CURL" 2>/dev/null
fi

# ---- a plain (non-streamed) client that gives up frees its slot too ----
g0=$(generated)
curl -s --max-time 1 "http://127.0.0.1:$PORT/v1/completions" -d "$(long 1800)" >/dev/null; rc=$?
[[ $rc -eq 28 ]] && pass "plain client timed out (curl exit 28)" || fail "plain client: curl exit $rc"
wait_busy 0 && pass "plain client left: slot free" || fail "slot busy after the plain client left"
g1=$(generated); sleep 0.5; g2=$(generated)
[[ $g1 == "$g2" && $g1 -gt $g0 ]] && pass "generation stopped with the client ($((g1 - g0)) tokens)" || fail "tokens: $g0 $g1 $g2"

# ---- capacity: one slot busy, one waiting, the next refused ----
curl -sN --max-time 120 "http://127.0.0.1:$PORT/v1/completions" -d "$(long 1800 ',"stream":true')" >"$TMP/b.sse" &
CURL=$!
wait_busy 1 || fail "slot never busy"
t0=$(date +%s.%N)
curl -s --max-time 30 -o "$TMP/queued.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -d "$(long 4)" >"$TMP/queued.code" &
QUEUED=$!
queued=0
for _ in $(seq 1 100); do
    http GET /metrics
    grep -q '^greta_queue_length 1$' "$TMP/body" && { queued=1; break; }
    sleep 0.05
done
[[ $queued == 1 ]] && pass "metrics: queue length 1" || fail "queue length: $(grep queue_length "$TMP/body")"
http POST /v1/completions -d "$(long 4)"
[[ $STATUS == 503 && $(jfield 'd["error"]["code"]') == server_busy ]] && pass "queue full: 503 server_busy" \
    || fail "queue full: $STATUS $(cat "$TMP/body")"
wait "$QUEUED"
t1=$(date +%s.%N)
waited=$(python3 -c "print(round($t1 - $t0, 2))")
[[ $(cat "$TMP/queued.code") == 503 ]] && grep -q '"code":"server_busy"' "$TMP/queued.json" \
    && python3 -c "import sys; sys.exit(not 2.9 <= $waited <= 20)" \
    && pass "queued past --queue-timeout 3: 503 after $waited s" || fail "queue timeout: $(cat "$TMP/queued.code") $(cat "$TMP/queued.json") after $waited s"
kill "$CURL"; wait "$CURL" 2>/dev/null
wait_busy 0 || fail "slot busy at the end"
stop_server || fail "server 1 exit"

# ---- a client that leaves during a long prefill: the prefill stops at the next chunk ----
prompt_evaluated() { http GET /metrics; sed -n 's/^greta_prompt_tokens_total //p' "$TMP/body"; }
if start_server "$TMP/s4.log" -m "$MODEL" -np 1 --ctx 8192 -t 2; then
    ids=$(python3 -c "print(','.join(str(100 + i % 5000) for i in range(8000)))")
    p0=$(prompt_evaluated); g0=$(generated)
    curl -s --max-time 1 "http://127.0.0.1:$PORT/v1/completions" -d "{\"model\":\"$M\",\"prompt\":[$ids],\"max_tokens\":4}" >/dev/null
    wait_busy 0 && pass "client left during an 8000-token prefill: slot free" || fail "slot still busy"
    p1=$(prompt_evaluated); sleep 1; p2=$(prompt_evaluated)
    # an 8000-token prompt takes many seconds (bench: ~580 tok/s on 2 quiet cores); the client gave up after 1 s
    [[ $p1 == "$p2" && $((p1 - p0)) -lt 8000 && $((p1 - p0)) -gt 0 ]] \
        && pass "the prefill stopped with the client: $((p1 - p0)) of 8000 prompt tokens evaluated" \
        || fail "prompt tokens evaluated: $p0 -> $p1 -> $p2"
    [[ $(generated) == "$g0" ]] && pass "nothing generated for it" || fail "tokens generated after the client left"
    http POST /v1/completions -d "$(long 3)"
    [[ $STATUS == 200 && $(jfield 'd["usage"]["completion_tokens"]') == 3 ]] && pass "the slot serves the next request" \
        || fail "next request: $STATUS $(cat "$TMP/body")"
    stop_server || fail "server 4 exit"
else
    fail "server 4 did not start: $(cat "$TMP/s4.log")"
fi

# ---- --timeout: a generation that runs too long ----
if start_server "$TMP/s2.log" -m "$MODEL" -np 2 --timeout 1 --ctx 2048 -t 2; then
    http POST /v1/completions -d "$(long 1800)"
    [[ $STATUS == 504 && $(jfield 'd["error"]["code"]') == timeout ]] && pass "--timeout 1: 504 timeout" \
        || fail "timeout: $STATUS $(cat "$TMP/body")"
    curl -sN --max-time 60 "http://127.0.0.1:$PORT/v1/completions" -d "$(long 1800 ',"stream":true')" >"$TMP/t.sse"
    grep -q '^data: {"error":{.*"code":"timeout"' "$TMP/t.sse" && [[ $(tail -c 15 "$TMP/t.sse") == $'data: [DONE]\n\n' || $(tail -n 2 "$TMP/t.sse") == "data: [DONE]"* ]] \
        && pass "--timeout 1, streamed: an error event, then [DONE]" || fail "streamed timeout: $(tail -c 300 "$TMP/t.sse")"
    stop_server || fail "server 2 exit"
else
    fail "server 2 did not start: $(cat "$TMP/s2.log")"
fi

# ---- SIGTERM drains: the request in flight completes, new ones are refused ----
if start_server "$TMP/s3.log" -m "$MODEL" -np 2 --ctx 2048 -t 2; then
    curl -sN --max-time 120 "http://127.0.0.1:$PORT/v1/completions" \
        -d "$(long 150 ',"stream":true,"stream_options":{"include_usage":true}')" >"$TMP/d.sse" &
    CURL=$!
    wait_file_has "$TMP/d.sse" '"text"' || fail "drain: no first token"
    kill -TERM "$SRV_PID"
    sleep 0.3
    curl -s --max-time 5 "http://127.0.0.1:$PORT/health" >/dev/null; rc=$?
    [[ $rc -eq 7 ]] && pass "after SIGTERM new connections are refused" || fail "after SIGTERM: curl exit $rc"
    wait "$CURL"
    grep -q '"completion_tokens":150' "$TMP/d.sse" && grep -q '"finish_reason":"length"' "$TMP/d.sse" \
        && [[ $(tail -n 2 "$TMP/d.sse" | head -n 1) == "data: [DONE]" ]] \
        && pass "the request in flight finished: 150 tokens, [DONE]" || fail "drained stream: $(tail -c 400 "$TMP/d.sse")"
    stop_server; rc=$?
    [[ $rc -eq 0 ]] && pass "drained server exits 0" || fail "drained server exit $rc: $(tail -3 "$TMP/s3.log")"
    grep -q "SIGTERM: finishing the requests in flight" "$TMP/s3.log" && pass "drain line" || fail "no drain line"
else
    fail "server 3 did not start: $(cat "$TMP/s3.log")"
fi
! grep -q "Sanitizer\|runtime error" "$TMP"/s*.log && pass "no sanitizer report" || fail "sanitizer: $(grep -h -m3 -A5 "Sanitizer\|runtime error" "$TMP"/s*.log)"
finish
