// Amazon 2018 Books loader: 5-core reviews and product metadata (one JSON object per line, plain or
// gzipped), KAR's iterated user/item core filter, brand and first sub-category as item attributes.
//
// Choices (documented in dataset.h, measured nowhere else):
// - A reviewer who reviewed the same product twice (the 2018 dumps have such duplicates) keeps one
//   interaction: the earliest (ties: the first in the file). KAR keeps both; we cannot, since a
//   product seen in the prompt prefix must never reappear in a rerank list.
// - Reviews of products without a metadata line are dropped *before* the core filter, so the final
//   data really is (min_user, min_item)-core. KAR drops them after filtering.
// - The core filter removes, in each pass, every interaction whose user has fewer than min_user or
//   whose item has fewer than min_item interactions (counts at the start of the pass), and repeats
//   until a pass removes nothing (KAR's filter_Kcore without its list-mutation quirk).
#include <cstdint>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <unordered_map>

#include "data/dataset.h"
#include "data/line_reader.h"
#include "data/parse_util.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/strings.h"

namespace rlrf {

namespace fs = std::filesystem;
using data_detail::fail_at;
using data_detail::Where;
using json = nlohmann::json;

namespace {

struct RawReview {
  int32_t user;     // reviewer in order of first appearance
  int32_t product;  // asin in order of first appearance in the reviews
  float rating;
  int64_t time;
};

struct Meta {
  int64_t order = -1;  // metadata line order; -1 = no metadata line
  std::string title, brand, category;
};

// HTML entities the metadata carries (&amp; &quot; &#39; &#x27; ...) decoded, whitespace runs
// (including newlines) collapsed to one space, trimmed.
std::string clean_text(std::string_view s) {
  static const std::unordered_map<std::string_view, std::string_view> kNamed = {
      {"amp", "&"}, {"quot", "\""}, {"apos", "'"}, {"lt", "<"}, {"gt", ">"}, {"nbsp", " "},
      {"ndash", "-"}, {"mdash", "-"}};
  std::string decoded;
  decoded.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      size_t semi = s.find(';', i + 1);
      if (semi != std::string_view::npos && semi - i <= 10) {
        std::string_view ent = s.substr(i + 1, semi - i - 1);
        if (!ent.empty() && ent[0] == '#') {
          bool hex = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X');
          std::string_view digits = ent.substr(hex ? 2 : 1);
          uint32_t cp = 0;
          bool ok = !digits.empty();
          for (char c : digits) {
            int v = (c >= '0' && c <= '9') ? c - '0'
                    : hex && (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : hex && (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                    : -1;
            if (v < 0 || cp > 0x10FFFF) { ok = false; break; }
            cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(v);
          }
          if (ok && cp > 0 && cp < 0x110000) {
            utf8_append(decoded, cp);
            i = semi;
            continue;
          }
        } else if (auto it = kNamed.find(ent); it != kNamed.end()) {
          decoded += it->second;
          i = semi;
          continue;
        }
      }
    }
    decoded += s[i];
  }
  std::string out;
  out.reserve(decoded.size());
  bool space = false;
  for (char c : decoded) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      space = true;
    } else {
      if (space && !out.empty()) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

json parse_json_line(const Where& w, const std::string& line) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    fail_at(w, fmt::format("bad JSON: {}", e.what()));
  }
  if (!j.is_object()) fail_at(w, "bad JSON: expected one object per line");
  return j;
}

const std::string& string_field(const Where& w, const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) fail_at(w, fmt::format("missing field '{}'", key));
  if (!it->is_string()) fail_at(w, fmt::format("field '{}' must be a string, got {}", key, it->type_name()));
  if (it->get_ref<const std::string&>().empty()) fail_at(w, fmt::format("field '{}' is empty", key));
  return it->get_ref<const std::string&>();
}

// Runs `per_line` over the non-empty lines of `path`, with progress for large files.
template <typename F>
void for_each_line(const fs::path& path, const char* label, F&& per_line) {
  std::error_code ec;
  int64_t size = static_cast<int64_t>(fs::file_size(path, ec));
  LineReader reader(path);
  bool show = !ec && size > (64ll << 20);
  Progress progress(label, show ? size : 0, "bytes");
  int64_t last = 0;
  std::string line;
  while (reader.next(line)) {
    if (show && (reader.line_number() & 0xFFFF) == 0) {
      int64_t off = reader.disk_offset();
      progress.advance(off - last);
      last = off;
    }
    if (trim(line).empty()) continue;
    Where w{&reader.path(), reader.line_number()};
    per_line(w, line);
  }
  if (show) {
    progress.advance(size - last);
    progress.finish();
  }
}

}  // namespace

