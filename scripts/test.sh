#!/usr/bin/env bash
# Installs, builds and runs the whole test suite (the README's test command; CI calls it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
ctest --test-dir "${RLRF_BUILD_DIR:-$ROOT/build}" --output-on-failure -j "${RLRF_JOBS:-$(nproc)}" "$@"
