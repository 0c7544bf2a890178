// The paper's knowledge encoder: a BERT-family model (bert-base-uncased, bge, e5, all-MiniLM, ...)
// from a Hugging Face directory, WordPiece-tokenized, pooled into one vector per text.
//
//   tokens   WordPiece from the directory's tokenizer.json (text/wordpiece.h), [CLS] x [SEP],
//            truncated to max_length (default: the smallest of the model's positions, the
//            tokenizer's model_max_length and sentence-transformers' max_seq_length)
//   model    bert/bert.h, fp32 or bf16 weights and activations (softmax and pooling in fp32)
//   pooling  mean over non-padding tokens (KAR's choice, the default for a plain model), cls, max,
//            mean_sqrt_len; "auto" takes a sentence-transformers folder's modules.json and
//            1_Pooling/config.json (several modes are concatenated in its order) and its Normalize
//            module; normalize = true L2-normalises on top
//   batches  texts sorted by token count, batch_size per forward, so padding stays small; the
//            vectors come back in the input order. Progress (texts/s) is logged for long inputs.
//
// Cache: name() holds a fingerprint of the model (config, tokenizer, pooling files, and the weights'
// headers plus 64 evenly spaced 64 KiB blocks of each weights file), the pooling, max_length and
// dtype, so encode_cached (encoder.h) never mixes vectors of different models or settings.
//
// As an encoder name (make_encoder, [knowledge] encoder, --encoder):
//   bert:PATH[?pooling=mean&normalize=true&max_length=512&dtype=bf16&batch_size=64&device=cuda]
// device (auto: CUDA when libtorch has it and a GPU is visible) is where the model runs; it is not
// part of the name: CPU and CUDA vectors agree to fp32 rounding (tests/cuda) and share the cache.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "encode/encoder.h"

namespace rlrf {

class WordPieceTokenizer;
struct WordPieceEncoding;

struct BertEncoderOptions {
  std::filesystem::path model;  // a Hugging Face or sentence-transformers directory
  std::string pooling = "auto";  // auto | mean | cls | max | mean_sqrt_len
  bool normalize = false;        // L2-normalise the pooled vector (auto: also when ST says so)
  int max_length = 0;            // tokens per text, [CLS]/[SEP] included; 0: the model's limit
  std::string dtype = "fp32";    // fp32 | bf16
  int batch_size = 64;
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  bool progress = true;          // log texts/s for inputs longer than one batch

  // "bert:PATH?pooling=...&..." (only settings that differ from the defaults are written).
  std::string to_spec() const;
  // Parses what to_spec writes; errors name the spec and the bad setting.
  static BertEncoderOptions parse_spec(std::string_view spec);
};

class BertTextEncoder : public TextEncoder {
 public:
  explicit BertTextEncoder(const BertEncoderOptions& options);
  ~BertTextEncoder() override;
  std::string name() const override;  // "bert-<dir>-<fingerprint12>-<pooling>[-l2]-L<max_length>-<dtype>"
  int dim() const override;
  // [texts.size(), dim()] float32 on CPU (whatever the device the model runs on).
  at::Tensor encode(const std::vector<std::string>& texts) override;

  // What encode feeds the model for one text.
  WordPieceEncoding tokenize(std::string_view text) const;
  // The last hidden states of one text: [T, hidden] float32.
  at::Tensor hidden_states(std::string_view text) const;
  const std::vector<std::string>& pooling_modes() const;  // resolved: e.g. {"cls", "mean"}
  bool normalized() const;
  int max_length() const;
  const std::string& fingerprint() const;  // hex SHA-256 of the model's files (see above)

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlrf
