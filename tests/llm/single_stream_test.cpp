// The single-stream decoding step (llm/single_stream.h) against the model's own ATen forward:
// the same logits step by step on tinystories-656k and on the Llama-3.1 (llama3 rope), Qwen2 (q/k/v
// biases) and Mistral (sliding window) shapes, and on an odd-sized random model whose dimensions
// are no multiple of any vector width; threads change no logit; generation through it (prefill of
// short prompts included) gives the ATen path's tokens, with left padding too; models it cannot
// run are refused with the reason.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "llm/generate.h"
#include "llm/llm_test_util.h"
#include "llm/single_stream.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {

KVCache copy_of(const KVCache& c) {
  KVCache out;
  for (const at::Tensor& t : c.keys) out.keys.push_back(t.clone());
  for (const at::Tensor& t : c.values) out.values.push_back(t.clone());
  out.length = c.length;
  return out;
}

// Prefills `prompt` through ATen, then feeds `steps` tokens both through the model's forward and
// through single_stream_step on a copy of the cache; returns the largest |logit difference| over
// all steps, relative to the largest |logit|.
double max_relative_step_diff(LlamaForCausalLM& model, const std::vector<int64_t>& prompt, int64_t steps) {
  c10::InferenceMode guard;
  const ModelConfig& c = model->config();
  const int64_t P = static_cast<int64_t>(prompt.size());
  KVCache aten = KVCache::allocate(c, 1, P + steps, model->options().tensor_options());
  at::Tensor ids = at::tensor(prompt, at::kLong).view({1, P});
  at::Tensor logits = model->forward(ids, {}, {}, &aten).select(1, P - 1);  // [1, V]
  KVCache fast = copy_of(aten);
  auto single = single_stream_model(*model);
  EXPECT_TRUE(single.has_value());
  if (!single) return INFINITY;
  std::vector<float> fast_logits(c.vocab_size);
  double worst = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const int32_t next = static_cast<int32_t>(logits.argmax(-1).item<int64_t>());
    logits = model->forward(at::full({1, 1}, next, at::kLong), at::full({1, 1}, P + s, at::kLong), {}, &aten).select(1, 0);
    single_stream_step(*single, next, P + s, fast, 0, 0, fast_logits.data());
    fast.length += 1;
    at::Tensor f = at::from_blob(fast_logits.data(), {1, c.vocab_size}, at::kFloat);
    worst = std::max(worst, max_abs_diff(f, logits) / logits.abs().max().item<double>());
  }
  return worst;
}

// A model with random weights and dimensions that are no multiple of 4, 8 or 16.
LlamaForCausalLM odd_model() {
  ModelConfig c = ModelConfig::parse(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": 101, "hidden_size": 36, "num_hidden_layers": 3, "num_attention_heads": 6,
      "num_key_value_heads": 2, "intermediate_size": 53, "max_position_embeddings": 128,
      "rms_norm_eps": 1e-5, "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": false})",
                                     "odd config");
  LlamaForCausalLM model(c, ModelOptions{});
  at::manual_seed(7);
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.3);
  return model;
}

}  // namespace

TEST(SingleStream, StepEqualsTheModelsForward) {
  // fp32 sums in another order: differences of a few ulps of the largest logit.
  const double tol = 2e-6;
  {
    LlamaForCausalLM model = odd_model();
    const double d = max_relative_step_diff(model, {1, 5, 9, 33, 2}, 40);
    std::printf("  odd random model (hidden 36, 6/2 heads, biases): max relative |dlogit| %.2g\n", d);
    EXPECT_LT(d, tol);
  }
  for (const char* name : {"tiny-llama31", "tiny-qwen2", "tiny-mistral"}) {
    LlamaForCausalLM model = load(data_dir() / name);
    const double d = max_relative_step_diff(model, {1, 7, 3, 11}, 20);  // Mistral: past its window of 4
    std::printf("  %-14s max relative |dlogit| %.2g\n", name, d);
    EXPECT_LT(d, tol) << name;
  }
  if (std::filesystem::exists(tinystories_dir() / "config.json")) {
    LlamaForCausalLM model = load(tinystories_dir());
    const double d = max_relative_step_diff(model, {1, 80, 147, 201, 282, 57}, 100);
    std::printf("  tinystories-656k: max relative |dlogit| %.2g over 100 steps\n", d);
    EXPECT_LT(d, tol);
  }
}

