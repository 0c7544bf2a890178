// scripts/sweep.sh, the documented DPO grid, end to end on a tiny run and a 2 x 1 grid (SWEEP_BETAS,
// SWEEP_EPOCHS; the full grid is the same loop over more values): every cell finishes from a copy
// of the base run (round 0's responses found current, not generated again), the N = 8 cell
// follows the best N = 4 cell, and the table has one row per cell. The script drives `rlrf run`
// with overrides the config checks; a check that refuses them breaks the sweep, which this test
// then shows.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "util/files.h"
#include "util/strings.h"

using namespace rlrf;

TEST(Sweep, EveryCellRunsFromTheBaseAndTheTableHasOneRowEach) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const fs::path base = fresh_temp_dir("sweep"), out = base / "out";
  write_file_atomic(base / "tiny.toml",
                    "[run]\nrounds = 1\nmax_users = 8\n"
                    "[prepare]\ndataset = \"ml-100k\"\n"
                    "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
                    "[generate]\nn = 4\nmax_new_tokens = 8\nbatch_size = 16\n"
                    "[knowledge]\nencoder = \"hash\"\n"
                    "[reward]\nfolds = 1\n"
                    "[rerank]\nepochs = 1\npatience = 1\n"
                    "[dpo]\nbatch_size = 2\ngrad_accum = 1\n"
                    "[eval]\nmodels = [\"dlcm\"]\nprofile_row = false\n");
  const fs::path log = base / "sweep.log";
  const std::string cmd = "SWEEP_BETAS='0.1 0.3' SWEEP_EPOCHS=1 RLRF='" + std::string(RLRF_BIN) + "' '" + (source_dir() / "scripts" / "sweep.sh").string() +
                          "' '" + (base / "tiny.toml").string() + "' '" + out.string() + "' > '" + log.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string text = read_file(log);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  const std::string table = read_file(out / "sweep.md");
  int rows = 0;
  for (std::string_view line : split(table, "\n"))
    if (starts_with(line, "| ") && line.find("beta") != std::string_view::npos && line.find("-epochs") != std::string_view::npos) ++rows;
  EXPECT_EQ(rows, 3) << table;
  for (const char* beta : {"0.1", "0.3"})
    for (const char* epochs : {"1"})
      EXPECT_TRUE(fs::exists(out / (std::string("beta") + beta + "-epochs" + epochs + "-n4") / "report.md")) << beta << " " << epochs;
  // Each N = 4 cell found the base's round-0 responses current instead of generating them again.
  size_t current = 0;
  for (size_t at = text.find("generate/0: current"); at != std::string::npos; at = text.find("generate/0: current", at + 1))
    ++current;
  EXPECT_GE(current, 2u) << text;
  EXPECT_NE(table.find("-n8"), std::string::npos) << table;
}
