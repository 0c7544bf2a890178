// The knowledge-augmented reranking model (KAR's DLCM / PRM with knowledge): per candidate item the
// input is concat(item-id embedding, one embedding per item attribute, adapter output), where the
// adapter output is concat(user tower(user vector), item tower(item vector)) when knowledge is on.
// Without knowledge there is no adapter at all (KAR's base model). The scorer (DLCM or PRM) reads the
// list of these inputs and returns one logit per item; the item's score is sigmoid(logit).
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rerank/adapter.h"
#include "rerank/dlcm.h"
#include "rerank/prm.h"

namespace rlrf {

// Everything that fixes the model's parameter shapes; saved in checkpoints.
struct RerankerShape {
  std::string model = "dlcm";                      // dlcm | prm
  int64_t n_items = 0;
  std::vector<int64_t> attribute_cardinality;      // values per item attribute (0 = unknown included)
  int64_t embed_dim = 32;                          // item-id and attribute embeddings
  int64_t user_dim = 0;                            // user knowledge vector size; 0 = no user knowledge
  int64_t item_dim = 0;                            // item knowledge vector size; 0 = no item knowledge
  int64_t shared_experts = 2, specific_experts = 5, expert_hidden = 128, expert_out = 32;
  int64_t gru_hidden = 64;                         // DLCM
  int64_t heads = 2;                               // PRM
  std::vector<int64_t> prm_mlp = {200, 80};        // PRM
  bool uses_knowledge() const { return user_dim > 0 || item_dim > 0; }
  int64_t towers() const { return (user_dim > 0) + (item_dim > 0); }
  int64_t input_dim() const;  // per-item input size of the scorer
};

// Adapted knowledge features and which row each list (users) or slot (items) reads: a batch's
// distinct users or items go through the adapter once and are gathered here. index undefined:
// `features` is already one row per list [B, expert_out] (users) or per slot [B, L, expert_out]
// (items).
struct KnowledgeRows {
  at::Tensor features;  // [n, expert_out]
  at::Tensor index;     // users [B], items [B, L] int64 rows of features; or undefined
};

// Parameters: item_embedding.weight, attr_embeddings.{a}.weight, adapter.* (when knowledge is on),
// scorer.* (DlcmImpl or PrmImpl). Buffers: user_mean, user_inv_std (with user knowledge), item_mean,
// item_inv_std (with item knowledge).
class RerankerModelImpl : public torch::nn::Module {
 public:
  explicit RerankerModelImpl(const RerankerShape& shape);
  // Adapter towers (only when the matching knowledge is on): vectors [N, dim] -> [N, expert_out].
  // Vectors are first standardised with the fixed buffers {user,item}_mean / {user,item}_inv_std
  // (identity unless set_standardization was called).
  at::Tensor adapt_users(const at::Tensor& user_vectors);
  at::Tensor adapt_items(const at::Tensor& item_vectors);
  // items [B, L] int64, attrs [B, L, A] int64, user_feat [B, expert_out] (adapted user vectors, or
  // undefined when there is no user knowledge), item_feat [B, L, expert_out] (adapted item vectors,
  // or undefined) -> logits [B, L].
  at::Tensor forward(const at::Tensor& items, const at::Tensor& attrs, const at::Tensor& user_feat,
                     const at::Tensor& item_feat);
  // The same with the features as tables and indices (the scorer projects a table with fewer rows
  // than the batch has slots once, then gathers: slot_input.h).
  at::Tensor forward(const at::Tensor& items, const at::Tensor& attrs, const KnowledgeRows& users,
                     const KnowledgeRows& item_knowledge);
  // Xavier-normal for Linear weights, embeddings and the attention in-projection; zero biases
  // (KAR's weight_init). The GRU keeps PyTorch's default uniform init, batch-norm starts at 1/0.
  void init_weights();
  // Per-dimension standardisation of the frozen knowledge vectors, fixed before training (from the
  // training users' and all items' vectors) and saved with the model: x -> (x - mean) * inv_std.
  void set_standardization(const at::Tensor& user_mean, const at::Tensor& user_inv_std, const at::Tensor& item_mean,
                           const at::Tensor& item_inv_std);
  const RerankerShape& shape() const { return shape_; }

  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::ModuleList attr_embeddings{nullptr};
  HybridExpertAdapter adapter{nullptr};
  Dlcm dlcm{nullptr};
  Prm prm{nullptr};
  at::Tensor user_mean, user_inv_std, item_mean, item_inv_std;

 private:
  RerankerShape shape_;
};
TORCH_MODULE(RerankerModel);

}  // namespace rlrf
