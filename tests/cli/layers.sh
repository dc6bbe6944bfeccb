#!/usr/bin/env bash
# layers.sh: includes point downward only (src/README.md).
#
# Every file under src/LAYER/ may include greta.h, system headers and headers
# of its own layer or of a lower one; a quoted include of a higher layer fails.
# Also checks that every source folder is a known layer (a new folder must be
# placed in the order below) and that the checker itself catches a planted
# upward include.
source "$(dirname "$0")/lib.sh"
cd "$GRETA_REPO"

# Lowest first. Each entry: folder prefix (under src/) and its rank.
layer_rank() {
    case $1 in
        base/*) echo 0 ;;
        format/*) echo 1 ;;
        model/*) echo 2 ;;
        text/*) echo 3 ;;
        backend/*) echo 4 ;;
        engine/*) echo 5 ;;
        api/*) echo 6 ;;
        tools/*) echo 7 ;;
        server/*) echo 7 ;;
        cli/*) echo 8 ;;
        *) echo -1 ;;
    esac
}

# check_tree ROOT: prints one line per violation, returns the count.
check_tree() {
    local root=$1 bad=0 file rel rank inc inc_rank
    while IFS= read -r file; do
        rel=${file#"$root"/}
        rank=$(layer_rank "$rel")
        if [[ $rank -lt 0 ]]; then echo "unknown layer: src/$rel"; bad=$((bad + 1)); continue; fi
        while IFS= read -r inc; do
            [[ $inc == greta.h ]] && continue
            inc_rank=$(layer_rank "$inc")
            if [[ $inc_rank -lt 0 ]]; then
                echo "src/$rel includes \"$inc\": not a layer-qualified path"; bad=$((bad + 1))
            elif [[ $inc_rank -gt $rank ]]; then
                echo "src/$rel includes \"$inc\": a higher layer"; bad=$((bad + 1))
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
    done < <(find "$root" -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' | sort)
    return $((bad > 0 ? 1 : 0))
}

if out=$(check_tree src); then
    pass "every include in src/ points to its own layer or a lower one"
else
    fail "layer violations:"$'\n'"$out"
fi

# The checker must catch a planted violation (an upward include) and an
# unqualified include.
mkdir -p "$TMP/src/base" "$TMP/src/engine"
printf '#include "engine/engine.h"\n' >"$TMP/src/base/bad.c"
printf '#include "base/errors.h"\n#include "greta.h"\n' >"$TMP/src/engine/good.c"
if out=$(check_tree "$TMP/src"); then
    fail "planted upward include not caught"
else
    [[ $out == *'src/base/bad.c includes "engine/engine.h": a higher layer'* ]] && pass "planted upward include caught" \
        || fail "planted upward include: wrong message: $out"
fi
printf '#include "errors.h"\n' >"$TMP/src/base/bad.c"
out=$(check_tree "$TMP/src") && fail "unqualified include not caught" \
    || { [[ $out == *'not a layer-qualified path'* ]] && pass "unqualified include caught" || fail "unqualified: $out"; }

# server/ stands on the public API alone (like the generation front ends):
# greta.h and its own headers, nothing of the library's internals or tools/.
if out=$(grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' src/server/*.[ch] | grep -vE '"(greta\.h|server/[a-z_]+\.h)"'); then
    fail "src/server/ includes more than greta.h and server/ headers:"$'\n'"$out"
else
    pass "src/server/ includes only greta.h and its own headers"
fi

# Every layer folder says what it owns and what it may include.
for d in base format model text backend engine api tools server cli; do
    if [[ -s src/$d/README.md ]] && grep -q 'May include' "src/$d/README.md"; then
        pass "src/$d/README.md says what it may include"
    else
        fail "src/$d/README.md missing or without a 'May include' line"
    fi
done
finish
