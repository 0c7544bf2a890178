// PRM scorer: position encoding, one multi-head self-attention, MLP over [attention, input].
#include "rerank/prm.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <cmath>

#include <fmt/ranges.h>

#include "rerank/prm_attention.h"
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

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), hd = dim_ / heads_;
  auto qkv = at::linear(x, in_proj_weight, in_proj_bias).chunk(3, -1);  // 3 x [B, L, D]
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

}  // namespace rlrf
