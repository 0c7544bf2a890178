// First-stage generators against the reference of tools/ref/data_first_stage.py (dense float64
// solves in PyTorch; item-kNN from a dense matrix), plus the exactness of each ALS half-step.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "data/first_stage.h"
#include "data/rng.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using json = nlohmann::json;

namespace {

json golden() {
  return json::parse(read_file(fs::path(RLRF_SOURCE_DIR) / "tests" / "data" / "data" / "first_stage_small.json"));
}

std::vector<std::vector<int32_t>> known_of(const json& g) { return g["known"].get<std::vector<std::vector<int32_t>>>(); }

AlsOptions options_of(const json& a) {
  AlsOptions o;
  o.factors = a["factors"].get<int>();
  o.regularization = a["regularization"].get<double>();
  o.alpha = a["alpha"].get<double>();
  o.iterations = a["iterations"].get<int>();
  return o;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double max_diff = 0;
  for (size_t k = 0; k < got.size(); ++k) max_diff = std::max(max_diff, std::abs(got[k] - want[k]));
  EXPECT_LT(max_diff, tol) << what << ": max |diff| " << max_diff;
}

}  // namespace

TEST(FirstStage, AlsMatchesDenseReference) {
  json g = golden();
  const json& a = g["als"];
  AlsOptions o = options_of(a);
  auto known = known_of(g);
  int32_t n_items = g["n_items"].get<int32_t>();
  std::vector<double> init = a["init_items"].get<std::vector<double>>();
  AlsModel m = train_als(known, n_items, o, 0, &init);
  // Factors are O(1); Cholesky here and LU there differ by rounding that the nearly singular first
  // solves (tiny initial factors) amplify to ~1e-8. An algorithmic slip shows as 1e-2 or more.
  expect_close(m.user_factors, a["user_factors"].get<std::vector<double>>(), 1e-6, "user factors");
  expect_close(m.item_factors, a["item_factors"].get<std::vector<double>>(), 1e-6, "item factors");
  // Objective after each iteration.
  std::vector<double> losses = a["loss_per_iteration"].get<std::vector<double>>();
  for (int it = 1; it <= o.iterations; ++it) {
    AlsOptions oi = o;
    oi.iterations = it;
    AlsModel mi = train_als(known, n_items, oi, 0, &init);
    EXPECT_NEAR(als_loss(mi, known, oi), losses[static_cast<size_t>(it - 1)], 1e-8) << "iteration " << it;
  }
  // Fold-in of a history with the item factors fixed.
  AlsFoldIn f(m, o);
  for (int32_t i : a["fold_in_history"].get<std::vector<int32_t>>()) f.add_history(i);
  f.solve();
  expect_close(f.user_vector(), a["fold_in_user"].get<std::vector<double>>(), 1e-6, "fold-in user");
  std::vector<double> scores;
  for (int32_t i = 0; i < n_items; ++i) scores.push_back(f.score(i));
  expect_close(scores, a["fold_in_scores"].get<std::vector<double>>(), 1e-6, "fold-in scores");  // float scores
}

