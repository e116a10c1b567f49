#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded SQLite store.
#
# Until the worker (issue 4), the client library (issue 5) and the code
# generator (issue 6) land, the client's and the worker's side of the protocol
# are played here with curl against the real broker, step by step, so every
# route the programs will use is exercised and shown.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS" >/dev/null

bin=build/bin
fn=p2prpc_analyze_large_file
schema=examples/analyze/function.schema.json
home=$PWD/build/demo-home
rm -rf "$home" && mkdir -p "$home"
export P2PRPC_HOME=$home

say() { printf '\n== %s\n' "$*"; }
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[k]
print(d if not isinstance(d,(dict,list)) else json.dumps(d))' "$1"; }

say "start the broker (SQLite store and blobs under $home)"
"$bin/p2prpc-broker" --listen 127.0.0.1:0 --data-dir "$home" --schema "$schema" \
    >"$home/broker.out" 2>"$home/broker.log" &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$home/broker.out" && break; sleep 0.05; done
url=$(sed -n 's/^listening on //p' "$home/broker.out")
[ -n "$url" ] || { cat "$home/broker.log"; exit 1; }
echo "broker at $url: $(curl -sf "$url/health")"
api=$url/api/v1/$fn

say "client: upload the input file once (HEAD first), then push the call"
video=examples/analyze/function.h
vhash=$("$bin/p2prpc" hash "$video" | cut -c1-64)
vsize=$(stat -c %s "$video")
curl -sf -o /dev/null -I "$url/api/v1/blobs/$vhash" && echo "blob already there" ||
    curl -sf -X PUT --data-binary "@$video" "$url/api/v1/blobs/$vhash" && echo
args="{\"video_handle\": {\"hash\": \"$vhash\", \"size\": $vsize}, \"arg2\": 160}"
fp=$(curl -sf "$url/api/v1/functions" | json_get functions | python3 -c \
    'import json,sys; print(json.load(sys.stdin)[0]["fingerprint"])')
id=$(echo "$args" | "$bin/p2prpc" ident "$schema" -)
echo "identifier: $id"
curl -sf "$api/push_update" -d "{\"identifier\": \"$id\", \"fingerprint\": \"$fp\",
    \"args\": $args, \"execute\": true}"
echo

say "worker: claim the call (long-poll search_work), report progress, push the outputs"
work=$(curl -sf "$api/search_work?wait=5" -d '{"worker": "demo-worker"}')
token=$(echo "$work" | json_get lease_token)
arg2=$(echo "$work" | json_get args.arg2)
echo "claimed with lease $token, arg2=$arg2"
curl -sf "$api/push_update" -d "{\"identifier\": \"$id\", \"lease_token\": \"$token\",
    \"progress\": 50}"
echo
report=$home/report.txt
printf 'frames analysed: %d\n' "$((arg2 * 3))" >"$report"
rhash=$("$bin/p2prpc" hash --no-cache "$report" | cut -c1-64)
curl -sf -X PUT --data-binary "@$report" "$url/api/v1/blobs/$rhash" >/dev/null
curl -sf "$api/push_update" -d "{\"identifier\": \"$id\", \"lease_token\": \"$token\",
    \"outputs\": {\"results_file1\": {\"hash\": \"$vhash\", \"size\": $vsize},
                  \"results_file2\": {\"hash\": \"$rhash\", \"size\": $(stat -c %s "$report")},
                  \"res_var\": $((10 * arg2))}}"
echo

say "client: read the result and download an output file, verified by its hash"
result=$(curl -sf "$api/pull_update?identifier=$id")
echo "status: $(echo "$result" | json_get status), res_var: $(echo "$result" | json_get outputs.res_var)"
curl -sf -o "$home/results_file2" "$url/api/v1/blobs/$(echo "$result" | json_get outputs.results_file2.hash)"
[ "$("$bin/p2prpc" hash --no-cache "$home/results_file2" | cut -c1-64)" = "$rhash" ]
echo "results_file2 verified: $(cat "$home/results_file2")"

say "client: the same call again is answered from the broker's record, not re-run"
curl -sf "$api/push_update" -d "{\"identifier\": \"$id\", \"fingerprint\": \"$fp\",
    \"args\": $args, \"execute\": true}"
echo

say "done"
echo "Every step above used the real broker over HTTP. Still to come: the client library"
echo "(issue 5), and 'p2prpc generate-broker/worker/client' (issue 6), which writes the"
echo "worker program of this function (over the worker library, p2p_worker_main) and the"
echo "client stubs that replace the curl steps."
