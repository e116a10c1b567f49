#!/usr/bin/env bash
# clang-format over every C source of the project: --check fails on any
# difference, --fix rewrites the files in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---check}
# The generated code in tests/golden/ is checked too (the generators write
# clang-format clean code), but never rewritten: it must stay what the
# generators write (scripts/update-golden.sh), so a difference there is
# mended in codegen/, not in the file.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
[ ${#files[@]} -gt 0 ] || exit 0
case "$mode" in
--fix)
    mapfile -t own < <(printf '%s\n' "${files[@]}" | grep -v '^tests/golden/')
    clang-format -i "${own[@]}"
    ;;
--check)
    if ! clang-format --dry-run --Werror "${files[@]}"; then
        echo "format: files above are not clang-format clean; run 'make format' (in tests/golden/: mend codegen/, then scripts/update-golden.sh)" >&2
        exit 1
    fi
    echo "format: ${#files[@]} files clean"
    ;;
*) echo "usage: $0 --check|--fix" >&2; exit 2 ;;
esac
