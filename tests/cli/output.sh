#!/usr/bin/env bash
# output.sh: lost output is an error. Every command that prints results exits
# non-zero with "greta: error: stdout: WHY" when stdout is /dev/full, and
# with SIGPIPE ignored a closed pipe ends `run` with an error instead of a
# silent exit 0 (with SIGPIPE at its default the kernel ends greta quietly
# with status 141, as for any Unix tool; docs/cli.md).
source "$(dirname "$0")/lib.sh"
MODEL=$GRETA_REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ ! -f $MODEL ]]; then
    fail "MODEL MISSING: $MODEL (run 'make fetch-model')"
    finish; exit
fi
if [[ ! -w /dev/full ]]; then
    fail "/dev/full is not available on this machine"
    finish; exit
fi

full_error() { # DESCRIPTION CMD...: one error line naming stdout, non-zero exit
    local d=$1; shift
    "$@" >/dev/full 2>"$TMP/err" </dev/null; local rc=$?
    if [[ $rc -ne 0 && $rc -lt 128 ]] && grep -q "^greta: error: stdout: No space left on device$" "$TMP/err"; then
        pass "$d"
    else
        fail "$d (exit $rc): $(head -c 300 "$TMP/err")"
    fi
}
full_error "run >/dev/full" "$GRETA" run -m "$MODEL" -p "The capital of France is" -n 4 --greedy
echo "Hi" >"$TMP/hi.txt"
full_error "chat >/dev/full" sh -c '"$0" chat -m "$1" -n 4 --greedy <"$2"' "$GRETA" "$MODEL" "$TMP/hi.txt"
full_error "inspect >/dev/full" "$GRETA" inspect "$MODEL"
full_error "tokenize >/dev/full" "$GRETA" tokenize -m "$MODEL" "Hello world"
full_error "bench >/dev/full" "$GRETA" bench -m "$MODEL" -p 8 -n 2 -r 1 -t 1
full_error "--help >/dev/full" "$GRETA" --help

# SIGPIPE ignored: the reader goes away after 10 bytes; greta must not exit 0.
(
    trap '' PIPE
    "$GRETA" run -m "$MODEL" --chat -p "Tell me a long story about a dragon." -n 200 --greedy 2>"$TMP/pipe.err" | head -c 10 >/dev/null
    echo "${PIPESTATUS[0]}" >"$TMP/pipe.rc"
)
rc=$(cat "$TMP/pipe.rc")
[[ $rc -eq 1 ]] && grep -q "^greta: error: stdout: Broken pipe$" "$TMP/pipe.err" \
    && pass "run | head -c 10 with SIGPIPE ignored: exit 1 and 'stdout: Broken pipe'" \
    || fail "run | head -c 10 with SIGPIPE ignored: exit $rc: $(head -c 300 "$TMP/pipe.err")"
finish
