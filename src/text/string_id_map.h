// A compact open-addressing map from token string to id for vocabularies of 100k+ tokens: slots
// hold a 32-bit hash and the id, and the strings themselves stay in the id -> string table, so a
// lookup touches one small slot array instead of a node per token.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf::text {

class StringIdMap {
 public:
  // Indexes every non-empty strings[id]. `strings` must stay alive and unmoved (its elements may
  // not change) while the map is used. Of duplicate strings the larger id wins; set() overrides.
  void build(const std::vector<std::string>* strings);
  // Points strings[id] at `id`, replacing whatever id the same string had.
  void set(int32_t id);
  // The id of `s`, or -1.
  int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    uint64_t h = hash(s);
    auto tag = static_cast<uint32_t>(h);
    for (size_t i = (h >> 32) & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.tag == tag && (*strings_)[slot.id] == s) return slot.id;
    }
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t tag;
    int32_t id;  // -1: empty
  };
  static uint64_t hash(std::string_view s) {  // FNV-1a then a final mix
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
  }
  const std::vector<std::string>* strings_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace rlrf::text
