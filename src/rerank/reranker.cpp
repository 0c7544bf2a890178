// Reranker training (AdamW, cosine schedule, early stopping on validation MAP@5), batched scoring,
// evaluation tables and knowledge rewards.
#include "rerank/reranker.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <random>

#include "util/config.h"
#include <fmt/ranges.h>

#include "util/error.h"
#include "util/log.h"
#include "runtime/runtime.h"

namespace rlrf {

void RerankTrainConfig::read_keys(const ConfigSection& s) {
  s.read("model", model);
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
  train.read_keys(s);
  s.read("jobs", jobs);
  s.read("seeds", seeds);
  s.read("knowledge", knowledge);
  s.read("item_knowledge", item_knowledge);
  s.read("encoder", encoder);
  s.read("cache_dir", cache_dir);
  s.read("user_text_history", user_text_history);
  s.check_no_unknown_keys();
  train.validate(s.where());
  RLRF_CHECK(jobs >= 0, "{}: jobs must be >= 0 (0: automatic), got {}", s.where(), jobs);
  RLRF_CHECK(!seeds.empty(), "{}: seeds must list at least one seed", s.where());
}

// ---------------------------------------------------------------------------------------------
// Batches of lists

namespace {

// dtype "bf16": matmuls of the pass in bfloat16 with float32 weights, accumulation and statistics
// (libtorch's CPU/CUDA autocast); "fp32": as the weights are.
class MixedPrecision {
 public:
  MixedPrecision(const std::string& dtype, const torch::Device& dev) : on_(dtype == "bf16"), cuda_(dev.is_cuda()) {
    if (!on_) return;
    if (cuda_) {
      was_ = at::autocast::is_enabled();
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(true);
    } else {
      was_ = at::autocast::is_cpu_enabled();
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
    }
  }
  ~MixedPrecision() {
    if (!on_) return;
    if (cuda_) at::autocast::set_enabled(was_);
    else at::autocast::set_cpu_enabled(was_);
    if (!was_) at::autocast::clear_cache();
  }
  MixedPrecision(const MixedPrecision&) = delete;
  MixedPrecision& operator=(const MixedPrecision&) = delete;

 private:
  bool on_, cuda_, was_ = false;
};

// The intra-op threads of a pass over `r` (RerankConfig::threads); 0 leaves them as they are.
int pass_threads(const Reranker& r) {
  if (r.threads > 0) return r.threads;
  return r.device == "cpu" ? 1 : 0;
}

struct Batch {
  at::Tensor items;   // [B, L] int64
  at::Tensor attrs;   // [B, L, A] int64
  at::Tensor labels;  // [B, L] float
  at::Tensor users;   // [B] int64
};

Batch make_batch(const PreparedData& data, const std::vector<int64_t>& lists) {
  const int64_t b = static_cast<int64_t>(lists.size());
  const int64_t l = static_cast<int64_t>(data.lists[lists[0]].items.size());
  const auto& attributes = data.dataset.item_attributes;
  const int64_t a = static_cast<int64_t>(attributes.size());
  Batch out;
  out.items = at::empty({b, l}, at::kLong);
  out.attrs = at::empty({b, l, a}, at::kLong);
  out.labels = at::empty({b, l}, at::kFloat);
  out.users = at::empty({b}, at::kLong);
  int64_t* it = out.items.data_ptr<int64_t>();
  int64_t* at_ = out.attrs.data_ptr<int64_t>();
  float* lb = out.labels.data_ptr<float>();
  int64_t* us = out.users.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const RerankList& list = data.lists[lists[i]];
    RLRF_CHECK(static_cast<int64_t>(list.items.size()) == l && list.labels.size() == list.items.size(),
               "rerank: list {} has {} items and {} labels, expected {}", lists[i], list.items.size(),
               list.labels.size(), l);
    us[i] = list.user;
    for (int64_t j = 0; j < l; ++j) {
      const int32_t item = list.items[j];
      it[i * l + j] = item;
      lb[i * l + j] = list.labels[j] > 0 ? 1.0f : 0.0f;
      for (int64_t k = 0; k < a; ++k) at_[(i * l + j) * a + k] = attributes[k][item];
    }
  }
  return out;
}

// Splits `lists` into batches of at most `batch` lists of equal length. With `rng`, lists are
// shuffled within each length and the batch order is shuffled; a final batch of one list is merged
// into its neighbour (batch-norm needs two).
std::vector<std::vector<int64_t>> chunk_lists(const PreparedData& data, const std::vector<int64_t>& lists, int batch,
                                              std::mt19937_64* rng) {
  std::map<size_t, std::vector<int64_t>> by_len;
  for (int64_t i : lists) by_len[data.lists[i].items.size()].push_back(i);
  std::vector<std::vector<int64_t>> out;
  for (auto& [len, group] : by_len) {
    if (rng) std::shuffle(group.begin(), group.end(), *rng);
    size_t first = out.size();
    for (size_t s = 0; s < group.size(); s += batch)
      out.emplace_back(group.begin() + s, group.begin() + std::min(group.size(), s + batch));
    if (rng && out.size() - first >= 2 && out.back().size() == 1) {
      out[out.size() - 2].push_back(out.back()[0]);
      out.pop_back();
    }
  }
  if (rng) std::shuffle(out.begin(), out.end(), *rng);
  return out;
}

at::Tensor rows_to(const at::Tensor& t, const torch::Device& dev) {
  return t.defined() ? t.to(dev, at::kFloat).contiguous() : t;
}

// Adapted features of many vectors through one tower, chunked.
template <typename F>
at::Tensor adapt_chunked(const at::Tensor& v, int64_t chunk, F&& f) {
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < v.size(0); s += chunk) parts.push_back(f(v.narrow(0, s, std::min(chunk, v.size(0) - s))));
  return parts.empty() ? at::Tensor() : at::cat(parts, 0);
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
    MixedPrecision mixed(r.dtype, dev);
    item_feat_all = adapt_chunked(rows_to(kv.item, dev), 8192, [&](const at::Tensor& x) { return m->adapt_items(x); })
                        .to(at::kFloat);
  }
  std::vector<std::vector<float>> out(lists.size());
  // Batches over positions in `lists` (a list may appear several times, e.g. in rewards).
  std::map<size_t, std::vector<int64_t>> by_len;
  for (size_t p = 0; p < lists.size(); ++p) by_len[data.lists[lists[p]].items.size()].push_back(static_cast<int64_t>(p));
  for (auto& [len, group] : by_len) {
    for (size_t s = 0; s < group.size(); s += r.eval_batch) {
      std::vector<int64_t> ps(group.begin() + s, group.begin() + std::min(group.size(), s + r.eval_batch));
      std::vector<int64_t> ls(ps.size());
      for (size_t i = 0; i < ps.size(); ++i) ls[i] = lists[ps[i]];
      Batch b = make_batch(data, ls);
      at::Tensor items = b.items.to(dev);
      at::Tensor uf, itf;
      if (r.shape.user_dim > 0) uf = user_feat.index_select(0, at::tensor(ps, at::kLong).to(dev));
      if (r.shape.item_dim > 0)
        itf = item_feat_all.index_select(0, items.flatten()).view({items.size(0), items.size(1), -1});
      at::Tensor scores;
      {
        MixedPrecision mixed(r.dtype, dev);
        scores = at::sigmoid(m->forward(items, b.attrs.to(dev), uf, itf).to(at::kFloat)).to(at::kCPU).contiguous();
      }
      const float* sp = scores.data_ptr<float>();
      const int64_t l = scores.size(1);
      for (size_t i = 0; i < ps.size(); ++i) out[ps[i]].assign(sp + i * l, sp + (i + 1) * l);
    }
  }
  return out;
}

