// The RLRF loop (the paper's Algorithm 1): SFT warm start (optional), then for each round generate
// N responses per user, reward them with the recommender, pair best and worst, and train the policy
// with DPO; finally regenerate with the last policy, evaluate every round's knowledge, and report.
#include "pipeline/run.h"

#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <string>

#include "pipeline/folds.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/log.h"
#include "runtime/runtime.h"

namespace rlrf {

namespace {

// Runs one stage; an error that escapes it names the stage and says that what finished is kept.
template <typename F>
auto in_stage(const RunConfig& config, const std::string& stage, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    fail("stage {}: {}\n(everything finished before is kept in {}; rerun the same command to resume)", stage, e.what(),
         (std::filesystem::path(config.run.dir) / "run.sqlite").string());
  }
}

}  // namespace

void run_pipeline(const RunConfig& config, const RunOptions& options) {
  if (config.eval.folds > 1) {
    // Every user a test user once: the whole loop per fold, then one pooled report.
    for (int k = 0; k < config.eval.folds; ++k) {
      log_info("folds: fold {} of {} ({})", k + 1, config.eval.folds, fold_dir(config, k).string());
      run_pipeline(fold_config(config, k), options);
    }
    if (options.until.empty()) write_fold_report(config);
    return;
  }
  static const char* kStages[] = {"prepare", "sft", "generate", "reward", "pairs", "dpo", "evaluate", "report"};
  bool known = options.until.empty();
  for (const char* s : kStages) known = known || options.until == s;
  RLRF_CHECK(known, "unknown stage '{}' for --until (prepare, sft, generate, reward, pairs, dpo, evaluate, report)", options.until);
  if (config.run.threads > 0) init_threads(config.run.threads);
  auto start = std::chrono::steady_clock::now();
  RunContext ctx = in_stage(config, "prepare", [&] { return open_run(config); });
  auto stop = [&](const char* stage) { return options.until == stage; };
  if (stop("prepare")) return;
  in_stage(config, "sft", [&] { stage_sft(ctx); });
  if (stop("sft")) return;
  const int rounds = config.run.rounds;
  for (int r = 0; r <= rounds; ++r) {
    in_stage(config, fmt::format("generate/{}", r), [&] { stage_generate(ctx, r); });
    if (stop("generate")) return;
    in_stage(config, fmt::format("reward/{}", r), [&] { stage_reward(ctx, r); });
    if (stop("reward")) return;
    if (r == rounds) break;
    in_stage(config, fmt::format("pairs/{}", r), [&] { stage_pairs(ctx, r); });
    if (stop("pairs")) return;
    in_stage(config, fmt::format("dpo/{}", r + 1), [&] { stage_dpo(ctx, r + 1); });
    if (stop("dpo") && r + 1 == rounds) return;
  }
  if (config.eval.decode == "greedy")
    for (int r = 0; r <= rounds; ++r) in_stage(config, fmt::format("generate-greedy/{}", r), [&] { stage_generate_greedy(ctx, r); });
  in_stage(config, "evaluate", [&] { stage_evaluate(ctx); });
  if (stop("evaluate")) return;
  in_stage(config, "report", [&] { stage_report(ctx); });
  double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60.0;
  log_info("run: finished in {:.1f} min; report at {}", minutes, (ctx.dir / "report.md").string());
}

}  // namespace rlrf
