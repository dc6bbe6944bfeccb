#!/usr/bin/env bash
# chat.sh: greta chat fed by a script on stdin, on the default model:
# HF's greedy answer for the first turn, KV cache reuse between turns
# (only the new turn's tokens evaluated), /reset, /quit, end of input,
# Ctrl-C stopping an answer but not the program, and flag errors.
source "$(dirname "$0")/lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
FIX=$GRETA_REPO/tests/fixtures/hf/hf_greedy.json

expect_error "chat: unknown flag" "greta: error: chat: unknown argument '--bogus'" "$GRETA" chat -m x.gguf --bogus
expect_error "chat: a run-only flag" "greta: error: chat: -p is a 'greta run' flag" "$GRETA" chat -m x.gguf -p hi
expect_error "chat: no model" "greta: error: chat: no model" "$GRETA" chat
expect_error "chat: bad number" "greta: error: --top-k: expected an integer, got 'many'" "$GRETA" chat -m x.gguf --top-k many

# A template that renders the conversation to nothing: one clear error, not a
# rewind to position -1 (the common-prefix count underflowed).
"$GRETA" synth --shape tiny --type Q8_0 -o "$TMP/tiny.gguf" >/dev/null 2>&1
printf "{{ '' }}" >"$TMP/empty.jinja"
echo hi >"$TMP/hi.txt"
expect_error "chat: a template rendering no tokens" "greta: error: chat template: the conversation renders to no tokens" \
    "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template "$TMP/empty.jinja" -n 2 <"$TMP/hi.txt"

# A malformed template is reported at start, before any message is read
# (it was reported only after the first message; with no input, exit 0).
printf '%s' "{% for m in messages %}{{ m.content }" >"$TMP/bad.jinja"
expect_error "chat: a malformed template is an error at start" \
    "^greta: error: chat template 1:[0-9]+: .*--chat-template NAME\|FILE" \
    "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template "$TMP/bad.jinja" </dev/null
expect_error "chat: --chat-template /dev/zero is refused" \
    "^greta: error: --chat-template: /dev/zero: larger than 1048576 bytes" "$GRETA" chat -m x.gguf --chat-template /dev/zero

# stdin problems and lines that cannot be sent
printf 'hi\0there\n/quit\n' >"$TMP/nul.txt"
expect_ok "chat: a line with a NUL byte" "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template chatml -n 2 <"$TMP/nul.txt"
grep -q "^greta: error: chat: the line contains a NUL byte (not sent)$" "$TMP/err" \
    && pass "a NUL byte is refused for that line (it cut the line silently)" || fail "NUL line: $(cat "$TMP/err")"
expect_error "chat: stdin is a directory" "^greta: error: chat: stdin: Is a directory$" \
    "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template chatml <"$TMP"
expect_error "chat: stdin closed" "^greta: error: chat: stdin: Bad file descriptor$" \
    "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template chatml <&-
{ head -c 5000 /dev/zero | tr '\0' 'a'; printf '\n/quit\n'; } >"$TMP/big.txt"
expect_ok "chat: a message larger than the context" "$GRETA" chat -m "$TMP/tiny.gguf" --chat-template chatml --ctx 16 -n 2 \
    <"$TMP/big.txt"
grep -q "^greta: error: chat: the message is 5000 bytes, more than a context of 16 can hold (4096); not sent$" "$TMP/err" \
    && pass "an oversized message is refused for its turn, the session goes on" || fail "big message: $(cat "$TMP/err")"

if [[ ! -f $MODEL ]]; then
    fail "MODEL MISSING: $MODEL (run 'make fetch-model'); the chat tests cannot run"
    finish; exit
fi

SYSTEM=$(python3 -c '
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["prompts"] if p["name"] == "chat_system"][0]
print(p["messages"][0]["content"])' "$FIX")
ANSWER=$(python3 -c '
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["prompts"] if p["name"] == "chat_system"][0]
sys.stdout.write(p["answer_text"])' "$FIX")

printf '%s\n' "What is the capital of France?" "/reset" "What is the capital of France?" "And of Spain?" "/quit" \
    "never read" >"$TMP/script.txt"
