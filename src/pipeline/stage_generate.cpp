// Generation: N sampled responses per participating user from round r's policy, written to the run
// store in chunks (one transaction each); and each round's greedy response per user, the knowledge
// evaluation reads by default ([eval] decode). A killed run resumes with the missing (user, sample)
// pairs only; each sequence's random stream depends on (seed, round, prompt, sample), not on the
// batch, so a resumed run writes the same texts an uninterrupted one would.
#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include <sys/wait.h>

#include <ATen/ATen.h>

#include "llm/generate.h"
#include "llm/openai_client.h"
#include "rerank/knowledge_vectors.h"
#include "pipeline/report_docs.h"
#include "pipeline/stages.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"
#include "runtime/runtime.h"
#include "util/strings.h"

namespace rlrf {

// What of a served backend changes its texts (address, model, extensions, stop strings; not the key, the
// concurrency or the retries); empty for the builtin engine, so that its fingerprints stay as they were.
static std::string backend_fingerprint(const GenerateConfig& g) {
  if (g.backend == "builtin") return "";
  std::string stop;
  for (const std::string& s : g.stop) stop += s + '\x1f';
  return fmt::format("backend={} url={} model={} extensions={} stop={}", g.backend, g.url, g.model, g.extensions, stop);
}

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

struct Todo {
  int32_t user;
  int sample;
};

// What one generation stage writes: `samples` responses per participating user from round
// `policy_round`'s policy, stored under `store_round`, resumable by fingerprint `fp`.
struct GenerationJob {
  std::string stage, fp;
  int policy_round = 0, store_round = 0, samples = 1;
  llm::SamplingOptions sampling;
};

// [generate] reload_command, run when the round whose policy generates differs from the one the
// server was last told to load: {round}, {policy_dir}, {run_dir} replaced.
void reload_served_policy(RunContext& ctx, int round) {
  const std::string& command = ctx.config.generate.reload_command;
  if (command.empty() || ctx.served_round == round) return;
  std::string cmd = command;
  auto replace = [&](const std::string& key, const std::string& value) {
    for (size_t pos = cmd.find(key); pos != std::string::npos; pos = cmd.find(key, pos + value.size()))
      cmd.replace(pos, key.size(), value);
  };
  replace("{round}", std::to_string(round));
  replace("{policy_dir}", ctx.model_dir(round).string());
  replace("{run_dir}", ctx.dir.string());
  log_info("[generate] reload_command for round {}: {}", round, cmd);
  const int status = std::system(cmd.c_str());
  RLRF_CHECK(status == 0, "[generate] reload_command for round {} failed ({}): {}", round,
             status > 0 && WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                             : fmt::format("wait status {}", status),
             cmd);
  ctx.served_round = round;
}

// One request of the server path: a user's missing samples, sent as one n-request when all N are
// missing, else one request per sample. Sample i of user u is seeded seed + u * N + i either way.
struct ServerTask {
  int32_t user;
  std::vector<int> samples;  // ascending; all of 0..N-1 (one n-request) or a single sample
};

struct ServerDone {
  size_t task;
  llm::CompletionResult result;
};

// The stored ids of a served response: the server's when it sent them, else the text tokenized
// again; the end-of-sequence token appended when the model stopped by itself (as the builtin
// engine keeps its stop token), so pairs and DPO see the same shape from either backend.
std::vector<int32_t> served_ids(const RunContext& ctx, const llm::CompletionChoice& c) {
  std::vector<int32_t> ids = c.ids.empty() ? llm::tokenize_continuation(ctx.tokenizer, c.text) : c.ids;
  const std::vector<int32_t> eos = ctx.tokenizer.eos_ids();
  const bool by_model = c.finish_reason == "stop" && ctx.config.generate.stop.empty();
  if (by_model && !eos.empty() && (ids.empty() || std::find(eos.begin(), eos.end(), ids.back()) == eos.end()))
    ids.push_back(eos.front());
  return ids;
}

// Generation through an OpenAI-compatible server: `concurrency` requests in flight, each prompt's
// responses stored in one transaction as soon as they arrive (a kill loses only requests in flight).
void generate_through_server(RunContext& ctx, const GenerationJob& job, const std::vector<Todo>& todo, int64_t total) {
  const GenerateConfig& g = ctx.config.generate;
  reload_served_policy(ctx, job.policy_round);
  if (!ctx.engine) {
    llm::OpenAIConfig oc;
    oc.url = g.url;
    oc.model = g.model;
    oc.api_key_env = g.api_key_env;
    oc.concurrency = g.concurrency;
    oc.timeout_s = g.timeout_s;
    oc.max_retries = g.max_retries;
    ctx.engine = std::make_shared<llm::OpenAIClient>(oc);
  }
  llm::OpenAIClient& client = *ctx.engine;

  std::map<int32_t, std::vector<int>> missing;
  for (const Todo& t : todo) missing[t.user].push_back(t.sample);
  std::vector<ServerTask> tasks;
  for (auto& [user, samples] : missing) {
    if (static_cast<int>(samples.size()) == job.samples) {
      tasks.push_back({user, samples});
    } else {
      for (int s : samples) tasks.push_back({user, {s}});
    }
  }
  auto request_of = [&](const ServerTask& t) {
    llm::CompletionRequest r;
    r.prompt = ctx.prompt_ids[static_cast<size_t>(t.user)];
    r.n = static_cast<int>(t.samples.size());
    r.temperature = job.sampling.temperature;
    r.top_p = job.sampling.top_p;
    r.top_k = static_cast<int>(job.sampling.top_k);
    r.max_tokens = g.max_new_tokens;
    r.seed = static_cast<int64_t>(job.sampling.seed) + int64_t(t.user) * job.samples + t.samples.front();
    r.stop = g.stop;
    r.logprobs = g.logprobs;
    r.extensions = g.extensions;
    r.label = t.samples.size() == 1 ? fmt::format("{}: user {}, sample {}", job.stage, t.user, t.samples.front())
                                    : fmt::format("{}: user {}, samples 0..{}", job.stage, t.user, job.samples - 1);
    return r;
  };

  const int64_t retries0 = client.retries(), requests0 = client.requests(), refusals0 = client.n_refusals();
  Progress progress(job.stage, total, "responses", total - static_cast<int64_t>(todo.size()));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t new_tokens = 0, responses = 0;
  size_t prompts_done = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<ServerDone> finished;
  std::exception_ptr error;
  size_t next = 0, running = 0;
  bool stop = false;
  const int n_threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(g.concurrency), tasks.size()));
  std::vector<std::thread> threads;
  for (int w = 0; w < n_threads; ++w) {
    ++running;
    threads.emplace_back([&] {
      for (;;) {
        size_t i;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (stop || next >= tasks.size()) break;
          i = next++;
        }
        try {
          llm::CompletionResult r = client.complete(request_of(tasks[i]));
          std::lock_guard<std::mutex> lock(mu);
          finished.push_back({i, std::move(r)});
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          if (!error) error = std::current_exception();
          stop = true;
        }
        cv.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu);
      --running;
      cv.notify_all();
    });
  }
  auto join_all = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    for (std::thread& t : threads)
      if (t.joinable()) t.join();
  };
  try {
    for (;;) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !finished.empty() || running == 0; });
      if (finished.empty()) break;
      ServerDone d = std::move(finished.front());
      finished.pop_front();
      lock.unlock();
      const ServerTask& t = tasks[d.task];
      std::vector<StoredResponse> rows;
      for (size_t k = 0; k < t.samples.size(); ++k) {
        const llm::CompletionChoice& c = d.result.choices.at(k);
        StoredResponse row;
        row.round = job.store_round;
        row.user = t.user;
        row.sample = t.samples[k];
        row.ids = served_ids(ctx, c);
        // The text as the builtin engine would store these ids; the server's own when it sent no ids.
        row.text = c.ids.empty() ? std::string(trim(c.text)) : response_text(ctx, row.ids);
        row.prompt_tokens = static_cast<int>(ctx.prompt_ids[static_cast<size_t>(t.user)].size());
        rows.push_back(std::move(row));
      }
      int64_t tokens = d.result.completion_tokens;
      if (tokens <= 0)
        for (const StoredResponse& r : rows) tokens += static_cast<int64_t>(r.ids.size());
      new_tokens += tokens;
      responses += static_cast<int64_t>(rows.size());
      ctx.store->put_responses(rows);  // one transaction: this prompt's responses, all or none
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++prompts_done;
      progress.set_note(fmt::format("{} of {} prompts, {:.0f} tokens/s, {} retries", prompts_done, tasks.size(),
                                    secs > 0 ? double(new_tokens) / secs : 0.0, client.retries() - retries0));
      progress.advance(static_cast<int64_t>(rows.size()));
    }
  } catch (...) {
    join_all();
    throw;
  }
  join_all();
  if (error) std::rethrow_exception(error);
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::optional<bool> n_ok = client.n_supported();
  GenerateDoc doc;
  doc.backend = "openai";
  doc.url = client.endpoint();
  doc.responses = responses;
  doc.new_tokens = new_tokens;
  doc.seconds = seconds;
  doc.tokens_per_second = seconds > 0 ? double(new_tokens) / seconds : 0.0;
  doc.requests = client.requests() - requests0;
  doc.retries = client.retries() - retries0;
  doc.n_refusals = client.n_refusals() - refusals0;
  doc.concurrency = g.concurrency;
  doc.n_supported = n_ok;
  put_generate_doc(*ctx.store, job.stage, doc);
  log_info("{}: {} new tokens in {:.1f} s ({:.0f} tokens/s) through {}; {} requests, {} retries", job.stage, new_tokens,
           seconds, seconds > 0 ? double(new_tokens) / seconds : 0.0, client.endpoint(), client.requests() - requests0,
           client.retries() - retries0);
}

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
  if (g.backend == "openai") {
    generate_through_server(ctx, job, todo, total);
    ctx.store->mark_stage_done(stage, fp);
    return;
  }

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
  GenerateDoc doc;
  doc.responses = static_cast<int64_t>(todo.size());
  doc.new_tokens = new_tokens;
  doc.seconds = seconds;
  doc.tokens_per_second = seconds > 0 ? double(new_tokens) / seconds : 0.0;
  put_generate_doc(*ctx.store, stage, doc);
  ctx.store->mark_stage_done(stage, fp);
  log_info("{}: {} new tokens in {:.1f} s ({:.0f} tokens/s)", stage, new_tokens, seconds, seconds > 0 ? double(new_tokens) / seconds : 0.0);
}

}  // namespace

void stage_generate(RunContext& ctx, int round) {
  const GenerateConfig& g = ctx.config.generate;
  GenerationJob job;
  job.stage = GenerateDoc::key(round);
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
  std::vector<std::string> parts = {kPipelineVersion, "greedy", std::to_string(round), policy_fingerprint(ctx, round),
                                    ctx.prepared_fingerprint, ctx.config.sections_text({"prompt"}),
                                    "max_new_tokens=" + std::to_string(g.max_new_tokens),
                                    "dtype=" + llm::dtype_name(stage_dtype(ctx, g.dtype)),
                                    "max_users=" + std::to_string(ctx.config.run.max_users)};
  if (std::string b = backend_fingerprint(g); !b.empty()) parts.push_back(b);  // builtin runs keep their fingerprints
  return fingerprint(parts);
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
