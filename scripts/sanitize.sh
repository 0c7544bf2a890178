#!/usr/bin/env bash
# The test suite under sanitizers (clang).
#   scripts/sanitize.sh            ASan + UBSan: builds build-san/ (shared with scripts/fuzz.sh) and
#                                  runs the whole ctest suite in it
#   scripts/sanitize.sh thread     TSan: builds build-tsan/ and runs the tests that train models or run
#                                  jobs side by side (threads and worker processes): RunIsolated.*,
#                                  SideBySide.*, RerankTrain.SideBySide*
#   extra arguments go to ctest (e.g. -R Tokenizer)
# libtorch, OpenBLAS and libgomp are not built with sanitizers: their own findings are suppressed by
# library name (scripts/sanitizers/*.supp); nothing of this project's code is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="address"
if [[ "${1:-}" == thread ]]; then MODE="thread"; shift; fi
JOBS="${RLRF_JOBS:-$(nproc)}"
say() { printf '[sanitize] %s\n' "$*" >&2; }
command -v clang++ >/dev/null || { say "clang++ not found: apt-get install clang"; exit 2; }
SUPP="$ROOT/scripts/sanitizers"
if [[ "$MODE" == address ]]; then
  BUILD="${RLRF_SAN_BUILD_DIR:-$ROOT/build-san}"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DRLRF_FUZZ=ON -DRLRF_SANITIZE=address,undefined -DRLRF_BUILD_BENCH=OFF >/dev/null
  cmake --build "$BUILD" -j "$JOBS"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
  export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$SUPP/ubsan.supp"
  FILTER=()
else
  BUILD="${RLRF_TSAN_BUILD_DIR:-$ROOT/build-tsan}"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DRLRF_SANITIZE=thread -DRLRF_BUILD_BENCH=OFF >/dev/null
  cmake --build "$BUILD" -j "$JOBS" --target test_runtime test_rerank
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$SUPP/tsan.supp"
  FILTER=(-R 'RunIsolated|SideBySide|RunParallel')
fi
say "ctest in $BUILD ($MODE)"
cd "$BUILD" && ctest -j "$JOBS" --output-on-failure "${FILTER[@]}" "$@"
