#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds a tiny consumer project
# against it twice: with CMake's find_package(p2prpc) and with a Makefile that
# uses `pkg-config --cflags --libs p2prpc`. Both binaries must run.
set -euo pipefail
: "${P2PRPC_SOURCE_DIR:?}" "${P2PRPC_BUILD_DIR:?}" "${P2PRPC_TEST_TMP:?}"
work=$(mktemp -d "${P2PRPC_TEST_TMP%/}.install.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$P2PRPC_BUILD_DIR" --prefix "$prefix" >/dev/null
test -x "$prefix/bin/p2prpc"
test -x "$prefix/bin/p2prpc-broker"
"$prefix/bin/p2prpc-broker" --version | grep -q p2prpc
test -f "$prefix/include/p2prpc/error.h"
test -f "$prefix/include/p2prpc/version.h"
test -f "$prefix/lib/libp2prpc.a"
"$prefix/bin/p2prpc" version | grep -q '^p2prpc '

# A sanitizer build installs an instrumented library: its users link the runtime.
san_flags=""
if [ "${P2PRPC_SANITIZE:-OFF}" = "ON" ]; then
    san_flags="-fsanitize=address,undefined"
fi

cp "$P2PRPC_SOURCE_DIR"/tests/consumer/{consumer.c,CMakeLists.txt,Makefile} "$work/"

# 1. CMake: find_package(p2prpc)
cmake -S "$work" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$san_flags" -DCMAKE_EXE_LINKER_FLAGS="$san_flags" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
out=$("$work/cmake-build/consumer" "$work/node-a")
echo "cmake consumer: $out"
[[ "$out" =~ ^not_found\ [0-9a-f-]{36}$ ]]

# 2. make + pkg-config
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C "$work" consumer \
    CFLAGS="$san_flags" LDFLAGS="$san_flags"
out2=$("$work/consumer" "$work/node-a")
echo "pkg-config consumer: $out2"
# Same data directory, same node id.
[ "$out" = "$out2" ]


# 3. The example's annotated header compiles untouched against the installed
#    headers (DESIGN.md §1: the markers are plain C).
for h in analyze_large_file/function.h stats/functions.h; do
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -std=c11 -Wall -Wextra -Wpedantic -Werror \
        -fsyntax-only $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags p2prpc) \
        -x c "$P2PRPC_SOURCE_DIR/examples/$h"
done
echo "the examples' headers compile against the installed headers"
echo "install test passed"
