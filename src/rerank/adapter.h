// The hybrid-expert adapter of KAR: maps frozen knowledge vectors (semantic space) to a few
// dimensions the reranker consumes (recommendation space). One tower per knowledge kind (user,
// item); each tower mixes S shared experts (the same networks for every tower) and P experts of its
// own with a softmax gate computed from the tower's input. Each expert is an MLP
// in_dim -> hidden -> out with a ReLU after both layers (KAR's MLP). Towers are evaluated on their
// own batches (users per list, items per candidate), which is the same function as KAR's stacked
// evaluation because a tower's output depends on its own input only.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace rlrf {

// Linear(in, hidden) -> ReLU -> Linear(hidden, out) -> ReLU; parameters fc1.*, fc2.*.
class ExpertMlpImpl : public torch::nn::Module {
 public:
  ExpertMlpImpl(int64_t in_dim, int64_t hidden, int64_t out);
  at::Tensor forward(const at::Tensor& x);  // [N, in] -> [N, out]

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ExpertMlp);

struct AdapterOptions {
  int64_t in_dim = 0;            // knowledge vector size d (all towers share it: experts are shared)
  int64_t towers = 2;            // 2: user and item; 1 when only one kind of knowledge is present
  int64_t shared_experts = 2;    // S
  int64_t specific_experts = 5;  // P per tower
  int64_t hidden = 128;
  int64_t out = 32;
};

// Parameters: shared.{s}.fc{1,2}.*, specific.{t}.{p}.fc{1,2}.*, gates.{t}.* (Linear in -> S+P).
class HybridExpertAdapterImpl : public torch::nn::Module {
 public:
  explicit HybridExpertAdapterImpl(const AdapterOptions& options);
  // One tower: x [N, in_dim] -> [N, out] = sum_e softmax(gate_t(x))_e * expert_e(x), experts ordered
  // shared first, then the tower's own.
  at::Tensor forward_tower(int64_t tower, const at::Tensor& x);
  // All towers: inputs[t] [N_t, in_dim] -> outputs[t] [N_t, out].
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& inputs);
  const AdapterOptions& options() const { return options_; }

  torch::nn::ModuleList shared{nullptr}, specific{nullptr}, gates{nullptr};

 private:
  AdapterOptions options_;
};
TORCH_MODULE(HybridExpertAdapter);

}  // namespace rlrf