expect_ok "chat session from a script" "$GRETA" chat -m "$MODEL" --system "$SYSTEM" --greedy -n 48 <"$TMP/script.txt"
mapfile -t answers <"$TMP/out"
[[ ${answers[0]} == "$ANSWER" ]] && pass "turn 1 = HF's greedy answer: '$ANSWER'" \
    || fail "turn 1 '${answers[0]}', HF '$ANSWER'"
[[ ${answers[1]} == "$ANSWER" ]] && pass "after /reset the same question gets the same answer" \
    || fail "after /reset: '${answers[1]}'"
[[ ${#answers[@]} -eq 3 && -n ${answers[2]} ]] && pass "three answers, /quit stops before the last line" \
    || fail "${#answers[@]} answer lines: $(cat "$TMP/out")"
mapfile -t stats < <(grep -E '^\[[0-9]+ prompt tokens' "$TMP/err")
re='^\[([0-9]+) prompt tokens, ([0-9]+) evaluated \(([0-9]+) reused'
if [[ ${#stats[@]} -eq 3 && ${stats[0]} =~ $re ]]; then
    t1=${BASH_REMATCH[1]} e1=${BASH_REMATCH[2]}
    [[ $t1 -eq $e1 ]] && pass "turn 1 evaluates all $t1 tokens" || fail "turn 1: ${stats[0]}"
    [[ ${stats[1]} =~ $re && ${BASH_REMATCH[1]} -eq $t1 && ${BASH_REMATCH[2]} -eq $t1 ]] \
        && pass "after /reset nothing is reused" || fail "after reset: ${stats[1]}"
    if [[ ${stats[2]} =~ $re ]]; then
        t3=${BASH_REMATCH[1]} e3=${BASH_REMATCH[2]} r3=${BASH_REMATCH[3]}
        # turn 3 reuses at least the previous prompt (t1 tokens); only its own suffix is evaluated
        [[ $r3 -ge $t1 && $e3 -lt 20 && $((r3 + e3)) -eq $t3 ]] \
            && pass "turn 3 reuses $r3 cached tokens and evaluates only $e3 of $t3" || fail "turn 3: ${stats[2]}"
    else
        fail "turn 3 stats: ${stats[2]}"
    fi
else
    fail "stats lines: $(cat "$TMP/err")"
fi
grep -q "conversation reset" "$TMP/err" && pass "/reset is acknowledged" || fail "/reset message"

printf '%s\n' "Hello" >"$TMP/eof.txt"
expect_ok "end of input quits with status 0" "$GRETA" chat -m "$MODEL" --greedy -n 8 <"$TMP/eof.txt"
[[ $(wc -l <"$TMP/out") -eq 1 ]] && pass "one answer before end of input" || fail "eof output: $(cat "$TMP/out")"

# Commands: blanks around them are ignored; an unknown /word or a command with
# an argument is an error line and is not sent; blank lines are skipped. Nothing
# here reaches the model (stdout stays empty) and "  /quit  " quits.
printf '%s\n' "/help" "/foo" "/reset now" "   " "  /reset  " "  /quit  " "never sent" >"$TMP/cmd.txt"
expect_ok "chat commands" "$GRETA" chat -m "$MODEL" --greedy -n 8 <"$TMP/cmd.txt"
[[ ! -s $TMP/out ]] && pass "no command line was sent as a message" || fail "answers to commands: $(cat "$TMP/out")"
grep -q "^\[commands: /reset .*/quit or /exit.*/help" "$TMP/err" && pass "/help lists the commands" || fail "/help: $(cat "$TMP/err")"
grep -q "^greta: error: chat: unknown command '/foo' (the line was not sent)" "$TMP/err" && pass "unknown /command is an error" \
    || fail "/foo: $(cat "$TMP/err")"
grep -q "^greta: error: chat: /reset takes no argument" "$TMP/err" && pass "/reset with an argument is an error" \
    || fail "/reset now: $(cat "$TMP/err")"
[[ $(grep -c "^\[conversation reset\]$" "$TMP/err") -eq 1 ]] && pass "'  /reset  ' resets" || fail "reset: $(cat "$TMP/err")"

# An answer cut off by the end of the context says so; the next turn no longer
# fits and is refused with one error line, and the program goes on.
printf '%s\n' "Tell me a long story about a dragon." "And another one." >"$TMP/full.txt"
expect_ok "chat with a small context" "$GRETA" chat -m "$MODEL" --greedy -n 400 --ctx 64 <"$TMP/full.txt"
grep -qE "^\[[0-9]+ prompt tokens, .*; [0-9]+ generated at .*; context full\]$" "$TMP/err" \
    && pass "an answer cut by the context says 'context full'" || fail "no 'context full': $(cat "$TMP/err")"
grep -q "greta: error: chat: the conversation is .* tokens, the context holds 64; /reset to start over" "$TMP/err" \
    && pass "the next turn is refused" || fail "next turn: $(cat "$TMP/err")"

# Ctrl-C: a long answer is interrupted, the program goes on to the next line.
# No race with the program's start or the answer's end: /help's reply (on
# stderr) says the SIGINT handler is installed (it is set before the first
# line is read), and the counting prompt's greedy answer runs to the -n limit
# (4000 tokens, over 10 s at a few hundred tokens/s), which is checked below.
trap "" PIPE  # a write to a greta that has ended fails (and is reported) instead of killing this script
mkfifo "$TMP/in"
"$GRETA" chat -m "$MODEL" --greedy -n 4000 --ctx 4096 <"$TMP/in" >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!
exec 3>"$TMP/in"
echo "/help" >&3
# a sanitizer build on a busy machine needs far more than a second to load
for _ in $(seq 1 1200); do grep -q "^\[commands:" "$TMP/int.err" && break; sleep 0.1; done
echo "Count from 1 to 1000, separated by commas." >&3
for _ in $(seq 1 1200); do [[ -s $TMP/int.out ]] && break; sleep 0.05; done
kill -INT "$pid"
echo "/reset" >&3
echo "/quit" >&3
exec 3>&-
wait "$pid"
rc=$?
[[ $rc -eq 0 ]] && pass "Ctrl-C does not end the program (exit $rc)" || fail "after Ctrl-C exit $rc: $(tail -c 300 "$TMP/int.err")"
grep -q "; interrupted\]" "$TMP/int.err" && pass "the answer was interrupted" || fail "no interruption: $(cat "$TMP/int.err")"
grep -A5 "; interrupted\]" "$TMP/int.err" | grep -q "conversation reset" && pass "input is read on after Ctrl-C (/reset)" \
    || fail "nothing read after Ctrl-C: $(cat "$TMP/int.err")"
# Ctrl-C while the prompt is evaluated (nothing streams yet) stops that
# answer within one layer (the session's abort callback) and greta chat reads
# on (it used to be ignored until the answer started). /help's reply says the
# handler is installed; a first message of about 6000 tokens on one thread
# keeps the prefill busy for seconds, and the Ctrl-C comes 0.3 s after it.
python3 -c '
import sys
text = open(sys.argv[1]).read().replace("\n", " ")
sys.stdout.write((text + " ") * 80)' "$GRETA_REPO/tests/fixtures/hf/long_prompt.txt" | head -c 24000 >"$TMP/long.txt"
echo >>"$TMP/long.txt"
mkfifo "$TMP/in2"
"$GRETA" chat -m "$MODEL" --greedy -n 4 --ctx 8192 -t 1 <"$TMP/in2" >"$TMP/pre.out" 2>"$TMP/pre.err" &
pid=$!
exec 4>"$TMP/in2"
echo "/help" >&4
for _ in $(seq 1 1200); do grep -q "^\[commands:" "$TMP/pre.err" && break; sleep 0.1; done
cat "$TMP/long.txt" >&4
sleep 0.3
kill -INT "$pid" 2>/dev/null
for _ in $(seq 1 50); do grep -q "interrupted\]" "$TMP/pre.err" && break; sleep 0.1; done
grep -qE "^\[[0-9]+ prompt tokens, 0 evaluated \(0 reused from the cache\); 0 generated at 0\.0 tok/s; interrupted\]$" "$TMP/pre.err" \
    && pass "Ctrl-C during the prefill stops the answer before any token (within 5 s)" \
    || fail "Ctrl-C during the prefill: $(tail -c 300 "$TMP/pre.err")"
echo "/quit" >&4
exec 4>&-
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    fail "greta chat did not quit after Ctrl-C during the prefill and /quit"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
else
    wait "$pid"
    rc=$?
    [[ $rc -eq 0 ]] && pass "greta chat goes on after Ctrl-C during the prefill (/quit: exit 0)" \
        || fail "after Ctrl-C during the prefill: exit $rc: $(tail -c 300 "$TMP/pre.err")"
fi
finish
