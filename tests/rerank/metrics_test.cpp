// Metrics on hand-computed lists: NDCG@K and MAP@K (KAR / LibRerank semantics), lists without a
// positive, ties (stable by initial position), K beyond the list, per-user means and baselines.
#include <gtest/gtest.h>

#include <cmath>

#include "data/prepare.h"
#include "rerank/metrics.h"
#include "util/error.h"

using namespace rlrf;

namespace {
const double kL3 = 1.0 / std::log2(3.0), kL4 = 0.5, kL5 = 1.0 / std::log2(5.0), kL11 = 1.0 / std::log2(11.0);
}

TEST(RerankMetrics, RanksByScoreDescendingWithStableTies) {
  EXPECT_EQ(rank_by_scores({0.1f, 0.9f, 0.8f, 0.2f}), (std::vector<int>{1, 2, 3, 0}));
  EXPECT_EQ(rank_by_scores({0.5f, 0.5f, 0.5f}), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(rank_by_scores({0.2f, 0.9f, 0.2f, 0.9f}), (std::vector<int>{1, 3, 0, 2}));
  EXPECT_EQ(rank_by_scores({NAN, 0.0f, -1.0f}), (std::vector<int>{1, 2, 0}));
}

TEST(RerankMetrics, HandComputedList) {
  // Ranked order 1, 2, 4, 3, 0 -> ranked labels [1, 0, 0, 1, 0]; two positives.
  std::vector<uint8_t> labels{0, 1, 0, 1, 0};
  std::vector<float> scores{0.1f, 0.9f, 0.8f, 0.2f, 0.3f};
  ListMetrics m = list_metrics(labels, scores);
  EXPECT_DOUBLE_EQ(m.ndcg[0], 1.0);                                 // K=1
  EXPECT_DOUBLE_EQ(m.map[0], 1.0);
  EXPECT_NEAR(m.ndcg[1], 1.0 / (1.0 + kL3), 1e-12);                 // K=3: DCG 1, IDCG 1 + 1/log2 3
  EXPECT_NEAR(m.map[1], 1.0, 1e-12);                                // one hit at 1 inside top 3
  EXPECT_NEAR(m.ndcg[2], (1.0 + kL5) / (1.0 + kL3), 1e-12);         // K=5: hit at rank 4
  EXPECT_NEAR(m.map[2], (1.0 / 1 + 2.0 / 4) / 2, 1e-12);            // 0.75
  for (int ki = 3; ki < kNumMetricKs; ++ki) {                       // K=7, 10 cut to the list (5)
    EXPECT_NEAR(m.ndcg[ki], m.ndcg[2], 1e-12);
    EXPECT_NEAR(m.map[ki], m.map[2], 1e-12);
  }
  EXPECT_NEAR(ndcg_at(labels, scores, 3), 0.6131471927654584, 1e-12);  // 1 / (1 + 0.6309297535714574)
  EXPECT_NEAR(map_at(labels, scores, 5), 0.75, 1e-12);
}

TEST(RerankMetrics, ListWithoutPositiveIsZero) {
  ListMetrics m = list_metrics({0, 0, 0, 0}, {0.4f, 0.3f, 0.2f, 0.1f});
  for (int ki = 0; ki < kNumMetricKs; ++ki) {
    EXPECT_EQ(m.ndcg[ki], 0.0);
    EXPECT_EQ(m.map[ki], 0.0);
  }
}

TEST(RerankMetrics, TiesKeepInitialOrder) {
  // All tied: ranked labels [0, 0, 1, 0].
  ListMetrics a = list_metrics({0, 0, 1, 0}, {0.5f, 0.5f, 0.5f, 0.5f});
  EXPECT_EQ(a.ndcg[0], 0.0);
  EXPECT_EQ(a.map[0], 0.0);
  EXPECT_NEAR(a.ndcg[1], kL4, 1e-12);        // hit at rank 3: 1/log2(4) over IDCG 1
  EXPECT_NEAR(a.map[1], 1.0 / 3.0, 1e-12);
  // Partial ties: order 1, 3, 0, 2 -> ranked labels [0, 1, 1, 0].
  ListMetrics b = list_metrics({1, 0, 0, 1}, {0.2f, 0.9f, 0.2f, 0.9f});
  EXPECT_EQ(b.ndcg[0], 0.0);
  EXPECT_NEAR(b.ndcg[1], (kL3 + kL4) / (1.0 + kL3), 1e-12);
  EXPECT_NEAR(b.map[1], (1.0 / 2 + 2.0 / 3) / 2, 1e-12);
}

TEST(RerankMetrics, HitsOutsideTopKDoNotCount) {
  std::vector<uint8_t> labels{1, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  std::vector<float> scores(10);
  for (int i = 0; i < 10; ++i) scores[i] = -static_cast<float>(i);  // keep the given order
  ListMetrics m = list_metrics(labels, scores);
  EXPECT_NEAR(m.map[2], 1.0, 1e-12);                                 // K=5: hits at 1, 2
  EXPECT_NEAR(m.map[4], (1.0 + 1.0 + 3.0 / 10) / 3, 1e-12);          // K=10: third hit at 10
  EXPECT_NEAR(m.ndcg[2], (1.0 + kL3) / (1.0 + kL3 + kL4), 1e-12);  // IDCG@5 counts all 3 positives
  EXPECT_NEAR(m.ndcg[4], (1.0 + kL3 + kL11) / (1.0 + kL3 + kL4), 1e-12);
}

TEST(RerankMetrics, MeansCountListsWithoutPositiveAsZero) {
  std::vector<ListMetrics> lists{list_metrics({1, 0}, {1.0f, 0.0f}), list_metrics({0, 0}, {1.0f, 0.0f})};
  MetricTable t = mean_metrics(lists);
  EXPECT_EQ(t.count, 2);
  EXPECT_DOUBLE_EQ(t.map_at(1), 0.5);
  EXPECT_DOUBLE_EQ(t.ndcg_at(5), 0.5);
  EXPECT_THROW(t.map_at(4), Error);
}

TEST(RerankMetrics, PerUserMeans) {
  std::vector<ListMetrics> lists{list_metrics({1, 0}, {1.0f, 0.0f}), list_metrics({1, 0}, {0.0f, 1.0f}),
                                 list_metrics({0, 1}, {0.0f, 1.0f})};
  PerUserMetrics pu = per_user_metrics(lists, {5, 5, 2});
  ASSERT_EQ(pu.users, (std::vector<int32_t>{2, 5}));
  EXPECT_DOUBLE_EQ(pu.metrics[0].map[0], 1.0);
  EXPECT_DOUBLE_EQ(pu.metrics[1].map[0], 0.5);                       // (1 + 0) / 2
  EXPECT_NEAR(pu.metrics[1].ndcg[1], (1.0 + 1.0 / std::log2(3.0)) / 2, 1e-12);
}

TEST(RerankMetrics, Baselines) {
  RerankList list;
  list.items = {3, 0, 2};
  list.labels = {0, 1, 0};
  EXPECT_EQ(list_order_scores(list), (std::vector<float>{0.0f, -1.0f, -2.0f}));
  std::vector<float> pop{10.0f, 0.0f, 10.0f, 1.0f};
  std::vector<float> s = popularity_scores(list, pop);
  EXPECT_EQ(s, (std::vector<float>{1.0f, 10.0f, 10.0f}));
  EXPECT_EQ(rank_by_scores(s), (std::vector<int>{1, 2, 0}));          // tie 10/10: position 1 first
  EXPECT_DOUBLE_EQ(map_at(list.labels, s, 1), 1.0);
  EXPECT_DOUBLE_EQ(map_at(list.labels, list_order_scores(list), 1), 0.0);
  list.items.push_back(9);
  list.labels.push_back(0);
  EXPECT_THROW(popularity_scores(list, pop), Error);
  EXPECT_EQ(list_order_name("kar"), "random order");
  EXPECT_EQ(list_order_name("first-stage"), "initial ranker");
}

TEST(RerankMetrics, RandomOrderExpectationOfOnePositive) {
  // One positive among 10, placed at each position once (a uniformly random order): the mean AP@K
  // is (1/10) sum_{i<=K} 1/i and the mean NDCG@K is (1/10) sum_{i<=K} 1/log2(i+1).
  std::vector<ListMetrics> all;
  std::vector<float> scores(10);
  for (int i = 0; i < 10; ++i) scores[i] = -static_cast<float>(i);
  for (int pos = 0; pos < 10; ++pos) {
    std::vector<uint8_t> labels(10, 0);
    labels[pos] = 1;
    all.push_back(list_metrics(labels, scores));
  }
  MetricTable t = mean_metrics(all);
  for (int ki = 0; ki < kNumMetricKs; ++ki) {
    double ap = 0, ndcg = 0;
    for (int i = 1; i <= kMetricKs[ki]; ++i) {
      ap += 1.0 / i;
      ndcg += 1.0 / std::log2(i + 1.0);
    }
    EXPECT_NEAR(t.map[ki], ap / 10, 1e-12) << "K=" << kMetricKs[ki];
    EXPECT_NEAR(t.ndcg[ki], ndcg / 10, 1e-12) << "K=" << kMetricKs[ki];
  }
  EXPECT_NEAR(t.map_at(7), 0.25928571428571429, 1e-12);  // H_7 / 10
}
