// Tokenizers read from Hugging Face tokenizer.json: SentencePiece-style BPE with byte fallback
// (Llama-2, TinyStories) and byte-level BPE with a split regex (Llama-3, GPT-2, Qwen2), added and
// special tokens, decoding with byte-fallback fusion, and a streaming decoder for partial UTF-8.
//
// Implemented components (anything else is refused at load with an error naming the file and the
// component): model BPE (merges as "a b" or ["a", "b"], byte_fallback, fuse_unk, ignore_merges);
// normalizers Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip; pre-tokenizers
// Sequence, Split (regex through PCRE2, UTF+UCP), ByteLevel, Metaspace; post-processors
// TemplateProcessing, ByteLevel, Sequence; decoders Replace, ByteFallback, Fuse, Strip, ByteLevel,
// Metaspace, Sequence.
// Behaviour worth knowing:
// - Added tokens are matched in the raw text (leftmost-longest, lstrip/rstrip/single_word honoured)
//   before normalisation, for every token, as transformers.js does; Hugging Face's Rust library
//   matches tokens flagged normalized=true after normalisation instead, which differs only around
//   such tokens under a Prepend normalizer.
// - Text that is not valid UTF-8 is encoded as if each invalid byte run were U+FFFD.
// - tokenizer_config.json's add_bos_token / add_eos_token, when present, decide whether encode
//   (add_special=true) adds BOS / EOS, as transformers' Llama tokenizers do.
// - decode is the tokenizers library's decode; transformers' clean_up_tokenization_spaces (which
//   rewrites " ." to "." and the like) is not applied.
// - A Tokenizer is immutable after load and safe to use from several threads.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding tokenizer.json (and, optionally,
  // tokenizer_config.json, read for bos/eos, add_bos_token and the chat template).
  static Tokenizer load(const std::filesystem::path& path);

  // Text to ids. add_special=true applies the post-processor (e.g. prepends BOS). Special-token
  // strings in the text ("<|eot_id|>") are matched as their single ids.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Ids to text; skip_special drops special tokens.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  int32_t bos_id() const;                             // -1 when none
  std::vector<int32_t> eos_ids() const;               // ids that end a generation (eos, eot, ...)
  int32_t pad_id() const;                             // -1 when none
  int32_t vocab_size() const;                         // largest id + 1, added tokens included
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // The chat template named in tokenizer_config.json, recognised as "llama3", "chatml" or "none".
  std::string chat_template() const;
  // The tokenizer.json this was loaded from.
  const std::filesystem::path& file() const;

  struct Impl;
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  // Copies share the (immutable) loaded tables.
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);

 private:
  friend class StreamDecoder;
  std::shared_ptr<const Impl> impl_;
};

// Turns a stream of ids into text pieces that are always whole UTF-8 characters: bytes of a
// character split over several tokens are held back until the character is complete. Each push
// costs only that token's decoding (nothing is re-decoded). The pieces joined equal decode(ids)
// for every id sequence whose bytes are valid UTF-8; for invalid bytes from <0xXX> tokens decode()
// writes one U+FFFD per byte (as Hugging Face does) where the stream writes one per invalid run.
// The decoder shares the tokenizer's tables, so it may outlive the Tokenizer object.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t id);  // text that became complete with this id (may be empty)
  std::string flush();           // whatever is left (invalid bytes become U+FFFD)

 private:
  std::string emit(bool final);
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  size_t count_ = 0;          // tokens decoded so far (decoders treat the first one specially)
  std::string pending_;       // bytes of a character not complete yet
  int strip_start_left_ = 0;  // leading characters a Strip decoder may still remove
  std::string held_;          // trailing characters a Strip decoder would remove at the very end
};

}  // namespace rlrf
