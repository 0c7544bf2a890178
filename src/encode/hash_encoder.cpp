// Feature-hashing text encoder (see hash_encoder.h).
#include "encode/hash_encoder.h"

#include <ATen/ops/zeros.h>
#include <cstdint>

#include <cmath>

#include "encode/word_tokenizer.h"
#include "util/error.h"

namespace rlrf {

HashingEncoder::HashingEncoder(int dim) : dim_(dim) {
  RLRF_CHECK(dim > 0, "HashingEncoder: dim must be > 0, got {}", dim);
}

std::string HashingEncoder::name() const { return fmt::format("hash-{}", dim_); }

at::Tensor HashingEncoder::encode(const std::vector<std::string>& texts) {
  const int64_t n = static_cast<int64_t>(texts.size());
  at::Tensor out = at::zeros({n, dim_}, at::kFloat);
  float* base = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    float* row = base + i * dim_;
    for_each_word_token(texts[static_cast<size_t>(i)], [&](std::string_view token) {
      bool has_alnum = false;
      for (char c : token) has_alnum |= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c & 0x80);
      if (!has_alnum) return;  // punctuation carries nothing here
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : token) {
        h ^= c;
        h *= 1099511628211ull;
      }
      row[h % static_cast<uint64_t>(dim_)] += (h >> 63) ? -1.0f : 1.0f;
    });
    double norm = 0;
    for (int k = 0; k < dim_; ++k) norm += static_cast<double>(row[k]) * row[k];
    if (norm > 0) {
      auto inv = static_cast<float>(1.0 / std::sqrt(norm));
      for (int k = 0; k < dim_; ++k) row[k] *= inv;
    }
  }
  return out;
}

}  // namespace rlrf
