#!/usr/bin/env bash
# The MongoDB-wire-compatible test server of p2prpc's MongoDB tests: jongodb,
# a native binary from the npm registry, pinned in package.json and
# package-lock.json next to this script. No MongoDB server package exists in
# Debian; with P2PRPC_TEST_MONGO_URI set the tests use that real server instead.
#
#   server.sh install       npm ci into tests/mongo/node_modules (skipped when
#                           the installed tree matches package-lock.json)
#   server.sh binary        prints the server binary's path; exit 1 when absent
#   server.sh start STATE   starts it on 127.0.0.1 with a free port and writes
#                           STATE/uri and STATE/pid (the ctest fixture's setup);
#                           with P2PRPC_TEST_MONGO_URI set, writes that URI only
#   server.sh stop STATE    stops the server `start STATE` started, by its PID
#
# start exits 77 (skipped) when the server is not installed, unless
# P2PRPC_TEST_MONGO_REQUIRED=1 (scripts/test.sh sets it): then it fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
modules=$here/node_modules
bin=$modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb
stamp=$modules/.p2prpc-lock

die() {
    echo "mongo test server: $*" >&2
    exit 1
}

install() {
    if [ -x "$bin" ] && cmp -s "$here/package-lock.json" "$stamp"; then
        return 0
    fi
    # The only build published is for x86-64 Linux with glibc.
    if [ "$(uname -m)" != x86_64 ]; then
        echo "mongo test server: no jongodb build for $(uname -m); MongoDB tests will skip" >&2
        return 0
    fi
    command -v npm >/dev/null || die "npm is missing (scripts/deps.sh installs it)"
    echo "mongo test server: npm ci in $here" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    [ -x "$bin" ] || die "npm ci did not install $bin"
    cp "$here/package-lock.json" "$stamp"
}

start() {
    local state=$1
    mkdir -p "$state"
    rm -f "$state/uri" "$state/pid"
    if [ -n "${P2PRPC_TEST_MONGO_URI:-}" ]; then
        printf '%s\n' "$P2PRPC_TEST_MONGO_URI" >"$state/uri"
        echo "mongo test server: using P2PRPC_TEST_MONGO_URI" >&2
        return 0
    fi
    if [ ! -x "$bin" ]; then
        if [ "${P2PRPC_TEST_MONGO_REQUIRED:-0}" = 1 ]; then
            die "not installed: run 'bash tests/mongo/server.sh install'"
        fi
        echo "mongo test server: not installed (bash tests/mongo/server.sh install); skipped" >&2
        exit 77
    fi
    # Port 0: the server picks a free port and prints JONGODB_URI=... once it
    # listens. setsid: the server outlives this script, in its own session, so
    # that ctest's end of the setup test does not take it down.
    local out=$state/server.out
    # Removed first: the background job truncates it only once it runs, and
    # the previous server's URI must not be read meanwhile.
    rm -f "$out"
    setsid "$bin" --host=127.0.0.1 --port=0 --database=p2prpc >"$out" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$state/pid"
    local uri=""
    for _ in $(seq 1 300); do # bounded: 300 x 50 ms = 15 s
        uri=$(sed -n 's/^JONGODB_URI=//p' "$out" 2>/dev/null)
        [ -n "$uri" ] && break
        kill -0 "$pid" 2>/dev/null || die "exited at start: $(tail -5 "$out")"
        sleep 0.05
    done
    [ -n "$uri" ] || {
        kill -KILL "$pid" 2>/dev/null || true
        die "no JONGODB_URI line within 15 s: $(tail -5 "$out")"
    }
    printf '%s\n' "$uri" >"$state/uri"
    echo "mongo test server: jongodb pid $pid at $uri" >&2
}

stop() {
    local state=$1
    [ -f "$state/pid" ] || return 0
    local pid
    pid=$(cat "$state/pid")
    rm -f "$state/pid" "$state/uri"
    # Only our server: the PID must still run the jongodb binary.
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$(readlink -f "$bin")" ]; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do # bounded: 100 x 50 ms = 5 s
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
install) install ;;
binary)
    [ -x "$bin" ] || exit 1
    echo "$bin"
    ;;
start) start "${2:?usage: $0 start STATE_DIR}" ;;
stop) stop "${2:?usage: $0 stop STATE_DIR}" ;;
*)
    echo "usage: $0 install|binary|start STATE_DIR|stop STATE_DIR" >&2
    exit 2
    ;;
esac
