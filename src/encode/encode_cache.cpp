// encode_cached: an append-only, crash-tolerant file of text encodings keyed by SHA-256 of the text
// (format in encode_cache.h).
#include "encode/encode_cache.h"

#include <cstdint>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ops/zeros.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/sha256.h"

namespace rlrf {
namespace {

constexpr char kCacheMagic[8] = {'R', 'L', 'R', 'F', 'E', 'N', 'C', '1'};
constexpr uint32_t kCacheVersion = 1;
constexpr size_t kKeyBytes = 32;

uint32_t fnv1a32(const char* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 16777619u;
  }
  return h;
}

std::string cache_header(int dim, const std::string& name) {
  std::string h(kCacheMagic, 8);
  auto put32 = [&](uint32_t v) { h.append(reinterpret_cast<const char*>(&v), 4); };
  put32(kCacheVersion);
  put32(static_cast<uint32_t>(dim));
  put32(static_cast<uint32_t>(name.size()));
  h += name;
  return h;
}

uint32_t get32(const std::string& s, size_t off) {
  uint32_t v;
  std::memcpy(&v, s.data() + off, 4);
  return v;
}

// An open file descriptor holding an exclusive flock; both released on destruction.
struct LockedFile {
  int fd = -1;
  fs::path path;
  explicit LockedFile(const fs::path& p) : path(p) {
    fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot open encoding cache '{}': {}", p.string(), std::strerror(errno));
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      fail("cannot lock encoding cache '{}': {}", p.string(), std::strerror(err));
    }
  }
  ~LockedFile() {
    if (fd >= 0) ::close(fd);  // closing releases the flock
  }
  LockedFile(const LockedFile&) = delete;
  LockedFile& operator=(const LockedFile&) = delete;

  std::string read_all() {
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("cannot stat encoding cache '{}': {}", path.string(), std::strerror(errno));
    std::string buf(static_cast<size_t>(st.st_size), '\0');
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t r = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("cannot read encoding cache '{}': {}", path.string(), r < 0 ? std::strerror(errno) : "short read");
      done += static_cast<size_t>(r);
    }
    return buf;
  }
  void write_at(uint64_t offset, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t w = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("cannot write encoding cache '{}' (disk full?): {}", path.string(), std::strerror(errno));
      done += static_cast<size_t>(w);
    }
  }
  void truncate(uint64_t size) {
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
      fail("cannot truncate encoding cache '{}': {}", path.string(), std::strerror(errno));
  }
  void sync() {
    if (::fsync(fd) != 0) fail("cannot sync encoding cache '{}': {}", path.string(), std::strerror(errno));
  }
};

}  // namespace

fs::path encode_cache_path(const fs::path& cache_dir, const std::string& encoder_name) {
  std::string safe = encoder_name.empty() ? std::string("encoder") : encoder_name;
  for (char& c : safe) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return cache_dir / (safe + ".enc");
}

at::Tensor encode_cached(TextEncoder& encoder, const std::vector<std::string>& texts, const fs::path& cache_dir) {
  return encode_cached(encoder, texts, cache_dir, nullptr);
}

