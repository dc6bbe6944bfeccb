# precision.sh: the cpu backend's q8 precision (8-bit activations, integer dot products), its
# default. On the default model `greta audit backends` with no flag (cpu at its default, q8, vs
# the float64 ref backend) passes at its default tolerance, the per-point bounds docs/engine.md
# documents (every row ||a - b|| / ||b|| of a point within its bound: 0.1 for q/k up to 0.4 for
# mlp_out and logits), on plain and chat prompts (the Japanese chat prompt had the largest errors
# measured), and so do random models of every weight type; q8 is far from f32 (so the flag really
# switches arithmetic); prefill/decode parity, thread invariance and tracing neutrality bit for
# bit at the default too; the f32 path one flag away and unchanged (1e-4 against ref); flag
# errors on one line.
source "$(dirname "$0")/lib.sh"
MODEL="$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f $MODEL ]]; then fail "default model missing: $MODEL (make fetch-model)"; finish; exit 1; fi
P1="The capital of France is"
P2="Write a short poem about the sea, the wind and the sailors who cross it every night."
# Under the sanitizers (whose job is memory errors; the ref backend is slow there) a subset:
# the plain prompt, no chat prompts, two random models. The plain build runs everything.
if [[ $GRETA_BUILD == *san* ]]; then
    plain_prompts=("$P1"); chat_prompts=(); types=(Q4_K_M BF16)
    echo "     (sanitizer build: audits of the plain prompt and of random Q4_K_M and BF16 models only)"
else
    plain_prompts=("$P1" "$P2"); chat_prompts=("$P2" "日本の首都はどこですか？")
    types=(Q4_0 Q4_1 Q8_0 Q4_K_M Q5_K_M Q6_K F16 BF16)
fi
for p in "${plain_prompts[@]}"; do
    expect_ok "default (q8) vs ref within the default bound at every point: '${p:0:20}...'" \
        "$GRETA" audit backends -m "$MODEL" -p "$p"
    grep -q "^backends: cpu (q8) vs ref (f64) .* ok" "$TMP/out" && grep -q "^verdict: PASS" "$TMP/out" \
        && pass "the audit names cpu's default precision q8 and passes" \
        || fail "default audit: $(grep -E '^backends|verdict' "$TMP/out")"
done
for p in "${chat_prompts[@]}"; do
    expect_ok "--precision q8 vs ref within the per-point bounds, chat prompt '${p:0:20}...'" \
        "$GRETA" audit backends -m "$MODEL" --chat -p "$p" --precision q8
    grep -q "^verdict: PASS" "$TMP/out" || fail "verdict: $(grep verdict "$TMP/out")"
done
for t in "${types[@]}"; do
    "$GRETA" synth --shape tiny --type $t --seed 3 -o "$TMP/s.gguf" >/dev/null 2>&1 || fail "synth tiny $t"
    expect_ok "random tiny $t: default (q8) vs ref within the per-point bounds" \
        "$GRETA" audit backends -m "$TMP/s.gguf" -p "Hello world, this is a test of the audit"
    grep -q "^verdict: PASS" "$TMP/out" || fail "$t verdict: $(grep verdict "$TMP/out")"
done
"$GRETA" audit backends -m "$MODEL" -p "$P1" --rel 0.05 >"$TMP/out" 2>&1
grep -q "^verdict: FAIL" "$TMP/out" && pass "the default's error is measured, not hidden: it exceeds rel 0.05 somewhere" \
    || fail "default within 0.05 of ref: $(tail -n 2 "$TMP/out")"
"$GRETA" audit backends -m "$MODEL" -p "$P1" --precision q8 --rel 0.001 >"$TMP/out" 2>&1
grep -q "^verdict: FAIL" "$TMP/out" && pass "q8 differs from ref beyond rel 0.001 (the q8 kernels ran)" \
    || fail "q8 within 0.001 of ref: did the flag reach the backend? $(tail -n 2 "$TMP/out")"
grep -E "^  layer +30 .*logits rel" "$TMP/out" | awk '{ if ($NF > 0.1) exit 1 }' \
    && pass "q8 logits rel error <= 0.1: $(grep -E '^  layer +30' "$TMP/out" | awk '{print $NF}')" \
    || fail "q8 logits: $(grep -E '^  layer +30' "$TMP/out")"
expect_ok "--precision f32 vs ref within 1e-4 (the default tolerance at f32)" \
    "$GRETA" audit backends -m "$MODEL" -p "$P1" --precision f32
