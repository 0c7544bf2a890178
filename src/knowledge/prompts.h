// The knowledge-augmentation prompt of the paper (its Fig. 3, in KAR's wording): a user
// description, the time-ordered prompt history with ratings, and scenario factors to consider.
// Prompts are cut to fit the model's context by dropping the oldest history items first.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "data/prepare.h"

namespace rlrf {

class ConfigSection;

struct PromptConfig {
  // The system line of the paper's template.
  std::string system =
      "You are a helpful assistant capable of summarizing and extracting user preferences using "
      "natural language. Please think step by step.";
  std::string wording = "kar";  // kar (KAR's user prompt) | seed (the paper's Fig. 3 sentence)
  int max_history = 0;          // 0: the whole prompt-history prefix; otherwise the most recent N of it
  // Each history item also names its genres (Books: category): `"Heat (1995)" (Action, Crime,
  // Thriller), 4 stars; `. Not KAR's prompt: for a policy too small to know the titles, it puts
  // in the prompt what a card's genre statements are computed from (README, "Planted labels").
  bool item_genres = false;
  void read(const ConfigSection& s);
};

struct UserPrompt {
  std::string system;
  std::string user;       // the instruction with the history
  std::string history;    // the history part alone (what KAR prepends to the response to encode)
  int history_items = 0;  // prefix items shown (the most recent ones)
};

// "a K-12 student", "an academic/educator", "retired": the occupation as the prompt reads it.
std::string occupation_phrase(const std::string& occupation);

// `"{title} ({year})", {rating} stars; ` for prefix items [first, prefix_len) of the user;
// with_genres: `"{title} ({year})" ({genres}), {rating} stars; `.
std::string history_text(const PreparedData& data, int32_t user, int first = 0, bool with_genres = false);

// The prompt for `user` showing at most `history_items` most recent prefix items (-1: config's limit).
UserPrompt build_user_prompt(const PreparedData& data, int32_t user, const PromptConfig& config, int history_items = -1);

// The longest prompt (most history items) whose token count, as measured by `count_tokens` over the
// rendered prompt, is at most `max_tokens`. Throws Error naming the user when even an empty history
// does not fit.
UserPrompt build_user_prompt_fitting(const PreparedData& data, int32_t user, const PromptConfig& config, int max_tokens,
                                     const std::function<int(const UserPrompt&)>& count_tokens);

}  // namespace rlrf
