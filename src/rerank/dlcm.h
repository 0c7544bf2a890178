// DLCM (Ai et al. 2018) in KAR's form: a GRU reads the list in its initial order; each item is scored
// by phi(final state, item state): the final state goes through batch-norm, Linear and tanh, the
// per-item states through batch-norm, their elementwise product through Linear -> 2, and the score is
// softmax column 0. We return the logit z0 - z1 (softmax column 0 = sigmoid(z0 - z1)), so the loss
// can be a numerically stable BCE-with-logits; rankings and probabilities are the same.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include "rerank/slot_input.h"

namespace rlrf {

// Parameters: gru.{weight,bias}_{ih,hh}_l0, bn1.*, fc1.*, bn2.*, fc2.* (the names of KAR's module).
class DlcmImpl : public torch::nn::Module {
 public:
  DlcmImpl(int64_t in_dim, int64_t hidden);
  at::Tensor forward(const at::Tensor& x);  // x [B, L, in_dim] -> logits [B, L]
  // The same from the input's pieces: on fp32 CPU tensors the GRU's input projections are computed
  // piece by piece (slot_input.h); elsewhere the input is built and read by torch::nn::GRU.
  at::Tensor forward(const SlotInput& in);

  torch::nn::GRU gru{nullptr};
  torch::nn::BatchNorm1d bn1{nullptr}, bn2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Dlcm);

}  // namespace rlrf
