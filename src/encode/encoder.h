// Text encoders turn knowledge texts into frozen vectors (the paper uses BERT, bert_encoder.h; the
// default is GloVe 100-d, frequency-weighted mean of word vectors). Encodings are cached on disk keyed by text hash.
#pragma once
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace rlrf {

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  virtual std::string name() const = 0;  // identifies the encoder in cache keys: "glove-100d-sif-decades"
  virtual int dim() const = 0;
  // [texts.size(), dim()] float32 on CPU.
  virtual at::Tensor encode(const std::vector<std::string>& texts) = 0;
};

// Loads the GloVe binary written by `rlrf convert-glove` (scripts/setup.sh runs it);
// path empty: <deps>/glove-100d.bin. Errors name the path and say how to create it.
std::unique_ptr<TextEncoder> make_glove_encoder(const std::filesystem::path& path = {});

// By name: "glove" (default), "glove:PATH", "hash", "hash:DIM", "bert:DIR[?settings]" (a BERT-family
// model, bert_encoder.h), "fields:INNER" (one slot per labelled field, field_encoder.h). Unknown names are refused with the list of known ones.
std::unique_ptr<TextEncoder> make_encoder(const std::string& name);

// Encodes through an on-disk cache in `cache_dir` (one file per encoder name; entries keyed by the
// SHA-256 of the text). Only texts not in the cache are sent to the encoder.
at::Tensor encode_cached(TextEncoder& encoder, const std::vector<std::string>& texts,
                         const std::filesystem::path& cache_dir);

}  // namespace rlrf
