// One home for each setting: the seed grid that `rlrf run`'s evaluation and `rlrf rerank` share
// (the same [eval] keys give the same trainings), an old spelling refused naming the key to use,
// and an unknown key in any section naming its file, section and key.
#include <gtest/gtest.h>

#include "error_of.h"
#include "pipeline/experiment.h"
#include "pipeline/run_config.h"
#include "util/config.h"
#include "util/files.h"

using namespace rlrf;
using rlrf::test::error_of;

TEST(Experiment, SeedGridIsTheSameForTheRunAndTheRerankVerb) {
  const ConfigFile file = ConfigFile::parse("[eval]\nseeds = [7, 9, 7]\nmodels = [\"prm\", \"dlcm\"]\n", "grid.toml");
  const EvalConfig run = RunConfig::from_file(file).eval;
  const EvalConfig verb = read_eval_seeds_and_models(file.section("eval"));
  EXPECT_EQ(run.seeds, verb.seeds);
  EXPECT_EQ(run.models, verb.models);
  ExperimentResults a, b;
  const std::vector<GridTraining> grid_a = add_training_grid(a, {"no knowledge", "profile"}, run.models, run.seeds);
  const std::vector<GridTraining> grid_b = add_training_grid(b, {"no knowledge", "profile"}, verb.models, verb.seeds);
  EXPECT_EQ(grid_a, grid_b);
  // Knowledge rows outer, then models, then seeds; a repeated seed keeps its own slot.
  ASSERT_EQ(grid_a.size(), 12u);
  ASSERT_EQ(a.rows.size(), 4u);
  EXPECT_EQ(a.rows[1].name, "no knowledge");
  EXPECT_EQ(a.rows[1].model, "dlcm");
  EXPECT_EQ(a.rows[2].name, "profile");
  EXPECT_EQ(a.rows[2].seeds.size(), 3u);
  EXPECT_EQ(grid_a[2], (GridTraining{0, 0, "prm", 2, 7}));
  EXPECT_EQ(grid_a[11], (GridTraining{3, 1, "dlcm", 2, 7}));
}

TEST(RunConfig, OldSpellingsNameTheKeyToUse) {
  auto run_error = [](const std::string& text) {
    return error_of([&] { RunConfig::from_file(ConfigFile::parse(text, "old.toml")); });
  };
  EXPECT_EQ(run_error("[rerank]\nitem_knowledge = \"metadata\"\n"),
            "old.toml [rerank]: key 'item_knowledge' is not read here: use [knowledge] item");
  EXPECT_EQ(run_error("[rerank]\nseeds = [1, 2]\n"), "old.toml [rerank]: key 'seeds' is not read here: use [eval] seeds");
  EXPECT_NE(run_error("[rerank]\nencoder = \"hash\"\n").find("use [knowledge] encoder"), std::string::npos);
  EXPECT_NE(run_error("[rerank]\nuser_text_history = false\n").find("use [knowledge] user_history"), std::string::npos);
  EXPECT_NE(run_error("[rerank]\nmodel = \"prm\"\n").find("use [eval] models"), std::string::npos);
  // Keys of `rlrf rerank` alone, which a run would ignore.
  EXPECT_NE(run_error("[rerank]\nknowledge = \"profile\"\n").find("old.toml [rerank]: key 'knowledge'"), std::string::npos);
  EXPECT_NE(run_error("[rerank]\ncache_dir = \"/tmp/c\"\n").find("old.toml [rerank]: key 'cache_dir'"), std::string::npos);
  // The verb takes those two, and refuses the moved keys alike.
  ConfigFile verb = ConfigFile::parse("[rerank]\nknowledge = \"none\"\ncache_dir = \"/tmp/c\"\n", "verb.toml");
  EXPECT_EQ(read_rerank_section(verb.section("rerank"), true).knowledge, "none");
  ConfigFile moved = ConfigFile::parse("[rerank]\nseeds = [1]\n", "verb.toml");
  EXPECT_EQ(error_of([&] { read_rerank_section(moved.section("rerank"), true); }),
            "verb.toml [rerank]: key 'seeds' is not read here: use [eval] seeds");
  // `rlrf rerank` reads [eval] seeds and models only.
  ConfigFile eval = ConfigFile::parse("[eval]\nseeds = [1]\nprofile_row = false\n", "verb.toml");
  EXPECT_NE(error_of([&] { read_eval_seeds_and_models(eval.section("eval")); }).find("verb.toml [eval]: key 'profile_row'"),
            std::string::npos);
}

TEST(RunConfig, UnknownKeysNameTheFileSectionAndKey) {
  for (const char* section : {"run", "prepare", "model", "prompt", "generate", "sft", "knowledge", "reward", "rerank", "dpo", "eval"}) {
    const std::string text = std::string("[") + section + "]\nno_such_key = 1\n";
    const std::string error = error_of([&] { RunConfig::from_file(ConfigFile::parse(text, "typo.toml")); });
    EXPECT_NE(error.find(std::string("typo.toml [") + section + "]"), std::string::npos) << error;
    EXPECT_NE(error.find("no_such_key"), std::string::npos) << error;
  }
  const std::string nested = error_of([&] { RunConfig::from_file(ConfigFile::parse("[dpo.lora]\nrank = 8\n", "typo.toml")); });
  EXPECT_NE(nested.find("typo.toml [dpo.lora]"), std::string::npos) << nested;
  EXPECT_NE(nested.find("rank"), std::string::npos) << nested;
}

TEST(RunConfig, KeysTheChosenModeWouldIgnoreAreRefused) {
  auto error = [](const std::string& text) {
    return error_of([&] { RunConfig::from_file(ConfigFile::parse(text, "mode.toml")); });
  };
  std::string e = error("[sft]\nenabled = false\nlr = 0.001\n");
  EXPECT_NE(e.find("mode.toml [sft]: lr is a setting of enabled = true"), std::string::npos) << e;
  e = error("[dpo]\nfinetune = \"full\"\n[dpo.lora]\nr = 8\n");
  EXPECT_NE(e.find("mode.toml [dpo.lora]: r is a setting of finetune = \"lora\""), std::string::npos) << e;
  e = error("[sft]\nenabled = true\nfinetune = \"full\"\n[sft.lora]\nalpha = 8\n");
  EXPECT_NE(e.find("alpha is a setting of finetune = \"lora\""), std::string::npos) << e;
  e = error("[reward]\nmodel = \"card\"\nmetric = \"map\"\n");
  EXPECT_NE(e.find("metric is a setting of the reranker reward models"), std::string::npos) << e;
  // The same keys in the mode that reads them are fine.
  EXPECT_NO_THROW(RunConfig::from_file(ConfigFile::parse("[sft]\nenabled = true\nlr = 0.001\n[dpo]\nfinetune = \"lora\"\n"
                                                         "[dpo.lora]\nr = 8\n[reward]\nmodel = \"prm\"\nmetric = \"map\"\n",
                                                         "mode.toml")));
}

TEST(RunConfig, TheRerankVerbsConfigReadsAsTheRunsSections) {
  const ConfigFile file = ConfigFile::load(source_dir() / "configs" / "rerank-ml100k.toml");
  EXPECT_EQ(read_rerank_section(file.section("rerank"), true).knowledge, "profile");
  KnowledgeConfig knowledge;
  const ConfigSection section = file.section("knowledge");
  knowledge.read(section);
  EXPECT_NO_THROW(section.check_no_unknown_keys());
  EXPECT_EQ(knowledge.item, "metadata");
  EXPECT_EQ(read_eval_seeds_and_models(file.section("eval")).seeds, (std::vector<int>{1, 2, 3}));
}
