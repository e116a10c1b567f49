#!/usr/bin/env bash
# `make bench`: p2prpc measured side by side with its peers (gearmand, a
# trivial libmicrohttpd route under wrk, `openssl dgst`) in one run on this
# machine, written as a Markdown report (bench/REPORT.md) that is the
# README's "Performance" section.
#
#   scripts/bench.sh [--quick] [--no-deps] [--out FILE]
#
#   --quick    small sizes and short runs (< 1 minute); the report goes to
#              build-bench/REPORT-quick.md unless --out says otherwise.
#              `make test` runs it once to keep the harness working; it
#              asserts no timing.
#   --no-deps  do not run scripts/deps.sh --bench (a part whose peer is not
#              installed is reported as not measured).
#   --out FILE where the report goes (default bench/REPORT.md).
#
# A step that fails is reported as not measured, and the script then exits 1.
#
# Everything listens on 127.0.0.1 only. Every process the script starts runs
# in a process group of its own, and the exit trap stops each group by its
# PID (SIGTERM, then SIGKILL), on success and on failure alike. Every step is
# bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
DEPS=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --no-deps) DEPS=0 ;;
    --out)
        [ $# -ge 2 ] || { echo "bench: --out needs a file" >&2; exit 2; }
        OUT=$2
        shift
        ;;
    *) echo "usage: scripts/bench.sh [--quick] [--no-deps] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done
# BENCH_BUILD / BENCH_BUILD_TYPE: the build tree and its type (make test's
# quick run reuses its own RelWithDebInfo tree instead of a second build).
BUILD=${BENCH_BUILD:-build-bench}
BUILD_TYPE=${BENCH_BUILD_TYPE:-Release}
JOBS=${JOBS:-2}
if [ -z "$OUT" ]; then
    if [ $QUICK = 1 ]; then OUT=$BUILD/REPORT-quick.md; else OUT=bench/REPORT.md; fi
fi

# Sizes: the issue's in the default run, small ones with --quick.
if [ $QUICK = 1 ]; then
    RTT_N=200 TP_S=1 REPS=1 BIG_MIB=32 QD_BIG=10000 QD_SAMPLES=200 IDLE_N=100 IDLE_S=2
    WRK_S=1 CACHE_N=2000
else
    RTT_N=2000 TP_S=5 REPS=3 BIG_MIB=1024 QD_BIG=100000 QD_SAMPLES=1000 IDLE_N=1000 IDLE_S=10
    WRK_S=5 CACHE_N=20000
fi
# The broker's durability in the p2prpc parts: its default, `normal` (SQLite
# WAL: a committed call survives a crash of the broker process; the last
# commits may be lost on a power cut). The raw round trip is measured with
# `full` (fsync at each commit) too. BENCH_SYNC=full makes every part full.
SYNC=${BENCH_SYNC:-normal}

started=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/p2prpc-bench.XXXXXX")
RES=$WORK/results.txt
CMDS=$WORK/commands.txt
: >"$RES"
: >"$CMDS"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '==> %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }
result() { echo "$1 $2" >>"$RES"; }
# Drops a process group that has been waited for from the exit trap's list.
forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
# The command as the report shows it: programs relative to the repository.
record() { echo "$*" | sed "s#$ROOT/##g; s#$WORK#\$WORK#g" >>"$CMDS"; }

# Runs a measurement program in a process group of its own, at most $1
# seconds; its `key value` lines go to the results. Returns its status.
measure() {
    local limit=$1 name=$2
    shift 2
    record "$@"
    setsid timeout -k 5 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    local rc=0
    wait "$pid" || rc=$?
    forget "$pid"
    if [ $rc -ne 0 ]; then
        echo "bench: $name failed (status $rc); its last lines:" >&2
        tail -n 15 "$WORK/$name.err" >&2 || true
        result "failed_$name" "$rc"
        return $rc
    fi
    grep -E '^[a-z0-9_]+ [-0-9.]+$' "$WORK/$name.out" | sed "s/^/${KEY_PREFIX:-}/" >>"$RES" || true
}

