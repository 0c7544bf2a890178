// Byte-pair encoding of one pre-token, with a per-pre-token cache.
#include "text/bpe.h"

#include <algorithm>
#include <cstdint>

#include "text/byte_level.h"
#include "text/unicode.h"

namespace rlrf::text {

void PairRankMap::reserve(size_t n) {
  size_t cap = 16;
  int bits = 4;
  while (cap * 7 < n * 10) {  // load factor <= 0.7
    cap <<= 1;
    ++bits;
  }
  slots_.assign(cap, Slot{kEmpty, 0});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

void PairRankMap::insert(int32_t left, int32_t right, uint32_t rank) {
  if (slots_.empty() || (size_ + 1) * 10 > slots_.size() * 7) {  // grow, keeping the entries
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(2 * (size_ + 1), 16));
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t j = slot(s.key);
      while (slots_[j].key != kEmpty) j = (j + 1) & mask_;
      slots_[j] = s;
      ++size_;
    }
  }
  uint64_t key = pack(left, right);
  size_t i = slot(key);
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
  if (slots_[i].key == kEmpty) ++size_;
  slots_[i] = Slot{key, rank};
}

void BpeModel::index_bytes() {
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
    byte_token_ids[b] = lookup(name);
    byte_level_ids[b] = lookup(byte_to_unicode(static_cast<unsigned char>(b)));
  }
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Candidate {
  uint32_t rank;
  int32_t pos;
  // std::push_heap makes a max-heap; invert so the lowest rank, then the leftmost, comes first.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void BpeModel::merge_word(std::string_view word, bool byte_level, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<Candidate> heap;
  syms.clear();
  heap.clear();

  // Symbols: one per character (or byte), unknown ones through byte fallback or unk.
  int32_t pending_unk = 0;  // number of unknown units waiting to become one (fused) or more unk
  auto add = [&](int32_t id) { syms.push_back({id, static_cast<int32_t>(syms.size()) - 1, -1, true}); };
  auto flush_unk = [&] {
    if (pending_unk > 0 && unk_id >= 0) add(unk_id);
    pending_unk = 0;
  };
  auto unknown = [&](std::string_view unit) {
    if (byte_fallback) {
      bool all = true;
      for (unsigned char b : unit) all = all && byte_token_ids[b] >= 0;
      if (all) {
        flush_unk();
        for (unsigned char b : unit) add(byte_token_ids[b]);
        return;
      }
    }
    if (unk_id < 0) return;  // no unk token: the character is dropped, as Hugging Face does
    if (!fuse_unk) flush_unk();
    ++pending_unk;
  };
  if (byte_level) {
    for (size_t i = 0; i < word.size(); ++i) {
      int32_t id = byte_level_ids[static_cast<unsigned char>(word[i])];
      if (id >= 0) {
        flush_unk();
        add(id);
      } else {
        unknown(byte_to_unicode(static_cast<unsigned char>(word[i])));
      }
    }
  } else {
    for (size_t i = 0; i < word.size();) {
      int len = utf8_seq_len(static_cast<unsigned char>(word[i]));
      if (len == 0 || i + len > word.size()) len = 1;
      std::string_view unit = word.substr(i, len);
      int32_t id = lookup(unit);
      if (id >= 0) {
        flush_unk();
        add(id);
      } else {
        unknown(unit);
      }
      i += len;
    }
  }
  flush_unk();
  for (size_t i = 0; i + 1 < syms.size(); ++i) syms[i].next = static_cast<int32_t>(i + 1);

  // Merges, lowest rank first (leftmost among equals); stale candidates are skipped on pop.
  auto consider = [&](int32_t pos) {
    int32_t nxt = syms[pos].next;
    if (nxt < 0) return;
    int64_t rank = merges.find(syms[pos].id, syms[nxt].id);
    if (rank >= 0) {
      heap.push_back({static_cast<uint32_t>(rank), pos});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) consider(static_cast<int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& s = syms[top.pos];
    if (!s.alive || s.next < 0) continue;
    int64_t rank = merges.find(s.id, syms[s.next].id);
    if (rank != static_cast<int64_t>(top.rank)) continue;
    Symbol& right = syms[s.next];
    s.id = merge_result[top.rank];
    right.alive = false;
    s.next = right.next;
    if (s.next >= 0) syms[s.next].prev = top.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(top.pos);
  }
  for (const Symbol& s : syms)
    if (s.alive) out.push_back(s.id);
}

void BpeModel::encode_word(std::string_view word, bool byte_level, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {  // a pre-token that is itself in the vocabulary is one token
    int32_t id = -1;
    if (byte_level) {
      thread_local std::string mapped;
      mapped.clear();
      byte_level_encode(word, mapped);
      id = lookup(mapped);
    } else {
      id = lookup(word);
    }
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, byte_level, out);
  if (cacheable) {
    std::vector<int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace rlrf::text