grep -q "^backends: cpu (f32) vs ref (f64) .* ok" "$TMP/out" || fail "f32 audit: $(grep -E '^backends' "$TMP/out")"
expect_ok "default prefill/decode parity, bit for bit" "$GRETA" audit parity -m "$MODEL" -p "$P1"
grep -q "^verdict: PASS" "$TMP/out" || fail "parity verdict: $(grep verdict "$TMP/out")"
expect_ok "default tracing neutrality, bit for bit" "$GRETA" audit neutrality -m "$MODEL" -p "$P1"
grep -q "^verdict: PASS" "$TMP/out" || fail "neutrality verdict: $(grep verdict "$TMP/out")"
expect_ok "q8 prefill/decode parity, bit for bit" "$GRETA" audit parity -m "$MODEL" -p "$P2" --precision q8
grep -q "^verdict: PASS" "$TMP/out" || fail "parity verdict: $(grep verdict "$TMP/out")"
expect_ok "q8 run/rerun and 1 vs 2 threads, bit for bit" "$GRETA" audit determinism -m "$MODEL" -p "$P2" --precision q8
grep -q "^verdict: PASS" "$TMP/out" || fail "determinism verdict: $(grep verdict "$TMP/out")"
expect_ok "bench --precision q8" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --precision q8 --json
grep -q '"precision":"q8"' "$TMP/out" && pass "bench reports precision q8" || fail "bench json: $(head -c 300 "$TMP/out")"
expect_ok "bench default precision is q8" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --json
grep -q '"precision":"q8"' "$TMP/out" && pass "bench reports precision q8 by default" || fail "bench json: $(head -c 300 "$TMP/out")"
expect_ok "bench --precision f32" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --precision f32 --json
grep -q '"precision":"f32"' "$TMP/out" && pass "bench reports precision f32" || fail "bench json: $(head -c 300 "$TMP/out")"
expect_ok "bench on ref: f32 (float64 arithmetic), never q8" "$GRETA" bench -m "$MODEL" -p 2 -n 1 -r 1 --backend ref --json
grep -q '"precision":"f32"' "$TMP/out" && pass "ref bench reports f32" || fail "ref bench json: $(head -c 300 "$TMP/out")"
# the trace header names the arithmetic
expect_ok "trace record at the default" "$GRETA" trace record -m "$MODEL" -p "$P1" --trace "$TMP/def.jsonl"
head -n 1 "$TMP/def.jsonl" | grep -q '"precision":"q8"' && pass "trace header: precision q8 by default" \
    || fail "trace header: $(head -c 300 "$TMP/def.jsonl")"
"$GRETA" trace record -m "$MODEL" -p "$P1" --precision f32 --trace "$TMP/f32.jsonl" >/dev/null 2>&1
head -n 1 "$TMP/f32.jsonl" | grep -q '"precision":"f32"' && pass "trace header: precision f32 when pinned" \
    || fail "trace header f32: $(head -c 300 "$TMP/f32.jsonl")"
# --precision on perplexity and serve
expect_error "perplexity: unknown precision" "^greta: error: --precision: unknown precision 'q4'" \
    "$GRETA" perplexity -m "$MODEL" -f "$GRETA_REPO/README.md" --precision q4
expect_error "serve: unknown precision" "^greta: error: --precision: unknown precision 'q4'" \
    "$GRETA" serve -m "$MODEL" --precision q4
expect_error "serve: q8 on ref" "precision q8 is only available on the cpu and cuda backends" \
    "$GRETA" serve -m "$MODEL" --port 0 --backend ref --precision q8
expect_ok "run --precision q8" "$GRETA" run -m "$MODEL" -p "$P1" -n 4 --greedy --precision q8 -t 2
expect_ok "trace record --precision q8" "$GRETA" trace record -m "$MODEL" -p "$P1" --precision q8 --trace "$TMP/q8.jsonl"
expect_error "q8 on the ref backend" "^greta: error: session: precision q8 is only available on the cpu and cuda backends" \
    "$GRETA" run -m "$MODEL" -p "$P1" -n 1 --backend ref --precision q8
# q8 is a cuda precision too: in a build without CUDA the error is the missing backend, not the precision
expect_error "q8 on cuda in a cpu build" "^greta: error: .*greta was not built with CUDA" \
    "$GRETA" run -m "$MODEL" -p "$P1" -n 1 --backend cuda --precision q8
expect_error "unknown precision" "^greta: error: --precision: unknown precision 'f16'" \
    "$GRETA" run -m "$MODEL" -p "$P1" -n 1 --precision f16
expect_error "audit: unknown precision" "^greta: error: --precision: unknown precision 'x'" \
    "$GRETA" audit backends -m "$MODEL" -p "$P1" --precision x
finish
