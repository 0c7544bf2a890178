#!/usr/bin/env bash
# Builds llama.cpp's llama-server (CPU, no curl) from the vendored source into .deps/ once; the engine
# tests of the OpenAI-compatible generation backend run it as a real server. Idempotent: when
# .deps/llama-server/bin/llama-server exists and was built from the same tarball, it does nothing.
#   scripts/build-llama-server.sh          builds (about 2 minutes on 2 cores) and prints the binary's path
#   RLRF_DEPS_DIR=... RLRF_JOBS=...        to change where it goes / parallel jobs
#   RLRF_LLAMA_TARBALL=...                 another llama.cpp source tarball
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${RLRF_DEPS_DIR:-$ROOT/.deps}"
JOBS="${RLRF_JOBS:-$(nproc)}"
TARBALL="${RLRF_LLAMA_TARBALL:-$ROOT/../shared/vendor/llama.cpp-c392e50.tar.xz}"
PREFIX="$DEPS/llama-server"
BIN="$PREFIX/bin/llama-server"
say() { printf '[build-llama-server] %s\n' "$*" >&2; }

if [ ! -f "$TARBALL" ]; then
  say "no llama.cpp source at $TARBALL (set RLRF_LLAMA_TARBALL)"; exit 1
fi
stamp="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
if [ -x "$BIN" ] && [ "$(cat "$PREFIX/source.sha256" 2>/dev/null)" = "$stamp" ]; then
  echo "$BIN"; exit 0
fi
for tool in cmake tar xz; do
  command -v "$tool" >/dev/null || { say "$tool is missing (scripts/setup.sh installs it)"; exit 1; }
done
SRC="$PREFIX/src"
rm -rf "$SRC" && mkdir -p "$SRC"
say "unpacking $(basename "$TARBALL")"
tar xJf "$TARBALL" -C "$SRC" --strip-components=1
say "building llama-server ($JOBS jobs)"
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON >/dev/null
cmake --build "$SRC/build" -j "$JOBS" --target llama-server >/dev/null
mkdir -p "$PREFIX/bin"
cp "$SRC/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$stamp" > "$PREFIX/source.sha256"
rm -rf "$SRC"
say "built $BIN"
echo "$BIN"
