// Continuation log-probabilities, batched with left padding; with or without autograd.
#include "llm/logprob.h"

#include <ATen/ATen.h>
#include <cstdint>
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

PairLogprobs pair_logprobs(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                           const std::vector<std::vector<int32_t>>& a, const std::vector<std::vector<int32_t>>& b) {
  RLRF_CHECK(prompts.size() == a.size() && prompts.size() == b.size(),
             "pair_logprobs: {} prompts, {} first and {} second continuations", prompts.size(), a.size(), b.size());
  const int64_t N = static_cast<int64_t>(prompts.size());
  RLRF_CHECK(N > 0, "pair_logprobs: no pairs given");
  const int64_t vocab = model->config().vocab_size;
  int64_t L = 0, Ca = 0, Cb = 0;
  for (int64_t i = 0; i < N; ++i) {
    RLRF_CHECK(!prompts[i].empty(), "pair_logprobs: prompt {} is empty (it needs at least a BOS token)", i);
    L = std::max<int64_t>(L, prompts[i].size() + a[i].size() + b[i].size());
    Ca = std::max<int64_t>(Ca, a[i].size());
    Cb = std::max<int64_t>(Cb, b[i].size());
  }
  // Row i, left-padded: slots [pad, pad + lp) prompt, then a, then b. segment: 0 prompt, 1 a, 2 b.
  at::Tensor ids = at::zeros({N, L}, at::kLong), pos = at::zeros({N, L}, at::kLong);
  at::Tensor segment = at::full({N, L}, -1, at::kLong);  // -1: padding
  // Each predicted token: the slot whose hidden state predicts it, and its id; a's then b's.
  at::Tensor src = at::zeros({N, Ca + Cb}, at::kLong), target = at::zeros({N, Ca + Cb}, at::kLong);
  at::Tensor used = at::zeros({N, Ca + Cb}, at::kBool);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto pos_a = pos.accessor<int64_t, 2>();
  auto seg_a = segment.accessor<int64_t, 2>();
  auto src_a = src.accessor<int64_t, 2>();
  auto tgt_a = target.accessor<int64_t, 2>();
  auto used_a = used.accessor<bool, 2>();
  for (int64_t i = 0; i < N; ++i) {
    const int64_t lp = prompts[i].size(), la = a[i].size(), lb = b[i].size(), pad = L - lp - la - lb;
    auto put = [&](int64_t slot, int32_t id, int64_t position, int64_t seg) {
      RLRF_CHECK(id >= 0 && id < vocab, "pair_logprobs: pair {} holds token id {} outside [0, {})", i, id, vocab);
      ids_a[i][slot] = id;
      pos_a[i][slot] = position;
      seg_a[i][slot] = seg;
    };
    for (int64_t j = 0; j < lp; ++j) put(pad + j, prompts[i][j], j, 0);
    const int64_t last_prompt = pad + lp - 1, a0 = pad + lp, b0 = a0 + la;
    for (int64_t j = 0; j < la; ++j) {
      put(a0 + j, a[i][j], lp + j, 1);
      src_a[i][j] = j == 0 ? last_prompt : a0 + j - 1;
      tgt_a[i][j] = a[i][j];
      used_a[i][j] = true;
    }
    for (int64_t j = 0; j < lb; ++j) {
      put(b0 + j, b[i][j], lp + j, 2);
      src_a[i][Ca + j] = j == 0 ? last_prompt : b0 + j - 1;
      tgt_a[i][Ca + j] = b[i][j];
      used_a[i][Ca + j] = true;
    }
  }
  // Query q sees key k when k is not padding, k <= q, and k is in the prompt or in q's own part.
  at::Tensor slot = at::arange(L, at::kLong);
  at::Tensor causal = slot.unsqueeze(0) <= slot.unsqueeze(1);                              // [L(q), L(k)]
  at::Tensor seg_q = segment.unsqueeze(2), seg_k = segment.unsqueeze(1);                    // [N, L, 1], [N, 1, L]
  at::Tensor attend = causal.unsqueeze(0).logical_and(seg_k.ge(0)).logical_and(seg_k.eq(0).logical_or(seg_k.eq(seg_q)));
  // Padding queries see themselves only (their outputs are never read; this keeps softmax finite).
  attend = attend.logical_or(at::eye(L, at::kBool).unsqueeze(0));

  const at::Device dev = model->device();
  PairLogprobs out;
  if (Ca + Cb == 0) {
    out.a_sum = at::zeros({N}, at::TensorOptions().dtype(at::kFloat).device(dev));
    out.b_sum = out.a_sum.clone();
    return out;
  }
  at::Tensor hidden = model->hidden_states(ids.to(dev), pos.to(dev), at::Tensor(), nullptr, attend.to(dev));  // [N, L, H]
  at::Tensor d_src = src.to(dev);
  at::Tensor picked = hidden.gather(1, d_src.unsqueeze(2).expand({N, Ca + Cb, hidden.size(2)}));         // [N, Ca + Cb, H]
  at::Tensor logits = model->logits(picked);                                                            // [N, Ca + Cb, V]
  at::Tensor lp = logits.gather(2, target.to(dev).unsqueeze(2)).squeeze(2) - at::logsumexp(logits, -1);  // [N, Ca + Cb]
  lp = lp.masked_fill(used.to(dev).logical_not(), 0.0);
  out.a_sum = lp.narrow(1, 0, Ca).sum(-1);
  out.b_sum = lp.narrow(1, Ca, Cb).sum(-1);
  return out;
}

void pair_logprob_sums(LlamaForCausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                       const std::vector<std::vector<int32_t>>& a, const std::vector<std::vector<int32_t>>& b,
                       std::vector<double>& a_sums, std::vector<double>& b_sums, int64_t batch_size) {
  RLRF_CHECK(prompts.size() == a.size() && prompts.size() == b.size(), "pair_logprob_sums: {} prompts, {} and {} continuations",
             prompts.size(), a.size(), b.size());
  RLRF_CHECK(batch_size >= 1, "pair_logprob_sums: batch_size must be >= 1");
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  a_sums.clear();
  b_sums.clear();
  auto append = [](const at::Tensor& t, std::vector<double>& v) {
    at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
    v.insert(v.end(), c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  try {
    for (size_t start = 0; start < prompts.size(); start += batch_size) {
      size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
      std::vector<std::vector<int32_t>> p(prompts.begin() + start, prompts.begin() + end);
      std::vector<std::vector<int32_t>> x(a.begin() + start, a.begin() + end), y(b.begin() + start, b.begin() + end);
      PairLogprobs lp = pair_logprobs(model, p, x, y);
      append(lp.a_sum, a_sums);
      append(lp.b_sum, b_sums);
    }
  } catch (...) {
    if (was_training) model->train();
    throw;
  }
  if (was_training) model->train();
}

}  // namespace rlrf::llm
