// Reranking model: embeddings + optional hybrid-expert adapter + DLCM or PRM scorer.
#include "rerank/model.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include <fmt/ranges.h>

#include "rerank/slot_input.h"
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
  return forward(items, attrs, KnowledgeRows{user_feat, {}}, KnowledgeRows{item_feat, {}});
}

at::Tensor RerankerModelImpl::forward(const at::Tensor& items, const at::Tensor& attrs, const KnowledgeRows& users,
                                      const KnowledgeRows& item_knowledge) {
  RLRF_CHECK(items.dim() == 2, "reranker: items expected [B, L], got {}", items.sizes());
  const int64_t b = items.size(0), l = items.size(1), n_attr = static_cast<int64_t>(attr_embeddings->size());
  const int64_t e = shape_.embed_dim, k = shape_.expert_out;
  RLRF_CHECK(attrs.dim() == 3 && attrs.size(0) == b && attrs.size(1) == l && attrs.size(2) == n_attr,
             "reranker: attrs expected [{}, {}, {}], got {}", b, l, n_attr, attrs.sizes());
  // Slot s = list * L + position reads concat(item embedding, attribute embeddings, user feature,
  // item feature): slot_input.h.
  SlotInput in;
  in.lists = b;
  in.length = l;
  in.width = shape_.input_dim();
  int64_t column = 0;
  in.pieces.push_back({item_embedding->weight, items.reshape({-1}), column});
  column += e;
  for (int64_t a = 0; a < n_attr; ++a) {
    in.pieces.push_back({attr_embeddings[a]->as<torch::nn::EmbeddingImpl>()->weight, attrs.select(2, a).reshape({-1}), column});
    column += e;
  }
  if (shape_.user_dim > 0) {
    const at::Tensor& f = users.features;
    RLRF_CHECK(f.defined() && f.dim() == 2 && f.size(1) == k, "reranker: user features expected [n, {}], got {}", k,
               f.defined() ? f.sizes() : at::IntArrayRef{});
    at::Tensor per_list = users.index;
    if (per_list.defined()) {
      RLRF_CHECK(per_list.dim() == 1 && per_list.size(0) == b, "reranker: user index expected [{}], got {}", b,
                 per_list.sizes());
    } else {
      RLRF_CHECK(f.size(0) == b, "reranker: user features expected [{}, {}], got {}", b, k, f.sizes());
      per_list = at::arange(b, items.options().dtype(at::kLong));
    }
    in.pieces.push_back({f, per_list.repeat_interleave(l), column});
    column += k;
  }
  if (shape_.item_dim > 0) {
    const at::Tensor& f = item_knowledge.features;
    if (item_knowledge.index.defined()) {
      RLRF_CHECK(f.defined() && f.dim() == 2 && f.size(1) == k, "reranker: item features expected [n, {}], got {}", k,
                 f.defined() ? f.sizes() : at::IntArrayRef{});
      RLRF_CHECK(item_knowledge.index.sizes() == items.sizes(), "reranker: item feature index expected [{}, {}], got {}",
                 b, l, item_knowledge.index.sizes());
      in.pieces.push_back({f, item_knowledge.index.reshape({-1}), column});
    } else {
      RLRF_CHECK(f.defined() && f.dim() == 3 && f.size(0) == b && f.size(1) == l && f.size(2) == k,
                 "reranker: item features expected [{}, {}, {}], got {}", b, l, k,
                 f.defined() ? f.sizes() : at::IntArrayRef{});
      in.pieces.push_back({f.reshape({b * l, k}), {}, column});
    }
    column += k;
  }
  return dlcm ? dlcm->forward(in) : prm->forward(in);
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
