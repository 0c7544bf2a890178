// Continuation log-probs: agree with generation's per-step log-softmax and with the golden
// per-token log-probs; batched equals alone; gradients flow to LoRA weights (checked by finite
// differences in fp64) and not in no-grad mode.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adamw.h>

#include "llm/generate.h"
#include "llm/llm_test_util.h"
#include "llm/logprob.h"
#include "llm/lora.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

TEST(Logprob, GoldenGreedyContinuationsScoreAsTheReference) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  std::vector<std::vector<int32_t>> prompts, conts;
  for (const json& ref : greedy_reference()) {
    prompts.push_back(to_ids(ref["prompt_ids"]));
    conts.push_back(to_ids(ref["greedy_ids"]));
  }
  torch::NoGradGuard no_grad;
  ContinuationLogprobs lp = continuation_logprobs(model, prompts, conts);
  EXPECT_FALSE(lp.sum.requires_grad());
  ASSERT_EQ(lp.tokens.sizes(), (at::IntArrayRef{2, 64}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const json& ref = greedy_reference()[i];
    double d = 0;
    for (int t = 0; t < 64; ++t) d = std::max(d, std::abs(lp.tokens[i][t].item<double>() - ref["greedy_token_logprobs"][t].get<double>()));
    std::printf("  %-48s max |dlogprob| %.3g\n", ref["prompt"].get<std::string>().c_str(), d);
    EXPECT_LT(d, 1e-3);
    // The first 32 tokens alone sum to the reference's figure.
    std::vector<int32_t> first32(conts[i].begin(), conts[i].begin() + 32);
    auto s = continuation_logprob_sums(model, {prompts[i]}, {first32});
    EXPECT_NEAR(s[0], ref["greedy_logprob_sum_first32"].get<double>(), 1e-3);
  }
}

TEST(Logprob, AgreesWithGenerationLogSoftmaxAndBatchingDoesNotMatter) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  std::vector<GenerateRequest> reqs = {{to_ids(greedy_reference()[0]["prompt_ids"]), 0},
                                       {to_ids(greedy_reference()[1]["prompt_ids"]), 0},
                                       {{1, 80, 147}, 3}};
  GenerateOptions o;
  o.max_new_tokens = 30;
  o.sampling = {1.0, 0, 1.0, 7};
  o.stop_ids = {2};
  auto gen = generate(model, reqs, o);
  std::vector<std::vector<int32_t>> prompts, conts;
  for (size_t i = 0; i < reqs.size(); ++i) {
    prompts.push_back(reqs[i].prompt);
    conts.push_back(gen[i].ids);
  }
  torch::NoGradGuard no_grad;
  ContinuationLogprobs lp = continuation_logprobs(model, prompts, conts);
  const int64_t C = lp.tokens.size(1);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const int64_t n = static_cast<int64_t>(conts[i].size()), off = C - n;  // right-aligned
    double d = 0, sum = 0;
    for (int64_t t = 0; t < n; ++t) {
      d = std::max(d, std::abs(lp.tokens[i][off + t].item<double>() - gen[i].logprobs[t]));
      sum += gen[i].logprobs[t];
      EXPECT_TRUE(lp.mask[i][off + t].item<bool>());
    }
    for (int64_t t = 0; t < off; ++t) EXPECT_FALSE(lp.mask[i][t].item<bool>());
    EXPECT_LT(d, 1e-4) << "sequence " << i;
    EXPECT_NEAR(lp.sum[i].item<double>(), sum, 1e-3);
    auto alone = continuation_logprob_sums(model, {prompts[i]}, {conts[i]});
    EXPECT_NEAR(alone[0], lp.sum[i].item<double>(), 1e-4);
  }
  auto empty = continuation_logprob_sums(model, {{1, 80}}, {{}});
  EXPECT_EQ(empty[0], 0.0);
}

TEST(Logprob, GradientsReachLoraWeightsAndMatchFiniteDifferences) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir(), at::kDouble);  // fp64 for finite differences
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.dropout = 0;
  cfg.target_modules = {"q_proj", "v_proj", "down_proj"};
  apply_lora(model, cfg);
  {
    torch::NoGradGuard no_grad;
    at::manual_seed(3);
    for (auto& [name, t] : named_trainable_parameters(model))
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.05);
  }
  model->train();
  std::vector<std::vector<int32_t>> prompts = {{1, 80, 147, 201}, {1, 80}};
  std::vector<std::vector<int32_t>> conts = {{282, 57, 313}, {875, 231, 401, 1844, 152}};
  auto f = [&]() { return continuation_logprobs(model, prompts, conts).sum.sum(); };
  at::Tensor loss = f();
  ASSERT_TRUE(loss.requires_grad());
  loss.backward();
  for (auto& p : model->parameters()) {
    if (!p.requires_grad()) EXPECT_FALSE(p.grad().defined());
  }
  int checked = 0;
  for (auto& [name, p] : named_trainable_parameters(model)) {
    ASSERT_TRUE(p.grad().defined()) << name;
    if (name != "model.layers.0.self_attn.q_proj.lora_A.weight" && name != "model.layers.1.mlp.down_proj.lora_B.weight") continue;
    at::Tensor dir = at::randn(p.sizes(), p.options());
    double analytic = (p.grad() * dir).sum().item<double>();
    const double eps = 1e-5;
    double fp, fm;
    {
      torch::NoGradGuard no_grad;
      p.add_(dir * eps);
      fp = f().item<double>();
      p.add_(dir * (-2 * eps));
      fm = f().item<double>();
      p.add_(dir * eps);
    }
    double numeric = (fp - fm) / (2 * eps);
    std::printf("  d/d %-48s analytic %.8f numeric %.8f\n", name.c_str(), analytic, numeric);
    EXPECT_NEAR(analytic, numeric, 1e-5 * std::max(1.0, std::abs(numeric)));
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

TEST(Logprob, DropoutActsInTrainModeOnly) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31");
  LoraConfig cfg;
  cfg.dropout = 0.5;
  apply_lora(model, cfg);
  {
    torch::NoGradGuard no_grad;
    for (auto& t : trainable_parameters(model)) t.normal_(0, 0.5);
  }
  std::vector<std::vector<int32_t>> p = {{1, 5, 9}}, c = {{17, 42, 8, 3}};
  model->eval();
  double e1 = continuation_logprobs(model, p, c).sum.item<double>();
  double e2 = continuation_logprobs(model, p, c).sum.item<double>();
  EXPECT_EQ(e1, e2);
  model->train();
  at::manual_seed(1);
  double t1 = continuation_logprobs(model, p, c).sum.item<double>();
  double t2 = continuation_logprobs(model, p, c).sum.item<double>();
  EXPECT_NE(t1, t2);
  // The no-grad helper runs in eval mode (dropout 0.5 would move the sum by far more than the
  // rounding of the inference RMSNorm loop against its grad-mode tensor expression).
  EXPECT_NEAR(continuation_logprob_sums(model, p, c)[0], e1, 1e-4);
  EXPECT_TRUE(model->is_training());                          // and restores the mode
}

