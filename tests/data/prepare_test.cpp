// Preparation tests on the real MovieLens-100K: time order, prefixes, splits, list invariants of
// every setting, popularity, reproducibility, the prepared file, and leakage checks of the first
// stage (a user's future never changes that user's lists).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "data/data_test_files.h"
#include "data/first_stage.h"
#include "data/prepare.h"
#include "util/config.h"
#include "util/files.h"

using namespace rlrf;
using rlrf::test::expect_error;

namespace {

const Dataset& ml100k() {
  static const Dataset d = load_movielens_100k(test::ml100k_dir());
  return d;
}

bool have_ml100k() { return fs::exists(test::ml100k_dir() / "u.data"); }

#define REQUIRE_ML100K() \
  if (!have_ml100k()) GTEST_SKIP() << "no ml-100k in " << test::ml100k_dir()

std::string bytes_of(const PreparedData& p, const std::string& name) {
  fs::path path = fresh_temp_dir(name) / "prepared.bin";
  save_prepared(p, path);
  return read_file(path);
}

std::set<int32_t> prefix_set(const UserSequence& s) {
  return std::set<int32_t>(s.items.begin(), s.items.begin() + s.prefix_len);
}

// Invariants every setting shares.
void check_common(const PreparedData& p) {
  const PrepareConfig& c = p.config;
  ASSERT_EQ(p.sequences.size(), p.dataset.users.size());
  for (const RerankList& l : p.lists) {
    const UserSequence& s = p.sequences[static_cast<size_t>(l.user)];
    ASSERT_EQ(l.items.size(), static_cast<size_t>(c.list_size));
    ASSERT_EQ(l.labels.size(), l.items.size());
    ASSERT_EQ(l.seq_pos.size(), l.items.size());
    EXPECT_EQ(l.split, s.split);
    EXPECT_GE(l.begin, s.prefix_len);
    EXPECT_LE(l.end, static_cast<int32_t>(s.items.size()));
    EXPECT_LT(l.begin, l.end);
    std::set<int32_t> distinct(l.items.begin(), l.items.end());
    EXPECT_EQ(distinct.size(), l.items.size()) << "duplicate item in a list of user " << l.user;
    std::set<int32_t> prefix = prefix_set(s);
    for (size_t k = 0; k < l.items.size(); ++k) {
      EXPECT_FALSE(prefix.count(l.items[k])) << "prefix item " << l.items[k] << " in a list of user " << l.user;
      int32_t pos = l.seq_pos[k];
      if (pos >= 0) {  // an item of the window: the user's, with its label
        ASSERT_LT(pos, static_cast<int32_t>(s.items.size()));
        EXPECT_EQ(s.items[static_cast<size_t>(pos)], l.items[k]);
        EXPECT_GE(pos, l.begin);
        EXPECT_LT(pos, l.end);
        EXPECT_EQ(l.labels[k], s.ratings[static_cast<size_t>(pos)] > p.dataset.positive_above ? 1 : 0);
      } else {
        EXPECT_EQ(l.labels[k], 0);
      }
    }
  }
}

}  // namespace

TEST(Prepare, SequencesAreTimeOrderedWithKarPrefix) {
  REQUIRE_ML100K();
  PreparedData p = prepare(ml100k(), PrepareConfig{});
  int64_t total = 0;
  for (const UserSequence& s : p.sequences) {
    int32_t len = static_cast<int32_t>(s.items.size());
    total += len;
    EXPECT_EQ(s.prefix_len, std::min((len + 1) / 2, 30));
    EXPECT_TRUE(std::is_sorted(s.times.begin(), s.times.end()));
  }
  EXPECT_EQ(total, 100000);
}

