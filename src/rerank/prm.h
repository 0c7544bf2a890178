// PRM (Pei et al. 2019) in KAR's form: the item inputs plus a fixed sinusoidal position encoding go
// through one multi-head self-attention (2 heads, PyTorch's nn.MultiheadAttention parameterisation);
// an MLP [200, 80] with ReLU reads concat(attention output, input) and Linear -> 1 gives the logit
// (the score is its sigmoid). The position table follows KAR: row 0 is all zeros, row p > 0 holds
// sin(p / 10000^(2(j/2)/D)) at even j and cos(...) at odd j.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "rerank/slot_input.h"

namespace rlrf {

// KAR's position table [len, dim] (float32, CPU).
at::Tensor prm_position_table(int64_t len, int64_t dim);

// Self-attention with nn.MultiheadAttention's parameters: in_proj_weight [3D, D], in_proj_bias [3D],
// out_proj.{weight,bias}. No dropout, no mask (lists are full).
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t dim, int64_t heads);
  at::Tensor forward(const at::Tensor& x);  // [B, L, D] -> [B, L, D]
  // From the in-projections [B, L, 3D] (q, k, v: x in_proj_weight^T + in_proj_bias) -> [B, L, D].
  at::Tensor attend(const at::Tensor& qkv);

  at::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t dim_, heads_;
};
TORCH_MODULE(SelfAttention);

// Parameters: attn.*, mlp.{0,1,...}.* (one Linear per MLP layer), fc_out.*.
class PrmImpl : public torch::nn::Module {
 public:
  PrmImpl(int64_t in_dim, int64_t heads, const std::vector<int64_t>& mlp);
  at::Tensor forward(const at::Tensor& x);  // x [B, L, in_dim] -> logits [B, L]
  // The same from the input's pieces (slot_input.h): on fp32 CPU tensors the positions are one more
  // piece, and the attention's in-projection and the first MLP layer's input half are computed
  // piece by piece; elsewhere the rows are built and read as by forward(x).
  at::Tensor forward(const SlotInput& in);

  SelfAttention attn{nullptr};
  torch::nn::ModuleList mlp{nullptr};
  torch::nn::Linear fc_out{nullptr};

 private:
  int64_t in_dim_;
  at::Tensor positions_;  // cached table, grown on demand
};
TORCH_MODULE(Prm);

}  // namespace rlrf
