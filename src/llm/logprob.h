// Log-probabilities of given continuations under given prompts: log pi(y | x) = sum over the tokens
// of y of log softmax(logits)[token], prompt and padding masked. The building block of DPO
// (policy with grad, reference without). Sequences are left-padded into one batch, with
// per-sequence positions, exactly as generation runs them.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "llm/llama.h"

namespace rlrf::llm {

struct ContinuationLogprobs {
  at::Tensor sum;     // [N] fp32: sum of the continuation's token log-probs (0 for an empty one)
  at::Tensor tokens;  // [N, C] fp32: per-token log-probs, right-aligned; 0 where mask is false
  at::Tensor mask;    // [N, C] bool: true at the continuation's tokens (C = longest continuation)
};

// One batch, in the caller's autograd mode: with grad enabled (and model->train() for LoRA
// dropout) the result is differentiable w.r.t. the trainable parameters; wrap the call in
// torch::NoGradGuard for reference log-probs. Each prompt needs at least one token.
ContinuationLogprobs continuation_logprobs(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const std::vector<std::vector<int32_t>>& continuations);

// Log-probs of two continuations `a` and `b` of each prompt (DPO's chosen and rejected) from one
// packed sequence [prompt, a, b]: b's tokens see the prompt and themselves, never a, and take the
// positions they would have right after the prompt. The values equal continuation_logprobs on
// (prompt, a) and on (prompt, b) (to float rounding), but each prompt goes through the model once:
// with DPO's long prompts and short answers that is ~40% fewer tokens. Same autograd rules.
struct PairLogprobs {
  at::Tensor a_sum, b_sum;  // [N] fp32
};
PairLogprobs pair_logprobs(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                           const std::vector<std::vector<int32_t>>& a, const std::vector<std::vector<int32_t>>& b);

// pair_logprobs for many pairs without grad, `batch_size` pairs per forward (eval mode; the
// model's mode is restored). Fills one value per pair, in order.
void pair_logprob_sums(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                       const std::vector<std::vector<int32_t>>& a, const std::vector<std::vector<int32_t>>& b,
                       std::vector<double>& a_sums, std::vector<double>& b_sums, int64_t batch_size = 8);

// Sums for many pairs without grad, `batch_size` pairs per forward (in eval mode; the model's
// mode is restored). Returns one value per pair, in order.
std::vector<double> continuation_logprob_sums(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<std::vector<int32_t>>& continuations,
                                              int64_t batch_size = 8);

}  // namespace rlrf::llm
