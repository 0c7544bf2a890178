// Tokenizers read from Hugging Face tokenizer.json: SentencePiece-style BPE with byte fallback
// (Llama-2, TinyStories) and byte-level BPE with a split regex (Llama-3, GPT-2, Qwen2), added and
// special tokens, decoding with byte-fallback fusion, and a streaming decoder for partial UTF-8.
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

  int32_t bos_id() const;             // -1 when none
  std::vector<int32_t> eos_ids() const;  // ids that end a generation (eos, eot, ...)
  int32_t pad_id() const;             // -1 when none
  int32_t vocab_size() const;         // largest id + 1, added tokens included
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // The chat template named in tokenizer_config.json, recognised as "llama3", "chatml" or "none".
  std::string chat_template() const;

  struct Impl;
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

 private:
  std::shared_ptr<const Impl> impl_;
};

// Turns a stream of ids into text pieces that are always whole UTF-8 characters: bytes of a
// character split over several tokens are held back until the character is complete.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t id);  // text that became complete with this id (may be empty)
  std::string flush();           // whatever is left (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace rlrf
