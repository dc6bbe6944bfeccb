# trace.sh: greta trace record / trace diff / audit from the command line:
# exit codes 0/1/2, the pairing rules (mismatch, unpaired, the B3.27
# mispairing), malformed input, JSON/HTML reports, the audits on a small
# random model, and the diff against the committed transformers trace.
source "$(dirname "$0")/lib.sh"

M=$TMP/tiny.gguf
"$GRETA" synth --shape tiny --type F32 -o "$M" >/dev/null 2>&1 || fail "synth tiny model"
IDS=72,101,108,108,111,32,119,111
rec() { "$GRETA" trace record -m "$M" "$@" >/dev/null 2>"$TMP/rec.err"; }

rec --ids $IDS --trace "$TMP/cpu.jsonl" --trace-sample 0 && pass "record cpu trace" || fail "record cpu: $(cat "$TMP/rec.err")"
rec --ids $IDS --trace "$TMP/cpu2.jsonl" --trace-sample 0 -t 1 && pass "record cpu trace, 1 thread" || fail "record cpu2"
rec --ids $IDS --backend ref --trace "$TMP/ref.jsonl" --trace-sample 0 && pass "record ref trace" || fail "record ref"

# header first, then records with the required fields
if python3 - "$TMP/cpu.jsonl" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
h = lines[0]
assert h["event"] == "stage_trace_header" and h["n_layers"] == 2 and h["backend"] == "cpu", h
need = "event prompt_id phase point layer step pos_id seq_len tokens_total token_index token_id backend n hash min max mean rms nan inf sample".split()
for r in lines[1:]:
    assert all(k in r for k in need), r.keys()
    assert len(r["sample"]) == r["n"]
# every point of every layer for 8 rows: 2 layers x 16 points + 3 final points
assert len(lines) - 1 == 8 * (2 * 16 + 3), len(lines)
EOF
then pass "schema: header + every point of every row"; else fail "schema check"; fi

expect_code() {  # DESCRIPTION CODE PATTERN CMD...
    local d=$1 code=$2 pat=$3; shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
    if [[ $rc -eq $code ]] && grep -qE "$pat" "$TMP/out" "$TMP/err"; then pass "$d"
    else fail "$d (exit $rc, want $code): $(head -c 300 "$TMP/err") $(tail -n 3 "$TMP/out" | head -c 300)"; fi
}

expect_code "same trace: exit 0" 0 "verdict: PASS" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/cpu.jsonl"
expect_code "1 vs 2 threads bitwise: exit 0" 0 "verdict: PASS" "$GRETA" trace diff "$TMP/cpu2.jsonl" "$TMP/cpu.jsonl"
expect_code "cpu vs ref exact: exit 1, first divergence named" 1 "first divergence: layer 0, point" \
    "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/ref.jsonl"
expect_code "cpu vs ref --rel 1e-4: exit 0" 0 "verdict: PASS" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/ref.jsonl" --rel 1e-4
expect_code "cpu vs ref --atol 1e-12: exit 1" 1 "DIVERGED" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/ref.jsonl" --atol 1e-12

# input mismatch: same positions, one different token
rec --ids 72,101,108,108,111,32,119,112 --trace "$TMP/other.jsonl" --trace-sample 0
expect_code "different token at a position: exit 2" 2 "input mismatch at layer 0 x_in pos_id 7" \
    "$GRETA" trace diff "$TMP/other.jsonl" "$TMP/cpu.jsonl"
# unpaired: fewer layers in A
rec --ids $IDS --trace "$TMP/l0.jsonl" --trace-sample 0 --trace-layers 0
expect_code "unpaired records: exit 2" 2 "unpaired: B has layer 1" "$GRETA" trace diff "$TMP/l0.jsonl" "$TMP/cpu.jsonl"

# B3.27: prefill_last at pos N-1 vs decode0 at pos N is refused
rec --ids $IDS --trace "$TMP/pl.jsonl" --trace-phases prefill_last --trace-sample 0
rec --ids $IDS -n 1 --trace "$TMP/d0.jsonl" --trace-phases decode0 --trace-sample 0
expect_code "prefill_last@N-1 vs decode0@N refused" 2 "no record pairs.*pos_id 7 \(phase prefill_last\).*pos_id 8 \(phase decode0\)" \
    "$GRETA" trace diff "$TMP/pl.jsonl" "$TMP/d0.jsonl"
# correctly paired: the last token decoded (decode0) at pos N-1 after a prefill of N-1 tokens
rec --ids $IDS --split 7 --trace "$TMP/split.jsonl" --trace-phases decode0 --trace-sample 0
expect_code "decode0@N-1 vs prefill_last@N-1: paired, bitwise equal" 0 "no divergence in 35 paired rows" \
    "$GRETA" trace diff "$TMP/split.jsonl" "$TMP/pl.jsonl"

