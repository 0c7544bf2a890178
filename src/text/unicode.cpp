// UTF-8 helpers for the tokenizer: code points, repair, lossy draining, normalisation.
#include "text/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "util/error.h"

namespace rlrf::text {

int utf8_seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Whether byte `b` may stand at position `k` (1..3) of a sequence starting with `lead`.
static bool valid_continuation(unsigned char lead, int k, unsigned char b) {
  if (k == 1) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  }
  return b >= 0x80 && b <= 0xBF;
}

char32_t utf8_decode_at(std::string_view s, size_t pos, int& len) {
  auto c = static_cast<unsigned char>(s[pos]);
  len = utf8_seq_len(c);
  if (len <= 1) {
    len = 1;
    return c;
  }
  char32_t cp = c & (0x7F >> len);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  return cp;
}

// Consumes whole characters from bytes[0..]; returns how many bytes were consumed. Stops before a
// trailing incomplete character unless `final`.
static size_t drain_into(std::string_view bytes, std::string& out, bool final) {
  size_t i = 0, n = bytes.size();
  while (i < n) {
    auto lead = static_cast<unsigned char>(bytes[i]);
    if (lead < 0x80) {
      size_t j = i;
      while (j < n && static_cast<unsigned char>(bytes[j]) < 0x80) ++j;
      out.append(bytes.data() + i, j - i);
      i = j;
      continue;
    }
    int len = utf8_seq_len(lead);
    if (len == 0) {
      out += kReplacementChar;
      ++i;
      continue;
    }
    int k = 1;
    while (k < len && i + k < n && valid_continuation(lead, k, static_cast<unsigned char>(bytes[i + k]))) ++k;
    if (k == len) {
      out.append(bytes.data() + i, len);
      i += len;
    } else if (i + k == n && !final) {
      break;  // a valid prefix of a character whose remaining bytes have not arrived yet
    } else {
      out += kReplacementChar;  // the maximal invalid subpart
      i += k;
    }
  }
  return i;
}

std::string utf8_repair(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  drain_into(s, out, true);
  return out;
}

void utf8_drain(std::string& bytes, std::string& out, bool final) {
  size_t used = drain_into(bytes, out, final);
  bytes.erase(0, used);
}

std::string unicode_normalize(std::string_view s, std::string_view form) {
  int options = UTF8PROC_STABLE;
  if (form == "NFC")
    options |= UTF8PROC_COMPOSE;
  else if (form == "NFD")
    options |= UTF8PROC_DECOMPOSE;
  else if (form == "NFKC")
    options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  else if (form == "NFKD")
    options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  else
    fail("unknown Unicode normalisation form '{}'", form);
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                   &result, static_cast<utf8proc_option_t>(options));
  if (n < 0) fail("{} normalisation failed: {}", form, utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> hold(result, &std::free);
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
}

std::string unicode_lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int len = 0;
    char32_t cp = utf8_decode_at(s, i, len);
    utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    i += len;
  }
  return out;
}

bool is_unicode_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_word_char(char32_t cp) {
  if (cp == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

}  // namespace rlrf::text
