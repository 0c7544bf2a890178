// DPO and SFT checked against the plain-PyTorch reference (tools/ref/align_dpo_ref.py) on the real
// tinystories-656k checkpoint: the first optimizer steps' losses and implicit rewards, full
// fine-tune and LoRA; the loss formula on a hand-computed case; pair selection and exports.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "align/dpo.h"
#include "align/pairs.h"
#include "align/schedule.h"
#include "align/sft.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "util/files.h"
#include "util/runtime.h"

using namespace rlrf;

namespace {

fs::path golden_dir() { return source_dir() / "tests" / "data" / "align"; }

nlohmann::json golden() { return nlohmann::json::parse(read_file(golden_dir() / "dpo_golden.json")); }

llm::LlamaForCausalLM tinystories() {
  fs::path dir = shared_dir() / "models" / "tinystories-656k";
  llm::ModelOptions o;
  return llm::load_model(dir, o);
}

std::vector<PreferencePair> golden_pairs(const nlohmann::json& g) {
  std::vector<PreferencePair> pairs;
  for (const auto& p : g["pairs"]) {
    PreferencePair pp;
    pp.prompt = p["prompt"].get<std::vector<int32_t>>();
    pp.chosen = p["chosen"].get<std::vector<int32_t>>();
    pp.rejected = p["rejected"].get<std::vector<int32_t>>();
    pairs.push_back(pp);
  }
  return pairs;
}

DpoConfig golden_config(const nlohmann::json& g, const std::string& finetune) {
  DpoConfig c;
  c.beta = g["beta"];
  c.lr = g["lr"];
  c.batch_size = g["batch_size"];
  c.grad_accum = g["grad_accum"];
  c.max_grad_norm = g["max_grad_norm"];
  c.epochs = 1;
  c.schedule = "constant";
  c.warmup_ratio = 0;
  c.shuffle = false;
  c.finetune = finetune;
  return c;
}

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
  c.lr = g["lr"];
  c.batch_size = g["batch_size"];
  c.grad_accum = g["grad_accum"];
  c.max_grad_norm = g["max_grad_norm"];
  c.epochs = 1;
  c.schedule = "constant";
  c.warmup_ratio = 0;
  c.shuffle = false;
  c.finetune = "full";
  SftResult r = train_sft(model, examples, c);
  ASSERT_EQ(r.steps.size(), g["sft"].size());
  for (size_t i = 0; i < r.steps.size(); ++i) {
    EXPECT_NEAR(r.steps[i].loss, g["sft"][i]["loss"].get<double>(), 2e-5) << "step " << i;
    EXPECT_NEAR(r.steps[i].grad_norm, g["sft"][i]["grad_norm"].get<double>(), 1e-3 * std::max(1.0, g["sft"][i]["grad_norm"].get<double>()));
  }
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
