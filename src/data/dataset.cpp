// Loading by name, and the field parsing shared by the loaders (parse_util.h).
#include "data/dataset.h"

#include <cctype>
#include <cmath>
#include <cstdint>

#include "data/parse_util.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

namespace fs = std::filesystem;

namespace data_detail {

void fail_at(const Where& w, const std::string& message) {
  fail("{}:{}: {}", w.path->string(), w.line, message);
}

std::vector<std::string_view> fields(const Where& w, std::string_view line, std::string_view sep, size_t expected) {
  std::vector<std::string_view> f = split(line, sep);
  if (f.size() != expected)
    fail_at(w, fmt::format("expected {} fields separated by '{}', got {}", expected, sep == "\t" ? "\\t" : sep,
                           f.size()));
  return f;
}

int64_t parse_int_field(const Where& w, std::string_view s, const char* what) {
  auto v = parse_int(trim(s));
  if (!v) fail_at(w, fmt::format("non-numeric {} '{}'", what, s));
  return *v;
}

float parse_rating_field(const Where& w, std::string_view s, bool integer_only) {
  auto v = parse_double(trim(s));
  if (!v || !std::isfinite(*v)) fail_at(w, fmt::format("non-numeric rating '{}'", s));
  if (*v < 1.0 || *v > 5.0) fail_at(w, fmt::format("rating {} out of range 1..5", s));
  if (integer_only && *v != std::floor(*v)) fail_at(w, fmt::format("rating {} is not a whole number of stars", s));
  return static_cast<float>(*v);
}

void split_movie_title(std::string_view raw, std::string& title, int& year) {
  std::string_view t = trim(raw);
  year = 0;
  // "(yyyy)" at the very end.
  if (t.size() >= 6 && t.back() == ')' && t[t.size() - 6] == '(') {
    std::string_view digits = t.substr(t.size() - 5, 4);
    bool all = true;
    for (char c : digits) all = all && std::isdigit(static_cast<unsigned char>(c));
    if (all) {
      year = static_cast<int>(*parse_int(digits));
      t = trim(t.substr(0, t.size() - 6));
    }
  }
  for (std::string_view article : {"The", "A", "An"}) {
    std::string suffix = ", " + std::string(article);
    if (t.size() > suffix.size() && ends_with(t, suffix)) {
      title = std::string(article) + " " + std::string(t.substr(0, t.size() - suffix.size()));
      return;
    }
  }
  title = std::string(t);
}

int32_t Vocabulary::id(const std::string& name) {
  if (name.empty()) return 0;
  auto it = ids.find(name);
  if (it != ids.end()) return it->second;
  int32_t v = static_cast<int32_t>(names.size());
  ids.emplace(name, v);
  names.push_back(name);
  return v;
}

}  // namespace data_detail

Dataset load_dataset(const std::string& name, const fs::path& data_dir) {
  fs::path dir = data_dir / name;
  if (name == "ml-100k") return load_movielens_100k(dir);
  if (name == "ml-1m") return load_movielens_1m(dir);
  if (name == "amazon-books") {
    auto pick = [&](const char* base) {
      fs::path plain = dir / base;
      fs::path gz = dir / (std::string(base) + ".gz");
      std::error_code ec;
      if (fs::exists(plain, ec)) return plain;
      if (fs::exists(gz, ec)) return gz;
      fail("amazon-books: neither '{}' nor '{}' exists (download the 2018 Amazon review data, 5-core Books "
           "and its metadata, into {})",
           plain.string(), gz.string(), dir.string());
    };
    return load_amazon_books(pick("Books_5.json"), pick("meta_Books.json"));
  }
  fail("unknown dataset '{}' (expected ml-100k, ml-1m or amazon-books)", name);
}

}  // namespace rlrf
