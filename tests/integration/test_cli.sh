#!/usr/bin/env bash
# The p2prpc program as a user runs it: exit statuses, output formats, and
# agreement of `p2prpc hash` with sha256sum.
set -euo pipefail
: "${P2PRPC_BUILD_DIR:?}"
bin=$P2PRPC_BUILD_DIR/bin/p2prpc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export P2PRPC_HOME=$work/home
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_status() { # expect_status N CMD...
    local want=$1; shift
    set +e; "$@" >"$work/out" 2>"$work/err"; local got=$?; set -e
    [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$work/err")"
}

expect_status 0 "$bin" version
grep -qx 'p2prpc [0-9]*\.[0-9]*\.[0-9]*' "$work/out" || fail "version output: $(cat "$work/out")"
expect_status 0 "$bin" --help
grep -q 'node-id' "$work/out" || fail "help lists no node-id"
expect_status 2 "$bin"
expect_status 2 "$bin" no-such-subcommand
grep -q "unknown subcommand 'no-such-subcommand'" "$work/err" || fail "unknown subcommand message"
expect_status 2 "$bin" version extra
expect_status 2 "$bin" node-id --bogus

# node-id: created once, stable, under P2PRPC_HOME.
expect_status 0 "$bin" node-id
id1=$(cat "$work/out")
[[ "$id1" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "node id $id1"
expect_status 0 "$bin" node-id
[ "$(cat "$work/out")" = "$id1" ] || fail "node id changed"
[ "$(cat "$P2PRPC_HOME/node_id")" = "$id1" ] || fail "node_id file"
echo garbage >"$work/bad_id" && mkdir -p "$work/bad" && mv "$work/bad_id" "$work/bad/node_id"
expect_status 1 "$bin" node-id --data-dir "$work/bad"
grep -q 'does not hold a UUID' "$work/err" || fail "corrupt node_id message"

# hash: same digests as sha256sum, with and without the cache; errors per file.
head -c 3000000 /dev/urandom >"$work/a.bin"
: >"$work/empty"
expect_status 0 "$bin" hash "$work/a.bin" "$work/empty"
(cd / && sha256sum "$work/a.bin" "$work/empty") | diff - "$work/out" || fail "hash differs from sha256sum"
expect_status 0 "$bin" hash --no-cache "$work/a.bin"
grep -q "$(sha256sum "$work/a.bin" | cut -c1-64)" "$work/out" || fail "--no-cache hash"
test -f "$P2PRPC_HOME/filecache.db" || fail "default cache not under P2PRPC_HOME"
expect_status 0 "$bin" hash --cache "$work/c.db" "$work/a.bin"
test -f "$work/c.db" || fail "--cache file not created"
expect_status 1 "$bin" hash "$work/a.bin" "$work/missing"
grep -q "$work/missing" "$work/err" || fail "missing file not named"
grep -q "a.bin" "$work/out" || fail "good file not printed next to a bad one"
expect_status 2 "$bin" hash
# ident: the worked example of docs/protocol.md, and clear errors.
cat >"$work/add.json" <<'JSON'
{"name": "p2prpc_add",
 "inputs": [{"name": "a", "type": "int64"}, {"name": "b", "type": "int64"}],
 "outputs": [{"name": "sum", "type": "int64"}]}
JSON
echo '{"a": 1, "b": 2}' >"$work/args.json"
expect_status 0 "$bin" ident "$work/add.json" "$work/args.json"
[ "$(cat "$work/out")" = 1ca1986539c97727e61343172e4af5a67555512021cb5e293f213018c63edc71 ] ||
    fail "ident of add(1, 2): $(cat "$work/out")"
echo '{"b": 2, "a": 1}' | "$bin" ident "$work/add.json" - >"$work/out2"
diff -q "$work/out" "$work/out2" >/dev/null || fail "ident depends on the order of members"
echo '{"a": 1}' >"$work/args.json"
expect_status 1 "$bin" ident "$work/add.json" "$work/args.json"
grep -q "missing argument 'b'" "$work/err" || fail "missing argument message: $(cat "$work/err")"
printf '{"a": 1,\n "b": }' >"$work/args.json"
expect_status 1 "$bin" ident "$work/add.json" "$work/args.json"
grep -q "args.json:2:" "$work/err" || fail "malformed JSON has no file:line: $(cat "$work/err")"
expect_status 2 "$bin" ident "$work/add.json"
echo "cli test passed"
