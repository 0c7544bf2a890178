// `rlrf summary RUN...`: one table over finished runs (a sweep's cells, a noisy and a clean start):
// per run its DPO settings, test users' card accuracy per round, test NDCG@5 of the LLM rows, the
// last round against KAR (paired over users) and DPO's held-out pair accuracy per round. A run with
// [eval] folds reads the pooled results and every fold's diagnostics.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "pipeline/experiment.h"
#include "pipeline/report_docs.h"
#include "pipeline/run_config.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/strings.h"

namespace {

namespace fs = std::filesystem;

// The diagnostics of a run: its own, or every fold's (rows of one round merged: card accuracy over
// all test users, held-out accuracy averaged over folds).
struct RoundSummary {
  double card_sum = 0;
  int64_t card_users = 0;
  double heldout_sum = 0;
  int heldout_n = 0;
  int64_t concordant = 0, concordance_pairs = 0;  // reward vs card accuracy, training users
};

std::map<int, RoundSummary> read_diagnostics(const fs::path& dir) {
  std::vector<fs::path> files;
  if (fs::exists(dir / "diagnostics.json")) files.push_back(dir / "diagnostics.json");
  for (int k = 0; fs::exists(dir / fmt::format("fold-{}", k)); ++k)
    if (fs::exists(dir / fmt::format("fold-{}", k) / "diagnostics.json")) files.push_back(dir / fmt::format("fold-{}", k) / "diagnostics.json");
  std::map<int, RoundSummary> out;
  for (const fs::path& f : files) {
    nlohmann::json d = nlohmann::json::parse(rlrf::read_file(f), nullptr, false);
    RLRF_CHECK(!d.is_discarded() && d.is_array(), "{}: not a diagnostics file (a JSON array per round)", f.string());
    if (files.size() > 1 && f == dir / "diagnostics.json") continue;
    for (const rlrf::RoundDiagnostics& row : d.get<std::vector<rlrf::RoundDiagnostics>>()) {
      RoundSummary& s = out[row.round];
      for (double v : row.test_card_accuracy) {
        s.card_sum += v;
        ++s.card_users;
      }
      s.concordance_pairs += row.reward_card_pairs;
      s.concordant += static_cast<int64_t>(std::llround(row.reward_card_concordance * static_cast<double>(row.reward_card_pairs)));
      if (row.heldout && row.heldout->pairs > 0) {
        s.heldout_sum += row.heldout->accuracy;
        ++s.heldout_n;
      }
    }
  }
  return out;
}

rlrf::RunConfig run_config_of(const fs::path& dir) {
  fs::path file = dir / "config.toml";
  if (!fs::exists(file)) file = dir / "fold-0" / "config.toml";
  RLRF_CHECK(fs::exists(file), "{}: no config.toml (is it a run directory of `rlrf run`?)", dir.string());
  return rlrf::RunConfig::from_file(rlrf::ConfigFile::load(file));
}

int run_summary(int argc, char** argv) {
  CLI::App app{"One table over finished runs: DPO settings, test users' card accuracy per round, test NDCG@5 per round,\n"
               "the last round against KAR (paired over users) and DPO's held-out pair accuracy.\n\n"
               "examples:\n  rlrf summary runs/misaligned runs/clean\n  rlrf summary runs/sweep/*",
               "rlrf summary"};
  std::vector<std::string> dirs;
  std::string model = "dlcm";
  app.add_option("runs", dirs, "run directories")->required();
  app.add_option("--model", model, "the reranker whose rows are shown")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string md =
      "| run | beta | DPO epochs | N | card acc. (test) by round | NDCG@5 (test) KAR, rounds | last round - KAR NDCG@5 | "
      "users up / down | sign test p | held-out pair acc. by round | reward-card concordance by round |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const std::string& d : dirs) {
    const fs::path dir(d);
    const rlrf::RunConfig c = run_config_of(dir);
    RLRF_CHECK(fs::exists(dir / "results.json"), "{}: no results.json (the run has not finished its evaluation)", d);
    const rlrf::ExperimentResults res = rlrf::load_experiment(dir / "results.json");
    const std::map<int, RoundSummary> diag = read_diagnostics(dir);
    std::vector<std::string> card, heldout, ndcg, concordance;
    for (auto& [r, s] : diag) {
      card.push_back(s.card_users ? fmt::format("{:.3f}", s.card_sum / double(s.card_users)) : "-");
      concordance.push_back(s.concordance_pairs ? fmt::format("{:.3f}", double(s.concordant) / double(s.concordance_pairs)) : "-");
      if (r > 0) heldout.push_back(s.heldout_n ? fmt::format("{:.3f}", s.heldout_sum / s.heldout_n) : "-");
    }
    const rlrf::RowResult *kar = nullptr, *last = nullptr;
    for (const rlrf::RowResult& row : res.rows) {
      if (row.model != model) continue;
      const rlrf::RowLabel label = rlrf::row_label(row);
      if (!label.is_llm() || label.encoding != rlrf::RowEncoding::kRun) continue;  // LLM rows, the run's encoding
      if (label.kind == rlrf::RowKind::kKar && !kar) kar = &row;
      if (label.kind == rlrf::RowKind::kRound) last = &row;
      ndcg.push_back(fmt::format("{:.4f}", rlrf::row_stat(row, "ndcg", 5).mean));
    }
    std::string diff = "-", users = "-", p = "-";
    if (kar && last) {
      rlrf::PairedComparison cmp = rlrf::compare_rows(*last, *kar, "ndcg", 5);
      diff = fmt::format("{:+.4f}", cmp.mean_diff);
      users = fmt::format("{} / {}", cmp.users_a_better, cmp.users_b_better);
      p = fmt::format("{:.3g}", cmp.sign_test_p);
    }
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", d, c.dpo.beta, c.dpo.epochs, c.generate.n,
                      rlrf::join(card, " → "), rlrf::join(ndcg, " → "), diff, users, p, heldout.empty() ? "-" : rlrf::join(heldout, ", "),
                      rlrf::join(concordance, ", "));
  }
  std::printf("%s", md.c_str());
  return 0;
}

rlrf::cli::VerbRegistration reg_summary({"summary", "one table over finished runs (card accuracy, NDCG@5 by round, held-out pairs)", 75, run_summary});

}  // namespace
