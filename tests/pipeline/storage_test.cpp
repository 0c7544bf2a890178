// A run whose disk fills, or whose directory turns read-only, stops with an error that names the file
// and the cause, keeps everything finished, and resumes cleanly once space (or write access) returns.
// The run directory lives on a small tmpfs mounted for the test (root only; skipped, saying why,
// where mounting is not allowed).
#include <gtest/gtest.h>

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "run_process.h"
#include "util/files.h"

using namespace rlrf;
using namespace rlrf::test;

namespace {

struct Tmpfs {
  fs::path dir;
  bool mounted = false;
  std::string why;
  Tmpfs(const fs::path& d, const char* options) : dir(d) {
    ensure_dir(dir);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options) == 0) mounted = true;
    else why = std::strerror(errno);
  }
  void remount(bool read_only) {
    ASSERT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), "size=64m"), 0)
        << std::strerror(errno);
  }
  ~Tmpfs() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

// Fills the file system of `dir` until `leave` bytes are free.
void fill(const fs::path& file, uint64_t leave) {
  std::ofstream out(file, std::ios::binary);
  std::string block(4096, '\0');
  while (true) {
    const fs::space_info s = fs::space(file.parent_path());
    if (s.available <= leave + block.size()) break;
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
    out.flush();
    if (!out) break;
  }
}

std::string storage_run_config(const fs::path& dir) {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = 1\nmax_users = 16\n"
         "[prepare]\ndataset = \"ml-100k\"\nsetting = \"kar\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = 3\nmax_new_tokens = 24\nbatch_size = 12\ndtype = \"bf16\"\n"
         "[sft]\nenabled = true\nepochs = 1\nbatch_size = 8\nlr = 2e-3\n"
         "[knowledge]\nencoder = \"hash\"\n"
         "[reward]\nfolds = 2\n"
         "[rerank]\nepochs = 2\npatience = 1\ndtype = \"bf16\"\n"
         "[dpo]\nbatch_size = 2\ngrad_accum = 2\nepochs = 1\nlr = 1e-3\n"
         "[eval]\nmodels = [\"dlcm\"]\nseeds = [1]\n";
}

}  // namespace

TEST(Storage, DiskFullAndReadOnlyStopClearlyAndResume) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const fs::path base = fresh_temp_dir("storage");
  Tmpfs disk(base / "mnt", "size=64m");
  if (!disk.mounted) GTEST_SKIP() << "cannot mount a tmpfs for the run directory here (" << disk.why << "; needs root)";
  const fs::path run = disk.dir / "run", config = base / "run.toml";
  write_file_atomic(config, storage_run_config(run));
  auto [rc0, log0] = run_rlrf(config, base / "first.log", "--until generate");
  ASSERT_EQ(rc0, 0) << log0;
  const int64_t round0 = RunStore(run / "run.sqlite").count_responses(0);
  ASSERT_EQ(round0, 3 * 16 * 3);

  // The disk fills: the next stages stop with the file and the cause, nothing finished is lost.
  fill(disk.dir / "filler", 300000);
  auto [rc1, log1] = run_rlrf(config, base / "full.log");
  EXPECT_NE(rc1, 0) << log1;
  EXPECT_NE(log1.find("error: "), std::string::npos) << log1;
  EXPECT_TRUE(log1.find("No space left on device") != std::string::npos || log1.find("bytes free") != std::string::npos) << log1;
  EXPECT_NE(log1.find(run.string()), std::string::npos) << "the error names no file of the run:\n" << log1;
  EXPECT_NE(log1.find("rerun the same command to resume"), std::string::npos) << log1;
  EXPECT_EQ(RunStore(run / "run.sqlite").count_responses(0), round0);

  // Space returns: the rerun resumes; what was done is current, not redone.
  fs::remove(disk.dir / "filler");
  auto [rc2, log2] = run_rlrf(config, base / "resumed.log", "--until generate");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("generate/0: current"), std::string::npos) << log2;
  EXPECT_EQ(log2.find("sft step"), std::string::npos) << "SFT ran again:\n" << log2;
  EXPECT_EQ(RunStore(run / "run.sqlite").count_responses(0), round0);

  // Read-only: a clear error naming the store and saying the file system is read-only.
  disk.remount(true);
  auto [rc3, log3] = run_rlrf(config, base / "readonly.log");
  EXPECT_NE(rc3, 0) << log3;
  EXPECT_NE(log3.find((run / "run.sqlite").string()), std::string::npos) << log3;
  EXPECT_NE(log3.find("is read-only"), std::string::npos) << log3;
  disk.remount(false);
  auto [rc4, log4] = run_rlrf(config, base / "final.log");
  ASSERT_EQ(rc4, 0) << log4;
  EXPECT_NE(log4.find("generate/0: current"), std::string::npos) << log4;
  EXPECT_EQ(RunStore(run / "run.sqlite").count_responses(0), round0);
  EXPECT_EQ(RunStore(run / "run.sqlite").count_responses(1), round0);
  EXPECT_TRUE(fs::exists(run / "report.md"));
}
