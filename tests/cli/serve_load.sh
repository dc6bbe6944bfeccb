#!/usr/bin/env bash
# serve_load.sh: a short load test of greta serve (the full 2-minute run
# on the default model is in docs/benchmarks.md): 32 concurrent streaming
# clients for 20 s on a tiny synth model with 32 slots, zero errors, every
# response complete, RSS stable (tests/server/load.py); under the
# sanitizers LeakSanitizer checks the clean exit instead of the RSS.
source "$(dirname "$0")/lib.sh"
source "$GRETA_REPO/tests/server/serve_lib.sh"
SECONDS_LOAD=${GRETA_LOAD_SECONDS:-20}
expect_ok "synth a tiny model" "$GRETA" synth --shape tiny -o "$TMP/tiny.gguf"
if start_server "$TMP/load.log" -m "$TMP/tiny.gguf" -np 32 --ctx 512 -t 2; then
    rss_mode=check_rss
    if [[ $GRETA_BUILD == *san* ]]; then
        rss_mode=""
        echo "     (sanitizer build: its allocator keeps freed memory in quarantine, so RSS is not a leak signal;"
        echo "      LeakSanitizer checks the exit below)"
    fi
    py_checks "load" load.py "$PORT" tiny 32 "$SECONDS_LOAD" "$SRV_PID" $rss_mode
    http GET /metrics
    grep -q '^greta_requests_total{endpoint="/v1/chat/completions",status="200"}' "$TMP/body" \
        && ! grep -q '^greta_requests_total{endpoint="/v1/chat/completions",status="5' "$TMP/body" \
        && pass "metrics: only 200s for the load" || fail "metrics: $(grep requests_total "$TMP/body")"
    stop_server; rc=$?
    [[ $rc -eq 0 ]] && pass "clean exit after the load (exit 0; no leak reported)" || fail "exit $rc: $(tail -20 "$TMP/load.log")"
else
    fail "server did not start: $(cat "$TMP/load.log")"
fi
finish