TEST(Prepare, TiesInTimeKeepFileOrder) {
  Dataset d;
  d.name = "tiny";
  d.users.resize(1);
  d.items.resize(12);
  // Times 5,3,5,3,1,... : stable order by time keeps file order among equal times.
  std::vector<std::pair<int, int64_t>> rows = {{0, 5}, {1, 3}, {2, 5}, {3, 3}, {4, 1}, {5, 5}, {6, 3}};
  for (auto [item, t] : rows) d.ratings.push_back(Rating{0, item, 4.0f, t});
  d.prompt_history_cap = 30;
  PrepareConfig c;
  c.test_fraction = 0;
  c.valid_fraction = 0;
  c.list_size = 3;
  c.real_per_list = 2;
  PreparedData p = prepare(d, c);
  EXPECT_EQ(p.sequences[0].items, (std::vector<int32_t>{4, 1, 3, 6, 0, 2, 5}));
  EXPECT_EQ(p.sequences[0].prefix_len, 4);
}

// The one rule for what list building may know of a user: all of a training user's items, only the
// prompt prefix of a validation or test user.
TEST(Prepare, KnownItemsAreATrainingUsersAllAndAnEvaluationUsersPrefix) {
  UserSequence s;
  s.user = 3;
  s.items = {7, 2, 9, 4, 1};
  s.prefix_len = 2;
  s.split = Split::kTrain;
  auto known = [&] { return std::vector<int32_t>(known_items(s).begin(), known_items(s).end()); };
  EXPECT_EQ(known(), (std::vector<int32_t>{7, 2, 9, 4, 1}));
  s.split = Split::kValid;
  EXPECT_EQ(known(), (std::vector<int32_t>{7, 2}));
  s.split = Split::kTest;
  EXPECT_EQ(known(), (std::vector<int32_t>{7, 2}));
  s.prefix_len = 0;
  EXPECT_TRUE(known_items(s).empty());
  s.items.clear();
  s.split = Split::kTrain;
  EXPECT_TRUE(known_items(s).empty());
}

TEST(Prepare, SplitsAreSeededDisjointAndValidComesFromTrain) {
  REQUIRE_ML100K();
  PreparedData p = prepare(ml100k(), PrepareConfig{});
  PrepareCounts c = count(p);
  // 943 users: floor(943 * 0.9) = 848 in the pool, 95 test; floor(848 * 0.1) = 84 valid.
  EXPECT_EQ(c.users_per_split[2], 95);
  EXPECT_EQ(c.users_per_split[1], 84);
  EXPECT_EQ(c.users_per_split[0], 764);
  std::set<int32_t> test_users;
  for (const UserSequence& s : p.sequences)
    if (s.split == Split::kTest) test_users.insert(s.user);
  for (const RerankList& l : p.lists) {
    bool is_test = test_users.count(l.user) > 0;
    EXPECT_EQ(is_test, l.split == Split::kTest) << "user " << l.user;
  }
  // valid_fraction changes which training users validate, never the test users.
  PrepareConfig other;
  other.valid_fraction = 0.25;
  PreparedData q = prepare(ml100k(), other);
  std::set<int32_t> test_q, valid_q;
  for (const UserSequence& s : q.sequences) {
    if (s.split == Split::kTest) test_q.insert(s.user);
    if (s.split == Split::kValid) valid_q.insert(s.user);
  }
  EXPECT_EQ(test_q, test_users);
  EXPECT_EQ(valid_q.size(), 212u);  // floor(848 * 0.25)
  // Another seed gives another split.
  PrepareConfig seeded;
  seeded.seed = 7;
  PreparedData r = prepare(ml100k(), seeded);
  std::set<int32_t> test_r;
  for (const UserSequence& s : r.sequences)
    if (s.split == Split::kTest) test_r.insert(s.user);
  EXPECT_EQ(test_r.size(), 95u);
  EXPECT_NE(test_r, test_users);
}

