// DLCM's GRU as one autograd node (gru.h).
#include "rerank/gru.h"

#include <ATen/ATen.h>
#include <cstdint>
#include "runtime/autocast.h"
#include <torch/csrc/autograd/custom_function.h>

#include <fmt/ranges.h>

#include "util/error.h"

namespace rlrf {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct GruSequence : torch::autograd::Function<GruSequence> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w_ih,
                               const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh) {
    const at::Tensor x = x_in.contiguous();
    const int64_t b = x.size(0), l = x.size(1), d = x.size(2), h = w_hh.size(1);
    // Input projections of every step: row i * L + t.
    const at::Tensor gi = at::addmm(b_ih, x.view({b * l, d}), w_ih.t()).view({b, l, 3 * h});
    at::Tensor states = at::empty({l, b, h}, x.options());       // h_t, step-major
    at::Tensor rz = at::empty({l, b, 2 * h}, x.options());       // r, z of each step
    at::Tensor n = at::empty({l, b, h}, x.options());            // n of each step
    at::Tensor hn = at::empty({l, b, h}, x.options());           // W_hn h + b_hn of each step
    at::Tensor gh = at::empty({b, 3 * h}, x.options());
    at::Tensor prev = at::zeros({b, h}, x.options());
    for (int64_t t = 0; t < l; ++t) {
      at::addmm_out(gh, b_hh, prev, w_hh.t());
      const at::Tensor git = gi.select(1, t);
      at::Tensor rz_t = rz.select(0, t), n_t = n.select(0, t), h_t = states.select(0, t);
      at::sigmoid_out(rz_t, git.narrow(1, 0, 2 * h) + gh.narrow(1, 0, 2 * h));
      hn.select(0, t).copy_(gh.narrow(1, 2 * h, h));
      at::tanh_out(n_t, at::addcmul(git.narrow(1, 2 * h, h), rz_t.narrow(1, 0, h), gh.narrow(1, 2 * h, h)));
      // h' = n + z * (h - n)
      at::addcmul_out(h_t, n_t, rz_t.narrow(1, h, h), prev - n_t);
      prev = h_t;
    }
    ctx->save_for_backward({x, w_ih, w_hh, states, rz, n, hn});
    return {states.transpose(0, 1).contiguous(), states.select(0, l - 1).clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w_ih = saved[1], &w_hh = saved[2], &states = saved[3], &rz = saved[4],
                     &n = saved[5], &hn = saved[6];
    const int64_t b = x.size(0), l = x.size(1), d = x.size(2), h = w_hh.size(1);
    const at::Tensor& g_seq = grads[0];  // [B, L, H] or undefined
    at::Tensor dh = grads[1].defined() ? grads[1].clone() : at::zeros({b, h}, x.options());
    at::Tensor dgi = at::empty({b, l, 3 * h}, x.options());  // d(input projections), row i * L + t
    at::Tensor dgh = at::empty({l, b, 3 * h}, x.options());  // d(hidden projections), step-major
    const at::Tensor zeros = at::zeros({b, h}, x.options());
    for (int64_t t = l - 1; t >= 0; --t) {
      if (g_seq.defined()) dh.add_(g_seq.select(1, t));
      const at::Tensor prev = t > 0 ? states.select(0, t - 1) : zeros;
      const at::Tensor r = rz.select(0, t).narrow(1, 0, h), z = rz.select(0, t).narrow(1, h, h);
      const at::Tensor n_t = n.select(0, t);
      at::Tensor dgi_t = dgi.select(1, t), dgh_t = dgh.select(0, t);
      at::Tensor dr = dgi_t.narrow(1, 0, h), dz = dgi_t.narrow(1, h, h), dn = dgi_t.narrow(1, 2 * h, h);
      // dn_pre = dh * (1 - z) * (1 - n^2); dz_pre = dh * (h - n) * z * (1 - z); dr_pre = dn_pre * hn * r * (1 - r)
      at::mul_out(dn, dh * (1 - z), 1 - n_t * n_t);
      at::mul_out(dz, dh * (prev - n_t), z * (1 - z));
      at::mul_out(dr, dn * hn.select(0, t), r * (1 - r));
      dgh_t.narrow(1, 0, 2 * h).copy_(dgi_t.narrow(1, 0, 2 * h));
      at::Tensor dgh_n = dgh_t.narrow(1, 2 * h, h);
      at::mul_out(dgh_n, dn, r);
      // dh_prev = dh * z + dgh_t W_hh
      dh = at::addmm(dh * z, dgh_t, w_hh);
    }
    const at::Tensor dgi2 = dgi.view({b * l, 3 * h}), x2 = x.view({b * l, d});
    // The state each step read: zeros, then h_0 .. h_{L-2}.
    const at::Tensor prevs = at::cat({zeros.unsqueeze(0), states.narrow(0, 0, l - 1)}, 0).view({l * b, h});
    const at::Tensor dgh2 = dgh.view({l * b, 3 * h});
    return {at::mm(dgi2, w_ih).view({b, l, d}), at::mm(dgi2.t(), x2), at::mm(dgh2.t(), prevs), dgi2.sum(0),
            dgh2.sum(0)};
  }
};

}  // namespace

bool gru_sequence_applies(const at::Tensor& x, const at::Tensor& w_ih) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && w_ih.scalar_type() == at::kFloat &&
         !autocast_on(c10::DeviceType::CPU) && x.dim() == 3 && x.size(1) > 0;
}

std::pair<at::Tensor, at::Tensor> gru_sequence(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                               const at::Tensor& b_ih, const at::Tensor& b_hh) {
  const int64_t h = w_hh.size(1);
  RLRF_CHECK(x.dim() == 3 && w_ih.dim() == 2 && w_ih.size(0) == 3 * h && w_ih.size(1) == x.size(2) &&
                 w_hh.size(0) == 3 * h && b_ih.numel() == 3 * h && b_hh.numel() == 3 * h,
             "gru: input {} does not fit weights {} and {}", x.sizes(), w_ih.sizes(), w_hh.sizes());
  variable_list out = GruSequence::apply(x, w_ih, w_hh, b_ih, b_hh);
  return {out[0], out[1]};
}

}  // namespace rlrf
