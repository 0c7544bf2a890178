// The reranker's optimiser and learning-rate schedule: AdamW with decoupled weight decay on the
// weights only (biases undecayed), stepped at a cosine learning rate that falls from the peak to 0
// over the whole training.
#pragma once
#include <cstdint>
#include <memory>

namespace torch::nn {
class Module;
}
namespace torch::optim {
class AdamW;
}

namespace rlrf {

// AdamW over `m`'s parameters in two groups: parameters whose name ends in "bias" with weight
// decay 0, all others with `weight_decay`; both at learning rate `lr`.
std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& m, double lr, double weight_decay);

// Learning rate of optimizer step `step` (0-based) of `total_steps`:
// peak * (1 + cos(pi * step / total_steps)) / 2, so peak at step 0, peak / 2 half-way, 0 at the end.
double cosine_lr(double peak, int64_t step, int64_t total_steps);

// Sets the learning rate of every parameter group of `opt`.
void set_lr(torch::optim::AdamW& opt, double lr);

}  // namespace rlrf
