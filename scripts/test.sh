#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. clang-format check;
#   2. normal build (warnings as errors) and every test: unit and integration;
#   3. ASan+UBSan build (with LeakSanitizer) and every test again.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
started=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }

step "format check"
bash scripts/format.sh --check

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

step "all passed"
