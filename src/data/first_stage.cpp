// Item-kNN and implicit-ALS candidate generators; see first_stage.h for the formulas.
#include "data/first_stage.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "data/rng.h"
#include "util/error.h"

namespace rlrf {

namespace {

void check_known(const std::vector<std::vector<int32_t>>& known, int32_t n_items) {
  std::vector<int32_t> last(static_cast<size_t>(n_items), -1);
  for (size_t u = 0; u < known.size(); ++u) {
    for (int32_t i : known[u]) {
      RLRF_CHECK(i >= 0 && i < n_items, "first stage: user {} has item {} outside 0..{}", u, i, n_items - 1);
      RLRF_CHECK(last[static_cast<size_t>(i)] != static_cast<int32_t>(u), "first stage: user {} has item {} twice",
                 u, i);
      last[static_cast<size_t>(i)] = static_cast<int32_t>(u);
    }
  }
}

// Gram matrix F'F of row-major factors [n x f], full (both triangles).
std::vector<double> gram(const std::vector<double>& factors, int64_t n, int f) {
  std::vector<double> g(static_cast<size_t>(f) * f, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const double* v = &factors[static_cast<size_t>(r * f)];
    for (int a = 0; a < f; ++a) {
      double va = v[a];
      double* row = &g[static_cast<size_t>(a) * f];
      for (int b = 0; b <= a; ++b) row[b] += va * v[b];
    }
  }
  for (int a = 0; a < f; ++a)
    for (int b = a + 1; b < f; ++b) g[static_cast<size_t>(a) * f + b] = g[static_cast<size_t>(b) * f + a];
  return g;
}

// One ALS half-step: for every row r of `solve_for`, given the other side's factors `fixed`,
// its Gram matrix and the rows of `fixed` that r interacted with.
void als_half_step(const std::vector<std::vector<int32_t>>& links, const std::vector<double>& fixed, int64_t n_fixed,
                   std::vector<double>& solve_for, int f, const AlsOptions& o) {
  std::vector<double> g = gram(fixed, n_fixed, f);
  for (int a = 0; a < f; ++a) g[static_cast<size_t>(a) * f + a] += o.regularization;
  std::vector<double> a(g.size()), b(static_cast<size_t>(f)), x(static_cast<size_t>(f));
  for (size_t r = 0; r < links.size(); ++r) {
    double* out = &solve_for[r * static_cast<size_t>(f)];
    if (links[r].empty()) {
      std::fill(out, out + f, 0.0);  // b = 0: the minimiser is 0
      continue;
    }
    a = g;
    std::fill(b.begin(), b.end(), 0.0);
    for (int32_t j : links[r]) {
      const double* y = &fixed[static_cast<size_t>(j) * f];
      for (int p = 0; p < f; ++p) {
        double ay = o.alpha * y[p];
        double* row = &a[static_cast<size_t>(p) * f];
        for (int q = 0; q <= p; ++q) row[q] += ay * y[q];
        b[static_cast<size_t>(p)] += (1.0 + o.alpha) * y[p];
      }
    }
    solve_spd(a, b, f, x);
    std::copy(x.begin(), x.end(), out);
  }
}

}  // namespace

CoOccurrence build_cooccurrence(const std::vector<std::vector<int32_t>>& known, int32_t n_items) {
  check_known(known, n_items);
  CoOccurrence co;
  co.n_items = n_items;
  co.item_count.assign(static_cast<size_t>(n_items), 0.0f);
  std::vector<std::vector<int32_t>> users_of(static_cast<size_t>(n_items));
  for (size_t u = 0; u < known.size(); ++u)
    for (int32_t i : known[u]) {
      users_of[static_cast<size_t>(i)].push_back(static_cast<int32_t>(u));
      co.item_count[static_cast<size_t>(i)] += 1.0f;
    }
  co.row_start.assign(static_cast<size_t>(n_items) + 1, 0);
  std::vector<int32_t> row(static_cast<size_t>(n_items), 0);
  std::vector<int32_t> touched;
  for (int32_t i = 0; i < n_items; ++i) {
    touched.clear();
    for (int32_t u : users_of[static_cast<size_t>(i)])
      for (int32_t j : known[static_cast<size_t>(u)]) {
        if (j == i) continue;
        if (row[static_cast<size_t>(j)]++ == 0) touched.push_back(j);
      }
    std::sort(touched.begin(), touched.end());
    for (int32_t j : touched) {
      co.col.push_back(j);
      co.count.push_back(static_cast<float>(row[static_cast<size_t>(j)]));
      row[static_cast<size_t>(j)] = 0;
    }
    co.row_start[static_cast<size_t>(i) + 1] = static_cast<int64_t>(co.col.size());
  }
  return co;
}

ItemKnnScorer::ItemKnnScorer(const CoOccurrence& co, const std::vector<int32_t>& known_self)
    : co_(co),
      in_k_(static_cast<size_t>(co.n_items), 0),
      in_h_(static_cast<size_t>(co.n_items), 0),
      acc_(static_cast<size_t>(co.n_items), 0.0) {
  for (int32_t i : known_self) in_k_[static_cast<size_t>(i)] = 1;
}

void ItemKnnScorer::add_history(int32_t item) {
  size_t i = static_cast<size_t>(item);
  if (in_h_[i]) return;
  in_h_[i] = 1;
  double n_i = static_cast<double>(co_.item_count[i]) - in_k_[i] + 1.0;  // n'_i >= 1
  double w = 1.0 / std::sqrt(n_i);
  if (in_k_[i]) self_ += w;
  for (int64_t k = co_.row_start[i]; k < co_.row_start[i + 1]; ++k)
    acc_[static_cast<size_t>(co_.col[static_cast<size_t>(k)])] += w * co_.count[static_cast<size_t>(k)];
}

float ItemKnnScorer::score(int32_t item) const {
  size_t j = static_cast<size_t>(item);
  double n_j = static_cast<double>(co_.item_count[j]) - in_k_[j];  // j is not in H
  if (n_j <= 0) return 0.0f;
  double num = acc_[j] - (in_k_[j] ? self_ : 0.0);
  return static_cast<float>(num / std::sqrt(n_j));
}

void solve_spd(std::vector<double> a, const std::vector<double>& b, int f, std::vector<double>& x) {
  // In-place Cholesky A = L L' in the lower triangle.
  for (int j = 0; j < f; ++j) {
    double d = a[static_cast<size_t>(j) * f + j];
    for (int k = 0; k < j; ++k) d -= a[static_cast<size_t>(j) * f + k] * a[static_cast<size_t>(j) * f + k];
    if (!(d > 0)) fail("solve_spd: matrix is not positive definite at column {} (pivot {})", j, d);
    double l = std::sqrt(d);
    a[static_cast<size_t>(j) * f + j] = l;
    for (int i = j + 1; i < f; ++i) {
      double s = a[static_cast<size_t>(i) * f + j];
      for (int k = 0; k < j; ++k) s -= a[static_cast<size_t>(i) * f + k] * a[static_cast<size_t>(j) * f + k];
      a[static_cast<size_t>(i) * f + j] = s / l;
    }
  }
  x.assign(static_cast<size_t>(f), 0.0);
  for (int i = 0; i < f; ++i) {  // L z = b
    double s = b[static_cast<size_t>(i)];
    for (int k = 0; k < i; ++k) s -= a[static_cast<size_t>(i) * f + k] * x[static_cast<size_t>(k)];
    x[static_cast<size_t>(i)] = s / a[static_cast<size_t>(i) * f + i];
  }
  for (int i = f - 1; i >= 0; --i) {  // L' x = z
    double s = x[static_cast<size_t>(i)];
    for (int k = i + 1; k < f; ++k) s -= a[static_cast<size_t>(k) * f + i] * x[static_cast<size_t>(k)];
    x[static_cast<size_t>(i)] = s / a[static_cast<size_t>(i) * f + i];
  }
}

AlsModel train_als(const std::vector<std::vector<int32_t>>& known, int32_t n_items, const AlsOptions& o,
                   uint64_t seed, const std::vector<double>* init_items) {
  check_known(known, n_items);
  RLRF_CHECK(o.factors >= 1, "als: factors must be >= 1, got {}", o.factors);
  RLRF_CHECK(o.regularization > 0, "als: regularization must be > 0, got {}", o.regularization);
  AlsModel m;
  m.factors = o.factors;
  m.n_users = static_cast<int32_t>(known.size());
  m.n_items = n_items;
  const int f = o.factors;
  m.user_factors.assign(static_cast<size_t>(m.n_users) * f, 0.0);
  if (init_items) {
    RLRF_CHECK(init_items->size() == static_cast<size_t>(n_items) * f, "als: initial item factors have {} values, expected {}",
               init_items->size(), static_cast<size_t>(n_items) * f);
    m.item_factors = *init_items;
  } else {
    Rng rng(seed);
    m.item_factors.resize(static_cast<size_t>(n_items) * f);
    for (double& v : m.item_factors) v = o.init_scale * rng.normal();
  }
  std::vector<std::vector<int32_t>> users_of(static_cast<size_t>(n_items));
  for (size_t u = 0; u < known.size(); ++u)
    for (int32_t i : known[u]) users_of[static_cast<size_t>(i)].push_back(static_cast<int32_t>(u));
  for (int it = 0; it < o.iterations; ++it) {
    als_half_step(known, m.item_factors, n_items, m.user_factors, f, o);
    als_half_step(users_of, m.user_factors, m.n_users, m.item_factors, f, o);
  }
  m.item_gram = gram(m.item_factors, n_items, f);
  return m;
}

double als_loss(const AlsModel& m, const std::vector<std::vector<int32_t>>& known, const AlsOptions& o) {
  const int f = m.factors;
  std::vector<double> g = gram(m.item_factors, m.n_items, f);
  double loss = 0;
  for (int32_t u = 0; u < m.n_users; ++u) {
    const double* x = &m.user_factors[static_cast<size_t>(u) * f];
    for (int a = 0; a < f; ++a)
      for (int b = 0; b < f; ++b) loss += x[a] * g[static_cast<size_t>(a) * f + b] * x[b];  // sum_i s^2
    for (int32_t i : known[static_cast<size_t>(u)]) {
      const double* y = &m.item_factors[static_cast<size_t>(i) * f];
      double s = 0;
      for (int a = 0; a < f; ++a) s += x[a] * y[a];
      loss += (1.0 + o.alpha) * (1.0 - s) * (1.0 - s) - s * s;
    }
  }
  double reg = 0;
  for (double v : m.user_factors) reg += v * v;
  for (double v : m.item_factors) reg += v * v;
  return loss + o.regularization * reg;
}

AlsFoldIn::AlsFoldIn(const AlsModel& model, const AlsOptions& options)
    : model_(model), f_(model.factors), alpha_(options.alpha) {
  a_ = model.item_gram.size() == static_cast<size_t>(f_) * f_ ? model.item_gram
                                                             : gram(model.item_factors, model.n_items, f_);
  for (int p = 0; p < f_; ++p) a_[static_cast<size_t>(p) * f_ + p] += options.regularization;
  b_.assign(static_cast<size_t>(f_), 0.0);
  x_.assign(static_cast<size_t>(f_), 0.0);
}

void AlsFoldIn::add_history(int32_t item) {
  const double* y = &model_.item_factors[static_cast<size_t>(item) * f_];
  for (int p = 0; p < f_; ++p) {
    double ay = alpha_ * y[p];
    double* row = &a_[static_cast<size_t>(p) * f_];
    for (int q = 0; q <= p; ++q) row[q] += ay * y[q];
    b_[static_cast<size_t>(p)] += (1.0 + alpha_) * y[p];
  }
}

void AlsFoldIn::solve() { solve_spd(a_, b_, f_, x_); }

float AlsFoldIn::score(int32_t item) const {
  const double* y = &model_.item_factors[static_cast<size_t>(item) * f_];
  double s = 0;
  for (int p = 0; p < f_; ++p) s += x_[static_cast<size_t>(p)] * y[p];
  return static_cast<float>(s);
}

}  // namespace rlrf
