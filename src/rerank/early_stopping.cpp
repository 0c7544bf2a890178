// Early stopping with the best epoch's state kept (early_stopping.h).
#include "rerank/early_stopping.h"

#include <torch/nn/module.h>
#include <torch/utils.h>

namespace rlrf {

namespace {

std::vector<at::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<at::Tensor> s;
  for (const auto& p : m.parameters()) s.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) s.push_back(b.detach().clone());
  return s;
}

}  // namespace

EarlyStopping::EarlyStopping(torch::nn::Module& m, int patience) : patience_(patience), best_(snapshot(m)) {}

bool EarlyStopping::after_epoch(int epoch, std::optional<double> score, torch::nn::Module& m) {
  const bool improved = !score || !best_score_ || *score > *best_score_;
  if (!improved) {
    ++bad_epochs_;
    return false;
  }
  best_ = snapshot(m);
  best_epoch_ = epoch;
  best_score_ = score;
  bad_epochs_ = 0;
  return true;
}

void EarlyStopping::restore_best(torch::nn::Module& m) const {
  torch::NoGradGuard guard;
  size_t i = 0;
  for (auto& p : m.parameters()) p.copy_(best_[i++]);
  for (auto& b : m.buffers()) b.copy_(best_[i++]);
}

}  // namespace rlrf
