#!/usr/bin/env bash
# The product's front door, end to end with real processes: install p2prpc
# into a scratch prefix, generate the broker, worker and client of BOTH
# examples (and of a fixture with every type) with the installed `p2prpc`,
# build the nine projects with CMake against the prefix (warnings as errors),
# start each one's broker (SQLite, 127.0.0.1:0) and worker, then call the
# functions through the generated clientapp and through a user's own program
# linking the stubs: results, failure paths (p2p_fail messages), and a second
# identical call answered from the client's cache.
set -euo pipefail
: "${P2PRPC_SOURCE_DIR:?}" "${P2PRPC_BUILD_DIR:?}" "${P2PRPC_TEST_TMP:?}"
mkdir -p "$P2PRPC_TEST_TMP"
work=$(mktemp -d "$P2PRPC_TEST_TMP/codegen_e2e.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    exit 1
}
prefix=$work/prefix
export P2PRPC_HOME=$work/home
jobs=${JOBS:-2}

# A sanitizer build installs an instrumented library: its users link the runtime.
san_flags=""
if [ "${P2PRPC_SANITIZE:-OFF}" = "ON" ]; then
    san_flags="-fsanitize=address,undefined"
fi

cmake --install "$P2PRPC_BUILD_DIR" --prefix "$prefix" >/dev/null
bash "$P2PRPC_SOURCE_DIR/scripts/generate-examples.sh" "$prefix/bin/p2prpc" "$work/gen"

build() { # build DIR: configure and build a generated project against the prefix
    cmake -S "$1" -B "$1/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS="$san_flags" -DCMAKE_EXE_LINKER_FLAGS="$san_flags" >"$1.cmake.log" 2>&1 ||
        fail "configure $1: $(tail -n 5 "$1.cmake.log")"
    cmake --build "$1/build" -j "$jobs" >"$1.build.log" 2>&1 ||
        fail "build $1: $(grep -m5 -E 'error|warning' "$1.build.log")"
}
# Every type in every position (tests/integration/codegen_types/), as a user
# would generate it: from the header's own directory.
mkdir -p "$work/types-src"
cp "$P2PRPC_SOURCE_DIR"/tests/integration/codegen_types/types.[ch] "$work/types-src/"
echo "http://127.0.0.1:1" >"$work/types-src/discovery.txt"
(cd "$work/types-src" &&
    "$prefix/bin/p2prpc" generate-broker types.h --out "$work/gen/types/broker" >/dev/null &&
    "$prefix/bin/p2prpc" generate-worker types.h discovery.txt --sources types.c \
        --out "$work/gen/types/worker" >/dev/null &&
    "$prefix/bin/p2prpc" generate-client types.h discovery.txt --out "$work/gen/types/client" \
        >/dev/null) || fail "generate the types fixture"
for ex in analyze_large_file stats types; do
    for part in broker worker client; do build "$work/gen/$ex/$part"; done
done
echo "nine generated projects built"

# wait_line FILE REGEX: the program's start line, bounded (a loaded machine is slow).
wait_line() {
    for _ in $(seq 600); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "no line /$2/ in $1"
}

start() { # start EXAMPLE: its broker, a discovery file naming it, its worker
    local ex=$1 dir=$work/gen/$1
    "$dir/broker/build/brokerapp" --listen 127.0.0.1:0 --data-dir "$work/$ex-broker" \
        >"$work/$ex-broker.out" 2>"$work/$ex-broker.log" &
    pids+=($!)
    wait_line "$work/$ex-broker.out" '^listening on '
    sed -n 's/^listening on //p' "$work/$ex-broker.out" >"$work/$ex-discovery.txt"
    "$dir/worker/build/workerapp" --discovery "$work/$ex-discovery.txt" \
        --data-dir "$work/$ex-worker" >"$work/$ex-worker.out" 2>"$work/$ex-worker.log" &
    pids+=($!)
    wait_line "$work/$ex-worker.out" '^worker [0-9a-f-]{36} serving [0-9]+ function'
}
start analyze_large_file
start stats
start types

