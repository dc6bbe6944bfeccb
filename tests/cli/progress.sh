# progress.sh: progress output only for a person watching. `greta synth` and
# `greta quantize` print a line per tensor to stderr when it is a terminal
# (script(1) gives them one), in the file's tensor order as the gguf package
# reads it; nothing when stderr is a file or with --quiet. `greta run` names
# the file it loads when the load is slow (GRETA_LOAD_NOTICE_SECONDS=0 makes
# every load slow enough), on a terminal as a bar, else as one line.
source "$(dirname "$0")/lib.sh"
# on_tty FILE CMD...: runs CMD with stdin/stdout/stderr on a pseudo-terminal, output into FILE (CR removed).
on_tty() {
    local out=$1; shift
    script -qec "$(printf '%q ' "$@")" /dev/null </dev/null | tr -d '\r' >"$out"
}
# names FILE: the tensor names of a GGUF file, read by the gguf package, one per line.
names() { python3 -c 'import sys, gguf; print("\n".join(t.name for t in gguf.GGUFReader(sys.argv[1]).tensors))' "$1"; }

on_tty "$TMP/synth.tty" "$GRETA" synth --shape tiny --type Q4_K_M -o "$TMP/tiny.gguf"
names "$TMP/tiny.gguf" >"$TMP/names"
n=$(wc -l <"$TMP/names")
last=$(tail -n 1 "$TMP/names")
sed -nE 's/^\[ *([0-9]+)\/([0-9]+)\] ([^ ]+) +([A-Z0-9_]+)$/\3/p' "$TMP/synth.tty" >"$TMP/synth.names"
if [[ $n -gt 0 ]] && cmp -s "$TMP/names" "$TMP/synth.names" && grep -q "^\[ *$n/$n\] $last " "$TMP/synth.tty"; then
    pass "synth on a terminal: a line per tensor, the file's $n tensors in order, counted to $n/$n"
else fail "synth on a terminal: $(head -n 3 "$TMP/synth.tty")"; fi
grep -q "blk.1.ffn_down.weight  *Q6_K$" "$TMP/synth.tty" && grep -q "blk.0.ffn_down.weight  *Q4_K$" "$TMP/synth.tty" \
    && pass "synth line names the type written (Q4_K_M of 2 layers: ffn_down Q4_K in layer 0, Q6_K in layer 1)" \
    || fail "synth line types: $(grep ffn_down "$TMP/synth.tty" | head -n 1)"
on_tty "$TMP/synth-q.tty" "$GRETA" synth --shape tiny --quiet -o "$TMP/tiny2.gguf"
[[ -f $TMP/tiny2.gguf && ! -s $TMP/synth-q.tty ]] && pass "synth --quiet on a terminal: silent" || fail "synth --quiet: $(head -n 2 "$TMP/synth-q.tty")"
"$GRETA" synth --shape tiny -o "$TMP/tiny3.gguf" >"$TMP/out" 2>"$TMP/err"
[[ -f $TMP/tiny3.gguf && ! -s $TMP/out && ! -s $TMP/err ]] && pass "synth not on a terminal: silent" \
    || fail "synth not on a terminal printed: $(head -n 2 "$TMP/out" "$TMP/err")"

on_tty "$TMP/q.tty" "$GRETA" quantize "$TMP/tiny3.gguf" "$TMP/q8.gguf" Q8_0
sed -nE 's/^\[ *[0-9]+\/[0-9]+\] ([^ ]+) +([A-Z0-9_]+) +-> ([A-Z0-9_]+)( \(copied\))?$/\1/p' "$TMP/q.tty" >"$TMP/q.names"
if cmp -s "$TMP/names" "$TMP/q.names" && grep -q "^\[ *2/$n\] blk.0.attn_norm.weight  *F32 *-> F32 (copied)$" "$TMP/q.tty" &&
    grep -q "^\[ *1/$n\] token_embd.weight  *F16 *-> Q8_0$" "$TMP/q.tty"; then
    pass "quantize on a terminal: a line per tensor (FROM -> TO, copies marked), in file order"
else fail "quantize on a terminal: $(head -n 3 "$TMP/q.tty")"; fi
on_tty "$TMP/qq.tty" "$GRETA" quantize --quiet "$TMP/tiny3.gguf" "$TMP/q8b.gguf" Q8_0
[[ -f $TMP/q8b.gguf && ! -s $TMP/qq.tty ]] && pass "quantize --quiet on a terminal: silent" || fail "quantize --quiet: $(head -n 2 "$TMP/qq.tty")"
"$GRETA" quantize "$TMP/tiny3.gguf" "$TMP/q8c.gguf" Q8_0 >"$TMP/out" 2>"$TMP/err"
[[ -f $TMP/q8c.gguf && ! -s $TMP/out && ! -s $TMP/err ]] && pass "quantize not on a terminal: silent" \
    || fail "quantize not on a terminal printed: $(head -n 2 "$TMP/out" "$TMP/err")"
cmp -s "$TMP/q8.gguf" "$TMP/q8c.gguf" && pass "the same bytes with and without progress lines" || fail "progress changed the output file"

# greta run: where the model is loaded from, only when the load is slow.
GRETA_LOAD_NOTICE_SECONDS=0 "$GRETA" run -m "$TMP/tiny3.gguf" -p "hi" -n 1 >"$TMP/out" 2>"$TMP/err"
[[ $(head -n 1 "$TMP/err") == "greta: loading the model from $TMP/tiny3.gguf" && $(grep -c loading "$TMP/err") -eq 1 ]] \
    && pass "run, slow load, not a terminal: one line naming the file" || fail "run slow load: $(head -n 2 "$TMP/err")"
GRETA_LOAD_NOTICE_SECONDS=0 on_tty "$TMP/run.tty" "$GRETA" run -m "$TMP/tiny3.gguf" -p "hi" -n 1
grep -qF "loading $TMP/tiny3.gguf [##############################] 100%" "$TMP/run.tty" \
    && pass "run, slow load, on a terminal: a bar naming the file, to 100%" || fail "run slow load tty: $(head -c 300 "$TMP/run.tty")"
"$GRETA" run -m "$TMP/tiny3.gguf" -p "hi" -n 1 >"$TMP/out" 2>"$TMP/err"
! grep -q loading "$TMP/err" && pass "run, fast load (tiny model, under a second): no loading line" || fail "fast load: $(head -n 1 "$TMP/err")"
finish
