#!/usr/bin/env bash
# docs/cli.md says what `--help` prints: every subcommand `p2prpc help` lists
# has a fenced block after a "<!-- help: NAME" marker in docs/cli.md, equal to
# `p2prpc NAME --help` (and to `p2prpc help NAME`); the "p2prpc" block is
# `p2prpc help`. Also: --help works everywhere, and an unknown flag is one line
# on stderr with exit status 2 for every subcommand.
set -euo pipefail
: "${P2PRPC_SOURCE_DIR:?}" "${P2PRPC_BUILD_DIR:?}"
bin=$P2PRPC_BUILD_DIR/bin/p2prpc
doc=$P2PRPC_SOURCE_DIR/docs/cli.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The fenced block after the marker of NAME, as written in docs/cli.md.
doc_block() {
    awk -v name="$1" '
        index($0, "<!-- help: " name " ") == 1 { found = 1; next }
        found == 1 && /^```$/ { found = 2; next }
        found == 2 && /^```$/ { exit }
        found == 2 { print }' "$doc"
}

"$bin" help >"$work/help"
doc_block p2prpc | diff -u - "$work/help" || fail "docs/cli.md 'p2prpc' block differs from 'p2prpc help'"
mapfile -t subs < <(sed -n 's/^  \([a-z-]*\)  .*/\1/p' "$work/help")
[ ${#subs[@]} -ge 9 ] || fail "p2prpc help lists ${#subs[@]} subcommands"
for s in "${subs[@]}"; do
    "$bin" "$s" --help >"$work/h" || fail "$s --help exited $?"
    [ -s "$work/h" ] || fail "$s --help printed nothing"
    doc_block "$s" >"$work/d"
    [ -s "$work/d" ] || fail "docs/cli.md has no '<!-- help: $s' block"
    diff -u "$work/d" "$work/h" || fail "docs/cli.md block of $s differs from '$s --help' (above)"
    "$bin" help "$s" | diff -q - "$work/h" >/dev/null || fail "'help $s' differs from '$s --help'"
    set +e
    "$bin" "$s" --no-such-flag >"$work/o" 2>"$work/e"
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "$s --no-such-flag exited $rc"
    [ "$(wc -l <"$work/e")" -eq 1 ] || fail "$s --no-such-flag: not one line: $(cat "$work/e")"
    grep -q -- "--no-such-flag" "$work/e" || fail "$s: the flag is not named: $(cat "$work/e")"
done
echo "cli docs test passed: ${#subs[@]} subcommands"
