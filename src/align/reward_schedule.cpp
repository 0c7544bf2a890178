// Which reward model scores which round (see reward_schedule.h).
#include "align/reward_schedule.h"

#include <fmt/format.h>

#include "util/error.h"

namespace rlrf {

RewardKnowledge parse_reward_knowledge(const std::string& text, const std::string& where) {
  if (text == "sample0") return RewardKnowledge::kSample0;
  if (text == "profile") return RewardKnowledge::kProfile;
  if (text == "card") return RewardKnowledge::kCard;
  fail("{}: train_knowledge must be sample0, profile or card, got \"{}\"", where, text);
}

const char* reward_knowledge_name(RewardKnowledge k) {
  switch (k) {
    case RewardKnowledge::kSample0: return "sample0";
    case RewardKnowledge::kProfile: return "profile";
    case RewardKnowledge::kCard: return "card";
  }
  return "?";
}

int RewardSchedule::model_round(int round) const { return knowledge == RewardKnowledge::kSample0 ? round : 0; }

bool RewardSchedule::new_model(int round) const {
  return knowledge == RewardKnowledge::kSample0 ? round < rounds : round == 0;
}

bool RewardSchedule::leaves_out_sample0() const {
  return !card_reward && folds <= 1 && knowledge == RewardKnowledge::kSample0;
}

bool RewardSchedule::scores(int model, int round, int sample) const {
  return !(leaves_out_sample0() && model == round && sample == 0);
}

std::string RewardSchedule::knowledge_label(int model) const {
  return knowledge == RewardKnowledge::kSample0 ? fmt::format("round {} sample-0", model) : reward_knowledge_name(knowledge);
}

}  // namespace rlrf
