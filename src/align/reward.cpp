// The reward model: train a reranker on the current knowledge, score responses by reranking quality.
#include "align/reward.h"

#include <ATen/ATen.h>
#include <cstdint>

#include "encode/encoder.h"
#include "rerank/knowledge_vectors.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/strings.h"

#include <nlohmann/json.hpp>

#include <map>
#include <set>

namespace rlrf {

void RewardConfig::read(const ConfigSection& s) {
  s.read("model", model);
  s.read("metric", metric);
  s.read("k", k);
  std::string knowledge = reward_knowledge_name(train_knowledge);
  s.read("train_knowledge", knowledge);
  train_knowledge = parse_reward_knowledge(knowledge, s.where());
  s.read("dtype", dtype);
  s.read("min_margin", min_margin);
  s.read("folds", folds);
  RLRF_CHECK(folds >= 1 && folds <= 50, "{}: folds must be in 1..50, got {}", s.where(), folds);
  RLRF_CHECK(dtype == "fp32" || dtype == "bf16", "{}: dtype must be fp32 or bf16, got \"{}\"", s.where(), dtype);
  RLRF_CHECK(min_margin >= 0, "{}: min_margin must be >= 0, got {}", s.where(), min_margin);
  RLRF_CHECK(model == "dlcm" || model == "prm" || model == "card", "{}: model must be dlcm, prm or card, got \"{}\"",
             s.where(), model);
  RLRF_CHECK(metric == "ndcg" || metric == "map" || metric == "margin", "{}: metric must be ndcg, map or margin, got \"{}\"",
             s.where(), metric);
  metric_k_index(k);
  if (model == "card")
    for (const char* key : {"metric", "k"})
      RLRF_CHECK(!s.has(key), "{}: {} is a setting of the reranker reward models (model = \"card\" scores card accuracy)",
                 s.where(), key);
}

RewardSchedule RewardConfig::schedule(int rounds) const {
  RewardSchedule s;
  s.knowledge = train_knowledge;
  s.card_reward = model == "card";
  s.folds = folds;
  s.rounds = rounds;
  return s;
}

RewardModel train_reward_model_inputs(const PreparedData& data, const std::vector<std::string>& knowledge_texts,
                                      TextEncoder& encoder, const std::filesystem::path& cache_dir, bool user_history,
                                      const std::string& item_knowledge) {
  RLRF_CHECK(knowledge_texts.size() == data.sequences.size(), "reward model: {} knowledge texts for {} users",
             knowledge_texts.size(), data.sequences.size());
  std::vector<int32_t> users(data.sequences.size());
  for (size_t u = 0; u < users.size(); ++u) users[u] = static_cast<int32_t>(u);
  RewardModel out;
  KnowledgeSource item_source;
  item_source.user = "none";
  item_source.item = item_knowledge;
  item_source.cache_dir = cache_dir;
  out.kv = build_knowledge_vectors(data, item_source, encoder);
  out.kv.user = encode_user_knowledge(data, users, knowledge_texts, encoder, cache_dir, user_history);
  return out;
}

RewardModel train_reward_model(const PreparedData& data, const std::vector<std::string>& knowledge_texts,
                               const RewardConfig& config, RerankTrainConfig rerank, TextEncoder& encoder,
                               const std::filesystem::path& cache_dir, bool user_history,
                               const std::string& item_knowledge) {
  RewardModel out = train_reward_model_inputs(data, knowledge_texts, encoder, cache_dir, user_history, item_knowledge);
  rerank.model = config.model;
  out.reranker = train_reranker(data, out.kv, rerank);
  return out;
}

std::vector<double> score_responses(const RewardModel& model, const PreparedData& data,
                                    const std::vector<UserResponse>& responses, const RewardConfig& config,
                                    TextEncoder& encoder, const std::filesystem::path& cache_dir, bool user_history) {
  std::vector<int32_t> users;
  std::vector<std::string> texts;
  users.reserve(responses.size());
  texts.reserve(responses.size());
  for (const UserResponse& r : responses) {
    RLRF_CHECK(r.user >= 0 && static_cast<size_t>(r.user) < data.sequences.size(), "reward: user index {} out of range", r.user);
    RLRF_CHECK(data.sequences[static_cast<size_t>(r.user)].split != Split::kTest,
               "reward: user '{}' is a test user; test users never feed a reward",
               data.dataset.users[static_cast<size_t>(r.user)].raw_id);
    users.push_back(r.user);
    texts.push_back(r.text);
  }
  if (responses.empty()) return {};
  at::Tensor vectors = encode_user_knowledge(data, users, texts, encoder, cache_dir, user_history);
  RewardOptions options;
  options.metric = config.metric;
  options.k = config.k;
  Reranker scorer = model.reranker;  // shares the weights; only the forward's precision differs
  scorer.dtype = config.dtype;
  return knowledge_rewards(scorer, data, model.kv, users, vectors, options);
}

std::vector<UserResponse> read_responses_jsonl(const std::filesystem::path& path, const Dataset& dataset) {
  std::map<std::string, int32_t> by_raw;
  for (size_t u = 0; u < dataset.users.size(); ++u) by_raw[dataset.users[u].raw_id] = static_cast<int32_t>(u);
  std::vector<UserResponse> all;
  std::map<int32_t, int> next_sample;
  std::map<std::pair<int32_t, int>, int> line_of;
  int line_no = 0;
  for (const std::string& line : read_lines(path)) {
    ++line_no;
    if (trim(line).empty()) continue;
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    RLRF_CHECK(!j.is_discarded(), "{}: not valid JSON", where);
    RLRF_CHECK(j.is_object() && j.contains("user") && j.contains("text") && j["text"].is_string(),
               "{}: expected an object with \"user\" and \"text\" (a string)", where);
    const nlohmann::json& ju = j["user"];
    RLRF_CHECK(ju.is_string() || ju.is_number_integer() || ju.is_number_unsigned(),
               "{}: \"user\" must be a raw user id (a string or a whole number)", where);
    const std::string raw = ju.is_string() ? ju.get<std::string>() : ju.dump();
    auto it = by_raw.find(raw);
    RLRF_CHECK(it != by_raw.end(), "{}: unknown user '{}'", where, raw);
    int sample = next_sample[it->second];
    if (j.contains("sample")) {
      const nlohmann::json& js = j["sample"];
      RLRF_CHECK((js.is_number_integer() || js.is_number_unsigned()) && js.get<int64_t>() >= 0 &&
                     js.get<int64_t>() <= 1000000,
                 "{}: \"sample\" must be a whole number from 0 to 1000000, got {}", where, js.dump());
      sample = static_cast<int>(js.get<int64_t>());
    }
    auto [prev, fresh] = line_of.emplace(std::make_pair(it->second, sample), line_no);
    RLRF_CHECK(fresh, "{}: user '{}' sample {} was already given on line {}", where, raw, sample, prev->second);
    next_sample[it->second] = sample + 1;
    all.push_back({it->second, sample, j["text"].get<std::string>()});
  }
  return all;
}

}  // namespace rlrf
