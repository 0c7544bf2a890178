// Batch norm over rows as one autograd node (batch_norm_rows.h).
#include "rerank/batch_norm_rows.h"

#include <ATen/ATen.h>
#include <cmath>
#include <cstdint>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

#include <fmt/ranges.h>

#include "llm/cpu_clones.h"
#include "runtime/autocast.h"
#include "util/error.h"

namespace rlrf {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// mean [c] and biased variance [c] of the columns of x [n, c] (two passes: the variance of the
// centred values).
RLRF_CPU_CLONES
void column_moments(const float* x, int64_t n, int64_t c, float* mean, float* var) {
  for (int64_t j = 0; j < c; ++j) mean[j] = var[j] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) mean[j] += r[j];
  }
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t j = 0; j < c; ++j) mean[j] *= inv_n;
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const float d = r[j] - mean[j];
      var[j] += d * d;
    }
  }
  for (int64_t j = 0; j < c; ++j) var[j] *= inv_n;
}

// xhat = (x - mean) * invstd and y = xhat * w + b, row by row.
RLRF_CPU_CLONES
void normalise_rows(const float* x, const float* mean, const float* invstd, const float* w, const float* b, float* xhat,
                    float* y, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * c;
    float* xh = xhat + i * c;
    float* yr = y + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      xh[j] = (r[j] - mean[j]) * invstd[j];
      yr[j] = xh[j] * w[j] + b[j];
    }
  }
}

// Column sums of dy and of dy * xhat: the gradients of b and w.
RLRF_CPU_CLONES
void gradient_sums(const float* dy, const float* xhat, int64_t n, int64_t c, float* db, float* dw) {
  for (int64_t j = 0; j < c; ++j) db[j] = dw[j] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* g = dy + i * c;
    const float* xh = xhat + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      db[j] += g[j];
      dw[j] += g[j] * xh[j];
    }
  }
}

// dx = w invstd / n (n dy - sum dy - xhat sum(dy xhat)), row by row.
RLRF_CPU_CLONES
void input_gradient(const float* dy, const float* xhat, const float* scale, const float* db, const float* dw, float* dx,
                    int64_t n, int64_t c) {
  const float nf = static_cast<float>(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* g = dy + i * c;
    const float* xh = xhat + i * c;
    float* d = dx + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) d[j] = scale[j] * (nf * g[j] - db[j] - xh[j] * dw[j]);
  }
}

struct BatchNormRows : torch::autograd::Function<BatchNormRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps) {
    const at::Tensor x = x_in.contiguous(), w = weight.contiguous(), b = bias.contiguous();
    const int64_t n = x.size(0), c = x.size(1);
    at::Tensor mean = at::empty({c}, x.options()), var = at::empty({c}, x.options());
    column_moments(x.data_ptr<float>(), n, c, mean.data_ptr<float>(), var.data_ptr<float>());
    const at::Tensor invstd = (var + eps).rsqrt();
    at::Tensor xhat = at::empty_like(x), y = at::empty_like(x);
    normalise_rows(x.data_ptr<float>(), mean.data_ptr<float>(), invstd.data_ptr<float>(), w.data_ptr<float>(),
                   b.data_ptr<float>(), xhat.data_ptr<float>(), y.data_ptr<float>(), n, c);
    // The module's running statistics: the variance unbiased (n / (n - 1)).
    running_mean.mul_(1 - momentum).add_(mean, momentum);
    running_var.mul_(1 - momentum).add_(var, momentum * static_cast<double>(n) / static_cast<double>(n - 1));
    ctx->save_for_backward({xhat, invstd, w});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xhat = saved[0], &invstd = saved[1], &w = saved[2];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t n = xhat.size(0), c = xhat.size(1);
    at::Tensor db = at::empty({c}, dy.options()), dw = at::empty({c}, dy.options());
    gradient_sums(dy.data_ptr<float>(), xhat.data_ptr<float>(), n, c, db.data_ptr<float>(), dw.data_ptr<float>());
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      const at::Tensor scale = (w * invstd / static_cast<double>(n)).contiguous();
      dx = at::empty_like(dy);
      input_gradient(dy.data_ptr<float>(), xhat.data_ptr<float>(), scale.data_ptr<float>(), db.data_ptr<float>(),
                     dw.data_ptr<float>(), dx.data_ptr<float>(), n, c);
    }
    return {dx, dw, db, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor batch_norm_rows(torch::nn::BatchNorm1dImpl& bn, const at::Tensor& x) {
  RLRF_CHECK(x.dim() == 2 && x.size(1) == bn.options.num_features(), "batch norm: rows expected [N, {}], got {}",
             bn.options.num_features(), x.sizes());
  const bool one_node = bn.is_training() && bn.options.affine() && bn.options.track_running_stats() &&
                        bn.options.momentum().has_value() && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
                        bn.weight.scalar_type() == at::kFloat && !autocast_on(c10::DeviceType::CPU) && x.size(0) > 1;
  if (!one_node) return bn.forward(x);
  at::Tensor y = BatchNormRows::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, *bn.options.momentum(),
                                      bn.options.eps());
  {
    at::NoGradGuard no_grad;
    bn.num_batches_tracked.add_(1);
  }
  return y;
}

}  // namespace rlrf
