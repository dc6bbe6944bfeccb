#!/usr/bin/env bash
# cuda_launch.sh: the launch contract of the cuda backend's kernels, checked on the source (CI has
# no GPU; docs/cuda.md "Programmatic dependent launch"). A kernel launched with programmatic
# dependent launch may start while the kernel before it still runs, so one that touches the
# activations before gpu_grid_wait() would read stale values, on a GPU, sometimes. Checked here,
# on the source with its comments removed:
#  - cuda_device.cu, cuda_matvec.cu and cuda_matvec_q8.cu launch only through gpu_launch() (no <<<);
#  - every __global__ function of those files calls gpu_grid_release() and gpu_grid_wait(), the
#    matrix products through row_dots / rowq_dots, which wait after their first weight loads;
#  - __ldg (a non-coherent load, which ptxas moves above griddepcontrol.wait: seen in the SASS)
#    appears only in the weight loaders ld16/ld4/ld2 and ldq16/ldq4/ldq2, so activations are
#    read with coherent loads;
#  - the checker catches planted violations of each rule.
# Not checked (it would take the SASS): that no access comes before the wait in a kernel's order.
source "$(dirname "$0")/lib.sh"
cd "$GRETA_REPO"
FILES="src/backend/cuda/cuda_device.cu src/backend/cuda/cuda_matvec.cu src/backend/cuda/cuda_matvec_q8.cu"

# strip FILE: FILE without its comments, line numbers kept.
strip() {
    python3 -c 'import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), s, flags=re.S)
sys.stdout.write(re.sub(r"//[^\n]*", "", s))' "$1"
}

# kernels FILE...: "FILE NAME WAITS RELEASES" for every __global__ function (WAITS: the body calls
# gpu_grid_wait() or a *row*_dots helper; RELEASES: it calls gpu_grid_release()).
kernels() {
    awk '
        /__global__/ { sig = 1; name = ""; depth = 0; opened = 0; waits = 0; rel = 0 }
        sig && name == "" && match($0, /[A-Za-z_0-9]+\(/) && $0 !~ /__launch_bounds__\([^)]*\)[[:space:]]*$/ {
            s = $0; sub(/__launch_bounds__\([^)]*\)/, "", s)
            if (match(s, /[A-Za-z_0-9]+\(/)) name = substr(s, RSTART, RLENGTH - 1)
        }
        sig {
            if ($0 ~ /gpu_grid_wait\(\)|rowq?_dots</) waits = 1
            if ($0 ~ /gpu_grid_release\(\)/) rel = 1
            n_open = gsub(/\{/, "{"); n_close = gsub(/\}/, "}")
            depth += n_open - n_close
            if (n_open > 0) opened = 1
            if (opened && depth == 0) { print FILENAME, name, waits, rel; sig = 0 }
        }' "$@"
}

# helper_waits FILE: the *row*_dots helper of FILE (if any) calls gpu_grid_wait()
helper_waits() {
    awk '/__device__ __forceinline__ void rowq?_dots\(/ { h = 1 } h && /gpu_grid_wait\(\)/ { found = 1 } h && /^}/ { h = 0 }
         END { exit found ? 0 : 1 }' "$1"
}

check() {  # files...: prints one line per violation
    local f name waits rel plain=() dir
    dir=$(mktemp -d "$TMP/strip.XXXXXX")
    for f in "$@"; do
        strip "$f" >"$dir/$(basename "$f")"
        plain+=("$dir/$(basename "$f")")
    done
    for f in "${plain[@]}"; do
        grep -n '<<<' "$f" | sed "s|^|$(basename "$f"): a <<< launch (use gpu_launch): |"
        grep -n '__ldg(' "$f" | grep -vE ':__device__ __forceinline__ [a-z0-9_]+ (ld16|ld4|ld2|ldq16|ldq4|ldq2)\(' |
            sed "s|^|$(basename "$f"): __ldg outside the weight loaders: |"
        if grep -q 'rowq\?_dots<' "$f" && ! helper_waits "$f"; then
            echo "$(basename "$f"): row_dots/rowq_dots never call gpu_grid_wait()"
        fi
    done
    while read -r f name waits rel; do
        [[ $waits == 1 ]] || echo "$(basename "$f"): kernel $name never calls gpu_grid_wait()"
        [[ $rel == 1 ]] || echo "$(basename "$f"): kernel $name never calls gpu_grid_release()"
    done < <(kernels "${plain[@]}")
}

n=$(kernels $FILES | wc -l)
n_global=$(cat $FILES | grep -c '__global__')
if [[ $n -eq $n_global && $n -gt 0 ]]; then pass "found all $n kernels of the three files"
else fail "found $n kernels of $n_global __global__ functions: the checker lost some"; fi
out=$(check $FILES)
if [[ -z $out ]]; then pass "every kernel waits and releases, every launch goes through gpu_launch"
else fail "launch contract broken:"$'\n'"$out"; fi

# planted violations: a kernel without the wait (only a comment names it), a <<< launch, an
# activation read through __ldg, and row_dots whose only wait is in a comment
cp src/backend/cuda/cuda_device.cu "$TMP/planted.cu"
cat >>"$TMP/planted.cu" <<'CU'
__global__ void planted_kernel(float *x) {
    gpu_grid_release(); /* no gpu_grid_wait() here */
    x[threadIdx.x] = __ldg(x + 32);
}
static void planted_launch(gpuStream_t st, float *x) { planted_kernel<<<1, 32, 0, st>>>(x); }
CU
out=$(check "$TMP/planted.cu")
[[ $out == *"kernel planted_kernel never calls gpu_grid_wait()"* ]] && pass "a planted kernel without the wait is caught" \
    || fail "planted kernel not caught: $out"
[[ $out == *"a <<< launch"* ]] && pass "a planted <<< launch is caught" || fail "planted <<< not caught: $out"
[[ $out == *"__ldg outside the weight loaders"* ]] && pass "a planted __ldg of an activation is caught" \
    || fail "planted __ldg not caught: $out"
sed 's|gpu_grid_wait();|/* gpu_grid_wait(); */|g' src/backend/cuda/cuda_matvec_q8.cu >"$TMP/cuda_matvec_q8.cu"
out=$(check "$TMP/cuda_matvec_q8.cu")
[[ $out == *"row_dots/rowq_dots never call gpu_grid_wait()"* ]] && pass "row_dots whose waits are commented out are caught" \
    || fail "commented-out waits not caught: $out"
finish
