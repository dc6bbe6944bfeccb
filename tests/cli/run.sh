#!/usr/bin/env bash
# run.sh: greta run on the default model against the transformers greedy
# fixture (tests/fixtures/hf/hf_greedy.json, scripts/fixtures/gen_hf_fixtures.py),
# seeds, stop strings, --dump-logits, and errors for bad flags.
source "$(dirname "$0")/lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
FIX=$GRETA_REPO/tests/fixtures/hf/hf_greedy.json

# fixture FIELD PROMPT_NAME [N]: a field of one fixture prompt (python3 stdlib only)
fixture() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = [p for p in d["prompts"] if p["name"] == sys.argv[3]][0]
v = p[sys.argv[2]]
if isinstance(v, list):
    v = " ".join(str(x) for x in v[: int(sys.argv[4])])
sys.stdout.write(str(v))' "$FIX" "$@"
}
# out_is TEXT: stdout of the last command is exactly TEXT plus the final newline
out_is() { printf '%s\n' "$1" | cmp -s - "$TMP/out"; }
# out_is_fixture FIELD NAME: ... exactly the fixture's text plus the newline
out_is_fixture() { { fixture "$1" "$2"; printf '\n'; } | cmp -s - "$TMP/out"; }

# ---- errors (no model needed) ----
expect_error "unknown flag" "greta: error: .*unknown argument '--frobnicate'" "$GRETA" run -m x.gguf -p hi --frobnicate
expect_error "missing value" "greta: error: -n: missing value" "$GRETA" run -m x.gguf -p hi -n
expect_error "bad integer" "greta: error: -n: expected an integer, got '12x'" "$GRETA" run -m x.gguf -p hi -n 12x
expect_error "negative token count" "greta: error: -n: -5 is out of range" "$GRETA" run -m x.gguf -p hi -n -5
expect_error "bad float" "greta: error: --temp: expected a number, got 'warm'" "$GRETA" run -m x.gguf -p hi --temp warm
expect_error "top-p out of range" "greta: error: --top-p: 1.5 is out of range" "$GRETA" run -m x.gguf -p hi --top-p 1.5
expect_error "bad backend, the registry's names listed" "greta: error: --backend: unknown backend 'gpu9' \\(expected one of: cpu, ref, cuda\\)" "$GRETA" run -m x.gguf -p hi --backend gpu9
expect_error "no prompt" "greta: error: run: no prompt" "$GRETA" run -m x.gguf
expect_error "no model" "greta: error: run: no model" "$GRETA" run -p hi
expect_error "both -p and -f" "greta: error: run: pass one of -p, -f and --ids" "$GRETA" run -m x.gguf -p hi -f x.txt
expect_error "--system without --chat" "greta: error: run: --system needs --chat" "$GRETA" run -m x.gguf -p hi --system s
expect_error "--chat-template without --chat" "greta: error: run: --chat-template needs --chat" \
    "$GRETA" run -m x.gguf -p hi --chat-template chatml
expect_error "empty stop string" "greta: error: --stop: the stop string is empty" "$GRETA" run -m x.gguf -p hi --stop ""
expect_error "missing model file" "greta: error: $TMP/none.gguf: " "$GRETA" run -m "$TMP/none.gguf" -p hi
expect_error "missing prompt file" "greta: error: --prompt-file: $TMP/none.txt: No such file" "$GRETA" run -m x.gguf -f "$TMP/none.txt"
expect_error "prompt file is a directory" "greta: error: --prompt-file: $TMP: Is a directory" "$GRETA" run -m x.gguf -f "$TMP"
# -t: the CLI's range is the library's (GRETA_MAX_THREADS); 1024 passed the CLI and failed later
expect_error "-t 1024 is refused by the CLI" "greta: error: -t: 1024 is out of range \[1, 512\]" \
    "$GRETA" run -m x.gguf -p hi -t 1024
