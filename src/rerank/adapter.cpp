// Hybrid-expert adapter (KAR's HEA): gated mixtures of shared and tower-specific expert MLPs.
#include "rerank/adapter.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <fmt/ranges.h>

#include "rerank/expert_mixture.h"
#include "util/error.h"

namespace rlrf {

ExpertMlpImpl::ExpertMlpImpl(int64_t in_dim, int64_t hidden, int64_t out) {
  fc1 = register_module("fc1", torch::nn::Linear(in_dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, out));
}

at::Tensor ExpertMlpImpl::forward(const at::Tensor& x) { return at::relu(fc2->forward(at::relu(fc1->forward(x)))); }

HybridExpertAdapterImpl::HybridExpertAdapterImpl(const AdapterOptions& o) : options_(o) {
  RLRF_CHECK(o.in_dim > 0 && o.towers > 0 && o.shared_experts >= 0 && o.specific_experts >= 0 &&
                 o.shared_experts + o.specific_experts > 0,
             "adapter: bad sizes (in_dim {}, towers {}, shared {}, specific {}); need in_dim > 0, towers > 0 and at "
             "least one expert",
             o.in_dim, o.towers, o.shared_experts, o.specific_experts);
  shared = register_module("shared", torch::nn::ModuleList());
  for (int64_t s = 0; s < o.shared_experts; ++s) shared->push_back(ExpertMlp(o.in_dim, o.hidden, o.out));
  specific = register_module("specific", torch::nn::ModuleList());
  gates = register_module("gates", torch::nn::ModuleList());
  for (int64_t t = 0; t < o.towers; ++t) {
    torch::nn::ModuleList own;
    for (int64_t p = 0; p < o.specific_experts; ++p) own->push_back(ExpertMlp(o.in_dim, o.hidden, o.out));
    specific->push_back(own);
    gates->push_back(torch::nn::Linear(o.in_dim, o.shared_experts + o.specific_experts));
  }
}

at::Tensor HybridExpertAdapterImpl::forward_tower(int64_t tower, const at::Tensor& x) {
  RLRF_CHECK(tower >= 0 && tower < options_.towers, "adapter: tower {} of {}", tower, options_.towers);
  RLRF_CHECK(x.dim() == 2 && x.size(1) == options_.in_dim, "adapter: tower {} input expected [N, {}], got {}", tower,
             options_.in_dim, x.sizes());
  // The tower's experts (shared first, then its own) evaluated together: their weights are stacked
  // so each layer is one batched matmul instead of one small matmul per expert.
  std::vector<at::Tensor> w1, b1, w2, b2;
  auto add = [&](const std::shared_ptr<torch::nn::Module>& m) {
    auto* e = m->as<ExpertMlpImpl>();
    w1.push_back(e->fc1->weight);
    b1.push_back(e->fc1->bias);
    w2.push_back(e->fc2->weight);
    b2.push_back(e->fc2->bias);
  };
  for (const auto& m : *shared) add(m);
  for (const auto& m : *specific[tower]->as<torch::nn::ModuleListImpl>()) add(m);
  auto* gate_layer = gates[tower]->as<torch::nn::LinearImpl>();
  if (expert_mixture_applies(x)) {  // fp32 CPU: the tower as one node (expert_mixture.h)
    std::vector<at::Tensor> p;
    for (const auto* list : {&w1, &b1, &w2, &b2}) p.insert(p.end(), list->begin(), list->end());
    p.push_back(gate_layer->weight);
    p.push_back(gate_layer->bias);
    return expert_mixture(x, p);
  }
  at::Tensor h = at::relu(at::matmul(x, at::stack(w1).transpose(1, 2)) + at::stack(b1).unsqueeze(1));  // [E, N, hidden]
  at::Tensor o = at::relu(at::matmul(h, at::stack(w2).transpose(1, 2)) + at::stack(b2).unsqueeze(1));  // [E, N, out]
  at::Tensor gate = at::softmax(gate_layer->forward(x), -1);  // [N, E]
  return (gate.t().unsqueeze(-1) * o).sum(0);                                                           // [N, out]
}

std::vector<at::Tensor> HybridExpertAdapterImpl::forward(const std::vector<at::Tensor>& inputs) {
  RLRF_CHECK(static_cast<int64_t>(inputs.size()) == options_.towers, "adapter: {} inputs for {} towers", inputs.size(),
             options_.towers);
  std::vector<at::Tensor> out;
  for (int64_t t = 0; t < options_.towers; ++t) out.push_back(forward_tower(t, inputs[t]));
  return out;
}

}  // namespace rlrf
