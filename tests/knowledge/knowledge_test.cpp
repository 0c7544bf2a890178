// Tests of the knowledge texts: item knowledge from metadata and from KAR files, the KAR history
// text, the profile summary (hand-computed; prefix only), JSONL user knowledge and its errors, the
// named sources, and all of it on the real MovieLens-100K.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "data/dataset.h"
#include "data/prepare.h"
#include "knowledge/knowledge.h"
#include "knowledge/prompts.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;

namespace {

ItemInfo item(std::string raw, std::string title, int year, std::vector<std::string> genres) {
  ItemInfo it;
  it.raw_id = std::move(raw);
  it.title = std::move(title);
  it.year = year;
  it.genres = std::move(genres);
  return it;
}

UserSequence sequence(int32_t user, std::vector<int32_t> items, std::vector<float> ratings, int32_t prefix) {
  UserSequence s;
  s.user = user;
  s.items = std::move(items);
  s.ratings = std::move(ratings);
  for (size_t i = 0; i < s.items.size(); ++i) s.times.push_back(static_cast<int64_t>(1000 + i));
  s.prefix_len = prefix;
  return s;
}

// Two users of a small MovieLens-like dataset; user "7" has 6 ratings, the first 3 are the prefix.
PreparedData small_movies() {
  PreparedData p;
  Dataset& d = p.dataset;
  d.name = "ml-100k";
  d.users = {UserInfo{"7", "male", "24", "technician"}, UserInfo{"8", "female", "53", "other"}};
  d.items = {item("1", "Toy Story", 1995, {"Animation", "Children's", "Comedy"}),
             item("2", "Heat", 1995, {"Action", "Crime", "Thriller"}),
             item("3", "Jaws 2", 1978, {"Horror", "Thriller"}),
             item("4", "Casablanca", 1942, {"Drama", "Romance"}),
             item("5", "Fargo", 1996, {"Crime", "Drama", "Thriller"}),
             item("6", "Airplane!", 1980, {"Comedy"}),
             item("7", "Unknown Thing", 0, {"unknown"})};
  d.positive_above = 3.0f;
  p.sequences = {sequence(0, {0, 1, 2, 3, 4, 5}, {5, 4, 1, 3, 5, 2}, 3), sequence(1, {3, 6}, {4.5f, 2}, 1)};
  return p;
}

PreparedData small_books() {
  PreparedData p;
  Dataset& d = p.dataset;
  d.name = "amazon-books";
  d.users = {UserInfo{"A1", "", "", ""}};
  auto book = [](std::string raw, std::string title, std::string brand, std::string category) {
    ItemInfo it;
    it.raw_id = std::move(raw);
    it.title = std::move(title);
    it.brand = std::move(brand);
    it.category = std::move(category);
    return it;
  };
  d.items = {book("B1", "The Hobbit", "J.R.R. Tolkien", "Fantasy"), book("B2", "Dune", "Frank Herbert", "Science Fiction"),
             book("B3", "The Silmarillion", "J.R.R. Tolkien", "Fantasy"), book("B4", "Emma", "", "")};
  d.positive_above = 4.0f;
  p.sequences = {sequence(0, {0, 1, 2, 3}, {5, 3, 5, 4}, 2)};
  return p;
}

std::string expect_error(const std::function<void()>& body, std::initializer_list<std::string> parts) {
  try {
    body();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected an rlrf::Error";
  return {};
}

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

}  // namespace

// ---- items ----------------------------------------------------------------------------------------

TEST(ItemKnowledge, FromMetadataMovies) {
  PreparedData p = small_movies();
  std::vector<std::string> k = item_knowledge_from_metadata(p.dataset);
  ASSERT_EQ(k.size(), 7u);
  EXPECT_EQ(k[0], "Toy Story (1995). Genres: Animation, Children's, Comedy.");
  EXPECT_EQ(k[5], "Airplane! (1980). Genre: Comedy.");
  EXPECT_EQ(k[6], "Unknown Thing.");  // no year, genre "unknown" left out
}

TEST(ItemKnowledge, FromMetadataBooks) {
  std::vector<std::string> k = item_knowledge_from_metadata(small_books().dataset);
  EXPECT_EQ(k[0], "The Hobbit. Brand: J.R.R. Tolkien. Category: Fantasy.");
  EXPECT_EQ(k[3], "Emma.");
}

TEST(ItemKnowledge, FromKarFileWithFallbackAndErrors) {
  PreparedData p = small_movies();
  fs::path dir = fresh_temp_dir("knowledge_kar");
  write(dir / "item.klg",
        R"({"1": {"prompt": "Introduce movie Toy Story (1995) ...", "ans": "Toy Story is a 1995 animated film."},
            "3": {"prompt": "...", "ans": "Jaws 2 is a 1978 shark thriller."},
            "999": {"prompt": "...", "ans": "not an item here"}})");
  std::vector<std::string> k = item_knowledge_from_kar_file(p.dataset, dir / "item.klg");
  ASSERT_EQ(k.size(), 7u);
  EXPECT_EQ(k[0], "Toy Story is a 1995 animated film.");
  EXPECT_EQ(k[2], "Jaws 2 is a 1978 shark thriller.");
  EXPECT_EQ(k[1], "Heat (1995). Genres: Action, Crime, Thriller.");  // missing: metadata
  EXPECT_EQ(item_knowledge(p.dataset, "file:" + (dir / "item.klg").string()), k);
  EXPECT_EQ(item_knowledge(p.dataset, "metadata"), item_knowledge_from_metadata(p.dataset));

