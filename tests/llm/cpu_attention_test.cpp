// The one-pass CPU attention (llm/cpu_attention.h) against an fp64 reference computed from the
// same inputs: softmax(q k + mask) v over narrowed cache views, with grouped queries, per-row and
// shared masks, in fp32 and bf16; a decoding step (one query position) and a causal prefill.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "llm/cpu_attention.h"

using namespace rlrf::llm;

namespace {

// One decoding step through cpu_attention: q [B, KV, G, D], mask [M, S] -> [B, KV, G, D].
at::Tensor decode_step(const at::Tensor& q, const at::Tensor& keys_t, const at::Tensor& values, const at::Tensor& mask) {
  const int64_t B = q.size(0), KV = q.size(1), G = q.size(2), D = q.size(3);
  return cpu_attention(q.reshape({B, 1, KV * G, D}), keys_t, values, mask.defined() ? mask.unsqueeze(1) : mask, true)
      .view({B, KV, G, D});
}

// The reference in fp64 from the inputs as stored (bf16 values read exactly).
at::Tensor reference(const at::Tensor& q, const at::Tensor& keys_t, const at::Tensor& values, const at::Tensor& mask) {
  at::Tensor s = at::matmul(q.to(at::kDouble), keys_t.to(at::kDouble));  // [B, KV, G, S]
  if (mask.defined()) s = s + mask.to(at::kDouble).unsqueeze(1).unsqueeze(1);
  return at::matmul(at::softmax(s, -1), values.to(at::kDouble));  // [B, KV, G, D]
}

}  // namespace

TEST(CpuAttention, EqualsFp64ReferenceOnCacheViews) {
  // 3 rows, 2 key/value heads read by 3 query heads each, head dim 12, 41 of a cache's 50 slots
  // (narrowed views, as the model passes them). Row 1 is left-padded by 9 slots whose values are
  // huge: a mask the kernel ignored would show in every output of that row.
  const int64_t B = 3, KV = 2, G = 3, D = 12, capacity = 50, S = 41;
  at::manual_seed(11);
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    const double lowest = dt == at::kFloat ? -3.4028234663852886e38 : -3.3895313892515355e38;
    at::Tensor kc = at::randn({B, KV, D, capacity}).to(dt), vc = at::randn({B, KV, capacity, D}).to(dt);
    vc[1].narrow(1, 0, 9).fill_(1000.0);
    const at::Tensor keys_t = kc.narrow(3, 0, S), values = vc.narrow(2, 0, S);
    const at::Tensor q = (at::randn({B, KV, G, D}) * 0.6).to(dt);
    at::Tensor allowed = at::ones({B, S}, at::kBool);
    allowed[1].narrow(0, 0, 9).fill_(false);
    allowed[2].narrow(0, 3, 2).fill_(false);
    const at::Tensor mask = at::zeros({B, S}, dt).masked_fill_(allowed.logical_not(), lowest);
    const at::Tensor shared = at::zeros({1, S}, dt).masked_fill_(at::arange(S) >= S - 4, lowest);
    for (int variant = 0; variant < 3; ++variant) {
      const at::Tensor m = variant == 0 ? mask : variant == 1 ? shared : at::Tensor();
      const at::Tensor got = decode_step(q, keys_t, values, m);
      ASSERT_EQ(got.scalar_type(), dt);
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{B, KV, G, D}));
      const at::Tensor want = reference(q, keys_t, values, m);
      const at::Tensor diff = (got.to(at::kDouble) - want).abs();
      // fp32: summation-order noise; bf16: the output's one rounding (2^-9 relative) and fp32 noise.
      const at::Tensor bound = dt == at::kFloat ? want.abs() * 1e-5 + 1e-5 : want.abs() * (1.0 / 256) + 1e-4;
      EXPECT_TRUE(at::all(diff <= bound).item<bool>())
          << c10::toString(dt) << " mask variant " << variant << ": max |diff| " << diff.max().item<double>();
      std::printf("  %s mask variant %d: max |diff| %.3g (outputs up to %.2f)\n", c10::toString(dt), variant,
                  diff.max().item<double>(), want.abs().max().item<double>());
    }
    // The padded row's outputs stay of the order of the visible values (the 1000s are masked).
    EXPECT_LT(decode_step(q, keys_t, values, mask)[1].to(at::kFloat).abs().max().item<double>(), 10.0);
  }
}

