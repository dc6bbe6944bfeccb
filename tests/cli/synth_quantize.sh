# synth_quantize.sh: `greta synth` and `greta quantize` checked by llama.cpp's
# reader (the gguf Python package, via scripts/oracles/check_gguf_readable.py), by
# greta's own reader (inspect --dump, bit-exact against the package), by
# hand-computed Q4_K_M layer lists, and by Hugging Face tokenizers for the
# synthesized vocabulary. Errors: one line, non-zero exit.
source "$(dirname "$0")/lib.sh"
CHECKER="$GRETA_REPO/scripts/oracles/check_gguf_readable.py"
MODEL="$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TINY=(--dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --vocab 320 --ctx 512)
TYPES=(F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q3_K Q4_K Q5_K Q6_K Q2_K Q3_K_M Q4_K_M Q5_K_M)

# job LABEL MODE ARGS...: queues a checker run; run_jobs runs them all in one
# Python process at the end (numpy and gguf load once); each ok/FAIL line counts.
: >"$TMP/jobs"
job() { local label=$1; shift; printf '%s\t%s\n' "$label" "$*" >>"$TMP/jobs"; }
run_jobs() {
    python3 "$CHECKER" batch "$TMP/jobs" >"$TMP/check" 2>&1
    local rc=$? n=0
    while IFS= read -r line; do
        case $line in
            "ok   "*) pass "${line#ok   }"; n=$((n + 1)) ;;
            "FAIL "*) fail "${line#FAIL }"; n=$((n + 1)) ;;
        esac
    done <"$TMP/check"
    if [[ $n -lt $(wc -l <"$TMP/jobs") || ($rc -ne 0 && $(grep -c '^FAIL' "$TMP/check") -eq 0) ]]; then
        fail "checker exited $rc after $n lines: $(tail -n 3 "$TMP/check")"
    fi
}

if ! python3 -c 'import gguf, numpy, jinja2, tokenizers' 2>"$TMP/err"; then
    fail "python packages gguf, numpy, jinja2, tokenizers are needed: $(tail -n 1 "$TMP/err")"
    run_jobs
finish
    exit 1
fi

# dump_all FILE DIR: greta's dequantization of every tensor of a tiny model into DIR/NAME.f32.
TINY_NAMES=(token_embd.weight output_norm.weight output.weight)
for i in 0 1; do
    for n in attn_norm attn_q attn_k attn_v attn_output ffn_norm ffn_gate ffn_up ffn_down; do
        TINY_NAMES+=("blk.$i.$n.weight")
    done
done
dump_all() {
    mkdir -p "$2"
    for name in "${TINY_NAMES[@]}"; do
        "$GRETA" inspect "$1" --dump "$name" -o "$2/$name.f32" >/dev/null 2>>"$TMP/dump_err" || return 1
    done
}

# 1. synth tiny in every type: gguf package, greta's reader and dumps.
for t in "${TYPES[@]}"; do
    f=$TMP/tiny-$t.gguf
    expect_ok "synth tiny $t" "$GRETA" synth --shape tiny --type "$t" --seed 7 -o "$f"
    expect_ok "greta inspect reads tiny $t" "$GRETA" inspect "$f"
    if dump_all "$f" "$TMP/dump-$t"; then pass "greta inspect --dump of every tensor of tiny $t"
    else fail "greta inspect --dump of tiny $t: $(tail -n 1 "$TMP/dump_err")"; fi
    job "tiny $t" synth "$f" --type "$t" "${TINY[@]}" --dump-dir "$TMP/dump-$t"
done

# 2. Same seed -> same bytes (thread count irrelevant); other seed -> other bytes.
"$GRETA" synth --shape tiny --type Q4_K_M --seed 7 --threads 1 -o "$TMP/a.gguf" &&
    "$GRETA" synth --shape tiny --type Q4_K_M --seed 7 --threads 3 -o "$TMP/b.gguf" &&
    "$GRETA" synth --shape tiny --type Q4_K_M --seed 8 -o "$TMP/c.gguf"
sha() { sha256sum "$1" | cut -d' ' -f1; }
if [[ $(sha "$TMP/a.gguf") == $(sha "$TMP/b.gguf") && $(sha "$TMP/a.gguf") == $(sha "$TMP/tiny-Q4_K_M.gguf") ]]; then
    pass "synth determinism: seed 7 with 1 thread, 3 threads, all threads: identical sha256"
else fail "synth determinism: sha256 differ"; fi
if [[ $(sha "$TMP/a.gguf") != $(sha "$TMP/c.gguf") ]]; then pass "seed 8 gives different bytes"
else fail "seed 8 gives the same bytes as seed 7"; fi

