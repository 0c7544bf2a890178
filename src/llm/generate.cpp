// Batched generation with left padding, a preallocated KV cache and per-sequence stops and seeds.
#include "llm/generate.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <unordered_set>

#include "llm/kv_cache.h"
#include "llm/single_stream.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace rlrf::llm {

namespace {

at::Tensor long_tensor(const std::vector<int64_t>& v, int64_t rows, int64_t cols, const at::Device& dev) {
  at::Tensor t = at::empty({rows, cols}, at::TensorOptions().dtype(at::kLong));
  std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
  return dev.is_cpu() ? t : t.to(dev);
}

// Prompts up to this long are prefilled through the single-stream step in a batch of one.
constexpr int64_t kSingleStreamPrefillMaxTokens = 32;

// Decodes one batch of requests (indices into `requests`) to completion; a one-row batch (or the
// last row) uses the single-stream step on `single_threads` threads.
void run_batch(LlamaForCausalLM& model, const std::vector<GenerateRequest>& requests, const std::vector<size_t>& batch,
               const GenerateOptions& options, std::vector<Completion>& out, const TokenCallback& on_token,
               Progress* progress, int single_threads) {
  const int64_t B = static_cast<int64_t>(batch.size());
  const int64_t max_new = options.max_new_tokens;
  if (max_new == 0) {
    for (size_t r : batch) out[r].finish_reason = "length";
    return;
  }
  const at::Device dev = model->device();
  int64_t Lp = 0;
  bool any_pad = false;
  for (size_t r : batch) Lp = std::max<int64_t>(Lp, static_cast<int64_t>(requests[r].prompt.size()));
  const int64_t capacity = Lp + max_new;

  // Left-padded prompts: row b's tokens sit in slots [Lp - len_b, Lp) with positions 0..len_b-1.
  // Rows with the same prompt (the N samples of one user) share one prefill: distinct prompts go
  // through the model once and their cache rows are copied to every row that asked for them.
  std::map<std::vector<int32_t>, int64_t> distinct;
  std::vector<int64_t> source(B);  // row b's prompt among the distinct ones
  std::vector<size_t> prefill_rows;
  for (int64_t b = 0; b < B; ++b) {
    auto [it, added] = distinct.try_emplace(requests[batch[b]].prompt, static_cast<int64_t>(prefill_rows.size()));
    if (added) prefill_rows.push_back(batch[b]);
    source[b] = it->second;
  }
  const int64_t U = static_cast<int64_t>(prefill_rows.size());
  std::vector<int64_t> ids(U * Lp, 0), pos(U * Lp, 0);
  at::Tensor valid = at::zeros({B, capacity}, at::TensorOptions().dtype(at::kBool));
  std::vector<int64_t> next_pos(B);  // position of the next token of each row
  for (int64_t u = 0; u < U; ++u) {
    const auto& p = requests[prefill_rows[u]].prompt;
    const int64_t len = static_cast<int64_t>(p.size()), pad = Lp - len;
    any_pad |= pad > 0;
    for (int64_t j = 0; j < len; ++j) {
      ids[u * Lp + pad + j] = p[j];
      pos[u * Lp + pad + j] = j;
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = static_cast<int64_t>(requests[batch[b]].prompt.size());
    valid[b].narrow(0, Lp - len, len).fill_(true);
    next_pos[b] = len;
  }
  valid = valid.to(dev);
  at::Tensor prefill_valid;
  if (any_pad) {
    std::vector<int64_t> first_of(U);
    for (int64_t b = B - 1; b >= 0; --b) first_of[source[b]] = b;
    prefill_valid = valid.narrow(1, 0, Lp).index_select(0, long_tensor(first_of, U, 1, dev).view({-1}));
  }

  KVCache cache = KVCache::allocate(model->config(), U, capacity, model->options().tensor_options());
  // A batch of one with a short prompt is prefilled token by token through the single-stream
  // step too: as fast as one small matmul per layer there, and no BLAS call whose idle threads
  // would then spin against the step's own (measured in bench_generate: 6-token prompts 33k tok/s
  // against ~10k after a BLAS prefill; equal at 32 tokens, BLAS ahead beyond).
  std::optional<SingleStreamModel> single;
  if (B == 1 && Lp <= kSingleStreamPrefillMaxTokens && options.single_stream && dev.is_cpu()) single = single_stream_model(*model);
  at::Tensor logits;
  if (single) {
    logits = at::empty({1, model->config().vocab_size}, at::TensorOptions().dtype(at::kFloat));
    for (int64_t j = 0; j < Lp; ++j) {
      single_stream_step(*single, static_cast<int32_t>(ids[j]), j, cache, 0, 0, logits.data_ptr<float>(), single_threads);
      cache.length += 1;
    }
  } else {
    at::Tensor h = model->hidden_states(long_tensor(ids, U, Lp, dev), long_tensor(pos, U, Lp, dev), prefill_valid, &cache);
    logits = model->logits(h.select(1, Lp - 1));  // [U, V] fp32
  }
  if (U < B) {
    at::Tensor rows = long_tensor(source, B, 1, dev).view({-1});
    cache.keep_rows(rows);
    logits = logits.index_select(0, rows);  // [B, V]
  }

  // Per-row state (rows are compacted when sequences finish).
  std::vector<size_t> row_req(batch.begin(), batch.end());
  std::vector<Rng> rngs;
  std::vector<std::unordered_set<int32_t>> stops;
  for (size_t r : batch) {
    rngs.emplace_back(sequence_seed(options.sampling.seed, requests[r].prompt, requests[r].sample_index));
    stops.emplace_back(options.stop_ids.begin(), options.stop_ids.end());
    stops.back().insert(requests[r].stop_ids.begin(), requests[r].stop_ids.end());
  }
  // Left padding of each row: its first real slot (the single-stream step attends from there).
  std::vector<int64_t> first_slot(B);
  for (int64_t b = 0; b < B; ++b) first_slot[b] = Lp - static_cast<int64_t>(requests[batch[b]].prompt.size());
  // Once one row is left (a batch of one, or the last sequence of a batch), its steps go through
  // the plain-C++ single-stream path when the model qualifies.
  bool single_tried = single.has_value();
  at::Tensor single_logits = single ? logits : at::Tensor();
  std::vector<char> alive(B, 1);
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  int64_t rows = B;
  for (int64_t step = 0;; ++step) {
    sample_tokens(logits, options.sampling, rngs, tokens, logprobs);
    int64_t n_alive = 0;
    for (int64_t b = 0; b < rows; ++b) {
      if (!alive[b]) continue;
      Completion& c = out[row_req[b]];
      c.ids.push_back(tokens[b]);
      c.logprobs.push_back(logprobs[b]);
      if (on_token) on_token(row_req[b], tokens[b]);
      if (stops[b].count(tokens[b])) {
        c.finish_reason = "stop";
      } else if (static_cast<int64_t>(c.ids.size()) >= max_new) {
        c.finish_reason = "length";
      } else {
        ++n_alive;
        continue;
      }
      alive[b] = 0;
      if (progress) progress->advance();
    }
    if (n_alive == 0) break;
    // Drop finished rows once they are a quarter of the batch (a compaction copies the cache).
    if (rows - n_alive >= std::max<int64_t>(1, rows / 4)) {
      std::vector<int64_t> keep;
      for (int64_t b = 0; b < rows; ++b)
        if (alive[b]) keep.push_back(b);
      at::Tensor idx = long_tensor(keep, static_cast<int64_t>(keep.size()), 1, dev).view({-1});
      cache.keep_rows(idx);
      valid = valid.index_select(0, idx);
      auto compact = [&](auto& v) {
        std::remove_reference_t<decltype(v)> w;
        for (int64_t b : keep) w.push_back(std::move(v[b]));
        v = std::move(w);
      };
      compact(row_req);
      compact(rngs);
      compact(stops);
      compact(next_pos);
      compact(first_slot);
      compact(tokens);
      rows = static_cast<int64_t>(keep.size());
      alive.assign(rows, 1);
    }
    std::vector<int64_t> next(rows), npos(rows);
    for (int64_t b = 0; b < rows; ++b) {
      next[b] = alive[b] ? tokens[b] : 0;
      npos[b] = next_pos[b]++;
    }
    if (rows == 1 && !single_tried && options.single_stream && dev.is_cpu()) {
      single_tried = true;
      single = single_stream_model(*model);
      if (single) single_logits = at::empty({1, model->config().vocab_size}, at::TensorOptions().dtype(at::kFloat));
    }
    if (rows == 1 && single) {
      single_stream_step(*single, static_cast<int32_t>(next[0]), npos[0], cache, 0, first_slot[0],
                         single_logits.data_ptr<float>(), single_threads);
      cache.length += 1;
      logits = single_logits;
      continue;
    }
    const int64_t slot = cache.length;
    at::Tensor key_valid;
    if (any_pad) {
      valid.select(1, slot).fill_(true);
      key_valid = valid.narrow(1, 0, slot + 1);
    }
    logits = model->forward(long_tensor(next, rows, 1, dev), long_tensor(npos, rows, 1, dev), key_valid, &cache)
                 .select(1, 0);  // [rows, V]
  }
}

}  // namespace

std::vector<Completion> generate(LlamaForCausalLM& model, const std::vector<GenerateRequest>& requests,
                                 const GenerateOptions& options, const TokenCallback& on_token) {
  RLRF_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got {}", options.max_new_tokens);
  RLRF_CHECK(options.batch_size >= 1, "batch_size must be >= 1, got {}", options.batch_size);
  RLRF_CHECK(options.sampling.top_k >= 0, "top_k must be >= 0, got {}", options.sampling.top_k);
  RLRF_CHECK(options.sampling.top_p > 0, "top_p must be > 0, got {}", options.sampling.top_p);
  const int64_t vocab = model->config().vocab_size;
  for (size_t i = 0; i < requests.size(); ++i) {
    RLRF_CHECK(!requests[i].prompt.empty(), "generate: prompt {} is empty (it needs at least a BOS token)", i);
    for (int32_t id : requests[i].prompt)
      RLRF_CHECK(id >= 0 && id < vocab, "generate: prompt {} holds token id {} outside the vocabulary [0, {})", i, id, vocab);
  }
  size_t longest = 0;
  for (const GenerateRequest& r : requests) longest = std::max(longest, r.prompt.size());
  if (static_cast<int64_t>(longest) + options.max_new_tokens > model->config().max_position_embeddings) {
    log_warn("generate: prompts of up to {} tokens + {} new tokens exceed the model's {} positions "
             "(max_position_embeddings); quality may drop past them",
             longest, options.max_new_tokens, model->config().max_position_embeddings);
  }
  std::vector<Completion> out(requests.size());
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  if (options.sort_by_length) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return requests[a].prompt.size() < requests[b].prompt.size(); });
  }
  const bool was_training = model->is_training();
  model->eval();
  const int threads_before = at::get_num_threads();
  int threads = options.threads;
  if (threads <= 0) {
    // A decoding step of a small fp32 model is a few tiny BLAS calls: threads that wait for each
    // other cost more than they give (measured: tinystories-656k batch 64, one thread 1.04x two).
    // bf16 matmuls go to oneDNN, which splits even small problems well (one thread 0.57x two).
    const double step_flops = 2.0 * model->config().num_parameters() * std::min<size_t>(requests.size(), options.batch_size);
    const bool half = model->dtype() == at::kBFloat16 || model->dtype() == at::kHalf;
    threads = step_flops < 1e8 && !half ? 1 : threads_before;
  }
  if (threads != threads_before) at::set_num_threads(threads);
  // The single-stream step splits a token's work with the process's threads unless told otherwise:
  // unlike the ATen step it gains from a second thread even on tiny models (tinystories-656k: 33k
  // against 21k tokens/s on two threads here).
  const int single_threads = options.threads > 0 ? options.threads : threads_before;
  std::unique_ptr<Progress> progress;
  if (options.progress) progress = std::make_unique<Progress>("generate", static_cast<int64_t>(requests.size()), "sequences");
  try {
    c10::InferenceMode guard;
    for (size_t start = 0; start < order.size(); start += options.batch_size) {
      size_t end = std::min(order.size(), start + static_cast<size_t>(options.batch_size));
      std::vector<size_t> batch(order.begin() + start, order.begin() + end);
      run_batch(model, requests, batch, options, out, on_token, progress.get(), single_threads);
    }
  } catch (...) {
    if (was_training) model->train();
    if (threads != threads_before) at::set_num_threads(threads_before);
    throw;
  }
  if (progress) progress->finish();
  if (was_training) model->train();
  if (threads != threads_before) at::set_num_threads(threads_before);
  return out;
}

}  // namespace rlrf::llm
