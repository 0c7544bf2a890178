// Tests of the run store: responses survive reopening, duplicates are refused, transactions are
// all-or-nothing, stage fingerprints and logs round-trip.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "pipeline/run_store.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;

TEST(RunStore, ResponsesPersistAcrossReopen) {
  fs::path dir = fresh_temp_dir("run_store_persist");
  {
    RunStore store(dir / "run.sqlite");
    store.put_responses({{0, 5, 0, "likes dramas", {1, 2, 3}, 40}, {0, 5, 1, "likes comedies \xF0\x9F\x8E\xAC", {4}, 40}});
    store.put_responses({{1, 7, 0, "r1", {}, 12}});
  }
  RunStore store(dir / "run.sqlite");
  EXPECT_EQ(store.count_responses(0), 2);
  EXPECT_EQ(store.count_responses(1), 1);
  auto rows = store.responses(0);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].text, "likes comedies \xF0\x9F\x8E\xAC");
  EXPECT_EQ(rows[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(rows[0].prompt_tokens, 40);
  EXPECT_EQ(store.response_keys(0), (std::vector<std::pair<int32_t, int>>{{5, 0}, {5, 1}}));
}

TEST(RunStore, DuplicateResponseRollsBackTheWholeBatch) {
  fs::path dir = fresh_temp_dir("run_store_dup");
  RunStore store(dir / "run.sqlite");
  store.put_responses({{0, 1, 0, "a", {}, 0}});
  EXPECT_THROW(store.put_responses({{0, 2, 0, "b", {}, 0}, {0, 1, 0, "again", {}, 0}}), Error);
  EXPECT_EQ(store.count_responses(0), 1);  // user 2's row was rolled back with the duplicate
}

TEST(RunStore, RewardsStagesLogsDocs) {
  fs::path dir = fresh_temp_dir("run_store_misc");
  RunStore store(dir / "run.sqlite");
  store.put_rewards(0, 0, {{0, 0, 3, 0, 0.5}, {0, 0, 3, 1, 0.25}});
  store.put_rewards(0, 0, {{0, 0, 3, 0, 0.75}});  // replaces the set
  auto r = store.rewards(0, 0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_DOUBLE_EQ(r[0].reward, 0.75);
  EXPECT_FALSE(store.stage_fingerprint("generate/0"));
  store.mark_stage_done("generate/0", "abc");
  EXPECT_EQ(*store.stage_fingerprint("generate/0"), "abc");
  store.clear_stage("generate/0");
  EXPECT_FALSE(store.stage_fingerprint("generate/0"));
  store.put_log("dpo", 1, 0, "{\"loss\":0.69}");
  store.put_log("dpo", 1, 1, "{\"loss\":0.6}");
  EXPECT_EQ(store.logs("dpo").size(), 2u);
  store.put_doc("eval", "{}");
  EXPECT_EQ(*store.doc("eval"), "{}");
  store.delete_round(0);
  EXPECT_TRUE(store.rewards(0, 0).empty());
}

// A run and a reader following its progress may open a new store at the same moment; neither may
// fail (both used to insert the schema version, and the second died on the primary key).
TEST(RunStore, OpeningANewStoreFromSeveralConnectionsAtOnceSucceeds) {
  fs::path dir = fresh_temp_dir("run_store_concurrent_open");
  for (int trial = 0; trial < 20; ++trial) {
    fs::path db = dir / ("run" + std::to_string(trial) + ".sqlite");
    std::atomic<int> failures{0};
    std::string first_error;
    std::mutex mu;
    std::vector<std::thread> openers;
    for (int t = 0; t < 4; ++t)
      openers.emplace_back([&] {
        try {
          RunStore store(db);
          store.count_responses(0);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          if (failures++ == 0) first_error = e.what();
        }
      });
    for (std::thread& t : openers) t.join();
    ASSERT_EQ(failures.load(), 0) << "trial " << trial << ": " << first_error;
  }
}
