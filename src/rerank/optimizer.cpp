// AdamW parameter groups and the cosine learning rate of reranker training (optimizer.h).
#include "rerank/optimizer.h"

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <string>
#include <vector>

namespace rlrf {

namespace {

bool is_bias(const std::string& name) {
  return name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
}

}  // namespace

std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& m, double lr, double weight_decay) {
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : m.named_parameters()) {
    if (is_bias(p.key())) no_decay.push_back(p.value());
    else decay.push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(lr).weight_decay(weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).weight_decay(0)));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr));
}

double cosine_lr(double peak, int64_t step, int64_t total_steps) {
  return peak * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / total_steps));
}

void set_lr(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

}  // namespace rlrf
