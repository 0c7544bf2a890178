// Byte-pair encoding of one pre-token over a vocabulary and ranked merges, as the Hugging Face BPE
// model does it: characters (or bytes, for byte-level vocabularies) become symbols, unknown ones
// fall back to <0xXX> byte tokens or to (fused) unk, then the lowest-ranked adjacent pair is merged
// until none is left. Results for short pre-tokens are cached.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/string_id_map.h"

namespace rlrf::text {

// Open-addressing map from a pair of ids (packed in 64 bits) to the merge's rank.
class PairRankMap {
 public:
  void reserve(size_t n);
  // Later inserts of the same pair win, as when Hugging Face collects merges into a map.
  void insert(int32_t left, int32_t right, uint32_t rank);
  // The rank of merging (left, right), or -1 when the pair is not a merge.
  int64_t find(int32_t left, int32_t right) const {
    if (slots_.empty()) return -1;
    uint64_t key = pack(left, right);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return slots_[i].rank;
      if (slots_[i].key == kEmpty) return -1;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key;
    uint32_t rank;
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_; }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

struct BpeModel {
  std::vector<std::string> tokens;    // model vocabulary by id ("" for gaps)
  StringIdMap vocab;                  // token -> id over `tokens`
  PairRankMap merges;                 // (left, right) -> rank
  std::vector<int32_t> merge_result;  // rank -> merged id
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_token_ids;  // id of "<0xXX>" per byte, -1 when absent
  std::array<int32_t, 256> byte_level_ids;  // id of each byte's byte-level character, -1 when absent

  // Fills byte_token_ids and byte_level_ids from `vocab`; call once after loading.
  void index_bytes();
  int32_t lookup(std::string_view token) const { return vocab.find(token); }

  // Appends the ids of one pre-token. byte_level=true: `word` is raw bytes whose symbols are the
  // byte-level characters (the ByteLevel pre-tokenizer's mapping, done here without copying).
  void encode_word(std::string_view word, bool byte_level, std::vector<int32_t>& out) const;

 private:
  void merge_word(std::string_view word, bool byte_level, std::vector<int32_t>& out) const;
  static constexpr size_t kMaxCachedWord = 128;
  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mu_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace rlrf::text
