// PRM's attention core as one autograd node (prm_attention.h).
#include "rerank/prm_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/ranges.h>

#include "llm/cpu_clones.h"
#include "runtime/autocast.h"
#include "util/error.h"

namespace rlrf {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

__attribute__((always_inline)) inline float dot(const float* __restrict a, const float* __restrict b, int64_t d) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

__attribute__((always_inline)) inline void axpy(float* __restrict y, float a, const float* __restrict x, int64_t d) {
#pragma omp simd
  for (int64_t c = 0; c < d; ++c) y[c] += a * x[c];
}

// Rows [lo, hi) of N: w = softmax(q k^T) [L, L] and o = w v [L, d] for each.
RLRF_CPU_CLONES
void attention_forward_rows(const float* q, const float* k, const float* v, float* w, float* o, int64_t lo, int64_t hi,
                            int64_t l, int64_t d) {
  for (int64_t n = lo; n < hi; ++n) {
    const float *qn = q + n * l * d, *kn = k + n * l * d, *vn = v + n * l * d;
    float *wn = w + n * l * l, *on = o + n * l * d;
    for (int64_t i = 0; i < l; ++i) {
      float* wi = wn + i * l;
      float mx = -INFINITY;
      for (int64_t j = 0; j < l; ++j) {
        wi[j] = dot(qn + i * d, kn + j * d, d);
        mx = std::max(mx, wi[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < l; ++j) sum += (wi[j] = std::exp(wi[j] - mx));
      const float inv = 1.0f / sum;
      float* oi = on + i * d;
      for (int64_t c = 0; c < d; ++c) oi[c] = 0;
      for (int64_t j = 0; j < l; ++j) {
        wi[j] *= inv;
        axpy(oi, wi[j], vn + j * d, d);
      }
    }
  }
}

// Rows [lo, hi) of the backward: from go = dL/do, the gradients of q, k and v (each zeroed here).
RLRF_CPU_CLONES
void attention_backward_rows(const float* q, const float* k, const float* v, const float* w, const float* go, float* gq,
                             float* gk, float* gv, float* ds, int64_t lo, int64_t hi, int64_t l, int64_t d) {
  for (int64_t n = lo; n < hi; ++n) {
    const float *qn = q + n * l * d, *kn = k + n * l * d, *vn = v + n * l * d, *wn = w + n * l * l, *gon = go + n * l * d;
    float *gqn = gq + n * l * d, *gkn = gk + n * l * d, *gvn = gv + n * l * d, *dsn = ds + (n - lo) * l * l;
    for (int64_t c = 0; c < l * d; ++c) gqn[c] = gkn[c] = gvn[c] = 0;
    for (int64_t i = 0; i < l; ++i) {
      const float *wi = wn + i * l, *goi = gon + i * d;
      float* dsi = dsn + i * l;
      // dw_ij = go_i . v_j; dv_j += w_ij go_i; ds_ij = w_ij (dw_ij - sum_j' w_ij' dw_ij')
      float wdw = 0;
      for (int64_t j = 0; j < l; ++j) {
        dsi[j] = dot(goi, vn + j * d, d);
        wdw += wi[j] * dsi[j];
        axpy(gvn + j * d, wi[j], goi, d);
      }
      for (int64_t j = 0; j < l; ++j) {
        dsi[j] = wi[j] * (dsi[j] - wdw);
        axpy(gqn + i * d, dsi[j], kn + j * d, d);  // dq_i += ds_ij k_j
        axpy(gkn + j * d, dsi[j], qn + i * d, d);  // dk_j += ds_ij q_i
      }
    }
  }
}

struct AttentionCore : torch::autograd::Function<AttentionCore> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in) {
    const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const int64_t n = q.size(0), l = q.size(1), d = q.size(2);
    at::Tensor w = at::empty({n, l, l}, q.options()), o = at::empty({n, l, d}, q.options());
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
    float *wp = w.data_ptr<float>(), *op = o.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t lo, int64_t hi) { attention_forward_rows(qp, kp, vp, wp, op, lo, hi, l, d); });
    ctx->save_for_backward({q, k, v, w});
    return o;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &w = saved[3];
    const at::Tensor go = grads[0].contiguous();
    const int64_t n = q.size(0), l = q.size(1), d = q.size(2);
    at::Tensor gq = at::empty_like(q), gk = at::empty_like(k), gv = at::empty_like(v);
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>(), *wp = w.data_ptr<float>(),
                *gop = go.data_ptr<float>();
    float *gqp = gq.data_ptr<float>(), *gkp = gk.data_ptr<float>(), *gvp = gv.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t lo, int64_t hi) {
      std::vector<float> ds(static_cast<size_t>((hi - lo) * l * l));
      attention_backward_rows(qp, kp, vp, wp, gop, gqp, gkp, gvp, ds.data(), lo, hi, l, d);
    });
    return {gq, gk, gv};
  }
};

}  // namespace

bool attention_core_applies(const at::Tensor& q) {
  return q.device().is_cpu() && q.scalar_type() == at::kFloat && !autocast_on(c10::DeviceType::CPU);
}

at::Tensor attention_core(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  RLRF_CHECK(q.dim() == 3 && q.size(1) > 0 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
             "attention_core: q, k, v must be [N, L, d] of one shape, got {}, {}, {}", q.sizes(), k.sizes(), v.sizes());
  RLRF_CHECK(attention_core_applies(q) && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat &&
                 k.device().is_cpu() && v.device().is_cpu(),
             "attention_core: fp32 CPU tensors only (callers check attention_core_applies)");
  return AttentionCore::apply(q, k, v);
}

}  // namespace rlrf
