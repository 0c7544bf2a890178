// A small, fully specified random generator for data preparation (xoshiro256** seeded through
// splitmix64). The standard library's distributions and std::shuffle are implementation-defined,
// so preparation uses only these functions: the same seed gives byte-identical prepared data on
// any platform and compiler.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace rlrf {

// splitmix64 step: a good 64-bit mixer, also used to derive independent streams.
uint64_t splitmix64(uint64_t& state);

// A seed for stream `stream` (one per purpose: split, lists of user u, ...) of the master seed.
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index = 0);

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  // Uniform integer in [0, n), n > 0; unbiased (rejection of the short last bucket).
  uint64_t uniform(uint64_t n);
  // Uniform double in [0, 1) with 53 random bits.
  double uniform01();
  // Standard normal (Box-Muller from two uniform01 draws; no cached second value).
  double normal();
  // Fisher-Yates shuffle of v (from the back: i = n-1 .. 1 swaps v[i] and v[uniform(i+1)]).
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      size_t j = static_cast<size_t>(uniform(i));
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  uint64_t s_[4];
};

}  // namespace rlrf
