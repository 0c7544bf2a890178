// The kar and popularity settings (sampled_lists.h): windows of a user's real items padded with
// catalog items drawn without replacement, uniformly (kar) or in proportion to popularity.
//
// Both settings walk the same windows (window_list) and finish a list the same way (pad_and_shuffle);
// they differ in what the padding excludes and how it is drawn, each in its own function below.
#include "data/sampled_lists.h"

#include <algorithm>
#include <cstdint>
#include <span>

#include "data/prepare_streams.h"
#include "data/rng.h"
#include "util/error.h"

namespace rlrf {

namespace {

// Why an item may not pad the list being built.
enum class Exclusion : uint8_t {
  kNone,  // free to draw
  kUser,  // excluded from every list of the current user (kar: the prefix; popularity: all the user's items)
  kList,  // an item of the current list only (kar: a real item from after the prefix)
};

// Per-item exclusion marks, with the number of excluded catalog items kept up to date. Marks are
// set and cleared user by user and list by list, so that all are kNone between users.
class ExclusionMarks {
 public:
  ExclusionMarks(size_t n_items, const std::vector<int32_t>& catalog) : mark_(n_items, Exclusion::kNone), in_catalog_(n_items, 0) {
    for (int32_t it : catalog) in_catalog_[static_cast<size_t>(it)] = 1;
  }
  bool excluded(int32_t item) const { return mark_[static_cast<size_t>(item)] != Exclusion::kNone; }
  int64_t excluded_in_catalog() const { return excluded_in_catalog_; }

  // The user's items (distinct) are excluded from all of the user's lists.
  void exclude_for_user(std::span<const int32_t> items) {
    for (int32_t it : items) set(it, Exclusion::kUser);
  }
  void clear_user(std::span<const int32_t> items) {
    for (int32_t it : items) set(it, Exclusion::kNone);
  }
  // An item of the current list, unless the user's marks exclude it already.
  void exclude_for_list(int32_t item) {
    if (!excluded(item)) set(item, Exclusion::kList);
  }
  // Clears the marks exclude_for_list set for `items`; the user's marks stay.
  void clear_list(std::span<const int32_t> items) {
    for (int32_t it : items)
      if (mark_[static_cast<size_t>(it)] == Exclusion::kList) set(it, Exclusion::kNone);
  }

 private:
  void set(int32_t item, Exclusion m) {
    const size_t i = static_cast<size_t>(item);
    excluded_in_catalog_ += in_catalog_[i] * ((m != Exclusion::kNone) - (mark_[i] != Exclusion::kNone));
    mark_[i] = m;
  }
  std::vector<Exclusion> mark_;
  std::vector<uint8_t> in_catalog_;
  int64_t excluded_in_catalog_ = 0;
};

// Draws `count` distinct catalog items uniformly, none of them excluded.
void draw_uniform(Rng& rng, const std::vector<int32_t>& catalog, const ExclusionMarks& marks, int count,
                  std::vector<int32_t>& out) {
  const int64_t available = static_cast<int64_t>(catalog.size()) - marks.excluded_in_catalog();
  RLRF_CHECK(available >= count,
             "prepare: kar: only {} catalog items are left to pad a list with {} items (the dataset has too few items "
             "for list_size)",
             available, count);
  if (available * 8 >= static_cast<int64_t>(catalog.size())) {  // rejection: >= 1/8 accepted
    std::vector<int32_t> picked;
    while (static_cast<int>(picked.size()) < count) {
      int32_t it = catalog[static_cast<size_t>(rng.uniform(catalog.size()))];
      if (marks.excluded(it) || std::find(picked.begin(), picked.end(), it) != picked.end()) continue;
      picked.push_back(it);
    }
    out.insert(out.end(), picked.begin(), picked.end());
    return;
  }
  std::vector<int32_t> rest;
  for (int32_t it : catalog)
    if (!marks.excluded(it)) rest.push_back(it);
  for (int k = 0; k < count; ++k) {  // partial Fisher-Yates
    size_t j = static_cast<size_t>(k) + static_cast<size_t>(rng.uniform(rest.size() - static_cast<size_t>(k)));
    std::swap(rest[static_cast<size_t>(k)], rest[j]);
    out.push_back(rest[static_cast<size_t>(k)]);
  }
}

// Popularity-proportional draws without replacement over the catalog (cdf: cumulative weights).
class PopularitySampler {
 public:
  PopularitySampler(const std::vector<int32_t>& catalog, const std::vector<float>& item_popularity) : catalog_(catalog) {
    for (int32_t it : catalog) {
      double w = item_popularity[static_cast<size_t>(it)];
      weight_.push_back(w);
      total_ += w;
      cdf_.push_back(total_);
    }
  }

