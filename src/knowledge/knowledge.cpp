// Knowledge texts: item knowledge (metadata or a KAR file), user profiles from the prompt-history
// prefix, user knowledge files (JSONL) and the texts that are encoded for the reranker.
#include "knowledge/knowledge.h"

#include <cstdint>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <unordered_map>

#include "knowledge/prompts.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {
namespace {

enum class Domain { kMovies, kBooks, kItems };

Domain domain_of(const Dataset& d) {
  if (starts_with(d.name, "ml-") || starts_with(d.name, "movielens")) return Domain::kMovies;
  if (d.name.find("book") != std::string::npos) return Domain::kBooks;
  return Domain::kItems;
}

std::string noun(Domain d, int64_t n) {
  const char* one = d == Domain::kMovies ? "movie" : d == Domain::kBooks ? "book" : "item";
  return n == 1 ? std::string(one) : std::string(one) + "s";
}

std::string stars(double r) {
  bool whole = std::fabs(r - std::round(r)) < 1e-6;
  std::string num = whole ? fmt::format("{}", static_cast<int>(std::round(r))) : fmt::format("{:.1f}", r);
  return num + (whole && std::round(r) == 1 ? " star" : " stars");
}

bool ends_sentence(std::string_view s) {
  s = trim(s);
  return !s.empty() && (s.back() == '.' || s.back() == '!' || s.back() == '?');
}

const UserSequence& sequence_of(const PreparedData& data, int32_t user, const char* what) {
  RLRF_CHECK(user >= 0 && static_cast<size_t>(user) < data.sequences.size(), "{}: user index {} out of range (0..{})",
             what, user, data.sequences.size());
  return data.sequences[static_cast<size_t>(user)];
}

// Ratings of the prefix items grouped by an item attribute (genre, category, brand, decade).
struct Group {
  std::string name;
  int64_t count = 0;
  double sum = 0;
  double mean() const { return count ? sum / static_cast<double>(count) : 0; }
};

std::string group_list(const std::vector<const Group*>& groups, Domain d) {
  std::vector<std::string> parts;
  for (const Group* g : groups)
    parts.push_back(fmt::format("{} ({} {}, avg {:.1f})", g->name, g->count, noun(d, g->count), g->mean()));
  return join(parts, ", ");
}

// "Most watched", "Favourite" and "Least liked" sentences for one attribute kind ("genres").
void describe_groups(std::vector<std::string>& out, const std::vector<Group>& groups, const std::string& kind,
                     const char* most_verb, double user_mean, int64_t n_items, Domain d) {
  if (groups.empty()) return;
  std::vector<const Group*> by_count;
  for (const Group& g : groups) by_count.push_back(&g);
  std::sort(by_count.begin(), by_count.end(), [](const Group* a, const Group* b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->mean() != b->mean()) return a->mean() > b->mean();
    return a->name < b->name;
  });
  std::vector<const Group*> most(by_count.begin(), by_count.begin() + std::min<size_t>(3, by_count.size()));
  out.push_back(fmt::format("Most {} {}: {}.", most_verb, kind, group_list(most, d)));

  // Liked / disliked: the mean shrunk toward the user's own mean by 2 pseudo-ratings, so that one
  // 5-star rating does not make a favourite; only groups with enough items are considered.
  const int64_t min_count = n_items >= 6 ? 2 : 1;
  auto shrunk = [&](const Group* g) { return (g->sum + 2 * user_mean) / static_cast<double>(g->count + 2); };
  std::vector<const Group*> eligible;
  for (const Group* g : by_count)
    if (g->count >= min_count) eligible.push_back(g);
  std::vector<const Group*> liked, disliked;
  std::stable_sort(eligible.begin(), eligible.end(), [&](const Group* a, const Group* b) { return shrunk(a) > shrunk(b); });
  for (const Group* g : eligible)
    if (g->mean() > user_mean + 1e-9 && liked.size() < 3) liked.push_back(g);
  for (auto it = eligible.rbegin(); it != eligible.rend(); ++it)
    if ((*it)->mean() < user_mean - 1e-9 && disliked.size() < 2) disliked.push_back(*it);
  if (!liked.empty()) out.push_back(fmt::format("Favourite {}: {}.", kind, group_list(liked, d)));
  if (!disliked.empty()) out.push_back(fmt::format("Least liked {}: {}.", kind, group_list(disliked, d)));
}

