#!/usr/bin/env bash
# Fails when a source file includes a header of a layer above its own. The layers are the modules of
# CMakeLists.txt (`rlrf_module(NAME [TORCH] DEPS rlrf_a rlrf_b ...)`): src/NAME may include its own
# headers and those of the modules it depends on, directly or through them; src/cli (the binary)
# may include any. ctest runs it as the test `Layers.NoIncludePointsUp`.
#   scripts/check-layers.sh [ROOT]
set -euo pipefail
ROOT="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
declare -A deps
while read -r name rest; do
  deps[$name]="$( (grep -o 'rlrf_[a-z_]*' <<<"$rest" || true) | sed 's/^rlrf_//' | tr '\n' ' ')"
done < <(sed -n 's/^rlrf_module(\([a-z_]*\)\(.*\))$/\1 \2/p' "$ROOT/CMakeLists.txt")
((${#deps[@]})) || { echo "check-layers: no rlrf_module(...) lines in $ROOT/CMakeLists.txt" >&2; exit 2; }

closure() {  # the modules $1 may include: itself and everything it depends on
  local -A seen=()
  local todo=("$1") m d
  while ((${#todo[@]})); do
    m="${todo[0]}"; todo=("${todo[@]:1}")
    [[ -n "${seen[$m]:-}" ]] && continue
    seen[$m]=1
    for d in ${deps[$m]:-}; do todo+=("$d"); done
  done
  echo "${!seen[@]}"
}

bad=0
for module in "${!deps[@]}"; do
  allowed=" $(closure "$module") "
  while IFS=: read -r file line text; do
    target="$(sed -n 's/^#include "\([a-z_]*\)\/.*/\1/p' <<<"$text")"
    [[ -z "$target" || -z "${deps[$target]+x}" ]] && continue  # not one of the modules
    if [[ "$allowed" != *" $target "* ]]; then
      echo "${file#$ROOT/}:$line: src/$module includes $target/ (a layer above it: $module may include$allowed)" >&2
      bad=1
    fi
  done < <(grep -n '^#include "' "$ROOT/src/$module"/*.h "$ROOT/src/$module"/*.cpp "$ROOT/src/$module"/*.in 2>/dev/null || true)
done
((bad == 0)) && echo "check-layers: no include points up the layers (${#deps[@]} modules)"
exit $bad