TEST(SingleStream, ThreadsSplitTheWorkWithoutChangingAnyLogit) {
  // Rows and head groups are split among threads; each sum is still taken in the same order, so
  // every logit is bitwise the same on 1, 2 and 3 threads (3: shares of unequal size).
  LlamaForCausalLM model = odd_model();
  c10::InferenceMode guard;
  const ModelConfig& c = model->config();
  std::vector<std::vector<float>> by_threads;
  for (int threads : {1, 2, 3}) {
    KVCache cache = KVCache::allocate(c, 2, 24, model->options().tensor_options());
    auto single = single_stream_model(*model);
    ASSERT_TRUE(single.has_value());
    std::vector<float> logits(c.vocab_size), all;
    for (int64_t s = 0; s < 20; ++s) {
      single_stream_step(*single, static_cast<int32_t>((7 * s + 3) % c.vocab_size), s, cache, 1, 0, logits.data(), threads);
      cache.length += 1;
      all.insert(all.end(), logits.begin(), logits.end());
    }
    by_threads.push_back(all);
  }
  EXPECT_EQ(by_threads[0], by_threads[1]);
  EXPECT_EQ(by_threads[0], by_threads[2]);
}

TEST(SingleStream, GenerationGivesTheAtenPathsTokensWithLeftPaddingToo) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  // Prompts of different lengths in one batch: once the others finish, the last row (left-padded)
  // goes through the single-stream step; a batch of one goes through it from the first step.
  std::vector<GenerateRequest> reqs = {{{1, 80, 147, 201, 282, 57, 13, 99}}, {{1, 80}, 0, {231}}, {{1, 401, 875}}};
  GenerateOptions o;
  o.max_new_tokens = 48;
  o.sampling.temperature = 0;
  o.batch_size = 3;
  o.sort_by_length = false;
  GenerateOptions aten = o;
  aten.single_stream = false;
  for (int64_t batch : {int64_t{3}, int64_t{1}}) {
    o.batch_size = aten.batch_size = batch;
    o.threads = batch == 1 ? 2 : 0;  // the single-stream step on two threads, or the process's
    auto fast = generate(model, reqs, o);
    auto slow = generate(model, reqs, aten);
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(fast[i].ids, slow[i].ids) << "request " << i << ", batch " << batch;
      EXPECT_EQ(fast[i].finish_reason, slow[i].finish_reason);
      ASSERT_EQ(fast[i].logprobs.size(), slow[i].logprobs.size());
      for (size_t t = 0; t < fast[i].logprobs.size(); ++t) EXPECT_NEAR(fast[i].logprobs[t], slow[i].logprobs[t], 1e-4);
    }
  }
}

TEST(SingleStream, ModelsItCannotRunAreRefusedWithTheReason) {
  std::string why;
  LlamaForCausalLM bf16 = load(data_dir() / "tiny-llama31", at::kBFloat16);
  EXPECT_FALSE(single_stream_model(*bf16, &why).has_value());
  EXPECT_EQ(why, "the model is not fp32");
  LlamaForCausalLM lora = load(data_dir() / "tiny-llama31");
  lora->model->layer_list[1]->self_attn->v_proj->add_lora(LoraSpec{}, 1);
  why.clear();
  EXPECT_FALSE(single_stream_model(*lora, &why).has_value());
  EXPECT_EQ(why, "LoRA adapter active on model.layers.1.self_attn.v_proj");
  lora->model->layer_list[1]->self_attn->v_proj->set_lora_enabled(false);  // the DPO reference: adapters off
  EXPECT_TRUE(single_stream_model(*lora).has_value());
}
