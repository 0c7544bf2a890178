// Loader tests: MovieLens-100K on the real files, MovieLens-1M on the real users/movies files plus a
// ratings.dat written here, Amazon Books on small real-format files (plain and gzipped) including
// the iterated core filter, and malformed input for each (errors name the file and the line).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/dataset.h"
#include "data/data_test_files.h"
#include "util/files.h"
#include "util/strings.h"

using namespace rlrf;
using rlrf::test::expect_error;
using rlrf::test::write_gz;
using rlrf::test::write_text;

namespace {

int32_t find_item(const Dataset& d, const std::string& raw) {
  for (size_t i = 0; i < d.items.size(); ++i)
    if (d.items[i].raw_id == raw) return static_cast<int32_t>(i);
  return -1;
}
int32_t find_user(const Dataset& d, const std::string& raw) {
  for (size_t i = 0; i < d.users.size(); ++i)
    if (d.users[i].raw_id == raw) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MovieLens-100K (real files)

TEST(MovieLens100k, RealCountsAndSpotValues) {
  if (!fs::exists(test::ml100k_dir() / "u.data")) GTEST_SKIP() << "no ml-100k in " << test::ml100k_dir();
  Dataset d = load_movielens_100k(test::ml100k_dir());
  EXPECT_EQ(d.name, "ml-100k");
  EXPECT_EQ(d.ratings.size(), 100000u);
  EXPECT_EQ(d.users.size(), 943u);
  EXPECT_EQ(d.items.size(), 1682u);
  EXPECT_FLOAT_EQ(d.positive_above, 3.0f);
  EXPECT_EQ(d.prompt_history_cap, 30);

  // First line of u.data: 196 242 3 881250949; last: 12 203 3 879959583.
  const Rating& r0 = d.ratings.front();
  EXPECT_EQ(d.users[static_cast<size_t>(r0.user)].raw_id, "196");
  EXPECT_EQ(d.items[static_cast<size_t>(r0.item)].raw_id, "242");
  EXPECT_EQ(d.items[static_cast<size_t>(r0.item)].title, "Kolya");
  EXPECT_FLOAT_EQ(r0.rating, 3.0f);
  EXPECT_EQ(r0.time, 881250949);
  const Rating& rl = d.ratings.back();
  EXPECT_EQ(d.users[static_cast<size_t>(rl.user)].raw_id, "12");
  EXPECT_EQ(d.items[static_cast<size_t>(rl.item)].raw_id, "203");
  EXPECT_EQ(rl.time, 879959583);

  // Users in u.user order: 1|24|M|technician|85711, 196|49|M|writer.
  EXPECT_EQ(d.users[0].raw_id, "1");
  EXPECT_EQ(d.users[0].age, "24");
  EXPECT_EQ(d.users[0].gender, "male");
  EXPECT_EQ(d.users[0].occupation, "technician");
  int32_t u186 = find_user(d, "186");
  ASSERT_GE(u186, 0);
  EXPECT_EQ(d.users[static_cast<size_t>(u186)].gender, "female");
  EXPECT_EQ(d.users[static_cast<size_t>(u186)].occupation, "executive");
  EXPECT_EQ(std::count_if(d.ratings.begin(), d.ratings.end(), [&](const Rating& r) { return d.users[r.user].raw_id == "196"; }), 39);

  // Items: ids in u.item order, year split off, genres in file order, attribute = first genre.
  ASSERT_EQ(d.attribute_names, std::vector<std::string>{"genre"});
  ASSERT_EQ(d.attribute_cardinality, std::vector<int32_t>{19});  // 18 genres + unknown
  const ItemInfo& toy = d.items[0];
  EXPECT_EQ(toy.raw_id, "1");
  EXPECT_EQ(toy.title, "Toy Story");
  EXPECT_EQ(toy.year, 1995);
  EXPECT_EQ(toy.genres, (std::vector<std::string>{"Animation", "Children's", "Comedy"}));
  EXPECT_EQ(d.attribute_values[0][static_cast<size_t>(d.item_attributes[0][0])], "Animation");
  // Latin-1 title converted to UTF-8; trailing article kept when it is not English.
  const ItemInfo& mis = d.items[static_cast<size_t>(find_item(d, "543"))];
  EXPECT_EQ(mis.title, "Mis\xC3\xA9rables, Les");
  EXPECT_EQ(mis.year, 1995);
  EXPECT_TRUE(is_valid_utf8(mis.title));
  // "unknown" genre is no genre: attribute value 0.
  int32_t unk = find_item(d, "267");
  EXPECT_EQ(d.items[static_cast<size_t>(unk)].title, "unknown");
  EXPECT_EQ(d.items[static_cast<size_t>(unk)].year, 0);
  EXPECT_TRUE(d.items[static_cast<size_t>(unk)].genres.empty());
  EXPECT_EQ(d.item_attributes[0][static_cast<size_t>(unk)], 0);
  for (const ItemInfo& it : d.items) EXPECT_TRUE(is_valid_utf8(it.title)) << it.raw_id;
}

TEST(MovieLens100k, ByNameFromDataDir) {
  if (!fs::exists(test::ml100k_dir() / "u.data")) GTEST_SKIP();
  Dataset d = load_dataset("ml-100k", test::ml100k_dir().parent_path());
  EXPECT_EQ(d.ratings.size(), 100000u);
  test::expect_error([&] { load_dataset("ml-10m", test::ml100k_dir().parent_path()); }, {"ml-10m"});
}

namespace {

// A small ML-100K-format directory (u.genre copied in format, 3 users, 3 items).
fs::path small_ml100k(const std::string& name) {
  fs::path dir = fresh_temp_dir(name);
  write_text(dir / "u.genre",
             "unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\nDocumentary|7\nDrama|8\n"
             "Fantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\nRomance|14\nSci-Fi|15\nThriller|16\nWar|17\n"
             "Western|18\n\n");
  write_text(dir / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n");
  const std::string flags_comedy = "|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0";
  write_text(dir / "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x" + flags_comedy + "\n" +
                                 "2|American President, The (1995)|01-Jan-1995||http://x" + flags_comedy + "\n" +
                                 "3|Caf\xE9 au Lait (1993)|01-Jan-1993||http://x" + flags_comedy + "\n");
  write_text(dir / "u.data", "1\t1\t5\t100\n2\t2\t3\t200\n3\t3\t1\t300\n1\t3\t4\t50\n");
  return dir;
}

}  // namespace

TEST(MovieLens100k, SmallFilesParseTitlesAndArticles) {
  fs::path dir = small_ml100k("ml100k_small");
  Dataset d = load_movielens_100k(dir);
  ASSERT_EQ(d.items.size(), 3u);
  EXPECT_EQ(d.items[1].title, "The American President");
  EXPECT_EQ(d.items[2].title, "Caf\xC3\xA9 au Lait");
  EXPECT_EQ(d.items[2].year, 1993);
  ASSERT_EQ(d.ratings.size(), 4u);
  EXPECT_EQ(d.ratings[3].user, 0);
  EXPECT_EQ(d.ratings[3].item, 2);
  EXPECT_EQ(d.ratings[3].time, 50);
}

TEST(MovieLens100k, MalformedFilesNameFileAndLine) {
  struct Case {
    const char* file;
    std::string content;
    std::string problem;
  };
  const std::string flags = "|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0";
  std::vector<Case> cases = {
      {"u.data", "1\t1\t5\t100\n2\t2\t3\n", "expected 4 fields"},
      {"u.data", "1\t1\t5\t100\nx\t2\t3\t200\n", "non-numeric user id 'x'"},
      {"u.data", "1\t1\t5\t100\n2\t2\t6\t200\n", "out of range"},
      {"u.data", "1\t1\t5\t100\n9\t2\t3\t200\n", "unknown user 9"},
      {"u.data", "1\t1\t5\t100\n2\t7\t3\t200\n", "unknown item 7"},
      {"u.data", "1\t1\t5\t100\n1\t1\t3\t200\n", "twice"},
      {"u.user", "1|24|M|technician|85711\n2|old|F|other|94043\n", "non-numeric age 'old'"},
      {"u.user", "1|24|M|technician|85711\n2|53|X|other|94043\n", "gender 'X'"},
      {"u.item", "1|Toy Story (1995)|01-Jan-1995||http://x" + flags + "\n2|Short|1995\n", "expected 24 fields"},
      {"u.item", "1|Toy Story (1995)|01-Jan-1995||http://x" + flags + "\n2|B (1995)|d||u|0|0|0|0|0|2|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
       "expected 0 or 1"},
  };
  for (const Case& c : cases) {
    fs::path dir = small_ml100k("ml100k_bad");
    write_text(dir / c.file, c.content);
    std::string where = (dir / c.file).string() + ":2:";
    expect_error([&] { load_movielens_100k(dir); }, {where, c.problem});
  }
  fs::path dir = small_ml100k("ml100k_missing");
  fs::remove(dir / "u.user");
  expect_error([&] { load_movielens_100k(dir); }, {(dir / "u.user").string()});
}

// ---------------------------------------------------------------------------------------------
// MovieLens-1M: real users.dat / movies.dat, ratings.dat written here

namespace {

fs::path ml1m_with_ratings(const std::string& name, const std::string& ratings) {
  fs::path dir = fresh_temp_dir(name);
  fs::copy_file(test::ml1m_dir() / "users.dat", dir / "users.dat");
  fs::copy_file(test::ml1m_dir() / "movies.dat", dir / "movies.dat");
  write_text(dir / "ratings.dat", ratings);
  return dir;
}

}  // namespace

TEST(MovieLens1m, RealUsersAndMoviesWithWrittenRatings) {
  if (!fs::exists(test::ml1m_dir() / "movies.dat")) GTEST_SKIP() << "no ml-1m in " << test::ml1m_dir();
  fs::path dir = ml1m_with_ratings("ml1m_ok", "1::1193::5::978300760\n1::661::3::978302109\n2::1933::4::978298413\n"
                                              "6040::3952::2::956703954\n");
  Dataset d = load_movielens_1m(dir);
  EXPECT_EQ(d.name, "ml-1m");
  EXPECT_EQ(d.users.size(), 6040u);
  EXPECT_EQ(d.items.size(), 3883u);
  ASSERT_EQ(d.ratings.size(), 4u);
  // 1::F::1::10::48067 and 2::M::56::16::70072: codes decoded as in the README.
  EXPECT_EQ(d.users[0].gender, "female");
  EXPECT_EQ(d.users[0].age, "Under 18");
  EXPECT_EQ(d.users[0].occupation, "K-12 student");
  EXPECT_EQ(d.users[1].age, "56+");
  EXPECT_EQ(d.users[1].occupation, "self-employed");
  // Titles: year split off, Latin-1 -> UTF-8, English article moved to the front.
  EXPECT_EQ(d.items[0].title, "Toy Story");
  const ItemInfo& zola = d.items[static_cast<size_t>(find_item(d, "1933"))];
  EXPECT_EQ(zola.title, "The Life of \xC3\x89mile Zola");
  EXPECT_EQ(zola.year, 1937);
  const ItemInfo& mis = d.items[static_cast<size_t>(find_item(d, "73"))];
  EXPECT_EQ(mis.title, "Mis\xC3\xA9rables, Les");
  EXPECT_EQ(mis.genres, (std::vector<std::string>{"Drama", "Musical"}));
  for (const ItemInfo& it : d.items) ASSERT_TRUE(is_valid_utf8(it.title)) << it.raw_id;
  // Ratings point at the right dense ids.
  EXPECT_EQ(d.items[static_cast<size_t>(d.ratings[0].item)].title, "One Flew Over the Cuckoo's Nest");
  EXPECT_EQ(d.users[static_cast<size_t>(d.ratings[3].user)].raw_id, "6040");
  EXPECT_EQ(d.items[static_cast<size_t>(d.ratings[3].item)].title, "The Contender");
  EXPECT_EQ(d.ratings[3].time, 956703954);
  // Genre attribute: 18 genres + unknown, first genre of the movie.
  ASSERT_EQ(d.attribute_cardinality, std::vector<int32_t>{19});
  EXPECT_EQ(d.attribute_values[0][static_cast<size_t>(d.item_attributes[0][0])], "Animation");
  EXPECT_EQ(d.attribute_values[0][static_cast<size_t>(d.item_attributes[0][static_cast<size_t>(find_item(d, "73"))])],
            "Drama");
}

TEST(MovieLens1m, MalformedRatingsNameFileAndLine) {
  if (!fs::exists(test::ml1m_dir() / "movies.dat")) GTEST_SKIP();
  std::vector<std::pair<std::string, std::string>> cases = {
      {"1::1193::5::978300760\n1::661::3\n", "expected 4 fields"},
      {"1::1193::5::978300760\n1::abc::3::978302109\n", "non-numeric item id 'abc'"},
      {"1::1193::5::978300760\n1::661::0::978302109\n", "out of range"},
      {"1::1193::5::978300760\n7000::661::3::978302109\n", "unknown user 7000"},
      {"1::1193::5::978300760\n1::3953::3::978302109\n", "unknown item 3953"},
      {"1::1193::5::978300760\n1::661::3.5::978302109\n", "whole number"},
  };
  for (auto& [ratings, problem] : cases) {
    fs::path dir = ml1m_with_ratings("ml1m_bad", ratings);
    expect_error([&] { load_movielens_1m(dir); }, {(dir / "ratings.dat").string() + ":2:", problem});
  }
  // users.dat and movies.dat errors, on small files of the real format.
  fs::path dir = fresh_temp_dir("ml1m_bad_meta");
  write_text(dir / "users.dat", "1::F::1::10::48067\n2::M::57::16::70072\n");
  write_text(dir / "movies.dat", "1::Toy Story (1995)::Animation\n");
  write_text(dir / "ratings.dat", "");
  expect_error([&] { load_movielens_1m(dir); }, {(dir / "users.dat").string() + ":2:", "age code 57"});
  write_text(dir / "users.dat", "1::F::1::10::48067\n");
  write_text(dir / "movies.dat", "1::Toy Story (1995)::Animation\n2::Jumanji (1995)::Adventure|Space Opera\n");
  expect_error([&] { load_movielens_1m(dir); }, {(dir / "movies.dat").string() + ":2:", "unknown genre 'Space Opera'"});
  write_text(dir / "movies.dat", "1::Toy Story (1995)::Animation\n1::Jumanji (1995)::Adventure\n");
  expect_error([&] { load_movielens_1m(dir); }, {(dir / "movies.dat").string() + ":2:", "duplicate movie id 1"});
}

// ---------------------------------------------------------------------------------------------
// Amazon Books: small files in the real 2018 format

namespace {

std::string review(const std::string& user, const std::string& asin, double overall, int64_t time) {
  return fmt::format(
      "{{\"overall\": {:.1f}, \"verified\": true, \"reviewTime\": \"01 1, 2014\", \"reviewerID\": \"{}\", \"asin\": "
      "\"{}\", \"reviewerName\": \"Someone\", \"reviewText\": \"Loved it, \\\"really\\\".\", \"summary\": \"Five "
      "Stars\", \"unixReviewTime\": {}}}\n",
      overall, user, asin, time);
}

std::string meta_line(const std::string& asin, const std::string& title, const std::string& brand,
                      const std::string& categories) {
  return fmt::format(
      "{{\"category\": [{}], \"tech1\": \"\", \"description\": [\"A book.\"], \"fit\": \"\", \"title\": \"{}\", "
      "\"also_buy\": [], \"image\": [], \"tech2\": \"\", \"brand\": \"{}\", \"feature\": [], \"rank\": \"1 in Books\", "
      "\"also_view\": [], \"main_cat\": \"Books\", \"similar_item\": \"\", \"date\": \"\", \"price\": \"\", \"asin\": "
      "\"{}\", \"imageURL\": [], \"imageURLHighRes\": []}}\n",
      categories, title, brand, asin);
}

// Hand-checkable core filter with min_user = 3, min_item = 2:
//   A: x y z   B: x y z   C: x y   D: x w y   (plus a repeated A-x, and E-v where v has no metadata)
// pass 1 removes C (2 < 3) and w (1 < 2); D is left with x y; pass 2 removes D (2 < 3);
// pass 3 finds x, y, z with 2 each and A, B with 3 each: stable. Without iterating, D would stay.
struct AmazonFiles {
  std::string reviews, meta;
};

AmazonFiles amazon_example() {
  AmazonFiles f;
  f.reviews = review("D", "X000000001", 2, 50) + review("A", "X000000001", 5, 100) + review("A", "Y000000002", 4, 90) +
              review("B", "X000000001", 3, 300) + review("C", "X000000001", 5, 10) + review("C", "Y000000002", 5, 11) +
              review("D", "W000000004", 4, 60) + review("D", "Y000000002", 5, 70) + review("A", "Z000000003", 5, 80) +
              review("B", "Y000000002", 5, 310) + review("B", "Z000000003", 1, 320) + review("A", "X000000001", 1, 400) +
              review("E", "V000000005", 5, 5) + review("E", "X000000001", 5, 6) + review("E", "Y000000002", 5, 7);
  f.meta = meta_line("Q000000009", "Not Reviewed", "Nobody", "\"Books\"") +
           meta_line("Z000000003", "Zed &amp; Co", "Zed Press", "\"Books\", \"Literature &amp; Fiction\", \"Poetry\"") +
           meta_line("W000000004", "Dub", "", "\"Books\"") +
           meta_line("X000000001", "The X Book", "Visit Amazon's Ann Author Page",
                     "\"Books\", \"Mystery, Thriller &amp; Suspense\"") +
           meta_line("Y000000002", "Why", "Zed Press", "") +
           meta_line("X000000001", "A later duplicate line", "Other", "\"Books\", \"Other\"");
  return f;
}

void check_amazon_example(const Dataset& d) {
  EXPECT_EQ(d.name, "amazon-books");
  EXPECT_FLOAT_EQ(d.positive_above, 4.0f);
  EXPECT_EQ(d.prompt_history_cap, 15);
  // Users in order of first surviving review: A (line 2), B.
  ASSERT_EQ(d.users.size(), 2u);
  EXPECT_EQ(d.users[0].raw_id, "A");
  EXPECT_EQ(d.users[1].raw_id, "B");
  // Items in metadata order: Z, X, Y.
  ASSERT_EQ(d.items.size(), 3u);
  EXPECT_EQ(d.items[0].raw_id, "Z000000003");
  EXPECT_EQ(d.items[1].raw_id, "X000000001");
  EXPECT_EQ(d.items[2].raw_id, "Y000000002");
  EXPECT_EQ(d.items[0].title, "Zed & Co");
  EXPECT_EQ(d.items[0].category, "Literature & Fiction");
  EXPECT_EQ(d.items[1].title, "The X Book");
  EXPECT_EQ(d.items[1].brand, "Visit Amazon's Ann Author Page");
  EXPECT_EQ(d.items[1].category, "Mystery, Thriller & Suspense");
  EXPECT_EQ(d.items[2].category, "");
  // 6 interactions in file order; A-x once, at its earliest time (100, rating 5).
  ASSERT_EQ(d.ratings.size(), 6u);
  std::vector<std::tuple<int, int, float, int64_t>> got;
  for (const Rating& r : d.ratings) got.emplace_back(r.user, r.item, r.rating, r.time);
  std::vector<std::tuple<int, int, float, int64_t>> want = {
      {0, 1, 5.0f, 100}, {0, 2, 4.0f, 90}, {1, 1, 3.0f, 300}, {0, 0, 5.0f, 80}, {1, 2, 5.0f, 310}, {1, 0, 1.0f, 320}};
  EXPECT_EQ(got, want);
  // Attributes: brand and category value ids in item order, 0 = unknown.
  ASSERT_EQ(d.attribute_names, (std::vector<std::string>{"brand", "category"}));
  EXPECT_EQ(d.item_attributes[0], (std::vector<int32_t>{1, 2, 1}));  // Zed Press, Visit..., Zed Press
  EXPECT_EQ(d.item_attributes[1], (std::vector<int32_t>{1, 2, 0}));
  EXPECT_EQ(d.attribute_cardinality, (std::vector<int32_t>{3, 3}));
  EXPECT_EQ(d.attribute_values[0][1], "Zed Press");
  EXPECT_EQ(d.attribute_values[1][2], "Mystery, Thriller & Suspense");
}

}  // namespace

TEST(AmazonBooks, IteratedCoreFilterPlain) {
  fs::path dir = fresh_temp_dir("amazon_plain");
  AmazonFiles f = amazon_example();
  write_text(dir / "Books_5.json", f.reviews);
  write_text(dir / "meta_Books.json", f.meta);
  check_amazon_example(load_amazon_books(dir / "Books_5.json", dir / "meta_Books.json", 3, 2));
}

TEST(AmazonBooks, IteratedCoreFilterGzipped) {
  fs::path dir = fresh_temp_dir("amazon_gz");
  AmazonFiles f = amazon_example();
  write_gz(dir / "Books_5.json.gz", f.reviews);
  write_gz(dir / "meta_Books.json.gz", f.meta);
  check_amazon_example(load_amazon_books(dir / "Books_5.json.gz", dir / "meta_Books.json.gz", 3, 2));
  // load_dataset finds the .gz files in <data_dir>/amazon-books/ with KAR's 60/40 core: nothing survives.
  fs::path root = fresh_temp_dir("amazon_root");
  fs::create_directories(root / "amazon-books");
  write_gz(root / "amazon-books" / "Books_5.json.gz", f.reviews);
  write_gz(root / "amazon-books" / "meta_Books.json.gz", f.meta);
  Dataset none = load_dataset("amazon-books", root);
  EXPECT_TRUE(none.ratings.empty());
  EXPECT_TRUE(none.users.empty());
}

TEST(AmazonBooks, NoFilterKeepsAllWithMetadata) {
  fs::path dir = fresh_temp_dir("amazon_nofilter");
  AmazonFiles f = amazon_example();
  write_text(dir / "r.json", f.reviews);
  write_text(dir / "m.json", f.meta);
  Dataset d = load_amazon_books(dir / "r.json", dir / "m.json", 0, 0);
  // 15 reviews - 1 repeat - 1 without metadata.
  EXPECT_EQ(d.ratings.size(), 13u);
  EXPECT_EQ(d.users.size(), 5u);
  EXPECT_EQ(d.items.size(), 4u);  // Z W X Y (Q has no review, V no metadata)
  EXPECT_EQ(d.items[1].raw_id, "W000000004");
}

TEST(AmazonBooks, MalformedLinesNameFileAndLine) {
  fs::path dir = fresh_temp_dir("amazon_bad");
  AmazonFiles f = amazon_example();
  write_text(dir / "meta.json", f.meta);
  std::string good = review("A", "X000000001", 5, 100);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"reviewerID\": \"A\", \"asin\": \"X\", \"overall\": 5.0, \"unixReviewTime\": 1\n", "bad JSON"},
      {"[1, 2]\n", "one object per line"},
      {"{\"reviewerID\": \"A\", \"overall\": 5.0, \"unixReviewTime\": 1}\n", "missing field 'asin'"},
      {"{\"reviewerID\": 7, \"asin\": \"X\", \"overall\": 5.0, \"unixReviewTime\": 1}\n", "'reviewerID' must be a string"},
      {"{\"reviewerID\": \"A\", \"asin\": \"X\", \"overall\": 6.0, \"unixReviewTime\": 1}\n", "out of range"},
      {"{\"reviewerID\": \"A\", \"asin\": \"X\", \"overall\": \"5\", \"unixReviewTime\": 1}\n", "'overall' must be a number"},
      {"{\"reviewerID\": \"A\", \"asin\": \"X\", \"overall\": 5.0, \"unixReviewTime\": \"x\"}\n", "'unixReviewTime' must be an integer"},
  };
  for (auto& [bad, problem] : cases) {
    write_text(dir / "reviews.json", good + bad);
    expect_error([&] { load_amazon_books(dir / "reviews.json", dir / "meta.json", 0, 0); },
                 {(dir / "reviews.json").string() + ":2:", problem});
    write_gz(dir / "reviews.json.gz", good + "\n" + bad);  // blank lines still count
    expect_error([&] { load_amazon_books(dir / "reviews.json.gz", dir / "meta.json", 0, 0); },
                 {(dir / "reviews.json.gz").string() + ":3:", problem});
  }
  write_text(dir / "reviews.json", good);
  write_text(dir / "bad_meta.json", meta_line("Z000000003", "Z", "b", "") + "{\"asin\": \"X000000001\", \"title\": [1]}\n");
  expect_error([&] { load_amazon_books(dir / "reviews.json", dir / "bad_meta.json", 0, 0); },
               {(dir / "bad_meta.json").string() + ":2:", "'title' must be a string"});
  write_text(dir / "bad_meta.json", meta_line("Z000000003", "Z", "b", "") + "not json\n");
  expect_error([&] { load_amazon_books(dir / "reviews.json", dir / "bad_meta.json", 0, 0); },
               {(dir / "bad_meta.json").string() + ":2:", "bad JSON"});
  // A truncated gzip stream is an error, not a short file.
  std::string many;
  for (int k = 0; k < 2000; ++k) many += review("U" + std::to_string(k), "X000000001", 5, k);
  write_gz(dir / "big.json.gz", many);
  std::string bytes = read_file(dir / "big.json.gz");
  write_text(dir / "cut.json.gz", bytes.substr(0, bytes.size() / 2));
  expect_error([&] { load_amazon_books(dir / "cut.json.gz", dir / "meta.json", 0, 0); },
               {(dir / "cut.json.gz").string(), "truncated or corrupt"});
}
