// One decoding step of one sequence in plain C++ (see single_stream.h).
#include "llm/single_stream.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <algorithm>

#include "llm/llama.h"
#include "util/error.h"

namespace rlrf::llm {

namespace {

const float* fp32_data(const at::Tensor& t, const char* what, std::string& why) {
  if (!t.defined()) return nullptr;
  if (t.scalar_type() != at::kFloat || !t.device().is_cpu() || !t.is_contiguous()) {
    if (why.empty()) why = fmt::format("{} is not a contiguous fp32 CPU tensor", what);
    return nullptr;
  }
  return t.data_ptr<float>();
}

}  // namespace

std::optional<SingleStreamModel> single_stream_model(LlamaForCausalLMImpl& model, std::string* why_out) {
  std::string why;
  const ModelConfig& c = model.config();
  if (model.dtype() != at::kFloat) why = "the model is not fp32";
  else if (!model.device().is_cpu()) why = "the model is not on the CPU";
  else if (c.head_dim % 2 != 0) why = "odd head_dim";
  for (auto& [name, linear] : model.named_linears()) {
    if (why.empty() && linear->lora_active()) why = "LoRA adapter active on " + name;
  }
  SingleStreamModel m;
  m.config = c;
  if (why.empty()) {
    m.embed = fp32_data(model.model->embed_tokens->weight, "embed_tokens", why);
    m.final_norm = fp32_data(model.model->norm->weight, "norm", why);
    m.lm_head = fp32_data(model.lm_head_weight(), "lm_head", why);
    for (auto& l : model.model->layer_list) {
      SingleStreamModel::Layer L;
      auto& a = l->self_attn;
      auto& p = l->mlp;
      L.input_norm = fp32_data(l->input_layernorm->weight, "input_layernorm", why);
      L.post_norm = fp32_data(l->post_attention_layernorm->weight, "post_attention_layernorm", why);
      L.q = fp32_data(a->q_proj->weight, "q_proj", why);
      L.k = fp32_data(a->k_proj->weight, "k_proj", why);
      L.v = fp32_data(a->v_proj->weight, "v_proj", why);
      L.o = fp32_data(a->o_proj->weight, "o_proj", why);
      L.q_bias = fp32_data(a->q_proj->bias, "q_proj bias", why);
      L.k_bias = fp32_data(a->k_proj->bias, "k_proj bias", why);
      L.v_bias = fp32_data(a->v_proj->bias, "v_proj bias", why);
      L.o_bias = fp32_data(a->o_proj->bias, "o_proj bias", why);
      L.gate = fp32_data(p->gate_proj->weight, "gate_proj", why);
      L.up = fp32_data(p->up_proj->weight, "up_proj", why);
      L.down = fp32_data(p->down_proj->weight, "down_proj", why);
      L.gate_bias = fp32_data(p->gate_proj->bias, "gate_proj bias", why);
      L.up_bias = fp32_data(p->up_proj->bias, "up_proj bias", why);
      L.down_bias = fp32_data(p->down_proj->bias, "down_proj bias", why);
      m.layers.push_back(L);
    }
  }
  if (!why.empty()) {
    if (why_out) *why_out = why;
    return std::nullopt;
  }
  at::Tensor inv_freq = rope_inv_freq(c).to(at::kFloat).contiguous();
  m.inv_freq.assign(inv_freq.data_ptr<float>(), inv_freq.data_ptr<float>() + inv_freq.numel());
  m.x.resize(c.hidden_size);
  m.q.resize(c.q_dim());
  m.k.resize(c.kv_dim());
  m.v.resize(c.kv_dim());
  m.attn.resize(c.q_dim());
  m.gate.resize(c.intermediate_size);
  m.up.resize(c.intermediate_size);
  return m;
}

void single_stream_step(SingleStreamModel& m, int32_t token, int64_t position, KVCache& cache, int64_t row,
                        int64_t first_slot, float* logits, int threads) {
  const ModelConfig& c = m.config;
  const int64_t KV = c.num_key_value_heads, D = c.head_dim;
  const int64_t slot = cache.length, capacity = cache.capacity();
  RLRF_CHECK(token >= 0 && token < c.vocab_size, "single-stream step: token {} outside the vocabulary [0, {})", token,
             c.vocab_size);
  RLRF_CHECK(row >= 0 && row < cache.batch() && slot < capacity && first_slot >= 0 && first_slot <= slot,
             "single-stream step: row {} slot {} (first {}) outside a cache of {} rows and {} slots", row, slot, first_slot,
             cache.batch(), capacity);
  RLRF_CHECK(cache.keys.size() == m.layers.size(), "single-stream step: a cache of {} layers for a model of {}",
             cache.keys.size(), m.layers.size());
  int64_t first = first_slot;
  if (c.sliding_window > 0) first = std::max(first, slot - c.sliding_window + 1);
  m.key_rows.resize(m.layers.size());
  m.value_rows.resize(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); ++l) {
    at::Tensor& kc = cache.keys[l];    // [B, KV, D, capacity]
    at::Tensor& vc = cache.values[l];  // [B, KV, capacity, D]
    RLRF_CHECK(kc.scalar_type() == at::kFloat && vc.scalar_type() == at::kFloat && kc.is_contiguous() &&
                   vc.is_contiguous() && kc.device().is_cpu() && vc.device().is_cpu(),
               "single-stream step: the KV cache of layer {} is not contiguous fp32 on the CPU", l);
    m.key_rows[l] = kc.data_ptr<float>() + row * KV * D * capacity;
    m.value_rows[l] = vc.data_ptr<float>() + row * KV * capacity * D;
  }
  single_stream_kernel(m, token, position, m.key_rows.data(), m.value_rows.data(), capacity, slot, first, logits, threads);
}

}  // namespace rlrf::llm
