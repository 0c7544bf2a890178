// Rounds of the loop at their edges: a DPO round whose users' rewards all tie (here: no pair clears
// [reward] min_margin) is skipped with a warning, not a failed run, and the next round generates
// with the unchanged policy; evaluation reads each round's greedy responses ([eval] decode =
// "greedy", the default), stored in the run store and found current by a second run.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include <map>

#include "run_process.h"
#include "knowledge/card.h"
#include "pipeline/run_config.h"
#include "pipeline/run_context.h"
#include "pipeline/run_store.h"
#include "pipeline/stages.h"
#include "util/config.h"
#include "util/files.h"
#include "util/strings.h"

using namespace rlrf;
using namespace rlrf::test;

TEST(RunRounds, AllTiedRoundIsSkippedAndEvaluationUsesGreedyResponses) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("run_rounds"), dir = base / "run";
  write_file_atomic(base / "run.toml",
                    "[run]\ndir = \"" + dir.string() + "\"\nrounds = 1\nmax_users = 8\n"
                    "[prepare]\ndataset = \"ml-100k\"\n"
                    "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
                    "[generate]\nn = 3\nmax_new_tokens = 12\nbatch_size = 12\n"
                    "[knowledge]\nencoder = \"hash\"\n"
                    "[reward]\ntrain_knowledge = \"profile\"\nmin_margin = 10.0\n"  // no NDCG gap exceeds 10
                    "[rerank]\nepochs = 1\npatience = 1\n"
                    "[eval]\nmodels = [\"dlcm\"]\nseeds = [1]\nprofile_row = false\n");
  auto [rc, log] = run_rlrf(base / "run.toml", base / "first.log");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("skipping this DPO round"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir / "models" / "round1" / kSkippedRoundFile));
  EXPECT_FALSE(fs::exists(dir / "models" / "round1" / "adapter"));

  RunStore store(dir / "run.sqlite");
  EXPECT_EQ(store.count_responses(1), 3 * 24);  // round 1 generated, from the unchanged policy
  // One greedy response per user and round, under its own store round.
  std::vector<StoredResponse> g0 = store.responses(greedy_store_round(0)), g1 = store.responses(greedy_store_round(1));
  ASSERT_EQ(g0.size(), 24u);
  ASSERT_EQ(g1.size(), 24u);
  for (size_t i = 0; i < g0.size(); ++i) EXPECT_EQ(g0[i].ids, g1[i].ids) << "user " << g0[i].user;  // same policy
  // Evaluation's knowledge file holds the greedy texts.
  std::vector<std::string> lines = read_lines(dir / "knowledge" / "round1.jsonl");
  ASSERT_FALSE(lines.empty());
  nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["text"].get<std::string>(), g1[0].text);

  auto [rc2, log2] = run_rlrf(base / "run.toml", base / "second.log");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("greedy/1: current"), std::string::npos) << log2;
  EXPECT_EQ(log2.find("new tokens in"), std::string::npos) << log2;
}

