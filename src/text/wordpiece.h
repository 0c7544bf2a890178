// The BERT-family tokenizer read from a Hugging Face tokenizer.json whose model is WordPiece
// (bert-base-uncased, bge, e5, all-MiniLM, DistilBERT): normalizer, pre-tokenizer, greedy
// longest-match-first WordPiece, the [CLS] ... [SEP] template (single and pair, with type ids),
// truncation, and the WordPiece decoder.
//
// Implemented components (anything else is refused at load with an error naming the file and the
// component):
//   normalizer      BertNormalizer (clean_text, handle_chinese_chars, strip_accents, lowercase),
//                   Lowercase, StripAccents, NFC/NFD/NFKC/NFKD, Strip, Sequence, null
//   pre_tokenizer   BertPreTokenizer (split at whitespace, each punctuation character alone),
//                   WhitespaceSplit, Sequence, null
//   model           WordPiece (continuing_subword_prefix, max_input_chars_per_word, unk_token)
//   post_processor  TemplateProcessing (single and pair, type ids), BertProcessing, null
//   decoder         WordPiece (prefix, cleanup), null (tokens joined by spaces)
//   truncation      tokenizer.json's own (max_length, LongestFirst/OnlyFirst/OnlySecond, Right/Left)
//                   applies when encode() is given no max_length
// Behaviour worth knowing:
// - Added tokens ([CLS], [SEP], [MASK], ...) are matched in the raw text before normalisation
//   (leftmost-longest, lstrip/rstrip honoured), as Hugging Face does for normalized=false tokens,
//   also when special tokens are not added: "[MASK]" in a text is id 103.
// - Lowercasing maps code point by code point (no final-sigma rule), as the Rust library does.
// - Text that is not valid UTF-8 is encoded as if each invalid byte run were U+FFFD (which
//   clean_text then drops).
// - A WordPieceTokenizer is immutable after load and safe to use from several threads.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

// The ids of one encoded input, with what a BERT model needs beside them.
struct WordPieceEncoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;        // 0 for the first sequence, 1 for the second (template)
  std::vector<uint8_t> special_mask;    // 1 where the post-processor added the token
  int64_t truncated = 0;                // tokens dropped by truncation
};

class WordPieceTokenizer {
 public:
  // `path` is a tokenizer.json or a directory holding one (tokenizer_config.json beside it gives
  // model_max_length). Errors name the file and, for unsupported components, the component.
  static WordPieceTokenizer load(const std::filesystem::path& path);

  // One text (or a pair). add_special applies the post-processor's template. max_length > 0
  // truncates so that the result (special tokens included) has at most max_length ids; 0 uses
  // tokenizer.json's own truncation, if any; -1 never truncates.
  WordPieceEncoding encode(std::string_view text, std::optional<std::string_view> pair = std::nullopt,
                           bool add_special = true, int max_length = 0) const;
  // The ids alone, never truncated (as Tokenizer::encode).
  std::vector<int32_t> encode_ids(std::string_view text, bool add_special = true) const;
  // Ids to text through the decoder; skip_special drops special tokens.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // Pipeline pieces, exposed for tests: the normalised text and its words.
  std::string normalize(std::string_view text) const;
  std::vector<std::string> pre_tokenize(std::string_view normalized) const;

  int32_t vocab_size() const;                         // largest id + 1, added tokens included
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;          // "" when out of range
  bool is_special(int32_t id) const;
  int32_t unk_id() const;
  int32_t cls_id() const;  // first special id of the single template (-1 when none)
  int32_t sep_id() const;  // last special id of the single template (-1 when none)
  int32_t pad_id() const;  // [PAD] / tokenizer_config.json pad_token; -1 when none
  // Special tokens the template adds to one sequence (2 for [CLS] x [SEP]) or to a pair.
  int num_special_tokens(bool pair = false) const;
  // tokenizer_config.json model_max_length (0 when absent or absurdly large).
  int model_max_length() const;
  const std::filesystem::path& file() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace rlrf