TEST(FirstStage, AlsHalfStepsAreExactMinimisers) {
  // On a random problem: after training, the gradient of the objective w.r.t. the item factors
  // is zero (the last half-step solved them exactly), and the loss never rises between iterations.
  Rng rng(3);
  const int32_t n_items = 30;
  std::vector<std::vector<int32_t>> known(40);
  for (auto& k : known)
    for (int32_t i = 0; i < n_items; ++i)
      if (rng.uniform01() < 0.2) k.push_back(i);
  AlsOptions o;
  o.factors = 5;
  o.alpha = 4;
  o.regularization = 0.3;
  double prev = 1e300;
  for (int it = 1; it <= 6; ++it) {
    o.iterations = it;
    double loss = als_loss(train_als(known, n_items, o, 11), known, o);
    EXPECT_LE(loss, prev + 1e-9) << "iteration " << it;
    prev = loss;
  }
  AlsModel m = train_als(known, n_items, o, 11);
  const int f = o.factors;
  // dL/dy_i = -2 sum_u c_ui (p_ui - x_u.y_i) x_u + 2 lambda y_i
  double max_grad = 0;
  for (int32_t i = 0; i < n_items; ++i) {
    std::vector<double> grad(static_cast<size_t>(f), 0.0);
    for (size_t u = 0; u < known.size(); ++u) {
      bool has = std::find(known[u].begin(), known[u].end(), i) != known[u].end();
      double c = has ? 1 + o.alpha : 1, p = has ? 1 : 0, s = 0;
      for (int k = 0; k < f; ++k) s += m.user_factors[u * f + k] * m.item_factors[static_cast<size_t>(i) * f + k];
      for (int k = 0; k < f; ++k) grad[static_cast<size_t>(k)] += -2 * c * (p - s) * m.user_factors[u * f + k];
    }
    for (int k = 0; k < f; ++k) {
      grad[static_cast<size_t>(k)] += 2 * o.regularization * m.item_factors[static_cast<size_t>(i) * f + k];
      max_grad = std::max(max_grad, std::abs(grad[static_cast<size_t>(k)]));
    }
  }
  EXPECT_LT(max_grad, 1e-9);
}

TEST(FirstStage, ItemKnnLeaveSelfOutMatchesDenseReference) {
  json g = golden();
  auto known = known_of(g);
  int32_t n_items = g["n_items"].get<int32_t>();
  CoOccurrence co = build_cooccurrence(known, n_items);
  for (const json& c : g["knn"]) {
    int32_t user = c["user"].get<int32_t>();
    ItemKnnScorer s(co, known[static_cast<size_t>(user)]);
    for (int32_t i : c["history"].get<std::vector<int32_t>>()) s.add_history(i);
    const json& want = c["scores"];
    for (int32_t j = 0; j < n_items; ++j) {
      if (want[static_cast<size_t>(j)].is_null()) {
        EXPECT_TRUE(s.in_history(j));
        continue;
      }
      EXPECT_NEAR(s.score(j), want[static_cast<size_t>(j)].get<double>(), 1e-6) << "user " << user << " item " << j;
    }
  }
}

TEST(FirstStage, SolveSpdAndErrors) {
  std::vector<double> a = {4, 2, 2, 3}, b = {2, 1}, x;
  solve_spd(a, b, 2, x);
  EXPECT_NEAR(x[0], 0.5, 1e-12);
  EXPECT_NEAR(x[1], 0.0, 1e-12);
  EXPECT_THROW(solve_spd({1, 2, 2, 1}, b, 2, x), Error);
  EXPECT_THROW(build_cooccurrence({{0, 0}}, 3), Error);
  EXPECT_THROW(build_cooccurrence({{0, 3}}, 3), Error);
}

TEST(Rng, DeterministicUnbiasedAndStreamsDiffer) {
  Rng a(42), b(42);
  for (int k = 0; k < 100; ++k) ASSERT_EQ(a.next(), b.next());
  EXPECT_NE(derive_seed(42, 1), derive_seed(42, 2));
  EXPECT_NE(derive_seed(42, 3, 0), derive_seed(42, 3, 1));
  EXPECT_NE(derive_seed(42, 1), derive_seed(43, 1));
  // uniform(10): each value near 1/10 over 100k draws (5 sigma band).
  Rng r(1);
  std::vector<int> hist(10, 0);
  for (int k = 0; k < 100000; ++k) ++hist[static_cast<size_t>(r.uniform(10))];
  for (int h : hist) EXPECT_NEAR(h, 10000, 5 * std::sqrt(100000 * 0.1 * 0.9));
  // The published algorithms, written independently in tools/ref/data_first_stage.py.
  json ref = golden()["rng"];
  Rng g(42);
  for (const json& v : ref["seed42_next"]) EXPECT_EQ(std::to_string(g.next()), v.get<std::string>());
  Rng u(1);
  for (const json& v : ref["seed1_uniform10"]) EXPECT_EQ(u.uniform(10), v.get<uint64_t>());
  EXPECT_EQ(std::to_string(derive_seed(42, 3, 7)), ref["derive_42_3_7"].get<std::string>());
}
