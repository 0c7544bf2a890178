// PRM scorer: position encoding, one multi-head self-attention, MLP over [attention, input].
#include "rerank/prm.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <cmath>

#include <fmt/ranges.h>

#include "rerank/prm_attention.h"
#include "rerank/slot_input.h"
#include "util/error.h"

namespace rlrf {

at::Tensor prm_position_table(int64_t len, int64_t dim) {
  at::Tensor t = at::zeros({len, dim}, at::kFloat);
  auto a = t.accessor<float, 2>();
  for (int64_t p = 1; p < len; ++p) {
    for (int64_t j = 0; j < dim; ++j) {
      double angle = static_cast<double>(p) / std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(dim));
      a[p][j] = static_cast<float>(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  }
  return t;
}

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {
  RLRF_CHECK(heads > 0 && dim % heads == 0, "prm: input size {} is not divisible by {} attention heads", dim, heads);
  in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * dim, dim}));
  in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * dim}));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
}

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x) { return attend(at::linear(x, in_proj_weight, in_proj_bias)); }

at::Tensor SelfAttentionImpl::attend(const at::Tensor& qkv_rows) {
  const int64_t b = qkv_rows.size(0), l = qkv_rows.size(1), hd = dim_ / heads_;
  RLRF_CHECK(qkv_rows.dim() == 3 && qkv_rows.size(2) == 3 * dim_, "prm: attention projections expected [B, L, {}], got {}",
             3 * dim_, qkv_rows.sizes());
  auto qkv = qkv_rows.chunk(3, -1);  // 3 x [B, L, D]
  auto heads = [&](const at::Tensor& t) { return t.reshape({b, l, heads_, hd}).transpose(1, 2); };  // [B, h, L, hd]
  at::Tensor q = heads(qkv[0]) / std::sqrt(static_cast<double>(hd));
  at::Tensor k = heads(qkv[1]), v = heads(qkv[2]);
  at::Tensor o;
  if (attention_core_applies(q)) {  // fp32 CPU: one node, no per-list BLAS calls
    auto flat = [&](const at::Tensor& t) { return t.reshape({b * heads_, l, hd}); };  // [B h, L, hd]
    o = attention_core(flat(q), flat(k), flat(v)).view({b, heads_, l, hd});
  } else {
    at::Tensor w = at::softmax(at::matmul(q, k.transpose(-2, -1)), -1);  // [B, h, L, L]
    o = at::matmul(w, v);                                                // [B, h, L, hd]
  }
  return out_proj->forward(o.transpose(1, 2).reshape({b, l, dim_}));     // [B, L, D]
}

PrmImpl::PrmImpl(int64_t in_dim, int64_t heads, const std::vector<int64_t>& mlp_dims) : in_dim_(in_dim) {
  attn = register_module("attn", SelfAttention(in_dim, heads));
  mlp = register_module("mlp", torch::nn::ModuleList());
  int64_t d = 2 * in_dim;
  for (int64_t h : mlp_dims) {
    mlp->push_back(torch::nn::Linear(d, h));
    d = h;
  }
  fc_out = register_module("fc_out", torch::nn::Linear(d, 1));
  positions_ = prm_position_table(16, in_dim);
}

at::Tensor PrmImpl::forward(const at::Tensor& x) {
  RLRF_CHECK(x.dim() == 3 && x.size(2) == in_dim_, "prm: input expected [B, L, {}], got {}", in_dim_, x.sizes());
  const int64_t l = x.size(1);
  if (positions_.size(0) < l) positions_ = prm_position_table(l, in_dim_);
  at::Tensor pos = positions_.narrow(0, 0, l).to(x.device(), x.scalar_type());
  at::Tensor h = x + pos;                                 // [B, L, D]
  at::Tensor z = at::cat({attn->forward(h), h}, -1);      // [B, L, 2D]
  for (const auto& m : *mlp) z = at::relu(m->as<torch::nn::LinearImpl>()->forward(z));  // [B, L, 80]
  return fc_out->forward(z).squeeze(-1);                  // [B, L]
}

at::Tensor PrmImpl::forward(const SlotInput& input) {
  RLRF_CHECK(input.width == in_dim_ && input.lists > 0 && input.length > 0 && !input.pieces.empty(),
             "prm: input of {} lists of {} rows of {} for rows of {}", input.lists, input.length, input.width, in_dim_);
  // Off fp32 CPU (bf16 autocast, CUDA) the rows are built and read as above: there two matmuls per
  // layer and their adds cost more than the FLOPs the pieces save.
  if (!slot_projection_is_one_node(attn->in_proj_weight)) return forward(materialize_slots(input));
  const int64_t b = input.lists, l = input.length, d = in_dim_;
  if (positions_.size(0) < l) positions_ = prm_position_table(l, in_dim_);
  const at::Tensor& like = input.pieces.front().table;
  // h = x + positions: the positions are one more piece, over the whole row, of L table rows.
  SlotInput h = input;
  const at::Tensor position_of_slot = at::arange(l, like.options().dtype(at::kLong)).repeat({b});
  h.pieces.push_back({positions_.narrow(0, 0, l).to(like.device(), like.scalar_type()), position_of_slot, 0});
  // The attention's in-projection and the first MLP layer's columns on h read the same rows: one
  // projection of h's pieces with the two weights stacked. The MLP reads concat(attention, h).
  auto* first = mlp->size() > 0 ? mlp[0]->as<torch::nn::LinearImpl>() : fc_out.get();
  const std::vector<at::Tensor> proj =  // [B L, 3D], [B L, H1]
      project_slots(h, {{attn->in_proj_weight, attn->in_proj_bias, 0}, {first->weight, first->bias, d}});
  const at::Tensor a = attn->attend(proj[0].view({b, l, 3 * d}));  // [B, L, D]
  at::Tensor z = at::matmul(a.reshape({b * l, d}), first->weight.narrow(1, 0, d).t()).add_(proj[1]);
  if (mlp->size() == 0) return z.view({b, l});
  z = at::relu(z);
  for (size_t i = 1; i < mlp->size(); ++i) z = at::relu(mlp[i]->as<torch::nn::LinearImpl>()->forward(z));  // [B L, 80]
  return fc_out->forward(z).view({b, l});                                                                  // [B, L]
}

}  // namespace rlrf
