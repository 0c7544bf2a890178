// `rlrf rerank`: trains the rerankers (DLCM / PRM) without and with knowledge over several seeds and
// reports test-user metrics next to the list-order and popularity baselines; writes a results JSON
// with per-seed values and per-user metrics (for paired comparisons) and, optionally, checkpoints.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "data/prepare.h"
#include "rerank/checkpoint.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/metrics.h"
#include "rerank/reranker.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace {

using nlohmann::json;

struct Row {
  std::string name, model, knowledge;
  std::vector<rlrf::EvalResult> runs;
  json run_info = json::array();
};

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1); 0 for one value.
double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::vector<double> column(const Row& row, bool map, int ki) {
  std::vector<double> v;
  for (const auto& r : row.runs) v.push_back(map ? r.mean.map[ki] : r.mean.ndcg[ki]);
  return v;
}

json metrics_json(const std::array<double, rlrf::kNumMetricKs>& a) { return std::vector<double>(a.begin(), a.end()); }

json row_json(const Row& row) {
  json j{{"name", row.name}, {"model", row.model}, {"knowledge", row.knowledge}};
  json runs = json::array();
  for (size_t i = 0; i < row.runs.size(); ++i) {
    const rlrf::EvalResult& e = row.runs[i];
    json r = row.run_info.size() > i ? row.run_info[i] : json::object();
    r["map"] = metrics_json(e.mean.map);
    r["ndcg"] = metrics_json(e.mean.ndcg);
    json pu_map = json::array(), pu_ndcg = json::array();
    for (const auto& m : e.per_user.metrics) {
      pu_map.push_back(metrics_json(m.map));
      pu_ndcg.push_back(metrics_json(m.ndcg));
    }
    r["per_user"] = {{"map", pu_map}, {"ndcg", pu_ndcg}};
    runs.push_back(r);
  }
  j["runs"] = runs;
  json mean_map = json::array(), mean_ndcg = json::array(), std_map = json::array(), std_ndcg = json::array();
  for (int ki = 0; ki < rlrf::kNumMetricKs; ++ki) {
    mean_map.push_back(mean_of(column(row, true, ki)));
    std_map.push_back(std_of(column(row, true, ki)));
    mean_ndcg.push_back(mean_of(column(row, false, ki)));
    std_ndcg.push_back(std_of(column(row, false, ki)));
  }
  j["mean"] = {{"map", mean_map}, {"ndcg", mean_ndcg}};
  j["std"] = {{"map", std_map}, {"ndcg", std_ndcg}};
  return j;
}

