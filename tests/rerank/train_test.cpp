// Training and scoring on a planted signal: knowledge must beat no knowledge, seeds reproduce
// numbers, test lists never influence training, checkpoints round-trip, and rewards with the user's
// own vector reproduce the normal scores.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "rerank/checkpoint.h"
#include "rerank/reranker.h"
#include "rerank/test_synthetic.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"

using namespace rlrf;

namespace {

RerankTrainConfig small_config(const std::string& model, int epochs) {
  RerankTrainConfig c;
  c.model = model;
  c.epochs = epochs;
  c.patience = epochs;
  c.lr = 3e-3;
  c.seed = 11;
  return c;
}

struct Quiet {
  Quiet() {
    set_log_level(LogLevel::kWarn);
    init_threads(1);
  }
};

const test::Planted& planted() {
  static Quiet q;
  static test::Planted p = test::make_planted();
  return p;
}

}  // namespace

class PlantedSignal : public ::testing::TestWithParam<std::string> {};

TEST_P(PlantedSignal, KnowledgeBeatsNoKnowledge) {
  const auto& p = planted();
  RerankTrainConfig cfg = small_config(GetParam(), 12);  // no early stop: PRM leaves a plateau after ~7 epochs
  Reranker with = train_reranker(p.data, p.kv, cfg);
  cfg.patience = 3;
  Reranker without = train_reranker(p.data, KnowledgeVectors{}, cfg);
  EXPECT_FALSE(without.shape.uses_knowledge());
  EvalResult w = evaluate(with, p.data, p.kv, Split::kTest);
  EvalResult wo = evaluate(without, p.data, {}, Split::kTest);
  EvalResult rnd = evaluate_baseline(p.data, Split::kTest, "list_order");
  std::printf("[ %s ] test MAP@5: random %.3f, without knowledge %.3f, with knowledge %.3f (best epoch %d)\n",
              GetParam().c_str(), rnd.mean.map_at(5), wo.mean.map_at(5), w.mean.map_at(5), with.best_epoch);
  EXPECT_GT(w.mean.map_at(5), wo.mean.map_at(5) + 0.15);
  EXPECT_GT(w.mean.ndcg_at(5), wo.mean.ndcg_at(5) + 0.15);
  EXPECT_GT(w.mean.map_at(5), 0.8);
  EXPECT_LT(std::abs(wo.mean.map_at(5) - rnd.mean.map_at(5)), 0.12);  // ids alone carry no signal
  EXPECT_GE(with.best_epoch, 1);
  EXPECT_FALSE(with.history.empty());
  EXPECT_EQ(w.per_list.size(), lists_of_split(p.data, Split::kTest).size());
  EXPECT_EQ(w.per_user.users.size(), 30u);  // users with u % 10 == 9
}

INSTANTIATE_TEST_SUITE_P(Rerank, PlantedSignal, ::testing::Values("dlcm", "prm"));

TEST(RerankTrain, SameSeedSameNumbersAndTestListsUnused) {
  const auto& p = planted();
  RerankTrainConfig cfg = small_config("dlcm", 2);
  Reranker a = train_reranker(p.data, p.kv, cfg);
  // Flip every test label: training must not change at all (selection uses validation lists only).
  test::Planted flipped = p;
  for (auto& l : flipped.data.lists)
    if (l.split == Split::kTest)
      for (auto& y : l.labels) y = 1 - y;
  Reranker b = train_reranker(flipped.data, p.kv, cfg);
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].train_loss, b.history[i].train_loss);
    EXPECT_EQ(a.history[i].valid_map5, b.history[i].valid_map5);
  }
  auto lists = lists_of_split(p.data, Split::kTest);
  EXPECT_EQ(score_lists(a, p.data, p.kv, lists), score_lists(b, p.data, p.kv, lists));
  cfg.seed = 12;
  Reranker c = train_reranker(p.data, p.kv, cfg);
  EXPECT_NE(a.history[0].train_loss, c.history[0].train_loss);
}

TEST(RerankTrain, CheckpointRoundTrip) {
  const auto& p = planted();
  for (const char* model : {"dlcm", "prm"}) {
    Reranker r = train_reranker(p.data, p.kv, small_config(model, 1));
    fs::path dir = fresh_temp_dir(std::string("rerank_ckpt_") + model);
    save_reranker(r, dir / "model.rrk");
    Reranker back = load_reranker(dir / "model.rrk");
    EXPECT_EQ(back.shape.model, model);
    EXPECT_EQ(back.shape.user_dim, 4);
    EXPECT_EQ(back.best_epoch, r.best_epoch);
    ASSERT_EQ(back.history.size(), r.history.size());
    auto lists = lists_of_split(p.data, Split::kValid);
    EXPECT_EQ(score_lists(r, p.data, p.kv, lists), score_lists(back, p.data, p.kv, lists));
    // Corrupt files are refused with a message naming the file.
    std::string bytes = read_file(dir / "model.rrk");
    write_file_atomic(dir / "bad.rrk", "XXXX" + bytes.substr(4));
    EXPECT_THROW(load_reranker(dir / "bad.rrk"), Error);
    write_file_atomic(dir / "short.rrk", bytes.substr(0, bytes.size() / 2));
    try {
      load_reranker(dir / "short.rrk");
      ADD_FAILURE() << "truncated checkpoint loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("short.rrk"), std::string::npos) << e.what();
    }
  }
}

