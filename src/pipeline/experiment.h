// Results of reranking experiments (rows of a table: a baseline or a model with some knowledge,
// trained with several seeds) and the statistics users read them with: mean +- std over seeds,
// paired differences between two rows over the same seeds, and a sign test over users.
// Written as JSON by `rlrf rerank` and `rlrf run`, read by `rlrf compare`.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rerank/metrics.h"
#include "rerank/reranker.h"

namespace rlrf {

struct SeedResult {
  int64_t seed = 0;
  MetricTable test;               // means over the test lists
  int best_epoch = 0;             // 0 for baselines
  int epochs_run = 0;             // epochs trained before early stopping (0 for baselines)
  double best_valid_map5 = 0;
  double train_seconds = 0;
  std::vector<int32_t> users;     // per-user test means, for sign tests
  std::vector<ListMetrics> per_user;
};

// A baseline's result (no training), and a trained model's with its training record.
SeedResult seed_result(const EvalResult& test, int64_t seed);
SeedResult seed_result(const EvalResult& test, int64_t seed, const Reranker& model, double train_seconds);

struct RowResult {
  std::string name;   // "random order", "popularity", "no knowledge", "profile", "KAR (round 0)", ...
  std::string model;  // "dlcm" | "prm" | "" for baselines
  std::vector<SeedResult> seeds;
};

struct ExperimentResults {
  std::string dataset, setting;
  std::vector<RowResult> rows;
  const RowResult* find(const std::string& name, const std::string& model) const;
};

// One training of an experiment's grid: the reranker `model` with `seed`, on the knowledge row
// `knowledge` (the caller's index), its result at results.rows[row].seeds[slot].
struct GridTraining {
  size_t row = 0;
  size_t knowledge = 0;
  std::string model;
  size_t slot = 0;
  int seed = 0;
  bool operator==(const GridTraining&) const = default;
};
// The (knowledge row, model, seed) grid of a reranking experiment, the one layout of `rlrf run`'s
// evaluation and `rlrf rerank`: appends one result row per knowledge row and model (knowledge rows
// outer, then models, each with one empty SeedResult per seed) and returns one training per
// (row, seed), in that order with seeds innermost.
std::vector<GridTraining> add_training_grid(ExperimentResults& results, const std::vector<std::string>& knowledge_rows,
                                            const std::vector<std::string>& models, const std::vector<int>& seeds);

struct MeanStd {
  double mean = 0, std = 0;  // std: sample standard deviation over seeds (0 for one seed)
};
// "map" or "ndcg" at K over the row's seeds.
MeanStd row_stat(const RowResult& row, const std::string& metric, int k);

struct PairedComparison {
  std::string metric;
  int k = 5;
  int64_t seeds = 0;             // paired seeds
  double mean_a = 0, mean_b = 0;
  double mean_diff = 0;          // a - b, mean over common seeds
  double diff_std = 0;           // sample std of the per-seed differences
  int64_t users = 0;             // users both rows scored
  int64_t users_a_better = 0, users_b_better = 0, users_tied = 0;  // per-user means over seeds
  double sign_test_p = 1;        // two-sided exact binomial test on the untied users
};
// A - B over the seeds both rows have (a row with a single result, a baseline, pairs with every
// seed of the other); users pair by id, each user's metric averaged over the paired seeds.
PairedComparison compare_rows(const RowResult& a, const RowResult& b, const std::string& metric, int k);

// Two-sided exact sign test p-value for `plus` successes among `plus + minus` trials.
double sign_test_p_value(int64_t plus, int64_t minus);

nlohmann::json to_json(const ExperimentResults& r);
ExperimentResults experiment_from_json(const nlohmann::json& j, const std::string& where);
// One seed's result alone (what a worker process hands back, what the run store keeps per training).
std::string seed_result_to_json(const SeedResult& s);
SeedResult seed_result_from_json(const std::string& text, const std::string& where);
void save_experiment(const ExperimentResults& r, const std::filesystem::path& path);
ExperimentResults load_experiment(const std::filesystem::path& path);

// A markdown table: one line per row, "mean ± std" of MAP@K and NDCG@K for the given Ks.
std::string markdown_table(const ExperimentResults& r, const std::vector<int>& ks = {1, 3, 5, 7, 10});
// A markdown table of paired comparisons (a vs b) for MAP@K and NDCG@K.
std::string markdown_comparisons(const std::vector<std::pair<std::string, PairedComparison>>& rows);

}  // namespace rlrf
