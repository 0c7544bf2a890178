// `rlrf rerank`: trains the rerankers (DLCM / PRM) without and with knowledge over several seeds and
// reports test-user metrics next to the list-order and popularity baselines; writes a results JSON
// with per-seed values and per-user metrics (for paired comparisons) and, optionally, checkpoints.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <algorithm>
#include <cstdio>

#include "cli/verbs.h"
#include "data/prepare.h"
#include "pipeline/experiment.h"
#include "pipeline/run_config.h"
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

int run_rerank(int argc, char** argv) {
  CLI::App app{"Train and evaluate the rerankers (DLCM / PRM) without and with knowledge over seeds; print test-user\n"
               "MAP@K and NDCG@K (K = 1, 3, 5, 7, 10) beside the list-order and popularity baselines; write\n"
               "OUT/rerank_results.json (per-seed values, per-user metrics). A --config is read as a run's: [rerank]\n"
               "(training), [knowledge] (encoder, item, user_history), [eval] (seeds, models).\n\n"
               "example: rlrf rerank --prepared runs/ml100k/prepared.bin --model both --knowledge profile --seeds 1,2,3",
               "rlrf rerank"};
  const rlrf::RerankConfig rerank_defaults;
  const rlrf::KnowledgeConfig knowledge_defaults;
  const rlrf::EvalConfig eval_defaults;
  std::string prepared_path, config_path, model, knowledge, seeds_text, out_dir, cache_dir, device, item_knowledge;
  std::vector<std::string> sets;
  int epochs = 0;
  bool save_models = false;
  app.add_option("--prepared", prepared_path, "prepared data (rlrf prepare)")->required()->check(CLI::ExistingFile);
  app.add_option("--config", config_path, "TOML file: its [rerank], [knowledge] and [eval] sections")->check(CLI::ExistingFile);
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  app.add_option("--model", model, fmt::format("dlcm | prm | both (default: [eval] models, else {})", fmt::join(eval_defaults.models, ",")));
  app.add_option("--knowledge", knowledge,
                 fmt::format("user knowledge: none | profile | file:PATH (default: [rerank] knowledge, else {}; with none, the "
                             "knowledge rows use item knowledge only)",
                             rerank_defaults.knowledge));
  app.add_option("--item-knowledge", item_knowledge,
                 fmt::format("metadata | file:PATH (KAR JSON) | none (default: [knowledge] item, else {})", knowledge_defaults.item));
  app.add_option("--seeds", seeds_text,
                 fmt::format("comma-separated training seeds (default: [eval] seeds, else {})", fmt::join(eval_defaults.seeds, ",")));
  app.add_option("--epochs", epochs,
                 fmt::format("maximum epochs per training (default: [rerank] epochs, else {}; early stopping on validation MAP@5)",
                             rerank_defaults.train.epochs));
  app.add_option("--device", device, fmt::format("cpu | cuda | auto (default: [rerank] device, else {})", rerank_defaults.train.device));
  app.add_option("--out", out_dir, "output directory (default: <prepared dir>/rerank)");
  app.add_option("--cache-dir", cache_dir, "encoding cache (default: [rerank] cache_dir, else OUT/encode-cache)");
  app.add_flag("--save-models", save_models, "also write OUT/models/<model>-<knowledge>-seed<N>.rrk");
  CLI11_PARSE(app, argc, argv);

  rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse("", "(defaults)") : rlrf::ConfigFile::load(config_path);
  for (const std::string& s : sets) file.set(s);
  rlrf::RerankConfig cfg = rlrf::read_rerank_section(file.section("rerank"), /*rerank_verb=*/true);
  rlrf::KnowledgeConfig know;
  const rlrf::ConfigSection know_section = file.section("knowledge");
  know.read(know_section);
  know_section.check_no_unknown_keys();
  rlrf::EvalConfig eval = rlrf::read_eval_seeds_and_models(file.section("eval"));
  if (!knowledge.empty()) cfg.knowledge = knowledge;
  if (!item_knowledge.empty()) know.item = item_knowledge;
  if (epochs > 0) cfg.train.epochs = epochs;
  if (!device.empty()) cfg.train.device = device;
  if (!cache_dir.empty()) cfg.cache_dir = cache_dir;
  if (!seeds_text.empty()) {
    eval.seeds.clear();
    for (auto part : rlrf::split(seeds_text, ",")) {
      auto v = rlrf::parse_int(rlrf::trim(part));
      RLRF_CHECK(v.has_value(), "--seeds '{}': '{}' is not an integer", seeds_text, part);
      eval.seeds.push_back(static_cast<int>(*v));
    }
  }
  std::vector<std::string> models = eval.models;
  if (model == "both") models = {"dlcm", "prm"};
  else if (model == "dlcm" || model == "prm") models = {model};
  else if (!model.empty()) rlrf::fail("--model '{}' (use dlcm, prm or both)", model);
  RLRF_CHECK(cfg.knowledge == "none" || cfg.knowledge == "profile" || rlrf::starts_with(cfg.knowledge, "file:"),
             "--knowledge '{}' (use none, profile or file:PATH)", cfg.knowledge);
  RLRF_CHECK(!(cfg.knowledge == "none" && know.item == "none"),
             "--knowledge none with --item-knowledge none leaves no knowledge row to train");

  const rlrf::fs::path out = out_dir.empty() ? rlrf::fs::path(prepared_path).parent_path() / "rerank" : rlrf::fs::path(out_dir);
  rlrf::ensure_dir(out);
  rlrf::PreparedData data = rlrf::load_prepared(prepared_path);
  auto test_lists = rlrf::lists_of_split(data, rlrf::Split::kTest);
  RLRF_CHECK(!test_lists.empty(), "{}: no test lists", prepared_path);
  rlrf::log_info("rerank: {} ({} setting): {} train / {} valid / {} test lists", data.dataset.name, data.config.setting,
                 rlrf::lists_of_split(data, rlrf::Split::kTrain).size(),
                 rlrf::lists_of_split(data, rlrf::Split::kValid).size(), test_lists.size());

  rlrf::KnowledgeSource source =
      know.source(cfg.knowledge, know.user_history, cfg.cache_dir.empty() ? out / "encode-cache" : rlrf::fs::path(cfg.cache_dir));
  source.item = know.item;  // with user knowledge none, the row is the item knowledge alone
  rlrf::KnowledgeVectors kv = rlrf::build_knowledge_vectors(data, source);
  // The knowledge row's name: what was given to the model.
  const std::string know_label = cfg.knowledge == "none"           ? "item knowledge"
                                 : know.item == "none"             ? cfg.knowledge + " user knowledge"
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

  // One training per (knowledge row, model, seed), the evaluation's grid, run side by side.
  const std::vector<rlrf::GridTraining> jobs = rlrf::add_training_grid(results, {"no knowledge", know_label}, models, eval.seeds);
  const int workers = rlrf::rerank_jobs(cfg);
  rlrf::log_info("rerank: {} trainings, {} side by side", jobs.size(), workers);
  // Each training in a worker process of its own (rlrf::run_trainings says why not threads).
  auto describe = [&](int64_t i) {
    const rlrf::GridTraining& job = jobs[static_cast<size_t>(i)];
    return fmt::format("{} / {} seed {}", model_title(job.model), results.rows[job.row].name, job.seed);
  };
  rlrf::run_trainings(
      static_cast<int64_t>(jobs.size()), cfg,
      [&](int64_t i) {
        const rlrf::GridTraining& job = jobs[static_cast<size_t>(i)];
        const bool with = job.knowledge == 1;
        rlrf::RerankTrainConfig c = cfg.train;
        c.model = job.model;
        c.seed = job.seed;
        const rlrf::KnowledgeVectors k = with ? kv : rlrf::KnowledgeVectors{};
        auto t0 = std::chrono::steady_clock::now();
        rlrf::Reranker r = rlrf::train_reranker(data, k, c);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rlrf::EvalResult e = rlrf::evaluate(r, data, k, rlrf::Split::kTest);
        if (save_models)
          rlrf::save_reranker(r, out / "models" / fmt::format("{}-{}-seed{}.rrk", job.model, with ? "knowledge" : "base", job.seed));
        return rlrf::seed_result_to_json(rlrf::seed_result(e, job.seed, r, secs));
      },
      [&](int64_t i, const std::string& result) {
        const rlrf::GridTraining& job = jobs[static_cast<size_t>(i)];
        rlrf::SeedResult s = rlrf::seed_result_from_json(result, describe(i));
        rlrf::log_info("rerank: {}: test MAP@5 {:.4f} NDCG@5 {:.4f} (best epoch {} of {}, valid MAP@5 {:.4f}, {:.0f} s)",
                       describe(i), s.test.map_at(5), s.test.ndcg_at(5), s.best_epoch, s.epochs_run, s.best_valid_map5,
                       s.train_seconds);
        results.rows[job.row].seeds[job.slot] = std::move(s);
      },
      describe);

  std::printf("%s: %s setting, test users (%zu lists); mean ± std over seeds %s\n\n%s\n", data.dataset.name.c_str(),
              data.config.setting.c_str(), test_lists.size(), fmt::format("{}", fmt::join(eval.seeds, ",")).c_str(),
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

static rlrf::cli::VerbRegistration reg_rerank({"rerank", "train/evaluate DLCM and PRM rerankers with and without knowledge", 20, run_rerank});
