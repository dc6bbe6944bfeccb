#!/usr/bin/env bash
# file_values.sh: values of the wrong GGUF type are named as wrong types (they
# were reported as missing keys or silently taken), and strings from the file
# reach the terminal escaped (ESC, BEL, newline and NUL were printed raw, and
# 'llama\0evil' was printed as 'llama'). Files written with the gguf package.
source "$(dirname "$0")/lib.sh"
if ! python3 -c 'import gguf' 2>"$TMP/err"; then
    fail "python package gguf is needed: $(tail -n 1 "$TMP/err")"
    finish; exit
fi
python3 - "$TMP" <<'PY'
import sys, gguf
from gguf import GGUFValueType as T
tmp = sys.argv[1]
base = {"llama.embedding_length": (64, T.UINT32), "llama.feed_forward_length": (96, T.UINT32),
        "llama.block_count": (2, T.UINT32), "llama.attention.head_count": (4, T.UINT32),
        "llama.context_length": (128, T.UINT32)}
def make(name, kvs, arch="llama"):
    w = gguf.GGUFWriter(f"{tmp}/{name}", arch)
    if "general.architecture" in kvs:
        w.kv_data[0].pop("general.architecture", None)
    for k, (v, t) in {**base, **kvs}.items():
        w.add_key_value(k, v, t)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
make("arch_int.gguf", {"general.architecture": (7, T.UINT32)})
make("block_u64.gguf", {"llama.block_count": (2**64 - 1, T.UINT64)})
make("vocab_str.gguf", {"llama.vocab_size": ("many", T.STRING)})
make("experts_str.gguf", {"llama.expert_count": ("8", T.STRING)})
make("template_int.gguf", {"tokenizer.chat_template": (5, T.UINT32)})
make("rope_int.gguf", {"llama.rope.scaling.type": (1, T.UINT32)})
make("eps_str.gguf", {"llama.attention.layer_norm_rms_epsilon": ("small", T.STRING)})
make("arch_nul.gguf", {}, arch="llama\0evil")
make("arch_esc.gguf", {}, arch="ll\x1b[31mama\x07\nX")
make("rope_esc.gguf", {"llama.rope.scaling.type": ("yarn\x1b[2J", T.STRING)})
make("hparams_first.gguf", {"llama.block_count": (0, T.UINT32), "tokenizer.ggml.model": ("bert", T.STRING)})
make("tok_esc.gguf", {"tokenizer.ggml.model": ("bert\x07\x1b[1A", T.STRING), "tokenizer.ggml.tokens": (["a", "b"], T.ARRAY)})
PY
m() { echo "$TMP/$1"; }
expect_error "architecture as an integer" "error: .*arch_int.gguf: key general.architecture is a uint32, not a string$" \
    "$GRETA" run -m "$(m arch_int.gguf)" -p hi
expect_error "block_count 2^64-1" "key llama.block_count = 18446744073709551615 is out of range \[1, 4096\]$" \
    "$GRETA" run -m "$(m block_u64.gguf)" -p hi
expect_error "vocab_size as a string" "key llama.vocab_size is a string, not an integer$" \
    "$GRETA" run -m "$(m vocab_str.gguf)" -p hi
expect_error "expert_count as a string (was accepted)" "key llama.expert_count is a string, not an integer$" \
    "$GRETA" run -m "$(m experts_str.gguf)" -p hi
expect_error "chat_template as an integer (was ignored)" "key tokenizer.chat_template is a uint32, not a string$" \
    "$GRETA" run -m "$(m template_int.gguf)" -p hi
expect_error "rope scaling type as an integer" "key llama.rope.scaling.type is a uint32, not a string$" \
    "$GRETA" run -m "$(m rope_int.gguf)" -p hi
expect_error "rms epsilon as a string" "key llama.attention.layer_norm_rms_epsilon is a string, not a number$" \
    "$GRETA" run -m "$(m eps_str.gguf)" -p hi
expect_error "an architecture with a NUL is shown whole" "unsupported architecture 'llama\\\\x00evil'" \
    "$GRETA" run -m "$(m arch_nul.gguf)" -p hi
expect_error "control bytes in the architecture are escaped" "unsupported architecture 'll\\\\x1B\[31mama\\\\x07\\\\x0AX'" \
    "$GRETA" run -m "$(m arch_esc.gguf)" -p hi
expect_error "control bytes in the rope scaling type are escaped" "unsupported rope scaling type 'yarn\\\\x1B\[2J'" \
    "$GRETA" run -m "$(m rope_esc.gguf)" -p hi
expect_error "control bytes in the tokenizer model are escaped" "unsupported tokenizer.ggml.model 'bert\\\\x07\\\\x1B\[1A'" \
    "$GRETA" tokenize -m "$(m tok_esc.gguf)" hi
expect_error "hyperparameters are checked before the vocabulary is built" \
    "key llama.block_count = 0 is out of range \[1, 4096\]$" "$GRETA" run -m "$(m hparams_first.gguf)" -p hi
# no raw control byte reached stderr in any of the above
for f in "$TMP"/*.gguf; do "$GRETA" run -m "$f" -p hi 2>>"$TMP/all.err" >/dev/null; done
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$TMP/all.err"; then fail "a raw control byte reached stderr"; else pass "no raw control byte on stderr"; fi

# a template's own message (raise_exception) is escaped too
"$GRETA" synth --shape tiny --type Q8_0 -o "$TMP/tiny.gguf" >/dev/null 2>&1
printf '%s' "{{ raise_exception('bad\x1b[31m\x07 role') }}" >"$TMP/raise.jinja"
expect_error "raise_exception text is escaped" "raise_exception: bad\\\\x1B\[31m\\\\x07 role" \
    "$GRETA" run -m "$TMP/tiny.gguf" -p hi --chat --chat-template "$TMP/raise.jinja"
finish
