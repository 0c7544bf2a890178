// Linear layer with an optional LoRA adapter (PEFT's math and parameter names).
#include "llm/linear.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <cstdint>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>

#include "util/error.h"

namespace rlrf::llm {

double LoraSpec::scaling() const { return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }

LoraWeightImpl::LoraWeightImpl(int64_t out_features, int64_t in_features, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::zeros({out_features, in_features}, options));
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const at::TensorOptions& options,
                       const at::Tensor& weight_view, const at::Tensor& bias_view)
    : in_(in_features), out_(out_features) {
  weight = register_parameter("weight", weight_view.defined() ? weight_view : at::empty({out_features, in_features}, options));
  RLRF_CHECK(weight.sizes() == at::IntArrayRef({out_features, in_features}), "Linear: weight view of shape {}",
             c10::str(weight.sizes()));
  if (with_bias) bias = register_parameter("bias", bias_view.defined() ? bias_view : at::zeros({out_features}, options));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = at::linear(x, weight, bias);
  if (lora_A && lora_enabled_) {
    at::Tensor h = spec_.dropout > 0 ? at::dropout(x, spec_.dropout, is_training()) : x;
    const auto dt = x.scalar_type();
    h = at::linear(at::linear(h, lora_A->weight.to(dt)), lora_B->weight.to(dt));
    // The sum in the input's dtype: under autocast (bf16 matmuls on fp32 activations) y and h come
    // back in bf16, and adding them there would round away a small adapter's contribution.
    y = y.to(dt) + h.to(dt) * spec_.scaling();
  }
  return y;
}

void LinearImpl::add_lora(const LoraSpec& spec, uint64_t seed) {
  RLRF_CHECK(spec.r > 0, "LoRA rank r must be positive, got {}", spec.r);
  RLRF_CHECK(spec.dropout >= 0 && spec.dropout < 1, "LoRA dropout must lie in [0, 1), got {}", spec.dropout);
  remove_lora();
  spec_ = spec;
  auto options = weight.options().dtype(weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  lora_A = register_module("lora_A", LoraWeight(spec.r, in_, options));
  lora_B = register_module("lora_B", LoraWeight(out_, spec.r, options));
  {
    torch::NoGradGuard no_grad;
    // kaiming_uniform_(a = sqrt(5)) on [r, in]: bound = sqrt(6 / ((1 + 5) * in)) = 1 / sqrt(in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::Tensor a = at::empty({spec.r, in_}, at::TensorOptions().dtype(at::kFloat));  // drawn on CPU
    a.uniform_(-bound, bound, gen);
    lora_A->weight.copy_(a);
    lora_B->weight.zero_();
  }
  lora_enabled_ = true;
}

void LinearImpl::remove_lora() {
  if (!lora_A) return;
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = nullptr;
  lora_B = nullptr;
}

void LinearImpl::merge_lora() {
  if (!lora_A) return;
  {
    torch::NoGradGuard no_grad;
    at::Tensor delta = at::matmul(lora_B->weight, lora_A->weight) * spec_.scaling();  // [out, in] fp32
    // Into bf16 weights this rounds: a delta below half a bf16 step of w (|w| ~ 0.3: ~1e-3) is lost.
    // Policies that must keep it merge in fp32 (lora.h load_merged_policy).
    weight.copy_((weight.to(delta.scalar_type()) + delta).to(weight.scalar_type()));
  }
  remove_lora();
}

}  // namespace rlrf::llm
