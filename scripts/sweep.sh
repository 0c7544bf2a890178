#!/usr/bin/env bash
# The DPO sweep of the alignment loop: beta {0.01, 0.1, 0.3} x DPO epochs {1, 3} with N = 4 and one
# reranker seed, then N = 8 for the best cell (highest test card accuracy in the last round), and
# one table over every cell (`rlrf summary`). The cells start from a copy of a base run that has
# done SFT, round 0's generation and its rewards (stages whose settings a cell does not change are
# kept: only the pairs, DPO, later rounds and the evaluation run per cell; the N = 8 cell redoes
# round 0's generation). One split ([eval] folds = 1).
#
#   scripts/sweep.sh [CONFIG] [OUT]      (defaults: configs/misaligned-ml100k.toml runs/sweep)
#   extra --set overrides for every run: SWEEP_SET="--set run.rounds=1" scripts/sweep.sh
#   another grid: SWEEP_BETAS="0.1" SWEEP_EPOCHS="1 3" scripts/sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/misaligned-ml100k.toml}
out=${2:-runs/sweep}
rlrf=${RLRF:-build/rlrf}
common=(--set eval.folds=1 --set "eval.seeds=[1]" ${SWEEP_SET:-})

# SFT, round 0's responses and their rewards once; every cell starts from a copy.
"$rlrf" run "$config" --set "run.dir=\"$out/base\"" "${common[@]}" --until reward
cell() {  # cell NAME BETA EPOCHS N
  rm -rf "${out:?}/$1"
  cp -r "$out/base" "$out/$1"
  "$rlrf" run "$config" --set "run.dir=\"$out/$1\"" "${common[@]}" \
    --set "dpo.beta=$2" --set "dpo.epochs=$3" --set "generate.n=$4"
}
cells=()
for beta in ${SWEEP_BETAS:-0.01 0.1 0.3}; do
  for epochs in ${SWEEP_EPOCHS:-1 3}; do
    cell "beta$beta-epochs$epochs-n4" "$beta" "$epochs" 4
    cells+=("$out/beta$beta-epochs$epochs-n4")
  done
done
# The best cell: the highest last-round card accuracy of test users.
best=$("$rlrf" summary "${cells[@]}" | awk -F'|' 'BEGIN { best = -1 } NR > 2 { n = split($6, a, " → "); if (a[n] + 0 > best + 0) { best = a[n]; cell = $2 } } END { gsub(/ /, "", cell); print cell }')
beta=$(sed -E 's/.*beta([0-9.]+)-epochs.*/\1/' <<< "$best")
epochs=$(sed -E 's/.*-epochs([0-9]+)-n4/\1/' <<< "$best")
cell "beta$beta-epochs$epochs-n8" "$beta" "$epochs" 8
cells+=("$out/beta$beta-epochs$epochs-n8")
"$rlrf" summary "${cells[@]}" | tee "$out/sweep.md"
echo "table: $out/sweep.md"
