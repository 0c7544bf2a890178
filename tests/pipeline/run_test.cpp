// The whole loop, end to end, on a few users: `rlrf run` writes every artefact a user reads (report,
// results, plots, pairs for TRL and LLaMA-Factory, PEFT adapters), test users never get rewards,
// and a second run finds every stage current and changes nothing. Every shipped config parses.
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "run_process.h"
#include "align/pairs.h"
#include "data/prepare.h"
#include "pipeline/experiment.h"
#include "pipeline/run_config.h"
#include "pipeline/run_store.h"
#include "util/config.h"
#include "util/files.h"
#include "util/strings.h"

using namespace rlrf;
using namespace rlrf::test;

namespace {

std::string small_run(const fs::path& dir) {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = 1\nmax_users = 16\n"
         "[prepare]\ndataset = \"ml-100k\"\nsetting = \"first-stage\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = 3\nmax_new_tokens = 24\nbatch_size = 12\ndtype = \"bf16\"\n"
         "[sft]\nenabled = true\nepochs = 1\nbatch_size = 8\nlr = 2e-3\n"
         "[knowledge]\nencoder = \"hash\"\n"
         "[reward]\nfolds = 2\n"
         "[rerank]\nepochs = 2\npatience = 1\ndtype = \"bf16\"\n"
         "[dpo]\nbatch_size = 2\ngrad_accum = 2\nepochs = 1\nlr = 1e-3\n"
         "[eval]\nmodels = [\"dlcm\", \"prm\"]\nseeds = [1, 2]\nalso_settings = [\"kar\"]\nalso_models = [\"dlcm\"]\n";
}

}  // namespace

