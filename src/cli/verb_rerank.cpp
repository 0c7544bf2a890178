// `rlrf rerank`: trains the rerankers (DLCM / PRM) without and with knowledge over several seeds and
// reports test-user metrics next to the list-order and popularity baselines; writes a results JSON
// with per-seed values and per-user metrics (for paired comparisons) and, optionally, checkpoints.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <algorithm>
#include <cstdio>

#include "cli/verbs.h"
#include "data/prepare.h"
#include "pipeline/experiment.h"
#include "rerank/checkpoint.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/metrics.h"
#include "rerank/reranker.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/strings.h"

namespace {

std::string model_title(const std::string& m) { return m == "dlcm" ? "DLCM" : "PRM"; }

int run(int argc, char** argv) {
  CLI::App app{"Train and evaluate the rerankers (DLCM / PRM) without and with knowledge over seeds; print test-user\n"
               "MAP@K and NDCG@K (K = 1, 3, 5, 7, 10) beside the list-order and popularity baselines; write\n"
               "OUT/rerank_results.json (per-seed values, per-user metrics).\n\n"
               "example: rlrf rerank --prepared runs/ml100k/prepared.bin --model both --knowledge profile --seeds 1,2,3",
               "rlrf rerank"};
  std::string prepared_path, config_path, model, knowledge, seeds_text, out_dir, cache_dir, device, item_knowledge;
  std::vector<std::string> sets;
  int epochs = 0;
  bool save_models = false;
  app.add_option("--prepared", prepared_path, "prepared data (rlrf prepare)")->required()->check(CLI::ExistingFile);
  app.add_option("--config", config_path, "TOML file; its [rerank] section is read first")->check(CLI::ExistingFile);
  app.add_option("--set", sets, "override: rerank.key=value (repeatable)");
  app.add_option("--model", model, "dlcm | prm | both (default: the config's [rerank] model when it sets one, else both)");
  app.add_option("--knowledge", knowledge,
                 "user knowledge: none | profile | file:PATH (default profile; with none, the knowledge rows use item "
                 "knowledge only)");
  app.add_option("--item-knowledge", item_knowledge, "metadata | file:PATH (KAR JSON) | none (default metadata)");
  app.add_option("--seeds", seeds_text,
                 fmt::format("comma-separated training seeds (default: the config's [rerank] seeds, else {})",
                             fmt::join(rlrf::RerankConfig{}.seeds, ",")));
  app.add_option("--epochs", epochs, "maximum epochs per training (default 20; early stopping on validation MAP@5)");
  app.add_option("--device", device, "cpu | cuda | auto (default cpu)");
  app.add_option("--out", out_dir, "output directory (default: <prepared dir>/rerank)");
  app.add_option("--cache-dir", cache_dir, "encoding cache (default: OUT/encode-cache)");
  app.add_flag("--save-models", save_models, "also write OUT/models/<model>-<knowledge>-seed<N>.rrk");
  CLI11_PARSE(app, argc, argv);

  rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse("", "(defaults)") : rlrf::ConfigFile::load(config_path);
  for (const std::string& s : sets) file.set(s);
  rlrf::RerankConfig cfg;
  cfg.read(file.section("rerank"));
  if (!knowledge.empty()) cfg.knowledge = knowledge;
  if (!item_knowledge.empty()) cfg.item_knowledge = item_knowledge;
  if (epochs > 0) cfg.train.epochs = epochs;
  if (!device.empty()) cfg.train.device = device;
  if (!cache_dir.empty()) cfg.cache_dir = cache_dir;
  if (!seeds_text.empty()) {
    cfg.seeds.clear();
    for (auto part : rlrf::split(seeds_text, ",")) {
      auto v = rlrf::parse_int(rlrf::trim(part));
      RLRF_CHECK(v.has_value(), "--seeds '{}': '{}' is not an integer", seeds_text, part);
      cfg.seeds.push_back(static_cast<int>(*v));
    }
  }
  if (model.empty() && file.section("rerank").has("model")) model = cfg.train.model;
  std::vector<std::string> models;
  if (model.empty() || model == "both") models = {"dlcm", "prm"};
  else if (model == "dlcm" || model == "prm") models = {model};
  else rlrf::fail("--model '{}' (use dlcm, prm or both)", model);
  RLRF_CHECK(cfg.knowledge == "none" || cfg.knowledge == "profile" || rlrf::starts_with(cfg.knowledge, "file:"),
             "--knowledge '{}' (use none, profile or file:PATH)", cfg.knowledge);
  RLRF_CHECK(!(cfg.knowledge == "none" && cfg.item_knowledge == "none"),
             "--knowledge none with --item-knowledge none leaves no knowledge row to train");

  const rlrf::fs::path out = out_dir.empty() ? rlrf::fs::path(prepared_path).parent_path() / "rerank" : rlrf::fs::path(out_dir);
  rlrf::ensure_dir(out);
  rlrf::PreparedData data = rlrf::load_prepared(prepared_path);
  auto test_lists = rlrf::lists_of_split(data, rlrf::Split::kTest);
  RLRF_CHECK(!test_lists.empty(), "{}: no test lists", prepared_path);
  rlrf::log_info("rerank: {} ({} setting): {} train / {} valid / {} test lists", data.dataset.name, data.config.setting,
                 rlrf::lists_of_split(data, rlrf::Split::kTrain).size(),
                 rlrf::lists_of_split(data, rlrf::Split::kValid).size(), test_lists.size());

  rlrf::KnowledgeSource source;
  source.user = cfg.knowledge;
  source.item = cfg.item_knowledge;
  source.encoder = cfg.encoder;
  source.cache_dir = cfg.cache_dir.empty() ? out / "encode-cache" : rlrf::fs::path(cfg.cache_dir);
  source.user_history = cfg.user_text_history;
  rlrf::KnowledgeVectors kv = rlrf::build_knowledge_vectors(data, source);
  // The knowledge row's name: what was given to the model.
  const std::string know_label = cfg.knowledge == "none"           ? "item knowledge"
                                 : cfg.item_knowledge == "none"    ? cfg.knowledge + " user knowledge"
                                 : cfg.knowledge == "profile"      ? "profile knowledge"
                                                                   : "file knowledge";

  rlrf::ExperimentResults results;
  results.dataset = data.dataset.name;
  results.setting = data.config.setting;
  auto baseline = [&](const std::string& name, const std::string& which) {
    results.rows.push_back({name, "", {rlrf::seed_result(rlrf::evaluate_baseline(data, rlrf::Split::kTest, which), 0)}});
  };
  baseline(rlrf::list_order_name(data.config.setting), "list_order");
  baseline("popularity", "popularity");

  // One job per (model, with knowledge, seed), run side by side; each row keeps its seed order.
  struct Job {
    size_t row;
    std::string model;
    bool with;
    int seed;
  };
  std::vector<Job> jobs;
  for (const std::string& m : models) {
    for (bool with : {false, true}) {
      results.rows.push_back({with ? know_label : "no knowledge", m, std::vector<rlrf::SeedResult>(cfg.seeds.size())});
      for (int seed : cfg.seeds) jobs.push_back({results.rows.size() - 1, m, with, seed});
    }
  }
  const int workers = rlrf::rerank_jobs(cfg);
  rlrf::log_info("rerank: {} trainings, {} side by side", jobs.size(), workers);
  // Each training in a worker process of its own (rlrf::run_trainings says why not threads).
  auto describe = [&](int64_t i) {
    const Job& job = jobs[static_cast<size_t>(i)];
    return fmt::format("{} / {} seed {}", model_title(job.model), results.rows[job.row].name, job.seed);
  };
  rlrf::run_trainings(
      static_cast<int64_t>(jobs.size()), cfg,
      [&](int64_t i) {
        const Job& job = jobs[static_cast<size_t>(i)];
        rlrf::RerankTrainConfig c = cfg.train;
        c.model = job.model;
        c.seed = job.seed;
        const rlrf::KnowledgeVectors k = job.with ? kv : rlrf::KnowledgeVectors{};
        auto t0 = std::chrono::steady_clock::now();
        rlrf::Reranker r = rlrf::train_reranker(data, k, c);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rlrf::EvalResult e = rlrf::evaluate(r, data, k, rlrf::Split::kTest);
        if (save_models)
          rlrf::save_reranker(r, out / "models" / fmt::format("{}-{}-seed{}.rrk", job.model, job.with ? "knowledge" : "base", job.seed));
        return rlrf::seed_result_to_json(rlrf::seed_result(e, job.seed, r, secs));
      },
      [&](int64_t i, const std::string& result) {
        const Job& job = jobs[static_cast<size_t>(i)];
        rlrf::SeedResult s = rlrf::seed_result_from_json(result, describe(i));
        rlrf::log_info("rerank: {}: test MAP@5 {:.4f} NDCG@5 {:.4f} (best epoch {} of {}, valid MAP@5 {:.4f}, {:.0f} s)",
                       describe(i), s.test.map_at(5), s.test.ndcg_at(5), s.best_epoch, s.epochs_run, s.best_valid_map5,
                       s.train_seconds);
        const size_t slot = static_cast<size_t>(std::find(cfg.seeds.begin(), cfg.seeds.end(), job.seed) - cfg.seeds.begin());
        results.rows[job.row].seeds[slot] = std::move(s);
      },
      describe);

  std::printf("%s: %s setting, test users (%zu lists); mean ± std over seeds %s\n\n%s\n", data.dataset.name.c_str(),
              data.config.setting.c_str(), test_lists.size(), fmt::format("{}", fmt::join(cfg.seeds, ",")).c_str(),
              rlrf::markdown_table(results).c_str());
  // What the knowledge adds, paired: the same seed and the same test lists on both sides.
  // And what each model adds over ranking by popularity alone.
  std::vector<std::pair<std::string, rlrf::PairedComparison>> gains;
  const rlrf::RowResult* popularity = results.find("popularity", "");
  for (const std::string& m : models) {
    const rlrf::RowResult* with = results.find(know_label, m);
    const rlrf::RowResult* without = results.find("no knowledge", m);
    for (int k : {5, 10})
      for (const char* metric : {"map", "ndcg"})
        gains.push_back({fmt::format("{} {} vs no knowledge", model_title(m), know_label), rlrf::compare_rows(*with, *without, metric, k)});
    for (const rlrf::RowResult* row : {without, with})
      for (const char* metric : {"map", "ndcg"})
        gains.push_back({fmt::format("{} {} vs popularity", model_title(m), row->name), rlrf::compare_rows(*row, *popularity, metric, 5)});
  }
  std::printf("%s\n", rlrf::markdown_comparisons(gains).c_str());
  rlrf::save_experiment(results, out / "rerank_results.json");
  std::printf("wrote %s (rlrf compare reads it)\n", (out / "rerank_results.json").string().c_str());
  return 0;
}

}  // namespace

static rlrf::cli::VerbRegistration reg({"rerank", "train/evaluate DLCM and PRM rerankers with and without knowledge", 20, run});
