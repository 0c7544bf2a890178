// A hybrid-expert adapter tower as one autograd node (expert_mixture.h).
#include "rerank/expert_mixture.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
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

struct Sizes {
  int64_t n, in, experts, hidden, out;
  int64_t layer1() const { return experts * hidden; }  // columns of layer 1 in the joint matmul
  int64_t joint() const { return layer1() + experts; }  // + the gate's logits
};

// A select the compiler vectorises to one max (a guarded store in place would stay scalar).
__attribute__((always_inline)) inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

// ReLU on layer 1's columns of a [n, joint], in place.
RLRF_CPU_CLONES
void relu_layer1_rows(float* a, Sizes s) {
  for (int64_t r = 0; r < s.n; ++r) {
    float* ar = a + r * s.joint();
#pragma omp simd
    for (int64_t c = 0; c < s.layer1(); ++c) ar[c] = relu(ar[c]);
  }
}

// For each row: the gate's softmax g [n, E] of a's last E columns, layer 2's bias and ReLU on
// o [E, n, out] in place, and y [n, out] = sum_e g_e o_e.
RLRF_CPU_CLONES
void mixture_forward_rows(const float* a, float* o, const float* b2, float* g, float* y, Sizes s) {
  const int64_t joint = s.joint();
  for (int64_t r = 0; r < s.n; ++r) {
    const float* ar = a + r * joint;
    const float* logit = ar + s.layer1();
    float* gr = g + r * s.experts;
    float mx = -INFINITY, sum = 0;
    for (int64_t e = 0; e < s.experts; ++e) mx = std::max(mx, logit[e]);
    for (int64_t e = 0; e < s.experts; ++e) sum += (gr[e] = std::exp(logit[e] - mx));
    for (int64_t e = 0; e < s.experts; ++e) gr[e] /= sum;
    float* yr = y + r * s.out;
    for (int64_t k = 0; k < s.out; ++k) yr[k] = 0;
    for (int64_t e = 0; e < s.experts; ++e) {
      float* oe = o + (e * s.n + r) * s.out;
      const float* be = b2 + e * s.out;
      const float ge = gr[e];
#pragma omp simd
      for (int64_t k = 0; k < s.out; ++k) {
        oe[k] = relu(oe[k] + be[k]);
        yr[k] += ge * oe[k];
      }
    }
  }
}

// From gy [n, out]: dp [E, n, out] (layer 2's pre-activation gradients) and the gate's logit
// gradients into da's last E columns.
RLRF_CPU_CLONES
void mixture_backward_rows(const float* gy, const float* o, const float* g, float* dp, float* da, Sizes s) {
  const int64_t joint = s.joint();
  std::vector<float> dg(static_cast<size_t>(s.experts));
  for (int64_t r = 0; r < s.n; ++r) {
    const float *gyr = gy + r * s.out, *gr = g + r * s.experts;
    float wdg = 0;
    for (int64_t e = 0; e < s.experts; ++e) {
      const float* oe = o + (e * s.n + r) * s.out;
      float* dpe = dp + (e * s.n + r) * s.out;
      const float ge = gr[e];
      float d = 0;
#pragma omp simd reduction(+ : d)
      for (int64_t k = 0; k < s.out; ++k) {
        d += gyr[k] * oe[k];
        dpe[k] = oe[k] > 0 ? ge * gyr[k] : 0.0f;
      }
      dg[e] = d;
      wdg += ge * d;
    }
    float* dlogit = da + r * joint + s.layer1();
    for (int64_t e = 0; e < s.experts; ++e) dlogit[e] = gr[e] * (dg[e] - wdg);
  }
}

// da's column block of expert e = dh (the gradient of its hidden layer) where its ReLU passed.
RLRF_CPU_CLONES
void relu_mask_into(const float* dh, const float* a, float* da, int64_t e, Sizes s) {
  const int64_t joint = s.joint(), off = e * s.hidden;
  for (int64_t r = 0; r < s.n; ++r) {
    const float *dhr = dh + r * s.hidden, *ar = a + r * joint + off;
    float* dar = da + r * joint + off;
#pragma omp simd
    for (int64_t c = 0; c < s.hidden; ++c) dar[c] = ar[c] > 0 ? dhr[c] : 0.0f;
  }
}

Sizes sizes_of(const at::Tensor& x, at::TensorList p) {
  const int64_t experts = (static_cast<int64_t>(p.size()) - 2) / 4;
  return {x.size(0), x.size(1), experts, p[0].size(0), p[2 * experts].size(0)};
}

