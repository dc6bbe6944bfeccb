# lib.sh: helpers for CLI test scripts (sourced, not run).
# Each script calls pass/fail per assertion and finish at the end, which
# prints "NAME: N passed, M failed" like the C tests.
: "${GRETA:?GRETA must point at the greta binary (run through tests/run_tests.sh)}"
cli_passed=0
cli_failed=0
cli_name=$(basename "$0" .sh)
TMP=$(mktemp -d "${GRETA_TEST_TMP:-/tmp}/$cli_name.XXXXXX")
pass() { cli_passed=$((cli_passed + 1)); echo "ok   $*"; }
fail() { cli_failed=$((cli_failed + 1)); echo "FAIL $*"; }
# expect_ok DESCRIPTION CMD...: the command exits 0
expect_ok() { local d=$1; shift; if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$d"; else fail "$d (exit $?): $(head -c 300 "$TMP/err")"; fi; }
# expect_error DESCRIPTION PATTERN CMD...: exits non-zero, stderr has one line matching PATTERN
expect_error() {
    local d=$1 pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
    if [[ $rc -ne 0 && $rc -lt 128 ]] && grep -qE "$pat" "$TMP/err"; then pass "$d"; else fail "$d (exit $rc): $(head -c 300 "$TMP/err")"; fi
}
finish() { echo "$cli_name: $cli_passed passed, $cli_failed failed"; [[ $cli_failed -eq 0 && $cli_passed -gt 0 ]]; }
