#!/usr/bin/env bash
# Regenerates tests/golden/ from the examples with the p2prpc of BUILD (default
# build/), after a deliberate change of the generators or of an example. Review
# the diff (git diff tests/golden) before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake --build "$build" --target p2prpc_cli >/dev/null
rm -rf tests/golden
bash scripts/generate-examples.sh "$build/bin/p2prpc" tests/golden
echo "tests/golden regenerated; review with: git diff --stat tests/golden"