TEST(Prepare, TestFoldsCoverEveryUserOnce) {
  REQUIRE_ML100K();
  const Dataset d = ml100k();
  std::map<int32_t, int> test_count;
  for (int k = 0; k < 3; ++k) {
    PrepareConfig c;
    c.folds = 3;
    c.fold = k;
    PreparedData p = prepare(d, c);
    PrepareCounts n = count(p);
    // 943 users: folds of 314, 314, 315 (positions [k n / 3, (k + 1) n / 3)); validation 10% of the rest.
    EXPECT_EQ(n.users_per_split[2], k < 2 ? 314 : 315);
    EXPECT_EQ(n.users_per_split[1], (943 - n.users_per_split[2]) / 10);
    for (const UserSequence& s : p.sequences)
      if (s.split == Split::kTest) ++test_count[s.user];
    for (const RerankList& l : p.lists) EXPECT_EQ(l.split, p.sequences[static_cast<size_t>(l.user)].split);
  }
  EXPECT_EQ(test_count.size(), 943u);
  for (auto& [u, n] : test_count) EXPECT_EQ(n, 1) << "user " << u;
  PrepareConfig bad;
  bad.folds = 3;
  bad.fold = 3;
  EXPECT_THROW(bad.validate(), Error);
}

TEST(Prepare, KarListsFollowSpec) {
  REQUIRE_ML100K();
  PreparedData p = prepare(ml100k(), PrepareConfig{});
  check_common(p);
  // Windows of 4 from the end of the prefix on, covering every later item once.
  std::map<int32_t, std::vector<const RerankList*>> by_user;
  for (const RerankList& l : p.lists) by_user[l.user].push_back(&l);
  int64_t expected_lists = 0;
  for (const UserSequence& s : p.sequences) {
    int32_t rest = static_cast<int32_t>(s.items.size()) - s.prefix_len;
    expected_lists += (rest + 3) / 4;
    const auto& ls = by_user[s.user];
    ASSERT_EQ(static_cast<int32_t>(ls.size()), (rest + 3) / 4) << "user " << s.user;
    int32_t next = s.prefix_len;
    for (const RerankList* l : ls) {
      EXPECT_EQ(l->begin, next);
      EXPECT_EQ(l->end, std::min(next + 4, static_cast<int32_t>(s.items.size())));
      next = l->end;
      int real = 0;
      for (int32_t pos : l->seq_pos) real += pos >= 0;
      EXPECT_EQ(real, l->end - l->begin);
      EXPECT_LE(real, 4);
      EXPECT_TRUE(l->initial_scores.empty());
    }
  }
  EXPECT_EQ(static_cast<int64_t>(p.lists.size()), expected_lists);
  // Shuffled: real items are not always at the front.
  int64_t front_real = 0;
  for (const RerankList& l : p.lists) front_real += l.seq_pos[0] >= 0;
  double share = double(front_real) / double(p.lists.size());
  EXPECT_GT(share, 0.25);
  EXPECT_LT(share, 0.55);  // about 4/10 of positions are real
  // KAR samples padding uniformly: padding may hold the user's own later items (label 0).
  int64_t own_padding = 0;
  for (const RerankList& l : p.lists) {
    const UserSequence& s = p.sequences[static_cast<size_t>(l.user)];
    std::set<int32_t> all(s.items.begin(), s.items.end());
    for (size_t k = 0; k < l.items.size(); ++k) own_padding += l.seq_pos[k] < 0 && all.count(l.items[k]);
  }
  EXPECT_GT(own_padding, 0);
}

TEST(Prepare, ReproducibleBytesAndSeedSensitive) {
  REQUIRE_ML100K();
  PrepareConfig c;
  std::string a = bytes_of(prepare(ml100k(), c), "rep_a");
  std::string b = bytes_of(prepare(ml100k(), c), "rep_b");
  EXPECT_EQ(a, b);
  c.seed = 43;
  std::string other = bytes_of(prepare(ml100k(), c), "rep_c");
  EXPECT_NE(a, other);
}

