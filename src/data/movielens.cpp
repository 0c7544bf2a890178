// MovieLens-100K and -1M loaders: the GroupLens file layouts, decoded to readable user fields,
// UTF-8 titles with the year split off, and the first genre as the item attribute.
#include <array>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

#include "data/dataset.h"
#include "data/parse_util.h"
#include "util/error.h"
#include "util/files.h"
#include "util/strings.h"

namespace rlrf {

namespace fs = std::filesystem;
using data_detail::fail_at;
using data_detail::fields;
using data_detail::parse_int_field;
using data_detail::Where;

namespace {

std::string decode_gender(const Where& w, std::string_view g) {
  if (g == "M") return "male";
  if (g == "F") return "female";
  fail_at(w, fmt::format("gender '{}' is neither M nor F", g));
}

// Shared tail of both loaders: ratings lines -> Rating, with unknown ids and duplicates rejected.
struct RatingParser {
  const std::unordered_map<int64_t, int32_t>& user_index;
  const std::unordered_map<int64_t, int32_t>& item_index;
  std::unordered_map<uint64_t, int64_t> seen;  // (user, item) -> first line

  Rating parse(const Where& w, std::string_view u, std::string_view i, std::string_view r, std::string_view t) {
    int64_t uid = parse_int_field(w, u, "user id");
    int64_t iid = parse_int_field(w, i, "item id");
    float rating = data_detail::parse_rating_field(w, r, true);
    int64_t time = parse_int_field(w, t, "timestamp");
    if (time < 0) fail_at(w, fmt::format("negative timestamp {}", time));
    auto ui = user_index.find(uid);
    if (ui == user_index.end()) fail_at(w, fmt::format("unknown user {} (not in the users file)", uid));
    auto ii = item_index.find(iid);
    if (ii == item_index.end()) fail_at(w, fmt::format("unknown item {} (not in the items file)", iid));
    uint64_t key = (static_cast<uint64_t>(ui->second) << 32) | static_cast<uint32_t>(ii->second);
    auto [it, fresh] = seen.emplace(key, w.line);
    if (!fresh) fail_at(w, fmt::format("user {} rated item {} twice (first on line {})", uid, iid, it->second));
    return Rating{ui->second, ii->second, rating, time};
  }
};

void set_genre_attribute(Dataset& d, const std::vector<std::string>& genre_names) {
  std::unordered_map<std::string, int32_t> index;
  for (size_t g = 0; g < genre_names.size(); ++g) index[genre_names[g]] = static_cast<int32_t>(g) + 1;
  std::vector<int32_t> values(d.items.size(), 0);
  for (size_t i = 0; i < d.items.size(); ++i)
    if (!d.items[i].genres.empty()) values[i] = index.at(d.items[i].genres.front());
  d.attribute_names = {"genre"};
  d.item_attributes = {std::move(values)};
  d.attribute_cardinality = {static_cast<int32_t>(genre_names.size()) + 1};
  std::vector<std::string> names{""};
  names.insert(names.end(), genre_names.begin(), genre_names.end());
  d.attribute_values = {std::move(names)};
}

}  // namespace

Dataset load_movielens_100k(const fs::path& dir) {
  Dataset d;
  d.name = "ml-100k";
  d.positive_above = 3.0f;
  d.prompt_history_cap = 30;

  // u.genre: "name|index", index 0 = "unknown".
  fs::path genre_path = dir / "u.genre";
  std::vector<std::string> genre_by_index;
  {
    auto lines = read_lines(genre_path);
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&genre_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "|", 2);
      int64_t idx = parse_int_field(w, f[1], "genre index");
      if (idx != static_cast<int64_t>(genre_by_index.size()))
        fail_at(w, fmt::format("genre index {} out of order (expected {})", idx, genre_by_index.size()));
      genre_by_index.emplace_back(trim(f[0]));
    }
    if (genre_by_index.empty()) fail("{}: no genres", genre_path.string());
  }

  // u.user: id|age|gender|occupation|zip
  fs::path user_path = dir / "u.user";
  std::unordered_map<int64_t, int32_t> user_index;
  {
    auto lines = read_lines(user_path);
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&user_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "|", 5);
      int64_t id = parse_int_field(w, f[0], "user id");
      int64_t age = parse_int_field(w, f[1], "age");
      if (age < 0 || age > 150) fail_at(w, fmt::format("age {} out of range", age));
      UserInfo u;
      u.raw_id = std::to_string(id);
      u.age = std::to_string(age);
      u.gender = decode_gender(w, trim(f[2]));
      u.occupation = std::string(trim(f[3]));
      if (u.occupation.empty()) fail_at(w, "empty occupation");
      if (!user_index.emplace(id, static_cast<int32_t>(d.users.size())).second)
        fail_at(w, fmt::format("duplicate user id {}", id));
      d.users.push_back(std::move(u));
    }
  }

  // u.item: id|title|release date|video release date|IMDb URL|19 genre flags (ISO-8859-1)
  fs::path item_path = dir / "u.item";
  std::unordered_map<int64_t, int32_t> item_index;
  {
    auto lines = read_lines(item_path);
    const size_t n_fields = 5 + genre_by_index.size();
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&item_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "|", n_fields);
      int64_t id = parse_int_field(w, f[0], "item id");
      ItemInfo it;
      it.raw_id = std::to_string(id);
      data_detail::split_movie_title(latin1_to_utf8(f[1]), it.title, it.year);
      for (size_t g = 0; g < genre_by_index.size(); ++g) {
        std::string_view flag = trim(f[5 + g]);
        if (flag != "0" && flag != "1")
          fail_at(w, fmt::format("genre flag {} ({}) is '{}', expected 0 or 1", g, genre_by_index[g], flag));
        if (flag == "1" && genre_by_index[g] != "unknown") it.genres.push_back(genre_by_index[g]);
      }
      if (!item_index.emplace(id, static_cast<int32_t>(d.items.size())).second)
        fail_at(w, fmt::format("duplicate item id {}", id));
      d.items.push_back(std::move(it));
    }
  }

  // u.data: user \t item \t rating \t timestamp
  fs::path data_path = dir / "u.data";
  {
    auto lines = read_lines(data_path);
    RatingParser parser{user_index, item_index, {}};
    std::vector<Rating> ratings;
    ratings.reserve(lines.size());
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&data_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "\t", 4);
      ratings.push_back(parser.parse(w, f[0], f[1], f[2], f[3]));
    }
    d.ratings = std::move(ratings);
  }

  std::vector<std::string> genre_names;
  for (const std::string& g : genre_by_index)
    if (g != "unknown") genre_names.push_back(g);
  set_genre_attribute(d, genre_names);
  return d;
}

