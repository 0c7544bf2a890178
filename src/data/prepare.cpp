// Preprocessing (SPEC.md, KAR conventions): sequences, the user split, popularity counts and the
// dispatch to the three recommendation settings; see prepare.h. The settings' lists are built in
// sampled_lists.cpp (kar, popularity) and first_stage_lists.cpp (first-stage).
#include "data/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "data/first_stage_lists.h"
#include "data/prepare_streams.h"
#include "data/rng.h"
#include "data/sampled_lists.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf {

namespace {

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

}  // namespace

std::span<const int32_t> known_items(const UserSequence& s) {
  const size_t n = s.split == Split::kTrain ? s.items.size() : static_cast<size_t>(s.prefix_len);
  return std::span<const int32_t>(s.items.data(), n);
}

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
  RLRF_CHECK(labels == "ratings" || labels == "card" || labels == "card-all" || labels == "card-every-user",
             "prepare: labels '{}' is not ratings, card, card-all or card-every-user", labels);
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
  for (const UserSequence& s : out.sequences)
    for (int32_t it : known_items(s)) out.item_popularity[static_cast<size_t>(it)] += 1.0f;

  const std::vector<int32_t> catalog = catalog_items(dataset);
  if (config.setting == "first-stage")
    out.lists = first_stage_lists(config, dataset, out.sequences, catalog);
  else if (config.setting == "popularity")
    out.lists = popularity_lists(config, dataset, out.sequences, catalog, out.item_popularity);
  else
    out.lists = kar_lists(config, dataset, out.sequences, catalog);

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
