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
#include "runtime/row_gemm.h"
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
// gh [b, 3h] (hidden projections W_hh h, without their bias bhh [3h]), prev [b, h]; writes rz
// [b, 2h], n, hn (W_hn h + b_hn), h_t [b, h].
RLRF_CPU_CLONES
void gru_forward_step(const float* gi, int64_t gi_stride, const float* gh, const float* bhh, const float* prev,
                      float* rz, float* n, float* hn, float* h_t, int64_t b, int64_t h) {
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
      const float r = sigmoid_of(g[j] + q[j] + bhh[j]);
      const float z = sigmoid_of(g[h + j] + q[h + j] + bhh[h + j]);
      const float hnj = q[2 * h + j] + bhh[2 * h + j];
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
// ([dr dz dn * r]), and dh * z into dhz [b, h] (the part of dh_prev that skips the matmul; dhz may
// be dh itself: each element is read before it is written).
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

// The steps run on raw pointers with their small matmuls straight to BLAS (runtime/row_gemm.h): a
// step is then one gemm and one loop, without ATen's per-call views and dispatch.
struct GruRecurrence : torch::autograd::Function<GruRecurrence> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& gi_in, const at::Tensor& w_hh_in,
                               const at::Tensor& b_hh_in) {
    const at::Tensor gi = gi_in.contiguous();  // input projections of every step: row i * L + t
    const at::Tensor w_hh = w_hh_in.contiguous(), b_hh = b_hh_in.contiguous();
    const int64_t b = gi.size(0), l = gi.size(1), h = w_hh.size(1), bh = b * h;
    at::Tensor states = at::empty({l, b, h}, gi.options());       // h_t, step-major
    at::Tensor rz = at::empty({l, b, 2 * h}, gi.options());       // r, z of each step
    at::Tensor n = at::empty({l, b, h}, gi.options());            // n of each step
    at::Tensor hn = at::empty({l, b, h}, gi.options());           // W_hn h + b_hn of each step
    at::Tensor gh = at::zeros({b, 3 * h}, gi.options());          // W_hh h of the step (0 at the first)
    const at::Tensor zeros = at::zeros({b, h}, gi.options());
    const float* w = w_hh.data_ptr<float>();
    float* st = states.data_ptr<float>();
    for (int64_t t = 0; t < l; ++t) {
      const float* prev = t > 0 ? st + (t - 1) * bh : zeros.data_ptr<float>();
      if (t > 0) gemm_rows(/*trans_b=*/true, b, 3 * h, h, 1.0f, prev, h, w, h, 0.0f, gh.data_ptr<float>(), 3 * h);
      gru_forward_step(gi.data_ptr<float>() + t * 3 * h, l * 3 * h, gh.data_ptr<float>(), b_hh.data_ptr<float>(), prev,
                       rz.data_ptr<float>() + t * 2 * bh, n.data_ptr<float>() + t * bh, hn.data_ptr<float>() + t * bh,
                       st + t * bh, b, h);
    }
    ctx->save_for_backward({w_hh, states, rz, n, hn});
    return {states.transpose(0, 1).contiguous(), states.select(0, l - 1).clone()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &w_hh = saved[0], &states = saved[1], &rz = saved[2], &n = saved[3], &hn = saved[4];
    const int64_t l = states.size(0), b = states.size(1), h = w_hh.size(1), bh = b * h;
    const at::Tensor g_seq = grads[0].defined() ? grads[0].contiguous() : at::Tensor();  // [B, L, H]
    at::Tensor dh =
        grads[1].defined() ? grads[1].clone(at::MemoryFormat::Contiguous) : at::zeros({b, h}, states.options());
    at::Tensor dgi = at::empty({b, l, 3 * h}, states.options());  // d(input projections), row i * L + t
    at::Tensor dgh = at::empty({l, b, 3 * h}, states.options());  // d(hidden projections), step-major
    const at::Tensor zeros = at::zeros({b, h}, states.options());
    float* d = dh.data_ptr<float>();
    const float* st = states.data_ptr<float>();
    for (int64_t t = l - 1; t >= 0; --t) {
      if (g_seq.defined()) {  // the gradient reaching h_t from its own output
        const float* g = g_seq.data_ptr<float>() + t * h;
        for (int64_t i = 0; i < b; ++i)
          for (int64_t j = 0; j < h; ++j) d[i * h + j] += g[i * l * h + j];
      }
      const float* prev = t > 0 ? st + (t - 1) * bh : zeros.data_ptr<float>();
      float* dgh_t = dgh.data_ptr<float>() + t * b * 3 * h;
      gru_backward_step(d, prev, rz.data_ptr<float>() + t * 2 * bh, n.data_ptr<float>() + t * bh,
                        hn.data_ptr<float>() + t * bh, dgi.data_ptr<float>() + t * 3 * h, l * 3 * h, dgh_t, d, b, h);
      // dh_prev = dh * z (written over dh above) + dgh_t W_hh
      gemm_rows(/*trans_b=*/false, b, h, 3 * h, 1.0f, dgh_t, 3 * h, w_hh.data_ptr<float>(), h, 1.0f, d, h);
    }
    // The state each step read: zeros, then h_0 .. h_{L-2}.
    const at::Tensor prevs = at::cat({zeros.unsqueeze(0), states.narrow(0, 0, l - 1)}, 0).view({l * b, h});
    const at::Tensor dgh2 = dgh.view({l * b, 3 * h});
    return {dgi, at::mm(dgh2.t(), prevs), dgh2.sum(0)};
  }
};

}  // namespace

