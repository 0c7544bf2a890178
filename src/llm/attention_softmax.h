// The softmax of bf16 CPU attention in one pass over the scores: each row's probabilities are
// softmax(scores + mask) computed in fp32 and rounded to bf16 once. ATen takes four passes for the
// same (the mask add in bf16, a bf16 -> fp32 copy, the softmax, an fp32 -> bf16 copy), and at a
// long prompt's prefill those passes over [rows, heads, T, S] scores were most of the attention's
// time (bench_generate --profile).
//
// The exponential is a Cephes-style polynomial after range reduction (relative error < 2e-7 over
// the range used, far below bf16's 4e-3 rounding step); arguments below -87.3 give exactly 0, so a
// masked score (the dtype's lowest) contributes nothing, as in ATen. For gradient-free inference
// only: it records no autograd history.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace rlrf::llm {

// scores: [R, S] bf16, contiguous; R = batch rows x heads x T query rows, a batch row's R / rows
// consecutive rows. mask: undefined (no mask) or [M, T, S] additive bf16, contiguous, M = 1 (every
// batch row) or the number of batch rows; row r reads mask row (M == 1 ? 0 : r / (R / M)) * T + r % T.
// Returns [R, S] bf16.
at::Tensor attention_softmax_bf16(const at::Tensor& scores, const at::Tensor& mask, int64_t T);

// e^x in fp32 as the kernel computes it (exposed for its test).
float attention_exp(float x);

}  // namespace rlrf::llm
