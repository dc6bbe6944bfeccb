#!/usr/bin/env bash
# cuda_sass.sh: scripts/cuda/sass-check, the programmatic-dependent-launch contract of the cuda
# kernels checked on their SASS (docs/cuda.md "Programmatic dependent launch"): reachable before
# griddepcontrol.wait (ACQBULK), no store and no load but the weights', in every kernel of
# cuda_device.cu, cuda_matvec.cu and cuda_matvec_q8.cu; and the check catches planted violations:
#  - tests/fixtures/cuda/sass_planted.cu: a store before the wait, an input read before it, a
#    kernel without the wait (each FAILs), weights read before the wait (passes);
#  - cuda_matvec.cu with its activation load back on __ldg (the first PDL version: ptxas moves
#    those loads above the wait) FAILs, the loads named as coming from a.x.
# Needs nvcc and nvdisasm, no GPU (.ci/run installs the pip package nvidia-cuda-nvdisasm where nvcc
# is). Without them, and in the sanitizer run (it runs none of greta's C), it says it skipped and
# counts 0 passed, 0 failed.
source "$(dirname "$0")/lib.sh"
cd "$GRETA_REPO"
CHECK=scripts/cuda/sass-check
skip() { echo "skipped: $*; nothing ran"; echo "$cli_name: 0 passed, 0 failed"; exit 0; }
[[ $GRETA_BUILD == *san* ]] && skip "the sanitizer run (the SASS check runs no C of greta's; the plain run checks it)"
command -v "${NVCC:-nvcc}" >/dev/null 2>&1 || skip "nvcc not found"
tools=$(python3 "$CHECK" --tools 2>&1) || skip "$tools"
echo "     ${tools//$'\n'/, }"

# the kernels as they are
python3 "$CHECK" >"$TMP/main.txt" 2>&1; rc=$?
last=$(tail -n 1 "$TMP/main.txt")
n_tag_ok=$(grep -c '^ok   cuda_[a-z0-9_]*\.cu: tagged SASS = real SASS' "$TMP/main.txt")
n_kernels=$(grep -cE '^(ok  |FAIL) cuda_[a-z0-9_]*\.cu [^:]*\(' "$TMP/main.txt")
if [[ $rc -eq 0 && $last =~ ^sass-check:\ ([0-9]+)\ passed,\ 0\ failed$ && $n_tag_ok -eq 3 && $n_kernels -gt 100 ]]; then
    pass "no kernel of the three files touches anything but weights before the wait ($n_kernels kernels; $last)"
else
    fail "sass-check on the kernels (exit $rc, $n_tag_ok of 3 tag comparisons ok, $n_kernels kernels):"$'\n'"$(grep -A4 '^FAIL' "$TMP/main.txt" | head -n 40)"$'\n'"$last"
fi

# planted kernels
python3 "$CHECK" tests/fixtures/cuda/sass_planted.cu >"$TMP/planted.txt" 2>&1; rc=$?
out=$(cat "$TMP/planted.txt")
[[ $rc -eq 1 ]] && pass "planted violations make sass-check exit 1" || fail "planted: exit $rc: $out"
flagged() {  # KERNEL PATTERN: the kernel FAILs with a line matching PATTERN
    awk -v k="$1" '/^(ok  |FAIL) / { cur = index($0, "FAIL sass_planted.cu " k "(") == 1 } cur' "$TMP/planted.txt" | grep -qE "$2"
}
flagged planted_store 'STG.*: store before the wait' && pass "a store before the wait is caught" \
    || fail "planted store not caught: $out"
flagged planted_src_read 'LDG.*: activation \(coherent\) load before the wait, from src' \
    && pass "an input read before the wait is caught (named: src)" || fail "planted input read not caught: $out"
flagged planted_no_wait 'no ACQBULK' && pass "a kernel without the wait is caught" || fail "planted no-wait not caught: $out"
grep -q '^ok   sass_planted.cu allowed_weights(' "$TMP/planted.txt" && pass "weights read before the wait pass" \
    || fail "the allowed weight reads were flagged: $out"

# cuda_matvec.cu with its activation load back on __ldg (act_f4, gpu_compat.h, replaced at its call)
sed 's|const float4 xv = act_f4(x + xo\[h\]);|const float4 xv = __ldg((const float4 *)(x + xo[h]));|' \
    src/backend/cuda/cuda_matvec.cu >"$TMP/cuda_matvec.cu"
if cmp -s src/backend/cuda/cuda_matvec.cu "$TMP/cuda_matvec.cu"; then
    fail "could not plant __ldg in place of act_f4 (its line changed?)"
else
    python3 "$CHECK" "$TMP/cuda_matvec.cu" >"$TMP/ldg.txt" 2>&1; rc=$?
    n_fail=$(grep -c '^FAIL cuda_matvec.cu ' "$TMP/ldg.txt")
    if [[ $rc -eq 1 && $n_fail -gt 0 ]] && grep -q 'non-coherent load before the wait, from a\.x' "$TMP/ldg.txt"; then
        pass "the activation load on __ldg is caught: $n_fail kernels load a.x before the wait"
    else
        fail "planted __ldg not caught (exit $rc): $(tail -n 5 "$TMP/ldg.txt")"
    fi
fi
finish
