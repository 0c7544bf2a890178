// Generation: N sampled responses per participating user from round r's policy, written to the run
// store in chunks (one transaction each); and each round's greedy response per user, the knowledge
// evaluation reads by default ([eval] decode). A killed run resumes with the missing (user, sample)
// pairs only; each sequence's random stream depends on (seed, round, prompt, sample), not on the
// batch, so a resumed run writes the same texts an uninterrupted one would.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include "llm/generate.h"
#include "rerank/knowledge_vectors.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/runtime.h"

namespace rlrf {

std::string generate_fingerprint(const RunContext& ctx, int round) {
  return fingerprint({kPipelineVersion, "generate", std::to_string(round), policy_fingerprint(ctx, round),
                      ctx.prepared_fingerprint, ctx.config.sections_text({"prompt", "generate"}),
                      "max_users=" + std::to_string(ctx.config.run.max_users)});
}

namespace {

// Worker processes for generation: [generate] workers, or automatically one per core on CPU when
// the model decodes on one intra-op thread (small models; options.threads = 0 picks that), else 1.
int generation_workers(const RunContext& ctx, int64_t n_chunks) {
  const GenerateConfig& g = ctx.config.generate;
  if (ctx.device != "cpu" || n_chunks < 2) return 1;
  int w = g.workers;
  if (w == 0) w = g.threads > 1 ? 1 : machine_threads();
  return static_cast<int>(std::min<int64_t>(std::max(1, w), n_chunks));
}

// What one generation stage writes: `samples` responses per participating user from round
// `policy_round`'s policy, stored under `store_round`, resumable by fingerprint `fp`.
struct GenerationJob {
  std::string stage, fp;
  int policy_round = 0, store_round = 0, samples = 1;
  llm::SamplingOptions sampling;
};

void run_generation(RunContext& ctx, const GenerationJob& job) {
  const GenerateConfig& g = ctx.config.generate;
  const std::string& stage = job.stage;
  const std::string& fp = job.fp;
  const int round = job.store_round;
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
    if (round >= 0) ctx.store->clear_stage(fmt::format("reward/{}", round));
  } else if (!begun && ctx.store->count_responses(round) > 0) {
    ctx.store->delete_round(round);
  }
  ctx.store->mark_stage_done(started, fp);

  std::vector<std::pair<int32_t, int>> have = ctx.store->response_keys(round);
  std::vector<std::vector<char>> done(ctx.data.sequences.size());
  for (auto [u, s] : have) {
    auto& d = done[static_cast<size_t>(u)];
    if (d.empty()) d.assign(static_cast<size_t>(job.samples), 0);
    if (s >= 0 && s < job.samples) d[static_cast<size_t>(s)] = 1;
  }
  struct Todo {
    int32_t user;
    int sample;
  };
  std::vector<Todo> todo;
  for (int32_t u : ctx.users)
    for (int s = 0; s < job.samples; ++s)
      if (done[static_cast<size_t>(u)].empty() || !done[static_cast<size_t>(u)][static_cast<size_t>(s)]) todo.push_back({u, s});
  int64_t total = static_cast<int64_t>(ctx.users.size()) * job.samples;
  if (todo.empty()) {
    ctx.store->mark_stage_done(stage, fp);
    return;
  }
  if (!have.empty()) log_info("{}: resuming, {} of {} responses already stored", stage, have.size(), total);

  llm::LlamaForCausalLM model = load_policy(ctx, job.policy_round, stage_dtype(ctx, g.dtype));
  llm::GenerateOptions options;
  options.max_new_tokens = g.max_new_tokens;
  options.sampling = job.sampling;
  options.stop_ids = ctx.tokenizer.eos_ids();
  options.batch_size = g.batch_size;
  options.threads = g.threads;

