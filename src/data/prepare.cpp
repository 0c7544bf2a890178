// Preprocessing (SPEC.md, KAR conventions) and the three recommendation settings; see prepare.h.
//
// Settings:
// - kar: from the end of the prefix on, windows of real_per_list real items, padded to list_size
//   with catalog items drawn uniformly without replacement, excluding the user's prompt-prefix
//   items and the items already in the list; then items, labels and positions are shuffled
//   together.
// - popularity: as kar, but the padding is drawn with probability proportional to
//   item_popularity, excluding every item of the user (prefix, earlier and later windows) and the
//   items already in the list; items of popularity 0 are drawn (uniformly) only when the items of
//   positive popularity run out.
// - first-stage: windows of first_stage_window interactions from the end of the prefix on. For a
//   window starting at position t the generator ranks the catalog items the user has not
//   interacted with before t (history H = the user's items[0, t)); the list is its top list_size
//   in its order with its scores; labels are 1 for items the user rated above the threshold
//   inside the window. No held-out label reaches the generator:
//     known set K_u = all of a training user's items, the prompt prefix of a validation/test user.
//     itemknn: co-occurrence of the known sets, each user scored leave-self-out (its own K_u
//       replaced by its current history H: first_stage.h), so no user's window is ever in the
//       model that scores it, and evaluation users contribute only their prefixes.
//     mf: implicit ALS on the known sets. Training users are split into first_stage_folds folds;
//       fold f is scored by a model fitted with fold f's users reduced to their prefixes
//       (cross-fitting); validation/test users by the model fitted on all known sets. Users are
//       folded in from H with the item factors fixed.
//   Window length (measured with `rlrf prepare` on ML-100K, seed 42, itemknn; validation split):
//     window      5      10     20     30     50
//     pos. rate   0.039  0.072  0.128  0.166  0.215
//     no positive 0.685  0.528  0.372  0.326  0.232
//     train lists 12917  6669   3506   2463   1692
//   We want at most about a third of the lists without a positive and a positive rate within a
//   factor 1.5 of the kar setting's (0.21-0.23), while a training user still yields about three
//   lists on ML-100K: 30 is the shortest window that does both (50 halves the lists again).
//   mf defaults (32 factors, lambda 10, alpha 2) were picked on the ML-100K validation split at
//   window 20 among lambda 1..50, alpha 1..40, 16..64 factors; all gave 0.086-0.115 there
//   (itemknn 0.128), and alpha 2 / lambda 10 was at the top.
#include "data/prepare.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "data/first_stage.h"
#include "data/rng.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/progress.h"

