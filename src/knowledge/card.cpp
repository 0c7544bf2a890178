// Knowledge cards: computed from the prompt's items, written in a fixed form, parsed back and
// compared (card.h has the definition of every field).
#include "knowledge/card.h"

#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "data/rng.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {
namespace {

constexpr uint64_t kCardNoiseStream = 0x63617264206e6f69ull;  // "card noi"

// The genres of an item (MovieLens), else its category (Books); "unknown" is no genre.
std::vector<std::string> item_genres(const ItemInfo& item) {
  std::vector<std::string> out;
  for (const std::string& g : item.genres)
    if (!g.empty() && to_lower(g) != "unknown") out.push_back(g);
  if (out.empty() && !item.category.empty()) out.push_back(item.category);
  return out;
}

// The keys of `counts` with the highest counts (ties by name), at most n, skipping `exclude`.
std::vector<std::string> most_frequent(const std::map<std::string, int>& counts, size_t n,
                                       const std::vector<std::string>& exclude = {}) {
  std::vector<std::pair<std::string, int>> v;
  for (const auto& [k, c] : counts)
    if (std::find(exclude.begin(), exclude.end(), k) == exclude.end()) v.push_back({k, c});
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size() && i < n; ++i) out.push_back(v[i].first);
  return out;
}

// "1990s" for an item of 1995; empty when the year is unknown.
std::string decade_of(const ItemInfo& item) { return item.year > 0 ? fmt::format("{}s", item.year / 10 * 10) : ""; }

bool same(std::string_view a, std::string_view b) { return to_lower(trim(a)) == to_lower(trim(b)); }

const char* const kRaters[] = {"generous", "moderate", "critical"};

struct Label {
  const char* name;
  std::string KnowledgeCard::*single;                // or
  std::vector<std::string> KnowledgeCard::*list;
};
const Label kLabels[] = {{"likes:", nullptr, &KnowledgeCard::liked},
                         {"dislikes:", nullptr, &KnowledgeCard::disliked},
                         {"era:", &KnowledgeCard::era, nullptr},
                         {"rater:", &KnowledgeCard::rater, nullptr},
                         {"favourite:", &KnowledgeCard::favourite, nullptr}};

}  // namespace

int KnowledgeCard::statements() const {
  return static_cast<int>(liked.size() + disliked.size()) + !era.empty() + !rater.empty() + !favourite.empty();
}

KnowledgeCard user_card(const PreparedData& data, int32_t user, int shown_items) {
  RLRF_CHECK(user >= 0 && static_cast<size_t>(user) < data.sequences.size(), "user_card: user index {} out of range (0..{})",
             user, data.sequences.size());
  const UserSequence& seq = data.sequences[static_cast<size_t>(user)];
  const Dataset& ds = data.dataset;
  const int n = seq.prefix_len;
  const int first = shown_items < 0 ? 0 : std::max(0, n - shown_items);
  KnowledgeCard card;
  if (first >= n) return card;
  std::map<std::string, int> high, low, decades;
  double sum = 0;
  int best = -1;
  for (int i = first; i < n; ++i) {
    const ItemInfo& item = ds.items.at(static_cast<size_t>(seq.items[static_cast<size_t>(i)]));
    const float r = seq.ratings[static_cast<size_t>(i)];
    sum += r;
    for (const std::string& g : item_genres(item)) {
      if (r > ds.positive_above) ++high[g];
      else if (r < ds.positive_above) ++low[g];
    }
    if (item.year > 0) ++decades[decade_of(item)];
    if (best < 0 || r >= seq.ratings[static_cast<size_t>(best)]) best = i;  // ties: the more recent
  }
  card.liked = most_frequent(high, 2);
  card.disliked = most_frequent(low, 1, card.liked);
  if (!decades.empty()) {
    auto top = decades.begin();
    for (auto it = decades.begin(); it != decades.end(); ++it)
      if (it->second >= top->second) top = it;  // ties: the later (more recent) decade
    card.era = top->first;
  }
  const double mean = sum / (n - first);
  card.rater = mean >= 4.0 ? "generous" : mean < 3.0 ? "critical" : "moderate";
  card.favourite = ds.items.at(static_cast<size_t>(seq.items[static_cast<size_t>(best)])).title;
  return card;
}

std::string card_text(const KnowledgeCard& card, bool with_favourite) {
  std::vector<std::string> parts;
  if (!card.liked.empty()) parts.push_back("Likes: " + join(card.liked, ", ") + ".");
  if (!card.disliked.empty()) parts.push_back("Dislikes: " + join(card.disliked, ", ") + ".");
  if (!card.era.empty()) parts.push_back("Era: " + card.era + ".");
  if (!card.rater.empty()) parts.push_back("Rater: " + card.rater + ".");
  if (with_favourite && !card.favourite.empty()) {
    std::string f = card.favourite;
    parts.push_back("Favourite: " + f + (f.back() == '.' ? "" : "."));
  }
  return join(parts, " ");
}

KnowledgeCard parse_card(const std::string& text) {
  const std::string lower = to_lower(text);
  struct Found {
    size_t at, value;
    const Label* label;
  };
  std::vector<Found> found;
  for (const Label& l : kLabels) {
    const std::string name = l.name;
    for (size_t at = lower.find(name); at != std::string::npos; at = lower.find(name, at + 1)) {
      // "dislikes:" contains "likes:": a match must start the text or follow a non-letter.
      if (at > 0 && std::isalpha(static_cast<unsigned char>(lower[at - 1]))) continue;
      found.push_back({at, at + name.size(), &l});  // every occurrence bounds the value before it
    }
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.at < b.at; });
  KnowledgeCard card;
  std::set<const Label*> seen;
  for (size_t i = 0; i < found.size(); ++i) {
    if (!seen.insert(found[i].label).second) continue;  // the first statement of a field counts
    const size_t end = i + 1 < found.size() ? found[i + 1].at : text.size();
    std::string value(trim(std::string_view(text).substr(found[i].value, end - found[i].value)));
    while (!value.empty() && (value.back() == '.' || value.back() == ';')) value.pop_back();
    value = std::string(trim(value));
    if (found[i].label->list) {
      for (std::string_view part : split(value, ","))
        if (!trim(part).empty()) (card.*(found[i].label->list)).push_back(std::string(trim(part)));
    } else if (!value.empty()) {
      card.*(found[i].label->single) = value;
    }
  }
  return card;
}