  // What a user's exclusions leave: mass and counts of available items (all and of positive weight).
  struct Left {
    double mass = 0;
    int64_t available = 0, available_positive = 0;
  };
  Left left(const ExclusionMarks& marks) const {
    Left l;
    for (size_t k = 0; k < catalog_.size(); ++k) {
      if (marks.excluded(catalog_[k])) continue;
      l.mass += weight_[k];
      ++l.available;
      if (weight_[k] > 0) ++l.available_positive;
    }
    return l;
  }

  // `lf` must describe `marks`.
  void draw(Rng& rng, const ExclusionMarks& marks, const Left& lf, int count, std::vector<int32_t>& out) const {
    RLRF_CHECK(lf.available >= count,
               "prepare: popularity: only {} catalog items are left to pad a list with {} items (too few items)",
               lf.available, count);
    std::vector<int32_t> picked;
    auto taken = [&](int32_t it) { return std::find(picked.begin(), picked.end(), it) != picked.end(); };
    if (lf.available_positive >= count + 8 && lf.mass >= 0.125 * total_) {
      while (static_cast<int>(picked.size()) < count) {  // rejection on the cdf
        double x = rng.uniform01() * total_;
        size_t k = static_cast<size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), x) - cdf_.begin());
        if (k >= catalog_.size()) continue;
        int32_t it = catalog_[k];
        if (marks.excluded(it) || taken(it)) continue;
        picked.push_back(it);
      }
    } else {  // explicit draws over what is left
      std::vector<std::pair<int32_t, double>> rest;
      for (size_t k = 0; k < catalog_.size(); ++k)
        if (!marks.excluded(catalog_[k])) rest.emplace_back(catalog_[k], weight_[k]);
      while (static_cast<int>(picked.size()) < count) {
        double mass = 0;
        for (auto& [it, w] : rest) mass += w;
        size_t chosen = 0;
        if (mass > 0) {
          double x = rng.uniform01() * mass;
          double acc = 0;
          chosen = rest.size();
          for (size_t k = 0; k < rest.size(); ++k) {
            acc += rest[k].second;
            if (rest[k].second > 0 && x < acc) { chosen = k; break; }
          }
          if (chosen == rest.size()) {  // rounding at the top end: the last positive weight
            for (size_t k = rest.size(); k-- > 0;)
              if (rest[k].second > 0) { chosen = k; break; }
          }
        } else {
          chosen = static_cast<size_t>(rng.uniform(rest.size()));
        }
        picked.push_back(rest[chosen].first);
        rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(chosen));
      }
    }
    out.insert(out.end(), picked.begin(), picked.end());
  }

 private:
  std::vector<int32_t> catalog_;
  std::vector<double> weight_;  // per catalog position
  std::vector<double> cdf_;     // inclusive prefix sums
  double total_ = 0;
};

// The real items of window [begin, end) of the user's sequence, with their labels and positions.
RerankList window_list(const UserSequence& s, int32_t begin, int32_t end, float positive_above) {
  RerankList l;
  l.user = s.user;
  l.split = s.split;
  l.begin = begin;
  l.end = end;
  for (int32_t p = begin; p < end; ++p) {
    l.items.push_back(s.items[static_cast<size_t>(p)]);
    l.labels.push_back(s.ratings[static_cast<size_t>(p)] > positive_above ? 1 : 0);
    l.seq_pos.push_back(p);
  }
  return l;
}

