// A linear layer y = x W^T + b with an optional LoRA adapter y += s * dropout(x) A^T B^T (PEFT's
// math: A [r, in] kaiming-uniform, B [out, r] zeros, s = alpha / r, or alpha / sqrt(r) with rsLoRA).
// Parameters are registered under the Hugging Face / PEFT names: "weight", "bias",
// "lora_A.weight", "lora_B.weight". LoRA weights are kept in fp32 (optimizer precision) and cast to
// the input's dtype in forward.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace rlrf::llm {

struct LoraSpec {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  bool use_rslora = false;
  double scaling() const;  // alpha / r, or alpha / sqrt(r) with rsLoRA
};

// Holds one "weight" parameter: the lora_A / lora_B children, so PEFT's key names come out.
class LoraWeightImpl : public torch::nn::Module {
 public:
  LoraWeightImpl(int64_t out_features, int64_t in_features, const at::TensorOptions& options);
  at::Tensor weight;  // [out_features, in_features]
};
TORCH_MODULE(LoraWeight);

class LinearImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options` (a checkpoint fills them). When given,
  // `weight_view` [out, in] (and `bias_view` [out]) become the parameters instead: views into a
  // larger buffer shared with sibling layers (see LlamaAttention's fused q/k/v).
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options,
             const at::Tensor& weight_view = {}, const at::Tensor& bias_view = {});

  // x [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x);

  // Adds an adapter: A ~ U(-1/sqrt(in), 1/sqrt(in)) drawn from a CPU generator seeded with `seed`,
  // B = 0 (so the layer's output is unchanged until B is trained). Replaces an existing adapter.
  void add_lora(const LoraSpec& spec, uint64_t seed);
  void remove_lora();
  bool has_lora() const { return !lora_A.is_empty(); }
  // Adapters off: forward uses W (and b) only. The DPO reference model runs with adapters off.
  void set_lora_enabled(bool enabled) { lora_enabled_ = enabled; }
  bool lora_enabled() const { return lora_enabled_; }
  bool lora_active() const { return has_lora() && lora_enabled_; }
  // W += s * B A, then the adapter is removed (PEFT's merge_and_unload).
  void merge_lora();
  const LoraSpec& lora_spec() const { return spec_; }

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
  LoraWeight lora_A{nullptr};  // weight [r, in]
  LoraWeight lora_B{nullptr};  // weight [out, r]

 private:
  int64_t in_, out_;
  LoraSpec spec_;
  bool lora_enabled_ = true;
};
TORCH_MODULE(Linear);

}  // namespace rlrf::llm
