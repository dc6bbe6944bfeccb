#!/usr/bin/env bash
# server_page_screenshot.sh [OUT.png]: the chat page at "/" in headless
# Chromium (Debian package `chromium`) against a real greta serve on
# loopback: the page lists the model, asks a question through its URL
# ("/#q=...&t=0": greedy), streams the answer from /v1/chat/completions, and shows the
# token counts when the stream ends (scripts/tools/page_check.py drives Chromium
# over the DevTools protocol). Checks the page for all of that, then saves
# the screenshot (default docs/server_page.png).
# A tool to run by hand (CI has no browser): exit 0 only if every check passes.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-docs/server_page.png}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
GRETA=${GRETA:-./build/greta}
CHROMIUM=$(command -v chromium || command -v chromium-browser) || { echo "greta: error: chromium is not installed (apt-get install chromium)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/greta-page.XXXXXX)
trap 'kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$TMP"' EXIT
"$GRETA" serve -m "$MODEL" --port 0 -np 2 2>"$TMP/server.log" &
SRV=$!
PORT=
for _ in $(seq 1 300); do
    PORT=$(sed -n 's/.* on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$TMP/server.log")
    [[ -n $PORT ]] && break
    sleep 0.1
done
[[ -n $PORT ]] || { echo "greta: error: the server did not start: $(cat "$TMP/server.log")" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/#q=What%20is%20the%20capital%20of%20France%3F&t=0"
state=$(timeout 180 python3 scripts/tools/page_check.py "$CHROMIUM" "$URL" "$TMP/page.png") \
    || { echo "greta: error: headless Chromium failed: $state" >&2; exit 1; }
echo "     page: $state"
failed=0
# check DESCRIPTION PYTHON-CONDITION over s = the page's state
check() {
    if python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' "$state" "$2"; then
        echo "ok   $1"
    else
        echo "FAIL $1"; failed=1
    fi
}
check "the page lists the model from /v1/models" 's["model"] == "SmolLM2-135M-Instruct.Q4_1"'
check "the question is shown" 's["user"] == ["What is the capital of France?"]'
check "a streamed answer" 'len(s["answer"]) > len(s["stats"]) and not s["error"]'
check "usage counts from the stream's last chunk" '__import__("re").match(r"\d+ prompt tokens, \d+ generated in", s["stats"])'
if [[ -s $TMP/page.png ]]; then
    cp "$TMP/page.png" "$OUT" && echo "ok   screenshot $OUT ($(stat -c %s "$OUT") bytes)"
else
    echo "FAIL no screenshot"; failed=1
fi
exit $failed
