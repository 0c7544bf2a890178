// Continuation log-probabilities, batched with left padding; with or without autograd.
#include "llm/logprob.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "util/error.h"

namespace rlrf::llm {

ContinuationLogprobs continuation_logprobs(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const std::vector<std::vector<int32_t>>& continuations) {
  RLRF_CHECK(prompts.size() == continuations.size(), "continuation_logprobs: {} prompts but {} continuations",
             prompts.size(), continuations.size());
  const int64_t N = static_cast<int64_t>(prompts.size());
  RLRF_CHECK(N > 0, "continuation_logprobs: no sequences given");
  const int64_t vocab = model->config().vocab_size;
  int64_t L = 0, C = 0;
  for (int64_t i = 0; i < N; ++i) {
    RLRF_CHECK(!prompts[i].empty(), "continuation_logprobs: prompt {} is empty (it needs at least a BOS token)", i);
    L = std::max<int64_t>(L, prompts[i].size() + continuations[i].size());
    C = std::max<int64_t>(C, continuations[i].size());
  }
  // Left padding: sequence i fills slots [L - len_i, L); its continuation is the last C_i slots,
  // so every continuation token sits in the last C slots and is predicted from the slot before.
  at::Tensor ids = at::zeros({N, L}, at::kLong), pos = at::zeros({N, L}, at::kLong);
  at::Tensor valid = at::zeros({N, L}, at::kBool), mask = at::zeros({N, C}, at::kBool);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto pos_a = pos.accessor<int64_t, 2>();
  auto valid_a = valid.accessor<bool, 2>();
  auto mask_a = mask.accessor<bool, 2>();
  bool any_pad = false;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t lp = prompts[i].size(), lc = continuations[i].size(), pad = L - lp - lc;
    any_pad |= pad > 0;
    for (int64_t j = 0; j < lp + lc; ++j) {
      int32_t id = j < lp ? prompts[i][j] : continuations[i][j - lp];
      RLRF_CHECK(id >= 0 && id < vocab, "continuation_logprobs: sequence {} holds token id {} outside [0, {})", i, id, vocab);
      ids_a[i][pad + j] = id;
      pos_a[i][pad + j] = j;
      valid_a[i][pad + j] = true;
    }
    for (int64_t j = C - lc; j < C; ++j) mask_a[i][j] = true;
  }
  ContinuationLogprobs out;
  const at::Device dev = model->device();
  at::Tensor d_mask = mask.to(dev);
  if (C == 0) {
    out.tokens = at::zeros({N, 0}, at::TensorOptions().dtype(at::kFloat).device(dev));
    out.sum = at::zeros({N}, at::TensorOptions().dtype(at::kFloat).device(dev));
    out.mask = d_mask;
    return out;
  }
  at::Tensor d_ids = ids.to(dev);
  at::Tensor hidden = model->hidden_states(d_ids, pos.to(dev), any_pad ? valid.to(dev) : at::Tensor());  // [N, L, H]
  at::Tensor logits = model->logits(hidden.narrow(1, L - 1 - C, C));  // [N, C, V] fp32
  at::Tensor targets = d_ids.narrow(1, L - C, C);                      // [N, C]
  at::Tensor lp = logits.gather(2, targets.unsqueeze(2)).squeeze(2) - at::logsumexp(logits, -1);  // [N, C]
  out.tokens = lp.masked_fill(d_mask.logical_not(), 0.0);
  out.sum = out.tokens.sum(-1);
  out.mask = d_mask;
  return out;
}

std::vector<double> continuation_logprob_sums(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<std::vector<int32_t>>& continuations,
                                              int64_t batch_size) {
  RLRF_CHECK(prompts.size() == continuations.size(), "continuation_logprob_sums: {} prompts but {} continuations",
             prompts.size(), continuations.size());
  RLRF_CHECK(batch_size >= 1, "continuation_logprob_sums: batch_size must be >= 1");
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  std::vector<double> out;
  try {
    for (size_t start = 0; start < prompts.size(); start += batch_size) {
      size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
      std::vector<std::vector<int32_t>> p(prompts.begin() + start, prompts.begin() + end);
      std::vector<std::vector<int32_t>> c(continuations.begin() + start, continuations.begin() + end);
      at::Tensor s = continuation_logprobs(model, p, c).sum.to(at::kCPU, at::kDouble).contiguous();
      for (int64_t i = 0; i < s.numel(); ++i) out.push_back(s.data_ptr<double>()[i]);
    }
  } catch (...) {
    if (was_training) model->train();
    throw;
  }
  if (was_training) model->train();
  return out;
}

}  // namespace rlrf::llm
