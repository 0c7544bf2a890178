// Preprocessing of SPEC.md (KAR conventions): per-user time order, prompt-history prefix, labels,
// a seeded user split (train / validation carved from train / test) and rerank lists.
//
// Conventions (prepare.cpp gives the details):
// - Each user's ratings are sorted by time, stably (ties keep file order). prefix_len =
//   min((len+1)/2, cap). Users without ratings get split kTrain, no lists, and are not counted
//   in users_per_split.
// - Split: users with ratings are shuffled with the seed; the first floor(n*(1-test_fraction))
//   are the training pool, the rest test. Validation users are drawn from the pool alone, with a
//   stream of their own, so the test users do not depend on valid_fraction.
// - "Catalog": the items with at least one rating (KAR samples from the items of its sequences).
//   Padding and first-stage candidates come from the catalog only.
// - kar: KAR pads with random.sample over all items, excluding nothing. We exclude the user's
//   prompt-prefix items (SPEC: no prefix item in any list) and items already in the list (KAR can
//   duplicate a real item, with labels 1 and 0 for the same item); other items of the user,
//   earlier or later, may be sampled, with label 0, as in KAR.
// - Every random draw comes from Rng streams derived from (seed, purpose, user): the same config
//   gives byte-identical output, and one user's lists do not depend on the others'.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace rlrf {

class ConfigSection;

enum class Split : uint8_t { kTrain = 0, kValid = 1, kTest = 2 };
const char* split_name(Split s);

struct PrepareConfig {
  std::string dataset = "ml-100k";  // ml-100k | ml-1m | amazon-books
  std::string data_dir;             // empty: the default data directory (util/files.h)
  uint64_t seed = 42;
  double test_fraction = 0.1;   // users held out for test
  // folds > 1: test_fraction is ignored and the test users are fold `fold` (0-based) of `folds`
  // equal folds of the shuffled users ([eval] folds sets these for each of its runs).
  int folds = 0;
  int fold = 0;
  double valid_fraction = 0.1;  // of the remaining (train) users, carved out for validation
  int list_size = 10;           // items per rerank list
  int real_per_list = 4;        // next real items of the user per list
  // How lists are built (the recommendation setting):
  //   "kar"         4 real next items + uniformly sampled items, shuffled (the paper's)
  //   "popularity"  padding sampled in proportion to popularity, excluding the user's items
  //   "first-stage" a candidate generator's top list_size for the user's next window
  std::string setting = "kar";
  std::string first_stage = "itemknn";  // for setting "first-stage": itemknn | mf
  bool drop_lists_without_positive = false;  // training lists only; evaluation keeps them
  // first-stage: the window is the user's next `first_stage_window` interactions; lists start at
  // the end of the prefix and step by the window. 30: see the measurement in prepare.cpp.
  int first_stage_window = 30;
  int first_stage_folds = 5;   // mf: train users are scored by a model fitted without their fold
  int mf_factors = 32;         // implicit ALS (Hu, Koren, Volinsky 2008)
  int mf_iterations = 10;
  double mf_regularization = 10.0;
  double mf_alpha = 2.0;       // confidence of an observed interaction: 1 + alpha
  // Labels of the rerank lists: "ratings" (rating above the positive threshold: the data's own) or
  // "card" (planted: an item is positive when one of its genres is a liked genre of the user's
  // knowledge card and none is the disliked one; knowledge/card.h plant_card_labels) or "card-all"
  // (planted from every statement but the favourite: genres, era and rater; PlantedRule) or
  // "card-every-user" (card-all, and users whose card has no liked genre planted from its era). All need
  // the prompts (a card is computed from the items the prompt shows), so `rlrf run` applies them after
  // fitting the prompts; prepare() itself writes rating labels. A controlled setting in which the
  // cards' statements are what ranks the lists: README, "Planted labels".
  std::string labels = "ratings";
  int amazon_min_user = 60;    // KAR's core filter for amazon-books
  int amazon_min_item = 40;
  // Reads [prepare]; unknown keys and invalid values are errors naming the key.
  void read(const ConfigSection& s);
  // Throws Error when a value is out of range (list_size < 1, unknown setting, ...).
  void validate() const;
};

// One user's time-ordered interactions. The first `prefix_len` feed only the prompt.
struct UserSequence {
  int32_t user = 0;
  std::vector<int32_t> items;
  std::vector<float> ratings;
  std::vector<int64_t> times;
  int32_t prefix_len = 0;
  Split split = Split::kTrain;
};

// The items of a user that list building and baselines may know: every item of a training user,
// only the prompt prefix of a validation or test user (their later items are held-out labels).
// Feeds the popularity counts (PreparedData::item_popularity) and the first-stage generators.
std::span<const int32_t> known_items(const UserSequence& s);

// A list to rerank: items in their initial order (random for kar/popularity, the candidate
// generator's order for first-stage), with 0/1 labels.
struct RerankList {
  int32_t user = 0;
  Split split = Split::kTrain;
  std::vector<int32_t> items;
  std::vector<uint8_t> labels;
  std::vector<float> initial_scores;  // first-stage: the generator's scores; empty otherwise
  // The window of the user's sequence this list covers: positions [begin, end) of
  // UserSequence::items (kar/popularity: the real items; first-stage: the labelling window).
  int32_t begin = 0, end = 0;
  // Per list position: the item's position in the user's sequence when it comes from the window,
  // -1 for padding (kar/popularity) or a generator item the user did not interact with.
  std::vector<int32_t> seq_pos;
};

struct PreparedData {
  PrepareConfig config;
  Dataset dataset;
  std::vector<UserSequence> sequences;  // indexed by user; users with no lists still appear
  std::vector<RerankList> lists;
  // Interactions per item that an honest popularity baseline may use: every interaction of the
  // training users plus the prompt prefixes of all users (never validation/test list windows).
  std::vector<float> item_popularity;
  int64_t dropped_train_lists = 0;      // drop_lists_without_positive: training lists removed
};

struct PrepareCounts {
  int64_t users = 0, items = 0, interactions = 0;
  int64_t users_per_split[3] = {0, 0, 0};
  int64_t lists_per_split[3] = {0, 0, 0};
  double positive_rate[3] = {0, 0, 0};            // share of positive labels in lists per split
  double lists_without_positive[3] = {0, 0, 0};   // share of lists with no positive per split
  int64_t users_without_interactions = 0;         // in no split, no lists
  int64_t dropped_train_lists = 0;                // removed by drop_lists_without_positive
};

PreparedData prepare(const Dataset& dataset, const PrepareConfig& config);
PrepareCounts count(const PreparedData& data);
// The counts as the `rlrf prepare` report prints them (several lines).
std::string format_counts(const PreparedData& data, const PrepareCounts& counts);

// Loads config.dataset from config.data_dir (empty: data_dir() of util/files.h), with the
// configured Amazon core thresholds.
Dataset load_configured_dataset(const PrepareConfig& config);

// The items with at least one rating, ascending (padding and candidates come from these).
std::vector<int32_t> catalog_items(const Dataset& dataset);

// Binary save/load with a magic number and version; load names the file on a mismatch.
// Layout: "RLRFPREP", u32 version, u64 payload size, payload, SHA-256 of the payload; numbers
// little-endian. Load checks all four and names the file and what was wrong (not a prepared
// file, version, truncation, checksum).
void save_prepared(const PreparedData& data, const std::filesystem::path& path);
PreparedData load_prepared(const std::filesystem::path& path);

}  // namespace rlrf