  write(dir / "syntax.klg", R"({"1": {"ans": "x"},})");
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "syntax.klg"); }, {"syntax.klg", "invalid JSON"});
  write(dir / "array.klg", R"(["a", "b"])");
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "array.klg"); }, {"array.klg", "keyed by item id", "array"});
  write(dir / "noans.klg", R"({"1": {"prompt": "p", "answer": "x"}})");
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "noans.klg"); }, {"noans.klg", "key \"1\"", "\"ans\""});
  write(dir / "type.klg", R"({"2": {"prompt": "p", "ans": 5}})");
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "type.klg"); }, {"type.klg", "key \"2\"", "must be a string"});
  write(dir / "other.klg", R"({"B0001": {"prompt": "p", "ans": "x"}})");
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "other.klg"); }, {"other.klg", "none of its 1 keys", "B0001"});
  expect_error([&] { item_knowledge_from_kar_file(p.dataset, dir / "absent.klg"); }, {"absent.klg"});
  expect_error([&] { item_knowledge(p.dataset, "llm"); }, {"'llm'", "metadata", "file:"});
}

// ---- users ----------------------------------------------------------------------------------------

TEST(UserHistory, KarWordingOfThePrefix) {
  PreparedData p = small_movies();
  EXPECT_EQ(user_history_text(p, 0), "\"Toy Story (1995)\", 5 stars; \"Heat (1995)\", 4 stars; \"Jaws 2 (1978)\", 1 stars; ");
  EXPECT_EQ(user_history_text(p, 1), "\"Casablanca (1942)\", 4.5 stars; ");
  EXPECT_EQ(user_text_for_encoding(p, 1, "Likes classics."), "\"Casablanca (1942)\", 4.5 stars. Likes classics.");
  EXPECT_EQ(user_text_for_encoding(p, 1, ""), "\"Casablanca (1942)\", 4.5 stars");
  EXPECT_EQ(user_text_for_encoding(p, 1, "Likes classics.", false), "Likes classics.");
  expect_error([&] { user_history_text(p, 2); }, {"user index 2"});
  // [prompt] item_genres: each item names its genres ("unknown" is none).
  EXPECT_EQ(history_text(p, 0, 1, true),
            "\"Heat (1995)\" (Action, Crime, Thriller), 4 stars; \"Jaws 2 (1978)\" (Horror, Thriller), 1 stars; ");
  PromptConfig c;
  c.item_genres = true;
  EXPECT_NE(build_user_prompt(p, 0, c).user.find("\"Toy Story (1995)\" (Animation, Children's, Comedy), 5 stars; "),
            std::string::npos);
}

TEST(UserProfile, HandComputedSummary) {
  PreparedData p = small_movies();
  // Prefix: Toy Story 5, Heat 4, Jaws 2 1 -> mean 3.33, 2 of 3 above 3; Thriller twice (4, 1).
  EXPECT_EQ(user_profile_summary(p, 0),
            "Rated 3 movies, 3.3 stars on average (a moderate rater); 67% rated above 3 stars, most often 5 stars (33%). "
            "Most watched genres: Thriller (2 movies, avg 2.5), Animation (1 movie, avg 5.0), Children's (1 movie, avg 5.0). "
            "Favourite genres: Animation (1 movie, avg 5.0), Children's (1 movie, avg 5.0), Comedy (1 movie, avg 5.0). "
            "Least liked genres: Horror (1 movie, avg 1.0), Thriller (2 movies, avg 2.5). "
            "Most watched decades: 1990s (2 movies, avg 4.5), 1970s (1 movie, avg 1.0). "
            "Best rated: \"Toy Story (1995)\" (5 stars). Worst rated: \"Jaws 2 (1978)\" (1 star).");
  EXPECT_EQ(user_profile_summary(p, 1),
            "Rated 1 movie, 4.5 stars on average (a generous rater); 100% rated above 3 stars, most often 4.5 stars (100%). "
            "Most watched genres: Drama (1 movie, avg 4.5), Romance (1 movie, avg 4.5). "
            "Most watched decades: 1940s (1 movie, avg 4.5). Best rated: \"Casablanca (1942)\" (4.5 stars).");
  p.sequences[1].prefix_len = 0;
  EXPECT_EQ(user_profile_summary(p, 1), "No rated movies in the history yet.");
}

