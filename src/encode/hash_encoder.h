// A text encoder that needs no files: signed feature hashing of the words (word_tokenizer.h), each
// word adding +-1 to one of `dim` buckets chosen by its FNV-1a hash, then L2-normalised. Far weaker
// than GloVe (no similarity between different words), it serves quick runs and tests that must not
// depend on the GloVe download.
#pragma once
#include "encode/encoder.h"

namespace rlrf {

class HashingEncoder : public TextEncoder {
 public:
  explicit HashingEncoder(int dim = 256);
  std::string name() const override;  // "hash-256"
  int dim() const override { return dim_; }
  at::Tensor encode(const std::vector<std::string>& texts) override;  // [texts.size(), dim] float32

 private:
  int dim_;
};

}  // namespace rlrf
