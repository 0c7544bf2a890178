// Preference pairs from rewarded responses: per user, the best of the N responses is chosen and
// the worst rejected; users whose best and worst tie are skipped and counted. Pairs are exported for
// other trainers: TRL (JSONL, conversational prompt/chosen/rejected) and LLaMA-Factory (alpaca-style
// JSON with instruction/input/chosen/rejected plus its dataset_info.json).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "knowledge/prompts.h"

namespace rlrf {

struct RewardedResponse {
  int32_t user = 0;
  int sample = 0;
  double reward = 0;
};

struct SelectedPair {
  int32_t user = 0;
  int chosen_sample = 0, rejected_sample = 0;
  double chosen_reward = 0, rejected_reward = 0;
};

struct PairSelection {
  std::vector<SelectedPair> pairs;  // ordered by user
  int64_t users = 0;                // users with at least one rewarded response
  int64_t ties_skipped = 0;         // users skipped: best - worst <= min_margin (all_tied included)
  int64_t all_tied = 0;             // of those, users whose rewards are all exactly equal
  int64_t single_response = 0;      // users with fewer than two responses
};

// Picks best/worst per user. Among equal rewards the lower sample index wins both roles' ties
// (deterministic). A pair needs best - worst > min_margin.
PairSelection select_pairs(const std::vector<RewardedResponse>& rewarded, double min_margin = 0.0);

struct PairText {
  std::string user_id;  // raw id
  std::string system, prompt;  // the prompt's system line and user message
  std::string chosen, rejected;
  double chosen_reward = 0, rejected_reward = 0;
  // The token ids as sampled (the rendered prompt, each response with its stop token when it had
  // one); empty: not known. Text does not always give them back (a response may spell a special
  // token, or sample a segmentation the tokenizer would not choose).
  std::vector<int32_t> prompt_ids, chosen_ids, rejected_ids;
};

// The texts of the selected pairs, in their order: each user's raw id and prompt (`prompt_of`: its
// system line and user message), the chosen and rejected responses' texts (`texts` by user and
// sample) and rewards. The pairs stage of a run and `rlrf reward` export these.
using ResponseTexts = std::map<std::pair<int32_t, int>, std::string>;
std::vector<PairText> pair_texts(const std::vector<SelectedPair>& pairs, const ResponseTexts& texts, const PreparedData& data,
                                 const std::function<UserPrompt(int32_t user)>& prompt_of);

// TRL's conversational preference format, one JSON object per line:
// {"prompt": [{"role":"system",...},{"role":"user",...}], "chosen": [{"role":"assistant",...}],
//  "rejected": [...], "user": "...", "chosen_reward": x, "rejected_reward": y}
void export_trl_jsonl(const std::vector<PairText>& pairs, const std::filesystem::path& path);

// LLaMA-Factory: `dir/<name>.json` (a JSON array of {"system","instruction","input","chosen","rejected"},
// plus "rlrf_prompt_ids", "rlrf_chosen_ids", "rlrf_rejected_ids" when the ids are known: columns
// dataset_info.json does not map, which LLaMA-Factory drops and `rlrf dpo` trains on) and
// `dir/dataset_info.json` registering it with "ranking": true (merged into an existing one).
void export_llamafactory(const std::vector<PairText>& pairs, const std::filesystem::path& dir, const std::string& name);

}  // namespace rlrf