namespace rlrf {

namespace {

// Stream ids of derive_seed: one per purpose, so changing one stage leaves the others' draws alone.
constexpr uint64_t kSplitStream = 1;
constexpr uint64_t kValidStream = 2;
constexpr uint64_t kListStream = 3;
constexpr uint64_t kFoldStream = 4;
constexpr uint64_t kMfStream = 5;

int64_t floor_share(int64_t n, double fraction) {
  return static_cast<int64_t>(std::floor(static_cast<double>(n) * fraction + 1e-9));
}

void check_dataset(const Dataset& d) {
  const int64_t nu = static_cast<int64_t>(d.users.size()), ni = static_cast<int64_t>(d.items.size());
  for (size_t r = 0; r < d.ratings.size(); ++r) {
    const Rating& x = d.ratings[r];
    RLRF_CHECK(x.user >= 0 && x.user < nu, "prepare: dataset '{}' rating {} has user {} outside 0..{}", d.name, r,
               x.user, nu - 1);
    RLRF_CHECK(x.item >= 0 && x.item < ni, "prepare: dataset '{}' rating {} has item {} outside 0..{}", d.name, r,
               x.item, ni - 1);
  }
  RLRF_CHECK(d.item_attributes.size() == d.attribute_names.size() &&
                 d.attribute_cardinality.size() == d.attribute_names.size(),
             "prepare: dataset '{}' has {} attribute names but {} value lists and {} cardinalities", d.name,
             d.attribute_names.size(), d.item_attributes.size(), d.attribute_cardinality.size());
  for (size_t a = 0; a < d.item_attributes.size(); ++a)
    RLRF_CHECK(static_cast<int64_t>(d.item_attributes[a].size()) == ni,
               "prepare: dataset '{}' attribute '{}' has {} values for {} items", d.name, d.attribute_names[a],
               d.item_attributes[a].size(), ni);
}

std::vector<UserSequence> build_sequences(const Dataset& d) {
  std::vector<std::vector<size_t>> by_user(d.users.size());
  for (size_t r = 0; r < d.ratings.size(); ++r) by_user[static_cast<size_t>(d.ratings[r].user)].push_back(r);
  std::vector<UserSequence> seqs(d.users.size());
  std::vector<int32_t> last_user(d.items.size(), -1);
  for (size_t u = 0; u < d.users.size(); ++u) {
    auto& idx = by_user[u];
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return d.ratings[a].time < d.ratings[b].time; });
    UserSequence& s = seqs[u];
    s.user = static_cast<int32_t>(u);
    for (size_t r : idx) {
      const Rating& x = d.ratings[r];
      RLRF_CHECK(last_user[static_cast<size_t>(x.item)] != static_cast<int32_t>(u),
                 "prepare: user {} ('{}') rated item {} ('{}') twice; each user may rate an item once", u,
                 d.users[u].raw_id, x.item, d.items[static_cast<size_t>(x.item)].raw_id);
      last_user[static_cast<size_t>(x.item)] = static_cast<int32_t>(u);
      s.items.push_back(x.item);
      s.ratings.push_back(x.rating);
      s.times.push_back(x.time);
    }
    int32_t len = static_cast<int32_t>(s.items.size());
    s.prefix_len = std::min((len + 1) / 2, d.prompt_history_cap);
  }
  return seqs;
}

void assign_splits(std::vector<UserSequence>& seqs, const PrepareConfig& c) {
  std::vector<int32_t> active;
  for (const UserSequence& s : seqs) {
    if (!s.items.empty()) active.push_back(s.user);
  }
  Rng split_rng(derive_seed(c.seed, kSplitStream));
  split_rng.shuffle(active);
  std::vector<int32_t> pool;
  if (c.folds > 1) {
    // Fold k: positions [k n / K, (k+1) n / K) of the shuffled users; the folds cover every user once.
    const int64_t n = static_cast<int64_t>(active.size());
    const int64_t begin = n * c.fold / c.folds, end = n * (c.fold + 1) / c.folds;
    for (int64_t k = 0; k < n; ++k) {
      if (k >= begin && k < end) seqs[static_cast<size_t>(active[static_cast<size_t>(k)])].split = Split::kTest;
      else pool.push_back(active[static_cast<size_t>(k)]);
    }
  } else {
    int64_t n_pool = floor_share(static_cast<int64_t>(active.size()), 1.0 - c.test_fraction);
    pool.assign(active.begin(), active.begin() + n_pool);
    for (size_t k = static_cast<size_t>(n_pool); k < active.size(); ++k) seqs[static_cast<size_t>(active[k])].split = Split::kTest;
  }
  const int64_t n_pool = static_cast<int64_t>(pool.size());
  // Validation: from the training pool only, with its own stream.
  std::sort(pool.begin(), pool.end());
  Rng valid_rng(derive_seed(c.seed, kValidStream));
  valid_rng.shuffle(pool);
  int64_t n_valid = floor_share(n_pool, c.valid_fraction);
  for (int64_t k = 0; k < n_pool; ++k) seqs[static_cast<size_t>(pool[static_cast<size_t>(k)])].split = k < n_valid ? Split::kValid : Split::kTrain;
}