bool gru_recurrence_applies(const at::Tensor& input, const at::Tensor& w_ih) {
  return input.device().is_cpu() && input.scalar_type() == at::kFloat && w_ih.scalar_type() == at::kFloat &&
         !autocast_on(c10::DeviceType::CPU);
}

bool gru_sequence_applies(const at::Tensor& x, const at::Tensor& w_ih) {
  return gru_recurrence_applies(x, w_ih) && x.dim() == 3 && x.size(1) > 0;
}

std::pair<at::Tensor, at::Tensor> gru_recurrence(const at::Tensor& gi, const at::Tensor& w_hh, const at::Tensor& b_hh) {
  const int64_t h = w_hh.size(1);
  RLRF_CHECK(gi.dim() == 3 && gi.size(1) > 0 && gi.size(2) == 3 * h && w_hh.size(0) == 3 * h && b_hh.numel() == 3 * h,
             "gru: input projections {} do not fit the hidden weights {}", gi.sizes(), w_hh.sizes());
  RLRF_CHECK(gi.device().is_cpu() && gi.scalar_type() == at::kFloat && w_hh.scalar_type() == at::kFloat,
             "gru: the recurrence runs on fp32 CPU tensors, got {} on {}", c10::toString(gi.scalar_type()), gi.device().str());
  variable_list out = GruRecurrence::apply(gi, w_hh, b_hh);
  return {out[0], out[1]};
}

std::pair<at::Tensor, at::Tensor> gru_sequence(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                               const at::Tensor& b_ih, const at::Tensor& b_hh) {
  const int64_t h = w_hh.size(1);
  RLRF_CHECK(x.dim() == 3 && w_ih.dim() == 2 && w_ih.size(0) == 3 * h && w_ih.size(1) == x.size(2) &&
                 w_hh.size(0) == 3 * h && b_ih.numel() == 3 * h && b_hh.numel() == 3 * h,
             "gru: input {} does not fit weights {} and {}", x.sizes(), w_ih.sizes(), w_hh.sizes());
  const int64_t b = x.size(0), l = x.size(1);
  const at::Tensor gi = at::addmm(b_ih, x.reshape({b * l, x.size(2)}), w_ih.t()).view({b, l, 3 * h});
  return gru_recurrence(gi, w_hh, b_hh);
}

}  // namespace rlrf