# Starts a server in a process group of its own; its PID in SERVER_PID.
start_server() {
    local name=$1
    shift
    record "$@"
    setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

stop_server() {
    kill -TERM -- "-$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (10 s at most) until 127.0.0.1:$1 accepts a connection.
await_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# ---- dependencies and build ----

if [ $DEPS = 1 ]; then
    step "dependencies (scripts/deps.sh --bench)"
    bash scripts/deps.sh --bench
fi
step "$BUILD_TYPE build in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build "$BUILD" -j "$JOBS" >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; exit 1; }
BIN=$ROOT/$BUILD/bin
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- peers ----

gearman_part() {
    local queue=$1 port
    port=$(free_port)
    local args=(gearmand --listen=127.0.0.1 "--port=$port" "--log-file=$WORK/gearmand.log"
        "--pid-file=$WORK/gearmand.pid")
    if [ "$queue" = sqlite ]; then
        rm -f "$WORK/gearman.db"
        args+=(--queue-type=libsqlite3 "--libsqlite3-db=$WORK/gearman.db")
    fi
    start_server gearmand "${args[@]}"
    local pid=$SERVER_PID
    await_port "$port" || { stop_server "$pid"; return 1; }
    if [ "$queue" = sqlite ]; then
        for _ in $(seq $REPS); do
            measure 300 gearman_bg "$BIN/gearman_noop" --port "$port" --mode bg --seconds $TP_S \
                --clients 32 --workers 4 || true
        done
    else
        measure 120 gearman_rtt "$BIN/gearman_noop" --port "$port" --mode rtt --jobs $RTT_N || true
        for _ in $(seq $REPS); do
            measure 120 gearman_fg "$BIN/gearman_noop" --port "$port" --mode fg --seconds $TP_S \
                --clients 32 --workers 4 || true
        done
    fi
    stop_server "$pid"
}

if command -v gearmand >/dev/null && [ -x "$BIN/gearman_noop" ]; then
    step "gearmand in memory: round trip and foreground throughput"
    gearman_part memory
    if gearmand --help 2>&1 | grep -q -- '--libsqlite3-db'; then
        step "gearmand with its SQLite queue: background throughput"
        gearman_part sqlite
    else
        result gearman_no_sqlite 1
    fi
else
    result gearman_missing 1
fi

# wrk's latency lines ("50%   42.00us") in microseconds.
wrk_us() {
    awk -v p="$1" '$1 == p {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "ms") v *= 1000; else if (u == "s") v *= 1000000;
        print v }' "$2"
}

if command -v wrk >/dev/null; then
    step "HTTP floor: a trivial libmicrohttpd route under wrk"
    start_server http_floor "$BIN/http_floor" --threads 2
    floor_pid=$SERVER_PID
    for _ in $(seq 50); do grep -q '^port ' "$WORK/http_floor.out" && break; sleep 0.1; done
    floor_port=$(awk '/^port /{print $2}' "$WORK/http_floor.out")
    if [ -n "$floor_port" ]; then
        url="http://127.0.0.1:$floor_port/"
        record wrk -t1 -c1 -d${WRK_S}s --latency "$url"
        timeout 60 wrk -t1 -c1 -d${WRK_S}s --latency "$url" >"$WORK/wrk1.out"
        result floor_p50_us "$(wrk_us 50% "$WORK/wrk1.out")"
        result floor_p99_us "$(wrk_us 99% "$WORK/wrk1.out")"
        for _ in $(seq $REPS); do
            record wrk -t2 -c32 -d${WRK_S}s "$url"
            timeout 60 wrk -t2 -c32 -d${WRK_S}s "$url" >"$WORK/wrk32.out"
            result floor_req_per_s "$(awk '/^Requests\/sec:/{print $2}' "$WORK/wrk32.out")"
        done
    fi
    stop_server "$floor_pid"
else
    result wrk_missing 1
fi

# ---- p2prpc: the parts that need no client ----

step "p2prpc: claim latency with 1,000 and $QD_BIG queued (broker_bench)"
if measure 600 broker_bench "$BIN/broker_bench" --latency-only --sync $SYNC --big $QD_BIG \
    --samples $QD_SAMPLES --dir "$WORK/broker_bench"; then
    # | full | - | - | s50 / s99 | b50 / b99 |
    awk -F'|' '$2 ~ /full|normal/ {
        split($5, s, "/"); split($6, b, "/");
        printf "qd_small_p50_ms %s\nqd_small_p99_ms %s\nqd_big_p50_ms %s\nqd_big_p99_ms %s\n",
            s[1] + 0, s[2] + 0, b[1] + 0, b[2] + 0 }' "$WORK/broker_bench.out" >>"$RES"
    result qd_big "$QD_BIG"
fi

step "p2prpc: $IDLE_N idle long-poll waiters for ${IDLE_S} s (idle_bench)"
ulimit -n 65536 2>/dev/null || true
measure 300 idle_bench "$BIN/idle_bench" --waiters $IDLE_N --seconds $IDLE_S --dir "$WORK/idle" || true

step "p2prpc: no-op round trip over raw HTTP, no client (worker_bench)"
measure 600 worker_bench "$BIN/worker_bench" --kv --calls $RTT_N --size-mib 0 --sync $SYNC \
    --dir "$WORK/worker" || true

