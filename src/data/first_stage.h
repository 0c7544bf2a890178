// Candidate generators of the "first-stage" recommendation setting: item-kNN on co-occurrence
// (cosine) and matrix factorisation by implicit ALS. Both learn from "known" item sets per user
// (what may legitimately be known: see prepare.cpp) and score items for one user from that user's
// history before a window.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlrf {

// Item-item co-occurrence of the known sets: C(i,j) = #users whose known set holds i and j (i != j)
// in CSR rows, and n_i = #users whose known set holds i.
struct CoOccurrence {
  int32_t n_items = 0;
  std::vector<int64_t> row_start;  // [n_items + 1]
  std::vector<int32_t> col;        // [nnz], ascending within a row
  std::vector<float> count;        // [nnz]
  std::vector<float> item_count;   // [n_items]
};

// `known[u]`: distinct items of user u. Throws Error on an item id out of range or a repeat.
CoOccurrence build_cooccurrence(const std::vector<std::vector<int32_t>>& known, int32_t n_items);

// Item-kNN scores for one user, leave-this-user-out: the model is the co-occurrence of every other
// user's known set plus this user's current history H (in place of `known_self`, the user's own
// known set inside `co`). For an item j not in H:
//   score(j) = sum_{i in H} C'(i,j) / sqrt(n'_i n'_j),  0 when n'_j = 0,
//   C'(i,j) = C(i,j) - [i in K][j in K],  n'_x = n_x - [x in K] + [x in H]   (K = known_self).
// The history grows with add_history(); scoring is O(row length) per added item.
class ItemKnnScorer {
 public:
  ItemKnnScorer(const CoOccurrence& co, const std::vector<int32_t>& known_self);
  void add_history(int32_t item);
  bool in_history(int32_t item) const { return in_h_[static_cast<size_t>(item)] != 0; }
  float score(int32_t item) const;  // for an item not in the history

 private:
  const CoOccurrence& co_;
  std::vector<uint8_t> in_k_, in_h_;
  std::vector<double> acc_;  // sum_{i in H} C(i,j) / sqrt(n'_i)
  double self_ = 0;          // sum_{i in H and K} 1 / sqrt(n'_i)
};

struct AlsOptions {
  int factors = 32;
  int iterations = 10;
  double regularization = 0.1;  // lambda
  double alpha = 10.0;          // confidence 1 + alpha on known interactions, 1 elsewhere
  double init_scale = 0.1;      // item factors start at N(0, init_scale^2)
};

// Implicit ALS: minimises sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + lambda (|X|^2 + |Y|^2), p_ui = 1 and
// c_ui = 1 + alpha for i in known[u], p_ui = 0 and c_ui = 1 otherwise. Each iteration solves every
// user exactly given Y, then every item given X (row-major factors, double precision).
struct AlsModel {
  int factors = 0;
  int32_t n_users = 0, n_items = 0;
  std::vector<double> user_factors;  // [n_users * factors]
  std::vector<double> item_factors;  // [n_items * factors]
  std::vector<double> item_gram;     // Y'Y [factors * factors], kept for fold-in
};

// `init_items` (n_items * factors) replaces the seeded random start when given (reference tests).
AlsModel train_als(const std::vector<std::vector<int32_t>>& known, int32_t n_items, const AlsOptions& options,
                   uint64_t seed, const std::vector<double>* init_items = nullptr);
// The objective above for the model's factors.
double als_loss(const AlsModel& model, const std::vector<std::vector<int32_t>>& known, const AlsOptions& options);

// Folds a user in from a growing history H with the item factors fixed:
// x = (Y'Y + lambda I + alpha sum_{i in H} y_i y_i')^-1 (1 + alpha) sum_{i in H} y_i; score(j) = x.y_j.
class AlsFoldIn {
 public:
  AlsFoldIn(const AlsModel& model, const AlsOptions& options);
  void add_history(int32_t item);
  void solve();                      // after adding, before scoring
  float score(int32_t item) const;
  const std::vector<double>& user_vector() const { return x_; }

 private:
  const AlsModel& model_;
  int f_;
  double alpha_;
  std::vector<double> a_, b_, x_;  // [f*f], [f], [f]
};

// Solves A x = b for a symmetric positive definite f x f A (row-major) by Cholesky. Only the
// lower triangle of A is read. Throws Error when A is not positive definite.
void solve_spd(std::vector<double> a, const std::vector<double>& b, int f, std::vector<double>& x);

}  // namespace rlrf
