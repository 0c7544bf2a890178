// Helpers shared by the dataset loaders (internal to src/data): field parsing whose errors name the
// file, the line and the problem, and the title/attribute conventions of dataset.h.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/dataset.h"

namespace rlrf::data_detail {

// A position in an input file for messages: "path:line".
struct Where {
  const std::filesystem::path* path;
  int64_t line;
};

// Throws Error "path:line: message".
[[noreturn]] void fail_at(const Where& w, const std::string& message);

// Splits `line` by `sep` and checks the field count ("expected N fields separated by 'sep', got M").
std::vector<std::string_view> fields(const Where& w, std::string_view line, std::string_view sep, size_t expected);

// Whole-field integer; "non-numeric <what> 'x'" otherwise.
int64_t parse_int_field(const Where& w, std::string_view s, const char* what);
// Rating in [1, 5] (any number for Amazon's "overall"; integers for MovieLens).
float parse_rating_field(const Where& w, std::string_view s, bool integer_only);

// MovieLens title convention: trims, moves a trailing "(yyyy)" into `year` and a trailing English
// article to the front ("American President, The" -> "The American President").
void split_movie_title(std::string_view raw, std::string& title, int& year);

// Value ids of a categorical attribute in order of first appearance; 0 stays "unknown" (empty).
struct Vocabulary {
  std::vector<std::string> names{""};
  std::unordered_map<std::string, int32_t> ids;
  int32_t id(const std::string& name);  // 0 for ""
};

}  // namespace rlrf::data_detail
