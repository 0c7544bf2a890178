// The knowledge-augmentation prompt (KAR's wording, the paper's system line), cut to fit a context.
#include "knowledge/prompts.h"

#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "util/config.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

void PromptConfig::read(const ConfigSection& s) {
  s.read("system", system);
  s.read("wording", wording);
  s.read("max_history", max_history);
  s.read("item_genres", item_genres);
  RLRF_CHECK(wording == "kar" || wording == "seed", "{}: wording must be \"kar\" or \"seed\", got \"{}\"", s.where(), wording);
  RLRF_CHECK(max_history >= 0, "{}: max_history must be >= 0", s.where());
}

std::string occupation_phrase(const std::string& occupation) {
  if (occupation.empty() || occupation == "other" || occupation == "none" || occupation == "other or not specified")
    return "in an unspecified occupation";
  if (occupation == "retired" || occupation == "self-employed" || occupation == "unemployed") return occupation;
  char c = static_cast<char>(std::tolower(static_cast<unsigned char>(occupation[0])));
  bool vowel = c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
  return std::string(vowel ? "an " : "a ") + occupation;
}

static std::string rating_text(float r) {
  if (std::abs(r - std::round(r)) < 1e-6) return fmt::format("{}", static_cast<int>(std::round(r)));
  return fmt::format("{:.1f}", r);
}

std::string history_text(const PreparedData& data, int32_t user, int first, bool with_genres) {
  const UserSequence& seq = data.sequences.at(static_cast<size_t>(user));
  std::string out;
  for (int i = std::max(0, first); i < seq.prefix_len; ++i) {
    const ItemInfo& item = data.dataset.items.at(static_cast<size_t>(seq.items[static_cast<size_t>(i)]));
    std::string title = item.year > 0 ? fmt::format("{} ({})", item.title, item.year) : item.title;
    std::string genres;
    if (with_genres) {
      std::vector<std::string> names;
      for (const std::string& g : item.genres)
        if (!g.empty() && to_lower(g) != "unknown") names.push_back(g);
      if (names.empty() && !item.category.empty()) names.push_back(item.category);
      if (!names.empty()) genres = " (" + join(names, ", ") + ")";
    }
    out += fmt::format("\"{}\"{}, {} stars; ", title, genres, rating_text(seq.ratings[static_cast<size_t>(i)]));
  }
  return out;
}

static bool is_books(const PreparedData& data) { return data.dataset.name.find("amazon") != std::string::npos; }

UserPrompt build_user_prompt(const PreparedData& data, int32_t user, const PromptConfig& config, int history_items) {
  RLRF_CHECK(user >= 0 && static_cast<size_t>(user) < data.sequences.size(), "prompt: user index {} out of range (0..{})",
             user, data.sequences.size());
  const UserSequence& seq = data.sequences[static_cast<size_t>(user)];
  int shown = seq.prefix_len;
  if (config.max_history > 0) shown = std::min(shown, config.max_history);
  if (history_items >= 0) shown = std::min(shown, history_items);
  UserPrompt p;
  p.system = config.system;
  p.history_items = shown;
  p.history = history_text(data, user, seq.prefix_len - shown, config.item_genres);
  const UserInfo& info = data.dataset.users.at(static_cast<size_t>(user));
  if (is_books(data)) {
    p.user = "Given user's book rating history: " + p.history +
             "Analyze user's preferences on books about factors like genre, author, writing style, theme, setting, "
             "length and complexity, time period, literary quality, critical acclaim (Provide clear explanations based "
             "on relevant details from the user's book viewing history and other pertinent factors.";
    return p;
  }
  std::string who;
  if (!info.gender.empty() || !info.age.empty()) {
    who = fmt::format("{} user who is aged {} and {}", info.gender.empty() ? "a" : "a " + info.gender,
                      info.age.empty() ? "unknown" : info.age, occupation_phrase(info.occupation));
  } else {
    who = "a user";
  }
  const char* factors =
      "genre, director/actors, time period/country, character, plot/theme, mood/tone, critical acclaim/award, "
      "production quality, and soundtrack";
  if (config.wording == "seed") {
    p.user = fmt::format(
        "Given {}, this user's movie viewing history over time is listed below: {}. Analyze user's preferences "
        "(consider factors like {}). Provide clear explanations based on details from the user's viewing history and "
        "other pertinent factors.",
        who, p.history, factors);
  } else {
    // KAR: "Given a {gender} user who is aged {age} and {occupation}, this user's movie viewing history ..."
    p.user = fmt::format(
        "Given {}, this user's movie viewing history over time is listed below. {}Analyze user's preferences on "
        "movies (consider factors like {}). Provide clear explanations based on relevant details from the user's "
        "movie viewing history and other pertinent factors.",
        who, p.history, factors);
  }
  return p;
}

UserPrompt build_user_prompt_fitting(const PreparedData& data, int32_t user, const PromptConfig& config, int max_tokens,
                                     const std::function<int(const UserPrompt&)>& count_tokens) {
  UserPrompt full = build_user_prompt(data, user, config);
  if (count_tokens(full) <= max_tokens) return full;
  // Binary search on the number of most recent history items that fit.
  int lo = 0, hi = full.history_items - 1;
  UserPrompt best = build_user_prompt(data, user, config, 0);
  RLRF_CHECK(count_tokens(best) <= max_tokens,
             "prompt for user '{}' does not fit in {} tokens even without history; raise the context or shorten the "
             "system line",
             data.dataset.users.at(static_cast<size_t>(user)).raw_id, max_tokens);
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    UserPrompt p = build_user_prompt(data, user, config, mid);
    if (count_tokens(p) <= max_tokens) {
      lo = mid;
      best = std::move(p);
    } else {
      hi = mid - 1;
    }
  }
  if (best.history_items != lo) best = build_user_prompt(data, user, config, lo);
  return best;
}

}  // namespace rlrf
