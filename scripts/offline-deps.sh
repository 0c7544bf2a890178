#!/usr/bin/env bash
# Gathers, on a Debian 12 machine, rlrf4rec's build dependencies other than libtorch into one folder
# for a machine with no package registry (an air-gapped GPU node, say): Debian's packages unpacked
# under DIR/root (headers, libraries, CMake and pkg-config files, and pkgconf). Copy DIR there and
# build with RLRF_DEPS_PREFIX=DIR/root scripts/gpu-check.sh. Nothing is installed here.
#   scripts/offline-deps.sh DIR
set -euo pipefail
DIR="${1:?usage: scripts/offline-deps.sh DIR}"
say() { printf '[offline-deps] %s\n' "$*" >&2; }
# Each -dev package with the runtime library its .so link points at (a dangling link would not link).
PACKAGES=(nlohmann-json3-dev libfmt-dev libfmt9 libsqlite3-dev libsqlite3-0 zlib1g-dev zlib1g
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libtomlplusplus-dev libtomlplusplus3 libcli11-dev
  libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 libbrotli-dev libbrotli1
  libgtest-dev libgmock-dev pkgconf-bin libpkgconf3)
command -v apt-get >/dev/null || { say "needs apt-get (Debian 12)"; exit 1; }
mkdir -p "$DIR/debs" "$DIR/root"
DIR="$(cd "$DIR" && pwd)"
if ! (cd "$DIR/debs" && apt-get download -qq "${PACKAGES[@]}" 2>/dev/null); then
  say "apt-get download failed; running apt-get update first"
  apt-get update -qq
  (cd "$DIR/debs" && apt-get download -qq "${PACKAGES[@]}")
fi
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
# Documentation, sources and static archives (rlrf links the shared libraries; GoogleTest is static).
rm -rf "$DIR/root/usr/share/doc" "$DIR/root/usr/share/man" "$DIR/root/usr/src"
find "$DIR/root" -name '*.a' ! -name 'libgtest*' ! -name 'libgmock*' -delete
say "$(ls "$DIR"/debs | wc -l) packages unpacked under $DIR/root ($(du -sh "$DIR/root" | cut -f1)); build with RLRF_DEPS_PREFIX=$DIR/root"