TEST(UserProfile, UsesOnlyThePrefix) {
  PreparedData p = small_movies();
  const std::string before = user_profile_summary(p, 0);
  const std::string history = user_history_text(p, 0);
  p.sequences[0].ratings[3] = 1;  // Casablanca, after the prefix
  p.sequences[0].ratings[5] = 5;
  p.sequences[0].items[4] = 6;
  EXPECT_EQ(user_profile_summary(p, 0), before);
  EXPECT_EQ(user_history_text(p, 0), history);
  p.sequences[0].ratings[1] = 2;  // Heat, inside the prefix
  EXPECT_NE(user_profile_summary(p, 0), before);
  EXPECT_NE(user_history_text(p, 0), history);
}

TEST(UserProfile, BooksUseCategoriesAndBrands) {
  PreparedData p = small_books();
  // Prefix: The Hobbit 5, Dune 3; "above 4 stars" is the Books threshold.
  EXPECT_EQ(user_profile_summary(p, 0),
            "Rated 2 books, 4.0 stars on average (a generous rater); 50% rated above 4 stars, most often 5 stars (50%). "
            "Most read categories: Fantasy (1 book, avg 5.0), Science Fiction (1 book, avg 3.0). "
            "Favourite categories: Fantasy (1 book, avg 5.0). Least liked categories: Science Fiction (1 book, avg 3.0). "
            "Most read brands: J.R.R. Tolkien (1 book, avg 5.0), Frank Herbert (1 book, avg 3.0). "
            "Favourite brands: J.R.R. Tolkien (1 book, avg 5.0). Least liked brands: Frank Herbert (1 book, avg 3.0). "
            "Best rated: \"The Hobbit\" (5 stars). Worst rated: \"Dune\" (3 stars).");
}

TEST(UserKnowledgeFile, ReadsJsonlAndNamesTheLineOfErrors) {
  PreparedData p = small_movies();
  fs::path dir = fresh_temp_dir("knowledge_jsonl");
  write(dir / "k.jsonl", "{\"user\": \"8\", \"text\": \"Loves old dramas.\"}\n\n{\"user\": 7, \"text\": \"Action fan.\", \"score\": 0.4}\n");
  std::vector<std::string> k = user_knowledge_from_file(p.dataset, dir / "k.jsonl");
  EXPECT_EQ(k, (std::vector<std::string>{"Action fan.", "Loves old dramas."}));
  write(dir / "partial.jsonl", "{\"user\": \"8\", \"text\": \"x\"}\n");
  EXPECT_EQ(user_knowledge_from_file(p.dataset, dir / "partial.jsonl"), (std::vector<std::string>{"", "x"}));

  auto check = [&](const std::string& name, const std::string& text, std::initializer_list<std::string> parts) {
    write(dir / name, text);
    expect_error([&] { user_knowledge_from_file(p.dataset, dir / name); }, parts);
  };
  check("syntax.jsonl", "{\"user\": \"7\", \"text\": \"a\"}\n{\"user\": \"8\", \"text\": \"b\"\n", {"syntax.jsonl:2:", "invalid JSON"});
  check("notext.jsonl", "\n\n{\"user\": \"7\"}\n", {"notext.jsonl:3:", "\"text\""});
  check("nouser.jsonl", "{\"text\": \"a\"}\n", {"nouser.jsonl:1:", "\"user\""});
  check("type.jsonl", "{\"user\": \"7\", \"text\": [1]}\n", {"type.jsonl:1:", "must be a string"});
  check("array.jsonl", "[1, 2]\n", {"array.jsonl:1:", "JSON object"});
  check("unknown.jsonl", "{\"user\": \"7\", \"text\": \"a\"}\n{\"user\": \"99\", \"text\": \"b\"}\n",
        {"unknown.jsonl:2:", "unknown user \"99\""});
  check("dup.jsonl", "{\"user\": \"7\", \"text\": \"a\"}\n{\"user\": \"8\", \"text\": \"b\"}\n{\"user\": \"7\", \"text\": \"c\"}\n",
        {"dup.jsonl:3:", "\"7\"", "line 1"});
}

