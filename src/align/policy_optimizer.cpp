// AdamW with a schedule, clipping and zeroed gradients between optimizer steps.
#include "align/policy_optimizer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "llm/lora.h"
#include "util/error.h"

namespace rlrf {

PolicyOptimizer::PolicyOptimizer(std::vector<at::Tensor> params, const LrSchedule& schedule,
                                 const PolicyOptimizerOptions& options)
    : params_(std::move(params)), schedule_(schedule), options_(options) {
  RLRF_CHECK(!params_.empty(), "policy optimizer: the model has no trainable parameters (LoRA not applied?)");
  torch::optim::AdamWOptions o(schedule_.at(0));
  o.betas({options_.beta1, options_.beta2}).eps(options_.eps).weight_decay(options_.weight_decay);
  adamw_ = std::make_unique<torch::optim::AdamW>(params_, o);
}

PolicyOptimizer::~PolicyOptimizer() = default;

double PolicyOptimizer::step() {
  double norm = 0;
  if (options_.max_grad_norm > 0) {
    norm = torch::nn::utils::clip_grad_norm_(params_, options_.max_grad_norm);
  } else {
    at::NoGradGuard guard;
    double sq = 0;
    for (const at::Tensor& p : params_)
      if (p.grad().defined()) sq += p.grad().to(at::kFloat).pow(2).sum().item<double>();
    norm = std::sqrt(sq);
  }
  double lr = schedule_.at(step_);
  for (auto& group : adamw_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  adamw_->step();
  adamw_->zero_grad();
  ++step_;
  return norm;
}

at::ScalarType training_compute_dtype(llm::LlamaForCausalLM& model, const std::string& dtype, const std::string& who) {
  for (auto& [name, p] : llm::named_trainable_parameters(model)) {
    RLRF_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble,
               "{}: trained parameter '{}' is {}; trained weights must be fp32 masters (load the model in fp32 and set "
               "dtype = \"bf16\" for bf16 compute)",
               who, name, llm::dtype_name(p.scalar_type()));
  }
  if (dtype.empty()) return model->dtype();
  at::ScalarType t = llm::parse_dtype(dtype);
  return model->dtype() == at::kDouble ? at::kDouble : t;
}

}  // namespace rlrf
