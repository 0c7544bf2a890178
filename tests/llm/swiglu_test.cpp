// The MLP's one-pass silu(gate) * up (llm/swiglu.h) against an fp64 reference (in the model:
// Llama.OnePassSwigluEqualsATensOperators).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "llm/swiglu.h"
#include "util/error.h"

using namespace rlrf::llm;

namespace {

// silu(gate) * up in fp64.
at::Tensor reference(const at::Tensor& y, int64_t inter) {
  const at::Tensor d = y.to(at::kDouble);
  const at::Tensor g = d.narrow(-1, 0, inter), u = d.narrow(-1, inter, inter);
  return g / (1 + at::exp(-g)) * u;
}

}  // namespace

TEST(Swiglu, EqualsFp64ReferenceInFp32AndWithinOneBf16Rounding) {
  at::manual_seed(3);
  c10::InferenceMode guard;
  // An odd width (past any vector width), a 3-d batch, and gates from -120 to 120: silu's far tails
  // (e^-g overflowing the naive formula's float) and values near zero.
  for (auto [rows, inter] : {std::pair<int64_t, int64_t>{1, 1}, {7, 37}, {300, 384}}) {
    at::Tensor y = at::randn({rows, 2, 2 * inter}) * 4;
    y.select(-1, 0).fill_(-120.0f);
    if (inter > 1) y.select(-1, 1).fill_(120.0f);
    y.select(-1, 2 * inter - 1).fill_(0.0f);
    const at::Tensor want = reference(y, inter);
    const at::Tensor got32 = swiglu(y, inter);
    ASSERT_EQ(got32.sizes(), at::IntArrayRef({rows, 2, inter}));
    EXPECT_EQ(got32.scalar_type(), at::kFloat);
    const double err32 = ((got32.to(at::kDouble) - want).abs() / (want.abs() + 1e-30)).max().item<double>();
    EXPECT_LT(err32, 1e-6) << rows << " x " << inter << ": fp32 relative error";
    // bf16: the inputs rounded to bf16, the result rounded once: within half a bf16 step (2^-8
    // relative: 8 significant bits) of the fp64 value of the rounded inputs, plus the fp32
    // arithmetic's share. ATen's two operators round twice.
    const at::Tensor yb = y.to(at::kBFloat16);
    const at::Tensor gotb = swiglu(yb, inter), wantb = reference(yb, inter);
    EXPECT_EQ(gotb.scalar_type(), at::kBFloat16);
    const double errb = ((gotb.to(at::kDouble) - wantb).abs() / (wantb.abs() + 1e-30)).max().item<double>();
    EXPECT_LT(errb, std::ldexp(1.0, -8) + 1e-6) << rows << " x " << inter << ": bf16 relative error";
    std::printf("  %lld x 2 x %lld: fp32 %.3g, bf16 %.3g (half a bf16 step: %.3g)\n", static_cast<long long>(rows),
                static_cast<long long>(inter), err32, errb, std::ldexp(1.0, -8));
  }
  EXPECT_FALSE(swiglu_applies(at::randn({2, 4}, at::kDouble)));
  EXPECT_THROW(swiglu(at::randn({2, 5}), 2), rlrf::Error);  // 5 is not 2 x 2
  {
    at::AutoGradMode grad(true);
    EXPECT_FALSE(swiglu_applies(at::randn({2, 4})));  // training keeps ATen's operators (and their backward)
  }
}
