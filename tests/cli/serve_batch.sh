#!/usr/bin/env bash
# serve_batch.sh: batch invariance of greta serve. 32 different requests
# at once on 32 slots, then each alone: the same text, token count and
# finish reason (tests/server/batch_invariance.py); and equal to what
# `greta run` prints with the same settings (tests/server/compare_run.py).
# On a tiny synth model with 32 slots, then on the default model with 4
# (8 requests: some wait in the queue). Requests #6 and #7 have prompts of
# several prefill chunks (greta run evaluates them in one call).
source "$(dirname "$0")/lib.sh"
source "$GRETA_REPO/tests/server/serve_lib.sh"

expect_ok "synth a tiny model" "$GRETA" synth --shape tiny -o "$TMP/tiny.gguf"
if start_server "$TMP/tiny.log" -m "$TMP/tiny.gguf" -np 32 --ctx 512 -t 2 --queue-timeout 600; then
    py_checks "tiny, 32 slots" batch_invariance.py "$PORT" tiny 32 16 "$TMP/tiny.json"
    stop_server || fail "tiny server exit"
    [[ -f $TMP/tiny.json ]] && py_checks "tiny vs greta run" compare_run.py "$GRETA" "$TMP/tiny.gguf" "$TMP/tiny.json" 512 0 1 4 6 7 9 12 31
else
    fail "tiny server did not start: $(cat "$TMP/tiny.log")"
fi

MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ ! -f $MODEL ]]; then
    fail "MODEL MISSING: $MODEL (run 'make fetch-model')"
    finish; exit
fi
if start_server "$TMP/default.log" -m "$MODEL" -np 4 --ctx 512 -t 2 --queue-timeout 600; then
    py_checks "default model, 8 requests on 4 slots" batch_invariance.py "$PORT" SmolLM2-135M-Instruct.Q4_1 8 8 "$TMP/default.json"
    stop_server || fail "default server exit"
    [[ -f $TMP/default.json ]] && py_checks "default model vs greta run" compare_run.py "$GRETA" "$MODEL" "$TMP/default.json" 512 0 1 3 6 7
else
    fail "default server did not start: $(cat "$TMP/default.log")"
fi
! grep -q "Sanitizer\|runtime error" "$TMP"/*.log && pass "no sanitizer report" || fail "sanitizer: $(grep -h -m3 -A5 "Sanitizer\|runtime error" "$TMP"/*.log)"
finish
