// A compact open-addressing map from token string to id.
#include "text/string_id_map.h"
#include <cstdint>

namespace rlrf::text {

void StringIdMap::build(const std::vector<std::string>* strings) {
  strings_ = strings;
  size_t cap = 16;
  while (cap * 7 < strings->size() * 10) cap <<= 1;  // load factor <= 0.7
  slots_.assign(cap, Slot{0, -1});
  mask_ = cap - 1;
  size_ = 0;
  for (size_t id = 0; id < strings->size(); ++id)
    if (!(*strings)[id].empty()) set(static_cast<int32_t>(id));
}

void StringIdMap::set(int32_t id) {
  std::string_view s = (*strings_)[id];
  uint64_t h = hash(s);
  auto tag = static_cast<uint32_t>(h);
  size_t i = (h >> 32) & mask_;
  while (slots_[i].id >= 0 && !(slots_[i].tag == tag && (*strings_)[slots_[i].id] == s)) i = (i + 1) & mask_;
  if (slots_[i].id < 0) ++size_;
  slots_[i] = Slot{tag, id};
}

}  // namespace rlrf::text