TEST(Prepare, PopularityIsHonestAndPaddingAvoidsTheUsersItems) {
  REQUIRE_ML100K();
  PrepareConfig c;
  c.setting = "popularity";
  PreparedData p = prepare(ml100k(), c);
  check_common(p);
  // item_popularity = training users' interactions + every user's prefix.
  std::vector<float> want(p.dataset.items.size(), 0.0f);
  for (const UserSequence& s : p.sequences) {
    size_t n = s.split == Split::kTrain ? s.items.size() : static_cast<size_t>(s.prefix_len);
    for (size_t k = 0; k < n; ++k) want[static_cast<size_t>(s.items[k])] += 1.0f;
  }
  EXPECT_EQ(p.item_popularity, want);
  // Padding never holds any item of the user; its draws follow popularity.
  std::vector<int64_t> drawn(p.dataset.items.size(), 0);
  for (const RerankList& l : p.lists) {
    const UserSequence& s = p.sequences[static_cast<size_t>(l.user)];
    std::set<int32_t> all(s.items.begin(), s.items.end());
    for (size_t k = 0; k < l.items.size(); ++k) {
      if (l.seq_pos[k] >= 0) continue;
      EXPECT_FALSE(all.count(l.items[k])) << "user " << l.user << " item " << l.items[k];
      EXPECT_GT(p.item_popularity[static_cast<size_t>(l.items[k])], 0.0f);
      ++drawn[static_cast<size_t>(l.items[k])];
    }
  }
  // Draw frequencies follow popularity once each user's exclusions are accounted for: the expected
  // count of item i is sum over lists of (padding size) * pop_i / (popularity mass left to the user)
  // for users who do not have i (first-draw approximation, close for 6 draws out of ~1,500 items).
  std::vector<double> expected(p.dataset.items.size(), 0.0);
  double total_mass = 0;
  for (float w : want) total_mass += w;
  std::map<int32_t, int> pads_of_user;
  for (const RerankList& l : p.lists)
    for (int32_t pos : l.seq_pos) pads_of_user[l.user] += pos < 0;
  for (auto [user, pads] : pads_of_user) {
    const UserSequence& s = p.sequences[static_cast<size_t>(user)];
    std::set<int32_t> all(s.items.begin(), s.items.end());
    double left = total_mass;
    for (int32_t it : all) left -= want[static_cast<size_t>(it)];
    for (size_t i = 0; i < expected.size(); ++i)
      if (!all.count(static_cast<int32_t>(i))) expected[i] += pads * want[i] / left;
  }
  std::vector<int32_t> order(p.dataset.items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return expected[a] > expected[b]; });
  for (int start : {0, 100, 400}) {  // groups of 50 items by expected frequency
    double got = 0, exp = 0;
    for (int k = start; k < start + 50; ++k) got += drawn[static_cast<size_t>(order[k])], exp += expected[static_cast<size_t>(order[k])];
    EXPECT_NEAR(got / exp, 1.0, 0.1) << "items ranked " << start << ".." << start + 49;
  }
  // The kar setting's lists differ.
  PreparedData k = prepare(ml100k(), PrepareConfig{});
  EXPECT_EQ(k.lists.size(), p.lists.size());
  EXPECT_EQ(k.item_popularity, p.item_popularity);
}

