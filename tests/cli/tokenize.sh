# tokenize.sh: `greta tokenize` against Hugging Face reference ids (the
# SmolLM2 ids below and tests/fixtures/tokenizer/*.json come from
# scripts/fixtures/gen_tokenizer_fixtures.py), on the default model and on a
# vocabulary-only GGUF written by the gguf package; output formats, -f with
# its trailing newline, --bench, and the one-line error contract.
source "$(dirname "$0")/lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
FIX=$GRETA_REPO/tests/fixtures/tokenizer

if [[ ! -f $MODEL ]]; then
    fail "default model missing at $MODEL (run: bash scripts/fetch-model)"
else
    out=$("$GRETA" tokenize -m "$MODEL" --ids "Hello world" 2>&1)
    [[ $out == "19556 905" ]] && pass "--ids: 'Hello world' -> 19556 905 (HF)" || fail "--ids: got '$out'"
    out=$("$GRETA" tokenize -m "$MODEL" --ids --parse-special $'<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n' 2>&1)
    [[ $out == "1 4093 198 19556 17 2 198 1 520 9531 198" ]] && pass "--parse-special: ChatML prompt ids equal HF's" \
        || fail "--parse-special: got '$out'"
    out=$("$GRETA" tokenize -m "$MODEL" --ids '<|im_start|>' 2>&1)
    [[ $out == "44 108 306 79 3738 108 46" ]] && pass "without --parse-special a control token is plain text (HF)" \
        || fail "control token as text: got '$out'"
    printf 'Hello world\n' >"$TMP/text.txt"
    out=$("$GRETA" tokenize -m "$MODEL" --ids -f "$TMP/text.txt" 2>&1)
    [[ $out == "19556 905 198" ]] && pass "-f keeps the trailing newline (HF: 19556 905 198)" || fail "-f: got '$out'"
    out=$(printf 'Hello world\n' | "$GRETA" tokenize -m "$MODEL" --ids -f - 2>&1)
    [[ $out == "19556 905 198" ]] && pass "-f - reads standard input exactly (HF: 19556 905 198)" || fail "-f -: got '$out'"
    "$GRETA" tokenize -m "$MODEL" "Hello world" >"$TMP/default.txt" 2>"$TMP/err"
    expected=$'19556\tHello\t"Hello"\n905\t\xc4\xa0world\t" world"'
    [[ $(cat "$TMP/default.txt") == "$expected" ]] && pass "default output: id, piece, quoted bytes per line" \
        || fail "default output: $(head -c 200 "$TMP/default.txt")"
    out=$("$GRETA" tokenize -m "$MODEL" --pieces "Hello world" 2>&1)
    [[ $out == $'Hello\n\xc4\xa0world' ]] && pass "--pieces: vocabulary entries one per line" || fail "--pieces: got '$out'"
    out=$("$GRETA" tokenize -m "$MODEL" $'tab\there' 2>&1)
    [[ $out == *'"\t'* ]] && pass "default output escapes a tab in the bytes column" || fail "escape: got '$out'"
    if "$GRETA" tokenize -m "$MODEL" --bench --bench-mb 1 >"$TMP/bench.txt" 2>"$TMP/err" &&
        grep -qE '^bench generated English: 1\.00 MB, [0-9]+ tokens .* = [0-9.]+ MB/s' "$TMP/bench.txt"; then
        pass "--bench reports MB/s"
    else
        fail "--bench: $(head -c 300 "$TMP/bench.txt" "$TMP/err")"
    fi
    expect_error "unknown option is an error" "^greta: error: tokenize: unknown option '--frobnicate'" \
        "$GRETA" tokenize -m "$MODEL" --frobnicate text
    expect_error "no text is an error" "^greta: error: tokenize: no text given" "$GRETA" tokenize -m "$MODEL"
    expect_error "-f /dev/zero is refused at 256 MiB" "^greta: error: -f: /dev/zero: larger than 268435456 bytes" \
        "$GRETA" tokenize -m "$MODEL" -f /dev/zero
    expect_error "TEXT and -f together are an error" "not both" "$GRETA" tokenize -m "$MODEL" -f "$TMP/text.txt" hi
    expect_error "unreadable -f is an error" "^greta: error: -f: $TMP/nope.txt: No such file" \
        "$GRETA" tokenize -m "$MODEL" -f "$TMP/nope.txt"
    expect_error "-f DIRECTORY is an error naming why" "^greta: error: -f: $TMP: Is a directory" \
        "$GRETA" tokenize -m "$MODEL" -f "$TMP"
fi
expect_error "missing -m is an error" "^greta: error: tokenize: no model given" "$GRETA" tokenize hello
expect_error "missing model file is an error naming it" "^greta: error: $TMP/none.gguf: " \
    "$GRETA" tokenize -m "$TMP/none.gguf" hello

# ---- a vocabulary-only SentencePiece GGUF, written by the gguf package ----
if python3 - "$FIX/spm.json" "$TMP/spm.gguf" "$TMP/case.bin" "$TMP/case.ids" <<'PY' 2>"$TMP/err"
import json, sys
from gguf import GGUFWriter
fx = json.load(open(sys.argv[1], encoding="utf-8"))
v = fx["vocab"]
w = GGUFWriter(sys.argv[2], "llama")
w.add_tokenizer_model("llama")
w.add_token_list(v["tokens"])
w.add_token_scores([float(x) for x in v["scores"]])
w.add_token_types([int(x) for x in v["types"]])
w.add_bos_token_id(v["bos"]); w.add_eos_token_id(v["eos"]); w.add_unk_token_id(v["unk"])
w.add_add_bos_token(True)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
case = next(c for c in fx["cases"] if c["name"] == "mixed_paragraph" and c["add_special"] and not c["parse_special"])
open(sys.argv[3], "wb").write(bytes.fromhex(case["text_hex"]))
open(sys.argv[4], "w").write(" ".join(map(str, case["ids"])) + "\n")
PY
then
    out=$("$GRETA" tokenize -m "$TMP/spm.gguf" --ids -f "$TMP/case.bin" 2>"$TMP/err")
    [[ $out == "$(cat "$TMP/case.ids")" ]] && pass "vocab-only SentencePiece GGUF: ids equal sentencepiece's" \
        || fail "vocab-only GGUF: got '$(head -c 200 <<<"$out")' $(head -c 200 "$TMP/err")"
    out=$("$GRETA" tokenize -m "$TMP/spm.gguf" --ids --no-special -f "$TMP/case.bin" 2>&1)
    [[ "1 $out" == "$(cat "$TMP/case.ids")" ]] && pass "--no-special drops BOS" || fail "--no-special: got '$out'"
else
    fail "writing the vocab-only GGUF with the gguf package: $(head -c 300 "$TMP/err")"
fi
finish