# malformed and unusable input
{ head -n 3 "$TMP/cpu.jsonl"; echo '{"event":"stage_trace", "phase": '; } >"$TMP/bad.jsonl"
expect_code "malformed JSON: exit 2 naming file:line" 2 "bad.jsonl:4: malformed JSON" "$GRETA" trace diff "$TMP/bad.jsonl" "$TMP/cpu.jsonl"
{ head -n 2 "$TMP/cpu.jsonl" | sed 's/"hash":"[0-9a-f]*"/"hash":"xyz"/'; } >"$TMP/badhash.jsonl"
expect_code "bad hash field: exit 2" 2 "badhash.jsonl:2: .*hash" "$GRETA" trace diff "$TMP/badhash.jsonl" "$TMP/cpu.jsonl"
: >"$TMP/empty.jsonl"
expect_code "empty file: exit 2" 2 "empty trace" "$GRETA" trace diff "$TMP/empty.jsonl" "$TMP/cpu.jsonl"
expect_code "missing file: exit 2" 2 "cannot open" "$GRETA" trace diff "$TMP/nope.jsonl" "$TMP/cpu.jsonl"
expect_code "bad tolerance: exit 2" 2 "bad tolerance" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/cpu.jsonl" --rel abc

# machine and human reports
"$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/ref.jsonl" --json --html "$TMP/diff.html" >"$TMP/diff.json"
if [[ $? -eq 1 ]] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['verdict']=='diverged' and d['first_divergence']['layer']==0 and len(d['cells'])==35" "$TMP/diff.json"; then
    pass "--json report"; else fail "--json report: $(head -c 300 "$TMP/diff.json")"; fi
if grep -q "<table" "$TMP/diff.html" && ! grep -qE "(src|href)=\"http" "$TMP/diff.html"; then pass "--html self-contained heatmap"; else fail "--html"; fi

# start-up errors: unknown point/phase, layer out of range
expect_error "unknown point is a start-up error" "unknown trace point 'bogus'" "$GRETA" trace record -m "$M" --ids $IDS --trace "$TMP/x.jsonl" --trace-points x_in,bogus
expect_error "unknown phase is a start-up error" "unknown trace phase 'decodes'" "$GRETA" trace record -m "$M" --ids $IDS --trace "$TMP/x.jsonl" --trace-phases decodes
expect_error "layer out of range is a start-up error" "layer 2 out of range: the model has 2 layers" "$GRETA" trace record -m "$M" --ids $IDS --trace "$TMP/x.jsonl" --trace-layers 0,2
expect_error "bad env value is a start-up error" "GRETA_TRACE_STAGE_POINTS" env GRETA_TRACE_STAGE_POINTS=nope "$GRETA" trace record -m "$M" --ids $IDS --trace "$TMP/x.jsonl"
rec() { "$GRETA" trace record -m "$M" "$@"; }
if GRETA_TRACE_STAGE_LAYERS=1 GRETA_TRACE_STAGE_SAMPLE=3 rec --ids $IDS --trace "$TMP/env.jsonl" --trace-sample 0 2>/dev/null &&
    python3 -c "
import json,sys
rs=[json.loads(l) for l in open(sys.argv[1])][1:]
assert {r['layer'] for r in rs}=={1,2}, {r['layer'] for r in rs}
assert all(len(r['sample'])==r['n'] for r in rs)" "$TMP/env.jsonl"; then
    pass "environment applies, flags win over it"; else fail "env + flags"; fi

