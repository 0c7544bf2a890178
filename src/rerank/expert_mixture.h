// One tower of the hybrid-expert adapter (adapter.h) as one autograd node with its backward written
// out, for fp32 on the CPU. Through ATen's ops a tower is a stack of the experts' weights, two
// batched matmuls (which this libtorch runs as one small BLAS call per expert, each with its tensor
// bookkeeping), a softmax gate and a weighted sum, each a pass over memory and a node of the graph.
// Here layer 1 of every expert and the gate are one matmul, layer 2 one matmul per expert over its
// column block, and the biases, ReLUs, softmax and mixture one loop over the rows; the backward is
// the same matmuls transposed. Same FLOPs as ATen's path; what goes is the overhead around them.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace rlrf {

// x [N, in] -> [N, out] = sum_e softmax(x wg^T + bg)_e * relu(relu(x w1_e^T + b1_e) w2_e^T + b2_e).
// params: w1_0..w1_{E-1} [hidden, in], b1_0.. [hidden], w2_0.. [out, hidden], b2_0.. [out], wg [E, in],
// bg [E] (4E + 2 tensors). Gradients flow to every parameter and to x when x requires one.
at::Tensor expert_mixture(const at::Tensor& x, at::TensorList params);

// Whether expert_mixture takes x's kind of tensor: fp32 on the CPU with autocast off and at least one
// row (the adapter uses ATen's ops otherwise).
bool expert_mixture_applies(const at::Tensor& x);

}  // namespace rlrf