TEST(RunRounds, EvalDecodeRewardDtypeAndMinMarginAreChecked) {
  auto error_of = [](const std::string& text) {
    try {
      RunConfig::from_file(ConfigFile::parse(text, "bad.toml"));
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(RunConfig::from_file(ConfigFile::parse("", "empty.toml")).eval.decode, "greedy");
  EXPECT_EQ(RunConfig::from_file(ConfigFile::parse("", "empty.toml")).reward.dtype, "fp32");
  EXPECT_EQ(RunConfig::from_file(ConfigFile::parse("", "empty.toml")).dpo.lora.dropout, 0.0);
  EXPECT_EQ(RunConfig::from_file(ConfigFile::parse("[eval]\ndecode = \"mean\"\n", "m.toml")).eval.decode, "mean");
  EXPECT_NE(error_of("[eval]\ndecode = \"median\"\n").find("decode"), std::string::npos);
  EXPECT_NE(error_of("[reward]\ndtype = \"fp8\"\n").find("dtype"), std::string::npos);
  EXPECT_NE(error_of("[reward]\nmin_margin = -1\n").find("min_margin"), std::string::npos);
  // An in-sample reranker trained on sample 0 leaves it unpaired: n = 2 leaves nothing to pair.
  // Cross-fitted rewards and the card reward score every sample.
  EXPECT_NE(error_of("[generate]\nn = 2\n[reward]\nfolds = 1\n").find("n must be >= 3"), std::string::npos);
  EXPECT_EQ(error_of("[generate]\nn = 2\n[reward]\nfolds = 5\n"), "");
  EXPECT_EQ(error_of("[generate]\nn = 2\n[reward]\nfolds = 1\nmodel = \"card\"\n"), "");
}

// [prepare] labels = "card" plants the lists' labels from the users' true cards, and [reward] model
// = "card" (the control without a recommender) rewards each response with its card accuracy: no
// reward model is trained, every stored reward is the response's agreement with the true card.
TEST(RunRounds, PlantedLabelsFollowTheCardsAndTheCardRewardIsTheCardAccuracy) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("run_planted"), dir = base / "run";
  const std::string config_text = "[run]\ndir = \"" + dir.string() + "\"\nrounds = 1\nmax_users = 8\n"
                                  "[prepare]\ndataset = \"ml-100k\"\nlabels = \"card\"\n"
                                  "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
                                  "[generate]\nn = 3\nmax_new_tokens = 12\nbatch_size = 12\n"
                                  "[knowledge]\nencoder = \"hash\"\n"
                                  "[reward]\nmodel = \"card\"\n"
                                  "[rerank]\nepochs = 1\npatience = 1\n"
                                  "[eval]\nmodels = [\"dlcm\"]\nseeds = [1]\nprofile_row = false\n";
  write_file_atomic(base / "run.toml", config_text);
  auto [rc, log] = run_rlrf(base / "run.toml", base / "first.log", "--until reward");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("planted labels from the users' knowledge cards"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "models" / "reward0-fold0.rrk"));

  RunContext ctx = open_run(RunConfig::from_file(ConfigFile::parse(config_text, "run.toml")));
  const std::vector<KnowledgeCard> cards = user_cards(ctx);
  // Every list item of a participating user with liked genres: positive iff a liked genre and not
  // the disliked one.
  int64_t checked = 0;
  for (const RerankList& l : ctx.data.lists) {
    const KnowledgeCard& card = cards[static_cast<size_t>(l.user)];
    if (card.liked.empty()) continue;
    for (size_t i = 0; i < l.items.size(); ++i) {
      const ItemInfo& item = ctx.data.dataset.items[static_cast<size_t>(l.items[i])];
      bool liked = false, disliked = false;
      for (const std::string& g : item.genres) {
        for (const std::string& x : card.liked) liked = liked || g == x;
        for (const std::string& x : card.disliked) disliked = disliked || g == x;
      }
      EXPECT_EQ(l.labels[i], liked && !disliked ? 1 : 0) << "user " << l.user << " item " << l.items[i];
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
  std::map<std::pair<int32_t, int>, std::string> texts;
  for (const StoredResponse& r : ctx.store->responses(0)) texts[{r.user, r.sample}] = r.text;
  std::vector<StoredReward> rewards = ctx.store->rewards(0, 0);
  ASSERT_FALSE(rewards.empty());
  for (const StoredReward& r : rewards)
    EXPECT_DOUBLE_EQ(r.reward, card_agreement(cards[static_cast<size_t>(r.user)], texts.at({r.user, r.sample})).score());

  // An encoder that reads texts differently under the same config (a new version, as
  // "glove-100d-sif" became "glove-100d-sif-decades") makes the stages that read encoded knowledge
  // stale, and only those: the round's rewards and the next policy, not the SFT model or round 0's
  // responses.
  struct Renamed : TextEncoder {
    std::string name() const override { return "hash-renamed"; }
    int dim() const override { return 4; }
    at::Tensor encode(const std::vector<std::string>&) override { return {}; }
  };
  const std::string reward_fp = reward_fingerprint(ctx, 0), policy_fp = policy_fingerprint(ctx, 1),
                    sft_fp = policy_fingerprint(ctx, 0), generate_fp = generate_fingerprint(ctx, 0);
  ctx.encoder = std::make_unique<Renamed>();
  EXPECT_NE(reward_fingerprint(ctx, 0), reward_fp);
  EXPECT_NE(policy_fingerprint(ctx, 1), policy_fp);
  EXPECT_EQ(policy_fingerprint(ctx, 0), sft_fp);
  EXPECT_EQ(generate_fingerprint(ctx, 0), generate_fp);
}
