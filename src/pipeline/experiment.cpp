// Experiment results: JSON, mean +- std over seeds, paired differences and sign tests.
#include "pipeline/experiment.h"

#include <cstdint>
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/files.h"

namespace rlrf {

SeedResult seed_result(const EvalResult& test, int64_t seed) {
  SeedResult s;
  s.seed = seed;
  s.test = test.mean;
  s.users = test.per_user.users;
  s.per_user = test.per_user.metrics;
  return s;
}

SeedResult seed_result(const EvalResult& test, int64_t seed, const Reranker& model, double train_seconds) {
  SeedResult s = seed_result(test, seed);
  s.best_epoch = model.best_epoch;
  s.epochs_run = static_cast<int>(model.history.size());
  s.best_valid_map5 = model.best_valid_map5;
  s.train_seconds = train_seconds;
  return s;
}

const RowResult* ExperimentResults::find(const std::string& name, const std::string& model) const {
  for (const RowResult& r : rows)
    if (r.name == name && r.model == model) return &r;
  return nullptr;
}

static double metric_of(const ListMetrics& m, const std::string& metric, int k) {
  int i = metric_k_index(k);
  return metric == "map" ? m.map[i] : m.ndcg[i];
}
static double metric_of(const MetricTable& m, const std::string& metric, int k) {
  return metric == "map" ? m.map_at(k) : m.ndcg_at(k);
}

static MeanStd mean_std(const std::vector<double>& v) {
  MeanStd out;
  if (v.empty()) return out;
  for (double x : v) out.mean += x;
  out.mean /= double(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - out.mean) * (x - out.mean);
    out.std = std::sqrt(ss / double(v.size() - 1));
  }
  return out;
}

std::vector<GridTraining> add_training_grid(ExperimentResults& results, const std::vector<std::string>& knowledge_rows,
                                            const std::vector<std::string>& models, const std::vector<int>& seeds) {
  std::vector<GridTraining> grid;
  for (size_t k = 0; k < knowledge_rows.size(); ++k)
    for (const std::string& model : models) {
      results.rows.push_back({knowledge_rows[k], model, std::vector<SeedResult>(seeds.size())});
      for (size_t i = 0; i < seeds.size(); ++i) grid.push_back({results.rows.size() - 1, k, model, i, seeds[i]});
    }
  return grid;
}

MeanStd row_stat(const RowResult& row, const std::string& metric, int k) {
  RLRF_CHECK(metric == "map" || metric == "ndcg", "unknown metric '{}' (map, ndcg)", metric);
  std::vector<double> v;
  for (const SeedResult& s : row.seeds) v.push_back(metric_of(s.test, metric, k));
  return mean_std(v);
}

double sign_test_p_value(int64_t plus, int64_t minus) {
  int64_t n = plus + minus;
  if (n == 0) return 1.0;
  int64_t k = std::min(plus, minus);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
  double total = 0;
  for (int64_t i = 0; i <= k; ++i) {
    double log_c = std::lgamma(double(n) + 1) - std::lgamma(double(i) + 1) - std::lgamma(double(n - i) + 1);
    total += std::exp(log_c - double(n) * std::log(2.0));
  }
  return std::min(1.0, 2.0 * total);
}