std::vector<Group> group_by(const PreparedData& data, const UserSequence& seq,
                            const std::function<std::vector<std::string>(const ItemInfo&)>& keys) {
  std::map<std::string, Group> groups;
  for (int32_t i = 0; i < seq.prefix_len; ++i) {
    const ItemInfo& item = data.dataset.items.at(static_cast<size_t>(seq.items[static_cast<size_t>(i)]));
    for (const std::string& k : keys(item)) {
      if (k.empty()) continue;
      Group& g = groups[k];
      g.name = k;
      ++g.count;
      g.sum += seq.ratings[static_cast<size_t>(i)];
    }
  }
  std::vector<Group> out;
  for (auto& [k, g] : groups) out.push_back(g);
  return out;
}

bool is_unknown_genre(const std::string& g) { return g.empty() || to_lower(g) == "unknown"; }

}  // namespace

// ---- items ----------------------------------------------------------------------------------------

std::string item_title_with_year(const ItemInfo& item) {
  return item.year > 0 ? fmt::format("{} ({})", item.title, item.year) : item.title;
}

std::vector<std::string> item_knowledge_from_metadata(const Dataset& dataset) {
  std::vector<std::string> out;
  out.reserve(dataset.items.size());
  for (const ItemInfo& item : dataset.items) {
    std::string text = item_title_with_year(item);
    if (text.empty()) text = "Untitled (id " + item.raw_id + ")";
    if (!ends_sentence(text)) text += '.';
    std::vector<std::string> genres;
    for (const std::string& g : item.genres)
      if (!is_unknown_genre(g)) genres.push_back(g);
    if (!genres.empty()) text += fmt::format(" {}: {}.", genres.size() == 1 ? "Genre" : "Genres", join(genres, ", "));
    if (!item.brand.empty()) text += fmt::format(" Brand: {}{}", item.brand, ends_sentence(item.brand) ? "" : ".");
    if (!item.category.empty())
      text += fmt::format(" Category: {}{}", item.category, ends_sentence(item.category) ? "" : ".");
    out.push_back(std::move(text));
  }
  return out;
}

std::vector<std::string> item_knowledge_from_kar_file(const Dataset& dataset, const fs::path& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON ({}); expected KAR item knowledge: {{\"<item id>\": {{\"prompt\": ..., \"ans\": ...}}, ...}}",
         path.string(), e.what());
  }
  RLRF_CHECK(j.is_object(), "{}: expected a JSON object keyed by item id (KAR item knowledge), got {}", path.string(),
             j.type_name());
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < dataset.items.size(); ++i) index.emplace(dataset.items[i].raw_id, i);

  std::vector<std::string> out = item_knowledge_from_metadata(dataset);
  std::vector<bool> found(dataset.items.size(), false);
  std::vector<std::string> unknown_keys;
  int64_t empty_answers = 0;
  for (const auto& [key, value] : j.items()) {
    RLRF_CHECK(value.is_object(), "{}: key \"{}\": expected an object with \"prompt\" and \"ans\", got {}", path.string(),
               key, value.type_name());
    auto ans = value.find("ans");
    RLRF_CHECK(ans != value.end(), "{}: key \"{}\": no \"ans\" field (KAR stores the LLM's answer there)", path.string(), key);
    RLRF_CHECK(ans->is_string(), "{}: key \"{}\": \"ans\" must be a string, got {}", path.string(), key, ans->type_name());
    if (auto prompt = value.find("prompt"); prompt != value.end())
      RLRF_CHECK(prompt->is_string(), "{}: key \"{}\": \"prompt\" must be a string, got {}", path.string(), key,
                 prompt->type_name());
    auto it = index.find(key);
    if (it == index.end()) {
      unknown_keys.push_back(key);
      continue;
    }
    const std::string& text = ans->get_ref<const std::string&>();
    if (trim(text).empty()) {
      ++empty_answers;
      continue;
    }
    out[it->second] = text;
    found[it->second] = true;
  }
  const auto matched = static_cast<int64_t>(std::count(found.begin(), found.end(), true));
  if (!dataset.items.empty() && matched == 0 && empty_answers == 0) {
    std::vector<std::string> sample(unknown_keys.begin(), unknown_keys.begin() + std::min<size_t>(3, unknown_keys.size()));
    fail("{}: none of its {} keys is an item id of {} (keys look like \"{}\", ids like \"{}\"); is it the file of "
         "another dataset?", path.string(), j.size(), dataset.name, join(sample, "\", \""), dataset.items[0].raw_id);
  }
  const int64_t missing = static_cast<int64_t>(dataset.items.size()) - matched;
  if (missing > 0)
    log_warn("{}: {} of {} items have no knowledge in the file ({} with an empty answer); they use metadata text",
             path.string(), missing, dataset.items.size(), empty_answers);
  if (!unknown_keys.empty())
    log_warn("{}: {} keys are not item ids of {} and are ignored (first: \"{}\")", path.string(), unknown_keys.size(),
             dataset.name, unknown_keys.front());
  return out;
}