// Draws `count` distinct catalog items uniformly, none of them in `excluded` (a per-item mark).
void draw_uniform(Rng& rng, const std::vector<int32_t>& catalog, const std::vector<uint8_t>& excluded,
                  int64_t n_excluded_in_catalog, int count, std::vector<int32_t>& out, const char* who) {
  const int64_t available = static_cast<int64_t>(catalog.size()) - n_excluded_in_catalog;
  RLRF_CHECK(available >= count,
             "prepare: {}: only {} catalog items are left to pad a list with {} items (the dataset has too few items "
             "for list_size)",
             who, available, count);
  if (available * 8 >= static_cast<int64_t>(catalog.size())) {  // rejection: >= 1/8 accepted
    std::vector<int32_t> picked;
    while (static_cast<int>(picked.size()) < count) {
      int32_t it = catalog[static_cast<size_t>(rng.uniform(catalog.size()))];
      if (excluded[static_cast<size_t>(it)] || std::find(picked.begin(), picked.end(), it) != picked.end()) continue;
      picked.push_back(it);
    }
    out.insert(out.end(), picked.begin(), picked.end());
    return;
  }
  std::vector<int32_t> rest;
  for (int32_t it : catalog)
    if (!excluded[static_cast<size_t>(it)]) rest.push_back(it);
  for (int k = 0; k < count; ++k) {  // partial Fisher-Yates
    size_t j = static_cast<size_t>(k) + static_cast<size_t>(rng.uniform(rest.size() - static_cast<size_t>(k)));
    std::swap(rest[static_cast<size_t>(k)], rest[j]);
    out.push_back(rest[static_cast<size_t>(k)]);
  }
}

// Popularity-proportional draws without replacement over the catalog (cdf: cumulative weights).
struct PopularitySampler {
  std::vector<int32_t> catalog;
  std::vector<double> weight;  // per catalog position
  std::vector<double> cdf;     // inclusive prefix sums
  double total = 0;

  // What a user's exclusions leave: mass and counts of available items (all and of positive weight).
  struct Left {
    double mass = 0;
    int64_t available = 0, available_positive = 0;
  };
  Left left(const std::vector<uint8_t>& excluded) const {
    Left l;
    for (size_t k = 0; k < catalog.size(); ++k) {
      if (excluded[static_cast<size_t>(catalog[k])]) continue;
      l.mass += weight[k];
      ++l.available;
      if (weight[k] > 0) ++l.available_positive;
    }
    return l;
  }