TEST(UserKnowledge, NamedSources) {
  PreparedData p = small_movies();
  EXPECT_TRUE(user_knowledge(p, "none").empty());
  std::vector<std::string> profiles = user_knowledge(p, "profile");
  ASSERT_EQ(profiles.size(), 2u);
  EXPECT_EQ(profiles[0], user_profile_summary(p, 0));
  fs::path dir = fresh_temp_dir("knowledge_sources");
  write(dir / "k.jsonl", "{\"user\": \"7\", \"text\": \"t\"}\n");
  EXPECT_EQ(user_knowledge(p, "file:" + (dir / "k.jsonl").string()), (std::vector<std::string>{"t", ""}));
  expect_error([&] { user_knowledge(p, "llm"); }, {"'llm'", "none", "profile", "file:"});
  expect_error([&] { user_knowledge(p, "file:" + (dir / "absent.jsonl").string()); }, {"absent.jsonl"});
}

// ---- real data ------------------------------------------------------------------------------------

class RealMovieLens : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::path dir = shared_dir() / "data" / "ml-100k";
    std::error_code ec;
    if (!fs::exists(dir / "u.data", ec)) return;
    PrepareConfig config;
    data_ = new PreparedData(prepare(load_movielens_100k(dir), config));
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  void SetUp() override {
    if (!data_) GTEST_SKIP() << "no MovieLens-100K under " << shared_dir() / "data" / "ml-100k";
  }
  static PreparedData* data_;
};
PreparedData* RealMovieLens::data_ = nullptr;

TEST_F(RealMovieLens, ItemKnowledgeFromMetadata) {
  std::vector<std::string> k = item_knowledge_from_metadata(data_->dataset);
  ASSERT_EQ(k.size(), 1682u);
  EXPECT_EQ(data_->dataset.items[0].raw_id, "1");
  EXPECT_EQ(k[0], "Toy Story (1995). Genres: Animation, Children's, Comedy.");
  for (const std::string& t : k) EXPECT_FALSE(t.empty());
}

TEST_F(RealMovieLens, ProfilesCoverEveryUserAndOnlyTheirPrefix) {
  std::vector<std::string> profiles = user_knowledge(*data_, "profile");
  ASSERT_EQ(profiles.size(), 943u);
  size_t longest = 0;
  for (size_t u = 0; u < profiles.size(); ++u) {
    const UserSequence& s = data_->sequences[u];
    ASSERT_GT(s.prefix_len, 0) << "user " << u;
    EXPECT_NE(profiles[u].find("Most watched genres:"), std::string::npos) << profiles[u];
    EXPECT_NE(profiles[u].find("Best rated:"), std::string::npos) << profiles[u];
    // Every title the profile quotes is in the user's prefix.
    for (size_t pos = profiles[u].find("\""); pos != std::string::npos;) {
      size_t end = profiles[u].find("\" (", pos + 1);
      ASSERT_NE(end, std::string::npos) << profiles[u];
      std::string title = profiles[u].substr(pos + 1, end - pos - 1);
      bool in_prefix = false;
      for (int32_t i = 0; i < s.prefix_len; ++i)
        in_prefix |= item_title_with_year(data_->dataset.items[static_cast<size_t>(s.items[static_cast<size_t>(i)])]) == title;
      EXPECT_TRUE(in_prefix) << "user " << u << ": \"" << title << "\" is not in the prefix";
      pos = profiles[u].find("\"", profiles[u].find(")", end + 3) + 1);
    }
    longest = std::max(longest, profiles[u].size());
  }
  EXPECT_LT(longest, 1500u);

  // Rewriting everything after the prefix leaves the profile and the history alone.
  PreparedData changed = *data_;
  for (UserSequence& s : changed.sequences)
    for (size_t i = static_cast<size_t>(s.prefix_len); i < s.ratings.size(); ++i) s.ratings[i] = 6 - s.ratings[i];
  for (int32_t u : {0, 17, 500, 942}) {
    EXPECT_EQ(user_profile_summary(changed, u), profiles[static_cast<size_t>(u)]);
    EXPECT_EQ(user_history_text(changed, u), user_history_text(*data_, u));
  }
}