namespace {

// From-scratch item-kNN scores for `user` at window start `t`: cosine over a binary user-item
// matrix of the known sets with this user's row replaced by items[0, t).
std::vector<double> naive_knn(const PreparedData& p, int32_t user, int32_t t) {
  size_t n = p.dataset.items.size();
  std::vector<std::vector<int32_t>> rows;
  for (const UserSequence& s : p.sequences) {
    size_t len = s.user == user ? static_cast<size_t>(t)
                 : s.split == Split::kTrain ? s.items.size()
                                            : static_cast<size_t>(s.prefix_len);
    rows.emplace_back(s.items.begin(), s.items.begin() + static_cast<std::ptrdiff_t>(len));
  }
  const std::vector<int32_t>& h = rows[static_cast<size_t>(user)];
  std::vector<double> cnt(n, 0.0);
  for (auto& r : rows)
    for (int32_t i : r) cnt[static_cast<size_t>(i)] += 1;
  std::vector<double> score(n, 0.0);
  std::vector<uint8_t> mark(n, 0);
  for (auto& r : rows) {
    std::vector<int32_t> in_h;
    std::fill(mark.begin(), mark.end(), 0);
    for (int32_t i : r) mark[static_cast<size_t>(i)] = 1;
    for (int32_t i : h)
      if (mark[static_cast<size_t>(i)]) in_h.push_back(i);
    if (in_h.empty()) continue;
    double w = 0;
    for (int32_t i : in_h) w += 1.0 / std::sqrt(cnt[static_cast<size_t>(i)]);
    for (int32_t j : r) score[static_cast<size_t>(j)] += w;  // sum_{i in H} co(i,j)/sqrt(n_i)
  }
  for (size_t j = 0; j < n; ++j) score[j] = cnt[j] > 0 ? score[j] / std::sqrt(cnt[j]) : 0.0;
  return score;
}

void check_first_stage(const PreparedData& p) {
  check_common(p);
  const PrepareConfig& c = p.config;
  for (const RerankList& l : p.lists) {
    const UserSequence& s = p.sequences[static_cast<size_t>(l.user)];
    ASSERT_EQ(l.initial_scores.size(), l.items.size());
    EXPECT_TRUE(std::is_sorted(l.initial_scores.rbegin(), l.initial_scores.rend())) << "not in generator order";
    EXPECT_EQ(l.end, std::min(l.begin + c.first_stage_window, static_cast<int32_t>(s.items.size())));
    // Nothing the user saw before the window; labels = positive interactions inside the window.
    std::set<int32_t> before(s.items.begin(), s.items.begin() + l.begin);
    std::map<int32_t, int32_t> window;
    for (int32_t pos = l.begin; pos < l.end; ++pos) window[s.items[static_cast<size_t>(pos)]] = pos;
    for (size_t k = 0; k < l.items.size(); ++k) {
      EXPECT_FALSE(before.count(l.items[k]));
      auto w = window.find(l.items[k]);
      EXPECT_EQ(l.seq_pos[k], w == window.end() ? -1 : w->second);
      uint8_t want = w != window.end() && s.ratings[static_cast<size_t>(w->second)] > p.dataset.positive_above;
      EXPECT_EQ(l.labels[k], want);
    }
  }
}

PrepareConfig first_stage_config(const std::string& generator) {
  PrepareConfig c;
  c.setting = "first-stage";
  c.first_stage = generator;
  c.mf_factors = 8;
  c.mf_iterations = 4;
  c.first_stage_folds = 3;
  c.first_stage_window = 20;
  return c;
}

// The dataset with one user's ratings after its first `keep` (in time order) removed.
Dataset truncate_user(const Dataset& d, const UserSequence& s, int32_t keep) {
  std::set<int64_t> drop_items(s.items.begin() + keep, s.items.end());
  Dataset out = d;
  out.ratings.clear();
  for (const Rating& r : d.ratings)
    if (!(r.user == s.user && drop_items.count(r.item))) out.ratings.push_back(r);
  return out;
}

std::vector<RerankList> lists_of(const PreparedData& p, int32_t user) {
  std::vector<RerankList> out;
  for (const RerankList& l : p.lists)
    if (l.user == user) out.push_back(l);
  return out;
}

}  // namespace

