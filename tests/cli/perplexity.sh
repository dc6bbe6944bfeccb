# perplexity.sh: `greta perplexity` from the command line on a tiny synth
# model. The final perplexity is checked by numpy against the log-probs the
# same run saved with --kl-divergence-base (the file parsed here independently,
# llama.cpp's format): exp(mean -log p(token)) from the 16-bit codes agrees to
# 2e-4 relative. A model against its own base file: KLD 0, same top 100%.
# Bad input: one line, non-zero exit.
source "$(dirname "$0")/lib.sh"
one_line() { [[ $(wc -l <"$TMP/err") -eq 1 ]]; }
M=$TMP/tiny.gguf
Q=$TMP/tiny-q4.gguf
"$GRETA" synth --shape tiny --type F32 --seed 3 -o "$M"
"$GRETA" synth --shape tiny --type Q4_0 --seed 3 -o "$Q"
# a text of about 700 tokens for the synth vocabulary (byte-level BPE: about a token per byte)
python3 -c 'import random; random.seed(4); print(" ".join(random.choice(["the","cat","sat","on","a","mat","and","then","it","ran"]) for _ in range(170)))' >"$TMP/text.txt"

expect_ok "perplexity --ctx 64 with a base file" "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 64 --batch 24 -t 2 --kl-divergence-base "$TMP/base.logits"
final=$(sed -nE 's/^Final estimate: PPL = ([0-9.]+) \+\/- ([0-9.]+) \(([0-9]+) tokens scored\)$/\1 \2 \3/p' "$TMP/out")
running=$(grep -cE '^\[[0-9]+/[0-9]+\] PPL [0-9.]+ \+/- [0-9.]+$' "$TMP/out")
check=$(python3 - "$TMP/base.logits" <<'PY'
import sys, numpy as np
raw = open(sys.argv[1], "rb").read()
assert raw[:8] == b"_logits_"
n_ctx, n_vocab, n_chunks = np.frombuffer(raw, "<i4", 3, 8)
tokens = np.frombuffer(raw, "<i4", n_chunks * n_ctx, 20).reshape(n_chunks, n_ctx)
nv = 2 * ((n_vocab + 1) // 2) + 4
first = n_ctx // 2
per = n_ctx - 1 - first
rows = np.frombuffer(raw, "<u2", n_chunks * per * nv, 20 + 4 * n_chunks * n_ctx).reshape(n_chunks, per, nv)
nll = []
for c in range(n_chunks):
    for j in range(per):
        scale, min_lp = np.frombuffer(rows[c, j, :4].tobytes(), "<f4")
        code = rows[c, j, 4 + tokens[c, first + j + 1]]
        nll.append(-(float(scale) * float(code) + float(min_lp)))
nll = np.array(nll)
print(n_chunks, len(nll), np.exp(nll.mean()))
PY
)
read -r p_val p_err p_count <<<"$final"
read -r n_chunks n_scored p_numpy <<<"$check"
if [[ -n $p_val && $p_count == "$n_scored" && $running == "$n_chunks" ]] &&
    python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 2e-4 * b)" "$p_val" "$p_numpy"; then
    pass "final PPL $p_val over $p_count tokens = numpy from the saved log-probs ($p_numpy); a running line per chunk ($running)"
else fail "final '$final', running lines $running, numpy '$check'"; fi

expect_ok "--kl-divergence: the model against its own base" "$GRETA" perplexity -m "$M" --kl-divergence-base "$TMP/base.logits" --kl-divergence
grep -qE '^Same top p: +100\.000 \+/- +0\.000 %$' "$TMP/out" && grep -qE '^Mean    KLD: +-?0\.0000' "$TMP/out" \
    && grep -qE '^Mean PPL\(Q\)/PPL\(base\) +: +(1\.0000|0\.9999)' "$TMP/out" \
    && pass "against itself: same top 100%, KLD 0, PPL ratio 1" || fail "self KL: $(grep -E 'Same top|Mean    KLD|PPL\(Q\)/' "$TMP/out")"
expect_ok "--kl-divergence: Q4_0 against the F32 base, -f given too" "$GRETA" perplexity -m "$Q" -f "$TMP/text.txt" --kl-divergence-base "$TMP/base.logits" --kl-divergence
for row in "Mean PPL(Q)" "Mean PPL(base)" "Mean ln(PPL(Q)/PPL(base))" "Mean PPL(Q)/PPL(base)" "Mean PPL(Q)-PPL(base)" "Mean    KLD" \
           "Maximum KLD" "99.9%   KLD" "Median  KLD" "Minimum KLD" "Same top p"; do
    grep -qF "$row" "$TMP/out" || { fail "KL report lacks '$row'"; continue; }
