// Preprocessing of SPEC.md (KAR conventions): per-user time order, prompt-history prefix, labels,
// a seeded user split (train / validation carved from train / test) and rerank lists.
#pragma once
#include <cstdint>
#include <filesystem>
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
  void read(const ConfigSection& s);
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

// A list to rerank: items in their initial order (random for kar/popularity, the candidate
// generator's order for first-stage), with 0/1 labels.
struct RerankList {
  int32_t user = 0;
  Split split = Split::kTrain;
  std::vector<int32_t> items;
  std::vector<uint8_t> labels;
  std::vector<float> initial_scores;  // first-stage: the generator's scores; empty otherwise
};

struct PreparedData {
  PrepareConfig config;
  Dataset dataset;
  std::vector<UserSequence> sequences;  // indexed by user; users with no lists still appear
  std::vector<RerankList> lists;
  std::vector<float> item_popularity;   // interactions per item among training data, for baselines
};

struct PrepareCounts {
  int64_t users = 0, items = 0, interactions = 0;
  int64_t users_per_split[3] = {0, 0, 0};
  int64_t lists_per_split[3] = {0, 0, 0};
  double positive_rate[3] = {0, 0, 0};            // share of positive labels in lists per split
  double lists_without_positive[3] = {0, 0, 0};   // share of lists with no positive per split
};

PreparedData prepare(const Dataset& dataset, const PrepareConfig& config);
PrepareCounts count(const PreparedData& data);

// Binary save/load with a magic number and version; load names the file on a mismatch.
void save_prepared(const PreparedData& data, const std::filesystem::path& path);
PreparedData load_prepared(const std::filesystem::path& path);

}  // namespace rlrf
