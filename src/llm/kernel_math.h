// Scalar helpers of the plain-C++ CPU kernels (attention_softmax.cpp, cpu_attention.cpp, swiglu.cpp): bf16
// conversions and an exponential that vectorises under `omp simd`.
#pragma once
#include <cstdint>
#include <cstring>

namespace rlrf::llm {

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, as c10::BFloat16 does for finite values.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float to_float(float x) { return x; }
inline float to_float(uint16_t x) { return bf16_to_float(x); }

// e^x for x <= 0 (softmax arguments after the max is subtracted): x = n ln2 + r, |r| <= ln2 / 2,
// e^r by Cephes' expf polynomial, 2^n put in the exponent bits; x < -87.3 gives 0. Relative error
// below 2e-7 (AttentionSoftmax.ExpIsWithinTwoUlpOfTheLibrarysOverItsRange).
inline float exp_nonpositive(float x) {
  const bool zero = x < -87.3f;
  x = x < -87.3f ? -87.3f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return zero ? 0.0f : er * two_n;
}

// x[j] = e^(x[j] - mx) over j < n (mx: the row's max); returns their sum. Always inlined, so the
// CPU clone calling it vectorises it for its own instruction set.
__attribute__((always_inline)) inline float exp_shifted_in_place(float* __restrict x, int64_t n, float mx) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = exp_nonpositive(x[j] - mx);
    x[j] = e;
    sum += e;
  }
  return sum;
}

}  // namespace rlrf::llm