if [[ -f $GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
    cpus=$(getconf _NPROCESSORS_ONLN)
    "$GRETA" run -m "$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf" -p hi -n 1 --greedy -t 512 >/dev/null 2>"$TMP/t.err"
    grep -q "^greta: warning: -t 512 is more than the $cpus online CPUs; using $cpus (--force-threads keeps 512)$" "$TMP/t.err" \
        && grep -q "cpu backend, $cpus thread" "$TMP/t.err" && pass "-t above the CPU count is capped with a warning" \
        || fail "-t 512: $(cat "$TMP/t.err")"
    "$GRETA" run -m "$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf" -p hi -n 1 --greedy -t $((cpus + 1)) --force-threads \
        >/dev/null 2>"$TMP/t.err"
    ! grep -q "warning" "$TMP/t.err" && grep -q "cpu backend, $((cpus + 1)) threads" "$TMP/t.err" \
        && pass "--force-threads keeps -t" || fail "--force-threads: $(cat "$TMP/t.err")"
fi
# --dump-logits with a directory path so long that the file names inside would be cut
long_dir=$TMP
while [[ ${#long_dir} -lt 4080 ]]; do long_dir=$long_dir/$(printf 'd%.0s' $(seq 1 200)); done
expect_error "--dump-logits path too long" "greta: error: --dump-logits: the directory path is too long \(4[0-9]{3} bytes; at most 4063\)" \
    "$GRETA" run -m x.gguf -p hi --dump-logits "$long_dir"
# unbounded inputs are refused at a documented size, not read until memory runs out
expect_error "prompt file /dev/zero with --ctx 16" "greta: error: --prompt-file: /dev/zero: larger than 4096 bytes" \
    "$GRETA" run -m x.gguf -f /dev/zero --ctx 16
expect_error "prompt file /dev/zero" "greta: error: --prompt-file: /dev/zero: larger than 268435456 bytes" \
    "$GRETA" run -m x.gguf -f /dev/zero
expect_error "--chat-template /dev/zero" "greta: error: --chat-template: /dev/zero: larger than 1048576 bytes" \
    "$GRETA" run -m x.gguf -p hi --chat --chat-template /dev/zero
expect_ok "run --help" "$GRETA" run --help
grep -q -- "--dump-logits" "$TMP/out" && pass "help lists --dump-logits" || fail "help lists --dump-logits"

if [[ ! -f $MODEL ]]; then
    fail "MODEL MISSING: $MODEL (run 'make fetch-model'); the model tests cannot run"
    finish; exit
fi

# ---- greedy text = transformers' greedy text ----
want=$(fixture generated_text_16 plain)
# HF-text equality is the exact path's contract (--precision f32); the default q8's greedy ids are
# compared with transformers in test_hf with its near-tie rule (the plain prompt has one at step 5)
expect_ok "greedy run" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 16 -t 2 --precision f32
got=$(cat "$TMP/out")
out_is_fixture generated_text_16 plain && pass "greedy -n 16 text equals HF's: '${got//$'\n'/\\n}'" \
    || fail "greedy -n 16 text '${got//$'\n'/\\n}', HF '${want//$'\n'/\\n}'"
grep -qE "prompt 5 tokens .* generated 16 tokens .* token limit" "$TMP/err" && pass "speed line on stderr" \
    || fail "speed line on stderr: $(cat "$TMP/err")"
expect_ok "greedy run, one thread, one token" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 1 -t 1
grep -qE "prompt 5 tokens .* generated 1 token in .* token limit; cpu backend, 1 thread$" "$TMP/err" \
    && pass "speed line says '1 token', '1 thread'" || fail "speed line singulars: $(cat "$TMP/err")"

# the same through the greta_infer spellings, with the logits dumped (at --precision f32, the
# exact path, for the 1e-4 check; the default q8 gave the same ids above)
expect_ok "greta_infer aliases + --dump-logits" "$GRETA" run --model "$MODEL" --prompt "The capital of France is" \
    --greedy --max-tokens 16 --dump-logits "$TMP/logits" --precision f32
ids=$(python3 -c '
import json, sys
print(" ".join(str(json.loads(l)["token_id"]) for l in open(sys.argv[1])))' "$TMP/logits/index.jsonl")
[[ $ids == "$(fixture generated_ids plain 16)" ]] && pass "dumped token ids equal HF's greedy ids" \
    || fail "dumped ids '$ids', HF '$(fixture generated_ids plain 16)'"
python3 - "$TMP/logits" "$FIX" <<'EOF' && pass "dumped rows: 16 x 49152 float32, argmax = token_id, top-1 logit = HF's within 1e-4 of the norm" || fail "dumped logits rows"
import json, struct, sys, os, math
d = sys.argv[1]
fix = [p for p in json.load(open(sys.argv[2]))["prompts"] if p["name"] == "plain"][0]
lines = [json.loads(l) for l in open(os.path.join(d, "index.jsonl"))]
assert len(lines) == 16, len(lines)
for l in lines:
    raw = open(os.path.join(d, l["file"]), "rb").read()
    assert len(raw) == 4 * 49152 and l["n_vocab"] == 49152
    row = struct.unpack("<49152f", raw)
    best = max(range(len(row)), key=lambda i: (row[i], -i))
    assert best == l["token_id"], (best, l)
    ref = fix["positions"][l["pos"]]
    assert abs(row[best] - ref["top_values"][0]) <= 1e-4 * ref["norm"], (row[best], ref["top_values"][0])
EOF

# ---- chat template + system prompt: HF's greedy answer, stopped at <|im_end|> ----
sys_prompt=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = [p for p in d["prompts"] if p["name"] == "chat_system"][0]
print(p["messages"][0]["content"])' "$FIX")
expect_ok "chat run" "$GRETA" run -m "$MODEL" --chat --system "$sys_prompt" -p "What is the capital of France?" --greedy -n 64 --precision f32
want=$(fixture answer_text chat_system)
out_is_fixture answer_text chat_system && pass "--chat --system greedy answer equals HF's: '$want'" \
    || fail "--chat answer '$(cat "$TMP/out")', HF '$want'"
grep -q "end of generation" "$TMP/err" && pass "stopped at the end-of-generation token" || fail "EOG stop: $(cat "$TMP/err")"

# ---- --chat-template FILE|NAME ----
printf '%s' "{% for m in messages %}{{ m['content'] }}{% endfor %}" >"$TMP/content_only.jinja"
expect_ok "--chat-template FILE" "$GRETA" run -m "$MODEL" --chat --chat-template "$TMP/content_only.jinja" \
    -p "The capital of France is" --greedy -n 4
out_is $' Paris.\n\n' && pass "a content-only template gives the plain prompt's text" \
    || fail "--chat-template FILE output '$(cat "$TMP/out")'"
expect_error "unknown template name" "greta: error: unknown chat template 'no-such-template'" \
    "$GRETA" run -m "$MODEL" --chat --chat-template no-such-template -p hi -n 1
printf 'just text' >"$TMP/not_a_template.txt"
expect_error "template file without Jinja" "greta: error: --chat-template: .*not a Jinja template" \
    "$GRETA" run -m "$MODEL" --chat --chat-template "$TMP/not_a_template.txt" -p hi -n 1

# ---- stop strings: never printed, even split over tokens ----
expect_ok "stop string" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 16 --stop "answer is" --precision f32
out_is $' Paris.\n\nThe ' && pass "--stop 'answer is' ends before it" \
    || fail "--stop output '$(cat "$TMP/out")'"
grep -q "stop string" "$TMP/err" && pass "stderr says stop string" || fail "stop reason: $(cat "$TMP/err")"
expect_ok "stop string inside a token" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 16 --stop "ari" --precision f32
out_is " P" && pass "--stop 'ari' cuts inside ' Paris'" || fail "--stop 'ari' output '$(cat "$TMP/out")'"

# ---- seeds: same seed same text (any thread count), other seed other text ----
run_seed() { "$GRETA" run -m "$MODEL" -p "Once upon a time" -n 24 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --seed "$1" -t "$2" 2>/dev/null; }
a=$(run_seed 7 2); b=$(run_seed 7 1); c=$(run_seed 8 2)
[[ -n $a && $a == "$b" ]] && pass "seed 7: same text with 2 and 1 threads" || fail "seed 7: '$a' vs '$b'"
[[ $a != "$c" ]] && pass "seed 8 gives other text" || fail "seeds 7 and 8 gave the same text '$a'"

# ---- prompt from a file, context limits ----
printf 'The capital of France is' >"$TMP/prompt.txt"
expect_ok "-f FILE" "$GRETA" run -m "$MODEL" -f "$TMP/prompt.txt" --greedy -n 4
out_is $' Paris.\n\n' && pass "-f gives the same text" \
    || fail "-f output '$(cat "$TMP/out")'"
expect_error "prompt longer than the context" "greta: error: run: the prompt is 1[0-9]{3} tokens, longer than the context of 512" \
    "$GRETA" run -m "$MODEL" -f "$GRETA_REPO/tests/fixtures/hf/long_prompt.txt" --ctx 512
expect_ok "generation stops at a full context" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 50 --ctx 8
grep -q "generated 4 tokens.*context full" "$TMP/err" && pass "5 prompt tokens + 4 generated fill --ctx 8" \
    || fail "full context: $(cat "$TMP/err")"

# ---- the ref backend agrees on the first greedy tokens ----
expect_ok "ref backend" "$GRETA" run -m "$MODEL" -p "The capital of France is" --greedy -n 4 --backend ref \
    --dump-logits "$TMP/ref_logits"
out_is $' Paris.\n\n' && pass "ref greedy -n 4 = HF's first 4 tokens" || fail "ref output '$(cat "$TMP/out")'"
# and its logits, not only its text: the first step's row against transformers' float64 row at
# position 4 (tests/fixtures/hf/rows/plain_p4.f64). ref measured 2.5e-8 (its float64 rounded to the
# dump's float32); cpu gives 1.6e-6, so the bound tells the backends apart.
if python3 - "$TMP/ref_logits" "$GRETA_REPO/tests/fixtures/hf" >"$TMP/ref_cmp" 2>&1 <<'PY'
import json, sys
import numpy as np
dump, fix = sys.argv[1], sys.argv[2]
plain = [p for p in json.load(open(f"{fix}/hf_greedy.json"))["prompts"] if p["name"] == "plain"][0]
row = [r for r in plain["full_rows"] if r["pos"] == len(plain["prompt_ids"]) - 1][0]
want = np.fromfile(f"{fix}/{row['file']}", "<f8")
got = np.fromfile(f"{dump}/step_00000.bin", "<f4").astype(np.float64)
ids = [json.loads(line)["token_id"] for line in open(f"{dump}/index.jsonl")]
rel = np.linalg.norm(got - want) / np.linalg.norm(want)
print(f"relative error {rel:.3g}, ids {ids} (HF {plain['generated_ids'][:4]})")
sys.exit(0 if rel <= 2e-7 and ids == plain["generated_ids"][:4] else 1)
PY
then pass "ref logits at the prompt's end = HF float64 row: $(cat "$TMP/ref_cmp")"
else fail "ref logits vs HF: $(cat "$TMP/ref_cmp")"; fi
# ---- greta bench (small sizes): the figures are consistent with the model's shape ----
expect_error "bench: bad repetitions" "greta: error: -r: 0 is out of range" "$GRETA" bench -m "$MODEL" -r 0
expect_error "bench: unknown flag" "greta: error: bench: unknown argument '--fast'" "$GRETA" bench -m "$MODEL" --fast
expect_ok "bench --json" "$GRETA" bench -m "$MODEL" -p 8 -n 4 -r 2 -t 2 --json
python3 - "$TMP/out" <<'EOF2' && pass "bench JSON: pp/tg > 0, KV bytes = 2*30*3*64*4*(4+1)/2 = 115200, sums and fraction consistent" || fail "bench JSON: $(cat "$TMP/out")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["pp_tok_s"] > 0 and j["tg_tok_s"] > 0 and j["repetitions"] == 2 and j["threads"] == 2
assert j["kv_bytes_per_token_mean"] == 115200, j["kv_bytes_per_token_mean"]
assert j["bytes_per_token"] == j["decode_weight_bytes_per_token"] + 115200
# tied embeddings: every weight byte is read once per token
assert j["decode_weight_bytes_per_token"] == j["file_weight_bytes"]
assert abs(j["achieved_bytes_per_s"] - j["bytes_per_token"] * j["tg_tok_s"]) < 1e-6 * j["achieved_bytes_per_s"]
assert j["memory_read_bytes_per_s"] > 1e9 and j["memory_copy_bytes_per_s"] > 1e9
assert abs(j["fraction_of_read_bandwidth"] - j["achieved_bytes_per_s"] / j["memory_read_bytes_per_s"]) < 1e-9
EOF2
# The model file truncated while greta runs: one error line naming the file,
# exit 1 (it died of SIGBUS without a word).
cp "$MODEL" "$TMP/changing.gguf"
"$GRETA" run -m "$TMP/changing.gguf" --chat -p "Tell me a long story about a dragon." -n 2000 --ctx 2048 --greedy \
    >/dev/null 2>"$TMP/bus.err" &
pid=$!
sleep 2 # loaded and generating (the story takes many seconds)
truncate -s 4096 "$TMP/changing.gguf"
wait "$pid"
rc=$?
[[ $rc -eq 1 ]] && grep -q "^greta: error: $TMP/changing.gguf: the model file changed while in use" "$TMP/bus.err" \
    && pass "a model file truncated while in use is named (exit 1)" \
    || fail "truncated model: exit $rc: $(tail -c 300 "$TMP/bus.err")"
rm -f "$TMP/changing.gguf"
# Activation rows are chunked by size: n_ff = 2^18 with n_embd 32 (a 14 MB
# file) took 1 GB of RSS for a long prompt (512 rows of gate and up); now a
# chunk's activations stay within 64 MiB.
"$GRETA" synth --dim 32 --ffn 262144 --layers 1 --heads 1 --vocab 320 --type Q4_0 -o "$TMP/wide.gguf" >/dev/null 2>&1
peak_kb=$(python3 - "$GRETA" "$TMP/wide.gguf" <<'PY'
import resource, subprocess, sys
prompt = " ".join("word%d" % i for i in range(40))
r = subprocess.run([sys.argv[1], "run", "-m", sys.argv[2], "-p", prompt, "-n", "1", "-t", "1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else "failed: " + r.stderr.strip())
PY
)
[[ $peak_kb =~ ^[0-9]+$ && $peak_kb -lt 204800 ]] && pass "n_ff 2^18: peak RSS ${peak_kb} KB < 200 MB" \
    || fail "n_ff 2^18: peak RSS $peak_kb KB"
finish
