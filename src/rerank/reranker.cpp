// Reranker construction and training (epochs of batches under AdamW at a cosine learning rate,
// validation, early stopping on validation MAP@5), batched scoring, evaluation tables and knowledge
// rewards. The pieces of training live in batches.h, optimizer.h and early_stopping.h.
#include "rerank/reranker.h"

#include <ATen/ATen.h>
#include <cstdint>
#include "runtime/autocast.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <random>

#include "util/config.h"
#include <fmt/ranges.h>

#include "rerank/batches.h"
#include "rerank/early_stopping.h"
#include "rerank/optimizer.h"
#include "runtime/runtime.h"
#include "util/error.h"
#include "util/log.h"

namespace rlrf {

void RerankTrainConfig::read_keys(const ConfigSection& s) {
  s.read("epochs", epochs);
  s.read("batch", batch);
  s.read("lr", lr);
  s.read("weight_decay", weight_decay);
  s.read("patience", patience);
  s.read("shared_experts", shared_experts);
  s.read("specific_experts", specific_experts);
  s.read("embed_dim", embed_dim);
  s.read("seed", seed);
  s.read("device", device);
  s.read("eval_batch", eval_batch);
  s.read("threads", threads);
  s.read("dtype", dtype);
  s.read("knowledge_norm", knowledge_norm);
}

void RerankTrainConfig::validate(const std::string& where) const {
  RLRF_CHECK(model == "dlcm" || model == "prm", "{}: model = '{}' (use dlcm or prm)", where, model);
  RLRF_CHECK(epochs >= 1, "{}: epochs must be >= 1, got {}", where, epochs);
  RLRF_CHECK(batch >= 2, "{}: batch must be >= 2 (DLCM's batch-norm needs 2 lists), got {}", where, batch);
  RLRF_CHECK(lr > 0, "{}: lr must be > 0, got {}", where, lr);
  RLRF_CHECK(weight_decay >= 0, "{}: weight_decay must be >= 0, got {}", where, weight_decay);
  RLRF_CHECK(patience >= 1, "{}: patience must be >= 1, got {}", where, patience);
  RLRF_CHECK(shared_experts >= 0 && specific_experts >= 0 && shared_experts + specific_experts > 0,
             "{}: need at least one expert (shared_experts {}, specific_experts {})", where, shared_experts,
             specific_experts);
  RLRF_CHECK(embed_dim >= 1 && eval_batch >= 1, "{}: embed_dim and eval_batch must be >= 1", where);
  RLRF_CHECK(dtype == "fp32" || dtype == "bf16", "{}: dtype = '{}' (use fp32 or bf16)", where, dtype);
  RLRF_CHECK(threads >= 0, "{}: threads must be >= 0 (0: automatic), got {}", where, threads);
  RLRF_CHECK(knowledge_norm == "standardize" || knowledge_norm == "none",
             "{}: knowledge_norm = '{}' (use standardize or none)", where, knowledge_norm);
}

void RerankConfig::read(const ConfigSection& s) {
  s.refuse("seeds", "[eval] seeds");
  s.refuse("item_knowledge", "[knowledge] item");
  s.refuse("encoder", "[knowledge] encoder");
  s.refuse("user_text_history", "[knowledge] user_history");
  s.refuse("model", "[eval] models (the rerankers evaluated) or [reward] model (the reward model)");
  train.read_keys(s);
  s.read("jobs", jobs);
  s.read("knowledge", knowledge);
  s.read("cache_dir", cache_dir);
  s.check_no_unknown_keys();
  train.validate(s.where());
  RLRF_CHECK(jobs >= 0, "{}: jobs must be >= 0 (0: automatic), got {}", s.where(), jobs);
}

// ---------------------------------------------------------------------------------------------
// Batches of lists

namespace {

// dtype "bf16": matmuls of the pass in bfloat16 with float32 weights, accumulation and statistics
// (runtime/autocast.h); "fp32": as the weights are.
at::ScalarType pass_compute(const std::string& dtype) { return dtype == "bf16" ? at::kBFloat16 : at::kFloat; }

// The intra-op threads of a pass over `r` (RerankConfig::threads); 0 leaves them as they are.
int pass_threads(const Reranker& r) {
  if (r.threads > 0) return r.threads;
  return r.device == "cpu" ? 1 : 0;
}

at::Tensor rows_to(const at::Tensor& t, const torch::Device& dev) {
  return t.defined() ? t.to(dev, at::kFloat).contiguous() : t;
}

// Rows per adapter pass when scoring: bounds the memory of adapting every user or item at once.
constexpr int64_t kAdaptChunk = 8192;

enum class Tower { kUser, kItem };

// Adapted features [n, expert_out] float32 of knowledge vectors [n, d] through one adapter tower of
// r's model, kAdaptChunk rows at a time, matmuls in r.dtype: the scoring passes' adapter calls.
at::Tensor adapted_features(const Reranker& r, const at::Tensor& vectors, Tower tower) {
  const torch::Device dev(r.device);
  RerankerModel m = r.model;
  return in_row_chunks(rows_to(vectors, dev), kAdaptChunk, [&](const at::Tensor& x) {
    AutocastScope mixed(pass_compute(r.dtype), dev);
    return (tower == Tower::kUser ? m->adapt_users(x) : m->adapt_items(x)).to(at::kFloat);
  });
}

// Scores lists in eval mode. `user_feat` [lists.size(), expert_out]: adapted user features per list
// (required when the model has user knowledge).
std::vector<std::vector<float>> score_core(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                           const std::vector<int64_t>& lists, const at::Tensor& user_feat) {
  ScopedThreads threads(pass_threads(r));
  RerankerModel m = r.model;
  const torch::Device dev(r.device);
  at::Tensor item_feat_all;
  if (r.shape.item_dim > 0) {
    RLRF_CHECK(kv.item.defined(), "rerank: the model uses item knowledge but no item vectors were given");
    item_feat_all = adapted_features(r, kv.item, Tower::kItem);
  }
  std::vector<std::vector<float>> out(lists.size());
  // Batches over positions in `lists` (a list may appear several times, e.g. in rewards).
  for (const std::vector<int64_t>& ps : length_batches(data, lists, r.eval_batch)) {
    std::vector<int64_t> ls(ps.size());
    for (size_t i = 0; i < ps.size(); ++i) ls[i] = lists[ps[i]];
    Batch b = make_batch(data, ls);
    at::Tensor items = b.items.to(dev);
    KnowledgeRows uf, itf;  // every item's features, read by item id (slot_input.h projects them once)
    if (r.shape.user_dim > 0) uf = {user_feat, at::tensor(ps, at::kLong).to(dev)};
    if (r.shape.item_dim > 0) itf = {item_feat_all, items};
    at::Tensor scores;
    {
      AutocastScope mixed(pass_compute(r.dtype), dev);
      scores = at::sigmoid(m->forward(items, b.attrs.to(dev), uf, itf).to(at::kFloat)).to(at::kCPU).contiguous();
    }
    const float* sp = scores.data_ptr<float>();
    const int64_t l = scores.size(1);
    for (size_t i = 0; i < ps.size(); ++i) out[ps[i]].assign(sp + i * l, sp + (i + 1) * l);
  }
  return out;
}

struct EvalModeGuard {
  explicit EvalModeGuard(RerankerModel m) : m_(std::move(m)), was_training_(m_->is_training()) { m_->eval(); }
  ~EvalModeGuard() { m_->train(was_training_); }
  RerankerModel m_;
  bool was_training_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and training

RerankerShape reranker_shape(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config) {
  RerankerShape s;
  s.model = config.model;
  s.n_items = static_cast<int64_t>(data.dataset.items.size());
  for (int32_t c : data.dataset.attribute_cardinality) s.attribute_cardinality.push_back(c);
  RLRF_CHECK(data.dataset.item_attributes.size() == data.dataset.attribute_cardinality.size(),
             "rerank: dataset has {} attribute columns but {} cardinalities", data.dataset.item_attributes.size(),
             data.dataset.attribute_cardinality.size());
  s.embed_dim = config.embed_dim;
  s.shared_experts = config.shared_experts;
  s.specific_experts = config.specific_experts;
  if (kv.user.defined()) {
    RLRF_CHECK(kv.user.dim() == 2 && kv.user.size(0) == static_cast<int64_t>(data.dataset.users.size()),
               "rerank: user knowledge vectors expected [{} users, d], got {}", data.dataset.users.size(),
               kv.user.sizes());
    s.user_dim = kv.user.size(1);
  }
  if (kv.item.defined()) {
    RLRF_CHECK(kv.item.dim() == 2 && kv.item.size(0) == s.n_items,
               "rerank: item knowledge vectors expected [{} items, d], got {}", s.n_items, kv.item.sizes());
    s.item_dim = kv.item.size(1);
  }
  return s;
}

Reranker make_reranker(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config) {
  Reranker r;
  r.shape = reranker_shape(data, kv, config);
  r.device = resolve_device(config.device);
  r.eval_batch = config.eval_batch;
  r.threads = config.threads;
  r.dtype = config.dtype;
  {
    // The initialisation draws from libtorch's global generator: one model at a time, so that
    // trainings run side by side get the same weights as when run alone.
    static std::mutex init_mutex;
    std::lock_guard<std::mutex> lock(init_mutex);
    torch::manual_seed(static_cast<uint64_t>(config.seed));
    r.model = RerankerModel(r.shape);
  }
  if (config.knowledge_norm == "standardize" && !kv.empty()) {
    auto stats = [](const at::Tensor& v) {
      at::Tensor x = v.to(at::kFloat);
      at::Tensor mean = x.mean(0);
      at::Tensor std = x.size(0) > 1 ? x.std(0) : at::ones_like(mean);
      return std::make_pair(mean, 1.0 / std.clamp_min(1e-6));
    };
    at::Tensor um, us, im, is;
    if (r.shape.user_dim > 0) {
      std::vector<int64_t> train_users;
      for (const UserSequence& s : data.sequences)
        if (s.split == Split::kTrain) train_users.push_back(s.user);
      at::Tensor v = train_users.size() >= 2 ? kv.user.index_select(0, at::tensor(train_users, at::kLong)) : kv.user;
      std::tie(um, us) = stats(v);
    }
    if (r.shape.item_dim > 0) std::tie(im, is) = stats(kv.item);
    r.model->set_standardization(um, us, im, is);
  }
  r.model->to(torch::Device(r.device));
  return r;
}

std::vector<int64_t> lists_of_split(const PreparedData& data, Split split) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < data.lists.size(); ++i)
    if (data.lists[i].split == split) out.push_back(static_cast<int64_t>(i));
  return out;
}

int rerank_jobs(const RerankConfig& config) {
  // On CUDA one at a time, in this process: a forked worker cannot use a CUDA context its parent
  // may already hold, and one GPU runs these small models' kernels one after another anyway.
  if (resolve_device(config.train.device) != "cpu") return 1;
  return config.jobs > 0 ? config.jobs : machine_threads();
}

void run_trainings(int64_t n, const RerankConfig& config, const std::function<std::string(int64_t)>& job,
                   const std::function<void(int64_t, const std::string&)>& done,
                   const std::function<std::string(int64_t)>& name) {
  run_isolated(n, rerank_jobs(config), job, done, name);
}

namespace {

// The training passes of one fit: the optimizer, the shuffling stream and the step count that the
// cosine schedule follows across epochs.
class TrainingPasses {
 public:
  TrainingPasses(Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& cfg)
      : r_(r), data_(data), cfg_(cfg), dev_(r.device), train_(lists_of_split(data, Split::kTrain)),
        rng_(static_cast<uint64_t>(cfg.seed) * 0x9E3779B97F4A7C15ULL + 1) {
    RLRF_CHECK(!train_.empty(), "rerank: no training lists in the prepared data");
    user_vec_ = r.shape.user_dim > 0 ? rows_to(kv.user, dev_) : at::Tensor();
    item_vec_ = r.shape.item_dim > 0 ? rows_to(kv.item, dev_) : at::Tensor();
    RLRF_CHECK(r.shape.user_dim == 0 || user_vec_.defined(), "rerank: model expects user knowledge vectors");
    RLRF_CHECK(r.shape.item_dim == 0 || item_vec_.defined(), "rerank: model expects item knowledge vectors");
    opt_ = make_optimizer(*r.model, cfg.lr, cfg.weight_decay);
    const int64_t steps_per_epoch = static_cast<int64_t>(length_batches(data, train_, cfg.batch).size());
    total_steps_ = std::max<int64_t>(1, steps_per_epoch * cfg.epochs);
  }