# The generated broker and worker agree with the schema written by hand in the
# example (names, types, order) and with each other (fingerprint).
"$work/gen/analyze_large_file/worker/build/workerapp" --dump-schemas - >"$work/worker-schemas.json"
curl -sf "$(head -n1 "$work/analyze_large_file-discovery.txt")/api/v1/functions" \
    >"$work/broker-functions.json" || fail "GET /api/v1/functions"
python3 - "$P2PRPC_SOURCE_DIR/examples/analyze_large_file/function.schema.json" \
    "$work/worker-schemas.json" "$work/broker-functions.json" <<'PY' || fail "schemas disagree"
import json, sys
want = json.load(open(sys.argv[1]))
worker = json.load(open(sys.argv[2]))
broker = json.load(open(sys.argv[3]))["functions"]
assert len(worker) == 1 and len(broker) == 1, (worker, broker)
for key in ("name", "inputs", "outputs"):
    assert worker[0][key] == want[key] == broker[0][key], key
assert worker[0]["fingerprint"] == broker[0]["fingerprint"]
PY

# client EXAMPLE ARGS...: clientapp of the example, its stdout in $work/out,
# stderr in $work/err, exit status in $status.
client() {
    local ex=$1
    shift
    set +e
    P2PRPC_DISCOVERY=$work/$ex-discovery.txt P2PRPC_CACHE=$work/$ex-cache \
        timeout 120 "$work/gen/$ex/client/build/clientapp" "$@" >"$work/out" 2>"$work/err"
    status=$?
    set -e
}
expect_out() { grep -qxF -- "$1" "$work/out" || fail "expected '$1' in: $(cat "$work/out" "$work/err")"; }
expect_err() { grep -qF -- "$1" "$work/err" || fail "expected '$1' on stderr: $(cat "$work/err")"; }

# ---- analyze_large_file: a file and an integer in, two files and an integer out.
input=$work/video.bin
head -c 3000000 /dev/urandom >"$input"
want=$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(bytes([7])))' "$input")
client analyze_large_file p2prpc_analyze_large_file "$input" 7
[ "$status" -eq 0 ] || fail "analyze exited $status: $(cat "$work/err")"
expect_out "res_var = $want"
file1=$(sed -n 's/^results_file1 = //p' "$work/out")
file2=$(sed -n 's/^results_file2 = //p' "$work/out")
cmp -s "$input" "$file1" || fail "results_file1 is not a copy of the input"
grep -qx "size 3000000" "$file2" || fail "report: $(cat "$file2")"
grep -qx "byte 7 occurs $want times" "$file2" || fail "report: $(cat "$file2")"
grep -q '100%' "$work/err" || fail "no progress bar reached 100%: $(cat "$work/err")"
first_call=$(sed -n 's/^call = //p' "$work/out")
[[ "$first_call" =~ ^[0-9a-f]{64}$ ]] || fail "call line: $first_call"

# The same call again: answered from the client's cache, same outputs.
started=$(date +%s%N)
client analyze_large_file p2prpc_analyze_large_file "$input" 7
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
[ "$status" -eq 0 ] || fail "cached analyze exited $status: $(cat "$work/err")"
expect_out "call = $first_call (cached)"
expect_out "res_var = $want"
echo "cached call answered in ${elapsed_ms} ms"

# The failure path: the function's own message reaches the caller.
client analyze_large_file p2prpc_analyze_large_file "$input" 300
[ "$status" -eq 1 ] || fail "arg2=300 exited $status"
expect_err "arg2 must be a byte value, 0 to 255, not 300"
client analyze_large_file p2prpc_analyze_large_file "$input"
[ "$status" -eq 2 ] || fail "a missing argument exited $status"
client analyze_large_file p2prpc_analyze_large_file "$input" seven
[ "$status" -eq 2 ] || fail "a non-integer exited $status"