TEST(CpuAttention, OneSlotIsThatSlotsValue) {
  // A single cached slot: the softmax is 1, the output is the slot's value for every query head.
  at::Tensor keys_t = at::randn({2, 1, 4, 1}), values = at::randn({2, 1, 1, 4}), q = at::randn({2, 1, 2, 4});
  const at::Tensor got = decode_step(q, keys_t, values, at::Tensor());
  EXPECT_TRUE(at::allclose(got, values.expand({2, 1, 2, 4}), 1e-6, 1e-6));
}

TEST(CpuAttention, RefusesBadInputsByName) {
  at::Tensor q = at::zeros({2, 1, 2, 4}), keys_t = at::zeros({2, 1, 4, 6}), values = at::zeros({2, 1, 6, 4});
  auto expect_error = [](const std::function<void()>& f, const std::string& words) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected an error saying '" << words << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error([&] { decode_step(q, keys_t, values, at::zeros({2, 5})); }, "mask should be [1 or 2, 1, 6]");
  expect_error([&] { decode_step(q, values.transpose(2, 3), values, at::Tensor()); }, "contiguous slots");
  expect_error([&] { decode_step(q, keys_t, values.narrow(1, 0, 1).narrow(2, 0, 5), at::Tensor()); },
               "shapes disagree");
  expect_error([&] { decode_step(q.to(at::kDouble), keys_t.to(at::kDouble), values.to(at::kDouble), at::Tensor()); },
               "fp32 or bf16");
  expect_error([&] { decode_step(q.to(at::kBFloat16), keys_t, values, at::Tensor()); }, "one dtype");
}

TEST(CpuAttention, CausalPrefillEqualsFp64Reference) {
  // 5 new positions over 9 cached slots (4 earlier ones), 2 rows, 2 key/value heads read by 2 query
  // heads each, head dim 20 (past one 16-wide block). The mask is causal by slot with row 1
  // left-padded by 3; the causal flag skips the slots past each position, which must not change
  // anything; without the flag the mask alone must give the same. Slots a position must not see
  // hold values of 1000.
  const int64_t B = 2, KV = 2, G = 2, D = 20, T = 5, S = 9, past = S - T;
  at::manual_seed(12);
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    const double lowest = dt == at::kFloat ? -3.4028234663852886e38 : -3.3895313892515355e38;
    const at::Tensor keys_t = at::randn({B, KV, D, S}).to(dt);
    at::Tensor values = at::randn({B, KV, S, D});
    values[1].narrow(1, 0, 3).fill_(1000.0);
    values = values.to(dt);
    const at::Tensor q = (at::randn({B, T, KV * G, D}) * 0.5).to(dt);
    at::Tensor allowed = at::arange(S).unsqueeze(0) <= (at::arange(T) + past).unsqueeze(1);  // [T, S]
    allowed = allowed.unsqueeze(0).repeat({B, 1, 1});
    allowed[1].narrow(1, 0, 3).fill_(false);
    const at::Tensor mask = at::zeros({B, T, S}, dt).masked_fill_(allowed.logical_not(), lowest);
    // Reference: [B, KV, G, T, D] from q viewed [B, T, KV, G, D].
    const at::Tensor qr = q.to(at::kDouble).view({B, T, KV, G, D}).permute({0, 2, 3, 1, 4});
    at::Tensor sc = at::matmul(qr, keys_t.to(at::kDouble).unsqueeze(2)) + mask.to(at::kDouble).unsqueeze(1).unsqueeze(1);
    const at::Tensor want = at::matmul(at::softmax(sc, -1), values.to(at::kDouble).unsqueeze(2))
                                .permute({0, 3, 1, 2, 4})
                                .reshape({B, T, KV * G, D});
    for (bool causal : {true, false}) {
      const at::Tensor got = cpu_attention(q, keys_t, values, mask, causal);
      const at::Tensor diff = (got.to(at::kDouble) - want).abs();
      const at::Tensor bound = dt == at::kFloat ? want.abs() * 1e-5 + 1e-5 : want.abs() * (1.0 / 256) + 1e-4;
      EXPECT_TRUE(at::all(diff <= bound).item<bool>())
          << c10::toString(dt) << " causal " << causal << ": max |diff| " << diff.max().item<double>();
      std::printf("  %s causal %d: max |diff| %.3g\n", c10::toString(dt), causal, diff.max().item<double>());
    }
  }
}
