// The "kar" and "popularity" recommendation settings: a user's next real items padded with sampled
// catalog items (sampled_lists.cpp gives the rules).
#pragma once
#include <cstdint>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

// kar (the paper's): from the end of the prefix on, windows of real_per_list real items padded to
// list_size with catalog items drawn uniformly without replacement, excluding the user's prompt
// prefix and the items already in the list; items, labels and positions are then shuffled together.
// Lists come user by user, windows in order; user u's draws come from stream (seed, kListStream, u).
std::vector<RerankList> kar_lists(const PrepareConfig& config, const Dataset& dataset,
                                  const std::vector<UserSequence>& sequences, const std::vector<int32_t>& catalog);

// popularity: as kar, but the padding is drawn with probability proportional to `item_popularity`,
// excluding every item of the user (prefix, earlier and later windows); items of popularity 0 are
// drawn (uniformly) only when the items of positive popularity run out.
std::vector<RerankList> popularity_lists(const PrepareConfig& config, const Dataset& dataset,
                                         const std::vector<UserSequence>& sequences,
                                         const std::vector<int32_t>& catalog,
                                         const std::vector<float>& item_popularity);

}  // namespace rlrf
