#!/usr/bin/env bash
# Builds the codegen parser's libFuzzer target with clang (build-fuzz/) and runs
# it for SECONDS (default 600) over the seed corpus tests/fuzz/parser/ with the
# dictionary tests/fuzz/parser.dict. What it finds goes to
# build-fuzz/fuzz/long-corpus/, never into the checked-in seeds; a crash leaves
# a crash-* file in the current directory and a non-zero exit status.
#   usage: scripts/fuzz_parser.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
command -v clang >/dev/null || { echo "fuzz_parser: clang is needed (libFuzzer)" >&2; exit 2; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DP2P_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "${JOBS:-2}" --target fuzz_parser
mkdir -p build-fuzz/fuzz/long-corpus
exec build-fuzz/bin/fuzz_parser -max_total_time="$seconds" -timeout=5 -max_len=4096 \
    -print_final_stats=1 -dict=tests/fuzz/parser.dict build-fuzz/fuzz/long-corpus tests/fuzz/parser
