// One-pass softmax of bf16 attention scores (see attention_softmax.h).
#include "llm/attention_softmax.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <cstdint>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "llm/cpu_clones.h"
#include "llm/kernel_math.h"
#include "util/error.h"

namespace rlrf::llm {

namespace {

// out[j] = softmax(s[j] + m[j]) over j < S (m may be null); buf holds S floats.
RLRF_CPU_CLONES
void softmax_row(const uint16_t* __restrict s, const uint16_t* __restrict m, uint16_t* __restrict out,
                 float* __restrict buf, int64_t S) {
  float mx = -std::numeric_limits<float>::infinity();
  if (m) {
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < S; ++j) {
      const float x = bf16_to_float(s[j]) + bf16_to_float(m[j]);
      buf[j] = x;
      mx = x > mx ? x : mx;
    }
  } else {
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < S; ++j) {
      const float x = bf16_to_float(s[j]);
      buf[j] = x;
      mx = x > mx ? x : mx;
    }
  }
  const float inv = 1.0f / exp_shifted_in_place(buf, S, mx);
#pragma omp simd
  for (int64_t j = 0; j < S; ++j) out[j] = float_to_bf16(buf[j] * inv);
}

}  // namespace

float attention_exp(float x) { return exp_nonpositive(x); }

at::Tensor attention_softmax_bf16(const at::Tensor& scores, const at::Tensor& mask, int64_t T) {
  RLRF_CHECK(scores.dim() == 2 && scores.scalar_type() == at::kBFloat16 && scores.is_contiguous() && scores.is_cpu(),
             "attention_softmax_bf16: scores should be [rows, S] bf16, contiguous, on the CPU; got {} {}",
             c10::str(scores.sizes()), c10::toString(scores.scalar_type()));
  const int64_t R = scores.size(0), S = scores.size(1);
  RLRF_CHECK(T >= 1 && R % T == 0, "attention_softmax_bf16: {} score rows are not a multiple of T = {}", R, T);
  int64_t M = 0;
  if (mask.defined()) {
    RLRF_CHECK(mask.dim() == 3 && mask.size(1) == T && mask.size(2) == S && mask.scalar_type() == at::kBFloat16 &&
                   mask.is_contiguous() && R % mask.size(0) == 0,
               "attention_softmax_bf16: mask should be [1 or batch rows, {}, {}] bf16, contiguous, for {} rows; got {} {}", T, S,
               R, c10::str(mask.sizes()), c10::toString(mask.scalar_type()));
    M = mask.size(0);
  }
  at::Tensor out = at::empty({R, S}, scores.options());
  const auto* s = reinterpret_cast<const uint16_t*>(scores.data_ptr());
  const auto* m = M > 0 ? reinterpret_cast<const uint16_t*>(mask.data_ptr()) : nullptr;
  auto* o = reinterpret_cast<uint16_t*>(out.data_ptr());
  const int64_t rows_per_mask = M > 0 ? R / M : R;
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(S, 1)), [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(S));
    for (int64_t r = begin; r < end; ++r) {
      const uint16_t* mr = m ? m + ((M == 1 ? 0 : r / rows_per_mask) * T + r % T) * S : nullptr;
      softmax_row(s + r * S, mr, o + r * S, buf.data(), S);
    }
  });
  return out;
}

}  // namespace rlrf::llm
