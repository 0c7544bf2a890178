// `rlrf compare A.json B.json`: paired comparison of two experiment results (from `rlrf rerank` or
// `rlrf run`) on the same lists and seeds: per-metric mean difference with its paired std over
// seeds, and a sign test over users.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "cli/verbs.h"
#include "pipeline/experiment.h"
#include "util/error.h"

namespace {

// "name" or "name@model" -> the row; with one file the rows are picked inside it.
const rlrf::RowResult& pick(const rlrf::ExperimentResults& r, const std::string& spec, const std::string& file) {
  std::string name = spec, model;
  if (auto at = spec.rfind('@'); at != std::string::npos) {
    name = spec.substr(0, at);
    model = spec.substr(at + 1);
  }
  const rlrf::RowResult* found = nullptr;
  for (const rlrf::RowResult& row : r.rows) {
    if (row.name != name || (!model.empty() && row.model != model)) continue;
    if (found) rlrf::fail("{}: row '{}' is ambiguous; add @dlcm or @prm", file, spec);
    found = &row;
  }
  if (!found) {
    std::string names;
    for (const rlrf::RowResult& row : r.rows) names += fmt::format("\n  {}@{}", row.name, row.model);
    rlrf::fail("{}: no row '{}'; rows are:{}", file, spec, names);
  }
  return *found;
}

int run_compare(int argc, char** argv) {
  CLI::App app{"Paired comparison of reranking results: A - B per metric with the paired std over common seeds and a\n"
               "sign test over users. Rows are matched by name and model; with --row-a/--row-b any two rows.\n\n"
               "examples:\n  rlrf compare runs/a/results.json runs/b/results.json\n"
               "  rlrf compare runs/demo/results.json --row-a 'RLRF4Rec round 2@dlcm' --row-b 'KAR (SFT LLM, before DPO)@dlcm'",
               "rlrf compare"};
  std::string file_a, file_b, row_a, row_b;
  std::vector<int> ks = {5};
  app.add_option("a", file_a, "results JSON of A")->required();
  app.add_option("b", file_b, "results JSON of B (default: A's file)");
  app.add_option("--row-a", row_a, "row of A: 'name' or 'name@model'");
  app.add_option("--row-b", row_b, "row of B: 'name' or 'name@model'");
  app.add_option("--k", ks, "cut-offs to compare")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (file_b.empty()) file_b = file_a;
  rlrf::ExperimentResults a = rlrf::load_experiment(file_a), b = rlrf::load_experiment(file_b);
  std::vector<std::pair<std::string, rlrf::PairedComparison>> rows;
  auto add = [&](const rlrf::RowResult& ra, const rlrf::RowResult& rb, const std::string& label) {
    for (int k : ks)
      for (const char* metric : {"map", "ndcg"}) rows.push_back({label, rlrf::compare_rows(ra, rb, metric, k)});
  };
  if (!row_a.empty() || !row_b.empty()) {
    RLRF_CHECK(!row_a.empty() && !row_b.empty(), "give both --row-a and --row-b");
    add(pick(a, row_a, file_a), pick(b, row_b, file_b), row_a + " vs " + row_b);
  } else {
    RLRF_CHECK(file_a != file_b, "comparing a file with itself needs --row-a and --row-b");
    for (const rlrf::RowResult& ra : a.rows) {
      const rlrf::RowResult* rb = b.find(ra.name, ra.model);
      if (rb) add(ra, *rb, fmt::format("{}{}", ra.name, ra.model.empty() ? "" : "@" + ra.model));
    }
    RLRF_CHECK(!rows.empty(), "no row of {} has a namesake in {}", file_a, file_b);
  }
  if (a.setting != b.setting || a.dataset != b.dataset)
    std::fprintf(stderr, "warning: different data: A is %s/%s, B is %s/%s\n", a.dataset.c_str(), a.setting.c_str(), b.dataset.c_str(),
                 b.setting.c_str());
  std::printf("A = %s\nB = %s\n\n%s", file_a.c_str(), file_b.c_str(), rlrf::markdown_comparisons(rows).c_str());
  return 0;
}

rlrf::cli::VerbRegistration reg_compare({"compare", "paired comparison of two results files (mean diff, paired std, sign test)", 70, run_compare});

}  // namespace
