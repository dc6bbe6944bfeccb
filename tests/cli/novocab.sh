# novocab.sh: models without a vocabulary (tokenizer.ggml.model = "none", as
# llama.cpp accepts and benchmark files use) run on token ids: bench, run
# --ids, trace record --ids and audit; the commands that need text fail with
# one line saying the model has no vocabulary. The file is checked by the gguf
# package; its logits equal those of the same weights with a vocabulary.
source "$(dirname "$0")/lib.sh"
one_line() { [[ $(wc -l <"$TMP/err") -eq 1 ]]; }
NV=$TMP/nv.gguf
V=$TMP/v.gguf
expect_ok "synth --no-vocab" "$GRETA" synth --shape tiny --type Q8_0 --seed 5 --no-vocab -o "$NV"
expect_ok "synth with the vocabulary, same seed" "$GRETA" synth --shape tiny --type Q8_0 --seed 5 -o "$V"
keys=$(python3 -c '
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
print(r.fields["tokenizer.ggml.model"].contents(), sorted(k for k in r.fields if k.startswith("tokenizer.")))' "$NV" 2>&1)
[[ $keys == "none ['tokenizer.ggml.model']" ]] && pass "gguf package: tokenizer.ggml.model = none, no other tokenizer key" \
    || fail "gguf package reads: $keys"

expect_ok "bench on a model without vocabulary" "$GRETA" bench -m "$NV" -p 16 -n 4 -r 1
grep -q "^pp16" "$TMP/out" && pass "bench reports pp16" || fail "bench output: $(head -c 300 "$TMP/out")"

# run --ids: the generated ids, and the same logits as the model with a vocabulary.
expect_ok "run --ids" "$GRETA" run -m "$NV" --ids 5,6,7 --greedy -n 6 --dump-logits "$TMP/nv-dump"
ids=$(head -n 1 "$TMP/out")
"$GRETA" run -m "$V" --ids 5,6,7 --greedy -n 6 --dump-logits "$TMP/v-dump" >/dev/null 2>&1
want=$(python3 -c '
import json, sys
print(" ".join(str(json.loads(l)["token_id"]) for l in open(sys.argv[1])))' "$TMP/v-dump/index.jsonl")
[[ -n $ids && $ids == "$want" ]] && pass "run --ids prints the greedy ids ($ids), the ids of the same weights with a vocabulary" \
    || fail "run --ids printed '$ids', the model with a vocabulary chose '$want'"
same=1
for f in "$TMP"/v-dump/step_*.bin; do cmp -s "$f" "$TMP/nv-dump/$(basename "$f")" || same=0; done
[[ $same -eq 1 && -f $TMP/v-dump/step_00000.bin ]] && pass "every step's logits bit-identical with and without the vocabulary" \
    || fail "logits differ between the models with and without vocabulary"

expect_ok "trace record --ids" "$GRETA" trace record -m "$NV" --ids 5,6,7 -n 2 --trace "$TMP/nv.jsonl"
[[ $(grep -c '"event":"stage_trace"' "$TMP/nv.jsonl") -gt 0 ]] && pass "trace has stage records" || fail "empty trace"
"$GRETA" trace record -m "$V" --ids 5,6,7 -n 2 --trace "$TMP/v.jsonl" >/dev/null 2>&1
expect_ok "trace diff: the traces with and without vocabulary agree" "$GRETA" trace diff "$TMP/v.jsonl" "$TMP/nv.jsonl"
expect_ok "audit parity --ids" "$GRETA" audit parity -m "$NV" --ids 5,6,7
grep -q "verdict: PASS" "$TMP/out" && pass "audit parity passes" || fail "audit: $(tail -n 2 "$TMP/out")"
expect_ok "audit backends --ids" "$GRETA" audit backends -m "$NV" --ids 5,6,7

# Commands that need text: one line naming the missing vocabulary.
for cmd in "run -m $NV -p hello" "tokenize -m $NV hello" "perplexity -m $NV -f $GRETA_REPO/README.md" \
           "trace record -m $NV -p hello --trace $TMP/x.jsonl" "audit parity -m $NV -p hello"; do
    expect_error "greta $(cut -d' ' -f1-2 <<<"$cmd"): no vocabulary" "^greta: error: .*the model has no vocabulary" $GRETA $cmd
    one_line || fail "greta $cmd: $(wc -l <"$TMP/err") lines"
done
expect_error "chat: no vocabulary" "^greta: error: chat: the model has no vocabulary" "$GRETA" chat -m "$NV"
expect_error "run --ids --stop: no vocabulary" "^greta: error: --stop: the model has no vocabulary" \
    "$GRETA" run -m "$NV" --ids 1,2 --stop x
# run --ids errors
expect_error "run --ids with -p" "^greta: error: run: pass one of -p, -f and --ids" "$GRETA" run -m "$V" --ids 1 -p hi
expect_error "run --ids with --chat" "^greta: error: run: --ids and --chat exclude each other" "$GRETA" run -m "$V" --ids 1 --chat
expect_error "run --ids bad list" "^greta: error: --ids: bad token id list" "$GRETA" run -m "$V" --ids 1,,2
expect_error "run --ids out of range" "^greta: error: prompt: token id 999 at index 0 is outside the vocabulary" \
    "$GRETA" run -m "$NV" --ids 999
# a model with a vocabulary: --ids gives text
expect_ok "run --ids on a model with a vocabulary" "$GRETA" run -m "$V" --ids 5,6,7 --greedy -n 4
finish