Dataset load_movielens_1m(const fs::path& dir) {
  Dataset d;
  d.name = "ml-1m";
  d.positive_above = 3.0f;
  d.prompt_history_cap = 30;

  // The code tables of data/ml-1m/README.
  static const std::unordered_map<int64_t, std::string> kAge = {
      {1, "Under 18"}, {18, "18-24"}, {25, "25-34"}, {35, "35-44"}, {45, "45-49"}, {50, "50-55"}, {56, "56+"}};
  static const std::array<const char*, 21> kOccupation = {
      "other",          "academic/educator",   "artist",          "clerical/admin",
      "college/grad student", "customer service", "doctor/health care", "executive/managerial",
      "farmer",         "homemaker",           "K-12 student",    "lawyer",
      "programmer",     "retired",             "sales/marketing", "scientist",
      "self-employed",  "technician/engineer", "tradesman/craftsman", "unemployed",
      "writer"};
  static const std::vector<std::string> kGenres = {
      "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",  "Documentary", "Drama",   "Fantasy",
      "Film-Noir", "Horror", "Musical",   "Mystery",    "Romance", "Sci-Fi", "Thriller",    "War",     "Western"};

  // users.dat: UserID::Gender::Age::Occupation::Zip-code
  fs::path user_path = dir / "users.dat";
  std::unordered_map<int64_t, int32_t> user_index;
  {
    auto lines = read_lines(user_path);
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&user_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "::", 5);
      int64_t id = parse_int_field(w, f[0], "user id");
      int64_t age = parse_int_field(w, f[2], "age code");
      int64_t occ = parse_int_field(w, f[3], "occupation code");
      auto a = kAge.find(age);
      if (a == kAge.end()) fail_at(w, fmt::format("age code {} is not one of 1, 18, 25, 35, 45, 50, 56", age));
      if (occ < 0 || occ > 20) fail_at(w, fmt::format("occupation code {} out of range 0..20", occ));
      UserInfo u;
      u.raw_id = std::to_string(id);
      u.gender = decode_gender(w, trim(f[1]));
      u.age = a->second;
      u.occupation = kOccupation[static_cast<size_t>(occ)];
      if (!user_index.emplace(id, static_cast<int32_t>(d.users.size())).second)
        fail_at(w, fmt::format("duplicate user id {}", id));
      d.users.push_back(std::move(u));
    }
  }

  // movies.dat: MovieID::Title::Genres (ISO-8859-1)
  fs::path item_path = dir / "movies.dat";
  std::unordered_map<int64_t, int32_t> item_index;
  {
    std::unordered_set<std::string> known(kGenres.begin(), kGenres.end());
    auto lines = read_lines(item_path);
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&item_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "::", 3);
      int64_t id = parse_int_field(w, f[0], "movie id");
      ItemInfo it;
      it.raw_id = std::to_string(id);
      data_detail::split_movie_title(latin1_to_utf8(f[1]), it.title, it.year);
      std::string_view genres = trim(f[2]);
      if (!genres.empty()) {
        for (std::string_view g : split(genres, "|")) {
          std::string name(trim(g));
          if (!known.count(name)) fail_at(w, fmt::format("unknown genre '{}'", name));
          it.genres.push_back(std::move(name));
        }
      }
      if (!item_index.emplace(id, static_cast<int32_t>(d.items.size())).second)
        fail_at(w, fmt::format("duplicate movie id {}", id));
      d.items.push_back(std::move(it));
    }
  }

  // ratings.dat: UserID::MovieID::Rating::Timestamp
  fs::path data_path = dir / "ratings.dat";
  {
    auto lines = read_lines(data_path);
    RatingParser parser{user_index, item_index, {}};
    std::vector<Rating> ratings;
    ratings.reserve(lines.size());
    for (size_t n = 0; n < lines.size(); ++n) {
      Where w{&data_path, static_cast<int64_t>(n + 1)};
      if (trim(lines[n]).empty()) continue;
      auto f = fields(w, lines[n], "::", 4);
      ratings.push_back(parser.parse(w, f[0], f[1], f[2], f[3]));
    }
    d.ratings = std::move(ratings);
  }

  set_genre_attribute(d, kGenres);
  return d;
}

}  // namespace rlrf
