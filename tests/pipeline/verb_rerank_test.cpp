// `rlrf rerank` reads what its config says: the models and seeds of [eval] models and seeds (the
// run's keys), and says so in the table it prints (a user comparing runs reads the seeds from that
// line); a setting spelled in another section is refused naming its home.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "util/files.h"

using namespace rlrf;

namespace {

int shell(const std::string& cmd) {
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(VerbRerank, TakesModelAndSeedsFromTheConfig) {
  fs::path dir = fresh_temp_dir("verb_rerank");
  const std::string bin = RLRF_BIN;
  ASSERT_EQ(shell(bin + " prepare --dataset ml-100k --setting kar --out '" + dir.string() + "' 2> '" +
                  (dir / "prepare.log").string() + "'"),
            0)
      << read_file(dir / "prepare.log");
  write_file_atomic(dir / "rerank.toml",
             "[rerank]\nepochs = 1\nknowledge = \"profile\"\n[knowledge]\nencoder = \"hash\"\n"
             "[eval]\nmodels = [\"dlcm\"]\nseeds = [7]\n");
  const std::string out = (dir / "out.txt").string(), log = (dir / "rerank.log").string();
  ASSERT_EQ(shell(bin + " rerank --prepared '" + (dir / "prepared.bin").string() + "' --config '" +
                  (dir / "rerank.toml").string() + "' --out '" + (dir / "rerank").string() + "' > '" + out + "' 2> '" +
                  log + "'"),
            0)
      << read_file(log);
  const std::string table = read_file(out);
  EXPECT_NE(table.find("mean ± std over seeds 7\n"), std::string::npos) << table;
  EXPECT_EQ(table.find("PRM"), std::string::npos) << "[eval] models = [\"dlcm\"] trained PRM too:\n" << table;
  EXPECT_NE(table.find("DLCM"), std::string::npos) << table;
  // --model on the command line still wins over the config.
  ASSERT_EQ(shell(bin + " rerank --prepared '" + (dir / "prepared.bin").string() + "' --config '" +
                  (dir / "rerank.toml").string() + "' --model prm --seeds 3 --out '" + (dir / "rerank2").string() +
                  "' > '" + out + "' 2> '" + log + "'"),
            0)
      << read_file(log);
  const std::string table2 = read_file(out);
  EXPECT_NE(table2.find("mean ± std over seeds 3\n"), std::string::npos) << table2;
  EXPECT_EQ(table2.find("DLCM"), std::string::npos) << table2;
  // The old spelling of the seeds: an error naming the key to use, before any training.
  ASSERT_NE(shell(bin + " rerank --prepared '" + (dir / "prepared.bin").string() + "' --config '" +
                  (dir / "rerank.toml").string() + "' --set rerank.seeds=[3] --out '" + (dir / "rerank3").string() +
                  "' > '" + out + "' 2> '" + log + "'"),
            0);
  const std::string error = read_file(log);
  EXPECT_NE(error.find("[rerank]: key 'seeds' is not read here: use [eval] seeds"), std::string::npos) << error;
}
