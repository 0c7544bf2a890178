// The core of PRM's self-attention, softmax(q k^T) v per list and head, as one autograd node with
// its backward written out, for fp32 on the CPU. A reranker's lists are short (10 items) and its
// heads narrow, so ATen's batched matmuls run one tiny BLAS call per list and head (128 a batch),
// each with its tensor bookkeeping: most of a PRM training step went there. Here each list and head
// is a few loops over L x L scores.
#pragma once
#include <ATen/core/Tensor.h>

namespace rlrf {

// q (already scaled), k, v [N, L, d] -> softmax(q k^T, -1) v [N, L, d]; gradients flow to q, k, v.
at::Tensor attention_core(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Whether attention_core takes q's kind of tensor: fp32 on the CPU with autocast off (PRM uses
// ATen's matmul and softmax otherwise). Shapes are attention_core's to check.
bool attention_core_applies(const at::Tensor& q);

}  // namespace rlrf
