// Training, evaluation and scoring of the knowledge-augmented rerankers: the API the `rlrf rerank`
// verb and the RLRF loop (rewards for DPO pairs) build on.
//
//   RerankConfig cfg;  cfg.read(config_file.section("rerank"));
//   KnowledgeVectors kv = build_knowledge_vectors(data, source);       // rerank/knowledge_vectors.h
//   Reranker r = train_reranker(data, kv, cfg.train);                  // early stops on VALIDATION MAP@5
//   EvalResult test = evaluate(r, data, kv, Split::kTest);             // means + per-list + per-user
//   std::vector<double> rw = knowledge_rewards(r, data, kv, users, candidate_vectors, {"ndcg", 5});
//
// Knowledge vectors are frozen inputs: kv.user [n_users, d] and kv.item [n_items, d] (either may be
// undefined = that knowledge is off; both undefined = the base model without an adapter).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "rerank/metrics.h"
#include "rerank/model.h"

namespace rlrf {

class ConfigSection;

// What training one reranker needs: the model, the optimisation, where it runs. Read from [rerank]
// (RerankConfig::read), keys are the field names.
struct RerankTrainConfig {
  std::string model = "dlcm";   // dlcm | prm
  int epochs = 20;              // upper bound; early stopping usually ends sooner (paper: 50)
  int batch = 64;               // lists per step
  double lr = 1e-3;             // AdamW peak learning rate, cosine decay to 0 over epochs
  // AdamW decoupled decay on weights (not on biases). KAR uses 0; 0.1 was better for the knowledge
  // models on the ML-100K validation users (DLCM +0.005 MAP@5, base unchanged).
  double weight_decay = 0.1;
  int patience = 3;             // epochs without a better validation MAP@5 before stopping
  int shared_experts = 2;       // adapter S
  int specific_experts = 5;     // adapter P
  int embed_dim = 32;           // item-id and attribute embeddings
  int64_t seed = 1;             // model init and shuffling; same seed -> same numbers
  std::string device = "cpu";   // cpu | cuda | cuda:N | auto
  int eval_batch = 1024;        // lists per forward when scoring
  // Intra-op threads of one training or scoring pass; 0: one on CPU (the reranker's ops take
  // microseconds, and threads that wait for each other after every op cost more than they give:
  // DLCM trains 4x faster on one thread than on two here). Use the cores by running trainings side
  // by side instead (RerankConfig::jobs).
  int threads = 0;
  // Matmul precision of training and scoring: fp32, or bf16 (mixed precision: weights, gradients,
  // the optimizer and all statistics stay fp32). bf16 runs the knowledge adapter's matmuls ~2.5x
  // faster on CPUs with AVX512-BF16 and on GPUs; metrics move by about the seed noise.
  std::string dtype = "fp32";
  // Knowledge vectors are standardised per dimension before the adapter ("standardize": mean and
  // std of the training users' / all items' vectors, stored in the model) or used as given ("none",
  // KAR). Encoders differ in scale (GloVe means are ~10x smaller than BERT's), and PRM adds a
  // position table of amplitude 1 to the adapter output, so unscaled small vectors learn slowly.
  std::string knowledge_norm = "standardize";
  // Reads the keys above from `s`; the caller checks for keys nobody reads, then calls validate.
  void read_keys(const ConfigSection& s);
  // Throws Error naming `where` and the key when a value is out of range.
  void validate(const std::string& where) const;
};

// [rerank] in the TOML config: the trainer's settings, and how `rlrf rerank` and the RLRF loop's
// evaluation run their trainings. Keys are the field names (those of `train` at the top level).
struct RerankConfig {
  RerankTrainConfig train;
  // Trainings run side by side by `rlrf rerank` and the RLRF loop's evaluation on CPU; 0: one per
  // core. On CUDA they run one at a time whatever it says. Results do not depend on it.
  int jobs = 0;
  // Settings of `rlrf rerank` only (a run refuses them: pipeline/run_config.h read_rerank_section):
  std::string knowledge = "profile";   // user knowledge: none | profile | file:PATH
  std::string cache_dir;               // encoding cache; empty: <out>/encode-cache
  // Reads the section; keys whose home is another section (seeds, item_knowledge, encoder,
  // user_text_history, model) are refused naming that home, unknown keys are errors.
  void read(const ConfigSection& s);
};

struct KnowledgeVectors {
  at::Tensor user;  // [n_users, d] float32, or undefined
  at::Tensor item;  // [n_items, d] float32, or undefined
  bool empty() const { return !user.defined() && !item.defined(); }
};

struct EpochLog {
  int epoch = 0;  // 1-based
  double train_loss = 0, valid_map5 = 0, valid_ndcg5 = 0;
  double train_seconds = 0;  // the training pass
  double seconds = 0;        // training pass + validation
};

// A trained model with what it needs to score lists.
struct Reranker {
  RerankerShape shape;
  RerankerModel model{nullptr};
  std::string device = "cpu";
  int eval_batch = 1024;
  int threads = 0;              // intra-op threads (RerankTrainConfig::threads)
  std::string dtype = "fp32";   // matmul precision (RerankTrainConfig::dtype)
  int best_epoch = 0;           // epoch whose weights are kept (0: untrained)
  double best_valid_map5 = 0;
  std::vector<EpochLog> history;
};

// The model shape that `data`, `kv` and `config` call for.
RerankerShape reranker_shape(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config);
// A freshly initialised model (seeded by config.seed).
Reranker make_reranker(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config);

// Trains on the train-split lists; after each epoch evaluates MAP@5 on the validation lists and keeps
// the best weights (test lists are never looked at). Without validation lists it keeps the last epoch.
Reranker train_reranker(const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config);
// Continues training `r` (used by train_reranker; exposed for tests and the RLRF loop): epochs of
// shuffled batches at a cosine learning rate (rerank/optimizer.h), each followed by validation, with
// early stopping (rerank/early_stopping.h); `r` ends with the best epoch's weights, in eval mode.
void fit(Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, const RerankTrainConfig& config);

// How many trainings of `config` to run side by side (RerankConfig::jobs resolved).
int rerank_jobs(const RerankConfig& config);

// Runs n trainings (job(i) returns a result as text, done(i, result) takes it on the calling thread)
// rerank_jobs(config) at a time, each in a worker process of its own: util/runtime.h run_isolated
// says why not threads (bf16 trainings side by side crash libtorch 1.13's oneDNN). The evaluation
// stage and `rlrf rerank` schedule their trainings through this.
void run_trainings(int64_t n, const RerankConfig& config, const std::function<std::string(int64_t)>& job,
                   const std::function<void(int64_t, const std::string&)>& done,
                   const std::function<std::string(int64_t)>& name = nullptr);

// Indices into data.lists of one split.
std::vector<int64_t> lists_of_split(const PreparedData& data, Split split);

// Scores (sigmoid of the logits) of the given lists, one vector per list in its initial order.
// `user_override` [lists.size(), d_user] (optional) replaces each list's user knowledge vector.
std::vector<std::vector<float>> score_lists(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                            const std::vector<int64_t>& lists, const at::Tensor& user_override = {});

struct EvalResult {
  MetricTable mean;                   // over lists (lists without a positive count 0)
  std::vector<int64_t> lists;         // indices into data.lists
  std::vector<ListMetrics> per_list;  // aligned with `lists`
  PerUserMetrics per_user;            // mean over each user's lists
};

EvalResult evaluate(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv, Split split);
// Metrics of given scores (one vector per list of `lists`): for baselines and external scorers.
EvalResult evaluate_scores(const PreparedData& data, const std::vector<int64_t>& lists,
                           const std::vector<std::vector<float>>& scores);
// "list_order" (the lists' initial order) or "popularity" (data.item_popularity).
EvalResult evaluate_baseline(const PreparedData& data, Split split, const std::string& baseline);

// Rewards of candidate user-knowledge vectors: candidate c is scored on all lists of users[c] (the
// user's split's lists; a user belongs to one split) with candidate_vectors[c] standing in for the
// user's knowledge vector. Returns, per candidate, the metrics averaged over those lists (count = the
// number of lists; 0 lists -> all metrics 0). Batched: all (candidate, list) pairs go through the
// model together, eval_batch lists at a time.
std::vector<MetricTable> knowledge_reward_metrics(const Reranker& r, const PreparedData& data,
                                                  const KnowledgeVectors& kv, const std::vector<int32_t>& users,
                                                  const at::Tensor& candidate_vectors);
struct RewardOptions {
  // ndcg | map (at k, the paper's) | margin: the mean score of the list's relevant items minus that
  // of the others, a continuous reward that moves with every change of the vector, not only with
  // changes of the top-k order.
  std::string metric = "ndcg";
  int k = 5;
};
// The scalar reward per candidate: mean NDCG@K, MAP@K or score margin over the user's lists.
std::vector<double> knowledge_rewards(const Reranker& r, const PreparedData& data, const KnowledgeVectors& kv,
                                      const std::vector<int32_t>& users, const at::Tensor& candidate_vectors,
                                      const RewardOptions& options = {});

}  // namespace rlrf