done
pass "the KL report has PPL(Q), PPL(base), ratio, difference, KLD mean and percentiles, same top p"
base_ppl=$(sed -nE 's/^Mean PPL\(base\) +: +([0-9.]+) .*/\1/p' "$TMP/out")
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 2e-4 * b)" "$base_ppl" "$p_val" \
    && pass "PPL(base) read back from the file's 16-bit log-probs ($base_ppl) = the base run's $p_val within 2e-4" \
    || fail "PPL(base) '$base_ppl' vs $p_val"

# bad input
printf 'the cat sat on the mat\n' >"$TMP/short.txt"
expect_error "text shorter than 2 * ctx" "^greta: error: perplexity: $TMP/short.txt is [0-9]+ tokens; a context of 64 needs at least 128" \
    "$GRETA" perplexity -m "$M" -f "$TMP/short.txt" --ctx 64
one_line && pass "short text: one line" || fail "short text: $(wc -l <"$TMP/err") lines"
expect_error "missing text file" "^greta: error: -f: $TMP/none.txt: No such file or directory" "$GRETA" perplexity -m "$M" -f "$TMP/none.txt"
expect_error "missing model" "^greta: error: $TMP/none.gguf: cannot open" "$GRETA" perplexity -m "$TMP/none.gguf" -f "$TMP/text.txt"
expect_error "no model" "^greta: error: perplexity: no model" "$GRETA" perplexity -f "$TMP/text.txt"
expect_error "no text" "^greta: error: perplexity: no text" "$GRETA" perplexity -m "$M"
expect_error "unknown flag" "^greta: error: perplexity: unknown argument '--bogus'" "$GRETA" perplexity -m "$M" --bogus
expect_error "missing value" "^greta: error: --ctx: missing value" "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx
expect_error "bad ctx" "^greta: error: --ctx: expected an integer, got '6x'" "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 6x
expect_error "ctx too small" "^greta: error: --ctx: 2 is out of range" "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 2
expect_error "batch > ctx" "^greta: error: perplexity: --batch 100 is larger than --ctx 64" "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 64 --batch 100
expect_error "ctx above the model's" "^greta: error: session: " "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 100000
expect_error "--kl-divergence without a base" "^greta: error: perplexity: --kl-divergence needs --kl-divergence-base" \
    "$GRETA" perplexity -m "$M" --kl-divergence
expect_error "--kl-divergence with a missing base" "^greta: error: --kl-divergence-base: $TMP/none.logits: cannot open" \
    "$GRETA" perplexity -m "$M" --kl-divergence-base "$TMP/none.logits" --kl-divergence
expect_error "--kl-divergence with a foreign base" "^greta: error: --kl-divergence-base: $TMP/text.txt: not a logits file" \
    "$GRETA" perplexity -m "$M" --kl-divergence-base "$TMP/text.txt" --kl-divergence
printf 'a b c d e f g h i j k l m n o p q r s t u v w x y z %.0s' {1..20} >"$TMP/other.txt"
expect_error "--kl-divergence with -f of another text" "does not tokenize to the tokens of" \
    "$GRETA" perplexity -m "$M" -f "$TMP/other.txt" --kl-divergence-base "$TMP/base.logits" --kl-divergence
expect_error "--kl-divergence with another --ctx" "^greta: error: perplexity: --ctx 32 differs from the context of $TMP/base.logits \(64\)" \
    "$GRETA" perplexity -m "$M" --kl-divergence-base "$TMP/base.logits" --kl-divergence --ctx 32
expect_ok "--kl-divergence with the file's --ctx" "$GRETA" perplexity -m "$M" --kl-divergence-base "$TMP/base.logits" --kl-divergence --ctx 64
expect_error "unwritable base file" "^greta: error: --kl-divergence-base: $TMP/no/dir.logits: cannot create" \
    "$GRETA" perplexity -m "$M" -f "$TMP/text.txt" --ctx 64 --kl-divergence-base "$TMP/no/dir.logits"
expect_ok "perplexity --help" "$GRETA" perplexity --help
finish
