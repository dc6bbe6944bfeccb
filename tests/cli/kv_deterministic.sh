# kv_deterministic.sh: the --kv-type and --deterministic flags (issue 12; docs/cli.md,
# docs/cuda.md) on the CPU backends: parsed by run, chat, bench, serve and audit; cpu and ref
# are deterministic already and say so (bench); cpu keeps float32 (f32 accepted, others refused on
# one line), ref its float64; an unknown type is one error line. --deterministic changes no cpu
# output: the same greedy tokens with and without it. (The cuda side, where the flags switch kernels
# and cache types, is checked on a GPU by scripts/cuda/cuda-check.)
source "$(dirname "$0")/lib.sh"
MODEL="$TMP/tiny.gguf"
"$GRETA" synth --shape tiny --seed 5 -o "$MODEL" --quiet >/dev/null 2>&1 || { fail "synth tiny"; finish; exit 1; }
P="The quick brown fox"
expect_ok "run --deterministic" "$GRETA" run -m "$MODEL" -p "$P" -n 8 --greedy --deterministic -t 2
cp "$TMP/out" "$TMP/det.out"
expect_ok "run without it" "$GRETA" run -m "$MODEL" -p "$P" -n 8 --greedy -t 2
cmp -s "$TMP/out" "$TMP/det.out" && pass "cpu: the same tokens with and without --deterministic" \
    || fail "cpu output changed with --deterministic"
expect_ok "run --kv-type f32 on cpu (its own type)" "$GRETA" run -m "$MODEL" -p "$P" -n 8 --greedy --kv-type f32 -t 2
cmp -s "$TMP/out" "$TMP/det.out" && pass "cpu: --kv-type f32 is the default cache" || fail "cpu output changed with --kv-type f32"
expect_error "q8_0 cache on cpu" "^greta: error: session: backend cpu: KV cache type q8_0 is not available on cpu: it keeps float32" \
    "$GRETA" run -m "$MODEL" -p "$P" -n 1 --kv-type q8_0
expect_error "f16 cache on ref" "^greta: error: session: backend ref: KV cache type f16 is not available on ref" \
    "$GRETA" run -m "$MODEL" -p "$P" -n 1 --backend ref --kv-type f16
expect_error "unknown cache type" "^greta: error: --kv-type: unknown KV cache type 'q4' \\(expected f32, f16 or q8_0\\)" \
    "$GRETA" run -m "$MODEL" -p "$P" -n 1 --kv-type q4
expect_error "missing value" "^greta: error: --kv-type: missing value" "$GRETA" run -m "$MODEL" -p "$P" --kv-type
expect_error "chat: unknown cache type" "^greta: error: --kv-type: unknown KV cache type 'x'" \
    "$GRETA" chat -m "$MODEL" --kv-type x
expect_ok "bench --deterministic --kv-type f32 --json" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1 --deterministic --kv-type f32 --json
grep -q '"kv_type":"f32"' "$TMP/out" && grep -q '"deterministic":true' "$TMP/out" \
    && pass "bench json reports kv_type f32, deterministic" || fail "bench json: $(head -c 400 "$TMP/out")"
expect_ok "bench (table)" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1
grep -q "^kv cache default, deterministic (batch-invariant kernels)" "$TMP/out" \
    && pass "bench says cpu is deterministic without the flag" || fail "bench table: $(head -n 4 "$TMP/out")"
expect_error "bench: unknown cache type" "^greta: error: --kv-type: unknown KV cache type 'f8'" \
    "$GRETA" bench -m "$MODEL" -p 8 -n 2 --kv-type f8
expect_ok "audit parity --deterministic" "$GRETA" audit parity -m "$MODEL" -p "$P" --deterministic
expect_ok "audit backends --kv-type q8_0 (cuda sessions only: cpu vs ref unchanged)" \
    "$GRETA" audit backends -m "$MODEL" -p "$P" --kv-type q8_0
expect_error "audit: unknown cache type" "^greta: error: --kv-type: unknown KV cache type 'z'" \
    "$GRETA" audit parity -m "$MODEL" -p "$P" --kv-type z
expect_error "serve: unknown cache type" "^greta: error: --kv-type: unknown KV cache type 'z'" \
    "$GRETA" serve -m "$MODEL" --kv-type z
expect_error "serve: q8_0 on cpu" "^greta: error: serve: slot 0: backend cpu: KV cache type q8_0 is not available on cpu" \
    "$GRETA" serve -m "$MODEL" --kv-type q8_0 --deterministic --port 0
finish