std::vector<std::string> item_knowledge(const Dataset& dataset, const std::string& source) {
  if (source.empty() || source == "metadata") return item_knowledge_from_metadata(dataset);
  if (starts_with(source, "file:")) return item_knowledge_from_kar_file(dataset, source.substr(5));
  fail("unknown item knowledge source '{}'; use metadata or file:<path to a KAR item knowledge JSON>", source);
}

// ---- users ----------------------------------------------------------------------------------------

std::string user_history_text(const PreparedData& data, int32_t user) {
  sequence_of(data, user, "user_history_text");
  return history_text(data, user, 0);
}

std::string user_profile_summary(const PreparedData& data, int32_t user) {
  const UserSequence& seq = sequence_of(data, user, "user_profile_summary");
  const Dataset& ds = data.dataset;
  const Domain d = domain_of(ds);
  const int64_t n = seq.prefix_len;
  RLRF_CHECK(n >= 0 && static_cast<size_t>(n) <= seq.items.size() && seq.ratings.size() == seq.items.size(),
             "user_profile_summary: user '{}' has prefix {} of {} items", ds.users.at(static_cast<size_t>(user)).raw_id, n,
             seq.items.size());
  if (n == 0) return fmt::format("No rated {} in the history yet.", noun(d, 2));

  std::vector<std::string> out;
  // Rating habits.
  double sum = 0;
  int64_t high = 0;
  std::map<float, int64_t> histogram;  // rating -> count
  for (int64_t i = 0; i < n; ++i) {
    float r = seq.ratings[static_cast<size_t>(i)];
    sum += r;
    if (r > ds.positive_above) ++high;
    ++histogram[r];
  }
  const double mean = sum / static_cast<double>(n);
  auto mode = std::max_element(histogram.begin(), histogram.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second < b.second : a.first < b.first;  // ties: the higher rating
  });
  const char* habit = mean >= 4.0 ? "a generous rater" : mean < 3.0 ? "a critical rater" : "a moderate rater";
  out.push_back(fmt::format("Rated {} {}, {:.1f} stars on average ({}); {:.0f}% rated above {}, most often {} ({:.0f}%).",
                            n, noun(d, n), mean, habit, 100.0 * static_cast<double>(high) / static_cast<double>(n),
                            stars(ds.positive_above), stars(mode->first),
                            100.0 * static_cast<double>(mode->second) / static_cast<double>(n)));

  // Attributes.
  if (d == Domain::kBooks) {
    describe_groups(out, group_by(data, seq, [](const ItemInfo& it) { return std::vector<std::string>{it.category}; }),
                    "categories", "read", mean, n, d);
    describe_groups(out, group_by(data, seq, [](const ItemInfo& it) { return std::vector<std::string>{it.brand}; }),
                    "brands", "read", mean, n, d);
  } else {
    describe_groups(out, group_by(data, seq, [](const ItemInfo& it) {
                      std::vector<std::string> g;
                      for (const std::string& x : it.genres)
                        if (!is_unknown_genre(x)) g.push_back(x);
                      return g;
                    }),
                    "genres", d == Domain::kMovies ? "watched" : "rated", mean, n, d);
  }

  // Decades: the two with most items (ties: the better rated, then the more recent).
  std::vector<Group> decades = group_by(data, seq, [](const ItemInfo& it) {
    return it.year > 0 ? std::vector<std::string>{fmt::format("{}s", it.year / 10 * 10)} : std::vector<std::string>{};
  });
  if (!decades.empty()) {
    std::sort(decades.begin(), decades.end(), [](const Group& a, const Group& b) {
      if (a.count != b.count) return a.count > b.count;
      if (a.mean() != b.mean()) return a.mean() > b.mean();
      return a.name > b.name;
    });
    std::vector<const Group*> top;
    for (size_t i = 0; i < decades.size() && i < 2; ++i) top.push_back(&decades[i]);
    out.push_back(fmt::format("Most {} decades: {}.", d == Domain::kBooks ? "read" : d == Domain::kMovies ? "watched" : "rated",
                              group_list(top, d)));
  }

  // Best rated: the top third (at most 3); worst rated: up to 2 of the rest that were not liked
  // (rating <= the positive threshold) and below the best rating. Ties go to the more recent rating.
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = n - 1 - i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return seq.ratings[static_cast<size_t>(a)] > seq.ratings[static_cast<size_t>(b)];
  });
  auto titled = [&](int64_t i) {
    const ItemInfo& item = ds.items.at(static_cast<size_t>(seq.items[static_cast<size_t>(i)]));
    return fmt::format("\"{}\" ({})", item_title_with_year(item), stars(seq.ratings[static_cast<size_t>(i)]));
  };
  std::vector<std::string> best, worst;
  const size_t n_best = std::min<size_t>(3, (order.size() + 2) / 3);
  for (size_t k = 0; k < n_best; ++k) best.push_back(titled(order[k]));
  const float top_rating = seq.ratings[static_cast<size_t>(order.front())];
  std::vector<int64_t> low(order.begin() + static_cast<std::ptrdiff_t>(n_best), order.end());
  std::stable_sort(low.begin(), low.end(), [&](int64_t a, int64_t b) {
    return seq.ratings[static_cast<size_t>(a)] < seq.ratings[static_cast<size_t>(b)];
  });
  for (int64_t i : low)
    if (seq.ratings[static_cast<size_t>(i)] < top_rating && seq.ratings[static_cast<size_t>(i)] <= ds.positive_above &&
        worst.size() < 2)
      worst.push_back(titled(i));
  out.push_back(fmt::format("Best rated: {}.", join(best, ", ")));
  if (!worst.empty()) out.push_back(fmt::format("Worst rated: {}.", join(worst, ", ")));
  return join(out, " ");
}

