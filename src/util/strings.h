// Small string helpers used across the loaders and the CLI.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf {

std::vector<std::string_view> split(std::string_view s, std::string_view sep);
std::string_view trim(std::string_view s);
std::string to_lower(std::string_view s);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);
// Whole-string integer / float parses; nullopt on any stray character.
std::optional<long long> parse_int(std::string_view s);
std::optional<double> parse_double(std::string_view s);
// ISO-8859-1 bytes to UTF-8 (MovieLens-1M titles).
std::string latin1_to_utf8(std::string_view s);
// True when `s` is valid UTF-8.
bool is_valid_utf8(std::string_view s);
// Appends code point `cp` encoded as UTF-8 (above U+10FFFF: U+FFFD).
void utf8_append(std::string& out, char32_t cp);

}  // namespace rlrf