TEST(PrepareFirstStage, ItemKnnMatchesFromScratchScores) {
  REQUIRE_ML100K();
  PreparedData p = prepare(ml100k(), first_stage_config("itemknn"));
  check_first_stage(p);
  std::vector<int32_t> catalog = catalog_items(p.dataset);
  // A few users of each split: the list is the top 10 of the from-scratch scores.
  std::map<Split, int> checked;
  for (const RerankList& l : p.lists) {
    if (checked[l.split] >= 2) continue;
    if (l.begin == p.sequences[static_cast<size_t>(l.user)].prefix_len) continue;  // a later window
    const UserSequence& s = p.sequences[static_cast<size_t>(l.user)];
    std::vector<double> score = naive_knn(p, l.user, l.begin);
    std::set<int32_t> before(s.items.begin(), s.items.begin() + l.begin);
    std::vector<std::pair<double, int32_t>> cand;
    for (int32_t it : catalog)
      if (!before.count(it)) cand.emplace_back(score[static_cast<size_t>(it)], it);
    std::sort(cand.begin(), cand.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    for (size_t k = 0; k < l.items.size(); ++k) {
      EXPECT_NEAR(l.initial_scores[k], cand[k].first, 1e-4 * std::max(1.0, cand[k].first)) << "user " << l.user;
      if (k + 1 < l.items.size() && std::abs(cand[k].first - cand[k + 1].first) > 1e-4)
        EXPECT_EQ(l.items[k], cand[k].second) << "user " << l.user << " rank " << k;
    }
    ++checked[l.split];
  }
  EXPECT_EQ(checked[Split::kTrain], 2);
  EXPECT_EQ(checked[Split::kValid], 2);
  EXPECT_EQ(checked[Split::kTest], 2);
  // Some positives and some empty lists, both far from degenerate.
  PrepareCounts c = count(p);
  EXPECT_GT(c.positive_rate[0], 0.03);
  EXPECT_LT(c.lists_without_positive[0], 0.9);
}

TEST(PrepareFirstStage, UsersFutureNeverChangesTheirLists) {
  REQUIRE_ML100K();
  for (const std::string gen : {"itemknn", "mf"}) {
    PrepareConfig c = first_stage_config(gen);
    PreparedData p = prepare(ml100k(), c);
    check_first_stage(p);
    // One long user per split: keep 70 items (prefix stays 30), the lists of the first 40 items must not change.
    for (Split split : {Split::kTrain, Split::kTest}) {
      const UserSequence* pick = nullptr;
      for (const UserSequence& s : p.sequences)
        if (s.split == split && s.items.size() >= 150) { pick = &s; break; }
      ASSERT_NE(pick, nullptr);
      PreparedData q = prepare(truncate_user(ml100k(), *pick, 70), c);
      ASSERT_EQ(q.sequences[static_cast<size_t>(pick->user)].prefix_len, 30);
      ASSERT_EQ(q.sequences[static_cast<size_t>(pick->user)].split, split);
      std::vector<RerankList> before = lists_of(p, pick->user), after = lists_of(q, pick->user);
      ASSERT_EQ(after.size(), 2u);  // windows [30,50) and [50,70)
      for (size_t k = 0; k < 2; ++k) {
        EXPECT_EQ(after[k].items, before[k].items) << gen << " " << split_name(split) << " window " << k;
        for (size_t j = 0; j < after[k].items.size(); ++j)
          EXPECT_NEAR(after[k].initial_scores[j], before[k].initial_scores[j], 1e-5);
      }
    }
  }
}

TEST(PrepareFirstStage, MfListsAndDropOption) {
  REQUIRE_ML100K();
  PrepareConfig c = first_stage_config("mf");
  PreparedData p = prepare(ml100k(), c);
  check_first_stage(p);
  PrepareCounts counts = count(p);
  EXPECT_GT(counts.positive_rate[2], 0.03);
  c.drop_lists_without_positive = true;
  PreparedData d = prepare(ml100k(), c);
  PrepareCounts dc = count(d);
  EXPECT_DOUBLE_EQ(dc.lists_without_positive[0], 0.0);
  EXPECT_EQ(dc.lists_per_split[1], counts.lists_per_split[1]);  // evaluation keeps its lists
  EXPECT_EQ(dc.lists_per_split[2], counts.lists_per_split[2]);
  EXPECT_DOUBLE_EQ(dc.lists_without_positive[2], counts.lists_without_positive[2]);
  EXPECT_EQ(dc.dropped_train_lists,
            static_cast<int64_t>(std::llround(counts.lists_without_positive[0] * counts.lists_per_split[0])));
  EXPECT_EQ(dc.lists_per_split[0] + dc.dropped_train_lists, counts.lists_per_split[0]);
  // Same config, same bytes.
  EXPECT_EQ(bytes_of(d, "mf_a"), bytes_of(prepare(ml100k(), c), "mf_b"));
}

TEST(PreparedFile, RoundTripAndErrorsNameTheFile) {
  REQUIRE_ML100K();
  PrepareConfig c = first_stage_config("itemknn");
  c.seed = 9;
  PreparedData p = prepare(ml100k(), c);
  fs::path dir = fresh_temp_dir("prepared_file");
  fs::path path = dir / "prepared.bin";
  save_prepared(p, path);
  PreparedData q = load_prepared(path);
  EXPECT_EQ(q.config.seed, 9u);
  EXPECT_EQ(q.config.setting, "first-stage");
  EXPECT_EQ(q.config.mf_factors, 8);
  EXPECT_EQ(q.dataset.items[0].title, "Toy Story");
  EXPECT_EQ(q.dataset.attribute_values, p.dataset.attribute_values);
  EXPECT_EQ(q.sequences.size(), p.sequences.size());
  EXPECT_EQ(q.lists.size(), p.lists.size());
  EXPECT_EQ(q.lists.back().initial_scores, p.lists.back().initial_scores);
  EXPECT_EQ(q.item_popularity, p.item_popularity);
  EXPECT_EQ(bytes_of(q, "prepared_file_again"), read_file(path));  // nothing lost

  std::string bytes = read_file(path);
  test::write_text(dir / "cut.bin", bytes.substr(0, bytes.size() / 2));
  expect_error([&] { load_prepared(dir / "cut.bin"); }, {(dir / "cut.bin").string(), "truncated"});
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  test::write_text(dir / "flip.bin", flipped);
  expect_error([&] { load_prepared(dir / "flip.bin"); }, {(dir / "flip.bin").string(), "checksum"});
  std::string version = bytes;
  version[8] = 9;
  test::write_text(dir / "version.bin", version);
  expect_error([&] { load_prepared(dir / "version.bin"); }, {(dir / "version.bin").string(), "version 9"});
  test::write_text(dir / "other.bin", "PK\x03\x04 something else entirely");
  expect_error([&] { load_prepared(dir / "other.bin"); }, {(dir / "other.bin").string(), "magic"});
  expect_error([&] { load_prepared(dir / "absent.bin"); }, {(dir / "absent.bin").string()});
}

TEST(PrepareConfig, ReadsSectionAndRejectsBadValues) {
  ConfigFile f = ConfigFile::parse(
      "[prepare]\ndataset = \"ml-1m\"\nseed = 7\nsetting = \"first-stage\"\nfirst_stage = \"mf\"\n"
      "first_stage_window = 25\ndrop_lists_without_positive = true\n",
      "p.toml");
  PrepareConfig c;
  c.read(f.section("prepare"));
  EXPECT_EQ(c.dataset, "ml-1m");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.setting, "first-stage");
  EXPECT_EQ(c.first_stage, "mf");
  EXPECT_EQ(c.first_stage_window, 25);
  EXPECT_TRUE(c.drop_lists_without_positive);
  EXPECT_EQ(c.list_size, 10);
  auto read = [](const char* text) { PrepareConfig d; d.read(ConfigFile::parse(text, "p.toml").section("prepare")); };
  expect_error([&] { read("[prepare]\nsetting = \"random\"\n"); }, {"p.toml", "random"});
  expect_error([&] { read("[prepare]\nlist_sise = 5\n"); }, {"p.toml", "list_sise"});
  expect_error([&] { read("[prepare]\nreal_per_list = 11\n"); }, {"p.toml", "real_per_list"});
  expect_error([&] { read("[prepare]\nseed = -1\n"); }, {"p.toml", "seed"});
}

TEST(Prepare, TooFewItemsIsAnErrorNotAHang) {
  Dataset d;
  d.name = "tiny";
  d.users.resize(1);
  d.items.resize(6);
  for (int i = 0; i < 6; ++i) d.ratings.push_back(Rating{0, i, 5.0f, i});
  PrepareConfig c;
  c.test_fraction = 0;
  c.valid_fraction = 0;
  expect_error([&] { prepare(d, c); }, {"too few items"});
}
