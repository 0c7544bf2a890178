// Batches of rerank lists and row chunks (batches.h).
#include "rerank/batches.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <algorithm>
#include <map>

#include "util/error.h"

namespace rlrf {

Batch make_batch(const PreparedData& data, const std::vector<int64_t>& lists) {
  const int64_t b = static_cast<int64_t>(lists.size());
  const int64_t l = static_cast<int64_t>(data.lists[lists[0]].items.size());
  const auto& attributes = data.dataset.item_attributes;
  const int64_t a = static_cast<int64_t>(attributes.size());
  Batch out;
  out.items = at::empty({b, l}, at::kLong);
  out.attrs = at::empty({b, l, a}, at::kLong);
  out.labels = at::empty({b, l}, at::kFloat);
  out.users = at::empty({b}, at::kLong);
  int64_t* it = out.items.data_ptr<int64_t>();
  int64_t* at_ = out.attrs.data_ptr<int64_t>();
  float* lb = out.labels.data_ptr<float>();
  int64_t* us = out.users.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const RerankList& list = data.lists[lists[i]];
    RLRF_CHECK(static_cast<int64_t>(list.items.size()) == l && list.labels.size() == list.items.size(),
               "rerank: list {} has {} items and {} labels, expected {}", lists[i], list.items.size(),
               list.labels.size(), l);
    us[i] = list.user;
    for (int64_t j = 0; j < l; ++j) {
      const int32_t item = list.items[j];
      it[i * l + j] = item;
      lb[i * l + j] = list.labels[j] > 0 ? 1.0f : 0.0f;
      for (int64_t k = 0; k < a; ++k) at_[(i * l + j) * a + k] = attributes[k][item];
    }
  }
  return out;
}

std::vector<std::vector<int64_t>> length_batches(const PreparedData& data, const std::vector<int64_t>& lists, int batch,
                                                 std::mt19937_64* rng) {
  RLRF_CHECK(batch >= 1, "rerank: batches of {} lists (need >= 1)", batch);
  std::map<size_t, std::vector<int64_t>> by_len;
  for (size_t p = 0; p < lists.size(); ++p)
    by_len[data.lists[static_cast<size_t>(lists[p])].items.size()].push_back(static_cast<int64_t>(p));
  std::vector<std::vector<int64_t>> out;
  for (auto& [len, group] : by_len) {
    if (rng) std::shuffle(group.begin(), group.end(), *rng);
    const size_t first = out.size();
    for (size_t s = 0; s < group.size(); s += static_cast<size_t>(batch))
      out.emplace_back(group.begin() + static_cast<std::ptrdiff_t>(s),
                       group.begin() + static_cast<std::ptrdiff_t>(std::min(group.size(), s + static_cast<size_t>(batch))));
    if (rng && out.size() - first >= 2 && out.back().size() == 1) {
      out[out.size() - 2].push_back(out.back()[0]);
      out.pop_back();
    }
  }
  if (rng) std::shuffle(out.begin(), out.end(), *rng);
  return out;
}

at::Tensor in_row_chunks(const at::Tensor& rows, int64_t chunk, const std::function<at::Tensor(const at::Tensor&)>& f) {
  RLRF_CHECK(chunk >= 1, "rerank: chunks of {} rows (need >= 1)", chunk);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < rows.size(0); s += chunk) parts.push_back(f(rows.narrow(0, s, std::min(chunk, rows.size(0) - s))));
  return parts.empty() ? at::Tensor() : at::cat(parts, 0);
}

}  // namespace rlrf