  // One epoch over the training lists in shuffled batches, one optimizer step per batch; returns
  // the mean loss per list.
  double epoch() {
    r_.model->train();
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (const std::vector<int64_t>& ps : length_batches(data_, train_, cfg_.batch, &rng_)) {
      std::vector<int64_t> ls(ps.size());
      for (size_t i = 0; i < ps.size(); ++i) ls[i] = train_[static_cast<size_t>(ps[i])];
      opt_->set_lr(cosine_lr(cfg_.lr, step_, total_steps_));
      at::Tensor loss = batch_loss(ls);
      opt_->zero_grad();
      loss.backward();
      opt_->step();
      ++step_;
      loss_sum += loss.item<double>() * static_cast<double>(ls.size());
      loss_n += static_cast<int64_t>(ls.size());
    }
    return loss_sum / std::max<int64_t>(1, loss_n);
  }

 private:
  // Binary cross-entropy of the logits of lists `ls` against their labels.
  at::Tensor batch_loss(const std::vector<int64_t>& ls) {
    RerankerModel m = r_.model;
    Batch b = make_batch(data_, ls);
    at::Tensor items = b.items.to(dev_);
    KnowledgeRows uf, itf;
    // Each distinct user and item of the batch goes through the adapter once (a list's user is on
    // all its lists, popular items on many), and the scorer reads them by index: the same values
    // and gradients as one row per slot.
    auto adapt_distinct = [](const at::Tensor& ids, const at::Tensor& vectors, auto&& adapt) {
      auto [distinct, inverse, counts] = at::_unique2(ids, /*sorted=*/false, /*return_inverse=*/true, false);
      return KnowledgeRows{adapt(vectors.index_select(0, distinct)), inverse.reshape(ids.sizes())};
    };
    at::Tensor logits;
    {
      AutocastScope mixed(pass_compute(cfg_.dtype), dev_);
      if (r_.shape.user_dim > 0)
        uf = adapt_distinct(b.users.to(dev_), user_vec_, [&](const at::Tensor& x) { return m->adapt_users(x); });
      if (r_.shape.item_dim > 0)
        itf = adapt_distinct(items, item_vec_, [&](const at::Tensor& x) { return m->adapt_items(x); });
      logits = m->forward(items, b.attrs.to(dev_), uf, itf).to(at::kFloat);
    }
    return at::binary_cross_entropy_with_logits(logits, b.labels.to(dev_));
  }

