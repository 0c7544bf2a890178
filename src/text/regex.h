// A compiled PCRE2 pattern in UTF + UCP mode (\p{L}, \s and \w follow Unicode, lookahead works),
// JIT-compiled when the platform allows; used by the Split pre-tokenizer and Replace normalizer.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace rlrf::text {

class Regex {
 public:
  // Throws Error naming `where` (e.g. "tokenizer.json: pre_tokenizer Split") and the PCRE2 message
  // when the pattern does not compile.
  Regex(std::string_view pattern, std::string_view where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for each non-empty, non-overlapping match in `s`, left to right.
  // `s` must be valid UTF-8 (it is not checked again). Safe to call from several threads.
  void for_each_match(std::string_view s, const std::function<void(size_t, size_t)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace rlrf::text
