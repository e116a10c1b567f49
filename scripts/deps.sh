#!/usr/bin/env bash
# Installs every Debian package that building and testing p2prpc needs.
# Idempotent: packages already present are not touched, and apt-get runs only
# when something is missing. Works as root on a fresh Debian 12 machine; as
# another user it uses sudo when available.
set -euo pipefail

# `scripts/deps.sh --bench` also installs BENCH: the peers and load tools
# that only `make bench` uses (scripts/bench.sh), so `make test` stays lean.
# make test's `bench.sh --quick` smoke run skips the peers it cannot find.
BENCH=(gearman-job-server libgearman-dev wrk hyperfine)

# Build and runtime libraries (DESIGN.md section 9), the toolchain, and the
# tools the test suite calls (format check, leak check, sanitizer runtime).
PACKAGES=(
    build-essential cmake pkg-config git ca-certificates
    libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
    libmongoc-dev libbson-dev libsqlite3-dev libssl-dev uuid-dev
    clang clang-format libclang-rt-14-dev valgrind
    curl python3 python3-yaml nodejs
)

if [ "${1:-}" = "--bench" ]; then
    PACKAGES+=("${BENCH[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

# npm installs the MongoDB test server (tests/mongo/server.sh). Machines that
# have an npm of their own (not Debian's package) keep it.
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps: missing packages and not root: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
