// GPT-2's reversible byte <-> printable-character map.
#include "text/byte_level.h"

#include <array>

#include "text/unicode.h"

namespace rlrf::text {

namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int, 324> to_byte;  // code points 0..323 cover every mapped character
  Tables() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      utf8_append(to_char[b], cp);
      to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_to_unicode(unsigned char b) { return tables().to_char[b]; }

void byte_level_encode(std::string_view raw, std::string& out) {
  const Tables& t = tables();
  for (unsigned char b : raw) out += t.to_char[b];
}

int unicode_to_byte(char32_t cp) { return cp < 324 ? tables().to_byte[cp] : -1; }

void byte_level_decode(std::string_view token, std::string& out) {
  size_t start = out.size();
  for (size_t i = 0; i < token.size();) {
    int len = 0;
    char32_t cp = utf8_decode_at(token, i, len);
    int b = unicode_to_byte(cp);
    if (b < 0) {
      out.resize(start);
      out.append(token);
      return;
    }
    out += static_cast<char>(b);
    i += len;
  }
}

}  // namespace rlrf::text
