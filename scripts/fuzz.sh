#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (fuzz/*.cpp) with clang's libFuzzer, under ASan + UBSan.
# Builds build-san/ (clang, -DRLRF_FUZZ=ON -DRLRF_SANITIZE=address,undefined; shared with
# scripts/sanitize.sh), gathers each target's corpus (the committed fuzz/corpus/NAME plus seeds cut
# from the real files in ../shared), runs each target SECONDS and prints one line per target:
# executions, coverage, corpus size and crashes. A crash leaves its input in
# runs/fuzz/crashes/NAME-*; copy it to fuzz/corpus/NAME/crash-* once fixed, and ctest replays it.
#   scripts/fuzz.sh [SECONDS=600] [TARGET ...]     RLRF_FUZZ_JOBS=2 runs two targets at once
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RLRF_SAN_BUILD_DIR:-$ROOT/build-san}"
SECONDS_PER="${1:-600}"; shift || true
OUT="$ROOT/runs/fuzz"
JOBS="${RLRF_FUZZ_JOBS:-1}"
say() { printf '[fuzz] %s\n' "$*" >&2; }
command -v clang++ >/dev/null || { say "clang++ not found: apt-get install clang"; exit 2; }

mapfile -t ALL < <(cd "$ROOT/fuzz" && ls *.cpp | sed 's/\.cpp$//' | grep -v '^replay_main$')
TARGETS=("$@"); ((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")

say "building ${#TARGETS[@]} targets in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DRLRF_FUZZ=ON -DRLRF_SANITIZE=address,undefined -DRLRF_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}"

# Seeds from the real files (never committed: ../shared's licences).
SHARED="${RLRF_SHARED:-$ROOT/../shared}"
SEP=$'\n--file--\n'
seed_real() {  # target name -> extra seeds in $OUT/corpus/target
  local t="$1" d="$OUT/corpus/$1"
  case "$t" in
    tokenizer_json) cp "$SHARED/models/tinystories-656k/tokenizer.json" "$d/real-tinystories.json" ;;
    tokenizer_encode) head -c 4000 "$SHARED/data/ml-1m/movies.dat" >"$d/real-movies-latin1"
                      head -c 4000 "$SHARED/data/ml-100k/README" >"$d/real-readme" ;;
    model_config) cp "$SHARED/models/tinystories-656k/config.json" "$d/real-tinystories.json" ;;
    ratings)
      local m="$SHARED/data/ml-100k" n="$SHARED/data/ml-1m"
      { printf '\0'; head -n 20 "$m/u.genre"; printf '%s' "$SEP"; head -n 40 "$m/u.user"; printf '%s' "$SEP"
        head -n 40 "$m/u.item"; printf '%s' "$SEP"; head -n 300 "$m/u.data"; } >"$d/real-ml-100k"
      { printf '\1'; head -n 40 "$n/users.dat"; printf '%s' "$SEP"; head -n 60 "$n/movies.dat"; printf '%s' "$SEP"
        head -n 300 "$n/ratings.dat"; } >"$d/real-ml-1m" ;;
  esac
}

mkdir -p "$OUT/crashes" "$OUT/logs"
run_one() {
  local t="$1" corpus="$OUT/corpus/$1" log="$OUT/logs/$1.log"
  mkdir -p "$corpus"
  cp "$ROOT/fuzz/corpus/$t"/* "$corpus/" 2>/dev/null || true
  seed_real "$t" 2>/dev/null || true
  # Leaks of libtorch's and libgomp's own process-lifetime caches are theirs (see sanitize.sh).
  ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0" UBSAN_OPTIONS="print_stacktrace=1" \
    "$BUILD/fuzz_$t" -max_total_time="$SECONDS_PER" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=1024 \
    -max_len=262144 -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t-" "$corpus" >"$log" 2>&1
  local rc=$?
  local execs cov units crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$corpus" | wc -l)
  crashes=$(ls "$OUT/crashes" | grep -c "^$t-" || true)
  printf '%-18s %5ss  rc %-3s execs %-10s cov %-6s corpus %-5s crash files %s\n' "$t" "$SECONDS_PER" "$rc" \
    "${execs:-?}" "${cov:-?}" "$units" "$crashes"
}
export -f run_one seed_real
export OUT BUILD SECONDS_PER ROOT SHARED SEP
say "running each target ${SECONDS_PER}s, $JOBS at a time; logs in $OUT/logs"
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