std::vector<std::string> user_knowledge_from_file(const Dataset& dataset, const fs::path& path) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < dataset.users.size(); ++i) index.emplace(dataset.users[i].raw_id, i);
  std::vector<std::string> out(dataset.users.size());
  std::vector<int64_t> line_of(dataset.users.size(), 0);
  const std::vector<std::string> lines = read_lines(path);
  int64_t entries = 0;
  for (size_t ln = 0; ln < lines.size(); ++ln) {
    const int64_t line = static_cast<int64_t>(ln) + 1;
    if (trim(lines[ln]).empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(lines[ln]);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: invalid JSON ({}); expected {{\"user\": \"<raw id>\", \"text\": \"...\"}} per line", path.string(),
           line, e.what());
    }
    RLRF_CHECK(j.is_object(), "{}:{}: expected a JSON object {{\"user\": ..., \"text\": ...}}, got {}", path.string(),
               line, j.type_name());
    auto u = j.find("user");
    RLRF_CHECK(u != j.end(), "{}:{}: no \"user\" field", path.string(), line);
    std::string raw;
    if (u->is_string()) raw = u->get<std::string>();
    else if (u->is_number_integer()) raw = std::to_string(u->get<int64_t>());
    else fail("{}:{}: \"user\" must be a string (the raw user id), got {}", path.string(), line, u->type_name());
    auto t = j.find("text");
    RLRF_CHECK(t != j.end(), "{}:{}: no \"text\" field", path.string(), line);
    RLRF_CHECK(t->is_string(), "{}:{}: \"text\" must be a string, got {}", path.string(), line, t->type_name());
    auto it = index.find(raw);
    RLRF_CHECK(it != index.end(), "{}:{}: unknown user \"{}\" (not a user of {}); is it the file of another dataset?",
               path.string(), line, raw, dataset.name);
    RLRF_CHECK(line_of[it->second] == 0, "{}:{}: user \"{}\" appears again (first on line {})", path.string(), line, raw,
               line_of[it->second]);
    line_of[it->second] = line;
    out[it->second] = t->get<std::string>();
    ++entries;
  }
  if (entries < static_cast<int64_t>(dataset.users.size()))
    log_info("{}: knowledge for {} of {} users; the others get none", path.string(), entries, dataset.users.size());
  return out;
}

std::vector<std::string> user_knowledge(const PreparedData& data, const std::string& source) {
  if (source == "none") return {};
  if (source == "profile") {
    std::vector<std::string> out;
    out.reserve(data.sequences.size());
    for (size_t u = 0; u < data.sequences.size(); ++u) out.push_back(user_profile_summary(data, static_cast<int32_t>(u)));
    return out;
  }
  if (starts_with(source, "file:")) {
    RLRF_CHECK(source.size() > 5, "user knowledge source 'file:' needs a path (file:<path to JSONL>)");
    return user_knowledge_from_file(data.dataset, source.substr(5));
  }
  fail("unknown user knowledge source '{}'; use none, profile, or file:<path to JSONL of {{\"user\", \"text\"}}>", source);
}

std::string user_text_for_encoding(const PreparedData& data, int32_t user, const std::string& knowledge,
                                   bool with_history) {
  if (!with_history) return knowledge;
  std::string history = user_history_text(data, user);
  // KAR encodes the prompt up to its last ';' (the history without its final "; "), then ". " + answer.
  std::string_view h = trim(history);
  if (!h.empty() && h.back() == ';') h.remove_suffix(1);
  if (knowledge.empty()) return std::string(h);
  if (h.empty()) return knowledge;
  return std::string(h) + ". " + knowledge;
}

}  // namespace rlrf
