// The optimizer side shared by SFT and DPO: AdamW over the policy's trainable parameters (LoRA
// adapters or all weights), a learning-rate schedule, gradient accumulation and clipping.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "align/schedule.h"

namespace torch::optim {
class AdamW;
}

namespace rlrf {

struct PolicyOptimizerOptions {
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class PolicyOptimizer {
 public:
  PolicyOptimizer(std::vector<at::Tensor> params, const LrSchedule& schedule, const PolicyOptimizerOptions& options);
  ~PolicyOptimizer();
  // Clips, applies the update at the scheduled learning rate, zeroes the gradients. Returns the
  // gradient norm before clipping.
  double step();
  int64_t steps_done() const { return step_; }
  double current_lr() const { return schedule_.at(step_); }

 private:
  std::vector<at::Tensor> params_;
  LrSchedule schedule_;
  PolicyOptimizerOptions options_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
  int64_t step_ = 0;
};

}  // namespace rlrf