PairedComparison compare_rows(const RowResult& a, const RowResult& b, const std::string& metric, int k) {
  PairedComparison c;
  c.metric = metric;
  c.k = k;
  // Seeds pair by number; a row with one result (a baseline: no training, no seed) pairs with
  // every seed of the other.
  std::vector<std::pair<const SeedResult*, const SeedResult*>> paired;
  if (a.seeds.size() == 1 || b.seeds.size() == 1) {
    for (const SeedResult& sa : a.seeds)
      for (const SeedResult& sb : b.seeds) paired.push_back({&sa, &sb});
  } else {
    std::map<int64_t, const SeedResult*> bs;
    for (const SeedResult& s : b.seeds) bs[s.seed] = &s;
    for (const SeedResult& sa : a.seeds)
      if (auto it = bs.find(sa.seed); it != bs.end()) paired.push_back({&sa, it->second});
  }
  std::vector<double> diffs, va, vb;
  std::map<int32_t, std::pair<double, double>> user_sum;  // user -> (sum a, sum b)
  std::map<int32_t, int> user_count;
  for (auto [pa, pb] : paired) {
    const SeedResult& sa = *pa;
    const SeedResult& sb = *pb;
    double xa = metric_of(sa.test, metric, k), xb = metric_of(sb.test, metric, k);
    va.push_back(xa);
    vb.push_back(xb);
    diffs.push_back(xa - xb);
    std::map<int32_t, double> ub;
    for (size_t i = 0; i < sb.users.size(); ++i) ub[sb.users[i]] = metric_of(sb.per_user[i], metric, k);
    for (size_t i = 0; i < sa.users.size(); ++i) {
      auto jt = ub.find(sa.users[i]);
      if (jt == ub.end()) continue;
      auto& s = user_sum[sa.users[i]];
      s.first += metric_of(sa.per_user[i], metric, k);
      s.second += jt->second;
      ++user_count[sa.users[i]];
    }
  }
  c.seeds = static_cast<int64_t>(diffs.size());
  c.mean_a = mean_std(va).mean;
  c.mean_b = mean_std(vb).mean;
  MeanStd d = mean_std(diffs);
  c.mean_diff = d.mean;
  c.diff_std = d.std;
  for (auto& [u, s] : user_sum) {
    if (user_count[u] != c.seeds) continue;  // users scored under every common seed
    ++c.users;
    double diff = s.first - s.second;
    if (std::abs(diff) < 1e-12) ++c.users_tied;
    else if (diff > 0) ++c.users_a_better;
    else ++c.users_b_better;
  }
  c.sign_test_p = sign_test_p_value(c.users_a_better, c.users_b_better);
  return c;
}

static nlohmann::json metrics_json(const std::array<double, kNumMetricKs>& v) {
  return nlohmann::json(std::vector<double>(v.begin(), v.end()));
}

nlohmann::json to_json(const ExperimentResults& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const RowResult& row : r.rows) {
    nlohmann::json seeds = nlohmann::json::array();
    for (const SeedResult& s : row.seeds) {
      nlohmann::json pu_map = nlohmann::json::array(), pu_ndcg = nlohmann::json::array();
      for (const ListMetrics& m : s.per_user) {
        pu_map.push_back(metrics_json(m.map));
        pu_ndcg.push_back(metrics_json(m.ndcg));
      }
      seeds.push_back({{"seed", s.seed},
                       {"map", metrics_json(s.test.map)},
                       {"ndcg", metrics_json(s.test.ndcg)},
                       {"lists", s.test.count},
                       {"best_epoch", s.best_epoch},
                       {"epochs_run", s.epochs_run},
                       {"best_valid_map5", s.best_valid_map5},
                       {"train_seconds", s.train_seconds},
                       {"users", s.users},
                       {"per_user_map", pu_map},
                       {"per_user_ndcg", pu_ndcg}});
    }
    nlohmann::json summary;
    for (const char* metric : {"map", "ndcg"}) {
      for (int k : kMetricKs) {
        MeanStd ms = row_stat(row, metric, k);
        summary[fmt::format("{}@{}", metric, k)] = {{"mean", ms.mean}, {"std", ms.std}};
      }
    }
    rows.push_back({{"name", row.name}, {"model", row.model}, {"summary", summary}, {"seeds", seeds}});
  }
  return {{"format", "rlrf-experiment-1"}, {"ks", std::vector<int>(kMetricKs.begin(), kMetricKs.end())},
          {"dataset", r.dataset}, {"setting", r.setting}, {"rows", rows}};
}

static std::array<double, kNumMetricKs> read_metrics(const nlohmann::json& j, const std::string& where) {
  RLRF_CHECK(j.is_array() && j.size() == kMetricKs.size(), "{}: expected {} metric values", where, kMetricKs.size());
  std::array<double, kNumMetricKs> out{};
  for (size_t i = 0; i < kMetricKs.size(); ++i) out[i] = j[i].get<double>();
  return out;
}

