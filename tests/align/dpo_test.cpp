// DPO and SFT checked against the plain-PyTorch reference (tools/ref/align_dpo_ref.py) on the real
// tinystories-656k checkpoint: the first optimizer steps' losses and implicit rewards, full
// fine-tune and LoRA; the loss formula on a hand-computed case; pair selection and exports.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "align/dpo.h"
#include "align/dpo_golden.h"
#include "align/pairs.h"
#include "align/schedule.h"
#include "align/sft.h"
#include "llm/checkpoint.h"
#include "llm/logprob.h"
#include "llm/lora.h"
#include "util/files.h"
#include "runtime/runtime.h"

using namespace rlrf;

namespace {

fs::path golden_dir() { return test::dpo_golden_dir(); }
nlohmann::json golden() { return test::dpo_golden(); }

llm::LlamaForCausalLM tinystories() {
  fs::path dir = shared_dir() / "models" / "tinystories-656k";
  llm::ModelOptions o;
  return llm::load_model(dir, o);
}

std::vector<PreferencePair> golden_pairs(const nlohmann::json& g) { return test::dpo_golden_pairs(g); }
DpoConfig golden_config(const nlohmann::json& g, const std::string& finetune) { return test::dpo_golden_config(g, finetune); }

void expect_steps(const std::vector<DpoStepLog>& got, const nlohmann::json& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_NEAR(got[i].loss, want[i]["loss"].get<double>(), 2e-5);
    EXPECT_NEAR(got[i].chosen_reward, want[i]["chosen_reward"].get<double>(), 2e-5);
    EXPECT_NEAR(got[i].rejected_reward, want[i]["rejected_reward"].get<double>(), 2e-5);
    EXPECT_NEAR(got[i].margin, want[i]["margin"].get<double>(), 2e-5);
    // With policy == reference every reward is 0 up to rounding, and "chosen > rejected" is noise.
    if (std::abs(want[i]["margin"].get<double>()) > 1e-6) EXPECT_NEAR(got[i].accuracy, want[i]["accuracy"].get<double>(), 1e-9);
    EXPECT_NEAR(got[i].grad_norm, want[i]["grad_norm"].get<double>(), 1e-3 * std::max(1.0, want[i]["grad_norm"].get<double>()));
  }
}

}  // namespace

TEST(Dpo, LossMatchesHandComputation) {
  // beta 0.1; chosen log-ratio +1, rejected -1: logits 0.2, loss = -log sigmoid(0.2) = log(1 + e^-0.2).
  auto t = [](float v) { return at::full({1}, v); };
  DpoBatchLoss l = dpo_loss(t(-10), t(-12), t(-11), t(-11), 0.1);
  EXPECT_NEAR(l.loss.item<double>(), std::log1p(std::exp(-0.2)), 1e-6);
  EXPECT_NEAR(l.chosen_rewards.item<double>(), 0.1, 1e-6);
  EXPECT_NEAR(l.rejected_rewards.item<double>(), -0.1, 1e-6);
  // Policy == reference: log 2.
  EXPECT_NEAR(dpo_loss(t(-5), t(-7), t(-5), t(-7), 0.01).loss.item<double>(), std::log(2.0), 1e-6);
}

TEST(Dpo, FullFineTuneMatchesReference) {
  init_threads();
  nlohmann::json g = golden();
  llm::LlamaForCausalLM model = tinystories();
  DpoResult r = train_dpo(model, golden_pairs(g), golden_config(g, "full"));
  expect_steps(r.steps, g["full"]);
}

TEST(Dpo, LoraMatchesReferenceAndReferenceIsAdaptersOff) {
  init_threads();
  nlohmann::json g = golden();
  llm::LlamaForCausalLM model = tinystories();
  llm::load_lora(model, golden_dir() / "dpo-start-adapter");
  DpoResult r = train_dpo(model, golden_pairs(g), golden_config(g, "lora"));
  expect_steps(r.steps, g["lora"]);
}

TEST(Dpo, TrainingRaisesTheMarginOnItsPairs) {
  init_threads();
  nlohmann::json g = golden();
  llm::LlamaForCausalLM model = tinystories();
  llm::LoraConfig lora;
  lora.r = 4;
  lora.dropout = 0;
  llm::apply_lora(model, lora);
  DpoConfig c = golden_config(g, "lora");
  c.epochs = 6;
  c.lr = 5e-3;
  DpoResult r = train_dpo(model, golden_pairs(g), c);
  ASSERT_FALSE(r.steps.empty());
  EXPECT_NEAR(r.steps.front().margin, 0.0, 1e-6);  // fresh adapters: policy == reference
  EXPECT_GT(r.steps.back().margin, 0.05);
  EXPECT_LT(r.steps.back().loss, std::log(2.0) - 0.02);
  EXPECT_GT(r.tokens_per_second(), 0);
}

