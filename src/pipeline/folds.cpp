// [eval] folds = K: the whole run K times, fold k's users as the test users of run k (reward
// models, SFT and DPO on the others), then one report over the users of all folds. Every user is a
// test user exactly once, so paired statistics per user have K times the users of one split.
#include <cstdint>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "pipeline/experiment.h"
#include "pipeline/folds.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

std::filesystem::path fold_dir(const RunConfig& config, int fold) {
  return std::filesystem::path(config.run.dir) / fmt::format("fold-{}", fold);
}

RunConfig fold_config(const RunConfig& config, int fold) {
  // A deep copy of the parsed TOML (set() changes the file it is called on).
  ConfigFile file = ConfigFile::parse(config.file.canonical(), config.file.path());
  const int k = config.eval.folds;
  file.set("eval.folds=1");
  file.set(fmt::format("prepare.folds={}", k));
  file.set(fmt::format("prepare.fold={}", fold));
  file.set("run.dir=" + nlohmann::json(fold_dir(config, fold).string()).dump());
  RunConfig sub = RunConfig::from_file(file);
  sub.source = config.source;
  return sub;
}

namespace {

// Row results of several folds (disjoint test users) as one: per seed slot, the users and their
// metrics concatenated, the test means weighted by each fold's list count.
RowResult pool_rows(const std::vector<const RowResult*>& rows) {
  RowResult out = *rows.front();
  for (size_t i = 0; i < out.seeds.size(); ++i) {
    SeedResult& s = out.seeds[i];
    s.users.clear();
    s.per_user.clear();
    MetricTable sum;
    double best_valid = 0, seconds = 0;
    for (const RowResult* r : rows) {
      RLRF_CHECK(r->seeds.size() == out.seeds.size(), "row '{}' / {} has {} seeds in one fold and {} in another", out.name,
                 out.model, r->seeds.size(), out.seeds.size());
      const SeedResult& x = r->seeds[i];
      for (int k = 0; k < kNumMetricKs; ++k) {
        sum.map[static_cast<size_t>(k)] += x.test.map[static_cast<size_t>(k)] * static_cast<double>(x.test.count);
        sum.ndcg[static_cast<size_t>(k)] += x.test.ndcg[static_cast<size_t>(k)] * static_cast<double>(x.test.count);
      }
      sum.count += x.test.count;
      s.users.insert(s.users.end(), x.users.begin(), x.users.end());
      s.per_user.insert(s.per_user.end(), x.per_user.begin(), x.per_user.end());
      best_valid += x.best_valid_map5;
      seconds += x.train_seconds;
    }
    for (int k = 0; k < kNumMetricKs; ++k) {
      sum.map[static_cast<size_t>(k)] /= std::max<double>(1.0, static_cast<double>(sum.count));
      sum.ndcg[static_cast<size_t>(k)] /= std::max<double>(1.0, static_cast<double>(sum.count));
    }
    s.test = sum;
    s.best_valid_map5 = best_valid / static_cast<double>(rows.size());
    s.train_seconds = seconds;
  }
  return out;
}

}  // namespace

ExperimentResults pool_experiments(const std::vector<ExperimentResults>& folds) {
  ExperimentResults out;
  out.dataset = folds.front().dataset;
  out.setting = folds.front().setting;
  for (const RowResult& row : folds.front().rows) {
    std::vector<const RowResult*> rows;
    for (const ExperimentResults& f : folds)
      if (const RowResult* r = f.find(row.name, row.model)) rows.push_back(r);
    if (rows.size() == folds.size()) out.rows.push_back(pool_rows(rows));
  }
  return out;
}