TEST(Logprob, FullFineTuneStepTrainsAndInferenceSeesTheNewWeights) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31");
  enable_full_finetune(model);
  model->train();
  std::vector<std::vector<int32_t>> p = {{1, 5, 9}, {1, 44}}, c = {{17, 42, 8, 3}, {7, 7, 9}};
  torch::optim::AdamW opt(trainable_parameters(model), torch::optim::AdamWOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    at::Tensor loss = -continuation_logprobs(model, p, c).sum.sum();
    loss.backward();
    for (auto& t : trainable_parameters(model)) ASSERT_TRUE(t.grad().defined());
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 1.0);
  // The fused no-grad path reads the updated weights.
  model->eval();
  double no_grad = continuation_logprob_sums(model, p, c)[0];
  double with_grad = continuation_logprobs(model, p, c).sum[0].item<double>();
  EXPECT_NEAR(no_grad, with_grad, 1e-4);
}

// DPO's packed layout: [prompt, chosen, rejected] in one row must give what two separate rows give,
// values and gradients alike, for prompts and answers of different lengths in one batch.
TEST(Logprob, PackedPairsEqualTwoSeparateRowsValuesAndGradients) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir(), at::kDouble);
  LoraConfig cfg;
  cfg.r = 4;
  cfg.dropout = 0;
  apply_lora(model, cfg);
  {
    torch::NoGradGuard no_grad;
    at::manual_seed(5);
    for (auto& [name, t] : named_trainable_parameters(model))
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.05);
  }
  model->train();
  std::vector<std::vector<int32_t>> prompts = {{1, 80, 147, 201, 282, 57}, {1, 80}, {1, 44, 9}};
  std::vector<std::vector<int32_t>> chosen = {{313, 875, 231}, {401, 1844, 152, 7, 90}, {}};
  std::vector<std::vector<int32_t>> rejected = {{12}, {875, 231}, {300, 301, 302, 303}};
  PairLogprobs packed = pair_logprobs(model, prompts, chosen, rejected);
  ContinuationLogprobs a = continuation_logprobs(model, prompts, chosen);
  ContinuationLogprobs b = continuation_logprobs(model, prompts, rejected);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_NEAR(packed.a_sum[i].item<double>(), a.sum[i].item<double>(), 1e-9) << "pair " << i << " chosen";
    EXPECT_NEAR(packed.b_sum[i].item<double>(), b.sum[i].item<double>(), 1e-9) << "pair " << i << " rejected";
  }
  EXPECT_EQ(packed.a_sum[2].item<double>(), 0.0);  // an empty answer scores 0
  // The same loss through both layouts gives the same gradient on every adapter weight.
  auto grads = [&](bool pack) {
    for (auto& t : trainable_parameters(model)) t.mutable_grad() = at::Tensor();
    at::Tensor loss;
    if (pack) {
      PairLogprobs p = pair_logprobs(model, prompts, chosen, rejected);
      loss = (p.a_sum - 0.5 * p.b_sum).sum();
    } else {
      loss = (continuation_logprobs(model, prompts, chosen).sum - 0.5 * continuation_logprobs(model, prompts, rejected).sum).sum();
    }
    loss.backward();
    std::vector<at::Tensor> g;
    for (auto& t : trainable_parameters(model)) g.push_back(t.grad().clone());
    return g;
  };
  std::vector<at::Tensor> gp = grads(true), gr = grads(false);
  ASSERT_EQ(gp.size(), gr.size());
  double worst = 0;
  for (size_t i = 0; i < gp.size(); ++i) worst = std::max(worst, (gp[i] - gr[i]).abs().max().item<double>());
  std::printf("  max |grad packed - grad two rows| %.3g over %zu tensors\n", worst, gp.size());
  EXPECT_LT(worst, 1e-9);
  // The no-grad helper agrees and batches.
  std::vector<double> sa, sb;
  pair_logprob_sums(model, prompts, chosen, rejected, sa, sb, 2);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_NEAR(sa[i], a.sum[i].item<double>(), 1e-9);
    EXPECT_NEAR(sb[i], b.sum[i].item<double>(), 1e-9);
  }
}
