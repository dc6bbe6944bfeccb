# inspect.sh: `greta inspect` on the default model against the gguf package's
# view of it (tests/fixtures/gguf/*.tsv from scripts/fixtures/gguf_model_fixture.py),
# hyperparameters against SmolLM2-135M's published config, and the one-line
# error contract on bad files.
source "$(dirname "$0")/lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
FIX=$GRETA_REPO/tests/fixtures/gguf

# ---- the real model ----
if [[ ! -f $MODEL ]]; then
    fail "default model missing at $MODEL (run: bash scripts/fetch-model)"
else
    if "$GRETA" inspect "$MODEL" >"$TMP/inspect.txt" 2>"$TMP/err"; then pass "inspect of the default model exits 0"
    else fail "inspect of the default model: $(head -c 300 "$TMP/err")"; fi
    grep -q '^GGUF version 3, alignment 32, 98362432 bytes, tensor data at offset 1785664$' "$TMP/inspect.txt" \
        && pass "version, alignment, size, data offset" || fail "header line: $(sed -n 2p "$TMP/inspect.txt")"
    grep -qE '^metadata: 33 keys$' "$TMP/inspect.txt" && pass "33 metadata keys" || fail "metadata key count"
    grep -qE '^  tokenizer\.ggml\.tokens +array +\[string x 49152\] "<\|endoftext\|>", "<\|im_start\|>"' "$TMP/inspect.txt" \
        && pass "token array summarized with its count and first elements" || fail "token array summary"
    grep -qE '^  llama\.rope\.freq_base +float32 +100000$' "$TMP/inspect.txt" && pass "float value" || fail "float value"
    # Tensor table: index name type shape bytes offset, compared line by line.
    awk '/^tensors: /{t=1; next} /^totals: /{t=0} t && $1 ~ /^[0-9]+$/ {
            shape=$4; for (i = 5; i <= NF - 3; i++) shape = shape " " $i;
            printf "%s\t%s\t%s\t%s\t%s\t%s\n", $1, $2, $3, shape, $(NF-2), $(NF-1) }' "$TMP/inspect.txt" >"$TMP/table.tsv"
    grep -v '^#' "$FIX/smollm2_tensors.tsv" >"$TMP/expected.tsv"
    n=$(wc -l <"$TMP/table.tsv")
    [[ $n -eq 272 ]] && pass "272 tensors listed" || fail "tensors listed: $n, expected 272"
    if diff "$TMP/expected.tsv" "$TMP/table.tsv" >"$TMP/diff"; then pass "every tensor's name, type, shape, bytes, offset equal the gguf package's"
    else fail "tensor table differs from the gguf package: $(head -5 "$TMP/diff")"; fi
    grep -qE '^totals: 272 tensors, 134515008 parameters, 96576768 bytes' "$TMP/inspect.txt" && pass "totals" || fail "totals line"
    grep -qE '^  Q4_1 +210 tensors' "$TMP/inspect.txt" && grep -qE '^  Q8_0 +1 tensors' "$TMP/inspect.txt" \
        && grep -qE '^  F32 +61 tensors' "$TMP/inspect.txt" && pass "per-type counts" || fail "per-type counts"
    # Hyperparameters: SmolLM2-135M config.json (hidden 576, intermediate 1536, 30 layers,
    # 9 heads, 3 kv heads, rope_theta 100000, rms 1e-5, 8192 positions, vocab 49152, tied).
    hp_ok=1
    for want in 'embedding length +576' 'feed-forward length +1536' 'blocks +30' 'heads +9' 'kv heads +3 \(GQA\)' \
                'head dimension +64' 'rope dimension +64' 'rope base +100000' 'rope scaling +none' \
                'rms epsilon +9.99999975e-06' 'context length +8192' 'vocabulary +49152' 'output +tied'; do
        grep -qE "^  $want" "$TMP/inspect.txt" || { hp_ok=0; fail "hyperparameter line '$want' missing"; }
    done
    [[ $hp_ok -eq 1 ]] && pass "derived hyperparameters match the published config"
    # --dump: dequantized float32 equals gguf.quants.dequantize bit for bit (sha256).
    while IFS=$'\t' read -r name count sha; do
        [[ $name == \#* ]] && continue
        if "$GRETA" inspect "$MODEL" --dump "$name" -o "$TMP/dump.f32" 2>"$TMP/err"; then
            size=$(stat -c %s "$TMP/dump.f32")
            got=$(sha256sum "$TMP/dump.f32" | cut -d' ' -f1)
            [[ $size -eq $((count * 4)) && $got == "$sha" ]] && pass "--dump $name equals gguf.quants.dequantize ($count values)" \
                || fail "--dump $name: $size bytes, sha256 $got"
        else
            fail "--dump $name: $(head -c 300 "$TMP/err")"
        fi
        rm -f "$TMP/dump.f32"
    done <"$FIX/smollm2_dumps.tsv"
    # --json: every key, value (arrays in full) and tensor equal the gguf package's reading.
    if "$GRETA" inspect --json "$MODEL" >"$TMP/inspect.json" 2>"$TMP/err"; then
        if python3 "$GRETA_REPO/scripts/oracles/gguf_check_inspect_json.py" "$TMP/inspect.json" "$MODEL" >"$TMP/cmp" 2>&1; then
            pass "$(tail -1 "$TMP/cmp")"
        else
            fail "--json differs from the gguf package: $(head -c 400 "$TMP/cmp")"
        fi
    else
        fail "inspect --json: $(head -c 300 "$TMP/err")"
    fi
    expect_error "--dump of an absent tensor" "^greta: error: .*: no tensor named 'nope'$" "$GRETA" inspect "$MODEL" --dump nope -o "$TMP/x"
    expect_error "--dump without -o" "go together" "$GRETA" inspect "$MODEL" --dump output_norm.weight
    # Truncated copies of the real model: one error line naming the file, non-zero exit.
    for size in 0 3 4 8 23 24 1000 1785663 1785700 98362431; do
        head -c "$size" "$MODEL" >"$TMP/cut.gguf"
        "$GRETA" inspect "$TMP/cut.gguf" >"$TMP/out" 2>"$TMP/err"; rc=$?
        lines=$(wc -l <"$TMP/err")
        if [[ $rc -ne 0 && $rc -lt 128 && $lines -eq 1 && ! -s $TMP/out ]] && grep -qE "^greta: error: $TMP/cut.gguf: .+" "$TMP/err"; then
            pass "model cut at $size bytes: one error line ($(cut -c1-90 "$TMP/err" | sed "s|$TMP/||"))"
        else
            fail "model cut at $size bytes: exit $rc, $lines stderr lines: $(head -c 300 "$TMP/err")"
        fi
    done
fi

# ---- bad paths and files ----
expect_error "nonexistent path" "^greta: error: $TMP/none.gguf: cannot open: No such file or directory$" "$GRETA" inspect "$TMP/none.gguf"
mkdir -p "$TMP/dir.gguf"
expect_error "directory" "^greta: error: $TMP/dir.gguf: is a directory" "$GRETA" inspect "$TMP/dir.gguf"
: >"$TMP/empty.gguf"
expect_error "empty file" "^greta: error: $TMP/empty.gguf: empty file" "$GRETA" inspect "$TMP/empty.gguf"
printf 'GGML\3\0\0\0' >"$TMP/magic.gguf"
expect_error "bad magic" "not a GGUF file \(magic 'GGML'" "$GRETA" inspect "$TMP/magic.gguf"
printf 'GGUF\1\0\0\0' >"$TMP/v1.gguf"
expect_error "version 1" "GGUF version 1 is not supported" "$GRETA" inspect "$TMP/v1.gguf"
# A tensor of a type greta does not read (written by the gguf package): the error names tensor and type.
if python3 -c "
import sys, numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
w = GGUFWriter(sys.argv[1], arch='llama')
w.add_tensor('blk.0.attn_q.weight', np.zeros((1, 66), dtype=np.uint8), raw_dtype=GGMLQuantizationType.IQ2_XXS)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
" "$TMP/iq2.gguf" 2>"$TMP/err"; then
    expect_error "unsupported tensor type" "^greta: error: $TMP/iq2.gguf: tensor 'blk.0.attn_q.weight' has unsupported type IQ2_XXS$" \
        "$GRETA" inspect "$TMP/iq2.gguf"
else
    fail "the gguf package could not write an IQ2_XXS file: $(tail -1 "$TMP/err")"
fi
expect_error "missing FILE" "missing FILE" "$GRETA" inspect
expect_error "unknown option" "^greta: error: inspect: unknown option '--bogus'" "$GRETA" inspect "$TMP/v1.gguf" --bogus
expect_error "--dump without a value" "^greta: error: inspect: --dump: missing value" "$GRETA" inspect "$TMP/v1.gguf" --dump
expect_error "-o without a value" "^greta: error: inspect: -o: missing value" "$GRETA" inspect "$TMP/v1.gguf" -o
# Each error above is exactly one line on stderr, with nothing on stdout.
"$GRETA" inspect "$TMP/magic.gguf" >"$TMP/out" 2>"$TMP/err"
[[ $(wc -l <"$TMP/err") -eq 1 && ! -s $TMP/out ]] && pass "error is exactly one stderr line, stdout empty" || fail "error output shape"
expect_ok "inspect --help" "$GRETA" inspect --help
finish
