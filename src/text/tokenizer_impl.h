// The inside of a loaded Tokenizer: the components read from tokenizer.json (normalizer steps,
// pre-tokenizer steps, the BPE model, post-processor ids, decoder steps), the added tokens and
// what tokenizer_config.json adds. Internal to src/text.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/bpe.h"
#include "text/regex.h"
#include "text/tokenizer.h"
#include "text/wordpiece.h"

namespace rlrf {

namespace text {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // also swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
};

// Leftmost-longest matcher of added-token strings in text.
class AddedTokenMatcher {
 public:
  void add(std::string_view content, int32_t index);
  bool empty() const { return nodes_.size() <= 1; }
  // The index of the longest token starting at text[pos], and its length; -1 when none.
  int32_t longest_at(std::string_view text, size_t pos, size_t& len) const;
  bool may_start(unsigned char c) const { return first_[c]; }

 private:
  struct Node {
    int32_t token = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child node
  bool first_[256] = {};
};

struct NormalizerStep {
  enum class Kind { kPrepend, kReplace, kUnicode, kLowercase, kStrip } kind;
  std::string pattern;  // Replace: the literal pattern (when regex is null); Unicode: the form
  std::string content;  // Prepend: what to prepend; Replace: the replacement
  std::shared_ptr<Regex> regex;
  bool left = false, right = false;  // Strip
};

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace } kind;
  // Split (and ByteLevel with use_regex): the pattern, or a literal when regex is null.
  std::shared_ptr<Regex> regex;
  std::string literal;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool add_prefix_space = false;  // ByteLevel
  // Metaspace
  std::string replacement;
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;
};

struct DecoderStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace } kind;
  std::string pattern, content;  // Replace; Strip's content character; Metaspace's replacement
  int start = 0, stop = 0;       // Strip
  bool prepend = true;           // Metaspace: the first token loses its replacement characters
};

// One token's share of the decoded text, before pieces are joined.
struct DecodedPiece {
  std::string bytes;
  bool fallback_byte = false;  // a raw byte from a <0xXX> token (ByteFallback)
};

}  // namespace text

struct Tokenizer::Impl {
  std::filesystem::path file;  // tokenizer.json
  // A WordPiece tokenizer.json (BERT family): encode/decode go to it; the id tables below are
  // filled from it for the accessors, and the BPE fields stay empty.
  std::shared_ptr<const WordPieceTokenizer> wordpiece;

  text::BpeModel model;
  std::vector<std::string> id_to_token;  // every id (model and added); "" for gaps
  std::vector<uint8_t> special;          // per id: 1 for special added tokens
  text::StringIdMap token_to_id;         // over id_to_token; added tokens win
  std::vector<text::AddedToken> added;
  text::AddedTokenMatcher added_matcher;

  std::vector<text::NormalizerStep> normalizers;
  std::vector<text::PreTokenizerStep> pre_tokenizers;
  bool byte_level = false;  // the pre-tokenizers end in ByteLevel: BPE symbols are bytes

  bool has_decoder = false;
  std::vector<text::DecoderStep> token_decoders;   // applied to each token
  std::vector<text::DecoderStep> global_decoders;  // applied to the joined text (after Fuse)

  std::vector<int32_t> prefix_ids, suffix_ids;  // the post-processor for a single sequence

  int32_t bos = -1, pad = -1;
  std::vector<int32_t> eos;
  std::string bos_token;  // its string, "" when none
  std::string chat_template = "none";

  // Pipeline pieces (tokenizer.cpp).
  std::string normalize(std::string_view s) const;
  void pre_tokenize(std::string_view normalized, bool at_input_start, std::vector<std::string>& pieces) const;
  void encode_text(std::string_view s, bool at_input_start, std::vector<int32_t>& out) const;
  // Whether the decoder should see this id at all (valid id; not a skipped special token).
  bool decodable(int32_t id, bool skip_special) const;
  // One token's decoding by the per-token decoder steps; `index` counts the decoded tokens before it.
  text::DecodedPiece decode_piece(int32_t id, size_t index) const;
  // The global (after Fuse) Strip steps: characters cut at the start / end of the whole text.
  int strip_start() const;
  int strip_stop() const;
  // The global Replace steps on a chunk of decoded text.
  std::string apply_global_replace(std::string s) const;
};

}  // namespace rlrf
