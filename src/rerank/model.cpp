// Reranking model: embeddings + optional hybrid-expert adapter + DLCM or PRM scorer.
#include "rerank/model.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include <fmt/ranges.h>

#include "util/error.h"

namespace rlrf {

int64_t RerankerShape::input_dim() const {
  return embed_dim * (1 + static_cast<int64_t>(attribute_cardinality.size())) + towers() * expert_out;
}

RerankerModelImpl::RerankerModelImpl(const RerankerShape& s) : shape_(s) {
  RLRF_CHECK(s.n_items > 0, "reranker: no items");
  RLRF_CHECK(s.model == "dlcm" || s.model == "prm", "reranker: unknown model '{}' (use dlcm or prm)", s.model);
  RLRF_CHECK(s.user_dim == 0 || s.item_dim == 0 || s.user_dim == s.item_dim,
             "reranker: user knowledge vectors have {} dims but item vectors {}; the adapter's shared experts need "
             "one size (encode both with the same encoder)",
             s.user_dim, s.item_dim);
  item_embedding = register_module("item_embedding", torch::nn::Embedding(s.n_items, s.embed_dim));
  attr_embeddings = register_module("attr_embeddings", torch::nn::ModuleList());
  for (int64_t c : s.attribute_cardinality) {
    RLRF_CHECK(c > 0, "reranker: attribute with cardinality {}", c);
    attr_embeddings->push_back(torch::nn::Embedding(c, s.embed_dim));
  }
  if (s.uses_knowledge()) {
    AdapterOptions o;
    o.in_dim = s.user_dim > 0 ? s.user_dim : s.item_dim;
    o.towers = s.towers();
    o.shared_experts = s.shared_experts;
    o.specific_experts = s.specific_experts;
    o.hidden = s.expert_hidden;
    o.out = s.expert_out;
    adapter = register_module("adapter", HybridExpertAdapter(o));
  }
  if (s.user_dim > 0) {
    user_mean = register_buffer("user_mean", at::zeros({s.user_dim}));
    user_inv_std = register_buffer("user_inv_std", at::ones({s.user_dim}));
  }
  if (s.item_dim > 0) {
    item_mean = register_buffer("item_mean", at::zeros({s.item_dim}));
    item_inv_std = register_buffer("item_inv_std", at::ones({s.item_dim}));
  }
  if (s.model == "dlcm") dlcm = register_module("scorer", Dlcm(s.input_dim(), s.gru_hidden));
  else prm = register_module("scorer", Prm(s.input_dim(), s.heads, s.prm_mlp));
  init_weights();
}

at::Tensor RerankerModelImpl::adapt_users(const at::Tensor& v) {
  RLRF_CHECK(shape_.user_dim > 0, "reranker: this model was trained without user knowledge");
  return adapter->forward_tower(0, (v - user_mean) * user_inv_std);
}

at::Tensor RerankerModelImpl::adapt_items(const at::Tensor& v) {
  RLRF_CHECK(shape_.item_dim > 0, "reranker: this model was trained without item knowledge");
  return adapter->forward_tower(shape_.user_dim > 0 ? 1 : 0, (v - item_mean) * item_inv_std);
}

at::Tensor RerankerModelImpl::forward(const at::Tensor& items, const at::Tensor& attrs, const at::Tensor& user_feat,
                                      const at::Tensor& item_feat) {
  const int64_t b = items.size(0), l = items.size(1), n_attr = static_cast<int64_t>(attr_embeddings->size());
  RLRF_CHECK(attrs.dim() == 3 && attrs.size(0) == b && attrs.size(1) == l && attrs.size(2) == n_attr,
             "reranker: attrs expected [{}, {}, {}], got {}", b, l, n_attr, attrs.sizes());
  std::vector<at::Tensor> parts{item_embedding->forward(items)};  // [B, L, E]
  for (int64_t a = 0; a < n_attr; ++a)
    parts.push_back(attr_embeddings[a]->as<torch::nn::EmbeddingImpl>()->forward(attrs.select(2, a)));
  if (shape_.user_dim > 0) {
    RLRF_CHECK(user_feat.defined() && user_feat.dim() == 2 && user_feat.size(0) == b,
               "reranker: user features expected [{}, {}]", b, shape_.expert_out);
    parts.push_back(user_feat.unsqueeze(1).expand({b, l, user_feat.size(1)}));  // [B, L, 32]
  }
  if (shape_.item_dim > 0) {
    RLRF_CHECK(item_feat.defined() && item_feat.dim() == 3 && item_feat.size(0) == b && item_feat.size(1) == l,
               "reranker: item features expected [{}, {}, {}]", b, l, shape_.expert_out);
    parts.push_back(item_feat);  // [B, L, 32]
  }
  at::Tensor x = at::cat(parts, -1);  // [B, L, input_dim]
  return dlcm ? dlcm->forward(x) : prm->forward(x);
}

void RerankerModelImpl::set_standardization(const at::Tensor& um, const at::Tensor& us, const at::Tensor& im,
                                            const at::Tensor& is) {
  torch::NoGradGuard guard;
  if (shape_.user_dim > 0) {
    RLRF_CHECK(um.numel() == shape_.user_dim && us.numel() == shape_.user_dim, "reranker: user standardisation of size {} for {} dims", um.numel(), shape_.user_dim);
    user_mean.copy_(um.reshape({-1}));
    user_inv_std.copy_(us.reshape({-1}));
  }
  if (shape_.item_dim > 0) {
    RLRF_CHECK(im.numel() == shape_.item_dim && is.numel() == shape_.item_dim, "reranker: item standardisation of size {} for {} dims", im.numel(), shape_.item_dim);
    item_mean.copy_(im.reshape({-1}));
    item_inv_std.copy_(is.reshape({-1}));
  }
}

void RerankerModelImpl::init_weights() {
  torch::NoGradGuard guard;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::LinearImpl>()) {
      torch::nn::init::xavier_normal_(lin->weight);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::EmbeddingImpl>()) {
      torch::nn::init::xavier_normal_(emb->weight);
    } else if (auto* att = m->as<SelfAttentionImpl>()) {
      torch::nn::init::xavier_normal_(att->in_proj_weight);
      att->in_proj_bias.zero_();
    }
  }
}

}  // namespace rlrf