at::Tensor encode_cached(TextEncoder& encoder, const std::vector<std::string>& texts, const fs::path& cache_dir,
                         EncodeCacheStats* stats) {
  const int dim = encoder.dim();
  const std::string name = encoder.name();
  RLRF_CHECK(dim > 0, "encoder '{}' reports dim {}", name, dim);
  ensure_dir(cache_dir);
  const fs::path path = encode_cache_path(cache_dir, name);
  LockedFile file(path);
  std::string buf = file.read_all();

  const std::string header = cache_header(dim, name);
  if (buf.size() < header.size() && header.compare(0, buf.size(), buf) == 0) {
    // New file, or a crash while its header was written: start it afresh.
    file.truncate(0);
    file.write_at(0, header);
    file.sync();
    buf = header;
  } else if (buf.size() < 20 || std::memcmp(buf.data(), kCacheMagic, 8) != 0) {
    fail("'{}' is not an encoding cache of rlrf (bad magic); delete it (it is rebuilt on the next run)", path.string());
  } else if (buf.compare(0, header.size(), header) != 0) {
    uint32_t version = get32(buf, 8), file_dim = get32(buf, 12), name_len = get32(buf, 16);
    std::string file_name = buf.substr(20, std::min<size_t>(name_len, buf.size() - 20));
    fail("encoding cache '{}' holds version {} {}-d vectors of encoder '{}', but encoder '{}' (version {}) gives {}-d; "
         "delete the file to rebuild it", path.string(), version, file_dim, file_name, name, kCacheVersion, dim);
  }

  // Index the complete, intact records; anything after the first bad one is a damaged tail.
  const size_t rec = kKeyBytes + 4 * static_cast<size_t>(dim) + 4;
  std::unordered_map<std::string_view, size_t> index;  // digest -> offset of the floats in buf
  size_t pos = header.size();
  while (pos + rec <= buf.size()) {
    uint32_t sum;
    std::memcpy(&sum, buf.data() + pos + rec - 4, 4);
    if (sum != fnv1a32(buf.data() + pos, rec - 4)) break;
    index[std::string_view(buf.data() + pos, kKeyBytes)] = pos + kKeyBytes;
    pos += rec;
  }
  const size_t valid_end = pos;
  const size_t dropped = buf.size() - valid_end;
  if (dropped > 0) {
    log_warn("encoding cache '{}': ignoring a damaged tail of {} bytes after {} records (an interrupted write); "
             "those texts are encoded again", path.string(), dropped, index.size());
    file.truncate(valid_end);
  }

  const int64_t n = static_cast<int64_t>(texts.size());
  at::Tensor out = at::zeros({n, dim}, at::kFloat);
  float* rows = out.data_ptr<float>();
  std::vector<std::string> miss_texts;
  std::vector<std::string> miss_keys;
  std::unordered_map<std::string, size_t> miss_slot;  // digest -> index in miss_texts
  std::vector<std::pair<int64_t, size_t>> miss_rows;  // (row of out, miss slot)
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto digest = Sha256();
    digest.update(texts[static_cast<size_t>(i)]);
    auto d = digest.digest();
    std::string key(reinterpret_cast<const char*>(d.data()), d.size());
    if (auto it = index.find(key); it != index.end()) {
      std::memcpy(rows + i * dim, buf.data() + it->second, 4 * static_cast<size_t>(dim));
      ++hits;
      continue;
    }
    auto [it, inserted] = miss_slot.emplace(key, miss_texts.size());
    if (inserted) {
      miss_texts.push_back(texts[static_cast<size_t>(i)]);
      miss_keys.push_back(std::move(key));
    }
    miss_rows.emplace_back(i, it->second);
  }

  if (!miss_texts.empty()) {
    at::Tensor enc = encoder.encode(miss_texts);
    RLRF_CHECK(enc.dim() == 2 && enc.size(0) == static_cast<int64_t>(miss_texts.size()) && enc.size(1) == dim,
               "encoder '{}' returned a tensor of shape {} for {} texts; expected [{}, {}]", name,
               fmt::format("{}", fmt::join(enc.sizes(), ", ")), miss_texts.size(), miss_texts.size(), dim);
    enc = enc.to(at::kCPU, at::kFloat).contiguous();
    const float* e = enc.data_ptr<float>();
    for (auto [row, slot] : miss_rows) std::memcpy(rows + row * dim, e + slot * dim, 4 * static_cast<size_t>(dim));
    std::string append;
    append.reserve(rec * miss_texts.size());
    for (size_t s = 0; s < miss_texts.size(); ++s) {
      size_t start = append.size();
      append += miss_keys[s];
      append.append(reinterpret_cast<const char*>(e + s * dim), 4 * static_cast<size_t>(dim));
      uint32_t sum = fnv1a32(append.data() + start, append.size() - start);
      append.append(reinterpret_cast<const char*>(&sum), 4);
    }
    file.write_at(valid_end, append);
    file.sync();
  }
  log_debug("encoding cache '{}': {} hits, {} texts encoded", path.string(), hits, miss_texts.size());
  if (stats) {
    stats->hits = hits;
    stats->misses = static_cast<int64_t>(miss_texts.size());
    stats->stored = static_cast<int64_t>(index.size() + miss_texts.size());
    stats->dropped_bytes = static_cast<int64_t>(dropped);
  }
  return out;
}

}  // namespace rlrf
