#!/usr/bin/env bash
# Runs every test program (build/tests/test_*) and every CLI test script
# (tests/cli/*.sh), adds up their "N passed, M failed" lines and prints the
# total. Exit status 0 only if every program exited 0 and nothing failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export GRETA_REPO=$PWD GRETA_BUILD=$PWD/$BUILD GRETA=$PWD/$BUILD/greta
export GRETA_TEST_TMP=$(mktemp -d /tmp/greta-tests.XXXXXX)
trap 'rm -rf "$GRETA_TEST_TMP"' EXIT
total_pass=0
total_fail=0
broken=()
log_dir=$GRETA_TEST_TMP/logs
mkdir -p "$log_dir"

run_one() {  # name, command...
    local name=$1; shift
    local log=$log_dir/$name.log
    local start=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local summary
    summary=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    local p=0 f=0
    if [[ $summary =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}
    fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [[ $rc -ne 0 || -z $summary ]]; then
        broken+=("$name")
        grep -E '^FAIL' "$log" | head -n 20
        echo "---- $name exited $rc; last lines:"; tail -n 15 "$log"
        [[ $f -eq 0 ]] && total_fail=$((total_fail + 1))
    fi
    printf '%-28s %4d passed %3d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
}

for bin in "$BUILD"/tests/test_*; do
    [[ -x $bin ]] || continue
    run_one "$(basename "$bin")" "$bin"
done
for script in tests/cli/*.sh; do
    [[ -f $script ]] || continue
    [[ $(basename "$script") == lib.sh ]] && continue  # sourced helpers, not a test
    run_one "$(basename "$script" .sh)" bash "$script"
done
if [[ ${#broken[@]} -gt 0 ]]; then echo "broken: ${broken[*]}"; fi
echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 && ${#broken[@]} -eq 0 && $total_pass -gt 0 ]]
