// The export tests' runs: a few users of ml-100k through SFT (LoRA or full) and DPO rounds on the
// demo model, with a two-epoch reranker's score margin as the reward (continuous: every round trains),
// stopped after the last DPO round; and `rlrf export` from the tests.
#pragma once
#include <cstdlib>
#include <string>
#include <utility>

#include "run_process.h"
#include "util/files.h"

namespace rlrf::test {

inline std::string export_run_config(const fs::path& dir, const std::string& sft_finetune, int rounds) {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = " + std::to_string(rounds) + "\nmax_users = 8\n"
         "[prepare]\ndataset = \"ml-100k\"\nsetting = \"first-stage\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = 3\nmax_new_tokens = 16\nbatch_size = 12\n"
         "[sft]\nenabled = true\ntargets = \"card\"\nfinetune = \"" + sft_finetune + "\"\nepochs = 1\nbatch_size = 8\nlr = 2e-3\n"
         + (sft_finetune == "lora" ? "[sft.lora]\nr = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\"]\n" : "") +
         "[knowledge]\nencoder = \"hash\"\n"
         // A continuous reward (the reranker's score margin) from one in-sample reranker: few ties.
         "[reward]\ntrain_knowledge = \"profile\"\nfolds = 1\nmetric = \"margin\"\n"
         "[rerank]\nepochs = 2\npatience = 1\n"
         "[dpo]\nbatch_size = 2\ngrad_accum = 2\nepochs = 1\nlr = 1e-2\nheldout_fraction = 0.0\n"
         "[dpo.lora]\nr = 8\nalpha = 16\n"
         "target_modules = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]\n";
}

// Writes the config into `base`/run.toml and runs it until its last DPO round.
inline std::pair<int, std::string> run_for_export(const fs::path& base, const std::string& sft_finetune, int rounds) {
  write_file_atomic(base / "run.toml", export_run_config(base / "run", sft_finetune, rounds));
  return run_rlrf(base / "run.toml", base / "run.log", "--until dpo");
}

// `rlrf export ARGS`; the exit code and stderr.
inline std::pair<int, std::string> run_export(const std::string& args, const fs::path& log) {
  std::string cmd = std::string(RLRF_BIN) + " export " + args + " > /dev/null 2> '" + log.string() + "'";
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

}  // namespace rlrf::test
