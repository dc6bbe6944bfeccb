#!/usr/bin/env bash
# library.sh: libgreta is a library a program can link (issue 8 item 5).
#  - libgreta.so exports exactly the functions greta.h declares (nm -D), and
#    libgreta.a defines no other global symbol (its internals are local);
#  - a program that defines gguf_find_key, gguf_init_from_file and
#    gguf_type_name itself (as ggml does) links against libgreta, shared and
#    static, runs, and sees its own definitions;
#  - `make install PREFIX=...` installs the CLI, both libraries, greta.h and
#    greta.pc; examples/generate.c compiles against the installed files
#    through pkg-config and prints what `greta run --greedy` prints.
source "$(dirname "$0")/lib.sh"
cd "$GRETA_REPO"
CC=${CC:-cc}
LIB=$GRETA_BUILD
# Sanitizer builds: the library is instrumented, so programs link the runtime.
SANFLAGS=()
san=0
if ldd "$GRETA" 2>/dev/null | grep -q libasan; then SANFLAGS=(-fsanitize=address,undefined); san=1; fi

# ---- exported symbols == the functions declared in greta.h ----
"$CC" -E -P -Iinclude include/greta.h | grep -oE '\bgreta_[a-z0-9_]+ *\(' | sed 's/ *(//' | sort -u >"$TMP/api"
n_api=$(wc -l <"$TMP/api")
[[ $n_api -ge 60 ]] && pass "greta.h declares $n_api functions" || fail "greta.h declares only $n_api functions?"
if [[ ! -f $LIB/libgreta.so || ! -f $LIB/libgreta.a ]]; then
    fail "no $LIB/libgreta.so or libgreta.a (make builds both)"; finish; exit
fi
nm -D --defined-only "$LIB/libgreta.so" | awk 'NF == 3 {print $3}' | sort -u >"$TMP/so"
if cmp -s "$TMP/api" "$TMP/so"; then
    pass "libgreta.so exports exactly the $n_api functions of greta.h"
else
    fail "libgreta.so exports differ from greta.h: $(diff "$TMP/api" "$TMP/so" | grep '^[<>]' | head -n 10 | tr '\n' ' ')"
fi
nm -g --defined-only "$LIB/libgreta.a" | awk 'NF == 3 {print $3}' | sort -u >"$TMP/a"
if cmp -s "$TMP/api" "$TMP/a"; then
    pass "libgreta.a defines no global symbol but the $n_api functions of greta.h"
else
    fail "libgreta.a globals differ from greta.h: $(diff "$TMP/api" "$TMP/a" | grep '^[<>]' | head -n 10 | tr '\n' ' ')"
fi
# the internals are there, as local symbols (localized, not missing)
nm "$LIB/libgreta.a" | grep -qE ' t gguf_find_key$' && pass "gguf_find_key is a local symbol in libgreta.a" \
    || fail "gguf_find_key in libgreta.a: $(nm "$LIB/libgreta.a" | grep gguf_find_key)"
# the check itself: an extra export would be seen
{ cat "$TMP/so"; echo gguf_find_key; } | sort -u | cmp -s "$TMP/api" - \
    && fail "the symbol comparison cannot see an extra export" || pass "the symbol comparison sees a planted extra export"

# ---- a tiny model for the programs below ----
M=$TMP/tiny.gguf
"$GRETA" synth --shape tiny --seed 3 -o "$M" >"$TMP/synth.out" 2>&1 || { fail "synth: $(cat "$TMP/synth.out")"; finish; exit; }
"$GRETA" run -m "$M" -p "hello world" -n 12 --greedy -t 2 >"$TMP/want.out" 2>"$TMP/want.err" \
    || { fail "greta run on the tiny model: $(cat "$TMP/want.err")"; finish; exit; }

