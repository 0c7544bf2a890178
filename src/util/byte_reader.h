// Bounded reads of a binary payload in the machine's byte order (little-endian here, as the files
// are): every read is checked against what is left, so a length read from a damaged file can never
// drive a read or an allocation past the end. A read that would is an Error naming the file, what was
// being read, the offset and the size. Used by the prepared-data file and the GGUF reader.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>

#include "util/error.h"

namespace rlrf {

class ByteReader {
 public:
  // `kind` names the format in errors ("GGUF", "prepared file").
  ByteReader(std::string_view data, std::filesystem::path path, std::string kind)
      : data_(data), path_(std::move(path)), kind_(std::move(kind)) {}

  template <typename T>
  T pod(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, bytes(sizeof(T), what).data(), sizeof(T));
    return v;
  }
  // The next `n` bytes.
  std::string_view bytes(uint64_t n, const char* what) {
    if (n > remaining()) truncated(what, n);
    std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  // A string stored as a uint64 length and its bytes.
  std::string str(const char* what) { return std::string(bytes(pod<uint64_t>(what), what)); }
  // An element count, checked against what is left (each element takes at least `min_bytes`).
  uint64_t count(uint64_t min_bytes, const char* what) {
    const uint64_t n = pod<uint64_t>(what);
    if (n > remaining() / min_bytes) truncated(what, n * min_bytes);
    return n;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }
  bool done() const { return pos_ == data_.size(); }
  const std::filesystem::path& path() const { return path_; }

  [[noreturn]] void truncated(const char* what, uint64_t n) const {
    fail("'{}': truncated {}: {} needs {} bytes at offset {}, the file has {}", path_.string(), kind_, what, n, pos_,
         data_.size());
  }

 private:
  std::string_view data_;
  std::filesystem::path path_;
  std::string kind_;
  size_t pos_ = 0;
};

}  // namespace rlrf
