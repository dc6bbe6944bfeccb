#!/usr/bin/env python3
"""gen_tokenizer_fixtures.py: reference token ids for tests/test_tokenizer.c.

Writes tests/fixtures/tokenizer/*.json, each {"source", "vocab"?, "cases": [...]}
where a case is {"name", "text_hex" (the input bytes), "add_special",
"parse_special", "ids"}. References come from Hugging Face `tokenizers` and
`sentencepiece`, never from greta:

  smollm2.json     SmolLM2-135M-Instruct (models/, `bash scripts/fetch-model`):
                   a `tokenizers` BPE built from the GGUF's tokens and merges with
                   SmolLM2's pre-tokenizer (Digits(individual_digits) + ByteLevel),
                   control tokens added as special tokens. Cross-checked against
                   transformers' own GGUF loader where that loader is right (it
                   drops the digit splitting of pre=smollm, so texts with digits
                   are not compared).
  spm.json         a real SentencePiece BPE model (byte_fallback, identity
                   normalization, dummy prefix, like Llama's) trained here on
                   license texts + the corpus; the vocabulary is in the fixture
                   (tokens, scores, types) so tests write a vocab-only GGUF from it.
                   Reference ids from sentencepiece itself.
  pretokenizers.json  for every supported tokenizer.ggml.pre, the pieces HF's
                   pre-tokenizer of that model family (as in its tokenizer.json:
                   Split / Digits / Punctuation / ByteLevel steps) makes of each
                   corpus text, in the byte-mapped alphabet. "default" is
                   llama.cpp's fallback regex list run through HF Split steps.
  llama_bpe.json   a small byte-level BPE trained with `tokenizers` on the same
                   text, used with tokenizer.ggml.pre = llama-bpe; reference ids
                   from `tokenizers` with Llama 3's split regex (ignore_merges as
                   Llama 3). Vocabulary and merges in the fixture.

Invalid UTF-8: HF and sentencepiece take str, so their input is
bytes.decode("utf-8", "replace"); greta repairs its input the same way.

Usage: python3 scripts/gen_tokenizer_fixtures.py [--model PATH]
"""
import argparse
import glob
import json
import os
import re
import sys
import tempfile

import numpy as np
from gguf import GGUFReader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
SCRIPT = "scripts/gen_tokenizer_fixtures.py"

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. In 1905, Albert Einstein published four papers "
    "that changed physics forever; the third, on special relativity, introduced E = mc^2. "
    "It's often said that \"simplicity is the ultimate sophistication\" -- but what's simple "
    "to one reader isn't simple to another.\n\nMeanwhile, the committee's report (pp. 12-345) "
    "estimated costs at $1,234,567.89, roughly 3.5x the original budget!"
)
CODE = (
    "def fibonacci(n: int) -> list[int]:\n"
    "    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
    "    a, b = 0, 1\n"
    "    out = []\n"
    "    for _ in range(n):\n"
    "        out.append(a)\n"
    "        a, b = b, a + b\n"
    "    return out\n\n"
    "if __name__ == '__main__':\n"
    "\tprint(fibonacci(10))  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]\n"
)
C_CODE = (
    "static int32_t clamp(int32_t x, int32_t lo, int32_t hi) {\n"
    "    return x < lo ? lo : (x > hi ? hi : x);\n}\n"
    "for (size_t i = 0; i < n; ++i) { sum += a[i] * b[i]; } // dot\n"
    "#define MAX(a,b) ((a)>(b)?(a):(b))\n"
)
MIXED = (
    "日本語のテキストと中文文本，还有한국어 문장. Ελληνικά και русский текст. "
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ — “quotes” and ‘apostrophes’… "
    "Café naïve façade coöperate Ångström ﬁnance ½ ² Ⅻ ٣ ४ ໕"
)