# 3. The values of a quantized synth are the F32 synth's, quantized: bit-exact
#    with the gguf package's quantizer where it has one, RMSE bounds otherwise;
#    greta quantize of the F32 synth gives the very same file.
for t in "${TYPES[@]:1}"; do
    job "synth $t vs synth F32" compare "$TMP/tiny-F32.gguf" "$TMP/tiny-$t.gguf" --type "$t"
    "$GRETA" quantize -q "$TMP/tiny-F32.gguf" "$TMP/q-$t.gguf" "$t" 2>"$TMP/err"
    if cmp -s "$TMP/q-$t.gguf" "$TMP/tiny-$t.gguf"; then pass "quantize F32 -> $t equals synth $t byte for byte"
    else fail "quantize F32 -> $t differs from synth $t: $(head -c 200 "$TMP/err")"; fi
done

# 4. Fallbacks (rows of 96 and 160: no K block fits) and Q5_0/Q5_1 bit-exact.
ODD=(--dim 96 --ffn 160 --layers 2 --heads 2 --vocab 300)
"$GRETA" synth "${ODD[@]}" --type F32 -o "$TMP/odd.gguf"
for t in Q4_K Q5_K Q6_K Q4_K_M; do
    expect_ok "quantize odd shape to $t" "$GRETA" quantize -q "$TMP/odd.gguf" "$TMP/odd-$t.gguf" "$t"
    job "odd shape $t (fallbacks)" compare "$TMP/odd.gguf" "$TMP/odd-$t.gguf" --type "$t"
done
job "odd shape fallback types" types "$TMP/odd-Q4_K.gguf" blk.0.attn_q.weight=Q5_0 blk.0.ffn_down.weight=Q5_0
job "odd shape fallback types" types "$TMP/odd-Q6_K.gguf" blk.0.attn_q.weight=Q8_0 output.weight=Q8_0

# 5. Q4_K_M with 8 layers: attn_v and ffn_down of layers 0, 3, 6, 7 are Q6_K
#    (use_more_bits: n/8 = 1, 7n/8 = 7, (i - 1) % 3 == 2), output Q6_K.
"$GRETA" synth --dim 256 --ffn 256 --layers 8 --heads 4 --kv-heads 1 --vocab 300 --type F32 -o "$TMP/l8.gguf"
"$GRETA" quantize -q "$TMP/l8.gguf" "$TMP/l8-q4km.gguf" Q4_K_M
specs=(output.weight=Q6_K token_embd.weight=Q4_K)
for i in 0 1 2 3 4 5 6 7; do
    case $i in 0|3|6|7) w=Q6_K ;; *) w=Q4_K ;; esac
    specs+=("blk.$i.attn_v.weight=$w" "blk.$i.ffn_down.weight=$w" "blk.$i.attn_q.weight=Q4_K" "blk.$i.ffn_up.weight=Q4_K")
done
job "Q4_K_M 8 layers" types "$TMP/l8-q4km.gguf" "${specs[@]}"

# 6. The default model (Q4_1, 30 layers, 576 wide, tied): Q8_0 bit-exact and
#    Q4_K_M with the hand-computed layer list {0,1,2,5,8,...,23,26,...,29}.
if [[ -f $MODEL ]]; then
    expect_ok "quantize default model to Q8_0" "$GRETA" quantize -q "$MODEL" "$TMP/m-q8.gguf" Q8_0
    job "default model Q8_0" compare "$MODEL" "$TMP/m-q8.gguf" --type Q8_0 --bounds real
    expect_ok "quantize default model to Q4_K_M" "$GRETA" quantize -q "$MODEL" "$TMP/m-q4km.gguf" Q4_K_M
    job "default model Q4_K_M" compare "$MODEL" "$TMP/m-q4km.gguf" --type Q4_K_M --bounds real
    specs=(token_embd.weight=Q8_0)
    for i in $(seq 0 29); do
        case $i in 0|1|2|5|8|11|14|17|20|23|26|27|28|29) v=Q8_0 d=Q6_K ;; *) v=Q5_0 d=Q4_K ;; esac
        specs+=("blk.$i.attn_v.weight=$v" "blk.$i.ffn_down.weight=$d" "blk.$i.attn_k.weight=Q5_0")
    done
    job "default model Q4_K_M layers" types "$TMP/m-q4km.gguf" "${specs[@]}"
    expect_ok "greta inspect reads the Q4_K_M model" "$GRETA" inspect "$TMP/m-q4km.gguf"
    # Q3_K_M (llama.cpp's rule, hand-derived): attn_v 0-1 Q5_K -> Q5_1, others
    # Q4_K -> Q5_0; attn_output Q4_K -> Q5_0; ffn_down 0 (< 30/16) Q5_K, others
    # Q4_K; the other 576-wide matrices Q3_K -> Q4_0; tied embedding Q8_0.
    expect_ok "quantize default model to Q3_K_M" "$GRETA" quantize -q "$MODEL" "$TMP/m-q3km.gguf" Q3_K_M
    job "default model Q3_K_M" compare "$MODEL" "$TMP/m-q3km.gguf" --type Q3_K_M --bounds real
    specs=(token_embd.weight=Q8_0)
    for i in $(seq 0 29); do
        case $i in 0|1) v=Q5_1 ;; *) v=Q5_0 ;; esac
        case $i in 0) d=Q5_K ;; *) d=Q4_K ;; esac
        specs+=("blk.$i.attn_v.weight=$v" "blk.$i.ffn_down.weight=$d" "blk.$i.attn_output.weight=Q5_0"
                "blk.$i.attn_q.weight=Q4_0" "blk.$i.ffn_up.weight=Q4_0")
    done
    job "default model Q3_K_M layers" types "$TMP/m-q3km.gguf" "${specs[@]}"
