// GPT-2's reversible byte <-> printable-character map, used by the ByteLevel pre-tokenizer and
// decoder: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order.
#pragma once
#include <string>
#include <string_view>

namespace rlrf::text {

// The character (as UTF-8) that stands for byte `b`.
const std::string& byte_to_unicode(unsigned char b);
// Appends the byte-level form of `raw` (every byte mapped) to `out`.
void byte_level_encode(std::string_view raw, std::string& out);
// The byte a code point stands for, or -1 when it is not one of the 256 characters.
int unicode_to_byte(char32_t cp);
// Appends the bytes a byte-level token stands for. When the token holds a character outside the
// map (an added token such as "<|eot_id|> " with a space), appends its own UTF-8 bytes instead,
// as the Hugging Face decoder does.
void byte_level_decode(std::string_view token, std::string& out);

}  // namespace rlrf::text
