// DLCM's batch norms (torch::nn::BatchNorm1d over the channels of [N, C] rows: a list's final
// state, or every item's state) in training mode as one autograd node on fp32 CPU tensors: the
// column statistics, the normalisation, the running-statistics update and the backward are a few
// passes over the rows. ATen's batch norm on the transposed [B, H, L] layout DLCM has took about as
// long as the GRU itself. The same numbers as the module (its running mean and unbiased running
// variance with its momentum, num_batches_tracked); in eval mode, for other dtypes and devices, or
// with autocast on, the module runs itself.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>

namespace rlrf {

// bn applied to x [N, C] (statistics per column over the N rows) -> [N, C].
at::Tensor batch_norm_rows(torch::nn::BatchNorm1dImpl& bn, const at::Tensor& x);

}  // namespace rlrf