else
    fail "default model missing: $MODEL (bash scripts/fetch-model)"
fi

# 7. The synthesized vocabulary works: greta's tokenizer equals HF tokenizers.
text="the cat sat on the mat and then it ended"
ids=$("$GRETA" tokenize -m "$TMP/tiny-Q4_0.gguf" --ids --no-special "$text" 2>"$TMP/err")
ref=$(python3 - "$TMP/tiny-Q4_0.gguf" "$text" <<'EOF'
import sys, gguf
from tokenizers import Tokenizer, models, pre_tokenizers
r = gguf.GGUFReader(sys.argv[1])
toks = [str(x) for x in r.fields["tokenizer.ggml.tokens"].contents()]
merges = [tuple(str(m).split(" ")) for m in r.fields["tokenizer.ggml.merges"].contents()]
tk = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)}, merges))
tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
print(" ".join(map(str, tk.encode(sys.argv[2]).ids)))
EOF
)
if [[ -n $ids && $ids == "$ref" ]]; then pass "greta tokenize on a synth model = HF tokenizers BPE: $ids"
else fail "synth vocabulary: greta '$ids' vs HF '$ref' $(head -c 200 "$TMP/err")"; fi

# 7b. llama3 RoPE scaling (the llama3.2-1b preset's rope_freqs.weight, here on a tiny shape with
#     head size 64 and base 500000): the values llama.cpp's converter computes
#     (convert_hf_to_gguf.py, rope_type llama3: freqs in float32, factor 32, low 1, high 4, 8192).
expect_ok "synth tiny --rope-llama3 32" "$GRETA" synth --shape tiny --rope-base 500000 --rope-llama3 32 --type Q8_0 -o "$TMP/l3.gguf"
out=$(python3 - "$TMP/l3.gguf" <<'EOF'
import sys, math, numpy as np, gguf
r = gguf.GGUFReader(sys.argv[1])
t = [x for x in r.tensors if x.name == "rope_freqs.weight"]
if len(t) != 1 or int(t[0].tensor_type) != 0 or list(t[0].shape) != [32]:
    print("bad tensor", [(x.name, x.shape) for x in t]); sys.exit()
dim, base, factor, lo, hi, old = 64, 500000.0, 32.0, 1.0, 4.0, 8192
freqs = (1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)
want = []
for f in freqs:
    wl = 2 * math.pi / float(f)
    if wl < old / hi: want.append(1.0)
    elif wl > old / lo: want.append(factor)
    else:
        s = (old / wl - lo) / (hi - lo)
        want.append(1 / ((1 - s) / factor + s))
got = np.array(t[0].data, dtype=np.float64)
err = np.max(np.abs(got - np.array(want)) / np.array(want))
print("ok" if err < 1e-5 and got[-1] == 32.0 and got[0] == 1.0 else "mismatch", "%.3g" % err)
EOF
)
[[ $out == ok* ]] && pass "rope_freqs.weight = llama.cpp converter's llama3 factors (max rel diff ${out#ok })" || fail "rope_freqs: $out"
"$GRETA" inspect "$TMP/l3.gguf" >"$TMP/out" 2>&1
grep -q "llama3" "$TMP/out" && pass "inspect reports llama3 RoPE scaling" || fail "inspect: $(head -c 300 "$TMP/out")"
expect_error "synth: bad llama3 factor" "rope-llama3 factor 0.5 must be 0" "$GRETA" synth --shape tiny --rope-llama3 0.5 -o "$TMP/x.gguf"

