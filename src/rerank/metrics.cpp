// Reranking metrics (KAR / LibRerank semantics); see metrics.h for the formulas and tie rule.
#include "rerank/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>

#include "data/prepare.h"
#include "util/error.h"

namespace rlrf {

int metric_k_index(int k) {
  for (int i = 0; i < kNumMetricKs; ++i)
    if (kMetricKs[i] == k) return i;
  fail("metric K={} is not reported (use one of 1, 3, 5, 7, 10)", k);
}

std::vector<int> rank_by_scores(const std::vector<float>& scores) {
  std::vector<int> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // NaN scores would break the strict weak ordering: treat them as the lowest score.
  auto key = [&](int i) { return std::isnan(scores[i]) ? -INFINITY : scores[i]; };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
  return order;
}

namespace {

// Fills metrics for all K from the ranked labels and the ideal (descending) labels.
ListMetrics metrics_from_ranked(const std::vector<int>& ranked, const std::vector<int>& ideal) {
  ListMetrics m;
  const int n = static_cast<int>(ranked.size());
  for (int ki = 0; ki < kNumMetricKs; ++ki) {
    const int k = std::min(kMetricKs[ki], n);
    double dcg = 0, idcg = 0, ap = 0;
    int hits = 0;
    for (int i = 1; i <= k; ++i) {
      const double disc = std::log2(static_cast<double>(i) + 1.0);
      dcg += (std::pow(2.0, ranked[i - 1]) - 1.0) / disc;
      idcg += (std::pow(2.0, ideal[i - 1]) - 1.0) / disc;
      if (ranked[i - 1] > 0) {
        ++hits;
        ap += static_cast<double>(hits) / i;
      }
    }
    m.ndcg[ki] = idcg > 0 ? dcg / idcg : 0.0;
    m.map[ki] = hits > 0 ? ap / hits : 0.0;
  }
  return m;
}

}  // namespace

ListMetrics list_metrics(const std::vector<uint8_t>& labels, const std::vector<float>& scores) {
  RLRF_CHECK(labels.size() == scores.size(), "list_metrics: {} labels but {} scores", labels.size(), scores.size());
  std::vector<int> order = rank_by_scores(scores);
  std::vector<int> ranked(labels.size()), ideal(labels.begin(), labels.end());
  for (size_t i = 0; i < order.size(); ++i) ranked[i] = labels[order[i]];
  std::sort(ideal.begin(), ideal.end(), std::greater<int>());
  return metrics_from_ranked(ranked, ideal);
}

double ndcg_at(const std::vector<uint8_t>& labels, const std::vector<float>& scores, int k) {
  return list_metrics(labels, scores).ndcg[metric_k_index(k)];
}

double map_at(const std::vector<uint8_t>& labels, const std::vector<float>& scores, int k) {
  return list_metrics(labels, scores).map[metric_k_index(k)];
}

MetricTable mean_metrics(const std::vector<ListMetrics>& per_list) {
  MetricTable t;
  t.count = static_cast<int64_t>(per_list.size());
  if (per_list.empty()) return t;
  for (const ListMetrics& m : per_list) {
    for (int ki = 0; ki < kNumMetricKs; ++ki) {
      t.map[ki] += m.map[ki];
      t.ndcg[ki] += m.ndcg[ki];
    }
  }
  for (int ki = 0; ki < kNumMetricKs; ++ki) {
    t.map[ki] /= static_cast<double>(t.count);
    t.ndcg[ki] /= static_cast<double>(t.count);
  }
  return t;
}

PerUserMetrics per_user_metrics(const std::vector<ListMetrics>& per_list, const std::vector<int32_t>& list_users) {
  RLRF_CHECK(per_list.size() == list_users.size(), "per_user_metrics: {} lists but {} users", per_list.size(),
             list_users.size());
  std::map<int32_t, std::vector<ListMetrics>> by_user;
  for (size_t i = 0; i < per_list.size(); ++i) by_user[list_users[i]].push_back(per_list[i]);
  PerUserMetrics out;
  for (const auto& [user, lists] : by_user) {
    MetricTable t = mean_metrics(lists);
    ListMetrics m;
    m.map = t.map;
    m.ndcg = t.ndcg;
    out.users.push_back(user);
    out.metrics.push_back(m);
  }
  return out;
}

std::vector<float> list_order_scores(const RerankList& list) {
  std::vector<float> s(list.items.size());
  for (size_t i = 0; i < s.size(); ++i) s[i] = -static_cast<float>(i);
  return s;
}

std::vector<float> popularity_scores(const RerankList& list, const std::vector<float>& item_popularity) {
  std::vector<float> s(list.items.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const int32_t item = list.items[i];
    RLRF_CHECK(item >= 0 && static_cast<size_t>(item) < item_popularity.size(),
               "popularity_scores: item {} outside item_popularity (size {})", item, item_popularity.size());
    s[i] = item_popularity[item];
  }
  return s;
}

std::string list_order_name(const std::string& setting) {
  return setting == "first-stage" ? "initial ranker" : "random order";
}

}  // namespace rlrf
