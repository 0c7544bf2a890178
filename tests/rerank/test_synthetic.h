// A synthetic PreparedData with a planted signal, for reranker tests: every user belongs to one of
// kGroups taste groups and every item to one genre group (item % kGroups); an item is positive in a
// user's list iff its group is the user's group. Item ids alone carry no signal (each group is
// positive for a quarter of the users), so a model without user knowledge is near random, while
// knowledge vectors (signal x one-hot group + noise, for users and items) make it learnable.
#pragma once
#include <ATen/ATen.h>
#include <cstdint>

#include <random>

#include "data/prepare.h"
#include "rerank/reranker.h"

namespace rlrf::test {

inline constexpr int kGroups = 4;

struct Planted {
  PreparedData data;
  KnowledgeVectors kv;
  std::vector<int> user_group;
};

inline Planted make_planted(int n_users = 300, int n_items = 120, int lists_per_user = 10, uint64_t seed = 7,
                            int dim = 4, double noise = 0.3, float signal = 1.0f) {
  std::mt19937_64 rng(seed);
  Planted p;
  Dataset& ds = p.data.dataset;
  ds.name = "planted";
  ds.attribute_names = {"noise"};
  ds.attribute_cardinality = {3};
  ds.item_attributes.assign(1, std::vector<int32_t>(n_items));
  for (int i = 0; i < n_items; ++i) {
    ItemInfo info;
    info.raw_id = std::to_string(i);
    info.title = "item " + std::to_string(i);
    ds.items.push_back(info);
    ds.item_attributes[0][i] = 1 + static_cast<int32_t>(rng() % 2);
  }
  std::normal_distribution<float> gauss(0.0f, static_cast<float>(noise));
  p.kv.user = at::zeros({n_users, dim});
  p.kv.item = at::zeros({n_items, dim});
  auto ua = p.kv.user.accessor<float, 2>();
  auto ia = p.kv.item.accessor<float, 2>();
  for (int i = 0; i < n_items; ++i) {
    for (int d = 0; d < dim; ++d) ia[i][d] = gauss(rng);
    ia[i][i % kGroups] += signal;
  }
  p.data.item_popularity.assign(n_items, 0.0f);
  for (int u = 0; u < n_users; ++u) {
    UserInfo info;
    info.raw_id = "u" + std::to_string(u);
    ds.users.push_back(info);
    const int g = static_cast<int>(rng() % kGroups);
    p.user_group.push_back(g);
    for (int d = 0; d < dim; ++d) ua[u][d] = gauss(rng);
    ua[u][g] += signal;
    UserSequence seq;
    seq.user = u;
    seq.split = u % 10 < 7 ? Split::kTrain : u % 10 < 9 ? Split::kValid : Split::kTest;
    p.data.sequences.push_back(seq);
    for (int l = 0; l < lists_per_user; ++l) {
      RerankList list;
      list.user = u;
      list.split = seq.split;
      while (list.items.size() < 10) {
        int32_t item = static_cast<int32_t>(rng() % n_items);
        if (std::find(list.items.begin(), list.items.end(), item) != list.items.end()) continue;
        list.items.push_back(item);
        list.labels.push_back(item % kGroups == g ? 1 : 0);
        if (seq.split == Split::kTrain && item % kGroups == g) p.data.item_popularity[item] += 1;
      }
      p.data.lists.push_back(list);
    }
  }
  return p;
}

}  // namespace rlrf::test
