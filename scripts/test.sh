#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. clang-format check;
#   2. normal build (warnings as errors) and every test: unit and integration;
#   3. ASan+UBSan build (with LeakSanitizer) and every test again;
#   4. with clang: a short run of the parser's libFuzzer target.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
started=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }

step "format check"
bash scripts/format.sh --check

# The MongoDB test server (npm, pinned in tests/mongo/package-lock.json). Its
# tests must run here: a missing server fails them instead of skipping.
step "MongoDB test server"
bash tests/mongo/server.sh install
export P2PRPC_TEST_MONGO_REQUIRED=1

# libmongoc starts in a library constructor of every program that links it,
# and makes /dev/shm/mongoc-PID for its counters; a process killed by a test
# leaves that file behind, and once a PID comes round again the driver prints
# "Falling back to malloc for counters." on stderr. Counters in plain memory.
export MONGOC_DISABLE_SHM=1

step "normal build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"

step "tests (normal build)"
(cd build && ctest --output-on-failure -j "$JOBS" --timeout 600)

step "benchmark harness (bench.sh --quick on the normal build; no timing asserted)"
BENCH_BUILD=build BENCH_BUILD_TYPE=RelWithDebInfo bash scripts/bench.sh --quick --no-deps \
    --out build/REPORT-quick.md

step "sanitizer build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DP2P_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"

step "tests (ASan+UBSan, leaks checked)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j "$JOBS" --timeout 900)

# The parser's fuzz target builds only with clang: a short run when it is there.
if command -v clang >/dev/null; then
    step "parser fuzz smoke run (clang, libFuzzer)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DP2P_FUZZ=ON >/dev/null
    cmake --build build-fuzz -j "$JOBS" --target fuzz_parser
    (cd build-fuzz && ctest -R fuzz_parser_smoke --output-on-failure)
fi

step "all passed"