CORPUS = [
    ("empty", b""),
    ("space", b" "),
    ("spaces_run", b"     "),
    ("leading_spaces", b"   hello"),
    ("trailing_spaces", b"hello   "),
    ("inner_spaces", b"a  b   c    d"),
    ("newlines", b"\n\n\nline one\nline two\n\n"),
    ("crlf", b"first\r\nsecond\r\n\r\nthird"),
    ("tabs", b"\tindented\t\ttabs\t"),
    ("mixed_ws", b" \t \n \r\n\t  x  \n"),
    ("nbsp_and_unicode_spaces", "a\u00a0b\u2003c\u3000d\u0085e".encode()),
    ("digits", b"0 1 12 123 1234 12345 123456 1234567890"),
    ("long_number", b"3141592653589793238462643383279502884197169399375105820974944592"),
    ("decimals", b"3.14159 -2.5e-10 1,000,000 0x1F 1st 2nd 3rd 4th"),
    ("unicode_digits", "١٢٣ ४५६ ７８９ ²³ ½".encode()),
    ("contractions", b"I'm you're he's we'll they'd it's can't won't I'VE She'S"),
    ("punctuation", b"Hello, world! (yes) [no] {maybe} <tag> \"quoted\" 'single' a--b a...b ?!?!"),
    ("symbols", b"$100 + 5% = ~$105 ^_^ | a&b @user #tag `code` \\path/to/file"),
    ("accents", "café résumé naïve Zürich Ångström façade".encode()),
    ("combining", "e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0336a\u0337l\u0338g\u0335o".encode()),
    ("cjk", "你好，世界！这是一个测试。日本語のテキスト。한국어 텍스트".encode()),
    ("emoji", "👍 🚀🔥 👨‍👩‍👧‍👦 🇫🇷 ❤️ 😀😃😄".encode()),
    ("rtl", "مرحبا بالعالم שלום עולם".encode()),
    ("greek_cyrillic", "Ελληνικά κείμενο και русский текст".encode()),
    ("code_python", CODE.encode()),
    ("code_c", C_CODE.encode()),
    ("json", b'{"key": [1, 2.5, null, true], "nested": {"a": "b\\n"}}'),
    ("url_email", b"https://example.com/path?q=1&r=two#frag user.name+tag@mail.example.org"),
    ("special_text_chatml", b"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"),
    ("special_text_llama", b"<s>[INST] Hi [/INST] Hello</s><unk>"),
    ("special_lookalike", b"<|im_start |> <|im_end| <|endoftext|><|endoftext|> <s ></s"),
    ("invalid_utf8_lone", b"abc\xffdef\x80ghi"),
    ("invalid_utf8_truncated", b"caf\xc3 na\xe2\x82 end\xf0\x9f\x98"),
    ("invalid_utf8_overlong", b"\xc0\xaf \xe0\x80\xaf \xed\xa0\x80 \xf4\x90\x80\x80 ok"),
    ("control_chars", b"a\x00b\x01c\x1fd\x7fe"),
    ("bytes_outside_vocab", "a\x04b\x06c\x13\x14\x16\x1d d\U000923bd e\U000523bd".encode()),
    ("paragraph", PARAGRAPH.encode()),
    ("mixed_paragraph", MIXED.encode()),
    ("long_repeat", ("ab" * 300 + " " + "z" * 500).encode()),
]


def hf_text(b):
    return b.decode("utf-8", "replace")


def read_vocab(path):
    r = GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar(key):
        f = r.fields.get(key)
        return None if f is None else f.parts[f.data[0]].tolist()[0]

    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    return {
        "tokens": strings("tokenizer.ggml.tokens"),
        "merges": strings("tokenizer.ggml.merges"),
        "types": types,
        "bos": scalar("tokenizer.ggml.bos_token_id"),
        "add_bos": scalar("tokenizer.ggml.add_bos_token"),
        "pre": bytes(r.fields["tokenizer.ggml.pre"].parts[r.fields["tokenizer.ggml.pre"].data[0]]).decode(),
    }


def make_cases(encode):
    """encode(bytes, add_special, parse_special) -> ids, for every corpus text."""
    cases = []
    for name, b in CORPUS:
        for add_special, parse_special in ((True, False), (False, False), (True, True)):
            cases.append({
                "name": name,
                "text_hex": b.hex(),
                "add_special": add_special,
                "parse_special": parse_special,
                "ids": [int(i) for i in encode(b, add_special, parse_special)],
            })
    return cases


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(obj['cases'])} cases)")


# ---- (a) SmolLM2 ----

