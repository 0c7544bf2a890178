// `rlrf reward`: recommendation feedback for responses written anywhere (e.g. by vLLM): trains the
// reward model on the train users, scores every train user's responses, picks best/worst pairs and
// exports them for TRL and LLaMA-Factory.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>

#include "align/pairs.h"
#include "align/reward.h"
#include "cli/verbs.h"
#include "encode/encoder.h"
#include "knowledge/knowledge.h"
#include "knowledge/prompts.h"
#include "pipeline/run_config.h"
#include "rerank/checkpoint.h"
#include "rerank/knowledge_vectors.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace {

int run_reward(int argc, char** argv) {
  CLI::App app{"Rewards of knowledge texts from the recommender: a reranker trained on the train users (with [reward]\n"
               "train_knowledge: each user's first response, or profile summaries) scores every train user's responses by\n"
               "mean NDCG@K (or MAP@K) of their training lists; best/worst per user become pairs (TRL + LLaMA-Factory).\n"
               "Responses JSONL: {\"user\": raw id, \"sample\": k (optional), \"text\": ...} per line.\n\n"
               "example: rlrf reward --prepared runs/demo/prepared.bin --responses my_vllm_outputs.jsonl --out runs/rewards",
               "rlrf reward"};
  std::string prepared_path, responses_path, out_dir, config_path;
  std::vector<std::string> sets;
  app.add_option("--prepared", prepared_path, "prepared data (rlrf prepare)")->required();
  app.add_option("--responses", responses_path, "responses JSONL")->required();
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--config", config_path, "TOML with [reward], [rerank], [knowledge], [prompt]");
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  CLI11_PARSE(app, argc, argv);
  rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse("", "(defaults)") : rlrf::ConfigFile::load(config_path);
  for (const std::string& s : sets) file.set(s);
  // Each section as `rlrf run` reads it, with the same checks.
  rlrf::RewardConfig reward;
  const rlrf::ConfigSection reward_section = file.section("reward");
  reward.read(reward_section);
  reward_section.check_no_unknown_keys();
  RLRF_CHECK(!reward_section.has("folds") || reward.folds == 1,
             "{}: folds = {}: `rlrf reward` trains one reward model on every training user (in-sample rewards); "
             "cross-fitted rewards are `rlrf run`'s (remove the key or set folds = 1)",
             reward_section.where(), reward.folds);
  const rlrf::RerankConfig rerank = rlrf::read_rerank_section(file.section("rerank"));
  rlrf::PromptConfig prompt;
  const rlrf::ConfigSection prompt_section = file.section("prompt");
  prompt.read(prompt_section);
  prompt_section.check_no_unknown_keys();
  rlrf::KnowledgeConfig knowledge;
  const rlrf::ConfigSection knowledge_section = file.section("knowledge");
  knowledge.read(knowledge_section);
  knowledge_section.check_no_unknown_keys();

  rlrf::PreparedData data = rlrf::load_prepared(prepared_path);
  std::vector<rlrf::UserResponse> all = rlrf::read_responses_jsonl(responses_path, data.dataset);
  RLRF_CHECK(reward.train_knowledge != rlrf::RewardKnowledge::kCard,
             "rlrf reward: train_knowledge = \"card\" needs the run's prompts; use `rlrf run`");
  std::vector<std::string> texts(data.sequences.size());
  if (reward.train_knowledge == rlrf::RewardKnowledge::kProfile) {
    for (size_t u = 0; u < texts.size(); ++u) texts[u] = rlrf::user_profile_summary(data, static_cast<int32_t>(u));
  } else {
    std::map<int32_t, int> first;
    for (const rlrf::UserResponse& r : all)
      if (!first.count(r.user) || r.sample < first[r.user]) {
        first[r.user] = r.sample;
        texts[static_cast<size_t>(r.user)] = r.text;
      }
  }
  std::filesystem::path out(out_dir);
  std::unique_ptr<rlrf::TextEncoder> encoder = rlrf::make_encoder(knowledge.encoder);
  rlrf::RewardModel model =
      rlrf::train_reward_model(data, texts, reward, rerank.train, *encoder, out / "cache", knowledge.user_history, knowledge.item);
  rlrf::save_reranker(model.reranker, out / "reward_model.rrk");
  std::vector<rlrf::UserResponse> train;
  for (const rlrf::UserResponse& r : all)
    if (data.sequences[static_cast<size_t>(r.user)].split == rlrf::Split::kTrain) train.push_back(r);
  std::vector<double> rewards = rlrf::score_responses(model, data, train, reward, *encoder, out / "cache", knowledge.user_history);
  std::string rows;
  std::vector<rlrf::RewardedResponse> rewarded;
  for (size_t i = 0; i < train.size(); ++i) {
    rows += nlohmann::json({{"user", data.dataset.users[static_cast<size_t>(train[i].user)].raw_id}, {"sample", train[i].sample},
                            {"reward", rewards[i]}})
                .dump() +
            "\n";
    rewarded.push_back({train[i].user, train[i].sample, rewards[i]});
  }
  rlrf::write_file_atomic(out / "rewards.jsonl", rows);
  rlrf::PairSelection sel = rlrf::select_pairs(rewarded, reward.min_margin);
  rlrf::ResponseTexts texts_of;
  for (const rlrf::UserResponse& r : train) texts_of[{r.user, r.sample}] = r.text;
  const std::vector<rlrf::PairText> pairs =
      rlrf::pair_texts(sel.pairs, texts_of, data, [&](int32_t u) { return rlrf::build_user_prompt(data, u, prompt); });
  rlrf::export_trl_jsonl(pairs, out / "pairs.trl.jsonl");
  rlrf::export_llamafactory(pairs, out, "rlrf_pairs");
  std::printf("%zu responses of %zu train users scored (%zu responses of other users ignored: test users never feed a reward)\n"
              "%zu pairs, %lld ties skipped -> %s\n",
              train.size(), static_cast<size_t>(sel.users), all.size() - train.size(), sel.pairs.size(),
              static_cast<long long>(sel.ties_skipped), (out / "pairs.trl.jsonl").c_str());
  return 0;
}

rlrf::cli::VerbRegistration reg_reward({"reward", "rewards of responses from the recommender, best/worst pairs exported", 40, run_reward});

}  // namespace