TEST(Sft, MatchesReference) {
  init_threads();
  nlohmann::json g = golden();
  llm::LlamaForCausalLM model = tinystories();
  std::vector<SftExample> examples;
  for (const PreferencePair& p : golden_pairs(g)) examples.push_back({p.prompt, p.chosen});
  SftConfig c;
  test::apply_golden_settings(c, g);
  c.finetune = "full";
  SftResult r = train_sft(model, examples, c);
  ASSERT_EQ(r.steps.size(), g["sft"].size());
  for (size_t i = 0; i < r.steps.size(); ++i) {
    EXPECT_NEAR(r.steps[i].loss, g["sft"][i]["loss"].get<double>(), 2e-5) << "step " << i;
    EXPECT_NEAR(r.steps[i].grad_norm, g["sft"][i]["grad_norm"].get<double>(), 1e-3 * std::max(1.0, g["sft"][i]["grad_norm"].get<double>()));
  }
}

// bf16 compute on fp32 masters: updates far below a bf16 step (lr 1e-6, a few steps) accumulate in
// the weights; bf16 weights would have kept almost none of them (w + d rounds back to w).
TEST(Sft, Bf16ComputeKeepsUpdatesSmallerThanABf16Step) {
  init_threads();
  nlohmann::json g = golden();
  llm::LlamaForCausalLM model = tinystories();
  at::Tensor before = model->model->layer_list[0]->mlp->up_proj->weight.detach().clone();
  std::vector<SftExample> examples;
  for (const PreferencePair& p : golden_pairs(g)) examples.push_back({p.prompt, p.chosen});
  SftConfig c;
  c.lr = 1e-6;
  c.batch_size = 2;
  c.epochs = 2;
  c.schedule = "constant";
  c.warmup_ratio = 0;
  c.dtype = "bf16";
  SftResult r = train_sft(model, examples, c);
  ASSERT_GT(r.steps.size(), 1u);
  at::Tensor after = model->model->layer_list[0]->mlp->up_proj->weight.detach();
  ASSERT_EQ(after.scalar_type(), at::kFloat);
  at::Tensor delta = (after - before).abs();
  // Half a bf16 step of each weight: 2^(exponent - 8).
  at::Tensor half_step = at::pow(2.0, at::floor(at::log2(before.abs())) - 8);
  const double changed = (delta > 0).to(at::kFloat).mean().item<double>();
  const double kept_in_bf16 = ((before + (after - before)).to(at::kBFloat16).to(at::kFloat) != before.to(at::kBFloat16).to(at::kFloat))
                                  .to(at::kFloat).mean().item<double>();
  std::printf("  lr 1e-6, %zu steps: %.1f%% of up_proj weights moved (max |dw| %.2g, median half bf16 step %.2g); "
              "bf16 weights would show %.1f%% of them changed\n",
              r.steps.size(), 100 * changed, delta.max().item<double>(), half_step.median().item<double>(), 100 * kept_in_bf16);
  EXPECT_GT(changed, 0.9);
  EXPECT_LT(delta.max().item<double>(), half_step.median().item<double>());
}

TEST(Schedule, WarmupThenCosineLinearConstant) {
  LrSchedule s;
  s.base_lr = 1.0;
  s.warmup_steps = 3;
  s.total_steps = 13;
  EXPECT_NEAR(s.at(0), 0.25, 1e-12);
  EXPECT_NEAR(s.at(2), 0.75, 1e-12);
  EXPECT_NEAR(s.at(3), 1.0, 1e-12);
  EXPECT_NEAR(s.at(8), 0.5, 1e-12);  // half way through the cosine
  EXPECT_NEAR(s.at(13), 0.0, 1e-12);
  s.kind = "linear";
  EXPECT_NEAR(s.at(8), 0.5, 1e-12);
  s.kind = "constant";
  EXPECT_NEAR(s.at(12), 1.0, 1e-12);
}

