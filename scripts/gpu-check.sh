#!/usr/bin/env bash
# The CUDA check, on a GPU machine: builds rlrf4rec against a CUDA libtorch, runs the tests labelled
# cuda (tests/cuda: CUDA against the CPU and the references for the logits of every reference model,
# greedy and sampled generation, DPO steps and reranker epochs; each prints its figures, and
# generation and reranker training print their throughput on both devices), then the demo pipeline
# on the GPU. About 5 minutes with 16 cores.
#   scripts/gpu-check.sh
# Environment:
#   RLRF_TORCH_PREFIX   libtorch's CMake prefix; default: python3's torch (torch.utils.cmake_prefix_path)
#   RLRF_DEPS_PREFIX    the other libraries, unpacked by scripts/offline-deps.sh on a machine with apt
#                       (for a GPU machine with no package registry); default: the system's
#   RLRF_GPU_BUILD      build folder; default build-cuda
#   RLRF_GPU_DEMO=0     no demo run; RLRF_GPU_DEMO_TIMEOUT seconds it may take (default 300);
#   RLRF_GPU_DEMO_ARGS  more `rlrf run` options, e.g. "--set knowledge.encoder=\"hash\"" where the
#                       GloVe vectors are not there
#   RLRF_SHARED, RLRF_DATA_DIR, RLRF_DEPS_DIR   models, data and GloVe vectors, as for every command
# Exit status: the build's or the tests' when they fail, else the demo's.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RLRF_GPU_BUILD:-$ROOT/build-cuda}"
JOBS="${RLRF_JOBS:-$(nproc)}"
say() { printf '[gpu-check] %s\n' "$*"; }
now() { date +%s; }
t_start=$(now)
mkdir -p "$BUILD"
LOG="$BUILD/gpu-check"  # $LOG.configure.log, .build.log, .ctest.log, .demo.log

say "machine: $(nproc) cores, $(uname -m)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/[gpu-check] gpu: /' ||
  say "nvidia-smi: not found"
PY="${RLRF_PYTHON:-python3}"
TORCH_PREFIX="${RLRF_TORCH_PREFIX:-}"
if [ -z "$TORCH_PREFIX" ]; then
  TORCH_PREFIX="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)" || {
    say "no RLRF_TORCH_PREFIX and no torch in $PY: point RLRF_TORCH_PREFIX at a CUDA libtorch's share/cmake"; exit 2; }
  say "torch $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "gpu visible:", torch.cuda.is_available())')"
fi
say "libtorch: $TORCH_PREFIX"
command -v "${CXX:-g++}" >/dev/null || { say "no C++ compiler (${CXX:-g++})"; exit 2; }
say "compiler: $("${CXX:-g++}" --version | head -1); cmake $(cmake --version | head -1 | awk '{print $3}')"

PREFIX_PATH="$TORCH_PREFIX"
EXTRA=()
if [ -n "${RLRF_DEPS_PREFIX:-}" ]; then
  D="$(cd "$RLRF_DEPS_PREFIX" && pwd)"
  PREFIX_PATH="$PREFIX_PATH;$D/usr"
  # pkg-config files of the unpacked packages name /usr: the sysroot puts their paths under D, and
  # only D's files are read. pkgconf runs with its own library beside it.
  export PKG_CONFIG_SYSROOT_DIR="$D" PKG_CONFIG_LIBDIR="$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig"
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/usr/lib/x86_64-linux-gnu" exec "%s/usr/bin/pkgconf" "$@"\n' "$D" "$D" > "$BUILD/pkg-config"
  chmod +x "$BUILD/pkg-config"
  EXTRA+=(-DPKG_CONFIG_EXECUTABLE="$BUILD/pkg-config")
  say "other libraries from $D"
fi
GEN=() KEEP=()
command -v ninja >/dev/null && GEN=(-G Ninja) KEEP=(-- -k 0)  # with ninja: every compile error at once

t0=$(now)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DRLRF_BUILD_BENCH=OFF \
  -DCMAKE_PREFIX_PATH="$PREFIX_PATH" "${EXTRA[@]}" > "$LOG.configure.log" 2>&1 || {
  tail -40 "$LOG.configure.log"; say "configure failed (log: $LOG.configure.log)"; exit 3; }
# test_cuda and rlrf only: every library, no other test binary.
cmake --build "$BUILD" -j "$JOBS" --target test_cuda rlrf "${KEEP[@]}" > "$LOG.build.log" 2>&1 || {
  grep -E "error|Error" "$LOG.build.log" | head -60; say "build failed (log: $LOG.build.log)"; exit 4; }
say "configure and build: $(( $(now) - t0 )) s"

t0=$(now)
ctest --test-dir "$BUILD" -L cuda -V --timeout 600 > "$LOG.ctest.log" 2>&1
tests_rc=$?
# Each test's printed figures and verdict.
grep -E "^[0-9]+: (  |\[  |\[ RUN|\[       OK|\[  FAILED|\[  SKIPPED)|tests passed|Failed|Skipped|Passed" "$LOG.ctest.log" |
  sed -E 's/^[0-9]+: //' | grep -vE "^\[==========\]|^\[----------\]|Global test environment"
say "cuda tests: $(( $(now) - t0 )) s, exit status $tests_rc"
[ "$tests_rc" -eq 0 ] || { say "cuda tests failed (log: $LOG.ctest.log)"; exit 5; }

demo_rc=0
if [ "${RLRF_GPU_DEMO:-1}" != 0 ]; then
  RUN_DIR="${RLRF_GPU_DEMO_DIR:-$ROOT/runs/gpu-demo}"
  rm -rf "$RUN_DIR"
  t0=$(now)
  say "the demo on cuda into $RUN_DIR"
  timeout "${RLRF_GPU_DEMO_TIMEOUT:-300}" "$BUILD/rlrf" run --set "run.dir=\"$RUN_DIR\"" --set model.device=cuda --set rerank.device=cuda \
    ${RLRF_GPU_DEMO_ARGS:-} > "$LOG.demo.log" 2>&1
  demo_rc=$?
  grep -E "new tokens in|steps in|validation loss|run: finished|error|Error|^\|" "$LOG.demo.log" | tail -40
  say "demo: $(( $(now) - t0 )) s, exit status $demo_rc (log: $LOG.demo.log; report: $RUN_DIR/report.md)"
fi
say "total: $(( $(now) - t_start )) s"
exit "$demo_rc"
