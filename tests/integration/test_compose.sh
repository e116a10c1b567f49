#!/usr/bin/env bash
# The compose files (docker-compose/ and the generated ones in tests/golden/)
# and the generated Dockerfiles, checked without a Docker engine (none is
# available here): YAML, services, images, volumes, networks, packages.
set -euo pipefail
: "${P2PRPC_SOURCE_DIR:?}"
python3 "$P2PRPC_SOURCE_DIR/tests/integration/compose_check.py" "$P2PRPC_SOURCE_DIR"
