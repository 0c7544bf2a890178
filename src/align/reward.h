// Recommendation feedback (the paper's reward model): a knowledge-augmented reranker trained on the
// train users with the current knowledge; a response's reward is the reranking quality (NDCG@K or
// MAP@K, mean over that user's training lists) when the response's encoding stands in for the
// user's knowledge. Test users never feed a reward.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "align/reward_schedule.h"
#include "data/prepare.h"
#include "rerank/reranker.h"

namespace rlrf {

class ConfigSection;
class TextEncoder;

struct RewardConfig {
  // The reward model: dlcm | prm (the paper's: a reranker), or "card", a control that is not the
  // paper's method: the reward of a response is its card accuracy against the user's true card
  // (knowledge/card.h), no recommender involved. It tells whether the policy can learn what a
  // perfect reward asks for, apart from whether a recommender can tell it.
  std::string model = "dlcm";
  std::string metric = "ndcg";  // ndcg | map (at k, the paper's) | margin (rerank/reranker.h RewardOptions)
  int k = 5;
  // Knowledge the reward model trains with, per user: "profile" (the profile summaries: one reward
  // model, trained before the loop and fixed across rounds, as the paper's Algorithm 1 takes a
  // pre-trained recommender) or "sample0" (each user's first response of the round, a new model
  // per round; sample 0 is then left out of that round's pairs, since the model has fitted it).
  // "card" (knowledge cards, knowledge/card.h): like profile, a fixed model trained before the loop.
  // Which model scores which round: reward_schedule.h.
  RewardKnowledge train_knowledge = RewardKnowledge::kSample0;
  // Cross-fitting: training users are split into `folds` folds; fold k's responses are scored by a
  // reward model trained without fold k's lists, so no reward comes from a model that fitted that
  // user. 1: one model trained on every training user scores them all (in-sample rewards).
  // Validation users' responses are scored too (reported, never paired).
  int folds = 5;
  // Precision of the reranker's forward when it scores responses: "fp32" (default), or "bf16" as
  // it may have been trained ([rerank] dtype). bf16 coarsens the small differences between one
  // user's N responses into ties (measured in the README).
  std::string dtype = "fp32";
  // A user's pair needs best - worst > min_margin; users below it (all N tied included) are skipped
  // and counted (align/pairs.h).
  double min_margin = 0.0;
  void read(const ConfigSection& s);
  // The schedule of reward models over a run of `rounds` rounds.
  RewardSchedule schedule(int rounds) const;
};

struct UserResponse {
  int32_t user = 0;
  int sample = 0;
  std::string text;
};

// Responses from any engine, JSONL: {"user": raw id (string or number), "sample": k (optional,
// a whole number >= 0; absent: the user's next), "text": "..."} per line; blank lines skipped.
// Errors name the file, line and what is wrong (bad JSON, a missing or mistyped field, a user
// `dataset` does not have, a (user, sample) given twice).
std::vector<UserResponse> read_responses_jsonl(const std::filesystem::path& path, const Dataset& dataset);

// Trains the reward model: `knowledge_texts` holds one text per user (indexed by user; "" = none),
// `item_knowledge` the items' (none | metadata | file:PATH, as [knowledge] item).
// The rerank settings (epochs, lr, seed, device...) come from `rerank`, the model kind from `config`.
struct RewardModel {
  Reranker reranker;
  KnowledgeVectors kv;
};
// The knowledge vectors a reward model trains with (items, and users from `knowledge_texts`),
// without training it.
RewardModel train_reward_model_inputs(const PreparedData& data, const std::vector<std::string>& knowledge_texts,
                                      TextEncoder& encoder, const std::filesystem::path& cache_dir, bool user_history,
                                      const std::string& item_knowledge);
RewardModel train_reward_model(const PreparedData& data, const std::vector<std::string>& knowledge_texts,
                               const RewardConfig& config, RerankTrainConfig rerank, TextEncoder& encoder,
                               const std::filesystem::path& cache_dir, bool user_history,
                               const std::string& item_knowledge);

// Rewards of responses of training or validation users (test users are refused: they never feed a
// reward), the reranker run in `config.dtype`.
std::vector<double> score_responses(const RewardModel& model, const PreparedData& data,
                                    const std::vector<UserResponse>& responses, const RewardConfig& config,
                                    TextEncoder& encoder, const std::filesystem::path& cache_dir, bool user_history);

}  // namespace rlrf
