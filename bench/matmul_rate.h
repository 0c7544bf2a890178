// The machine's matmul rate: GFLOP/s of an n x n by n x n matmul in `dtype` on the current intra-op
// threads, best of 8 after 3 warm-ups. The benches' "of bound" and MFU figures divide by it.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace rlrf {

inline double square_matmul_gflops(int64_t n, at::ScalarType dtype) {
  c10::InferenceMode guard;
  at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  for (int i = 0; i < 3; ++i) at::matmul(a, b);
  double best = 1e30;
  for (int t = 0; t < 8; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    at::matmul(a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best / 1e9;
}

}  // namespace rlrf
