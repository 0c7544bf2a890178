// Reranking metrics with KAR / LibRerank semantics (SPEC.md "Metrics"): NDCG@K and MAP@K of one
// list ranked by scores, averages over lists and per-user means, and the two score-free baselines
// (the list's own order, item popularity). Plain C++: no torch.
//
// Ranking: items sorted by score, descending; equal scores keep their initial list order (a stable
// sort, like Python's sorted(..., reverse=True) in KAR's evaluate_rerank), so results never depend
// on the sort implementation.
//   DCG@K  = sum_{i<=K} (2^rel_i - 1) / log2(i + 1),  NDCG@K = DCG@K / IDCG@K (0 when IDCG@K = 0)
//   AP@K   = (1/h) sum_{i<=K, rel_i>0} hits_i / i, h = hits inside the top K (0 when h = 0)
// K larger than the list is cut to the list length. Lists without a positive count 0 in the means.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace rlrf {

struct PreparedData;
struct RerankList;

inline constexpr std::array<int, 5> kMetricKs = {1, 3, 5, 7, 10};
inline constexpr int kNumMetricKs = static_cast<int>(kMetricKs.size());
// Index of K in kMetricKs; throws Error for a K that is not reported.
int metric_k_index(int k);

// Metrics of one list, for every K of kMetricKs.
struct ListMetrics {
  std::array<double, kNumMetricKs> map{};
  std::array<double, kNumMetricKs> ndcg{};
};

// Means over lists (or users), with the count they are over.
struct MetricTable {
  std::array<double, kNumMetricKs> map{};
  std::array<double, kNumMetricKs> ndcg{};
  int64_t count = 0;
  double map_at(int k) const { return map[metric_k_index(k)]; }
  double ndcg_at(int k) const { return ndcg[metric_k_index(k)]; }
};

// Positions of the list in ranked order: descending score, ties by initial position (stable).
std::vector<int> rank_by_scores(const std::vector<float>& scores);

// Metrics of one list; labels 0/1 (any value > 0 counts as relevant with rel = label).
ListMetrics list_metrics(const std::vector<uint8_t>& labels, const std::vector<float>& scores);
double ndcg_at(const std::vector<uint8_t>& labels, const std::vector<float>& scores, int k);
double map_at(const std::vector<uint8_t>& labels, const std::vector<float>& scores, int k);

MetricTable mean_metrics(const std::vector<ListMetrics>& per_list);

// Per-user means of list metrics: `list_users[i]` is the user of per_list[i]. Returns the users in
// ascending id order and their mean metrics (for paired comparisons across models).
struct PerUserMetrics {
  std::vector<int32_t> users;
  std::vector<ListMetrics> metrics;
};
PerUserMetrics per_user_metrics(const std::vector<ListMetrics>& per_list, const std::vector<int32_t>& list_users);

// Baseline scores of a list. List order: score = -position (the initial order is kept: "random
// order" for the kar setting, "initial ranker" for first-stage). Popularity: item_popularity[item].
std::vector<float> list_order_scores(const RerankList& list);
std::vector<float> popularity_scores(const RerankList& list, const std::vector<float>& item_popularity);
// The name of the list-order row for a preparation setting: "random order" or "initial ranker".
std::string list_order_name(const std::string& setting);

}  // namespace rlrf