# audits on the tiny model
expect_code "audit parity passes" 0 "verdict: PASS: parity" "$GRETA" audit parity -m "$M" --ids $IDS
expect_code "audit backends passes" 0 "verdict: PASS: backends" "$GRETA" audit backends -m "$M" --ids $IDS --a cpu --b ref
nl=$("$GRETA" inspect "$M" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hyperparameters"]["block_count"])')
grep -qE "^  layer +$nl  max rel .*  logits rel " "$TMP/out" && pass "error growth: the row after the last layer is labelled logits" \
    || fail "error growth final row: $(tail -n 3 "$TMP/out")"
# "largest row rel" is the metric --rel bounds: the audit passes just above it and fails just below
# (the f32 cpu session, whose rows all differ from ref by a little)
"$GRETA" audit backends -m "$M" --ids $IDS --a cpu --b ref --precision f32 >"$TMP/rowrel" 2>&1
row_rel=$(sed -n 's/^largest row rel \([0-9.e+-]*\) (layer .*): the metric the tolerance bounds$/\1/p' "$TMP/rowrel")
if [[ -n $row_rel ]] && python3 -c "import sys; assert 0 < float(sys.argv[1]) < 1e-4" "$row_rel"; then
    pass "audit backends names its largest row rel ($row_rel)"
    above=$(python3 -c "import sys; print(float(sys.argv[1]) * 1.02)" "$row_rel")
    below=$(python3 -c "import sys; print(float(sys.argv[1]) * 0.98)" "$row_rel")
    expect_code "audit backends passes at 1.02x its largest row rel" 0 "verdict: PASS: backends" \
        "$GRETA" audit backends -m "$M" --ids $IDS --a cpu --b ref --precision f32 --rel "$above"
    expect_code "audit backends fails at 0.98x its largest row rel" 1 "verdict: FAIL: backends" \
        "$GRETA" audit backends -m "$M" --ids $IDS --a cpu --b ref --precision f32 --rel "$below"
else
    fail "audit backends largest row rel: '$row_rel' from $(grep -c . "$TMP/rowrel") lines: $(tail -n 2 "$TMP/rowrel")"
fi
expect_code "audit determinism passes" 0 "verdict: PASS: determinism" "$GRETA" audit determinism -m "$M" --ids $IDS -t 2 --threads-alt 1
# ref splits its matrix products over threads by output row: no bit may change (float64 rows)
expect_code "audit determinism on ref, 3 threads vs 1" 0 "verdict: PASS: determinism" "$GRETA" audit determinism -m "$M" --ids $IDS --backend ref -t 3 --threads-alt 1
expect_code "audit neutrality passes" 0 "verdict: PASS: neutrality" "$GRETA" audit neutrality -m "$M" --ids $IDS
expect_code "audit backends exact fails and names the first divergence" 1 "FAIL: backends: cpu \\(q8\\) vs ref \\(f64\\): first divergence: layer 0" \
    "$GRETA" audit backends -m "$M" --ids $IDS --atol 0
expect_error "audit parity on one token is an error" "^greta: error: audit parity: needs a prompt of at least 2 tokens \(got 1\)$" "$GRETA" audit parity -m "$M" --ids 72
expect_error "audit unknown kind" "unknown kind 'nope'" "$GRETA" audit nope -m "$M" --ids $IDS

# flag errors of audit and trace: one clear line, exit 2
for c in "audit parity" "trace record --trace $TMP/x.jsonl"; do
    expect_code "$c: bad id list" 2 "greta: error: --ids: bad token id list '1,x'" "$GRETA" $c -m "$M" --ids 1,x
    expect_code "$c: trailing comma in the id list" 2 "greta: error: --ids: bad token id list '1,2,'" "$GRETA" $c -m "$M" --ids 1,2,
    expect_code "$c: unknown option" 2 "greta: error: .*unknown option '--bogus'" "$GRETA" $c -m "$M" --ids $IDS --bogus
    expect_code "$c: --help" 0 "usage: greta" "$GRETA" $c --help
done
expect_code "audit without a kind: one error line" 2 "^greta: error: audit: missing KIND" "$GRETA" audit
expect_code "trace without a subcommand: one error line" 2 "^greta: error: trace: missing subcommand" "$GRETA" trace
expect_code "audit: missing value" 2 "greta: error: --decode: missing value" "$GRETA" audit parity -m "$M" --ids $IDS --decode
expect_code "audit: bad count" 2 "greta: error: --decode: bad value '-1'" "$GRETA" audit neutrality -m "$M" --ids $IDS --decode -1
expect_code "audit: bad tolerance" 2 "greta: error: --atol: bad tolerance 'nan'" "$GRETA" audit backends -m "$M" --ids $IDS --atol nan
expect_code "trace record: missing value" 2 "greta: error: -n: missing value" "$GRETA" trace record -m "$M" --ids $IDS -n
expect_code "trace diff: missing value" 2 "greta: error: --rel: missing value" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/cpu.jsonl" --rel
expect_code "trace diff: unknown option" 2 "greta: error: trace diff: unknown option '--bogus'" "$GRETA" trace diff "$TMP/cpu.jsonl" "$TMP/cpu.jsonl" --bogus

# transformers reference (committed fixture) vs greta on the default model
REAL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
gzip -dc "$GRETA_REPO/tests/fixtures/trace/hf_buenos_aires_f64.jsonl.gz" >"$TMP/hf.jsonl"
if [[ ! -f $REAL ]]; then
    fail "default model missing ($REAL): run scripts/fetch-model"
else
    # cpu at --precision f32 (the exact path, pinned), ref, and cpu at its default (q8)
    for b in "cpu --precision f32" ref cpu; do
        "$GRETA" trace record -m "$REAL" -p "Write one short sentence about Buenos Aires." --backend $b \
            --trace "$TMP/g_${b// /_}.jsonl" --trace-layers 0,1,29 --trace-phases prefill_last --trace-sample 0 2>/dev/null
    done
    expect_code "greta cpu f32 vs transformers f64: rel <= 1e-4 at every point" 0 "no divergence in 51 paired rows" \
        "$GRETA" trace diff "$TMP/g_cpu_--precision_f32.jsonl" "$TMP/hf.jsonl" --rel 1e-4
    expect_code "greta cpu default (q8) vs transformers f64: rel <= 0.15 at every point" 0 "no divergence in 51 paired rows" \
        "$GRETA" trace diff "$TMP/g_cpu.jsonl" "$TMP/hf.jsonl" --rel 0.15
    expect_code "greta ref vs transformers f64: rel <= 1e-9 at every point" 0 "no divergence in 51 paired rows" \
        "$GRETA" trace diff "$TMP/g_ref.jsonl" "$TMP/hf.jsonl" --rel 1e-9
    expect_code "greta cpu vs transformers exact: diverges (different precision)" 1 "verdict: DIVERGED" \
        "$GRETA" trace diff "$TMP/g_cpu_--precision_f32.jsonl" "$TMP/hf.jsonl"
fi
finish