void write_fold_report(const RunConfig& config) {
  const int k = config.eval.folds;
  const std::filesystem::path dir(config.run.dir);
  std::string md = "# RLRF4Rec run report, pooled over folds\n\n";
  md += fmt::format("Config: `{}`. Design: {} folds of all users; run k (`fold-k/`, its own report) has fold k's users as test "
                    "users and trains the reward models, SFT and DPO on the others. Every user is a test user once; the tables "
                    "pool the test users of all folds (means over lists weighted by each fold's list count; paired statistics "
                    "per user, each user's metric averaged over the reranker seeds {}).\n\n",
                    config.source, k, nlohmann::json(config.eval.seeds).dump());
  std::vector<std::string> settings = {config.prepare.setting};
  settings.insert(settings.end(), config.eval.also_settings.begin(), config.eval.also_settings.end());
  for (size_t si = 0; si < settings.size(); ++si) {
    const std::string& setting = settings[si];
    const std::string file = si == 0 ? "results.json" : "results_" + setting + ".json";
    std::vector<ExperimentResults> folds;
    for (int f = 0; f < k; ++f) {
      const std::filesystem::path p = fold_dir(config, f) / file;
      RLRF_CHECK(std::filesystem::exists(p), "fold report: {} is missing (fold {} did not finish its evaluation)", p.string(), f);
      folds.push_back(load_experiment(p));
    }
    ExperimentResults pooled = pool_experiments(folds);
    save_experiment(pooled, dir / file);
    const std::vector<std::string>& models = si == 0 || config.eval.also_models.empty() ? config.eval.models : config.eval.also_models;
    md += fmt::format("## Test metrics on `{}` lists (all folds)\n\n", setting);
    md += results_section(pooled, models, si == 0 ? std::vector<int>{1, 3, 5, 7, 10} : std::vector<int>{5, 10},
                          config.knowledge.user_history);
  }

  // Card accuracy of test users' evaluation knowledge, pooled; per round against round 0 per user.
  std::vector<nlohmann::json> diags;
  for (int f = 0; f < k; ++f) {
    const std::filesystem::path p = fold_dir(config, f) / "diagnostics.json";
    if (std::filesystem::exists(p)) diags.push_back(nlohmann::json::parse(read_file(p)));
  }
  if (static_cast<int>(diags.size()) == k) {
    std::map<int, std::map<int32_t, double>> by_round;  // round -> user -> card accuracy
    std::map<int, std::vector<double>> fold_means;
    for (const nlohmann::json& d : diags)
      for (const nlohmann::json& row : d) {
        const int r = row.value("round", 0);
        const auto users = row.value("test_users", std::vector<int32_t>{});
        const auto scores = row.value("test_card_accuracy", std::vector<double>{});
        for (size_t i = 0; i < users.size() && i < scores.size(); ++i) by_round[r][users[i]] = scores[i];
        fold_means[r].push_back(row.value("card_accuracy_test_eval", 0.0));
      }
    md += "## Card accuracy of test users' knowledge (all folds)\n\n";
    md += fmt::format("Share of statements agreeing with the user's true card, of each round's evaluation knowledge ([eval] "
                      "decode = {}); sign test over users against round 0.\n\n| round | users | mean | per fold | vs round 0: "
                      "mean change | users up / down / same | sign test p |\n|---|---|---|---|---|---|---|\n",
                      config.eval.decode);
    for (auto& [r, users] : by_round) {
      double mean = 0;
      for (auto& [u, v] : users) mean += v;
      mean /= std::max<double>(1.0, static_cast<double>(users.size()));
      std::vector<std::string> per_fold;
      for (double m : fold_means[r]) per_fold.push_back(fmt::format("{:.3f}", m));
      std::string vs = "| - | - | -";
      if (r > 0 && by_round.count(0)) {
        int64_t up = 0, down = 0, same = 0;
        double diff = 0;
        for (auto& [u, v] : users) {
          auto it = by_round[0].find(u);
          if (it == by_round[0].end()) continue;
          diff += v - it->second;
          if (v > it->second + 1e-12) ++up;
          else if (v < it->second - 1e-12) ++down;
          else ++same;
        }
        vs = fmt::format("| {:+.4f} | {} / {} / {} | {:.3g}", diff / std::max<double>(1.0, double(up + down + same)), up, down, same,
                         sign_test_p_value(up, down));
      }
      md += fmt::format("| {} | {} | {:.4f} | {} {} |\n", r, users.size(), mean, join(per_fold, ", "), vs);
    }
    md += "\n";
  }
  md += "Each fold's own report (rewards, DPO diagnostics, examples): `fold-*/report.md`.\n";
  write_file_atomic(dir / "report.md", md);
  log_info("folds: pooled report at {}", (dir / "report.md").string());
}

}  // namespace rlrf
