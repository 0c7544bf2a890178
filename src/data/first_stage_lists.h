// The "first-stage" recommendation setting: each list is a candidate generator's top list_size for
// one window of the user's sequence (the generators: data/first_stage.h; the rules:
// first_stage_lists.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

// Windows of first_stage_window interactions from the end of the prefix on; for a window starting
// at position t the generator (config.first_stage: itemknn | mf) ranks the catalog items the user
// has not interacted with before t, and the list is its top list_size in its order with its scores.
// Labels are 1 for items the user rated above the threshold inside the window. Lists come user by
// user, windows in order.
std::vector<RerankList> first_stage_lists(const PrepareConfig& config, const Dataset& dataset,
                                          const std::vector<UserSequence>& sequences,
                                          const std::vector<int32_t>& catalog);

}  // namespace rlrf
