// Recommendation feedback (the paper's reward model): a knowledge-augmented reranker trained on the
// train users with the current knowledge; a response's reward is the reranking quality (NDCG@K or
// MAP@K, mean over that user's training lists) when the response's encoding stands in for the
// user's knowledge. Test users never feed a reward.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "rerank/reranker.h"

namespace rlrf {

class ConfigSection;
class TextEncoder;

struct RewardConfig {
  std::string model = "dlcm";  // the reward model: dlcm | prm
  std::string metric = "ndcg";  // ndcg | map
  int k = 5;
  // Knowledge the reward model trains with, per user: "profile" (the profile summaries: one reward
  // model, trained before the loop and fixed across rounds, as the paper's Algorithm 1 takes a
  // pre-trained recommender) or "sample0" (each user's first response of the round, a new model
  // per round; sample 0 is then left out of that round's pairs, since the model has fitted it).
  std::string train_knowledge = "sample0";
  void read(const ConfigSection& s);
};

struct UserResponse {
  int32_t user = 0;
  int sample = 0;
  std::string text;
};

// Trains the reward model: `knowledge_texts` holds one text per user (indexed by user; "" = none).
// The rerank settings (epochs, lr, seed, device...) come from `rerank`, the model kind from `config`.
struct RewardModel {
  Reranker reranker;
  KnowledgeVectors kv;
};
RewardModel train_reward_model(const PreparedData& data, const std::vector<std::string>& knowledge_texts,
                               const RewardConfig& config, RerankConfig rerank, TextEncoder& encoder,
                               const std::filesystem::path& cache_dir, bool user_history);

// Rewards of responses of TRAIN users (others are refused: test users never feed a reward).
std::vector<double> score_responses(const RewardModel& model, const PreparedData& data,
                                    const std::vector<UserResponse>& responses, const RewardConfig& config,
                                    TextEncoder& encoder, const std::filesystem::path& cache_dir, bool user_history);

}  // namespace rlrf
