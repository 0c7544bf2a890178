// Generation: N sampled responses per participating user from round r's policy, written to the run
// store in chunks (one transaction each). A killed run resumes with the missing (user, sample)
// pairs only; each sequence's random stream depends on (seed, round, prompt, sample), not on the
// batch, so a resumed run writes the same texts an uninterrupted one would.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "llm/generate.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace rlrf {

std::string generate_fingerprint(const RunContext& ctx, int round) {
  return fingerprint({kPipelineVersion, "generate", std::to_string(round), policy_fingerprint(ctx, round),
                      ctx.prepared_fingerprint, ctx.config.sections_text({"prompt", "generate"}),
                      "max_users=" + std::to_string(ctx.config.run.max_users)});
}

void stage_generate(RunContext& ctx, int round) {
  const GenerateConfig& g = ctx.config.generate;
  const std::string stage = fmt::format("generate/{}", round);
  const std::string fp = generate_fingerprint(ctx, round);
  if (stage_current(ctx, stage, fp)) {
    log_info("{}: current ({} responses)", stage, ctx.store->count_responses(round));
    return;
  }
  // A different fingerprint for the rows already there means they came from other inputs.
  const std::string started = stage + "/started";
  auto begun = ctx.store->stage_fingerprint(started);
  if (begun && *begun != fp) {
    log_info("{}: inputs changed; discarding {} stored responses", stage, ctx.store->count_responses(round));
    ctx.store->delete_round(round);
    ctx.store->clear_stage(fmt::format("reward/{}", round));
  } else if (!begun && ctx.store->count_responses(round) > 0) {
    ctx.store->delete_round(round);
  }
  ctx.store->mark_stage_done(started, fp);

  std::vector<std::pair<int32_t, int>> have = ctx.store->response_keys(round);
  std::vector<std::vector<char>> done(ctx.data.sequences.size());
  for (auto [u, s] : have) {
    auto& d = done[static_cast<size_t>(u)];
    if (d.empty()) d.assign(static_cast<size_t>(g.n), 0);
    if (s < g.n) d[static_cast<size_t>(s)] = 1;
  }
  struct Todo {
    int32_t user;
    int sample;
  };
  std::vector<Todo> todo;
  for (int32_t u : ctx.users)
    for (int s = 0; s < g.n; ++s)
      if (done[static_cast<size_t>(u)].empty() || !done[static_cast<size_t>(u)][static_cast<size_t>(s)]) todo.push_back({u, s});
  int64_t total = static_cast<int64_t>(ctx.users.size()) * g.n;
  if (todo.empty()) {
    ctx.store->mark_stage_done(stage, fp);
    return;
  }
  if (!have.empty()) log_info("{}: resuming, {} of {} responses already stored", stage, have.size(), total);

  llm::LlamaForCausalLM model = load_policy(ctx, round, stage_dtype(ctx, g.dtype));
  llm::GenerateOptions options;
  options.max_new_tokens = g.max_new_tokens;
  options.sampling.temperature = g.temperature;
  options.sampling.top_k = g.top_k;
  options.sampling.top_p = g.top_p;
  options.sampling.seed = static_cast<uint64_t>(g.seed) + 1000003ull * static_cast<uint64_t>(round);
  options.stop_ids = ctx.tokenizer.eos_ids();
  options.batch_size = g.batch_size;
  options.threads = g.threads;

  Progress progress(stage, total, "responses", total - static_cast<int64_t>(todo.size()));
  auto t0 = std::chrono::steady_clock::now();
  int64_t new_tokens = 0;
  for (size_t lo = 0; lo < todo.size(); lo += static_cast<size_t>(g.chunk)) {
    size_t hi = std::min(todo.size(), lo + static_cast<size_t>(g.chunk));
    std::vector<llm::GenerateRequest> requests;
    for (size_t i = lo; i < hi; ++i) {
      llm::GenerateRequest r;
      r.prompt = ctx.prompt_ids[static_cast<size_t>(todo[i].user)];
      r.sample_index = todo[i].sample;
      requests.push_back(std::move(r));
    }
    std::vector<llm::Completion> out = llm::generate(model, requests, options);
    std::vector<StoredResponse> rows;
    for (size_t i = 0; i < out.size(); ++i) {
      StoredResponse row;
      row.round = round;
      row.user = todo[lo + i].user;
      row.sample = todo[lo + i].sample;
      row.ids = out[i].ids;
      row.text = response_text(ctx, out[i].ids);
      row.prompt_tokens = static_cast<int>(requests[i].prompt.size());
      new_tokens += static_cast<int64_t>(out[i].ids.size());
      rows.push_back(std::move(row));
    }
    ctx.store->put_responses(rows);
    progress.advance(static_cast<int64_t>(rows.size()));
  }
  progress.finish();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json stats = {{"responses", todo.size()}, {"new_tokens", new_tokens}, {"seconds", seconds},
                          {"tokens_per_second", seconds > 0 ? double(new_tokens) / seconds : 0.0}};
  ctx.store->put_doc(stage, stats.dump());
  ctx.store->mark_stage_done(stage, fp);
  log_info("{}: {} new tokens in {:.1f} s ({:.0f} tokens/s)", stage, new_tokens, seconds, seconds > 0 ? double(new_tokens) / seconds : 0.0);
}

}  // namespace rlrf