// Appends the padding (label 0, no sequence position), then shuffles items, labels and positions
// together.
void pad_and_shuffle(Rng& rng, RerankList& l, const std::vector<int32_t>& padding) {
  for (int32_t it : padding) {
    l.items.push_back(it);
    l.labels.push_back(0);
    l.seq_pos.push_back(-1);
  }
  std::vector<size_t> perm(l.items.size());
  for (size_t k = 0; k < perm.size(); ++k) perm[k] = k;
  rng.shuffle(perm);
  RerankList s = l;
  for (size_t k = 0; k < perm.size(); ++k) {
    s.items[k] = l.items[perm[k]];
    s.labels[k] = l.labels[perm[k]];
    s.seq_pos[k] = l.seq_pos[perm[k]];
  }
  l = std::move(s);
}

bool has_windows(const UserSequence& s) { return s.prefix_len < static_cast<int32_t>(s.items.size()); }

Rng list_rng(const PrepareConfig& c, const UserSequence& s) {
  return Rng(derive_seed(c.seed, kListStream, static_cast<uint64_t>(s.user)));
}

}  // namespace

std::vector<RerankList> kar_lists(const PrepareConfig& c, const Dataset& d, const std::vector<UserSequence>& sequences,
                                  const std::vector<int32_t>& catalog) {
  ExclusionMarks marks(d.items.size(), catalog);
  std::vector<RerankList> lists;
  for (const UserSequence& s : sequences) {
    if (!has_windows(s)) continue;
    Rng rng = list_rng(c, s);
    const int32_t len = static_cast<int32_t>(s.items.size());
    const std::span<const int32_t> prefix(s.items.data(), static_cast<size_t>(s.prefix_len));
    marks.exclude_for_user(prefix);
    for (int32_t begin = s.prefix_len; begin < len; begin += c.real_per_list) {
      RerankList l = window_list(s, begin, std::min(begin + c.real_per_list, len), d.positive_above);
      // Later items of the user outside this window may pad it (label 0), as in KAR.
      for (int32_t it : l.items) marks.exclude_for_list(it);
      std::vector<int32_t> padding;
      draw_uniform(rng, catalog, marks, c.list_size - (l.end - l.begin), padding);
      marks.clear_list(l.items);
      pad_and_shuffle(rng, l, padding);
      lists.push_back(std::move(l));
    }
    marks.clear_user(prefix);
  }
  return lists;
}

std::vector<RerankList> popularity_lists(const PrepareConfig& c, const Dataset& d,
                                         const std::vector<UserSequence>& sequences,
                                         const std::vector<int32_t>& catalog,
                                         const std::vector<float>& item_popularity) {
  const PopularitySampler sampler(catalog, item_popularity);
  ExclusionMarks marks(d.items.size(), catalog);
  std::vector<RerankList> lists;
  for (const UserSequence& s : sequences) {
    if (!has_windows(s)) continue;
    Rng rng = list_rng(c, s);
    const int32_t len = static_cast<int32_t>(s.items.size());
    // Every item of the user, the list's real items among them: one tally serves all the user's lists.
    marks.exclude_for_user(s.items);
    const PopularitySampler::Left left = sampler.left(marks);
    for (int32_t begin = s.prefix_len; begin < len; begin += c.real_per_list) {
      RerankList l = window_list(s, begin, std::min(begin + c.real_per_list, len), d.positive_above);
      std::vector<int32_t> padding;
      sampler.draw(rng, marks, left, c.list_size - (l.end - l.begin), padding);
      pad_and_shuffle(rng, l, padding);
      lists.push_back(std::move(l));
    }
    marks.clear_user(s.items);
  }
  return lists;
}

}  // namespace rlrf
