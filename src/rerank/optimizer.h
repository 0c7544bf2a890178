// The reranker's optimiser and learning-rate schedule: AdamW with decoupled weight decay on the
// weights only (biases undecayed), stepped at a cosine learning rate that falls from the peak to 0
// over the whole training.
//
// The AdamW is flat: each parameter group's tensors become views into one contiguous buffer, and
// so do their gradients, so a step is a handful of elementwise operations over each group instead
// of about ten a tensor (the reranker has 14 to 66 small tensors; bench_rerank --profile showed
// the per-tensor steps at about a fifth of a training epoch with knowledge). Its arithmetic is libtorch's AdamW,
// element for element (RerankOptimizer.FlatAdamWFollowsLibtorchsAdamW).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace torch::nn {
class Module;
}

namespace rlrf {

class FlatAdamW {
 public:
  struct Group {
    std::vector<at::Tensor> members;  // the module's parameters, now views into `params`
    at::Tensor params, grads, exp_avg, exp_avg_sq;  // [n] each
    double weight_decay = 0;
  };

  // Takes `groups` of parameters (each with its weight decay); their values move into one buffer
  // a group and their gradients become views of a zeroed buffer. A tensor may be in one group only.
  FlatAdamW(const std::vector<std::pair<std::vector<at::Tensor>, double>>& groups, double lr, double beta1 = 0.9,
            double beta2 = 0.999, double eps = 1e-8);

  void zero_grad();  // gradients to 0 (they stay defined: backward adds into the buffers)
  void step();       // one AdamW step at the current learning rate
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  int64_t steps() const { return steps_; }
  const std::vector<Group>& groups() const { return groups_; }

 private:
  std::vector<Group> groups_;
  double lr_, beta1_, beta2_, eps_;
  int64_t steps_ = 0;
};

// AdamW over `m`'s parameters in two groups: parameters whose name ends in "bias" with weight
// decay 0, all others with `weight_decay`; both at learning rate `lr`.
std::unique_ptr<FlatAdamW> make_optimizer(torch::nn::Module& m, double lr, double weight_decay);

// Learning rate of optimizer step `step` (0-based) of `total_steps`:
// peak * (1 + cos(pi * step / total_steps)) / 2, so peak at step 0, peak / 2 half-way, 0 at the end.
double cosine_lr(double peak, int64_t step, int64_t total_steps);

}  // namespace rlrf
