// DLCM scorer: GRU over the list, phi(final state, item states) -> per-item logit.
#include "rerank/dlcm.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <fmt/ranges.h>

#include "rerank/batch_norm_rows.h"
#include "rerank/gru.h"
#include "rerank/slot_input.h"
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
  SlotInput in;
  in.lists = x.size(0);
  in.length = x.size(1);
  in.width = x.size(2);
  in.pieces.push_back({x.reshape({in.slots(), in.width}), {}, 0});
  return forward(in);
}

at::Tensor DlcmImpl::forward(const SlotInput& in) {
  const int64_t b = in.lists, l = in.length;
  RLRF_CHECK(b > 0 && l > 0 && !in.pieces.empty(), "dlcm: empty input ({} lists of {})", b, l);
  at::Tensor seq, final_state;  // [B, L, H], [B, H]
  const std::vector<at::Tensor> w = gru->all_weights();  // w_ih, w_hh, b_ih, b_hh
  const at::Tensor& first = in.pieces.front().table;
  if (w.size() == 4 && gru_recurrence_applies(first, w[0])) {
    // The input projections from the input's pieces (slot_input.h), then the recurrence.
    const at::Tensor gi = project_slots(in, w[0], w[2]).view({b, l, -1});
    std::tie(seq, final_state) = gru_recurrence(gi, w[1], w[3]);
  } else {
    auto [s, last] = gru->forward(materialize_slots(in));  // last [1, B, H]
    seq = s;
    final_state = last.squeeze(0);
  }
  const int64_t h = seq.size(2);
  at::Tensor f = at::tanh(fc1->forward(batch_norm_rows(*bn1, final_state)));  // [B, H]
  // bn2 normalises each hidden unit over every item of every list: the item states as rows.
  at::Tensor s = batch_norm_rows(*bn2, seq.reshape({b * l, h})).view({b, l, h});  // [B, L, H]
  // The logit z0 - z1 of fc2's two outputs is one output with the rows' difference as its weights.
  const at::Tensor w_diff = fc2->weight.narrow(0, 0, 1) - fc2->weight.narrow(0, 1, 1);  // [1, H]
  const at::Tensor b_diff = fc2->bias.narrow(0, 0, 1) - fc2->bias.narrow(0, 1, 1);
  return at::linear((f.unsqueeze(1) * s).reshape({b * l, h}), w_diff, b_diff).view({b, l});  // [B, L]
}

}  // namespace rlrf