Dataset load_amazon_books(const fs::path& reviews, const fs::path& meta, int min_user, int min_item) {
  // 1. Reviews.
  std::vector<RawReview> raw;
  std::vector<std::string> reviewer_ids, asins;
  std::unordered_map<std::string, int32_t> reviewer_index, asin_index;
  for_each_line(reviews, "reading reviews", [&](const Where& w, const std::string& line) {
    json j = parse_json_line(w, line);
    const std::string& reviewer = string_field(w, j, "reviewerID");
    const std::string& asin = string_field(w, j, "asin");
    auto ov = j.find("overall");
    if (ov == j.end()) fail_at(w, "missing field 'overall'");
    if (!ov->is_number()) fail_at(w, fmt::format("field 'overall' must be a number, got {}", ov->type_name()));
    double overall = ov->get<double>();
    if (!(overall >= 1.0 && overall <= 5.0)) fail_at(w, fmt::format("rating {} out of range 1..5", overall));
    auto tm = j.find("unixReviewTime");
    if (tm == j.end()) fail_at(w, "missing field 'unixReviewTime'");
    if (!tm->is_number_integer())
      fail_at(w, fmt::format("field 'unixReviewTime' must be an integer, got {}", tm->type_name()));
    int64_t time = tm->get<int64_t>();
    if (time < 0) fail_at(w, fmt::format("negative unixReviewTime {}", time));
    auto [ru, fresh_u] = reviewer_index.emplace(reviewer, static_cast<int32_t>(reviewer_ids.size()));
    if (fresh_u) reviewer_ids.push_back(reviewer);
    auto [ra, fresh_a] = asin_index.emplace(asin, static_cast<int32_t>(asins.size()));
    if (fresh_a) asins.push_back(asin);
    raw.push_back(RawReview{ru->second, ra->second, static_cast<float>(overall), time});
  });

  // 2. Metadata of the reviewed products (first line per asin wins).
  std::vector<Meta> metas(asins.size());
  int64_t meta_order = 0;
  for_each_line(meta, "reading metadata", [&](const Where& w, const std::string& line) {
    json j = parse_json_line(w, line);
    const std::string& asin = string_field(w, j, "asin");
    auto it = asin_index.find(asin);
    if (it == asin_index.end()) return;
    Meta& m = metas[static_cast<size_t>(it->second)];
    if (m.order >= 0) return;
    m.order = meta_order++;
    if (auto t = j.find("title"); t != j.end()) {
      if (!t->is_string()) fail_at(w, fmt::format("field 'title' must be a string, got {}", t->type_name()));
      m.title = clean_text(t->get_ref<const std::string&>());
    }
    if (auto b = j.find("brand"); b != j.end()) {
      if (!b->is_string()) fail_at(w, fmt::format("field 'brand' must be a string, got {}", b->type_name()));
      m.brand = clean_text(b->get_ref<const std::string&>());
    }
    if (auto c = j.find("category"); c != j.end()) {
      if (!c->is_array()) fail_at(w, fmt::format("field 'category' must be a list, got {}", c->type_name()));
      std::vector<std::string> cats;
      for (const json& e : *c) {
        if (!e.is_string()) fail_at(w, "field 'category' must be a list of strings");
        cats.push_back(clean_text(e.get_ref<const std::string&>()));
      }
      size_t first = (!cats.empty() && cats[0] == "Books") ? 1 : 0;
      if (first < cats.size()) m.category = cats[first];
    }
  });

  // 3. One interaction per (reviewer, product): the earliest, ties to the first in the file.
  std::vector<uint8_t> alive(raw.size(), 1);
  {
    std::unordered_map<uint64_t, size_t> kept;
    kept.reserve(raw.size());
    int64_t duplicates = 0, no_meta = 0;
    for (size_t r = 0; r < raw.size(); ++r) {
      if (metas[static_cast<size_t>(raw[r].product)].order < 0) {
        alive[r] = 0;
        ++no_meta;
        continue;
      }
      uint64_t key = (static_cast<uint64_t>(raw[r].user) << 32) | static_cast<uint32_t>(raw[r].product);
      auto [it, fresh] = kept.emplace(key, r);
      if (!fresh) {
        ++duplicates;
        if (raw[r].time < raw[it->second].time) {
          alive[it->second] = 0;
          it->second = r;
        } else {
          alive[r] = 0;
        }
      }
    }
    if (duplicates) log_info("{}: {} repeated reviews of the same product kept once", reviews.string(), duplicates);
    if (no_meta) log_info("{}: {} reviews of products without metadata dropped", reviews.string(), no_meta);
  }

  // 4. Iterated core filter.
  {
    std::vector<int64_t> user_count(reviewer_ids.size()), item_count(asins.size());
    for (int pass = 1;; ++pass) {
      std::fill(user_count.begin(), user_count.end(), 0);
      std::fill(item_count.begin(), item_count.end(), 0);
      for (size_t r = 0; r < raw.size(); ++r)
        if (alive[r]) ++user_count[static_cast<size_t>(raw[r].user)], ++item_count[static_cast<size_t>(raw[r].product)];
      int64_t removed = 0;
      for (size_t r = 0; r < raw.size(); ++r) {
        if (alive[r] && (user_count[static_cast<size_t>(raw[r].user)] < min_user ||
                         item_count[static_cast<size_t>(raw[r].product)] < min_item)) {
          alive[r] = 0;
          ++removed;
        }
      }
      log_debug("core filter pass {}: removed {} interactions", pass, removed);
      if (removed == 0) break;
    }
  }

  // 5. Dense ids: users by first surviving review, items by metadata order.
  Dataset d;
  d.name = "amazon-books";
  d.positive_above = 4.0f;
  d.prompt_history_cap = 15;
  std::vector<int32_t> user_dense(reviewer_ids.size(), -1), item_dense(asins.size(), -1);
  std::vector<int32_t> surviving_products;
  for (size_t r = 0; r < raw.size(); ++r) {
    if (!alive[r]) continue;
    int32_t& u = user_dense[static_cast<size_t>(raw[r].user)];
    if (u < 0) {
      u = static_cast<int32_t>(d.users.size());
      UserInfo info;
      info.raw_id = reviewer_ids[static_cast<size_t>(raw[r].user)];
      d.users.push_back(std::move(info));
    }
    int32_t& i = item_dense[static_cast<size_t>(raw[r].product)];
    if (i == -1) {
      i = -2;  // seen; numbered below in metadata order
      surviving_products.push_back(raw[r].product);
    }
  }
  std::sort(surviving_products.begin(), surviving_products.end(), [&](int32_t a, int32_t b) {
    return metas[static_cast<size_t>(a)].order < metas[static_cast<size_t>(b)].order;
  });
  data_detail::Vocabulary brands, categories;
  std::vector<int32_t> brand_of, category_of;
  for (int32_t p : surviving_products) {
    item_dense[static_cast<size_t>(p)] = static_cast<int32_t>(d.items.size());
    Meta& m = metas[static_cast<size_t>(p)];
    ItemInfo it;
    it.raw_id = asins[static_cast<size_t>(p)];
    it.title = std::move(m.title);
    it.brand = std::move(m.brand);
    it.category = std::move(m.category);
    brand_of.push_back(brands.id(it.brand));
    category_of.push_back(categories.id(it.category));
    d.items.push_back(std::move(it));
  }
  for (size_t r = 0; r < raw.size(); ++r) {
    if (!alive[r]) continue;
    d.ratings.push_back(Rating{user_dense[static_cast<size_t>(raw[r].user)],
                               item_dense[static_cast<size_t>(raw[r].product)], raw[r].rating, raw[r].time});
  }
  d.attribute_names = {"brand", "category"};
  d.item_attributes = {std::move(brand_of), std::move(category_of)};
  d.attribute_cardinality = {static_cast<int32_t>(brands.names.size()), static_cast<int32_t>(categories.names.size())};
  d.attribute_values = {std::move(brands.names), std::move(categories.names)};
  log_info("amazon-books: {} users, {} items, {} interactions after the {}/{} core filter", d.users.size(),
           d.items.size(), d.ratings.size(), min_user, min_item);
  return d;
}

}  // namespace rlrf