double CardAgreement::score() const { return double(agree) / double(std::max({stated, truth, 1})); }

CardAgreement card_agreement(const KnowledgeCard& truth, const std::string& text) {
  const KnowledgeCard said = parse_card(text);
  CardAgreement a;
  a.truth = truth.statements();
  a.stated = said.statements();
  auto count_in = [](const std::vector<std::string>& values, const std::vector<std::string>& truth_values) {
    int n = 0;
    std::vector<bool> used(truth_values.size(), false);
    for (const std::string& v : values)
      for (size_t j = 0; j < truth_values.size(); ++j)
        if (!used[j] && same(v, truth_values[j])) {
          used[j] = true;
          ++n;
          break;
        }
    return n;
  };
  a.agree = count_in(said.liked, truth.liked) + count_in(said.disliked, truth.disliked);
  for (auto field : {&KnowledgeCard::era, &KnowledgeCard::rater, &KnowledgeCard::favourite})
    if (!(said.*field).empty() && !(truth.*field).empty() && same(said.*field, truth.*field)) ++a.agree;
  return a;
}

CardVocabulary card_vocabulary(const PreparedData& data) {
  std::set<std::string> genres, eras, titles;
  for (int32_t i : catalog_items(data.dataset)) {
    const ItemInfo& item = data.dataset.items.at(static_cast<size_t>(i));
    for (const std::string& g : item_genres(item)) genres.insert(g);
    if (item.year > 0) eras.insert(decade_of(item));
    if (!item.title.empty()) titles.insert(item.title);
  }
  return {{genres.begin(), genres.end()}, {eras.begin(), eras.end()}, {titles.begin(), titles.end()}};
}

KnowledgeCard noisy_card(const KnowledgeCard& card, double p, const CardVocabulary& vocab, uint64_t seed, int32_t user) {
  RLRF_CHECK(p >= 0 && p <= 1, "card noise probability {} must be in [0, 1]", p);
  Rng rng(derive_seed(seed, kCardNoiseStream, static_cast<uint64_t>(user)));
  // A value from `pool` that none of `avoid` equals; `keep` when the pool has none.
  auto other = [&](const std::vector<std::string>& pool, const std::vector<std::string>& avoid, const std::string& keep) {
    std::vector<const std::string*> ok;
    for (const std::string& v : pool)
      if (std::none_of(avoid.begin(), avoid.end(), [&](const std::string& a) { return same(a, v); })) ok.push_back(&v);
    return ok.empty() ? keep : *ok[rng.uniform(ok.size())];
  };
  KnowledgeCard out = card;
  std::vector<std::string> taken = card.liked;  // a replaced genre is none of the card's genres
  taken.insert(taken.end(), card.disliked.begin(), card.disliked.end());
  for (auto* list : {&out.liked, &out.disliked})
    for (std::string& g : *list)
      if (rng.uniform01() < p) {
        g = other(vocab.genres, taken, g);
        taken.push_back(g);
      }
  if (!out.era.empty() && rng.uniform01() < p) out.era = other(vocab.eras, {card.era}, card.era);
  if (!out.rater.empty() && rng.uniform01() < p)
    out.rater = other({kRaters[0], kRaters[1], kRaters[2]}, {card.rater}, card.rater);
  if (!out.favourite.empty() && rng.uniform01() < p) out.favourite = other(vocab.titles, {card.favourite}, card.favourite);
  return out;
}

double plant_card_labels(PreparedData& data, const std::vector<KnowledgeCard>& cards, PlantedRule rule) {
  RLRF_CHECK(cards.size() == data.sequences.size(), "plant_card_labels: {} cards for {} users", cards.size(),
             data.sequences.size());
  int64_t positive = 0, total = 0;
  for (RerankList& l : data.lists) {
    const KnowledgeCard& card = cards.at(static_cast<size_t>(l.user));
    const bool no_liked_genre = card.liked.empty();
    if (!no_liked_genre || (rule == PlantedRule::kEveryUser && !card.era.empty())) {
      for (size_t i = 0; i < l.items.size(); ++i) {
        const ItemInfo& item = data.dataset.items.at(static_cast<size_t>(l.items[i]));
        bool liked = false, disliked = false;
        for (const std::string& g : item_genres(item)) {
          for (const std::string& x : card.liked) liked = liked || same(g, x);
          for (const std::string& x : card.disliked) disliked = disliked || same(g, x);
        }
        bool positive_item = liked;
        if (rule != PlantedRule::kGenres && !card.era.empty()) {
          const bool era = decade_of(item) == card.era;
          if (no_liked_genre) positive_item = era;  // kEveryUser only: the era is the card's taste
          else if (card.rater == "generous") positive_item = liked || era;
          else if (card.rater == "moderate") positive_item = liked && era;
        }
        l.labels[i] = positive_item && !disliked ? 1 : 0;
      }
    }
    for (uint8_t y : l.labels) positive += y;
    total += static_cast<int64_t>(l.labels.size());
  }
  return total > 0 ? double(positive) / double(total) : 0.0;
}

}  // namespace rlrf