ExperimentResults experiment_from_json(const nlohmann::json& j, const std::string& where) {
  try {
    RLRF_CHECK(j.value("format", "") == "rlrf-experiment-1", "{}: not an rlrf experiment file (format '{}')", where,
               j.value("format", ""));
    ExperimentResults r;
    r.dataset = j.value("dataset", "");
    r.setting = j.value("setting", "");
    for (const auto& row : j.at("rows")) {
      RowResult rr;
      rr.name = row.at("name").get<std::string>();
      rr.model = row.at("model").get<std::string>();
      for (const auto& s : row.at("seeds")) {
        SeedResult sr;
        sr.seed = s.at("seed").get<int64_t>();
        sr.test.map = read_metrics(s.at("map"), where);
        sr.test.ndcg = read_metrics(s.at("ndcg"), where);
        sr.test.count = s.value("lists", int64_t(0));
        sr.best_epoch = s.value("best_epoch", 0);
        sr.best_valid_map5 = s.value("best_valid_map5", 0.0);
        sr.epochs_run = s.value("epochs_run", 0);
        sr.train_seconds = s.value("train_seconds", 0.0);
        sr.users = s.value("users", std::vector<int32_t>{});
        const auto& pm = s.at("per_user_map");
        const auto& pn = s.at("per_user_ndcg");
        RLRF_CHECK(pm.size() == sr.users.size() && pn.size() == sr.users.size(), "{}: row '{}' seed {}: per-user sizes differ",
                   where, rr.name, sr.seed);
        for (size_t i = 0; i < sr.users.size(); ++i) {
          ListMetrics m;
          m.map = read_metrics(pm[i], where);
          m.ndcg = read_metrics(pn[i], where);
          sr.per_user.push_back(m);
        }
        rr.seeds.push_back(std::move(sr));
      }
      r.rows.push_back(std::move(rr));
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed experiment file: {}", where, e.what());
  }
}

std::string seed_result_to_json(const SeedResult& s) {
  ExperimentResults one;
  one.rows.push_back({"x", "x", {s}});
  return to_json(one)["rows"][0]["seeds"][0].dump();
}

SeedResult seed_result_from_json(const std::string& text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  RLRF_CHECK(!j.is_discarded(), "{}: a seed result that is not JSON", where);
  nlohmann::json doc = {{"format", "rlrf-experiment-1"}, {"rows", {{{"name", "x"}, {"model", "x"}, {"seeds", {j}}}}}};
  return experiment_from_json(doc, where).rows[0].seeds[0];
}

void save_experiment(const ExperimentResults& r, const std::filesystem::path& path) {
  write_file_atomic(path, to_json(r).dump() + "\n");
}

ExperimentResults load_experiment(const std::filesystem::path& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("'{}' is not valid JSON: {}", path.string(), e.what());
  }
  return experiment_from_json(j, path.string());
}

std::string markdown_table(const ExperimentResults& r, const std::vector<int>& ks) {
  std::string out = "| row | model |";
  std::string sep = "|---|---|";
  for (int k : ks) {
    out += fmt::format(" MAP@{} |", k);
    sep += "---|";
  }
  for (int k : ks) {
    out += fmt::format(" NDCG@{} |", k);
    sep += "---|";
  }
  out += "\n" + sep + "\n";
  for (const RowResult& row : r.rows) {
    out += fmt::format("| {} | {} |", row.name, row.model.empty() ? "-" : row.model);
    for (const char* metric : {"map", "ndcg"}) {
      for (int k : ks) {
        MeanStd ms = row_stat(row, metric, k);
        out += row.seeds.size() > 1 ? fmt::format(" {:.4f} ± {:.4f} |", ms.mean, ms.std) : fmt::format(" {:.4f} |", ms.mean);
      }
    }
    out += "\n";
  }
  return out;
}

std::string markdown_comparisons(const std::vector<std::pair<std::string, PairedComparison>>& rows) {
  std::string out =
      "| comparison | metric | A | B | A − B (mean ± paired std over seeds) | users A>B / A<B / tied | sign test p |\n"
      "|---|---|---|---|---|---|---|\n";
  for (const auto& [label, c] : rows) {
    out += fmt::format("| {} | {}@{} | {:.4f} | {:.4f} | {:+.4f} ± {:.4f} (n={}) | {} / {} / {} | {:.3g} |\n", label,
                       c.metric == "map" ? "MAP" : "NDCG", c.k, c.mean_a, c.mean_b, c.mean_diff, c.diff_std, c.seeds,
                       c.users_a_better, c.users_b_better, c.users_tied, c.sign_test_p);
  }
  return out;
}

}  // namespace rlrf
