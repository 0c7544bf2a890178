// [dpo] backend = "command": small real runs (tinystories-656k, ML-100K, 8 users a split) in which
// `rlrf dpo --config {config}` is the external trainer. The round trip gives the adapter the
// builtin backend trains (same pairs, order, seeds); the job files carry the run's settings; a
// failing command stops the run with its exit status and last lines, and a rerun (with the command
// fixed) retries that round only; the cutoff warning; the keys are checked.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "run_process.h"
#include "llm/logprob.h"
#include "llm/lora.h"
#include "llm/safetensors.h"
#include "pipeline/dpo_command.h"
#include "pipeline/run_config.h"
#include "pipeline/run_store.h"
#include "util/config.h"
#include "util/files.h"
#include "util/strings.h"

using namespace rlrf;
using namespace rlrf::test;

namespace {

std::string run_config_text(const fs::path& dir, int rounds, const std::string& dpo_extra = "") {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = " + std::to_string(rounds) + "\nmax_users = 8\n"
         "[prepare]\ndataset = \"ml-100k\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = 3\nmax_new_tokens = 12\nbatch_size = 12\n"
         // The response alone is the knowledge and the reward is continuous (relevant minus other
         // items' mean score): no user's rewards tie, every training user gives a pair.
         "[knowledge]\nencoder = \"hash\"\nuser_history = false\n"
         "[reward]\ntrain_knowledge = \"profile\"\nmetric = \"margin\"\nfolds = 2\n"
         "[rerank]\nepochs = 1\npatience = 1\n"
         "[dpo]\nepochs = 2\nlr = 2e-3\nbatch_size = 2\ngrad_accum = 2\nbeta = 0.1\n" + dpo_extra +
         "[dpo.lora]\nr = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n"
         "[eval]\nmodels = [\"dlcm\"]\nseeds = [1]\nprofile_row = false\n";
}

std::string rlrf_dpo_command() { return std::string(RLRF_BIN) + " dpo --config {config}"; }

std::string error_of(const std::string& text) {
  try {
    RunConfig::from_file(ConfigFile::parse(text, "bad.toml"));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(DpoCommand, KeysAreCheckedAndTheCommandStaysOutOfTheFingerprints) {
  EXPECT_EQ(RunConfig::from_file(ConfigFile::parse("", "empty.toml")).dpo.backend, "builtin");
  std::string e = error_of("[dpo]\nbackend = \"trl\"\n");
  EXPECT_NE(e.find("bad.toml [dpo]: backend must be \"builtin\" or \"command\", got \"trl\""), std::string::npos) << e;
  e = error_of("[dpo]\nbackend = \"command\"\n");
  EXPECT_NE(e.find("needs command"), std::string::npos) << e;
  e = error_of("[dpo]\ncommand = \"x\"\n");
  EXPECT_NE(e.find("command is a setting of backend = \"command\""), std::string::npos) << e;
  e = error_of("[dpo]\ncutoff_len = 64\n");
  EXPECT_NE(e.find("cutoff_len is a setting of backend = \"command\""), std::string::npos) << e;
  e = error_of("[dpo]\nbackend = \"command\"\ncommand = \"x\"\nfinetune = \"full\"\n");
  EXPECT_NE(e.find("finetune must be \"lora\""), std::string::npos) << e;
  e = error_of("[dpo]\nbackend = \"command\"\ncommand = \"x\"\ncutoff_len = -1\n");
  EXPECT_NE(e.find("cutoff_len must be >= 0"), std::string::npos) << e;
  RunConfig a = RunConfig::from_file(ConfigFile::parse("[dpo]\nbackend = \"command\"\ncommand = \"a {config}\"\n", "a.toml"));
  RunConfig b = RunConfig::from_file(ConfigFile::parse("[dpo]\nbackend = \"command\"\ncommand = \"b {config}\"\n", "b.toml"));
  EXPECT_EQ(a.sections_text({"dpo"}), b.sections_text({"dpo"})) << "a fixed command must not redo finished rounds";
  RunConfig c = RunConfig::from_file(ConfigFile::parse("[dpo]\nbackend = \"command\"\ncommand = \"a\"\ncutoff_len = 9\n", "c.toml"));
  EXPECT_NE(a.sections_text({"dpo"}), c.sections_text({"dpo"}));
  EXPECT_EQ(expand_trainer_command("train {config} --data {pairs} -o {output_dir}/x {other}", "/r/t.yaml", "/r/data", "/r/out"),
            "train /r/t.yaml --data /r/data -o /r/out/x {other}");
}

// The builtin round and the same round through `rlrf dpo --config {config}` train the same adapter:
// every tensor equal within 1e-5 and the policies' log-probs within 1e-4 nats per response.
TEST(DpoCommand, RoundTripWithRlrfDpoGivesTheBuiltinAdapter) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("dpo_command_roundtrip"), dir = base / "run";
  write_file_atomic(base / "run.toml", run_config_text(dir, 1));
  auto [rc, log] = run_rlrf(base / "run.toml", base / "builtin.log", "--until dpo");
  ASSERT_EQ(rc, 0) << log;
  ASSERT_TRUE(fs::exists(dir / "models" / "round1" / "adapter" / "adapter_model.safetensors")) << log;
  fs::copy(dir / "models" / "round1" / "adapter", base / "builtin_adapter");

  // The same run, its DPO round now by the command: only that round runs again.
  auto [rc2, log2] = run_rlrf(base / "run.toml", base / "command.log",
                              "--until dpo --set dpo.backend=command --set 'dpo.command=" + rlrf_dpo_command() + "'");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("by [dpo] command"), std::string::npos) << log2;
  EXPECT_EQ(log2.find("new tokens in"), std::string::npos) << "round 0 generated again:\n" << log2;
  EXPECT_NE(log2.find("matches the round's base, rank, alpha and layers"), std::string::npos) << log2;

  // The job files: the run's settings in the YAML, the round's training pairs as ranking rows.
  const fs::path job = dir / "dpo-command" / "round1";
  const std::string yaml = read_file(job / "train.yaml");
  const std::string model_path = expand_path("{shared}/models/tinystories-656k").string();
  for (const std::string& line : {"model_name_or_path: \"" + model_path + "\"", std::string("pref_beta: 0.1"),
                                  std::string("lora_rank: 4"), std::string("lora_alpha: 8"),
                                  std::string("lora_target: \"q_proj,v_proj,down_proj\""), std::string("learning_rate: 0.002"),
                                  std::string("num_train_epochs: 2.0"), std::string("per_device_train_batch_size: 2"),
                                  std::string("gradient_accumulation_steps: 2"), std::string("seed: 1"),  // [dpo] seed 0 + round 1
                                  std::string("template: \"empty\""), "output_dir: \"" + (job / "output").string() + "\"",
                                  std::string("#rlrf max_response_tokens: 12"),
                                  "#rlrf lora_seed: " + std::to_string(0x9e3779b97f4a7c15ull)})
    EXPECT_NE(yaml.find("\n" + line + "\n"), std::string::npos) << "missing: " << line << "\n" << yaml;
  nlohmann::json info = nlohmann::json::parse(read_file(job / "data" / "dataset_info.json"));
  EXPECT_TRUE(info["rlrf_round1"]["ranking"].get<bool>());
  nlohmann::json rows = nlohmann::json::parse(read_file(job / "data" / "rlrf_round1.json"));
  RunStore store(dir / "run.sqlite");
  nlohmann::json doc = nlohmann::json::parse(store.doc("dpo/1").value());
  EXPECT_EQ(rows.size(), doc["pairs"].get<size_t>());
  ASSERT_FALSE(rows.empty());
  for (const char* key : {"system", "instruction", "input", "chosen", "rejected", "rlrf_prompt_ids", "rlrf_chosen_ids",
                          "rlrf_rejected_ids"})
    EXPECT_TRUE(rows[0].contains(key)) << key;
  // rlrf dpo trained on the sampled ids the rows carry (here the text would not give them back: the
  // model spells its end marker "<|end_story|>" in plain characters, which a tokenizer reads as the
  // special token; the stage says so).
  EXPECT_NE(log2.find(fmt::format("; {} of them as the sampled ids the rows carry", rows.size())), std::string::npos) << log2;
  // The cutoff keeps every pair whole: 12 response tokens at most, after prompts of at most the context.
  const size_t at = yaml.find("\ncutoff_len: ");
  ASSERT_NE(at, std::string::npos);
  const int cutoff = std::stoi(yaml.substr(at + 13));
  EXPECT_GT(cutoff, 12);
  EXPECT_LE(cutoff, 512);
  EXPECT_EQ(log2.find("longer than cutoff_len"), std::string::npos) << log2;

  // The adapter read back, tensor by tensor, and the policies it gives.
  llm::SafetensorsFile a = llm::SafetensorsFile::open(base / "builtin_adapter" / "adapter_model.safetensors");
  llm::SafetensorsFile b = llm::SafetensorsFile::open(dir / "models" / "round1" / "adapter" / "adapter_model.safetensors");
  ASSERT_EQ(a.names(), b.names());
  double max_diff = 0, max_b = 0;
  for (const std::string& name : a.names()) {
    max_diff = std::max(max_diff, (a.tensor(name) - b.tensor(name)).abs().max().item<double>());
    if (name.find("lora_B") != std::string::npos) max_b = std::max(max_b, b.tensor(name).abs().max().item<double>());
  }
  std::printf("adapter tensors: max |builtin - command| = %.3g (largest |B| %.3g)\n", max_diff, max_b);
  EXPECT_GT(max_b, 0.0) << "the command trained nothing";
  EXPECT_LE(max_diff, 1e-5);
  EXPECT_EQ(nlohmann::json::parse(read_file(base / "builtin_adapter" / "adapter_config.json")),
            nlohmann::json::parse(read_file(dir / "models" / "round1" / "adapter" / "adapter_config.json")));

  llm::ModelOptions options;
  options.dtype = at::kFloat;
  llm::LlamaForCausalLM pa = llm::load_merged_policy(model_path, {base / "builtin_adapter"}, options);
  llm::LlamaForCausalLM pb = llm::load_merged_policy(model_path, {dir / "models" / "round1" / "adapter"}, options);
  std::vector<std::vector<int32_t>> prompts, answers;
  for (const StoredResponse& r : store.responses(0)) {
    if (r.ids.empty()) continue;
    prompts.push_back({1});
    answers.push_back(r.ids);
  }
  ASSERT_FALSE(answers.empty());
  std::vector<double> la = llm::continuation_logprob_sums(pa, prompts, answers, 8);
  std::vector<double> lb = llm::continuation_logprob_sums(pb, prompts, answers, 8);
  double max_lp = 0;
  for (size_t i = 0; i < la.size(); ++i) max_lp = std::max(max_lp, std::abs(la[i] - lb[i]));
  std::printf("log-probs of %zu responses: max |builtin - command| = %.3g nats\n", la.size(), max_lp);
  EXPECT_LE(max_lp, 1e-4);
}

// A failing command stops the run with its exit status and last lines; the round is not done. The
// rerun, with the command fixed, keeps round 1 and retries round 2 only. A cutoff_len shorter than
// the pairs is warned about.
TEST(DpoCommand, FailingCommandStopsTheRunAndARerunRetriesOnlyThatRound) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("dpo_command_fail"), dir = base / "run";
  const std::string failing = "case {output_dir} in *round2*) echo trainer: loading the model; "
                              "echo trainer: CUDA out of memory 1>&2; exit 3;; esac; " + rlrf_dpo_command();
  write_file_atomic(base / "run.toml", run_config_text(dir, 2, "backend = \"command\"\ncutoff_len = 16\ncommand = '" + failing + "'\n"));
  auto [rc, log] = run_rlrf(base / "run.toml", base / "first.log", "--until dpo");
  EXPECT_NE(rc, 0) << log;
  EXPECT_NE(log.find("stage dpo/2: the trainer command exited with status 3"), std::string::npos) << log;
  EXPECT_NE(log.find("| trainer: loading the model\n  | trainer: CUDA out of memory"), std::string::npos) << log;
  EXPECT_NE(log.find("pairs are longer than cutoff_len 16"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir / "models" / "round1" / "adapter" / "adapter_config.json"));
  EXPECT_FALSE(fs::exists(dir / "models" / "round2" / "adapter"));
  EXPECT_TRUE(fs::exists(dir / "dpo-command" / "round2" / "command.log"));
  const std::string round1_adapter = read_file(dir / "models" / "round1" / "adapter" / "adapter_model.safetensors");

  auto [rc2, log2] = run_rlrf(base / "run.toml", base / "second.log", "--until dpo --set 'dpo.command=" + rlrf_dpo_command() + "'");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("dpo/1: current"), std::string::npos) << log2;
  EXPECT_EQ(count_of(log2, "pairs to an external trainer"), 1u) << log2;
  EXPECT_NE(log2.find("dpo/2: "), std::string::npos);
  EXPECT_EQ(log2.find("new tokens in"), std::string::npos) << "a finished generation ran again:\n" << log2;
  EXPECT_TRUE(fs::exists(dir / "models" / "round2" / "adapter" / "adapter_config.json"));
  EXPECT_EQ(read_file(dir / "models" / "round1" / "adapter" / "adapter_model.safetensors"), round1_adapter);
  // Round 2 started from round 1's policy: the merged base written for the trainer.
  EXPECT_TRUE(fs::exists(dir / "dpo-command" / "round2" / "base" / "config.json"));
  EXPECT_NE(read_file(dir / "dpo-command" / "round2" / "train.yaml")
                .find("model_name_or_path: \"" + (dir / "dpo-command" / "round2" / "base").string() + "\""),
            std::string::npos);
}
