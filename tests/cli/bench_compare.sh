# bench_compare.sh: scripts/bench-compare's table against a stub llama-bench whose figures are
# fixed (pp 100 tok/s, tg 50 tok/s): every cell is present, the llama.cpp columns hold the stub's
# numbers, each ratio is greta's figure / the stub's, and both engines ran pinned with the given
# arguments. (Timings themselves are not asserted: speed is never a test.) Errors: one line.
source "$(dirname "$0")/lib.sh"
SCRIPT="$GRETA_REPO/scripts/bench-compare"
STUB="$TMP/llama-bench"
cat >"$STUB" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/stub-args"
p=0 n=0
while [[ $# -gt 0 ]]; do case $1 in -p) p=$2; shift ;; -n) n=$2; shift ;; esac; shift; done
printf '[{"n_prompt": %d, "n_gen": 0, "avg_ts": 100.0}, {"n_prompt": 0, "n_gen": %d, "avg_ts": 50.0}]\n' "$p" "$n"
EOF
chmod +x "$STUB"
"$SCRIPT" --llama-bench "$STUB" --greta "$GRETA" --shapes tiny --types Q8_0,Q4_K_M --threads 1,2 -p 16 -n 4 -r 1 \
    --rounds 2 --models-dir "$TMP/models" >"$TMP/out" 2>"$TMP/err"
rc=$?
[[ $rc -eq 0 ]] && pass "bench-compare ran (tiny, Q8_0 + Q4_K_M, 1 and 2 threads, 2 rounds)" || fail "exit $rc: $(tail -c 300 "$TMP/err")"
rows=$(grep -c '^| tiny | Q[48]_[0K_M]* | [12] |' "$TMP/out")
[[ $rows -eq 4 ]] && pass "4 table rows (2 types x 2 thread counts)" || fail "rows: $rows: $(cat "$TMP/out")"
# Each row: greta pp, stub pp = 100, ratio = greta pp / 100; same for tg with 50.
bad=$(awk -F'|' '/^\| tiny \| Q[^|]*\| [12] \|/ {
    split($5, gp, " "); split($6, lp, " "); split($7, rp, " "); split($8, gt, " "); split($9, lt, " "); split($10, rt, " ");
    gsub(/\*/, "", rp[1]); gsub(/\*/, "", rt[1]);
    if (lp[1] != "100.0" || lt[1] != "50.0") { print "stub columns " $0; next }
    if (gp[1] <= 0 || gt[1] <= 0) { print "greta columns " $0; next }
    d1 = rp[1] - gp[1] / 100; d2 = rt[1] - gt[1] / 50;
    if (d1 > 0.006 || d1 < -0.006 || d2 > 0.006 || d2 < -0.006) print "ratio " $0 }' "$TMP/out")
[[ -z $bad ]] && pass "llama.cpp columns are the stub's figures and ratios are greta / llama.cpp" || fail "$bad"
calls=$(grep -c -- '-p 16 -n 4 -r 1' "$TMP/stub-args")
[[ $calls -eq 8 ]] && pass "llama-bench ran once per round and cell (8) with -p 16 -n 4 -r 1" || fail "stub calls: $calls"
grep -q -- '-t 2' "$TMP/stub-args" && grep -q -- '-t 1' "$TMP/stub-args" && pass "thread counts passed to llama-bench" \
    || fail "threads: $(cat "$TMP/stub-args")"
grep -q '^Machine: .*pinned to cores `0,1`' "$TMP/out" && grep -q '^Commit: ' "$TMP/out" && grep -q '^Command: ' "$TMP/out" \
    && pass "command, machine and commit printed" || fail "header: $(head -n 4 "$TMP/out")"
grep -q '^| tiny | Q4_K_M | [0-9]* ms | [0-9]* ms | [0-9]* MiB | [0-9]* MiB | [0-9]* MiB | yes |' "$TMP/out" \
    && pass "TTFT and peak RSS within the budget (file + KV + 64 MiB)" || fail "TTFT/RSS: $(tail -n 3 "$TMP/out")"
"$SCRIPT" --llama-bench "$STUB" --greta "$GRETA" --shapes tiny --types Q8_0 --threads 1 -p 16 -n 4 -r 1 --rounds 1 \
    --models-dir "$TMP/models" --no-rss --cpu-time >"$TMP/out2" 2>"$TMP/err"
rc=$?
[[ $rc -eq 0 ]] && grep -q '^| tiny | Q8_0 | [0-9.-]* | [0-9.-]* | ' "$TMP/out2" && grep -q '^One thread, CPU milliseconds' "$TMP/out2" \
    && pass "--cpu-time adds the 1-thread CPU ms per token table" || fail "--cpu-time (exit $rc): $(tail -n 4 "$TMP/out2") $(tail -c 200 "$TMP/err")"
calls=$(grep -c -- '-r 4 -t 1' "$TMP/stub-args")
[[ $calls -eq 2 ]] && pass "--cpu-time runs llama-bench with -r 4 for pp and for tg" || fail "stub -r 4 calls: $calls"
expect_error "missing llama-bench" "^bench-compare: error: llama-bench '/nonexistent' is not an executable" \
    "$SCRIPT" --llama-bench /nonexistent --greta "$GRETA"
expect_error "unknown shape" "^bench-compare: error: unknown shape 'huge'" \
    "$SCRIPT" --llama-bench "$STUB" --greta "$GRETA" --shapes huge
finish
