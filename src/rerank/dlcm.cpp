// DLCM scorer: GRU over the list, phi(final state, item states) -> per-item logit.
#include "rerank/dlcm.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <fmt/ranges.h>

#include "rerank/gru.h"
#include "util/error.h"

namespace rlrf {

DlcmImpl::DlcmImpl(int64_t in_dim, int64_t hidden) {
  gru = register_module("gru", torch::nn::GRU(torch::nn::GRUOptions(in_dim, hidden).batch_first(true)));
  bn1 = register_module("bn1", torch::nn::BatchNorm1d(hidden));
  fc1 = register_module("fc1", torch::nn::Linear(hidden, hidden));
  bn2 = register_module("bn2", torch::nn::BatchNorm1d(hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, 2));
}

at::Tensor DlcmImpl::forward(const at::Tensor& x) {
  RLRF_CHECK(x.dim() == 3, "dlcm: input expected [B, L, D], got {}", x.sizes());
  at::Tensor seq, final_state;  // [B, L, H], [B, H]
  const std::vector<at::Tensor> w = gru->all_weights();  // w_ih, w_hh, b_ih, b_hh
  if (w.size() == 4 && gru_sequence_applies(x, w[0])) {
    std::tie(seq, final_state) = gru_sequence(x, w[0], w[1], w[2], w[3]);
  } else {
    auto [s, last] = gru->forward(x);  // last [1, B, H]
    seq = s;
    final_state = last.squeeze(0);
  }
  at::Tensor f = at::tanh(fc1->forward(bn1->forward(final_state)));  // [B, H]
  at::Tensor s = bn2->forward(seq.transpose(1, 2)).transpose(1, 2);  // [B, L, H]
  // f * s flattened to rows: a linear layer on a 3-d input laid out as s (the transposed batch
  // norm's output) runs as one small matmul per list, forward and backward.
  const int64_t b = seq.size(0), l = seq.size(1);
  at::Tensor z = fc2->forward((f.unsqueeze(1) * s).reshape({b * l, -1})).view({b, l, 2});  // [B, L, 2]
  return z.select(-1, 0) - z.select(-1, 1);                                                // [B, L]
}

}  // namespace rlrf
