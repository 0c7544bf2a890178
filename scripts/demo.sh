#!/usr/bin/env bash
# Installs, builds and runs the demo: the whole RLRF4Rec loop on MovieLens-100K with
# tinystories-656k (configs/demo.toml, compiled into the binary). The README's main command.
#   scripts/demo.sh                      the demo into runs/demo (report: runs/demo/report.md)
#   scripts/demo.sh --set run.rounds=1   any `rlrf run` option
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${RLRF_BUILD_DIR:-$ROOT/build}/rlrf" run "$@"
