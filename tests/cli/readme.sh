# readme.sh: README.md's first command, run as a new user meets it: in a
# clean clone of the repository (git clone of the committed tree) with a
# clean environment. The model is linked from this checkout (fetch-model
# then only verifies its sha256); the Debian packages are present by then
# (CI ran scripts/setup/install-deps). Then the package check itself: a
# package that does not exist is named in one line with the command to run
# (as a non-root user), and as root apt-get is run for exactly the missing ones.
source "$(dirname "$0")/lib.sh"
MODEL_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
one_line() { [[ $(wc -l <"$1") -eq 1 ]]; }

# The first line of the first ```sh block of README.md.
cmd=$(awk '/^```sh$/ { getline; print; exit }' "$GRETA_REPO/README.md")
if [[ -n $cmd ]]; then pass "README.md's first command: $cmd"; else fail "no \`\`\`sh block in README.md"; fi

clone=$TMP/clone
if git clone -q "$GRETA_REPO" "$clone" 2>"$TMP/err"; then pass "git clone of the repository"
else fail "git clone $GRETA_REPO: $(head -c 300 "$TMP/err")"; fi
model=$(readlink -f "$GRETA_REPO/models/$MODEL_NAME")
if [[ -f $model ]]; then
    mkdir -p "$clone/models" && ln -s "$model" "$clone/models/$MODEL_NAME"
else
    fail "default model missing: $GRETA_REPO/models/$MODEL_NAME (bash scripts/fetch-model)"
fi

# A new user's environment: none of the suite's variables (BUILD, MAKEFLAGS, GRETA...).
as_new_user() { (cd "$1" && env -i HOME="$HOME" PATH="$2" LANG=C.UTF-8 bash -c "$cmd"); }
as_new_user "$clone" "$PATH" >"$TMP/out" 2>"$TMP/err"
rc=$?
if [[ $rc -eq 0 ]] && grep -q "Paris" "$TMP/out"; then pass "the first command builds and answers: $(head -c 200 "$TMP/out")"
else fail "the first command (exit $rc): stdout '$(head -c 200 "$TMP/out")' stderr: $(tail -n 3 "$TMP/err")"; fi
if ! grep -q "greta: error" "$TMP/err"; then pass "no error line on the way"; else fail "$(grep "greta: error" "$TMP/err")"; fi

# Packages absent, as a user who is not root (a fake 'id' says uid 1000): the
# first command stops at the package check with one line naming the package.
fake=$TMP/fakebin
mkdir -p "$fake"
printf '#!/bin/sh\necho 1000\n' >"$fake/id"
chmod +x "$fake/id"
clone2=$TMP/clone2
git clone -q "$GRETA_REPO" "$clone2" 2>/dev/null
echo "greta-no-such-package" >>"$clone2/scripts/setup/debian-packages.txt"
as_new_user "$clone2" "$fake:$PATH" >"$TMP/out" 2>"$TMP/err"
rc=$?
pat="^greta: error: setup: missing Debian packages: greta-no-such-package; install them with: .*apt-get update && .*apt-get install -y greta-no-such-package"
if [[ $rc -ne 0 ]] && grep -qE "$pat" "$TMP/err" && one_line "$TMP/err"; then pass "package absent (not root): $(cat "$TMP/err")"
else fail "package absent (exit $rc): $(head -c 400 "$TMP/err")"; fi
if [[ ! -e $clone2/build/greta ]]; then pass "nothing built after the failed check"; else fail "the build went on after the failed check"; fi

SETUP=$GRETA_REPO/scripts/setup/install-deps
printf 'make\n# a comment\n\ngreta-no-such-package\nalso-no-such-package\n' >"$TMP/list"
expect_error "--check names every missing package (the present ones not)" \
    "^greta: error: setup: missing Debian packages: greta-no-such-package also-no-such-package; install them with: " \
    bash "$SETUP" --check --packages "$TMP/list"
one_line "$TMP/err" && pass "--check: one line" || fail "--check: $(wc -l <"$TMP/err") lines"

# As root (fake 'id' says 0) apt-get update, then install of the missing ones.
printf '#!/bin/sh\necho 0\n' >"$fake/id"
printf '#!/bin/sh\necho "$*" >>"%s"\n' "$TMP/apt.log" >"$fake/apt-get"
chmod +x "$fake/id" "$fake/apt-get"
PATH="$fake:$PATH" bash "$SETUP" --packages "$TMP/list" >"$TMP/out" 2>"$TMP/err"
rc=$?
if [[ $rc -eq 0 && $(cat "$TMP/apt.log") == $'update -qq\ninstall -y -qq greta-no-such-package also-no-such-package' ]]; then
    pass "as root: apt-get update and install of the missing packages only"
else fail "as root (exit $rc): apt-get calls '$(cat "$TMP/apt.log" 2>/dev/null)' $(head -c 200 "$TMP/err")"; fi
printf '#!/bin/sh\nexit 100\n' >"$fake/apt-get"
expect_error "as root, apt-get failing is one error line" \
    "^greta: error: setup: apt-get could not install: greta-no-such-package also-no-such-package" \
    env PATH="$fake:$PATH" bash "$SETUP" --packages "$TMP/list"
expect_ok "every package of the real list is installed here" bash "$SETUP" --check
[[ ! -s $TMP/err ]] && pass "all present: silent" || fail "all present printed: $(head -c 200 "$TMP/err")"
expect_error "unreadable list" "^greta: error: setup: $TMP/none: cannot read the package list" bash "$SETUP" --packages "$TMP/none"
expect_error "unknown argument" "^greta: error: setup: unknown argument '--bogus'" bash "$SETUP" --bogus
finish
