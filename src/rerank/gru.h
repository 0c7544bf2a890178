// The GRU of DLCM as one autograd node: a one-layer, unidirectional, batch-first GRU with a zero
// initial state, the same math as torch::nn::GRU (PyTorch's gate order r, z, n):
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
// with the backward pass written out. The input projections of all steps are one matmul, as are the
// weight gradients of all steps; a step is one small matmul and a few vector ops. torch::nn::GRU
// records about 15 autograd nodes per step; at a reranker's sizes (64 lists of 10 items, 64 hidden)
// that bookkeeping, not arithmetic, is most of a training step.
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace rlrf {

// x [B, L, D], w_ih [3H, D], w_hh [3H, H], b_ih [3H], b_hh [3H] -> (states [B, L, H], last [B, H]).
// Gradients flow to x and the four parameters. The input projections are one addmm, then
// gru_recurrence.
std::pair<at::Tensor, at::Tensor> gru_sequence(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                               const at::Tensor& b_ih, const at::Tensor& b_hh);

// The recurrence alone, from the input projections of every step gi [B, L, 3H] (x W_ih^T + b_ih,
// which a caller may compute its own way: DLCM projects its input's pieces, slot_input.h) ->
// (states, last); gradients flow to gi, w_hh and b_hh. fp32 CPU tensors.
std::pair<at::Tensor, at::Tensor> gru_recurrence(const at::Tensor& gi, const at::Tensor& w_hh, const at::Tensor& b_hh);

// Whether the recurrence runs on an input of this kind (any piece of it) with these weights: fp32
// on the CPU with autocast off.
bool gru_recurrence_applies(const at::Tensor& input, const at::Tensor& w_ih);

// Whether gru_sequence takes these inputs: fp32 on the CPU with autocast off (otherwise DLCM uses
// torch::nn::GRU).
bool gru_sequence_applies(const at::Tensor& x, const at::Tensor& w_ih);

}  // namespace rlrf