step "p2prpc: no-op round trip over raw HTTP, broker --sync full (worker_bench)"
KEY_PREFIX=full_ measure 600 worker_bench_full "$BIN/worker_bench" --kv --calls $RTT_N \
    --size-mib 0 --sync full --dir "$WORK/worker" || true

step "floor: openssl dgst -sha256 over $BIG_MIB MiB (hyperfine)"
head -c $((BIG_MIB * 1024 * 1024)) /dev/zero >"$WORK/zero.bin"
if command -v hyperfine >/dev/null; then
    record hyperfine --runs 3 --warmup 1 --export-json '$WORK/dgst.json' \
        "openssl dgst -sha256 \$WORK/zero.bin"
    timeout 300 hyperfine --style none --runs 3 --warmup 1 --export-json "$WORK/dgst.json" \
        "openssl dgst -sha256 $WORK/zero.bin" >/dev/null
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]
print("dgst_ms %.0f" % (r["median"] * 1000)); print("dgst_min_ms %.0f" % (r["min"] * 1000))
print("dgst_max_ms %.0f" % (r["max"] * 1000))' "$WORK/dgst.json" >>"$RES"
else
    t0=$(date +%s%N)
    openssl dgst -sha256 "$WORK/zero.bin" >/dev/null
    result dgst_ms $((($(date +%s%N) - t0) / 1000000))
fi
rm -f "$WORK/zero.bin"

step "p2prpc: $BIG_MIB MiB in + out over raw HTTP, time per step (worker_bench)"
KEY_PREFIX=raw_ measure 1200 worker_bench_big "$BIN/worker_bench" --kv --calls 0 \
    --size-mib $BIG_MIB --sync $SYNC --dir "$WORK/worker" || true

# ---- p2prpc: the parts through the client ----

if [ -x "$BIN/call_bench" ]; then
    step "p2prpc: round trip through the client (call_bench)"
    measure 600 call_bench_rtt "$BIN/call_bench" --mode rtt --calls $RTT_N --sync $SYNC \
        --dir "$WORK/client" || true
    step "p2prpc: throughput, 32 clients x 4 workers (call_bench)"
    for _ in $(seq $REPS); do
        measure 300 call_bench_tp "$BIN/call_bench" --mode throughput --clients 32 \
            --workers 4 --seconds $TP_S --sync $SYNC --dir "$WORK/client" || true
    done
    step "p2prpc: cache hit (call_bench)"
    measure 300 call_bench_cache "$BIN/call_bench" --mode cache --calls $CACHE_N \
        --sync $SYNC --dir "$WORK/client" || true
    step "p2prpc: $BIG_MIB MiB in + out through the client (call_bench)"
    measure 1200 call_bench_big "$BIN/call_bench" --mode big --size-mib $BIG_MIB \
        --sync $SYNC --dir "$WORK/client" || true
else
    result client_missing 1
fi

# ---- the report ----

step "report: $OUT"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "machine_cores $(nproc)"
    echo "machine_cpu $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
    echo "machine_mem $(awk '/^MemTotal/{printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "machine_kernel $(uname -sr)"
    echo "load_start $load_start"
    echo "load_end $load_end"
    echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "v_compiler $(${CC:-cc} --version | head -n 1)"
    echo "v_gearmand $(gearmand --version 2>/dev/null | grep -m1 gearmand | sed "s/ - .*//" || echo none)"
    echo "v_wrk $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2 || echo none)"
    echo "v_hyperfine $(hyperfine --version 2>/dev/null || echo none)"
    echo "v_openssl $(openssl version)"
    echo "v_libmicrohttpd $(pkg-config --modversion libmicrohttpd)"
    echo "v_sqlite $(pkg-config --modversion sqlite3)"
    echo "v_libcurl $(pkg-config --modversion libcurl)"
    echo "quick $QUICK"
    echo "sync $SYNC"
    echo "build_type $BUILD_TYPE"
    echo "elapsed_s $(($(date +%s) - started))"
} >"$WORK/machine.txt"
mkdir -p "$(dirname "$OUT")"
python3 bench/report.py "$WORK/machine.txt" "$RES" "$CMDS" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
step "done: $OUT"
# A step that failed says "not measured" in the report, and fails the run as
# well: `make test`'s quick run must catch a broken benchmark.
failed=$(grep '^failed_' "$RES" | cut -d' ' -f1 | sed 's/^failed_//' | tr '\n' ' ' || true)
if [ -n "$failed" ]; then
    echo "bench: these steps failed: $failed(report: $OUT)" >&2
    exit 1
fi