TEST(RerankTrain, RewardsWithOwnVectorReproduceScores) {
  const auto& p = planted();
  Reranker r = train_reranker(p.data, p.kv, small_config("dlcm", 4));
  auto lists = lists_of_split(p.data, Split::kTrain);
  // score_lists with each list's own user vector as the override == normal scores.
  std::vector<int64_t> users;
  for (int64_t l : lists) users.push_back(p.data.lists[l].user);
  at::Tensor own = p.kv.user.index_select(0, at::tensor(users, at::kLong));
  auto normal = score_lists(r, p.data, p.kv, lists);
  auto replaced = score_lists(r, p.data, p.kv, lists, own);
  ASSERT_EQ(normal.size(), replaced.size());
  for (size_t i = 0; i < normal.size(); ++i)
    for (size_t j = 0; j < normal[i].size(); ++j) ASSERT_NEAR(normal[i][j], replaced[i][j], 1e-6);

  // Rewards for many users and candidates at once: own vector -> the user's mean NDCG@5 from evaluate.
  EvalResult ev = evaluate(r, p.data, p.kv, Split::kTrain);
  std::vector<int32_t> cand_users;
  std::vector<at::Tensor> cand_vecs;
  for (size_t k = 0; k < ev.per_user.users.size() && k < 40; ++k) {
    const int32_t u = ev.per_user.users[k];
    cand_users.push_back(u);
    cand_vecs.push_back(p.kv.user[u]);
    // A wrong candidate for the same user: the vector of a user from the next taste group.
    int32_t other = 0;
    while (p.user_group[other] != (p.user_group[u] + 1) % test::kGroups) ++other;
    cand_users.push_back(u);
    cand_vecs.push_back(p.kv.user[other]);
  }
  at::Tensor cands = at::stack(cand_vecs);
  auto rewards = knowledge_rewards(r, p.data, p.kv, cand_users, cands, {"ndcg", 5});
  auto tables = knowledge_reward_metrics(r, p.data, p.kv, cand_users, cands);
  ASSERT_EQ(rewards.size(), cand_users.size());
  double own_sum = 0, wrong_sum = 0;
  for (size_t c = 0; c < cand_users.size(); c += 2) {
    const size_t k = c / 2;
    EXPECT_NEAR(rewards[c], ev.per_user.metrics[k].ndcg[metric_k_index(5)], 1e-9) << "user " << cand_users[c];
    EXPECT_EQ(tables[c].count, 10);
    EXPECT_NEAR(tables[c].map_at(3), ev.per_user.metrics[k].map[metric_k_index(3)], 1e-9);
    own_sum += rewards[c];
    wrong_sum += rewards[c + 1];
  }
  EXPECT_GT(own_sum, wrong_sum + 0.2 * (cand_users.size() / 2));  // the reward sees the knowledge
  auto map_rewards = knowledge_rewards(r, p.data, p.kv, cand_users, cands, {"map", 3});
  EXPECT_NEAR(map_rewards[0], tables[0].map_at(3), 1e-12);
  // The score margin: per list, mean score of relevant items minus mean score of the others, from
  // the scores themselves; averaged over the user's lists with both kinds. It sees the knowledge too.
  auto margins = knowledge_rewards(r, p.data, p.kv, cand_users, cands, {"margin", 5});
  {
    const int32_t u = cand_users[0];
    std::vector<int64_t> own_lists;
    for (size_t i = 0; i < p.data.lists.size(); ++i)
      if (p.data.lists[i].user == u) own_lists.push_back(static_cast<int64_t>(i));
    auto scores = score_lists(r, p.data, p.kv, own_lists);
    double sum = 0;
    int n = 0;
    for (size_t l = 0; l < own_lists.size(); ++l) {
      const auto& labels = p.data.lists[static_cast<size_t>(own_lists[l])].labels;
      double pos = 0, neg = 0;
      int np = 0, nn = 0;
      for (size_t i = 0; i < labels.size(); ++i) (labels[i] ? (pos += scores[l][i], ++np) : (neg += scores[l][i], ++nn));
      if (np && nn) {
        sum += pos / np - neg / nn;
        ++n;
      }
    }
    ASSERT_GT(n, 0);
    EXPECT_NEAR(margins[0], sum / n, 1e-6);
  }
  double own_margin = 0, wrong_margin = 0;
  for (size_t c = 0; c < cand_users.size(); c += 2) {
    own_margin += margins[c];
    wrong_margin += margins[c + 1];
  }
  EXPECT_GT(own_margin, wrong_margin);
  EXPECT_THROW(knowledge_rewards(r, p.data, p.kv, cand_users, cands.narrow(1, 0, 3)), Error);  // wrong vector size
  Reranker base = train_reranker(p.data, {}, small_config("dlcm", 1));
  EXPECT_THROW(knowledge_rewards(base, p.data, {}, cand_users, cands), Error);
}

