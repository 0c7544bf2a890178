// Evaluation: knowledge for every user from each model (profile summaries, the LLM before DPO, the
// LLM after each round), DLCM and PRM retrained on it with several seeds, test NDCG@K / MAP@K.
// Each (row, model, seed) result is kept in the run store under a fingerprint of its inputs, so a
// resumed run redoes only what is missing.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "knowledge/knowledge.h"
#include "pipeline/experiment.h"
#include "pipeline/stages.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/metrics.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf {

// The knowledge file of round r: {"user": raw id, "text": sample-0 response} per participating user.
static std::filesystem::path write_round_knowledge(RunContext& ctx, int round) {
  std::filesystem::path path = ctx.dir / "knowledge" / fmt::format("round{}.jsonl", round);
  std::vector<std::string> texts = round_knowledge_texts(ctx, round);
  std::string out;
  for (int32_t u : ctx.users) {
    nlohmann::json row = {{"user", ctx.data.dataset.users[static_cast<size_t>(u)].raw_id}, {"text", texts[static_cast<size_t>(u)]}};
    out += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_file_atomic(path, out);
  return path;
}

static SeedResult seed_result_from(const EvalResult& e, int64_t seed, int best_epoch, double best_valid) {
  SeedResult s;
  s.seed = seed;
  s.test = e.mean;
  s.best_epoch = best_epoch;
  s.best_valid_map5 = best_valid;
  s.users = e.per_user.users;
  s.per_user = e.per_user.metrics;
  return s;
}

static nlohmann::json seed_json(const SeedResult& s) {
  ExperimentResults one;
  one.rows.push_back({"x", "x", {s}});
  return to_json(one)["rows"][0]["seeds"][0];
}

static SeedResult seed_from_json(const nlohmann::json& j) {
  nlohmann::json doc = {{"format", "rlrf-experiment-1"}, {"rows", {{{"name", "x"}, {"model", "x"}, {"seeds", {j}}}}}};
  return experiment_from_json(doc, "run store").rows[0].seeds[0];
}

void stage_evaluate(RunContext& ctx) {
  const RunConfig& c = ctx.config;
  ExperimentResults results;
  results.dataset = ctx.data.dataset.name;
  results.setting = ctx.data.config.setting;
  std::string list_order = list_order_name(ctx.data.config.setting);
  results.rows.push_back({list_order, "", {seed_result_from(evaluate_baseline(ctx.data, Split::kTest, "list_order"), 0, 0, 0)}});
  results.rows.push_back({"popularity", "", {seed_result_from(evaluate_baseline(ctx.data, Split::kTest, "popularity"), 0, 0, 0)}});

  struct Row {
    std::string name;
    KnowledgeSource source;
    std::string fp;  // inputs of the knowledge
  };
  std::vector<Row> rows;
  std::string common = fingerprint({kPipelineVersion, ctx.prepared_fingerprint, c.sections_text({"rerank", "knowledge"}),
                                    "max_users=" + std::to_string(c.run.max_users)});
  auto source = [&](const std::string& user) {
    KnowledgeSource s;
    s.user = user;
    s.item = user == "none" ? "none" : c.knowledge.item;
    s.encoder = c.knowledge.encoder;
    s.cache_dir = ctx.encode_cache();
    s.user_history = c.knowledge.user_history;
    return s;
  };
  rows.push_back({"no knowledge", source("none"), fingerprint({common, "none"})});
  if (c.eval.profile_row) rows.push_back({"profile", source("profile"), fingerprint({common, "profile"})});
  for (int r = 0; r <= c.run.rounds; ++r) {
    if (ctx.store->count_responses(r) == 0) continue;
    std::filesystem::path file = write_round_knowledge(ctx, r);
    std::string name = r == 0 ? (c.sft.enabled ? "KAR (SFT LLM, before DPO)" : "KAR (LLM before DPO)") : fmt::format("RLRF4Rec round {}", r);
    rows.push_back({name, source("file:" + file.string()), fingerprint({common, "round", generate_fingerprint(ctx, r)})});
  }

  int total = static_cast<int>(rows.size() * c.eval.models.size() * c.eval.seeds.size()), done = 0;
  for (const Row& row : rows) {
    KnowledgeVectors kv = build_knowledge_vectors(ctx.data, row.source, *ctx.encoder);
    for (const std::string& model : c.eval.models) {
      RowResult rr{row.name, model, {}};
      for (int seed : c.eval.seeds) {
        ++done;
        std::string key = fmt::format("eval/{}/{}/{}", row.fp, model, seed);
        if (auto cached = ctx.store->doc(key)) {
          rr.seeds.push_back(seed_from_json(nlohmann::json::parse(*cached)));
          continue;
        }
        RerankConfig rc = c.rerank;
        rc.model = model;
        rc.seed = seed;
        log_info("evaluate [{}/{}]: {} / {} / seed {}", done, total, row.name, model, seed);
        Reranker r = train_reranker(ctx.data, kv, rc);
        EvalResult e = evaluate(r, ctx.data, kv, Split::kTest);
        SeedResult s = seed_result_from(e, seed, r.best_epoch, r.best_valid_map5);
        ctx.store->put_doc(key, seed_json(s).dump());
        log_info("evaluate: {} / {} / seed {}: test MAP@5 {:.4f} NDCG@5 {:.4f} (best epoch {}, valid MAP@5 {:.4f})", row.name, model,
                 seed, e.mean.map_at(5), e.mean.ndcg_at(5), r.best_epoch, r.best_valid_map5);
        rr.seeds.push_back(std::move(s));
      }
      results.rows.push_back(std::move(rr));
    }
  }
  save_experiment(results, ctx.dir / "results.json");
  log_info("evaluate: results in {}\n{}", (ctx.dir / "results.json").string(), markdown_table(results, {5}));
}

}  // namespace rlrf