TEST(Run, WholeLoopWritesEveryArtefactAndASecondRunChangesNothing) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("run_e2e"), dir = base / "run";
  write_file_atomic(base / "run.toml", small_run(dir));
  auto [rc, log] = run_rlrf(base / "run.toml", base / "first.log");
  ASSERT_EQ(rc, 0) << log;

  for (const char* f : {"report.md", "results.json", "config.toml", "metrics_by_round.svg", "dpo_loss.svg",
                        "rewards_chosen_rejected.svg", "reward_distribution.svg", "pairs/round0.trl.jsonl",
                        "pairs/dataset_info.json", "models/round1/adapter/adapter_config.json",
                        "models/round1/adapter/adapter_model.safetensors", "knowledge/round0.jsonl",
                        "knowledge/round1.jsonl", "knowledge/history.jsonl", "diagnostics.json",
                        "models/reward0-fold0.rrk", "models/reward0-fold1.rrk"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;

  // The paper's rows, each model, each seed.
  ExperimentResults res = load_experiment(dir / "results.json");
  EXPECT_EQ(res.setting, "first-stage");
  for (const char* row : {"no knowledge", "history text only", "profile", "KAR (SFT LLM, before DPO)", "RLRF4Rec round 1"}) {
    for (const char* model : {"dlcm", "prm"}) {
      const RowResult* r = res.find(row, model);
      ASSERT_NE(r, nullptr) << row << "@" << model;
      EXPECT_EQ(r->seeds.size(), 2u);
      for (const SeedResult& s : r->seeds) EXPECT_GT(s.test.count, 0) << row;
    }
  }
  ASSERT_NE(res.find("popularity", ""), nullptr);
  // The same knowledge on the paper's lists (same users, DLCM only as configured).
  ExperimentResults kar = load_experiment(dir / "results_kar.json");
  EXPECT_EQ(kar.setting, "kar");
  ASSERT_NE(kar.find("random order", ""), nullptr);
  EXPECT_EQ(kar.find("profile", "prm"), nullptr);
  for (const char* row : {"no knowledge", "profile", "KAR (SFT LLM, before DPO)", "RLRF4Rec round 1"}) {
    const RowResult* r = kar.find(row, "dlcm");
    ASSERT_NE(r, nullptr) << row;
    EXPECT_EQ(r->seeds.size(), 2u);
    // kar lists hold the user's next real items: as many test lists as a first-stage window would not give.
    for (const SeedResult& s : r->seeds) EXPECT_NE(s.test.count, res.find(row, "dlcm")->seeds[0].test.count) << row;
  }
  std::string report = read_file(dir / "report.md");
  for (const char* part : {"## Test metrics", "## Test metrics on `kar` lists (the paper's setting)", "Paired comparisons", "Did DPO raise the reward?", "## DPO", "RLRF4Rec round 1",
                           "## Per-round diagnostics", "vs history text only"})
    EXPECT_NE(report.find(part), std::string::npos) << part;

  // Pairs: one TRL line per pair, each with its prompt and two different answers.
  int pairs = 0;
  for (const std::string& line : read_lines(dir / "pairs" / "round0.trl.jsonl")) {
    if (trim(line).empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("prompt") && j.contains("chosen") && j.contains("rejected"));
    EXPECT_NE(j["chosen"].dump(), j["rejected"].dump());
    ++pairs;
  }
  EXPECT_GT(pairs, 0);

  // Rewards go to training users (paired) and validation users (reported), never to test users;
  // every (user, sample) of every split was generated.
  {
    RunStore store(dir / "run.sqlite");
    const std::vector<StoredResponse> responses = store.responses(0);
    EXPECT_EQ(responses.size(), 3u * 16u * 3u);  // 16 users per split, 3 samples
    PreparedData data = load_prepared(dir / "prepared.bin");
    std::map<Split, std::set<int32_t>> rewarded;
    for (const StoredReward& r : store.rewards(0, 0)) rewarded[data.sequences[static_cast<size_t>(r.user)].split].insert(r.user);
    EXPECT_EQ(rewarded[Split::kTrain].size(), 16u);
    EXPECT_EQ(rewarded[Split::kValid].size(), 16u);
    EXPECT_EQ(rewarded[Split::kTest].size(), 0u);
    // Per round: length, stop rate, distinct-2, card accuracy, held-out pairs of the DPO round.
    nlohmann::json diag = nlohmann::json::parse(read_file(dir / "diagnostics.json"));
    ASSERT_EQ(diag.size(), 2u);
    for (const char* key : {"mean_tokens", "eos_rate", "distinct2", "card_accuracy_test_eval", "reward_train", "reward_valid"})
      EXPECT_TRUE(diag[0].contains(key)) << key;
    EXPECT_EQ(diag[0]["test_users"].size(), 16u);
    EXPECT_TRUE(diag[1].contains("heldout_accuracy"));
    std::string knowledge = read_file(dir / "knowledge" / "round0.jsonl");
    EXPECT_EQ(std::count(knowledge.begin(), knowledge.end(), '\n'), 48);
    // The report's chosen/rejected means describe the pairs DPO used (tied users skipped), not the
    // best and worst of every user.
    std::vector<RewardedResponse> train;
    for (const StoredReward& r : store.rewards(0, 0))
      if (data.sequences[static_cast<size_t>(r.user)].split == Split::kTrain) train.push_back({r.user, r.sample, r.reward});
    PairSelection sel = select_pairs(train);
    ASSERT_FALSE(sel.pairs.empty());
    double chosen = 0, rejected = 0;
    for (const SelectedPair& p : sel.pairs) {
      chosen += p.chosen_reward / double(sel.pairs.size());
      rejected += p.rejected_reward / double(sel.pairs.size());
    }
    const std::string row = fmt::format("| {} | {} | {:.4f} | {:.4f} |", sel.pairs.size(), sel.ties_skipped, chosen, rejected);
    EXPECT_NE(report.find(row), std::string::npos) << row << "\n" << report;
  }

  // A second run: every stage current, the results as they were.
  const std::string results_before = read_file(dir / "results.json"), kar_before = read_file(dir / "results_kar.json");
  auto [rc2, log2] = run_rlrf(base / "run.toml", base / "second.log");
  ASSERT_EQ(rc2, 0) << log2;
  for (const char* work : {"sft step", "dpo step", "epoch 1:", "responses in"})
    EXPECT_EQ(log2.find(work), std::string::npos) << work << " in the second run:\n" << log2;
  EXPECT_NE(log2.find("sft: current"), std::string::npos) << log2;
  EXPECT_EQ(read_file(dir / "results.json"), results_before);
  EXPECT_EQ(read_file(dir / "results_kar.json"), kar_before);
}

TEST(RunConfig, ShippedConfigsAndTheEmbeddedDemoParse) {
  RunConfig demo = RunConfig::from_file(ConfigFile::parse(embedded_demo_config(), "(embedded demo)"));
  EXPECT_EQ(demo.prepare.setting, "popularity");
  int runs = 0;
  for (const auto& entry : fs::directory_iterator(source_dir() / "configs")) {
    if (entry.path().extension() != ".toml") continue;
    ConfigFile file = ConfigFile::load(entry.path());
    if (!file.has_section("run")) continue;  // a config of one verb (prepare, rerank)
    EXPECT_NO_THROW(RunConfig::from_file(file)) << entry.path();
    ++runs;
  }
  EXPECT_GE(runs, 3);  // demo, paper-ml1m, paper-amazon-books
}

TEST(RunConfig, UnknownKeysAndBadValuesNameTheirPlace) {
  auto error_of = [](const std::string& text) {
    try {
      RunConfig::from_file(ConfigFile::parse(text, "bad.toml"));
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("[generate]\ntemprature = 0.7\n").find("temprature"), std::string::npos);
  EXPECT_NE(error_of("[rerank]\ndtype = \"fp8\"\n").find("dtype"), std::string::npos);
  EXPECT_NE(error_of("[dpo]\ndtype = \"int4\"\n").find("int4"), std::string::npos);
  EXPECT_NE(error_of("[extra]\nx = 1\n").find("extra"), std::string::npos);
  EXPECT_NE(error_of("[eval]\nalso_settings = [\"uniform\"]\n").find("uniform"), std::string::npos);
  EXPECT_NE(error_of("[eval]\nalso_settings = [\"kar\"]\n").find("repeats the run's own setting"), std::string::npos);
}

// What does not change results stays out of the fingerprints: threads and jobs.
TEST(RunConfig, ThreadsAndJobsDoNotInvalidateStages) {
  ConfigFile a = ConfigFile::parse("[rerank]\nepochs = 3\n", "a"), b = ConfigFile::parse("[rerank]\nepochs = 3\njobs = 1\nthreads = 2\n", "b");
  EXPECT_EQ(a.section("rerank").canonical(), b.section("rerank").canonical());
  ConfigFile c = ConfigFile::parse("[rerank]\nepochs = 4\n", "c");
  EXPECT_NE(a.section("rerank").canonical(), c.section("rerank").canonical());
}
