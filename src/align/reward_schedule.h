// Which reward model scores which round: the one rule the reward stage, the report, the config check
// and `rlrf reward` share.
//
//   [reward] train_knowledge   the knowledge the reward model trains with, per user
//     sample0   each user's sample-0 response of the round: a new reward model every round (round r's
//               responses are scored by model r; the last round trains none, its responses are only
//               scored by the previous model, which shows whether DPO raised the reward)
//     profile   profile summaries: one model trained before the loop (model 0) scores every round,
//               as the paper's Algorithm 1 takes a pre-trained recommender
//     card      the users' true knowledge cards: one fixed model 0, like profile
//   [reward] model = "card"    a control without a recommender: a response's reward is its card
//               accuracy; no model is fitted, rounds are "scored by model 0"
//
// Sample 0 of a round is left out of that round's scores when an in-sample reward model (folds = 1)
// trained on that very response (train_knowledge = sample0): it would be chosen for being seen.
#pragma once
#include <string>

namespace rlrf {

enum class RewardKnowledge { kSample0, kProfile, kCard };

// "sample0" | "profile" | "card"; anything else is an error naming `where` and the value.
RewardKnowledge parse_reward_knowledge(const std::string& text, const std::string& where);
const char* reward_knowledge_name(RewardKnowledge k);

struct RewardSchedule {
  RewardKnowledge knowledge = RewardKnowledge::kSample0;
  bool card_reward = false;  // [reward] model = "card": no reward model is fitted
  int folds = 1;             // cross-fitted when > 1: no user is scored by a model that saw it
  int rounds = 0;            // [run] rounds

  // The reward model whose scores make round `round`'s pairs.
  int model_round(int round) const;
  // Whether round `round` starts a new reward model (trained then, unless card_reward) and scores
  // its own responses with it.
  bool new_model(int round) const;
  // Whether a reward model is fitted at all (every kind but the card reward).
  bool fits_model() const { return !card_reward; }
  // Whether model `model` gives round `round`'s response `sample` a reward.
  bool scores(int model, int round, int sample) const;
  // Whether some round's sample 0 goes unscored (the pairs then need n >= 3).
  bool leaves_out_sample0() const;
  // "round 2 sample-0", "profile", "card": what model `model` trained on, for logs and the report.
  std::string knowledge_label(int model) const;
};

}  // namespace rlrf