# ---- a program that defines ggml's gguf_* names links and runs ----
cat >"$TMP/collide.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "greta.h"
/* ggml (llama.cpp) defines these; a program linking both must not clash. */
long gguf_find_key(const void *ctx, const char *key) { (void)ctx; return (long)strlen(key) + 1000; }
void *gguf_init_from_file(const char *path, int params) { (void)path; (void)params; return NULL; }
const char *gguf_type_name(int type) { (void)type; return "mine"; }
static bool count_piece(const char *text, size_t len, void *user) { (void)text; *(size_t *)user += len; return true; }
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char err[256] = "";
    greta_model *m = NULL;
    greta_session *s = NULL;
    if (greta_model_load(argv[1], NULL, &m, err, sizeof err) != GRETA_OK) { fprintf(stderr, "load: %s\n", err); return 1; }
    if (greta_session_new(m, NULL, &s, err, sizeof err) != GRETA_OK) { fprintf(stderr, "session: %s\n", err); return 1; }
    int32_t prompt[2] = {1, 2};
    size_t bytes = 0;
    greta_generate_params gp = greta_generate_default_params();
    gp.max_tokens = 4;
    gp.on_piece = count_piece;
    gp.user_data = &bytes;
    greta_generate_result r;
    greta_status st = greta_generate(s, prompt, 2, &gp, &r);
    printf("version %s generate %s %d tokens; own gguf_find_key %ld, gguf_type_name %s, gguf_init_from_file %p\n",
           greta_version(), greta_status_string(st), r.n_generated, gguf_find_key(NULL, "abc"), gguf_type_name(0),
           gguf_init_from_file("x", 0));
    greta_session_free(s);
    greta_model_free(m);
    return st == GRETA_OK && r.n_generated == 4 ? 0 : 1;
}
C
want_line="version $(sed -n 's/^#define GRETA_VERSION "\(.*\)"/\1/p' include/greta.h) generate ok 4 tokens; own gguf_find_key 1003, gguf_type_name mine, gguf_init_from_file (nil)"
for kind in shared static; do
    if [[ $kind == shared ]]; then
        link=(-L"$LIB" -lgreta -Wl,-rpath,"$LIB")
    else
        link=("$LIB/libgreta.a" -lpcre2-8 -ljansson -lm -pthread)
    fi
    if "$CC" -std=c11 -Wall -Wextra -Werror "${SANFLAGS[@]}" -Iinclude -o "$TMP/collide-$kind" "$TMP/collide.c" \
            "${link[@]}" >"$TMP/cc.out" 2>&1; then
        pass "$kind: a program defining gguf_find_key, gguf_init_from_file, gguf_type_name links"
        got=$("$TMP/collide-$kind" "$M" 2>&1)
        [[ $got == "$want_line" ]] && pass "$kind: it runs and keeps its own definitions" || fail "$kind: '$got'"
    else
        fail "$kind: link failed: $(head -c 600 "$TMP/cc.out")"
    fi
done

# ---- make install into a temporary prefix; the example through pkg-config ----
P=$TMP/prefix
if env -u MAKEFLAGS -u MAKELEVEL make -s -C "$GRETA_REPO" install PREFIX="$P" SAN=$san BUILD="$(basename "$LIB")" \
        >"$TMP/install.out" 2>&1; then
    pass "make install PREFIX=$P"
else
    fail "make install: $(tail -c 600 "$TMP/install.out")"; finish; exit
fi
for f in bin/greta lib/libgreta.a lib/libgreta.so include/greta.h lib/pkgconfig/greta.pc; do
    [[ -e $P/$f ]] && pass "installed $f" || fail "missing $P/$f"
done
"$P/bin/greta" run -m "$M" -p "hello world" -n 12 --greedy -t 2 >"$TMP/inst.out" 2>/dev/null && cmp -s "$TMP/inst.out" "$TMP/want.out" \
    && pass "the installed greta runs" || fail "installed greta: $(head -c 200 "$TMP/inst.out")"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
cflags=$(pkg-config --cflags greta) && libs=$(pkg-config --libs greta) && libdir=$(pkg-config --variable=libdir greta) \
    && pass "pkg-config greta: $cflags $libs" || fail "pkg-config greta fails"
[[ $libdir == "$P/lib" ]] && pass "pkg-config libdir is the prefix's" || fail "libdir '$libdir'"
# shellcheck disable=SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror "${SANFLAGS[@]}" examples/generate.c $cflags $libs -Wl,-rpath,"$libdir" \
        -o "$TMP/generate" >"$TMP/cc.out" 2>&1; then
    pass "examples/generate.c compiles against the installed greta.h and libgreta.so"
    "$TMP/generate" "$M" "hello world" 12 >"$TMP/gen.out" 2>"$TMP/gen.err"
    rc=$?
    [[ $rc -eq 0 ]] && cmp -s "$TMP/gen.out" "$TMP/want.out" \
        && pass "the example prints what 'greta run --greedy' prints: '$(tr '\n' ' ' <"$TMP/gen.out")'" \
        || fail "example (exit $rc): '$(cat "$TMP/gen.out")' vs '$(cat "$TMP/want.out")': $(cat "$TMP/gen.err")"
    ldd "$TMP/generate" | grep -q "$P/lib/libgreta.so" && pass "the example uses the installed libgreta.so" \
        || fail "the example's libgreta: $(ldd "$TMP/generate" | grep greta)"
else
    fail "examples/generate.c: $(head -c 600 "$TMP/cc.out")"
fi
# shellcheck disable=SC2086
if "$CC" -std=c11 "${SANFLAGS[@]}" examples/generate.c $cflags "$libdir/libgreta.a" $(pkg-config --static --libs-only-other greta) \
        -lpcre2-8 -ljansson -lm -o "$TMP/generate-static" >"$TMP/cc.out" 2>&1 \
        && "$TMP/generate-static" "$M" "hello world" 12 >"$TMP/gen.out" 2>/dev/null && cmp -s "$TMP/gen.out" "$TMP/want.out"; then
    pass "the example linked with the installed libgreta.a prints the same"
else
    fail "static example: $(head -c 600 "$TMP/cc.out")"
fi
"$TMP/generate" "$TMP/missing.gguf" "x" >/dev/null 2>"$TMP/gen.err"
[[ $? -eq 1 ]] && grep -q "^generate: $TMP/missing.gguf: cannot open" "$TMP/gen.err" \
    && pass "the example reports a missing model in one line" || fail "example on a missing file: $(cat "$TMP/gen.err")"
finish
