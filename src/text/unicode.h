// UTF-8 helpers for the tokenizer: walking code points, repairing invalid input, lossy decoding of
// byte streams (one U+FFFD per maximal invalid subpart, as Rust's from_utf8_lossy and Python do),
// Unicode normalisation forms and character classes (through libutf8proc).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "util/strings.h"  // utf8_append

namespace rlrf::text {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length in bytes of the UTF-8 sequence that starts with byte `lead` (1..4), or 0 for a byte that
// cannot start one (a continuation byte, 0xC0/0xC1, 0xF5..0xFF).
int utf8_seq_len(unsigned char lead);

// Decodes the code point at s[pos], which must be valid UTF-8; sets `len` to its byte length.
char32_t utf8_decode_at(std::string_view s, size_t pos, int& len);

// `s` unchanged when it is valid UTF-8, else a copy where each maximal invalid subpart is U+FFFD.
std::string utf8_repair(std::string_view s);

// Splits a byte stream into whole characters. `bytes` is consumed from the front: the complete
// characters are appended to `out`, invalid subparts become U+FFFD, and a trailing incomplete but
// still valid prefix of a character is left in `bytes` (with final=true it becomes U+FFFD too).
void utf8_drain(std::string& bytes, std::string& out, bool final);

// Unicode normalisation; `form` is "NFC", "NFD", "NFKC" or "NFKD". Input must be valid UTF-8.
std::string unicode_normalize(std::string_view s, std::string_view form);
// Full-string lowercase (code point by code point, as the Lowercase normalizer does).
std::string unicode_lowercase(std::string_view s);

// Character classes used by added-token matching (White_Space; letters, digits and '_').
bool is_unicode_space(char32_t cp);
bool is_word_char(char32_t cp);

}  // namespace rlrf::text
