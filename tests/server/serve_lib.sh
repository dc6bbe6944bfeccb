# serve_lib.sh: starting and stopping greta serve in the server tests
# (sourced after tests/cli/lib.sh). Loopback only, every wait bounded.

# start_server LOG ARGS...: greta serve --port 0 ARGS in the background;
# sets SRV_PID and PORT once it listens. Fails if it exits or takes > 60 s.
start_server() {
    local log=$1; shift
    "$GRETA" serve --port 0 "$@" 2>"$log" &
    SRV_PID=$!
    PORT=
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's/.* on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$log")
        [[ -n $PORT ]] && return 0
        kill -0 "$SRV_PID" 2>/dev/null || { wait "$SRV_PID"; return 1; }
        sleep 0.1
    done
    return 1
}

# stop_server: SIGTERM, then wait at most 60 s; returns the exit status
# (137 if it had to be killed).
stop_server() {
    kill -TERM "$SRV_PID" 2>/dev/null
    for _ in $(seq 1 600); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SRV_PID" 2>/dev/null; then
        kill -KILL "$SRV_PID"
        wait "$SRV_PID" 2>/dev/null
        return 137
    fi
    wait "$SRV_PID"
}

# http METHOD PATH [CURL_ARGS...]: body to $TMP/body, status in STATUS.
http() {
    local method=$1 path=$2; shift 2
    STATUS=$(curl -s --max-time 60 -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "http://127.0.0.1:$PORT$path")
}

# jfield EXPR: a Python expression over d = the JSON in $TMP/body.
jfield() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/body" "$1" 2>&1
}

# py_checks DESCRIPTION SCRIPT ARGS...: runs a client from tests/server/
# and counts its ok/FAIL lines as this script's own.
py_checks() {
    local d=$1 script=$2; shift 2
    local out rc line n=0
    out=$(cd "$GRETA_REPO/tests/server" && timeout 600 python3 "$script" "$@" 2>&1); rc=$?
    while IFS= read -r line; do
        case $line in
            "ok   "*) pass "$d: ${line#ok   }"; n=$((n + 1)) ;;
            "FAIL "*) fail "$d: ${line#FAIL }"; n=$((n + 1)) ;;
            *) [[ -n $line ]] && echo "     $line" ;;
        esac
    done <<<"$out"
    if [[ $rc -ne 0 && $n -eq 0 ]] || [[ $rc -ne 0 && $out != *"FAIL "* ]]; then
        fail "$d: $script exited $rc: $(tail -c 600 <<<"$out")"
    fi
}
