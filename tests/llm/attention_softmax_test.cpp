// The one-pass bf16 attention softmax (llm/attention_softmax.h) against ATen's operators, which it
// replaces: mask add, bf16 -> fp32, softmax, fp32 -> bf16.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "llm/attention_softmax.h"
#include "llm/llm_test_util.h"

using namespace rlrf::llm;

TEST(AttentionSoftmax, ExpIsWithinTwoUlpOfTheLibrarysOverItsRange) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f * static_cast<float>(i) / 200000.0f;
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(attention_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 2.5e-7) << "largest relative error of e^x over [-87, 0]";
  EXPECT_EQ(attention_exp(-88.0f), 0.0f);
  EXPECT_EQ(attention_exp(std::numeric_limits<float>::lowest()), 0.0f);
  EXPECT_EQ(attention_exp(0.0f), 1.0f);
  std::printf("  largest relative error of e^x over [-87, 0]: %.3g\n", worst);
}

TEST(AttentionSoftmax, EqualsATensMaskAddAndFp32Softmax) {
  // Scores of 3 batch rows x 2 heads x T = 5 queries over S = 37 keys (odd, past any vector width),
  // a per-row causal-and-padding mask (one query row sees no key at all: its pad query) and one
  // mask shared by every row.
  const int64_t B = 3, H = 2, T = 5, S = 37;
  const double lowest = -3.3895313892515355e38;
  at::manual_seed(7);
  at::Tensor scores = (at::randn({B * H * T, S}) * 4).to(at::kBFloat16);
  at::Tensor allowed = at::ones({B, T, S}, at::kBool);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) allowed[b][t].narrow(0, S - T + t + 1, T - t - 1).fill_(false);  // causal
  allowed[1].narrow(1, 0, 9).fill_(false);                                                         // left padding
  allowed[2][0].fill_(false);                                                                       // a pad query
  at::Tensor mask = at::zeros({B, T, S}, at::kBFloat16).masked_fill_(allowed.logical_not(), lowest);
  auto reference = [&](const at::Tensor& m) {
    at::Tensor s = scores.view({B, H, T, S});
    if (m.defined()) s = s + (m.size(0) == 1 ? m.unsqueeze(0) : m.unsqueeze(1));
    return at::softmax(s, -1, at::kFloat).to(at::kBFloat16).view({B * H * T, S});
  };
  for (int variant = 0; variant < 3; ++variant) {
    const at::Tensor m = variant == 0 ? mask : variant == 1 ? mask.narrow(0, 1, 1).contiguous() : at::Tensor();
    const at::Tensor got = attention_softmax_bf16(scores, m, T), want = reference(m);
    const at::Tensor diff = (got.to(at::kFloat) - want.to(at::kFloat)).abs();
    // At most one bf16 step (2^-8 relative) apart, and almost all equal.
    EXPECT_TRUE(at::all(diff <= want.to(at::kFloat).abs() * (1.0 / 256) + 1e-30).item<bool>())
        << "mask variant " << variant << ": max |diff| " << diff.max().item<double>();
    const double equal = (got == want).to(at::kFloat).mean().item<double>();
    EXPECT_GT(equal, 0.98) << "mask variant " << variant;
    EXPECT_TRUE(at::allclose(got.to(at::kFloat).sum(-1), at::ones({B * H * T}), 0, 0.02)) << "rows sum to 1";
    std::printf("  mask variant %d: %.4f of probabilities equal, max |diff| %.3g\n", variant, equal, diff.max().item<double>());
  }
  // Masked keys get exactly 0; the pad query (no key allowed) is uniform, as ATen gives it.
  const at::Tensor got = attention_softmax_bf16(scores, mask, T).view({B, H, T, S});
  EXPECT_EQ(got[1][0][2].narrow(0, 0, 9).abs().sum().item<double>(), 0.0);
  EXPECT_NEAR(got[2][1][0][5].item<double>(), 1.0 / S, 1e-3);
}

TEST(AttentionSoftmax, RefusesBadShapesByName) {
  at::Tensor scores = at::zeros({6, 4}, at::kBFloat16);
  try {
    attention_softmax_bf16(scores, at::zeros({2, 3, 5}, at::kBFloat16), 3);
    FAIL() << "a mask of the wrong width was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("mask should be"), std::string::npos) << e.what();
  }
  EXPECT_THROW(attention_softmax_bf16(scores.to(at::kFloat), at::Tensor(), 3), std::exception);
}