TEST(Pairs, BestAndWorstPerUserTiesSkipped) {
  std::vector<RewardedResponse> r = {{1, 0, 0.5}, {1, 1, 0.7}, {1, 2, 0.2}, {2, 0, 0.4}, {2, 1, 0.4}, {3, 0, 0.9},
                                     {4, 0, 0.3}, {4, 1, 0.6}, {4, 2, 0.6}};
  PairSelection s = select_pairs(r);
  EXPECT_EQ(s.users, 4);
  EXPECT_EQ(s.ties_skipped, 1);       // user 2
  EXPECT_EQ(s.single_response, 1);    // user 3
  ASSERT_EQ(s.pairs.size(), 2u);
  EXPECT_EQ(s.pairs[0].user, 1);
  EXPECT_EQ(s.pairs[0].chosen_sample, 1);
  EXPECT_EQ(s.pairs[0].rejected_sample, 2);
  EXPECT_EQ(s.pairs[1].chosen_sample, 1);  // equal best: the lower sample index
  EXPECT_EQ(s.pairs[1].rejected_sample, 0);
  EXPECT_EQ(select_pairs(r, 0.35).pairs.size(), 1u);  // margin filter: only user 1 (0.5 apart)
}

TEST(Pairs, AllTiedUsersAreCountedApartFromThoseBelowTheMargin) {
  std::vector<RewardedResponse> r = {{1, 0, 0.5}, {1, 1, 0.5}, {1, 2, 0.5}, {1, 3, 0.5},  // all four tied
                                     {2, 0, 0.40}, {2, 1, 0.45}, {3, 0, 0.1}, {3, 1, 0.9}};
  PairSelection s = select_pairs(r);
  EXPECT_EQ(s.all_tied, 1);
  EXPECT_EQ(s.ties_skipped, 1);
  EXPECT_EQ(s.pairs.size(), 2u);
  s = select_pairs(r, 0.1);  // user 2's 0.05 is below the margin: skipped, but not "all tied"
  EXPECT_EQ(s.all_tied, 1);
  EXPECT_EQ(s.ties_skipped, 2);
  ASSERT_EQ(s.pairs.size(), 1u);
  EXPECT_EQ(s.pairs[0].user, 3);
  // Every user tied: no pairs, and no error (the loop skips such a round with a warning).
  s = select_pairs({{1, 0, 0.3}, {1, 1, 0.3}, {2, 0, 0.7}, {2, 1, 0.7}});
  EXPECT_TRUE(s.pairs.empty());
  EXPECT_EQ(s.all_tied, 2);
}

TEST(Dpo, TrainedParametersMustBeFp32Masters) {
  llm::ModelOptions o;
  o.dtype = at::kBFloat16;
  llm::LlamaForCausalLM model = llm::load_model(shared_dir() / "models" / "tinystories-656k", o);
  DpoConfig c;
  c.finetune = "full";
  PreferencePair p{0, {1, 80, 875}, {231, 401}, {152, 938}};
  try {
    train_dpo(model, {p}, c);
    ADD_FAILURE() << "a bf16 full fine-tune should be refused";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("fp32 masters"), std::string::npos) << e.what();
  }
}