struct EvalModeGuard {
  explicit EvalModeGuard(RerankerModel m) : m_(std::move(m)), was_training_(m_->is_training()) { m_->eval(); }
  ~EvalModeGuard() { m_->train(was_training_); }
  RerankerModel m_;
  bool was_training_;
};

std::vector<at::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<at::Tensor> s;
  for (const auto& p : m.parameters()) s.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) s.push_back(b.detach().clone());
  return s;
}

void restore(torch::nn::Module& m, const std::vector<at::Tensor>& s) {
  torch::NoGradGuard guard;
  size_t i = 0;
  for (auto& p : m.parameters()) p.copy_(s[i++]);
  for (auto& b : m.buffers()) b.copy_(s[i++]);
}

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
  if (config.jobs > 0) return config.jobs;
  return resolve_device(config.train.device) == "cpu" ? machine_threads() : 1;
}

void run_trainings(int64_t n, const RerankConfig& config, const std::function<std::string(int64_t)>& job,
                   const std::function<void(int64_t, const std::string&)>& done,
                   const std::function<std::string(int64_t)>& name) {
  run_isolated(n, rerank_jobs(config), job, done, name);
}

void fit(Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& cfg) {
  ScopedThreads threads(pass_threads(r));
  const torch::Device dev(r.device);
  std::vector<int64_t> train = lists_of_split(data, Split::kTrain);
  std::vector<int64_t> valid = lists_of_split(data, Split::kValid);
  RLRF_CHECK(!train.empty(), "rerank: no training lists in the prepared data");
  if (valid.empty()) log_warn("rerank: no validation lists; keeping the last epoch (no early stopping)");
  const at::Tensor user_vec = r.shape.user_dim > 0 ? rows_to(kv.user, dev) : at::Tensor();
  const at::Tensor item_vec = r.shape.item_dim > 0 ? rows_to(kv.item, dev) : at::Tensor();
  RLRF_CHECK(r.shape.user_dim == 0 || user_vec.defined(), "rerank: model expects user knowledge vectors");
  RLRF_CHECK(r.shape.item_dim == 0 || item_vec.defined(), "rerank: model expects item knowledge vectors");

  RerankerModel m = r.model;
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : m->named_parameters()) {
    if (p.key().size() >= 4 && p.key().compare(p.key().size() - 4, 4, "bias") == 0) no_decay.push_back(p.value());
    else decay.push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(cfg.lr).weight_decay(0)));
  torch::optim::AdamW opt(groups, torch::optim::AdamWOptions(cfg.lr));

  std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) * 0x9E3779B97F4A7C15ULL + 1);
  const int64_t steps_per_epoch = static_cast<int64_t>(chunk_lists(data, train, cfg.batch, nullptr).size());
  const int64_t total_steps = std::max<int64_t>(1, steps_per_epoch * cfg.epochs);
  int64_t step = 0;
  std::vector<at::Tensor> best = snapshot(*m);
  r.best_valid_map5 = -1;
  int bad_epochs = 0;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    m->train();
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (const auto& ls : chunk_lists(data, train, cfg.batch, &rng)) {
      const double lr = cfg.lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / total_steps));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      Batch b = make_batch(data, ls);
      at::Tensor items = b.items.to(dev);
      at::Tensor uf, itf;
      // Each distinct user and item of the batch goes through the adapter once (a list's user is on
      // all its lists, popular items on many): the same values and gradients as one row per slot.
      auto adapt_distinct = [](const at::Tensor& ids, const at::Tensor& vectors, auto&& adapt) {
        auto [distinct, inverse, counts] = at::_unique2(ids, /*sorted=*/false, /*return_inverse=*/true, false);
        return adapt(vectors.index_select(0, distinct)).index_select(0, inverse.flatten());
      };
      at::Tensor logits;
      {
        MixedPrecision mixed(cfg.dtype, dev);
        if (r.shape.user_dim > 0)
          uf = adapt_distinct(b.users.to(dev), user_vec, [&](const at::Tensor& x) { return m->adapt_users(x); });
        if (r.shape.item_dim > 0)
          itf = adapt_distinct(items.flatten(), item_vec, [&](const at::Tensor& x) { return m->adapt_items(x); })
                    .view({items.size(0), items.size(1), -1});
        logits = m->forward(items, b.attrs.to(dev), uf, itf).to(at::kFloat);
      }
      at::Tensor loss = at::binary_cross_entropy_with_logits(logits, b.labels.to(dev));
      opt.zero_grad();
      loss.backward();
      opt.step();
      ++step;
      loss_sum += loss.item<double>() * static_cast<double>(ls.size());
      loss_n += static_cast<int64_t>(ls.size());
    }
    EpochLog log;
    log.epoch = epoch;
    log.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.train_loss = loss_sum / std::max<int64_t>(1, loss_n);
    bool improved = true;
    if (!valid.empty()) {
      EvalResult v = evaluate(r, data, kv, Split::kValid);
      log.valid_map5 = v.mean.map_at(5);
      log.valid_ndcg5 = v.mean.ndcg_at(5);
      improved = log.valid_map5 > r.best_valid_map5;
    }
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.history.push_back(log);
    log_info("rerank {} seed {} epoch {}: loss {:.4f}, valid MAP@5 {:.4f} NDCG@5 {:.4f} ({:.1f} s){}", r.shape.model,
             cfg.seed, epoch, log.train_loss, log.valid_map5, log.valid_ndcg5, log.seconds, improved ? " *" : "");
    if (improved) {
      best = snapshot(*m);
      r.best_epoch = epoch;
      r.best_valid_map5 = log.valid_map5;
      bad_epochs = 0;
    } else if (++bad_epochs >= cfg.patience) {
      break;
    }
  }
  restore(*m, best);
  m->eval();
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
  RerankerModel m = r.model;
  const torch::Device dev(r.device);
  at::Tensor user_feat;
  if (r.shape.user_dim > 0) {
    auto adapt = [&](const at::Tensor& x) {
      MixedPrecision mixed(r.dtype, dev);
      return m->adapt_users(x).to(at::kFloat);
    };
    if (user_override.defined()) {
      RLRF_CHECK(user_override.dim() == 2 && user_override.size(0) == static_cast<int64_t>(lists.size()) &&
                     user_override.size(1) == r.shape.user_dim,
                 "score_lists: user_override expected [{}, {}], got {}", lists.size(), r.shape.user_dim,
                 user_override.sizes());
      user_feat = adapt_chunked(rows_to(user_override, dev), 8192, adapt);
    } else {
      RLRF_CHECK(kv.user.defined(), "rerank: the model uses user knowledge but no user vectors were given");
      at::Tensor all = adapt_chunked(rows_to(kv.user, dev), 8192, adapt);  // [n_users, out]
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
    RerankerModel m = r.model;
    const torch::Device dev(r.device);
    at::Tensor cand_feat = adapt_chunked(rows_to(candidate_vectors, dev), 8192,
                                         [&](const at::Tensor& x) {
                                           MixedPrecision mixed(r.dtype, dev);
                                           return m->adapt_users(x).to(at::kFloat);
                                         });  // [C, out]
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