struct ExpertMixture : torch::autograd::Function<ExpertMixture> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, at::TensorList p) {
    const at::Tensor x = x_in.contiguous();
    const Sizes s = sizes_of(x, p);
    const int64_t E = s.experts;
    std::vector<at::Tensor> w, b;
    for (int64_t e = 0; e < E; ++e) {
      w.push_back(p[e]);
      b.push_back(p[E + e]);
    }
    w.push_back(p[4 * E]);
    b.push_back(p[4 * E + 1]);
    const at::Tensor wcat = at::cat(w, 0), bcat = at::cat(b, 0);  // [joint, in], [joint]
    at::Tensor a = at::addmm(bcat, x, wcat.t());                   // [n, joint]: every layer 1 and the gate
    float* ap = a.data_ptr<float>();
    relu_layer1_rows(ap, s);
    at::Tensor o = at::empty({E, s.n, s.out}, x.options());  // layer 2, one matmul per expert's column block
    for (int64_t e = 0; e < E; ++e) {
      at::Tensor oe = o.select(0, e);
      at::mm_out(oe, a.narrow(1, e * s.hidden, s.hidden), p[2 * E + e].t());
    }
    const at::Tensor b2 = at::stack(p.slice(3 * E, E), 0).contiguous();  // [E, out]
    at::Tensor g = at::empty({s.n, E}, x.options()), y = at::empty({s.n, s.out}, x.options());
    mixture_forward_rows(ap, o.data_ptr<float>(), b2.data_ptr<float>(), g.data_ptr<float>(), y.data_ptr<float>(), s);
    std::vector<at::Tensor> saved{x, wcat, a, o, g};
    for (const auto& t : p.slice(2 * E, E)) saved.push_back(t);
    ctx->save_for_backward(saved);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &wcat = saved[1], &a = saved[2], &o = saved[3], &g = saved[4];
    const int64_t E = g.size(1);
    const Sizes s{x.size(0), x.size(1), E, (a.size(1) - E) / E, o.size(2)};
    const at::Tensor gy = grads[0].contiguous();
    at::Tensor dp = at::empty_like(o), da = at::empty_like(a);
    mixture_backward_rows(gy.data_ptr<float>(), o.data_ptr<float>(), g.data_ptr<float>(), dp.data_ptr<float>(),
                          da.data_ptr<float>(), s);
    variable_list out(1 + 4 * E + 2);
    for (int64_t e = 0; e < E; ++e) {
      const at::Tensor dpe = dp.select(0, e), he = a.narrow(1, e * s.hidden, s.hidden), w2e = saved[5 + e];
      out[1 + 2 * E + e] = at::mm(dpe.t(), he);  // dW2_e [out, hidden]
      out[1 + 3 * E + e] = dpe.sum(0);           // db2_e
      const at::Tensor dh = at::mm(dpe, w2e);    // [n, hidden]
      relu_mask_into(dh.data_ptr<float>(), a.data_ptr<float>(), da.data_ptr<float>(), e, s);
    }
    const at::Tensor dw = at::mm(da.t(), x), db = da.sum(0);  // [joint, in], [joint]
    for (int64_t e = 0; e < E; ++e) {
      out[1 + e] = dw.narrow(0, e * s.hidden, s.hidden);
      out[1 + E + e] = db.narrow(0, e * s.hidden, s.hidden);
    }
    out[1 + 4 * E] = dw.narrow(0, s.layer1(), E);
    out[1 + 4 * E + 1] = db.narrow(0, s.layer1(), E);
    if (ctx->needs_input_grad(0)) out[0] = at::mm(da, wcat);
    return out;
  }
};

}  // namespace

bool expert_mixture_applies(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 2 && x.size(0) > 0 &&
         !autocast_on(c10::DeviceType::CPU);
}

at::Tensor expert_mixture(const at::Tensor& x, at::TensorList p) {
  RLRF_CHECK(expert_mixture_applies(x), "expert_mixture: x must be a non-empty fp32 CPU [N, in] tensor, got {} {}",
             x.sizes(), c10::toString(x.scalar_type()));
  RLRF_CHECK(p.size() >= 6 && (p.size() - 2) % 4 == 0, "expert_mixture: {} parameters; expected 4 per expert + 2",
             p.size());
  const int64_t E = (static_cast<int64_t>(p.size()) - 2) / 4, in = x.size(1), hidden = p[0].size(0),
                out = p[2 * E].size(0);
  for (int64_t e = 0; e < E; ++e) {
    RLRF_CHECK(p[e].sizes() == at::IntArrayRef({hidden, in}) && p[E + e].sizes() == at::IntArrayRef({hidden}) &&
                   p[2 * E + e].sizes() == at::IntArrayRef({out, hidden}) && p[3 * E + e].sizes() == at::IntArrayRef({out}),
               "expert_mixture: expert {} has w1 {}, b1 {}, w2 {}, b2 {}; expected [{}, {}], [{}], [{}, {}], [{}]", e,
               p[e].sizes(), p[E + e].sizes(), p[2 * E + e].sizes(), p[3 * E + e].sizes(), hidden, in, hidden, out,
               hidden, out);
  }
  RLRF_CHECK(p[4 * E].sizes() == at::IntArrayRef({E, in}) && p[4 * E + 1].sizes() == at::IntArrayRef({E}),
             "expert_mixture: gate w {} b {}; expected [{}, {}], [{}]", p[4 * E].sizes(), p[4 * E + 1].sizes(), E, in, E);
  for (const auto& t : p)
    RLRF_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, "expert_mixture: fp32 CPU parameters only");
  return ExpertMixture::apply(x, p);
}

}  // namespace rlrf
