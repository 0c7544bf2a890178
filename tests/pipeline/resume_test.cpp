// A run killed with SIGKILL in the middle of generation resumes where it stopped: the final store
// holds every (user, sample) exactly once, and the same texts as a run that was never interrupted
// (each sequence's random stream depends on its seed, prompt and sample, not on its batch), whether
// its chunks ran in worker processes (the killed run) or in the run's own process (the clean one).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "run_process.h"
#include "pipeline/run_store.h"
#include "util/files.h"

using namespace rlrf;
using namespace rlrf::test;

namespace {

// `workers`: generation chunks side by side in worker processes (2) or one by one in the run's
// process (1); the texts must not depend on it.
std::string config_text(const fs::path& dir, int workers) {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = 0\nmax_users = 30\n"
         "[prepare]\ndataset = \"ml-100k\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = 3\nmax_new_tokens = 16\nbatch_size = 4\nchunk = 4\ntemperature = 1.0\n"
         "workers = " + std::to_string(workers) + "\n"
         "[knowledge]\nencoder = \"hash\"\n";
}

}  // namespace

TEST(Resume, KillDuringGenerationThenRerunLosesAndDuplicatesNothing) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path base = fresh_temp_dir("resume");
  fs::path killed = base / "killed", clean = base / "clean";
  write_file_atomic(base / "killed.toml", config_text(killed, 2));
  write_file_atomic(base / "clean.toml", config_text(clean, 1));
  const int64_t total = 90 * 3;  // 30 users per split, 3 samples

  // Follows the run's progress through the store while it writes (as a user watching a run would).
  pid_t pid = spawn_run(base / "killed.toml", base / "killed.log");
  int64_t at_kill = 0;
  bool exited_early = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (std::chrono::steady_clock::now() < deadline) {
    at_kill = count_now(killed / "run.sqlite");
    if (at_kill >= 8) break;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited_early = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited_early) {
    kill(pid, SIGKILL);
    wait_exit(pid);
  }
  at_kill = count_now(killed / "run.sqlite");
  ASSERT_GT(at_kill, 0) << "generation never started; the run's log:\n" << read_file(base / "killed.log");
  ASSERT_LT(at_kill, total) << "the run finished before it could be killed; make it longer";

  auto run_to_end = [&](const char* name) {
    fs::path log = base / (std::string(name) + ".log");
    int rc = wait_exit(spawn_run(base / (std::string(name) + ".toml"), log));
    EXPECT_EQ(rc, 0) << read_file(log);
    return rc;
  };
  ASSERT_EQ(run_to_end("killed"), 0);
  ASSERT_EQ(run_to_end("clean"), 0);

  RunStore resumed(killed / "run.sqlite"), fresh(clean / "run.sqlite");
  std::vector<StoredResponse> a = resumed.responses(0), b = fresh.responses(0);
  ASSERT_EQ(static_cast<int64_t>(a.size()), total);
  std::set<std::pair<int32_t, int>> keys;
  for (const StoredResponse& r : a) keys.insert({r.user, r.sample});
  EXPECT_EQ(static_cast<int64_t>(keys.size()), total) << "duplicated responses";
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].user, b[i].user);
    EXPECT_EQ(a[i].sample, b[i].sample);
    EXPECT_EQ(a[i].ids, b[i].ids) << "user " << a[i].user << " sample " << a[i].sample;
  }
  // A third run finds the stage current and changes nothing.
  ASSERT_EQ(run_to_end("killed"), 0);
  EXPECT_EQ(RunStore(killed / "run.sqlite").count_responses(0), total);
}