  // `left` must describe `excluded`.
  void draw(Rng& rng, const std::vector<uint8_t>& excluded, const Left& lf, int count, std::vector<int32_t>& out) const {
    RLRF_CHECK(lf.available >= count,
               "prepare: popularity: only {} catalog items are left to pad a list with {} items (too few items)",
               lf.available, count);
    std::vector<int32_t> picked;
    auto taken = [&](int32_t it) { return std::find(picked.begin(), picked.end(), it) != picked.end(); };
    if (lf.available_positive >= count + 8 && lf.mass >= 0.125 * total) {
      while (static_cast<int>(picked.size()) < count) {  // rejection on the cdf
        double x = rng.uniform01() * total;
        size_t k = static_cast<size_t>(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin());
        if (k >= catalog.size()) continue;
        int32_t it = catalog[k];
        if (excluded[static_cast<size_t>(it)] || taken(it)) continue;
        picked.push_back(it);
      }
    } else {  // explicit draws over what is left
      std::vector<std::pair<int32_t, double>> rest;
      for (size_t k = 0; k < catalog.size(); ++k)
        if (!excluded[static_cast<size_t>(catalog[k])]) rest.emplace_back(catalog[k], weight[k]);
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
};

void shuffle_list(Rng& rng, RerankList& l) {
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

// kar and popularity lists.
void build_sampled_lists(PreparedData& out, const std::vector<int32_t>& catalog) {
  const PrepareConfig& c = out.config;
  const Dataset& d = out.dataset;
  const bool popularity = c.setting == "popularity";
  PopularitySampler pop;
  if (popularity) {
    pop.catalog = catalog;
    for (int32_t it : catalog) {
      double w = out.item_popularity[static_cast<size_t>(it)];
      pop.weight.push_back(w);
      pop.total += w;
      pop.cdf.push_back(pop.total);
    }
  }
  std::vector<uint8_t> in_catalog(d.items.size(), 0), excluded(d.items.size(), 0);
  for (int32_t it : catalog) in_catalog[static_cast<size_t>(it)] = 1;
  for (const UserSequence& s : out.sequences) {
    const int32_t len = static_cast<int32_t>(s.items.size());
    if (s.prefix_len >= len) continue;
    Rng rng(derive_seed(c.seed, kListStream, static_cast<uint64_t>(s.user)));
    // Items every list of this user excludes: the prefix (kar) or all of the user's items.
    const int32_t base_end = popularity ? len : s.prefix_len;
    int64_t base_excluded = 0;
    for (int32_t p = 0; p < base_end; ++p) {
      excluded[static_cast<size_t>(s.items[static_cast<size_t>(p)])] = 1;
      base_excluded += in_catalog[static_cast<size_t>(s.items[static_cast<size_t>(p)])];
    }
    // popularity: the list's real items are the user's, already excluded, so one tally serves all lists.
    PopularitySampler::Left left;
    if (popularity) left = pop.left(excluded);
    for (int32_t begin = s.prefix_len; begin < len; begin += c.real_per_list) {
      RerankList l;
      l.user = s.user;
      l.split = s.split;
      l.begin = begin;
      l.end = std::min(begin + c.real_per_list, len);
      int64_t extra = 0;  // list items newly excluded
      for (int32_t p = l.begin; p < l.end; ++p) {
        int32_t it = s.items[static_cast<size_t>(p)];
        l.items.push_back(it);
        l.labels.push_back(s.ratings[static_cast<size_t>(p)] > d.positive_above ? 1 : 0);
        l.seq_pos.push_back(p);
        if (!excluded[static_cast<size_t>(it)]) {
          excluded[static_cast<size_t>(it)] = 2;
          extra += in_catalog[static_cast<size_t>(it)];
        }
      }
      const int pad = c.list_size - (l.end - l.begin);
      std::vector<int32_t> padding;
      if (popularity)
        pop.draw(rng, excluded, left, pad, padding);
      else
        draw_uniform(rng, catalog, excluded, base_excluded + extra, pad, padding, "kar");
      for (int32_t it : padding) {
        l.items.push_back(it);
        l.labels.push_back(0);
        l.seq_pos.push_back(-1);
      }
      for (int32_t p = l.begin; p < l.end; ++p)
        if (excluded[static_cast<size_t>(s.items[static_cast<size_t>(p)])] == 2)
          excluded[static_cast<size_t>(s.items[static_cast<size_t>(p)])] = 0;
      shuffle_list(rng, l);
      out.lists.push_back(std::move(l));
    }
    for (int32_t p = 0; p < base_end; ++p) excluded[static_cast<size_t>(s.items[static_cast<size_t>(p)])] = 0;
  }
}

// Known sets: a training user's items, a validation/test user's prefix.
std::vector<std::vector<int32_t>> known_sets(const std::vector<UserSequence>& seqs) {
  std::vector<std::vector<int32_t>> known(seqs.size());
  for (const UserSequence& s : seqs) {
    size_t n = s.split == Split::kTrain ? s.items.size() : static_cast<size_t>(s.prefix_len);
    known[static_cast<size_t>(s.user)].assign(s.items.begin(), s.items.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return known;
}

// One user's first-stage lists, given a scorer with add_history(item), in_history is tracked here.
template <typename AddFn, typename ScoreFn>
void first_stage_user(PreparedData& out, const UserSequence& s, const std::vector<int32_t>& catalog, AddFn&& add,
                      ScoreFn&& score_all, std::vector<uint8_t>& in_history) {
  const PrepareConfig& c = out.config;
  const Dataset& d = out.dataset;
  const int32_t len = static_cast<int32_t>(s.items.size());
  int32_t h = 0;
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<float> scores;
  for (int32_t begin = s.prefix_len; begin < len; begin += c.first_stage_window) {
    for (; h < begin; ++h) {
      in_history[static_cast<size_t>(s.items[static_cast<size_t>(h)])] = 1;
      add(s.items[static_cast<size_t>(h)]);
    }
    score_all(scores);  // scores[item] for every item (valid where not in the history)
    cand.clear();
    for (int32_t it : catalog)
      if (!in_history[static_cast<size_t>(it)]) cand.emplace_back(scores[static_cast<size_t>(it)], it);
    RLRF_CHECK(static_cast<int>(cand.size()) >= c.list_size,
               "prepare: first-stage: user {} has only {} unseen catalog items for a list of {}", s.user, cand.size(),
               c.list_size);
    auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    std::partial_sort(cand.begin(), cand.begin() + c.list_size, cand.end(), better);
    RerankList l;
    l.user = s.user;
    l.split = s.split;
    l.begin = begin;
    l.end = std::min(begin + c.first_stage_window, len);
    std::unordered_map<int32_t, int32_t> window_pos;
    for (int32_t p = l.begin; p < l.end; ++p) window_pos[s.items[static_cast<size_t>(p)]] = p;
    for (int k = 0; k < c.list_size; ++k) {
      int32_t it = cand[static_cast<size_t>(k)].second;
      auto w = window_pos.find(it);
      int32_t p = w == window_pos.end() ? -1 : w->second;
      l.items.push_back(it);
      l.initial_scores.push_back(cand[static_cast<size_t>(k)].first);
      l.seq_pos.push_back(p);
      l.labels.push_back(p >= 0 && s.ratings[static_cast<size_t>(p)] > d.positive_above ? 1 : 0);
    }
    out.lists.push_back(std::move(l));
  }
  for (int32_t p = 0; p < h; ++p) in_history[static_cast<size_t>(s.items[static_cast<size_t>(p)])] = 0;
}

void build_first_stage_lists(PreparedData& out, const std::vector<int32_t>& catalog) {
  const PrepareConfig& c = out.config;
  const int32_t n_items = static_cast<int32_t>(out.dataset.items.size());
  std::vector<std::vector<int32_t>> known = known_sets(out.sequences);
  std::vector<uint8_t> in_history(static_cast<size_t>(n_items), 0);
  int64_t n_users = 0;
  for (const UserSequence& s : out.sequences) n_users += s.prefix_len < static_cast<int32_t>(s.items.size());

  if (c.first_stage == "itemknn") {
    CoOccurrence co = build_cooccurrence(known, n_items);
    Progress progress("first-stage itemknn", n_users, "users");
    for (const UserSequence& s : out.sequences) {
      if (s.prefix_len >= static_cast<int32_t>(s.items.size())) continue;
      ItemKnnScorer scorer(co, known[static_cast<size_t>(s.user)]);
      first_stage_user(
          out, s, catalog, [&](int32_t it) { scorer.add_history(it); },
          [&](std::vector<float>& sc) {
            sc.resize(static_cast<size_t>(n_items));
            for (int32_t it : catalog)
              if (!scorer.in_history(it)) sc[static_cast<size_t>(it)] = scorer.score(it);
          },
          in_history);
      progress.advance();
    }
    progress.finish();
    return;
  }

  // mf: cross-fitted implicit ALS.
  AlsOptions o;
  o.factors = c.mf_factors;
  o.iterations = c.mf_iterations;
  o.regularization = c.mf_regularization;
  o.alpha = c.mf_alpha;
  std::vector<int32_t> train_users;
  for (const UserSequence& s : out.sequences)
    if (s.split == Split::kTrain && !s.items.empty()) train_users.push_back(s.user);
  Rng fold_rng(derive_seed(c.seed, kFoldStream));
  fold_rng.shuffle(train_users);
  const int folds = c.first_stage_folds;
  std::vector<int> fold_of(out.sequences.size(), -1);  // -1: scored by the full model
  if (folds > 1)
    for (size_t k = 0; k < train_users.size(); ++k) fold_of[static_cast<size_t>(train_users[k])] = static_cast<int>(k % folds);
  Progress progress("first-stage mf", n_users, "users");
  std::vector<int> models;  // fold ids, then -1: the model of all known sets
  for (int f = 0; folds > 1 && f < folds; ++f) models.push_back(f);
  models.push_back(-1);
  for (int f : models) {
    std::vector<std::vector<int32_t>> k_f = known;
    if (f >= 0)
      for (const UserSequence& s : out.sequences)
        if (fold_of[static_cast<size_t>(s.user)] == f)
          k_f[static_cast<size_t>(s.user)].assign(s.items.begin(), s.items.begin() + s.prefix_len);
    AlsModel model = train_als(k_f, n_items, o, derive_seed(c.seed, kMfStream, static_cast<uint64_t>(f + 1)));
    for (const UserSequence& s : out.sequences) {
      if (fold_of[static_cast<size_t>(s.user)] != f || s.prefix_len >= static_cast<int32_t>(s.items.size())) continue;
      AlsFoldIn fold_in(model, o);
      first_stage_user(
          out, s, catalog, [&](int32_t it) { fold_in.add_history(it); },
          [&](std::vector<float>& sc) {
            fold_in.solve();
            sc.resize(static_cast<size_t>(n_items));
            for (int32_t it : catalog) sc[static_cast<size_t>(it)] = fold_in.score(it);
          },
          in_history);
      progress.advance();
    }
  }
  progress.finish();
  // Lists came out grouped by fold: restore user order (stable: windows stay in order).
  std::stable_sort(out.lists.begin(), out.lists.end(),
                   [](const RerankList& a, const RerankList& b) { return a.user < b.user; });
}

}  // namespace

const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain: return "train";
    case Split::kValid: return "valid";
    case Split::kTest: return "test";
  }
  return "?";
}

void PrepareConfig::read(const ConfigSection& s) {
  s.read("dataset", dataset);
  s.read("data_dir", data_dir);
  int64_t seed_value = static_cast<int64_t>(seed);
  s.read("seed", seed_value);
  RLRF_CHECK(seed_value >= 0, "{}: key 'seed' must be >= 0, got {}", s.where(), seed_value);
  seed = static_cast<uint64_t>(seed_value);
  s.read("test_fraction", test_fraction);
  s.read("folds", folds);
  s.read("fold", fold);
  s.read("valid_fraction", valid_fraction);
  s.read("list_size", list_size);
  s.read("real_per_list", real_per_list);
  s.read("setting", setting);
  s.read("first_stage", first_stage);
  s.read("drop_lists_without_positive", drop_lists_without_positive);
  s.read("first_stage_window", first_stage_window);
  s.read("first_stage_folds", first_stage_folds);
  s.read("mf_factors", mf_factors);
  s.read("mf_iterations", mf_iterations);
  s.read("mf_regularization", mf_regularization);
  s.read("mf_alpha", mf_alpha);
  s.read("labels", labels);
  s.read("amazon_min_user", amazon_min_user);
  s.read("amazon_min_item", amazon_min_item);
  s.check_no_unknown_keys();
  try {
    validate();
  } catch (const Error& e) {
    fail("{}: {}", s.where(), e.what());
  }
}

void PrepareConfig::validate() const {
  RLRF_CHECK(dataset == "ml-100k" || dataset == "ml-1m" || dataset == "amazon-books",
             "prepare: dataset '{}' is not one of ml-100k, ml-1m, amazon-books", dataset);
  RLRF_CHECK(setting == "kar" || setting == "popularity" || setting == "first-stage",
             "prepare: setting '{}' is not one of kar, popularity, first-stage", setting);
  RLRF_CHECK(labels == "ratings" || labels == "card", "prepare: labels '{}' is not ratings or card", labels);
  RLRF_CHECK(first_stage == "itemknn" || first_stage == "mf", "prepare: first_stage '{}' is not itemknn or mf",
             first_stage);
  RLRF_CHECK(test_fraction >= 0 && test_fraction < 1, "prepare: test_fraction {} must be in [0, 1)", test_fraction);
  RLRF_CHECK(valid_fraction >= 0 && valid_fraction < 1, "prepare: valid_fraction {} must be in [0, 1)", valid_fraction);
  RLRF_CHECK(folds == 0 || folds >= 2, "prepare: folds {} must be 0 (a test_fraction split) or >= 2", folds);
  RLRF_CHECK(folds == 0 ? fold == 0 : fold >= 0 && fold < folds, "prepare: fold {} must be in 0..folds-1 ({} folds)", fold, folds);
  RLRF_CHECK(list_size >= 1, "prepare: list_size {} must be >= 1", list_size);
  RLRF_CHECK(real_per_list >= 1 && real_per_list <= list_size, "prepare: real_per_list {} must be in 1..list_size ({})",
             real_per_list, list_size);
  RLRF_CHECK(first_stage_window >= 1, "prepare: first_stage_window {} must be >= 1", first_stage_window);
  RLRF_CHECK(first_stage_folds >= 1, "prepare: first_stage_folds {} must be >= 1", first_stage_folds);
  RLRF_CHECK(mf_factors >= 1 && mf_factors <= 1024, "prepare: mf_factors {} must be in 1..1024", mf_factors);
  RLRF_CHECK(mf_iterations >= 0, "prepare: mf_iterations {} must be >= 0", mf_iterations);
  RLRF_CHECK(mf_regularization > 0, "prepare: mf_regularization {} must be > 0", mf_regularization);
  RLRF_CHECK(mf_alpha >= 0, "prepare: mf_alpha {} must be >= 0", mf_alpha);
  RLRF_CHECK(amazon_min_user >= 0 && amazon_min_item >= 0, "prepare: amazon_min_user/amazon_min_item must be >= 0");
}

std::vector<int32_t> catalog_items(const Dataset& d) {
  std::vector<uint8_t> rated(d.items.size(), 0);
  for (const Rating& r : d.ratings) rated[static_cast<size_t>(r.item)] = 1;
  std::vector<int32_t> out;
  for (size_t i = 0; i < rated.size(); ++i)
    if (rated[i]) out.push_back(static_cast<int32_t>(i));
  return out;
}

Dataset load_configured_dataset(const PrepareConfig& c) {
  std::filesystem::path dir = data_dir(c.data_dir);
  if (c.dataset == "amazon-books") {
    std::filesystem::path base = dir / c.dataset;
    auto pick = [&](const char* name) {
      std::filesystem::path plain = base / name, gz = base / (std::string(name) + ".gz");
      std::error_code ec;
      if (std::filesystem::exists(plain, ec)) return plain;
      if (std::filesystem::exists(gz, ec)) return gz;
      fail("amazon-books: neither '{}' nor '{}' exists (put the 2018 Amazon Books_5 reviews and meta_Books "
           "metadata there, or set data_dir)",
           plain.string(), gz.string());
    };
    return load_amazon_books(pick("Books_5.json"), pick("meta_Books.json"), c.amazon_min_user, c.amazon_min_item);
  }
  return load_dataset(c.dataset, dir);
}

PreparedData prepare(const Dataset& dataset, const PrepareConfig& config) {
  config.validate();
  check_dataset(dataset);
  PreparedData out;
  out.config = config;
  out.dataset = dataset;
  out.sequences = build_sequences(dataset);
  assign_splits(out.sequences, config);

  out.item_popularity.assign(dataset.items.size(), 0.0f);
  for (const UserSequence& s : out.sequences) {
    size_t n = s.split == Split::kTrain ? s.items.size() : static_cast<size_t>(s.prefix_len);
    for (size_t p = 0; p < n; ++p) out.item_popularity[static_cast<size_t>(s.items[p])] += 1.0f;
  }

  std::vector<int32_t> catalog = catalog_items(dataset);
  if (config.setting == "first-stage")
    build_first_stage_lists(out, catalog);
  else
    build_sampled_lists(out, catalog);

  if (config.drop_lists_without_positive) {
    std::vector<RerankList> kept;
    kept.reserve(out.lists.size());
    for (RerankList& l : out.lists) {
      bool any = std::find(l.labels.begin(), l.labels.end(), 1) != l.labels.end();
      if (l.split == Split::kTrain && !any)
        ++out.dropped_train_lists;
      else
        kept.push_back(std::move(l));
    }
    out.lists = std::move(kept);
  }
  return out;
}

PrepareCounts count(const PreparedData& data) {
  PrepareCounts c;
  c.users = static_cast<int64_t>(data.dataset.users.size());
  c.items = static_cast<int64_t>(data.dataset.items.size());
  c.interactions = static_cast<int64_t>(data.dataset.ratings.size());
  for (const UserSequence& s : data.sequences) {
    if (s.items.empty())
      ++c.users_without_interactions;
    else
      ++c.users_per_split[static_cast<int>(s.split)];
  }
  int64_t labels[3] = {0, 0, 0}, positives[3] = {0, 0, 0}, empty[3] = {0, 0, 0};
  for (const RerankList& l : data.lists) {
    int k = static_cast<int>(l.split);
    ++c.lists_per_split[k];
    int64_t pos = 0;
    for (uint8_t y : l.labels) pos += y;
    labels[k] += static_cast<int64_t>(l.labels.size());
    positives[k] += pos;
    empty[k] += pos == 0;
  }
  for (int k = 0; k < 3; ++k) {
    c.positive_rate[k] = labels[k] ? double(positives[k]) / double(labels[k]) : 0.0;
    c.lists_without_positive[k] = c.lists_per_split[k] ? double(empty[k]) / double(c.lists_per_split[k]) : 0.0;
  }
  c.dropped_train_lists = data.dropped_train_lists;
  return c;
}

std::string format_counts(const PreparedData& data, const PrepareCounts& c) {
  const PrepareConfig& cfg = data.config;
  std::string setting = cfg.setting;
  if (setting == "first-stage")
    setting += fmt::format(" ({}, window {})", cfg.first_stage, cfg.first_stage_window);
  std::string s = fmt::format("dataset {}  setting {}  seed {}\n", data.dataset.name, setting, cfg.seed);
  s += fmt::format("users {}  items {}  interactions {}", c.users, c.items, c.interactions);
  if (c.users_without_interactions) s += fmt::format("  (users without interactions: {})", c.users_without_interactions);
  s += "\n";
  s += fmt::format("{:<6} {:>7} {:>8} {:>14} {:>23}\n", "split", "users", "lists", "positive rate",
                   "lists without positive");
  for (int k = 0; k < 3; ++k)
    s += fmt::format("{:<6} {:>7} {:>8} {:>14.4f} {:>23.4f}\n", split_name(static_cast<Split>(k)), c.users_per_split[k],
                     c.lists_per_split[k], c.positive_rate[k], c.lists_without_positive[k]);
  if (cfg.drop_lists_without_positive) {
    int64_t before = c.lists_per_split[0] + c.dropped_train_lists;
    s += fmt::format("dropped {} training lists without positive ({:.4f} of {})\n", c.dropped_train_lists,
                     before ? double(c.dropped_train_lists) / double(before) : 0.0, before);
  }
  return s;
}

}  // namespace rlrf
