// [eval] folds = K: every user a test user once. `rlrf run` runs the whole loop K times (fold k's
// users as test users of the k-th run, in RUN/fold-k/) and writes one report pooling the test users
// of all folds (RUN/report.md, RUN/results*.json).
#pragma once
#include <filesystem>

#include "pipeline/experiment.h"
#include "pipeline/run_config.h"

namespace rlrf {

// RUN/fold-k.
std::filesystem::path fold_dir(const RunConfig& config, int fold);
// The configuration of fold k's run: [prepare] folds = K, fold = k, [eval] folds = 1, its own dir.
RunConfig fold_config(const RunConfig& config, int fold);
// Results of the folds' runs (disjoint test users) as one table: rows present in every fold, per
// seed slot the users and their metrics concatenated, test means weighted by each fold's list count.
ExperimentResults pool_experiments(const std::vector<ExperimentResults>& folds);
// The pooled report of a finished K-fold run (every fold's results.json and diagnostics.json).
void write_fold_report(const RunConfig& config);

}  // namespace rlrf
