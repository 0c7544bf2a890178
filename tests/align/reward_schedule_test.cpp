// The reward schedule: which reward model scores which round, and which samples it leaves out.
#include <gtest/gtest.h>

#include "align/reward.h"
#include "align/reward_schedule.h"
#include "util/config.h"
#include "util/error.h"

using namespace rlrf;

TEST(RewardSchedule, Sample0TrainsAModelEachRoundButTheLast) {
  RewardSchedule s{RewardKnowledge::kSample0, false, 1, 2};
  EXPECT_EQ(s.model_round(0), 0);
  EXPECT_EQ(s.model_round(2), 2);
  EXPECT_TRUE(s.new_model(0));
  EXPECT_TRUE(s.new_model(1));
  EXPECT_FALSE(s.new_model(2));  // the last round's responses are only scored by model 1
  // In-sample: the model of round 1 fitted round 1's sample 0, so it does not score it; it scores
  // round 2's sample 0 (a new response) and every other sample.
  EXPECT_TRUE(s.leaves_out_sample0());
  EXPECT_FALSE(s.scores(1, 1, 0));
  EXPECT_TRUE(s.scores(1, 1, 1));
  EXPECT_TRUE(s.scores(1, 2, 0));
  EXPECT_EQ(s.knowledge_label(1), "round 1 sample-0");
  // Cross-fitted models never saw the users they score: every sample counts.
  s.folds = 5;
  EXPECT_FALSE(s.leaves_out_sample0());
  EXPECT_TRUE(s.scores(1, 1, 0));
}

TEST(RewardSchedule, ProfileCardAndTheCardRewardUseOneFixedModel) {
  for (RewardKnowledge k : {RewardKnowledge::kProfile, RewardKnowledge::kCard}) {
    RewardSchedule s{k, false, 1, 3};
    for (int r = 0; r <= 3; ++r) EXPECT_EQ(s.model_round(r), 0);
    EXPECT_TRUE(s.new_model(0));
    EXPECT_FALSE(s.new_model(1));
    EXPECT_FALSE(s.leaves_out_sample0());  // model 0 was fitted on profiles or cards, not on responses
    EXPECT_TRUE(s.scores(0, 0, 0));
    EXPECT_TRUE(s.fits_model());
    EXPECT_EQ(s.knowledge_label(0), reward_knowledge_name(k));
  }
  RewardSchedule card{RewardKnowledge::kSample0, true, 1, 2};  // [reward] model = "card": no model fitted
  EXPECT_FALSE(card.fits_model());
  EXPECT_FALSE(card.leaves_out_sample0());
  EXPECT_TRUE(card.scores(0, 0, 0));
}

TEST(RewardSchedule, ConfigParsesTheKnowledgeOnceAndRefusesOthers) {
  for (const char* name : {"sample0", "profile", "card"})
    EXPECT_STREQ(reward_knowledge_name(parse_reward_knowledge(name, "x")), name);
  ConfigFile f = ConfigFile::parse("[reward]\ntrain_knowledge = \"card\"\nmodel = \"prm\"\nfolds = 3\n", "t.toml");
  RewardConfig c;
  c.read(f.section("reward"));
  RewardSchedule s = c.schedule(4);
  EXPECT_EQ(s.knowledge, RewardKnowledge::kCard);
  EXPECT_EQ(s.folds, 3);
  EXPECT_EQ(s.rounds, 4);
  EXPECT_TRUE(s.fits_model());
  ConfigFile bad = ConfigFile::parse("[reward]\ntrain_knowledge = \"profiles\"\n", "bad.toml");
  try {
    c.read(bad.section("reward"));
    FAIL() << "accepted train_knowledge = profiles";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"profiles\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.toml"), std::string::npos) << e.what();
  }
}
