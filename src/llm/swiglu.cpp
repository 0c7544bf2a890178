// silu(gate) * up in one pass (swiglu.h).
#include "llm/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <fmt/ranges.h>

#include "llm/cpu_clones.h"
#include "llm/kernel_math.h"
#include "util/error.h"

namespace rlrf::llm {
namespace {

__attribute__((always_inline)) inline float store_as(float v, float*) { return v; }
__attribute__((always_inline)) inline uint16_t store_as(float v, uint16_t*) { return float_to_bf16(v); }

// Rows [lo, hi): out[r, j] = silu(g) * u with g = y[r, j], u = y[r, I + j]. silu(g) = g / (1 + e^-g),
// taken as g t / (1 + t) with t = e^g for g < 0, so the exponential's argument is never positive.
template <typename T>
__attribute__((always_inline)) inline void swiglu_rows_impl(const T* y, T* out, int64_t lo, int64_t hi, int64_t inter,
                                                            int64_t row_stride) {
  for (int64_t r = lo; r < hi; ++r) {
    const T* g = y + r * row_stride;
    const T* u = g + inter;
    T* o = out + r * inter;
#pragma omp simd
    for (int64_t j = 0; j < inter; ++j) {
      const float gj = to_float(g[j]);
      const float t = exp_nonpositive(gj < 0.0f ? gj : -gj);
      const float silu = (gj < 0.0f ? gj * t : gj) / (1.0f + t);
      o[j] = store_as(silu * to_float(u[j]), o);
    }
  }
}

RLRF_CPU_CLONES
void swiglu_rows(const float* y, float* out, int64_t lo, int64_t hi, int64_t inter, int64_t row_stride) {
  swiglu_rows_impl(y, out, lo, hi, inter, row_stride);
}

RLRF_CPU_CLONES
void swiglu_rows(const uint16_t* y, uint16_t* out, int64_t lo, int64_t hi, int64_t inter, int64_t row_stride) {
  swiglu_rows_impl(y, out, lo, hi, inter, row_stride);
}

}  // namespace

bool swiglu_applies(const at::Tensor& y) {
  return y.device().is_cpu() && (y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16) && y.dim() >= 1 &&
         y.stride(-1) == 1 && !at::GradMode::is_enabled();
}

at::Tensor swiglu(const at::Tensor& y_in, int64_t inter) {
  RLRF_CHECK(swiglu_applies(y_in), "swiglu: expected a CPU fp32 or bf16 tensor without gradients, got {} {}", y_in.sizes(),
             c10::toString(y_in.scalar_type()));
  RLRF_CHECK(inter > 0 && y_in.size(-1) == 2 * inter, "swiglu: last dimension {} is not 2 x intermediate ({})",
             y_in.size(-1), inter);
  const at::Tensor y = y_in.contiguous();
  std::vector<int64_t> shape = y.sizes().vec();
  shape.back() = inter;
  at::Tensor out = at::empty(shape, y.options());
  const int64_t rows = y.numel() / (2 * inter);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / inter);  // ~32k elements a task
  if (y.scalar_type() == at::kFloat) {
    const float* yp = y.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) { swiglu_rows(yp, op, lo, hi, inter, 2 * inter); });
  } else {
    const auto* yp = reinterpret_cast<const uint16_t*>(y.data_ptr<at::BFloat16>());
    auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    at::parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) { swiglu_rows(yp, op, lo, hi, inter, 2 * inter); });
  }
  return out;
}

}  // namespace rlrf::llm
