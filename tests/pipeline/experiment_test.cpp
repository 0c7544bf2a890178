// The statistics users read results with, on hand-computed cases: the exact sign test, paired
// differences over seeds (their mean and sample std), users paired by id, baselines paired with
// every seed, and the results file round trip.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/experiment.h"
#include "pipeline/folds.h"
#include "util/files.h"

using namespace rlrf;

namespace {

// A seed whose MAP@5 is `map5` overall and `per_user[i]` for user i (NDCG@5 = MAP@5 / 2).
SeedResult seed(int64_t s, double map5, const std::vector<double>& per_user) {
  SeedResult r;
  r.seed = s;
  const int k = metric_k_index(5);
  r.test.map[k] = map5;
  r.test.ndcg[k] = map5 / 2;
  r.test.count = 10;
  for (size_t u = 0; u < per_user.size(); ++u) {
    r.users.push_back(static_cast<int32_t>(u));
    ListMetrics m;
    m.map[k] = per_user[u];
    m.ndcg[k] = per_user[u] / 2;
    r.per_user.push_back(m);
  }
  return r;
}

}  // namespace

TEST(Experiment, SignTestIsTheExactTwoSidedBinomial) {
  EXPECT_DOUBLE_EQ(sign_test_p_value(0, 0), 1.0);
  EXPECT_NEAR(sign_test_p_value(9, 1), 2.0 * (1 + 10) / 1024.0, 1e-12);  // 2 P(X <= 1), n = 10
  EXPECT_NEAR(sign_test_p_value(1, 9), 2.0 * (1 + 10) / 1024.0, 1e-12);
  EXPECT_NEAR(sign_test_p_value(10, 0), 2.0 / 1024.0, 1e-12);
  EXPECT_DOUBLE_EQ(sign_test_p_value(5, 5), 1.0);  // capped at 1
  EXPECT_NEAR(sign_test_p_value(60, 40), 0.05688793364, 1e-9);
}

TEST(Experiment, PairedDifferencesOverSeedsAndUsers) {
  RowResult a{"profile", "dlcm", {seed(1, 0.50, {0.6, 0.4, 0.5}), seed(2, 0.60, {0.7, 0.5, 0.5}), seed(3, 0.9, {1, 1, 1})}};
  RowResult b{"no knowledge", "dlcm", {seed(1, 0.40, {0.5, 0.5, 0.5}), seed(2, 0.55, {0.6, 0.6, 0.5})}};
  PairedComparison c = compare_rows(a, b, "map", 5);
  EXPECT_EQ(c.seeds, 2);  // seed 3 has no partner
  EXPECT_NEAR(c.mean_a, 0.55, 1e-12);
  EXPECT_NEAR(c.mean_b, 0.475, 1e-12);
  EXPECT_NEAR(c.mean_diff, 0.075, 1e-12);
  EXPECT_NEAR(c.diff_std, std::sqrt(2 * 0.025 * 0.025), 1e-12);  // sample std of {0.10, 0.05}
  // Users, summed over the paired seeds: +0.2, -0.2, 0.
  EXPECT_EQ(c.users, 3);
  EXPECT_EQ(c.users_a_better, 1);
  EXPECT_EQ(c.users_b_better, 1);
  EXPECT_EQ(c.users_tied, 1);
  EXPECT_DOUBLE_EQ(c.sign_test_p, 1.0);
  PairedComparison n = compare_rows(a, b, "ndcg", 5);
  EXPECT_NEAR(n.mean_diff, 0.0375, 1e-12);
}

TEST(Experiment, ABaselinePairsWithEverySeed) {
  RowResult model{"no knowledge", "dlcm", {seed(1, 0.50, {0.6, 0.4}), seed(2, 0.70, {0.8, 0.6})}};
  RowResult popularity{"popularity", "", {seed(0, 0.45, {0.5, 0.5})}};
  PairedComparison c = compare_rows(model, popularity, "map", 5);
  EXPECT_EQ(c.seeds, 2);
  EXPECT_NEAR(c.mean_diff, 0.15, 1e-12);
  EXPECT_NEAR(c.diff_std, std::sqrt(2 * 0.1 * 0.1), 1e-12);
  EXPECT_EQ(c.users_a_better, 1);  // user 0: 0.6 + 0.8 > 2 x 0.5; user 1: 0.4 + 0.6 = 2 x 0.5
  EXPECT_EQ(c.users_tied, 1);
}

TEST(Experiment, ResultsFileRoundTripsAndRejectsOtherFiles) {
  ExperimentResults r;
  r.dataset = "ml-100k";
  r.setting = "popularity";
  r.rows.push_back({"profile", "prm", {seed(1, 0.5, {0.25, 0.75})}});
  r.rows[0].seeds[0].epochs_run = 4;
  r.rows[0].seeds[0].train_seconds = 1.5;
  fs::path dir = fresh_temp_dir("experiment");
  save_experiment(r, dir / "results.json");
  ExperimentResults back = load_experiment(dir / "results.json");
  ASSERT_EQ(back.rows.size(), 1u);
  EXPECT_EQ(back.setting, "popularity");
  EXPECT_EQ(back.rows[0].seeds[0].epochs_run, 4);
  EXPECT_NEAR(back.rows[0].seeds[0].per_user[1].map[metric_k_index(5)], 0.75, 1e-12);
  write_file_atomic(dir / "other.json", "{\"format\": \"something-else\"}");
  try {
    load_experiment(dir / "other.json");
    FAIL() << "accepted a file of another format";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("other.json"), std::string::npos) << e.what();
  }
}

TEST(Experiment, FoldsPoolTheirUsersAndWeightMeansByLists) {
  // Fold 0: users 0, 1 over 10 lists; fold 1: users 2, 3, 4 over 30 lists (ids made disjoint).
  auto fold = [](double map5, const std::vector<double>& per_user, int32_t first_user, int64_t lists) {
    ExperimentResults r;
    r.dataset = "ml-100k";
    r.setting = "kar";
    RowResult row{"RLRF4Rec round 1", "dlcm", {seed(1, map5, per_user), seed(2, map5 + 0.1, per_user)}};
    for (SeedResult& s : row.seeds) {
      s.test.count = lists;
      for (int32_t& u : s.users) u += first_user;
    }
    r.rows.push_back(row);
    r.rows.push_back({"only in fold 0", "dlcm", {seed(1, 0.5, {0.5})}});
    return r;
  };
  std::vector<ExperimentResults> folds = {fold(0.4, {0.3, 0.5}, 0, 10), fold(0.2, {0.1, 0.2, 0.3}, 2, 30)};
  folds[1].rows.pop_back();
  ExperimentResults pooled = pool_experiments(folds);
  ASSERT_EQ(pooled.rows.size(), 1u);  // a row missing from a fold is not pooled
  const RowResult& row = pooled.rows[0];
  ASSERT_EQ(row.seeds.size(), 2u);
  EXPECT_NEAR(row.seeds[0].test.map_at(5), (0.4 * 10 + 0.2 * 30) / 40, 1e-12);
  EXPECT_NEAR(row.seeds[1].test.map_at(5), (0.5 * 10 + 0.3 * 30) / 40, 1e-12);
  EXPECT_EQ(row.seeds[0].test.count, 40);
  EXPECT_EQ(row.seeds[0].users, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_NEAR(row.seeds[0].per_user[3].map[static_cast<size_t>(metric_k_index(5))], 0.2, 1e-12);
}
