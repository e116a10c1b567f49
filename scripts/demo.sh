#!/usr/bin/env bash
# `make demo`: the example examples/analyze_large_file end to end, with the
# steps a user takes for their own header:
#   1. build and install p2prpc (here into build/demo/prefix);
#   2. p2prpc generate-broker, build it, start it (embedded SQLite store);
#   3. p2prpc generate-worker and generate-client with a discovery file naming
#      that broker, build them, start one worker on loopback;
#   4. run the client: a progress bar, then the results;
#   5. the same call again: answered from the client's cache at once;
#   6. shut everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
root=$PWD
demo=$root/build/demo
prefix=$demo/prefix
app=$demo/app
example=examples/analyze_large_file
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_line FILE REGEX: a program's start line, at most 60 s.
wait_line() {
    for _ in $(seq 600); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo: no line /$2/ in $1" >&2
    cat "${1%.out}.log" >&2 || true
    exit 1
}

# build_app DIR: a generated project built against the installed p2prpc.
build_app() {
    cmake -S "$1" -B "$1/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >/dev/null
    cmake --build "$1/build" -j "$JOBS" >/dev/null
}

say "1. build and install p2prpc into $prefix"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS" >/dev/null
cmake --install build --prefix "$prefix" >/dev/null
export PATH=$prefix/bin:$PATH
rm -rf "$app" "$demo/home" && mkdir -p "$app" "$demo/home"
export P2PRPC_HOME=$demo/home

say "2. generate the broker of $example/function.h, build it, start it"
(cd "$root" && p2prpc generate-broker $example/function.h --out "$app/broker")
build_app "$app/broker"
"$app/broker/build/brokerapp" --listen 127.0.0.1:0 --data-dir "$demo/home/broker" \
    >"$demo/broker.out" 2>"$demo/broker.log" &
pids+=($!)
wait_line "$demo/broker.out" '^listening on '
url=$(sed -n 's/^listening on //p' "$demo/broker.out")
echo "broker listening on $url (store: $demo/home/broker/broker.db)"
printf '# The broker of the demo.\n%s\n' "$url" >"$demo/discovery.txt"

say "3. generate the worker and the client, build them, start one worker"
(cd "$root" && p2prpc generate-worker $example/function.h "$demo/discovery.txt" \
    --sources $example/function.c --out "$app/worker")
(cd "$root" && p2prpc generate-client $example/function.h "$demo/discovery.txt" \
    --out "$app/client")
build_app "$app/worker"
build_app "$app/client"
"$app/worker/build/workerapp" --discovery "$demo/discovery.txt" \
    --data-dir "$demo/home/worker" >"$demo/worker.out" 2>"$demo/worker.log" &
pids+=($!)
wait_line "$demo/worker.out" '^worker '
cat "$demo/worker.out"

say "4. call p2prpc_analyze_large_file(video.bin, 7) from the client"
video=$demo/video.bin
head -c $((32 * 1024 * 1024)) /dev/urandom >"$video"
export P2PRPC_CACHE=$demo/home/client-cache
"$app/client/build/clientapp" p2prpc_analyze_large_file "$video" 7 | tee "$demo/result.txt"
report=$(sed -n 's/^results_file2 = //p' "$demo/result.txt")
echo "results_file2 holds:"
sed 's/^/    /' "$report"

say "5. the same call again: the client's cache answers, no network"
start=$(date +%s%N)
"$app/client/build/clientapp" p2prpc_analyze_large_file "$video" 7
echo "answered in $((($(date +%s%N) - start) / 1000000)) ms"

say "6. shut down"
cleanup
pids=()
echo "broker and worker stopped. The generated programs are in $app; try your own header:"
echo "  p2prpc generate-broker my.h; p2prpc generate-worker my.h discovery.txt --sources my.c"
echo "  p2prpc generate-client my.h discovery.txt   (docs/cli.md)"
