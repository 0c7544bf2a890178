// DLCM's GRU as one autograd node (gru.h).
#include "rerank/gru.h"

#include <ATen/ATen.h>
#include <cmath>
#include <cstdint>
#include "runtime/autocast.h"
#include <torch/csrc/autograd/custom_function.h>

#include <fmt/ranges.h>

#include "llm/cpu_clones.h"
#include "llm/kernel_math.h"
#include "util/error.h"

namespace rlrf {
namespace {

// The gate arithmetic of one step in one pass over plain floats, instead of about ten ATen ops of
// 64 x 64 elements each (whose dispatch, not arithmetic, was most of the step). The exponentials are
// kernel_math.h's (relative error < 2e-7), so the loops vectorise.
__attribute__((always_inline)) inline float sigmoid_of(float x) {
  const float e = llm::exp_nonpositive(-std::fabs(x));  // e^-|x|
  const float s = 1.0f / (1.0f + e);
  return x >= 0 ? s : 1.0f - s;
}
__attribute__((always_inline)) inline float tanh_of(float x) {
  const float e = llm::exp_nonpositive(-2.0f * std::fabs(x));  // e^-2|x|
  const float t = (1.0f - e) / (1.0f + e);
  return x >= 0 ? t : -t;
}

// Step t of the forward for b rows: gi_t row i at gi + i * gi_stride ([r z n] input projections),
// gh [b, 3h] (hidden projections), prev [b, h]; writes rz [b, 2h], n, hn, h_t [b, h].
RLRF_CPU_CLONES
void gru_forward_step(const float* gi, int64_t gi_stride, const float* gh, const float* prev, float* rz, float* n,
                      float* hn, float* h_t, int64_t b, int64_t h) {
  for (int64_t i = 0; i < b; ++i) {
    const float* g = gi + i * gi_stride;
    const float* q = gh + i * 3 * h;
    const float* p = prev + i * h;
    float* rz_i = rz + i * 2 * h;
    float* n_i = n + i * h;
    float* hn_i = hn + i * h;
    float* h_i = h_t + i * h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const float r = sigmoid_of(g[j] + q[j]);
      const float z = sigmoid_of(g[h + j] + q[h + j]);
      const float hnj = q[2 * h + j];
      const float nj = tanh_of(g[2 * h + j] + r * hnj);
      rz_i[j] = r;
      rz_i[h + j] = z;
      hn_i[j] = hnj;
      n_i[j] = nj;
      h_i[j] = nj + z * (p[j] - nj);
    }
  }
}

// Step t of the backward for b rows, given dh [b, h] (the gradient reaching h_t): writes the
// pre-activation gradients dgi_t (row i at dgi + i * dgi_stride: [dr dz dn]) and dgh_t [b, 3h]
// ([dr dz dn * r]), and dh * z into dhz [b, h] (the part of dh_prev that skips the matmul).
RLRF_CPU_CLONES
void gru_backward_step(const float* dh, const float* prev, const float* rz, const float* n, const float* hn,
                       float* dgi, int64_t dgi_stride, float* dgh, float* dhz, int64_t b, int64_t h) {
  for (int64_t i = 0; i < b; ++i) {
    const float* d = dh + i * h;
    const float* p = prev + i * h;
    const float* rz_i = rz + i * 2 * h;
    const float* n_i = n + i * h;
    const float* hn_i = hn + i * h;
    float* gi_i = dgi + i * dgi_stride;
    float* gh_i = dgh + i * 3 * h;
    float* dz_i = dhz + i * h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const float r = rz_i[j], z = rz_i[h + j], nj = n_i[j];
      const float dn = d[j] * (1.0f - z) * (1.0f - nj * nj);
      const float dz = d[j] * (p[j] - nj) * (z * (1.0f - z));
      const float dr = dn * hn_i[j] * (r * (1.0f - r));
      gi_i[j] = dr;
      gi_i[h + j] = dz;
      gi_i[2 * h + j] = dn;
      gh_i[j] = dr;
      gh_i[h + j] = dz;
      gh_i[2 * h + j] = dn * r;
      dz_i[j] = d[j] * z;
    }
  }
}

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
      at::Tensor h_t = states.select(0, t);
      gru_forward_step(gi.data_ptr<float>() + t * 3 * h, l * 3 * h, gh.data_ptr<float>(), prev.data_ptr<float>(),
                       rz.select(0, t).data_ptr<float>(), n.select(0, t).data_ptr<float>(),
                       hn.select(0, t).data_ptr<float>(), h_t.data_ptr<float>(), b, h);
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
    at::Tensor dh = grads[1].defined() ? grads[1].clone(at::MemoryFormat::Contiguous) : at::zeros({b, h}, x.options());
    at::Tensor dgi = at::empty({b, l, 3 * h}, x.options());  // d(input projections), row i * L + t
    at::Tensor dgh = at::empty({l, b, 3 * h}, x.options());  // d(hidden projections), step-major
    const at::Tensor zeros = at::zeros({b, h}, x.options());
    at::Tensor dhz = at::empty({b, h}, x.options());
    for (int64_t t = l - 1; t >= 0; --t) {
      if (g_seq.defined()) dh.add_(g_seq.select(1, t));
      const at::Tensor prev = t > 0 ? states.select(0, t - 1) : zeros;
      at::Tensor dgh_t = dgh.select(0, t);
      gru_backward_step(dh.data_ptr<float>(), prev.data_ptr<float>(), rz.select(0, t).data_ptr<float>(),
                        n.select(0, t).data_ptr<float>(), hn.select(0, t).data_ptr<float>(),
                        dgi.data_ptr<float>() + t * 3 * h, l * 3 * h, dgh_t.data_ptr<float>(), dhz.data_ptr<float>(), b, h);
      // dh_prev = dh * z + dgh_t W_hh
      at::addmm_out(dh, dhz, dgh_t, w_hh);
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
