# precision.sh: the cpu backend's q8 precision (8-bit activations, integer dot products) on the
# default model: its error against the float64 ref backend at every trace point within the bound
# docs/engine.md documents (every row ||a - b|| / ||b|| <= 0.15; measured up to 0.09), and far
# from f32 (so the flag really switches arithmetic); prefill/decode parity and thread invariance
# bit for bit on q8 too; the f32 path unchanged (1e-4 against ref); flag errors on one line.
source "$(dirname "$0")/lib.sh"
MODEL="$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $MODEL ]]; then fail "default model missing: $MODEL (make fetch-model)"; finish; exit 1; fi
P1="The capital of France is"
P2="Write a short poem about the sea, the wind and the sailors who cross it every night."
for p in "$P1" "$P2"; do
    expect_ok "q8 vs ref within rel 0.15 at every point: '${p:0:20}...'" \
        "$GRETA" audit backends -m "$MODEL" -p "$p" --precision q8 --rel 0.15
    grep -q "^verdict: PASS" "$TMP/out" || fail "verdict: $(grep verdict "$TMP/out")"
done
"$GRETA" audit backends -m "$MODEL" -p "$P1" --precision q8 --rel 0.001 >"$TMP/out" 2>&1
grep -q "^verdict: FAIL" "$TMP/out" && pass "q8 differs from ref beyond rel 0.001 (the q8 kernels ran)" \
    || fail "q8 within 0.001 of ref: did the flag reach the backend? $(tail -n 2 "$TMP/out")"
grep -E "^  layer +30 .*logits rel" "$TMP/out" | awk '{ if ($NF > 0.1) exit 1 }' \
    && pass "q8 logits rel error <= 0.1: $(grep -E '^  layer +30' "$TMP/out" | awk '{print $NF}')" \
    || fail "q8 logits: $(grep -E '^  layer +30' "$TMP/out")"
expect_ok "f32 (default) vs ref within 1e-4" "$GRETA" audit backends -m "$MODEL" -p "$P1" --precision f32
expect_ok "q8 prefill/decode parity, bit for bit" "$GRETA" audit parity -m "$MODEL" -p "$P2" --precision q8
grep -q "^verdict: PASS" "$TMP/out" || fail "parity verdict: $(grep verdict "$TMP/out")"
expect_ok "q8 run/rerun and 1 vs 2 threads, bit for bit" "$GRETA" audit determinism -m "$MODEL" -p "$P2" --precision q8
grep -q "^verdict: PASS" "$TMP/out" || fail "determinism verdict: $(grep verdict "$TMP/out")"
expect_ok "bench --precision q8" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --precision q8 --json
grep -q '"precision":"q8"' "$TMP/out" && pass "bench reports precision q8" || fail "bench json: $(head -c 300 "$TMP/out")"
expect_ok "bench default precision is f32" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --json
grep -q '"precision":"f32"' "$TMP/out" && pass "bench reports precision f32" || fail "bench json: $(head -c 300 "$TMP/out")"
expect_ok "run --precision q8" "$GRETA" run -m "$MODEL" -p "$P1" -n 4 --greedy --precision q8 -t 2
expect_ok "trace record --precision q8" "$GRETA" trace record -m "$MODEL" -p "$P1" --precision q8 --trace "$TMP/q8.jsonl"
expect_error "q8 on the ref backend" "^greta: error: session: precision q8 is only available on the cpu backend" \
    "$GRETA" run -m "$MODEL" -p "$P1" -n 1 --backend ref --precision q8
expect_error "unknown precision" "^greta: error: --precision: unknown precision 'f16'" \
    "$GRETA" run -m "$MODEL" -p "$P1" -n 1 --precision f16
expect_error "audit: unknown precision" "^greta: error: --precision: unknown precision 'x'" \
    "$GRETA" audit backends -m "$MODEL" -p "$P1" --precision x
finish