  Reranker& r_;
  const PreparedData& data_;
  const RerankTrainConfig& cfg_;
  const torch::Device dev_;
  const std::vector<int64_t> train_;  // indices into data.lists
  at::Tensor user_vec_, item_vec_;    // knowledge vectors on the device (undefined: not used)
  std::unique_ptr<FlatAdamW> opt_;
  std::mt19937_64 rng_;
  int64_t step_ = 0, total_steps_ = 1;
};

struct Validation {
  double map5 = 0, ndcg5 = 0;
};

// MAP@5 and NDCG@5 of `r` on the validation lists.
Validation validate(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv) {
  EvalResult v = evaluate(r, data, kv, Split::kValid);
  return {v.mean.map_at(5), v.mean.ndcg_at(5)};
}

void log_epoch(const Reranker& r, int64_t seed, const EpochLog& log, bool best) {
  log_info("rerank {} seed {} epoch {}: loss {:.4f}, valid MAP@5 {:.4f} NDCG@5 {:.4f} ({:.1f} s){}", r.shape.model,
           seed, log.epoch, log.train_loss, log.valid_map5, log.valid_ndcg5, log.seconds, best ? " *" : "");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void fit(Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& cfg) {
  ScopedThreads threads(pass_threads(r));
  const bool has_valid = !lists_of_split(data, Split::kValid).empty();
  if (!has_valid) log_warn("rerank: no validation lists; keeping the last epoch (no early stopping)");
  TrainingPasses passes(r, data, kv, cfg);
  EarlyStopping stopping(*r.model, cfg.patience);
  r.best_valid_map5 = -1;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    EpochLog log;
    log.epoch = epoch;
    log.train_loss = passes.epoch();
    log.train_seconds = seconds_since(t0);
    std::optional<double> score;
    if (has_valid) {
      const Validation v = validate(r, data, kv);
      log.valid_map5 = v.map5;
      log.valid_ndcg5 = v.ndcg5;
      score = v.map5;
    }
    const bool best = stopping.after_epoch(epoch, score, *r.model);
    log.seconds = seconds_since(t0);
    r.history.push_back(log);
    log_epoch(r, cfg.seed, log, best);
    if (best) {
      r.best_epoch = epoch;
      r.best_valid_map5 = log.valid_map5;
    }
    if (stopping.should_stop()) break;
  }
  stopping.restore_best(*r.model);
  r.model->eval();
}

Reranker train_reranker(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config) {
  Reranker r = make_reranker(data, kv, config);
  fit(r, data, kv, config);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Scoring and evaluation

std::vector<std::vector<float>> score_lists(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                            const std::vector<int64_t>& lists, const at::Tensor& user_override) {
  if (lists.empty()) return {};
  c10::InferenceMode guard;
  EvalModeGuard mode(r.model);
  const torch::Device dev(r.device);
  at::Tensor user_feat;
  if (r.shape.user_dim > 0) {
    if (user_override.defined()) {
      RLRF_CHECK(user_override.dim() == 2 && user_override.size(0) == static_cast<int64_t>(lists.size()) &&
                     user_override.size(1) == r.shape.user_dim,
                 "score_lists: user_override expected [{}, {}], got {}", lists.size(), r.shape.user_dim,
                 user_override.sizes());
      user_feat = adapted_features(r, user_override, Tower::kUser);
    } else {
      RLRF_CHECK(kv.user.defined(), "rerank: the model uses user knowledge but no user vectors were given");
      at::Tensor all = adapted_features(r, kv.user, Tower::kUser);  // [n_users, out]
      std::vector<int64_t> users(lists.size());
      for (size_t i = 0; i < lists.size(); ++i) users[i] = data.lists[lists[i]].user;
      user_feat = all.index_select(0, at::tensor(users, at::kLong).to(dev));
    }
  } else {
    RLRF_CHECK(!user_override.defined(), "score_lists: a user vector was given but the model has no user knowledge");
  }
  return score_core(r, data, kv, lists, user_feat);
}

EvalResult evaluate_scores(const PreparedData& data, const std::vector<int64_t>& lists,
                           const std::vector<std::vector<float>>& scores) {
  RLRF_CHECK(lists.size() == scores.size(), "evaluate_scores: {} lists but {} score vectors", lists.size(),
             scores.size());
  EvalResult e;
  e.lists = lists;
  std::vector<int32_t> users;
  for (size_t i = 0; i < lists.size(); ++i) {
    const RerankList& l = data.lists[lists[i]];
    e.per_list.push_back(list_metrics(l.labels, scores[i]));
    users.push_back(l.user);
  }
  e.mean = mean_metrics(e.per_list);
  e.per_user = per_user_metrics(e.per_list, users);
  return e;
}

EvalResult evaluate(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, Split split) {
  std::vector<int64_t> lists = lists_of_split(data, split);
  return evaluate_scores(data, lists, score_lists(r, data, kv, lists));
}

EvalResult evaluate_baseline(const PreparedData& data, Split split, const std::string& baseline) {
  std::vector<int64_t> lists = lists_of_split(data, split);
  std::vector<std::vector<float>> scores;
  for (int64_t i : lists) {
    if (baseline == "list_order") scores.push_back(list_order_scores(data.lists[i]));
    else if (baseline == "popularity") scores.push_back(popularity_scores(data.lists[i], data.item_popularity));
    else fail("unknown baseline '{}' (use list_order or popularity)", baseline);
  }
  return evaluate_scores(data, lists, scores);
}

// ---------------------------------------------------------------------------------------------
// Rewards

namespace {

// Every (candidate, list of its user) pair scored with the candidate's vector standing in for the
// user's knowledge: pair_list / pair_cand say which list and candidate each score vector is of.
std::vector<std::vector<float>> candidate_list_scores(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                                     const std::vector<int32_t>& users, const at::Tensor& candidate_vectors,
                                                     std::vector<int64_t>& pair_list, std::vector<int64_t>& pair_cand) {
  RLRF_CHECK(r.shape.user_dim > 0, "rewards need a reranker trained with user knowledge (this one has none)");
  RLRF_CHECK(candidate_vectors.dim() == 2 && candidate_vectors.size(0) == static_cast<int64_t>(users.size()) &&
                 candidate_vectors.size(1) == r.shape.user_dim,
             "knowledge rewards: candidate vectors expected [{}, {}], got {}", users.size(), r.shape.user_dim,
             candidate_vectors.sizes());
  std::vector<std::vector<int64_t>> lists_of_user(data.dataset.users.size());
  for (size_t i = 0; i < data.lists.size(); ++i) {
    const int32_t u = data.lists[i].user;
    RLRF_CHECK(u >= 0 && static_cast<size_t>(u) < lists_of_user.size(), "rerank: list {} has user {} of {}", i, u,
               lists_of_user.size());
    lists_of_user[u].push_back(static_cast<int64_t>(i));
  }
  pair_list.clear();
  pair_cand.clear();
  for (size_t c = 0; c < users.size(); ++c) {
    RLRF_CHECK(users[c] >= 0 && static_cast<size_t>(users[c]) < lists_of_user.size(),
               "knowledge rewards: user {} out of range (0..{})", users[c], lists_of_user.size());
    for (int64_t l : lists_of_user[users[c]]) {
      pair_list.push_back(l);
      pair_cand.push_back(static_cast<int64_t>(c));
    }
  }
  std::vector<std::vector<float>> scores;
  if (pair_list.empty()) return scores;
  {
    c10::InferenceMode guard;
    EvalModeGuard mode(r.model);
    const torch::Device dev(r.device);
    at::Tensor cand_feat = adapted_features(r, candidate_vectors, Tower::kUser);  // [C, out]
    at::Tensor pair_feat = cand_feat.index_select(0, at::tensor(pair_cand, at::kLong).to(dev));  // [pairs, out]
    scores = score_core(r, data, kv, pair_list, pair_feat);
  }
  return scores;
}

}  // namespace

std::vector<MetricTable> knowledge_reward_metrics(const Reranker& r, const PreparedData& data,
                                                  const KnowledgeVectors& kv, const std::vector<int32_t>& users,
                                                  const at::Tensor& candidate_vectors) {
  std::vector<int64_t> pair_list, pair_cand;
  const std::vector<std::vector<float>> scores = candidate_list_scores(r, data, kv, users, candidate_vectors, pair_list, pair_cand);
  std::vector<MetricTable> out(users.size());
  std::vector<std::vector<ListMetrics>> per(users.size());
  for (size_t p = 0; p < pair_list.size(); ++p)
    per[pair_cand[p]].push_back(list_metrics(data.lists[pair_list[p]].labels, scores[p]));
  for (size_t c = 0; c < users.size(); ++c) out[c] = mean_metrics(per[c]);
  return out;
}

std::vector<double> knowledge_rewards(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                      const std::vector<int32_t>& users, const at::Tensor& candidate_vectors,
                                      const RewardOptions& options) {
  RLRF_CHECK(options.metric == "ndcg" || options.metric == "map" || options.metric == "margin",
             "reward metric '{}' (use ndcg, map or margin)", options.metric);
  std::vector<double> out;
  if (options.metric == "margin") {
    // Per list: mean score of its relevant items minus mean score of the others (lists with only
    // one kind count 0 and are left out); per candidate: the mean over its user's lists.
    std::vector<int64_t> pair_list, pair_cand;
    const std::vector<std::vector<float>> scores = candidate_list_scores(r, data, kv, users, candidate_vectors, pair_list, pair_cand);
    std::vector<double> sum(users.size(), 0.0);
    std::vector<int64_t> n(users.size(), 0);
    for (size_t p = 0; p < pair_list.size(); ++p) {
      const std::vector<uint8_t>& labels = data.lists[static_cast<size_t>(pair_list[p])].labels;
      double pos = 0, neg = 0;
      int64_t np = 0, nn = 0;
      for (size_t i = 0; i < labels.size(); ++i) {
        if (labels[i] > 0) {
          pos += scores[p][i];
          ++np;
        } else {
          neg += scores[p][i];
          ++nn;
        }
      }
      if (np == 0 || nn == 0) continue;
      sum[static_cast<size_t>(pair_cand[p])] += pos / double(np) - neg / double(nn);
      ++n[static_cast<size_t>(pair_cand[p])];
    }
    for (size_t c = 0; c < users.size(); ++c) out.push_back(n[c] ? sum[c] / double(n[c]) : 0.0);
    return out;
  }
  const int ki = metric_k_index(options.k);
  for (const MetricTable& t : knowledge_reward_metrics(r, data, kv, users, candidate_vectors))
    out.push_back(options.metric == "ndcg" ? t.ndcg[ki] : t.map[ki]);
  return out;
}

}  // namespace rlrf