TEST(RerankTrain, BaselinesOnPlantedData) {
  const auto& p = planted();
  EvalResult rnd = evaluate_baseline(p.data, Split::kTest, "list_order");
  EvalResult pop = evaluate_baseline(p.data, Split::kTest, "popularity");
  EXPECT_EQ(rnd.mean.count, 300);
  EXPECT_GT(rnd.mean.map_at(5), 0.1);
  EXPECT_LT(rnd.mean.map_at(5), 0.6);
  EXPECT_GT(pop.mean.count, 0);
  EXPECT_THROW(evaluate_baseline(p.data, Split::kTest, "oracle"), Error);
}

TEST(RerankConfigTest, ReadsKeysAndRejectsUnknown) {
  ConfigFile f = ConfigFile::parse("[rerank]\nepochs = 7\nbatch = 32\nlr = 0.002\nknowledge = \"none\"\n", "t.toml");
  RerankConfig c;
  c.read(f.section("rerank"));
  EXPECT_EQ(c.train.epochs, 7);
  EXPECT_EQ(c.train.batch, 32);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.002);
  EXPECT_EQ(c.knowledge, "none");
  EXPECT_EQ(c.train.shared_experts, 2);
  EXPECT_EQ(c.train.specific_experts, 5);
  RerankConfig d;
  EXPECT_THROW(d.read(ConfigFile::parse("[rerank]\nepoch = 3\n", "t.toml").section("rerank")), Error);
  // The reranker trained is chosen where it is used: [eval] models, [reward] model.
  EXPECT_THROW(d.read(ConfigFile::parse("[rerank]\nmodel = \"prm\"\n", "t.toml").section("rerank")), Error);
}

// `rlrf rerank` and the loop's evaluation train side by side (one thread each): the numbers must be
// those of trainings run one at a time, whatever the interleaving.
TEST(RerankTrain, SideBySideTrainingsEqualOneAtATime) {
  const auto& p = planted();
  std::vector<RerankTrainConfig> configs;
  for (const char* model : {"dlcm", "prm"}) {
    for (int64_t seed : {1, 2}) {
      RerankTrainConfig c = small_config(model, 2);
      c.seed = seed;
      configs.push_back(c);
    }
  }
  std::vector<double> alone, together(configs.size());
  for (const RerankTrainConfig& c : configs) alone.push_back(evaluate(train_reranker(p.data, p.kv, c), p.data, p.kv, Split::kTest).mean.map_at(5));
  run_parallel(static_cast<int64_t>(configs.size()), 2, [&](int64_t i) {
    together[static_cast<size_t>(i)] = evaluate(train_reranker(p.data, p.kv, configs[static_cast<size_t>(i)]), p.data, p.kv, Split::kTest).mean.map_at(5);
  });
  for (size_t i = 0; i < configs.size(); ++i) EXPECT_EQ(alone[i], together[i]) << configs[i].model << " seed " << configs[i].seed;
  // A failing job's error reaches the caller, after the others stop.
  EXPECT_THROW(run_parallel(4, 2, [&](int64_t i) { if (i == 2) fail("job {} failed", i); }), Error);
}

// bf16 mixed precision: weights and optimizer in fp32, matmuls in bf16. It must still learn the
// planted signal, and score within bf16 rounding of the fp32 pass on the same weights.
TEST(RerankTrain, MixedPrecisionLearnsAndScoresCloseToFp32) {
  const auto& p = planted();
  RerankTrainConfig c = small_config("dlcm", 6);
  c.dtype = "bf16";
  Reranker r = train_reranker(p.data, p.kv, c);
  EvalResult mixed = evaluate(r, p.data, p.kv, Split::kTest);
  EvalResult rnd = evaluate_baseline(p.data, Split::kTest, "list_order");
  EXPECT_GT(mixed.mean.map_at(5), rnd.mean.map_at(5) + 0.15);
  std::vector<int64_t> lists = lists_of_split(p.data, Split::kTest);
  auto s16 = score_lists(r, p.data, p.kv, lists);
  r.dtype = "fp32";
  auto s32 = score_lists(r, p.data, p.kv, lists);
  double worst = 0;
  for (size_t i = 0; i < s16.size(); ++i)
    for (size_t j = 0; j < s16[i].size(); ++j) worst = std::max<double>(worst, std::abs(s16[i][j] - s32[i][j]));
  std::printf("  max |score bf16 - score fp32| %.4f\n", worst);
  EXPECT_LT(worst, 0.05);
  EXPECT_GT(worst, 0.0);  // the bf16 pass did run in bf16
}
