#!/usr/bin/env bash
# clang-format over every C source of the project: --check fails on any
# difference, --fix rewrites the files in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---check}
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' \
    | grep -v '^tests/golden/')
[ ${#files[@]} -gt 0 ] || exit 0
case "$mode" in
--fix) clang-format -i "${files[@]}" ;;
--check)
    if ! clang-format --dry-run --Werror "${files[@]}"; then
        echo "format: files above are not clang-format clean; run 'make format'" >&2
        exit 1
    fi
    echo "format: ${#files[@]} files clean"
    ;;
*) echo "usage: $0 --check|--fix" >&2; exit 2 ;;
esac