def smollm_tokenizer(vocab):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    ids = {t: i for i, t in enumerate(vocab["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    tk = Tokenizer(models.BPE(vocab=ids, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    control = [AddedToken(t, normalized=False, special=True)
               for t, ty in zip(vocab["tokens"], vocab["types"]) if ty == 3]
    tk.add_special_tokens(control)
    return tk


def gen_smollm(model_path):
    vocab = read_vocab(model_path)
    assert vocab["pre"] == "smollm", vocab["pre"]
    tk = smollm_tokenizer(vocab)
    add_bos = bool(vocab["add_bos"])

    def encode(b, add_special, parse_special):
        tk.encode_special_tokens = not parse_special
        ids = tk.encode(hf_text(b), add_special_tokens=add_special).ids
        if add_special and add_bos:
            ids = [vocab["bos"]] + ids
        return ids

    cases = make_cases(encode)
    # Cross-check with transformers' GGUF loader (no digits: it ignores pre=smollm).
    try:
        from transformers import AutoTokenizer
        ref = AutoTokenizer.from_pretrained(os.path.dirname(model_path), gguf_file=os.path.basename(model_path))
        compared = agreed = 0
        for name, b in CORPUS:
            t = hf_text(b)
            if re.search(r"\d", t):
                continue
            compared += 1
            tk.encode_special_tokens = False
            mine = tk.encode(t, add_special_tokens=False).ids
            theirs = ref(t, add_special_tokens=False)["input_ids"]
            agreed += mine == theirs
            if mine != theirs:
                print(f"  transformers GGUF loader differs on {name!r}", file=sys.stderr)
        print(f"smollm2: transformers' GGUF loader agrees on {agreed}/{compared} digit-free texts")
    except Exception as e:  # the cross-check is a sanity check, not the reference
        print(f"smollm2: transformers cross-check skipped: {e}", file=sys.stderr)
    write("smollm2.json", {
        "source": f"{SCRIPT}: HF tokenizers BPE from the GGUF vocab/merges, pre-tokenizer Digits(individual)+ByteLevel",
        "model": os.path.relpath(model_path, ROOT) if model_path.startswith(ROOT) else os.path.basename(model_path),
        "cases": cases,
    })


# ---- training text for the small vocabularies ----

def training_text():
    parts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path) and os.path.getsize(path) < 200_000:
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
    parts += [PARAGRAPH, CODE, C_CODE, MIXED] * 20
    for _, b in CORPUS:
        parts.append(hf_text(b))
    return "\n".join(parts)


# ---- (b) SentencePiece ----

SPM_CONTROL = ["<|im_start|>", "<|im_end|>"]
SPM_USER = ["<tool>", "▁<sep>"]


def gen_spm(workdir):
    import sentencepiece as spm

    text_path = os.path.join(workdir, "train.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(training_text())
    prefix = os.path.join(workdir, "spm")
    spm.SentencePieceTrainer.train(
        input=text_path, model_prefix=prefix, model_type="bpe", vocab_size=1200,
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, control_symbols=SPM_CONTROL, user_defined_symbols=SPM_USER,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, max_sentence_length=100000,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        tokens.append(piece)
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif sp.is_unused(i):
            types.append(5)
        elif piece in SPM_USER:
            types.append(4)
        else:
            types.append(1)
    control_texts = sorted((t for t, ty in zip(tokens, types) if ty in (2, 3)), key=len, reverse=True)
    control_re = re.compile("(" + "|".join(re.escape(t) for t in control_texts) + ")")

    def encode(b, add_special, parse_special):
        text = hf_text(b)
        ids = [sp.bos_id()] if add_special else []
        if not parse_special:
            return ids + sp.encode(text)
        # Control tokens split the text; each piece is encoded on its own (so
        # gets the dummy prefix), as llama.cpp and HF's legacy Llama tokenizer do.
        for k, seg in enumerate(control_re.split(text)):
            if k % 2 == 1:
                ids.append(sp.piece_to_id(seg))
            elif seg:
                ids += sp.encode(seg)
        return ids

    cases = make_cases(encode)
    # Decode references (sentencepiece's own) for valid-UTF-8 texts.
    write("spm.json", {
        "source": f"{SCRIPT}: sentencepiece BPE (byte_fallback, identity normalization) trained on license texts; ids from sentencepiece",
        "vocab": {"model": "llama", "tokens": tokens, "scores": scores, "types": types,
                  "bos": 1, "eos": 2, "unk": 0, "add_bos": True, "add_space_prefix": True},
        "cases": cases,
    })


# ---- (c) byte-level BPE with the llama-bpe pre-tokenizer ----

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gen_llama_bpe():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    def pre():
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([training_text()], trainer=trainer)
    model = json.loads(tk.to_str())["model"]
    vocab = model["vocab"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [3 if t in specials else 1 for t in tokens]
    # The reference: Llama 3's tokenizer shape (ignore_merges = true).
    ref = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], ignore_merges=True))
    ref.pre_tokenizer = pre()
    ref.decoder = decoders.ByteLevel()
    ref.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    bos = vocab["<|begin_of_text|>"]

    def encode(b, add_special, parse_special):
        ref.encode_special_tokens = not parse_special
        ids = ref.encode(hf_text(b), add_special_tokens=False).ids
        return ([bos] if add_special else []) + ids

    cases = make_cases(encode)
    # The split alone, for the regex: HF's pre-tokenizer pieces of each text.
    splits = [{"name": n, "text_hex": b.hex(),
               "pieces": [p for p, _ in pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated")
                          .pre_tokenize_str(hf_text(b))]} for n, b in CORPUS]
    write("llama_bpe.json", {
        "source": f"{SCRIPT}: tokenizers byte-level BPE trained on license texts, Llama 3 split regex, ignore_merges",
        "vocab": {"model": "gpt2", "pre": "llama-bpe", "tokens": tokens, "types": types, "merges": merges,
                  "bos": bos, "eos": vocab["<|end_of_text|>"], "add_bos": True},
        "splits": splits,
        "cases": cases,
    })


# ---- (d) every pre-tokenizer's split ----

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+")
DEEPSEEK_PUNCT = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
DEEPSEEK_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"


def hf_pretokenizers():
    from tokenizers import Regex, pre_tokenizers as pt

    def split(r):
        return pt.Split(Regex(r), behavior="isolated")

    def bl(use_regex):
        return pt.ByteLevel(add_prefix_space=False, use_regex=use_regex)

    digits_then_bl = lambda: pt.Sequence([pt.Digits(individual_digits=True), bl(True)])
    return {
        "default": pt.Sequence([split(r"[\p{P}\$\+<=>\^~\|]+"), split(GPT2_SPLIT), split(r"\p{N}+"),
                                split("[0-9][0-9][0-9]"), bl(False)]),
        "gpt-2": bl(True),
        "mpt": bl(True),
        "smollm": digits_then_bl(),
        "starcoder": digits_then_bl(),
        "refact": digits_then_bl(),
        "llama-bpe": pt.Sequence([split(LLAMA3_SPLIT), bl(False)]),
        "qwen2": pt.Sequence([split(QWEN2_SPLIT), bl(False)]),
        "deepseek-llm": pt.Sequence([split(r"[\r\n]"), split(DEEPSEEK_LETTERS), split(DEEPSEEK_PUNCT),
                                     split(r"\s+$"), split(DEEPSEEK_CJK), pt.Digits(individual_digits=False),
                                     bl(False)]),
        "deepseek-coder": pt.Sequence([split(r"[\r\n]"), split(r"\s?\p{L}+"), split(r"\s?\p{P}+"),
                                       split(DEEPSEEK_CJK), pt.Digits(individual_digits=True), bl(False)]),
        "falcon": pt.Sequence([pt.Punctuation(behavior="contiguous"), bl(True), pt.Digits(individual_digits=False),
                               split("[0-9][0-9][0-9]")]),
    }


def gen_pretokenizers():
    out = []
    for pre, p in hf_pretokenizers().items():
        cases = [{"name": n, "text_hex": b.hex(), "pieces": [x for x, _ in p.pre_tokenize_str(hf_text(b))]}
                 for n, b in CORPUS]
        out.append({"pre": pre, "cases": cases})
    write("pretokenizers.json", {
        "source": f"{SCRIPT}: HF tokenizers pre-tokenizer sequences per model family; pieces byte-mapped",
        "cases": out,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    gen_smollm(args.model)
    with tempfile.TemporaryDirectory() as d:
        gen_spm(d)
    gen_llama_bpe()
    gen_pretokenizers()


if __name__ == "__main__":
    main()
