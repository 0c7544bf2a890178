// Best/worst pair selection and the TRL / LLaMA-Factory exports.
#include "align/pairs.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include <map>

#include "util/error.h"
#include "util/files.h"

namespace rlrf {

PairSelection select_pairs(const std::vector<RewardedResponse>& rewarded, double min_margin) {
  std::map<int32_t, std::vector<const RewardedResponse*>> by_user;
  for (const RewardedResponse& r : rewarded) by_user[r.user].push_back(&r);
  PairSelection out;
  for (auto& [user, rs] : by_user) {
    ++out.users;
    if (rs.size() < 2) {
      ++out.single_response;
      continue;
    }
    const RewardedResponse* best = nullptr;
    const RewardedResponse* worst = nullptr;
    for (const RewardedResponse* r : rs) {
      if (!best || r->reward > best->reward || (r->reward == best->reward && r->sample < best->sample)) best = r;
      if (!worst || r->reward < worst->reward || (r->reward == worst->reward && r->sample < worst->sample)) worst = r;
    }
    if (!(best->reward - worst->reward > min_margin) || best == worst) {
      ++out.ties_skipped;
      if (best->reward == worst->reward) ++out.all_tied;
      continue;
    }
    out.pairs.push_back({user, best->sample, worst->sample, best->reward, worst->reward});
  }
  return out;
}

std::vector<PairText> pair_texts(const std::vector<SelectedPair>& pairs, const ResponseTexts& texts, const PreparedData& data,
                                 const std::function<UserPrompt(int32_t user)>& prompt_of) {
  auto text_of = [&](int32_t user, int sample) -> const std::string& {
    auto it = texts.find({user, sample});
    RLRF_CHECK(it != texts.end(), "pair_texts: no response text for user {} sample {}", user, sample);
    return it->second;
  };
  std::vector<PairText> out;
  out.reserve(pairs.size());
  for (const SelectedPair& p : pairs) {
    const UserPrompt prompt = prompt_of(p.user);
    PairText t;
    t.user_id = data.dataset.users[static_cast<size_t>(p.user)].raw_id;
    t.system = prompt.system;
    t.prompt = prompt.user;
    t.chosen = text_of(p.user, p.chosen_sample);
    t.rejected = text_of(p.user, p.rejected_sample);
    t.chosen_reward = p.chosen_reward;
    t.rejected_reward = p.rejected_reward;
    out.push_back(std::move(t));
  }
  return out;
}

void export_trl_jsonl(const std::vector<PairText>& pairs, const std::filesystem::path& path) {
  std::string out;
  for (const PairText& p : pairs) {
    nlohmann::json prompt = nlohmann::json::array();
    if (!p.system.empty()) prompt.push_back({{"role", "system"}, {"content", p.system}});
    prompt.push_back({{"role", "user"}, {"content", p.prompt}});
    nlohmann::json row = {
        {"prompt", prompt},
        {"chosen", nlohmann::json::array({{{"role", "assistant"}, {"content", p.chosen}}})},
        {"rejected", nlohmann::json::array({{{"role", "assistant"}, {"content", p.rejected}}})},
        {"user", p.user_id},
        {"chosen_reward", p.chosen_reward},
        {"rejected_reward", p.rejected_reward},
    };
    out += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_file_atomic(path, out);
}

void export_llamafactory(const std::vector<PairText>& pairs, const std::filesystem::path& dir, const std::string& name) {
  nlohmann::json rows = nlohmann::json::array();
  for (const PairText& p : pairs) {
    nlohmann::json row = {{"system", p.system}, {"instruction", p.prompt}, {"input", ""}, {"chosen", p.chosen}, {"rejected", p.rejected}};
    if (!p.prompt_ids.empty() && !p.chosen_ids.empty() && !p.rejected_ids.empty()) {
      row["rlrf_prompt_ids"] = p.prompt_ids;
      row["rlrf_chosen_ids"] = p.chosen_ids;
      row["rlrf_rejected_ids"] = p.rejected_ids;
    }
    rows.push_back(std::move(row));
  }
  write_file_atomic(dir / (name + ".json"), rows.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  nlohmann::json info = nlohmann::json::object();
  std::filesystem::path info_path = dir / "dataset_info.json";
  if (std::filesystem::exists(info_path)) {
    try {
      info = nlohmann::json::parse(read_file(info_path));
    } catch (const nlohmann::json::exception& e) {
      fail("'{}' is not valid JSON ({}); move it away or fix it", info_path.string(), e.what());
    }
  }
  info[name] = {{"file_name", name + ".json"},
                {"ranking", true},
                {"columns", {{"prompt", "instruction"}, {"query", "input"}, {"chosen", "chosen"}, {"rejected", "rejected"}, {"system", "system"}}}};
  write_file_atomic(info_path, info.dump(2) + "\n");
}

}  // namespace rlrf