# 8. Errors: one line, non-zero exit.
one_line() { [[ $(wc -l <"$TMP/err") -eq 1 ]]; }
expect_error "quantize: unknown type" "^greta: error: quantize: unknown type 'Q3_K_L'" \
    "$GRETA" quantize "$TMP/tiny-F32.gguf" "$TMP/x.gguf" Q3_K_L
one_line && pass "unknown type: one line" || fail "unknown type: $(wc -l <"$TMP/err") lines"
expect_error "quantize: missing input" "^greta: error: quantize: $TMP/none.gguf: cannot open" \
    "$GRETA" quantize "$TMP/none.gguf" "$TMP/x.gguf" Q8_0
expect_error "quantize: unwritable output" "^greta: error: quantize: $TMP/no/dir.gguf: cannot create" \
    "$GRETA" quantize "$TMP/tiny-F32.gguf" "$TMP/no/dir.gguf" Q8_0
expect_error "quantize: output = input" "would overwrite the input" \
    "$GRETA" quantize "$TMP/tiny-F32.gguf" "$TMP/tiny-F32.gguf" Q8_0
expect_error "quantize: argument count" "expected IN.gguf OUT.gguf TYPE" "$GRETA" quantize "$TMP/tiny-F32.gguf"
"$GRETA" synth --dim 100 --ffn 128 --layers 1 --heads 2 --vocab 260 --type F32 -o "$TMP/odd100.gguf"
expect_error "quantize: Q4_0 of rows of 100" "row length 100 is not a multiple of Q4_0's block of 32" \
    "$GRETA" quantize "$TMP/odd100.gguf" "$TMP/x.gguf" Q4_0
[[ ! -e $TMP/x.gguf ]] && pass "no output file left after failures" || fail "a failed quantize left $TMP/x.gguf"
python3 - "$TMP/iq.gguf" <<'EOF'
import sys, numpy as np, gguf
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_tensor("blk.0.attn_q.weight", np.zeros((4, 18 * 2), dtype=np.uint8),
             raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
EOF
expect_error "quantize: unsupported input tensor type" "^greta: error: quantize: .*iq.gguf: tensor 'blk.0.attn_q.weight' has .*type IQ4_NL" \
    "$GRETA" quantize "$TMP/iq.gguf" "$TMP/x.gguf" Q8_0
expect_error "synth: unknown shape" "^greta: error: synth: unknown shape 'huge'" "$GRETA" synth --shape huge -o "$TMP/x.gguf"
expect_error "synth: no output" "no output file" "$GRETA" synth --shape tiny
expect_error "synth: bad number" "synth: --dim: '12x' is not an integer" "$GRETA" synth --shape tiny --dim 12x -o "$TMP/x.gguf"
expect_error "synth: missing dimension" "no --shape and no --vocab" \
    "$GRETA" synth --dim 64 --ffn 128 --layers 2 --heads 4 -o "$TMP/x.gguf"
expect_error "synth: bad head split" "heads 4 must be a multiple of kv-heads 3" \
    "$GRETA" synth --shape tiny --kv-heads 3 -o "$TMP/x.gguf"
expect_error "synth: Q4_0 with dim 200" "row length 200 .* block size 32" \
    "$GRETA" synth --shape tiny --dim 200 --type Q4_0 -o "$TMP/x.gguf"
expect_error "synth: unknown type" "unknown type 'Q2_K_S'" "$GRETA" synth --shape tiny --type Q2_K_S -o "$TMP/x.gguf"
expect_error "synth: unknown option (last, no value)" "^greta: error: synth: unknown option '--bogus'" "$GRETA" synth --shape tiny --bogus
expect_error "synth: missing value" "^greta: error: synth: --dim needs a value" "$GRETA" synth --shape tiny --dim
expect_error "quantize: unknown option" "^greta: error: quantize: unknown option '--bogus'" "$GRETA" quantize --bogus
expect_error "quantize: missing value" "^greta: error: quantize: --threads needs a value" "$GRETA" quantize --threads
expect_ok "synth --help" "$GRETA" synth --help
expect_ok "quantize --help" "$GRETA" quantize --help
expect_error "synth: unwritable output" "^greta: error: synth: $TMP/no/x.gguf: cannot create the output file: No such file" "$GRETA" synth --shape tiny -o "$TMP/no/x.gguf"
run_jobs
finish