TEST(Pairs, ExportsParseBackInTrlAndLlamaFactoryLayouts) {
  fs::path dir = fresh_temp_dir("pairs_export");
  std::vector<PairText> pairs = {{"196", "sys", "Given a user...", "likes \"noir\"\nand dramas", "story", 0.6, 0.2}};
  export_trl_jsonl(pairs, dir / "p.trl.jsonl");
  auto lines = read_lines(dir / "p.trl.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["prompt"][0]["role"], "system");
  EXPECT_EQ(j["prompt"][1]["content"], "Given a user...");
  EXPECT_EQ(j["chosen"][0]["role"], "assistant");
  EXPECT_EQ(j["chosen"][0]["content"], "likes \"noir\"\nand dramas");
  EXPECT_EQ(j["rejected"][0]["content"], "story");
  export_llamafactory(pairs, dir, "round0");
  export_llamafactory(pairs, dir, "round1");  // merged into the same dataset_info.json
  auto info = nlohmann::json::parse(read_file(dir / "dataset_info.json"));
  EXPECT_TRUE(info["round0"]["ranking"].get<bool>());
  EXPECT_EQ(info["round1"]["file_name"], "round1.json");
  EXPECT_EQ(info["round1"]["columns"]["chosen"], "chosen");
  auto rows = nlohmann::json::parse(read_file(dir / "round1.json"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["instruction"], "Given a user...");
  EXPECT_EQ(rows[0]["rejected"], "story");
}

// Learning happens, and survives to the policy that generates the next round: on a planted
// preference (the chosen answer opens with token A, the rejected one with token B, the rest shared)
// DPO with a realistic small update (LoRA, lr 2e-4, bf16 compute on fp32 masters) raises the
// implicit reward margin of HELD-OUT pairs (new prompts, new answers) above 0 for most of them, both
// in memory and after the adapter's round trip through the loader generation uses
// (llm::load_merged_policy). Merging the same adapter into bf16 weights (the loader before)
// rounds most of the update away: printed beside it.
TEST(Dpo, PlantedPreferenceGeneralisesToHeldOutPairsAfterTheRoundTrip) {
  init_threads();
  const int32_t kA = 1510, kB = 1511;
  std::mt19937_64 rng(17);
  std::uniform_int_distribution<int32_t> token(100, 1999);
  auto make_pairs = [&](int n) {
    std::vector<PreferencePair> out;
    for (int i = 0; i < n; ++i) {
      PreferencePair p;
      p.prompt = {1};
      for (int k = 0; k < 12; ++k) p.prompt.push_back(token(rng));
      std::vector<int32_t> rest;
      for (int k = 0; k < 10; ++k) rest.push_back(token(rng));
      p.chosen = {kA};
      p.rejected = {kB};
      p.chosen.insert(p.chosen.end(), rest.begin(), rest.end());
      p.rejected.insert(p.rejected.end(), rest.begin(), rest.end());
      out.push_back(std::move(p));
    }
    return out;
  };
  const std::vector<PreferencePair> train = make_pairs(48), held_out = make_pairs(32);
  const fs::path base_dir = shared_dir() / "models" / "tinystories-656k";
  llm::LlamaForCausalLM model = tinystories();
  llm::LoraConfig lora;
  lora.r = 8;
  lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  lora.seed = 5;
  llm::apply_lora(model, lora);
  DpoConfig c;
  c.beta = 0.1;
  c.lr = 2e-4;
  c.batch_size = 4;
  c.grad_accum = 1;
  c.epochs = 2;
  c.warmup_ratio = 0;
  c.dtype = "bf16";
  train_dpo(model, train, c);
  for (auto& [name, p] : llm::named_trainable_parameters(model)) ASSERT_EQ(p.scalar_type(), at::kFloat) << name;

  // Held-out pair accuracy and mean implicit reward margin beta * (log-ratio chosen - log-ratio rejected).
  // (what the DPO stage reports on its held-out pairs: preference_metrics)
  auto held_out_margin = [&](llm::LlamaForCausalLM& policy, llm::LlamaForCausalLM& reference, double* accuracy) {
    PreferenceMetrics m = preference_metrics(policy, held_out, c.beta, &reference);
    *accuracy = m.accuracy;
    return m.margin;
  };
  double acc_memory = 0, acc_fp32 = 0, acc_bf16 = 0, acc_old = 0;
  llm::LlamaForCausalLM base32 = tinystories();
  const double margin_memory = held_out_margin(model, base32, &acc_memory);
  // The reference as the DPO stage takes it (the same model with its adapters off) gives the same.
  const PreferenceMetrics adapters_off = preference_metrics(model, held_out, c.beta);
  EXPECT_NEAR(adapters_off.margin, margin_memory, 1e-6);
  EXPECT_GT(adapters_off.chosen_logratio, adapters_off.rejected_logratio);
  fs::path dir = fresh_temp_dir("dpo_planted");
  llm::save_lora(model, lora, dir);
  llm::ModelOptions fp32, bf16;
  bf16.dtype = at::kBFloat16;
  llm::LlamaForCausalLM gen32 = llm::load_merged_policy(base_dir, {dir}, fp32);
  llm::LlamaForCausalLM gen16 = llm::load_merged_policy(base_dir, {dir}, bf16);
  llm::LlamaForCausalLM base16 = llm::load_model(base_dir, bf16);
  llm::LlamaForCausalLM old = llm::load_model(base_dir, bf16);
  llm::load_lora(old, dir);
  llm::merge_lora(old);
  const double margin_fp32 = held_out_margin(gen32, base32, &acc_fp32);
  const double margin_bf16 = held_out_margin(gen16, base16, &acc_bf16);
  const double margin_old = held_out_margin(old, base16, &acc_old);
  std::printf("  held-out pairs: in memory margin %+.4f acc %.2f; generating policy fp32 merge %+.4f acc %.2f; "
              "fp32 merge then bf16 %+.4f acc %.2f; bf16 merge (before) %+.4f acc %.2f\n",
              margin_memory, acc_memory, margin_fp32, acc_fp32, margin_bf16, acc_bf16, margin_old, acc_old);
  EXPECT_GT(acc_memory, 0.9);
  EXPECT_GT(margin_memory, 0.0);
  EXPECT_GT(acc_fp32, 0.9);  // the bf16 merge loses half the margin and falls to ~0.6
  EXPECT_NEAR(margin_fp32, margin_memory, 1e-3 * std::abs(margin_memory) + 1e-6);
}
