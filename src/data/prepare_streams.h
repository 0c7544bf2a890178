// Stream ids of derive_seed (data/rng.h) in data preparation: one per purpose, so that changing one
// step leaves the others' draws alone. Shared by prepare.cpp, sampled_lists.cpp and
// first_stage_lists.cpp.
#pragma once
#include <cstdint>

namespace rlrf {

constexpr uint64_t kSplitStream = 1;  // test users
constexpr uint64_t kValidStream = 2;  // validation users, from the training pool
constexpr uint64_t kListStream = 3;   // kar/popularity: padding and order of user u's lists
constexpr uint64_t kFoldStream = 4;   // first-stage mf: folds of the training users
constexpr uint64_t kMfStream = 5;     // first-stage mf: the start of each fold's model

}  // namespace rlrf
