// Flat AdamW parameter groups and the cosine learning rate of reranker training (optimizer.h).
#include "rerank/optimizer.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/module.h>

#include <cmath>
#include <string>

#include "util/error.h"

namespace rlrf {

namespace {

bool is_bias(const std::string& name) {
  return name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
}

}  // namespace

FlatAdamW::FlatAdamW(const std::vector<std::pair<std::vector<at::Tensor>, double>>& groups, double lr, double beta1,
                     double beta2, double eps)
    : lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  torch::NoGradGuard guard;
  for (const auto& [members, decay] : groups) {
    if (members.empty()) continue;
    int64_t n = 0;
    for (const at::Tensor& p : members) {
      RLRF_CHECK(p.is_leaf() && p.requires_grad(), "FlatAdamW: a parameter of shape {} is not a trainable leaf",
                 c10::str(p.sizes()));
      RLRF_CHECK(p.scalar_type() == members[0].scalar_type() && p.device() == members[0].device(),
                 "FlatAdamW: the parameters of one group must share dtype and device ({} vs {})",
                 c10::toString(p.scalar_type()), c10::toString(members[0].scalar_type()));
      n += p.numel();
    }
    Group g;
    g.members = members;
    g.weight_decay = decay;
    g.params = at::empty({n}, members[0].options().requires_grad(false));
    g.grads = at::zeros({n}, g.params.options());
    g.exp_avg = at::zeros({n}, g.params.options());
    g.exp_avg_sq = at::zeros({n}, g.params.options());
    int64_t off = 0;
    for (const at::Tensor& p : members) {
      const int64_t k = p.numel();
      at::Tensor slot = g.params.narrow(0, off, k).view(p.sizes());
      slot.copy_(p);
      at::Tensor(p).set_(slot);  // the module's tensor now lives in the buffer
      at::Tensor(p).mutable_grad() = g.grads.narrow(0, off, k).view(p.sizes());
      off += k;
    }
    groups_.push_back(std::move(g));
  }
}

void FlatAdamW::zero_grad() {
  for (Group& g : groups_) g.grads.zero_();
}

void FlatAdamW::step() {
  torch::NoGradGuard guard;
  ++steps_;
  const double bias_correction1 = 1 - std::pow(beta1_, static_cast<double>(steps_));
  const double bias_correction2 = 1 - std::pow(beta2_, static_cast<double>(steps_));
  const double step_size = lr_ / bias_correction1;
  for (Group& g : groups_) {
    // A gradient that autograd replaced rather than added into would be lost: refuse it.
    for (const at::Tensor& p : g.members)
      RLRF_CHECK(p.grad().defined() && p.grad().data_ptr() >= g.grads.data_ptr() &&
                     p.grad().data_ptr() < static_cast<char*>(g.grads.data_ptr()) + g.grads.nbytes(),
                 "FlatAdamW: the gradient of a parameter of shape {} left the optimizer's buffer",
                 c10::str(p.sizes()));
    if (g.weight_decay != 0) g.params.mul_(1 - lr_ * g.weight_decay);
    g.exp_avg.mul_(beta1_).add_(g.grads, 1 - beta1_);
    g.exp_avg_sq.mul_(beta2_).addcmul_(g.grads, g.grads, 1 - beta2_);
    const at::Tensor denom = (g.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(eps_);
    g.params.addcdiv_(g.exp_avg, denom, -step_size);
  }
}

std::unique_ptr<FlatAdamW> make_optimizer(torch::nn::Module& m, double lr, double weight_decay) {
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : m.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    if (is_bias(p.key())) no_decay.push_back(p.value());
    else decay.push_back(p.value());
  }
  return std::make_unique<FlatAdamW>(
      std::vector<std::pair<std::vector<at::Tensor>, double>>{{decay, weight_decay}, {no_decay, 0.0}}, lr);
}

double cosine_lr(double peak, int64_t step, int64_t total_steps) {
  return peak * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / total_steps));
}

}  // namespace rlrf
