#!/usr/bin/env bash
# StageTrace through the generation front ends: `greta run` takes the
# --trace* flags and the original's GRETA_TRACE_STAGE* environment
# variables, rejects bad values at start-up, does not change the generated
# text, and writes the same records as `greta trace record` for the same
# tokens (checked by `greta trace diff`, pairing by layer/point/pos/token).
source "$(dirname "$0")/lib.sh"
M=$TMP/tiny.gguf
"$GRETA" synth --shape tiny --type Q8_0 --seed 7 -o "$M" >/dev/null 2>&1 || { fail "synth tiny"; finish; exit 1; }
run=("$GRETA" run -m "$M" -p "hello world" --greedy -n 4 -t 2)

# tracing must not change the output text
expect_ok "run without trace" "${run[@]}"
cp "$TMP/out" "$TMP/plain.txt"
expect_ok "run with --trace" "${run[@]}" --trace "$TMP/a.jsonl" --trace-layers 0,1 \
    --trace-points x_in,q_rope,attn_out,logits --trace-phases prefill_last,decode0,decode1
if cmp -s "$TMP/out" "$TMP/plain.txt"; then pass "same text with and without tracing"; else fail "tracing changed the text"; fi

# the file: header first, then exactly the selected records
python3 - "$TMP/a.jsonl" >"$TMP/check" 2>&1 <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["event"] == "stage_trace_header", "first line is not the header"
recs = lines[1:]
phases = sorted({r["phase"] for r in recs})
assert phases == ["decode0", "decode1", "prefill_last"], phases
last = [r for r in recs if r["phase"] == "prefill_last"]
d0 = [r for r in recs if r["phase"] == "decode0"]
assert all(r["pos_id"] == last[0]["pos_id"] for r in last)
assert all(r["pos_id"] == last[0]["pos_id"] + 1 for r in d0), "decode0 is not at the next position"
per_phase = {p: sorted((r["layer"], r["point"]) for r in recs if r["phase"] == p) for p in phases}
want = sorted([(l, p) for l in (0, 1) for p in ("x_in", "q_rope", "attn_out")] + [(2, "logits")])
for p, got in per_phase.items():
    assert got == want, (p, got)
print("ok")
PY
if [[ $(cat "$TMP/check") == ok ]]; then pass "trace file has the header and the selected records"; else fail "trace file: $(cat "$TMP/check")"; fi

# the environment variables of the original
GRETA_TRACE_STAGE=1 GRETA_TRACE_STAGE_OUT="$TMP/env.jsonl" GRETA_TRACE_STAGE_LAYERS=1 \
GRETA_TRACE_STAGE_POINTS=ffn_act GRETA_TRACE_STAGE_PHASES=decode0 GRETA_TRACE_STAGE_SAMPLE=0 \
    "${run[@]}" >/dev/null 2>"$TMP/err"
n=$(grep -c '"point":"ffn_act"' "$TMP/env.jsonl" 2>/dev/null)
if [[ $n == 1 ]] && grep -q '"layer":1' "$TMP/env.jsonl"; then pass "GRETA_TRACE_STAGE* env selects one record"; else fail "env trace: $n records"; fi

# flags win over the environment
GRETA_TRACE_STAGE=1 GRETA_TRACE_STAGE_OUT="$TMP/env2.jsonl" GRETA_TRACE_STAGE_POINTS=ffn_act \
    "${run[@]}" --trace-points x_in --trace-layers 0 --trace-phases decode0 >/dev/null 2>&1
if grep -q '"point":"x_in"' "$TMP/env2.jsonl" && ! grep -q '"point":"ffn_act"' "$TMP/env2.jsonl"; then
    pass "flags win over the environment"; else fail "flags did not win over the environment"; fi

# start-up errors
# (whole messages: a pattern like "layer" would match almost any error)
expect_error "unknown point" "^greta: error: --trace-points: unknown trace point 'nope' \(points: x_in " \
    "${run[@]}" --trace "$TMP/x.jsonl" --trace-points nope
expect_error "layer out of range" \
    "^greta: error: trace: layers '5': layer 5 out of range: the model has 2 layers \(0-1\)$" \
    "${run[@]}" --trace "$TMP/x.jsonl" --trace-layers 5
expect_error "unknown phase" "^greta: error: --trace-phases: unknown trace phase 'decodeX' \(phases: prefill, " \
    "${run[@]}" --trace "$TMP/x.jsonl" --trace-phases decodeX
expect_error "bad env point" "^greta: error: trace: GRETA_TRACE_STAGE_POINTS: unknown trace point 'nope' \(points: " \
    env GRETA_TRACE_STAGE=1 GRETA_TRACE_STAGE_POINTS=nope "${run[@]}"
expect_error "bad env point is named even with --trace flags" "^greta: error: trace: .*nope" \
    env GRETA_TRACE_STAGE=1 GRETA_TRACE_STAGE_POINTS=nope "${run[@]}" --trace "$TMP/x.jsonl"
expect_error "GRETA_TRACE_STAGE=1 without an output" \
    "^greta: error: trace: tracing is on but has no output \(--trace FILE or GRETA_TRACE_STAGE_OUT\)$" \
    env GRETA_TRACE_STAGE=1 "${run[@]}"
GRETA_TRACE_STAGE=1 GRETA_TRACE_STAGE_POINTS=logits "${run[@]}" --trace "$TMP/stage.jsonl" >/dev/null 2>&1
if grep -q '"point":"logits"' "$TMP/stage.jsonl" 2>/dev/null; then pass "GRETA_TRACE_STAGE=1 completed by --trace FILE"; else fail "GRETA_TRACE_STAGE=1 + --trace FILE wrote no logits record"; fi
expect_error "unwritable trace file" \
    "^greta: error: trace: cannot create '/nonexistent-dir/t.jsonl': No such file or directory$" \
    "${run[@]}" --trace /nonexistent-dir/t.jsonl

# greta run and greta trace record see the same prompt rows
"$GRETA" run -m "$M" -p "hello world" --greedy -n 1 -t 2 --trace "$TMP/run.jsonl" --trace-phases prefill --trace-sample 0 >/dev/null 2>&1
"$GRETA" trace record -m "$M" -p "hello world" -t 2 --trace "$TMP/rec.jsonl" --trace-phases prefill --trace-sample 0 >/dev/null 2>&1
expect_ok "run trace equals trace record (diff exit 0)" "$GRETA" trace diff "$TMP/run.jsonl" "$TMP/rec.jsonl"
finish
