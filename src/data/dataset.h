// A recommendation dataset as loaded from disk: users, items with metadata, time-stamped ratings.
// Ids are dense indices (0..n-1) assigned in order of first appearance in the metadata file; the
// original ids are kept as strings for messages and for knowledge files keyed by them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rlrf {

struct UserInfo {
  std::string raw_id;      // id as in the source files ("196", "A1EE2E3N7PW666")
  std::string gender;      // "male"/"female"; empty when the dataset has none
  std::string age;         // readable: "25-34" (ML-1M group) or "24" (ML-100K years); empty if none
  std::string occupation;  // readable: "academic/educator"; empty if none
};

struct ItemInfo {
  std::string raw_id;               // "1193", "0001048791"
  std::string title;                // UTF-8, year stripped for MovieLens ("Toy Story")
  int year = 0;                     // release year, 0 when unknown
  std::vector<std::string> genres;  // MovieLens genres in file order
  std::string brand;                // Amazon: brand (author/publisher field); empty otherwise
  std::string category;             // Amazon: first category below "Books"; empty otherwise
};

struct Rating {
  int32_t user = 0;  // dense user index
  int32_t item = 0;  // dense item index
  float rating = 0;  // 1..5
  int64_t time = 0;  // unix seconds
};

struct Dataset {
  std::string name;            // "ml-100k", "ml-1m", "amazon-books"
  std::vector<UserInfo> users;
  std::vector<ItemInfo> items;
  std::vector<Rating> ratings;
  float positive_above = 3.0f;  // label 1 iff rating > positive_above (KAR: 3 for MovieLens, 4 for Books)
  int prompt_history_cap = 30;  // prefix = min((len+1)/2, cap) (KAR: 30 MovieLens, 15 Books)
  // Categorical item attributes fed to the rerankers: names and, per attribute, a value id per item.
  // MovieLens: {"genre"} (first genre); Books: {"brand", "category"}. Value 0 means unknown.
  std::vector<std::string> attribute_names;
  std::vector<std::vector<int32_t>> item_attributes;  // [attribute][item]
  std::vector<int32_t> attribute_cardinality;        // values per attribute, including 0
  // Readable value names per attribute: attribute_values[a][v] for v in 1..cardinality-1;
  // attribute_values[a][0] is "" (unknown).
  std::vector<std::vector<std::string>> attribute_values;
};

// Loaders. Each reads the dataset's real file layout from `dir` and throws Error naming the file,
// line and problem on malformed input (wrong field count, non-numeric id, rating out of range,
// unknown user or item, duplicate id, bad JSON). Nothing is returned half-loaded.
//
// Conventions shared by the loaders (see dataset.cpp, movielens.cpp, amazon.cpp):
// - MovieLens titles: ISO-8859-1 -> UTF-8; a trailing "(yyyy)" moves into `year`; a trailing
//   English article is moved to the front as KAR's correct_title does ("American President, The"
//   -> "The American President"; "The", "A", "An" only). Genre "unknown" (ML-100K) is no genre.
//   A (user, item) pair rated twice is an error (the files have none).
// - Users: MovieLens in users-file order; Amazon in order of first appearance in the reviews.
// - Ratings: file order (preparation sorts each user's ratings by time, stably).
Dataset load_movielens_100k(const std::filesystem::path& dir);  // u.data, u.item, u.user
Dataset load_movielens_1m(const std::filesystem::path& dir);    // ratings.dat, users.dat, movies.dat
// Amazon 2018 Books: reviews (Books_5.json[.gz]) and metadata (meta_Books.json[.gz]), one JSON
// object per line; applies KAR's iterated core filter (users >= min_user, items >= min_item).
// Reviews need reviewerID, asin (non-empty strings), overall (1..5) and unixReviewTime (integer);
// metadata needs asin, and may carry title, brand and category (a list: the first entry below
// "Books" is the category). HTML entities in title/brand/category are decoded. A product reviewed
// twice by one reviewer keeps the earliest review; reviews of products with no metadata line are
// dropped before the core filter, so the result really is a (min_user, min_item)-core. Each
// filter pass drops every interaction of a user or item below its threshold (counts taken at the
// start of the pass) and passes repeat until nothing changes. Items are numbered in metadata-file
// order; attributes {"brand", "category"} number their values in item order.
Dataset load_amazon_books(const std::filesystem::path& reviews, const std::filesystem::path& meta,
                          int min_user = 60, int min_item = 40);

// Loads by name ("ml-100k", "ml-1m", "amazon-books") from data_dir/<name>/.
Dataset load_dataset(const std::string& name, const std::filesystem::path& data_dir);

}  // namespace rlrf
