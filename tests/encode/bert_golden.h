// Rows of the BERT goldens of tools/ref/encode_bert_ref.py (tests/data/encode/bert_golden.json) as
// tensors. Shared by test_encode and test_cuda.
#pragma once
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <vector>

namespace rlrf::test {

// [[..], ..] -> [rows, cols] float32.
inline at::Tensor bert_golden_rows(const nlohmann::json& j) {
  std::vector<std::vector<double>> rows = j.get<std::vector<std::vector<double>>>();
  at::Tensor t = at::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kDouble);
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t k = 0; k < rows[i].size(); ++k) t[static_cast<int64_t>(i)][static_cast<int64_t>(k)] = rows[i][k];
  return t.to(at::kFloat);
}

}  // namespace rlrf::test