  Progress progress(stage, total, "responses", total - static_cast<int64_t>(todo.size()));
  auto t0 = std::chrono::steady_clock::now();
  int64_t new_tokens = 0;
  // Chunks of `chunk` responses; each is generated as a whole and stored in one transaction, so a
  // killed run loses at most the chunks in flight. Every sequence's random stream depends on (seed,
  // round, prompt, sample) and a chunk's batches do not depend on where it runs: the same texts
  // whether chunks run here one by one or side by side in worker processes.
  const size_t chunk = static_cast<size_t>(g.chunk);
  const int64_t n_chunks = static_cast<int64_t>((todo.size() + chunk - 1) / chunk);
  auto chunk_ids = [&](int64_t c) {
    const size_t lo = static_cast<size_t>(c) * chunk, hi = std::min(todo.size(), lo + chunk);
    std::vector<llm::GenerateRequest> requests;
    for (size_t i = lo; i < hi; ++i) {
      llm::GenerateRequest r;
      r.prompt = ctx.prompt_ids[static_cast<size_t>(todo[i].user)];
      r.sample_index = todo[i].sample;
      requests.push_back(std::move(r));
    }
    std::vector<std::vector<int32_t>> ids;
    for (llm::Completion& out : llm::generate(model, requests, options)) ids.push_back(std::move(out.ids));
    return ids;
  };
  auto store_chunk = [&](int64_t c, std::vector<std::vector<int32_t>> ids) {
    const size_t lo = static_cast<size_t>(c) * chunk;
    std::vector<StoredResponse> rows;
    for (size_t i = 0; i < ids.size(); ++i) {
      StoredResponse row;
      row.round = round;
      row.user = todo[lo + i].user;
      row.sample = todo[lo + i].sample;
      row.ids = std::move(ids[i]);
      row.text = response_text(ctx, row.ids);
      row.prompt_tokens = static_cast<int>(ctx.prompt_ids[static_cast<size_t>(row.user)].size());
      new_tokens += static_cast<int64_t>(row.ids.size());
      rows.push_back(std::move(row));
    }
    ctx.store->put_responses(rows);
    progress.advance(static_cast<int64_t>(rows.size()));
  };
  const int workers = generation_workers(ctx, n_chunks);
  if (workers <= 1) {
    for (int64_t c = 0; c < n_chunks; ++c) store_chunk(c, chunk_ids(c));
  } else {
    // Decoding a small model is one stream of tiny matmuls that a second thread cannot speed up;
    // chunks side by side in forked workers (the model shared copy-on-write) use every core.
    run_isolated(
        n_chunks, workers, [&](int64_t c) { return nlohmann::json(chunk_ids(c)).dump(); },
        [&](int64_t c, const std::string& result) { store_chunk(c, nlohmann::json::parse(result).get<std::vector<std::vector<int32_t>>>()); },
        [&](int64_t c) { return fmt::format("{} chunk {} of {}", stage, c + 1, n_chunks); });
  }
  progress.finish();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json stats = {{"responses", todo.size()}, {"new_tokens", new_tokens}, {"seconds", seconds},
                          {"tokens_per_second", seconds > 0 ? double(new_tokens) / seconds : 0.0}};
  ctx.store->put_doc(stage, stats.dump());
  ctx.store->mark_stage_done(stage, fp);
  log_info("{}: {} new tokens in {:.1f} s ({:.0f} tokens/s)", stage, new_tokens, seconds, seconds > 0 ? double(new_tokens) / seconds : 0.0);
}

}  // namespace

void stage_generate(RunContext& ctx, int round) {
  const GenerateConfig& g = ctx.config.generate;
  GenerationJob job;
  job.stage = fmt::format("generate/{}", round);
  job.fp = generate_fingerprint(ctx, round);
  job.policy_round = job.store_round = round;
  job.samples = g.n;
  job.sampling.temperature = g.temperature;
  job.sampling.top_k = g.top_k;
  job.sampling.top_p = g.top_p;
  job.sampling.seed = static_cast<uint64_t>(g.seed) + 1000003ull * static_cast<uint64_t>(round);
  run_generation(ctx, job);
}

std::string greedy_fingerprint(const RunContext& ctx, int round) {
  const GenerateConfig& g = ctx.config.generate;
  return fingerprint({kPipelineVersion, "greedy", std::to_string(round), policy_fingerprint(ctx, round), ctx.prepared_fingerprint,
                      ctx.config.sections_text({"prompt"}), "max_new_tokens=" + std::to_string(g.max_new_tokens),
                      "dtype=" + llm::dtype_name(stage_dtype(ctx, g.dtype)), "max_users=" + std::to_string(ctx.config.run.max_users)});
}

void stage_generate_greedy(RunContext& ctx, int round) {
  GenerationJob job;
  job.stage = fmt::format("greedy/{}", round);
  job.fp = greedy_fingerprint(ctx, round);
  job.policy_round = round;
  job.store_round = greedy_store_round(round);
  job.samples = 1;
  job.sampling.temperature = 0;  // argmax
  run_generation(ctx, job);
}

std::vector<std::string> eval_knowledge_texts(const RunContext& ctx, int round) {
  if (ctx.config.eval.decode != "greedy") return round_knowledge_texts(ctx, round);
  std::vector<std::string> texts(ctx.data.sequences.size());
  for (const StoredResponse& r : ctx.store->responses(greedy_store_round(round))) texts[static_cast<size_t>(r.user)] = r.text;
  return texts;
}

std::string eval_knowledge_fingerprint(const RunContext& ctx, int round) {
  const std::string& decode = ctx.config.eval.decode;
  if (decode == "greedy") return fingerprint({"round", "greedy", greedy_fingerprint(ctx, round)});
  if (decode == "mean") return fingerprint({"round", "mean", generate_fingerprint(ctx, round)});
  return fingerprint({"round", generate_fingerprint(ctx, round)});  // sample0
}

at::Tensor eval_mean_user_vectors(RunContext& ctx, const PreparedData& data, int round, const at::Tensor& fallback) {
  std::vector<int32_t> users;
  std::vector<std::string> texts;
  for (const StoredResponse& r : ctx.store->responses(round)) {
    users.push_back(r.user);
    texts.push_back(r.text);
  }
  RLRF_CHECK(fallback.defined(), "eval decode = \"mean\": round {} has no user vectors to start from", round);
  at::Tensor out = fallback.clone();
  if (users.empty()) return out;
  at::Tensor v = encode_user_knowledge(data, users, texts, *ctx.encoder, ctx.encode_cache(), ctx.config.knowledge.user_history);
  at::Tensor index = at::tensor(std::vector<int64_t>(users.begin(), users.end()), at::kLong);
  at::Tensor sum = at::zeros_like(out).index_add_(0, index, v.to(out.scalar_type()));
  at::Tensor count = at::zeros({out.size(0)}, out.options()).index_add_(0, index, at::ones({index.size(0)}, out.options()));
  at::Tensor has = count > 0;
  out.index_put_({has}, sum.index({has}) / count.index({has}).unsqueeze(1));
  return out;
}

}  // namespace rlrf
