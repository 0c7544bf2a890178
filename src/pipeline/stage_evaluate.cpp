// Evaluation: knowledge for every user from each model (profile summaries, the LLM before DPO, the
// LLM after each round), DLCM and PRM retrained on it with several seeds, test NDCG@K / MAP@K.
// Each (row, model, seed) result is kept in the run store under a fingerprint of its inputs, so a
// resumed run redoes only what is missing.
#include <cstdint>
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "knowledge/knowledge.h"
#include "pipeline/experiment.h"
#include "pipeline/report_docs.h"
#include "pipeline/stages.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/metrics.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"

namespace rlrf {

// The knowledge file of round r: {"user": raw id, "text": its evaluation text ([eval] decode)} per participating user.
static std::filesystem::path write_knowledge(RunContext& ctx, const std::string& name, const std::vector<std::string>& texts) {
  std::filesystem::path path = ctx.dir / "knowledge" / (name + ".jsonl");
  std::string out;
  for (int32_t u : ctx.users) {
    nlohmann::json row = {{"user", ctx.data.dataset.users[static_cast<size_t>(u)].raw_id}, {"text", texts[static_cast<size_t>(u)]}};
    out += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_file_atomic(path, out);
  return path;
}

std::filesystem::path results_path(const RunContext& ctx, const std::string& setting) {
  return setting == ctx.config.prepare.setting ? ctx.dir / "results.json" : ctx.dir / ("results_" + setting + ".json");
}

namespace {

// The knowledge sources evaluated: no knowledge, profile summaries, and each round's responses.
struct KnowledgeRow {
  RowLabel label;
  KnowledgeSource source;
  std::string key;  // what the knowledge depends on (with the data's fingerprint, a store key)
};

// One table: a list setting's prepared data, its results and its rows' knowledge vectors.
struct Table {
  const PreparedData* data;
  std::string data_fp;
  std::vector<std::string> models;
  std::filesystem::path out;
  ExperimentResults results;
  std::vector<KnowledgeVectors> kvs;  // per knowledge row
};

std::vector<KnowledgeRow> knowledge_rows(RunContext& ctx) {
  const RunConfig& c = ctx.config;
  auto source = [&](const std::string& user, bool history) { return c.knowledge.source(user, history, ctx.encode_cache()); };
  // Rows of knowledge texts, with the run's encoding and, with both_encodings, the other one too.
  std::vector<KnowledgeRow> rows;
  auto add = [&](RowLabel label, const std::string& user, const std::string& key) {
    rows.push_back({label, source(user, c.knowledge.user_history), key});
    if (c.eval.both_encodings) {
      const bool other = !c.knowledge.user_history;
      label.encoding = other ? RowEncoding::kHistoryAndText : RowEncoding::kTextAlone;
      rows.push_back({label, source(user, other), key + (other ? "|history" : "|alone")});
    }
  };
  rows.push_back({{.kind = RowKind::kNoKnowledge}, source("none", c.knowledge.user_history), "none"});
  if (c.eval.history_row && (c.knowledge.user_history || c.eval.both_encodings)) {
    // The history text with no response: what the LLM's words add is the step from here.
    std::filesystem::path file = write_knowledge(ctx, "history", std::vector<std::string>(ctx.data.sequences.size()));
    rows.push_back({{.kind = RowKind::kHistoryOnly}, source("file:" + file.string(), true), "history-only"});
  }
  if (c.eval.profile_row) add({.kind = RowKind::kProfile}, "profile", "profile");
  if (c.eval.card_row)
    add({.kind = RowKind::kTrueCards}, "file:" + write_knowledge(ctx, "card", card_texts(ctx)).string(),
        "card|" + c.sections_text({"prompt"}) + "|" + std::to_string(c.generate.max_new_tokens));
  for (int r = 0; r <= c.run.rounds; ++r) {
    if (ctx.store->count_responses(r) == 0) continue;
    std::filesystem::path file = write_knowledge(ctx, fmt::format("round{}", r), eval_knowledge_texts(ctx, r));
    const RowLabel label{.kind = r == 0 ? RowKind::kKar : RowKind::kRound, .round = r, .sft = r == 0 && c.sft.enabled};
    add(label, "file:" + file.string(), eval_knowledge_fingerprint(ctx, r));
  }
  return rows;
}

}  // namespace

void stage_evaluate(RunContext& ctx) {
  const RunConfig& c = ctx.config;
  // The run's own lists, then each further setting's (same users, same knowledge texts).
  std::vector<PreparedData> others(c.eval.also_settings.size());
  std::vector<Table> tables;
  tables.push_back({&ctx.data, ctx.prepared_fingerprint, c.eval.models, results_path(ctx, c.prepare.setting), {}, {}});
  for (size_t i = 0; i < others.size(); ++i) {
    std::string fp;
    others[i] = prepare_other_setting(ctx, c.eval.also_settings[i], &fp);
    tables.push_back({&others[i], fp, c.eval.also_models.empty() ? c.eval.models : c.eval.also_models,
                      results_path(ctx, c.eval.also_settings[i]), {}, {}});
  }
  std::vector<KnowledgeRow> rows = knowledge_rows(ctx);

  // Every (table, row, model, seed) training is one job; those the store holds are read back, the
  // rest run side by side, each stored as soon as it is done.
  struct Job {
    size_t table;
    GridTraining cell;
    std::string key;
  };
  std::vector<Job> jobs;
  size_t cached = 0;
  std::vector<std::string> row_names;
  for (const KnowledgeRow& row : rows) row_names.push_back(row_name(row.label));
  for (size_t t = 0; t < tables.size(); ++t) {
    Table& table = tables[t];
    const PreparedData& data = *table.data;
    table.results.dataset = data.dataset.name;
    table.results.setting = data.config.setting;
    table.results.rows.push_back({list_order_name(data.config.setting), "", {seed_result(evaluate_baseline(data, Split::kTest, "list_order"), 0)}});
    table.results.rows.push_back({"popularity", "", {seed_result(evaluate_baseline(data, Split::kTest, "popularity"), 0)}});
    const std::string common = fingerprint({kPipelineVersion, table.data_fp, c.sections_text({"rerank", "knowledge"}), encoder_identity(ctx),
                                            "max_users=" + std::to_string(c.run.max_users)});
    std::vector<std::string> row_fps;
    for (const KnowledgeRow& row : rows) {
      table.kvs.push_back(build_knowledge_vectors(data, row.source, *ctx.encoder));
      if (row.label.is_llm() && c.eval.decode == "mean")
        table.kvs.back().user = eval_mean_user_vectors(ctx, data, row.label.round, table.kvs.back().user);
      row_fps.push_back(fingerprint({common, row.key}));
    }
    for (const GridTraining& cell : add_training_grid(table.results, row_names, table.models, c.eval.seeds)) {
      Job job{t, cell, fmt::format("eval/{}/{}/{}", row_fps[cell.knowledge], cell.model, cell.seed)};
      if (auto doc = ctx.store->doc(job.key)) {
        table.results.rows[cell.row].seeds[cell.slot] = seed_result_from_json(*doc, "run store " + job.key);
        ++cached;
      } else {
        jobs.push_back(std::move(job));
      }
    }
  }
  const int workers = rerank_jobs(c.rerank);
  log_info("evaluate: {} trainings on {} list setting(s) ({} done before), {} side by side", jobs.size() + cached,
           tables.size(), cached, workers);
  // Each training runs in a worker process (run_trainings: bf16 trainings in two threads of one
  // process crash libtorch 1.13's oneDNN); the result comes back as JSON and is stored here.
  auto describe = [&](int64_t j) {
    const Job& job = jobs[static_cast<size_t>(j)];
    const Table& table = tables[job.table];
    return fmt::format("{} lists / {} / {} / seed {}", table.results.setting, table.results.rows[job.cell.row].name,
                       job.cell.model, job.cell.seed);
  };
  int done = 0;
  run_trainings(
      static_cast<int64_t>(jobs.size()), c.rerank,
      [&](int64_t j) {
        const Job& job = jobs[static_cast<size_t>(j)];
        const Table& table = tables[job.table];
        RerankTrainConfig rc = c.rerank.train;
        rc.model = job.cell.model;
        rc.seed = job.cell.seed;
        try {
          auto t0 = std::chrono::steady_clock::now();
          Reranker r = train_reranker(*table.data, table.kvs[job.cell.knowledge], rc);
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          EvalResult e = evaluate(r, *table.data, table.kvs[job.cell.knowledge], Split::kTest);
          return seed_result_to_json(seed_result(e, job.cell.seed, r, secs));
        } catch (const std::exception& ex) {
          fail("{}: {}", describe(j), ex.what());
        }
      },
      [&](int64_t j, const std::string& result) {
        const Job& job = jobs[static_cast<size_t>(j)];
        ctx.store->put_doc(job.key, result);
        SeedResult s = seed_result_from_json(result, describe(j));
        log_info("evaluate [{}/{}]: {}: test MAP@5 {:.4f} NDCG@5 {:.4f} (best epoch {} of {}, valid MAP@5 {:.4f}, {:.0f} s)",
                 ++done, jobs.size(), describe(j), s.test.map_at(5), s.test.ndcg_at(5), s.best_epoch, s.epochs_run,
                 s.best_valid_map5, s.train_seconds);
        tables[job.table].results.rows[job.cell.row].seeds[job.cell.slot] = std::move(s);
      },
      describe);
  for (const Table& table : tables) {
    save_experiment(table.results, table.out);
    log_info("evaluate: {} lists: results in {}\n{}", table.results.setting, table.out.string(), markdown_table(table.results, {5}));
  }
}

}  // namespace rlrf