std::string table(const std::vector<Row>& rows, size_t n_seeds) {
  std::string out = fmt::format("{:<34}", "test users (mean ± std over seeds)");
  for (const char* m : {"MAP", "NDCG"})
    for (int k : rlrf::kMetricKs) out += fmt::format(" {:>15}", fmt::format("{}@{}", m, k));
  out += "\n";
  for (const Row& row : rows) {
    out += fmt::format("{:<34}", row.name);
    for (bool map : {true, false}) {
      for (int ki = 0; ki < rlrf::kNumMetricKs; ++ki) {
        auto v = column(row, map, ki);
        out += row.runs.size() > 1 ? fmt::format(" {:>15}", fmt::format("{:.4f} ± {:.4f}", mean_of(v), std_of(v)))
                                   : fmt::format(" {:>15}", fmt::format("{:.4f}", mean_of(v)));
      }
    }
    out += "\n";
  }
  (void)n_seeds;
  return out;
}

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
  app.add_option("--model", model, "dlcm | prm | both (default: both)");
  app.add_option("--knowledge", knowledge,
                 "user knowledge: none | profile | file:PATH (default profile; with none, the knowledge rows use item "
                 "knowledge only)");
  app.add_option("--item-knowledge", item_knowledge, "metadata | file:PATH (KAR JSON) | none (default metadata)");
  app.add_option("--seeds", seeds_text, "comma-separated training seeds (default 1,2,3)");
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
  if (epochs > 0) cfg.epochs = epochs;
  if (!device.empty()) cfg.device = device;
  if (!cache_dir.empty()) cfg.cache_dir = cache_dir;
  if (!seeds_text.empty()) {
    cfg.seeds.clear();
    for (auto part : rlrf::split(seeds_text, ",")) {
      auto v = rlrf::parse_int(rlrf::trim(part));
      RLRF_CHECK(v.has_value(), "--seeds '{}': '{}' is not an integer", seeds_text, part);
      cfg.seeds.push_back(static_cast<int>(*v));
    }
  }
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
  const std::string know_label =
      cfg.knowledge == "none" ? "item knowledge" : cfg.item_knowledge == "none" ? "user knowledge" : "knowledge";

  std::vector<Row> rows;
  rows.push_back({rlrf::list_order_name(data.config.setting), "", "", {rlrf::evaluate_baseline(data, rlrf::Split::kTest, "list_order")}});
  rows.push_back({"popularity", "", "", {rlrf::evaluate_baseline(data, rlrf::Split::kTest, "popularity")}});
  for (const std::string& m : models) {
    for (bool with : {false, true}) {
      Row row{model_title(m) + (with ? " with " + know_label : " without knowledge"), m, with ? cfg.knowledge : "none", {}};
      const rlrf::KnowledgeVectors k = with ? kv : rlrf::KnowledgeVectors{};
      for (int seed : cfg.seeds) {
        rlrf::RerankConfig c = cfg;
        c.model = m;
        c.seed = seed;
        auto t0 = std::chrono::steady_clock::now();
        rlrf::Reranker r = rlrf::train_reranker(data, k, c);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rlrf::EvalResult e = rlrf::evaluate(r, data, k, rlrf::Split::kTest);
        rlrf::log_info("rerank: {} seed {}: test MAP@5 {:.4f} NDCG@5 {:.4f} (best epoch {} of {}, valid MAP@5 {:.4f}, {:.0f} s)",
                       row.name, seed, e.mean.map_at(5), e.mean.ndcg_at(5), r.best_epoch, r.history.size(),
                       r.best_valid_map5, secs);
        row.run_info.push_back({{"seed", seed}, {"best_epoch", r.best_epoch}, {"epochs_run", r.history.size()},
                                {"best_valid_map5", r.best_valid_map5}, {"train_seconds", secs}});
        if (save_models)
          rlrf::save_reranker(r, out / "models" / fmt::format("{}-{}-seed{}.rrk", m, with ? "knowledge" : "base", seed));
        row.runs.push_back(std::move(e));
      }
      rows.push_back(std::move(row));
    }
  }

  std::printf("%s", table(rows, cfg.seeds.size()).c_str());
  // Knowledge gains per seed (paired: same seed, same test lists).
  const int k5 = rlrf::metric_k_index(5);
  for (size_t i = 2; i + 1 < rows.size(); i += 2) {
    std::string line = fmt::format("{} gain from {} (MAP@5 per seed):", model_title(rows[i].model), know_label);
    for (size_t s = 0; s < rows[i].runs.size(); ++s)
      line += fmt::format(" {:+.4f}", rows[i + 1].runs[s].mean.map[k5] - rows[i].runs[s].mean.map[k5]);
    std::printf("%s\n", line.c_str());
  }

  json j;
  j["format"] = "rlrf-rerank-results-1";
  j["prepared"] = prepared_path;
  j["dataset"] = data.dataset.name;
  j["setting"] = data.config.setting;
  j["split"] = "test";
  j["knowledge"] = cfg.knowledge;
  j["item_knowledge"] = cfg.item_knowledge;
  j["encoder"] = cfg.encoder;
  j["seeds"] = cfg.seeds;
  j["config"] = {{"epochs", cfg.epochs}, {"batch", cfg.batch}, {"lr", cfg.lr}, {"weight_decay", cfg.weight_decay},
                 {"patience", cfg.patience}, {"shared_experts", cfg.shared_experts},
                 {"specific_experts", cfg.specific_experts}, {"embed_dim", cfg.embed_dim},
                 {"knowledge_norm", cfg.knowledge_norm}, {"user_text_history", cfg.user_text_history}};
  j["ks"] = std::vector<int>(rlrf::kMetricKs.begin(), rlrf::kMetricKs.end());
  j["test_lists"] = test_lists.size();
  json users = json::array();
  for (int32_t u : rows[0].runs[0].per_user.users) users.push_back(data.dataset.users[u].raw_id);
  j["test_users"] = users;  // order of every per_user array
  j["std_note"] = "std is the sample standard deviation over seeds (n - 1)";
  json jr = json::array();
  for (const Row& row : rows) jr.push_back(row_json(row));
  j["rows"] = jr;
  rlrf::write_file_atomic(out / "rerank_results.json", j.dump(1));
  std::printf("wrote %s\n", (out / "rerank_results.json").string().c_str());
  return 0;
}

}  // namespace

static rlrf::cli::VerbRegistration reg({"rerank", "train/evaluate DLCM and PRM rerankers with and without knowledge", 20, run});