# ---- stats: several functions, strings and doubles, failures.
client stats --help
[ "$status" -eq 0 ] || fail "clientapp --help exited $status"
expect_out "  p2prpc_divide NUMERATOR(double) DENOMINATOR(double)"
client stats p2prpc_nothing 1
[ "$status" -eq 2 ] || fail "an unknown function exited $status"
expect_err "clientapp: unknown function 'p2prpc_nothing'"
printf '1\n2\n\n3\n4\n' >"$work/numbers.txt"
client stats p2prpc_summarize "$work/numbers.txt"
[ "$status" -eq 0 ] || fail "summarize exited $status: $(cat "$work/err")"
expect_out "mean = 2.5"
expect_out "stddev = 1.2909944487358056"
expect_out "count = 4"
printf '1\nx\n' >"$work/bad.txt"
client stats p2prpc_summarize "$work/bad.txt"
[ "$status" -eq 1 ] || fail "a bad numbers file exited $status"
expect_err "line 2: 'x' is not a number"
client stats p2prpc_format_value "pi is" 3.14159 3 false
[ "$status" -eq 0 ] || fail "format_value exited $status: $(cat "$work/err")"
expect_out "text = pi is: 3.142"
expect_out "length = 12"
client stats p2prpc_format_value ratio 0.5 2 true
expect_out "text = ratio: 50.00%"
client stats p2prpc_format_value ratio 0.5 30 true
[ "$status" -eq 1 ] || fail "decimals=30 exited $status"
expect_err "decimals must be 0 to 17, not 30"
client stats p2prpc_divide 7 2
expect_out "quotient = 3.5"
client stats p2prpc_divide 1 0
[ "$status" -eq 1 ] || fail "division by zero exited $status"
expect_err "division by zero"
client stats p2prpc_divide 7 2
expect_out "quotient = 3.5"
grep -q '(cached)' "$work/out" || fail "second divide 7 2 not cached: $(cat "$work/out")"

# ---- every type both ways, outputs declared between inputs, no input at all.
printf 'payload' >"$work/g.bin"
client types p2prpc_echo 5 -3 7 1.5 true "héllo wörld" "$work/g.bin"
[ "$status" -eq 0 ] || fail "echo exited $status: $(cat "$work/err")"
expect_out "a1 = 6"
expect_out "b2 = -6"
expect_out "c1 = 6"
expect_out "d2 = 0.75"
expect_out "not_e = false"
expect_out "f1 = héllo wörld!"
g1=$(sed -n 's/^g1 = //p' "$work/out")
[ "$(cat "$g1")" = "payload#" ] || fail "g1 holds: $(cat "$g1")"
client types p2prpc_echo 5 3000000000 7 1.5 true x "$work/g.bin"
[ "$status" -eq 2 ] || fail "an int out of range exited $status"
client types p2prpc_names 1 2 3 4 5 6
[ "$status" -eq 0 ] || fail "names exited $status: $(cat "$work/err")"
expect_out "end_progress = 21"
client types p2prpc_answer
[ "$status" -eq 0 ] || fail "answer exited $status: $(cat "$work/err")"
expect_out "answer = 42"

# ---- a user's own program: the call sites of the local functions, run remotely.
cs=$work/callsite
cp "$P2PRPC_SOURCE_DIR/tests/integration/codegen_callsite/"{callsite.c,CMakeLists.txt} \
    "$P2PRPC_SOURCE_DIR/examples/stats/functions.h" "$work/"
mkdir -p "$cs" && mv "$work/callsite.c" "$work/CMakeLists.txt" "$work/functions.h" "$cs/"
cmake -S "$cs" -B "$cs/build" -DSTUBS_DIR="$work/gen/stats/client" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$san_flags" -DCMAKE_EXE_LINKER_FLAGS="$san_flags" >"$work/callsite.log" 2>&1 ||
    fail "configure callsite"
cmake --build "$cs/build" >>"$work/callsite.log" 2>&1 || fail "build callsite"
P2PRPC_DISCOVERY=$work/stats-discovery.txt P2PRPC_CACHE=$work/callsite-cache \
    timeout 120 "$cs/build/callsite" >"$work/out" 2>"$work/err" || fail "callsite: $(cat "$work/err")"
expect_out "divide 7 2: rc=0 quotient=3.5"
expect_out "divide 1 0: rc=-14 error=division by zero"
expect_out "format: rc=0 text=share: 25.0% length=12"

# The workers ran every call; the brokers served them over the store.
grep -q 'serving 3 function' "$work/stats-worker.out" || fail "stats worker line"
echo "codegen e2e test passed"
